"""A sample helpdesk on the in-memory reference repository, driven by real message bytes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import attrs
import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.model import Call, EntityKind, EntityRef, EntryKind, LogEntry, Task
from asm_email_rules.pipeline import ProcessResult, process
from asm_email_rules.rules import Decision
from asm_email_rules.sample import DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.settings import MailboxSettings, SystemSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def make_raw(
    subject: str,
    *,
    sender: str,
    body: str = "Hello, please help.",
    headers: Sequence[tuple[str, str]] = (),
    attachments: Sequence[tuple[str, bytes]] = (),
    message_id: str | None = None,
    date: str = "Fri, 27 Nov 2026 11:00:00 +0000",
) -> bytes:
    """A real RFC 5322 message as bytes, the way a mail server would hand it over."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id or f"<{abs(hash((subject, sender, body)))}@client.example>"
    for name, value in headers:
        msg[name] = value
    msg.set_content(body)
    for filename, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes()


@attrs.define
class Desk:
    """The sample desk: send it mail, then look at the store and the replies."""

    repo: InMemoryRepository
    mailbox: MailboxSettings
    system: SystemSettings
    mailer: RecordingMailer
    last: ProcessResult | None = None

    def set(self, **options: Any) -> None:
        """Change mailbox options (the spec's incoming email server settings)."""
        self.mailbox = attrs.evolve(self.mailbox, **options)

    def set_system(self, **options: Any) -> None:
        """Change system-wide options."""
        self.system = attrs.evolve(self.system, **options)

    def mail(self, subject: str, *, sender: str = "uma@corp.example", **kwargs: Any) -> Decision:
        """Deliver one message through the whole pipeline and return its decision."""
        raw = make_raw(subject, sender=sender, **kwargs)
        self.last = process(raw, self.repo, self.mailer, self.mailbox, self.system, NOW)
        assert self.last.decision is not None
        return self.last.decision

    @property
    def replies(self) -> list[Any]:
        """Every reply sent so far."""
        return self.mailer.sent

    def call(self, number: int) -> Call:
        found = self.repo.get_call(number)
        assert found is not None
        return found

    def task(self, number: int) -> Task:
        found = self.repo.get_task(number)
        assert found is not None
        return found

    def entries(self, kind: EntityKind, number: int) -> list[LogEntry]:
        return list(self.repo.entries(EntityRef(kind, number)))

    def texts(self, kind: EntityKind, number: int, entry: EntryKind) -> list[str]:
        return [item.text for item in self.entries(kind, number) if item.kind is entry]

    def newest_call(self) -> Call:
        numbers = [n for n in range(1, 10_000) if self.repo.get_call(n) is not None]
        return self.call(max(numbers))


@pytest.fixture
def desk() -> Desk:
    repo = InMemoryRepository()
    seed_sample_desk(repo)
    return Desk(repo, sample_mailbox(), SystemSettings(), RecordingMailer())
