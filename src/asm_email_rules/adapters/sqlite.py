"""An embedded SQLite repository (stdlib ``sqlite3``): versioned schema, WAL, real transactions.

Safe for one writer process and any number of concurrent readers (WAL journal on files).
Inside ``transaction()`` every write joins one ``BEGIN IMMEDIATE`` transaction; a write made
outside any transaction runs in a transaction of its own and commits at once (autocommit).
One connection per instance: use an instance from the thread that created it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, assert_never

import attrs

from asm_email_rules.adapters._repository import (
    QUARANTINE_RECORD_PREFIX,
    TASK_DONE_STATUSES,
    address_key,
    check_finish,
    message_id_key,
    short_description,
    summary_kind,
    to_utc,
)
from asm_email_rules.errors import NotFoundError, RepositoryError, StoreUnavailableError
from asm_email_rules.model import (
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
from asm_email_rules.quarantine import QuarantinedMessage, QuarantineState
from asm_email_rules.settings import CallTemplate

__all__ = ["MIGRATIONS", "SqliteRepository", "reply_from_json", "reply_to_json"]


WAL_CHECKPOINT_PAGES = 10_000
"""Pages the WAL may hold before a commit copies it back into the database file (4 KiB each)."""

log = logging.getLogger(__name__)

Migration = tuple[str, ...]
"""One schema step: SQL statements run in order inside one transaction."""


def _check(column: str, enum_type: type[enum.Enum]) -> str:
    """A CHECK constraint that keeps ``column`` to the values of ``enum_type``."""
    values = ", ".join(f"'{member.value}'" for member in enum_type)
    return f"CHECK ({column} IN ({values}))"


_BOOL = "INTEGER NOT NULL DEFAULT 0 CHECK ({0} IN (0, 1))"

_V1: Migration = (
    f"""CREATE TABLE persons (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        is_analyst {_BOOL.format("is_analyst")},
        is_user {_BOOL.format("is_user")},
        can_take_over {_BOOL.format("can_take_over")},
        analyst_can_reopen {_BOOL.format("analyst_can_reopen")},
        user_can_reopen {_BOOL.format("user_can_reopen")}
    )""",
    "CREATE INDEX persons_by_email_key ON persons (email_key, id)",
    f"""CREATE TABLE calls (
        number INTEGER PRIMARY KEY,
        status TEXT NOT NULL {_check("status", CallStatus)},
        user_id INTEGER,
        owner_id INTEGER,
        group_name TEXT NOT NULL DEFAULT '',
        partition TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        logging_analyst_id INTEGER,
        updated {_BOOL.format("updated")},
        last_update TEXT
    )""",
    "CREATE INDEX calls_by_owner ON calls (owner_id, status)",
    f"""CREATE TABLE tasks (
        number INTEGER PRIMARY KEY,
        kind TEXT NOT NULL {_check("kind", TaskKind)},
        status TEXT NOT NULL {_check("status", TaskStatus)},
        request_number INTEGER,
        owner_id INTEGER,
        group_name TEXT NOT NULL DEFAULT '',
        partition TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        updated {_BOOL.format("updated")},
        last_update TEXT
    )""",
    "CREATE INDEX tasks_by_owner ON tasks (owner_id)",
    """CREATE TABLE task_approvers (
        task_number INTEGER NOT NULL REFERENCES tasks (number) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        PRIMARY KEY (task_number, position)
    )""",
    "CREATE INDEX task_approvers_by_person ON task_approvers (person_id)",
    """CREATE TABLE task_forwarded (
        task_number INTEGER NOT NULL REFERENCES tasks (number) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        PRIMARY KEY (task_number, position)
    )""",
    "CREATE INDEX task_forwarded_by_person ON task_forwarded (person_id)",
    f"""CREATE TABLE requests (
        number INTEGER PRIMARY KEY,
        status TEXT NOT NULL {_check("status", RequestStatus)},
        owner_id INTEGER,
        group_name TEXT NOT NULL DEFAULT '',
        partition TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        updated {_BOOL.format("updated")},
        last_update TEXT
    )""",
    "CREATE INDEX requests_by_owner ON requests (owner_id)",
    """CREATE TABLE request_forwarded (
        request_number INTEGER NOT NULL REFERENCES requests (number) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        PRIMARY KEY (request_number, position)
    )""",
    "CREATE INDEX request_forwarded_by_person ON request_forwarded (person_id)",
    f"""CREATE TABLE log_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        entity_kind TEXT NOT NULL {_check("entity_kind", EntityKind)},
        entity_number INTEGER NOT NULL,
        kind TEXT NOT NULL {_check("kind", EntryKind)},
        text TEXT NOT NULL,
        author TEXT NOT NULL DEFAULT '',
        security_profile TEXT,
        at TEXT
    )""",
    "CREATE INDEX log_entries_by_entity ON log_entries (entity_kind, entity_number, id)",
    f"""CREATE TABLE attachments (
        entry_id INTEGER PRIMARY KEY REFERENCES log_entries (id) ON DELETE CASCADE,
        filename TEXT NOT NULL,
        content_type TEXT NOT NULL,
        data BLOB NOT NULL,
        inline {_BOOL.format("inline")},
        content_id TEXT
    )""",
    f"""CREATE TABLE ledger (
        mailbox TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        decision_json TEXT NOT NULL,
        reply_json TEXT,
        reply_status TEXT NOT NULL {_check("reply_status", ReplyStatus)},
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        processed_at TEXT,
        PRIMARY KEY (mailbox, message_id, sha256)
    )""",
    f"""CREATE TABLE sent_messages (
        message_id TEXT PRIMARY KEY,
        entity_kind TEXT {_check("entity_kind", EntityKind)},
        entity_number INTEGER,
        recipient TEXT NOT NULL,
        recipient_key TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        CHECK ((entity_kind IS NULL) = (entity_number IS NULL))
    )""",
    "CREATE INDEX sent_by_recipient ON sent_messages (recipient_key, sent_at)",
    """CREATE TABLE used_tokens (
        token_id TEXT PRIMARY KEY,
        used_at TEXT NOT NULL
    )""",
    """CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    "INSERT INTO counters (name, value) VALUES ('next_call_number', 1)",
)

