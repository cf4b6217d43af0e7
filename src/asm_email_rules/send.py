"""Send the replies waiting in the store's outbox, each by the one sender that claimed it.

DESIGN 4, "Replies are an outbox": a reply is stored with its decision, in the decision's
transaction (:mod:`asm_email_rules.applying`), and sent afterwards. A sender first *claims* the
reply (:meth:`~asm_email_rules.protocols.Repository.claim_reply`: its owner id, until a lease
expires), sends it, and records the outcome once the server has answered
(:meth:`~asm_email_rules.protocols.Repository.finish_reply`). Two pollers therefore never send
one reply; the only duplicate left is a crash between the server's 250 and that record, and
the resend, by whoever claims the reply after the lease has expired, carries the same
Message-ID.

Outcomes, by the SMTP reply (RFC 5321 4.2.1):

- accepted (2xx): SENT.
- 5xx (the spec's fatal 501, 503, 550, 553 among them): refused for good, FAILED at once,
  never retried; the decision stays applied ("the failure is recorded").
- 4xx or no answer (network, timeout): retried by time, not by polls: after 1 minute, then
  2, 4, 8... minutes, at most an hour apart, until ``reply_retry_hours`` after the reply was
  queued; then given up: FAILED, with the last error. Nothing waits in the mailbox meanwhile.

A FAILED reply stays in the outbox; ``asm-email-rules replies resend`` requeues it
(:meth:`~asm_email_rules.protocols.Repository.requeue_reply`).
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import os
import secrets
import socket
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import attrs

from asm_email_rules.decision import require_aware, utc_clock
from asm_email_rules.errors import PermanentSendError, SendError
from asm_email_rules.model import LedgerEntry, OutboxEntry, OutgoingEmail, ReplyStatus
from asm_email_rules.protocols import Mailer, Repository
from asm_email_rules.settings import SystemSettings

__all__ = [
    "REPLY_RETRY_FIRST",
    "REPLY_RETRY_LONGEST",
    "Disposition",
    "OutboxReport",
    "SendOutcome",
    "SendResult",
    "attempt",
    "attempt_all",
    "claim",
    "default_owner",
    "is_temporary",
    "log_attempt",
    "record_attempt",
    "retry_delay",
    "send_due",
    "send_pending",
    "send_reply",
]

logger = logging.getLogger("asm_email_rules")

REPLY_RETRY_FIRST = timedelta(minutes=1)
"""Wait after a reply's first temporary failure; each further one doubles it."""

REPLY_RETRY_LONGEST = timedelta(hours=1)
"""The longest wait between two attempts at one reply."""


class Disposition(enum.Enum):
    """What the mailbox should do with the message once it has been processed."""

    DELETE = "delete"  # acted on and recorded with its reply (the spec: "the email is deleted")
    RETRY = "retry"  # keep it and try again later (not used for replies any more: the outbox)
    QUARANTINE = "quarantine"  # move it aside: unusable or failing


class SendResult(enum.Enum):
    """What one attempt at a claimed reply came to."""

    SENT = "sent"  # the server accepted it
    DEFERRED = "deferred"  # temporary failure: PENDING, tried again later
    GAVE_UP = "gave_up"  # temporary failures for reply_retry_hours: FAILED
    REFUSED = "refused"  # a permanent (5xx) refusal: FAILED at once
    LOST_CLAIM = "lost_claim"  # our claim expired and another sender took the reply over


@attrs.frozen
class SendOutcome:
    """One attempt at one reply: which, to whom, how it ended, the attempts so far, the error
    ("" when sent), the SMTP code when the server gave one, and when it is tried next (for
    DEFERRED)."""

    reply_message_id: str
    to: str
    result: SendResult
    attempts: int
    error: str = ""
    code: int | None = None
    next_attempt_at: datetime | None = None

    @property
    def status(self) -> ReplyStatus:
        """The reply's status after this attempt (LOST_CLAIM: still PENDING, someone else's)."""
        return {
            SendResult.SENT: ReplyStatus.SENT,
            SendResult.GAVE_UP: ReplyStatus.FAILED,
            SendResult.REFUSED: ReplyStatus.FAILED,
        }.get(self.result, ReplyStatus.PENDING)


@attrs.define
class OutboxReport:
    """What one :func:`send_due` pass did: the outcomes in order, and whether it stopped
    early because the server failed temporarily (the rest wait for the next pass)."""

    outcomes: list[SendOutcome] = attrs.field(factory=list)
    stopped_early: bool = False

    def count(self, *results: SendResult) -> int:
        """How many attempts ended in one of ``results``."""
        return sum(1 for outcome in self.outcomes if outcome.result in results)


