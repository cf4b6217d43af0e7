"""A host's own store (tests/unit/host_store.py, written from the docs, none of the optional
methods) passes the conformance kit and runs ``process`` and the polling service on a Maildir:
log a call, approve with a token, refuse its replay, set aside what is not a message."""

from __future__ import annotations

import logging
import mailbox as maildirs
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from host_store import HostStore

from asm_email_rules import (
    EntityRef,
    LedgerRetention,
    OutboxEntry,
    OutgoingEmail,
    ReplyStatus,
    SendResult,
    SystemSettings,
    TaskStatus,
    apply,
    decide,
    gather_facts,
    parse_message,
    process,
)
from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.sample import ALICE, UMA, sample_mailbox, seed_sample_desk
from asm_email_rules.send import send_due
from asm_email_rules.service import PollingService
from asm_email_rules.testing import Check, repository_checks
from asm_email_rules.tokens import make_approval_token, new_nonce

CHECKS = repository_checks()
SECRET = "a-test-secret-of-no-value-0123456789"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_a_host_store_from_the_docs_passes_the_conformance_kit(check: Check) -> None:
    check.run(HostStore())


def _message(sender: str, subject: str, number: int) -> bytes:
    return (
        f"From: {sender}\r\nTo: helpdesk@desk.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <host-{number}@corp.example>\r\n"
        "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nPlease have a look.\r\n"
    ).encode()


def _maildir(tmp_path: Path, *messages: bytes) -> str:
    folder = str(tmp_path / "inbox")
    box = maildirs.Maildir(folder, create=True)
    for raw in messages:
        box.add(raw)
    return folder


def test_a_host_store_without_optional_methods_runs_the_service_on_a_maildir(
    tmp_path: Path,
) -> None:
    store = HostStore()
    seed_sample_desk(store)
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))  # a local clock: stored as UTC
    token = make_approval_token(
        SECRET,
        task_number=500,
        approver_id=ALICE.id,
        expires_at=NOW + timedelta(days=2),
        nonce=new_nonce(),
    )
    folder = _maildir(
        tmp_path,
        _message(UMA.email.upper(), "The printer is broken", 1),
        _message(ALICE.email, f"[APPROVE#500-{token.token}]", 2),
        _message(ALICE.email, f"[APPROVE#500-{token.token}]", 3),
        b"\x00\xff this is not a message",
    )
    mailer = RecordingMailer()
    service = PollingService.from_parts(
        store,
        mailer,
        [
            (
                sample_mailbox(auto_reply=True, require_approval_token=True),
                lambda: MaildirMailbox(folder),
            )
        ],
        SystemSettings(approval_token_secret=SECRET),
        now=lambda: berlin,
    )

    report = service.poll_once()["helpdesk"]

    assert (report.processed, report.errors, report.quarantined) == (4, 0, 0)
    assert not list(maildirs.Maildir(folder, create=False).keys())
    assert [m.subject for m in mailer.sent] == [
        "Call 103 has been logged [CALL#103]",
        "Task 500 has been successfully approved [TASK#500]",
        "Task 500 has not been approved [TASK#500]",
    ]
    task = store.get_task(500)
    assert task is not None
    assert task.status is TaskStatus.APPROVED
    assert list(store.tokens.values()) == [NOW]  # spent once, through use_token, in UTC
    assert all(e.processed_at == NOW for e in store.ledger.values())
    assert {e.reply_status for e in store.ledger.values()} == {ReplyStatus.SENT, ReplyStatus.NONE}


