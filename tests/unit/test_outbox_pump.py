"""The reply pump's unit of work per step: what it records and what it claims commit together,
a claim reaches the worker only once committed, and a failure or a Ctrl-C never makes a reply
go out twice nor the pump hang.

DESIGN 4, "Replies are an outbox": a sender sends only what it claimed, and "the only duplicate
left is a crash between the server's 250 and our commit; the resend carries the same
Message-ID". A store failure in a step is not such a crash.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from outbox_replies import QUEUED_AT, five_pending_replies
from outbox_replies import outbox_reply as _reply

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.errors import RepositoryError, SendError, StoreUnavailableError
from asm_email_rules.model import OutboxEntry, OutgoingEmail, ReplyStatus, SentEntry
from asm_email_rules.outbox_pump import ReplyPump
from asm_email_rules.send import SendResult, send_due
from asm_email_rules.settings import SystemSettings

T0 = QUEUED_AT
NOW = T0 + timedelta(minutes=1)
SYSTEM = SystemSettings()


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
    with five_pending_replies(tmp_path) as repository:
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


def _claimed(store: SqliteRepository | InMemoryRepository, at: datetime = NOW) -> list[str]:
    """The replies under a live claim at ``at``."""
    return [
        entry.reply.message_id
        for entry in store.list_replies([ReplyStatus.PENDING])
        if entry.claimed_by and entry.claimed_until is not None and entry.claimed_until > at
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


def _wait_for(condition: Callable[[], bool]) -> None:
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
    recipient once: the records of 1 and 2 are made again (by close()), and a later pass
    sends only 3, 4 and 5."""
    failing, mailer = ClaimFails(store), Collecting()
    renewal_fails = threading.Event()

    def keep_going() -> bool:
        if renewal_fails.is_set():
            raise StoreUnavailableError("store: lock timeout while renewing the account lease")
        return True

    pump = ReplyPump(
        failing, mailer, SYSTEM, owner="poller-1", clock=lambda: NOW, keep_going=keep_going
    )
    pump.offer(store.due_replies(NOW))
    pump.step()  # claims 1 and 2; the worker sends both
    _wait_for(lambda: len(mailer.sent) == 2)
    _wait_for(lambda: pump._done.qsize() == 2)
    if fault == "claim":
        failing.fail = True
    else:
        renewal_fails.set()
    with pytest.raises(StoreUnavailableError):
        pump.step()  # records 1 and 2, then the store fails: all of it rolled back
    pump.close()
    assert mailer.sent == [_reply(1).message_id, _reply(2).message_id]

    # The pass ended on the store's failure; a later pass (any claim long expired) sends
    # what is still due.
    later = NOW + timedelta(seconds=SYSTEM.lease_seconds + 60)
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