_EPOCH = "1970-01-01T00:00:00.000000+00:00"

_V2: Migration = (
    # The reply outbox lives in the ledger row that recorded the reply (one source of truth
    # for its state); our reply's Message-ID names it, without angle brackets.
    "ALTER TABLE ledger ADD COLUMN reply_message_id TEXT",
    "ALTER TABLE ledger ADD COLUMN queued_at TEXT",
    "ALTER TABLE ledger ADD COLUMN next_attempt_at TEXT",
    "ALTER TABLE ledger ADD COLUMN claimed_by TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE ledger ADD COLUMN claimed_until TEXT",
    "ALTER TABLE ledger ADD COLUMN sent_at TEXT",
    f"""UPDATE ledger SET
        reply_message_id = trim(trim(json_extract(reply_json, '$.message_id')), '<>'),
        queued_at = COALESCE(processed_at, '{_EPOCH}'),
        next_attempt_at = COALESCE(processed_at, '{_EPOCH}')
        WHERE reply_json IS NOT NULL""",
    "CREATE UNIQUE INDEX ledger_by_reply ON ledger (reply_message_id)"
    " WHERE reply_message_id IS NOT NULL",
    "CREATE INDEX ledger_replies_due ON ledger (next_attempt_at) WHERE reply_status = 'pending'",
    """CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires TEXT NOT NULL
    )""",
)

_V3: Migration = (
    # Issue 12: the call template's properties on the call, a subject the host may keep,
    # who forwarded a request or task, security roles with rights, assignment groups with an
    # address for notifications.
    "ALTER TABLE calls ADD COLUMN call_screen_set TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN ipk_status TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN ipk_stream TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN subject TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE task_forwarded_by (
        task_number INTEGER NOT NULL REFERENCES tasks (number) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        PRIMARY KEY (task_number, position)
    )""",
    "CREATE INDEX task_forwarders_by_person ON task_forwarded_by (person_id)",
    """CREATE TABLE request_forwarded_by (
        request_number INTEGER NOT NULL REFERENCES requests (number) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        PRIMARY KEY (request_number, position)
    )""",
    "CREATE INDEX request_forwarders_by_person ON request_forwarded_by (person_id)",
    "ALTER TABLE persons ADD COLUMN analyst_role TEXT",
    "ALTER TABLE persons ADD COLUMN user_role TEXT",
    "CREATE TABLE security_roles (name TEXT PRIMARY KEY)",
    f"""CREATE TABLE role_rights (
        role_name TEXT NOT NULL REFERENCES security_roles (name) ON DELETE CASCADE,
        right_name TEXT NOT NULL {_check("right_name", Right)},
        PRIMARY KEY (role_name, right_name)
    )""",
    """CREATE TABLE assignment_groups (
        name TEXT PRIMARY KEY,
        email TEXT NOT NULL DEFAULT ''
    )""",
)

_V4: Migration = (
    f"""CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        mailbox_key TEXT NOT NULL DEFAULT '',
        sha256 TEXT NOT NULL,
        reason TEXT NOT NULL,
        raw BLOB NOT NULL,
        quarantined_at TEXT NOT NULL,
        state TEXT NOT NULL {_check("state", QuarantineState)},
        resolved_at TEXT,
        resolution TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX quarantine_by_state ON quarantine (state, id)",
)
"""The store's quarantine (:mod:`asm_email_rules.quarantine`)."""

