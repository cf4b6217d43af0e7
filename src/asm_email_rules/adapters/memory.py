"""The in-memory reference repository: plain dicts, an undo journal for transactions.

This is the behaviour every other :class:`~asm_email_rules.protocols.SeedableRepository`
is measured against by the conformance kit in :mod:`asm_email_rules.testing`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, assert_never

import attrs

from asm_email_rules.adapters._repository import (
    SUMMARY_DESCRIPTION_LENGTH,
    SUMMARY_KINDS,
    TASK_DONE_STATUSES,
    address_key,
    check_finish,
    is_quarantine_record,
    message_id_key,
    recipient_key,
    short_description,
    summary_kind,
    to_utc,
)
from asm_email_rules.errors import NotFoundError, RepositoryError, StaleRecordError
from asm_email_rules.model import (
    DECIDED_TASK_STATUSES,
    Attachment,
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    EntryKind,
    Group,
    Lease,
    LedgerEntry,
    LogEntry,
    OutboxEntry,
    OutgoingEmail,
    Person,
    ReplyStatus,
    Request,
    RequestStatus,
    SecurityRole,
    SummaryItem,
    SummaryKind,
    Task,
    TaskStatus,
)
from asm_email_rules.quarantine import (
    RESOLVED_STATES,
    QuarantinedMessage,
    QuarantineListing,
    QuarantineOutline,
    QuarantineState,
    last_change,
)
from asm_email_rules.settings import CallTemplate

__all__ = [
    "SUMMARY_DESCRIPTION_LENGTH",
    "SUMMARY_KINDS",
    "TASK_DONE_STATUSES",
    "InMemoryRepository",
    "address_key",
    "message_id_key",
    "short_description",
    "to_utc",
]

log = logging.getLogger(__name__)

_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")


def _opt_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else to_utc(moment)


_Record = Call | Task | Request


def _newest_first(records: list[_T], last_update: Callable[[_T], datetime | None]) -> None:
    """Sort in place: latest ``last_update`` first, ``None`` last, ties by number descending."""
    records.sort(key=lambda r: getattr(r, "number", 0), reverse=True)
    records.sort(
        key=lambda r: (
            last_update(r) is not None,
            last_update(r) or datetime.min.replace(tzinfo=UTC),
        ),
        reverse=True,
    )


def _claimed_by_another(entry: OutboxEntry, owner: str, now: datetime) -> bool:
    """True while a sender other than ``owner`` holds a live claim on ``entry``."""
    return (
        bool(entry.claimed_by)
        and entry.claimed_by != owner
        and entry.claimed_until is not None
        and entry.claimed_until > now
    )


@attrs.frozen
class _Sent:
    ref: EntityRef | None
    recipient_key: str
    at: datetime


class InMemoryRepository:
    """A :class:`~asm_email_rules.protocols.SeedableRepository` kept in dicts (one thread).

    ``transaction()`` journals every write and undoes the journal, newest first, when the
    block raises, so a failed unit of work leaves nothing behind; cost is proportional to the
    writes made, not to the size of the store. A nested ``transaction()`` is part of the outer
    one, and undoes its own writes alone when it raises (``nested_rollback``).
    Writes outside any transaction are allowed and take effect at once.
    """

    def __init__(self) -> None:
        self._persons: dict[int, Person] = {}
        self._roles: dict[str, SecurityRole] = {}
        self._groups: dict[str, Group] = {}
        self._calls: dict[int, Call] = {}
        self._tasks: dict[int, Task] = {}
        self._requests: dict[int, Request] = {}
        self._entries: dict[EntityRef, list[tuple[LogEntry, Attachment | None]]] = {}
        self._ledger: dict[tuple[str, str, str], LedgerEntry] = {}
        self._sent: dict[str, _Sent] = {}
        self._tokens: dict[str, datetime] = {}
        self._token_expiry: dict[str, datetime] = {}
        self._outbox: dict[str, OutboxEntry] = {}
        self._leases: dict[str, Lease] = {}
        self._counters: dict[str, int] = {"next_call_number": 1, "next_person_id": 1}
        self._quarantine: dict[int, QuarantinedMessage] = {}
        self._undo: list[Callable[[], object]] | None = None

    # -- journal --------------------------------------------------------------------------
    def _set(self, table: dict[_K, _V], key: _K, value: _V) -> None:
        """Write ``table[key]``, remembering how to undo it inside a transaction."""
        if self._undo is not None:
            if key in table:
                old = table[key]
                self._undo.append(lambda: table.__setitem__(key, old))
            else:
                self._undo.append(lambda: table.__delitem__(key))
        table[key] = value

    def _delete(self, table: dict[_K, _V], key: _K) -> None:
        """Remove ``table[key]`` if present, remembering how to undo it inside a transaction."""
        if key not in table:
            return
        old = table.pop(key)
        if self._undo is not None:
            self._undo.append(lambda: table.__setitem__(key, old))

    def _append(self, items: list[_T], item: _T) -> None:
        """Append to ``items``, remembering how to undo it inside a transaction."""
        if self._undo is not None:
            self._undo.append(lambda: items.pop())
        items.append(item)

    nested_rollback: ClassVar[bool] = True
    """A nested :meth:`transaction` that raises undoes only its own writes (as an SQL
    ``SAVEPOINT``): see :class:`~asm_email_rules.protocols.Repository`."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One unit of work: kept on normal exit, every write undone when the block raises. A
        nested call is part of the outer unit; when its block raises, its own writes alone
        are undone."""
        if self._undo is not None:
            undo, mark = self._undo, len(self._undo)
            try:
                yield
            except BaseException:
                for step in reversed(undo[mark:]):
                    step()
                del undo[mark:]
                raise
            return
        self._undo = []
        try:
            yield
        except BaseException:
            undo, self._undo = self._undo, None
            for step in reversed(undo):
                step()
            log.debug("in-memory transaction rolled back", extra={"undone": len(undo)})
            raise
        self._undo = None

    # -- directory --------------------------------------------------------------------------
    def persons_by_address(self, address: str) -> Sequence[Person]:
        """Every person whose email matches ``address`` case-insensitively, lowest id first."""
        wanted = address_key(address)
        found = [p for p in self._persons.values() if address_key(p.email) == wanted]
        found.sort(key=lambda p: p.id)
        return found

    def get_person(self, person_id: int) -> Person | None:
        """The person with this id, or ``None``."""
        return self._persons.get(person_id)

    def get_role(self, name: str) -> SecurityRole | None:
        """The security role called ``name``, or ``None``."""
        return self._roles.get(name)

    def get_group(self, name: str) -> Group | None:
        """The assignment group called ``name``, or ``None``."""
        return self._groups.get(name)

    def list_persons(self, *, after: int = 0, limit: int = 100) -> Sequence[Person]:
        """Persons with an id above ``after``, lowest id first, at most ``limit``."""
        found = sorted((p for p in self._persons.values() if p.id > after), key=lambda p: p.id)
        return found[: max(limit, 0)]

    def list_calls(
        self, *, status: CallStatus | None = None, after: int = 0, limit: int = 100
    ) -> Sequence[Call]:
        """Calls numbered above ``after`` (with ``status`` when given), lowest first."""
        found = sorted(
            (
                c
                for c in self._calls.values()
                if c.number > after and (status is None or c.status is status)
            ),
            key=lambda c: c.number,
        )
        return found[: max(limit, 0)]

    # -- reads ------------------------------------------------------------------------------
    def get_call(self, number: int) -> Call | None:
        """The call with this number, or ``None``."""
        return self._calls.get(number)

    def get_task(self, number: int) -> Task | None:
        """The task or approval with this number, or ``None``."""
        return self._tasks.get(number)

    def get_request(self, number: int) -> Request | None:
        """The request with this number, or ``None``."""
        return self._requests.get(number)

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        """Items of a summary (calls, requests or tasks) newest first, and the total.

        ``CALLS``: open calls the person owns. ``REQUESTS``: open requests the person owns,
        forwarded or was forwarded. ``TASKS``: tasks and approvals the person owns, may
        approve, forwarded or was forwarded, unless completed, approved or rejected. Raises
        :class:`RepositoryError` for an unknown kind.
        """
        records: list[_Record]
        ref_kind: EntityKind
        match summary_kind(kind):
            case SummaryKind.CALLS:
                ref_kind = EntityKind.CALL
                records = [
                    c
                    for c in self._calls.values()
                    if c.status is CallStatus.OPEN and c.owner_id == person_id
                ]
            case SummaryKind.REQUESTS:
                ref_kind = EntityKind.REQUEST
                records = [
                    r
                    for r in self._requests.values()
                    if r.status is not RequestStatus.CLOSED
                    and (
                        r.owner_id == person_id
                        or person_id in r.forwarded_ids
                        or person_id in r.forwarded_by_ids
                    )
                ]
            case SummaryKind.TASKS:
                ref_kind = EntityKind.TASK
                records = [
                    t
                    for t in self._tasks.values()
                    if t.status not in TASK_DONE_STATUSES
                    and (
                        t.owner_id == person_id
                        or person_id in t.approver_ids
                        or person_id in t.forwarded_ids
                        or person_id in t.forwarded_by_ids
                    )
                ]
            case unknown:
                assert_never(unknown)
        _newest_first(records, lambda r: r.last_update)
        items = [self._summary_item(ref_kind, r) for r in records[: max(limit, 0)]]
        return items, len(records)

    def _summary_item(self, kind: EntityKind, record: _Record) -> SummaryItem:
        owner = None if record.owner_id is None else self._persons.get(record.owner_id)
        assignee = (owner.name or owner.email) if owner is not None else record.group
        return SummaryItem(
            ref=EntityRef(kind, record.number),
            state=record.status.value,
            description=short_description(
                record.description, record.subject if isinstance(record, Call) else ""
            ),
            last_update=record.last_update,
            assignee=assignee,
        )

    def entity_for_message_id(self, message_id: str) -> EntityRef | None:
        """The record one of our own sent Message-IDs was about, or ``None``."""
        sent = self._sent.get(message_id_key(message_id))
        return None if sent is None else sent.ref

    def ledger_entry(self, mailbox: str, message_id: str, sha256: str) -> LedgerEntry | None:
        """The ledger entry of this message (Message-ID and content hash), or ``None``."""
        return self._ledger.get((mailbox, message_id, sha256))

    def entries(self, ref: EntityRef) -> Sequence[LogEntry]:
        """The log of a record (history, notes, objects, notifications), oldest first."""
        return [entry for entry, _ in self._entries.get(ref, ())]

    def attachments(self, ref: EntityRef) -> Sequence[Attachment]:
        """The files attached to a record, oldest first, with their bytes."""
        return [att for _, att in self._entries.get(ref, ()) if att is not None]

    def replies_sent_since(self, address: str, since: datetime) -> int:
        """How many replies went to ``address`` at or after ``since`` (for the reply budget)."""
        wanted, start = recipient_key(address), to_utc(since)
        return sum(1 for s in self._sent.values() if s.recipient_key == wanted and s.at >= start)

    def is_token_used(self, token_id: str) -> bool:
        """True when this approval token was already spent."""
        return token_id in self._tokens

    # -- reply outbox: reads ------------------------------------------------------------------
    def outbox_entry(self, reply_message_id: str) -> OutboxEntry | None:
        """The outbox entry of our reply with this Message-ID (angle brackets optional)."""
        return self._outbox.get(message_id_key(reply_message_id))

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        """PENDING replies due at ``now`` and not under a live claim, the longest due first."""
        at = to_utc(now)
        due = [
            entry
            for entry in self._outbox.values()
            if entry.status is ReplyStatus.PENDING
            and entry.next_attempt_at <= at
            and not _claimed_by_another(entry, "", at)
            and (mailbox is None or entry.mailbox == mailbox)
        ]
        due.sort(key=lambda e: (e.next_attempt_at, e.queued_at, message_id_key(e.reply_message_id)))
        return due[: max(limit, 0)]

    def list_replies(
        self,
        statuses: Collection[ReplyStatus] | None = None,
        *,
        mailbox: str | None = None,
        limit: int = 100,
    ) -> Sequence[OutboxEntry]:
        """Outbox entries with one of ``statuses`` (all when None), newest queued first."""
        found = [
            entry
            for entry in self._outbox.values()
            if (statuses is None or entry.status in statuses)
            and (mailbox is None or entry.mailbox == mailbox)
        ]
        found.sort(key=lambda e: message_id_key(e.reply_message_id), reverse=True)
        found.sort(key=lambda e: e.queued_at, reverse=True)
        return found[: max(limit, 0)]

    # -- seeding ----------------------------------------------------------------------------
    def put_person(self, person: Person) -> None:
        """Insert or replace a person record as given (id included)."""
        self._set(self._persons, person.id, person)

    def put_call(self, call: Call) -> None:
        """Insert or replace a call as given (number included); datetimes become UTC."""
        self._set(
            self._calls, call.number, attrs.evolve(call, last_update=_opt_utc(call.last_update))
        )

    def put_task(self, task: Task) -> None:
        """Insert or replace a task or approval as given; datetimes become UTC."""
        self._set(
            self._tasks, task.number, attrs.evolve(task, last_update=_opt_utc(task.last_update))
        )

    def put_request(self, request: Request) -> None:
        """Insert or replace a request as given; datetimes become UTC."""
        fixed = attrs.evolve(request, last_update=_opt_utc(request.last_update))
        self._set(self._requests, request.number, fixed)

    def put_role(self, role: SecurityRole) -> None:
        """Insert or replace a security role (by name)."""
        self._set(self._roles, role.name, role)

    def put_group(self, group: Group) -> None:
        """Insert or replace an assignment group (by name)."""
        self._set(self._groups, group.name, group)

    # -- writes -----------------------------------------------------------------------------
    def create_person(self, email: str, name: str, *, is_user: bool) -> Person:
        """A new person record with the next free id (flagged as a User when ``is_user``)."""
        top = max(self._persons, default=0)
        person_id = max(self._counters["next_person_id"], top + 1)
        person = Person(id=person_id, email=email, name=name, is_user=is_user)
        self._set(self._persons, person_id, person)
        self._set(self._counters, "next_person_id", person_id + 1)
        return person

    def set_user_flag(self, person_id: int) -> None:
        """Select the User flag on an existing person."""
        person = self._persons.get(person_id)
        if person is None:
            raise NotFoundError(f"person {person_id} does not exist")
        self._set(self._persons, person_id, attrs.evolve(person, is_user=True))

    def create_call(
        self,
        *,
        template: CallTemplate,
        user_id: int | None,
        logging_analyst_id: int | None,
        description: str,
        now: datetime,
    ) -> Call:
        """Log an open call with the next number (above every existing one, never reused)."""
        top = max(self._calls, default=0)
        number = max(self._counters["next_call_number"], top + 1)
        call = Call(
            number=number,
            status=CallStatus.OPEN,
            user_id=user_id,
            owner_id=template.assigned_analyst_id,
            group=template.assigned_group,
            partition=template.partition,
            description=description,
            logging_analyst_id=logging_analyst_id,
            updated=False,
            last_update=to_utc(now),
            call_screen_set=template.call_screen_set,
            ipk_status=template.ipk_status,
            ipk_stream=template.ipk_stream,
        )
        self._set(self._calls, number, call)
        self._set(self._counters, "next_call_number", number + 1)
        return call

    def _record(self, ref: EntityRef) -> _Record:
        record: _Record | None
        if ref.kind is EntityKind.CALL:
            record = self._calls.get(ref.number)
        elif ref.kind is EntityKind.TASK:
            record = self._tasks.get(ref.number)
        else:
            record = self._requests.get(ref.number)
        if record is None:
            raise NotFoundError(f"{ref} does not exist")
        return record

    def _change(self, ref: EntityRef, **changes: Any) -> None:
        """Replace the record ``ref`` with a copy carrying ``changes``."""
        record = self._record(ref)
        if isinstance(record, Call):
            self._set(self._calls, ref.number, attrs.evolve(record, **changes))
        elif isinstance(record, Task):
            self._set(self._tasks, ref.number, attrs.evolve(record, **changes))
        else:
            self._set(self._requests, ref.number, attrs.evolve(record, **changes))

    def _log(self, entry: LogEntry, attachment: Attachment | None = None) -> None:
        if entry.ref not in self._entries:
            self._set(self._entries, entry.ref, [])
        self._append(self._entries[entry.ref], (entry, attachment))

    def add_history(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Append a history entry to a call, task or request (its last update becomes ``now``)."""
        self._record(ref)
        at = to_utc(now)
        self._log(LogEntry(ref, EntryKind.HISTORY, text, author=author, at=at))
        self._change(ref, last_update=at)

    def add_note(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Add a note to a record (used on closed calls, which keep their state)."""
        self._record(ref)
        at = to_utc(now)
        self._log(LogEntry(ref, EntryKind.NOTE, text, author=author, at=at))
        self._change(ref, last_update=at)

    def attach(
        self, ref: EntityRef, attachment: Attachment, security_profile: str, now: datetime
    ) -> None:
        """Attach a file (bytes kept) as an object; its log line names the file and profile."""
        self._record(ref)
        at = to_utc(now)
        entry = LogEntry(
            ref, EntryKind.ATTACHMENT, attachment.filename, security_profile=security_profile, at=at
        )
        self._log(entry, attachment)
        self._change(ref, last_update=at)

    def mark_updated(self, ref: EntityRef) -> None:
        """Set the note icon that tells the handling analyst the record changed."""
        self._change(ref, updated=True)

    def close_call(self, number: int, by: str, now: datetime) -> None:
        """Close an open call; closing one that is already closed is refused."""
        ref = EntityRef(EntityKind.CALL, number)
        call = self._record(ref)
        if call.status is not CallStatus.OPEN:
            raise StaleRecordError(f"{ref} is already closed")
        at = to_utc(now)
        self._log(LogEntry(ref, EntryKind.STATUS, "closed", author=by, at=at))
        self._change(ref, status=CallStatus.CLOSED, last_update=at)

    def reopen_call(self, number: int, owner_id: int | None, group: str, now: datetime) -> None:
        """Reopen a closed call and assign it to ``owner_id`` and ``group``."""
        ref = EntityRef(EntityKind.CALL, number)
        call = self._record(ref)
        if call.status is not CallStatus.CLOSED:
            raise StaleRecordError(f"{ref} is not closed")
        at = to_utc(now)
        self._log(LogEntry(ref, EntryKind.STATUS, "reopened", at=at))
        self._change(ref, status=CallStatus.OPEN, owner_id=owner_id, group=group, last_update=at)

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        """Set a task's or approval's status (approve, reject, complete); approving or
        rejecting one that is no longer pending is refused."""
        ref = EntityRef(EntityKind.TASK, number)
        task = self._record(ref)
        if status in DECIDED_TASK_STATUSES and task.status is not TaskStatus.PENDING:
            raise StaleRecordError(f"{ref} is no longer pending")
        at = to_utc(now)
        self._log(LogEntry(ref, EntryKind.STATUS, status.value, author=by, at=at))
        self._change(ref, status=status, last_update=at)

    def record_notification(self, ref: EntityRef, text: str, now: datetime) -> None:
        """Write a NOTIFICATION log entry (the library sends the notification email itself)."""
        self._record(ref)
        self._log(LogEntry(ref, EntryKind.NOTIFICATION, text, at=to_utc(now)))

    def record_processed(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        decision_json: str,
        reply: OutgoingEmail | None,
        now: datetime,
    ) -> None:
        """Write the ledger entry (reply PENDING, or NONE without one); a second is refused."""
        key = (mailbox, message_id, sha256)
        if key in self._ledger:
            raise RepositoryError(
                f"message {message_id!r} ({sha256}) already recorded in {mailbox!r}"
            )
        at = to_utc(now)
        if reply is not None and message_id_key(reply.message_id) in self._outbox:
            raise RepositoryError(f"reply {reply.message_id!r} is in the outbox already")
        entry = LedgerEntry(
            mailbox=mailbox,
            message_id=message_id,
            sha256=sha256,
            decision_json=decision_json,
            reply=reply,
            reply_status=ReplyStatus.NONE if reply is None else ReplyStatus.PENDING,
            processed_at=at,
            seen_at=at,
        )
        self._set(self._ledger, key, entry)
        if reply is not None:
            queued = OutboxEntry(
                reply=reply,
                mailbox=mailbox,
                message_id=message_id,
                sha256=sha256,
                status=ReplyStatus.PENDING,
                queued_at=at,
                next_attempt_at=at,
            )
            self._set(self._outbox, message_id_key(reply.message_id), queued)

    # -- ledger retention (asm_email_rules.protocols.LedgerRetention) -------------------------
    def touch_ledger(self, mailbox: str, message_id: str, sha256: str, now: datetime) -> None:
        """Record that this entry's message was seen in a mailbox at ``now``."""
        key = (mailbox, message_id, sha256)
        entry = self._ledger.get(key)
        if entry is not None:
            self._set(self._ledger, key, attrs.evolve(entry, seen_at=to_utc(now)))

    def prune_ledger(self, mailbox: str, before: datetime) -> int:
        """Forget ``mailbox``'s entries last seen before ``before`` (their outbox entries
        too), except those with a PENDING reply and quarantine records; how many went."""
        limit = to_utc(before)
        doomed = [
            key
            for key, entry in self._ledger.items()
            if key[0] == mailbox
            and (entry.seen_at or entry.processed_at or limit) < limit
            and entry.reply_status is not ReplyStatus.PENDING
            and not is_quarantine_record(entry.message_id, entry.decision_json)
        ]
        for key in doomed:
            reply = self._ledger[key].reply
            if reply is not None:
                self._delete(self._outbox, message_id_key(reply.message_id))
            self._delete(self._ledger, key)
        return len(doomed)

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
        """Record the outcome of a send attempt for a ledger entry."""
        key = (mailbox, message_id, sha256)
        entry = self._ledger.get(key)
        if entry is None:
            raise NotFoundError(f"no ledger entry for {message_id!r} ({sha256}) in {mailbox!r}")
        changed = attrs.evolve(entry, reply_status=status, attempts=attempts, last_error=error)
        self._set(self._ledger, key, changed)
        if entry.reply is not None:
            reply_key = message_id_key(entry.reply.message_id)
            queued = self._outbox.get(reply_key)
            if queued is not None:
                queued = attrs.evolve(queued, status=status, attempts=attempts, last_error=error)
                self._set(self._outbox, reply_key, queued)

    # -- reply outbox and leases: writes ------------------------------------------------------
    def _set_outbox(self, entry: OutboxEntry) -> None:
        """Store an outbox entry and keep its ledger entry's reply state in step."""
        self._set(self._outbox, message_id_key(entry.reply_message_id), entry)
        key = (entry.mailbox, entry.message_id, entry.sha256)
        ledger = self._ledger.get(key)
        if ledger is not None:
            self._set(
                self._ledger,
                key,
                attrs.evolve(
                    ledger,
                    reply_status=entry.status,
                    attempts=entry.attempts,
                    last_error=entry.last_error,
                ),
            )

    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        """Claim a PENDING, due reply that no other sender holds; None when it cannot be."""
        entry = self._outbox.get(message_id_key(reply_message_id))
        at = to_utc(now)
        if (
            entry is None
            or entry.status is not ReplyStatus.PENDING
            or entry.next_attempt_at > at
            or _claimed_by_another(entry, owner, at)
        ):
            return None
        claimed = attrs.evolve(entry, claimed_by=owner, claimed_until=to_utc(until))
        self._set_outbox(claimed)
        return claimed

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
        """Record one attempt's outcome if ``owner`` holds the claim; release the claim."""
        check_finish(status, next_attempt_at)
        entry = self._outbox.get(message_id_key(reply_message_id))
        if entry is None or entry.status is not ReplyStatus.PENDING or entry.claimed_by != owner:
            return False
        at = to_utc(now)
        finished = attrs.evolve(
            entry,
            status=status,
            attempts=entry.attempts + 1,
            last_error=error,
            claimed_by="",
            claimed_until=None,
            sent_at=at if status is ReplyStatus.SENT else entry.sent_at,
            next_attempt_at=to_utc(next_attempt_at) if next_attempt_at else entry.next_attempt_at,
        )
        self._set_outbox(finished)
        return True

    def requeue_reply(self, reply_message_id: str, now: datetime) -> OutboxEntry:
        """Put a FAILED reply back in the outbox, due at ``now`` with a new retry window."""
        entry = self._outbox.get(message_id_key(reply_message_id))
        if entry is None:
            raise NotFoundError(f"no reply {reply_message_id!r} in the outbox")
        if entry.status is not ReplyStatus.FAILED:
            raise RepositoryError(
                f"reply {reply_message_id!r} is {entry.status.value}, not failed: not requeued"
            )
        at = to_utc(now)
        queued = attrs.evolve(
            entry,
            status=ReplyStatus.PENDING,
            queued_at=at,
            next_attempt_at=at,
            claimed_by="",
            claimed_until=None,
        )
        self._set_outbox(queued)
        return queued

    def acquire_lease(self, name: str, owner: str, now: datetime, until: datetime) -> Lease:
        """Take or renew the lease ``name`` unless another owner holds it past ``now``."""
        held = self._leases.get(name)
        if held is not None and held.owner != owner and held.expires > to_utc(now):
            return held
        lease = Lease(name, owner, to_utc(until))
        self._set(self._leases, name, lease)
        return lease

    def release_lease(self, name: str, owner: str) -> None:
        """Give up the lease ``name`` if ``owner`` holds it."""
        held = self._leases.get(name)
        if held is not None and held.owner == owner:
            if self._undo is not None:
                self._undo.append(lambda: self._leases.__setitem__(name, held))
            del self._leases[name]

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        """Remember a Message-ID we sent (threading, reply budget); the same id replaces."""
        sent = _Sent(ref, recipient_key(to), to_utc(now))
        self._set(self._sent, message_id_key(message_id), sent)

    def prune_sent_messages(self, before: datetime) -> int:
        """Forget our Message-IDs about no record sent before ``before`` (only the reply budget
        reads them, for the last hour); those about a record stay, for threading."""
        limit = to_utc(before)
        doomed = [key for key, sent in self._sent.items() if sent.ref is None and sent.at < limit]
        for key in doomed:
            self._delete(self._sent, key)
        return len(doomed)

    def use_token(self, token_id: str, now: datetime) -> None:
        """Spend an approval token; spending it again keeps the first time."""
        if token_id not in self._tokens:
            self._set(self._tokens, token_id, to_utc(now))

    def use_token_until(self, token_id: str, now: datetime, expires_at: datetime) -> None:
        """:meth:`use_token` for a token refused anyway from ``expires_at`` on (then
        :meth:`prune_used_tokens` forgets it); spending it again keeps the first time."""
        if token_id not in self._tokens:
            self._set(self._tokens, token_id, to_utc(now))
            self._set(self._token_expiry, token_id, to_utc(expires_at))

    def prune_used_tokens(self, now: datetime) -> int:
        """Forget the used approval tokens expired at ``now``; those of unknown expiry stay."""
        limit = to_utc(now)
        doomed = [key for key, expiry in self._token_expiry.items() if expiry <= limit]
        for key in doomed:
            self._delete(self._token_expiry, key)
            self._delete(self._tokens, key)
        return len(doomed)

    # -- quarantine (asm_email_rules.quarantine.QuarantineStore) -----------------------------
    def quarantine_message(
        self,
        account: str,
        raw: bytes,
        reason: str,
        now: datetime,
        *,
        source: str,
        mailbox_key: str = "",
    ) -> int:
        """Keep ``raw`` with ``reason``; returns the new entry's id (1, 2, ...; an id is never
        given again, also after its entry was purged)."""
        entry_id = self._counters.get("next_quarantine_id", 1)
        self._set(self._counters, "next_quarantine_id", entry_id + 1)
        entry = QuarantinedMessage(
            id=entry_id,
            account=account,
            source=source,
            sha256=hashlib.sha256(raw).hexdigest(),
            reason=reason,
            raw=raw,
            quarantined_at=to_utc(now),
            mailbox_key=mailbox_key,
        )
        self._set(self._quarantine, entry_id, entry)
        return entry_id

    def quarantined(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> Sequence[QuarantinedMessage]:
        """The entries in ``state`` (every state when None), oldest first."""
        return [
            entry
            for _, entry in sorted(self._quarantine.items())
            if (state is None or entry.state is state)
            and (account is None or entry.account == account)
        ]

    def count_quarantined(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> int:
        """How many entries :meth:`quarantined` would return."""
        return len(self.quarantined(state=state, account=account))

    def quarantine_listing(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> Sequence[QuarantineListing]:
        """:meth:`quarantined` for a listing (the first 64 KiB of each message, its size)."""
        return [
            QuarantineListing.of(entry) for entry in self.quarantined(state=state, account=account)
        ]

    def quarantined_message(self, entry_id: int) -> QuarantinedMessage | None:
        """The entry with this id, or None."""
        return self._quarantine.get(entry_id)

    def resolve_quarantined(
        self, entry_id: int, state: QuarantineState, resolution: str, now: datetime
    ) -> None:
        """Mark the entry released, replayed or held again, saying what was done."""
        entry = self._quarantine.get(entry_id)
        if entry is None:
            raise NotFoundError(f"no quarantined message {entry_id}")
        changed = attrs.evolve(entry, state=state, resolution=resolution, resolved_at=to_utc(now))
        self._set(self._quarantine, entry_id, changed)

    def quarantine_outline(
        self,
        before: datetime,
        *,
        states: Collection[QuarantineState] = RESOLVED_STATES,
        account: str | None = None,
    ) -> Sequence[QuarantineOutline]:
        """The entries :meth:`purge_quarantined` would forget (no message read)."""
        limit = to_utc(before)
        return [
            QuarantineOutline(e.id, e.account, e.source, e.state, last_change(e), len(e.raw))
            for _, e in sorted(self._quarantine.items())
            if e.state in states
            and (account is None or e.account == account)
            and last_change(e) < limit
        ]

    def purge_quarantined(
        self,
        before: datetime,
        *,
        states: Collection[QuarantineState] = RESOLVED_STATES,
        account: str | None = None,
    ) -> int:
        """Forget the entries in ``states`` last changed before ``before`` (of ``account``
        only, when given); how many went. The ledger is not touched."""
        doomed = self.quarantine_outline(before, states=states, account=account)
        for entry in doomed:
            self._delete(self._quarantine, entry.id)
        return len(doomed)

    def forget_quarantine_record(self, mailbox: str, sha256: str) -> None:
        """Drop the ledger's quarantine record of these bytes (message id empty)."""
        key = (mailbox, "", sha256)
        entry = self._ledger.get(key)
        if entry is None:
            return
        try:
            data = json.loads(entry.decision_json)
        except ValueError:
            return
        if isinstance(data, dict) and "quarantined" in data:
            if self._undo is not None:
                self._undo.append(lambda: self._ledger.__setitem__(key, entry))
            del self._ledger[key]
