"""The duplicate key: Message-ID plus a hash of the message without the trace headers.

DESIGN 4, "Nothing is lost": "Duplicates are acknowledged and deleted without acting twice: the
key is the Message-ID plus a hash of the message *without* the trace headers that relays add
(Received, Return-Path, Delivered-To, X-Original-To, Authentication-Results, ARC-*), so a
redelivery through another relay is still a duplicate, while two different messages that reuse
one Message-ID are both acted on."

On the polling service with a real SQLite store and a real Maildir, and on the in-memory store.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.model import EntityKind, EntityRef
from asm_email_rules.pipeline import process
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.sample import DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAILBOX = sample_mailbox(name="helpdesk", auto_reply=True, create_calls_anonymously=True)

UPDATE = (
    b"From: Uma <uma@corp.example>\r\n"
    b"To: " + DESK_ADDRESS.encode() + b"\r\n"
    b"Subject: [CALL#100] the toner is empty too\r\n"
    b"Message-ID: <toner@corp.example>\r\n"
    b"Date: Fri, 27 Nov 2026 11:00:00 +0000\r\n"
    b"\r\n"
    b"And the toner is empty.\r\n"
)
FIRST_ROUTE = (
    b"Return-Path: <uma@corp.example>\r\n"
    b"Delivered-To: helpdesk@desk.example\r\n"
    b"Received: from mx1.desk.example by store.desk.example; Fri, 27 Nov 2026 11:00:02 +0000\r\n"
)
SECOND_ROUTE = (
    b"Return-Path: <uma@corp.example>\r\n"
    b"X-Original-To: helpdesk@desk.example\r\n"
    b"Received: from backup-mx.desk.example by store.desk.example;\r\n"
    b"\tFri, 27 Nov 2026 11:40:00 +0000\r\n"
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=relay.example; s=k; b=abc\r\n"
    b"Authentication-Results: relay.example; spf=pass smtp.mailfrom=corp.example\r\n"
    b"Received: from mx1.desk.example by backup-mx.desk.example;\r\n"
    b" Fri, 27 Nov 2026 11:00:02 +0000\r\n"
)


def history(store: SeedableRepository) -> list[str]:
    entries = store.entries(EntityRef(EntityKind.CALL, 100))
    return [e.text.strip() for e in entries if "toner" in e.text]


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SeedableRepository:
    repository: SeedableRepository
    if request.param == "sqlite":
        repository = SqliteRepository(tmp_path / "store.sqlite3")
    else:
        repository = InMemoryRepository()
    seed_sample_desk(repository)
    return repository


def test_redelivery_through_another_relay_acts_once(store: SeedableRepository) -> None:
    mailer = RecordingMailer()
    first = process(FIRST_ROUTE + UPDATE, store, mailer, MAILBOX, SystemSettings(), NOW)
    again = process(SECOND_ROUTE + UPDATE, store, mailer, MAILBOX, SystemSettings(), NOW)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert history(store) == ["And the toner is empty."]  # one history entry
    assert len(mailer.sent) == 1  # one "call updated" reply


def test_two_messages_sharing_one_message_id_both_act(store: SeedableRepository) -> None:
    mailer = RecordingMailer()
    other = UPDATE.replace(b"And the toner is empty.", b"The toner is empty, and the drum.")
    first = process(FIRST_ROUTE + UPDATE, store, mailer, MAILBOX, SystemSettings(), NOW)
    second = process(FIRST_ROUTE + other, store, mailer, MAILBOX, SystemSettings(), NOW)
    assert (first.duplicate, second.duplicate) == (False, False)
    assert history(store) == ["And the toner is empty.", "The toner is empty, and the drum."]
    assert len(mailer.sent) == 2


def test_an_entry_recorded_before_the_key_changed_still_makes_a_duplicate(
    store: SeedableRepository,
) -> None:
    """A store upgraded in place: its ledger entries were keyed by the hash of the raw bytes. A
    message they recorded that is still in the mailbox must not act a second time."""
    raw = FIRST_ROUTE + UPDATE
    legacy = hashlib.sha256(raw).hexdigest()
    decision = json.dumps({"rule": "UC-1", "actions": []})
    store.record_processed("helpdesk", "<toner@corp.example>", legacy, decision, None, NOW)
    result = process(raw, store, RecordingMailer(), MAILBOX, SystemSettings(), NOW)
    assert result.duplicate
    assert history(store) == []


MBOX_FROM_LINE = b"From uma@corp.example Fri Nov 27 11:00:03 2026\n"


def test_an_entry_keyed_with_its_mbox_from_line_by_an_earlier_version_stays_a_duplicate(
    store: SeedableRepository,
) -> None:
    """Versions before the mbox ``From `` line was left out of the key hashed it with the
    rest (trace fields left out): the same bytes read again after an upgrade (a redelivery, a
    copy still in the mailbox) must not log or update a second time."""
    raw = MBOX_FROM_LINE + FIRST_ROUTE + UPDATE
    earlier = hashlib.sha256(MBOX_FROM_LINE + UPDATE).hexdigest()  # that version's key
    decision = json.dumps({"rule": "UC-1", "actions": []})
    store.record_processed("helpdesk", "<toner@corp.example>", earlier, decision, None, NOW)
    mailer = RecordingMailer()
    result = process(raw, store, mailer, MAILBOX, SystemSettings(), NOW)
    assert result.duplicate
    assert history(store) == []
    assert mailer.sent == []


def test_the_polling_service_deletes_the_redelivered_copy_without_acting(tmp_path: Path) -> None:
    store = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(store)
    maildir = MaildirMailbox(tmp_path / "Maildir")
    account = AccountConfig(
        name="helpdesk", protocol=MailProtocol.MAILDIR, mailbox=MAILBOX, path=tmp_path / "Maildir"
    )
    config = Config(tmp_path / "store.sqlite3", SystemSettings(), None, (account,))
    mailer = RecordingMailer()

    def open_maildir(a: AccountConfig) -> MaildirMailbox:
        assert a.path is not None
        return MaildirMailbox(a.path)

    service = PollingService(config, store, mailer, open_maildir, now=lambda: NOW)
    maildir.add(FIRST_ROUTE + UPDATE)
    assert service.poll_once()["helpdesk"].processed == 1
    maildir.add(SECOND_ROUTE + UPDATE)  # the backup MX delivers its copy forty minutes later
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.quarantined) == (0, 1, 0)
    assert list(maildir.list_keys()) == []
    assert history(store) == ["And the toner is empty."]
    assert len(mailer.sent) == 1
