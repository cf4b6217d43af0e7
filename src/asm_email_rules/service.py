"""The polling service: read every active account, run each message through the rules, dispose.

Per account: take the account's lease in the store (DESIGN 4, "One poller per account": a
second poller logs that it waits, and takes over once the lease expires), then per message:
fetch, hash, :func:`~asm_email_rules.pipeline.process` (parse, decide, apply and record in one
transaction with the reply, which enters the outbox), then delete or quarantine it. Once a
session is durable its replies are sent from the outbox by a
:class:`~asm_email_rules.outbox_pump.ReplyPump` while the next session is read (between
sessions with ``replies_in_flight = 0``), each claimed first, so a reply is never sent twice
and a temporary SMTP failure never holds a message in the mailbox. The ledger (mailbox +
Message-ID + SHA-256) makes a crash anywhere in between harmless: the next poll acknowledges
the message without acting twice. A message that
cannot be parsed or processed is quarantined with its error and remembered in the ledger, so
a mailbox that cannot move mail (POP3) skips it from then on.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import secrets
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Collection, Container, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import NoReturn, Protocol, cast

import attrs

from asm_email_rules.actions import ApproveTask, CloseCall, LogCall, RejectTask, ReopenCall
from asm_email_rules.backoff import Backoff, BackoffPolicy, change
from asm_email_rules.classify import MailKind
from asm_email_rules.config import AccountConfig, Config
from asm_email_rules.decision import days_before, require_aware, utc_clock
from asm_email_rules.errors import (
    ArgumentTypeError,
    AuthenticationError,
    MailboxBusyError,
    MailboxError,
    MailboxHungUpError,
    MessageGoneError,
    MessageParseError,
    MessageUnreadableError,
    RepositoryError,
    StoreUnavailableError,
    TokenError,
    raised_inside,
)
from asm_email_rules.gather import REPLY_BUDGET_WINDOW
from asm_email_rules.intake import parse_message
from asm_email_rules.ledger_key import cut_over, find_ledger_entry
from asm_email_rules.model import EntityRef, Lease, OutboxEntry, ReplyStatus
from asm_email_rules.outbox_pump import ReplyPump
from asm_email_rules.pipeline import Disposition, ProcessResult, process
from asm_email_rules.protocols import (
    ExpungingMailbox,
    LedgerRetention,
    Mailbox,
    Mailer,
    Repository,
)
from asm_email_rules.quarantine import (
    QuarantineStore,
    purge_quarantined,
    quarantine_reason,
    set_aside,
)
from asm_email_rules.send import OutboxReport, SendResult, default_owner
from asm_email_rules.sent_journal import open_sent_journal
from asm_email_rules.session_end import (
    EndOutcome,
    SessionEnd,
    abandon,
    closes_concurrently,
    detached_sync,
    detached_upkeep,
    end_session,
)
from asm_email_rules.session_start import SessionStart, opens_ahead
from asm_email_rules.settings import MailboxSettings, SystemSettings

__all__ = [
    "ACCOUNT_LEASE_PREFIX",
    "AccountReport",
    "HostMailbox",
    "MailboxFactory",
    "PollReport",
    "PollingService",
]

log = logging.getLogger("asm_email_rules.service")

MailboxFactory = Callable[[AccountConfig], Mailbox]
"""Opens the mailbox of an account (a fresh session each call)."""

PERSISTENT_FAILURES = 3
"""Failures in a row after which an account's failure is persistent: logged at ERROR, and
``poll`` exits non-zero (3) when the service is stopped while it lasts."""

HostMailbox = tuple[MailboxSettings, Callable[[], Mailbox]]
"""A mailbox a host brings to :meth:`PollingService.from_parts`: its settings (``name`` names
the account) and a callable that opens a fresh session of it."""

_MAX_MAILBOX_ERRORS = 3
"""Consecutive mailbox failures after which a session is abandoned until the next interval."""

ACCOUNT_LEASE_PREFIX = "account:"
"""Account leases are named ``account:<account name>`` in the store."""

JOURNAL_RETRY = timedelta(minutes=15)
"""How long pumps write no sent journal after one failed (a full or read-only disk): each
would stop sending at the failure to keep the replies' order, so a lasting failure would
hold the outbox back; meanwhile they send ``replies_in_flight`` ahead, as without one, and
still settle what stopped pumps' journals hold."""


@attrs.frozen
class AccountReport:
    """What one poll of one account did.

    ``processed``: acted on for the first time; ``duplicates``: already in the ledger (a crash
    or retry), acknowledged without acting again; ``retried``: kept in the mailbox to try again
    later; ``quarantined``: set aside; ``errors``: mailbox or store failures.
    ``discarded``: of the processed messages, those neither acted on nor answered, counted by
    reason (``(("auto-reply", 9), ...)``, most frequent first; issue 9: nothing is dropped in
    silence).
    ``suppressed``: of the processed messages, those whose reply the reply budget, the loop
    guard or the age limit held back. A held-back reply, or a discarded message a person wrote
    (not an auto-reply or a bounce), makes the message's log line a WARNING with its reason
    (``reply_suppressed=``, ``discard_reason=``).

    Replies sent from the outbox in this pass: ``replies_sent`` (accepted),
    ``replies_deferred`` (temporary failure, tried again later), ``replies_failed`` (refused
    for good, or given up after ``reply_retry_hours``: ``asm-email-rules replies list``).
    ``waiting``: another poller holds the account (``lease_holder``, until ``lease_until``);
    nothing was read.
    ``backoff_seconds``: how long the account now waits before its next try because our side
    failed (the store unavailable, the mailbox unreachable or refusing our sign-in), 0 when it
    is healthy; ``backoff_cause``: that failure, in this pass ("" when none happened in it;
    ``last_error`` may be a later one, a reply's). ``expunged``: messages a previous session
    marked deleted but did not remove (IMAP ``\\Deleted`` after a crash), removed at the start
    of a session because the ledger says they are done. ``pruned``: ledger entries forgotten
    after this poll, last seen more than ``ledger_retention_days`` ago. ``gone``: messages
    listed and then removed by another client before they were read (not errors).
    """

    account: str
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    quarantined: int = 0
    errors: int = 0
    suppressed: int = 0
    sessions: int = 0
    skipped: bool = False
    last_error: str = ""
    replies_sent: int = 0
    replies_deferred: int = 0
    replies_failed: int = 0
    waiting: bool = False
    lease_holder: str = ""
    lease_until: datetime | None = None
    backoff_seconds: float = 0.0
    backoff_cause: str = ""
    discarded: tuple[tuple[str, int], ...] = ()
    gone: int = 0
    expunged: int = 0
    pruned: int = 0

    def discard_summary(self) -> str:
        """ "12 discarded: auto-reply (9), unknown sender without ... (3)", or "" for none."""
        total = sum(count for _, count in self.discarded)
        if not total:
            return ""
        parts = ", ".join(f"{reason} ({count})" for reason, count in self.discarded)
        return f"{total} discarded: {parts}"


@attrs.frozen
class PollReport:
    """One :meth:`PollingService.poll_once`: a report per configured account, in order."""

    accounts: tuple[AccountReport, ...]

    def __getitem__(self, name: str) -> AccountReport:
        for report in self.accounts:
            if report.account == name:
                return report
        raise KeyError(name)

    def total(self, field: str) -> int:
        """The sum of one counter (``processed``, ``errors``, ...) over all accounts."""
        return sum(int(getattr(report, field)) for report in self.accounts)


@attrs.define
class _Counts:
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    quarantined: int = 0
    errors: int = 0
    suppressed: int = 0
    sessions: int = 0
    last_error: str = ""
    replies_sent: int = 0
    replies_deferred: int = 0
    replies_failed: int = 0
    discarded: dict[str, int] = attrs.field(factory=dict)
    expunged: int = 0
    pruned: int = 0
    backoff_cause: str = ""
    gone: int = 0

    def freeze(self, account: str, backoff_seconds: float = 0.0) -> AccountReport:
        fields = attrs.asdict(self)
        by_count = sorted(self.discarded.items(), key=lambda item: (-item[1], item[0]))
        fields["discarded"] = tuple(by_count)
        return AccountReport(account, **fields, backoff_seconds=backoff_seconds)

    def error(self, what: object) -> None:
        """Count one error; ``what`` (an exception, or words) becomes ``last_error``."""
        self.errors += 1
        self.last_error = str(what)

    def add_replies(self, report: OutboxReport) -> None:
        self.replies_sent += report.count(SendResult.SENT)
        self.replies_deferred += report.count(SendResult.DEFERRED)
        self.replies_failed += report.count(SendResult.GAVE_UP, SendResult.REFUSED)
        for outcome in report.outcomes:
            if outcome.result is not SendResult.SENT and outcome.error:
                self.last_error = f"reply to {outcome.to}: {outcome.error}"


def _outbox_order(entry: OutboxEntry) -> tuple[datetime, datetime, str]:
    """The order ``due_replies`` lists replies in: the longest due first."""
    return entry.next_attempt_at, entry.queued_at, entry.reply.message_id


class _BoundedListing(Protocol):
    """A mailbox with ``bounded_listing = True`` (:class:`~asm_email_rules.protocols.Mailbox`)."""

    def list_keys(self, *, limit: int | None = None, skip: Container[str] = ()) -> Iterable[str]:
        """Its ``limit`` oldest keys not in ``skip``, oldest first."""
        ...


def _mailbox_failed(
    account: AccountConfig, counts: _Counts, exc: MailboxError, key: str | None = None
) -> None:
    """Count and log one mailbox operation that failed (``key``: the message in hand)."""
    counts.error(exc)
    extra: dict[str, object] = {"account": account.name}
    if key is not None:
        extra["mailbox_key"] = key
    log.warning("mailbox operation failed: %s", exc, extra={**extra, "error": str(exc)})


