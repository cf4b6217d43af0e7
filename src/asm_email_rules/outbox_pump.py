"""Send the outbox's replies on a thread of their own while the poller reads the next messages.

A reply costs the poller little CPU but several SMTP round trips (MAIL, RCPT, DATA, the end of
the data: RFC 5321 section 3.3), each waiting for the server. Sent between two sessions, the
reading stops for all of them; a :class:`ReplyPump` overlaps them: the polling service hands it
the replies of a session once that session is durable, and reads the next session while a
worker thread hands them to the mailer in order: all those queued at once to a mailer with
``send_many`` (which may write them in one go: :func:`~asm_email_rules.send.attempt_all`),
else one by one.

Only the worker touches the mailer (the caller's thread does with ``depth=0``, or when no
thread can be had), and only the caller's thread touches the store: the worker
gets claimed :class:`~asm_email_rules.model.OutboxEntry` values and gives back what each
attempt came to; the caller claims (:func:`~asm_email_rules.send.claim`) and records
(:func:`~asm_email_rules.send.record_attempt`) between messages, in :meth:`ReplyPump.step`. So
the store needs no thread safety and every guarantee of the outbox holds as in
:func:`~asm_email_rules.send.send_due`: a reply is sent only by the owner of its claim, its
outcome is recorded only after the server answered, and replies go out in the order they were
offered. At most ``depth`` replies are claimed ahead of the worker (with a sent journal,
:mod:`~asm_email_rules.sent_journal`, ``ahead``: the worker then writes each accepted reply
to the journal before it sends the next, after each of the mailer's windows (a reply, or
``depth`` pipelined), and gives a whole batch back at once, so the poller records in fewer
rounds); after a temporary failure
the worker attempts none of the ones queued behind it (the server is likely down) and the pump
claims no more until the next pass. Those stay claimed by this poller until the pump closes
and gives their claims up if they are still its own (nothing of them reached a server): any
sender may then take them at once, and the polling service offers them to its next pump
(:attr:`ReplyPump.unattempted`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import attrs

from asm_email_rules.decision import utc_clock
from asm_email_rules.errors import RepositoryError
from asm_email_rules.model import OutboxEntry, SentEntry
from asm_email_rules.protocols import Mailer, Repository, SentJournal
from asm_email_rules.send import (
    OutboxReport,
    SendOutcome,
    attempt_all,
    claim,
    is_temporary,
    log_attempt,
    record_attempt,
)
from asm_email_rules.sent_journal import settle
from asm_email_rules.settings import SystemSettings

__all__ = ["JOURNAL_AHEAD", "ReplyPump"]

logger = logging.getLogger("asm_email_rules")

_DONE = object()
"""What the worker is given to end."""

JOURNAL_AHEAD = 32
"""How many replies a pump with a sent journal may claim ahead of the worker (``depth`` at
least): the journal records each accepted reply at once, so the claims ahead no longer bound
what a crash resends, and a session's replies are claimed in a few rounds instead of one
round per ``depth`` (each round a commit, and the worker waking the poller's thread). 64
were no faster and held more replies in memory at once (docs/scaling.md)."""

PACE_SHARE = 0.5
"""The share of ``lease_seconds`` the replies a pump with a journal claims ahead must take to
send, at the worker's pace so far: the last of them still finds a quarter of its claim left
(:data:`CLAIM_MARGIN`) when its turn comes, unless the server slows down."""

HAND_BACK_SECONDS = 1.0
"""How long the worker keeps finished attempts of a batch before it hands them to the poller
anyway (a slow server): a reply's claim runs until its outcome is recorded."""

CLAIM_MARGIN = 0.25
"""The share of ``lease_seconds`` a claim must still have for the worker to send its reply:
one claimed ahead of a slow server is handed back unsent (claimed again later) rather than sent
on a claim another sender may take before the outcome is recorded."""

_Recorded = tuple[SendOutcome, Exception | None]
"""A recorded attempt's outcome, with the mailer's error it came from (for the log)."""


@attrs.frozen
class _Attempt:
    """What the worker did with one claimed reply: the mailer's error (None: accepted), or
    ``tried=False`` when it was not handed to the mailer (after a temporary failure, or once
    the pump began to close)."""

    entry: OutboxEntry
    error: Exception | None
    tried: bool = True


class ReplyPump:
    """Claims offered replies, has a worker thread send them, records their outcomes.

    ``repository`` is used on the caller's thread only (``system``, ``owner`` and ``clock``
    on both); ``mailer`` on the worker's only, from the first :meth:`offer` until :meth:`close`.
    ``keep_going()`` is asked before each claim (the polling service renews its account lease
    there, and stops when it lost it or was told to stop). ``depth`` is how many replies may
    be claimed and not yet recorded at once, so also how many replies the server accepted a
    crash can leave unrecorded (each is resent once, with its Message-ID, after its claim
    expires). ``depth=0``: no worker; :meth:`step` sends what was offered itself, one reply
    at a time, each recorded as soon as the server answered (at most one such reply).

    ``journal`` (:mod:`asm_email_rules.sent_journal`; the pump closes it): the worker writes
    each reply the server accepted there before it sends the next (a mailer's ``send_many``
    that takes ``answered`` calls back between its windows), so what a crash resends is the
    window being sent, ``depth`` at most, while ``ahead`` replies may be claimed ahead; before
    its first claim the pump records SENT what the journals of stopped pumps hold. A
    journal that fails is logged and no longer used (``depth`` claimed ahead again).
    Methods raise only what the repository raises; the pump must be closed (it is a context
    manager).
    """

    def __init__(
        self,
        repository: Repository,
        mailer: Mailer,
        system: SystemSettings,
        *,
        owner: str,
        clock: Callable[[], datetime],
        keep_going: Callable[[], bool] = lambda: True,
        depth: int = 2,
        journal: SentJournal | None = None,
        ahead: int = JOURNAL_AHEAD,
        journal_writes: bool = True,
        pace: float | None = None,
    ) -> None:
        self._repository = repository
        self._mailer = mailer
        self._system = system
        self._owner = owner
        self._clock = utc_clock(clock, "the sender's clock")  # windows in real time (DST)
        self.keep_going = keep_going
        self._depth = max(0, depth)
        self._journal = journal  # with depth 0 only settled: each outcome recorded at once
        self._writes = journal is not None and self._depth > 0 and journal_writes
        self._ahead = max(self._depth, ahead) if self._writes else self._depth
        self.pace = pace
        """The worker's seconds a reply, smoothed (None until it sent some, unless given:
        the polling service hands each pump the last one's)."""
        self._journal_failed = threading.Event()  # set by the worker: claim only ``depth``
        self._journal_warned = threading.Lock()  # the failure is logged once
        self._settled = self._journal is None  # stopped pumps' journals recorded, committed
        self._settling = False  # recorded in a unit of work not yet committed
        self._margin = timedelta(seconds=system.lease_seconds * CLAIM_MARGIN)
        self._feed: deque[str] = deque()
        self._known: set[str] = set()  # offered and not yet recorded (fed or in flight)
        self._in_flight = 0
        self._todo: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Attempt] = queue.SimpleQueue()
        self._again: deque[_Attempt] = deque()  # finished; their record was rolled back
        self._hold = threading.Event()  # set after a temporary failure: attempt nothing more
        self._worker: threading.Thread | None = None
        self._threadless = False  # no thread could be had: replies are sent by the caller
        self._outcomes: list[SendOutcome] = []  # recorded since the last take_report()
        self.recorded = 0
        """How many attempts the pump has recorded so far."""
        self.stopped_early = False
        """True after a temporary failure: nothing more is claimed until the next pump."""
        self.unattempted: list[OutboxEntry] = []
        """Replies claimed and then not handed to the mailer (queued behind a temporary
        failure, or when the pump closed), in order. Still claimed by ``owner`` until
        :meth:`close` gives their claims up (a caller may :meth:`offer` them to its next
        pump)."""

    # -- the caller's side ------------------------------------------------------------------

    def offer(self, entries: Iterable[OutboxEntry]) -> int:
        """Queue replies to send, in order (typically ``due_replies`` after a durable commit);
        ones already offered and not yet recorded are skipped. How many were new."""
        added = 0
        for entry in entries:
            key = entry.reply.message_id
            if key not in self._known:
                self._known.add(key)
                self._feed.append(key)
                added += 1
        return added

    def take_report(self) -> OutboxReport:
        """The outcomes recorded since the last call, in order (then forgotten, so a long
        pass holds none of them), with ``stopped_early`` once a deferral stopped the pump."""
        outcomes, self._outcomes = self._outcomes, []
        return OutboxReport(outcomes, self.stopped_early)

    @property
    def busy(self) -> bool:
        """True while replies are offered and not yet recorded: a :meth:`step` may touch the
        store. False: a step does nothing."""
        return bool(self._feed or self._in_flight)

    @property
    def waiting(self) -> int:
        """How many offered replies are not yet claimed (a listing of the due replies still
        shows them)."""
        return len(self._feed)

    @property
    def sends_here(self) -> bool:
        """True with ``depth=0``: :meth:`step` sends on the caller's thread (:meth:`drain`)."""
        return not self._depth

    def step(self, unit: Callable[[], AbstractContextManager[None]] | None = None) -> None:
        """Record the attempts the worker has finished, then claim more (up to ``depth`` in
        flight; with a journal, as many as :meth:`_limit` allows) while ``keep_going()`` says
        so, all in one unit of work of the store (one commit where there were two or more);
        the new claims reach the worker only once it committed. ``unit`` is that unit of work
        (default: a transaction of its own; the polling service's shares the commit of the
        messages it read): whatever it makes, its writes must be committed when it exits
        without raising, and all undone when it raises. Never waits for the mailer; with
        ``depth=0`` it sends everything offered instead (:meth:`drain`)."""
        if not self._depth:
            self.drain()
            return
        ready = self._done.qsize() + len(self._again)  # more may finish: recorded next step
        room = self._limit() - self._in_flight + ready
        claims = 0 if self.stopped_early else min(len(self._feed), max(room, 0))
        if not ready and not claims:
            return
        if unit is None and ready + claims < 2:  # nothing to share a commit with: as it comes
            self._collect(block=False)
            self._top_up()
            return
        # outside any transaction of the store: the claims must be committed here
        self._hand_over(self._record_and_claim(unit or self._repository.transaction))

    def drain(self) -> None:
        """Send everything offered, until the feed is empty and nothing is in flight, or
        ``keep_going()`` says stop, or a temporary failure stopped the pass.

        Each round waits for every attempt in flight, then records their outcomes and claims
        the next replies (up to ``depth``) in one unit of work, one commit, and hands those
        to the worker, who gets them together (:func:`~asm_email_rules.send.attempt_all`:
        one write where the server allows). So at most ``depth`` replies are claimed and not
        yet recorded, as in :meth:`step`. With a journal (up to ``ahead`` claimed) a round
        waits for one attempt only, so none waits for the whole window to be recorded. With
        ``depth=0`` the one reply claimed is sent on this thread and its outcome committed
        alone, before the next claim.
        """
        while True:
            if self._ahead > self._depth:  # up to ``ahead`` in flight: record as they come
                self._wait_for_one()
            else:
                self._wait_for_worker()
            if not self._depth:
                self._collect(block=False)  # each record committed as soon as it is known
            claimed = self._record_and_claim(self._repository.transaction)
            if not claimed and not self._in_flight:
                return
            if self._depth:
                self._hand_over(claimed)
            else:
                self._attempt_here(claimed)

    def close(self) -> None:
        """Stop the worker after the reply it is sending, wait for it, and record what it
        finished; then give up the claims of the replies never handed to the mailer
        (:attr:`unattempted`: nothing of them reached a server), so that any sender may
        claim them at once, this poller's next pump included, instead of after
        ``lease_seconds`` (a ``poll --once`` that ends after a deferral, say).

        When the store refuses a record here (it failed, which is why the pass is ending),
        that is logged and the rest is left: those replies keep their claims too, and one
        the server did accept is sent again, with the same Message-ID, after the claim
        expires (the crash window DESIGN 4 allows).
        """
        self._hold.set()
        worker, self._worker = self._worker, None
        if worker is not None:
            self._todo.put(_DONE)
            worker.join()
        recorded = False
        try:
            while self._in_flight:
                self._collect(block=True)
            recorded = not self._again
        except RepositoryError as exc:
            logger.error(
                "could not record the outcome of %d reply attempt(s); they keep their claims "
                "until the lease expires: %s",
                self._in_flight,  # the one refused was put back: counted
                exc,
                extra={"owner": self._owner, "error": str(exc)},
            )
            self._log_unrecorded()
        finally:
            self._feed.clear()
            self._known.clear()
        try:
            self._give_up_unattempted()
        finally:
            self._close_journal(recorded=recorded)

    def _log_unrecorded(self) -> None:
        """Say, for each attempt whose outcome the store would not record, what the server
        answered: its line (:func:`~asm_email_rules.send.log_attempt`) waits for a record
        that will not be made, and an accepted reply is sent again, with the same
        Message-ID, once its claim expires."""
        self._wait_for_worker()  # the worker has ended: every attempt is given back
        for done in self._again:
            if not done.tried:
                continue
            reply = done.entry.reply
            answer = (
                "accepted" if done.error is None else str(done.error) or type(done.error).__name__
            )
            logger.warning(
                "reply attempt not recorded; the server's answer: %s",
                answer,
                extra={"reply_message_id": reply.message_id, "to": reply.to, "owner": self._owner},
            )

    def _close_journal(self, *, recorded: bool) -> None:
        """Close the journal: its entries are forgotten when every attempt was recorded (else
        the next pump's :func:`~asm_email_rules.sent_journal.settle` records them)."""
        journal, self._journal = self._journal, None
        if journal is None:
            return
        try:
            journal.close(recorded=recorded and not self._journal_failed.is_set())
        except RepositoryError as exc:  # what it holds is read by the next pump
            logger.warning(
                "could not close the sent journal: %s",
                exc,
                extra={"owner": self._owner, "error": str(exc)},
            )

    def _limit(self) -> int:
        """How many replies may be claimed and not yet recorded: ``depth``, or while the
        worker writes the journal ``ahead``, fewer when the server is slow: as many as the
        worker sends in :data:`PACE_SHARE` of the lease at :attr:`pace` (at least
        ``depth``), so a slow server is not given more than it can send on their claims."""
        if not self._writes or self._journal_failed.is_set() or self._threadless:
            return self._depth
        if not self.pace:
            return self._ahead
        by_pace = int(self._system.lease_seconds * PACE_SHARE / self.pace)
        return max(self._depth, min(self._ahead, by_pace))

    @property
    def journal_failed(self) -> bool:
        """True once the journal failed (logged): the pump went on without it."""
        return self._journal_failed.is_set()

    def _give_up_unattempted(self) -> None:
        """End now those claims of :attr:`unattempted` that are still ours (the holder's
        ``claim_reply`` with ``until=now``: a claim held until now is over). When the store
        refuses, they keep their claims until the lease expires, as after a crash; that is
        logged."""
        now = self._clock()
        try:
            for entry in self.unattempted:
                # only a claim still ours: once it expired another sender may hold the reply,
                # and claim_reply would take that claim over (its record then refused)
                if entry.claimed_until is not None and entry.claimed_until > now:
                    self._repository.claim_reply(entry.reply.message_id, self._owner, now, now)
        except RepositoryError as exc:
            logger.warning(
                "could not give up the claims of %d reply(ies) never sent; they wait for the "
                "lease to expire: %s",
                len(self.unattempted),
                exc,
                extra={"owner": self._owner, "error": str(exc)},
            )

    def __enter__(self) -> ReplyPump:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _wait_for_one(self) -> None:
        """Wait until the worker has given back an attempt, unless one waits to be recorded
        already or none is in flight."""
        if len(self._again) < self._in_flight:
            self._again.append(self._done.get())

    def _wait_for_worker(self) -> None:
        """Wait until the worker has given back every attempt in flight; they wait, in order,
        to be recorded (first in line, after any to record again)."""
        while len(self._again) < self._in_flight:
            self._again.append(self._done.get())

    def _attempt_here(self, claimed: list[OutboxEntry]) -> None:
        """Hand ``claimed`` to the mailer on this thread (``depth=0``, or no thread to be had);
        each outcome waits to be recorded by the next round (or :meth:`close`). Interrupted by a
        BaseException (Ctrl-C), the replies not answered are no longer in flight: their
        claims expire, as after a crash."""
        errors: list[Exception | None] = []  # filled as the mailer answers
        try:
            attempt_all(self._mailer, claimed, into=errors)
        except BaseException:  # not an Exception (attempt_all returns those): Ctrl-C
            self._again.extend(map(_Attempt, claimed, errors))
            self._unclaim(claimed[len(errors) :])
            raise
        self._again.extend(map(_Attempt, claimed, errors))
        self._again.extend(_Attempt(entry, None, tried=False) for entry in claimed[len(errors) :])

    def _top_up(self) -> None:
        """Claim more and hand them over to the worker, each claim its own unit of work."""
        claimed: list[OutboxEntry] = []
        try:
            self._claim_more(claimed)
        except BaseException:
            self._unsettle()
            raise
        finally:
            self._hand_over(claimed)
        self._settled_committed()

    def _record_and_claim(
        self, unit: Callable[[], AbstractContextManager[None]]
    ) -> list[OutboxEntry]:
        """Record every finished attempt and claim more, in one ``unit`` of work; the replies
        claimed (to hand over only now that it committed). When the unit is rolled back,
        the claims are forgotten (still PENDING: offered again next pass) and the attempts
        wait, first in line, to be recorded again (by the next step, drain or close)."""
        outcomes: list[_Recorded] = []
        recorded: list[_Attempt] = []
        claimed: list[OutboxEntry] = []
        try:
            with unit():
                self._collect(block=False, into=outcomes, recorded=recorded)
                self._claim_more(claimed)
        except BaseException:
            self._unclaim(claimed)
            self._record_again(recorded)
            self._unsettle()
            raise
        self._settled_committed()
        self._report(outcomes)
        return claimed

    def _claim_more(self, claimed: list[OutboxEntry]) -> None:
        """Claim offered replies, in order, until ``depth`` (with a journal, ``ahead``) are in
        flight; each claimed entry is appended to ``claimed`` (and counted in flight) as soon
        as the store gave it. Before the first claim, what the journals of stopped pumps
        hold is recorded sent (:meth:`_settle`)."""
        if self._depth and self._worker is None and not self._threadless:
            self._ensure_worker()  # so the claims know whether the worker sends them
        while self._feed and self._in_flight < max(self._limit(), 1):
            if self.stopped_early or not self.keep_going():
                return
            self._settle()
            key = self._feed.popleft()
            entry = claim(key, self._repository, self._system, owner=self._owner, clock=self._clock)
            if entry is None:
                self._known.discard(key)  # sent, failed or claimed by another since offered
                continue
            self._in_flight += 1
            claimed.append(entry)

    def _settle(self) -> None:
        """Record SENT the replies the journals of stopped pumps hold
        (:func:`~asm_email_rules.sent_journal.settle`), once, in the unit of work of the
        first claim: such a reply is then not claimed, so not sent again."""
        if self._settled or self._settling or self._journal_failed.is_set():
            return
        assert self._journal is not None
        try:
            leftovers = self._journal.leftovers()
        except RepositoryError as exc:
            self._journal_unusable(exc)
            return
        settle(leftovers, self._repository)
        self._settling = True

    def _unsettle(self) -> None:
        """The unit of work that settled rolled back: settle again before the next claim."""
        self._settling = False

    def _settled_committed(self) -> None:
        """The unit of work that settled committed: the journals it read may be forgotten (a
        failure is logged: the next pump reads them again, and finds them recorded)."""
        if not self._settling:
            return
        self._settling, self._settled = False, True
        assert self._journal is not None
        try:
            self._journal.forget()
        except RepositoryError as exc:
            logger.warning(
                "could not clear the sent journals of stopped pumps: %s",
                exc,
                extra={"owner": self._owner, "error": str(exc)},
            )

    def _journal_unusable(self, exc: Exception) -> None:
        """Log that the journal failed; the pump goes on without it (``depth`` ahead)."""
        with self._journal_warned:
            if self._journal_failed.is_set():
                return
            self._journal_failed.set()
            logger.warning(
                "the sent journal failed; this pump goes on without it: %s",
                exc,
                extra={"owner": self._owner, "error": str(exc)},
            )

    def _unclaim(self, claimed: list[OutboxEntry]) -> None:
        """Forget claims the store rolled back: not in flight, no longer offered."""
        for entry in claimed:
            self._in_flight -= 1
            self._known.discard(entry.reply.message_id)
        claimed.clear()

    def _record_again(self, recorded: list[_Attempt]) -> None:
        """Put back, first in line, finished attempts whose records the store rolled back: the
        server's answer to each is known, so it is recorded again, never sent again."""
        for done in reversed(recorded):
            self._again.appendleft(done)
            self._in_flight += 1
            self._known.add(done.entry.reply.message_id)
        recorded.clear()

    def _hand_over(self, claimed: list[OutboxEntry]) -> None:
        """Give claimed replies to the worker (started before they were claimed), in order
        and in one piece (it sends them together). When no thread could be had (a process
        at its limit), they are sent here instead, as with ``depth=0``, their outcomes
        recorded by the next step, drain or close."""
        if not claimed:
            return
        if self._threadless:  # ``depth`` at most (the journal is the worker's): the rest waits
            keep = max(self._depth, 1)
            self._again.extend(_Attempt(entry, None, tried=False) for entry in claimed[keep:])
            self._attempt_here(list(claimed[:keep]))
        else:
            self._todo.put(tuple(claimed))

    def _ensure_worker(self) -> None:
        """Start the worker if it is not running; when no thread can be had (a process at
        its limit), say so once: this pump sends on the caller's thread from now on."""
        try:
            self._start_worker()
        except RuntimeError as exc:
            self._threadless = True
            logger.warning(
                "no thread for the reply pump (%s): sending on the poller's thread",
                exc,
                extra={"owner": self._owner, "error": str(exc)},
            )

    def _next_done(self, block: bool) -> _Attempt:
        """The next finished attempt: one to record again first, else the worker's next
        (raises queue.Empty when none is ready and not ``block``)."""
        if self._again:
            return self._again.popleft()
        return self._done.get(block=block)

    def _collect(
        self,
        *,
        block: bool,
        into: list[_Recorded] | None = None,
        recorded: list[_Attempt] | None = None,
    ) -> None:
        """Record finished attempts: all that are ready, or (``block``) at least one. Their
        outcomes are reported and logged at once (each record is then committed on its own),
        or appended to ``into`` for the caller to report once its unit of work committed (a
        record rolled back, and made again, is logged once); each attempt recorded is
        appended to ``recorded``
        (the caller records it again when that unit is rolled back). Without ``recorded``,
        an attempt whose record the store refused is put back, first in line, to be
        recorded again (by the next step or :meth:`close`), never sent again."""
        outcomes: list[_Recorded] = [] if into is None else into
        try:
            while self._in_flight:
                try:
                    done = self._next_done(block)
                except queue.Empty:
                    return
                block = False
                self._in_flight -= 1
                self._known.discard(done.entry.reply.message_id)
                if not done.tried:  # the ones behind it wait too: the order is kept
                    self.unattempted.append(done.entry)
                    self.stopped_early = True
                    continue
                if recorded is not None:
                    recorded.append(done)  # before the record: a failing one is redone too
                try:
                    outcome = record_attempt(
                        done.entry,
                        done.error,
                        self._repository,
                        self._system,
                        owner=self._owner,
                        clock=self._clock,
                        log=False,
                    )
                except BaseException:
                    if recorded is None:  # no unit of the caller's redoes it: put it back
                        self._record_again([done])
                    raise
                outcomes.append((outcome, done.error))
                if is_temporary(done.error):  # deferred, or given up, or its claim lost
                    self.stopped_early = True  # the server is likely down: claim no more
        finally:
            if into is None:
                self._report(outcomes)

    def _report(self, outcomes: list[_Recorded]) -> None:
        """Log and count committed outcomes (for :meth:`take_report`)."""
        for outcome, error in outcomes:
            log_attempt(outcome, error, self._system)
            self._outcomes.append(outcome)
        self.recorded += len(outcomes)

    def _start_worker(self) -> None:
        """Start the worker if it is not running; RuntimeError when no thread can be had."""
        if self._worker is None:
            self._hold.clear()
            worker = threading.Thread(
                target=self._work, name="asm-email-rules-reply-pump", daemon=True
            )
            worker.start()
            self._worker = worker

    # -- the worker's side ------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._todo.get()
            if item is _DONE:
                return
            assert isinstance(item, tuple)
            self._send_batch(self._with_queued(item))

    def _send_batch(self, batch: list[OutboxEntry]) -> None:
        """Send ``batch`` ``depth`` replies at a time (:meth:`_send`) and give the outcomes
        back together when it is done (one round of the poller records them), or sooner
        (:meth:`_due_back`): a reply's claim runs until the poller records its outcome."""
        step = max(self._depth, 1)
        waiting: list[_Attempt] = []
        since = 0.0
        last: _Attempt | None = None
        for start in range(0, len(batch), step):
            group = batch[start : start + step]
            if last is not None and not self._may_go_on(last):
                waiting += [_Attempt(entry, None, tried=False) for entry in batch[start:]]
                break
            if waiting and self._due_back(waiting, since, len(group)):
                self._give_back(waiting)
            if not waiting:
                since = time.monotonic()
            done = self._send(group)
            waiting += done
            last = done[-1]
        self._give_back(waiting)

    def _timed(self, began: datetime, ended: datetime, replies: int) -> None:
        """Note the pace of ``replies`` just sent from ``began`` to ``ended`` (the pump's
        clock, on which the claims run): seconds a reply, smoothed."""
        pace = max((ended - began).total_seconds(), 0.0) / max(replies, 1)
        self.pace = pace if self.pace is None else 0.7 * self.pace + 0.3 * pace

    def _due_back(self, waiting: list[_Attempt], since: float, coming: int) -> bool:
        """True when the finished attempts ``waiting`` (the first of them since ``since``,
        ``time.monotonic``) must go back to the poller before the next ``coming`` replies
        are sent: the first waited :data:`HAND_BACK_SECONDS`, or a claim among them might
        end before those are sent and :data:`CLAIM_MARGIN` more (twice the pace so far for
        each): recorded after its end, the reply could be claimed and sent again by another
        sender."""
        if time.monotonic() - since >= HAND_BACK_SECONDS:
            return True
        ends = [done.entry.claimed_until for done in waiting if done.tried]
        soonest = min((end for end in ends if end is not None), default=None)
        if soonest is None:
            return False
        needed = self._margin + timedelta(seconds=2 * (self.pace or 0.0) * coming)
        try:
            return soonest - self._clock() <= needed
        except Exception:  # a clock that fails: hand back at once (the next send stops)
            return True

    def _give_back(self, attempts: list[_Attempt]) -> None:
        """Hand finished attempts to the poller's thread (and empty ``attempts``)."""
        for done in attempts:
            self._done.put(done)
        attempts.clear()

    def _may_go_on(self, last: _Attempt) -> bool:
        """True when the next ``depth`` replies of a batch may go: the journal has what the
        server accepted so far (past ``depth`` only on its word), and the ``last`` reply was
        handed to the mailer (else the rest waits too, so the replies keep their order)."""
        return self._writes and not self._journal_failed.is_set() and last.tried

    def _send(self, batch: list[OutboxEntry]) -> list[_Attempt]:
        """Hand ``batch`` (``depth`` replies at most) to the mailer in one go and write the
        accepted ones to the journal: what came of each. Nothing more is sent by this pump
        after a temporary failure, a claim too near its end (:data:`CLAIM_MARGIN`), a
        journal that failed, or a clock that raised: the replies behind wait for the next
        pass, in order."""
        if self._hold.is_set():
            return [_Attempt(entry, None, tried=False) for entry in batch]
        try:
            now = self._clock()
        except Exception:
            logger.exception("the pump's clock failed: nothing more is sent this pass")
            self._hold.set()
            return [_Attempt(entry, None, tried=False) for entry in batch]
        fresh = 0
        while fresh < len(batch) and self._claim_holds(batch[fresh], now):
            fresh += 1
        errors: list[Exception | None] = []  # filled as the mailer answers
        journaled = 0  # how many of ``errors`` were written to the journal already

        def answered(so_far: Sequence[Exception | None]) -> None:
            """Between the mailer's windows (one reply each on a server without PIPELINING
            and CHUNKING): journal the replies accepted since the last call before the next
            is sent, so a crash leaves only the one being sent unjournaled."""
            nonlocal journaled
            try:
                at = self._clock()
            except Exception:  # a clock that fails: the group's start will do
                at = now
            self._write_journal(batch[journaled : len(so_far)], so_far[journaled:], at)
            journaled = len(so_far)

        journaling = self._journal is not None and self._writes
        try:  # all queued at once: a mailer that can sends them in one write
            attempt_all(
                self._mailer,
                batch[:fresh],
                stop=self._hold.is_set,
                into=errors,
                answered=answered if journaling else None,
            )
        except BaseException as exc:  # not an Exception: still answer, or drain() hangs
            failure = RuntimeError(f"the mailer raised {type(exc).__name__}: {exc}")
            errors += [failure] * (fresh - len(errors))  # keep the answers known
        try:
            ended = self._clock()
        except Exception:  # the sending is done: its outcomes still go back
            ended = now
        if errors:
            self._timed(now, ended, len(errors))
        self._write_journal(batch[journaled:], errors[journaled:], ended)
        if len(errors) < len(batch) or any(is_temporary(error) for error in errors):
            self._hold.set()  # the server is likely down, or the rest must keep its order
        attempts = [_Attempt(entry, error) for entry, error in zip(batch, errors, strict=False)]
        return attempts + [_Attempt(entry, None, tried=False) for entry in batch[len(errors) :]]

    def _claim_holds(self, entry: OutboxEntry, now: datetime) -> bool:
        """True when the claim of ``entry`` lasts long enough to send it and record the
        outcome (:data:`CLAIM_MARGIN` of the lease left)."""
        until = entry.claimed_until
        return until is None or until - now > self._margin

    def _write_journal(
        self, batch: Sequence[OutboxEntry], errors: Sequence[Exception | None], now: datetime
    ) -> None:
        """Write the replies of ``batch`` the server accepted to the journal (worker thread),
        sent at ``now``. A failure is logged and ends the journal's use; nothing more is sent
        by this pump (what it claimed ahead was claimed on the journal's word)."""
        journal = self._journal
        if journal is None or not self._writes or self._journal_failed.is_set():
            return
        try:
            accepted = [
                SentEntry(entry.reply.message_id, self._owner, now)
                for entry, error in zip(batch, errors, strict=False)
                if error is None
            ]
            if accepted:
                journal.add(accepted)
        except Exception as exc:  # the outcomes still reach the poller, who records them
            self._journal_unusable(exc)
            self._hold.set()

    def _with_queued(self, first: tuple[OutboxEntry, ...]) -> list[OutboxEntry]:
        """The replies of ``first`` and those queued behind it (at most ``ahead``, without a
        journal ``depth``, in all: no more are ever claimed and unrecorded)."""
        batch = list(first)
        while len(batch) < self._limit():
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                break
            if item is _DONE:
                self._todo.put(_DONE)  # seen again by the loop, after this batch
                break
            assert isinstance(item, tuple)
            batch.extend(item)
        return batch
