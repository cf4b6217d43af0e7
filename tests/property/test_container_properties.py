"""Properties of the readers of wrapped text and files (tnef.py, container_text.py) and of
intake over messages that wrap them, on hostile input (DESIGN 4, "Limits against hostile
input": "over a cap gives a typed decision, not a crash. Every parser is linear in its
input").

Each reader raises only what it documents (``read_tnef`` and ``decompress_rtf``:
TnefError; the text readers: nothing), keeps its output bounded by its input or its cap,
and takes time linear in its input; ``parse_message`` over a message wrapping any of them
(a winmail.dat, RTF, text/enriched, an invitation, forwards inside forwards) gives a body
within ``max_body_bytes``, and forwards nested to the limit cost a bounded multiple of the
same text unwrapped, not a product of the depths.
"""

from __future__ import annotations

import base64
import contextlib
import struct
from collections.abc import Callable

import pytest
from cpu_timing import assert_linear, least_cpu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asm_email_rules.container_text import calendar_text, enriched_text, rtf_text
from asm_email_rules.errors import TnefError
from asm_email_rules.intake import parse_message
from asm_email_rules.settings import Limits
from asm_email_rules.tnef import MAX_FILES, decompress_rtf, read_tnef

SIGNATURE = b"\x78\x9f\x3e\x22\x00\x00"
ATTRIBUTES = (
    0x0002800C,  # attBody
    0x00069003,  # attMAPIProps
    0x00069002,  # attAttachRendData
    0x00018010,  # attAttachTitle
    0x0006800F,  # attAttachData
    0x00069005,  # attAttachment
    0x00069007,  # attOemCodepage
    0x12345678,  # one nobody defined
)
PROPERTY_TYPES = (0x0000, 0x0001, 0x0002, 0x0003, 0x000D, 0x001E, 0x001F, 0x0040, 0x0048, 0x0102)
PROPERTY_TYPES_MORE = (0x1003, 0x101E, 0x0099)  # multi-valued, and a type nobody defined
PROPERTY_IDS = (0x1000, 0x1009, 0x1013, 0x3FDE, 0x3701, 0x3704, 0x3707, 0x370E, 0x8001)
LZFU = 0x75465A4C


def attribute(level: int, name: int, data: bytes) -> bytes:
    """One TNEF attribute: level, id, length, data, checksum ([MS-OXTNEF] 2.1.3.3)."""
    return struct.pack("<BII", level, name, len(data)) + data + b"\0\0"


@st.composite
def property_lists(draw: st.DrawFn) -> bytes:
    """A MAPI property list, well-formed or not: a count that may lie, tags of known and
    unknown types, named properties, values of any bytes."""
    count = draw(st.integers(0, 6))
    out = struct.pack("<I", draw(st.sampled_from([count, count + 1, 2**32 - 1])))
    for _ in range(count):
        kind = draw(st.sampled_from(PROPERTY_TYPES + PROPERTY_TYPES_MORE))
        tag = draw(st.sampled_from(PROPERTY_IDS))
        out += struct.pack("<HH", kind, tag)
        if tag >= 0x8000:
            out += b"G" * 16 + struct.pack("<II", draw(st.integers(0, 1)), draw(st.integers(0, 12)))
        out += draw(st.binary(max_size=40))
    return out


@st.composite
def tnef_streams(draw: st.DrawFn) -> bytes:
    """A TNEF stream of drawn attributes at any level, code pages of any number included,
    possibly cut anywhere."""
    out = SIGNATURE
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(ATTRIBUTES))
        if name in (0x00069003, 0x00069005):
            data = draw(property_lists())
        elif name == 0x00069007:
            data = struct.pack("<II", draw(st.integers(0, 2**32 - 1)), 0)
        else:
            data = draw(st.binary(max_size=30))
        out += attribute(draw(st.sampled_from([1, 2, 3])), name, data)
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return out


