"""Properties: intake returns or raises MessageParseError on any bytes; classify never raises."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asm_email_rules.classify import Classification, classify
from asm_email_rules.errors import MessageParseError
from asm_email_rules.intake import decode_header_text, parse_message, parse_msg_ids
from asm_email_rules.model import InboundEmail
from asm_email_rules.settings import Limits

VALID = (
    b"Return-Path: <jane@example.com>\r\n"
    b"From: =?utf-8?B?SmFuZQ==?= <jane@example.com>\r\n"
    b'To: help@desk.example, "Doe, J" <j@x.example>\r\n'
    b"Subject: =?utf-8?Q?R=C3=A9?= [CALL#12]\r\n"
    b"Date: Tue, 04 Mar 2025 09:15:00 +0000\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"References: <a@b> <c@d>\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
    b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    b"--inner\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--inner--\r\n"
    b'--outer\r\nContent-Type: application/pdf; name="a.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"%PDF" * 20) + b"\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: fw\r\n\r\nbody\r\n"
    b"--outer--\r\n"
)
SMALL = Limits(max_part_count=5, max_mime_depth=3, max_line_length=300, max_header_count=20)


def check(raw: bytes, limits: Limits = Limits()) -> None:  # noqa: B008
    if not raw.strip():
        with pytest.raises(MessageParseError, match="empty message"):
            parse_message(raw, limits=limits)
        return
    email = parse_message(raw, limits=limits)  # any other failure would be a wrapped bug
    assert isinstance(email, InboundEmail)
    assert "\n" not in email.subject
    assert "\r" not in email.subject
    assert email.raw_size == len(raw)
    assert isinstance(classify(email), Classification)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=len(VALID)))
def test_truncated_valid_message(cut: int) -> None:
    check(VALID[:cut])
    check(VALID[:cut], SMALL)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(VALID) - 1), st.binary(max_size=8)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_valid_message(edits: list[tuple[int, bytes]]) -> None:
    raw = bytearray(VALID)
    for position, replacement in edits:
        raw[position : position + len(replacement)] = replacement
    check(bytes(raw))
    check(bytes(raw), SMALL)


@settings(max_examples=100)
@given(st.sampled_from([b"outer", b"inner"]), st.binary(max_size=12))
def test_bad_boundaries_and_nul_bytes(boundary: bytes, junk: bytes) -> None:
    check(VALID.replace(boundary, junk))
    check(VALID.replace(b"\r\n", b"\r\n\x00", 3))


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_header_decoding_never_yields_line_breaks(text: str) -> None:
    decoded = decode_header_text(text)
    assert "\r" not in decoded
    assert "\n" not in decoded
    assert all(mid.startswith("<") and mid.endswith(">") for mid in parse_msg_ids(text))


header_names = st.sampled_from(
    [
        "Auto-Submitted",
        "Precedence",
        "List-Id",
        "Content-Type",
        "X-Autoreply",
        "X-Auto-Response-Suppress",
        "Original-Message-ID",
        "X-MS-Exchange-Message-Is-Ndr",
    ]
)


@settings(max_examples=200)
@given(
    sender=st.text(max_size=40),
    subject=st.text(max_size=80),
    body=st.text(max_size=300),
    return_path=st.none() | st.text(max_size=20),
    headers=st.lists(st.tuples(header_names, st.text(max_size=60)), max_size=6),
    own=st.lists(st.text(max_size=20), max_size=3),
    codes=st.lists(st.integers(), max_size=4),
)
def test_classify_never_raises(
    sender: str,
    subject: str,
    body: str,
    return_path: str | None,
    headers: list[tuple[str, str]],
    own: list[str],
    codes: list[int],
) -> None:
    email = InboundEmail(
        sender=sender,
        subject=subject,
        body=body,
        return_path=return_path,
        headers=tuple(headers),
    )
    result = classify(email, own_addresses=own, fatal_codes=codes)
    assert result.reasons
    assert result.may_auto_reply == (not result.automatic and not result.auto_reply_suppressed)
