"""HTML mail body -> readable plain text, in one linear pass.

Paragraphs and blocks become lines, ``<br>`` a line break, list items ``- `` lines (``1. ``
in a numbered list; Outlook's Word list paragraphs alike), blockquotes ``> `` lines, links
``text (url)``, each table row one line (its cells joined by " | ", whatever blocks they
hold); script, style and title are dropped, and so are elements that are not shown
(``display:none``, ``hidden``); entities are decoded.
The tokenizer is our own (``html.parser`` on CPython 3.11 is quadratic on unclosed tags such as
``<a <a <a ...`` and raises on ``<![`` junk); entity decoding uses the stdlib ``html.unescape``.
"""

from __future__ import annotations

import re
from html import unescape

__all__ = ["html_to_text"]

_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:_-]*)")
_ATTR = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")
_WS = re.compile(r"[ \t\r\n\f\v]+")
_COLLAPSIBLE = re.compile(r"[^\S\xa0]+")
"""White space a browser collapses to one space (all but no-break space, U+00A0)."""
_RAW_END = {
    name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in ("script", "style", "title")
}
_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
    ]
)
_PARAGRAPH = frozenset(
    [
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "ul",
        "ol",
        "dl",
        "pre",
        "blockquote",
    ]
)
_MAX_BLANK = 1
_MAX_QUOTE = 20  # deeper quotes are shown at this depth (keeps the output linear)
_MAX_INDENT = 10
_DATA_CELL_LINES = 3
_DATA_CELL_CHARS = 300
"""A cell of at most this many lines of text and characters is a table's data; a longer one
is prose laid out in a table (its row is then not joined on one line)."""


def _data_cell(lines: list[str]) -> bool:
    texts = [line for line in lines if line.strip("> ")]
    return len(texts) <= _DATA_CELL_LINES and sum(map(len, texts)) <= _DATA_CELL_CHARS


# Cells of a row of data are joined by " | " (an empty cell before the last with text:
# " |"; one that is first: "|"): with a space,
# "HP LaserJet 4000" "Floor 3" read as one run of words, and an empty cell vanished, so a
# value moved into the column before it.

_MAX_TABLES = 8  # tables nested deeper are read as before rows were gathered (keeps it linear)


_CELL_START = "\x00"
"""The first line of a cell's own lines while it is open: not blank, so a paragraph at the
start of the cell records its blank line (dropped when the cell closes)."""


class _Table:
    """An open ``<table>``: the cells of its open row (each a list of lines), and while a cell
    is open, the writer's lines and current line from before it (the cell writes its own)."""

    def __init__(self) -> None:
        self.cells: list[list[str]] = []
        self.saved: tuple[list[str], list[str]] | None = None


