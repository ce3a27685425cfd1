"""A small parser for the report pages: tags, sections, visible text, tables and images."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html.parser import HTMLParser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Cell:
    text: str
    classes: set[str] = field(default_factory=set)
    header: bool = False


class Page(HTMLParser):
    """Collect tags, section ids, visible text, tables (per section) and images of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.section_text: dict[str, list[str]] = {}
        self.tables: list[tuple[str, list[list[Cell]]]] = []  # (section id, rows)
        self.images: list[tuple[str, dict[str, str | None]]] = []  # (section id, attrs)
        self._section = ""
        self._table: list[list[Cell]] | None = None
        self._cell: Cell | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self._section = a.get("id") or ""
            self.section_text.setdefault(self._section, [])
        elif tag == "table":
            self._table = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None and self._table:
            self._cell = Cell("", set((a.get("class") or "").split()), tag == "th")
            self._table[-1].append(self._cell)
        elif tag == "img":
            self.images.append((self._section, a))

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = ""
        elif tag == "table" and self._table is not None:
            self.tables.append((self._section, self._table))
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self._cell.text = " ".join(self._cell.text.split())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._section:
            self.section_text[self._section].append(data)
        if self._cell is not None:
            self._cell.text += " " + data

    @property
    def section_ids(self) -> list[str]:
        return [a.get("id") or "" for t, a in self.tags if t == "section"]

    @property
    def nav_targets(self) -> list[str]:
        in_nav, out = False, []
        for tag, a in self.tags:
            if tag == "nav":
                in_nav = True
            elif in_nav and tag == "a":
                out.append((a.get("href") or "").lstrip("#"))
            elif in_nav and tag == "section":
                break
        return out

    @property
    def visible_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def section(self, sid: str) -> str:
        return " ".join(" ".join(self.section_text.get(sid, [])).split())

    def tables_in(self, sid: str) -> list[list[list[Cell]]]:
        return [rows for s, rows in self.tables if s == sid]

    def table_with(self, sid: str, header: str) -> list[list[Cell]]:
        """The first table of section ``sid`` whose first row has a cell reading ``header``."""
        for rows in self.tables_in(sid):
            if rows and any(c.text == header for c in rows[0]):
                return rows
        raise AssertionError(f"no table with header {header!r} in section {sid!r}")

    def attr_values(self, tag: str, attr: str) -> list[str]:
        return [a[attr] or "" for t, a in self.tags if t == tag and attr in a]

    def pngs(self, sid: str | None = None) -> list[bytes]:
        """Decoded PNG images (of one section); fails on any image that is not a PNG data URI."""
        out = []
        for s, a in self.images:
            if sid is not None and s != sid:
                continue
            src = a.get("src") or ""
            assert src.startswith("data:image/png;base64,"), src[:40]
            out.append(base64.b64decode(src.split(",", 1)[1]))
        return out

    def alts(self, sid: str | None = None) -> list[str]:
        return [a.get("alt") or "" for s, a in self.images if sid is None or s == sid]


def rows_by_first_cell(rows: list[list[Cell]]) -> dict[str, list[Cell]]:
    return {r[0].text: r for r in rows[1:] if r}
