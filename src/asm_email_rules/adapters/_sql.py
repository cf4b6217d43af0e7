"""The SQL that the SQLite and PostgreSQL stores share, written once.

:class:`SqlRepository` holds every query and every row mapping the two stores have in common:
the directory, the records, the ledger and its reply outbox, the leases, the quarantine and the
seeding. A store subclasses it and supplies only what truly differs between the databases:

- how a statement runs (:meth:`SqlRepository._execute`, :meth:`SqlRepository._executemany`)
  and how its failures become :class:`~asm_email_rules.errors.RepositoryError` naming the store;
- transactions (:meth:`SqlRepository.transaction`) and read snapshots;
- how a time is stored (:meth:`SqlRepository._ts`: ISO-8601 UTC text in SQLite, ``timestamptz``
  in PostgreSQL); both read back as aware UTC datetimes (:func:`read_moment`);
- writes on a record (:meth:`SqlRepository._write_on`), reads of a task, request, role or summary
  in one snapshot, new call numbers and person ids, reply claims, and ``record_processed``.

The shared SQL is written for SQLite's ``qmark`` (``?``) and ``named`` (``:name``) parameters,
in the dialect both databases speak (``ON CONFLICT``, ``RETURNING``, ``CAST``, ``substr``,
``TRUE``); the PostgreSQL store rewrites it to psycopg's ``%s`` and ``%(name)s`` once per text.
Booleans are written as Python ``bool`` and read back with ``bool()`` (SQLite stores 0 and 1).
"""

from __future__ import annotations

import abc
import enum
import functools
import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, assert_never

import attrs

from asm_email_rules.adapters._repository import (
    QUARANTINE_RECORD_PREFIX,
    TASK_DONE_STATUSES,
    address_key,
    check_finish,
    legacy_address_keys,
    message_id_key,
    recipient_key,
    short_description,
    summary_kind,
    to_utc,
)
from asm_email_rules.errors import (
    NotFoundError,
    RepositoryError,
    StaleRecordError,
    StoreUnavailableError,
)
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
    Right,
    SecurityRole,
    SummaryItem,
    SummaryKind,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.quarantine import (
    LISTING_HEAD_BYTES,
    RESOLVED_STATES,
    QuarantinedMessage,
    QuarantineListing,
    QuarantineOutline,
    QuarantineState,
)
from asm_email_rules.settings import CallTemplate

__all__ = [
    "RECORD_TABLES",
    "REKEY_ADDRESSES",
    "Cursor",
    "Migration",
    "Params",
    "SqlRepository",
    "check_constraint",
    "read_moment",
    "reply_from_json",
    "reply_to_json",
]

Migration = tuple[str, ...]
"""One schema step: SQL statements run in order inside one transaction."""

REKEY_ADDRESSES = "-- recompute persons.email_key"
"""A migration statement run in Python, not SQL: every person's ``email_key`` recomputed with
today's :func:`~asm_email_rules.adapters._repository.address_key` (its form changed in schema
6: IDN domains in Unicode, lower case one character to one instead of case folding), so people
stored before are still found."""

Params = Sequence[Any] | Mapping[str, Any]
"""Statement parameters: a sequence for ``?`` marks, a mapping for ``:name`` marks."""

RECORD_TABLES: dict[EntityKind, str] = {
    EntityKind.CALL: "calls",
    EntityKind.TASK: "tasks",
    EntityKind.REQUEST: "requests",
}
"""The table that holds each kind of record (numbered by its ``number`` column)."""