class _Writer:
    """Collects lines; knows the blockquote depth, list depth, pre mode and open links."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cur: list[str] = []
        self.quote = 0
        self.lists: list[str] = []
        # per open list: next item number, its type, its reversed list's index (else -1)
        self.numbers: list[tuple[int, str, int]] = []
        self.reversed_counts: list[int] = []  # items of each reversed list, from a first pass
        self.reversed_items: list[int] = []  # items of each reversed list (in document order)
        self.reversed_counted = False  # a reversed list without start took its items' count
        self.pre = 0
        self.links: list[tuple[str, list[str]]] = []
        self.item = ""
        self.tables: list[_Table] = []
        self.untracked_tables = 0  # open tables nested deeper than _MAX_TABLES
        self.word_item: _WordItem | None = None  # an open Word list paragraph
        self.marker: list[str] | None = None  # text of its open mso-list:Ignore span
        self.marker_spans = 0  # spans open inside that span (its own counted)
        self.options: list[tuple[str, bool]] | None = None  # an open <select>'s options
        self.option: tuple[list[str], bool] | None = None  # an open <option>: text, selected

    def prefix(self) -> str:
        return "> " * min(self.quote, _MAX_QUOTE)

    def text(self, data: str, *, decoded: bool = False) -> None:
        """Write text as the reader sees it; ``decoded``: its entities already decoded."""
        if not data:
            return
        if not decoded:
            data = unescape(data)
        if self.marker is not None:
            self.marker.append(data)
            return
        if self.option is not None:
            self.option[0].append(data)
            return
        if self.tables and not self.untracked_tables:
            table = self.tables[-1]
            if table.saved is None and table.cells and not data.isspace():
                self.end_row()  # text outside the cells after them: after their row, in order
        if self.pre:
            pieces = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            for piece in pieces[:-1]:
                self.cur.append(piece)
                self.newline(force=True, keep=True)
            data = pieces[-1]
        else:
            data = _WS.sub(" ", data)
        self.cur.append(data)
        for _, words in self.links:
            words.append(data)

    def newline(self, force: bool = False, keep: bool = False) -> None:
        """End the current line; an empty one is only kept when ``force`` (``<br>``, pre)."""
        line = "".join(self.cur)
        self.cur = []
        if not keep:  # white space collapsed, a run of &nbsp; kept as spaces (alignment)
            line = _COLLAPSIBLE.sub(" ", line).strip().replace("\xa0", " ")
        else:
            line = line.rstrip()
        if line and self.item:
            line = self.item + line
        self.item = ""
        if not line and not force:
            return
        if not line:
            self.blank()
            return
        self.lines.append(self.prefix() + line)

    def blank(self) -> None:
        """Add an empty line unless the text already ends with enough of them."""
        empty = self.prefix().rstrip()
        run = 0
        for line in reversed(self.lines):
            if line.strip("> ") or run > _MAX_BLANK:
                break
            run += 1
        if self.lines and run < _MAX_BLANK:
            self.lines.append(empty)

    def paragraph(self) -> None:
        self.newline()
        self.blank()

    # -- tables: the cells of a row on one line, each row a line ------------------------

    def open_table(self) -> None:
        if self.tables and not self.untracked_tables and self.tables[-1].saved is None:
            self.end_row()  # a table outside the cells after them: after their row, in order
        self.paragraph()
        if len(self.tables) < _MAX_TABLES:
            self.tables.append(_Table())
        else:
            self.untracked_tables += 1

    def close_table(self) -> None:
        if self.untracked_tables:
            self.untracked_tables -= 1
        elif self.tables:
            self.end_row()
            self.tables.pop()
        self.paragraph()

    def open_cell(self) -> None:
        if not self.tables or self.untracked_tables:
            self.cur.append(" ")  # a cell outside a table we follow: a space, as before
            return
        table = self.tables[-1]
        self.close_cell()
        table.saved = (self.lines, self.cur)
        self.lines, self.cur = [_CELL_START], []  # so a paragraph's blank line is kept

    def close_cell(self) -> None:
        if not self.tables or self.untracked_tables:
            return
        table = self.tables[-1]
        if table.saved is None:
            return
        self.newline()
        lines = self.lines
        self.lines, self.cur = table.saved
        table.saved = None
        table.cells.append(lines[1:])  # without _CELL_START

    def end_row(self) -> None:
        """Write the open row: cells of data (each a few short lines, as Outlook's
        ``<p class=MsoNormal>`` per cell) are joined on one line, their lines by spaces and
        the cells by " | "; a row with one cell of text, or with a cell of prose (a layout
        table: the mail in one cell, a sidebar or a logo in another) keeps each cell's lines,
        one cell after the other, so its paragraphs (and our marker line) stay lines."""
        if not self.tables or self.untracked_tables:
            self.newline()
            return
        self.close_cell()
        table = self.tables[-1]
        row = table.cells
        filled = [
            index for index, lines in enumerate(row) if any(line.strip("> ") for line in lines)
        ]
        cells = [row[index] for index in filled]
        table.cells = []
        self.newline()
        if len(cells) == 1 or not all(map(_data_cell, cells)):
            for cell in cells:  # its lines as they were, blank lines between blocks kept
                for line in cell:
                    if line.strip("> "):
                        self.lines.append(line)
                    else:
                        self.blank()
                self.blank()
        elif cells:
            prefix = self.prefix()
            texts = [
                " ".join(
                    word
                    for word in (line.removeprefix(prefix).strip() for line in lines)
                    if word.strip("> ")
                )
                for lines in row[: filled[-1] + 1]  # empty cells before text keep their place
            ]
            joined = " |".join(f" {text}" if text else "" for text in texts)
            self.lines.append(prefix + joined[1:])

    def close_tables(self) -> None:
        """At the end of the document: write what open tables hold."""
        self.untracked_tables = 0
        while self.tables:
            self.end_row()
            self.tables.pop()


_WORD_LIST = re.compile(r"mso-list\s*:\s*l\d+\s+level(\d+)", re.IGNORECASE)
_WORD_MARKER = re.compile(r"mso-list\s*:\s*ignore", re.IGNORECASE)
_MAX_MARKER = 16
"""A Word list marker is at most this many characters (``1.``, ``(iv)``, ``Step 10:``);
longer text in an ``mso-list:Ignore`` span is written as text."""
_MARKER_FORMAT = frozenset(["b", "i", "u", "em", "strong", "font", "sup", "sub"])
_CELLS = frozenset(["td", "th"])
_LETTER_NUMBER = re.compile(r"[(\[]?[^\W\d_]{1,6}[.)\]、．]")


class _WordItem:
    """An open list paragraph of Word's HTML (``<p style='mso-list:l0 level2 lfo1'>``):
    its indent, whether it ends its list (a blank line after it), whether its marker
    (the text of its ``mso-list:Ignore`` span) is still to come."""

    def __init__(self, indent: str, last: bool) -> None:
        self.indent = indent
        self.last = last
        self.wants_marker = True
        self.marker = ""  # the text of its marker span, white space collapsed


def _word_item(w: _Writer, attr_text: str) -> bool:
    """Open a list paragraph of Word's HTML if this ``<p>`` is one (desktop Outlook writes
    each list item as a paragraph: ``class=MsoListParagraphCxSpFirst``, ``style='mso-list:
    l0 level1 lfo1'``, the bullet or number in a ``<span style='mso-list:Ignore'>``)."""
    if "mso-list" not in attr_text.lower():
        return False
    found = _WORD_LIST.search(attr_text)
    if found is None:
        return False
    level = min(int(found.group(1)[:3]), _MAX_INDENT + 1)
    css_class = _attrs(attr_text).get("class", "").lower()
    last = css_class.endswith("cxsplast") or css_class == "msolistparagraph"
    w.newline()
    w.word_item = _WordItem("  " * max(level - 1, 0), last)
    w.item = w.word_item.indent + "- "  # until its marker says otherwise
    return True


