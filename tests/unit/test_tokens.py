"""Approval tokens: round trip, expiry, tampering, binding to task/approver/action, malformed."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from asm_email_rules.errors import AsmEmailError
from asm_email_rules.tokens import (
    MAX_TOKEN_LENGTH,
    ApprovalToken,
    TokenError,
    TokenStatus,
    make_approval_token,
    new_nonce,
    verify_approval_token,
)

SECRET = "correct horse battery staple"
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
EXPIRES = NOW + timedelta(days=7)
NONCE = "0badcafe"


def issue(**overrides: object) -> ApprovalToken:
    values: dict[str, object] = {
        "task_number": 5837,
        "approver_id": 42,
        "expires_at": EXPIRES,
        "nonce": NONCE,
        "action": None,
    }
    values.update(overrides)
    return make_approval_token(SECRET, **values)  # type: ignore[arg-type]


def check(token: str, **overrides: object) -> TokenStatus:
    values: dict[str, object] = {"task_number": 5837, "approver_id": 42, "now": NOW}
    values.update(overrides)
    return verify_approval_token(SECRET, token, **values).status  # type: ignore[arg-type]


def test_round_trip() -> None:
    issued = issue()
    result = verify_approval_token(SECRET, issued.token, task_number=5837, approver_id=42, now=NOW)
    assert result.status is TokenStatus.VALID
    assert result.ok
    assert result.token_id == issued.token_id == "5837-42-0badcafe"
    assert result.reason == "the approval token is valid until 2026-03-08 09:30 UTC"


def test_token_text_is_short_and_subject_safe() -> None:
    issued = issue()
    assert re.fullmatch(r"[a-z0-9]+", issued.token)
    assert len(issued.token) <= 40
    assert issued.expires_at == EXPIRES
    subject = f"Re: [APPROVE#5837-{issued.token}]"
    extracted = subject.split("-", 1)[1].rstrip("]")
    assert check(extracted) is TokenStatus.VALID


def test_large_ids_stay_within_the_accepted_length() -> None:
    issued = issue(task_number=2**63 - 1, approver_id=2**63 - 1)
    assert len(issued.token) <= MAX_TOKEN_LENGTH
    assert check(issued.token, task_number=2**63 - 1, approver_id=2**63 - 1) is TokenStatus.VALID


def test_uppercase_mangled_token_still_verifies() -> None:
    issued = issue()
    assert check(issued.token.upper()) is TokenStatus.VALID
    assert check(f"  {issued.token.title()} ") is TokenStatus.VALID


def test_expired() -> None:
    issued = issue()
    assert check(issued.token, now=EXPIRES - timedelta(seconds=1)) is TokenStatus.VALID
    result = verify_approval_token(
        SECRET, issued.token, task_number=5837, approver_id=42, now=EXPIRES
    )
    assert result.status is TokenStatus.EXPIRED
    assert result.reason == "the approval token expired at 2026-03-08 09:30 UTC"


def test_expiry_is_rounded_down_to_the_minute() -> None:
    issued = issue(expires_at=EXPIRES + timedelta(seconds=59))
    assert issued.expires_at == EXPIRES
    assert check(issued.token, now=EXPIRES + timedelta(seconds=30)) is TokenStatus.EXPIRED


def test_other_time_zones_and_naive_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    issued = issue(expires_at=EXPIRES.astimezone(plus_two))
    assert issued.token == issue().token
    naive_now = (EXPIRES - timedelta(minutes=1)).replace(tzinfo=None)
    assert check(issued.token, now=naive_now) is TokenStatus.VALID


def test_other_task() -> None:
    result = verify_approval_token(SECRET, issue().token, task_number=5838, approver_id=42, now=NOW)
    assert result.status is TokenStatus.WRONG_TASK
    assert result.reason == "the approval token was issued for task 5837, not 5838"


def test_other_approver() -> None:
    assert check(issue().token, approver_id=43) is TokenStatus.WRONG_APPROVER


def test_action_bound_token() -> None:
    issued = issue(action="approve")
    assert issued.action == "approve"
    assert check(issued.token, action="approve") is TokenStatus.VALID
    assert check(issued.token, action="APPROVE ") is TokenStatus.VALID
    assert check(issued.token, action="reject") is TokenStatus.WRONG_ACTION
    assert check(issued.token) is TokenStatus.WRONG_ACTION


def test_unbound_token_serves_any_action() -> None:
    issued = issue()
    assert check(issued.token, action="approve") is TokenStatus.VALID
    assert check(issued.token, action="reject") is TokenStatus.VALID


def test_distinct_nonces_give_distinct_tokens_and_ids() -> None:
    first, second = issue(nonce="00000001"), issue(nonce="00000002")
    assert first.token != second.token
    assert first.token_id != second.token_id


def test_wrong_secret_is_bad_signature() -> None:
    issued = issue()
    result = verify_approval_token(
        "rotated secret", issued.token, task_number=5837, approver_id=42, now=NOW
    )
    assert result.status is TokenStatus.BAD_SIGNATURE
    assert result.token_id is None
    bytes_secret = make_approval_token(
        SECRET.encode(), task_number=5837, approver_id=42, expires_at=EXPIRES, nonce=NONCE
    )
    assert bytes_secret.token == issued.token


def _raw(token: str) -> bytearray:
    return bytearray(base64.b32decode(token.upper() + "=" * (-len(token) % 8)))


def _text(raw: bytes | bytearray) -> str:
    return base64.b32encode(bytes(raw)).decode().rstrip("=").lower()


# Byte offsets in the v1 layout: expiry 0-3, nonce 4-7, action tag 8, approver varint at 9
# (one byte for 42), task varint at 10-11 (5837 takes two), MAC 12-21.
@pytest.mark.parametrize(
    ("offset", "field"),
    [(0, "expiry"), (3, "expiry"), (5, "nonce"), (9, "approver"), (10, "task"), (12, "mac")],
)
def test_tampering_any_field_breaks_the_signature(offset: int, field: str) -> None:
    raw = _raw(issue().token)
    raw[offset] ^= 0x01
    assert check(_text(raw)) is TokenStatus.BAD_SIGNATURE, field
    raw[offset] ^= 0x01
    raw[-1] ^= 0x80
    assert check(_text(raw)) is TokenStatus.BAD_SIGNATURE


def test_tampering_the_action_tag_is_refused() -> None:
    raw = _raw(issue(action="approve").token)
    raw[8] = 0  # claim the token is unbound
    assert check(_text(raw), action="approve") is TokenStatus.BAD_SIGNATURE
    raw = _raw(issue().token)
    raw[8] = 7  # claim a binding the token never had
    assert check(_text(raw), action="approve") in {
        TokenStatus.BAD_SIGNATURE,
        TokenStatus.WRONG_ACTION,
    }


def test_extended_expiry_is_refused() -> None:
    raw = _raw(issue().token)
    raw[0] = 0xFF  # push the expiry far into the future
    assert check(_text(raw)) is TokenStatus.BAD_SIGNATURE


@pytest.mark.parametrize(
    "token",
    [
        "",
        "   ",
        "abc",
        "0badcafe",
        "a" * (MAX_TOKEN_LENGTH + 1),
        "ahazkigimnkc4cimzuwrhouwse5qubniewi!",
        "ahazkigimnkc4cimzuwrhouwse5qubniewi8",
        "é" * 36,
        "a",
    ],
)
def test_malformed_strings(token: str) -> None:
    result = verify_approval_token(SECRET, token, task_number=5837, approver_id=42, now=NOW)
    assert result.status is TokenStatus.MALFORMED
    assert result.token_id is None
    assert result.reason.startswith("the approval token is malformed: ")


def test_truncated_and_extended_tokens_are_malformed() -> None:
    token = issue().token
    for variant in (token[:-1], token[:-8], token + "a", token + "aaaaaaaa"):
        assert check(variant) in {TokenStatus.MALFORMED, TokenStatus.BAD_SIGNATURE}, variant
    assert check(token[:-1]) is TokenStatus.MALFORMED


def test_non_canonical_spelling_is_malformed() -> None:
    token = issue().token  # 22 bytes -> 36 chars; the last char carries 4 padding bits
    last = "abcdefghijklmnopqrstuvwxyz234567".index(token[-1])
    sibling = token[:-1] + "abcdefghijklmnopqrstuvwxyz234567"[last ^ 0x01]
    assert check(sibling) is TokenStatus.MALFORMED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task_number": -1},
        {"approver_id": 2**63},
        {"nonce": "xyz"},
        {"nonce": "0badcafe0"},
        {"expires_at": datetime(1969, 1, 1, tzinfo=UTC)},
    ],
)
def test_make_rejects_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(TokenError):
        issue(**kwargs)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(AsmEmailError):
        make_approval_token("", task_number=1, approver_id=1, expires_at=EXPIRES, nonce=NONCE)
    with pytest.raises(TokenError):
        verify_approval_token(b"", "abc", task_number=1, approver_id=1, now=NOW)


def test_new_nonce_is_random_and_accepted() -> None:
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    for nonce in list(nonces)[:5]:
        assert re.fullmatch(r"[0-9a-f]{8}", nonce)
        assert check(issue(nonce=nonce).token) is TokenStatus.VALID