def default_owner() -> str:
    """A sender / poller id unique to this process: ``host:pid:random``.

    Stored with every claim and lease, so an operator can tell who holds what.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th temporary failure in a row: 1, 2, 4... minutes,
    at most :data:`REPLY_RETRY_LONGEST`."""
    delay = REPLY_RETRY_FIRST
    for _ in range(max(attempts, 1) - 1):
        delay *= 2
        if delay >= REPLY_RETRY_LONGEST:
            return REPLY_RETRY_LONGEST
    return delay


def _lease(system: SystemSettings) -> timedelta:
    return timedelta(seconds=system.lease_seconds)


def send_reply(
    reply_message_id: str,
    repository: Repository,
    mailer: Mailer,
    system: SystemSettings,
    *,
    owner: str,
    clock: Callable[[], datetime],
) -> SendOutcome | None:
    """Claim one reply, send it, record the outcome; None when it could not be claimed (not
    due, sent or failed already, or another sender holds it).

    The claim lasts ``system.lease_seconds``; ``clock`` gives the current time (aware UTC).
    Raises only what the repository raises (RepositoryError): a mailer that raises anything
    counts as a temporary failure of that reply.
    """
    entry = claim(reply_message_id, repository, system, owner=owner, clock=clock)
    if entry is None:
        return None
    return record_attempt(
        entry, attempt(mailer, entry), repository, system, owner=owner, clock=clock
    )


def claim(
    reply_message_id: str,
    repository: Repository,
    system: SystemSettings,
    *,
    owner: str,
    clock: Callable[[], datetime],
) -> OutboxEntry | None:
    """Claim one reply for ``owner`` for ``system.lease_seconds``; the claimed entry, or None
    (see :meth:`~asm_email_rules.protocols.Repository.claim_reply`)."""
    now = require_aware(clock(), "the sender's clock")
    return repository.claim_reply(reply_message_id, owner, now, now + _lease(system))


def attempt(mailer: Mailer, entry: OutboxEntry) -> Exception | None:
    """Hand a claimed reply to the mailer: None when the server accepted it, else what the
    mailer raised (anything but a BaseException that is not an Exception). Touches no store,
    so it may run on a thread of its own (:class:`asm_email_rules.outbox_pump.ReplyPump`)."""
    try:
        mailer.send(entry.reply)
    except Exception as exc:
        return exc
    return None


def is_temporary(outcome: Exception | None) -> bool:
    """True when ``outcome`` is a failure that may pass (neither None, "accepted", nor a
    :class:`PermanentSendError`): the server is likely down, so no more is tried now."""
    return outcome is not None and not isinstance(outcome, PermanentSendError)


def attempt_all(
    mailer: Mailer,
    entries: Sequence[OutboxEntry],
    *,
    stop: Callable[[], bool] = lambda: False,
    into: list[Exception | None] | None = None,
    answered: Callable[[Sequence[Exception | None]], object] | None = None,
) -> list[Exception | None]:
    """Hand claimed replies to the mailer, in order: what each came to (None: accepted), for
    as many as were handed over, so the list may be shorter than ``entries``.

    A mailer with ``send_many`` (as :meth:`~asm_email_rules.adapters.smtp.SmtpMailer.send_many`:
    one write for them all where the server allows, each still accepted by its own reply)
    gets them together. Otherwise each goes to ``send`` in turn, and none after a temporary
    failure (the server is likely down) or once ``stop()`` says so. A ``send_many`` that
    raises counts as that error for each reply it had not answered for (which of them the
    server took is unknown). ``into``: the list to append the outcomes to as they come (a
    caller interrupted by a BaseException keeps those already known, a ``send_many``'s
    included once it called ``answered``). ``answered``: called with the outcomes so far
    each time the mailer has answered for some and before it sends the next (after each
    ``send``; between the windows of a ``send_many`` that takes ``answered``, as
    :class:`~asm_email_rules.adapters.smtp.SmtpMailer`'s does), not after the last; nothing
    more is sent once ``stop()`` is True then. Touches no store, so it may run on a thread
    of its own."""
    send_many = getattr(mailer, "send_many", None)
    outcomes: list[Exception | None] = [] if into is None else into
    if send_many is not None and len(entries) > 1:
        replies, start = [e.reply for e in entries], len(outcomes)

        def go_on(so_far: Sequence[Exception | None]) -> bool:
            outcomes[start:] = so_far  # known now, whatever happens next
            if answered is not None:
                answered(so_far)
            return not stop()

        try:
            if answered is not None and _takes_answered(send_many):
                sent = send_many(replies, answered=go_on)
            else:
                sent = send_many(replies)
            outcomes[start:] = list(sent)[: len(entries)]
        except Exception as exc:  # the replies it had answered for keep their outcomes
            outcomes += [exc] * (start + len(entries) - len(outcomes))
        return outcomes
    for entry in entries:
        if outcomes and stop():
            break
        error = attempt(mailer, entry)
        outcomes.append(error)
        if is_temporary(error):
            break
        if answered is not None and len(outcomes) < len(entries):
            answered(list(outcomes))
    return outcomes


