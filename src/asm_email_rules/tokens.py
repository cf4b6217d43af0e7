"""Approval tokens: per-approver, per-task, expiring, single-use, HMAC-signed.

A host puts ``[APPROVE#<task>-<token>]`` in its approval notification; a reply carrying it proves
the approver received that mail, which a forged ``From`` alone cannot. Token text is lower-case
base32 without padding (``[a-z2-7]``), so it survives subject case-mangling. Time (``now``,
``expires_at``) and randomness (``nonce``) are injected; single use is enforced by the caller
through ``Repository.is_token_used`` / ``use_token`` with :attr:`TokenCheck.token_id`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import struct
from datetime import UTC, datetime

import attrs

from asm_email_rules.errors import AsmEmailError

__all__ = [
    "MAX_TOKEN_LENGTH",
    "NONCE_LENGTH",
    "ApprovalToken",
    "TokenCheck",
    "TokenError",
    "TokenStatus",
    "make_approval_token",
    "new_nonce",
    "verify_approval_token",
]

MAC_BYTES = 10
"""Truncated HMAC-SHA256 length: 80 bits."""
NONCE_LENGTH = 8
"""A nonce is this many lower-case hex digits (32 bits)."""
MAX_TOKEN_LENGTH = 64
"""Longest token text accepted (ids up to 2**63 fit; typical tokens are 37-40 characters)."""

_DOMAIN = b"asm-email-rules approval token v1\x00"
_ACTION_TAG_DOMAIN = b"asm-email-rules approval action\x00"
_MAX_ID = 2**63 - 1
_MAX_MINUTES = 2**32 - 1
_NONCE = re.compile(rf"[0-9a-f]{{{NONCE_LENGTH}}}\Z")
_TOKEN_CHARS = re.compile(r"[a-z2-7]+\Z")


class TokenError(AsmEmailError, ValueError):
    """An approval token could not be made from the given values (bad id, nonce, secret)."""


class TokenStatus(enum.Enum):
    """What verifying a token found; only ``VALID`` lets an approval through."""

    VALID = "valid"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    WRONG_TASK = "wrong_task"
    WRONG_APPROVER = "wrong_approver"
    WRONG_ACTION = "wrong_action"


@attrs.frozen
class ApprovalToken:
    """An issued token: ``token`` goes into the subject, ``token_id`` into the used-token store.

    ``expires_at`` is UTC, rounded down to the minute (the precision the token carries).
    """

    token: str
    token_id: str
    task_number: int
    approver_id: int
    action: str | None
    expires_at: datetime


@attrs.frozen
class TokenCheck:
    """The result of verifying a token; ``token_id`` is set once the signature was genuine."""

    status: TokenStatus
    token_id: str | None
    reason: str
    expires_at: datetime | None = None
    """When the token stops being accepted (UTC, to the minute), once it was correctly signed:
    a used token needs remembering only until then."""

    @property
    def ok(self) -> bool:
        """True when the token may be used (the caller must still check it was not spent)."""
        return self.status is TokenStatus.VALID


def new_nonce() -> str:
    """A fresh random nonce for :func:`make_approval_token` (8 lower-case hex digits)."""
    return secrets.token_hex(NONCE_LENGTH // 2)


def _secret_bytes(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise TokenError("the approval token secret must not be empty")
    return key


def _normalize_action(action: str | None) -> str | None:
    """Actions compare case-insensitively; an empty action means 'any action'."""
    if action is None:
        return None
    text = action.strip().lower()
    return text or None


def _action_tag(action: str | None) -> int:
    """0 for an unbound token, else a 1..255 tag naming the action (the MAC binds the text)."""
    if action is None:
        return 0
    digest = hashlib.sha256(_ACTION_TAG_DOMAIN + action.encode("utf-8")).digest()
    return digest[0] % 255 + 1


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 number at ``pos``; raises ``ValueError`` when cut or too long."""
    number = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise ValueError("truncated number")
        byte = data[pos]
        pos += 1
        number |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return number, pos
    raise ValueError("number too long")


def _body(minutes: int, nonce: str, tag: int, approver_id: int, task_number: int) -> bytes:
    return (
        struct.pack(">IIB", minutes, int(nonce, 16), tag)
        + _varint(approver_id)
        + _varint(task_number)
    )


def _mac(
    key: bytes,
    *,
    task_number: int,
    approver_id: int,
    action: str | None,
    minutes: int,
    nonce: str,
) -> bytes:
    message = (
        _DOMAIN
        + struct.pack(
            ">QQII?", task_number, approver_id, minutes, int(nonce, 16), action is not None
        )
        + (action or "").encode("utf-8")
    )
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _token_id(task_number: int, approver_id: int, nonce: str) -> str:
    return f"{task_number}-{approver_id}-{nonce}"


