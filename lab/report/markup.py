"""The inline Markdown of report.md's notes as HTML: `code`, **bold**, *italic* and
[links](url), everything else escaped; Markdown bullets as an HTML list. So the HTML
report renders the notes report.md writes instead of printing their backticks."""

from __future__ import annotations

import html
import re

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline(text: str) -> str:
    """One line of Markdown as HTML (code spans verbatim, escaped)."""
    parts = _CODE.split(text)  # even: prose, odd: code
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        s = html.escape(part, quote=False)
        s = _LINK.sub(lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', s)
        s = _BOLD.sub(r"<b>\1</b>", s)
        s = _ITALIC.sub(r"<i>\1</i>", s)
        out.append(s)
    return "".join(out)


def bullets(lines: list[str]) -> str:
    """Markdown bullets (`- ...`) as a `<ul>`; other lines are left out."""
    items = "".join(f"<li>{inline(x[2:])}</li>" for x in lines if x.startswith("- "))
    return f"<ul>{items}</ul>" if items else ""