def _end_word_item(w: _Writer) -> None:
    item = w.word_item
    w.word_item = None
    if item is not None and " " in item.marker and not "".join(w.cur).strip():
        # no text after a marker of words: a marker span never closed held the item's
        # text (``1.&nbsp; Restart``), shown as it is
        w.item = item.indent
        w.text(item.marker, decoded=True)
    if item is not None and item.last:
        w.paragraph()
    else:
        w.newline()


def _end_marker(w: _Writer) -> None:
    """The ``mso-list:Ignore`` span has ended: its text is the item's marker, a number kept
    as written (``2.``, ``b)``, ``(iv)``), a bullet glyph (``·``, ``o``, ``§``, a Wingdings
    letter) as ``-``."""
    parts, w.marker, w.marker_spans = w.marker, None, 0
    if parts is None or w.word_item is None:
        return
    marker = w.word_item.marker = " ".join("".join(parts).split())
    if len(marker) > _MAX_MARKER:
        w.text(marker, decoded=True)  # not a marker: text shown as text
        return
    if not marker:
        return
    numbered = re.search(r"[0-9]", marker) or _LETTER_NUMBER.fullmatch(marker)
    w.item = w.word_item.indent + (marker if numbered else "-") + " "


def _word_marker_tag(w: _Writer, closing: bool, name: str, attr_text: str) -> bool:
    """Follow the spans of a Word list marker; whether the tag was one of them. Any other
    tag ends the marker (an unclosed span does not hide the text after it)."""
    if w.marker is not None:
        if name in _MARKER_FORMAT:
            return True  # bold or a font around the number: still the marker
        if name != "span":
            _end_marker(w)
            return False
        w.marker_spans += -1 if closing else 1
        if w.marker_spans <= 0:
            _end_marker(w)
        return True
    item = w.word_item
    if closing or name != "span" or item is None or not item.wants_marker:
        return False
    if "mso-list" not in attr_text.lower() or not _WORD_MARKER.search(attr_text):
        return False
    item.wants_marker = False
    w.marker, w.marker_spans = [], 1
    return True


