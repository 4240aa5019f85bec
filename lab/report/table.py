"""The tables of a report: one value per cell, rendered as Markdown or HTML; the summary a
study returns (its tables, headline, figures and the scalars W&B shows)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]

    def render(self) -> str:
        cells = [self.columns] + [[cell_text(v) for v in r] for r in self.rows]
        widths = [max(len(str(r[i])) for r in cells) for i in range(len(self.columns))]

        def line(r: list[Any]) -> str:
            return "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) + " |"

        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(cells[0]), sep, *[line(r) for r in cells[1:]]])

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell_text(v))}</td>" for v in r) + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Summary:
    table: Table
    headline: str | None = None
    figures: dict[str, str] = field(default_factory=dict)
    paired: Table | None = None
    extra: dict[str, Table] = field(default_factory=dict)  # more tables for W&B
    values: dict[str, Any] = field(default_factory=dict)  # W&B summary scalars
    probes: Table | None = None  # BBH
    task_probes: Table | None = None  # cross-task probes
    cells: list[str] = field(default_factory=list)  # the cells behind it (their artifacts)
    verdicts: list[str] = field(default_factory=list)  # one line per compared pair
    notes: dict[str, list[str]] = field(default_factory=dict)  # section -> Markdown bullets


def cell_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 1000 or (v and abs(v) < 0.001) else f"{v:.3f}"
    return "-" if v is None else str(v)


def ci(t: tuple[float, float, float] | None) -> str:
    return "-" if t is None else f"{t[0]:.3f} [{t[1]:.2f}, {t[2]:.2f}]"


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}.answer{background:#eef6ff;padding:.8em}"""
