"""``poll --once`` and ``replies list|resend`` against an aiosmtpd sink that refuses, defers
and then accepts: the exit codes an operator's cron sees, and a failed reply resent by hand.

Issue 10: "a reply finally given up stays recorded as failed, is counted in the pass summary,
makes poll --once exit with its own non-zero code, and can be resent".
"""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.sample import DESK_ADDRESS, seed_sample_desk

if TYPE_CHECKING:
    from conftest import SmtpFactory

pytestmark = pytest.mark.integration

CONFIG = """\
store = "store.sqlite3"

[smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
timeout = 10

[[accounts]]
name = "helpdesk"
protocol = "maildir"
path = "Maildir"

[accounts.mailbox]
addresses = ["{desk}"]
auto_reply = true
"""


def update(number: int, message_id: str) -> bytes:
    return (
        f"From: uma@corp.example\r\nTo: {DESK_ADDRESS}\r\n"
        f"Subject: [CALL#100] still broken ({number})\r\nMessage-ID: {message_id}\r\n"
        "Date: Fri, 27 Nov 2026 11:00:00 +0000\r\n\r\nStill broken.\r\n"
    ).encode()


def test_a_refused_reply_exits_4_and_is_resent_with_its_message_id(
    tmp_path: Path, smtp_server: SmtpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp = smtp_server(data_reply="550 5.1.1 no such user")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(port=smtp.port, desk=DESK_ADDRESS), encoding="utf-8")
    with SqliteRepository(tmp_path / "store.sqlite3") as repo:
        seed_sample_desk(repo)
    inbox = MaildirMailbox(tmp_path / "Maildir")
    inbox.add(update(1, "<u1@corp.example>"))

    code = main(["poll", "--once", "--config", str(config)])
    out, _ = capsys.readouterr()
    assert code == 4
    assert "replies sent 0, deferred 0, failed 1" in out
    assert "wait in the outbox" not in out  # none left pending
    assert list(inbox.list_keys()) == []  # acted on, recorded: the spec deletes it

    assert main(["replies", "list", "--failed", "--json", "--config", str(config)]) == 0
    [line] = capsys.readouterr()[0].splitlines()
    failed = json.loads(line)
    assert failed["status"] == "failed"
    assert "550" in failed["last_error"]

    smtp.handler.data_reply = None  # the recipient exists again
    code = main(["replies", "resend", "--all-failed", "--config", str(config)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert f"{failed['message_id']}: sent" in out
    [envelope] = smtp.envelopes
    sent = BytesParser(policy=policy.default).parsebytes(envelope.content)
    assert sent["Message-ID"] == failed["message_id"]
    assert sent["In-Reply-To"] == "<u1@corp.example>"
    assert main(["replies", "list", "--sent", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr()[0])["status"] == "sent"


def test_a_deferred_reply_exits_3_and_leaves_the_mailbox_empty(
    tmp_path: Path, smtp_server: SmtpFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp = smtp_server(data_reply="451 4.3.0 try again later")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(port=smtp.port, desk=DESK_ADDRESS), encoding="utf-8")
    with SqliteRepository(tmp_path / "store.sqlite3") as repo:
        seed_sample_desk(repo)
    inbox = MaildirMailbox(tmp_path / "Maildir")
    inbox.add(update(1, "<d1@corp.example>"))
    inbox.add(update(2, "<d2@corp.example>"))

    code = main(["poll", "--once", "--config", str(config)])
    out, _ = capsys.readouterr()
    assert code == 3
    assert "processed 2" in out
    assert "deferred 1" in out  # the pass stops at the first temporary failure
    assert "  2 replies wait in the outbox, the first due " in out  # said, for cron's mail
    assert list(inbox.list_keys()) == []  # the outbox keeps the replies, not the mailbox
    assert main(["replies", "list", "--pending", "--config", str(config)]) == 0
    listing = capsys.readouterr()[0]
    assert listing.count(" pending ") == 2
    assert "451" in listing
