"""Raw RFC 5322 bytes -> :class:`~asm_email_rules.model.InboundEmail`, linear and never crashing.

One linear pass splits the MIME tree itself (``bytes.find`` on boundary lines) so limits are
checked before anything expensive runs and no recursion happens; the stdlib ``compat32``
``Message`` reads part parameters (RFC 2231), and the ``policy.default`` header registry parses
the address headers one bounded address at a time (it is quadratic on long lists).
"""

from __future__ import annotations

import binascii
import codecs
import functools
import hashlib
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email import policy as email_policy
from email.errors import InvalidHeaderDefect
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value, parsedate_to_datetime

import attrs
from dateutil import parser as date_parser

from asm_email_rules.errors import MessageParseError
from asm_email_rules.html_text import html_to_text
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind
from asm_email_rules.model import Attachment, InboundEmail, LimitKind, LimitViolation
from asm_email_rules.settings import Limits

__all__ = [
    "decode_header_text",
    "parse_address",
    "parse_address_list",
    "parse_message",
    "parse_msg_ids",
]

_LOG = logging.getLogger(__name__)

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ADDRESS_SPECIALS = re.compile(r'["(:;\\]')
_HEADER_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\n]*\n(?:[ \t][^\n]*\n)*)*")
_HEADER_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):([^\n]*\n(?:[ \t][^\n]*\n)*)")
_MSGID = re.compile(r"<([^<>]*)>")
_RFC5322_DATE = re.compile(
    r"\s*(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s+([+-])(\d{2})(\d{2})(?:\s|$)"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_FIELD_START = re.compile(rb"\n[^ \t\r\n]")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_LINE_BREAKS = re.compile(r"[\t\r\n]")
_SPACES = re.compile(r"\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*(?:"|$)|[^;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")
_B64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SIMPLE_ADDR = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_SIMPLE_MAILBOX = re.compile(
    r'\s*(?:"(?P<q>[^"\\\r\n]*)"|(?P<p>[A-Za-z0-9 _\'-]*?))\s*<(?P<a>'
    + _SIMPLE_ADDR.pattern
    + r")>\s*"
)
_SIMPLE_BARE = re.compile(r"\s*(?P<a>" + _SIMPLE_ADDR.pattern + r")\s*")

_ADDRESS_HEADERS = ("from", "reply-to", "to", "cc")
_MIME_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding", "content-id"}
)
_MAX_PIECE = 2048  # one address given to the (quadratic) header registry
_MAX_ADDRESSES = 1000  # addresses kept per address header
_MAX_MIME_HEADER = (
    8192  # Content-Type/-Disposition given to compat32 (its param parser is quadratic)
)
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n"
_MAX_DATE = 200  # characters of Date given to dateutil
_MAX_HTML_TEXT = 1_000_000  # characters of HTML converted to the text body
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
}


# --------------------------------------------------------------------------- text decoding


@functools.lru_cache(maxsize=256)
def _codec(name: str | None) -> str | None:
    """Python codec name for a MIME charset, or None when unknown or not a text codec."""
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip('"').lower())
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None, what: str, notes: list[IntakeNote]) -> str:
    """Decode with the declared charset, then UTF-8, windows-1252, latin-1; note each fallback."""
    codec = _codec(charset)
    if codec is not None:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError, ValueError):
            kind = IntakeNoteKind.UNDECODABLE_BYTES
            problem = f"{what}: bytes invalid in declared charset {charset!r}"
    elif charset:
        kind = IntakeNoteKind.UNKNOWN_CHARSET
        problem = f"{what}: charset {charset!r} unknown"
    else:
        kind = IntakeNoteKind.UNDECLARED_8BIT_TEXT
        problem = ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if problem:
            notes.append(IntakeNote(kind, f"{problem}; decoded as utf-8"))
        return text
    try:
        text = data.decode("windows-1252")
        used = "windows-1252"
    except UnicodeDecodeError:
        text = data.decode("latin-1", errors="replace")
        used = "latin-1"
    problem = problem or f"{what}: no charset and not utf-8"
    notes.append(IntakeNote(kind, f"{problem}; decoded as {used}"))
    return text


def _header_bytes_to_str(value: bytes, name: str, notes: list[IntakeNote]) -> str:
    """Raw header bytes to text: ASCII, else UTF-8 (RFC 6532), else a noted legacy fallback."""
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text, used = value.decode("windows-1252"), "windows-1252"
    except UnicodeDecodeError:
        text, used = value.decode("latin-1"), "latin-1"
    notes.append(
        IntakeNote(
            IntakeNoteKind.NON_UTF8_HEADER,
            f"header {name!r} has 8-bit bytes that are not utf-8; decoded as {used}",
        )
    )
    return text