def _takes_answered(send_many: Callable[..., object]) -> bool:
    """True when a mailer's ``send_many`` takes the ``answered`` keyword (the bundled SMTP
    mailer's does; one written before it need not). Read once per function where it can be
    remembered (a weak reference to it); never raises."""
    function = getattr(send_many, "__func__", send_many)
    try:
        return _TAKES_ANSWERED[function]
    except (KeyError, TypeError):  # not read yet, or not to be remembered (no weak reference)
        pass
    try:
        known = "answered" in inspect.signature(send_many).parameters
    except Exception:  # no signature to be read (a builtin, a bad __signature__): not assumed
        known = False
    with contextlib.suppress(TypeError):
        _TAKES_ANSWERED[function] = known
    return known


_TAKES_ANSWERED: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()


def record_attempt(
    entry: OutboxEntry,
    error: Exception | None,
    repository: Repository,
    system: SystemSettings,
    *,
    owner: str,
    clock: Callable[[], datetime],
    log: bool = True,
) -> SendOutcome:
    """Record what :func:`attempt` came to for a reply ``owner`` claimed, and log it
    (:func:`log_attempt`; ``log=False``: the caller logs it once its unit of work committed,
    so that a record the store rolls back, and makes again, is not logged twice).

    ``error`` None: SENT. A :class:`PermanentSendError` (5xx): FAILED at once. Anything else:
    a temporary failure, retried by time until ``reply_retry_hours`` after queueing (then
    FAILED). The outcome is LOST_CLAIM when the claim expired meanwhile and another sender
    took the reply over. Raises only what the repository raises.
    """
    clock = utc_clock(clock, "the sender's clock")  # retry delays in real time across DST
    reply, attempts = entry.reply, entry.attempts + 1
    if error is None:
        outcome = SendOutcome(reply.message_id, reply.to, SendResult.SENT, attempts)
        recorded = repository.finish_reply(reply.message_id, owner, ReplyStatus.SENT, clock())
    elif isinstance(error, PermanentSendError):
        outcome = SendOutcome(
            reply.message_id, reply.to, SendResult.REFUSED, attempts, str(error), error.code
        )
        recorded = repository.finish_reply(
            reply.message_id, owner, ReplyStatus.FAILED, clock(), error=str(error)
        )
    else:  # SendError, or a mailer that failed some other way: retry
        outcome = _temporary_failure(error, entry.queued_at, attempts, reply, system, clock())
        recorded = repository.finish_reply(
            reply.message_id,
            owner,
            outcome.status,
            clock(),
            error=outcome.error,
            next_attempt_at=outcome.next_attempt_at,
        )
    if not recorded:
        outcome = attrs.evolve(outcome, result=SendResult.LOST_CLAIM)
    if log:
        log_attempt(outcome, error, system)
    return outcome


def log_attempt(outcome: SendOutcome, error: Exception | None, system: SystemSettings) -> None:
    """Log a recorded attempt: what the server said (``error``, as given to
    :func:`record_attempt`), and, for LOST_CLAIM, that another sender took the reply over.
    A mailer that raised something other than a :class:`SendError` is logged with its
    traceback."""
    fields: dict[str, object] = {"reply_message_id": outcome.reply_message_id, "to": outcome.to}
    if error is None:
        logger.info("reply sent", extra={**fields, "attempts": outcome.attempts})
    elif isinstance(error, PermanentSendError):
        logger.warning(
            "reply refused for good: %s",
            error,
            extra={**fields, "code": error.code, "fatal": error.code in system.fatal_smtp_codes},
        )
    else:
        if not isinstance(error, SendError):
            logger.error(
                "the mailer raised %s",
                type(error).__name__,
                exc_info=(type(error), error, error.__traceback__),
                extra=fields,
            )
        counted = {**fields, "attempts": outcome.attempts}  # not on the LOST_CLAIM line
        if outcome.next_attempt_at is None:
            logger.warning("reply given up: %s", outcome.error, extra=counted)
        else:
            logger.info(
                "reply deferred: %s",
                outcome.error,
                extra={**counted, "next_attempt_at": outcome.next_attempt_at.isoformat()},
            )
    if outcome.result is SendResult.LOST_CLAIM:
        logger.warning(
            "reply claim expired before the outcome was recorded; another sender took the "
            "reply over (a resend carries the same Message-ID)",
            extra={**fields, "outcome": _attempted(outcome, error).value},
        )


