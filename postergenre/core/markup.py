"""Text from data and model files (genres, titles, ids, model names) inside the Markdown and HTML that the project
writes: it shows as text and is never read as markup, whatever it holds."""
from __future__ import annotations

import re

import markdown
from markdown.extensions import Extension

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# What could make text into a link, an image, code or another table cell. Emphasis (* and _) is left alone: it
# only styles text, and model names such as efficientnet_lite0-mlp stay readable in report.md.
_MARKUP = re.compile(r"([\\`\[\]|!])")


def md_text(value: object) -> str:
    """`value` as literal Markdown text on one line: HTML's characters as entities, Markdown's escaped (a table
    cell's `|` too), and a newline, which would end a table row, as a space."""
    text = "".join(_ENTITIES.get(c, c) for c in " ".join(str(value).split()))
    return _MARKUP.sub(r"\\\1", text)


def md_code(value: object) -> str:
    """`value` as one Markdown code span (a command, a path, a checksum): a backtick in it, which would end the
    span, becomes a quote, and a newline a space; inside the span nothing else is markup."""
    return "`" + " ".join(str(value).replace("`", "'").split()) + "`"


def slug(value: str, limit: int = 60) -> str:
    """A file-name part from any text: lower-case letters, digits and '-' alone, never empty, never a path."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:limit] or "x"


class _TextOnly(Extension):
    """Raw HTML and links in the Markdown are shown as text: what the project writes has images and nothing else."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 - Markdown's name
        md.preprocessors.deregister("html_block")
        for pattern in ("html", "link", "reference", "short_reference", "autolink", "automail"):
            md.inlinePatterns.deregister(pattern)


def markdown_to_html(text: str) -> str:
    """The project's Markdown as an HTML body: tables and images, raw HTML and links shown as text."""
    return markdown.markdown(text, extensions=["tables", _TextOnly()])