def _decode_word(charset: str, enc: str, text: str) -> bytes | None:
    """Bytes of one encoded-word, or None when its base64 is broken."""
    if enc in "bB":
        if not _B64_TEXT.fullmatch(text):
            return None
        core = text.rstrip("=")
        if len(core) % 4 == 1:
            return None
        try:
            return binascii.a2b_base64(core + "=" * (-len(core) % 4))
        except binascii.Error:
            return None
    return binascii.a2b_qp(text.encode("ascii", "replace"), header=True)


def decode_header_text(
    value: str, notes: list[IntakeNote] | None = None, what: str = "header"
) -> str:
    """Decode RFC 2047 encoded-words (broken ones stay as text) and turn control chars to spaces.

    Adjacent encoded-words in one charset are joined before decoding (a character may be split
    across them); whitespace between encoded-words is dropped (RFC 2047 section 6.2).
    """
    sink: list[IntakeNote] = notes if notes is not None else []
    if "=?" not in value:
        return _clean(value)
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_cs = ""
    last_end = 0
    after_word = False

    def flush() -> None:
        nonlocal pending, pending_cs
        if pending_cs:
            out.append(decode_bytes(bytes(pending), pending_cs, what, sink))
        pending = bytearray()
        pending_cs = ""

    for match in _ENCODED_WORD.finditer(value):
        gap = value[last_end : match.start()]
        last_end = match.end()
        charset = match.group(1).split("*", 1)[0]
        data = _decode_word(charset, match.group(2), match.group(3))
        if not (after_word and gap.strip() == ""):
            flush()
            out.append(gap)
        if data is None:
            flush()
            sink.append(
                IntakeNote(
                    IntakeNoteKind.BROKEN_ENCODED_WORD, f"{what}: broken encoded-word kept as text"
                )
            )
            out.append(match.group(0))
            after_word = False
            continue
        if pending_cs and charset.lower() != pending_cs.lower():
            flush()
        pending_cs = charset
        pending += data
        after_word = True
    flush()
    out.append(value[last_end:])
    return _clean("".join(out))


def _clean(text: str) -> str:
    """CR, LF and TAB become spaces; other control characters are removed."""
    found = _ANY_CONTROL.search(text)
    if found is None:
        return text
    if found.group() == "\t":  # the common case: a folded header's tab
        text = text.replace("\t", " ")
        if _ANY_CONTROL.search(text, found.start()) is None:
            return text
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", text))


# --------------------------------------------------------------------------- MIME parameters


def _mime_params(value: str | None, default: str) -> tuple[str, dict[str, str]]:
    """Lower-cased type and parameters of Content-Type / Content-Disposition.

    A regex reads the plain form; values with RFC 2231 ``name*`` parameters go through the
    stdlib ``compat32`` parser (continuations and charsets). The value is length-capped before.
    """
    if value is None:
        return default, {}
    head, _, rest = value.partition(";")
    kind = head.strip().lower()
    if default and kind.count("/") != 1:
        kind = default
    if not rest:
        return kind, {}
    if "*" not in rest:
        params: dict[str, str] = {}
        for match in _PARAM.finditer(";" + rest):
            raw_value = match.group(2).strip()
            if raw_value.startswith('"'):
                raw_value = (
                    raw_value[1:-1]
                    if raw_value.endswith('"') and len(raw_value) > 1
                    else raw_value[1:]
                )
                if "\\" in raw_value:
                    raw_value = _QUOTED_PAIR.sub(r"\1", raw_value)
            params.setdefault(match.group(1).lower(), raw_value)
        return kind, params
    meta = Message(policy=compat32)
    meta["content-type"] = "x/x;" + rest
    out: dict[str, str] = {}
    try:
        pairs = meta.get_params(header="content-type") or []
    except Exception:  # defensive: stdlib parameter parsing on hostile input
        pairs = []
    for name, param in pairs[1:]:
        out.setdefault(str(name).lower(), str(collapse_rfc2231_value(param)))
    return kind, out


# --------------------------------------------------------------------------- addresses


def _split_addresses(value: str) -> Iterator[str]:
    """Split an address list at top-level commas (quotes, comments, <> respected); drop groups."""
    if _ADDRESS_SPECIALS.search(value) is None:
        yield from value.split(",")
        return
    start = 0
    depth = 0
    quoted = False
    angle = False
    escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif depth:
            depth += 1 if ch == "(" else -1 if ch == ")" else 0
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth = 1
        elif angle:
            angle = ch != ">"
        elif ch == "<":
            angle = True
        elif ch in ",;":
            yield value[start:i]
            start = i + 1
        elif ch == ":":
            start = i + 1  # a group's display name
    yield value[start:]


