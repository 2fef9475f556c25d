"""The Markdown report as HTML: markdown-it-py in CommonMark mode with raw HTML off (an `<script>` in a
service's name or a reason comes out as text), tables on."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render(text: str) -> Markup:
    """HTML of `text`; safe to put in a page as it is (raw HTML escaped, only http(s)/mailto/relative links)."""
    return Markup(_md.render(text))