class Cursor(Protocol):
    """What the shared code uses of a DB-API cursor (``sqlite3`` and ``psycopg`` both have it)."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed (-1 when the driver cannot tell)."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...


def check_constraint(column: str, enum_type: type[enum.Enum]) -> str:
    """A CHECK constraint that keeps ``column`` to the values of ``enum_type``."""
    values = ", ".join(f"'{member.value}'" for member in enum_type)
    return f"CHECK ({column} IN ({values}))"


def read_moment(value: str | datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: ISO-8601 text (SQLite) or a datetime
    (PostgreSQL ``timestamptz``); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return to_utc(value)


def _moment(value: str | datetime) -> datetime:
    """:func:`read_moment` of a column that is never NULL."""
    moment = read_moment(value)
    assert moment is not None
    return moment


def reply_to_json(reply: OutgoingEmail) -> str:
    """``reply`` as a JSON object (the ledger's stored form)."""
    return json.dumps(
        {
            "to": reply.to,
            "subject": reply.subject,
            "body": reply.body,
            "sender": reply.sender,
            "message_id": reply.message_id,
            "in_reply_to": reply.in_reply_to,
            "references": list(reply.references),
            "extra_headers": [list(pair) for pair in reply.extra_headers],
        },
        ensure_ascii=False,
    )


def reply_from_json(text: str) -> OutgoingEmail:
    """The reply that :func:`reply_to_json` stored."""
    data = json.loads(text)
    return OutgoingEmail(
        to=data["to"],
        subject=data["subject"],
        body=data["body"],
        sender=data.get("sender", ""),
        message_id=data.get("message_id", ""),
        in_reply_to=data.get("in_reply_to"),
        references=tuple(data.get("references", ())),
        extra_headers=tuple((name, value) for name, value in data.get("extra_headers", ())),
    )


PRUNE_BATCH = 1_000
"""Ledger entries one statement of :meth:`SqlRepository.prune_ledger` forgets at most (a few
milliseconds of SQLite's write lock): a backlog of a million entries is a thousand short
commits that other writers interleave with, not one DELETE holding the lock for seconds."""

_REMEMBERED_REPLY_CHARS = 4096
"""The longest stored reply text :func:`_stored_reply` remembers: a template reply's JSON is
well under 2,000 characters; a notification quoting a long message is parsed each time. The
256 texts and their replies stay under about 0.5 MB for such replies, 8 MB at the very worst
(every character four bytes)."""


@functools.lru_cache(maxsize=256)
def _remembered_reply(text: str) -> OutgoingEmail:
    return reply_from_json(text)


def _stored_reply(text: str) -> OutgoingEmail:
    """:func:`reply_from_json`, remembered for the last 256 texts of at most
    :data:`_REMEMBERED_REPLY_CHARS` (more than a mailbox session's replies, listed as due
    together, then claimed one by one): on its way out a reply is read back two or three
    times, always the same frozen value."""
    if len(text) > _REMEMBERED_REPLY_CHARS:
        return reply_from_json(text)
    return _remembered_reply(text)


class SqlRepository(abc.ABC):
    """The shared part of the SQL stores (see the module docstring for what a store supplies).

    Every public method here is one of :class:`~asm_email_rules.protocols.SeedableRepository`,
    :class:`~asm_email_rules.protocols.LedgerRetention`,
    :class:`~asm_email_rules.quarantine.QuarantineStore`, or the command line's desk helpers
    (``next_person_id``, ``recent_calls``), with the semantics the conformance kit checks.
    """

    _where: str
    """The store in error messages: a file path, or a server and database (never a password)."""

    _FOR_UPDATE: ClassVar[str] = ""
    """Appended to a read of a row the same transaction then changes: ``" FOR UPDATE"`` where
    writers do not hold a lock on the whole database (PostgreSQL), empty in SQLite."""

    _PENDING_REPLIES: ClassVar[str] = ""
    """Appended to ``FROM ledger`` when only pending replies are listed: SQLite, whose
    planner has no statistics, takes the mailbox's age index for ``mailbox = ?`` and reads
    every entry of the mailbox unless told (``" INDEXED BY ledger_replies_due"``)."""

    # -- what a store supplies ----------------------------------------------------------------
    @abc.abstractmethod
    def _execute(self, sql: str, params: Params = ()) -> Cursor:
        """Run one statement of the shared SQL; a database failure raises RepositoryError."""

    @abc.abstractmethod
    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement of the shared SQL once per parameter row."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection; an open transaction is rolled back by the database."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    _depth: int
    """How many ``transaction()`` blocks are open (0: autocommit); the store sets it to 0."""

    nested_rollback: ClassVar[bool] = True
    """A nested :meth:`transaction` is an SQL ``SAVEPOINT``: when its block raises, only its own
    writes are undone and the outer unit of work goes on (:class:`~asm_email_rules.protocols.
    Repository`), so the polling service may commit several messages at once."""

    _lost: str = ""
    """Why the open transaction cannot be kept whole (a savepoint could not be rolled back to;
    :meth:`_broken` said so: SQLite rolled it back on its own, as it may on a full disk, or a
    PostgreSQL statement failed outside a savepoint and aborted it); empty while it can.
    Every nested unit and the outer commit then raise, so no write of it is taken for kept,
    and no commit turns silently into a rollback."""

    @abc.abstractmethod
    def _begin(self) -> None:
        """Start a transaction (the store's ``BEGIN``)."""

    @abc.abstractmethod
    def _commit(self) -> None:
        """Commit the open transaction; on failure roll it back and raise RepositoryError."""

    @abc.abstractmethod
    def _rollback(self) -> None:
        """Roll back the open transaction, if any; never raises (a failure is logged)."""

    @abc.abstractmethod
    def _broken(self) -> str:
        """Why the open transaction cannot be committed whole (the database rolled it back on
        its own, or a statement failed and aborted it), or empty while it can."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A unit of work: ``BEGIN`` (:meth:`_begin`) ... ``COMMIT``; ``ROLLBACK`` on any
        exception, which propagates. A nested call is a ``SAVEPOINT`` of the outer one: kept
        (``RELEASE``) only as part of the outer unit, undone alone (``ROLLBACK TO``) when its
        block raises. Raises RepositoryError when the store fails, and
        :class:`~asm_email_rules.errors.StoreUnavailableError` for a nested unit (or the
        outer commit) of a transaction the database already rolled back."""
        if self._depth:
            with self._savepoint():
                yield
            return
        self._begin()
        self._depth, self._lost = 1, ""
        try:
            yield
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        lost = self._lost or self._broken()
        if lost:
            self._rollback()
            raise StoreUnavailableError(f"{self._where}: {lost}; nothing of it was kept")
        self._commit()

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """A nested unit of work (``SAVEPOINT``): see :meth:`transaction`."""
        self._lost = self._lost or self._broken()
        if self._lost:
            raise StoreUnavailableError(f"{self._where}: {self._lost}")
        name = f"unit_{self._depth}"
        self._execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            try:
                self._execute(f"ROLLBACK TO SAVEPOINT {name}")
                self._execute(f"RELEASE SAVEPOINT {name}")
            except RepositoryError as exc:
                self._lost = f"the open transaction was rolled back by the database ({exc})"
            raise
        self._depth -= 1
        self._execute(f"RELEASE SAVEPOINT {name}")

    def _refuse_newer(self, version: int, known: int) -> None:
        """Raise RepositoryError when the database's schema ``version`` is newer than the
        ``known`` migrations."""
        if version > known:
            raise RepositoryError(
                f"{self._where}: database schema version {version} is newer than this "
                f"asm-email-rules knows (up to {known}); upgrade the library to open it"
            )

    @abc.abstractmethod
    def _snapshot(self) -> AbstractContextManager[None]:
        """A read transaction, so a read made of several statements sees one state."""

    @staticmethod
    @abc.abstractmethod
    def _ts(moment: datetime) -> Any:
        """``moment`` as the store keeps a time (UTC)."""

    @abc.abstractmethod
    def _write_on(
        self,
        ref: EntityRef,
        entry: tuple[EntryKind, str, str] | None,
        assignments: str,
        *,
        at: datetime,
        when_status: str | None = None,
        security_profile: str | None = None,
        attachment: Attachment | None = None,
        **params: Any,
    ) -> str:
        """Atomically on record ``ref``: apply ``assignments`` (shared SQL; ``:at`` is ``at``,
        other ``:names`` come from ``params``), and append the log ``entry`` (kind, text,
        author) with its ``attachment``. With ``when_status``, nothing is written unless the
        record's status was that one. Returns the status as it was (may be empty when no
        ``when_status`` was given); :class:`NotFoundError` when there is no such record."""

    @abc.abstractmethod
    def _task_row(self, number: int) -> Sequence[Any] | None:
        """Task ``number``'s row in :attr:`_TASK_COLUMNS` order, then its approver, forwarded
        and forwarded-by person ids (each in position order), read in one snapshot."""

    @abc.abstractmethod
    def _request_row(self, number: int) -> Sequence[Any] | None:
        """Request ``number``'s row in :attr:`_REQUEST_COLUMNS` order, then its forwarded and
        forwarded-by person ids, read in one snapshot."""

    @abc.abstractmethod
    def _role_rights(self, name: str) -> Sequence[str] | None:
        """The right names of role ``name`` (None when there is no such role), in one snapshot."""

    @abc.abstractmethod
    def _summary_rows(
        self, table: str, where: str, subject: str, params: Mapping[str, Any]
    ) -> tuple[int, Sequence[Sequence[Any]]]:
        """How many rows of ``table`` (aliased ``r``) match ``where`` and the newest
        ``params["limit"]`` of them as (number, status, description, last_update, group_name,
        owner name, owner email, ``subject``), read in one snapshot. The description and the
        subject are cut to their first :data:`~asm_email_rules.summary_text.SUMMARY_SCAN_CHARS`
        characters (all a summary line is taken from) in the rows returned only: the cost is
        the records', not the size of every matching record's text."""

    @abc.abstractmethod
    def create_person(self, email: str, name: str, *, is_user: bool) -> Person:
        """A new person record with a new id above every existing one (User when ``is_user``)."""

    @abc.abstractmethod
    def create_call(
        self,
        *,
        template: CallTemplate,
        user_id: int | None,
        logging_analyst_id: int | None,
        description: str,
        now: datetime,
    ) -> Call:
        """Log an open call with a new number (above every existing one, never reused)."""

    @abc.abstractmethod
    def next_call_number(self) -> int:
        """The number the next call logged will get (the counter, or past the highest call)."""

    @abc.abstractmethod
    def raise_next_call_number(self, number: int) -> int:
        """Make the next call's number at least ``number`` (never lower it); the next number.

        For a store restored from a backup: the numbers handed out since the backup are in
        customers' mail (``[CALL#n]``), and logging new calls under them again would put a
        customer's answer on another customer's call."""

    @abc.abstractmethod
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

    @abc.abstractmethod
    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        """Claim a PENDING, due reply that no other sender holds; None when it cannot be."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Make every committed transaction durable, even against a power loss."""

    def _one(self, sql: str, params: Params = ()) -> Any:
        return self._execute(sql, params).fetchone()

    def _returning(self, sql: str, params: Params = ()) -> Any:
        """The one row of a ``RETURNING`` statement, or None; the statement is run to its end
        (SQLite keeps an autocommit write open until its statement finishes)."""
        rows = self._returning_rows(sql, params)
        return rows[0] if rows else None

    def _returning_rows(self, sql: str, params: Params = ()) -> list[Any]:
        """Every row of a ``RETURNING`` statement, the statement run to its end (SQLite
        commits an autocommit write, and meets a lock or an I/O error, while its rows are
        fetched: its override retries and maps those as any statement's)."""
        return list(self._execute(sql, params).fetchall())

    def _opt_ts(self, moment: datetime | None) -> Any:
        return None if moment is None else self._ts(moment)

    # -- directory --------------------------------------------------------------------------
    _PERSON_COLUMNS = (
        "id, email, name, is_analyst, is_user, can_take_over, analyst_can_reopen,"
        " user_can_reopen, analyst_role, user_role"
    )

    @staticmethod
    def _person(row: Any) -> Person:
        return Person(
            id=row[0],
            email=row[1],
            name=row[2],
            is_analyst=bool(row[3]),
            is_user=bool(row[4]),
            can_take_over=bool(row[5]),
            analyst_can_reopen=bool(row[6]),
            user_can_reopen=bool(row[7]),
            analyst_role=row[8],
            user_role=row[9],
        )

    def _rekey_addresses(self) -> None:
        """Recompute every person's stale ``email_key`` (:data:`REKEY_ADDRESSES`)."""
        rows = self._execute("SELECT id, email, email_key FROM persons").fetchall()
        stale = [(address_key(row[1]), row[0]) for row in rows if address_key(row[1]) != row[2]]
        if stale:
            self._executemany("UPDATE persons SET email_key = ? WHERE id = ?", stale)

    def _migration_statement(self, statement: str) -> None:
        """Run one statement of a schema step (:data:`REKEY_ADDRESSES` in Python)."""
        if statement == REKEY_ADDRESSES:
            self._rekey_addresses()
        else:
            self._execute(statement)

    def persons_by_address(self, address: str) -> Sequence[Person]:
        """Every person whose email matches ``address`` case-insensitively, lowest id first.

        A person written with the key of a version before schema 6 (a poller of that version
        still running after the migration re-keyed the table) is found too, whichever spelling
        of its domain either side wrote: those keys are looked up in the index, and a row is
        kept when its address matches ``address`` today.
        """
        key = address_key(address)
        rows = self._execute(
            f"SELECT {self._PERSON_COLUMNS} FROM persons"
            " WHERE email_key IN (?, ?, ?, ?) ORDER BY id",
            (key, *legacy_address_keys(address)),
        ).fetchall()
        return [self._person(row) for row in rows if address_key(row[1]) == key]

    def get_person(self, person_id: int) -> Person | None:
        """The person with this id, or ``None``."""
        row = self._one(f"SELECT {self._PERSON_COLUMNS} FROM persons WHERE id = ?", (person_id,))
        return None if row is None else self._person(row)

    def get_role(self, name: str) -> SecurityRole | None:
        """The security role called ``name``, or ``None``."""
        rights = self._role_rights(name)
        return None if rights is None else SecurityRole(name, frozenset(map(Right, rights)))

    def get_group(self, name: str) -> Group | None:
        """The assignment group called ``name``, or ``None``."""
        row = self._one("SELECT name, email FROM assignment_groups WHERE name = ?", (name,))
        return None if row is None else Group(row[0], row[1])

    def list_persons(self, *, after: int = 0, limit: int = 100) -> Sequence[Person]:
        """Persons with an id above ``after``, lowest id first, at most ``limit``."""
        rows = self._execute(
            f"SELECT {self._PERSON_COLUMNS} FROM persons WHERE id > ? ORDER BY id LIMIT ?",
            (after, max(limit, 0)),
        ).fetchall()
        return [self._person(row) for row in rows]

    def list_calls(
        self, *, status: CallStatus | None = None, after: int = 0, limit: int = 100
    ) -> Sequence[Call]:
        """Calls numbered above ``after`` (with ``status`` when given), lowest first."""
        wanted = None if status is None else status.value
        rows = self._execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls WHERE number > ?"
            " AND (CAST(? AS TEXT) IS NULL OR status = ?) ORDER BY number LIMIT ?",
            (after, wanted, wanted, max(limit, 0)),
        ).fetchall()
        return [self._call(row) for row in rows]

    # -- reads ------------------------------------------------------------------------------
    _CALL_COLUMNS = (
        "number, status, user_id, owner_id, group_name, partition, description,"
        " logging_analyst_id, updated, last_update, call_screen_set, ipk_status, ipk_stream,"
        " subject"
    )

    @staticmethod
    def _call(row: Any) -> Call:
        return Call(
            number=row[0],
            status=CallStatus(row[1]),
            user_id=row[2],
            owner_id=row[3],
            group=row[4],
            partition=row[5],
            description=row[6],
            logging_analyst_id=row[7],
            updated=bool(row[8]),
            last_update=read_moment(row[9]),
            call_screen_set=row[10],
            ipk_status=row[11],
            ipk_stream=row[12],
            subject=row[13],
        )

    def _call_row(self, call: Call) -> tuple[Any, ...]:
        """``call`` as stored, in :attr:`_CALL_COLUMNS` order."""
        return (
            call.number,
            call.status.value,
            call.user_id,
            call.owner_id,
            call.group,
            call.partition,
            call.description,
            call.logging_analyst_id,
            call.updated,
            self._opt_ts(call.last_update),
            call.call_screen_set,
            call.ipk_status,
            call.ipk_stream,
            call.subject,
        )

    def get_call(self, number: int) -> Call | None:
        """The call with this number, or ``None``."""
        row = self._one(f"SELECT {self._CALL_COLUMNS} FROM calls WHERE number = ?", (number,))
        return None if row is None else self._call(row)

    _TASK_COLUMNS = (
        "number, kind, status, request_number, owner_id, group_name, partition, description,"
        " updated, last_update"
    )

    def get_task(self, number: int) -> Task | None:
        """The task or approval with this number, or ``None``."""
        row = self._task_row(number)
        if row is None:
            return None
        return Task(
            number=row[0],
            kind=TaskKind(row[1]),
            status=TaskStatus(row[2]),
            request_number=row[3],
            owner_id=row[4],
            approver_ids=tuple(row[10]),
            forwarded_ids=tuple(row[11]),
            group=row[5],
            partition=row[6],
            description=row[7],
            updated=bool(row[8]),
            last_update=read_moment(row[9]),
            forwarded_by_ids=tuple(row[12]),
        )

    _REQUEST_COLUMNS = (
        "number, status, owner_id, group_name, partition, description, updated, last_update"
    )

    def get_request(self, number: int) -> Request | None:
        """The request with this number, or ``None``."""
        row = self._request_row(number)
        if row is None:
            return None
        return Request(
            number=row[0],
            status=RequestStatus(row[1]),
            owner_id=row[2],
            forwarded_ids=tuple(row[8]),
            group=row[3],
            partition=row[4],
            description=row[5],
            updated=bool(row[6]),
            last_update=read_moment(row[7]),
            forwarded_by_ids=tuple(row[9]),
        )

    def summary(
        self, kind: SummaryKind | str, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        """Items of a summary (calls, requests or tasks) newest first, and the total.

        ``CALLS``: open calls the person owns. ``REQUESTS``: open requests the person owns,
        forwarded or was forwarded. ``TASKS``: tasks and approvals the person owns, may
        approve, forwarded or was forwarded, unless completed, approved or rejected. The items
        and the total come from one snapshot. Raises :class:`RepositoryError` for an unknown
        kind.
        """
        subject = "''"
        match summary_kind(kind):
            case SummaryKind.CALLS:
                ref_kind = EntityKind.CALL
                where = "r.owner_id = :p AND r.status = 'open'"
                subject = "r.subject"
            case SummaryKind.REQUESTS:
                ref_kind = EntityKind.REQUEST
                where = (
                    "r.number IN (SELECT number FROM requests WHERE owner_id = :p"
                    " UNION SELECT request_number FROM request_forwarded WHERE person_id = :p"
                    " UNION SELECT request_number FROM request_forwarded_by WHERE person_id = :p)"
                    " AND r.status <> 'closed'"
                )
            case SummaryKind.TASKS:
                ref_kind = EntityKind.TASK
                done = ", ".join(
                    f"'{status.value}'" for status in sorted(TASK_DONE_STATUSES, key=str)
                )
                where = (
                    "r.number IN (SELECT number FROM tasks WHERE owner_id = :p"
                    " UNION SELECT task_number FROM task_approvers WHERE person_id = :p"
                    " UNION SELECT task_number FROM task_forwarded WHERE person_id = :p"
                    " UNION SELECT task_number FROM task_forwarded_by WHERE person_id = :p)"
                    f" AND r.status NOT IN ({done})"
                )
            case unknown:
                assert_never(unknown)
        total, rows = self._summary_rows(
            RECORD_TABLES[ref_kind], where, subject, {"p": person_id, "limit": max(limit, 0)}
        )
        items = [
            SummaryItem(
                ref=EntityRef(ref_kind, row[0]),
                state=row[1],
                description=short_description(row[2], row[7] or ""),
                last_update=read_moment(row[3]),
                assignee=(row[5] or row[6]) if row[6] is not None else row[4],
            )
            for row in rows
        ]
        return items, total

    def entity_for_message_id(self, message_id: str) -> EntityRef | None:
        """The record one of our own sent Message-IDs was about, or ``None``."""
        row = self._one(
            "SELECT entity_kind, entity_number FROM sent_messages WHERE message_id = ?",
            (message_id_key(message_id),),
        )
        if row is None or row[0] is None:
            return None
        return EntityRef(EntityKind(row[0]), row[1])

    def ledger_entry(self, mailbox: str, message_id: str, sha256: str) -> LedgerEntry | None:
        """The ledger entry of this message (Message-ID and content hash), or ``None``."""
        row = self._one(
            "SELECT decision_json, reply_json, reply_status, attempts, last_error, processed_at,"
            " COALESCE(seen_at, processed_at)"
            " FROM ledger WHERE mailbox = ? AND message_id = ? AND sha256 = ?",
            (mailbox, message_id, sha256),
        )
        if row is None:
            return None
        return LedgerEntry(
            mailbox=mailbox,
            message_id=message_id,
            sha256=sha256,
            decision_json=row[0],
            reply=None if row[1] is None else _stored_reply(row[1]),
            reply_status=ReplyStatus(row[2]),
            attempts=row[3],
            last_error=row[4],
            processed_at=read_moment(row[5]),
            seen_at=read_moment(row[6]),
        )

    def entries(self, ref: EntityRef) -> Sequence[LogEntry]:
        """The log of a record (history, notes, objects, notifications), oldest first."""
        rows = self._execute(
            "SELECT kind, text, author, security_profile, at FROM log_entries"
            " WHERE entity_kind = ? AND entity_number = ? ORDER BY id",
            (ref.kind.value, ref.number),
        ).fetchall()
        return [
            LogEntry(
                ref=ref,
                kind=EntryKind(row[0]),
                text=row[1],
                author=row[2],
                security_profile=row[3],
                at=read_moment(row[4]),
            )
            for row in rows
        ]

    def attachments(self, ref: EntityRef) -> Sequence[Attachment]:
        """The files attached to a record, oldest first, with their bytes."""
        rows = self._execute(
            "SELECT a.filename, a.content_type, a.data, a.inline, a.content_id"
            " FROM attachments a JOIN log_entries e ON e.id = a.entry_id"
            " WHERE e.entity_kind = ? AND e.entity_number = ? ORDER BY e.id",
            (ref.kind.value, ref.number),
        ).fetchall()
        return [
            Attachment(
                filename=row[0],
                content_type=row[1],
                data=bytes(row[2]),
                inline=bool(row[3]),
                content_id=row[4],
            )
            for row in rows
        ]

    def replies_sent_since(self, address: str, since: datetime) -> int:
        """How many replies went to ``address`` at or after ``since`` (for the reply budget)."""
        row = self._one(
            "SELECT COUNT(*) FROM sent_messages WHERE recipient_key = ? AND sent_at >= ?",
            (recipient_key(address), self._ts(since)),
        )
        return int(row[0])

    def is_token_used(self, token_id: str) -> bool:
        """True when this approval token was already spent."""
        return self._one("SELECT 1 FROM used_tokens WHERE token_id = ?", (token_id,)) is not None

    # -- reply outbox: reads ------------------------------------------------------------------
    _OUTBOX_COLUMNS = (
        "reply_json, mailbox, message_id, sha256, reply_status, queued_at, next_attempt_at,"
        " attempts, last_error, claimed_by, claimed_until, sent_at"
    )

    @staticmethod
    def _outbox(row: Any) -> OutboxEntry:
        return OutboxEntry(
            reply=_stored_reply(row[0]),
            mailbox=row[1],
            message_id=row[2],
            sha256=row[3],
            status=ReplyStatus(row[4]),
            queued_at=_moment(row[5]),
            next_attempt_at=_moment(row[6]),
            attempts=row[7],
            last_error=row[8],
            claimed_by=row[9],
            claimed_until=read_moment(row[10]),
            sent_at=read_moment(row[11]),
        )

    def outbox_entry(self, reply_message_id: str) -> OutboxEntry | None:
        """The outbox entry of our reply with this Message-ID (angle brackets optional)."""
        row = self._one(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger WHERE reply_message_id = ?",
            (message_id_key(reply_message_id),),
        )
        return None if row is None else self._outbox(row)

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        """PENDING replies due at ``now`` and not under a live claim, the longest due first."""
        at = self._ts(now)
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger"
            " WHERE reply_status = 'pending' AND next_attempt_at <= ?"
            " AND (claimed_by = '' OR claimed_until IS NULL OR claimed_until <= ?)"
            " AND (CAST(? AS TEXT) IS NULL OR mailbox = ?)"
            " ORDER BY next_attempt_at, queued_at, reply_message_id LIMIT ?",
            (at, at, mailbox, mailbox, max(limit, 0)),
        ).fetchall()
        return [self._outbox(row) for row in rows]

    def list_replies(
        self,
        statuses: Collection[ReplyStatus] | None = None,
        *,
        mailbox: str | None = None,
        limit: int = 100,
    ) -> Sequence[OutboxEntry]:
        """Outbox entries with one of ``statuses`` (all when None), newest queued first.

        Only the conditions asked for are in the statement, the statuses written out (values
        of :class:`ReplyStatus`, never outside text): ``[PENDING]`` alone, what ``poll
        --once`` counts after every pass, then reads the outbox's partial index of pending
        replies, not every entry of the ledger.
        """
        where = ["reply_message_id IS NOT NULL"]
        params: list[Any] = []
        pending = ""
        if statuses is not None:
            wanted = sorted({ReplyStatus(status).value for status in statuses})
            if wanted == [ReplyStatus.PENDING.value]:
                pending = self._PENDING_REPLIES
            if len(wanted) == 1:
                where.append(f"reply_status = '{wanted[0]}'")
            else:
                listed = ", ".join(f"'{value}'" for value in wanted) or "NULL"
                where.append(f"reply_status IN ({listed})")
        if mailbox is not None:
            where.append("mailbox = ?")
            params.append(mailbox)
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger{pending} WHERE {' AND '.join(where)}"
            " ORDER BY queued_at DESC, reply_message_id DESC LIMIT ?",
            (*params, max(limit, 0)),
        ).fetchall()
        return [self._outbox(row) for row in rows]

    # -- seeding ----------------------------------------------------------------------------
    def put_person(self, person: Person) -> None:
        """Insert or replace a person record as given (id included)."""
        self._execute(
            "INSERT INTO persons (id, email, email_key, name, is_analyst, is_user, can_take_over,"
            " analyst_can_reopen, user_can_reopen, analyst_role, user_role)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET email = excluded.email,"
            " email_key = excluded.email_key, name = excluded.name,"
            " is_analyst = excluded.is_analyst, is_user = excluded.is_user,"
            " can_take_over = excluded.can_take_over,"
            " analyst_can_reopen = excluded.analyst_can_reopen,"
            " user_can_reopen = excluded.user_can_reopen,"
            " analyst_role = excluded.analyst_role, user_role = excluded.user_role",
            (
                person.id,
                person.email,
                address_key(person.email),
                person.name,
                person.is_analyst,
                person.is_user,
                person.can_take_over,
                person.analyst_can_reopen,
                person.user_can_reopen,
                person.analyst_role,
                person.user_role,
            ),
        )

    def put_call(self, call: Call) -> None:
        """Insert or replace a call as given (number included); datetimes become UTC."""
        self._execute(
            f"INSERT INTO calls ({self._CALL_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (number) DO UPDATE SET status = excluded.status,"
            " user_id = excluded.user_id, owner_id = excluded.owner_id,"
            " group_name = excluded.group_name, partition = excluded.partition,"
            " description = excluded.description,"
            " logging_analyst_id = excluded.logging_analyst_id, updated = excluded.updated,"
            " last_update = excluded.last_update, call_screen_set = excluded.call_screen_set,"
            " ipk_status = excluded.ipk_status, ipk_stream = excluded.ipk_stream,"
            " subject = excluded.subject",
            self._call_row(call),
        )

    def _put_people(self, table: str, column: str, number: int, ids: tuple[int, ...]) -> None:
        self._execute(f"DELETE FROM {table} WHERE {column} = ?", (number,))
        if ids:
            self._executemany(
                f"INSERT INTO {table} ({column}, position, person_id) VALUES (?, ?, ?)",
                [(number, position, person_id) for position, person_id in enumerate(ids)],
            )

    def put_task(self, task: Task) -> None:
        """Insert or replace a task or approval as given; datetimes become UTC."""
        with self.transaction():
            self._execute(
                f"INSERT INTO tasks ({self._TASK_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (number) DO UPDATE SET kind = excluded.kind,"
                " status = excluded.status, request_number = excluded.request_number,"
                " owner_id = excluded.owner_id, group_name = excluded.group_name,"
                " partition = excluded.partition, description = excluded.description,"
                " updated = excluded.updated, last_update = excluded.last_update",
                (
                    task.number,
                    task.kind.value,
                    task.status.value,
                    task.request_number,
                    task.owner_id,
                    task.group,
                    task.partition,
                    task.description,
                    task.updated,
                    self._opt_ts(task.last_update),
                ),
            )
            self._put_people("task_approvers", "task_number", task.number, task.approver_ids)
            self._put_people("task_forwarded", "task_number", task.number, task.forwarded_ids)
            self._put_people("task_forwarded_by", "task_number", task.number, task.forwarded_by_ids)

    def put_request(self, request: Request) -> None:
        """Insert or replace a request as given; datetimes become UTC."""
        with self.transaction():
            self._execute(
                f"INSERT INTO requests ({self._REQUEST_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (number) DO UPDATE SET status = excluded.status,"
                " owner_id = excluded.owner_id, group_name = excluded.group_name,"
                " partition = excluded.partition, description = excluded.description,"
                " updated = excluded.updated, last_update = excluded.last_update",
                (
                    request.number,
                    request.status.value,
                    request.owner_id,
                    request.group,
                    request.partition,
                    request.description,
                    request.updated,
                    self._opt_ts(request.last_update),
                ),
            )
            self._put_people(
                "request_forwarded", "request_number", request.number, request.forwarded_ids
            )
            self._put_people(
                "request_forwarded_by", "request_number", request.number, request.forwarded_by_ids
            )

    def put_role(self, role: SecurityRole) -> None:
        """Insert or replace a security role (by name) with exactly its rights."""
        with self.transaction():
            self._execute(
                "INSERT INTO security_roles (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                (role.name,),
            )
            self._execute("DELETE FROM role_rights WHERE role_name = ?", (role.name,))
            if role.rights:
                self._executemany(
                    "INSERT INTO role_rights (role_name, right_name) VALUES (?, ?)",
                    [(role.name, right) for right in sorted(r.value for r in role.rights)],
                )

    def put_group(self, group: Group) -> None:
        """Insert or replace an assignment group (by name) and its address."""
        self._execute(
            "INSERT INTO assignment_groups (name, email) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET email = excluded.email",
            (group.name, group.email),
        )

    # -- writes -----------------------------------------------------------------------------
    def set_user_flag(self, person_id: int) -> None:
        """Select the User flag on an existing person."""
        cursor = self._execute("UPDATE persons SET is_user = TRUE WHERE id = ?", (person_id,))
        if cursor.rowcount == 0:
            raise NotFoundError(f"person {person_id} does not exist")

    @staticmethod
    def _new_call(
        template: CallTemplate,
        user_id: int | None,
        logging_analyst_id: int | None,
        description: str,
        now: datetime,
    ) -> Call:
        """The open call ``create_call`` logs, before it has a number (0)."""
        return Call(
            number=0,
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

    def add_history(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Append a history entry to a call, task or request (its last update becomes ``now``)."""
        self._write_on(ref, (EntryKind.HISTORY, text, author), "last_update = :at", at=now)

    def add_note(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Add a note to a record (used on closed calls, which keep their state)."""
        self._write_on(ref, (EntryKind.NOTE, text, author), "last_update = :at", at=now)

    def attach(
        self, ref: EntityRef, attachment: Attachment, security_profile: str, now: datetime
    ) -> None:
        """Attach a file (bytes kept) as an object; its log line names the file and profile."""
        self._write_on(
            ref,
            (EntryKind.ATTACHMENT, attachment.filename, ""),
            "last_update = :at",
            at=now,
            security_profile=security_profile,
            attachment=attachment,
        )

    def mark_updated(self, ref: EntityRef) -> None:
        """Set the note icon that tells the handling analyst the record changed."""
        cursor = self._execute(
            f"UPDATE {RECORD_TABLES[ref.kind]} SET updated = TRUE WHERE number = ?", (ref.number,)
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"{ref} does not exist")

    def close_call(self, number: int, by: str, now: datetime) -> None:
        """Close an open call; closing one that is already closed is refused."""
        ref = EntityRef(EntityKind.CALL, number)
        was = self._write_on(
            ref,
            (EntryKind.STATUS, "closed", by),
            "status = 'closed', last_update = :at",
            at=now,
            when_status=CallStatus.OPEN.value,
        )
        if was != CallStatus.OPEN.value:
            raise StaleRecordError(f"{ref} is already closed")

    def reopen_call(self, number: int, owner_id: int | None, group: str, now: datetime) -> None:
        """Reopen a closed call and assign it to ``owner_id`` and ``group``."""
        ref = EntityRef(EntityKind.CALL, number)
        was = self._write_on(
            ref,
            (EntryKind.STATUS, "reopened", ""),
            "status = 'open', owner_id = :owner, group_name = :group, last_update = :at",
            at=now,
            when_status=CallStatus.CLOSED.value,
            owner=owner_id,
            group=group,
        )
        if was != CallStatus.CLOSED.value:
            raise StaleRecordError(f"{ref} is not closed")

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        """Set a task's or approval's status (approve, reject, complete); approving or
        rejecting one that is no longer pending is refused (the row is checked and changed
        under one lock, so of two pollers deciding on one approval only the first writes)."""
        ref = EntityRef(EntityKind.TASK, number)
        decides = status in DECIDED_TASK_STATUSES
        was = self._write_on(
            ref,
            (EntryKind.STATUS, status.value, by),
            "status = :status, last_update = :at",
            at=now,
            when_status=TaskStatus.PENDING.value if decides else None,
            status=status.value,
        )
        if decides and was != TaskStatus.PENDING.value:
            raise StaleRecordError(f"{ref} is no longer pending")

    def record_notification(self, ref: EntityRef, text: str, now: datetime) -> None:
        """Write a NOTIFICATION log entry (the library sends the notification email itself)."""
        self._write_on(ref, (EntryKind.NOTIFICATION, text, ""), "", at=now)

    def _ledger_row(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        decision_json: str,
        reply: OutgoingEmail | None,
        now: datetime,
    ) -> tuple[Any, ...]:
        """The values :attr:`_INSERT_LEDGER` writes for ``record_processed``."""
        queued = None if reply is None else self._ts(now)
        return (
            mailbox,
            message_id,
            sha256,
            decision_json,
            None if reply is None else reply_to_json(reply),
            (ReplyStatus.NONE if reply is None else ReplyStatus.PENDING).value,
            self._ts(now),
            None if reply is None else message_id_key(reply.message_id),
            queued,
            queued,
        )

    _INSERT_LEDGER = (
        "INSERT INTO ledger (mailbox, message_id, sha256, decision_json, reply_json,"
        " reply_status, attempts, last_error, processed_at, reply_message_id,"
        " queued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 0, '', ?, ?, ?, ?)"
    )
    """A new ledger entry (and outbox entry, with a reply), from :meth:`_ledger_row`."""

    # -- ledger retention (asm_email_rules.protocols.LedgerRetention) -------------------------
    def touch_ledger(self, mailbox: str, message_id: str, sha256: str, now: datetime) -> None:
        """Record that this entry's message was seen in a mailbox at ``now``."""
        self._execute(
            "UPDATE ledger SET seen_at = ? WHERE mailbox = ? AND message_id = ? AND sha256 = ?",
            (self._ts(now), mailbox, message_id, sha256),
        )

    def prune_ledger(self, mailbox: str, before: datetime) -> int:
        """Forget ``mailbox``'s entries last seen before ``before`` (their outbox entries live in
        the same rows), except those with a PENDING reply and quarantine records; how many.

        The entries go oldest first in batches of about :data:`PRUNE_BATCH` (more only when
        entries share one age), one statement each: outside a transaction each batch commits
        alone, so other writers wait for one batch, never for a whole backlog. Each batch
        reads only its own range of the ``ledger_by_age`` index: linear in what is pruned.
        """
        age = "COALESCE(seen_at, processed_at)"
        keep = (
            "reply_status <> 'pending'"
            " AND NOT (message_id = '' AND substr(decision_json, 1, ?) = ?)"
        )
        quarantine = (len(QUARANTINE_RECORD_PREFIX), QUARANTINE_RECORD_PREFIX)
        limit = self._ts(before)
        low: Any = None  # the age the previous batch went up to (inclusive)
        pruned = 0
        while True:
            after, low_params = ("", ()) if low is None else (f" AND {age} > ?", (low,))
            row = self._one(
                f"SELECT {age} FROM ledger WHERE mailbox = ? AND {age} < ?{after}"
                f" ORDER BY {age} LIMIT 1 OFFSET ?",
                (mailbox, limit, *low_params, PRUNE_BATCH - 1),
            )
            upto, last = (f"{age} < ?", limit) if row is None else (f"{age} <= ?", row[0])
            cursor = self._execute(
                f"DELETE FROM ledger WHERE mailbox = ? AND {upto}{after} AND {keep}",
                (mailbox, last, *low_params, *quarantine),
            )
            pruned += max(cursor.rowcount, 0)
            if row is None:
                return pruned
            low = last

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
        cursor = self._execute(
            "UPDATE ledger SET reply_status = ?, attempts = ?, last_error = ?"
            " WHERE mailbox = ? AND message_id = ? AND sha256 = ?",
            (status.value, attempts, error, mailbox, message_id, sha256),
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"no ledger entry for {message_id!r} ({sha256}) in {mailbox!r}")

    # -- reply outbox and leases: writes ------------------------------------------------------
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
        cursor = self._execute(
            "UPDATE ledger SET reply_status = ?, attempts = attempts + 1, last_error = ?,"
            " claimed_by = '', claimed_until = NULL,"
            " sent_at = CASE WHEN ? THEN ? ELSE sent_at END,"
            " next_attempt_at = COALESCE(?, next_attempt_at)"
            " WHERE reply_message_id = ? AND reply_status = 'pending' AND claimed_by = ?",
            (
                status.value,
                error,
                status is ReplyStatus.SENT,
                self._ts(now),
                self._opt_ts(next_attempt_at),
                message_id_key(reply_message_id),
                owner,
            ),
        )
        return cursor.rowcount == 1

    def requeue_reply(self, reply_message_id: str, now: datetime) -> OutboxEntry:
        """Put a FAILED reply back in the outbox, due at ``now`` with a new retry window."""
        key, at = message_id_key(reply_message_id), self._ts(now)
        with self.transaction():
            row = self._one(
                f"SELECT reply_status FROM ledger WHERE reply_message_id = ?{self._FOR_UPDATE}",
                (key,),
            )
            if row is None:
                raise NotFoundError(f"no reply {reply_message_id!r} in the outbox")
            if row[0] != ReplyStatus.FAILED.value:
                raise RepositoryError(
                    f"reply {reply_message_id!r} is {row[0]}, not failed: not requeued"
                )
            self._execute(
                "UPDATE ledger SET reply_status = 'pending', queued_at = ?, next_attempt_at = ?,"
                " claimed_by = '', claimed_until = NULL WHERE reply_message_id = ?",
                (at, at, key),
            )
            entry = self.outbox_entry(key)
        assert entry is not None
        return entry

    def acquire_lease(self, name: str, owner: str, now: datetime, until: datetime) -> Lease:
        """Take or renew the lease ``name`` unless another owner holds it past ``now``.

        One ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``: two pollers asking at once are
        serialised on the row, and the second sees the first one's lease.
        """
        for _ in range(3):  # the holder may release between our upsert and our read
            row = self._returning(
                "INSERT INTO leases (name, owner, expires) VALUES (:name, :owner, :until)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " expires = excluded.expires"
                " WHERE leases.owner = excluded.owner OR leases.expires <= :at"
                " RETURNING owner, expires",
                {"name": name, "owner": owner, "until": self._ts(until), "at": self._ts(now)},
            )
            if row is None:
                row = self._one("SELECT owner, expires FROM leases WHERE name = ?", (name,))
            if row is not None:
                return Lease(name, row[0], _moment(row[1]))
        raise RepositoryError(f"{self._where}: lease {name!r} changed hands three times at once")

    def release_lease(self, name: str, owner: str) -> None:
        """Give up the lease ``name`` if ``owner`` holds it."""
        self._execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        """Remember a Message-ID we sent (threading, reply budget); the same id replaces."""
        self._execute(
            "INSERT INTO sent_messages (message_id, entity_kind, entity_number, recipient,"
            " recipient_key, sent_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (message_id) DO UPDATE SET entity_kind = excluded.entity_kind,"
            " entity_number = excluded.entity_number, recipient = excluded.recipient,"
            " recipient_key = excluded.recipient_key, sent_at = excluded.sent_at",
            (
                message_id_key(message_id),
                None if ref is None else ref.kind.value,
                None if ref is None else ref.number,
                to,
                recipient_key(to),
                self._ts(now),
            ),
        )

    def prune_sent_messages(self, before: datetime) -> int:
        """Forget our Message-IDs about no record sent before ``before``; how many went.

        Only the reply budget reads those rows (:meth:`replies_sent_since`, the last hour). A
        Message-ID about a record is kept: an answer to it, however late, finds its record by
        its In-Reply-To (:meth:`entity_for_message_id`). Oldest first, in batches of
        :data:`PRUNE_BATCH` (one statement each, reading the ``sent_unthreaded_by_age`` index).
        """
        return self._prune_batches(
            "sent_messages",
            "message_id",
            "entity_kind IS NULL AND sent_at < ?",
            "sent_at",
            self._ts(before),
        )

    def use_token(self, token_id: str, now: datetime) -> None:
        """Spend an approval token; spending it again keeps the first time."""
        self._execute(
            "INSERT INTO used_tokens (token_id, used_at) VALUES (?, ?)"
            " ON CONFLICT (token_id) DO NOTHING",
            (token_id, self._ts(now)),
        )

    def use_token_until(self, token_id: str, now: datetime, expires_at: datetime) -> None:
        """:meth:`use_token` for a token that is refused anyway from ``expires_at`` on, so
        :meth:`prune_used_tokens` may forget it then; spending it again keeps the first time."""
        self._execute(
            "INSERT INTO used_tokens (token_id, used_at, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (token_id) DO NOTHING",
            (token_id, self._ts(now), self._ts(expires_at)),
        )

    def prune_used_tokens(self, now: datetime) -> int:
        """Forget the used approval tokens expired at ``now`` (a replay of one is refused as
        expired); how many went. Tokens of unknown expiry stay. Oldest first, in batches of
        :data:`PRUNE_BATCH` (one statement each, reading ``used_tokens_by_expiry``)."""
        return self._prune_batches(
            "used_tokens",
            "token_id",
            "expires_at IS NOT NULL AND expires_at <= ?",
            "expires_at",
            self._ts(now),
        )

    _BATCH_OF_KEYS = "{key} IN ({batch})"
    """How a batch delete names the rows its subquery ``batch`` picked by their ``key``.
    PostgreSQL's override reads them from an array, so each is an index lookup."""

    def _prune_batches(self, table: str, key: str, where: str, order: str, limit: Any) -> int:
        """Delete the rows of ``table`` matching ``where`` (one ``?``: ``limit``) in batches of
        :data:`PRUNE_BATCH`, lowest ``order`` first, one statement each; how many went.

        Each batch reads its rows through the index on ``order`` and deletes them by their
        primary ``key``: the work is linear in the rows pruned, not in the table's size."""
        batch = f"SELECT {key} FROM {table} WHERE {where} ORDER BY {order} LIMIT ?"
        statement = f"DELETE FROM {table} WHERE " + self._BATCH_OF_KEYS.format(key=key, batch=batch)
        pruned = 0
        while True:
            went = max(self._execute(statement, (limit, PRUNE_BATCH)).rowcount, 0)
            pruned += went
            if went < PRUNE_BATCH:
                return pruned

    # -- the desk: people and calls for the command line (not in the protocol) ------------------
    def next_person_id(self) -> int:
        """The id a new person gets: one more than the highest in use (1 in an empty store)."""
        return int(self._one("SELECT COALESCE(MAX(id), 0) + 1 FROM persons")[0])

    def recent_calls(
        self, *, status: CallStatus | None = None, limit: int = 50
    ) -> tuple[list[Call], int]:
        """Calls newest number first (at most ``limit``), and how many there are in all."""
        where, params = ("WHERE status = ?", (status.value,)) if status else ("", ())
        with self._snapshot():
            total = int(self._one(f"SELECT COUNT(*) FROM calls {where}", params)[0])
            rows = self._execute(
                f"SELECT {self._CALL_COLUMNS} FROM calls {where} ORDER BY number DESC LIMIT ?",
                (*params, max(limit, 0)),
            ).fetchall()
        return [self._call(row) for row in rows], total

    # -- quarantine (asm_email_rules.quarantine.QuarantineStore) -----------------------------
    _QUARANTINE_COLUMNS = (
        "id, account, source, sha256, reason, raw, quarantined_at, mailbox_key, state,"
        " resolved_at, resolution"
    )

    @staticmethod
    def _quarantined(row: Any) -> QuarantinedMessage:
        return QuarantinedMessage(
            id=row[0],
            account=row[1],
            source=row[2],
            sha256=row[3],
            reason=row[4],
            raw=bytes(row[5] or b""),  # SQLite's substr() of an empty message is NULL
            quarantined_at=_moment(row[6]),
            mailbox_key=row[7],
            state=QuarantineState(row[8]),
            resolved_at=read_moment(row[9]),
            resolution=row[10],
        )

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
        """Keep ``raw`` with ``reason`` in the quarantine table; returns the entry's id."""
        row = self._returning(
            "INSERT INTO quarantine (account, source, mailbox_key, sha256, reason, raw,"
            " quarantined_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                account,
                source,
                mailbox_key,
                hashlib.sha256(raw).hexdigest(),
                reason,
                raw,
                self._ts(now),
                QuarantineState.HELD.value,
            ),
        )
        return int(row[0])

    @staticmethod
    def _quarantine_where(
        state: QuarantineState | None, account: str | None
    ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if state is not None:
            clauses.append("state = ?")
            params.append(state.value)
        if account is not None:
            clauses.append("account = ?")
            params.append(account)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def quarantined(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> Sequence[QuarantinedMessage]:
        """The entries in ``state`` (every state when None), oldest first."""
        where, params = self._quarantine_where(state, account)
        rows = self._execute(
            f"SELECT {self._QUARANTINE_COLUMNS} FROM quarantine {where} ORDER BY id", params
        ).fetchall()
        return [self._quarantined(row) for row in rows]

    def count_quarantined(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> int:
        """How many entries :meth:`quarantined` would return, without reading one message."""
        where, params = self._quarantine_where(state, account)
        return int(self._one(f"SELECT COUNT(*) FROM quarantine {where}", params)[0])

    def quarantine_listing(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> Sequence[QuarantineListing]:
        """:meth:`quarantined` for a listing: the first 64 KiB of each message and its size,
        never the whole message (each may be up to 25 MB)."""
        where, params = self._quarantine_where(state, account)
        rows = self._execute(  # the columns of _quarantined, the message's start for it
            "SELECT id, account, source, sha256, reason, substr(raw, 1, ?), quarantined_at,"
            " mailbox_key, state, resolved_at, resolution, length(raw)"
            f" FROM quarantine {where} ORDER BY id",
            (LISTING_HEAD_BYTES, *params),
        ).fetchall()
        return [
            attrs.evolve(QuarantineListing.of(self._quarantined(row)), size=int(row[11]))
            for row in rows
        ]

    def quarantined_message(self, entry_id: int) -> QuarantinedMessage | None:
        """The entry with this id, or None."""
        row = self._one(
            f"SELECT {self._QUARANTINE_COLUMNS} FROM quarantine WHERE id = ?", (entry_id,)
        )
        return None if row is None else self._quarantined(row)

    def resolve_quarantined(
        self, entry_id: int, state: QuarantineState, resolution: str, now: datetime
    ) -> None:
        """Mark the entry released, replayed or held again, saying what was done."""
        cursor = self._execute(
            "UPDATE quarantine SET state = ?, resolution = ?, resolved_at = ? WHERE id = ?",
            (state.value, resolution, self._ts(now), entry_id),
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"no quarantined message {entry_id}")

    _QUARANTINE_AGE = "COALESCE(resolved_at, quarantined_at)"
    """An entry's last change (:func:`~asm_email_rules.quarantine.last_change`), as the
    ``quarantine_by_age`` index holds it."""

    def _purgeable(
        self, state: QuarantineState, before: datetime, account: str | None
    ) -> tuple[str, list[Any]]:
        """The ``WHERE`` condition (and its parameters) of the entries in ``state`` last
        changed before ``before``, of ``account`` when given: what a purge forgets."""
        where, params = f"state = ? AND {self._QUARANTINE_AGE} < ?", [state.value, self._ts(before)]
        if account is not None:
            where, params = f"{where} AND account = ?", [*params, account]
        return where, params

    def quarantine_outline(
        self,
        before: datetime,
        *,
        states: Collection[QuarantineState] = RESOLVED_STATES,
        account: str | None = None,
    ) -> Sequence[QuarantineOutline]:
        """The entries :meth:`purge_quarantined` would forget, oldest first, through the
        ``quarantine_by_age`` index: the columns before the message and its length only (in
        SQLite, a column stored after a message of 25 MB is reached by reading the message)."""
        age = self._QUARANTINE_AGE
        found: list[QuarantineOutline] = []
        for state in sorted(states, key=lambda s: s.value):
            where, params = self._purgeable(state, before, account)
            rows = self._execute(
                f"SELECT id, account, source, {age}, length(raw) FROM quarantine"
                f" WHERE {where} ORDER BY {age}",
                params,
            ).fetchall()
            found.extend(
                QuarantineOutline(row[0], row[1], row[2], state, _moment(row[3]), int(row[4]))
                for row in rows
            )
        return found

    def purge_quarantined(
        self,
        before: datetime,
        *,
        states: Collection[QuarantineState] = RESOLVED_STATES,
        account: str | None = None,
    ) -> int:
        """Forget the entries in ``states`` last changed (``COALESCE(resolved_at,
        quarantined_at)``) before ``before``, of ``account`` only when given; how many went.
        The ledger is not touched: a held message's quarantine record keeps it set aside.

        Oldest first in batches of :data:`PRUNE_BATCH`, one statement each (outside a
        transaction each commits alone), reading the ``quarantine_by_age`` index: each batch
        starts where the previous one ended, so the purge is linear in what it reads.
        """
        age, purged = self._QUARANTINE_AGE, 0
        for state in sorted(states, key=lambda s: s.value):
            where, params = self._purgeable(state, before, account)
            low: Any = None  # the age the previous batch went up to (inclusive)
            while True:
                after, low_params = ("", ()) if low is None else (f" AND {age} >= ?", (low,))
                batch = f"SELECT id FROM quarantine WHERE {where}{after} ORDER BY {age} LIMIT ?"
                chosen = self._BATCH_OF_KEYS.format(key="id", batch=batch)
                rows = self._returning_rows(
                    f"DELETE FROM quarantine WHERE {chosen} RETURNING {age}",
                    (*params, *low_params, PRUNE_BATCH),
                )
                purged += len(rows)
                if len(rows) < PRUNE_BATCH:
                    break
                low = max(row[0] for row in rows)
        return purged

    def forget_quarantine_record(self, mailbox: str, sha256: str) -> None:
        """Drop the ledger's quarantine record of these bytes (message id empty)."""
        self._execute(
            "DELETE FROM ledger WHERE mailbox = ? AND message_id = '' AND sha256 = ?"
            " AND substr(decision_json, 1, ?) = ?",
            (mailbox, sha256, len(QUARANTINE_RECORD_PREFIX), QUARANTINE_RECORD_PREFIX),
        )