def parse_address(piece: str) -> tuple[str, str] | None:
    """``(display_name, addr_spec)`` of ONE mailbox via the header registry, or None if invalid.

    A strict regex covers the unambiguous common forms first; anything else goes to the
    ``policy.default`` registry, and a registry result with an invalid-address defect (the
    CVE-2023-27043 shape ``a@evil <b@good>``) counts as no address.
    """
    simple = _SIMPLE_MAILBOX.fullmatch(piece)
    if simple is not None:
        name = simple.group("q") if simple.group("q") is not None else simple.group("p")
        return " ".join(name.split()), simple.group("a")
    simple = _SIMPLE_BARE.fullmatch(piece)
    if simple is not None:
        return "", simple.group("a")
    if len(piece) > _MAX_PIECE:
        return None
    try:
        header = email_policy.default.header_factory("To", piece)
        addresses = header.addresses
        defects = header.defects
    except Exception:  # the registry raises IndexError and others on some garbage
        return None
    if len(addresses) != 1 or any(isinstance(d, InvalidHeaderDefect) for d in defects):
        return None
    address = addresses[0]
    if not address.username or not address.domain:
        return None
    return _clean(str(address.display_name)), str(address.addr_spec)


def parse_address_list(
    value: str, notes: list[IntakeNote] | None = None, what: str = "To"
) -> list[tuple[str, str]]:
    """Every valid mailbox of an address header, at most 1000, one bounded registry call each."""
    found: list[tuple[str, str]] = []
    sink: list[IntakeNote] = notes if notes is not None else []
    bad = 0
    for piece in _split_addresses(value):
        if not piece.strip():
            continue
        if len(found) >= _MAX_ADDRESSES:
            sink.append(
                IntakeNote(
                    IntakeNoteKind.TOO_MANY_ADDRESSES,
                    f"{what}: more than {_MAX_ADDRESSES} addresses; the rest ignored",
                )
            )
            break
        parsed = parse_address(piece)
        if parsed is None:
            bad += 1
        else:
            found.append(parsed)
    if bad:
        sink.append(
            IntakeNote(
                IntakeNoteKind.INVALID_ADDRESS,
                f"{what}: {bad} address(es) could not be parsed and were ignored",
            )
        )
    return found