def _attempted(outcome: SendOutcome, error: Exception | None) -> SendResult:
    """What the attempt came to, LOST_CLAIM or not: a temporary failure with no next attempt
    was given up."""
    if error is None:
        return SendResult.SENT
    if isinstance(error, PermanentSendError):
        return SendResult.REFUSED
    return SendResult.GAVE_UP if outcome.next_attempt_at is None else SendResult.DEFERRED


def _temporary_failure(
    exc: Exception,
    queued_at: datetime,
    attempts: int,
    reply: OutgoingEmail,
    system: SystemSettings,
    now: datetime,
) -> SendOutcome:
    """The outcome of a temporary failure: deferred to the next attempt, or given up once
    ``reply_retry_hours`` have passed since the reply was queued (the last attempt falls on
    that deadline)."""
    error = str(exc) or type(exc).__name__
    code = exc.code if isinstance(exc, SendError) else None
    deadline = queued_at + timedelta(hours=system.reply_retry_hours)
    message_id, to = reply.message_id, reply.to
    if now >= deadline:
        error = f"gave up after {attempts} attempts in {system.reply_retry_hours:g} h: {error}"
        return SendOutcome(message_id, to, SendResult.GAVE_UP, attempts, error, code)
    next_at = min(now + retry_delay(attempts), deadline)
    return SendOutcome(message_id, to, SendResult.DEFERRED, attempts, error, code, next_at)


def send_due(
    repository: Repository,
    mailer: Mailer,
    system: SystemSettings,
    *,
    owner: str,
    clock: Callable[[], datetime],
    mailbox: str | None = None,
    limit: int = 100,
    keep_going: Callable[[], bool] = lambda: True,
) -> OutboxReport:
    """Send the replies due now (``mailbox``'s only, when given), at most ``limit``.

    Each is claimed first, so a reply another sender holds is skipped; before the first
    claim, what the sent journals of stopped pumps hold is recorded sent
    (:func:`~asm_email_rules.sent_journal.settle`), so such a reply is not sent again. After
    a temporary failure the pass stops (the server is likely down; the others wait for the
    next pass rather than each waiting for a timeout). ``keep_going`` is asked before each
    reply (the polling service renews its account lease there, and stops when it lost it).
    """
    from asm_email_rules.outbox_pump import ReplyPump  # it builds on this module's steps
    from asm_email_rules.sent_journal import open_sent_journal

    clock = utc_clock(clock, "the sender's clock")  # the store gets UTC (due_replies too)
    with ReplyPump(
        repository,
        mailer,
        system,
        owner=owner,
        clock=clock,
        keep_going=keep_going,
        depth=0,
        journal=open_sent_journal(repository, owner),  # to settle what stopped pumps left
    ) as pump:
        pump.offer(repository.due_replies(clock(), mailbox=mailbox, limit=limit))
        pump.drain()  # no worker: each reply claimed, sent and recorded in turn, here
        return pump.take_report()


def send_pending(
    entry: LedgerEntry,
    repository: Repository,
    mailer: Mailer,
    system: SystemSettings,
    *,
    owner: str | None = None,
    now: datetime | None = None,
) -> tuple[ReplyStatus, Disposition]:
    """Send the stored reply of a ledger entry through the outbox; its status afterwards, and
    DELETE (the outbox keeps the reply: the message never waits in the mailbox for it).

    For hosts that called it before the outbox existed; :func:`send_reply` says more.
    """
    if entry.reply is None or entry.reply_status is not ReplyStatus.PENDING:
        return entry.reply_status, Disposition.DELETE
    at = now if now is not None else entry.processed_at
    if at is None:
        raise ValueError("send_pending needs now= for a ledger entry without processed_at")
    outcome = send_reply(
        entry.reply.message_id,
        repository,
        mailer,
        system,
        owner=owner or default_owner(),
        clock=lambda: at,
    )
    if outcome is None:
        current = repository.outbox_entry(entry.reply.message_id)
        return (current.status if current else entry.reply_status), Disposition.DELETE
    return outcome.status, Disposition.DELETE