def _utc(moment: datetime) -> datetime:
    """Aware datetimes as they are; naive ones are taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _minute_start(minutes: int) -> datetime:
    return datetime.fromtimestamp(minutes * 60, tz=UTC)


def _check_id(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise TokenError(f"{name} must be an integer from 0 to 2**63-1, got {value!r}")


def make_approval_token(
    secret: str | bytes,
    *,
    task_number: int,
    approver_id: int,
    expires_at: datetime,
    nonce: str,
    action: str | None = None,
) -> ApprovalToken:
    """Issue a token for one approver on one task, valid until ``expires_at``.

    ``action`` (e.g. ``"approve"``) binds the token to that action; ``None`` allows any action.
    ``nonce`` comes from :func:`new_nonce`. Raises :class:`TokenError` on invalid values.
    """
    key = _secret_bytes(secret)
    _check_id("task_number", task_number)
    _check_id("approver_id", approver_id)
    nonce_text = nonce.strip().lower()
    if not _NONCE.match(nonce_text):
        raise TokenError(f"nonce must be {NONCE_LENGTH} hex digits (use new_nonce())")
    timestamp = _utc(expires_at).timestamp()
    if not 0 <= timestamp < (_MAX_MINUTES + 1) * 60:
        raise TokenError(f"expires_at is outside the range a token can carry: {expires_at!r}")
    minutes = int(timestamp // 60)
    bound = _normalize_action(action)
    mac = _mac(
        key,
        task_number=task_number,
        approver_id=approver_id,
        action=bound,
        minutes=minutes,
        nonce=nonce_text,
    )
    body = _body(minutes, nonce_text, _action_tag(bound), approver_id, task_number)
    return ApprovalToken(
        token=_b32(body + mac),
        token_id=_token_id(task_number, approver_id, nonce_text),
        task_number=task_number,
        approver_id=approver_id,
        action=bound,
        expires_at=_minute_start(minutes),
    )


@attrs.frozen
class _Decoded:
    minutes: int
    nonce: str
    tag: int
    approver_id: int
    task_number: int
    mac: bytes


def _decode(token: str) -> _Decoded | str:
    """The fields of a token, or a short phrase saying why it is malformed."""
    text = token.strip().lower()
    if len(text) > MAX_TOKEN_LENGTH:
        return "it is too long"
    if not text:
        return "it is empty"
    if not _TOKEN_CHARS.match(text):
        return "it contains characters outside a-z and 2-7"
    try:
        data = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return "it is not valid base32"
    if len(data) < 9 + 2 + MAC_BYTES:
        return "it is too short"
    minutes, nonce_number, tag = struct.unpack_from(">IIB", data)
    try:
        approver_id, pos = _read_varint(data, 9)
        task_number, pos = _read_varint(data, pos)
    except ValueError:
        return "its numbers are cut off"
    if len(data) - pos != MAC_BYTES or approver_id > _MAX_ID or task_number > _MAX_ID:
        return "its length does not match its fields"
    nonce = f"{nonce_number:0{NONCE_LENGTH}x}"
    # One token text per token: reject padding bits or over-long numbers that decode the same.
    canonical = _b32(_body(minutes, nonce, tag, approver_id, task_number) + data[pos:])
    if canonical != text:
        return "it is not in canonical form"
    return _Decoded(minutes, nonce, tag, approver_id, task_number, data[pos:])


def verify_approval_token(
    secret: str | bytes,
    token: str,
    *,
    task_number: int,
    approver_id: int,
    now: datetime,
    action: str | None = None,
) -> TokenCheck:
    """Check a token found in a subject for this task, approver and action at ``now``.

    Case-insensitive; never raises on any token text (only on an empty ``secret``). A ``VALID``
    result still needs ``repository.is_token_used(check.token_id)`` to be false before acting,
    and ``use_token`` in the same transaction as the approval.
    """
    key = _secret_bytes(secret)
    decoded = _decode(token)
    if isinstance(decoded, str):
        return TokenCheck(
            TokenStatus.MALFORMED, None, f"the approval token is malformed: {decoded}"
        )
    wanted = _normalize_action(action)
    if decoded.tag == 0:
        signed_action = None  # unbound token: good for any action
    elif wanted is not None and _action_tag(wanted) == decoded.tag:
        signed_action = wanted
    else:
        return TokenCheck(
            TokenStatus.WRONG_ACTION,
            None,
            f"the approval token was issued for an action other than {wanted}"
            if wanted
            else "the approval token is bound to an action and none was given",
        )
    expected = _mac(
        key,
        task_number=decoded.task_number,
        approver_id=decoded.approver_id,
        action=signed_action,
        minutes=decoded.minutes,
        nonce=decoded.nonce,
    )
    if not hmac.compare_digest(expected, decoded.mac):
        return TokenCheck(
            TokenStatus.BAD_SIGNATURE, None, "the approval token's signature does not match"
        )
    token_id = _token_id(decoded.task_number, decoded.approver_id, decoded.nonce)
    return _check_issue(decoded, token_id, task_number, approver_id, now)


def _check_issue(
    decoded: _Decoded, token_id: str, task_number: int, approver_id: int, now: datetime
) -> TokenCheck:
    """A correctly signed token checked against the task, the approver and the time."""
    expires_at = _minute_start(decoded.minutes)
    if decoded.task_number != task_number:
        return TokenCheck(
            TokenStatus.WRONG_TASK,
            token_id,
            f"the approval token was issued for task {decoded.task_number}, not {task_number}",
            expires_at,
        )
    if decoded.approver_id != approver_id:
        return TokenCheck(
            TokenStatus.WRONG_APPROVER,
            token_id,
            "the approval token was issued to a different approver",
            expires_at,
        )
    when = expires_at.strftime("%Y-%m-%d %H:%M UTC")
    if _utc(now) >= expires_at:
        return TokenCheck(
            TokenStatus.EXPIRED, token_id, f"the approval token expired at {when}", expires_at
        )
    return TokenCheck(
        TokenStatus.VALID, token_id, f"the approval token is valid until {when}", expires_at
    )