def _return_path(value: str) -> str:
    """Envelope sender of ``Return-Path``: ``""`` for the null path ``<>``."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        inner = value[start + 1 : end if end >= 0 else len(value)]
        return "".join(inner.split())
    parts = value.split()
    return parts[0] if parts else ""


# --------------------------------------------------------------------------- msg-ids


def parse_msg_ids(value: str) -> tuple[str, ...]:
    """Message-IDs in a header as ``<left@right>`` tokens, skipping comments; linear scan.

    A value with no ``<...>`` but bare ``left@right`` words yields those words in brackets.
    """
    if "(" not in value and "<" in value:
        found = _MSGID.findall(value)
        if found and value.count("<") == len(found):
            return tuple(
                f"<{''.join(mid.split())}>" if " " in mid or "\t" in mid else f"<{mid}>"
                for mid in found
                if mid.strip()
            )
    ids: list[str] = []
    i = 0
    n = len(value)
    depth = 0
    while i < n:
        ch = value[i]
        if depth:
            if ch == "\\":
                i += 1
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            i += 1
        elif ch == "(":
            depth = 1
            i += 1
        elif ch == "<":
            end = value.find(">", i + 1)
            if end < 0:
                break
            inner = "".join(value[i + 1 : end].split())
            if inner and "<" not in inner:
                ids.append(f"<{inner}>")
            i = end + 1
        else:
            nxt = value.find("<", i)
            par = value.find("(", i)
            stops = [p for p in (nxt, par) if p >= 0]
            i = min(stops) if stops else n
    if not ids:
        ids = [f"<{word.strip('<>')}>" for word in value.split() if "@" in word.strip("<>")]
    return tuple(ids)


# --------------------------------------------------------------------------- MIME structure


@attrs.define
class _Part:
    """One MIME part found by the scanner: header pairs and the byte range of its body."""

    headers: list[tuple[bytes, bytes]]
    body_start: int
    body_end: int
    depth: int
    kept: bool = True
    children: list[_Part] = attrs.Factory(list)
    ctype: str = "text/plain"
    boundary: str | None = None
    params: dict[str, str] = attrs.Factory(dict)
    disposition: str | None = None
    filename: str = ""
    cte: str = ""
    content_id: str | None = None


@attrs.define
class _Level:
    """An open multipart: its boundary and the part currently being read inside it."""

    boundary: bytes
    part: _Part
    previous: int | None
    current: _Part | None = None


class _Intake:
    """State of one parse: the raw bytes, the limits, and the notes and violations so far."""

    def __init__(self, raw: bytes, limits: Limits) -> None:
        self.raw = raw
        self.limits = limits
        self.notes: list[IntakeNote] = []
        self.violations: dict[LimitKind, LimitViolation] = {}
        self.cut_at = 0
        self.part_count = 0
        self.max_depth = 0

    def note(self, kind: IntakeNoteKind, detail: str) -> None:
        """Record a repair intake made."""
        self.notes.append(IntakeNote(kind, detail))

    def violate(self, kind: LimitKind, limit: int, actual: int, detail: str) -> None:
        """Record a limit violation (the largest ``actual`` per kind)."""
        old = self.violations.get(kind)
        if old is None or actual > old.actual:
            self.violations[kind] = LimitViolation(kind, limit, actual, detail)

    # -- headers ------------------------------------------------------------------------

    def read_headers(self, pos: int, top: bool) -> tuple[list[tuple[bytes, bytes]], int]:
        """Header fields from ``pos`` to the blank line (or first non-header line); body start."""
        if top and not self.cut_at:
            fast = self.read_headers_fast()
            if fast is not None:
                return fast
        return self.read_headers_slow(pos, top)

    def read_headers_fast(self) -> tuple[list[tuple[bytes, bytes]], int] | None:
        """The top-level header in one regex pass when it is well formed and within the limits."""
        raw = self.raw
        blank = _BLANK_LINE.search(raw, 0, self.limits.max_header_bytes + 2)
        if blank is None or raw[:1] in (b" ", b"\t", b"\r", b"\n"):
            return None
        block = raw[: blank.start() + 1]
        if _HEADER_BLOCK.fullmatch(block) is None:
            return None  # a line that is not a header field: let the careful reader decide
        fields = _HEADER_FIELD.findall(block)
        if len(fields) > self.limits.max_header_count:
            return None
        out = [
            (name, value.replace(b"\r\n", b"").replace(b"\n", b"").strip(b" \t"))
            if value.count(b"\n") > 1
            else (name, value.strip(b" \t\r\n"))
            for name, value in fields
        ]
        return out, blank.end()

    def read_headers_slow(self, pos: int, top: bool) -> tuple[list[tuple[bytes, bytes]], int]:
        """Header fields line by line, applying the count, size and line-length limits."""
        raw = self.raw
        n = len(raw)
        limits = self.limits
        fields: list[tuple[bytes, list[bytes]]] = []
        start = pos
        count = 0
        dropped = 0
        over_bytes = False
        while pos < n:
            if pos - start > limits.max_header_bytes or (
                count >= limits.max_header_count and raw[pos] not in (32, 9)
            ):
                # budget spent: skip to the end of the header section at C speed
                blank = _BLANK_LINE.search(raw, max(pos - 1, 0))
                stop = blank.end() if blank is not None else n
                extra = len(_FIELD_START.findall(raw, max(pos - 1, 0), stop))
                dropped += extra
                count += extra
                over_bytes = over_bytes or stop - start > limits.max_header_bytes
                pos = stop
                break
            nl = raw.find(b"\n", pos)
            end = n if nl < 0 else nl + 1
            first = raw[pos]
            if first in (10, 13) and raw[pos:end].strip(b"\r\n") == b"":
                pos = end
                break
            if first in (32, 9):
                if fields:
                    fields[-1][1].append(raw[pos:end])
                pos = end
                continue
            colon = raw.find(b":", pos, end)
            if colon <= pos or not _FIELD_NAME.fullmatch(raw, pos, colon):
                if not fields and raw.startswith(b"From ", pos):
                    pos = end  # mbox "From " line
                    continue
                break
            count += 1
            fields.append((raw[pos:colon], [raw[colon + 1 : end]]))
            pos = end
        if (dropped or over_bytes) and (top or count > limits.max_header_count or over_bytes):
            if over_bytes:
                self.violate(
                    LimitKind.HEADER_BYTES,
                    limits.max_header_bytes,
                    pos - start,
                    f"header section over {limits.max_header_bytes} bytes; "
                    f"the rest of it ({dropped} header field(s) more) dropped",
                )
            else:
                self.violate(
                    LimitKind.HEADER_COUNT,
                    limits.max_header_count,
                    count,
                    f"{dropped} header(s) after the first {limits.max_header_count} dropped",
                )
        out: list[tuple[bytes, bytes]] = []
        for name, pieces in fields:
            value = b"".join(pieces) if len(pieces) > 1 else pieces[0]
            value = value.replace(b"\r\n", b"").replace(b"\n", b"").strip(b" \t\r")
            if self.cut_at and len(value) > self.cut_at:
                value = value[: self.cut_at]
            out.append((name, value))
        return out, pos

    # -- MIME -----------------------------------------------------------------------------

    def make_part(self, pos: int, depth: int, parent: _Part | None) -> _Part:
        """Read a part's headers at ``pos`` and attach it to ``parent`` if within the limits."""
        headers, body_start = self.read_headers(pos, top=parent is None)
        mime: dict[str, str] = {}
        for name, value in headers:
            if not name[:8].lower().startswith(b"content-"):
                continue
            lname = name.decode("ascii").lower()
            if lname in _MIME_HEADERS and lname not in mime:
                mime[lname] = _header_bytes_to_str(value, lname, self.notes)
        return self.new_part(headers, body_start, depth, parent, mime)

    def new_part(
        self,
        headers: list[tuple[bytes, bytes]],
        body_start: int,
        depth: int,
        parent: _Part | None,
        mime: dict[str, str],
    ) -> _Part:
        """A part from its headers (``mime``: first Content-* values, lower-case names)."""
        part = _Part(headers, body_start, len(self.raw), depth)
        mime = {key: value[:_MAX_MIME_HEADER] for key, value in mime.items()}
        default = "text/plain"
        if parent is not None and parent.ctype == "multipart/digest":
            default = "message/rfc822"
        part.ctype, part.params = _mime_params(mime.get("content-type"), default)
        disposition, disp_params = _mime_params(mime.get("content-disposition"), "")
        part.disposition = disposition or None
        part.filename = disp_params.get("filename") or part.params.get("name") or ""
        part.cte = mime.get("content-transfer-encoding", "").strip().lower()
        cid = mime.get("content-id")
        part.content_id = (_clean(cid).strip() or None) if cid is not None else None
        if part.ctype.startswith("multipart/"):
            boundary = part.params.get("boundary", "").rstrip()
            if boundary:
                part.boundary = boundary
            else:
                self.note(
                    IntakeNoteKind.NO_BOUNDARY_IN_MULTIPART,
                    f"{part.ctype} part without boundary read as text",
                )
                part.ctype = "text/plain"
        if depth > self.max_depth:
            self.max_depth = depth
        if parent is not None:
            if not parent.kept or depth > self.limits.max_mime_depth:
                part.kept = False
            else:
                self.part_count += 1
                if self.part_count > self.limits.max_part_count:
                    part.kept = False
                else:
                    parent.children.append(part)
        return part

    def scan(self, root: _Part) -> None:
        """Split the multipart tree in one pass over the boundary lines (no recursion)."""
        raw = self.raw
        n = len(raw)
        levels: list[_Level] = []
        index: dict[bytes, int] = {}

        def push(part: _Part) -> None:
            assert part.boundary is not None
            key = part.boundary.encode("utf-8", "surrogateescape")
            levels.append(_Level(key, part, index.get(key)))
            index[key] = len(levels) - 1

        def pop() -> None:
            level = levels.pop()
            if level.previous is None:
                del index[level.boundary]
            else:
                index[level.boundary] = level.previous

        push(root)
        pos = max(root.body_start - 1, 0)
        while levels:
            i = raw.find(b"\n--", pos)  # root.body_start >= 1: a header precedes any boundary
            if i < 0:
                break
            line_start = i + 1
            nl = raw.find(b"\n", line_start)
            line_end = n if nl < 0 else nl
            token = raw[line_start + 2 : line_end].rstrip(b" \t\r")
            k = index.get(token)
            closing = False
            if k is None and token.endswith(b"--"):
                k = index.get(token[:-2])
                closing = k is not None
            if k is None:
                pos = line_end
                continue
            end = i - 1 if i > 0 and raw[i - 1] == 13 else i
            while len(levels) - 1 > k:
                level = levels[-1]
                if level.current is not None:
                    level.current.body_end = max(end, level.current.body_start)
                level.part.body_end = max(end, level.part.body_start)
                pop()
            level = levels[k]
            if level.current is not None:
                level.current.body_end = max(end, level.current.body_start)
                level.current = None
            if closing:
                level.part.body_end = max(end, level.part.body_start)
                pop()
                pos = line_end
                continue
            child = self.make_part(min(line_end + 1, n), level.part.depth + 1, level.part)
            level.current = child
            if self.part_count > self.limits.max_part_count:
                break  # every later part is dropped: no need to read on
            if child.boundary is not None and child.kept:
                push(child)  # a part too deep stays opaque: its own boundaries are not tracked
            pos = max(child.body_start - 1, line_end)
            if pos >= n:
                break
        for level in levels:
            if level.current is not None:
                level.current.body_end = n

    # -- leaves ---------------------------------------------------------------------------

    def transfer_decode(self, part: _Part, what: str) -> bytes:
        """Body bytes of a leaf with its Content-Transfer-Encoding undone (never raises)."""
        cte = part.cte
        if cte == "base64":
            view = memoryview(self.raw)[part.body_start : part.body_end]
            if _has_invalid_base64(self.raw, part.body_start, part.body_end):
                self.note(
                    IntakeNoteKind.INVALID_BASE64_CHARACTERS,
                    f"{what}: invalid characters in base64 ignored",
                )
            try:
                return binascii.a2b_base64(view)
            except binascii.Error:
                cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", view)
                cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
                self.note(
                    IntakeNoteKind.INVALID_BASE64_LENGTH,
                    f"{what}: invalid base64 repaired (trailing bits dropped)",
                )
                try:
                    return binascii.a2b_base64(cleaned)
                except binascii.Error:
                    return b""
        data = self.raw[part.body_start : part.body_end]
        if cte == "quoted-printable":
            return binascii.a2b_qp(data)
        if cte and cte not in ("7bit", "8bit", "binary"):
            self.note(
                IntakeNoteKind.UNKNOWN_TRANSFER_ENCODING,
                f"{what}: transfer encoding {cte!r} unknown; kept as is",
            )
        return data

    def text_of(self, part: _Part, what: str) -> str:
        """Decoded text of a text part, line endings normalised to ``\\n``."""
        data = self.transfer_decode(part, what)
        text = decode_bytes(data, part.params.get("charset"), what, self.notes)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.cut_at:
            text = _cut_lines(text, self.cut_at)
        return text

    def leaves(self, root: _Part) -> Iterator[_Part]:
        """Kept leaf parts in document order (iterative walk)."""
        stack = [root]
        while stack:
            part = stack.pop()
            if part.boundary is None:
                yield part
            else:
                stack.extend(reversed(part.children))

    # -- the whole message ----------------------------------------------------------------

    def run(self) -> InboundEmail:
        """Parse the whole message."""
        raw = self.raw
        limits = self.limits
        headers_only = False
        if len(raw) > limits.max_total_size:
            headers_only = True
            self.violate(
                LimitKind.TOTAL_SIZE,
                limits.max_total_size,
                len(raw),
                "message over the size limit: headers kept, body and attachments dropped",
            )
        if len(raw) > limits.max_line_length:
            longest = _longest_line(raw)
            if longest > limits.max_line_length:
                self.cut_at = limits.max_line_length
                self.violate(
                    LimitKind.LINE_LENGTH,
                    limits.max_line_length,
                    longest,
                    f"header values and text lines truncated to {limits.max_line_length}",
                )
        headers, body_start = self.read_headers(0, top=True)
        fields, first = self.decode_fields(headers)
        mime = {key: first[key] for key in _MIME_HEADERS if key in first}
        root = self.new_part(headers, body_start, 0, None, mime)
        body = ""
        body_html: str | None = None
        source = "none"
        attachments: list[Attachment] = []
        if not headers_only:
            if root.boundary is not None:
                self.scan(root)
            if self.max_depth > limits.max_mime_depth:
                self.violate(
                    LimitKind.MIME_DEPTH,
                    limits.max_mime_depth,
                    self.max_depth,
                    f"parts nested deeper than {limits.max_mime_depth} ignored (not read further)",
                )
            if self.part_count > limits.max_part_count:
                self.violate(
                    LimitKind.PART_COUNT,
                    limits.max_part_count,
                    self.part_count,
                    f"only the first {limits.max_part_count} parts kept; the rest not read",
                )
            body, body_html, source, attachments = self.contents(root)
        return self.build(raw, fields, body, body_html, source, attachments)

    def contents(self, root: _Part) -> tuple[str, str | None, str, list[Attachment]]:
        """Body text, HTML, body source and attachments from the kept leaves."""
        plain: str | None = None
        html: str | None = None
        attachments: list[Attachment] = []
        for number, part in enumerate(self.leaves(root), start=1):
            ctype = part.ctype
            disposition = part.disposition
            filename = self.filename(part)
            is_attachment = disposition == "attachment" or bool(filename)
            what = f"part {number} ({ctype})"
            if not is_attachment and ctype == "text/plain" and plain is None:
                plain = self.text_of(part, what)
                continue
            if not is_attachment and ctype == "text/html" and html is None:
                html = self.text_of(part, what)
                continue
            if ctype.startswith("multipart/"):
                continue
            attachment = self.attachment(part, number, filename, disposition, what)
            if attachment is not None:
                attachments.append(attachment)
        if plain is not None:
            return plain, html, "text/plain", attachments
        if html is not None:
            if len(html) > _MAX_HTML_TEXT:
                self.note(
                    IntakeNoteKind.HTML_BODY_CUT,
                    f"HTML body of {len(html)} characters: only the first {_MAX_HTML_TEXT} "
                    "converted to text",
                )
            text = html_to_text(html[:_MAX_HTML_TEXT])
            if self.cut_at:
                text = _cut_lines(text, self.cut_at)
            return text, html, "text/html", attachments
        return "", None, "none", attachments

    def filename(self, part: _Part) -> str:
        """Attachment filename (RFC 2231 and RFC 2047 decoded, control chars removed) or ""."""
        if not part.filename:
            return ""
        return decode_header_text(part.filename, self.notes, "filename").strip()

    def attachment(
        self, part: _Part, number: int, filename: str, disposition: str | None, what: str
    ) -> Attachment | None:
        """An Attachment for a leaf, or None when it is over the size limit (noted)."""
        limit = self.limits.max_attachment_size
        encoded = part.body_end - part.body_start
        if encoded * 3 // 4 > limit * 11 // 10 + 1024:
            self.drop_attachment(filename or what, limit, encoded * 3 // 4)
            return None
        data = self.transfer_decode(part, what)
        if len(data) > limit:
            self.drop_attachment(filename or what, limit, len(data))
            return None
        if not filename:
            filename = self.default_name(part, number, data)
        content_id = part.content_id
        return Attachment(
            filename=filename,
            content_type=part.ctype,
            data=data,
            inline=disposition == "inline",
            content_id=content_id,
        )

    def default_name(self, part: _Part, number: int, data: bytes) -> str:
        """A filename for a part that has none: the subject of a forwarded mail, else part-N."""
        extension = _EXTENSIONS.get(part.ctype, ".bin")
        if part.ctype in ("message/rfc822", "message/global"):
            inner = _Intake(data[: self.limits.max_header_bytes], self.limits)
            inner_headers, _ = inner.read_headers(0, top=False)
            for name, value in inner_headers:
                if name.lower() == b"subject":
                    subject = decode_header_text(_header_bytes_to_str(value, "subject", []))
                    safe = re.sub(r'[\\/:*?"<>|]', "_", " ".join(subject.split()))[:100].strip()
                    if safe:
                        return safe + extension
        return f"part-{number}{extension}"

    def drop_attachment(self, name: str, limit: int, size: int) -> None:
        """Record an attachment dropped for size."""
        self.note(
            IntakeNoteKind.ATTACHMENT_DROPPED,
            f"attachment {name!r} ({size} bytes) dropped: over {limit} bytes",
        )
        self.violate(LimitKind.ATTACHMENT_SIZE, limit, size, f"{name} dropped")

    # -- header fields ------------------------------------------------------------------

    def decode_fields(
        self, headers: list[tuple[bytes, bytes]]
    ) -> tuple[dict[str, object], dict[str, str]]:
        """Decoded identity/thread fields and header pairs; and each header's first raw value."""
        notes = self.notes
        pairs: list[tuple[str, str]] = []
        first: dict[str, str] = {}
        counts: dict[str, int] = {}
        append = pairs.append
        for name_b, value_b in headers:
            name = name_b.decode("ascii")
            lname = name.lower()
            try:
                value = value_b.decode("ascii")
            except UnicodeDecodeError:
                value = _header_bytes_to_str(value_b, name, notes)
            if lname in first:
                counts[lname] = counts.get(lname, 1) + 1
            else:
                first[lname] = value
            if "=?" in value:
                append((name, decode_header_text(value, notes, name)))
            elif _ANY_CONTROL.search(value) is not None:
                append((name, _clean(value)))
            else:
                append((name, value))
        for lname in ("from", "subject", "message-id", "date"):
            if lname in counts:
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.DUPLICATE_HEADER,
                        f"{counts[lname]} {lname!r} headers; the first one used",
                    )
                )
        out: dict[str, object] = {"headers": tuple(pairs)}
        sender, sender_name = "", ""
        from_value = first.get("from")
        if from_value is None:
            notes.append(IntakeNote(IntakeNoteKind.MISSING_FROM, "no From header; sender unknown"))
        else:
            found = parse_address_list(from_value, notes, "From")
            if len(found) == 1:
                sender_name, sender = found[0]
            elif found:
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.MULTIPLE_FROM_ADDRESSES,
                        f"From has {len(found)} addresses; sender unknown",
                    )
                )
            else:
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.INVALID_FROM, "From has no valid address; sender unknown"
                    )
                )
        out["sender"], out["sender_name"] = sender, sender_name
        for lname in ("reply-to", "to", "cc"):
            listed = first.get(lname)
            found = parse_address_list(listed, notes, lname) if listed else []
            out[lname] = tuple(addr for _, addr in found)
        rp = first.get("return-path")
        out["return_path"] = None if rp is None else _return_path(rp)
        subject = decode_header_text(first.get("subject", ""), notes, "Subject")
        subject = " ".join(subject.split())
        if len(subject) > self.limits.max_subject_length:
            self.violate(
                LimitKind.SUBJECT_LENGTH,
                self.limits.max_subject_length,
                len(subject),
                "subject cut to the limit",
            )
            subject = subject[: self.limits.max_subject_length]
        out["subject"] = subject
        mids = parse_msg_ids(first.get("message-id", ""))
        out["message_id"] = mids[0] if mids else None
        out["in_reply_to"] = parse_msg_ids(first.get("in-reply-to", ""))
        out["references"] = parse_msg_ids(first.get("references", ""))
        out["date"] = _parse_date(first.get("date"), notes)
        return out, first

    def build(
        self,
        raw: bytes,
        fields: dict[str, object],
        body: str,
        body_html: str | None,
        source: str,
        attachments: list[Attachment],
    ) -> InboundEmail:
        """Assemble the InboundEmail value."""
        return InboundEmail(
            sender=str(fields["sender"]),
            subject=str(fields["subject"]),
            body=body,
            sender_name=str(fields["sender_name"]),
            message_id=fields["message_id"],  # type: ignore[arg-type]
            in_reply_to=fields["in_reply_to"],  # type: ignore[arg-type]
            references=fields["references"],  # type: ignore[arg-type]
            return_path=fields["return_path"],  # type: ignore[arg-type]
            reply_to=fields["reply-to"],  # type: ignore[arg-type]
            to=fields["to"],  # type: ignore[arg-type]
            cc=fields["cc"],  # type: ignore[arg-type]
            date=fields["date"],  # type: ignore[arg-type]
            headers=fields["headers"],  # type: ignore[arg-type]
            body_html=body_html,
            body_source=source,
            attachments=tuple(attachments),
            notes=tuple(dict.fromkeys(self.notes)),
            limit_violations=tuple(self.violations.values()),
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            raw_size=len(raw),
        )


