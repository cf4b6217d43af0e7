"""Properties: the A-R parser and token verifier never raise, and forged headers never help."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules.auth import (
    AuthVerdict,
    authenticate_sender,
    parse_authentication_results,
)
from asm_email_rules.tokens import (
    TokenStatus,
    make_approval_token,
    verify_approval_token,
)

OUR_ID = "mx.example.net"
NOW = datetime(2026, 3, 1, tzinfo=UTC)

# Text built from the characters the grammar cares about, so the parser's branches get exercised.
_FRAGMENTS = [
    *' \t\r\n;=()"\\./@-_abcdehimnoprsx1',
    "mx.example.net",
    "dkim",
    "dmarc",
    "pass",
    "fail",
    "none",
    "header.d",
    "header.from",
    "example.com",
]
grammar_text = st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=200), grammar_text)


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_parser_never_raises(value: str) -> None:
    parsed = parse_authentication_results(value)
    if parsed is not None:
        assert parsed.authserv_id
        for result in parsed.results:
            assert result.method == result.method.lower()
            assert result.result == result.result.lower()


@settings(max_examples=200, deadline=None)
@given(st.lists(any_text, max_size=4), st.text(max_size=40))
def test_authenticate_never_raises(headers: list[str], from_domain: str) -> None:
    result = authenticate_sender(headers, authserv_id=OUR_ID, from_domain=from_domain)
    assert isinstance(result.verdict, AuthVerdict)
    assert "\n" not in result.reason
    assert "\r" not in result.reason


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [
            "mx.example.net; dmarc=fail header.from=example.com",
            "mx.example.net; dkim=pass header.d=evil.example",
            "mx.example.net; none",
            "mx.example.net; spf=pass smtp.mailfrom=example.com",
        ]
    ),
    st.lists(any_text, max_size=3),
)
def test_headers_below_a_non_pass_topmost_header_never_make_a_pass(
    topmost: str, forged_below: list[str]
) -> None:
    forged = [*forged_below, "mx.example.net; dmarc=pass header.from=example.com"]
    result = authenticate_sender([topmost, *forged], authserv_id=OUR_ID, from_domain="example.com")
    assert result.verdict is not AuthVerdict.PASS


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_token_verifier_never_raises_and_random_text_is_never_valid(token: str) -> None:
    result = verify_approval_token("secret", token, task_number=1, approver_id=1, now=NOW)
    assert result.status is not TokenStatus.VALID


@settings(max_examples=200, deadline=None)
@given(
    task=st.integers(0, 2**63 - 1),
    approver=st.integers(0, 2**63 - 1),
    nonce=st.text(alphabet="0123456789abcdef", min_size=8, max_size=8),
    minutes=st.integers(1, 60 * 24 * 365),
    action=st.one_of(st.none(), st.sampled_from(["approve", "reject"])),
)
def test_token_round_trip(
    task: int, approver: int, nonce: str, minutes: int, action: str | None
) -> None:
    issued = make_approval_token(
        "secret",
        task_number=task,
        approver_id=approver,
        expires_at=NOW + timedelta(minutes=minutes),
        nonce=nonce,
        action=action,
    )
    assert set(issued.token) <= set("abcdefghijklmnopqrstuvwxyz234567")
    ok = verify_approval_token(
        "secret",
        issued.token.upper(),
        task_number=task,
        approver_id=approver,
        now=NOW,
        action=action,
    )
    assert ok.status is TokenStatus.VALID
    assert ok.token_id == issued.token_id