RTF_PIECES = st.sampled_from(
    [
        *(b"{", b"}", b"\\", b"\\bin5 ", b"\\bin-3", b"\\u-5", b"\\u70000", b"\\uc99", b"\\'"),
        *(b"\\'zz", b"\\'e9", b"\\*", b"\\fonttbl", b"\\htmlrtf", b"\\htmlrtf0", b"\\par"),
        *(b"\\ansicpg932", b"\\ansicpg99999", b"\\ansicpg28591", b"\\cell", b"x", b"\r\n"),
        *(b"\x81", b"\xff", b" ", b"\\~", b"\\emdash", b"\\fromhtml1", b"{\\*\\htmltag4 <p>}"),
        *(b"<li>", b"&amp;", b"{\\*\\htmltag4 <ol><li>}", b"\\htmltag"),
    ]
)
ICS_LINES = st.sampled_from(
    [
        *("BEGIN:VEVENT", "END:VEVENT", "BEGIN:VTODO", "END:VALARM", "BEGIN:VALARM", ":", "\\"),
        *('DESCRIPTION;X="a:b":d\\\\n', 'SUMMARY;ALTREP="', "SUMMARY:hi\\,", " folded", "\tx"),
        *("LOCATION:", "END:VTODO", "\r", 'DESCRIPTION;A="x"B="y":z'),
    ]
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tnef_streams(), st.integers(1, 64))
def test_read_tnef_returns_bounded_files_or_raises_tnef_error(data: bytes, cap: int) -> None:
    try:
        contents = read_tnef(data, cap)
    except TnefError:
        return
    assert len(contents.files) <= MAX_FILES
    assert all(0 < len(file.data) <= cap for file in contents.files)
    for text in (contents.text, contents.html, *(f.name for f in contents.files)):
        text.encode("utf-8")
    if contents.rtf:
        with contextlib.suppress(TnefError):
            assert len(decompress_rtf(contents.rtf, 1000)) <= 1000


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from([LZFU, 0x414C454D, 0]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2000),
)
def test_decompress_rtf_stays_under_its_cap_or_raises_tnef_error(
    body: bytes, kind: int, raw_size: int, cap: int
) -> None:
    data = struct.pack("<IIII", len(body) + 12, raw_size, kind, 0) + body
    try:
        out = decompress_rtf(data, cap)
    except TnefError:
        return
    assert len(out) <= min(cap, raw_size)


def test_decompress_rtf_reads_the_specifications_examples() -> None:
    """[MS-OXRTFCP] section 3.1.1 and 3.1.2: a simple compression, and one whose reference
    overlaps the bytes it writes (a run)."""
    simple = bytes.fromhex(
        "2d0000002b0000004c5a4675f1c5c7a703000a007263706731323542320af32068656c090020627705b06c"
        "647d0a800fa0"
    )
    run = bytes.fromhex("1a0000001c0000004c5a4675e2d44b51410004205758595a0d6e7d010eb0")
    assert decompress_rtf(simple, 1000) == b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n"
    assert decompress_rtf(run, 1000) == b"{\\rtf1 WXYZWXYZWXYZWXYZWXYZ}"


@settings(max_examples=500, deadline=None)
@given(st.lists(RTF_PIECES, max_size=60).map(b"".join))
def test_rtf_text_never_raises_and_gives_no_more_characters_than_bytes(data: bytes) -> None:
    text = rtf_text(data)
    text.encode("utf-8")
    assert len(text) <= len(data)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="<>/paramnofilbd\n\r x-", max_size=200))
def test_enriched_text_never_raises_and_never_grows(data: str) -> None:
    text = enriched_text(data)
    text.encode("utf-8")
    assert len(text) <= len(data)


@settings(max_examples=500, deadline=None)
@given(st.lists(ICS_LINES, max_size=40).map("\r\n".join))
def test_calendar_text_never_raises_and_adds_only_its_labels(data: str) -> None:
    text = calendar_text(data)
    text.encode("utf-8")
    assert len(text) <= len(data) + 20 * len("Subject: \nLocation: \n\n")


def _message(subject: str, parts: list[bytes], body: str = "") -> bytes:
    """A multipart/mixed message: a text part (``body``), then ``parts`` as they are."""
    boundary = f"b-{subject}".encode()
    out = (
        f"From: p@example.org\r\nTo: desk@example.org\r\nSubject: {subject}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b-{subject}"\r\n\r\n'
    ).encode()
    out += b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\n" + body.encode() + b"\r\n"
    for part in parts:
        out += b"--" + boundary + b"\r\n" + part + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def _file(ctype: str, name: str, data: bytes) -> bytes:
    head = f'Content-Type: {ctype}; name="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    return head.encode() + base64.encodebytes(data)


def _forward(message: bytes) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + message


