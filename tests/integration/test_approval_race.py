"""Two pollers decide on one approval at once: only the first decision is written.

DESIGN 4b: "an approval no longer pending is not changed again". Two pollers (two mailboxes,
or two hosts on one PostgreSQL) can both read approval task 500 as pending before either
writes: one handles "[APPROVE#500]", the other "[REJECT#500]". The store checks the status
and writes it under one lock, so the second write is refused, nothing of that message is
written, and the message is decided again on what is there: the approver is told the task
is no longer pending, instead of being told "rejected" about an approved task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.actions import RejectTask
from asm_email_rules.adapters.postgres import PostgresRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.applying import apply
from asm_email_rules.errors import StaleRecordError
from asm_email_rules.gather import gather_facts
from asm_email_rules.intake import parse_message
from asm_email_rules.ledger_key import ledger_key
from asm_email_rules.model import TaskStatus
from asm_email_rules.pipeline import ProcessResult, process
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.rules import decide
from asm_email_rules.sample import ALICE, DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.settings import SystemSettings

if TYPE_CHECKING:
    from postgres_fixtures import PgDatabase

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

Store = SqliteRepository | PostgresRepository


def _raw(subject: str, message_id: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Alice Analyst <{ALICE.email}>"
    message["To"] = DESK_ADDRESS
    message["Subject"] = subject
    message["Date"] = "Tue, 01 Dec 2026 08:59:00 +0000"
    message["Message-ID"] = message_id
    message.set_content("As discussed.")
    return message.as_bytes()


@pytest.fixture(params=["sqlite", "postgres"])
def two_pollers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[SeedableRepository, SeedableRepository]]:
    """Two connections to one store with the sample desk, as two pollers have."""
    opener: Callable[[], Store]
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"

        def opener() -> Store:
            return SqliteRepository(path)

    else:
        db: PgDatabase = request.getfixturevalue("pg_database")

        def opener() -> Store:
            return PostgresRepository(db.conninfo, password=db.password, schema=db.schema)

    with closing(opener()) as first:
        seed_sample_desk(first)
        with closing(opener()) as second:
            yield first, second


def test_an_approve_and_a_reject_read_at_once_decide_the_approval_once(
    two_pollers: tuple[SeedableRepository, SeedableRepository],
) -> None:
    approving, rejecting = two_pollers
    mailbox, system = sample_mailbox(), SystemSettings()
    reject = _raw("[REJECT#500]", "<reject-500@client.example>")

    # The second poller reads the approval as pending and decides to reject it ...
    email = parse_message(reject)
    late = decide(gather_facts(email, rejecting, mailbox, system, NOW), mailbox, system)
    assert any(isinstance(action, RejectTask) for action in late.actions)
    # ... while the first approves it and commits.
    approved = process(
        _raw("[APPROVE#500]", "<approve-500@client.example>"),
        approving,
        None,
        mailbox,
        system,
        NOW,
    )
    assert approved.decision is not None
    assert approved.decision.reply is not None
    assert "successfully approved" in approved.decision.reply.subject

    with pytest.raises(StaleRecordError, match="no longer pending"):
        apply(late, email, rejecting, mailbox, system, NOW)
    task = rejecting.get_task(500)
    assert task is not None
    assert task.status is TaskStatus.APPROVED
    message_id, sha256 = ledger_key(email)
    assert rejecting.ledger_entry(mailbox.name, message_id, sha256) is None

    # Tried again (the service's next pass), the message is decided on what is there.
    again = process(reject, rejecting, None, mailbox, system, NOW)
    assert again.decision is not None
    reply = again.decision.reply
    assert reply is not None
    assert reply.subject.startswith("Task 500 has not been rejected")
    assert "Task 500 is already approved. Nothing has been changed." in reply.body
    task = rejecting.get_task(500)
    assert task is not None
    assert task.status is TaskStatus.APPROVED


def test_process_decides_again_when_the_approval_was_decided_under_it(
    two_pollers: tuple[SeedableRepository, SeedableRepository],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same race inside one call of process(): the other poller approves just as this one
    starts writing its reject; process() gives the approver the answer about what is there."""
    approving, rejecting = two_pollers
    mailbox, system = sample_mailbox(), SystemSettings()
    unit = rejecting.transaction
    raced: list[ProcessResult] = []

    def transaction() -> AbstractContextManager[None]:
        if not raced:
            raced.append(
                process(
                    _raw("[APPROVE#500]", "<approve-500@client.example>"),
                    approving,
                    None,
                    mailbox,
                    system,
                    NOW,
                )
            )
        return unit()

    monkeypatch.setattr(rejecting, "transaction", transaction)
    caplog.set_level(logging.INFO, logger="asm_email_rules")
    result = process(
        _raw("[REJECT#500]", "<reject-500@client.example>"), rejecting, None, mailbox, system, NOW
    )

    assert raced, "the other poller never ran"
    assert result.decision is not None
    reply = result.decision.reply
    assert reply is not None
    assert "Task 500 is already approved. Nothing has been changed." in reply.body
    task = rejecting.get_task(500)
    assert task is not None
    assert task.status is TaskStatus.APPROVED
    assert "deciding again" in caplog.text
