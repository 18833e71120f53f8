"""The one error type for input a command cannot use: the message names the file and says what is wrong."""


class DataError(Exception):
    """Input that cannot be read; the message names the file and what is wrong."""


def first_line(error: BaseException) -> str:
    """An error's message cut to its first line (its type's name if it has none), to fit a one-line message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
