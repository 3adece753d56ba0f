"""Reading the dashboard's HTML in tests: tables by id as rows of cell texts, and elements' text by id. Tests
assert the figures a user sees, so they read them from the page, not from the template's inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Row:
    attrs: dict[str, str]  # the <tr>'s attributes (the pages mark body rows with data-*)
    cells: list[str] = field(default_factory=list)  # each cell's text, whitespace collapsed
    cell_attrs: list[dict[str, str]] = field(default_factory=list)
    by_class: dict[str, str] = field(default_factory=dict)  # a cell's text by each of its classes


class Page(HTMLParser):
    """Every <table> by its id (or class), nested ones included; the text of every element with an id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, list[Row]] = {}
        self.by_id: dict[str, str] = {}
        self._open: list[list[Row]] = []  # the tables being read, innermost last
        self._cell: list[str] | None = None
        self._cell_class = ""
        self._ids: list[tuple[str, str, list[str]]] = []
        self.feed(html)

    def rows(self, table: str) -> list[Row]:
        """The body rows of `table`: those with attributes (header rows have none)."""
        return [r for r in self.tables[table] if r.attrs]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._open.append(self.tables.setdefault(a.get("id") or a.get("class", ""), []))
        elif tag == "tr" and self._open:
            self._open[-1].append(Row(a))
        elif tag in ("td", "th") and self._open and self._open[-1]:
            self._open[-1][-1].cell_attrs.append(a)
            self._cell, self._cell_class = [], a.get("class", "")
        if "id" in a:
            self._ids.append((a["id"], tag, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._open and self._open[-1]:
            row = self._open[-1][-1]
            text = " ".join("".join(self._cell).split())
            row.cells.append(text)
            for c in self._cell_class.split():
                row.by_class[c] = text
            self._cell = None
        elif tag == "table" and self._open:
            self._open.pop()
        if self._ids and self._ids[-1][1] == tag:
            ident, _, parts = self._ids.pop()
            self.by_id[ident] = " ".join("".join(parts).split())

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, _, parts in self._ids:
            parts.append(data)
