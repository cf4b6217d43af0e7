"""The lines an attempt from the outbox logs (docs/operators.md, "Each reply sent from the
outbox gives one line from asm_email_rules, with its reply_message_id and to"): their level,
text and structured fields, as a JSON or key=value log shows them, for every outcome, and for
one whose claim another sender took over meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.errors import PermanentSendError, SendError
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.send import SendResult, claim, record_attempt
from asm_email_rules.settings import SystemSettings

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
SYSTEM = SystemSettings()
REPLY = OutgoingEmail(
    to="alice@example.com",
    subject="Call 7 has been logged [CALL#7]",
    body="Thank you.",
    sender="desk@example.com",
    message_id="<asm.call-7.log@example.com>",
)
WHO: dict[str, object] = {"reply_message_id": REPLY.message_id, "to": REPLY.to}
_STANDARD = {*vars(logging.makeLogRecord({})), "message", "asctime", "taskName"}
Line = tuple[str, str, dict[str, object]]


def _mailer_raised() -> Exception:
    try:
        raise ValueError("socket went away")
    except ValueError as exc:
        return exc


# what the mailer said, how late (hours after queueing), the lines, what the attempt came to
CASES: dict[str, tuple[Callable[[], Exception | None], float, list[Line], SendResult]] = {
    "sent": (
        lambda: None,
        0.1,
        [("INFO", "reply sent", {**WHO, "attempts": 1})],
        SendResult.SENT,
    ),
    "refused, fatal": (
        lambda: PermanentSendError("no such user", code=550),
        0.1,
        [
            (
                "WARNING",
                "reply refused for good: 550 no such user",
                {**WHO, "code": 550, "fatal": True},
            )
        ],
        SendResult.REFUSED,
    ),
    "refused": (
        lambda: PermanentSendError("message too big", code=552),
        0.1,
        [
            (
                "WARNING",
                "reply refused for good: 552 message too big",
                {**WHO, "code": 552, "fatal": False},
            )
        ],
        SendResult.REFUSED,
    ),
    "deferred": (
        lambda: SendError("try again later", code=451),
        0.1,
        [
            (
                "INFO",
                "reply deferred: 451 try again later",
                {**WHO, "attempts": 1, "next_attempt_at": "2026-05-01T09:07:00+00:00"},
            )
        ],
        SendResult.DEFERRED,
    ),
    "given up": (
        lambda: SendError("try again later", code=451),
        25,
        [
            (
                "WARNING",
                "reply given up: gave up after 1 attempts in 24 h: 451 try again later",
                {**WHO, "attempts": 1},
            )
        ],
        SendResult.GAVE_UP,
    ),
    "mailer raised": (
        _mailer_raised,
        25,
        [
            ("ERROR", "the mailer raised ValueError", WHO),
            (
                "WARNING",
                "reply given up: gave up after 1 attempts in 24 h: socket went away",
                {**WHO, "attempts": 1},
            ),
        ],
        SendResult.GAVE_UP,
    ),
}


@pytest.mark.parametrize("taken_over", [False, True], ids=["claim held", "claim taken over"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_outcome_logs_its_lines_with_their_fields(
    case: str, taken_over: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Taken over: the claim expired while the server was answering and another sender
    claimed the reply; the same lines, then a WARNING whose ``outcome`` is what this attempt
    came to (its record was refused), with the reply's fields and nothing else."""
    error, hours, lines, attempted = CASES[case]
    store = InMemoryRepository()
    store.record_processed("box", "<m7@example.com>", "s7", "{}", REPLY, T0)
    now = T0 + timedelta(hours=hours)
    entry = claim(REPLY.message_id, store, SYSTEM, owner="poller-1", clock=lambda: now)
    assert entry is not None
    if taken_over:
        later = now + timedelta(seconds=SYSTEM.lease_seconds + 1)
        assert claim(REPLY.message_id, store, SYSTEM, owner="poller-2", clock=lambda: later)
    with caplog.at_level(logging.DEBUG, logger="asm_email_rules"):
        outcome = record_attempt(entry, error(), store, SYSTEM, owner="poller-1", clock=lambda: now)
    expected = list(lines)
    if taken_over:
        expected.append(
            (
                "WARNING",
                "reply claim expired before the outcome was recorded; another sender took "
                "the reply over (a resend carries the same Message-ID)",
                {**WHO, "outcome": attempted.value},
            )
        )
    assert [
        (r.levelname, r.getMessage(), {k: v for k, v in vars(r).items() if k not in _STANDARD})
        for r in caplog.records
    ] == expected
    assert outcome.result is (SendResult.LOST_CLAIM if taken_over else attempted)
    raised = [r for r in caplog.records if r.exc_info]  # the traceback, for the mailer's bug
    assert [r.getMessage() for r in raised] == (
        ["the mailer raised ValueError"] if case == "mailer raised" else []
    )
    assert all(r.exc_info and r.exc_info[2] for r in raised)
