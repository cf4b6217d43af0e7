"""The readable text of text formats that are not ``text/plain`` or ``text/html``.

A message whose only text is ``text/enriched`` (RFC 1896), RTF (``text/rtf``,
``application/rtf``, the ``PR_RTF_COMPRESSED`` of a ``winmail.dat``) or a calendar
invitation (``text/calendar``, RFC 5545: its ``SUMMARY``, ``LOCATION`` and ``DESCRIPTION``)
still says something a desk needs. Intake reads it with these functions when the message has
no plain or HTML text of its own.

Each function is one linear pass (a tokenising regex whose tokens are bounded, or a split
into lines) and never raises for any input: formatting it does not know is dropped, text
is kept.
"""

from __future__ import annotations

import re

from asm_email_rules.charsets import code_page_codec
from asm_email_rules.html_text import html_to_text

__all__ = ["calendar_text", "enriched_text", "rtf_text"]

_ENRICHED_TOKEN = re.compile(r"<<|<(/?)([A-Za-z0-9-]{1,60})>|(\n+)|[^<\n]+|<")
"""An RFC 1896 token: ``<<`` (a literal ``<``), a command, a run of line breaks, text."""
_ENRICHED_HIDDEN = frozenset({"param"})
"""Commands whose content is a parameter of the one before it, not text."""


def enriched_text(text: str) -> str:
    """The text of a ``text/enriched`` body (RFC 1896 section 2): commands dropped, ``<<`` a
    ``<``, a single line break a space and a run of n line breaks n - 1 of them (``nofill``
    keeps its line breaks), the content of ``<param>`` dropped."""
    text = text.replace("\r\n", "\n")
    out: list[str] = []
    hidden = nofill = 0
    for match in _ENRICHED_TOKEN.finditer(text):
        token = match[0]
        if token == "<<":
            if not hidden:
                out.append("<")
        elif match[2] is not None:
            name = match[2].lower()
            step = -1 if match[1] else 1
            if name in _ENRICHED_HIDDEN:
                hidden = max(hidden + step, 0)
            elif name == "nofill":
                nofill = max(nofill + step, 0)
        elif hidden:
            continue
        elif match[3] is not None:
            breaks = len(token)
            out.append(token if nofill else "\n" * (breaks - 1) if breaks > 1 else " ")
        else:
            out.append(token)
    return _tidy("".join(out))


_RTF_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?[0-9]{1,10})? ?|\\'([0-9a-fA-F]{2})|\\(.)"
    rb"|([{}])|([^\\{}\r\n]+)|[\r\n]+",
    re.DOTALL,
)
"""An RTF token: a control word with its number and delimiting space, a hex byte, a control
symbol, a brace, a run of text, line ends (which RTF ignores)."""
_RTF_SKIPPED = frozenset(
    {
        b"fonttbl",
        b"colortbl",
        b"stylesheet",
        b"info",
        b"pict",
        b"object",
        b"header",
        b"headerl",
        b"headerr",
        b"headerf",
        b"footer",
        b"footerl",
        b"footerr",
        b"footerf",
        b"listtable",
        b"listoverridetable",
        b"rsidtbl",
        b"generator",
        b"themedata",
        b"colorschememapping",
        b"datastore",
        b"latentstyles",
        b"fldinst",
        b"filetbl",
        b"revtbl",
        b"xmlnstbl",
        b"mmathPr",
    }
)
"""Destinations whose content is not text (RTF 1.9.1 specification)."""
_RTF_WORDS = {
    b"par": "\n",
    b"line": "\n",
    b"sect": "\n",
    b"page": "\n",
    b"row": "\n",
    b"tab": "\t",
    b"cell": " | ",
    b"emdash": "\u2014",
    b"endash": "\u2013",
    b"bullet": "\u2022",
    b"lquote": "\u2018",
    b"rquote": "\u2019",
    b"ldblquote": "\u201c",
    b"rdblquote": "\u201d",
    b"emspace": " ",
    b"enspace": " ",
}
_RTF_SYMBOLS = {
    b"\n": "\n",
    b"\r": "\n",
    b"~": "\u00a0",
    b"_": "\u2011",
    b"\\": "\\",
    b"{": "{",
    b"}": "}",
}
_MAX_RTF_GROUPS = 1000
"""Nested groups whose state is kept; deeper ones share their parent's (bounded memory)."""