class RetainingHostStore(HostStore):
    """A host store with ledger retention and a token prune whose driver error it does not
    wrap in RepositoryError."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing
        self.prunes = 0

    def touch_ledger(self, mailbox: str, message_id: str, sha256: str, now: datetime) -> None:
        pass

    def prune_ledger(self, mailbox: str, before: datetime) -> int:
        if self.failing == "prune_ledger":
            raise OSError("driver: connection reset by peer")
        return 0

    def prune_used_tokens(self, now: datetime) -> int:
        self.prunes += 1
        raise OSError("driver: connection reset by peer")


@pytest.mark.parametrize("failing", ["prune_ledger", "prune_used_tokens"])
def test_a_host_stores_unwrapped_error_in_a_prune_does_not_make_poll_once_raise(
    tmp_path: Path, failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The poll's messages are handled and deleted before the prunes run: a housekeeping
    failure is logged (with its traceback) and tried again, as for a RepositoryError; the
    host's own loop around ``poll_once`` is not ended by it."""
    store = RetainingHostStore(failing)
    assert isinstance(store, LedgerRetention)
    seed_sample_desk(store)
    folder = _maildir(tmp_path, _message(UMA.email, "The printer is broken", 1))
    service = PollingService.from_parts(
        store,
        RecordingMailer(),
        [(sample_mailbox(), lambda: MaildirMailbox(folder))],
        SystemSettings(),
        now=lambda: NOW,
    )

    with caplog.at_level(logging.WARNING, logger="asm_email_rules.service"):
        report = service.poll_once()["helpdesk"]

    assert report.processed == 1
    assert store.get_call(103) is not None
    assert "connection reset by peer" in caplog.text
    assert any(record.exc_info for record in caplog.records)
    if failing == "prune_used_tokens":
        assert (report.errors, store.prunes) == (0, 1)
    else:
        assert report.errors == 1


class TextTimesHostStore(HostStore):
    """Compares times as ISO-8601 text, as a host's SQL store whose times are UTC text does
    (storage.md: text order is time order when every time is UTC)."""

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        return [
            entry
            for entry in self.outbox.values()
            if entry.status is ReplyStatus.PENDING
            and entry.next_attempt_at.isoformat() <= now.isoformat()
        ][:limit]


def test_send_due_hands_the_store_a_utc_time_from_a_local_clock() -> None:
    """integrators.md: a time in a local zone is converted to UTC on the way in. send_due
    asked ``due_replies`` with the host's clock as it was, so a store comparing UTC text found
    nothing due at 07:00-05:00 (12:00 UTC) and the reply queued at 12:00 UTC was not sent."""
    store = TextTimesHostStore()
    seed_sample_desk(store)
    raw = _message(UMA.email, "The printer is broken", 1)
    process(raw, store, None, sample_mailbox(auto_reply=True), SystemSettings(), NOW)
    mailer = RecordingMailer()
    new_york = ZoneInfo("America/New_York")

    report = send_due(
        store, mailer, SystemSettings(), owner="host", clock=lambda: NOW.astimezone(new_york)
    )

    assert [m.subject for m in mailer.sent] == ["Call 103 has been logged [CALL#103]"]
    assert report.count(SendResult.SENT) == 1


class TimesAsGivenHostStore(HostStore):
    """Keeps the times the library hands it as they come (a host's store that trusts the
    guide: 'Every time the library stores or hands back is UTC')."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[datetime] = []

    def record_processed(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        decision_json: str,
        reply: OutgoingEmail | None,
        now: datetime,
    ) -> None:
        self.given.append(now)
        super().record_processed(mailbox, message_id, sha256, decision_json, reply, now)

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        self.given.append(now)
        super().record_sent(message_id, ref, to, now)


def test_apply_hands_the_store_utc_times_from_a_local_now() -> None:
    """``apply``, the core's write step, is exported for a host that runs the steps itself
    (parse, gather_facts, decide, apply): it handed its ``now`` to the store as given, so a
    Berlin time reached ``record_processed`` and ``record_sent``, and a naive one was kept."""
    store = TimesAsGivenHostStore()
    seed_sample_desk(store)
    mailbox, system = sample_mailbox(auto_reply=True), SystemSettings()
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    email = parse_message(_message(UMA.email, "The printer is broken", 1))
    decision = decide(gather_facts(email, store, mailbox, system, berlin), mailbox, system)

    apply(decision, email, store, mailbox, system, berlin)

    assert store.given == [NOW, NOW]
    assert all(moment.utcoffset() == timedelta(0) for moment in store.given)
    with pytest.raises(TypeError, match="timezone-aware"):
        apply(decision, email, store, mailbox, system, NOW.replace(tzinfo=None))