@st.composite
def wrapping_messages(draw: st.DrawFn) -> bytes:
    """A message with no text of its own wrapping drawn containers, forwards among them."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["tnef", "rtf", "enriched", "ics", "txt", "forward"]))
        if kind == "tnef":
            parts.append(_file("application/ms-tnef", "winmail.dat", draw(tnef_streams())))
        elif kind == "rtf":
            rtf = draw(st.lists(RTF_PIECES, max_size=30).map(b"".join))
            parts.append(_file("application/rtf", "a.rtf", rtf))
        elif kind == "enriched":
            text = draw(st.text(alphabet="<>/paramnofil\n x", max_size=80)).encode()
            parts.append(_file("text/enriched", "a", text))
        elif kind == "ics":
            ics = draw(st.lists(ICS_LINES, max_size=20).map("\r\n".join)).encode()
            parts.append(_file("text/calendar", "invite.ics", ics))
        elif kind == "txt":
            parts.append(_file("text/plain", "a.txt", draw(st.binary(max_size=60))))
        else:
            inner = _message("inner", [], draw(st.text(max_size=40).filter(str.isprintable)))
            for _ in range(draw(st.integers(0, 7))):
                inner = _message("fwd", [_forward(inner)])
            parts.append(_forward(inner))
    return _message("outer", parts)


LIMITS = Limits(max_body_bytes=2000)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wrapping_messages())
def test_parse_message_over_wrapped_containers_never_fails_and_keeps_the_body_bounded(
    raw: bytes,
) -> None:
    email = parse_message(raw, limits=LIMITS)
    assert len(email.body) <= LIMITS.max_body_bytes
    email.body.encode("utf-8")


def _tnef_of_records(n: int) -> Callable[[], object]:
    data = SIGNATURE + attribute(2, 0x00069002, b"") * (n // 11)
    return lambda: read_tnef(data, 1 << 20)


def _tnef_of_properties(n: int) -> Callable[[], object]:
    count = n // 8
    props = struct.pack("<I", count) + (struct.pack("<HHI", 0x0003, 0x0E07, 0)) * count
    data = SIGNATURE + attribute(1, 0x00069003, props)
    return lambda: read_tnef(data, 1 << 20)


def _lzfu_literals(n: int) -> Callable[[], object]:
    body = b"\x00abcdefgh" * (n // 9)
    data = struct.pack("<IIII", len(body) + 12, 1 << 30, LZFU, 0) + body
    return lambda: decompress_rtf(data, 1 << 30)


def _bytes_reader(
    read: Callable[[bytes], object], unit: bytes
) -> Callable[[int], Callable[[], object]]:
    def build(n: int) -> Callable[[], object]:
        data = unit * (n // len(unit))
        return lambda: read(data)

    return build


def _text_reader(read: Callable[[str], object], unit: str) -> Callable[[int], Callable[[], object]]:
    def build(n: int) -> Callable[[], object]:
        text = unit * (n // len(unit))
        return lambda: read(text)

    return build


def _wrapped_rtf_message(n: int) -> Callable[[], object]:
    raw = _message("rtf", [_file("application/rtf", "a.rtf", b"{\\par x}" * (n // 8))])
    return lambda: parse_message(raw)


def _many_wrapped_attachments(n: int) -> Callable[[], object]:
    """Forwards 5 deep, each level with ``n`` attachments holding no text."""
    empty = [_file("text/plain", f"e{i}.txt", b" ") for i in range(n)]
    inner = _message("inner", empty, "the text")
    for depth in range(5):
        inner = _message(f"d{depth}", [*empty, _forward(inner)])
    raw = _message("outer", [*empty, _forward(inner)])
    return lambda: parse_message(raw, limits=Limits(max_part_count=10 * n))


CASES: dict[str, tuple[Callable[[int], Callable[[], object]], int]] = {
    "tnef rendering records": (_tnef_of_records, 20_000),
    "tnef properties": (_tnef_of_properties, 20_000),
    "lzfu literals": (_lzfu_literals, 10_000),
    "rtf braces": (_bytes_reader(rtf_text, b"{"), 10_000),
    "rtf backslashes": (_bytes_reader(rtf_text, b"\\"), 10_000),
    "rtf hex bytes": (_bytes_reader(rtf_text, b"\\'e9"), 10_000),
    "rtf unicode": (_bytes_reader(rtf_text, b"\\uc9\\u1234 "), 10_000),
    "enriched lone <": (_text_reader(enriched_text, "<"), 10_000),
    "enriched params": (_text_reader(enriched_text, "<param>"), 10_000),
    "calendar folds": (_text_reader(calendar_text, "BEGIN:VEVENT\r\nDESCRIPTION:\r\n x"), 10_000),
    "calendar quotes": (_text_reader(calendar_text, 'X;A="a"'), 10_000),
    "calendar backslashes": (_text_reader(calendar_text, "\\"), 10_000),
    "message wrapping rtf": (_wrapped_rtf_message, 10_000),
    "forwards with many attachments": (_many_wrapped_attachments, 20),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_container_readers_take_time_linear_in_their_input(name: str) -> None:
    build, n = CASES[name]
    assert_linear(build, n, floor=0.002, what=name)


def test_forwards_nested_to_the_limit_cost_a_bounded_multiple_of_the_text() -> None:
    """A forward of the largest size holding a forward holding a forward...: each level is
    read by its own intake, so the innermost bytes are parsed once per level (six times at
    the 5-deep limit) and never more: deeper forwards are not read at all."""
    text = "A line of the forwarded mail.\r\n" * 20_000

    def nested(depth: int) -> Callable[[], object]:
        inner = _message("inner", [], text)
        for _ in range(depth):
            inner = _message("fwd", [_forward(inner)])
        return lambda: parse_message(inner)

    flat = least_cpu(nested(0))
    assert least_cpu(nested(5)) < 10 * max(flat, 0.005)
    assert least_cpu(nested(12)) < 10 * max(flat, 0.005)