def _move_aside(message: _InHand, reason: str) -> None:
    """Move ``message`` to the mailbox's quarantine folder; one another client removed since
    it was read is logged (the store keeps its copy) and counts as quarantined all the same."""
    try:
        message.mailbox.quarantine(message.key, reason)
    except MessageGoneError as exc:
        log.info(
            "message gone before it could be moved aside; the store keeps its copy: %s",
            exc,
            extra={"account": message.account.name, "mailbox_key": message.key},
        )


def _says_fetch_ready(mailbox: Mailbox) -> bool:
    """True when ``mailbox`` has ``fetch_ready`` (:class:`~asm_email_rules.protocols.Mailbox`)."""
    return callable(getattr(mailbox, "fetch_ready", None))


def _fetch_ready(mailbox: Mailbox, key: str) -> bool:
    """True when ``mailbox`` says a fetch of ``key`` waits on no server (``fetch_ready``)."""
    ready = getattr(mailbox, "fetch_ready", None)
    return callable(ready) and bool(ready(key))


def _bounded(mailbox: Mailbox) -> bool:
    """True when ``mailbox`` says it lists in bounded memory and forgets what it deleted
    (``bounded_listing``, :class:`~asm_email_rules.protocols.Mailbox`)."""
    return getattr(mailbox, "bounded_listing", False) is True


@functools.cache
def _takes_limit(kind: type) -> bool:
    """True when ``kind.list_keys`` takes ``limit`` and ``skip`` (a subclass of a bounded
    mailbox may have overridden it with the plain ``list_keys()``)."""
    method = getattr(kind, "list_keys", None)
    if not callable(method):
        return False
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return "limit" in parameters and "skip" in parameters


def _list_keys(
    mailbox: Mailbox, *, limit: int | None = None, skip: Container[str] = ()
) -> Iterable[str]:
    """``mailbox.list_keys()``; a host mailbox written before the rename may only have
    ``list_ids``: it still works, with a DeprecationWarning.

    ``limit`` and ``skip`` go to a mailbox with ``bounded_listing`` (its ``limit`` oldest keys
    not in ``skip``: a session's worth of keys in memory, not the folder's); any other lists
    every key, and the caller skips and stops itself.
    """
    if limit is not None and _bounded(mailbox) and _takes_limit(type(mailbox)):
        return cast(_BoundedListing, mailbox).list_keys(limit=limit, skip=skip)
    if not hasattr(mailbox, "list_keys") and hasattr(mailbox, "list_ids"):
        warnings.warn(
            f"{type(mailbox).__name__}.list_ids() is deprecated: name it list_keys() "
            "(the Mailbox protocol's methods take mailbox keys, not Message-IDs)",
            DeprecationWarning,
            stacklevel=2,
        )
        keys: Iterable[str] = mailbox.list_ids()
        return keys
    return mailbox.list_keys()


def _log_fields(account: AccountConfig, key: str, sha256: str) -> dict[str, object]:
    """The fields of the per-message log line, in their fixed order, before any is known."""
    return {
        "account": account.name,
        "mailbox_key": key,
        "sha256": sha256,
        "message_id": "",
        "rule": "",
        "outcome": "",
        "record": "",
        "reply_status": "",
        "notifications_queued": 0,
        "disposition": "",
        "discard_reason": "",
    }


def _record_of(result: ProcessResult) -> str:
    """The record a processed message acted on, for its log line: ``call 12``, ``task 500``,
    ``request 700``, the number of the call it logged; "" for none (a summary, a discard)."""
    decision = result.decision
    if decision is None:
        return ""
    for action in decision.actions:
        if isinstance(action, LogCall):
            number = result.new_call_number
            return f"call {number}" if number is not None else ""
        if isinstance(action, CloseCall | ReopenCall):
            return f"call {action.number}"
        if isinstance(action, ApproveTask | RejectTask):
            return f"task {action.number}"
        ref = getattr(action, "ref", None)
        if isinstance(ref, EntityRef):
            return str(ref)
    return ""


@attrs.define
class _InHand:
    """The message being handled: where it is, its content hash, the counters, the log line."""

    account: AccountConfig
    mailbox: Mailbox
    key: str
    sha256: str
    raw: bytes
    counts: _Counts
    started: float
    fields: dict[str, object] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.fields = _log_fields(self.account, self.key, self.sha256)


class _RetryLaterError(Exception):
    """A host store refused this message (a plain RepositoryError): stop, retry it later."""


class _NotDurableError(Exception):
    """The store could not be synced at the end of a session (already counted and logged)."""


_NOT_DURABLE = "the store could not be made durable"


def _give_up(mailbox: Mailbox) -> NoReturn:
    """Abandon a session whose records may not be durable (nothing is deleted) and say so:
    _NotDurableError, on which nothing of the pass is sent."""
    abandon(mailbox)
    raise _NotDurableError(_NOT_DURABLE)


@attrs.define
class _Leaving:
    """The keys a session of a ``bounded_listing`` mailbox deleted or quarantined: dropped from
    the pass's ``seen`` keys once the session's end has closed the mailbox without error, since
    such a mailbox lists them no more. So ``seen`` holds the keys kept in the mailbox (to retry,
    or failing) and those of the two sessions whose ends may still run, not every key of the
    pass; a key whose file may still be listed is never dropped."""

    seen: set[str]
    keys: set[str] = attrs.Factory(set)
    mailbox: object = None
    looked: set[str] | None = None

    def ended(self, outcome: EndOutcome) -> None:
        """The session's end went as ``outcome`` says: forget its keys if they are gone.

        A key the mailbox deleted but says it left marked (``left_marked``: an IMAP server
        without UIDPLUS that may not expunge) is recorded and done: it goes to ``looked``,
        so the next session's look for leftovers does not fetch it again."""
        if outcome.durable and outcome.close_error is None:
            marked: frozenset[str] = frozenset(getattr(self.mailbox, "left_marked", ()))
            if self.looked is not None and marked:
                self.looked.update(self.keys & marked)
            self.seen.difference_update(self.keys)
        self.keys = set()


class _Behind:
    """The end of the previous session, still running on a worker thread (at most one), and
    the keys it removes (None: keep them in ``seen``)."""

    def __init__(self) -> None:
        self.running: SessionEnd | None = None
        self.leaving: _Leaving | None = None
        self.outgoing = 0
        """How many mails the session whose end is running put in the outbox (offered once
        that end is durable)."""
        self.looked: set[str] = set()
        """Marked messages (``deleted_keys``) looked at in this pass, or known done: not
        fetched again by a later session's look for leftovers. Not ``seen``: a mark taken
        back makes the message new mail, listed by the next session."""


class _Ahead:
    """The next session's mailbox, opening on a worker thread (:mod:`~asm_email_rules.
    session_start`), or None."""

    def __init__(self) -> None:
        self.start: SessionStart | None = None

    def take(self) -> SessionStart | None:
        """The start opened ahead, now the next session's (None: there is none)."""
        start, self.start = self.start, None
        return start

    def discard(self) -> None:
        """Give up a start no session will take (the pass ends first)."""
        start = self.take()
        if start is not None:
            start.discard()


BATCH_SECONDS = 0.25
"""How long after its first message a unit of work of several messages (``messages_per_commit``)
is committed, whatever their count (looked at after each message): the store's write lock is
held about that long (never while a mailbox server is waited for), and the replies no longer."""


BATCH_BYTES = 512 * 1024
"""The message bytes after which a unit of work of several messages is committed, whatever
their count: what the open transaction holds in the store's page cache (and a savepoint's
journal) stays within about this plus one message, so a large message is committed alone."""