_V5: Migration = (
    # Issue 10, ledger retention: when each message was last seen in a mailbox (NULL: not since
    # it was processed), and an index to prune one mailbox's entries by age.
    "ALTER TABLE ledger ADD COLUMN seen_at TEXT",
    "CREATE INDEX ledger_by_age ON ledger (mailbox, COALESCE(seen_at, processed_at))",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5)
"""Schema steps; the file's ``PRAGMA user_version`` is how many of them it has applied."""

_RECORD_TABLES: dict[EntityKind, str] = {
    EntityKind.CALL: "calls",
    EntityKind.TASK: "tasks",
    EntityKind.REQUEST: "requests",
}


_UNAVAILABLE_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: another writer holds the lock past our timeout
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY: read-only file, folder or file system
        9,  # SQLITE_INTERRUPT
        10,  # SQLITE_IOERR
        11,  # SQLITE_CORRUPT
        13,  # SQLITE_FULL: disk full (or max_page_count reached)
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
        26,  # SQLITE_NOTADB
    }
)
"""Primary SQLite result codes that mean the store, not the message, is at fault."""


def _store_error(where: str, what: str, exc: sqlite3.Error) -> RepositoryError:
    """The typed error for a ``sqlite3`` failure: :class:`StoreUnavailableError` when the
    database cannot work right now (locked, read-only, full, I/O error, corrupt: the primary
    result codes in ``_UNAVAILABLE_CODES``, or an ``OperationalError`` without a code), else a
    plain :class:`RepositoryError` (a constraint, a bug in a query)."""
    code = getattr(exc, "sqlite_errorcode", None)
    unavailable = code is None and isinstance(exc, sqlite3.OperationalError)
    if code is not None and (code & 0xFF) in _UNAVAILABLE_CODES:
        unavailable = True
    name = getattr(exc, "sqlite_errorname", "")
    message = f"{where}: {what}: {exc}" + (f" ({name})" if name else "")
    return (StoreUnavailableError if unavailable else RepositoryError)(message)


