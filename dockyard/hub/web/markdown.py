"""README rendering: CommonMark (with tables and strikethrough) by markdown-it-py, then nh3.

markdown-it passes raw HTML through (READMEs use it for badges and alignment), so everything it
produces goes through nh3's allow-list: script and style elements vanish with their content,
event-handler attributes and inline styles are dropped, and only http, https and mailto URLs
(or relative ones) survive in links and images.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

URL_SCHEMES = frozenset({"http", "https", "mailto"})
_ALLOWED_CLASSES = {"code": {f"language-{name}" for name in ("dockerfile", "sh", "bash", "shell")}}

_parser = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable(
    ["table", "strikethrough"]
)


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        allowed_classes=_ALLOWED_CLASSES,
        strip_comments=True,
    )


def render_markdown(text: str) -> Markup:
    """Safe HTML for a README; Markup so Jinja does not escape it again."""
    if not text.strip():
        return Markup("")
    return Markup(sanitize(_parser.render(text)))
