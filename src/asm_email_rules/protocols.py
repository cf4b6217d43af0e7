"""The ports a host plugs into: storage (Repository), transport (Mailer) and Mailbox.

Small structural protocols: any object with these methods works, no base class needed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

from asm_email_rules.model import (
    Attachment,
    Call,
    CallStatus,
    EntityRef,
    Group,
    Lease,
    LedgerEntry,
    LogEntry,
    OutboxEntry,
    OutgoingEmail,
    Person,
    ReplyStatus,
    Request,
    SecurityRole,
    SentEntry,
    SummaryItem,
    SummaryKind,
    Task,
    TaskStatus,
)
from asm_email_rules.settings import CallTemplate


@runtime_checkable
class Directory(Protocol):
    """Read access to the CMDB's people: person records, security roles, assignment groups."""

    def persons_by_address(self, address: str) -> Sequence[Person]:
        """Every person whose email matches ``address`` case-insensitively, lowest id first."""
        ...

    def get_person(self, person_id: int) -> Person | None:
        """The person with this id, or ``None``."""
        ...

    def get_role(self, name: str) -> SecurityRole | None:
        """The security role called ``name`` (exact match), or ``None``.

        A person names their analyst role and their user role (:attr:`Person.analyst_role`,
        :attr:`Person.user_role`); the rules read the role's rights here (reopen closed calls,
        Take Over).
        """
        ...

    def get_group(self, name: str) -> Group | None:
        """The assignment group called ``name`` (exact match), or ``None``; its ``email`` is
        where Email at Update via Email In notifies a call assigned to the group only."""
        ...


@runtime_checkable
class RuleReader(Directory, Protocol):
    """What the rules read to decide a message: the people (:class:`Directory`), the record a
    subject names, summaries, our own sent Message-IDs, the reply budget and spent approval
    tokens. :func:`~asm_email_rules.gather.gather_facts` and
    :func:`~asm_email_rules.pipeline.explain` need no more, so a host with its own data model
    can ask what a message means by implementing these alone (a :class:`Repository` is one).
    """

    def get_call(self, number: int) -> Call | None:
        """The call with this number, or ``None``."""
        ...

    def get_task(self, number: int) -> Task | None:
        """The task or approval with this number, or ``None``."""
        ...

    def get_request(self, number: int) -> Request | None:
        """The request with this number, or ``None``."""
        ...

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        """Items of a summary newest first (at most ``limit``), and the total count.

        ``CALLS``: open calls the person owns. ``REQUESTS`` and ``TASKS``: items the person
        is working on, has forwarded, or has been forwarded (tasks include approvals).
        :class:`SummaryKind` is a ``str`` enum, so an implementation comparing with
        ``"calls"``, ``"requests"`` and ``"tasks"`` conforms too.
        """
        ...

    def entity_for_message_id(self, message_id: str) -> EntityRef | None:
        """The record one of our own sent Message-IDs was about, or ``None``."""
        ...

    def replies_sent_since(self, address: str, since: datetime) -> int:
        """How many replies went to ``address`` since ``since`` (for the reply budget).

        Addresses are counted by mailbox (``addresses.mailbox_key``): case-insensitive, and
        ``victim+1@x`` and ``victim+2@x`` are one mailbox, so sub-addresses share a budget."""
        ...

    def is_token_used(self, token_id: str) -> bool:
        """True when this approval token was already spent."""
        ...