def _has_invalid_base64(raw: bytes, start: int, end: int) -> bool:
    """True when ``raw[start:end]`` holds bytes outside base64 and whitespace (1 MiB pieces)."""
    step = 1 << 20
    return any(
        raw[offset : min(offset + step, end)].translate(None, _B64_ALPHABET)
        for offset in range(start, end, step)
    )


def _longest_line(raw: bytes) -> int:
    """Length of the longest line, read in 1 MiB pieces so memory stays small (linear)."""
    longest = carry = 0
    step = 1 << 20
    for offset in range(0, len(raw), step):
        lines = raw[offset : offset + step].split(b"\n")
        if len(lines) == 1:
            carry += len(lines[0])
            continue
        longest = max(longest, carry + len(lines[0]), max(map(len, lines[1:-1]), default=0))
        carry = len(lines[-1])
    return max(longest, carry)


def _cut_lines(text: str, limit: int) -> str:
    """Cut every line of ``text`` to ``limit`` characters (linear)."""
    lines = text.split("\n")
    if max(map(len, lines)) <= limit:
        return text
    return "\n".join(line[:limit] for line in lines)


def _parse_date(value: str | None, notes: list[IntakeNote]) -> datetime | None:
    """RFC 5322 date, else a bounded dateutil parse, else None (noted)."""
    if value is None:
        return None
    quick = _RFC5322_DATE.match(value)
    if quick is not None and (quick.group(7) == "+" or quick.group(8, 9) != ("00", "00")):
        day, month, year, hour, minute, second, sign, zh, zm = quick.groups()
        month_number = _MONTHS.get(month.lower())
        if month_number is not None:
            offset = timedelta(hours=int(zh), minutes=int(zm))
            try:
                return datetime(
                    int(year),
                    month_number,
                    int(day),
                    int(hour),
                    int(minute),
                    int(second or 0),
                    tzinfo=timezone(-offset if sign == "-" else offset),
                )
            except ValueError:
                pass
    text = " ".join(_clean(value).split())
    try:
        return parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        pass
    if len(text) <= _MAX_DATE:
        try:
            parsed = date_parser.parse(text)
        except (ValueError, OverflowError, TypeError, LookupError):
            parsed = None
        if parsed is not None:
            notes.append(
                IntakeNote(
                    IntakeNoteKind.LENIENT_DATE,
                    f"Date {text[:80]!r} is not RFC 5322; read leniently",
                )
            )
            return parsed
    notes.append(IntakeNote(IntakeNoteKind.INVALID_DATE, f"Date {text[:80]!r} could not be parsed"))
    return None


def parse_message(raw: bytes, *, limits: Limits = Limits()) -> InboundEmail:  # noqa: B008
    """Parse raw message bytes into an :class:`InboundEmail`; over a limit degrades, never crashes.

    Raises :class:`MessageParseError` only for input that is not bytes or is empty, and wraps
    any unexpected failure in it (nothing else escapes).
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MessageParseError("input is not bytes", detail=type(raw).__name__)
    data = bytes(raw)
    if not data or data.isspace():
        raise MessageParseError("empty message")
    try:
        return _Intake(data, limits).run()
    except MessageParseError:
        raise
    except Exception as exc:  # wrapped: nothing but MessageParseError may escape
        _LOG.exception("unexpected intake failure", extra={"raw_size": len(data)})
        raise MessageParseError(
            "unexpected error while parsing", detail=f"{type(exc).__name__}: {exc}"
        ) from exc
