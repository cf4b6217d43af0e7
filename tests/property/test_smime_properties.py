"""Properties of the S/MIME SignedData reader (field trial, fault 2): on any bytes it returns
or raises DerError, nothing else; it reads back the content of any BER encoding of a
SignedData (definite or indefinite lengths, long-form lengths, chunked and nested OCTET
STRINGs); it is linear in its input; and intake reads a signed entity where it lies in
the decoded .p7m, up to its end and no further."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from cpu_timing import assert_linear
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asm_email_rules.errors import DerError
from asm_email_rules.intake import parse_message
from asm_email_rules.smime import MAX_DEPTH, signed_content

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "smime"
SIGNED = (FIXTURES / "signed.der").read_bytes()
SIGNED_BER = (FIXTURES / "signed-ber.der").read_bytes()
SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
DATA = bytes.fromhex("06092a864886f70d010701")

# how one element is written: definite (shortest length), definite with a long-form length
# of 1 to 4 octets (BER allows more octets than needed), or indefinite (constructed only)
STYLES = st.sampled_from(["short", "long1", "long2", "long4", "indefinite"])


def element(tag: int, contents: bytes, style: str) -> bytes:
    """One BER element of ``tag`` in ``style``."""
    if style == "indefinite" and tag & 0x20:
        return bytes([tag, 0x80]) + contents + b"\0\0"
    size = len(contents)
    if style == "short" or style == "indefinite":
        if size < 0x80:
            return bytes([tag, size]) + contents
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    else:
        width = max(int(style[4:]), (size.bit_length() + 7) // 8)
        octets = size.to_bytes(width, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + contents


@st.composite
def octet_string(draw: st.DrawFn, content: bytes, depth: int = 0) -> bytes:
    """``content`` as a primitive OCTET STRING or a constructed one of chunks, nested."""
    if depth >= 3 or not draw(st.booleans()):
        return element(0x04, content, draw(STYLES))
    cuts = sorted(draw(st.lists(st.integers(0, len(content)), max_size=4)))
    pieces = [content[a:b] for a, b in zip([0, *cuts], [*cuts, len(content)], strict=True)]
    chunks = b"".join(draw(octet_string(piece, depth + 1)) for piece in pieces)
    return element(0x24, chunks, draw(STYLES))


@st.composite
def signed_data(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A SignedData ContentInfo in a drawn BER encoding, and the content it carries."""
    content = draw(st.binary(max_size=300))
    econtent = element(0xA0, draw(octet_string(content)), draw(STYLES))
    encap = element(0x30, DATA + econtent, draw(STYLES))
    digests = element(0x31, element(0x30, b"\x06\x01\x01", draw(STYLES)), draw(STYLES))
    signers = element(0x31, draw(st.binary(max_size=20)), "short")
    body = element(0x02, b"\x01", "short") + digests + encap + signers
    signed = element(0x30, body, draw(STYLES))
    return element(0x30, SIGNED_DATA + element(0xA0, signed, draw(STYLES)), draw(STYLES)), content


def read(data: bytes) -> bytes | None:
    """The content, or None when the reader refused the data (DerError, nothing else)."""
    try:
        return signed_content(data)
    except DerError:
        return None


@settings(max_examples=400, deadline=None)
@given(signed_data())
def test_every_ber_encoding_of_signed_data_reads_back_its_content(
    drawn: tuple[bytes, bytes],
) -> None:
    data, content = drawn
    assert signed_content(data) == content


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_return_or_raise_der_error(data: bytes) -> None:
    read(data)
    read(b"\x30\x80" + SIGNED_DATA + b"\xa0\x80" + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([SIGNED, SIGNED_BER]),
    st.lists(st.tuples(st.integers(0, len(SIGNED) - 1), st.binary(max_size=6)), max_size=5),
    st.integers(0, len(SIGNED)),
)
def test_damaged_fixtures_return_or_raise_der_error(
    fixture: bytes, edits: list[tuple[int, bytes]], cut: int
) -> None:
    data = bytearray(fixture)
    for position, replacement in edits:
        data[position : position + len(replacement)] = replacement
    content = read(bytes(data[: len(data) - cut % 50]))
    assert content is None or len(content) <= len(fixture)


def _chunks(size: int) -> bytes:
    """eContent of ``size`` one-byte chunks in an indefinite constructed OCTET STRING."""
    econtent = b"\xa0\x80\x24\x80" + b"\x04\x01x" * size + b"\0\0\0\0"
    signed = b"\x30\x80\x02\x01\x01\x31\x00\x30\x80" + DATA + econtent + b"\0\0\0\0"
    return b"\x30\x80" + SIGNED_DATA + b"\xa0\x80" + signed + b"\0\0\0\0"


def _deep_sets(size: int) -> bytes:
    """A digestAlgorithms SET holding ``size`` runs of indefinite SETs nested to the limit."""
    run = b"\x31\x80" * (MAX_DEPTH - 4) + b"\0\0" * (MAX_DEPTH - 4)
    signed = b"\x30\x80\x02\x01\x01\x31\x80" + run * size + b"\0\0" + b"\x30\x00\0\0"
    return b"\x30\x80" + SIGNED_DATA + b"\xa0\x80" + signed + b"\0\0\0\0"


def _reading(make: Callable[[int], bytes], n: int) -> Callable[[], object]:
    return partial(read, make(n))


def test_the_reader_is_linear_in_its_input() -> None:
    """The time per element stays flat from 1x to 8x (a quadratic walk would take 64 times
    longer, not 8): 20,000 to 160,000 chunks; 56,000 to 448,000 nested SETs."""
    assert read(_chunks(10)) == b"x" * 10
    assert read(_deep_sets(10)) is None  # no eContent after the SETs: refused, once walked
    for make, size in ((_chunks, 20_000), (_deep_sets, 2_000)):
        assert_linear(partial(_reading, make), size, what=make.__name__)


def _der(tag: int, contents: bytes) -> bytes:
    return element(tag, contents, "short")


ENTITY_LINES = st.lists(
    st.sampled_from(["text", "--b", "--b--", "", "Content-Type: text/plain", "x: y", "--c"]),
    max_size=12,
).map("\r\n".join)


@settings(max_examples=200, deadline=None)
@given(lines=ENTITY_LINES, signers=st.binary(max_size=40), tail=ENTITY_LINES)
def test_a_signed_entity_is_read_up_to_its_end_and_no_further(
    lines: str, signers: bytes, tail: str
) -> None:
    # What follows the entity in the decoded .p7m (signer bytes, here with boundary lines and
    # text in them) never changes what the entity gives: the same body and attachments as
    # with nothing after it.
    entity = ("Content-Type: multipart/mixed; boundary=b\r\n\r\n" + lines).encode()
    head = (
        b"From: a@b.example\r\nSubject: s\r\n"
        b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n"
    )

    def read_with(after: bytes) -> tuple[str, list[tuple[str, bytes]]]:
        encap = _der(0x30, DATA + _der(0xA0, _der(0x04, entity)))
        signed = _der(0x30, _der(0x02, b"\x01") + _der(0x31, b"") + encap + after)
        email = parse_message(head + _der(0x30, SIGNED_DATA + _der(0xA0, signed)))
        named = [(a.filename, a.data) for a in email.attachments if a.filename != "smime.p7m"]
        return email.body, named

    assert read_with(_der(0x31, signers + tail.encode())) == read_with(_der(0x31, b""))
