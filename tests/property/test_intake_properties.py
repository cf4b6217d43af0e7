"""Properties: intake returns or raises MessageParseError on any bytes; classify never raises."""

from __future__ import annotations

import base64

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asm_email_rules.classify import Classification, classify
from asm_email_rules.errors import MessageParseError
from asm_email_rules.header_values import mime_params
from asm_email_rules.intake import decode_header_text, has_text, parse_message, parse_msg_ids
from asm_email_rules.mime_tree import content_type, has_line_over, longest_line
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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID)))
def test_truncated_valid_message(cut: int) -> None:
    check(VALID[:cut])
    check(VALID[:cut], SMALL)


@settings(max_examples=200, deadline=None)
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


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([b"outer", b"inner"]), st.binary(max_size=12))
def test_bad_boundaries_and_nul_bytes(boundary: bytes, junk: bytes) -> None:
    check(VALID.replace(boundary, junk))
    check(VALID.replace(b"\r\n", b"\r\n\x00", 3))


@settings(max_examples=200, deadline=None)
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


@settings(max_examples=200, deadline=None)
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


# --------------------------------------------------------------------------- text is text


def str_fields(value: object, path: str = "email") -> list[tuple[str, str]]:
    """Every ``str`` inside a parsed message (attrs fields, tuples, notes), with its path."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, tuple | list):
        return [item for k, v in enumerate(value) for item in str_fields(v, f"{path}[{k}]")]
    cls = type(value)
    if attrs.has(cls):
        return [
            item
            for field in attrs.fields(cls)
            for item in str_fields(getattr(value, field.name), f"{path}.{field.name}")
        ]
    return []


def assert_all_text_encodes(email: InboundEmail) -> None:
    for path, text in str_fields(email):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # pragma: no cover - the failure being guarded
            raise AssertionError(f"{path} holds {text!r}: {exc}") from exc


CHARSETS = st.sampled_from(
    [
        "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "utf-7", "utf-16", "utf-32",
        "x-unknown", "unicode_escape", "raw-unicode-escape", "punycode", "idna", "rot13",
        "iso-2022-jp", "shift_jis", "koi8-r", "",
    ]
)  # fmt: skip
ENCODINGS = st.sampled_from(["7bit", "8bit", "quoted-printable", "base64", "x-uuencode"])
B64 = st.binary(max_size=40).map(lambda data: base64.b64encode(data).decode("ascii"))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A message whose charsets, encoded-words, filenames and bodies are all drawn."""
    charset = draw(CHARSETS)
    word = f"=?{draw(CHARSETS) or 'utf-7'}?B?{draw(B64)}?="
    name = (
        f"=?{draw(CHARSETS) or 'utf-8'}?Q?{draw(st.sampled_from(['+2AA-', '=FF=FE', 'caf=E9']))}?="
    )
    body = draw(st.binary(max_size=200))
    cte = draw(ENCODINGS)
    if cte == "base64":
        body = base64.encodebytes(body)
    filename = draw(st.sampled_from(["a+2AA-", "%ff%fe", "%ED%A0%80", "plain.txt"]))
    disposition = f"attachment; filename*={draw(CHARSETS) or 'utf-7'}''{filename}"
    head = (
        f"From: {name} <a@b.example>\r\nSender: {word} <s@b.example>\r\nSubject: {word}\r\n"
        f"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"--b\r\nContent-Type: text/plain; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode("ascii")
    tail = (
        f"\r\n--b\r\nContent-Type: text/html; charset={draw(CHARSETS)}\r\n\r\n"
        "<p>&#xd800;&#55296;x</p>\r\n"
        f"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: {disposition}"
        "\r\n\r\ndata\r\n--b--\r\n"
    ).encode("ascii")
    return head + body + tail


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_every_text_field_encodes_as_utf8(raw: bytes) -> None:
    assert_all_text_encodes(parse_message(raw))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_every_text_field_of_arbitrary_bytes_encodes_as_utf8(raw: bytes) -> None:
    if raw.strip():
        assert_all_text_encodes(parse_message(raw))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.just(b"\n"), st.just(b"\r\n"), st.binary(max_size=12), st.just(b"x" * 40)),
        max_size=40,
    ),
    st.integers(min_value=0, max_value=60),
)
def test_line_over_limit_agrees_with_the_longest_line(pieces: list[bytes], limit: int) -> None:
    # The intake's line-length check (RFC 5322 section 2.1.1's 998) asks "is any line over
    # the limit?" without splitting the message; it must answer as the longest line does.
    raw = b"".join(pieces)
    assert has_line_over(raw, limit) is (longest_line(raw) > limit)


@pytest.mark.parametrize(
    ("raw", "limit", "over"),
    [
        (b"", 0, False),
        (b"\n", 0, False),
        (b"a", 0, True),
        (b"abc", 3, False),
        (b"abc", 2, True),
        (b"ab\nabc\nab", 3, False),
        (b"ab\nabcd\nab", 3, True),
        (b"ab\nab\nabcd", 3, True),  # the last line, without a line break after it
        (b"abcd\n", 3, True),  # the first line
        (b"abc\r\n", 3, True),  # a CR is part of the line, as in longest_line
    ],
)
def test_line_over_limit_at_the_edges(raw: bytes, limit: int, over: bool) -> None:
    assert has_line_over(raw, limit) is over
    assert (longest_line(raw) > limit) is over


# --------------------------------------------------------------------------- what is text

PADDING = st.lists(
    st.sampled_from(
        [" ", "\n", "\r\n", "\t", "\xa0", "\u200b", "\ufeff", "[image: logo]", "[cid:a@b]"]
    ),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab .!\n[]:HTMLhtml"), max_size=80),
    before=PADDING,
    after=PADDING,
)
def test_padding_never_changes_whether_a_part_has_text(text: str, before: str, after: str) -> None:
    # White space, zero-width characters and image placeholders around a text part (how mail
    # programs pad the plain alternative of an HTML mail) never make text out of nothing, and
    # never take the text away (fault 1 of the field trial).
    assert has_text(before + text + after) is has_text(text)
    assert has_text(before + after) is False


# --------------------------------------------------------------------------- Content-Type

CONTENT_TYPE = st.lists(
    st.one_of(
        st.sampled_from(["text", "/", "plain", "multipart", "mixed", " ", ";", ",", "=", '"']),
        st.sampled_from(["charset", "boundary", "name", "utf-8", "(c)", "\\", "*", "x"]),
        st.text(max_size=4),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(CONTENT_TYPE)
def test_content_type_always_gives_a_type_and_agrees_with_valid_values(value: str) -> None:
    # Field trial, fault 3: any value gives type/subtype (text/plain when it names none); a
    # value whose type is valid is read exactly as before, without a repair.
    kind, params, repair = content_type(value, "text/plain")
    assert kind.count("/") == 1
    assert kind == kind.lower()
    if not repair:
        assert params == mime_params(value, "text/plain")[1]
    assert "\n" not in repair
