"""The polling service on a real SQLite store and a real Maildir (files in tmp_path).

Covers the dispositions (delete, retry, quarantine), the ledger that makes a crash harmless,
session limits, inactive and unreachable accounts, stopping, and the per-message log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest

from asm_email_rules import pipeline, rules
from asm_email_rules.adapters._repository import message_id_key
from asm_email_rules.adapters.maildir import QUARANTINE_HEADER, MaildirMailbox
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import (
    MailboxError,
    NotFoundError,
    RepositoryError,
    SendError,
    StoreUnavailableError,
)
from asm_email_rules.model import (
    CallStatus,
    EntityKind,
    EntityRef,
    OutgoingEmail,
    ReplyStatus,
    TaskStatus,
)
from asm_email_rules.protocols import Mailbox
from asm_email_rules.sample import DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.send import Disposition
from asm_email_rules.service import AccountReport, PollingService
from asm_email_rules.session_end import SessionEnd
from asm_email_rules.settings import SystemSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def make_raw(subject: str, sender: str, body: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = "Fri, 27 Nov 2026 11:00:00 +0000"
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg.as_bytes()


NEW_CALL = make_raw("Printer on fire", "uma@corp.example", "Smoke from tray 2.", "<new@c.example>")
UPDATE_100 = make_raw("[CALL#100] more", "uma@corp.example", "Jammed again.", "<upd@c.example>")
APPROVE_500 = make_raw("[APPROVE#500]", "alice@desk.example", "Approved.", "<appr@c.example>")
GARBAGE = b" \r\n\r\n"


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def account(path: Path, name: str = "helpdesk", **fields: Any) -> AccountConfig:
    return AccountConfig(
        name=name,
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(name=name, auto_reply=True),
        path=path,
        **fields,
    )


@attrs.define
class Clock:
    """A fake clock the services of a test share: starts at NOW, moves only when told."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@attrs.define
class Desk:
    """A store, a Maildir, a recording mailer and the service over them."""

    tmp: Path
    store: SqliteRepository
    maildir: MaildirMailbox
    mailer: RecordingMailer
    system: SystemSettings
    accounts: tuple[AccountConfig, ...]
    opened: list[str] = attrs.field(factory=list)
    clock: Clock = attrs.field(factory=Clock)

    def factory(self, acct: AccountConfig) -> Mailbox:
        self.opened.append(acct.name)
        assert acct.path is not None
        return MaildirMailbox(acct.path, quarantine_folder=acct.quarantine_folder)

    def service(self, **kwargs: Any) -> PollingService:
        config = Config(
            store=self.tmp / "store.sqlite3",
            system=self.system,
            smtp=None,
            accounts=self.accounts,
        )
        return PollingService(
            config,
            self.store,
            self.mailer,
            kwargs.pop("factory", self.factory),
            now=kwargs.pop("now", self.clock),
            **kwargs,
        )

    def deliver(self, *raws: bytes) -> list[str]:
        return [self.maildir.add(raw) for raw in raws]

    def waiting(self) -> int:
        return len(list(self.maildir.list_keys()))

    def quarantined(self) -> list[bytes]:
        box = self.tmp / "Maildir" / ".Quarantine"
        if not box.exists():
            return []
        folder = MaildirMailbox(box)
        return [folder.fetch(key) for key in folder.list_keys()]


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    store = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(store)
    maildir = MaildirMailbox(tmp_path / "Maildir")
    yield Desk(
        tmp=tmp_path,
        store=store,
        maildir=maildir,
        mailer=RecordingMailer(),
        system=SystemSettings(max_send_attempts=3),
        accounts=(account(tmp_path / "Maildir"),),
    )
    store.close()


def calls_described(store: SqliteRepository, text: str) -> int:
    """How many calls carry ``text`` in their description (numbers start after the seed)."""
    found = 0
    for number in range(100, 200):
        call = store.get_call(number)
        if call is not None and text in call.description:
            found += 1
    return found


def test_good_messages_are_applied_replied_to_and_deleted(desk: Desk) -> None:
    desk.deliver(NEW_CALL, UPDATE_100, APPROVE_500)
    report = desk.service().poll_once()
    assert report["helpdesk"].processed == 3
    assert report["helpdesk"].quarantined == 0
    assert desk.waiting() == 0
    assert calls_described(desk.store, "Smoke from tray 2.") == 1
    history = [e.text for e in desk.store.entries(EntityRef(EntityKind.CALL, 100))]
    assert any("Jammed again." in text for text in history)
    task = desk.store.get_task(500)
    assert task is not None
    assert task.status is TaskStatus.APPROVED
    subjects = sorted(m.subject for m in desk.mailer.sent)
    assert "Task 500 has been successfully approved [TASK#500]" in subjects
    assert "Call 100 has been updated [CALL#100]" in subjects


def test_garbage_is_quarantined_with_its_reason_and_the_others_processed(desk: Desk) -> None:
    desk.deliver(GARBAGE, NEW_CALL, APPROVE_500)
    report = desk.service().poll_once()["helpdesk"]
    assert (report.processed, report.quarantined, report.errors) == (2, 1, 0)
    assert desk.waiting() == 0
    [kept] = desk.quarantined()
    assert kept.startswith(QUARANTINE_HEADER.encode() + b": cannot parse")
    assert kept.endswith(GARBAGE)
    entry = desk.store.ledger_entry("helpdesk", "", sha(GARBAGE))
    assert entry is not None
    assert "quarantined" in json.loads(entry.decision_json)


class KeepingMailbox:
    """A POP3-like mailbox in memory: quarantine cannot move mail, it only leaves it."""

    def __init__(self, messages: dict[str, bytes]) -> None:
        self.messages = messages
        self.quarantine_calls: list[tuple[str, str]] = []

    def list_keys(self) -> Iterator[str]:
        return iter(sorted(self.messages))

    def fetch(self, key: str) -> bytes:
        return self.messages[key]

    def delete(self, key: str) -> None:
        del self.messages[key]

    def quarantine(self, key: str, reason: str) -> None:
        self.quarantine_calls.append((key, reason))

    def close(self) -> None:
        pass


class ExplodingStore:
    """Wraps the store; logging a call whose description mentions 'explode' raises."""

    def __init__(self, inner: SqliteRepository) -> None:
        self.inner = inner
        self.create_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_call(self, **kwargs: Any) -> Any:
        self.create_calls += 1
        if "explode" in kwargs["description"]:
            raise RuntimeError("simulated bug in the store")
        return self.inner.create_call(**kwargs)