def _text(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC text, so SQL text order is time order."""
    return to_utc(moment).isoformat(timespec="microseconds")


def _opt_text(moment: datetime | None) -> str | None:
    return None if moment is None else _text(moment)


def _moment(text: str | None) -> datetime | None:
    return None if text is None else to_utc(datetime.fromisoformat(text))


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


class SqliteRepository:
    """A :class:`~asm_email_rules.protocols.SeedableRepository` in one SQLite database.

    ``path`` is a file (created and migrated as needed, WAL journal) or ``":memory:"``.
    ``timeout`` is how long, in seconds, to wait for another writer's lock before failing.
    Every ``sqlite3`` failure surfaces as :class:`~asm_email_rules.errors.RepositoryError`.
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, timeout: float = 5.0) -> None:
        self._path = os.fspath(path)
        self._depth = 0
        self._wal = False
        try:
            self._conn = sqlite3.connect(self._path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise _store_error(self._path, "cannot open SQLite database", exc) from exc
        try:
            self._configure(timeout)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- connection -----------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The database file (or ``":memory:"``)."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (``PRAGMA user_version``)."""
        return int(self._one("PRAGMA user_version")[0])

    def _configure(self, timeout: float) -> None:
        self._execute("PRAGMA foreign_keys = ON")
        self._execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if self._path != ":memory:" and not self._path.startswith("file::memory:"):
            mode = str(self._one("PRAGMA journal_mode = WAL")[0]).lower()
            if mode != "wal":
                log.warning("SQLite refused WAL mode", extra={"path": self._path, "mode": mode})
            else:
                # A commit appends to the WAL without an fsync: safe at once from a crash of
                # the process, and from a crash of the machine after sync() (or the next
                # checkpoint). The polling service calls sync() before deletions take effect.
                self._execute("PRAGMA synchronous = NORMAL")
                # Copy the WAL back into the database every ~40 MB rather than every ~4 MB
                # (the default 1,000 pages): each checkpoint syncs the file and rewrites the
                # pages every message touches (the ledger's and the indexes' last pages), and
                # at the default it cost about as much as the commits themselves.
                self._execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
                self._wal = True

    def _migrate(self) -> None:
        known = len(MIGRATIONS)
        version = self.schema_version
        self._refuse_newer(version, known)
        if version == known:
            return
        with self.transaction():
            version = self.schema_version  # another process may have migrated meanwhile
            self._refuse_newer(version, known)
            for target in range(version + 1, known + 1):
                for statement in MIGRATIONS[target - 1]:
                    self._execute(statement)
                self._execute(f"PRAGMA user_version = {target}")
                log.info("SQLite schema migrated", extra={"path": self._path, "version": target})

    def _refuse_newer(self, version: int, known: int) -> None:
        if version > known:
            raise RepositoryError(
                f"{self._path}: database schema version {version} is newer than this "
                f"asm-email-rules knows (up to {known}); upgrade the library to open it"
            )

    def sync(self) -> None:
        """Make every committed transaction durable, even against a power loss (one fsync).

        A file store runs in WAL mode with ``synchronous=NORMAL``: each commit is durable
        against a crash of the process at once, and against a crash of the machine once its
        WAL frames reach the disk, which this call forces (the polling service calls it
        before the mailbox's deletions take effect, so a message never leaves the mailbox
        while its record could still be lost). Nothing to do for ``":memory:"``. Raises
        :class:`StoreUnavailableError` when the WAL file cannot be synced.
        """
        if not self._wal:
            return
        wal = self._path + "-wal"
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL: every commit was checkpointed into the (synced) database file
        except OSError as exc:
            raise StoreUnavailableError(
                f"{self._path}: cannot open the WAL to sync it: {exc}"
            ) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StoreUnavailableError(f"{self._path}: cannot sync the WAL: {exc}") from exc
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the connection; an open transaction is rolled back by SQLite."""
        self._conn.close()

    def __enter__(self) -> SqliteRepository:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise _store_error(self._path, "SQLite error", exc) from exc

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on an exception; nested calls join."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise _store_error(self._path, "commit failed", exc) from exc

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("SQLite rollback failed", extra={"path": self._path})

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction, so a read made of several queries sees one consistent state."""
        if self._depth or self._conn.in_transaction:
            yield
            return
        self._execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self._rollback()

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

    def persons_by_address(self, address: str) -> Sequence[Person]:
        """Every person whose email matches ``address`` case-insensitively, lowest id first."""
        rows = self._execute(
            f"SELECT {self._PERSON_COLUMNS} FROM persons WHERE email_key = ? ORDER BY id",
            (address_key(address),),
        ).fetchall()
        return [self._person(row) for row in rows]

    def get_person(self, person_id: int) -> Person | None:
        """The person with this id, or ``None``."""
        row = self._one(f"SELECT {self._PERSON_COLUMNS} FROM persons WHERE id = ?", (person_id,))
        return None if row is None else self._person(row)

    def get_role(self, name: str) -> SecurityRole | None:
        """The security role called ``name``, or ``None``."""
        with self._snapshot():
            if self._one("SELECT 1 FROM security_roles WHERE name = ?", (name,)) is None:
                return None
            rows = self._execute(
                "SELECT right_name FROM role_rights WHERE role_name = ?", (name,)
            ).fetchall()
        return SecurityRole(name, frozenset(Right(row[0]) for row in rows))

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
        rows = self._execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls WHERE number > ?"
            " AND (? IS NULL OR status = ?) ORDER BY number LIMIT ?",
            (
                after,
                None if status is None else status.value,
                None if status is None else status.value,
                max(limit, 0),
            ),
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
            last_update=_moment(row[9]),
            call_screen_set=row[10],
            ipk_status=row[11],
            ipk_stream=row[12],
            subject=row[13],
        )

    def get_call(self, number: int) -> Call | None:
        """The call with this number, or ``None``."""
        row = self._one(f"SELECT {self._CALL_COLUMNS} FROM calls WHERE number = ?", (number,))
        return None if row is None else self._call(row)

    def _people(self, table: str, column: str, number: int) -> tuple[int, ...]:
        rows = self._execute(
            f"SELECT person_id FROM {table} WHERE {column} = ? ORDER BY position", (number,)
        ).fetchall()
        return tuple(row[0] for row in rows)

    def get_task(self, number: int) -> Task | None:
        """The task or approval with this number, or ``None``."""
        with self._snapshot():
            row = self._one(
                "SELECT number, kind, status, request_number, owner_id, group_name, partition,"
                " description, updated, last_update FROM tasks WHERE number = ?",
                (number,),
            )
            if row is None:
                return None
            return Task(
                number=row[0],
                kind=TaskKind(row[1]),
                status=TaskStatus(row[2]),
                request_number=row[3],
                owner_id=row[4],
                approver_ids=self._people("task_approvers", "task_number", number),
                forwarded_ids=self._people("task_forwarded", "task_number", number),
                group=row[5],
                partition=row[6],
                description=row[7],
                updated=bool(row[8]),
                last_update=_moment(row[9]),
                forwarded_by_ids=self._people("task_forwarded_by", "task_number", number),
            )

    def get_request(self, number: int) -> Request | None:
        """The request with this number, or ``None``."""
        with self._snapshot():
            row = self._one(
                "SELECT number, status, owner_id, group_name, partition, description, updated,"
                " last_update FROM requests WHERE number = ?",
                (number,),
            )
            if row is None:
                return None
            return Request(
                number=row[0],
                status=RequestStatus(row[1]),
                owner_id=row[2],
                forwarded_ids=self._people("request_forwarded", "request_number", number),
                group=row[3],
                partition=row[4],
                description=row[5],
                updated=bool(row[6]),
                last_update=_moment(row[7]),
                forwarded_by_ids=self._people("request_forwarded_by", "request_number", number),
            )

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        """Items of a summary (calls, requests or tasks) newest first, and the total.

        ``CALLS``: open calls the person owns. ``REQUESTS``: open requests the person owns,
        forwarded or was forwarded. ``TASKS``: tasks and approvals the person owns, may
        approve, forwarded or was forwarded, unless completed, approved or rejected. Raises
        :class:`RepositoryError` for an unknown kind.
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
                    " AND r.status != 'closed'"
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
        table = _RECORD_TABLES[ref_kind]
        params = {"p": person_id, "limit": max(limit, 0)}
        with self._snapshot():
            total = int(self._one(f"SELECT COUNT(*) FROM {table} r WHERE {where}", params)[0])
            rows = self._execute(
                f"SELECT r.number, r.status, r.description, r.last_update, r.group_name,"
                f" o.name, o.email, {subject} FROM {table} r"
                " LEFT JOIN persons o ON o.id = r.owner_id"
                f" WHERE {where}"
                " ORDER BY r.last_update IS NULL, r.last_update DESC, r.number DESC"
                " LIMIT :limit",
                params,
            ).fetchall()
        items = [
            SummaryItem(
                ref=EntityRef(ref_kind, row[0]),
                state=row[1],
                description=short_description(row[2], row[7]),
                last_update=_moment(row[3]),
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
            reply=None if row[1] is None else reply_from_json(row[1]),
            reply_status=ReplyStatus(row[2]),
            attempts=row[3],
            last_error=row[4],
            processed_at=_moment(row[5]),
            seen_at=_moment(row[6]),
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
                at=_moment(row[4]),
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
            (address_key(address), _text(since)),
        )
        return int(row[0])

    _OUTBOX_COLUMNS = (
        "reply_json, mailbox, message_id, sha256, reply_status, queued_at, next_attempt_at,"
        " attempts, last_error, claimed_by, claimed_until, sent_at"
    )

    @staticmethod
    def _outbox(row: Any) -> OutboxEntry:
        return OutboxEntry(
            reply=reply_from_json(row[0]),
            mailbox=row[1],
            message_id=row[2],
            sha256=row[3],
            status=ReplyStatus(row[4]),
            queued_at=to_utc(datetime.fromisoformat(row[5])),
            next_attempt_at=to_utc(datetime.fromisoformat(row[6])),
            attempts=row[7],
            last_error=row[8],
            claimed_by=row[9],
            claimed_until=_moment(row[10]),
            sent_at=_moment(row[11]),
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
        at = _text(now)
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger"
            " WHERE reply_status = 'pending' AND next_attempt_at <= ?"
            " AND (claimed_by = '' OR claimed_until IS NULL OR claimed_until <= ?)"
            " AND (? IS NULL OR mailbox = ?)"
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
        """Outbox entries with one of ``statuses`` (all when None), newest queued first."""
        wanted = [status.value for status in (statuses or ())]
        marks = ", ".join("?" for _ in wanted) or "NULL"
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger WHERE reply_message_id IS NOT NULL"
            f" AND (? OR reply_status IN ({marks})) AND (? IS NULL OR mailbox = ?)"
            " ORDER BY queued_at DESC, reply_message_id DESC LIMIT ?",
            (statuses is None, *wanted, mailbox, mailbox, max(limit, 0)),
        ).fetchall()
        return [self._outbox(row) for row in rows]

    def is_token_used(self, token_id: str) -> bool:
        """True when this approval token was already spent."""
        return self._one("SELECT 1 FROM used_tokens WHERE token_id = ?", (token_id,)) is not None

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
            (
                call.number,
                call.status.value,
                call.user_id,
                call.owner_id,
                call.group,
                call.partition,
                call.description,
                call.logging_analyst_id,
                call.updated,
                _opt_text(call.last_update),
                call.call_screen_set,
                call.ipk_status,
                call.ipk_stream,
                call.subject,
            ),
        )

    def _put_people(self, table: str, column: str, number: int, ids: tuple[int, ...]) -> None:
        self._execute(f"DELETE FROM {table} WHERE {column} = ?", (number,))
        for position, person_id in enumerate(ids):
            self._execute(
                f"INSERT INTO {table} ({column}, position, person_id) VALUES (?, ?, ?)",
                (number, position, person_id),
            )

    def put_task(self, task: Task) -> None:
        """Insert or replace a task or approval as given; datetimes become UTC."""
        with self.transaction():
            self._execute(
                "INSERT INTO tasks (number, kind, status, request_number, owner_id, group_name,"
                " partition, description, updated, last_update)"
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
                    _opt_text(task.last_update),
                ),
            )
            self._put_people("task_approvers", "task_number", task.number, task.approver_ids)
            self._put_people("task_forwarded", "task_number", task.number, task.forwarded_ids)
            self._put_people("task_forwarded_by", "task_number", task.number, task.forwarded_by_ids)

    def put_request(self, request: Request) -> None:
        """Insert or replace a request as given; datetimes become UTC."""
        with self.transaction():
            self._execute(
                "INSERT INTO requests (number, status, owner_id, group_name, partition,"
                " description, updated, last_update) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
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
                    _opt_text(request.last_update),
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
            for right in sorted(role.rights, key=lambda r: r.value):
                self._execute(
                    "INSERT INTO role_rights (role_name, right_name) VALUES (?, ?)",
                    (role.name, right.value),
                )

    def put_group(self, group: Group) -> None:
        """Insert or replace an assignment group (by name) and its address."""
        self._execute(
            "INSERT INTO assignment_groups (name, email) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET email = excluded.email",
            (group.name, group.email),
        )

    # -- writes -----------------------------------------------------------------------------
    def create_person(self, email: str, name: str, *, is_user: bool) -> Person:
        """A new person record with the next free id (flagged as a User when ``is_user``)."""
        cursor = self._execute(
            "INSERT INTO persons (email, email_key, name, is_user) VALUES (?, ?, ?, ?)",
            (email, address_key(email), name, is_user),
        )
        person_id = cursor.lastrowid
        if person_id is None:  # pragma: no cover - sqlite3 always sets it after an INSERT
            raise RepositoryError(f"{self._path}: no id for the new person")
        return Person(id=person_id, email=email, name=name, is_user=is_user)

    def set_user_flag(self, person_id: int) -> None:
        """Select the User flag on an existing person."""
        cursor = self._execute("UPDATE persons SET is_user = 1 WHERE id = ?", (person_id,))
        if cursor.rowcount == 0:
            raise NotFoundError(f"person {person_id} does not exist")

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
        call = Call(
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
        with self.transaction():
            # The number: the counter, or above the highest call (one a host inserted itself);
            # the counter moves past it in the same statement.
            [(number,)] = self._execute(
                "UPDATE counters SET value = max(value,"
                " (SELECT COALESCE(MAX(number), 0) + 1 FROM calls)) + 1"
                " WHERE name = 'next_call_number' RETURNING value - 1"
            ).fetchall()  # stepped to the end, so the statement is finished before the commit
            call = attrs.evolve(call, number=int(number))
            self.put_call(call)
        return call

    def _require(self, ref: EntityRef) -> str:
        """The status of record ``ref``; :class:`NotFoundError` when there is none."""
        row = self._one(
            f"SELECT status FROM {_RECORD_TABLES[ref.kind]} WHERE number = ?", (ref.number,)
        )
        if row is None:
            raise NotFoundError(f"{ref} does not exist")
        return str(row[0])

    def _log(
        self,
        ref: EntityRef,
        kind: EntryKind,
        text: str,
        *,
        author: str = "",
        security_profile: str | None = None,
        at: datetime,
    ) -> int:
        cursor = self._execute(
            "INSERT INTO log_entries (entity_kind, entity_number, kind, text, author,"
            " security_profile, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ref.kind.value, ref.number, kind.value, text, author, security_profile, _text(at)),
        )
        return int(cursor.lastrowid or 0)

    def _update(self, ref: EntityRef, assignments: str, params: Sequence[Any]) -> None:
        """Update record ``ref``; :class:`NotFoundError` when there is none (so a write that
        updates its record first needs no separate existence check)."""
        cursor = self._execute(
            f"UPDATE {_RECORD_TABLES[ref.kind]} SET {assignments} WHERE number = ?",
            (*params, ref.number),
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"{ref} does not exist")

    def add_history(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Append a history entry to a call, task or request (its last update becomes ``now``)."""
        with self.transaction():
            self._update(ref, "last_update = ?", (_text(now),))
            self._log(ref, EntryKind.HISTORY, text, author=author, at=now)

    def add_note(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Add a note to a record (used on closed calls, which keep their state)."""
        with self.transaction():
            self._update(ref, "last_update = ?", (_text(now),))
            self._log(ref, EntryKind.NOTE, text, author=author, at=now)

    def attach(
        self, ref: EntityRef, attachment: Attachment, security_profile: str, now: datetime
    ) -> None:
        """Attach a file (bytes kept) as an object; its log line names the file and profile."""
        with self.transaction():
            self._update(ref, "last_update = ?", (_text(now),))
            entry_id = self._log(
                ref,
                EntryKind.ATTACHMENT,
                attachment.filename,
                security_profile=security_profile,
                at=now,
            )
            self._execute(
                "INSERT INTO attachments (entry_id, filename, content_type, data, inline,"
                " content_id) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry_id,
                    attachment.filename,
                    attachment.content_type,
                    attachment.data,
                    attachment.inline,
                    attachment.content_id,
                ),
            )

    def mark_updated(self, ref: EntityRef) -> None:
        """Set the note icon that tells the handling analyst the record changed."""
        self._update(ref, "updated = 1", ())

    def close_call(self, number: int, by: str, now: datetime) -> None:
        """Close an open call; closing one that is already closed is refused."""
        ref = EntityRef(EntityKind.CALL, number)
        with self.transaction():
            if self._require(ref) != CallStatus.OPEN.value:
                raise RepositoryError(f"{ref} is already closed")
            self._log(ref, EntryKind.STATUS, "closed", author=by, at=now)
            self._update(ref, "status = ?, last_update = ?", ("closed", _text(now)))

    def reopen_call(self, number: int, owner_id: int | None, group: str, now: datetime) -> None:
        """Reopen a closed call and assign it to ``owner_id`` and ``group``."""
        ref = EntityRef(EntityKind.CALL, number)
        with self.transaction():
            if self._require(ref) != CallStatus.CLOSED.value:
                raise RepositoryError(f"{ref} is not closed")
            self._log(ref, EntryKind.STATUS, "reopened", at=now)
            self._update(
                ref,
                "status = ?, owner_id = ?, group_name = ?, last_update = ?",
                ("open", owner_id, group, _text(now)),
            )

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        """Set a task's or approval's status (approve, reject, complete)."""
        ref = EntityRef(EntityKind.TASK, number)
        with self.transaction():
            self._update(ref, "status = ?, last_update = ?", (status.value, _text(now)))
            self._log(ref, EntryKind.STATUS, status.value, author=by, at=now)

    def record_notification(self, ref: EntityRef, text: str, now: datetime) -> None:
        """Queue a notification to the record's assigned analyst or group."""
        with self.transaction():
            self._require(ref)
            self._log(ref, EntryKind.NOTIFICATION, text, at=now)

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
        status = ReplyStatus.NONE if reply is None else ReplyStatus.PENDING
        queued = None if reply is None else _text(now)
        try:
            self._conn.execute(
                "INSERT INTO ledger (mailbox, message_id, sha256, decision_json, reply_json,"
                " reply_status, attempts, last_error, processed_at, reply_message_id,"
                " queued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 0, '', ?, ?, ?, ?)",
                (
                    mailbox,
                    message_id,
                    sha256,
                    decision_json,
                    None if reply is None else reply_to_json(reply),
                    status.value,
                    _text(now),
                    None if reply is None else message_id_key(reply.message_id),
                    queued,
                    queued,
                ),
            )
        except sqlite3.IntegrityError as exc:
            if "reply_message_id" in str(exc) and reply is not None:
                raise RepositoryError(
                    f"reply {reply.message_id!r} is in the outbox already"
                ) from exc
            raise RepositoryError(
                f"message {message_id!r} ({sha256}) already recorded in {mailbox!r}"
            ) from exc
        except sqlite3.Error as exc:
            raise _store_error(self._path, "SQLite error", exc) from exc

    # -- ledger retention (asm_email_rules.protocols.LedgerRetention) -------------------------
    def touch_ledger(self, mailbox: str, message_id: str, sha256: str, now: datetime) -> None:
        """Record that this entry's message was seen in a mailbox at ``now``."""
        self._execute(
            "UPDATE ledger SET seen_at = ? WHERE mailbox = ? AND message_id = ? AND sha256 = ?",
            (_text(now), mailbox, message_id, sha256),
        )

    def prune_ledger(self, mailbox: str, before: datetime) -> int:
        """Forget ``mailbox``'s entries last seen before ``before`` (their outbox entries live in
        the same rows), except those with a PENDING reply and quarantine records; how many."""
        cursor = self._execute(
            "DELETE FROM ledger WHERE mailbox = ? AND COALESCE(seen_at, processed_at) < ?"
            " AND reply_status != 'pending'"
            " AND NOT (message_id = '' AND substr(decision_json, 1, ?) = ?)",
            (
                mailbox,
                _text(before),
                len(QUARANTINE_RECORD_PREFIX),
                QUARANTINE_RECORD_PREFIX,
            ),
        )
        return max(cursor.rowcount, 0)

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
    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        """Claim a PENDING, due reply that no other sender holds; None when it cannot be."""
        key, at = message_id_key(reply_message_id), _text(now)
        with self.transaction():
            cursor = self._execute(
                "UPDATE ledger SET claimed_by = ?, claimed_until = ?"
                " WHERE reply_message_id = ? AND reply_status = 'pending'"
                " AND next_attempt_at <= ?"
                " AND (claimed_by IN ('', ?) OR claimed_until IS NULL OR claimed_until <= ?)",
                (owner, _text(until), key, at, owner, at),
            )
            if cursor.rowcount == 0:
                return None
            return self.outbox_entry(key)

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
                _text(now),
                _opt_text(next_attempt_at),
                message_id_key(reply_message_id),
                owner,
            ),
        )
        return cursor.rowcount == 1

    def requeue_reply(self, reply_message_id: str, now: datetime) -> OutboxEntry:
        """Put a FAILED reply back in the outbox, due at ``now`` with a new retry window."""
        key, at = message_id_key(reply_message_id), _text(now)
        with self.transaction():
            row = self._one("SELECT reply_status FROM ledger WHERE reply_message_id = ?", (key,))
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
        """Take or renew the lease ``name`` unless another owner holds it past ``now``."""
        with self.transaction():
            self._execute(
                "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " expires = excluded.expires"
                " WHERE leases.owner = excluded.owner OR leases.expires <= ?",
                (name, owner, _text(until), _text(now)),
            )
            row = self._one("SELECT owner, expires FROM leases WHERE name = ?", (name,))
        return Lease(name, row[0], to_utc(datetime.fromisoformat(row[1])))

    def release_lease(self, name: str, owner: str) -> None:
        """Give up the lease ``name`` if ``owner`` holds it."""
        self._execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        """Remember a Message-ID we sent (threading, reply budget); the same id replaces."""
        self._execute(
            "INSERT OR REPLACE INTO sent_messages (message_id, entity_kind, entity_number,"
            " recipient, recipient_key, sent_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                message_id_key(message_id),
                None if ref is None else ref.kind.value,
                None if ref is None else ref.number,
                to,
                address_key(to),
                _text(now),
            ),
        )

    def use_token(self, token_id: str, now: datetime) -> None:
        """Spend an approval token; spending it again keeps the first time."""
        self._execute(
            "INSERT OR IGNORE INTO used_tokens (token_id, used_at) VALUES (?, ?)",
            (token_id, _text(now)),
        )

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
                f"SELECT number FROM calls {where} ORDER BY number DESC LIMIT ?",
                (*params, max(limit, 0)),
            ).fetchall()
            calls = [self.get_call(int(row[0])) for row in rows]
        return [call for call in calls if call is not None], total

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
            raw=bytes(row[5]),
            quarantined_at=to_utc(datetime.fromisoformat(row[6])),
            mailbox_key=row[7],
            state=QuarantineState(row[8]),
            resolved_at=_moment(row[9]),
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
        cursor = self._execute(
            "INSERT INTO quarantine (account, source, mailbox_key, sha256, reason, raw,"
            " quarantined_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account,
                source,
                mailbox_key,
                hashlib.sha256(raw).hexdigest(),
                reason,
                raw,
                _text(now),
                QuarantineState.HELD.value,
            ),
        )
        return int(cursor.lastrowid or 0)

    def quarantined(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> Sequence[QuarantinedMessage]:
        """The entries in ``state`` (every state when None), oldest first."""
        clauses, params = [], []
        if state is not None:
            clauses.append("state = ?")
            params.append(state.value)
        if account is not None:
            clauses.append("account = ?")
            params.append(account)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._execute(
            f"SELECT {self._QUARANTINE_COLUMNS} FROM quarantine {where} ORDER BY id", params
        ).fetchall()
        return [self._quarantined(row) for row in rows]

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
            (state.value, resolution, _text(now), entry_id),
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"no quarantined message {entry_id}")

    def forget_quarantine_record(self, mailbox: str, sha256: str) -> None:
        """Drop the ledger's quarantine record of these bytes (message id empty)."""
        self._execute(
            "DELETE FROM ledger WHERE mailbox = ? AND message_id = '' AND sha256 = ?"
            " AND decision_json LIKE '{\"quarantined\"%'",
            (mailbox, sha256),
        )
