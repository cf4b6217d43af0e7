"""Embed the rules in a host: one message in, a decision and a reply out.

Run it: ``python examples/embed.py``. It uses the bundled SQLite store and a recording mailer,
so it needs no server; swap in ``SmtpMailer`` and your own Repository in a real host.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from asm_email_rules import EntityKind, EntityRef, SystemSettings, explain, process
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.sample import sample_mailbox, seed_sample_desk

MESSAGE = b"""From: Uma User <uma@corp.example>
To: helpdesk@desk.example
Subject: RE: Call 100 has been updated
Message-ID: <embed-example@corp.example>
Date: Fri, 27 Nov 2026 11:00:00 +0000

The printer works again, thanks!

-----Original Message-----
From: helpdesk@desk.example
Subject: Call 100 has been updated

Call 100 has been updated.
"""


def main() -> None:
    """Dry-run one message, then process it for real and show what changed."""
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    mailbox = sample_mailbox(auto_reply=True)
    system = SystemSettings(truncate_incoming_emails=True)
    with tempfile.TemporaryDirectory() as folder:
        repository = SqliteRepository(Path(folder) / "helpdesk.sqlite3")
        seed_sample_desk(repository)
        print(explain(MESSAGE, repository, mailbox, system, now).explain())
        mailer = RecordingMailer()
        result = process(MESSAGE, repository, mailer, mailbox, system, now)
        print(f"\nprocessed: {result.disposition.value}; reply {result.reply_status.value}")
        for entry in repository.entries(EntityRef(EntityKind.CALL, 100)):
            print(f"history of call 100: {entry.kind.value}: {entry.text!r}")
        for reply in mailer.sent:
            print(f"reply to {reply.to}: {reply.subject}")
        repository.close()


if __name__ == "__main__":
    main()