def test_a_message_that_fails_to_process_is_quarantined_once_and_skipped_after(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault of ours outside the store (here: the rules raise for one message) is the
    message's: quarantined at once, the others processed, and skipped after."""
    real_decide = rules.decide
    decided: list[str] = []

    def decide(facts: Any, *args: Any, **kwargs: Any) -> Any:
        decided.append(facts.email.body)
        if "explode" in facts.email.body:
            raise RuntimeError("simulated bug in the rules")
        return real_decide(facts, *args, **kwargs)

    monkeypatch.setattr(pipeline, "decide", decide)
    bomb = make_raw("Help", "uma@corp.example", "please explode", "<bomb@c.example>")
    box = KeepingMailbox({"1": bomb, "2": NEW_CALL})
    config = Config(desk.tmp / "s", desk.system, None, desk.accounts)
    service = PollingService(config, desk.store, desk.mailer, lambda _: box, now=lambda: NOW)
    first = service.poll_once()["helpdesk"]
    assert (first.processed, first.quarantined) == (1, 1)
    assert box.quarantine_calls[0][0] == "1"
    assert "RuntimeError: simulated bug in the rules" in box.quarantine_calls[0][1]
    assert list(box.messages) == ["1"]  # the good one was deleted, the bad one left (POP3)
    attempts = len(decided)
    second = service.poll_once()["helpdesk"]
    assert (second.processed, second.quarantined) == (0, 1)
    assert len(decided) == attempts  # not processed again: skipped through the ledger
    assert "quarantined before" in box.quarantine_calls[1][1]


def test_a_host_store_raising_its_own_exception_is_retried_not_blamed_at_once(
    desk: Desk,
) -> None:
    """DESIGN 4, "Nothing is lost": "A failure of our own side ... is never blamed on the
    message". A host store whose driver error escapes unwrapped (not a RepositoryError) fails
    like a store that raised RepositoryError: the message stays for the next pass, and only
    after ``max_send_attempts`` passes (3 here) is it set aside, with the store's error."""
    bomb = make_raw("Help", "uma@corp.example", "please explode", "<bomb@c.example>")
    box = KeepingMailbox({"1": bomb, "2": NEW_CALL})
    store = ExplodingStore(desk.store)
    config = Config(desk.tmp / "s", desk.system, None, desk.accounts)
    service = PollingService(config, store, desk.mailer, lambda _: box, now=lambda: NOW)
    for _ in range(desk.system.max_send_attempts - 1):
        report = service.poll_once()["helpdesk"]
        assert (report.quarantined, report.errors) == (0, 1)
        assert "the store failed: RuntimeError: simulated bug in the store" in report.last_error
        assert box.quarantine_calls == []
        assert "1" in box.messages
    last = service.poll_once()["helpdesk"]
    assert (last.processed, last.quarantined) == (1, 1)
    assert "RuntimeError: simulated bug in the store" in box.quarantine_calls[0][1]
    assert list(box.messages) == ["1"]  # the good one processed once the bad one was set aside


class LockedStore:
    """Wraps the store; every call logged and every record raises the driver's own
    ``sqlite3.OperationalError``, as a host store that does not wrap it does."""

    def __init__(self, inner: SqliteRepository) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_call(self, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    def record_processed(self, *args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")


def test_a_store_that_fails_while_quarantining_leaves_the_message_aside_and_poll_once_returns(
    desk: Desk,
) -> None:
    """poll_once never raises: once the message has failed ``max_send_attempts`` times, the
    store refusing its quarantine record too is logged, and the mailbox still sets it aside."""
    box = KeepingMailbox({"1": NEW_CALL})
    config = Config(desk.tmp / "s", desk.system, None, desk.accounts)
    store = LockedStore(desk.store)
    service = PollingService(config, store, desk.mailer, lambda _: box, now=lambda: NOW)
    for _ in range(desk.system.max_send_attempts):
        report = service.poll_once()["helpdesk"]
    assert report.quarantined == 1
    [(key, reason)] = box.quarantine_calls
    assert key == "1"
    assert "OperationalError: database is locked" in reason


class VanishingStore:
    """Wraps the store; the first ``add_history`` raises NotFoundError, as a host store
    does when the call was merged or deleted between the rules' read and their write."""

    def __init__(self, inner: SqliteRepository) -> None:
        self.inner = inner
        self.failures = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def add_history(self, *args: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise NotFoundError("no call 100")
        self.inner.add_history(*args)


def test_a_record_gone_between_read_and_write_is_retried_not_quarantined(desk: Desk) -> None:
    """A NotFoundError from a store write is the store's race, not the message's fault: the
    next pass decides again (here the call is back, so the update lands)."""
    update = make_raw("Re: Call 100 [CALL#100]", "uma@corp.example", "Still jammed.", "<u@c.e>")
    box = KeepingMailbox({"1": update})
    store = VanishingStore(desk.store)
    config = Config(desk.tmp / "s", desk.system, None, desk.accounts)
    service = PollingService(config, store, desk.mailer, lambda _: box, now=lambda: NOW)
    first = service.poll_once()["helpdesk"]
    assert (first.processed, first.quarantined, first.errors) == (0, 0, 1)
    assert "no call 100" in first.last_error
    second = service.poll_once()["helpdesk"]
    assert (second.processed, second.quarantined, second.errors) == (1, 0, 0)
    history = [e.text for e in desk.store.entries(EntityRef(EntityKind.CALL, 100))]
    assert any("Still jammed." in text for text in history)


def test_transient_send_failure_deletes_the_message_and_retries_the_reply_by_time(
    desk: Desk,
) -> None:
    """Issue 10: retries by time, not polls; the mailbox is not held; nothing quarantined."""
    desk.mailer.fail_with = 451
    desk.deliver(NEW_CALL)
    service = desk.service()
    first = service.poll_once()["helpdesk"]
    assert (first.processed, first.replies_deferred, first.quarantined) == (1, 1, 0)
    assert desk.waiting() == 0  # the outbox keeps the reply, not the mailbox
    [entry] = desk.store.list_replies()
    assert (entry.status, entry.attempts) == (ReplyStatus.PENDING, 1)
    assert entry.next_attempt_at == NOW + timedelta(minutes=1)
    desk.clock.advance(seconds=30)
    assert service.poll_once()["helpdesk"].replies_deferred == 0  # not due yet: not tried
    desk.clock.advance(seconds=30)
    assert service.poll_once()["helpdesk"].replies_deferred == 1  # the second attempt
    for _ in range(5):  # polls do not count: the backoff is 2 minutes now
        desk.clock.advance(seconds=20)
        assert service.poll_once()["helpdesk"].replies_deferred == 0
    assert desk.store.list_replies()[0].attempts == 2
    desk.clock.advance(seconds=20)  # 2 minutes after the second attempt
    assert service.poll_once()["helpdesk"].replies_deferred == 1
    assert desk.store.list_replies()[0].attempts == 3
    assert calls_described(desk.store, "Smoke from tray 2.") == 1  # acted on once only
    assert desk.quarantined() == []


def test_a_reply_is_given_up_after_reply_retry_hours_and_can_be_requeued(desk: Desk) -> None:
    desk.system = attrs.evolve(desk.system, reply_retry_hours=1.0)
    desk.mailer.fail_with = 421
    desk.deliver(UPDATE_100)
    service = desk.service()
    passes: list[AccountReport] = []
    while not passes or passes[-1].replies_failed == 0:
        passes.append(service.poll_once()["helpdesk"])
        desk.clock.advance(minutes=5)
        assert len(passes) < 50
    [entry] = desk.store.list_replies([ReplyStatus.FAILED])
    assert entry.last_error.startswith("gave up after ")
    assert " in 1 h: " in entry.last_error
    assert entry.attempts == sum(p.replies_deferred + p.replies_failed for p in passes)
    assert 1 <= (desk.clock.now - NOW).total_seconds() / 3600 <= 1.2
    desk.mailer.fail_with = None
    desk.store.requeue_reply(entry.reply.message_id, desk.clock())
    assert service.poll_once()["helpdesk"].replies_sent == 1
    assert [m.message_id for m in desk.mailer.sent] == [entry.reply.message_id]


def test_transient_failure_then_recovery_sends_the_stored_reply_once(desk: Desk) -> None:
    desk.mailer.fail_with = 421
    desk.deliver(UPDATE_100)
    service = desk.service()
    service.poll_once()
    desk.mailer.fail_with = None
    desk.clock.advance(minutes=1)
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.replies_sent) == (0, 0, 1)
    assert desk.waiting() == 0
    assert [m.subject for m in desk.mailer.sent] == ["Call 100 has been updated [CALL#100]"]
    history = [e.text for e in desk.store.entries(EntityRef(EntityKind.CALL, 100))]
    assert sum("Jammed again." in text for text in history) == 1


def test_an_smtp_outage_defers_all_replies_then_sends_each_once(desk: Desk) -> None:
    """One temporary failure stops the pass: the other replies wait, untried, for the next."""
    raws = [make_raw(f"Issue {n}", "uma@corp.example", f"n {n}", f"<o{n}@c>") for n in range(6)]
    desk.deliver(*raws)
    desk.mailer.fail_with = 451
    service = desk.service()
    first = service.poll_once()["helpdesk"]
    assert (first.processed, first.replies_deferred, first.replies_sent) == (6, 1, 0)
    desk.mailer.fail_with = None
    desk.clock.advance(minutes=1)
    second = service.poll_once()["helpdesk"]
    assert second.replies_sent == 6
    assert len({m.message_id for m in desk.mailer.sent}) == len(desk.mailer.sent) == 6


def test_permanent_send_failure_deletes_and_records_failed(desk: Desk) -> None:
    desk.mailer.fail_with = 550
    desk.deliver(APPROVE_500)
    report = desk.service().poll_once()["helpdesk"]
    assert (report.processed, report.retried, report.quarantined) == (1, 0, 0)
    assert desk.waiting() == 0
    import hashlib

    entry = desk.store.ledger_entry(
        "helpdesk", "<appr@c.example>", hashlib.sha256(APPROVE_500).hexdigest()
    )
    assert entry is not None
    assert entry.reply_status is ReplyStatus.FAILED
    assert "550" in entry.last_error


def test_session_limit_commits_and_reconnects_for_the_rest(desk: Desk) -> None:
    desk.accounts = (account(desk.tmp / "Maildir", max_messages_per_session=2),)
    raws = [
        make_raw(f"Issue {n}", "uma@corp.example", f"problem number {n}", f"<i{n}@c.example>")
        for n in range(5)
    ]
    desk.deliver(*raws)
    report = desk.service().poll_once()["helpdesk"]
    assert report.processed == 5
    assert report.sessions == 3
    assert desk.opened == ["helpdesk"] * 3
    assert desk.waiting() == 0


def test_replies_sent_while_messages_share_a_commit_are_claimed_and_recorded_on_disk_first(
    desk: Desk,
) -> None:
    """With several messages to a commit (``messages_per_commit``), the pump's step joins the
    open one and commits it: each reply reaches the mailer only once its claim, and the
    message that queued it, are committed (read back by another connection, as another
    poller would); and every message still gets its one reply."""
    desk.accounts = (account(desk.tmp / "Maildir", max_messages_per_session=3),)
    raws = [
        make_raw(f"Issue {n}", "uma@corp.example", f"problem number {n}", f"<i{n}@c.example>")
        for n in range(9)
    ]
    desk.deliver(*raws)
    seen: list[tuple[str, str, int]] = []

    class Checking(RecordingMailer):
        def send(self, message: OutgoingEmail) -> None:
            with SqliteRepository(desk.tmp / "store.sqlite3") as other:
                entry = other.outbox_entry(message.message_id)
                done = other._one("SELECT COUNT(*) FROM ledger")[0]
            assert entry is not None, "the reply's record is not committed"
            seen.append((entry.claimed_by, entry.status.value, done))
            super().send(message)

    desk.mailer = Checking()
    service = desk.service()
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.sessions, report.replies_sent) == (9, 3, 9)
    assert len(seen) == 9
    assert {(claimed, status) for claimed, status, _ in seen} == {(service.owner, "pending")}
    assert all(recorded >= 3 for _, _, recorded in seen)  # a durable session's, at least
    assert sorted(mail.subject for mail in desk.mailer.sent) == sorted(
        f"Call {call} has been logged [CALL#{call}]" for call in range(103, 112)
    )  # one reply per message, each once
    assert desk.waiting() == 0


def test_a_shared_commit_is_never_held_open_while_a_server_is_waited_for(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages share a commit (``messages_per_commit``) only across fetches that wait on no
    server (``fetch_ready``: a Maildir file, an IMAP message fetched ahead); before any other
    fetch the open transaction is committed, so the store's write lock is never held while a
    mailbox server is waited for (another writer, ``people add`` or a second poller, would
    wait that long or time out)."""
    raws = [
        make_raw(f"Issue {n}", "uma@corp.example", f"problem number {n}", f"<i{n}@c.example>")
        for n in range(5)
    ]
    # the commit falls due by count only: on a loaded machine five messages can outlast
    # BATCH_SECONDS (0.25 s), and a commit between them fails the local case below
    from asm_email_rules import service as service_module

    monkeypatch.setattr(service_module, "BATCH_SECONDS", 3600.0)
    in_transaction: dict[bool, list[bool]] = {}
    for remote in (False, True):
        desk.deliver(*raws)
        seen = in_transaction.setdefault(remote, [])

        class Watched(MaildirMailbox):
            @staticmethod
            def fetch_ready(key: str, remote: bool = remote) -> bool:
                return not remote

            def fetch(self, key: str, seen: list[bool] = seen) -> bytes:
                seen.append(desk.store._conn.in_transaction)
                return super().fetch(key)

        desk.service(factory=lambda a: Watched(a.path)).poll_once()
        assert desk.waiting() == 0
    assert in_transaction[False] == [False, True, True, True, True]  # local: one commit
    assert in_transaction[True] == [False] * 5  # a server's: committed before each fetch


def test_a_shared_commit_is_not_held_open_while_a_host_mailbox_reads_its_listing_further(
    desk: Desk,
) -> None:
    """The Mailbox protocol's ``list_keys()`` returns an iterator: a host's mailbox may page its
    listing from a server as the service reads it (a REST API, say). The store's write lock
    must not be held while it does (protocols.Mailbox: "the store's write lock is never held
    while a server is waited for"; operators.md ``messages_per_commit``): the open shared
    mailbox without ``fetch_ready`` (which would be committed before every fetch anyway) gets
    a commit per message, so no unit is open while its listing is read further."""
    raws = [
        make_raw(f"Issue {n}", "uma@corp.example", f"problem number {n}", f"<i{n}@c.example>")
        for n in range(4)
    ]
    desk.deliver(*raws)
    locked: list[bool] = []

    class Paging:
        """A host's mailbox (no ``fetch_ready``, no ``bounded_listing``) whose listing comes
        from its server a key at a time, as it is read."""

        def __init__(self, path: Path) -> None:
            self.inner = MaildirMailbox(path)

        def list_keys(self) -> Iterator[str]:
            for key in list(self.inner.list_keys()):
                locked.append(desk.store._conn.in_transaction)  # the next page: a round trip
                yield key

        def fetch(self, key: str) -> bytes:
            return self.inner.fetch(key)

        def delete(self, key: str) -> None:
            self.inner.delete(key)

        def quarantine(self, key: str, reason: str) -> None:
            self.inner.quarantine(key, reason)

        def close(self) -> None:
            self.inner.close()

    report = desk.service(factory=lambda a: Paging(desk.tmp / "Maildir")).poll_once()
    assert report["helpdesk"].processed == 4
    assert desk.waiting() == 0
    assert locked == [False] * 4  # a shared commit would read [False, True, True, True]


def test_inactive_accounts_are_skipped_and_a_broken_one_does_not_stop_the_rest(
    desk: Desk,
) -> None:
    desk.accounts = (
        account(desk.tmp / "Off", name="off", active=False),
        account(desk.tmp / "Broken", name="broken"),
        account(desk.tmp / "Maildir"),
    )

    def factory(acct: AccountConfig) -> Mailbox:
        if acct.name == "broken":
            raise MailboxError("IMAP imap.example.org:993: cannot connect: refused")
        return desk.factory(acct)

    desk.deliver(NEW_CALL)
    report = desk.service(factory=factory).poll_once()
    assert report["off"].skipped
    assert report["broken"].errors == 1
    assert "cannot connect" in report["broken"].last_error
    assert report["helpdesk"].processed == 1
    assert "off" not in desk.opened


def test_stop_event_finishes_the_message_in_hand_and_leaves_the_rest(desk: Desk) -> None:
    desk.deliver(NEW_CALL, UPDATE_100, APPROVE_500)
    stop = threading.Event()

    class StoppingMaildir(MaildirMailbox):
        def fetch(self, key: str) -> bytes:
            stop.set()  # SIGTERM arrives while the first message is being handled
            return super().fetch(key)

    service = desk.service(factory=lambda a: StoppingMaildir(a.path))
    report = service.poll_once(stop)
    assert report["helpdesk"].processed == 1
    assert desk.waiting() == 2  # the one in hand was recorded, committed and deleted
    service.run(stop)  # returns at once: already stopped


def test_messages_another_client_removed_after_the_listing_are_no_failure(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    # A person's mail program (or a second poller) deleted messages between our listing and
    # our fetch: each one was counted an error, and enough in a row backed the account off
    # as "mailbox unreachable" at ERROR, with the rest of the mail left unread.
    raws = [
        make_raw(f"printer {n}", "uma@corp.example", "It jams.", f"<gone-{n}@corp.example>")
        for n in range(12)
    ]
    keys = desk.deliver(*raws)
    removed = set(keys[:10])

    class SharedMaildir(MaildirMailbox):
        def list_keys(self, *args: Any, **kwargs: Any) -> Iterator[str]:
            listed = list(super().list_keys(*args, **kwargs))
            for key in removed & set(listed):  # the other client, just after our listing
                for found in self.path.glob(f"*/{key}*"):
                    found.unlink()
            return iter(listed)

    with caplog.at_level(logging.INFO, logger="asm_email_rules"):
        report = desk.service(factory=lambda a: SharedMaildir(a.path)).poll_once()
    totals = report["helpdesk"]
    assert (totals.processed, totals.errors, totals.backoff_seconds) == (2, 0, 0.0)
    assert totals.gone == 10  # said in the summary: a parser that missed them would show
    assert desk.waiting() == 0
    gone = [r for r in caplog.records if r.getMessage().startswith("message gone before")]
    assert len(gone) == 10
    assert all(r.levelno == logging.INFO for r in gone)


def test_a_broken_message_gone_before_it_is_moved_aside_is_still_quarantined(
    desk: Desk,
) -> None:
    # Another client removed the file after we read it: the store keeps its copy, and the
    # message counts as quarantined (it was "gone before it was read", counted nowhere).
    desk.deliver(b"")  # an empty message: quarantined, cannot be parsed

    class RacedMaildir(MaildirMailbox):
        def fetch(self, key: str) -> bytes:
            raw = super().fetch(key)
            for found in self.path.glob(f"*/{key}*"):
                found.unlink()
            return raw

    report = desk.service(factory=lambda a: RacedMaildir(a.path)).poll_once()["helpdesk"]
    assert (report.quarantined, report.gone, report.errors) == (1, 0, 0)
    assert [m.reason for m in desk.store.quarantined()] == ["cannot parse: empty message"]


def test_run_polls_until_stopped(desk: Desk) -> None:
    desk.deliver(NEW_CALL)
    stop = threading.Event()

    class StopAfterSession(MaildirMailbox):
        def close(self) -> None:
            super().close()
            stop.set()  # the signal handler's job in the CLI

    service = desk.service(factory=lambda a: StopAfterSession(a.path))
    timer = threading.Timer(10, stop.set)  # safety net: never hang the suite
    timer.start()
    try:
        service.run(stop)
    finally:
        timer.cancel()
    assert desk.waiting() == 0
    assert calls_described(desk.store, "Smoke from tray 2.") == 1


def test_one_structured_log_line_per_message(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    desk.deliver(APPROVE_500)
    with caplog.at_level(logging.INFO, logger="asm_email_rules"):
        desk.service().poll_once()
    [record] = [r for r in caplog.records if r.getMessage() == "message handled"]
    # the pipeline's own line is not said a second time
    assert [r for r in caplog.records if r.getMessage() == "message processed"] == []
    fields = vars(record)
    assert fields["account"] == "helpdesk"
    assert fields["message_id"] == "<appr@c.example>"
    assert fields["rule"] == "AP-11"
    assert fields["outcome"] == "approve_or_reject"
    assert fields["record"] == "task 500"  # which record, from the log alone
    assert fields["reply_status"] == "pending"  # in the outbox; sent after the session
    assert fields["notifications_queued"] == 0  # an approval tells no owner
    assert fields["disposition"] == "delete"
    assert isinstance(fields["elapsed_ms"], float)
    [sent] = [r for r in caplog.records if r.getMessage() == "reply sent"]
    assert vars(sent)["reply_message_id"].startswith("<asm.task-500.")
    assert vars(sent)["to"] == "alice@desk.example"


def test_the_log_line_names_the_record_each_message_acted_on(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator reading only the log could not tell which call a message logged or
    # updated ("rule=LOG-6 outcome=log_default_analyst"): the line now says.
    desk.deliver(NEW_CALL, UPDATE_100, APPROVE_500)
    with caplog.at_level(logging.INFO, logger="asm_email_rules"):
        desk.service().poll_once()
    handled = [vars(r) for r in caplog.records if r.getMessage() == "message handled"]
    calls = {n: desk.store.get_call(n) for n in range(100, 200)}
    [new] = [n for n, call in calls.items() if call and "Smoke from tray 2." in call.description]
    assert [line["record"] for line in handled] == [f"call {new}", "call 100", "task 500"]


# --------------------------------------------------------------------------------------------
# crash between apply and delete: a child process is killed, the parent polls again
# --------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from asm_email_rules.adapters.maildir import MaildirMailbox
    from asm_email_rules.adapters.sqlite import SqliteRepository
    from asm_email_rules.config import AccountConfig, Config, MailProtocol
    from asm_email_rules.sample import sample_mailbox
    from asm_email_rules.service import PollingService
    from asm_email_rules.settings import SystemSettings

    root, kill_at = Path(sys.argv[1]), sys.argv[2]

    class FileMailer:
        def send(self, message):
            if kill_at == "send":
                os.kill(os.getpid(), signal.SIGKILL)
            with open(root / "sent.jsonl", "a") as out:
                out.write(json.dumps({"to": message.to, "subject": message.subject}) + "\\n")

    class DyingMaildir(MaildirMailbox):
        def delete(self, key):
            if kill_at == "delete":
                os.kill(os.getpid(), signal.SIGKILL)  # after apply and commit
            super().delete(key)

    account = AccountConfig(
        name="helpdesk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(auto_reply=True),
        path=root / "Maildir",
    )
    config = Config(root / "store.sqlite3", SystemSettings(), None, (account,))
    store = SqliteRepository(config.store)
    service = PollingService(
        config, store, FileMailer(), lambda a: DyingMaildir(a.path),
        now=lambda: datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
    )
    service.poll_once()
    sys.exit(0)  # never reached
    """
)


class FileMailer:
    """The parent's mailer: appends to the same file the child used."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Any) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps({"to": message.to, "subject": message.subject}) + "\n")


@pytest.mark.parametrize("kill_at", ["delete", "send"])
def test_killed_between_apply_and_delete_never_acts_twice(desk: Desk, kill_at: str) -> None:
    desk.deliver(NEW_CALL)
    script = desk.tmp / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    child = subprocess.run(
        [sys.executable, str(script), str(desk.tmp), kill_at],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -9, child.stderr.decode()
    # killed at delete: the message survived the crash; killed while sending: it was deleted
    # once its decision and reply were committed, and the outbox holds the reply
    assert desk.waiting() == (1 if kill_at == "delete" else 0)
    assert calls_described(desk.store, "Smoke from tray 2.") == 1  # applied and committed

    sent = desk.tmp / "sent.jsonl"
    service = PollingService(
        Config(desk.tmp / "store.sqlite3", desk.system, None, desk.accounts),
        desk.store,
        FileMailer(sent),
        desk.factory,
        now=desk.clock,
    )
    waiting = service.poll_once()["helpdesk"]  # the dead poller's lease has not expired
    assert waiting.waiting
    assert not sent.exists()
    desk.clock.advance(seconds=SystemSettings().lease_seconds)
    report = service.poll_once()["helpdesk"]
    assert report.duplicates == (1 if kill_at == "delete" else 0)
    assert report.processed == 0
    assert report.replies_sent == 1
    assert desk.waiting() == 0
    assert calls_described(desk.store, "Smoke from tray 2.") == 1
    lines = sent.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["subject"].endswith("has been logged [CALL#103]")
    call = desk.store.get_call(103)
    assert call is not None
    assert call.status is CallStatus.OPEN


# --------------------------------------------------------------------------------------------
# compatibility: names from before the Mailbox methods took a "key"
# --------------------------------------------------------------------------------------------


class OldStyleMailbox:
    """A host mailbox written against the old protocol: ``list_ids`` instead of ``list_keys``."""

    def __init__(self, messages: dict[str, bytes]) -> None:
        self.messages = messages

    def list_ids(self) -> Iterator[str]:
        return iter(sorted(self.messages))

    def fetch(self, message_id: str) -> bytes:
        return self.messages[message_id]

    def delete(self, message_id: str) -> None:
        del self.messages[message_id]

    def quarantine(self, message_id: str, reason: str) -> None:
        raise AssertionError(f"nothing should be quarantined: {reason}")

    def close(self) -> None:
        pass


def test_a_host_mailbox_with_the_old_list_ids_name_is_still_polled(desk: Desk) -> None:
    box = OldStyleMailbox({"1": NEW_CALL})
    config = Config(desk.tmp / "s", desk.system, None, desk.accounts)
    service = PollingService(config, desk.store, desk.mailer, lambda _: box, now=lambda: NOW)  # type: ignore[arg-type, return-value]
    with pytest.warns(DeprecationWarning, match="list_keys"):
        report = service.poll_once()["helpdesk"]
    assert report.processed == 1
    assert box.messages == {}
    assert calls_described(desk.store, "Smoke from tray 2.") == 1


def test_the_bundled_mailboxes_still_answer_to_list_ids(desk: Desk) -> None:
    keys = desk.deliver(NEW_CALL, UPDATE_100)
    with pytest.warns(DeprecationWarning, match="list_keys"):
        assert list(desk.maildir.list_ids()) == list(desk.maildir.list_keys()) == keys


def test_service_wiring_names_moved_to_bootstrap_still_resolve_with_a_warning() -> None:
    import asm_email_rules.service as service_module
    from asm_email_rules import bootstrap

    with pytest.warns(DeprecationWarning, match=r"bootstrap\.make_mailer"):
        assert service_module.make_mailer is bootstrap.make_mailer
    with pytest.warns(DeprecationWarning, match=r"bootstrap\.mailbox_factory"):
        assert service_module.open_mailbox is bootstrap.mailbox_factory
    with pytest.raises(AttributeError):
        service_module.no_such_name  # noqa: B018


# --------------------------------------------------------------------------------------------
# one poller per account (DESIGN 4): the account lease
# --------------------------------------------------------------------------------------------


def test_a_second_poller_waits_while_the_first_holds_the_account_then_takes_over(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    desk.deliver(NEW_CALL)
    second_store = SqliteRepository(desk.tmp / "store.sqlite3")
    try:
        first = desk.service(owner="first")
        second = PollingService(
            Config(desk.tmp / "store.sqlite3", desk.system, None, desk.accounts),
            second_store,
            desk.mailer,
            desk.factory,
            now=desk.clock,
            owner="second",
        )
        lease = desk.store.acquire_lease(
            "account:helpdesk", "first", desk.clock(), desk.clock() + timedelta(minutes=2)
        )
        assert lease.owner == "first"  # the first poller is in the middle of its pass
        with caplog.at_level(logging.WARNING, logger="asm_email_rules.service"):
            waiting = second.poll_once()["helpdesk"]
            second.poll_once()  # still waiting: no second warning
        assert (waiting.waiting, waiting.lease_holder, waiting.processed) == (True, "first", 0)
        assert waiting.lease_until == NOW + timedelta(minutes=2)
        assert desk.waiting() == 1
        assert [r.getMessage() for r in caplog.records].count(
            "account is being polled by another poller; waiting until its lease expires or "
            "it lets go"
        ) == 1
        desk.clock.advance(minutes=2)  # the first poller died: its lease expires
        with caplog.at_level(logging.WARNING, logger="asm_email_rules.service"):
            taken = second.poll_once()["helpdesk"]
        assert (taken.waiting, taken.processed, taken.replies_sent) == (False, 1, 1)
        assert "account taken over from another poller" in caplog.text
        # a pass releases the lease at its end: the first poller is back at once
        assert first.poll_once()["helpdesk"].waiting is False
    finally:
        second_store.close()


def test_a_poller_that_let_go_of_the_account_is_not_reported_as_taken_over(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    """Pollers sharing accounts take turns: each releases an account's lease at the end of
    its pass, and the next one polls it. The WARNING ``account taken over from another
    poller`` says a poller died or stalled (operators.md: "If the holder dies, its lease
    expires ... and the next poller takes the account over"): it was logged at every such
    turn too, so three healthy pollers filled the log with false alarms."""
    desk.deliver(NEW_CALL)
    second = desk.service(owner="second")
    desk.store.acquire_lease(
        "account:helpdesk", "first", desk.clock(), desk.clock() + timedelta(minutes=2)
    )
    assert second.poll_once()["helpdesk"].waiting is True  # the first one is in its pass
    desk.clock.advance(seconds=30)
    desk.store.release_lease("account:helpdesk", "first")  # ...which ends: it lets go
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asm_email_rules.service"):
        turn = second.poll_once()["helpdesk"]
    assert (turn.waiting, turn.processed) == (False, 1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "account taken over from another poller" not in caplog.text
    assert "account's lease released by the other poller; polling it" in caplog.text


def test_the_lease_is_renewed_while_working_and_a_lost_lease_stops_the_pass(
    desk: Desk,
) -> None:
    raws = [make_raw(f"Issue {n}", "uma@corp.example", f"n {n}", f"<l{n}@c>") for n in range(6)]
    desk.deliver(*raws)
    renewals: list[str] = []
    thief = {"at": 4}

    class SlowMaildir(MaildirMailbox):
        """Each message takes a minute of (fake) time; during the 4th, another poller takes
        the account over."""

        def fetch(self, key: str) -> bytes:
            desk.clock.advance(minutes=1)
            thief["at"] -= 1
            if thief["at"] == 0:
                desk.store.release_lease("account:helpdesk", "me")
                desk.store.acquire_lease(
                    "account:helpdesk", "thief", desk.clock(), desk.clock() + timedelta(hours=1)
                )
            lease = desk.store.acquire_lease("account:helpdesk", "probe", desk.clock(), NOW)
            renewals.append(lease.owner)
            return super().fetch(key)

    service = desk.service(factory=lambda a: SlowMaildir(a.path), owner="me")
    report = service.poll_once()["helpdesk"]
    assert renewals[:3] == ["me", "me", "me"]  # held for 3 minutes with a 2-minute lease
    # taken during the 4th message; the check before the 5th stops the pass (the ledger keeps
    # the 4th from being acted on twice should the thief fetch it too)
    assert report.processed == 4
    assert report.errors == 1
    assert "another poller took the account over" in report.last_error
    assert desk.waiting() == 2


def test_sent_journals_resume_after_their_pause_though_the_clock_was_stepped_back(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pump whose sent journal failed (a full disk) makes the service write none for
    JOURNAL_RETRY (15 minutes), then try again: the journal is what keeps a reply the server
    accepted from a second sending after a crash. The pause was counted on the wall clock, so
    NTP stepping it back a day kept the journals off for a day and 15 minutes."""
    service = desk.service()
    ticks = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: ticks[0])
    failed: Any = attrs.make_class(
        "FailedPump",
        {"journal_failed": attrs.field(default=True), "pace": attrs.field(default=None)},
    )()
    service._after_pump(failed)
    assert not service._journal_writes()
    desk.clock.now -= timedelta(days=1)  # stepped back
    ticks[0] += 16 * 60
    desk.clock.advance(minutes=16)
    assert service._journal_writes()


def test_reply_retry_delays_double_up_to_an_hour() -> None:
    from asm_email_rules.send import retry_delay

    minutes = [retry_delay(n).total_seconds() / 60 for n in range(1, 10)]
    assert minutes == [1, 2, 4, 8, 16, 32, 60, 60, 60]


class _SyncWatcher:
    """Wraps the store: records each ``sync`` call next to the mailbox events, or fails it.
    ``detached``: it offers its sync to other threads (``detached_sync``), as SQLite does;
    else only ``sync``, as PostgreSQL does. ``upkeep``: it offers ``detached_upkeep`` too,
    recorded as "upkeep" (and ``upkept`` set)."""

    def __init__(
        self,
        store: SqliteRepository,
        events: list[str],
        *,
        fail: bool = False,
        detached: bool = True,
        upkeep: bool = False,
    ) -> None:
        self._store, self._events, self._fail = store, events, fail
        self._detached, self._upkeep = detached, upkeep
        self.upkept = threading.Event()

    def __getattr__(self, name: str) -> Any:
        if name == "detached_sync":
            if not self._detached:
                raise AttributeError(name)
            return lambda: self.sync
        if name == "detached_upkeep":
            if not self._upkeep:
                raise AttributeError(name)
            return lambda: self.upkeep
        return getattr(self._store, name)

    def upkeep(self) -> None:
        self._events.append("upkeep")
        self.upkept.set()

    def sync(self) -> None:
        self._events.append("sync")
        if self._fail:
            raise RepositoryError("disk gone")
        self._store.sync()


class _WatchedMaildir(MaildirMailbox):
    def __init__(self, path: Path, events: list[str]) -> None:
        super().__init__(path)
        self._events = events

    def close(self) -> None:
        self._events.append("close")
        super().close()

    def abort(self) -> None:
        self._events.append("abort")
        super().abort()


@pytest.mark.parametrize("detached", [True, False], ids=["sync-behind", "sync-here"])
@pytest.mark.parametrize("fail", [False, True])
def test_the_store_is_synced_before_the_mailbox_deletes_anything(
    desk: Desk, fail: bool, detached: bool
) -> None:
    # The store commits without an fsync (WAL, synchronous=NORMAL); a message may leave the
    # mailbox only once its record is on disk, else a power loss could lose it. Whether the
    # session's end runs behind the next session (SQLite) or syncs on the poller's thread
    # first (PostgreSQL), the order is the same.
    desk.deliver(NEW_CALL, UPDATE_100)
    events: list[str] = []
    config = Config(store=desk.tmp / "s", system=desk.system, smtp=None, accounts=desk.accounts)
    service = PollingService(
        config,
        _SyncWatcher(desk.store, events, fail=fail, detached=detached),
        desk.mailer,
        lambda acct: _WatchedMaildir(desk.tmp / "Maildir", events),
        now=lambda: NOW,
    )
    report = service.poll_once()["helpdesk"]
    assert report.processed == 2
    if fail:
        assert events == ["sync", "abort"]
        assert report.errors == 1
        assert "disk gone" in report.last_error
        assert desk.waiting() == 2  # kept; the ledger makes the next poll acknowledge them
        assert desk.service().poll_once()["helpdesk"].duplicates == 2
        assert desk.waiting() == 0
    else:
        # the outcomes of the replies sent after the session are made durable too
        assert events == ["sync", "close", "sync"]
        assert desk.waiting() == 0


@pytest.mark.parametrize("fail", [False, True])
def test_the_store_upkeep_runs_after_a_durable_end_without_holding_up_the_next(
    desk: Desk, fail: bool
) -> None:
    # detached_upkeep (SQLite: the WAL copied back into the database file) runs on the
    # session end's thread after the deletions, and poll_once does not wait for it; after a
    # failed sync (nothing deleted) there is none.
    desk.deliver(NEW_CALL)
    events: list[str] = []
    store = _SyncWatcher(desk.store, events, fail=fail, upkeep=True)
    config = Config(store=desk.tmp / "s", system=desk.system, smtp=None, accounts=desk.accounts)
    service = PollingService(
        config,
        store,
        None,
        lambda acct: _WatchedMaildir(desk.tmp / "Maildir", events),
        now=lambda: NOW,
    )
    service.poll_once()
    if fail:
        assert not store.upkept.wait(0.3)
        assert events == ["sync", "abort"]
    else:
        assert store.upkept.wait(10)
        assert events == ["sync", "close", "upkeep"]


def test_a_session_end_is_over_before_its_upkeep_and_a_failing_upkeep_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release, started = threading.Event(), threading.Event()

    def slow_upkeep() -> None:
        started.set()
        release.wait(10)
        raise OSError("checkpoint refused")

    events: list[str] = []
    with caplog.at_level(logging.WARNING, logger="asm_email_rules"):
        end = SessionEnd(None, _WatchedMaildir(tmp_path / "Maildir", events), slow_upkeep)
        assert end.wait().durable  # the deletions are done; the upkeep still runs
        assert started.wait(10)
        assert events == ["close"]
        release.set()
        end._thread.join(10)
    assert "upkeep after a session's end failed" in caplog.text
    assert "checkpoint refused" in caplog.text


class _SlowSync(_SyncWatcher):
    """A store whose sync takes a while and counts the syncs that finished; ``fail_first``
    makes the first one fail."""

    def __init__(self, store: SqliteRepository, events: list[str], *, fail_first: bool) -> None:
        super().__init__(store, events)
        self.finished = 0
        self._fail_first = fail_first
        self._lock = threading.Lock()

    def sync(self) -> None:
        threading.Event().wait(0.05)
        with self._lock:
            if self._fail_first and not self.finished and "failed" not in self._events:
                self._events.append("failed")
                raise RepositoryError("disk gone")
            self._store.sync()
            self.finished += 1


def _service_over(
    desk: Desk, store: Any, mailer: Any, factory: Any, *, per_session: int = 1, **system: Any
) -> PollingService:
    """A service over ``store`` and ``factory`` reading ``per_session`` messages a session."""
    config = Config(
        store=desk.tmp / "s",
        system=attrs.evolve(desk.system, **system),
        smtp=None,
        accounts=(account(desk.tmp / "Maildir", max_messages_per_session=per_session),),
    )
    return PollingService(config, store, mailer, factory, now=lambda: NOW)


def test_a_reply_waits_until_its_session_end_made_it_durable(desk: Desk) -> None:
    # The session's end (sync, then unlinks) runs behind the next session; a reply recorded in
    # a session may go out only after that session's sync, or a power loss in between could
    # lose its record while the reply was sent (and the message would be answered twice).
    events: list[str] = []
    store = _SlowSync(desk.store, events, fail_first=False)
    synced_before: list[int] = []  # at each reply sent, in order: the syncs finished so far

    class Watching(RecordingMailer):
        def send(self, message: Any, **kwargs: Any) -> None:
            synced_before.append(store.finished)
            super().send(message, **kwargs)

    for n in range(1, 5):
        desk.deliver(make_raw(f"Request {n}", "uma@corp.example", "Help.", f"<r{n}@c.example>"))
    report = _service_over(desk, store, Watching(), desk.factory).poll_once()["helpdesk"]
    assert (report.processed, report.sessions, desk.waiting()) == (4, 4, 0)
    # The n-th message was read in the n-th session and its reply is the n-th sent (the
    # outbox's order): it went out after the n-th sync finished, not before.
    assert len(synced_before) == 4
    assert [synced >= n for n, synced in enumerate(synced_before, 1)] == [True] * 4


def test_a_failed_sync_behind_the_next_session_keeps_both_sessions_mail(desk: Desk) -> None:
    # The first session's sync fails while the second session is read: neither session's
    # messages leave the mailbox and none is answered; the ledger makes the next poll
    # acknowledge the ones it recorded.
    events: list[str] = []
    store = _SlowSync(desk.store, events, fail_first=True)
    for n in range(1, 4):
        desk.deliver(make_raw(f"Request {n}", "uma@corp.example", "Help.", f"<f{n}@c.example>"))
    report = _service_over(desk, store, desk.mailer, desk.factory).poll_once()["helpdesk"]
    assert (report.processed, report.errors) == (2, 1)
    assert "disk gone" in report.last_error
    assert desk.waiting() == 3
    assert desk.mailer.sent == []
    again = desk.service().poll_once()["helpdesk"]
    assert (again.duplicates, again.processed, desk.waiting()) == (2, 1, 0)


@pytest.mark.parametrize("fail", [False, True], ids=["sync-ok", "sync-fails"])
def test_a_mailbox_that_cannot_open_for_the_next_session_does_not_release_the_replies_early(
    desk: Desk, fail: bool
) -> None:
    # Session 1 ends behind session 2 (its sync takes 50 ms; ``fail``: and fails); session 2's
    # mailbox cannot even be opened (mailbox_factory raises MailboxError: the Maildir cannot be
    # created, say). _work then sends the replies due at once, without waiting for session 1's
    # end: session 1's reply must not go out before its sync finished (invariant 2), nor at
    # all when that sync failed (invariant 3).
    events: list[str] = []
    store = _SlowSync(desk.store, events, fail_first=fail)
    for n in range(1, 3):
        desk.deliver(make_raw(f"Request {n}", "uma@corp.example", "Help.", f"<o{n}@c.example>"))
    opened: list[int] = []
    synced_before: list[int] = []

    class Watching(RecordingMailer):
        def send(self, message: Any, **kwargs: Any) -> None:
            synced_before.append(store.finished)
            super().send(message, **kwargs)

    def factory(acct: AccountConfig) -> Mailbox:
        opened.append(1)
        if len(opened) == 2:
            raise MailboxError("Maildir: cannot open: no space left on device")
        return desk.factory(acct)

    report = _service_over(desk, store, Watching(), factory).poll_once()["helpdesk"]
    assert report.processed == 1
    if fail:
        assert "failed" in events  # session 1's sync did fail
        assert desk.waiting() == 2  # session 1 was abandoned: kept
        assert synced_before == []  # ... and its reply, whose record may be lost, not sent
    else:
        assert desk.waiting() == 1
        assert synced_before == [1]  # main: [0], sent while session 1's sync still ran


def test_a_session_failing_after_a_failed_sync_behind_it_keeps_its_mail_and_replies(
    desk: Desk,
) -> None:
    # Session 1 (4 messages) ends behind session 2 and its sync fails. Session 2 handles one
    # message, then the mailbox fails three times in a row (MailboxError is raised). Nothing
    # recorded after the failed sync may leave the mailbox, and no reply of either session
    # may be sent (invariant 3).
    events: list[str] = []
    store = _SlowSync(desk.store, events, fail_first=True)
    for n in range(1, 9):
        desk.deliver(make_raw(f"Request {n}", "uma@corp.example", "Help.", f"<b{n}@c.example>"))
    opened: list[int] = []

    class Breaking(MaildirMailbox):
        fetched = 0

        def fetch(self, key: str) -> bytes:
            self.fetched += 1
            if self.fetched > 1:
                raise MailboxError("Maildir: cannot read: I/O error")
            return super().fetch(key)

    def factory(acct: AccountConfig) -> Mailbox:
        opened.append(1)
        assert acct.path is not None
        return Breaking(acct.path) if len(opened) == 2 else MaildirMailbox(acct.path)

    report = _service_over(desk, store, desk.mailer, factory, per_session=4).poll_once()["helpdesk"]
    assert report.processed == 5
    assert "failed" in events
    assert desk.waiting() == 8  # on main: 7, the 5th message was unlinked after the failure
    assert desk.mailer.sent == []


def test_the_outcomes_of_replies_sent_at_the_last_session_end_are_made_durable(
    desk: Desk,
) -> None:
    # replies_in_flight=0: the pump sends on the poller's thread. Session 1 records a reply;
    # session 2 (the last: a duplicate, no reply) ends behind and its pump round sends and
    # records session 1's reply with sync=False, "made durable ... after the last session".
    # Here the SMTP exchange outlasts the fsync of session 2's end (the usual case): no sync
    # starts after the SENT record, so a power loss would forget it and resend the reply.
    events: list[str] = []
    second_sync_done = threading.Event()

    class Watched(_SyncWatcher):
        syncs = 0

        def sync(self) -> None:
            self._events.append("sync")
            self._store.sync()
            Watched.syncs += 1
            if Watched.syncs >= 2:
                second_sync_done.set()

        def finish_reply(self, *args: Any, **kwargs: Any) -> Any:
            self._events.append("recorded")
            return self._store.finish_reply(*args, **kwargs)

    class SlowSmtp(RecordingMailer):
        def send(self, message: Any, **kwargs: Any) -> None:
            second_sync_done.wait(2)
            super().send(message, **kwargs)

    raw = make_raw("Request", "uma@corp.example", "Help.", "<d1@c.example>")
    desk.deliver(raw, raw)
    mailer = SlowSmtp()
    report = _service_over(
        desk, Watched(desk.store, events), mailer, desk.factory, replies_in_flight=0
    ).poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, desk.waiting()) == (1, 1, 0)
    assert len(mailer.sent) == 1
    assert "recorded" in events
    last_record = len(events) - 1 - events[::-1].index("recorded")
    assert "sync" in events[last_record:], events  # main: ['sync', 'sync', 'recorded']


def test_a_file_store_commits_lazily_and_syncs_on_demand(tmp_path: Path) -> None:
    store = SqliteRepository(tmp_path / "lazy.sqlite3")
    assert store._one("PRAGMA synchronous")[0] == 1  # NORMAL
    seed_sample_desk(store)
    store.sync()
    store.close()
    memory = SqliteRepository()
    memory.sync()  # nothing to do, no error
    memory.close()


def test_the_mailer_session_ends_once_per_pass_after_the_replies(desk: Desk) -> None:
    # Issue 14: one SMTP session per poll pass; SmtpMailer keeps it open between replies.
    events: list[str] = []

    class SessionMailer(RecordingMailer):
        def send(self, message: Any, **kwargs: Any) -> None:
            events.append("send")
            super().send(message, **kwargs)

        def close(self) -> None:
            events.append("close")

    desk.mailer = SessionMailer()
    desk.accounts = (account(desk.tmp / "Maildir", max_messages_per_session=2),)
    desk.deliver(NEW_CALL, UPDATE_100, APPROVE_500)
    report = desk.service().poll_once()["helpdesk"]
    assert report.processed == 3
    assert report.sessions == 2
    assert events == ["send", "send", "send", "close"]


def test_the_body_is_stored_once_in_the_store(desk: Desk) -> None:
    # Issue 10/14: the body lives in the record (a new call's description, an update's history
    # entry); the ledger's decision record says how long it was instead of repeating it.
    body = "The projector in room 4 shows only purple since the update. " * 20
    desk.deliver(make_raw("Projector purple", "uma@corp.example", body, "<p1@c.example>"))
    desk.deliver(make_raw("[CALL#100] again", "uma@corp.example", body, "<p2@c.example>"))
    assert desk.service().poll_once()["helpdesk"].processed == 2
    where = "%projector in room 4%"
    in_calls = desk.store._one("SELECT COUNT(*) FROM calls WHERE description LIKE ?", (where,))
    in_log = desk.store._one("SELECT COUNT(*) FROM log_entries WHERE text LIKE ?", (where,))
    in_ledger = desk.store._one(
        "SELECT COUNT(*) FROM ledger WHERE decision_json LIKE ? OR reply_json LIKE ?",
        (where, where),
    )
    assert (in_calls[0], in_log[0], in_ledger[0]) == (1, 1, 0)
    row = desk.store._one("SELECT decision_json FROM ledger WHERE message_id = '<p1@c.example>'")
    record = json.loads(row[0])
    [log_call] = [a for a in record["actions"] if a["kind"] == "log_call"]
    assert set(log_call["description"]) == {"chars"}
    assert set(record["reply"]["body"]) == {"chars"}


def test_a_notification_quoting_the_body_is_stored_once_too(desk: Desk) -> None:
    # Issue 14 ("the body stored once"): Email at Update via Email In notifies the analyst with
    # the update's text; that mail is kept whole in its own outbox entry, so the decision
    # record of the message keeps only its length.
    desk.system = attrs.evolve(desk.system, email_at_update_via_email_in=True)
    body = "The projector in room 4 shows only purple since the update. " * 20
    desk.deliver(make_raw("[CALL#100] again", "uma@corp.example", body, "<n1@c.example>"))
    assert desk.service().poll_once()["helpdesk"].processed == 1
    [notification] = [m for m in desk.mailer.sent if "projector in room 4" in m.body.lower()]
    rows = desk.store._execute(
        "SELECT decision_json, reply_json FROM ledger WHERE message_id = '<n1@c.example>'"
    ).fetchall()
    where = "projector in room 4"
    assert [where in (reply or "").lower() for _, reply in rows].count(True) == 1
    assert not any(where in decision.lower() for decision, _ in rows)
    record = json.loads(next(decision for decision, _ in rows if decision.startswith("{")))
    [noted] = record["notifications"]
    assert (noted["to"], noted["body"]) == (notification.to, {"chars": len(notification.body)})


# --------------------------------------------------------------------------------------------
# the reply pump: replies sent on a thread of their own while the next session is read
# --------------------------------------------------------------------------------------------


@attrs.define
class WatchingMailer:
    """Records each reply and, at each send, how many replies the server has accepted (this
    one counted as accepted already) that neither the store records as sent nor its sent
    journal keeps: what a crash at that moment would send again. Read on connections of its
    own, from the pump's thread."""

    store_path: Path
    sent: list[OutgoingEmail] = attrs.field(factory=list)
    unrecorded_at_send: list[int] = attrs.field(factory=list)
    threads: set[str] = attrs.field(factory=set)

    def send(self, message: OutgoingEmail) -> None:
        accepted = {message_id_key(m.message_id) for m in [*self.sent, message]}
        reader = sqlite3.connect(self.store_path)
        try:
            pending = {
                key
                for (key,) in reader.execute(
                    "SELECT reply_message_id FROM ledger WHERE reply_status = 'pending'"
                )
            }
        finally:
            reader.close()
        journaled = {  # a line per accepted reply: sent_at, owner, Message-ID
            message_id_key(line.split("\t")[2])
            for journal in Path(f"{self.store_path}.sent").glob("*.sent")
            for line in journal.read_text(encoding="utf-8").splitlines()
        }
        self.unrecorded_at_send.append(len((accepted & pending) - journaled))
        self.threads.add(threading.current_thread().name)
        self.sent.append(message)


@pytest.mark.parametrize("in_flight", [0, 1, 2, 5])
def test_replies_go_out_in_order_with_at_most_replies_in_flight_unrecorded(
    desk: Desk, in_flight: int
) -> None:
    """Whether sent between sessions (0) or ahead on the pump's thread, every reply goes out
    once, in the order its message was processed, and never more than ``replies_in_flight``
    are accepted by the server and not yet recorded, in the store or its sent journal (the
    most a crash can leave to resend)."""
    desk.system = attrs.evolve(desk.system, replies_in_flight=in_flight)
    desk.accounts = (account(desk.tmp / "Maildir", max_messages_per_session=3),)
    count = 11
    for n in range(count):
        desk.deliver(make_raw(f"Issue {n}", "uma@corp.example", f"problem {n}", f"<q{n}@c>"))
    mailer = WatchingMailer(desk.tmp / "store.sqlite3")
    desk.mailer = mailer  # type: ignore[assignment]
    report = desk.service().poll_once()["helpdesk"]
    assert (report.processed, report.replies_sent, report.sessions) == (count, count, 4)
    numbers = [int(m.subject.split()[1]) for m in mailer.sent]  # "Call N has been logged"
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == count
    assert max(mailer.unrecorded_at_send) <= max(in_flight, 1)
    expected_threads = {"MainThread"} if in_flight == 0 else {"asm-email-rules-reply-pump"}
    assert mailer.threads == expected_threads


@attrs.define
class SessionNotingMailer:
    """Records each reply with the number of mailbox sessions opened when it went out."""

    desk: Desk
    sent: list[tuple[str, int]] = attrs.field(factory=list)

    def send(self, message: OutgoingEmail) -> None:
        self.sent.append((message.to, len(self.desk.opened)))


@pytest.mark.parametrize("end", ["behind", "no thread"])
def test_every_mail_a_session_put_in_the_outbox_is_offered_once_it_is_durable(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """Issue 14: with Email at Update via Email In, each update of a call gives two mails (the
    reply and the owner's notification), so a session of two messages queues four. All four
    go out as soon as that session is durable (here, sending between sessions: while the
    second session ends), none left to later sessions. The listing of due replies stopped
    at a session's worth of messages (two), so the excess waited a session more, and a long
    pass's backlog grew by it at every session until the pass ended. The same when no thread
    can be had for a session's end (it then ends on the poller's thread)."""
    if end == "no thread":

        def no_thread(*args: object) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr("asm_email_rules.service.SessionEnd", no_thread)
    desk.system = attrs.evolve(desk.system, email_at_update_via_email_in=True, replies_in_flight=0)
    desk.accounts = (account(desk.tmp / "Maildir", max_messages_per_session=2),)
    for n in range(6):
        desk.deliver(make_raw("[CALL#100] again", "uma@corp.example", f"note {n}", f"<u{n}@c>"))
    mailer = SessionNotingMailer(desk)
    desk.mailer = mailer  # type: ignore[assignment]
    report = desk.service().poll_once()["helpdesk"]
    assert (report.processed, report.sessions, report.replies_sent) == (6, 3, 12)
    opened_at_send = [opened for _, opened in mailer.sent]
    # session 1's four while session 2 ends; session 2's four while session 3 ends (the
    # session after it made them durable); session 3's when the pass ends
    assert opened_at_send == [2] * 4 + [3] * 8
    assert sorted({to for to, _ in mailer.sent}) == ["alice@desk.example", "uma@corp.example"]


@attrs.define
class DeferringMailer:
    """Every reply meets a 451 (the server is down); counts the attempts."""

    attempts: int = 0

    def send(self, message: OutgoingEmail) -> None:
        self.attempts += 1
        raise SendError("451 4.3.0 try again later", code=451)


def test_after_a_deferral_the_pass_lists_no_more_due_replies(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a temporary failure stopped the pass's sending, the sessions after it list no due
    replies (none would be claimed before the next pass): with the listing sized to what the
    pump still had to claim, every session of a long pass during an outage read all of the
    growing backlog again."""
    desk.system = attrs.evolve(desk.system, email_at_update_via_email_in=True)
    desk.accounts = (account(desk.tmp / "Maildir", max_messages_per_session=2),)
    for n in range(8):
        desk.deliver(make_raw("[CALL#100] again", "uma@corp.example", f"note {n}", f"<d{n}@c>"))
    mailer = DeferringMailer()
    desk.mailer = mailer  # type: ignore[assignment]
    listings: list[int] = []  # the mailer's attempts so far, at each listing of due replies
    listed = desk.store.due_replies

    def due_replies(*args: Any, **kwargs: Any) -> Any:
        listings.append(mailer.attempts)
        return listed(*args, **kwargs)

    monkeypatch.setattr(desk.store, "due_replies", due_replies)
    report = desk.service().poll_once()["helpdesk"]
    assert (report.processed, report.sessions, report.replies_deferred) == (8, 4, 1)
    assert mailer.attempts == 1
    assert listings[0] == 0  # the first session's mails were listed
    assert 1 not in listings  # and nothing after the deferral


class ExitingMailer:
    """A mailer that raises what no mailer should (not an Exception)."""

    def send(self, message: OutgoingEmail) -> None:
        raise SystemExit("a mailer gone mad")


def test_a_mailer_raising_a_base_exception_on_the_pump_thread_defers_the_reply(
    desk: Desk,
) -> None:
    """The pump's worker answers for every reply it was given, whatever the mailer raised, so
    the pass ends (the reply waits for the next) instead of waiting for ever."""
    desk.deliver(NEW_CALL)
    reports: list[Any] = []

    def poll() -> None:  # on a thread, so a hang fails the test instead of stalling the suite
        with SqliteRepository(desk.tmp / "store.sqlite3") as store:
            service = desk.service()
            service.repository = store
            service.mailer = ExitingMailer()
            reports.append(service.poll_once())

    poller = threading.Thread(target=poll)
    poller.start()
    poller.join(timeout=20)
    assert not poller.is_alive(), "the pass hung on the pump"
    account_report = reports[0]["helpdesk"]
    assert (account_report.processed, account_report.replies_deferred) == (1, 1)
    [entry] = desk.store.list_replies()
    assert entry.status is ReplyStatus.PENDING
    assert "SystemExit" in entry.last_error


# --------------------------------------------------------------------------------------------
# a backlog of many sessions: each session lists its own worth, the pass remembers little
# (issue 14: peak memory at most 3x the largest message, whatever the folder holds)
# --------------------------------------------------------------------------------------------


@attrs.define
class _Listings:
    """What the sessions of a pass listed and fetched: per listing, the limit asked for, the
    keys skipped (handled earlier in the pass) and the keys listed."""

    listed: list[tuple[int | None, int, int]] = attrs.Factory(list)
    fetched: list[str] = attrs.Factory(list)


class _SpyMaildir(MaildirMailbox):
    def __init__(self, path: Path, seen: _Listings) -> None:
        super().__init__(path)
        self._seen = seen

    def list_keys(self, *, limit: int | None = None, skip: Any = ()) -> Iterator[str]:
        keys = list(super().list_keys(limit=limit, skip=skip))
        self._seen.listed.append((limit, len(skip), len(keys)))
        return iter(keys)

    def fetch(self, key: str) -> bytes:
        self._seen.fetched.append(key)
        return super().fetch(key)


class _ClosingHere(_SpyMaildir):
    closes_concurrently = False  # each session ends before the next one is opened


def _requests(count: int, tag: str) -> list[bytes]:
    return [
        make_raw(f"Request {n}", "uma@corp.example", f"Help {n}.", f"<{tag}{n}@c.example>")
        for n in range(count)
    ]


@pytest.mark.parametrize("spy", [_SpyMaildir, _ClosingHere], ids=["end-behind", "end-here"])
def test_a_backlog_of_many_sessions_is_handled_once_each_listing_a_sessions_worth(
    desk: Desk, spy: type[_SpyMaildir]
) -> None:
    # 20 messages, 3 a session: every one handled once, in 7 sessions; each session lists at
    # most 4 keys (3 and one to tell whether any are left over), and skips only the keys of
    # the session whose end may still be unlinking them (3), not every key of the pass.
    keys = desk.deliver(*_requests(20, "b"))
    seen = _Listings()
    service = _service_over(
        desk, desk.store, desk.mailer, lambda a: spy(a.path, seen), per_session=3
    )
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.sessions, report.errors, desk.waiting()) == (20, 7, 0, 0)
    assert seen.fetched == keys  # each once, oldest first
    assert [limit for limit, _, _ in seen.listed] == [4] * 7
    assert [listed for _, _, listed in seen.listed] == [4, 4, 4, 4, 4, 4, 2]
    most_skipped = 3 if spy is _SpyMaildir else 0
    assert max(skipped for _, skipped, _ in seen.listed) == most_skipped
    assert len(desk.mailer.sent) == 20


class _OpeningAhead(_SpyMaildir):
    """A Maildir that says it may be opened ahead of its session, as IMAP does: notes, in
    ``events``, each ``open()`` (on which thread) and each listing (whether the mailbox was
    opened before it, and on which thread); ``fail`` makes ``open()`` fail."""

    opens_ahead = True

    def __init__(self, path: Path, seen: _Listings, events: list[str], fail: bool) -> None:
        super().__init__(path, seen)
        self._events = events
        self._fail = fail
        self._opened_on = "not opened"

    def open(self) -> None:
        self._opened_on = threading.current_thread().name
        self._events.append(f"open on {self._opened_on}")
        if self._fail:
            raise MailboxError("IMAP mail.example:993: cannot connect: refused")

    def list_keys(self, *, limit: int | None = None, skip: Any = ()) -> Iterator[str]:
        self._events.append(f"list, {self._opened_on}")
        return super().list_keys(limit=limit, skip=skip)

    def abort(self) -> None:
        self._events.append("abort")


def test_the_next_session_is_opened_on_a_worker_thread_while_this_one_is_read(
    desk: Desk,
) -> None:
    # asm_email_rules.session_start: a session whose listing shows more than it handles
    # opens the next one's mailbox on a worker thread; the last session opens none.
    keys = desk.deliver(*_requests(7, "o"))
    seen = _Listings()
    events: list[str] = []
    made: list[_OpeningAhead] = []

    def factory(a: AccountConfig) -> Mailbox:
        made.append(_OpeningAhead(a.path, seen, events, fail=False))  # type: ignore[arg-type]
        return made[-1]

    report = _service_over(desk, desk.store, desk.mailer, factory, per_session=3).poll_once()
    assert (report["helpdesk"].processed, report["helpdesk"].sessions) == (7, 3)
    assert seen.fetched == keys
    assert events == [
        "list, not opened",
        "open on asm-session-start",
        "list, asm-session-start",  # opened before its session began
        "open on asm-session-start",
        "list, asm-session-start",  # one message left: no fourth mailbox
    ]
    assert len(made) == 3


def test_a_mailbox_opened_ahead_that_fails_fails_its_own_session_and_loses_nothing(
    desk: Desk,
) -> None:
    # The failure to connect is the next session's, raised where that session would have met
    # it: counted once, the account backs off, the messages wait for the next pass.
    keys = desk.deliver(*_requests(5, "f"))
    seen = _Listings()
    events: list[str] = []
    boxes = iter([False, True, False])
    factory = lambda a: _OpeningAhead(a.path, seen, events, fail=next(boxes))  # noqa: E731
    service = _service_over(desk, desk.store, desk.mailer, factory, per_session=2)
    report = service.poll_once()["helpdesk"]
    # two sessions, as without opening ahead: the second failed at its connection
    assert (report.processed, report.errors, report.sessions) == (2, 1, 2)
    assert "cannot connect: refused" in report.last_error
    assert seen.fetched == keys[:2]
    assert desk.waiting() == 3


def test_a_mailbox_opened_ahead_for_a_session_that_never_comes_is_abandoned(
    desk: Desk,
) -> None:
    # The pass stops after the first message: the next session's mailbox, opened meanwhile,
    # is given up (abort: nothing of it is deleted) rather than left connected.
    desk.deliver(*_requests(5, "s"))
    seen = _Listings()
    events: list[str] = []
    stop = threading.Event()

    class Stopping(_OpeningAhead):
        def fetch(self, key: str) -> bytes:
            stop.set()
            return super().fetch(key)

    factory = lambda a: Stopping(a.path, seen, events, fail=False)  # noqa: E731
    report = _service_over(desk, desk.store, desk.mailer, factory, per_session=2).poll_once(stop)
    assert report["helpdesk"].processed == 1
    deadline = time.monotonic() + 5
    while "abort" not in events and time.monotonic() < deadline:  # abandoned on its thread
        time.sleep(0.01)
    assert events == ["list, not opened", "open on asm-session-start", "abort"]


class _OpeningAheadClosingHere(_OpeningAhead):
    """A subclass of a mailbox that opens ahead, for a server of one connection a user: it
    sets ``closes_concurrently = False`` as docs/integrators.md tells, and inherits
    ``opens_ahead``."""

    closes_concurrently = False


def test_a_mailbox_whose_sessions_may_not_overlap_is_not_opened_ahead(desk: Desk) -> None:
    # docs/integrators.md ("a server that allows one connection per user needs a subclass
    # with closes_concurrently = False"; opening ahead needs "a third connection at times"):
    # such a subclass still inherits opens_ahead, and a connection opened while the current
    # session is read is a second one, which that server refuses (or takes the first one's
    # place). Each session must open its own mailbox once the one before it has ended.
    keys = desk.deliver(*_requests(7, "h"))
    seen = _Listings()
    events: list[str] = []
    factory = lambda a: _OpeningAheadClosingHere(a.path, seen, events, fail=False)  # noqa: E731
    report = _service_over(desk, desk.store, desk.mailer, factory, per_session=3).poll_once()
    assert (report["helpdesk"].processed, report["helpdesk"].sessions) == (7, 3)
    assert seen.fetched == keys
    assert events == ["list, not opened"] * 3


class _CtrlCWhileWaiting(threading.Event):
    """An event whose wait ends in Ctrl-C (KeyboardInterrupt), once it was set: the user
    interrupts the poller as a session waits for its mailbox opened ahead."""

    def wait(self, timeout: float | None = None) -> bool:
        super().wait(timeout)
        raise KeyboardInterrupt


def test_a_mailbox_opened_ahead_is_abandoned_when_ctrl_c_comes_as_its_session_takes_it(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # session_start.SessionStart: "take() waits for it and hands the mailbox over; discard()
    # gives it up". A KeyboardInterrupt while take() waits does neither: the session never
    # has the mailbox and the pass no longer holds the start, so nothing ever abandons it
    # (an IMAP connection left signed in).
    import types

    from asm_email_rules import session_start

    desk.deliver(*_requests(5, "c"))
    seen = _Listings()
    events: list[str] = []
    factory = lambda a: _OpeningAhead(a.path, seen, events, fail=False)  # noqa: E731
    service = _service_over(desk, desk.store, desk.mailer, factory, per_session=2)
    fake = types.SimpleNamespace(
        Thread=threading.Thread, Lock=threading.Lock, Event=_CtrlCWhileWaiting
    )
    monkeypatch.setattr(session_start, "threading", fake)
    with pytest.raises(KeyboardInterrupt):
        service.poll_once()
    deadline = time.monotonic() + 5
    while "abort" not in events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == ["list, not opened", "open on asm-session-start", "abort"]


class _OpeningAheadBroken(_OpeningAhead):
    """A mailbox whose ``open()`` fails with something other than a MailboxError (a bug,
    or a library raising what it should not) after it connected."""

    def open(self) -> None:
        super().open()
        self._events.append("connected")
        raise ValueError("a token source answered garbage")


def test_a_mailbox_opened_ahead_whose_open_fails_unexpectedly_is_given_up(desk: Desk) -> None:
    # A session whose first call fails in a way the service does not expect still ends its
    # mailbox (_end_failed_session: closed, or abandoned): whatever it connected is let go.
    # The same failure met by open() ahead must not leave the mailbox as it is.
    desk.deliver(*_requests(5, "u"))
    seen = _Listings()
    events: list[str] = []
    factory = lambda a: _OpeningAheadBroken(a.path, seen, events, fail=False)  # noqa: E731
    service = _service_over(desk, desk.store, desk.mailer, factory, per_session=2)
    with pytest.raises(ValueError, match="garbage"):
        service.poll_once()
    assert events[-1] == "abort"


@pytest.mark.parametrize("why", ["quarantine-fails", "retry"])
def test_a_message_left_in_the_folder_is_skipped_for_the_rest_of_the_pass(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    # A message that could not be moved aside, or that its result keeps to retry, stays in
    # the Maildir: however many sessions follow, the pass does not handle it again (the next
    # pass does, through the ledger).
    class NoQuarantine(_SpyMaildir):
        def quarantine(self, key: str, reason: str) -> None:
            raise MailboxError("Maildir: cannot create folder .Quarantine: read-only")

    if why == "retry":
        from asm_email_rules import service as service_module

        def process(raw: bytes, *args: Any, **kwargs: Any) -> Any:
            result = real_process(raw, *args, **kwargs)
            if b"<kept@c.example>" in raw:
                return attrs.evolve(result, disposition=Disposition.RETRY)
            return result

        real_process = service_module.process  # type: ignore[attr-defined]
        monkeypatch.setattr(service_module, "process", process)
        stuck = desk.deliver(make_raw("Keep me", "uma@corp.example", "Later.", "<kept@c.example>"))
    else:
        stuck = desk.deliver(GARBAGE)
    keys = stuck + desk.deliver(*_requests(8, "q"))
    seen = _Listings()
    factory = lambda a: NoQuarantine(a.path, seen)  # noqa: E731
    report = _service_over(desk, desk.store, desk.mailer, factory, per_session=2).poll_once()
    assert report["helpdesk"].processed == 8 + (why == "retry")
    assert seen.fetched == keys
    assert all(skipped >= 1 for _, skipped, _ in seen.listed[1:])  # the stuck one, each time
    assert list(desk.maildir.list_keys()) == stuck


def test_the_keys_of_a_session_whose_deletions_failed_stay_skipped_in_the_pass(
    desk: Desk,
) -> None:
    # The first session's close cannot unlink its two messages (an I/O error): they are
    # still in the folder, so the later sessions of the pass must not handle them again.
    class FailingFirstClose(_SpyMaildir):
        sessions = 0

        def __init__(self, path: Path, seen: _Listings) -> None:
            super().__init__(path, seen)
            FailingFirstClose.sessions += 1
            self.number = FailingFirstClose.sessions

        def close(self) -> None:
            if self.number == 1:
                self.abort()
                raise MailboxError("Maildir: cannot delete: I/O error")
            super().close()

    keys = desk.deliver(*_requests(6, "c"))
    seen = _Listings()
    factory = lambda a: FailingFirstClose(a.path, seen)  # noqa: E731
    report = _service_over(desk, desk.store, desk.mailer, factory, per_session=2).poll_once()
    assert (report["helpdesk"].processed, report["helpdesk"].errors) == (6, 1)
    assert seen.fetched == keys
    assert list(desk.maildir.list_keys()) == keys[:2]
    again = desk.service().poll_once()["helpdesk"]
    assert (again.duplicates, again.processed, desk.waiting()) == (2, 0, 0)


def test_a_maildir_subclass_listing_the_old_way_is_still_polled(desk: Desk) -> None:
    # A host's MaildirMailbox subclass whose list_keys() takes no limit: the service lists
    # everything, as before, and still handles each message once, a session at a time.
    class OldWay(MaildirMailbox):
        def list_keys(self) -> Iterator[str]:  # type: ignore[override]
            return super().list_keys()

    desk.deliver(*_requests(5, "o"))
    service = _service_over(desk, desk.store, desk.mailer, lambda a: OldWay(a.path), per_session=2)
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.sessions, desk.waiting()) == (5, 3, 0)


class FullDiskJournal:
    """A sent journal on a full disk: every add fails (and is counted)."""

    def __init__(self, adds: list[datetime], now: datetime) -> None:
        self.adds, self.now = adds, now

    def add(self, entries: object) -> None:
        self.adds.append(self.now)
        raise StoreUnavailableError("store.sqlite3.sent: no space left on device")

    def leftovers(self) -> list[object]:
        return []

    def forget(self) -> None:
        pass

    def close(self, *, recorded: bool) -> None:
        pass


def test_after_the_sent_journal_fails_the_service_sends_without_one_for_a_while(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal's disk is full: the pass that meets it sends what it can and logs it once;
    for the next quarter of an hour the pumps write no journal (they still read what stopped
    pumps left), so the outbox is not held back by it: they send ``replies_in_flight``
    ahead, as without one. After that the journal is written again. Every reply goes out
    once, in order."""
    adds: list[datetime] = []

    def full_disk(store: SqliteRepository, owner: str) -> FullDiskJournal:
        return FullDiskJournal(adds, desk.clock())

    monkeypatch.setattr(SqliteRepository, "sent_journal", full_disk)
    desk.accounts = (account(desk.tmp / "Maildir", max_messages_per_session=10),)
    for n in range(6):
        desk.deliver(make_raw(f"Issue {n}", "uma@corp.example", f"problem {n}", f"<j{n}@c>"))
    service = desk.service()
    with caplog.at_level(logging.WARNING, logger="asm_email_rules"):
        first = service.poll_once()["helpdesk"]
    assert first.processed == 6
    assert 0 < first.replies_sent < 6  # the first write's; the rest wait, in order
    desk.clock.advance(minutes=1)
    second = service.poll_once()["helpdesk"]
    assert first.replies_sent + second.replies_sent == 6
    assert len(adds) == 1, "a journal was written again within the quarter of an hour"
    numbers = [int(m.subject.split()[1]) for m in desk.mailer.sent]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 6
    warnings = [r for r in caplog.records if "sent journal failed" in r.getMessage()]
    assert len(warnings) == 1
    desk.clock.advance(minutes=15)
    desk.deliver(make_raw("Issue 6", "uma@corp.example", "problem 6", "<j6@c>"))
    service.poll_once()
    assert len(adds) == 2


class NullEmailStore:
    """Wraps the store; ``persons_by_address`` hands back Uma with a NULL email column, as a
    host store whose directory lost an address does."""

    def __init__(self, inner: SqliteRepository) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def persons_by_address(self, address: str) -> Any:
        found = self.inner.persons_by_address(address)
        return [attrs.evolve(person, email=None) for person in found]  # type: ignore[arg-type]


def test_a_host_record_of_the_wrong_shape_is_the_stores_fault_not_the_messages(
    desk: Desk,
) -> None:
    """A host store handing the rules a Person whose email is None: the rules name it with
    ArgumentTypeError. That is the store's fault, so the message is retried on later passes
    like any store failure, and only after ``max_send_attempts`` set aside; it was
    quarantined at once as "processing failed", blamed for our side's data."""
    box = KeepingMailbox({"1": NEW_CALL})
    config = Config(desk.tmp / "s", desk.system, None, desk.accounts)
    service = PollingService(
        config, NullEmailStore(desk.store), desk.mailer, lambda _: box, now=lambda: NOW
    )
    first = service.poll_once()["helpdesk"]
    assert (first.quarantined, first.errors) == (0, 1)
    assert "the store failed: ArgumentTypeError" in first.last_error
    assert box.quarantine_calls == []
    for _ in range(desk.system.max_send_attempts - 1):
        last = service.poll_once()["helpdesk"]
    assert last.quarantined == 1
    assert "ArgumentTypeError" in box.quarantine_calls[0][1]
