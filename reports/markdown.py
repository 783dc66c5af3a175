"""Markdown from the rich tables the terminal shows, so the report and the console never disagree."""

from __future__ import annotations

from rich.errors import MarkupError
from rich.table import Table
from rich.text import Text


def _cell(value: object) -> str:
    """A table cell as Markdown: plain text, bold when rich styles it (a highlighted cell), pipes escaped."""
    if isinstance(value, Text):
        text, styled = value.plain, bool(value.style) or bool(value.spans)
    else:
        try:
            parsed = Text.from_markup(value) if isinstance(value, str) else Text(str(value))
        except MarkupError:
            parsed = Text(str(value))
        text, styled = parsed.plain, bool(parsed.spans)
    text = text.replace("|", "\\|").replace("*", "\\*").replace("\n", " ").strip()
    return f"**{text}**" if styled and text else text


def markdown_table(table: Table, title: bool = False) -> str:
    """GitHub-flavoured Markdown of ``table``: header row, alignment row from each column's justify, one line per
    row (sections are not shown). With ``title`` the table's title comes first as an italic line."""
    columns = table.columns
    header = "| " + " | ".join(_cell(c.header) or " " for c in columns) + " |"
    align = "|" + "|".join(" ---: " if c.justify == "right" else " --- " for c in columns) + "|"
    cells = [list(c.cells) for c in columns]
    rows = ["| " + " | ".join(_cell(cells[j][i]) for j in range(len(columns))) + " |" for i in range(table.row_count)]
    lines = [header, align, *rows]
    if title and table.title:
        lines = [f"*{_cell(table.title)}*", "", *lines]
    return "\n".join(lines)
