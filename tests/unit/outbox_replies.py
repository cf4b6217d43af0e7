"""Pending replies in a SQLite outbox, for the unit tests of the reply pump and the sent journal.

A module of its own (not ``conftest``): pytest puts this folder on ``sys.path``, and a
``from conftest import ...`` could find another folder's conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.model import OutgoingEmail

QUEUED_AT = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
"""When :func:`five_pending_replies` records its replies (so when they fall due)."""


def outbox_reply(number: int) -> OutgoingEmail:
    """Reply ``number``: to its own user, with its own Message-ID."""
    return OutgoingEmail(
        to=f"user{number}@example.com",
        subject=f"Call {number} has been logged [CALL#{number}]",
        body="Thank you.",
        sender="desk@example.com",
        message_id=f"<asm.call-{number}.outbox{number}@example.com>",
    )


@contextmanager
def five_pending_replies(folder: Path) -> Iterator[SqliteRepository]:
    """A SQLite store in ``folder`` with replies 1 to 5 pending in its outbox, none claimed,
    each recorded at :data:`QUEUED_AT` with the message it answers."""
    with SqliteRepository(folder / "store.sqlite3") as repository:
        for number in range(1, 6):
            repository.record_processed(
                "box",
                f"<m{number}@example.com>",
                f"s{number}",
                "{}",
                outbox_reply(number),
                QUEUED_AT,
            )
        yield repository
