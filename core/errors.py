"""The one error type for input a command cannot use: the message names the file and says what is wrong."""


class DataError(Exception):
    """Input that cannot be read; the message names the file and what is wrong."""