@runtime_checkable
class Repository(RuleReader, Protocol):
    """Everything the rules read and write. Writes happen only inside :meth:`transaction`,
    except the outbox and lease writes, which must also work outside one (each then a small
    unit of work of its own); the reply pump makes one unit of a step's records, claims and
    lease renewal (:meth:`transaction`).

    Optional, looked up by name: ``sync()`` makes every commit so far durable against a power
    loss (a store that commits lazily; the polling service calls it before a session's
    deletions take effect), and ``detached_sync()`` returns a function doing the same that
    may run on another thread while the store is in use (then a session's end can run behind
    the next session: :mod:`~asm_email_rules.session_end`); ``detached_upkeep()`` returns one
    run on that thread after a durable end, the next session going on meanwhile (SQLite
    copies its WAL back into the database file there). ``nested_rollback = True`` says a
    nested :meth:`transaction` whose block raises undoes only its own writes, the outer unit
    going on (an SQL ``SAVEPOINT``); the polling service then commits several messages in one
    unit of work (``messages_per_commit``), else one per message.
    """

    # -- reads ------------------------------------------------------------------------------
    def ledger_entry(self, mailbox: str, message_id: str, sha256: str) -> LedgerEntry | None:
        """The ledger entry of this message (Message-ID and content hash), or ``None``."""
        ...

    def entries(self, ref: EntityRef) -> Sequence[LogEntry]:
        """The log of a record (history, notes, objects, notifications), oldest first."""
        ...

    def attachments(self, ref: EntityRef) -> Sequence[Attachment]:
        """The files attached to a record as objects, oldest first, bytes exactly as given to
        :meth:`attach` (one per ATTACHMENT entry of :meth:`entries`); [] for an unknown
        record."""
        ...

    # -- reply outbox: reads ------------------------------------------------------------------
    def outbox_entry(self, reply_message_id: str) -> OutboxEntry | None:
        """The outbox entry of our reply with this Message-ID (angle brackets optional)."""
        ...

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        """Replies a sender may try at ``now``: PENDING, ``next_attempt_at <= now``, and not
        claimed, or claimed until a moment at or before ``now`` (a sender that died).

        At most ``limit`` entries, the longest due first (``next_attempt_at``, then
        ``queued_at``, then the reply's Message-ID); only ``mailbox``'s when given. A read: to
        send one, :meth:`claim_reply` it first.
        """
        ...

    def list_replies(
        self,
        statuses: Collection[ReplyStatus] | None = None,
        *,
        mailbox: str | None = None,
        limit: int = 100,
    ) -> Sequence[OutboxEntry]:
        """Outbox entries with one of ``statuses`` (every reply when None), newest
        ``queued_at`` first (then the reply's Message-ID), at most ``limit``; only
        ``mailbox``'s when given. For operators (``asm-email-rules replies list``)."""
        ...

    # -- reply outbox and leases: writes (atomic alone, or joined to a transaction) ----------
    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        """Claim a reply for sending: ``owner`` holds it until ``until``.

        Succeeds, atomically, only when the reply is PENDING, due (``next_attempt_at <= now``)
        and not claimed by another owner until after ``now``; the claimed entry comes back.
        The holder may claim again to renew, or with ``until=now`` to end its claim (a claim
        held until ``now`` is over: another owner may claim at once).
        Otherwise nothing changes and None comes back (sent, failed, not due, claimed by a
        live sender, unknown). The claim is what keeps two pollers from sending one reply:
        a sender sends only what it claimed (DESIGN 4, "Replies are an outbox").
        """
        ...

    def finish_reply(
        self,
        reply_message_id: str,
        owner: str,
        status: ReplyStatus,
        now: datetime,
        *,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record the outcome of one send attempt by the holder of the claim, and release it.

        ``status`` is SENT (``sent_at`` becomes ``now``), FAILED (for good) or PENDING (try
        again at ``next_attempt_at``, which is then required). ``attempts`` goes up by one and
        ``last_error`` becomes ``error``; the ledger entry's ``reply_status`` follows. Returns
        False, changing nothing, when ``owner`` no longer holds the claim (it expired and
        another sender took the reply over). Raises ``ValueError`` for PENDING without
        ``next_attempt_at`` or any other status.
        """
        ...

    def requeue_reply(self, reply_message_id: str, now: datetime) -> OutboxEntry:
        """Put a FAILED reply back in the outbox: PENDING, due at ``now``, ``queued_at`` =
        ``now`` (a new retry window), no claim, attempts and error kept for the record.

        Raises NotFoundError for an unknown Message-ID and RepositoryError for a reply that
        is not FAILED (pending replies are queued already; a sent one is not sent twice).
        """
        ...

    def acquire_lease(self, name: str, owner: str, now: datetime, until: datetime) -> Lease:
        """Take or renew the lease ``name`` for ``owner`` until ``until``, atomically.

        Succeeds when nobody holds it, ``owner`` holds it already (a renewal), or its holder's
        lease expired at or before ``now`` (a take-over). Returns the lease as it stands
        afterwards: ``lease.owner == owner`` means it is ours; else it names the holder and
        when its lease ends (DESIGN 4, "One poller per account").
        """
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Give up the lease ``name`` if ``owner`` holds it (else nothing happens)."""
        ...

    # -- writes (inside a transaction) --------------------------------------------------------
    def transaction(self) -> AbstractContextManager[None]:
        """One unit of work: commits on normal exit, rolls everything back on an exception.

        The library calls the write methods inside it, the outbox's too: the reply pump
        records finished attempts (:meth:`finish_reply`) and claims the next replies
        (:meth:`claim_reply`) in one unit of work, and hands a claim to its sender only once
        the unit committed. A nested call joins the outer unit of work."""
        ...

    def create_person(self, email: str, name: str, *, is_user: bool) -> Person:
        """A new person record with a new id (flagged as a User when ``is_user``), no roles."""
        ...

    def set_user_flag(self, person_id: int) -> None:
        """Select the User flag on an existing person."""
        ...

    def create_call(
        self,
        *,
        template: CallTemplate,
        user_id: int | None,
        logging_analyst_id: int | None,
        description: str,
        now: datetime,
    ) -> Call:
        """Log an open call with the next available number and the template's properties.

        The returned (and stored) call has the template's partition, call screen set, IPK
        status, IPK stream, assigned analyst (``owner_id``) and group; ``last_update`` is
        ``now``; the subject is blank. The number is above every existing call's.
        """
        ...

    def add_history(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Append a history entry to a call, task or request."""
        ...

    def add_note(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Add a note to a record (used on closed calls, which keep their state)."""
        ...

    def attach(
        self, ref: EntityRef, attachment: Attachment, security_profile: str, now: datetime
    ) -> None:
        """Attach a file as an object, with its history entry, under ``security_profile``."""
        ...

    def mark_updated(self, ref: EntityRef) -> None:
        """Set the note icon that tells the handling analyst the record changed."""
        ...

    def close_call(self, number: int, by: str, now: datetime) -> None:
        """Close an open call. StaleRecordError (a RepositoryError), changing nothing, when it
        is not open (the rules saw it open: another poller closed it since, and
        :func:`~asm_email_rules.pipeline.process` decides the message again)."""
        ...

    def reopen_call(self, number: int, owner_id: int | None, group: str, now: datetime) -> None:
        """Reopen a closed call and assign it to ``owner_id`` and ``group``. StaleRecordError,
        changing nothing, when it is not closed."""
        ...

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        """Approve or reject an approval task. StaleRecordError, changing nothing, when the
        status is APPROVED or REJECTED and the task is no longer PENDING: an approval is
        decided once (DESIGN 4b), and a store shared by pollers must check and write under one
        lock, or an approve and a reject read at once both win."""
        ...

    def record_notification(self, ref: EntityRef, text: str, now: datetime) -> None:
        """Write a NOTIFICATION entry on the record's log: ``text`` says who was emailed about
        this update by email, or why nobody was (Email at Update via Email In). A log entry
        only, ``last_update`` unchanged: send nothing. The notification email itself is in
        :attr:`Decision.notifications <asm_email_rules.decision.Decision.notifications>`;
        :func:`~asm_email_rules.applying.apply` stores it in the outbox (a
        :meth:`record_processed` of its own) and the library sends it as it sends a reply."""
        ...

    def record_processed(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        decision_json: str,
        reply: OutgoingEmail | None,
        now: datetime,
    ) -> None:
        """Write the ledger entry that makes a retry of this message a no-op.

        ``reply`` is stored with status PENDING (or NONE when there is no reply) so that a
        crash or a transient SMTP failure after the commit never loses it: it enters the
        outbox, queued and due at ``now``, unclaimed. Its Message-ID names it from then on
        and is unique in the outbox.
        """
        ...

    def set_reply_status(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        status: ReplyStatus,
        *,
        attempts: int,
        error: str = "",
    ) -> None:
        """Record the outcome of a send attempt for a ledger entry (the outbox entry follows).

        Kept for hosts that send replies themselves; the bundled sender uses
        :meth:`claim_reply` and :meth:`finish_reply`, which two pollers cannot race on.
        """
        ...

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        """Remember a Message-ID we sent (threading, reply budget)."""
        ...

    def use_token(self, token_id: str, now: datetime) -> None:
        """Spend an approval token so a replay does nothing."""
        ...


@runtime_checkable
class SeedableRepository(Repository, Protocol):
    """A repository that tests, demos and the conformance kit can fill with given records."""

    def put_person(self, person: Person) -> None:
        """Insert or replace a person record as given (id included)."""
        ...

    def put_call(self, call: Call) -> None:
        """Insert or replace a call as given (number included)."""
        ...

    def put_task(self, task: Task) -> None:
        """Insert or replace a task or approval as given."""
        ...

    def put_request(self, request: Request) -> None:
        """Insert or replace a request as given."""
        ...

    def put_role(self, role: SecurityRole) -> None:
        """Insert or replace a security role (by name) with exactly its rights."""
        ...

    def put_group(self, group: Group) -> None:
        """Insert or replace an assignment group (by name) and its address."""
        ...

    def list_persons(self, *, after: int = 0, limit: int = 100) -> Sequence[Person]:
        """Persons with an id above ``after``, lowest id first, at most ``limit``.

        Page through every person by passing the last id seen as ``after``.
        """
        ...

    def list_calls(
        self, *, status: CallStatus | None = None, after: int = 0, limit: int = 100
    ) -> Sequence[Call]:
        """Calls numbered above ``after`` (only those with ``status`` when given), lowest
        number first, at most ``limit``. Page by passing the last number seen as ``after``."""
        ...


@runtime_checkable
class Mailer(Protocol):
    """Sends replies. Raises PermanentSendError or TransientSendError with the SMTP code.

    Optional, looked up by name: ``send_many(messages) -> list[SendError | None]`` sends
    several in order and gives each its own outcome (None: accepted), the list ending early
    after a temporary failure: a reply past its end must not have been written to any server
    (the pump gives up its claim, and another sender may send it at once). The reply pump
    hands over the replies it has queued that way
    (:meth:`~asm_email_rules.adapters.smtp.SmtpMailer.send_many` writes them at once where the
    server allows).
    """

    def send(self, message: OutgoingEmail) -> None:
        """Deliver ``message`` or raise a :class:`~asm_email_rules.errors.SendError`."""
        ...


@runtime_checkable
class Mailbox(Protocol):
    """A source of raw messages that can delete or set aside what it handed out.

    Messages are named by their *mailbox key*: whatever addresses a message in this mailbox
    (an IMAP UID, a POP3 UIDL, a Maildir key), never the Message-ID header field. ``list_keys``
    was once called ``list_ids``: the polling service still accepts a mailbox that only has the
    old name (with a DeprecationWarning), and the bundled mailboxes still answer to it.

    Optional, looked up by name: ``abort()`` ends a session without its deletions (used when
    the store could not be made durable), ``closes_concurrently = True`` says that
    :meth:`close` may run on another thread while a new session of the same mailbox is read
    (:mod:`~asm_email_rules.session_end`), ``opens_ahead = True`` with ``open()`` (connect
    and sign in now) says that the next session's mailbox may be opened on another thread
    while the current session is read (:mod:`~asm_email_rules.session_start`), and
    ``bounded_listing = True`` says two things
    that keep the polling service's memory within a session's worth of keys however large the
    backlog: ``list_keys(limit=N, skip=keys)`` (keyword-only, both optional) lists only the
    ``N`` oldest keys not in ``keys``; and a key deleted or quarantined in a session whose
    :meth:`close` returned without error is never listed again, so the service stops
    remembering it (:class:`~asm_email_rules.adapters.maildir.MaildirMailbox`,
    :class:`~asm_email_rules.adapters.imap.ImapMailbox`). A mailbox
    without it is listed whole with ``list_keys()``, as before. ``fetch_ready(key)`` is True
    when :meth:`fetch` of ``key`` will answer without waiting on a server (a local file, a
    message fetched ahead): the polling service keeps the store's transaction of several
    messages (``messages_per_commit``) open across such a fetch only, and commits it before
    any other, so the store's write lock is never held while a server is waited for. A
    mailbox that has ``fetch_ready`` must not wait on a server either while what
    ``list_keys()`` returned is read; one without it gets a commit per message.
    """

    def list_keys(self) -> Iterable[str]:
        """Keys of the messages waiting, oldest first; valid until :meth:`close`.

        Any iterable: a list will do, or a generator that reads the listing as it goes. The
        polling service reads it once, in order, and may stop before its end.
        """
        ...

    def fetch(self, key: str) -> bytes:
        """The raw bytes of the message with this key."""
        ...

    def delete(self, key: str) -> None:
        """Remove a processed message (takes effect at the latest on :meth:`close`)."""
        ...

    def quarantine(self, key: str, reason: str) -> None:
        """Move a message aside so it is neither lost nor processed again."""
        ...

    def close(self) -> None:
        """Commit deletions and release the connection."""
        ...


@runtime_checkable
class ExpungingMailbox(Mailbox, Protocol):
    """A mailbox whose deletions are marks that outlive a session that dies (IMAP ``\\Deleted``).

    The polling service asks it, at the start of each session, for the marked messages a
    previous session left, and expunges those its ledger says are done (DESIGN 4, "Nothing is
    lost": nothing is removed that was not acted on and recorded first).
    """

    def deleted_keys(self) -> Iterable[str]:
        """Keys of the messages marked deleted and not yet removed, other than this session's
        (any iterable, read once)."""
        ...

    def expunge(self, keys: Collection[str]) -> int:
        """Remove the marked messages ``keys`` now, and only them; how many were removed."""
        ...


@runtime_checkable
class SentJournal(Protocol):
    """Where one reply pump's worker writes each reply the SMTP server accepted, the moment the
    server answered, outside the store's transaction (optional: a store offers one per pump
    with ``sent_journal(owner)``, looked up by name; the SQLite store keeps them in a folder
    beside its file,
    :class:`~asm_email_rules.adapters.journal_files.DirectorySentJournal`).

    DESIGN 4, "Replies are an outbox": a reply is recorded SENT only after the server's 250
    (RFC 5321 section 4.2.5: the server has taken responsibility for it). The store is
    written by the poller's thread only, between messages; until then the journal is that
    record, so a crash does not send the reply again: the next pump records what a pump
    that stopped left in its journal (:func:`~asm_email_rules.sent_journal.settle`).

    :meth:`add` is called from the pump's worker thread, the others from the poller's. An
    entry added is durable as the store's commits are (against a crash of the process at
    once). Methods raise :class:`~asm_email_rules.errors.RepositoryError`.
    """

    def add(self, entries: Sequence[SentEntry]) -> None:
        """Keep ``entries`` (one write)."""
        ...

    def leftovers(self) -> Sequence[SentEntry]:
        """The entries of the store's journals whose pumps have stopped (closed, or their
        process gone: they will write no more), this journal's own excepted."""
        ...

    def forget(self) -> None:
        """Forget what the last :meth:`leftovers` returned (its replies are recorded now)."""
        ...

    def close(self, *, recorded: bool) -> None:
        """Release the journal; ``recorded``: every entry added is recorded in the store, so
        they are forgotten (else they wait for the next pump's settle)."""
        ...


@runtime_checkable
class LedgerRetention(Protocol):
    """A store that forgets old ledger entries (optional; the bundled stores implement it).

    DESIGN 4, "Nothing is lost", and issue 10, "Growth": the ledger must not grow for ever, but
    forgetting a message that is still in a mailbox would act on it a second time. So an
    entry's age counts from when its message was last *seen* in a mailbox, and the polling
    service prunes a mailbox's entries only after a poll that saw every message in it, each
    one touched on the way (``ledger_retention_days``, default 90).
    """

    def touch_ledger(self, mailbox: str, message_id: str, sha256: str, now: datetime) -> None:
        """Record that the message of this entry was seen in a mailbox at ``now``
        (:attr:`LedgerEntry.seen_at`). Nothing happens when there is no such entry."""
        ...

    def prune_ledger(self, mailbox: str, before: datetime) -> int:
        """Forget the entries of ``mailbox`` last seen before ``before``; how many went.

        Never forgets an entry whose reply is still PENDING (the outbox sends it), nor a
        quarantine record (``{"quarantined": ...}`` under an empty Message-ID: it is what keeps
        a message that stays on a POP3 server from being processed again).
        """
        ...
