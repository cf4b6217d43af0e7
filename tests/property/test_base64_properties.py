"""Properties: an attachment's bytes and notes do not depend on the optional ``fast`` extra.

Base64 bodies (RFC 2045 section 6.8) are decoded by ``pybase64`` where it reads them exactly as
``binascii.a2b_base64`` does (:func:`asm_email_rules.mime_tree._base64_decoder`), else by
``binascii``; a host without the extra gets the same attachments.
"""

from __future__ import annotations

import base64
import binascii
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules import mime_tree
from asm_email_rules.intake import parse_message
from asm_email_rules.model import InboundEmail

pybase64 = pytest.importorskip("pybase64", reason="the `fast` extra (pybase64) is not installed")

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
WHITE = b" \t\r\n"
# what real and broken base64 bodies hold: the alphabet, line breaks, padding, the URL-safe
# alphabet's two letters, and bytes that are in no alphabet
PIECES = st.one_of(
    st.binary(max_size=80).map(base64.encodebytes),
    st.binary(max_size=60).map(base64.b64encode),
    st.lists(st.sampled_from(list(ALPHABET + WHITE + b"=-_*.\x00\xff")), max_size=30).map(bytes),
    st.sampled_from([b"=", b"==", b"\r\n", b"\n", b" ", b"-", b"_"]),
)
BODIES = st.lists(PIECES, max_size=6).map(b"".join)


def _message(body: bytes) -> bytes:
    return (
        b"From: someone@example.org\r\nSubject: a file\r\nMessage-ID: <b64@example.org>\r\n"
        b'Content-Type: multipart/mixed; boundary="cut"\r\n\r\n'
        b"--cut\r\nContent-Type: text/plain\r\n\r\nSee the file.\r\n"
        b'--cut\r\nContent-Type: application/octet-stream; name="f.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n--cut--\r\n"
    )


def _read(raw: bytes) -> InboundEmail:
    return parse_message(raw)


def _without_the_extra(monkeypatch: pytest.MonkeyPatch, read: Callable[[], InboundEmail]) -> object:
    with monkeypatch.context() as patched:
        patched.setattr(mime_tree, "_fast_b64decode", None)
        return _seen(read())


def _seen(email: InboundEmail) -> object:
    return [(a.filename, a.data) for a in email.attachments], email.notes


@settings(max_examples=400, deadline=None)
@given(body=BODIES)
def test_an_attachment_is_the_same_with_and_without_the_extra(body: bytes) -> None:
    # The same message, read with pybase64 where it applies and with binascii alone: the same
    # attachment bytes, and the same intake notes (invalid characters, repaired length).
    raw = _message(body)
    with pytest.MonkeyPatch.context() as monkeypatch:
        alone = _without_the_extra(monkeypatch, lambda: _read(raw))
    assert _seen(_read(raw)) == alone


@settings(max_examples=1000, deadline=None)
@given(body=BODIES)
def test_the_decoder_chosen_reads_the_body_as_binascii_does(body: bytes) -> None:
    invalid = mime_tree._has_invalid_base64(body, 0, len(body))
    decode = mime_tree._base64_decoder(body, 0, len(body), invalid)
    try:
        expected: bytes | None = binascii.a2b_base64(body)
    except binascii.Error:
        expected = None
    try:
        got: bytes | None = decode(memoryview(body))
    except binascii.Error:
        got = None
    if decode is not binascii.a2b_base64:  # only bodies it reads alike are given to pybase64
        assert got == expected


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    fast = mime_tree._fast_b64decode
    assert fast is not None

    def counting(data: memoryview) -> bytes:
        calls.append(len(data))
        return fast(data)

    monkeypatch.setattr(mime_tree, "_fast_b64decode", counting)
    return calls


def test_a_well_formed_attachment_is_decoded_by_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytes(range(256)) * 400  # a 100 KB file, in 76-character lines as mailers send it
    calls = _counted(monkeypatch)
    email = _read(_message(base64.encodebytes(data).replace(b"\n", b"\r\n")))
    assert [a.data for a in email.attachments] == [data]
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"QUI=QUJD", "data after full padding: binascii stops (AB), pybase64 1.5 fails"),
        (b"QUJD=REVG", "a = between groups: both skip it, but the guard does not tell"),
        (b"QUJD-_-_", "the URL-safe alphabet's letters: outside the alphabet (a note)"),
        (b"QUJD*REVG", "a character outside every alphabet"),
    ],
)
def test_a_body_the_two_read_differently_keeps_binascii(
    monkeypatch: pytest.MonkeyPatch, body: bytes, why: str
) -> None:
    calls = _counted(monkeypatch)
    email = _read(_message(body))
    assert calls == [], why
    with monkeypatch.context() as patched:
        patched.setattr(mime_tree, "_fast_b64decode", None)
        assert _seen(email) == _seen(_read(_message(body)))


def test_choosing_the_decoder_copies_no_large_body() -> None:
    # A body padded early (pieces encoded one by one and joined, each with its own "=") keeps
    # binascii; telling so must not copy the rest of the body: a 24 MB message would need
    # twice its size again, beyond the 3x peak issue 10 allows for the whole reading.
    rest = base64.encodebytes(bytes(range(256)) * 16_384).replace(b"\n", b"\r\n")  # 5.6 MB
    raw = b"QUI=\r\n" + rest
    tracemalloc.start()
    try:
        decode = mime_tree._base64_decoder(raw, 0, len(raw), False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decode is binascii.a2b_base64
    assert peak < 64 * 1024, f"{peak} bytes allocated to choose the decoder"


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=3000),
    width=st.sampled_from([4, 64, 76, 1000]),
    between=st.sampled_from([b"\r\n", b" ", b"\t", b" \r\n"]),
)
def test_real_base64_is_always_decoded_never_kept_as_text(
    data: bytes, width: int, between: bytes
) -> None:
    # The check that keeps words declared base64 as written (NOT_BASE64) must never fire on
    # base64 itself, at any line width a sender may choose (RFC 2045 6.8: at most 76), nor on
    # base64 a broken mail program spaced out (groups apart, line breaks turned to spaces).
    text = base64.b64encode(data)
    body = between.join(text[i : i + width] for i in range(0, len(text), width)) or b""
    email = _read(_message(body))
    assert [a.data for a in email.attachments] == [data]
    assert "not_base64" not in [note.kind.value for note in email.notes]
