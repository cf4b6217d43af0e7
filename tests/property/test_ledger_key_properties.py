"""Properties of the ledger key's content hash (``asm_email_rules.ledger_key``).

DESIGN 4, "Nothing is lost": "the key is the Message-ID plus a hash of the message *without* the
trace headers that relays add (Received, Return-Path, Delivered-To, X-Original-To,
Authentication-Results, ARC-*), so a redelivery through another relay is still a duplicate,
while two different messages that reuse one Message-ID are both acted on."
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules.intake import parse_message
from asm_email_rules.ledger_key import cut_kept, ledger_sha256

HEADER = [
    b"From: Uma <uma@corp.example>\r\n",
    b"To: helpdesk@desk.example\r\n",
    b"Subject: printer\r\n",
    b"Message-ID: <one@corp.example>\r\n",
    b"Date: Fri, 27 Nov 2026 11:00:00 +0000\r\n",
]
BODY = b"\r\nThe printer is on fire.\r\nReceived: this line is body text, not a header\r\n"

TRACE_NAMES = st.sampled_from(
    [
        "Received",
        "Return-Path",
        "Delivered-To",
        "X-Original-To",
        "Authentication-Results",
        "ARC-Seal",
        "ARC-Message-Signature",
        "ARC-Authentication-Results",
        "Received-SPF",
        "X-Received",
    ]
)
VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@st.composite
def trace_field(draw: st.DrawFn) -> bytes:
    """A trace field in any letter case, folded over several lines or not, CRLF or LF ended."""
    name = "".join(
        c.upper() if draw(st.booleans()) else c.lower() for c in draw(TRACE_NAMES)
    ).encode()
    lines = draw(st.lists(VALUE, min_size=1, max_size=3))
    end = draw(st.sampled_from([b"\r\n", b"\n"]))
    folded = end.join(
        [name + b": " + lines[0].encode()] + [b"\t" + line.encode() for line in lines[1:]]
    )
    return folded + end


def message(header: list[bytes], body: bytes = BODY) -> bytes:
    return b"".join(header) + body


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(HEADER)), trace_field()), max_size=6))
def test_trace_fields_anywhere_in_the_header_leave_the_key_unchanged(
    insertions: list[tuple[int, bytes]],
) -> None:
    header = list(HEADER)
    for position, field in insertions:
        header.insert(min(position, len(header)), field)
    assert ledger_sha256(message(header)) == ledger_sha256(message(HEADER))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, len(HEADER) - 1),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b),
)
def test_any_other_header_byte_changes_the_key(line: int, extra: bytes) -> None:
    header = list(HEADER)
    header[line] = header[line][:-2] + extra + b"\r\n"
    assert ledger_sha256(message(header)) != ledger_sha256(message(HEADER))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_any_body_change_changes_the_key(extra: bytes) -> None:
    assert ledger_sha256(message(HEADER, BODY + extra)) != ledger_sha256(message(HEADER))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_key_and_without_a_field_it_is_the_raw_hash(raw: bytes) -> None:
    key = ledger_sha256(raw)
    assert len(key) == 64
    assert set(key) <= set("0123456789abcdef")
    if b":" not in raw and not raw.startswith(b"From "):  # no field nor mbox From line
        assert key == hashlib.sha256(raw).hexdigest()


def test_a_message_without_trace_fields_keeps_the_raw_hash() -> None:
    raw = message(HEADER)
    assert ledger_sha256(raw) == hashlib.sha256(raw).hexdigest()


def test_a_trace_field_inside_an_attached_message_or_the_body_counts() -> None:
    base = message(HEADER, BODY)
    assert ledger_sha256(base.replace(b"Received: this", b"Received: that")) != ledger_sha256(base)
    forwarded = message(
        [*HEADER, b"Content-Type: message/rfc822\r\n"],
        b"\r\nReceived: from inner\r\nFrom: x@y\r\n\r\nhi\r\n",
    )
    assert ledger_sha256(forwarded) != ledger_sha256(forwarded.replace(b"from inner", b"other"))


def test_intake_gives_the_key_and_keeps_the_raw_hash() -> None:
    relayed = b"Received: from mx1 by mx2\r\n\tfor <helpdesk@desk.example>\r\n" + message(HEADER)
    email = parse_message(relayed)
    assert email.raw_sha256 == hashlib.sha256(relayed).hexdigest()
    assert email.ledger_sha256 == hashlib.sha256(message(HEADER)).hexdigest()


def test_the_key_is_linear_in_the_size_of_the_header_and_body() -> None:
    """Long hostile headers (many trace fields, endless folding) and a big body: the time per
    byte stays flat from 1 to 8 MB (a quadratic scan would take 64 times longer, not 8)."""
    shapes: dict[str, Callable[[int], bytes]] = {
        "many trace fields": lambda n: b"Received: x\r\n" * (n // 13) + BODY,
        "one endless folded field": lambda n: b"Received: x\r\n" + b" y\r\n" * (n // 4) + BODY,
        "no newline": lambda n: b"Subject: " + b"x" * n,
        "big body": lambda n: message(HEADER, b"\r\n" + b"line\r\n" * (n // 6)),
    }
    for name, make in shapes.items():
        timings = []
        for size in (1 << 20, 8 << 20):
            raw = make(size)
            start = time.process_time()  # CPU time of this process: a loaded machine does not count
            ledger_sha256(raw)
            timings.append(time.process_time() - start)
        assert timings[1] < 2.0, name
        assert timings[1] < max(timings[0], 0.01) * 24, (name, timings)


def test_a_leading_mbox_from_line_is_left_out_but_an_obsolete_from_field_counts() -> None:
    # procmail, Exim's pipe and Postfix's F flag write "From sender date" before the message
    raw = message(HEADER, BODY)
    assert ledger_sha256(b"From a@b  Mon Dec  1 09:07:00 2025\n" + raw) == ledger_sha256(raw)
    obsolete = b"From  : a@b\r\n" + raw  # RFC 5322 obs-optional: blanks before the colon
    assert ledger_sha256(obsolete) != ledger_sha256(raw)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(HEADER)), trace_field()), max_size=6),
    st.integers(0, 400),
)
def test_a_cut_keeps_the_same_content_whatever_the_trace_fields(
    insertions: list[tuple[int, bytes]], count: int
) -> None:
    # deliver cuts an over-long message with cut_kept: every copy must keep the same key
    header = list(HEADER)
    for position, field in insertions:
        header.insert(min(position, len(header)), field)
    long_body = BODY * 5
    cut = cut_kept(message(header, long_body), count)
    assert ledger_sha256(cut) == ledger_sha256(cut_kept(message(HEADER, long_body), count))
    assert cut == message(header, long_body)[: len(cut)]