class _Batch:
    """The messages of a session recorded in one commit of the store.

    Where the store's nested units roll back alone (``nested_rollback``: each message's
    writes are a savepoint of the batch, so a message that fails undoes only its own), up to
    ``size`` messages (``messages_per_commit``), :data:`BATCH_BYTES` or :data:`BATCH_SECONDS`
    of them, share one transaction; else each message commits alone, as ``size=1`` does. A
    deletion waits for the commit that holds the message's record: :meth:`delete_after_commit`
    keeps it, and it moves to :attr:`committed` (for the session to carry out) only once that
    commit is done; when the commit fails, the deletions waiting for it are dropped and their
    messages stay in the mailbox, to be handled again as new (their records went with it).
    """

    def __init__(self, repository: Repository, size: int) -> None:
        self._repository = repository
        self._size = size if getattr(repository, "nested_rollback", False) else 1
        self._unit: AbstractContextManager[None] | None = None
        self._count = 0
        self._bytes = 0
        self._opened = 0.0
        self._waiting: list[tuple[str, bool]] = []  # (key, a duplicate?) of the open unit
        self.committed: deque[str] = deque()
        """Keys whose records are committed, for the session to delete, oldest first."""
        self.dropped = 0
        """How many deletions a failed commit dropped (their messages stay in the mailbox)."""
        self.dropped_duplicates = 0
        """How many of those were of messages counted as duplicates (the rest: processed)."""
        self.failure = ""
        """What the first failed commit raised (empty: none failed)."""

    @property
    def open(self) -> bool:
        """True while a unit of work of several messages is open (not yet committed)."""
        return self._unit is not None

    def begin(self) -> None:
        """Open the shared unit of work, if batching and none is open."""
        if self._size > 1 and self._unit is None:
            unit = self._repository.transaction()
            unit.__enter__()
            self._unit, self._count, self._opened = unit, 0, time.monotonic()

    def delete_after_commit(self, key: str, duplicate: bool = False) -> None:
        """Delete ``key`` from the mailbox once its record is committed (now, if it is);
        ``duplicate``: the message was counted as one, not as processed."""
        if self._unit is not None:
            self._waiting.append((key, duplicate))
        else:
            self.committed.append(key)

    def weigh(self, size: int) -> None:
        """The message being handled has ``size`` bytes (counted towards :data:`BATCH_BYTES`)."""
        self._bytes += size

    def tick(self) -> None:
        """One more message handled: commit once the unit holds ``messages_per_commit`` of
        them, :data:`BATCH_BYTES` of message, or has been open :data:`BATCH_SECONDS`. Raises
        what the store's commit raises."""
        if self._unit is None:
            return
        self._count += 1
        if (
            self._count >= self._size
            or self._bytes >= BATCH_BYTES
            or time.monotonic() - self._opened >= BATCH_SECONDS
        ):
            self.commit()

    def commit(self) -> None:
        """Commit the open unit (if any); its deletions then wait in :attr:`committed`. On
        failure (raised: RepositoryError) they are dropped: the store rolled the unit back."""
        unit, self._unit = self._unit, None
        waiting, self._waiting = self._waiting, []
        self._bytes = 0
        if unit is not None:
            try:
                unit.__exit__(None, None, None)
            except BaseException as exc:
                self.dropped += len(waiting)
                self.dropped_duplicates += sum(duplicate for _, duplicate in waiting)
                self.failure = self.failure or str(exc)
                raise
        self.committed.extend(key for key, _ in waiting)

    def roll_back(self, exc: BaseException) -> None:
        """Undo the open unit (if any) and drop the deletions waiting for it."""
        unit, self._unit = self._unit, None
        self._waiting, self._bytes = [], 0
        if unit is not None:
            unit.__exit__(type(exc), exc, exc.__traceback__)

    @contextmanager
    def unit(self) -> Iterator[None]:
        """The unit of work of the reply pump's step (its records and claims): a savepoint of
        the open unit, which is then committed with it, so the claims are durable before the
        pump hands them over, in the commit of the messages read so far (one commit, not
        two); a transaction of its own when none is open."""
        shared = self._unit is not None
        with self._repository.transaction():
            yield
        if shared:
            self.commit()


class _LeaseLostError(Exception):
    """Another poller took the account over (our lease expired): stop working it at once."""


