"""The reply pump's unit of work per step: what it records and what it claims commit together,
and a claim reaches the worker only once committed (DESIGN 4, "Replies are an outbox": a
sender sends only what it claimed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.errors import RepositoryError, SendError
from asm_email_rules.model import OutgoingEmail, ReplyStatus
from asm_email_rules.outbox_pump import ReplyPump
from asm_email_rules.settings import SystemSettings

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def _reply(number: int) -> OutgoingEmail:
    return OutgoingEmail(
        to=f"user{number}@example.com",
        subject=f"Call {number} has been logged [CALL#{number}]",
        body="Thank you.",
        sender="desk@example.com",
        message_id=f"<asm.call-{number}.pump{number}@example.com>",
    )


class CommitFails:
    """The store, except that a unit of work fails at its end while ``fail`` is set (the
    store's own transaction then rolls everything in it back)."""

    def __init__(self, store: SqliteRepository) -> None:
        self.store = store
        self.fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.store.transaction():
            yield
            if self.fail:
                raise RepositoryError("disk I/O error at commit")


class Collecting:
    """A mailer that keeps what it was given; replies listed in ``defer`` fail for now."""

    def __init__(self, defer: frozenset[str] = frozenset()) -> None:
        self.sent: list[str] = []
        self.defer = defer
        self.event = threading.Event()

    def send(self, message: OutgoingEmail) -> None:
        self.event.set()
        if message.message_id in self.defer:
            raise SendError("451 try again later", code=451)
        self.sent.append(message.message_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRepository]:
    with SqliteRepository(tmp_path / "store.sqlite3") as repository:
        for number in range(1, 6):
            repository.record_processed(
                "box", f"<m{number}@example.com>", f"s{number}", "{}", _reply(number), T0
            )
        yield repository


def _pump(store: Any, mailer: Collecting) -> ReplyPump:
    return ReplyPump(
        store,
        mailer,
        SystemSettings(),
        owner="poller-1",
        clock=lambda: T0 + timedelta(minutes=1),
        depth=2,
    )


def _claimed(store: SqliteRepository) -> list[str]:
    return [
        entry.reply.message_id
        for entry in store.list_replies([ReplyStatus.PENDING])
        if entry.claimed_by
    ]


def test_claims_whose_commit_failed_never_reach_the_mailer(store: SqliteRepository) -> None:
    """A step claims two replies in one unit of work; when its commit fails, neither is sent,
    both are still pending and unclaimed, and the pump closes at once (nothing in flight)."""
    failing, mailer = CommitFails(store), Collecting()
    pump = _pump(failing, mailer)
    pump.offer(store.due_replies(T0 + timedelta(minutes=1)))
    failing.fail = True
    with pytest.raises(RepositoryError, match="at commit"):
        pump.step()
    closer = threading.Thread(target=pump.close)
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive(), "close() waited for replies that were never handed over"
    assert mailer.sent == []
    assert _claimed(store) == []
    assert len(store.list_replies([ReplyStatus.PENDING])) == 5

    again = _pump(store, mailer)  # the next pass offers them again: each goes out once
    again.offer(store.due_replies(T0 + timedelta(minutes=1)))
    again.drain()
    again.close()
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)]
    assert store.list_replies([ReplyStatus.PENDING]) == []


def test_a_deferral_recorded_in_a_step_stops_the_claims_of_that_step(
    store: SqliteRepository,
) -> None:
    """When the server answers "try later" for a reply, the step that records it claims no
    more: the replies behind it stay unclaimed for whoever sends next."""
    mailer = Collecting(defer=frozenset({_reply(1).message_id}))
    pump = _pump(store, mailer)
    pump.offer(store.due_replies(T0 + timedelta(minutes=1)))
    pump.step()  # claims replies 1 and 2 together; the worker tries 1, then holds 2
    assert mailer.event.wait(10)
    for _ in range(200):
        if pump.stopped_early:
            break
        threading.Event().wait(0.02)
        pump.step()  # records the deferral (and reply 2, not attempted), claims nothing more
    pump.close()
    assert pump.stopped_early
    assert mailer.sent == []
    assert set(_claimed(store)) <= {_reply(1).message_id, _reply(2).message_id}
    for number in range(3, 6):
        entry = store.outbox_entry(_reply(number).message_id)
        assert entry is not None
        assert (entry.status, entry.claimed_by) == (ReplyStatus.PENDING, "")