def _end_option(w: _Writer) -> None:
    if w.option is not None and w.options is not None:
        w.options.append((" ".join("".join(w.option[0]).split()), w.option[1]))
    w.option = None


def _end_select(w: _Writer) -> None:
    """Write a drop-down as it is seen: its selected option, else its first (a list box
    with several selected: them, joined by ", ")."""
    _end_option(w)
    options, w.options = w.options, None
    if not options:
        return
    shown = [text for text, selected in options if selected] or [options[0][0]]
    w.text(", ".join(text for text in shown if text), decoded=True)


def _select_tag(w: _Writer, closing: bool, name: str, attr_text: str) -> bool:
    """Follow the options of an open ``<select>``; whether the tag was one of them. Any
    other tag ends the select (one never closed does not swallow the text after it)."""
    if w.options is None:
        return False
    if name == "option":
        _end_option(w)
        if not closing:
            selected = "selected" in attr_text.lower() and "selected" in _attrs(attr_text)
            w.option = ([], selected)
        return True
    if name == "optgroup":
        _end_option(w)
        return True
    _end_select(w)
    return name == "select"  # its end, or a <select> inside it (HTML: its end)


def _attrs(text: str) -> dict[str, str]:
    """Attribute names (lower case) to decoded values."""
    out: dict[str, str] = {}
    for match in _ATTR.finditer(text):
        value = match.group(2) or ""
        if value[:1] in ('"', "'"):
            value = value[1:-1]
        out.setdefault(match.group(1).lower(), unescape(value))
    return out


def _number(value: str | None, default: int) -> int:
    """An ``<ol start>`` or ``<li value>`` number; ``default`` when missing or not one."""
    value = (value or "").strip()
    if value[:1] == "-":
        return -int(value[1:12]) if value[1:12].isdecimal() else default
    return int(value[:12]) if value[:12].isdecimal() else default


_ROMAN = (
    (1000, "m"),
    (900, "cm"),
    (500, "d"),
    (400, "cd"),
    (100, "c"),
    (90, "xc"),
    (50, "l"),
    (40, "xl"),
    (10, "x"),
    (9, "ix"),
    (5, "v"),
    (4, "iv"),
    (1, "i"),
)


def _ordinal(number: int, kind: str) -> str:
    """``number`` as ``<ol type>`` shows it: ``1``, ``a``/``A`` (letters) or ``i``/``I``
    (roman numerals, up to 3999); decimal otherwise."""
    if kind in ("a", "A") and 0 < number <= 26 * 27:
        letters = ""
        while number:
            number, rest = divmod(number - 1, 26)
            letters = chr(ord("a") + rest) + letters
        return letters.upper() if kind == "A" else letters
    if kind in ("i", "I") and 0 < number < 4000:
        roman = ""
        for value, digits in _ROMAN:
            count, number = divmod(number, value)
            roman += digits * count
        return roman.upper() if kind == "I" else roman
    return str(number)


def _item_marker(w: _Writer, attr_text: str) -> str:
    """``- `` for a bullet item; for an item of an ``<ol>``, its number as the reader sees
    it (``3. ``; ``start``, ``type`` and ``<li value>`` honoured)."""
    if not w.lists or w.lists[-1] != "ol":
        return "- "
    number, kind, reversed_index = w.numbers[-1]
    if "value" in attr_text.lower():
        number = _number(_attrs(attr_text).get("value"), number)
    if reversed_index >= 0:
        w.reversed_items[reversed_index] += 1
    w.numbers[-1] = (number - 1 if reversed_index >= 0 else number + 1, kind, reversed_index)
    return f"{_ordinal(number, kind)}. "


_NO_NUMBER = 10**13  # more digits than _number reads: no number was given