def rtf_text(data: bytes) -> str:
    """The text of an RTF document: groups of destinations that hold no text (font and colour
    tables, pictures, ``\\*`` destinations such as the HTML tags of Outlook's encapsulated
    HTML) dropped, as is what ``\\htmlrtf`` marks as RTF-only, and the data of ``\\binN``
    (whose bytes could hold braces); paragraphs and line breaks as line breaks; ``\\'hh``
    bytes read in the document's ``\\ansicpg`` (windows-1252 by default); ``\\uN`` as the
    character, its ``\\ucN`` fallback characters skipped.

    Outlook's RTF of an HTML mail (``\\fromhtml1``, [MS-OXRTFEX]) is read as the HTML it
    encapsulates: the ``\\*\\htmltag`` groups give the tags (its paragraphs, line breaks and
    ``&nbsp;`` are only there), the text between them the text, and the whole is read by
    :func:`~asm_email_rules.html_text.html_to_text`."""
    out: list[str] = []
    pending = bytearray()  # \'hh bytes not yet decoded (a multi-byte code page's pair)
    codec = "cp1252"
    # per open group: (skipped, characters to skip after \u, an HTML tag); a deeper group
    # shares its state
    stack: list[tuple[bool, int, bool]] = []
    extra_depth = 0
    skip, uc, in_tag = False, 1, False
    html_rtf = from_html = False
    fallback = 0  # fallback characters of a \u still to skip

    def flush() -> None:
        if pending:
            out.append(pending.decode(codec, "replace"))
            pending.clear()

    pos, end = 0, len(data)
    while pos < end:
        match = _RTF_TOKEN.match(data, pos)
        if match is None:  # a lone backslash at the end
            break
        pos = match.end()
        word, number, hexbyte, symbol, brace, run = match.groups()
        if brace is not None:
            flush()
            fallback = 0
            if brace == b"{":
                if len(stack) < _MAX_RTF_GROUPS:
                    stack.append((skip, uc, in_tag))
                else:
                    extra_depth += 1
            elif extra_depth:
                extra_depth -= 1
            elif stack:
                skip, uc, in_tag = stack.pop()
            continue
        hidden = skip or (html_rtf and not in_tag)  # an HTML tag is never RTF-only
        if word is not None:
            if word == b"bin" and number is not None:  # N bytes of binary data: never text
                pos += max(int(number), 0)
            elif word in _RTF_SKIPPED:
                skip = True
            elif word == b"ansicpg" and number is not None:
                codec = code_page_codec(int(number.decode()), codec)
            elif word == b"uc" and number is not None:
                uc = min(int(number), 10)
            elif word == b"htmlrtf":
                html_rtf = number != b"0"
            elif word == b"fromhtml":
                from_html = number != b"0"
            elif word == b"htmltag" and from_html and stack and not stack[-1][0]:
                skip, in_tag = False, True  # its \* made it skipped: its text is HTML
            elif hidden:
                pass
            elif word == b"u" and number is not None:
                flush()
                value = int(number) % 65536
                out.append(chr(value) if not 0xD800 <= value < 0xE000 else "\ufffd")
                fallback = uc
            elif word in _RTF_WORDS:
                flush()
                out.append(_RTF_WORDS[word])
            continue
        if symbol is not None:
            if symbol == b"*":  # an optional destination: its group holds no text we read
                skip = True
            elif not hidden and symbol in _RTF_SYMBOLS:
                if fallback:
                    fallback -= 1
                    continue
                flush()
                out.append(_RTF_SYMBOLS[symbol])
            continue
        if hidden:
            continue
        if hexbyte is not None:
            if fallback:
                fallback -= 1
                continue
            pending.append(int(hexbyte, 16))
            continue
        if run is not None:
            flush()
            text = run.decode(codec, "replace")
            if fallback:
                dropped = min(fallback, len(text))
                text, fallback = text[dropped:], fallback - dropped
            out.append(text)
    flush()
    if from_html:
        return _tidy(html_to_text("".join(out)))
    return _tidy("".join(out))