def test_a_reply_whose_record_was_rolled_back_is_logged_as_sent_once(
    store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """The step that records replies 1 and 2 fails on its next claim and is rolled back;
    close() records them again. The log says each was sent once, as it was: a line is
    written only once its record is committed."""
    failing, mailer = ClaimFails(store), Collecting()
    pump = ReplyPump(failing, mailer, SYSTEM, owner="poller-1", clock=lambda: NOW)
    pump.offer(store.due_replies(NOW))
    pump.step()  # claims 1 and 2; the worker sends both
    _wait_for(lambda: pump._done.qsize() == 2)
    failing.fail = True
    with caplog.at_level(logging.INFO, logger="asm_email_rules"):
        with pytest.raises(StoreUnavailableError):
            pump.step()  # records 1 and 2, then fails to claim 3: all of it rolled back
        assert _sent_lines(caplog) == []  # nothing of it was committed
        pump.close()  # records 1 and 2 again, and commits them
    assert _sent_lines(caplog) == [_reply(1).message_id, _reply(2).message_id]


def _sent_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The Message-IDs of the "reply sent" lines logged, in order."""
    return [
        getattr(record, "reply_message_id", "")
        for record in caplog.records
        if record.getMessage() == "reply sent"
    ]


class RecordsRefused:
    """The store, except that every record of an outcome (``finish_reply``) fails."""

    def __init__(self, store: SqliteRepository) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def finish_reply(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("store: disk I/O error while recording a reply")


def test_when_the_store_never_records_the_log_still_says_what_the_server_answered(
    store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Replies 1 and 2 are sent, and the store refuses every record until the pump closes:
    no "reply sent" line is written (none is recorded), so close() says, for each, that the
    server accepted it (it is sent again once its claim expires)."""
    mailer = Collecting()
    pump = ReplyPump(RecordsRefused(store), mailer, SYSTEM, owner="poller-1", clock=lambda: NOW)
    pump.offer(store.due_replies(NOW))
    pump.step()  # claims 1 and 2; the worker sends both
    _wait_for(lambda: pump._done.qsize() == 2)
    with caplog.at_level(logging.INFO, logger="asm_email_rules"):
        pump.close()
    assert _sent_lines(caplog) == []
    unrecorded = [r for r in caplog.records if r.getMessage().startswith("reply attempt not")]
    assert [getattr(r, "reply_message_id", "") for r in unrecorded] == [
        _reply(1).message_id,
        _reply(2).message_id,
    ]
    assert all(r.getMessage().endswith(": accepted") for r in unrecorded)


class RecordFailsOnce:
    """The store, except that the first record of an outcome (``finish_reply``) fails with a
    store outage."""

    def __init__(self, store: SqliteRepository) -> None:
        self.store = store
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def finish_reply(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise StoreUnavailableError("store: disk I/O error while recording a reply")
        return self.store.finish_reply(*args, **kwargs)


@pytest.mark.parametrize("depth", [2, 0])
def test_a_record_refused_while_draining_is_made_again_never_sent_again(
    store: SqliteRepository, depth: int
) -> None:
    """The pass's last replies are sent with drain() (each window's records in the unit of
    the next claims; with depth 0 each record a unit of its own); when the store refuses
    one (a reply the server accepted), the pass stops, and close() records it again: a later
    pass, once every claim has expired, does not send it a second time."""
    failing, mailer = RecordFailsOnce(store), Collecting()
    pump = ReplyPump(failing, mailer, SYSTEM, owner="poller-1", clock=lambda: NOW, depth=depth)
    pump.offer(store.due_replies(NOW))
    with pytest.raises(StoreUnavailableError):
        pump.drain()
    pump.close()
    first = _reply(1).message_id
    assert mailer.sent[0] == first
    entry = store.outbox_entry(first)
    assert entry is not None
    assert (entry.status, entry.attempts) == (ReplyStatus.SENT, 1)

    later = NOW + timedelta(seconds=SYSTEM.lease_seconds + 60)
    with ReplyPump(store, mailer, SYSTEM, owner="poller-2", clock=lambda: later) as again:
        again.offer(store.due_replies(later))
        again.drain()
    assert sorted(mailer.sent) == sorted(_reply(n).message_id for n in range(1, 6)), (
        "a reply the server accepted was sent again after its record failed once"
    )


class CtrlCWhileSending:
    """A mailer interrupted by Ctrl-C while it waits for the server's answer (the
    KeyboardInterrupt comes out of the socket read, on the caller's thread with depth=0)."""

    def send(self, message: OutgoingEmail) -> None:
        raise KeyboardInterrupt


def _in_memory() -> InMemoryRepository:
    """Five pending replies in a store any thread may use (the test runs on one of its own)."""
    store = InMemoryRepository()
    for number in range(1, 6):
        store.record_processed(
            "box", f"<m{number}@example.com>", f"s{number}", "{}", _reply(number), T0
        )
    return store


def _send_due(store: InMemoryRepository) -> None:
    send_due(store, CtrlCWhileSending(), SYSTEM, owner="poller-1", clock=lambda: NOW)


def _pump_step(store: InMemoryRepository) -> None:
    with ReplyPump(
        store, CtrlCWhileSending(), SYSTEM, owner="poller-1", clock=lambda: NOW, depth=0
    ) as pump:
        pump.offer(store.due_replies(NOW))
        pump.step()


@pytest.mark.parametrize("run", [_send_due, _pump_step], ids=["send_due", "step depth=0"])
def test_ctrl_c_while_a_reply_is_sent_stops_at_once(
    run: Callable[[InMemoryRepository], None],
) -> None:
    """Without a worker (``send_due``; the service with ``replies_in_flight = 0``) the
    KeyboardInterrupt comes out within seconds instead of close() waiting for ever; the reply
    it interrupted is still pending (claimed until the lease expires, then resent with its
    Message-ID)."""
    store = _in_memory()
    raised: list[BaseException] = []

    def target() -> None:
        try:
            run(store)
        except BaseException as exc:  # what came out is the point
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "Ctrl-C while sending a reply left close() waiting forever"
    assert [type(exc) for exc in raised] == [KeyboardInterrupt]
    assert [entry.status for entry in store.list_replies()] == [ReplyStatus.PENDING] * 5


class Windowed(Collecting):
    """A mailer with ``send_many`` (as SmtpMailer's: one write for several replies): records
    each batch; replies in ``defer`` fail for now, each on its own."""

    def __init__(self, defer: frozenset[str] = frozenset()) -> None:
        super().__init__(defer)
        self.batches: list[list[str]] = []

    def send_many(self, messages: list[OutgoingEmail]) -> list[SendError | None]:
        self.batches.append([m.message_id for m in messages])
        outcomes: list[SendError | None] = []
        for message in messages:
            if message.message_id in self.defer:
                outcomes.append(SendError("451 try again later", code=451))
            else:
                self.sent.append(message.message_id)
                outcomes.append(None)
        return outcomes


def _entries(store: SqliteRepository, count: int) -> list[OutboxEntry]:
    entries = []
    for number in range(1, count + 1):
        entry = store.claim_reply(_reply(number).message_id, "poller-1", NOW, NOW + timedelta(1))
        assert entry is not None
        entries.append(entry)
    return entries


def test_attempt_all_gives_a_batch_to_send_many_and_each_reply_its_own_outcome(
    store: SqliteRepository,
) -> None:
    from asm_email_rules.send import attempt_all

    mailer = Windowed(defer=frozenset({_reply(2).message_id}))
    outcomes = attempt_all(mailer, _entries(store, 3))
    assert mailer.batches == [[_reply(n).message_id for n in (1, 2, 3)]]  # one call
    assert outcomes[0] is None
    assert isinstance(outcomes[1], SendError)
    assert outcomes[2] is None  # written with the others: its own answer counts


def test_attempt_all_without_send_many_stops_after_a_temporary_failure_or_when_told(
    store: SqliteRepository,
) -> None:
    from asm_email_rules.send import attempt_all

    mailer = Collecting(defer=frozenset({_reply(2).message_id}))
    outcomes = attempt_all(mailer, _entries(store, 3))
    assert len(outcomes) == 2  # reply 3 not handed over: the server is likely down
    assert mailer.sent == [_reply(1).message_id]
    told = Collecting()
    assert len(attempt_all(told, _entries(store, 3)[:2], stop=lambda: True)) == 1
    assert told.sent == [_reply(1).message_id]


def test_a_pump_with_a_windowed_mailer_records_each_reply_once_and_in_order(
    store: SqliteRepository,
) -> None:
    mailer = Windowed(defer=frozenset({_reply(3).message_id}))
    pump = _pump(store, mailer)
    pump.offer(store.due_replies(NOW))
    pump.drain()
    pump.close()
    sent = [_reply(n).message_id for n in (1, 2)]
    assert mailer.sent[:2] == sent  # in order, each once
    assert len(mailer.sent) == len(set(mailer.sent))
    assert all(len(batch) <= 2 for batch in mailer.batches)  # depth 2: at most 2 in flight
    for message_id in mailer.sent:
        entry = store.outbox_entry(message_id)
        assert entry is not None
        assert entry.status is ReplyStatus.SENT
    deferred = store.outbox_entry(_reply(3).message_id)
    assert deferred is not None
    assert (deferred.status, deferred.attempts) == (ReplyStatus.PENDING, 1)
    assert deferred.next_attempt_at is not None
    assert deferred.next_attempt_at > NOW
    assert pump.stopped_early
    assert _reply(5).message_id not in mailer.sent  # after the deferral's batch: not tried


class _Unwinding(BaseException):
    """Not an Exception: what a mailer might let through (as a Ctrl-C would)."""


def test_a_mailer_that_raises_part_way_keeps_the_answers_it_already_had(
    store: SqliteRepository,
) -> None:
    # Review: reply 1 was accepted (its 250 read) before the mailer blew up on reply 2; reply 1
    # is recorded sent, not retried (which would send it twice).
    class Unwinding(Collecting):
        def send(self, message: OutgoingEmail) -> None:
            if message.message_id == _reply(2).message_id:
                raise _Unwinding("the mailer blew up")
            super().send(message)

    mailer = Unwinding()
    pump = _pump(store, mailer)
    pump.offer(store.due_replies(NOW))
    pump.drain()
    pump.close()
    first = store.outbox_entry(_reply(1).message_id)
    assert first is not None
    assert first.status is ReplyStatus.SENT
    second = store.outbox_entry(_reply(2).message_id)
    assert second is not None
    assert second.status is ReplyStatus.PENDING
    assert "blew up" in second.last_error
    assert mailer.sent == [_reply(1).message_id]


def test_a_temporary_failure_past_the_retry_window_stops_the_claims_too(
    store: SqliteRepository,
) -> None:
    # Review: a 451 for a reply past reply_retry_hours is recorded FAILED (given up), not
    # DEFERRED; the pump went on claiming every other reply while its worker (holding after
    # the temporary failure) attempted none: all of them claimed, none sent, until the lease.
    late = T0 + timedelta(hours=SYSTEM.reply_retry_hours, minutes=1)
    mailer = Collecting(defer=frozenset({_reply(1).message_id}))
    pump = ReplyPump(store, mailer, SYSTEM, owner="poller-1", clock=lambda: late, depth=2)
    pump.offer(store.due_replies(late))
    pump.drain()
    pump.close()
    assert pump.stopped_early
    given_up = store.outbox_entry(_reply(1).message_id)
    assert given_up is not None
    assert given_up.status is ReplyStatus.FAILED
    unattempted = [entry.reply.message_id for entry in pump.unattempted]
    assert len(unattempted) <= 1  # at most the one the worker had with the failed one
    assert store.list_replies([ReplyStatus.SENT]) == []
    assert _claimed(store, late) == []  # the one not attempted let go when the pump closed


@pytest.mark.parametrize("where", ["drain", "step"])
def test_with_no_thread_to_be_had_the_replies_go_out_on_the_callers_thread(
    store: SqliteRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    # Review: a process at its thread limit left the claimed replies in flight for ever and
    # close() raised ("cannot join thread before it is started").
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    mailer = Collecting()
    pump = _pump(store, mailer)
    pump.offer(store.due_replies(NOW))
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with caplog.at_level("WARNING", logger="asm_email_rules"):
        for _ in range(10):  # a step sends one window; drain sends them all
            getattr(pump, where)()
        pump.close()
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)]
    assert [e.status for e in store.list_replies()] == [ReplyStatus.SENT] * 5
    warned = [r for r in caplog.records if r.getMessage().startswith("no thread")]
    assert len(warned) == 1  # once, not at every step


def test_replies_never_attempted_are_claimable_at_once_after_close(
    store: SqliteRepository,
) -> None:
    # A deferral stops the pass: reply 2, claimed with reply 1 and never handed to the mailer,
    # used to keep its claim for lease_seconds (a `poll --once` after an SMTP hiccup left it
    # to wait two minutes for nothing). close() gives such claims up: nothing of them reached
    # a server, so another sender may send them at once; the deferred one waits its retry.
    mailer = Collecting(defer=frozenset({_reply(1).message_id}))
    pump = _pump(store, mailer)
    pump.offer(store.due_replies(NOW))
    pump.drain()
    pump.close()
    assert mailer.sent == []
    assert [entry.reply.message_id for entry in pump.unattempted] == [_reply(2).message_id]
    until = NOW + timedelta(seconds=SYSTEM.lease_seconds)
    taken = store.claim_reply(_reply(2).message_id, "poller-2", NOW, until)
    assert taken is not None
    assert taken.claimed_by == "poller-2"
    assert store.claim_reply(_reply(1).message_id, "poller-2", NOW, until) is None  # not due


def test_closing_lets_go_only_of_claims_still_its_own(store: SqliteRepository) -> None:
    # Review: poller-1's claim on reply 2 (never attempted) expires while its pass goes on;
    # poller-2 claims reply 2 and is still sending it when its own claim runs out. Ending
    # poller-1's claim then would have taken poller-2's over (claim_reply succeeds on any
    # expired claim): poller-2's record refused, reply 2 sent a second time.
    lease = timedelta(seconds=SYSTEM.lease_seconds)
    clock = [NOW]
    mailer = Collecting(defer=frozenset({_reply(1).message_id}))
    pump = ReplyPump(store, mailer, SYSTEM, owner="poller-1", clock=lambda: clock[0], depth=2)
    pump.offer(store.due_replies(NOW))
    pump.drain()
    second = _reply(2).message_id
    assert [entry.reply.message_id for entry in pump.unattempted] == [second]
    assert store.claim_reply(second, "poller-2", NOW + lease, NOW + 2 * lease) is not None
    clock[0] = NOW + 2 * lease  # poller-2 still waits for the server's 250
    pump.close()
    entry = store.outbox_entry(second)
    assert entry is not None
    assert entry.claimed_by == "poller-2"
    assert store.finish_reply(second, "poller-2", ReplyStatus.SENT, clock[0])


def test_ctrl_c_while_the_worker_starts_leaves_nothing_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Review: a KeyboardInterrupt out of Thread.start left the claims counted in flight with no
    # worker, and close() waited for it for ever. The worker now starts before anything is
    # claimed: nothing is claimed, nothing is in flight, and close() returns at once. (A
    # store any thread may use: close() runs on a thread of its own, so that a hang fails
    # the test.)
    def interrupted(self: threading.Thread) -> None:
        raise KeyboardInterrupt

    store = _in_memory()
    pump = _pump(store, Collecting())
    pump.offer(store.due_replies(NOW))
    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pump.step()
    monkeypatch.undo()
    closer = threading.Thread(target=pump.close, daemon=True)
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive(), "close() waited for a worker that never started"
    assert pump.unattempted == []
    assert _claimed(store) == []
    assert [entry.status for entry in store.list_replies()] == [ReplyStatus.PENDING] * 5


# --------------------------------------------------------------------------------------------
# the sent journal: what the server accepted, kept before the store records it
# --------------------------------------------------------------------------------------------


class SlowMailer(Collecting):
    """A mailer whose server takes ``took`` a reply, on the test's clock (``clock["now"]``)."""

    def __init__(self, clock: dict[str, datetime], took: timedelta) -> None:
        super().__init__()
        self.clock, self.took = clock, took

    def send(self, message: OutgoingEmail) -> None:
        super().send(message)
        self.clock["now"] += self.took


def _journal_files(store: SqliteRepository) -> list[Path]:
    return sorted(Path(f"{store.path}.sent").glob("*.sent"))


def _journaled(
    store: SqliteRepository,
    mailer: Collecting,
    *,
    clock: Callable[[], datetime],
    depth: int = 2,
    wrapped: Any = None,
) -> ReplyPump:
    """A pump of "poller-1" on ``store`` (or ``wrapped``, a wrapper of it) with the store's
    sent journal."""
    journal = store.sent_journal("poller-1")
    target = store if wrapped is None else wrapped
    return ReplyPump(
        target, mailer, SYSTEM, owner="poller-1", clock=clock, depth=depth, journal=journal
    )


def _send_with_journal(
    store: SqliteRepository,
    mailer: Collecting,
    entries: Sequence[OutboxEntry],
    *,
    owner: str = "poller-2",
    clock: Callable[[], datetime] = lambda: NOW,
    journal: Any = None,
) -> None:
    """Offer ``entries`` to a pump with ``journal`` (default: the store's sent journal) and
    send them all, as a pass's last round does (:meth:`ReplyPump.drain`)."""
    if journal is None:
        journal = store.sent_journal(owner)
    with ReplyPump(store, mailer, SYSTEM, owner=owner, clock=clock, journal=journal) as pump:
        pump.offer(entries)
        pump.drain()


def _pending(store: SqliteRepository) -> list[OutboxEntry]:
    """Every PENDING reply, claimed or not, in the order of their calls."""
    return sorted(store.list_replies([ReplyStatus.PENDING]), key=lambda e: e.reply.message_id)


def test_replies_the_store_could_not_record_are_recorded_from_the_journal_not_sent_again(
    store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """DESIGN 4: "the only duplicate left is a crash between the server's 250 and our commit".
    The server accepts all five replies, and the store refuses every record until the pump
    closes: their claims are still this poller's. The journal beside the store keeps what
    the server accepted, so the next pump of this poller records them sent before it claims
    anything, sends none again (even once their claims expired), and clears the journal."""
    mailer = Collecting()
    pump = _journaled(store, mailer, clock=lambda: NOW, wrapped=RecordsRefused(store))
    pump.offer(store.due_replies(NOW))
    pump.step()  # claims all five (the journal lets it claim ahead); the worker sends them
    _wait_for(lambda: pump._done.qsize() == 5)
    pump.close()  # every record refused: the journal's file is kept
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)]
    assert len(_journal_files(store)) == 1

    later = NOW + timedelta(seconds=SYSTEM.lease_seconds + 60)  # the claims have expired
    with caplog.at_level(logging.INFO, logger="asm_email_rules"):
        _send_with_journal(
            store, mailer, store.due_replies(later), owner="poller-1", clock=lambda: later
        )
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)], (
        "a reply the journal kept was sent again"
    )
    for number in range(1, 6):
        entry = store.outbox_entry(_reply(number).message_id)
        assert entry is not None
        assert (entry.status, entry.claimed_by) == (ReplyStatus.SENT, "")
    assert _journal_files(store) == []
    recovered = [r for r in caplog.records if "from the sent journal" in r.getMessage()]
    assert len(recovered) == 5