def _list_numbering(w: _Writer, attrs: dict[str, str]) -> tuple[int, str, int]:
    """A new list's first number, type and reversed list index (-1: counts up). A
    ``reversed`` list counts down from ``start``, else from its number of items (HTML's
    rule), known from a first pass over the document (``_Writer.reversed_counts``)."""
    kind = attrs.get("type", "1")
    if "reversed" not in attrs:
        return _number(attrs.get("start"), 1), kind, -1
    index = len(w.reversed_items)
    w.reversed_items.append(0)
    start = _number(attrs.get("start"), _NO_NUMBER)
    if start == _NO_NUMBER:  # none given: its number of items
        w.reversed_counted = True
        start = w.reversed_counts[index] if index < len(w.reversed_counts) else 0
    return start, kind, index


def _start(w: _Writer, name: str, attr_text: str) -> None:
    if w.word_item is not None and (name in _BLOCK or name in _PARAGRAPH):
        _end_word_item(w)  # a block ends the paragraph (HTML's implied </p>)
    if name == "p" and _word_item(w, attr_text):
        return
    if name == "br":
        w.newline(force=True)
    elif name == "img":
        alt = _attrs(attr_text).get("alt", "").strip() if "alt" in attr_text.lower() else ""
        if alt:  # as Gmail writes an image in its plain text
            w.text(f"[image: {' '.join(alt.split())}]", decoded=True)
    elif name == "blockquote":
        w.paragraph()
        w.quote += 1
    elif name in ("ul", "ol"):
        w.newline()
        w.lists.append(name)
        attrs = _attrs(attr_text) if name == "ol" else {}
        w.numbers.append(_list_numbering(w, attrs))
    elif name == "li":
        w.newline()
        w.item = "  " * min(max(len(w.lists) - 1, 0), _MAX_INDENT) + _item_marker(w, attr_text)
    elif name == "a":
        if w.links:
            _end(w, "a")  # HTML closes an open link when another starts
        w.links.append((_attrs(attr_text).get("href", "").strip(), []))
    elif name in ("td", "th"):
        w.open_cell()
    elif name == "tr":
        w.end_row()
    elif name == "table":
        w.open_table()
    elif name == "select":
        w.options = []
    elif name in _PARAGRAPH:
        w.paragraph()
        if name == "pre":
            w.pre += 1
    elif name in _BLOCK:
        w.newline()


def _end(w: _Writer, name: str) -> None:
    if w.word_item is not None and (name in _BLOCK or name in _PARAGRAPH or name in _CELLS):
        _end_word_item(w)
        if name == "p":
            return
    if name == "blockquote":
        w.newline()
        w.quote = max(w.quote - 1, 0)
        if w.lines and not w.lines[-1].strip("> "):
            w.lines[-1] = w.prefix().rstrip()
        else:
            w.blank()
    elif name in ("ul", "ol"):
        w.newline()
        if w.lists:
            w.lists.pop()
            w.numbers.pop()
        if not w.lists:
            w.blank()
    elif name == "a" and w.links:
        href, words = w.links.pop()
        label = " ".join("".join(words).split())
        if href and not href.startswith(("#", "javascript:")):
            bare = href[7:] if href.lower().startswith("mailto:") else href
            if not label:
                w.cur.append(href)
            elif label not in (href, bare):
                w.cur.append(f" ({href})")
    elif name == "pre":
        w.newline(keep=True)
        w.pre = max(w.pre - 1, 0)
        w.blank()
    elif name in ("td", "th"):
        w.close_cell()
    elif name == "tr":
        w.end_row()
    elif name == "table":
        w.close_table()
    elif name in _PARAGRAPH:
        w.paragraph()
    elif name in _BLOCK:
        w.newline()


_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_IMPLICIT_END = {
    "p": _BLOCK | _PARAGRAPH,
    "li": frozenset(["li"]),
    "dt": frozenset(["dt", "dd"]),
    "dd": frozenset(["dt", "dd"]),
    "tr": frozenset(["tr"]),
    "td": frozenset(["td", "th", "tr"]),
    "th": frozenset(["td", "th", "tr"]),
}
"""Start tags that end an open element of the key's name (HTML's implied end tags)."""


def _hidden(attr_text: str) -> bool:
    """Whether a start tag's element is not shown: ``style="display:none"`` (a newsletter's
    or a form's preheader) or the ``hidden`` attribute."""
    lowered = attr_text.lower()
    if "display" in lowered and _DISPLAY_NONE.search(attr_text):
        return True
    return "hidden" in lowered and "hidden" in _attrs(attr_text)


