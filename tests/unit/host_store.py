"""A host's own store, written the way docs/integrators.md and docs/storage.md describe it.

Plain dicts, its own layout, none of the library's adapters: only the methods of
``SeedableRepository`` (no optional ones: no ``nested_rollback``, no ``LedgerRetention``, no
quarantine, no ``use_token_until`` or pruning). Its ``transaction()`` snapshots the whole
store at the outermost block and puts it back when the block raises.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import attrs

from asm_email_rules import (
    Attachment,
    Call,
    CallStatus,
    CallTemplate,
    EntityKind,
    EntityRef,
    EntryKind,
    Group,
    Lease,
    LedgerEntry,
    LogEntry,
    NotFoundError,
    OutboxEntry,
    OutgoingEmail,
    Person,
    ReplyStatus,
    RepositoryError,
    Request,
    RequestStatus,
    SecurityRole,
    StaleRecordError,
    SummaryItem,
    SummaryKind,
    Task,
    TaskStatus,
)
from asm_email_rules.addresses import mailbox_key, normalise_address
from asm_email_rules.summary_text import summary_description

LedgerKey = tuple[str, str, str]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>")


class HostStore:
    """The helpdesk's tables as dicts; every value the library reads back is a model value."""

    def __init__(self) -> None:
        self.persons: dict[int, Person] = {}
        self.roles: dict[str, SecurityRole] = {}
        self.groups: dict[str, Group] = {}
        self.calls: dict[int, Call] = {}
        self.tasks: dict[int, Task] = {}
        self.requests: dict[int, Request] = {}
        self.log: list[LogEntry] = []
        self.files: list[tuple[EntityRef, Attachment]] = []
        self.ledger: dict[LedgerKey, LedgerEntry] = {}
        self.outbox: dict[str, OutboxEntry] = {}
        self.sent: dict[str, tuple[EntityRef | None, str, datetime]] = {}
        self.tokens: dict[str, datetime] = {}
        self.leases: dict[str, Lease] = {}
        self.last_call_number = 0
        self.last_person_id = 0
        self._depth = 0

    # -- units of work --------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        saved = {k: copy.copy(v) for k, v in vars(self).items() if k != "_depth"}
        self._depth = 1
        try:
            yield
        except BaseException:
            vars(self).update(saved)
            raise
        finally:
            self._depth = 0

    # -- directory ----------------------------------------------------------------------------
    def persons_by_address(self, address: str) -> Sequence[Person]:
        wanted = normalise_address(address)
        return [p for _, p in sorted(self.persons.items()) if normalise_address(p.email) == wanted]

    def get_person(self, person_id: int) -> Person | None:
        return self.persons.get(person_id)

    def get_role(self, name: str) -> SecurityRole | None:
        return self.roles.get(name)

    def get_group(self, name: str) -> Group | None:
        return self.groups.get(name)

    # -- reads ------------------------------------------------------------------------------
    def get_call(self, number: int) -> Call | None:
        return self.calls.get(number)

    def get_task(self, number: int) -> Task | None:
        return self.tasks.get(number)

    def get_request(self, number: int) -> Request | None:
        return self.requests.get(number)

    def _assignee(self, owner_id: int | None, group: str) -> str:
        owner = self.persons.get(owner_id) if owner_id is not None else None
        if owner is not None:
            return owner.name or owner.email
        return group

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        rows: list[tuple[EntityRef, str, str, datetime | None, str]] = []
        if kind == SummaryKind.CALLS:
            for c in self.calls.values():
                if c.status is CallStatus.OPEN and c.owner_id == person_id:
                    text = summary_description(c.description, c.subject)
                    rows.append(
                        (
                            EntityRef(EntityKind.CALL, c.number),
                            c.status.value,
                            text,
                            c.last_update,
                            self._assignee(c.owner_id, c.group),
                        )
                    )
        elif kind == SummaryKind.REQUESTS:
            for r in self.requests.values():
                mine = {r.owner_id, *r.forwarded_ids, *r.forwarded_by_ids}
                if r.status is not RequestStatus.CLOSED and person_id in mine:
                    rows.append(
                        (
                            EntityRef(EntityKind.REQUEST, r.number),
                            r.status.value,
                            summary_description(r.description),
                            r.last_update,
                            self._assignee(r.owner_id, r.group),
                        )
                    )
        elif kind == SummaryKind.TASKS:
            done = {TaskStatus.COMPLETED, TaskStatus.APPROVED, TaskStatus.REJECTED}
            for t in self.tasks.values():
                mine = {t.owner_id, *t.approver_ids, *t.forwarded_ids, *t.forwarded_by_ids}
                if t.status not in done and person_id in mine:
                    rows.append(
                        (
                            EntityRef(EntityKind.TASK, t.number),
                            t.status.value,
                            summary_description(t.description),
                            t.last_update,
                            self._assignee(t.owner_id, t.group),
                        )
                    )
        else:
            raise RepositoryError(f"unknown summary kind {kind!r}")
        rows.sort(key=lambda r: r[0].number, reverse=True)
        rows.sort(key=lambda r: (r[3] is None, -(r[3].timestamp()) if r[3] else 0))
        items = [SummaryItem(*row) for row in rows[:limit]]
        return items, len(rows)

    def entity_for_message_id(self, message_id: str) -> EntityRef | None:
        found = self.sent.get(_bare(message_id))
        return found[0] if found else None

    def ledger_entry(self, mailbox: str, message_id: str, sha256: str) -> LedgerEntry | None:
        return self.ledger.get((mailbox, message_id, sha256))

    def entries(self, ref: EntityRef) -> Sequence[LogEntry]:
        return [e for e in self.log if e.ref == ref]

    def attachments(self, ref: EntityRef) -> Sequence[Attachment]:
        return [a for r, a in self.files if r == ref]

    def replies_sent_since(self, address: str, since: datetime) -> int:
        wanted = mailbox_key(address)
        return sum(
            1 for _, to, at in self.sent.values() if mailbox_key(to) == wanted and at >= since
        )

    def is_token_used(self, token_id: str) -> bool:
        return token_id in self.tokens

    # -- the outbox -----------------------------------------------------------------------
    def outbox_entry(self, reply_message_id: str) -> OutboxEntry | None:
        return self.outbox.get(_bare(reply_message_id))

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        due = [
            e
            for e in self.outbox.values()
            if e.status is ReplyStatus.PENDING
            and e.next_attempt_at <= now
            and (e.claimed_until is None or e.claimed_until <= now)
            and (mailbox is None or e.mailbox == mailbox)
        ]
        due.sort(key=lambda e: e.next_attempt_at)
        return due[:limit]

    def list_replies(
        self,
        statuses: Collection[ReplyStatus] | None = None,
        *,
        mailbox: str | None = None,
        limit: int = 100,
    ) -> Sequence[OutboxEntry]:
        found = [
            e
            for e in self.outbox.values()
            if (statuses is None or e.status in statuses)
            and (mailbox is None or e.mailbox == mailbox)
        ]
        found.sort(key=lambda e: e.queued_at, reverse=True)
        return found[:limit]

    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        entry = self.outbox.get(_bare(reply_message_id))
        if entry is None or entry.status is not ReplyStatus.PENDING or entry.next_attempt_at > now:
            return None
        held = entry.claimed_until
        if entry.claimed_by and entry.claimed_by != owner and held is not None and held > now:
            return None
        claimed = attrs.evolve(entry, claimed_by=owner, claimed_until=_utc(until))
        self.outbox[_bare(reply_message_id)] = claimed
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
        if status is ReplyStatus.PENDING and next_attempt_at is None:
            raise ValueError("PENDING needs next_attempt_at")
        key = _bare(reply_message_id)
        entry = self.outbox.get(key)
        if entry is None or entry.claimed_by != owner or entry.status is not ReplyStatus.PENDING:
            return False
        done = attrs.evolve(
            entry,
            status=status,
            attempts=entry.attempts + 1,
            last_error=error,
            claimed_by="",
            claimed_until=None,
            sent_at=_utc(now) if status is ReplyStatus.SENT else entry.sent_at,
            next_attempt_at=_utc(next_attempt_at) if next_attempt_at else entry.next_attempt_at,
        )
        self.outbox[key] = done
        self._follow(done)
        return True

    def _follow(self, entry: OutboxEntry) -> None:
        key = (entry.mailbox, entry.message_id, entry.sha256)
        if key in self.ledger:
            self.ledger[key] = attrs.evolve(
                self.ledger[key],
                reply_status=entry.status,
                attempts=entry.attempts,
                last_error=entry.last_error,
            )

    def requeue_reply(self, reply_message_id: str, now: datetime) -> OutboxEntry:
        key = _bare(reply_message_id)
        entry = self.outbox.get(key)
        if entry is None:
            raise NotFoundError(f"no reply {reply_message_id}")
        if entry.status is not ReplyStatus.FAILED:
            raise RepositoryError(f"reply {reply_message_id} is not failed")
        now = _utc(now)
        again = attrs.evolve(entry, status=ReplyStatus.PENDING, queued_at=now, next_attempt_at=now)
        self.outbox[key] = again
        self._follow(again)
        return again

    def acquire_lease(self, name: str, owner: str, now: datetime, until: datetime) -> Lease:
        held = self.leases.get(name)
        if held is None or held.owner == owner or held.expires <= now:
            held = Lease(name, owner, _utc(until))
            self.leases[name] = held
        return held

    def release_lease(self, name: str, owner: str) -> None:
        held = self.leases.get(name)
        if held is not None and held.owner == owner:
            del self.leases[name]

    # -- writes -----------------------------------------------------------------------------
    def create_person(self, email: str, name: str, *, is_user: bool) -> Person:
        self.last_person_id = max(self.last_person_id, *self.persons, 0) + 1
        person = Person(id=self.last_person_id, email=email, name=name, is_user=is_user)
        self.persons[person.id] = person
        return person

    def set_user_flag(self, person_id: int) -> None:
        person = self.persons.get(person_id)
        if person is None:
            raise NotFoundError(f"no person {person_id}")
        self.persons[person_id] = attrs.evolve(person, is_user=True)

    def create_call(
        self,
        *,
        template: CallTemplate,
        user_id: int | None,
        logging_analyst_id: int | None,
        description: str,
        now: datetime,
    ) -> Call:
        self.last_call_number = max(self.last_call_number, *self.calls, 0) + 1
        call = Call(
            number=self.last_call_number,
            user_id=user_id,
            owner_id=template.assigned_analyst_id,
            group=template.assigned_group,
            partition=template.partition,
            description=description,
            logging_analyst_id=logging_analyst_id,
            last_update=_utc(now),
            call_screen_set=template.call_screen_set,
            ipk_status=template.ipk_status,
            ipk_stream=template.ipk_stream,
        )
        self.calls[call.number] = call
        return call

    def _record(self, ref: EntityRef) -> dict[int, Any]:
        tables: dict[EntityKind, dict[int, Any]] = {
            EntityKind.CALL: self.calls,
            EntityKind.TASK: self.tasks,
            EntityKind.REQUEST: self.requests,
        }
        table = tables[ref.kind]
        if ref.number not in table:
            raise NotFoundError(f"no {ref.kind.value} {ref.number}")
        return table

    def _log(
        self,
        ref: EntityRef,
        kind: EntryKind,
        text: str,
        author: str,
        now: datetime,
        profile: str | None = None,
        touch: bool = True,
    ) -> None:
        table = self._record(ref)
        self.log.append(LogEntry(ref, kind, text, author, profile, _utc(now)))
        if touch:
            table[ref.number] = attrs.evolve(table[ref.number], last_update=_utc(now))

    def add_history(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        self._log(ref, EntryKind.HISTORY, text, author, now)

    def add_note(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        self._log(ref, EntryKind.NOTE, text, author, now)

    def attach(
        self, ref: EntityRef, attachment: Attachment, security_profile: str, now: datetime
    ) -> None:
        self._log(ref, EntryKind.ATTACHMENT, attachment.filename, "", now, security_profile)
        self.files.append((ref, attachment))

    def mark_updated(self, ref: EntityRef) -> None:
        table = self._record(ref)
        table[ref.number] = attrs.evolve(table[ref.number], updated=True)

    def close_call(self, number: int, by: str, now: datetime) -> None:
        call = self.calls.get(number)
        if call is None:
            raise NotFoundError(f"no call {number}")
        if call.status is CallStatus.CLOSED:
            raise StaleRecordError(f"call {number} is already closed")
        self._log(EntityRef(EntityKind.CALL, number), EntryKind.STATUS, "closed", by, now)
        self.calls[number] = attrs.evolve(self.calls[number], status=CallStatus.CLOSED)

    def reopen_call(self, number: int, owner_id: int | None, group: str, now: datetime) -> None:
        call = self.calls.get(number)
        if call is None:
            raise NotFoundError(f"no call {number}")
        if call.status is CallStatus.OPEN:
            raise StaleRecordError(f"call {number} is open")
        self._log(EntityRef(EntityKind.CALL, number), EntryKind.STATUS, "reopened", "", now)
        self.calls[number] = attrs.evolve(
            self.calls[number], status=CallStatus.OPEN, owner_id=owner_id, group=group
        )

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        if number not in self.tasks:
            raise NotFoundError(f"no task {number}")
        decides = status in (TaskStatus.APPROVED, TaskStatus.REJECTED)
        if decides and self.tasks[number].status is not TaskStatus.PENDING:
            raise StaleRecordError(f"task {number} is no longer pending")
        self._log(EntityRef(EntityKind.TASK, number), EntryKind.STATUS, status.value, by, now)
        self.tasks[number] = attrs.evolve(self.tasks[number], status=status)

    def record_notification(self, ref: EntityRef, text: str, now: datetime) -> None:
        self._log(ref, EntryKind.NOTIFICATION, text, "", now, touch=False)

    def record_processed(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        decision_json: str,
        reply: OutgoingEmail | None,
        now: datetime,
    ) -> None:
        key = (mailbox, message_id, sha256)
        if key in self.ledger:
            raise RepositoryError(f"already recorded: {key}")
        if reply is not None and _bare(reply.message_id) in self.outbox:
            raise RepositoryError(f"reply {reply.message_id} already in the outbox")
        now = _utc(now)
        status = ReplyStatus.PENDING if reply is not None else ReplyStatus.NONE
        self.ledger[key] = LedgerEntry(
            mailbox, message_id, sha256, decision_json, reply, status, 0, "", now, now
        )
        if reply is not None:
            self.outbox[_bare(reply.message_id)] = OutboxEntry(
                reply, mailbox, message_id, sha256, status, now, now
            )

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
        key = (mailbox, message_id, sha256)
        entry = self.ledger.get(key)
        if entry is None:
            raise NotFoundError(f"no ledger entry {key}")
        self.ledger[key] = attrs.evolve(
            entry, reply_status=status, attempts=attempts, last_error=error
        )
        if entry.reply is not None:
            name = _bare(entry.reply.message_id)
            if name in self.outbox:
                self.outbox[name] = attrs.evolve(
                    self.outbox[name], status=status, attempts=attempts, last_error=error
                )

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        self.sent[_bare(message_id)] = (ref, to, _utc(now))

    def use_token(self, token_id: str, now: datetime) -> None:
        self.tokens.setdefault(token_id, _utc(now))

    # -- seeding ----------------------------------------------------------------------------
    def put_person(self, person: Person) -> None:
        self.persons[person.id] = person

    def put_call(self, call: Call) -> None:
        self.calls[call.number] = call

    def put_task(self, task: Task) -> None:
        self.tasks[task.number] = task

    def put_request(self, request: Request) -> None:
        self.requests[request.number] = request

    def put_role(self, role: SecurityRole) -> None:
        self.roles[role.name] = role

    def put_group(self, group: Group) -> None:
        self.groups[group.name] = group

    def list_persons(self, *, after: int = 0, limit: int = 100) -> Sequence[Person]:
        return [p for i, p in sorted(self.persons.items()) if i > after][:limit]

    def list_calls(
        self, *, status: CallStatus | None = None, after: int = 0, limit: int = 100
    ) -> Sequence[Call]:
        return [
            c
            for n, c in sorted(self.calls.items())
            if n > after and (status is None or c.status is status)
        ][:limit]
