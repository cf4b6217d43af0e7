"""Issue 9, "Nothing dropped in silence": discards carry their reason in the ledger and the log
at INFO, and the pass summary counts them by reason."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from hashlib import sha256
from pathlib import Path

import pytest

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli.poll import _print_report
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.sample import DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def raw(subject: str, sender: str, message_id: str, *headers: tuple[str, str]) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = "Fri, 27 Nov 2026 11:00:00 +0000"
    msg["Message-ID"] = message_id
    for name, value in headers:
        msg[name] = value
    msg.set_content("Hello.")
    return msg.as_bytes()


AWAY = ("Auto-Submitted", "auto-replied")


def test_pass_summary_counts_discards_by_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(store)
    maildir = MaildirMailbox(tmp_path / "Maildir")
    messages = [
        raw("Auto: away", "uma@corp.example", "<a1@c.example>", AWAY),
        raw("Auto: away", "alice@desk.example", "<a2@c.example>", AWAY),
        raw("Help", "stranger@else.example", "<s1@c.example>"),
        raw("Printer", "uma@corp.example", "<p1@c.example>"),
    ]
    for message in messages:
        maildir.add(message)
    account = AccountConfig(
        name="helpdesk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(name="helpdesk"),
        path=tmp_path / "Maildir",
    )
    config = Config(
        store=tmp_path / "store.sqlite3", system=SystemSettings(), smtp=None, accounts=(account,)
    )
    service = PollingService(
        config,
        store,
        RecordingMailer(),
        lambda acct: MaildirMailbox(tmp_path / "Maildir"),
        now=lambda: NOW,
    )
    with caplog.at_level(logging.INFO, logger="asm_email_rules.service"):
        report = service.poll_once()
    helpdesk = report["helpdesk"]
    assert helpdesk.processed == 4
    assert helpdesk.discarded == (
        ("auto-reply", 2),
        ("unknown sender without Create New Calls Anonymously", 1),
    )
    assert helpdesk.discard_summary() == (
        "3 discarded: auto-reply (2), unknown sender without Create New Calls Anonymously (1)"
    )
    reasons = sorted(
        str(vars(record)["discard_reason"])
        for record in caplog.records
        if record.getMessage() == "message handled"
    )
    # issue 11: a person's mail the desk ignores is a WARNING; auto-replies stay at INFO
    levels = {
        str(vars(record)["discard_reason"]): record.levelno
        for record in caplog.records
        if record.getMessage() == "message handled"
    }
    assert levels["unknown sender without Create New Calls Anonymously"] == logging.WARNING
    assert levels["auto-reply"] == logging.INFO
    assert reasons == [
        "",
        "auto-reply",
        "auto-reply",
        "unknown sender without Create New Calls Anonymously",
    ]
    entry = store.ledger_entry("helpdesk", "<s1@c.example>", sha256(messages[2]).hexdigest())
    assert entry is not None
    assert json.loads(entry.decision_json)["discard_reason"].startswith("unknown sender")
    _print_report(report)
    assert "  3 discarded: auto-reply (2), unknown sender" in capsys.readouterr().out