KILLED_PUMP = """
import os, signal, sys
from datetime import datetime
from asm_email_rules.adapters.journal_files import DirectorySentJournal
from asm_email_rules.model import SentEntry

folder, owner, at, *keys = sys.argv[1:]
journal = DirectorySentJournal(folder, owner)
journal.add([SentEntry(key, owner, datetime.fromisoformat(at)) for key in keys])
os.kill(os.getpid(), signal.SIGKILL)  # the server's 250 is in the journal; no record made
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock are POSIX")
def test_a_killed_pumps_journal_is_honoured_before_its_claims_expire(
    store: SqliteRepository,
) -> None:
    """A poller was killed right after the server accepted replies 1 and 2 and its worker
    wrote them to the journal; it still holds their claims, which live two more minutes. A
    new poller started at once records both sent from the journal (the kernel let go of the
    dead pump's lock on its file), sends only 3, 4 and 5, and deletes the dead pump's file."""
    dead = "host-a:4242:dead01"
    for number in (1, 2):
        assert store.claim_reply(_reply(number).message_id, dead, NOW, NOW + timedelta(minutes=2))
    keys = [_reply(n).message_id for n in (1, 2)]
    folder = f"{store.path}.sent"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_PUMP, folder, dead, NOW.isoformat(), *keys], check=False
    )
    assert child.returncode == -9
    assert len(_journal_files(store)) == 1

    mailer = Collecting()
    _send_with_journal(store, mailer, _pending(store))
    assert mailer.sent == [_reply(n).message_id for n in (3, 4, 5)]
    assert store.list_replies([ReplyStatus.PENDING]) == []
    entry = store.outbox_entry(_reply(1).message_id)
    assert entry is not None
    assert entry.sent_at == NOW
    assert _journal_files(store) == []


def test_a_running_pumps_journal_is_left_to_it(store: SqliteRepository) -> None:
    """Another poller is running: the server accepted reply 1, its worker wrote it to its
    journal, and its poller has not recorded it yet. A pump that starts meanwhile neither
    records that reply (the running poller does, and would then find its record taken) nor
    sends it (the claim is the other's), and leaves the running pump's file alone: deleted
    under it, its later entries would go to a file nobody reads."""
    from asm_email_rules.adapters.journal_files import DirectorySentJournal

    running = "host-b:4343:live01"
    assert store.claim_reply(_reply(1).message_id, running, NOW, NOW + timedelta(minutes=2))
    journal = store.sent_journal(running)
    assert isinstance(journal, DirectorySentJournal)
    journal.add([SentEntry(_reply(1).message_id, running, NOW)])

    mailer = Collecting()
    _send_with_journal(store, mailer, _pending(store))
    assert mailer.sent == [_reply(n).message_id for n in (2, 3, 4, 5)]
    entry = store.outbox_entry(_reply(1).message_id)
    assert entry is not None
    assert (entry.status, entry.claimed_by) == (ReplyStatus.PENDING, running)
    assert _journal_files(store) == [journal.path]
    assert store.finish_reply(_reply(1).message_id, running, ReplyStatus.SENT, NOW)
    journal.close(recorded=True)
    assert _journal_files(store) == []


class ListJournal:
    """A sent journal in memory: what was added, in order, and how it was closed."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.closed: list[bool] = []

    def add(self, entries: Any) -> None:
        self.added += [entry.reply_message_id for entry in entries]

    def leftovers(self) -> list[SentEntry]:
        return []

    def forget(self) -> None:
        pass

    def close(self, *, recorded: bool) -> None:
        self.closed.append(recorded)


class JournalFails(ListJournal):
    """A sent journal whose disk is full: every ``add`` fails."""

    def add(self, entries: Any) -> None:
        raise StoreUnavailableError("journal: no space left on device")


def test_a_failing_journal_stops_the_pump_and_the_rest_goes_out_next_pass_in_order(
    store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal cannot be written (a full disk). The pump says so once, and sends nothing
    more of what it claimed ahead on the journal's word: those wait, unsent, and their claims
    are given up at close. The next pass (here a pump without a journal, as the polling
    service opens none for a while after a failure) sends them, so every reply goes out
    once, in order."""
    mailer, journal = Collecting(), JournalFails()
    with (
        caplog.at_level(logging.WARNING, logger="asm_email_rules"),
        ReplyPump(
            store, mailer, SYSTEM, owner="poller-1", clock=lambda: NOW, journal=journal
        ) as pump,
    ):
        pump.offer(store.due_replies(NOW))
        pump.drain()
    assert pump.journal_failed
    assert mailer.sent == [_reply(1).message_id]  # its write failed: reply 2 is not sent
    assert [e.reply.message_id for e in pump.unattempted] == [
        _reply(n).message_id for n in (2, 3, 4, 5)
    ]
    warnings = [r for r in caplog.records if "sent journal failed" in r.getMessage()]
    assert len(warnings) == 1
    assert journal.closed == [False]

    with ReplyPump(store, mailer, SYSTEM, owner="poller-1", clock=lambda: NOW) as again:
        again.offer(store.due_replies(NOW))
        again.drain()
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)]
    assert store.list_replies([ReplyStatus.PENDING]) == []


class Watching(Collecting):
    """A mailer that notes, as each reply goes out, what the journal holds already."""

    def __init__(self, journal: ListJournal) -> None:
        super().__init__()
        self.journal = journal
        self.journaled_before: dict[str, list[str]] = {}

    def send(self, message: OutgoingEmail) -> None:
        self.journaled_before[message.message_id] = list(self.journal.added)
        super().send(message)


class WatchingOneByOne(Watching):
    """As SmtpMailer on a server without PIPELINING and CHUNKING: ``send_many`` sends one
    reply at a time and calls ``answered`` between them."""

    def send_many(
        self,
        messages: list[OutgoingEmail],
        *,
        answered: Callable[[list[SendError | None]], bool] | None = None,
    ) -> list[SendError | None]:
        outcomes: list[SendError | None] = []
        for message in messages:
            if outcomes and answered is not None and not answered(list(outcomes)):
                break
            self.send(message)
            outcomes.append(None)
        return outcomes


@pytest.mark.parametrize("mailer_kind", [Watching, WatchingOneByOne])
def test_each_reply_is_in_the_journal_before_the_next_goes_out(
    store: SqliteRepository, mailer_kind: type[Watching]
) -> None:
    """A crash cuts off only the reply the server is answering: the worker writes each reply
    the server accepted to the journal before it hands the mailer the next, whether the
    mailer takes them one by one (``send``) or together and answers between its windows
    (``send_many(..., answered=)``, one reply a window here, as SMTP without PIPELINING
    and CHUNKING)."""
    journal = ListJournal()
    mailer = mailer_kind(journal)
    _send_with_journal(store, mailer, store.due_replies(NOW), journal=journal)
    keys = [_reply(n).message_id for n in range(1, 6)]
    assert mailer.sent == keys
    assert journal.added == keys
    for index, key in enumerate(keys):
        assert mailer.journaled_before[key] == keys[:index], key


@pytest.mark.parametrize("one_by_one", [False, True])
def test_attempt_all_answers_between_replies_and_stops_when_told(
    store: SqliteRepository, one_by_one: bool
) -> None:
    """``answered`` hears the outcomes so far before each next reply is handed over (after
    each ``send``; between the windows of a ``send_many`` that takes it), not after the
    last; ``stop()`` is asked then."""
    from asm_email_rules.send import attempt_all

    mailer = WatchingOneByOne(ListJournal()) if one_by_one else Collecting()
    seen: list[int] = []
    outcomes = attempt_all(
        mailer, _entries(store, 3), answered=lambda so_far: seen.append(len(so_far))
    )
    assert outcomes == [None, None, None]
    assert seen == [1, 2]  # not after the last: nothing is sent after it
    told: list[int] = []
    stopped = attempt_all(
        mailer,
        _entries(store, 3),
        stop=lambda: bool(told),
        answered=lambda so_far: told.append(len(so_far)),
    )
    assert stopped == [None]  # stop() said so once the first was answered
    assert told == [1]


class SlottedSendMany:
    """A ``send_many`` that is an object with ``__slots__`` (no weak reference to it)."""

    __slots__ = ("mailer",)

    def __init__(self, mailer: Collecting) -> None:
        self.mailer = mailer

    def __call__(
        self, messages: list[OutgoingEmail], *, answered: Any = None
    ) -> list[SendError | None]:
        for message in messages:
            self.mailer.send(message)
        return [None] * len(messages)


def test_a_send_many_that_cannot_be_remembered_still_sends(store: SqliteRepository) -> None:
    """Review: whether a ``send_many`` takes ``answered`` is remembered through a weak
    reference; one that cannot have one (an object with ``__slots__``) made every reply of
    the batch fail, so none went out."""
    mailer = Collecting()
    mailer.send_many = SlottedSendMany(mailer)  # type: ignore[attr-defined]
    journal = ListJournal()
    _send_with_journal(store, mailer, store.due_replies(NOW), journal=journal)
    keys = [_reply(n).message_id for n in range(1, 6)]
    assert mailer.sent == keys
    assert journal.added == keys


class AcceptsOneThenBreaks(Collecting):
    """A ``send_many`` that answers for the first reply, then raises (a bug in it)."""

    def send_many(
        self, messages: list[OutgoingEmail], *, answered: Any = None
    ) -> list[SendError | None]:
        self.send(messages[0])
        if answered is not None:
            answered([None])
        raise RuntimeError("a bug in the mailer")


def test_a_send_many_that_raises_keeps_the_answers_it_gave(store: SqliteRepository) -> None:
    """Review: the first reply was accepted (and journaled) before ``send_many`` raised; it
    is recorded SENT, not deferred and sent again; the second waits for a retry."""
    mailer = AcceptsOneThenBreaks()
    journal = ListJournal()
    _send_with_journal(store, mailer, list(store.due_replies(NOW)[:2]), journal=journal)
    first, second = (store.outbox_entry(_reply(n).message_id) for n in (1, 2))
    assert first is not None
    assert second is not None
    assert first.status is ReplyStatus.SENT
    assert (second.status, second.attempts) == (ReplyStatus.PENDING, 1)
    assert "a bug in the mailer" in second.last_error
    assert journal.added == [_reply(1).message_id]


def test_attempt_all_calls_a_send_many_without_answered_as_before(
    store: SqliteRepository,
) -> None:
    from asm_email_rules.send import attempt_all

    mailer = Windowed()  # its send_many takes no ``answered``: called as it always was
    outcomes = attempt_all(mailer, _entries(store, 2), answered=lambda so_far: 1 / 0)
    assert outcomes == [None, None]
    assert mailer.batches == [[_reply(n).message_id for n in (1, 2)]]


def test_a_claim_too_near_its_end_is_handed_back_unsent(store: SqliteRepository) -> None:
    """A reply claimed ahead of a slow server whose claim has less than a quarter of the lease
    left when its turn comes is not sent: another sender may take the claim before the
    outcome is recorded. It is handed back (unattempted), and its claim given up at close."""
    times = iter([NOW])  # the claim's moment; every later reading is 100 s on

    def clock() -> datetime:
        return next(times, NOW + timedelta(seconds=100))

    mailer = Collecting()
    pump = ReplyPump(store, mailer, SYSTEM, owner="poller-1", clock=clock, depth=1)
    pump.offer(store.due_replies(NOW)[:1])
    pump.drain()
    pump.close()
    assert mailer.sent == []
    assert [e.reply.message_id for e in pump.unattempted] == [_reply(1).message_id]
    later = NOW + timedelta(seconds=100)
    taken = store.claim_reply(_reply(1).message_id, "poller-2", later, later + timedelta(minutes=2))
    assert taken is not None, "the claim of a reply never sent was not given up"


def test_replies_after_one_handed_back_unsent_wait_too_so_the_order_holds(
    store: SqliteRepository,
) -> None:
    """Replies 1, 2 and 3 are claimed together (the journal lets the pump claim ahead) and
    sent one at a time; reply 2's claim is too near its end when its turn comes, so it is
    handed back unsent. Reply 3 waits with it instead of going out first: the replies of one
    outbox keep their order (a customer's "closed" never arrives before its "logged")."""
    claims = iter([NOW, T0, NOW])  # reply 2 claimed a minute before the others

    def clock() -> datetime:
        if threading.current_thread().name == "asm-email-rules-reply-pump":
            return NOW + timedelta(seconds=40)  # the worker's turns: 20 s left of 2's claim
        return next(claims, NOW)

    mailer = Collecting()
    pump = _journaled(store, mailer, clock=clock, depth=1)
    with pump:
        pump.offer(store.due_replies(NOW)[:3])
        pump.drain()
    assert mailer.sent == [_reply(1).message_id]
    assert [e.reply.message_id for e in pump.unattempted] == [
        _reply(2).message_id,
        _reply(3).message_id,
    ]


def test_a_slow_servers_accepted_replies_go_back_before_their_claims_run_out(
    store: SqliteRepository,
) -> None:
    """Replies claimed at different moments reach the worker as one batch (it was busy with
    reply 1); the server takes ten seconds a reply. Reply 2, claimed early, is accepted with
    25 s of its claim left: its outcome goes back to the poller then, not with the rest of
    the batch a minute later, when its claim would have expired and another sender could
    have claimed it and sent it again."""
    clock = {"now": NOW}
    first_in, release_first = threading.Event(), threading.Event()
    handed_back_at_five: list[int] = []

    class Slow(SlowMailer):
        def send(self, message: OutgoingEmail) -> None:
            if message.message_id == _reply(1).message_id:
                first_in.set()
                release_first.wait(5)
            if message.message_id == _reply(5).message_id:
                handed_back_at_five.append(pump._done.qsize())
            super().send(message)

    mailer = Slow(clock, timedelta(seconds=10))
    pump = _journaled(store, mailer, clock=lambda: clock["now"], depth=1)
    due = {e.reply.message_id: e for e in store.due_replies(NOW)}
    with pump:
        pump.offer([due[_reply(1).message_id]])
        pump.step()  # reply 1 claimed at +0 s: the worker holds on to it
        assert first_in.wait(5)
        clock["now"] = NOW + timedelta(seconds=10)
        pump.offer([due[_reply(2).message_id]])
        pump.step()  # reply 2 claimed at +10 s (until +130 s)
        clock["now"] = NOW + timedelta(seconds=80)
        pump.offer([due[_reply(n).message_id] for n in (3, 4, 5)])
        pump.step()  # replies 3 to 5 claimed at +80 s: queued behind 2, one batch
        clock["now"] = NOW + timedelta(seconds=85)
        release_first.set()
        _wait_for(lambda: len(mailer.sent) == 5)
    assert len(handed_back_at_five) == 1
    assert handed_back_at_five[0] >= 2, (
        "replies 1 and 2 were still held by the worker when reply 5 went out, at +125 s"
    )
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)]
    assert store.list_replies([ReplyStatus.PENDING]) == []


def test_with_no_thread_a_pump_with_a_journal_sends_no_more_than_replies_in_flight_ahead(
    store: SqliteRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread can be had, so the replies go out on the poller's thread, where nothing is
    written to the journal. The pump claims only ``replies_in_flight`` ahead then: a crash
    right after leaves at most that many accepted and unrecorded, not the 32 a journal would
    have covered."""

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    mailer = Collecting()
    pump = _journaled(store, mailer, clock=lambda: NOW)
    pump.offer(store.due_replies(NOW))
    pump.step()  # claims, and sends on this thread: the process dies right after
    assert len(mailer.sent) <= SYSTEM.replies_in_flight
    unrecorded = [
        entry
        for entry in store.list_replies([ReplyStatus.PENDING])
        if entry.reply.message_id in mailer.sent
    ]
    assert len(unrecorded) <= SYSTEM.replies_in_flight


def test_after_a_reply_handed_back_unsent_the_pump_claims_no_more_this_pass(
    store: SqliteRepository,
) -> None:
    """A slow server (fifty seconds a reply): reply 3's claim is too near its end when its
    turn comes, so it waits. The pump then claims nothing more this pass, so replies 4 and 5,
    offered next, do not go out before it; the next pass sends 3, 4 and 5, in order."""
    clock = {"now": NOW}
    mailer = SlowMailer(clock, timedelta(seconds=50))
    with _journaled(store, mailer, clock=lambda: clock["now"], depth=1) as pump:
        pump.offer(store.due_replies(clock["now"])[:3])
        pump.drain()
        assert pump.stopped_early
        pump.offer(store.due_replies(clock["now"]))  # the service's next round: 4 and 5
        pump.drain()
    assert mailer.sent == [_reply(n).message_id for n in (1, 2)]
    with ReplyPump(
        store, mailer, SYSTEM, owner="poller-1", clock=lambda: clock["now"], depth=1
    ) as later:
        later.offer(store.due_replies(clock["now"]))
        later.drain()
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock are POSIX")
def test_send_due_records_what_a_killed_pumps_journal_holds_instead_of_resending(
    store: SqliteRepository,
) -> None:
    """A poller was killed with replies 1 to 3 accepted and in its journal. ``send_due`` (a
    host's own sender, and what ``replies_in_flight = 0`` does between sessions) records them
    sent from the journal before it claims anything: it sends only 4 and 5, and clears the
    dead pump's file."""
    dead = "host-a:4242:dead01"
    for number in (1, 2, 3):
        assert store.claim_reply(_reply(number).message_id, dead, NOW, NOW + timedelta(minutes=2))
    keys = [_reply(n).message_id for n in (1, 2, 3)]
    child = subprocess.run(
        [sys.executable, "-c", KILLED_PUMP, f"{store.path}.sent", dead, NOW.isoformat(), *keys],
        check=False,
    )
    assert child.returncode == -9
    later = NOW + timedelta(minutes=3)  # the dead poller's claims have expired
    mailer = Collecting()
    report = send_due(store, mailer, SYSTEM, owner="poller-2", clock=lambda: later)
    assert mailer.sent == [_reply(n).message_id for n in (4, 5)]
    assert report.count(SendResult.SENT) == 2
    assert store.list_replies([ReplyStatus.PENDING]) == []
    assert _journal_files(store) == []


class CloseFails(JournalFails):
    """A journal that works, except that closing it fails (an I/O error at the end)."""

    def add(self, entries: Any) -> None:
        pass

    def close(self, *, recorded: bool) -> None:
        raise StoreUnavailableError("journal: I/O error while closing")


def test_a_journal_that_fails_to_close_is_logged_and_the_pass_goes_on(
    store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing the journal fails: that is logged, and close() returns as usual (the pass's
    report and its replies never attempted are not lost on the way out)."""
    mailer = Collecting()
    pump = ReplyPump(
        store, mailer, SYSTEM, owner="poller-1", clock=lambda: NOW, journal=CloseFails()
    )
    pump.offer(store.due_replies(NOW))
    pump.drain()
    with caplog.at_level(logging.WARNING, logger="asm_email_rules"):
        pump.close()
    assert len(mailer.sent) == 5
    assert pump.take_report().count(SendResult.SENT) == 5
    assert any("could not close the sent journal" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock are POSIX")
def test_a_pump_that_writes_no_journal_still_settles_the_stopped_ones(
    store: SqliteRepository,
) -> None:
    """For a while after its journal failed, the polling service's pumps write none; they
    still record sent what a killed pump's journal holds, so a neighbour's crash is not
    answered twice meanwhile."""
    dead = "host-a:4242:dead01"
    for number in (1, 2):
        assert store.claim_reply(_reply(number).message_id, dead, NOW, NOW + timedelta(minutes=2))
    keys = [_reply(n).message_id for n in (1, 2)]
    child = subprocess.run(
        [sys.executable, "-c", KILLED_PUMP, f"{store.path}.sent", dead, NOW.isoformat(), *keys],
        check=False,
    )
    assert child.returncode == -9
    later = NOW + timedelta(minutes=3)
    mailer = Collecting()
    journal = store.sent_journal("poller-2")
    with ReplyPump(
        store,
        mailer,
        SYSTEM,
        owner="poller-2",
        clock=lambda: later,
        journal=journal,
        journal_writes=False,
    ) as pump:
        pump.offer(store.due_replies(later))
        pump.drain()
    assert mailer.sent == [_reply(n).message_id for n in (3, 4, 5)]
    assert store.list_replies([ReplyStatus.PENDING]) == []
    assert _journal_files(store) == []


def test_a_slow_server_is_given_only_what_it_can_send_on_its_claims(
    store: SqliteRepository,
) -> None:
    """A server that takes thirty seconds a reply. The first pump of a process does not know
    it yet: it claims all five ahead, and the fourth's claim is too near its end when its
    turn comes, so that pass stops there (in order). The next pump is given the pace the
    first measured and claims only what the server sends in half a lease: every reply left,
    four more included, goes out in that one pass, in order."""
    clock = {"now": NOW}
    mailer = SlowMailer(clock, timedelta(seconds=30))
    with _journaled(store, mailer, clock=lambda: clock["now"], depth=1) as first:
        first.offer(store.due_replies(clock["now"]))
        first.drain()
    assert first.stopped_early
    assert mailer.sent == [_reply(n).message_id for n in (1, 2, 3)]
    assert first.pace is not None

    for number in range(6, 10):
        store.record_processed(
            "box", f"<m{number}@example.com>", f"s{number}", "{}", _reply(number), T0
        )
    journal = store.sent_journal("poller-1")
    with ReplyPump(
        store,
        mailer,
        SYSTEM,
        owner="poller-1",
        clock=lambda: clock["now"],
        depth=1,
        journal=journal,
        pace=first.pace,
    ) as second:
        second.offer(store.due_replies(clock["now"]))
        second.drain()
    assert not second.stopped_early
    assert mailer.sent == [_reply(n).message_id for n in range(1, 10)]


def test_with_no_thread_a_pass_still_sends_every_reply(
    store: SqliteRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread can be had: the pump knows it before it claims, claims ``replies_in_flight``
    at a time and sends them on the poller's thread, and the pass sends all five (not the
    first two, the rest handed back for the next pass)."""

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    mailer = Collecting()
    with _journaled(store, mailer, clock=lambda: NOW) as pump:
        pump.offer(store.due_replies(NOW))
        pump.drain()
    assert not pump.stopped_early
    assert mailer.sent == [_reply(n).message_id for n in range(1, 6)]
    assert store.list_replies([ReplyStatus.PENDING]) == []


def test_an_accepted_reply_goes_back_before_a_slow_send_outlasts_its_claim(
    store: SqliteRepository,
) -> None:
    """Reply 1 is accepted 55 s into its claim (65 s left), at a pace of 55 s a reply. Its
    outcome goes back to the poller before reply 2 is sent, not after: that send may well
    outlast what is left of reply 1's claim."""
    clock = {"now": NOW}
    waiting_at_two: list[int] = []

    class Slow(SlowMailer):
        def send(self, message: OutgoingEmail) -> None:
            if message.message_id == _reply(2).message_id:
                waiting_at_two.append(pump._done.qsize())
            super().send(message)

    mailer = Slow(clock, timedelta(seconds=55))
    pump = _journaled(store, mailer, clock=lambda: clock["now"], depth=1)
    with pump:
        pump.offer(store.due_replies(NOW)[:2])
        pump.step()  # claims 1 and 2 (until +120 s); the worker sends them in one batch
        _wait_for(lambda: len(mailer.sent) == 2)
    assert waiting_at_two == [1], "reply 1's outcome was held while reply 2 was sent"
