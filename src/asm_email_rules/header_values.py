"""Header field values: charsets, RFC 2047 encoded-words, MIME parameters, msg-ids and dates.

Each reader is linear in its input and total: what it cannot read is kept as text, dropped or
``None``, and every repair is recorded as an :class:`~asm_email_rules.intake_notes.IntakeNote`
in the ``notes`` list the caller passes.
"""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message
from email.policy import compat32
from email.utils import parsedate_to_datetime, unquote

from dateutil import parser as date_parser

from asm_email_rules.charsets import Hints, decode_text, hinted_reading, mime_name
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind

__all__ = [
    "clean_text",
    "decode_bytes",
    "decode_header_text",
    "header_bytes_to_str",
    "mime_params",
    "parse_date",
    "parse_msg_ids",
]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: control characters, and lone surrogates (not text: they cannot be encoded as UTF-8)
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
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
_LINE_BREAKS = re.compile(r"[\t\r\n]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*(?:"|$)|[^;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")
_B64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MAX_DATE = 200  # characters of Date given to dateutil
_OBS_YEAR = re.compile(r"(?<!\d)(\d{1,2} [A-Za-z]{3} )(\d{2,3})(?= )")
"""A day, a month and a year of two or three digits (RFC 5322 4.3 obs-year), in a Date whose
white space is single spaces."""


# --------------------------------------------------------------------------- text decoding


def decode_bytes(data: bytes, charset: str | None, what: str, notes: list[IntakeNote]) -> str:
    """Decode header or parameter text with its declared charset (checked against the bytes).

    :func:`~asm_email_rules.charsets.decode_text` without detection: ISO-2022 escapes, UTF-8
    validity, the declared charset's superset, then windows-1252 and latin-1; each fallback
    noted. Never raises; the result never holds lone surrogates.
    """
    return decode_text(data, charset, what, notes, detect=False)


def header_bytes_to_str(
    value: bytes, name: str, notes: list[IntakeNote], hints: Hints | None = None
) -> str:
    """Raw header bytes to text, read like body text: ASCII, else UTF-8 (RFC 6532), else the
    most plausible reading by a charset the message declares elsewhere (``hints``: its parts'
    charsets in order, then its encoded-words'; a function is called only here) when it is at
    least as plausible as windows-1252's, else windows-1252, else latin-1; a reading that is
    not UTF-8 is noted. Linear: a header is scored on a bounded sample, by at most 8 charsets.
    """
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        pass
    found = hinted_reading(value, hints) if hints is not None else None
    if found is not None:
        used, text = f"{mime_name(found[0])}, as the message declares elsewhere", found[1]
    else:
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
        return clean_text(value)
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
    return clean_text("".join(out))


def clean_text(text: str) -> str:
    """CR, LF and TAB become spaces; other control characters are removed.

    Lone surrogates (which some codecs and the stdlib header registry produce from broken
    bytes) become U+FFFD, so the text always encodes as UTF-8.
    """
    found = _ANY_CONTROL.search(text)
    if found is None:
        return text
    if found.group() == "\t":  # the common case: a folded header's tab
        text = text.replace("\t", " ")
        if _ANY_CONTROL.search(text, found.start()) is None:
            return text
    if _SURROGATE.search(text, found.start()) is not None:
        text = _SURROGATE.sub("\ufffd", text)
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", text))


# --------------------------------------------------------------------------- MIME parameters


def mime_params(value: str | None, default: str) -> tuple[str, dict[str, str]]:
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
        out.setdefault(str(name).lower(), _rfc2231_value(param))
    return kind, out


def _rfc2231_value(param: str | tuple[str | None, str | None, str]) -> str:
    """A parameter value from ``get_params``: RFC 2231 ``charset''text`` decoded like a body.

    Replaces ``email.utils.collapse_rfc2231_value``, which raises on codecs that are not
    charsets (``idna``) and passes lone surrogates through (``utf-7``).
    """
    if not isinstance(param, tuple):
        return clean_text(unquote(str(param)))
    charset, _, text = param
    data = str(text).encode("raw-unicode-escape")
    return clean_text(decode_bytes(data, charset or "us-ascii", "parameter", []))


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
            next_angle = value.find("<", i)
            next_comment = value.find("(", i)
            stops = [p for p in (next_angle, next_comment) if p >= 0]
            i = min(stops) if stops else n
    if not ids:
        ids = [f"<{word.strip('<>')}>" for word in value.split() if "@" in word.strip("<>")]
    return tuple(ids)


# --------------------------------------------------------------------------- dates


def _four_digit_year(match: re.Match[str]) -> str:
    """RFC 5322 4.3: "a two digit year ... between 00 and 49 ... by adding 2000 ... between 50
    and 99, or any three digit year ... by adding 1900" (the stdlib adds 1900 from 69 only,
    and takes a three-digit year as it stands: ``126`` for 2026 was read as the year 126)."""
    digits = match.group(2)
    year = int(digits)
    year += 2000 if len(digits) == 2 and year < 50 else 1900
    return f"{match.group(1)}{year}"


_FILLERS = (datetime(2000, 1, 1), datetime(2001, 2, 2))
"""Two moments that share no year, month or day, for dateutil to fill a missing part from."""


def _whole_date(text: str) -> datetime | None:
    """dateutil's reading of ``text`` when it names a year, a month and a day, else None.

    dateutil fills what the text lacks from today's date (the host's clock, in its local
    zone), so ``Date: 10:42`` was today and ``Date: 1 Dec`` this year: a decision that read
    the clock, different on another day. Read with two fillers, a text that lacks a part
    reads as two different days. Raises what dateutil raises."""
    first, second = (date_parser.parse(text, default=filler) for filler in _FILLERS)
    return first if first.date() == second.date() else None


def parse_date(value: str | None, notes: list[IntakeNote]) -> datetime | None:
    """RFC 5322 date, else a bounded dateutil parse, else None (noted).

    A zone of ``-0000`` ("the time is UTC, the sender's local zone unknown", RFC 5322 section
    3.3; qmail writes it) gives a UTC time, not a naive one; a zone a datetime cannot hold
    (24 hours or more) makes the date unreadable, noted, rather than a value that raises
    later, when it is compared."""
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
    text = _OBS_YEAR.sub(_four_digit_year, " ".join(clean_text(value).split()), count=1)
    try:
        strict = parsedate_to_datetime(text)
        return strict if strict.tzinfo is not None else strict.replace(tzinfo=UTC)  # -0000
    except (ValueError, TypeError, IndexError, OverflowError):
        pass
    if len(text) <= _MAX_DATE:
        try:
            parsed: datetime | None = _whole_date(text)
            if parsed is not None:
                parsed.utcoffset()  # dateutil keeps a zone of 24 hours or more; datetime cannot
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