class _Hidden:
    """An open element that is not shown, and the elements opened inside it (by name, how
    many are open), so its own end tag, or the end of an element around it, is told apart."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inner: dict[str, int] = {}

    def ends_at(self, closing: bool, name: str) -> bool:
        """Whether this tag ends the hidden element (else it is counted)."""
        if not closing:
            if name in _IMPLICIT_END.get(self.name, frozenset()) and not self.inner:
                return True
            if name not in _VOID:
                self.inner[name] = self.inner.get(name, 0) + 1
            return False
        open_inside = self.inner.get(name, 0)
        if open_inside > 1:
            self.inner[name] = open_inside - 1
            return False
        if open_inside == 1:
            del self.inner[name]
            return False
        return True  # its own end tag, or the end of an element around it


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML document or fragment (linear in its length).

    Elements that are not shown (``display:none``, ``hidden``) give no text; when one is
    never closed, so that it would hide the rest of the document, the document is read
    again with every element shown; a ``reversed`` list without ``start`` counts down from
    its number of items, counted in one more pass (three passes at most: still linear)."""
    hide = True
    w = _convert(html, hide=hide)
    if w is None:
        hide = False
        w = _convert(html, hide=hide)
        assert w is not None
    if w.reversed_counted:  # again, now that each reversed list's items are counted
        counted = _convert(html, hide=hide, reversed_counts=w.reversed_items)
        assert counted is not None
        w = counted
    return _finish(w)


def _convert(html: str, *, hide: bool, reversed_counts: list[int] | None = None) -> _Writer | None:
    """The document read into a writer; ``None`` when (``hide``) a hidden element runs to
    the end of it. ``reversed_counts``: the items of each reversed list, in order."""
    w = _Writer()
    w.reversed_counts = reversed_counts or []
    hidden: _Hidden | None = None
    i = 0
    n = len(html)
    next_gt = -1
    while i < n:
        lt = html.find("<", i)
        if lt < 0:
            if hidden is None:
                w.text(html[i:])
            break
        if lt > i and hidden is None:
            w.text(html[i:lt])
        if html.startswith("<!--", lt):
            end = html.find("-->", lt + 4)
            if end < 0:
                break
            i = end + 3
            continue
        if next_gt < lt:
            next_gt = html.find(">", lt)
            if next_gt < 0:
                if hidden is None:
                    w.text(html[lt:])
                break
        match = _TAG.match(html, lt)
        if match is None:
            if html[lt + 1 : lt + 2] in ("!", "?"):
                i = next_gt + 1  # doctype, CDATA opener, processing instruction
            else:
                if hidden is None:
                    w.text("<")
                i = lt + 1
            continue
        name = match.group(2).lower()
        closing = match.group(1) == "/" and name != "br"  # </br> is read as <br>, as HTML does
        attr_text = html[match.end() : next_gt]
        i = next_gt + 1
        if not closing and name in _RAW_END:
            found = _RAW_END[name].search(html, i)
            if found is None:
                break
            i = found.end()
            continue
        if hidden is not None:
            if not hidden.ends_at(closing, name):
                continue
            own_end = closing and name == hidden.name
            hidden = None
            if own_end:
                continue
        if _select_tag(w, closing, name, attr_text):
            continue
        if _word_marker_tag(w, closing, name, attr_text):
            continue
        if closing:
            _end(w, name)
        elif hide and _hidden(attr_text):
            if name not in _VOID:
                hidden = _Hidden(name)
        else:
            _start(w, name, attr_text)
    if hidden is not None:
        return None
    return w


def _finish(w: _Writer) -> str:
    """The writer's lines as text: open links and tables written, blank lines trimmed at
    both ends."""
    _end_marker(w)
    _end_select(w)
    while w.links:
        _end(w, "a")  # a link never closed still shows its URL
    w.close_tables()
    w.newline()
    while w.lines and not w.lines[-1].strip("> "):
        w.lines.pop()
    first = 0
    while first < len(w.lines) and not w.lines[first].strip("> "):
        first += 1  # one slice below, not a pop(0) per blank line (quadratic)
    return "\n".join(w.lines[first:])
