"""The reader of a ``UID FETCH`` answer sent ahead (``adapters.imap._untagged``): RFC 3501 7.4.2
(``FETCH`` response, ``BODY[]``), 4.3 (literals: ``{n}`` CRLF, then exactly ``n`` octets of any
value)."""

from __future__ import annotations

import imaplib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules.adapters import imap
from asm_email_rules.adapters.imap import _untagged


class _Wire:
    """What ``_untagged`` reads from: imaplib's ``readline``, ``read`` and ``abort``."""

    abort = imaplib.IMAP4.abort

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def readline(self) -> bytes:
        return self._file.readline()

    def read(self, size: int) -> bytes:
        return self._file.read(size)

    def rest(self) -> bytes:
        return self._file.read()


# A message may hold anything a literal can: CRLFs, ")", "{12}" at a line's end, NULs.
_BODIES = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"{12}\r\n", b")\r\n", b"UID 99 ", b"BODY[] {3}\r\n", b"x", b"\r\n"]),
    max_size=20,
).map(b"".join)


@settings(deadline=None)
@given(
    body=_BODIES,
    uid=st.integers(min_value=1, max_value=2**32 - 1),
    seq=st.integers(min_value=1, max_value=10**6),
    uid_first=st.booleans(),
    flags=st.booleans(),
    after=st.binary(max_size=40),
)
def test_the_message_and_its_uid_are_read_whatever_the_order_of_the_items(
    body: bytes, uid: int, seq: int, uid_first: bool, flags: bool, after: bytes
) -> None:
    # RFC 3501 7.4.2: the items of a FETCH response come in any order, and the server may add
    # FLAGS; the literal is exactly its announced length, whatever bytes it holds.
    items = [b"UID %d" % uid, b"BODY[] {%d}\r\n" % len(body) + body]
    if not uid_first:
        items.reverse()
    if flags:
        items.insert(1, rb"FLAGS (\Seen)")
    response = b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"
    wire = _Wire(response + b"ZA1 OK done\r\n" + after)
    said, got = _untagged(wire, wire.readline())  # type: ignore[arg-type]
    assert got == body
    assert imap._UID_RE.search(said) is not None
    assert imap._UID_RE.search(said).group(1) == b"%d" % uid  # type: ignore[union-attr]
    assert wire.rest() == b"ZA1 OK done\r\n" + after  # nothing read past the response


@settings(deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=50))
def test_a_literal_cut_short_is_an_error_not_a_message(body: bytes, missing: int) -> None:
    # RFC 3501 4.3: a literal is exactly n octets; a connection that ends before them is lost,
    # and what came is not taken for the message.
    response = b"* 1 FETCH (UID 7 BODY[] {%d}\r\n" % (len(body) + missing) + body
    wire = _Wire(response)
    with pytest.raises(imaplib.IMAP4.abort, match="within a literal"):
        _untagged(wire, wire.readline())  # type: ignore[arg-type]


def test_a_response_without_a_body_is_read_whole_and_gives_none() -> None:
    # Untagged responses that interleave with ours (RFC 3501 7: EXISTS, a FETCH of flags that
    # another client changed) carry no message.
    wire = _Wire(b"* 3 FETCH (UID 9 FLAGS (\\Deleted))\r\n* 4 EXISTS\r\n")
    said, body = _untagged(wire, wire.readline())  # type: ignore[arg-type]
    assert (said, body) == (b"* 3 FETCH (UID 9 FLAGS (\\Deleted))\r\n", None)
    assert wire.rest() == b"* 4 EXISTS\r\n"


def test_a_literal_announced_larger_than_the_piece_size_is_read_in_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server that announces more than it sends: what is held is what came, not what was
    # announced (a buffered read(n) would allocate n bytes at once).
    monkeypatch.setattr(imap, "_LITERAL_CHUNK", 16)
    reads: list[int] = []
    body = bytes(range(256)) * 2
    wire = _Wire(b"* 1 FETCH (UID 7 BODY[] {%d}\r\n" % len(body) + body + b")\r\n")
    real = wire.read

    def read(size: int) -> bytes:
        reads.append(size)
        return real(size)

    wire.read = read  # type: ignore[method-assign]
    assert _untagged(wire, wire.readline())[1] == body  # type: ignore[arg-type]
    assert max(reads) == 16
    assert sum(reads) == len(body)


@settings(deadline=None)
@given(
    body=_BODIES, uid=st.integers(min_value=1, max_value=2**32 - 1), after=st.binary(max_size=40)
)
def test_a_message_only_skipped_is_read_in_small_pieces_and_the_stream_stays_in_step(
    body: bytes, uid: int, after: bytes
) -> None:
    # The answer ahead that another command drops (close() at a session's end, on the thread
    # that ends it while the next session holds its own batch): read to its end, never held
    # whole, and the next response is where it was.
    wire = _Wire(b"* 1 FETCH (UID %d BODY[] {%d}\r\n" % (uid, len(body)) + body + b")\r\n" + after)
    reads: list[int] = []
    real = wire.read

    def read(size: int) -> bytes:
        reads.append(size)
        return real(size)

    wire.read = read  # type: ignore[method-assign]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imap, "_DROP_CHUNK", 16)  # pieces smaller than the bodies here
        said, got = _untagged(wire, wire.readline(), keep=False)  # type: ignore[arg-type]
    assert got is None
    assert imap._UID_RE.search(said).group(1) == b"%d" % uid  # type: ignore[union-attr]
    assert all(size <= 16 for size in reads)
    assert sum(reads) == len(body)
    assert wire.rest() == after


def test_a_skipped_literal_cut_short_is_an_error() -> None:
    wire = _Wire(b"* 1 FETCH (UID 7 BODY[] {900000}\r\n" + b"x" * 1000)
    with pytest.raises(imaplib.IMAP4.abort, match="within a literal"):
        _untagged(wire, wire.readline(), keep=False)  # type: ignore[arg-type]