_ICS_UNFOLD = re.compile(r"\r?\n[ \t]")
_ICS_ESCAPE = re.compile(r"\\([\\;,nN])")
_ICS_FIELDS = ("SUMMARY", "LOCATION", "DESCRIPTION")
_MAX_CALENDAR_EVENTS = 20


def calendar_text(text: str) -> str:
    """The text of a calendar invitation (RFC 5545): for each event (at most 20), its
    ``SUMMARY``, ``LOCATION`` and ``DESCRIPTION`` (folded lines joined, ``\\n``, ``\\,``,
    ``\\;`` and ``\\\\`` unescaped, section 3.3.11), the summary and location as labelled
    lines and the description below them."""
    unfolded = _ICS_UNFOLD.sub("", text)
    events: list[str] = []
    current: dict[str, str] = {}
    depth = 0
    inner = 0  # components open inside the event (a VALARM's DESCRIPTION is its own)
    for line in unfolded.splitlines():
        name, value = _content_line(line)
        key = name.partition(";")[0].strip().upper()
        component = value.strip().upper()
        if key == "BEGIN" and component in ("VEVENT", "VTODO"):
            depth += 1
            current = {}
            inner = 0
        elif key == "END" and component in ("VEVENT", "VTODO") and depth:
            depth -= 1
            events.append(_event_text(current))
            if len(events) >= _MAX_CALENDAR_EVENTS:
                break
        elif depth and key == "BEGIN":
            inner += 1
        elif depth and key == "END":
            inner = max(inner - 1, 0)
        elif depth and not inner and key in _ICS_FIELDS and key not in current:
            current[key] = _ICS_ESCAPE.sub(_ics_unescape, value).strip()
    return _tidy("\n\n".join(event for event in events if event))


def _content_line(line: str) -> tuple[str, str]:
    """The name (with its parameters) and the value of an RFC 5545 content line (section
    3.1): the value starts at the first colon outside a quoted parameter value, as in
    ``DESCRIPTION;ALTREP="CID:part3@example.com":text``. A line with no such colon has no
    value. Linear: each search starts where the last one stopped."""
    pos = 0
    colon = line.find(":")
    while colon >= 0:
        quote = line.find('"', pos, colon)
        if quote < 0:
            return line[:colon], line[colon + 1 :]
        close = line.find('"', quote + 1)
        if close < 0:
            break
        pos = close + 1
        if colon < pos:
            colon = line.find(":", pos)
    return line, ""


def _ics_unescape(match: re.Match[str]) -> str:
    char = match[1]
    return "\n" if char in "nN" else char


def _event_text(fields: dict[str, str]) -> str:
    lines = [
        f"{label}: {fields[key]}"
        for key, label in (("SUMMARY", "Subject"), ("LOCATION", "Location"))
        if fields.get(key)
    ]
    description = fields.get("DESCRIPTION", "")
    if description:
        lines.append(("\n" if lines else "") + description)
    return "\n".join(lines)


_MANY_BREAKS = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    """Trailing spaces of lines removed, at most one blank line in a row, no blank ends."""
    text = "\n".join(line.rstrip(" \t") for line in text.replace("\r", "").split("\n"))
    return _MANY_BREAKS.sub("\n\n", text).strip()