class PollingService:
    """Polls the configured accounts; one instance per store and mailer.

    ``now`` and ``random_token`` are injected so tests are deterministic; ``now`` must return
    timezone-aware datetimes (asked once here: TypeError otherwise). With ``mailer`` None
    the replies are recorded in the store's outbox as pending and not sent. ``owner`` names
    this poller in the account leases and reply claims it takes (default
    :func:`~asm_email_rules.send.default_owner`: host, process id and a random part).
    ``backoff`` is how an account waits after our side failed (default: from
    ``config.system``). Only ``config.accounts`` and ``config.system`` are used (never
    ``config.store``): a host with its own repository, mailer and mailboxes builds one with
    :meth:`from_parts` and needs no configuration file.
    """

    @classmethod
    def from_parts(
        cls,
        repository: Repository,
        mailer: Mailer | None,
        mailboxes: Iterable[HostMailbox],
        system: SystemSettings | None = None,
        *,
        interval_seconds: float = 60.0,
        max_messages_per_session: int = 100,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_token: Callable[[], str] = lambda: secrets.token_hex(8),
        backoff: BackoffPolicy | None = None,
        owner: str | None = None,
    ) -> PollingService:
        """A service over the host's own parts: no configuration file and no store path.

        ``mailboxes`` pairs each mailbox's settings with a callable opening a new session of
        it; ``settings.name`` names the account (in reports and the ledger) and must be
        unique. ``system`` defaults to :class:`SystemSettings` ``()``; ``now``,
        ``random_token``, ``backoff`` and ``owner`` are as for the constructor. Raises
        ``ValueError`` for two mailboxes with one name.
        """
        openers: dict[str, Callable[[], Mailbox]] = {}
        accounts: list[AccountConfig] = []
        for settings, opener in mailboxes:
            if settings.name in openers:
                raise ValueError(f"two mailboxes are named {settings.name!r}")
            openers[settings.name] = opener
            accounts.append(
                AccountConfig(
                    name=settings.name,
                    protocol=None,
                    mailbox=settings,
                    interval_seconds=interval_seconds,
                    max_messages_per_session=max_messages_per_session,
                )
            )
        config = Config(
            store=None,
            system=system if system is not None else SystemSettings(),
            smtp=None,
            accounts=tuple(accounts),
        )
        return cls(
            config,
            repository,
            mailer,
            lambda account: openers[account.name](),
            now=now,
            random_token=random_token,
            backoff=backoff,
            owner=owner,
        )

    def __init__(
        self,
        config: Config,
        repository: Repository,
        mailer: Mailer | None,
        mailbox_factory: MailboxFactory,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_token: Callable[[], str] = lambda: secrets.token_hex(8),
        owner: str | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.mailer = mailer
        self.mailbox_factory = mailbox_factory
        require_aware(now(), "the service's clock (now)")  # a naive one is the host's mistake
        self.now = utc_clock(now, "the service's clock (now)")  # a local zone's too, in UTC
        self.random_token = random_token
        self.owner = owner or default_owner()
        self._store_failures: dict[tuple[str, str], int] = {}
        self._renew_at: dict[str, datetime] = {}
        self._waiting: dict[str, Lease] = {}  # the other poller's lease, as last seen
        if backoff is None:
            system = config.system
            backoff = BackoffPolicy(system.backoff_initial_seconds, system.backoff_max_seconds)
        self._backoff_policy = backoff
        self._single_pass = False
        self._backoff: dict[str, Backoff] = {}
        self._pruned_at: dict[str, datetime] = {}
        self._quarantine_purged_at: datetime | None = None
        self._unattempted: dict[str, list[OutboxEntry]] = {}
        self._journal_retry_at: tuple[datetime, float] | None = None  # by now() and monotonic()
        self._reply_pace: float | None = None

    # -- one message ------------------------------------------------------------------------

    def _handle(
        self,
        account: AccountConfig,
        mailbox: Mailbox,
        key: str,
        counts: _Counts,
        pump: ReplyPump | None,
        recorded: set[str],
        batch: _Batch,
    ) -> bool:
        """Fetch, process and dispose of one message; raises only MailboxError or store outage.
        True when the message was quarantined (it left the mailbox, or leaves it when the
        session closes); a message to delete waits in ``batch`` for the commit of its record
        (:class:`_Batch`).

        The ``pump`` steps between these (it records what its worker sent and gives it the
        next reply): the sooner a reply the server accepted is recorded, the fewer a crash
        leaves to resend. The Message-IDs of the mails this message put in the outbox are
        added to ``recorded`` (held back until the session is durable).
        """
        started = time.monotonic()
        if not _fetch_ready(mailbox, key):
            batch.commit()  # the store's write lock is not held while a server is waited for
        raw = self._fetch(mailbox, key)
        batch.weigh(len(raw))
        sha256 = hashlib.sha256(raw).hexdigest()
        message = _InHand(account, mailbox, key, sha256, raw, counts, started)
        batch.begin()
        if self._quarantined_before(message, batch):
            return True
        self._step(pump, batch)
        batch.begin()
        result = self._process(message, raw, batch)
        self._step(pump, batch)
        if result is None:
            return True  # set aside: quarantined
        recorded.update(result.outgoing)
        return self._dispose(message, result, batch)

    def _fetch(self, mailbox: Mailbox, key: str) -> bytes:
        """The message ``key``, cut past :attr:`~asm_email_rules.settings.Limits.max_read_size`
        (:func:`~asm_email_rules.ledger_key.cut_over`): the intake keeps only the header of a
        message that long, and a mailbox of a host may hand it over whole (ours read no
        further than :func:`~asm_email_rules.ledger_key.read_bound`)."""
        return cut_over(mailbox.fetch(key), self.config.system.limits.max_read_size)

    @staticmethod
    def _step(pump: ReplyPump | None, batch: _Batch) -> None:
        """Let the pump record and claim, in the batch's commit (:meth:`_Batch.unit`); a pump
        that sends on this thread (``replies_in_flight = 0``) after the batch is committed."""
        if pump is None or not pump.busy:
            return
        if pump.sends_here:
            batch.commit()
            pump.step()
        else:
            pump.step(batch.unit)

    def _quarantined_before(self, message: _InHand, batch: _Batch) -> bool:
        """Set aside again, without processing, a message the ledger says was quarantined."""
        reason = quarantine_reason(self.repository, message.account.mailbox.name, message.sha256)
        if reason is None:
            return False
        batch.commit()  # no mailbox call while the store's write lock is held
        _move_aside(message, f"quarantined before: {reason}")
        message.counts.quarantined += 1
        message.fields.update(outcome="quarantined before", disposition="quarantine")
        self._log(message, logging.DEBUG)
        return True

    def _process(self, message: _InHand, raw: bytes, batch: _Batch) -> ProcessResult | None:
        """Run the rules; a failure that is the message's fault quarantines it (None returned).

        :class:`StoreUnavailableError` (the store locked, read-only, full: our failure) goes up
        untouched: the account backs off and the message is never counted against. Any other
        failure of the store raises _RetryLaterError (stop, retry next time) until the same
        message has failed ``max_send_attempts`` times; then it is quarantined. That is a
        :class:`RepositoryError` (:class:`NotFoundError` too: a record the message names may
        have gone between the rules' read and their write, and the next try decides again on
        what is there), or any exception raised inside one of the store's methods (a host
        store's driver error it did not wrap, :func:`~asm_email_rules.errors.raised_inside`).
        """
        try:
            return process(
                raw,
                self.repository,
                None,  # the reply goes to the outbox; the pump sends it once the session is durable
                message.account.mailbox,
                self.config.system,
                self.now(),
                random_token=self.random_token,
                owner=self.owner,
                raw_sha256=message.sha256,
                log_outcome=False,  # the one line per message is _log's "message handled"
            )
        except MessageParseError as exc:
            reason = f"cannot parse: {exc}"
            self._set_aside(message, reason, "unparseable", str(exc), logging.WARNING, batch)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # one bad message must never stop the others
            typed = isinstance(exc, RepositoryError)  # the store said what failed
            if not typed:
                log.exception(
                    "processing a message failed",
                    extra={"account": message.account.name, "sha256": message.sha256},
                )
            error = str(exc) if typed else f"{type(exc).__name__}: {exc}"
            # a record of the wrong shape from a host store (a person whose email is None)
            # is named by ArgumentTypeError where the rules use it: the store's fault too
            store_failed = (
                typed or raised_inside(exc, self.repository) or isinstance(exc, ArgumentTypeError)
            )
            if store_failed and not self._store_failed(message):
                raise _RetryLaterError(f"the store failed: {error}") from exc
            reason = f"processing failed: {error}"
            self._set_aside(message, reason, "failed", error, logging.ERROR, batch)
        return None

    def _set_aside(
        self,
        message: _InHand,
        reason: str,
        outcome: str,
        error: str,
        level: int,
        batch: _Batch,
    ) -> None:
        """Quarantine a message that could not be processed, count it and log why."""
        self._quarantine(message, reason, batch)
        message.counts.quarantined += 1
        message.fields.update(outcome=outcome, disposition="quarantine", error=error)
        self._log(message, level)

    def _quarantine(self, message: _InHand, reason: str, batch: _Batch) -> None:
        """Remember the message in the ledger (so it is never retried) and keep a copy in the
        store's quarantine, committed (with the ``batch``), then move it aside in the mailbox."""
        account, sha = message.account, message.sha256
        self._store_failures.pop((account.name, sha), None)
        try:
            set_aside(
                self.repository,
                account.mailbox.name,
                message.raw,
                reason,
                self.now(),
                source=account.protocol.value if account.protocol else "host",
                mailbox_key=message.key,
            )
        except Exception:  # the store failed too: the mailbox still keeps the message aside
            log.exception(
                "could not record a quarantined message in the store",
                extra={"account": account.name, "sha256": sha},
            )
        batch.commit()
        _move_aside(message, reason)

    def _dispose(self, message: _InHand, result: ProcessResult, batch: _Batch) -> bool:
        """Delete (once its record is committed: ``batch``), keep (retry) or quarantine a
        processed message, as its result says; True when it was quarantined."""
        account, counts = message.account, message.counts
        self._store_failures.pop((account.name, message.sha256), None)
        message_id = result.email.message_id or ""
        discard_reason = result.decision.discard_reason if result.decision else ""
        message.fields.update(
            message_id=message_id,
            rule=result.decision.rule if result.decision else "",
            outcome=result.decision.outcome.value if result.decision else "duplicate",
            record=_record_of(result),
            reply_status=result.reply_status.value,
            notifications_queued=len(result.notification_statuses),
            disposition=result.disposition.value,
            discard_reason=discard_reason,
        )
        if result.duplicate:
            counts.duplicates += 1
            self._seen_again(account, result)
        else:
            counts.processed += 1
            if discard_reason:
                counts.discarded[discard_reason] = counts.discarded.get(discard_reason, 0) + 1
        held_back = self._note_suppression(message, result)
        # A person's mail that the desk ignores is a WARNING (they hear nothing back); an
        # auto-reply or a bounce ignored as designed is not.
        ignored_person = bool(discard_reason) and _from_a_person(result)
        noteworthy = ignored_person or held_back
        if result.disposition is Disposition.DELETE:
            batch.delete_after_commit(message.key, result.duplicate)
        elif result.disposition is Disposition.RETRY:
            counts.retried += 1
        else:
            entry = find_ledger_entry(self.repository, account.mailbox.name, result.email)
            detail = entry.last_error if entry is not None else "reply could not be sent"
            self._quarantine(message, f"reply not sent: {detail}", batch)  # POP3 keeps it
            counts.quarantined += 1
        troubled = result.reply_status is ReplyStatus.FAILED or noteworthy
        troubled = troubled or result.disposition is not Disposition.DELETE
        self._log(message, logging.WARNING if troubled else logging.INFO)
        return result.disposition is Disposition.QUARANTINE

    @staticmethod
    def _note_suppression(message: _InHand, result: ProcessResult) -> bool:
        """Count a reply held back (budget, loop guard, age) and put why in the log line; True
        when there was one (the line is then a WARNING: the sender hears nothing)."""
        decision = result.decision
        if decision is None or not decision.reply_suppressed:
            return False
        message.counts.suppressed += 1
        message.fields["reply_suppressed"] = decision.reply_suppressed
        return True

    def _store_failed(self, message: _InHand) -> bool:
        """Count a store failure for this message; True once it has failed too often."""
        key = (message.account.name, message.sha256)
        self._store_failures[key] = self._store_failures.get(key, 0) + 1
        return self._store_failures[key] >= self.config.system.max_send_attempts

    def _log(self, message: _InHand, level: int) -> None:
        """The one structured line per message handled (its fields: see _InHand)."""
        message.fields["elapsed_ms"] = round((time.monotonic() - message.started) * 1000, 1)
        log.log(level, "message handled", extra=message.fields)

    # -- one account ------------------------------------------------------------------------

    def poll_account(
        self, account: AccountConfig, stop: threading.Event | None = None
    ) -> AccountReport:
        """Poll one account until its mailbox is empty (in sessions of at most
        ``max_messages_per_session``), or until ``stop`` is set, and send its due replies;
        never raises. Another poller holding the account's lease: nothing is read, and the
        report says ``waiting``.

        Our side failing (the store unavailable, the mailbox unreachable or refusing our
        sign-in) backs the account off (:meth:`backoff`); a complete poll ends that.
        """
        if not account.active:
            return AccountReport(account.name, skipped=True)
        counts = _Counts()
        try:
            holder = self._take_lease(account)
        except StoreUnavailableError as exc:
            self._our_failure(account, counts, exc)
            return self._freeze(account, counts)
        except RepositoryError as exc:
            self._account_error(account, counts, exc)
            return self._freeze(account, counts)
        if holder is not None:
            return attrs.evolve(
                self._freeze(account, counts),
                waiting=True,
                lease_holder=holder.owner,
                lease_until=holder.expires,
            )
        try:
            completed = self._work(account, counts, stop)
        finally:
            self._end_smtp_session()
            self._release_lease(account)
        if completed:
            self._account_succeeded(account)
            if not counts.errors:  # every message listed was handled, so touched: safe
                self._prune_ledger(account, counts)
            self._purge_quarantine()
        return self._freeze(account, counts)

    def _freeze(self, account: AccountConfig, counts: _Counts) -> AccountReport:
        return counts.freeze(account.name, self.backoff(account.name).seconds_left(self.now()))

    def _work(self, account: AccountConfig, counts: _Counts, stop: threading.Event | None) -> bool:
        """Sessions until the mailbox is empty, then the replies due; True when the mailbox
        was read to the end without a failure.

        The replies of each durable session are sent by a :class:`ReplyPump` while the next
        session is read; the last ones, and any others due, after the last session. A session's
        end may still run behind the next one (:mod:`~asm_email_rules.session_end`); it is
        waited for before the replies due are sent and before this returns.
        """
        seen: set[str] = set()
        hung_up: set[str] = set()  # the keys the server hung up on in this pass
        pump = self._pump(account, stop)
        behind = _Behind()
        ahead = _Ahead()
        try:
            while stop is None or not stop.is_set():
                more, failed = False, False
                try:
                    more = self._session(account, seen, counts, stop, pump, behind, ahead)
                except MailboxHungUpError as exc:
                    if not self._hung_up_on(account, counts, exc, seen, hung_up):
                        self._our_failure(account, counts, exc)
                        failed = True
                    else:
                        more = True  # the next session leaves that message out
                except (StoreUnavailableError, MailboxError, OSError) as exc:
                    self._our_failure(account, counts, exc)
                    if isinstance(exc, StoreUnavailableError):
                        return False  # no sending either: the outbox is in the store
                    failed = True  # the mailbox failed: the replies due still go out
                except _NotDurableError:
                    return False  # counted and logged; the session's replies wait for a good one
                except (RepositoryError, _RetryLaterError, _LeaseLostError) as exc:
                    self._account_error(account, counts, exc)
                    return False  # the store refused, or the lease is gone: no sending either
                if failed or not more:
                    if not self._settled(account, counts, behind):
                        return False  # the last session is not durable: its replies wait
                    return self._send_replies(account, counts, stop, pump) and not failed
            return False
        finally:
            ahead.discard()
            self._settled(account, counts, behind)
            if pump is not None:
                pump.close()
                self._after_pump(pump)
                counts.add_replies(pump.take_report())
                if pump.unattempted:
                    self._unattempted[account.name] = pump.unattempted

    @staticmethod
    def _hung_up_on(
        account: AccountConfig,
        counts: _Counts,
        exc: MailboxHungUpError,
        seen: set[str],
        hung_up: set[str],
    ) -> bool:
        """The server hung up on the message ``exc.key`` (a message it cannot read): True,
        after logging it as that message's failure (WARNING, with its key; one error), when
        the mailbox remembers it and the next session can go on without it; False when it
        hung up on that message already in this pass (the mailbox did not leave it out: the
        account's failure, as any other lost connection)."""
        if exc.key in hung_up:
            return False
        hung_up.add(exc.key)
        seen.add(exc.key)  # logged now: not again as unreadable in this pass
        _mailbox_failed(account, counts, exc, exc.key)
        return True

    def _our_failure(self, account: AccountConfig, counts: _Counts, exc: Exception) -> None:
        """The store or the mailbox failed (our side): count it and back the account off."""
        counts.error(exc)
        counts.backoff_cause = str(exc)
        self._account_failed(account, _failure_kind(exc), exc)

    def _account_error(self, account: AccountConfig, counts: _Counts, exc: Exception) -> None:
        counts.error(exc)
        log.error(
            "account poll failed: %s",
            exc,
            extra={"account": account.name, "error": str(exc)},
        )

    # -- the outbox ---------------------------------------------------------------------------

    def _pump(self, account: AccountConfig, stop: threading.Event | None) -> ReplyPump | None:
        """The account's reply pump (None without a mailer) and the check it makes before
        each claim: not stopped, and the account's lease still ours (renewed as it goes)."""
        if self.mailer is None:
            return None

        def keep_going() -> bool:
            return (stop is None or not stop.is_set()) and self._renew(account)

        return ReplyPump(
            self.repository,
            self.mailer,
            self.config.system,
            owner=self.owner,
            clock=self.now,
            keep_going=keep_going,
            depth=self.config.system.replies_in_flight,
            journal=open_sent_journal(self.repository, self.owner),
            journal_writes=self._journal_writes(),
            pace=self._reply_pace,
        )

    def _journal_writes(self) -> bool:
        """False for :data:`JOURNAL_RETRY` after a pump's journal failed: the pumps then use
        their journals to settle only, and send ``replies_in_flight`` ahead without them.
        The pause ends when either the service's clock or the monotonic clock says it has
        passed: a wall clock stepped back a day must not keep the journals (what saves a reply
        from a second sending after a crash) off for a day."""
        if self._journal_retry_at is not None:
            wall, monotonic = self._journal_retry_at
            if self.now() < wall and time.monotonic() < monotonic:
                return False
        self._journal_retry_at = None
        return True

    def _after_pump(self, pump: ReplyPump) -> None:
        """After a pump closed: when its journal failed, write none for a while; keep the
        server's pace it measured for the next pump (how far ahead it claims)."""
        if pump.journal_failed:
            self._journal_retry_at = (
                self.now() + JOURNAL_RETRY,
                time.monotonic() + JOURNAL_RETRY.total_seconds(),
            )
        self._reply_pace = pump.pace

    def _offer_due(
        self,
        account: AccountConfig,
        pump: ReplyPump,
        hold_back: Collection[str] = (),
        released: int = 0,
    ) -> int:
        """Offer the pump the account's replies due now, with those an earlier pump claimed and
        did not attempt (listed as due once it gave their claims up; if it could not, still
        claimed by us and not listed), in the outbox's order (the longest due first), but not
        those in ``hold_back`` (Message-IDs of replies recorded by a session not yet durable);
        how many it had not been offered.

        The listing asks for what the pump still waits to claim (listed again), ``hold_back``,
        the ``released`` mails a session just made durable put in the outbox, and a session's
        worth more (``max_messages_per_session``: retries come due): a session whose messages
        put more than one mail each in the outbox (a reply and notifications) has them all
        offered at once, instead of a backlog growing by the excess at every session and
        waiting for the end of the pass. Nothing is listed for a pump that claims no more
        this pass (after a temporary failure), nor for one with more than a session's worth
        still to claim (a server slower than the reading): listing again would read all of
        that again, at every session; what is left is listed once the pump has caught up."""
        batch = max(1, account.max_messages_per_session)
        if pump.stopped_early or pump.waiting > batch:
            return 0
        limit = pump.waiting + len(hold_back) + released + batch
        due = self.repository.due_replies(self.now(), mailbox=account.mailbox.name, limit=limit)
        if hold_back:
            due = [entry for entry in due if entry.reply.message_id not in hold_back]
        held = self._unattempted.pop(account.name, [])
        if held:
            entries = {entry.reply.message_id: entry for entry in [*held, *due]}
            due = sorted(entries.values(), key=_outbox_order)
        return pump.offer(due)

    def _pump_round(
        self,
        account: AccountConfig,
        pump: ReplyPump,
        counts: _Counts,
        *,
        wait: bool,
        hold_back: Collection[str] = (),
        released: int = 0,
        sync: bool = True,
    ) -> bool:
        """Offer the pump the replies due but those in ``hold_back``, let it work (``wait``:
        until what it was offered is sent, else a :meth:`ReplyPump.step`), count the outcomes
        and make them durable (``sync=False``: the caller syncs the store next); True when any
        outcome was recorded."""
        before = pump.recorded
        self._offer_due(account, pump, hold_back, released)
        if wait:
            pump.drain()
        else:
            pump.step()
        counts.add_replies(pump.take_report())  # a session's outcomes at most are held
        if pump.recorded == before:
            return False
        if sync:
            self._sync_outbox()
        return True

    def _send_replies(
        self,
        account: AccountConfig,
        counts: _Counts,
        stop: threading.Event | None,
        pump: ReplyPump | None,
    ) -> bool:
        """Send the account's due replies until none is left, the server fails temporarily,
        ``stop`` is set or the lease is lost; False when the account's work must stop."""
        if pump is None:
            return True
        try:
            # until a round sends nothing (nothing else is due), a deferral, or a stop
            while self._pump_round(account, pump, counts, wait=True):
                if pump.stopped_early or not pump.keep_going():
                    break
        except StoreUnavailableError as exc:
            self._our_failure(account, counts, exc)
            return False
        except RepositoryError as exc:
            self._account_error(account, counts, exc)
            return False
        return self._still_held(account)

    def _sync_outbox(self) -> None:
        """Make the recorded send outcomes durable (a store that commits lazily syncs here), so
        a power loss does not forget that the server accepted a reply and resend it."""
        sync = self._sync_of(self.repository)
        if sync is not None:
            sync()

    # -- the account lease ----------------------------------------------------------------------

    def _lease_name(self, account: AccountConfig) -> str:
        return f"{ACCOUNT_LEASE_PREFIX}{account.name}"

    def _take_lease(self, account: AccountConfig) -> Lease | None:
        """Take (or renew) the account's lease; None when we hold it, else the holder's lease.

        Logs once when we start waiting for another poller, and once when we take over: a
        WARNING when the other poller's lease ran out (it died or stalled), an INFO line when
        it let go before then (the end of its pass: the normal turn of pollers sharing
        accounts, nothing for an operator to look into).
        """
        now = self.now()
        ttl = timedelta(seconds=self.config.system.lease_seconds)
        lease = self.repository.acquire_lease(self._lease_name(account), self.owner, now, now + ttl)
        fields = {"account": account.name, "owner": self.owner}
        if lease.owner != self.owner:
            seen = self._waiting.get(account.name)
            if seen is None or seen.owner != lease.owner:
                log.warning(
                    "account is being polled by another poller; waiting until its lease "
                    "expires or it lets go",
                    extra={**fields, "holder": lease.owner, "until": lease.expires.isoformat()},
                )
            self._waiting[account.name] = lease
            return lease
        previous = self._waiting.pop(account.name, None)
        if previous is not None and now >= previous.expires:
            log.warning(
                "account taken over from another poller",
                extra={**fields, "previous": previous.owner},
            )
        elif previous is not None:
            log.info(
                "account's lease released by the other poller; polling it",
                extra={**fields, "previous": previous.owner},
            )
        self._renew_at[account.name] = now + ttl / 3
        return None

    def _renew(self, account: AccountConfig) -> bool:
        """Renew the lease when a third of it has passed; False when another poller has it."""
        if self.now() < self._renew_at.get(account.name, self.now()):
            return True
        return self._still_held(account, force=True)

    def _still_held(self, account: AccountConfig, *, force: bool = False) -> bool:
        if not force and self.now() < self._renew_at.get(account.name, self.now()):
            return True
        holder = self._take_lease(account)
        if holder is None:
            return True
        log.error(
            "lost the account's lease to another poller (ours expired while working): "
            "stopping at once",
            extra={"account": account.name, "owner": self.owner, "holder": holder.owner},
        )
        return False

    def _release_lease(self, account: AccountConfig) -> None:
        self._renew_at.pop(account.name, None)
        try:
            self.repository.release_lease(self._lease_name(account), self.owner)
        except RepositoryError as exc:  # the store is down: an outage, not a bug to trace
            log.warning(
                "could not release the account's lease (it expires by itself): %s",
                exc,
                extra={"account": account.name, "error": str(exc)},
            )

    # -- ledger retention: forget what no mailbox holds any more ------------------------------

    def _retention(self) -> LedgerRetention | None:
        """The store's ledger retention, or None (not implemented, or turned off)."""
        if self.config.system.ledger_retention_days <= 0:
            return None
        return self.repository if isinstance(self.repository, LedgerRetention) else None

    def _touch_every(self) -> timedelta:
        """How stale ``seen_at`` may get before a sighting writes it again (a day at most, so
        a message seen at every poll costs one write a day, not one a poll)."""
        days = self.config.system.ledger_retention_days
        return timedelta(days=min(days, 4)) / 4  # min(a day, retention / 4), any days

    def _seen_again(self, account: AccountConfig, result: ProcessResult) -> None:
        """A message already in the ledger is still in the mailbox: refresh its ``seen_at``."""
        store = self._retention()
        if store is None:
            return
        entry = find_ledger_entry(self.repository, account.mailbox.name, result.email)
        now = self.now()
        if entry is None or (
            entry.seen_at is not None and now - entry.seen_at < self._touch_every()
        ):
            return
        store.touch_ledger(entry.mailbox, entry.message_id, entry.sha256, now)

    def _prune_store(self, now: datetime) -> None:
        """Forget what nothing reads any more, with a store that can (optional methods): our
        Message-IDs about no record older than the reply budget's window (only the budget
        reads them), and approval tokens used and expired (a replay is refused as expired).
        Housekeeping: a failure is logged, and the next prune tries again; a host store's
        error it did not wrap in RepositoryError too (with its traceback), since the poll's
        messages are done and a prune must not make ``poll_once`` raise."""
        chores = (
            ("prune_sent_messages", now - REPLY_BUDGET_WINDOW, "sent Message-IDs about no record"),
            ("prune_used_tokens", now, "used approval tokens that have expired"),
        )
        for method, moment, what in chores:
            prune = getattr(self.repository, method, None)
            if not callable(prune):
                continue
            try:
                pruned = int(prune(moment))
            except Exception as exc:
                log.warning(
                    "could not forget %s (tried again at the next prune): %s",
                    what,
                    exc,
                    exc_info=not isinstance(exc, RepositoryError),
                    extra={"error": str(exc)},
                )
                continue
            if pruned:
                log.info("forgot %d %s", pruned, what, extra={"pruned": pruned, "what": method})

    def _prune_ledger(self, account: AccountConfig, counts: _Counts) -> None:
        """After a complete poll (every message listed was handled, each one still in the
        ledger touched on the way), forget the entries of this mailbox last seen more than
        ``ledger_retention_days`` ago: their messages are no longer in it. At most once per
        touch interval per account; a message still in a mailbox is never forgotten."""
        store = self._retention()
        if store is None:
            return
        now = self.now()
        last = self._pruned_at.get(account.name)
        if last is not None and now - last < self._touch_every():
            return
        before = days_before(now, self.config.system.ledger_retention_days)
        try:
            counts.pruned += store.prune_ledger(account.mailbox.name, before)
        except Exception as exc:  # housekeeping (a host's unwrapped error too): next poll prunes
            counts.error(exc)
            log.warning(
                "could not prune the ledger (tried again after the next complete poll): %s",
                exc,
                exc_info=not isinstance(exc, RepositoryError),
                extra={"account": account.name, "error": str(exc)},
            )
            return
        self._pruned_at[account.name] = now
        self._prune_store(now)
        if counts.pruned:
            log.info(
                "ledger pruned: %d entr%s last seen before %s",
                counts.pruned,
                "y" if counts.pruned == 1 else "ies",
                before.isoformat(timespec="seconds"),
                extra={"account": account.name, "pruned": counts.pruned},
            )

    def _purge_quarantine(self) -> None:
        """Forget the quarantined messages released or replayed more than
        ``quarantine_retention_days`` ago (held ones stay: nobody dealt with them; the ledger
        is not touched), with a store that can (optional ``purge_quarantined``). At most once
        a day per service; a failure is logged and tried again after the next poll, a host
        store's error it did not wrap in RepositoryError too (with its traceback), as for the
        other prunes: ``poll_account`` never raises."""
        days = self.config.system.quarantine_retention_days
        now = self.now()
        last = self._quarantine_purged_at
        store = self.repository
        if not isinstance(store, QuarantineStore) or days <= 0:
            return
        if last is not None and now - last < timedelta(days=1):
            return
        before = days_before(now, days)
        try:
            purged = purge_quarantined(store, before)
        except Exception as exc:  # housekeeping (a host's unwrapped error too): next poll
            log.warning(
                "could not forget old quarantine entries (tried again after the next poll): %s",
                exc,
                exc_info=not isinstance(exc, RepositoryError),
                extra={"error": str(exc)},
            )
            return
        self._quarantine_purged_at = now
        if purged:
            log.info(
                "forgot %d quarantine entr%s released or replayed before %s",
                purged,
                "y" if purged == 1 else "ies",
                before.isoformat(timespec="seconds"),
                extra={"purged": purged, "what": "purge_quarantined"},
            )

    # -- backoff: our failures are the account's, not the message's --------------------------

    def backoff(self, account: str) -> Backoff:
        """The backoff state of the account called ``account`` (healthy if never failed)."""
        return self._backoff.get(account, Backoff(self._backoff_policy))

    def _account_failed(self, account: AccountConfig, kind: str, exc: Exception) -> None:
        """Back the account off after our side failed; one WARNING per change of state."""
        before = self.backoff(account.name)
        after = before.failure(kind, str(exc), self.now())
        self._backoff[account.name] = after
        extra = {
            "account": account.name,
            "error": str(exc),
            "failures": after.failures,
            "retry_in_s": after.delay,
        }
        if self._single_pass:  # poll --once: there is no next try to announce
            log.error("account poll failed: %s: %s", kind, exc, extra=extra)
            return
        if after.failures == PERSISTENT_FAILURES:
            log.error(
                "account failing persistently: %s: %s (%d failures in a row since %s); next "
                "try in %.0f s at the earliest",
                kind,
                exc,
                after.failures,
                after.since.isoformat() if after.since else "-",
                after.delay,
                extra=extra,
            )
            return
        if change(before, after) is None:
            log.debug("account still backing off: %s: %s", kind, exc, extra=extra)
            return
        log.warning(
            "account backing off: %s: %s; next try in %.0f s at the earliest (no message is "
            "blamed or quarantined for it)",
            kind,
            exc,
            after.delay,
            extra=extra,
        )

    @property
    def persistently_failing(self) -> tuple[str, ...]:
        """Accounts that failed :data:`PERSISTENT_FAILURES` times in a row and have not
        recovered: ``poll`` exits non-zero when the service stops with any."""
        return tuple(
            name for name, state in self._backoff.items() if state.failures >= PERSISTENT_FAILURES
        )

    def _account_succeeded(self, account: AccountConfig) -> None:
        """End a backoff after a complete poll; one INFO line when the account recovers."""
        before = self._backoff.pop(account.name, None)
        if before is None or change(before, before.success()) != "recovered":
            return
        log.info(
            "account recovered after %d failure(s): %s",
            before.failures,
            before.kind,
            extra={"account": account.name, "failures": before.failures, "since": before.since},
        )

    def _end_smtp_session(self) -> None:
        """End the mailer's SMTP session at the end of a pass (a mailer that keeps one open
        between replies, such as :class:`~asm_email_rules.adapters.smtp.SmtpMailer`, has
        ``close``); a failure here cannot change what the server accepted."""
        close = getattr(self.mailer, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # the replies are recorded already; nothing to undo
                log.warning("ending the SMTP session failed", exc_info=True)

    def _open_ahead(self, account: AccountConfig, keys: list[str], ahead: _Ahead) -> Iterator[str]:
        """``keys`` (a session's listing, at most a session's worth and one); when they are
        more than the session handles, the next session is certain: its mailbox is created
        and opened on a worker thread now, into ``ahead``. Where that cannot be done (the
        factory raises, no thread to be had), the next session makes its own, and meets
        any failure in its own place."""
        if len(keys) > account.max_messages_per_session:
            try:
                ahead.start = SessionStart(self.mailbox_factory(account))
            except Exception:
                log.debug("the next session is not opened ahead", exc_info=True)
        return iter(keys)

    def _session(
        self,
        account: AccountConfig,
        seen: set[str],
        counts: _Counts,
        stop: threading.Event | None,
        pump: ReplyPump | None = None,
        behind: _Behind | None = None,
        ahead: _Ahead | None = None,
    ) -> bool:
        """One connection: handle up to the session limit; True if messages are left over.

        Between messages the ``pump`` records what its worker sent and claims more; once a
        session is durable, its replies (and any others due) are offered to the pump. Where
        the store and the mailbox allow it (:mod:`~asm_email_rules.session_end`) the
        session's end (sync, then deletions) is left running in ``behind`` while the next
        session is read, and that next session waits for it before it ends in turn, or
        before it raises. Whenever the end behind was not durable, this session is abandoned
        (nothing deleted) and _NotDurableError raised, so nothing of either is sent.

        The session takes the mailbox opened for it in ``ahead``, if any; when its listing
        shows more than it will handle, it opens the next one's there
        (:mod:`~asm_email_rules.session_start`).
        """
        start = None if ahead is None else ahead.take()
        own = start is not None and not _opened(start, account)
        if own:
            # The server turned the connection opened ahead away (a connection limit the
            # sessions overlapping reached, a moment's unavailability): this session
            # connects on its own, once the end behind it has closed its connection.
            start = None
            if not self._settled(account, counts, behind):
                raise _NotDurableError(_NOT_DURABLE)
        try:
            if own:
                mailbox = self._open_own(account)
            else:
                mailbox = self.mailbox_factory(account) if start is None else start.take()
        except Exception as exc:
            if start is not None:  # it connected: a session, as one failing at its first call
                counts.sessions += 1
            if not self._settled(account, counts, behind):
                raise _NotDurableError(_NOT_DURABLE) from exc
            raise
        counts.sessions += 1
        failures = 0
        handled = 0
        left_over = False
        recorded: set[str] = set()  # the Message-IDs of the mails this session put in the outbox
        looked = None if behind is None else behind.looked
        leaving = _Leaving(seen, mailbox=mailbox, looked=looked) if _bounded(mailbox) else None
        limit = account.max_messages_per_session + 1  # one more: are any left over?
        # A mailbox that does not say which fetches wait on no server is committed before each
        # of them (and may wait on one while its listing is read): a commit per message.
        shared = self.config.system.messages_per_commit if _says_fetch_ready(mailbox) else 1
        batch = _Batch(self.repository, shared)
        try:
            if isinstance(mailbox, ExpungingMailbox):
                self._expunge_leftovers(account, mailbox, counts, seen, looked)
            listed = _list_keys(mailbox, limit=limit, skip=seen)
            if (
                ahead is not None
                and leaving is not None
                and _takes_limit(type(mailbox))  # the listing is a session's worth and one
                and opens_ahead(mailbox)
            ):
                listed = self._open_ahead(account, list(listed), ahead)
            for key in listed:
                if key in seen:
                    continue
                if stop is not None and stop.is_set():
                    break
                if handled >= account.max_messages_per_session:
                    left_over = True
                    break
                if not self._renew(account):
                    raise _LeaseLostError("another poller took the account over")
                seen.add(key)
                handled += 1
                try:
                    quarantined = self._handle(account, mailbox, key, counts, pump, recorded, batch)
                    if quarantined and leaving is not None:
                        leaving.keys.add(key)
                    batch.tick()
                    self._delete_committed(mailbox, batch, leaving)
                    failures = 0
                except MessageGoneError as exc:  # another client removed it: nothing to do
                    counts.gone += 1
                    log.info(
                        "message gone before it was read: %s",
                        exc,
                        extra={"account": account.name, "mailbox_key": key},
                    )
                except MessageUnreadableError as exc:  # this one only: the next one goes on
                    _mailbox_failed(account, counts, exc, key)
                except MailboxHungUpError as exc:  # the connection is gone: the session ends
                    if exc.key != key:  # in hand, dropped with the connection: fetched again
                        seen.discard(key)
                    raise
                except MailboxError as exc:
                    failures += 1
                    _mailbox_failed(account, counts, exc, key)
                    if failures >= _MAX_MAILBOX_ERRORS:
                        raise
            batch.commit()
            try:
                self._delete_committed(mailbox, batch, leaving)
            except MailboxError as exc:  # one refused deletion: counted, the session ends well
                _mailbox_failed(account, counts, exc)
        except BaseException as exc:
            try:
                self._end_batch(account, mailbox, counts, batch, leaving, exc)
            finally:
                self._end_failed_session(account, mailbox, counts, behind, exc)
            raise
        if behind is not None and closes_concurrently(mailbox):
            self._end_behind(account, mailbox, counts, pump, behind, recorded, leaving)
            return left_over
        if not self._settled(account, counts, behind):
            _give_up(mailbox)
        if not self._end_session(account, mailbox, counts, leaving):
            raise _NotDurableError(_NOT_DURABLE)
        if pump is not None:
            self._pump_round(account, pump, counts, wait=False, released=len(recorded))
        return left_over

    @staticmethod
    def _delete_committed(mailbox: Mailbox, batch: _Batch, leaving: _Leaving | None) -> None:
        """Delete the messages whose records are committed, oldest first, once no unit of work
        is open (no mailbox call while the store's write lock is held). A key the mailbox
        refuses to delete leaves the queue (the message stays in the mailbox, acknowledged
        as a duplicate next time) and its MailboxError is raised, naming it, after the
        others were deleted; the last one is raised when several were refused."""
        if batch.open:
            return
        committed = batch.committed
        refused: MailboxError | None = None
        while committed:
            key = committed.popleft()
            try:
                mailbox.delete(key)
            except MailboxError as exc:
                refused = MailboxError(f"could not delete the handled message {key!r}: {exc}")
                refused.__cause__ = exc
                continue
            if leaving is not None:
                leaving.keys.add(key)
        if refused is not None:
            raise refused

    def _end_batch(
        self,
        account: AccountConfig,
        mailbox: Mailbox,
        counts: _Counts,
        batch: _Batch,
        leaving: _Leaving | None,
        exc: BaseException,
    ) -> None:
        """A session is ending on ``exc``: commit the messages recorded since the last commit
        (each is whole: a message that failed was undone alone) and delete them as the
        session's end would; when that commit fails, their messages stay in the mailbox, to be
        handled again as new (logged). Mailbox failures here are logged: such a message stays
        and is acknowledged as a duplicate next time."""
        try:
            if isinstance(exc, Exception):
                batch.commit()
            else:  # Ctrl-C: stop at once
                batch.roll_back(exc)
        except RepositoryError as failure:
            counts.error(failure)
        if batch.dropped:  # not handled after all: they are, next time
            counts.duplicates -= batch.dropped_duplicates
            counts.processed -= batch.dropped - batch.dropped_duplicates
            log.error(
                "the store failed to commit the last %d message(s) handled (their lines above"
                " said delete); they stay in the mailbox and are handled again next time: %s",
                batch.dropped,
                batch.failure,
                extra={"account": account.name, "error": batch.failure},
            )
        try:  # those of earlier commits still go, as the session's end would take them
            self._delete_committed(mailbox, batch, leaving)
        except MailboxError as failure:
            log.warning(
                "%s; acknowledged as a duplicate next time",
                failure,
                extra={"account": account.name, "error": str(failure)},
            )

    def _end_behind(
        self,
        account: AccountConfig,
        mailbox: Mailbox,
        counts: _Counts,
        pump: ReplyPump | None,
        behind: _Behind,
        recorded: set[str],
        leaving: _Leaving | None = None,
    ) -> None:
        """End a session whose mailbox closes concurrently: wait for the previous session's
        end, offer the pump the replies made durable (not this session's, ``recorded``, unless
        the store was synced here), then leave this session's end running: its sync covers
        the outcomes the pump has recorded so far. A failure of the previous end abandons this
        session too (_NotDurableError).
        """
        if not self._settled(account, counts, behind):
            _give_up(mailbox)  # recorded after a failed sync: keep its messages too
        sync = detached_sync(self.repository)
        released, behind.outgoing = behind.outgoing, 0  # the previous session's: durable now
        try:
            if sync is None:  # only this thread may sync this store: now, then close behind
                if not self._sync_here(account, counts):
                    _give_up(mailbox)
                released, recorded = released + len(recorded), set()
            if pump is not None:
                self._pump_round(
                    account,
                    pump,
                    counts,
                    wait=False,
                    hold_back=recorded,
                    released=released,
                    sync=sync is None,
                )
        except _NotDurableError:
            raise
        except BaseException:
            self._end_session(account, mailbox, counts)  # the store refused the pump: end here
            raise
        behind.outgoing = len(recorded)  # durable once this end is (here or behind)
        try:
            behind.running = SessionEnd(sync, mailbox, detached_upkeep(self.repository))
            behind.leaving = leaving
        except RuntimeError:  # no thread to be had: end the session here instead
            outcome = end_session(sync, mailbox)
            if leaving is not None:
                leaving.ended(outcome)
            if not self._account_end(account, counts, outcome):
                raise _NotDurableError(_NOT_DURABLE) from None

    @staticmethod
    def _sync_of(repository: object) -> Callable[[], None] | None:
        sync = getattr(repository, "sync", None)
        return sync if callable(sync) else None

    def _sync_here(self, account: AccountConfig, counts: _Counts) -> bool:
        """Sync the store on this thread; True when durable (a failure is counted, logged)."""
        sync = self._sync_of(self.repository)
        try:
            if sync is not None:
                sync()
        except RepositoryError as exc:
            return self._account_end(account, counts, EndOutcome(sync_error=exc))
        return True

    def _open_own(self, account: AccountConfig) -> Mailbox:
        """The session's own mailbox, opened now, after the one opened ahead was turned away
        (:func:`_opened`): tried again :data:`OWN_OPEN_PAUSES` apart while the server turns
        it away as well (not a refused sign-in): the end before it has only just closed its
        connection, which a server may count a moment longer (Dovecot's anvil). The last
        failure is raised, as a session's own connect would."""
        for pause in (*OWN_OPEN_PAUSES, None):
            mailbox = self.mailbox_factory(account)
            try:
                cast(_Opening, mailbox).open()
            except MailboxError as exc:
                abandon(mailbox)
                if pause is None or not isinstance(exc, MailboxBusyError):
                    raise
                time.sleep(pause)
            else:
                return mailbox
        raise AssertionError("unreachable: the last try raises or returns")  # pragma: no cover

    def _settled(self, account: AccountConfig, counts: _Counts, behind: _Behind | None) -> bool:
        """Wait for the session end left running behind (if any), count and log how it went;
        True when its records are durable (or there was none). An end that failed in a way it
        was not meant to counts as one error and as not durable; nothing but a BaseException
        (KeyboardInterrupt) escapes, and then the end is still waited for by the next call."""
        running = None if behind is None else behind.running
        if behind is None or running is None:
            return True
        try:
            outcome = running.wait()
        except Exception as exc:
            behind.running, behind.leaving = None, None
            counts.error(f"a session's end failed: {exc}")
            log.exception("a session's end failed", extra={"account": account.name})
            return False
        if behind.leaving is not None:
            behind.leaving.ended(outcome)
        behind.running, behind.leaving = None, None
        return self._account_end(account, counts, outcome)

    def _end_failed_session(
        self,
        account: AccountConfig,
        mailbox: Mailbox,
        counts: _Counts,
        behind: _Behind | None,
        exc: BaseException,
    ) -> None:
        """End a session that raised ``exc``: after the end behind it (if any) was waited for,
        synced and closed here; abandoned when that end or this sync was not durable, and then
        _NotDurableError raised (from ``exc``, which was an Exception) so that nothing is
        sent; a BaseException (KeyboardInterrupt) goes on up either way."""
        if self._settled(account, counts, behind):
            if self._end_session(account, mailbox, counts):
                return
        else:
            abandon(mailbox)
        if isinstance(exc, Exception):
            raise _NotDurableError(_NOT_DURABLE) from exc

    def _end_session(
        self,
        account: AccountConfig,
        mailbox: Mailbox,
        counts: _Counts,
        leaving: _Leaving | None = None,
    ) -> bool:
        """Make the store durable, then let the mailbox's deletions take effect (close).

        A store that commits lazily (SQLite in WAL mode with ``synchronous=NORMAL``) is synced
        once here rather than on every commit, and before any message leaves the mailbox, so
        a power loss can never lose a message whose record was not on disk yet. When the sync
        fails the mailbox is abandoned without deleting anything (``abort``, where it has one)
        and False comes back: the replies of the session are not sent either (were the records
        lost, the messages would be processed again, with new replies).
        """
        outcome = end_session(self._sync_of(self.repository), mailbox)
        if leaving is not None:
            leaving.ended(outcome)
        return self._account_end(account, counts, outcome)

    def _account_end(self, account: AccountConfig, counts: _Counts, outcome: EndOutcome) -> bool:
        """Count and log a session's end that failed; True when it is durable. A store that
        could not be made durable (StoreUnavailableError) backs the account off."""
        failure = outcome.sync_error or outcome.close_error
        if failure is None:
            return True
        counts.error(failure)
        if outcome.sync_error is not None:
            log.error(
                "the store could not be made durable; the mailbox keeps its messages: %s",
                failure,
                extra={"account": account.name, "error": str(failure)},
            )
            if isinstance(failure, StoreUnavailableError) and not counts.backoff_cause:
                # our side failed, as when a commit fails: the account backs off (once a pass)
                counts.backoff_cause = str(failure)
                self._account_failed(account, _failure_kind(failure), failure)
            return False
        log.error(
            "closing the mailbox failed: %s",
            failure,
            extra={"account": account.name, "error": str(failure)},
        )
        return True

    def _expunge_leftovers(
        self,
        account: AccountConfig,
        mailbox: ExpungingMailbox,
        counts: _Counts,
        seen: set[str] | None = None,
        looked: set[str] | None = None,
    ) -> None:
        """Remove the messages a previous session marked deleted and the ledger says are done.

        A session that died between marking and expunging (IMAP ``\\Deleted``) leaves them in
        the folder, hidden from :meth:`~Mailbox.list_keys`. Each is fetched and looked up: a
        ledger entry (its decision was applied and recorded) or a quarantine record means it
        is done and goes; one the ledger does not know (marked by a person, say) is left alone.
        The keys in ``seen`` (handled earlier in this pass) are not leftovers: a previous
        session whose end still runs behind this one (:mod:`~asm_email_rules.session_end`)
        is marking and expunging them itself. The keys in ``looked`` were looked at earlier
        in the pass (or are ours, done, left marked by a server that may not expunge them);
        every key looked at here joins it, so what stays marked (a person's mark, or ours on
        an IMAP server without UIDPLUS while someone else's messages are marked too) is
        fetched once a pass, not in every session. ``looked`` is not ``seen``: a message whose
        mark is taken back is new mail, and the next listing has it.
        """
        skip = () if seen is None else seen
        again = () if looked is None else looked
        examined = [k for k in mailbox.deleted_keys() if k not in skip and k not in again]
        done = [key for key in examined if self._is_done(account, mailbox, key)]
        if looked is not None:
            looked.update(examined)  # not seen: a mark taken back makes it new mail
        if not done:
            return
        removed = mailbox.expunge(done)
        counts.expunged += removed
        log.info(
            "expunged %d message(s) a previous session had deleted",
            removed,
            extra={"account": account.name, "mailbox_keys": done},
        )

    def _is_done(self, account: AccountConfig, mailbox: Mailbox, key: str) -> bool:
        """True when the ledger knows the message ``key``: processed, or quarantined. False for
        one another client removed meanwhile (a message marked deleted is what people's mail
        programs expunge), and for one the mailbox refuses to send (MessageUnreadableError:
        logged, left marked, looked at again next pass)."""
        try:
            raw = self._fetch(mailbox, key)
        except MessageGoneError:
            return False
        except MessageUnreadableError as exc:  # this one only: the session goes on
            log.warning(
                "message marked deleted could not be read; left as it is: %s",
                exc,
                extra={"account": account.name, "mailbox_key": key, "error": str(exc)},
            )
            return False
        name = account.mailbox.name
        if self.repository.ledger_entry(name, "", hashlib.sha256(raw).hexdigest()) is not None:
            return True  # quarantined before (these bytes may not even parse)
        try:
            email = parse_message(raw, limits=self.config.system.limits)
        except MessageParseError:
            return False
        return find_ledger_entry(self.repository, name, email) is not None

    # -- all accounts -----------------------------------------------------------------------

    def poll_once(self, stop: threading.Event | None = None, *, final: bool = False) -> PollReport:
        """Poll every account once (inactive ones are reported as skipped).

        ``final``: no further pass follows (``poll --once``), so a failure is logged as
        ``account poll failed`` with no talk of a next try; a host that calls this in its own
        loop leaves it False and gets the backoff lines of :meth:`run`.
        """
        reports = []
        self._single_pass = final
        try:
            for account in self.config.accounts:
                if stop is not None and stop.is_set():
                    break
                reports.append(self.poll_account(account, stop))
        finally:
            self._single_pass = False
        return PollReport(tuple(reports))

    def run(self, stop: threading.Event) -> None:
        """Poll each active account on its own interval until ``stop`` is set.

        The message in hand is finished before stopping. An account whose store or mailbox
        fails (unreachable, sign-in refused) backs off: the waits grow from
        ``system.backoff_initial_seconds`` to ``system.backoff_max_seconds`` (never shorter
        than its interval), so a wrong password does not get the account locked; one log line
        says when it starts failing, fails another way, fails persistently
        (:data:`PERSISTENT_FAILURES`) and recovers. :attr:`persistently_failing` names the
        accounts still failing when it stops.
        """
        active = [account for account in self.config.accounts if account.active]
        if not active:
            log.warning("no active accounts: nothing to poll")
            return
        due = {account.name: time.monotonic() for account in active}
        log.info("polling service started", extra={"accounts": [a.name for a in active]})
        while not stop.is_set():
            for account in active:
                if stop.is_set():
                    break
                if time.monotonic() < due[account.name]:
                    continue
                due[account.name] = time.monotonic() + account.interval_seconds
                try:
                    report = self.poll_account(account, stop)
                except Exception:  # a bug must not end the service; the account is retried
                    log.exception("account poll crashed", extra={"account": account.name})
                else:
                    fields = attrs.asdict(report)
                    fields["discarded"] = report.discard_summary()
                    log.info("account polled", extra=fields)
                wait = max(
                    account.interval_seconds, self.backoff(account.name).seconds_left(self.now())
                )
                due[account.name] = time.monotonic() + wait
            stop.wait(max(0.0, min(due.values()) - time.monotonic()))
        log.info("polling service stopped")


OWN_OPEN_PAUSES = (0.25, 0.5, 1.0)
"""The pauses, in seconds, between the tries of a session that opens its own connection after
the one opened ahead for it was turned away (:meth:`PollingService._open_own`)."""


class _Opening(Protocol):
    def open(self) -> None: ...


def _opened(start: SessionStart, account: AccountConfig) -> bool:
    """False when the server turned the mailbox opened ahead (``start``) away
    (:class:`~asm_email_rules.errors.MailboxBusyError`, logged at INFO; the session then
    opens its own): a server that limits the connections of a user (Dovecot's ``NO [LIMIT]
    Maximum number of connections from user+IP exceeded``, a host's few, some held by a
    person's mail client) refuses the one opened ahead while it still takes the sessions one
    at a time. Any other outcome is left to ``start.take()``."""
    error = start.failure()
    if not isinstance(error, MailboxBusyError):
        return True
    start.discard()
    log.info(
        "the connection opened ahead for the next session failed; it connects itself once "
        "the session before it has ended: %s",
        error,
        extra={"account": account.name},
    )
    return False


def _from_a_person(result: ProcessResult) -> bool:
    return result.decision is not None and result.decision.mail_kind is MailKind.NORMAL


def _failure_kind(exc: BaseException) -> str:
    """The short phrase a backoff compares: what of ours failed."""
    if isinstance(exc, StoreUnavailableError):
        return "store unavailable"
    if isinstance(exc, AuthenticationError):
        # No OAuth2 token could be had (the token endpoint down, throttled, refusing the
        # client): the mailbox server was never asked, so it refused nothing.
        return "no access token" if isinstance(exc.__cause__, TokenError) else "sign-in refused"
    return "mailbox unreachable"


# --------------------------------------------------------------------------------------------
# deprecated names: the wiring moved to asm_email_rules.bootstrap
# --------------------------------------------------------------------------------------------

_MOVED_TO_BOOTSTRAP = {"make_mailer": "make_mailer", "open_mailbox": "mailbox_factory"}


def __getattr__(name: str) -> object:
    """``make_mailer`` and ``open_mailbox`` still work here, with a DeprecationWarning.

    They build adapters from the configuration, which is the composition root's job; use
    :func:`asm_email_rules.bootstrap.make_mailer` and
    :func:`asm_email_rules.bootstrap.mailbox_factory`.
    """
    target = _MOVED_TO_BOOTSTRAP.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"asm_email_rules.service.{name} is deprecated; use asm_email_rules.bootstrap.{target}",
        DeprecationWarning,
        stacklevel=2,
    )
    from asm_email_rules import bootstrap  # deferred: bootstrap imports this module

    return getattr(bootstrap, target)
