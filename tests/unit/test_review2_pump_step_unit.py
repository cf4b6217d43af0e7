"""Review of the reply pump's one-unit-of-work step (28805bf): a store failure later in the
step's unit of work must not undo the records of replies the server already accepted.

DESIGN 4, "Replies are an outbox": "The only duplicate left is a crash between the server's 250
and our commit; the resend carries the same Message-ID." A claim (or the lease renewal in
``keep_going()``) that fails in the store is not a crash: before 28805bf each record was its
own unit of work and stayed committed, so nothing went out twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.errors import StoreUnavailableError
from asm_email_rules.model import OutboxEntry, OutgoingEmail, ReplyStatus
from asm_email_rules.outbox_pump import ReplyPump
from asm_email_rules.settings import SystemSettings

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
SYSTEM = SystemSettings()


def _reply(number: int) -> OutgoingEmail:
    return OutgoingEmail(
        to=f"user{number}@example.com",
        subject=f"Call {number} has been logged [CALL#{number}]",
        body="Thank you.",
        sender="desk@example.com",
        message_id=f"<asm.call-{number}.review{number}@example.com>",
    )


class ClaimFails:
    """The store, except that ``claim_reply`` raises (the server went away, a lock timed out,
    the disk is full) while ``fail`` is set."""

    def __init__(self, store: SqliteRepository) -> None:
        self.store = store
        self.fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        if self.fail:
            raise StoreUnavailableError("store: lock timeout while claiming a reply")
        return self.store.claim_reply(reply_message_id, owner, now, until)


class Collecting:
    """A mailer that keeps the Message-ID of every reply the server accepted."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message: OutgoingEmail) -> None:
        self.sent.append(message.message_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRepository]:
    with SqliteRepository(tmp_path / "store.sqlite3") as repository:
        for number in range(1, 6):
            repository.record_processed(
                "box", f"<m{number}@example.com>", f"s{number}", "{}", _reply(number), T0
            )
        yield repository


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the worker did not finish in 10 s"
        time.sleep(0.01)


@pytest.mark.parametrize("fault", ["claim", "lease renewal"])
def test_a_store_failure_later_in_a_step_does_not_resend_what_the_server_accepted(
    store: SqliteRepository, fault: str
) -> None:
    """Replies 1 and 2 are sent; the next step records both and then fails to claim reply 3
    (or to renew the account's lease before that claim). Each reply still reaches its
    recipient once: the records of 1 and 2 stand, and a later pass sends only 3, 4 and 5."""
    now = T0 + timedelta(minutes=1)
    failing, mailer = ClaimFails(store), Collecting()
    renewal_fails = threading.Event()

    def keep_going() -> bool:
        if renewal_fails.is_set():
            raise StoreUnavailableError("store: lock timeout while renewing the account lease")
        return True

    pump = ReplyPump(
        failing, mailer, SYSTEM, owner="poller-1", clock=lambda: now, keep_going=keep_going
    )
    pump.offer(store.due_replies(now))
    pump.step()  # claims 1 and 2; the worker sends both
    _wait_for(lambda: len(mailer.sent) == 2)
    _wait_for(lambda: pump._done.qsize() == 2)
    if fault == "claim":
        failing.fail = True
    else:
        renewal_fails.set()
    with pytest.raises(StoreUnavailableError):
        pump.step()  # records 1 and 2, then the store fails
    pump.close()
    assert mailer.sent == [_reply(1).message_id, _reply(2).message_id]

    # The pass ended on the store's failure; a later pass (any claim long expired) sends
    # what is still due.
    later = now + timedelta(seconds=SYSTEM.lease_seconds + 60)
    with ReplyPump(store, mailer, SYSTEM, owner="poller-2", clock=lambda: later) as again:
        again.offer(store.due_replies(later))
        again.drain()
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)], (
        "a reply the server accepted was sent again after an unrelated store failure"
    )
    for number in (1, 2):
        entry = store.outbox_entry(_reply(number).message_id)
        assert entry is not None
        assert (entry.status, entry.attempts) == (ReplyStatus.SENT, 1)
