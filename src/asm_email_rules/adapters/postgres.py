"""A PostgreSQL repository (``psycopg`` 3): a store that pollers on several hosts can share.

Install with the ``postgres`` extra (``pip install 'asm-email-rules[postgres]'``). The
semantics are those of :class:`~asm_email_rules.adapters.sqlite.SqliteRepository`, checked by
the same conformance kit: inside ``transaction()`` every write joins one transaction that
commits on normal exit and rolls back on an exception; a write made outside any transaction
commits at once (autocommit). One connection per instance: use an instance from one thread.

Where PostgreSQL differs from SQLite, and how this adapter keeps the behaviour the same:

- Writers do not queue behind one database lock. A record that a write checks before it
  changes it (close, reopen, history...) is locked with ``SELECT ... FOR UPDATE`` until the
  commit, so two pollers acting on one call serialise on that call only.
- Call numbers and person ids come from sequences, so two pollers never wait for each other to
  log a call. A number is never reused and is always above every existing call (a call put or
  inserted behind our back moves the sequence past it), but a number taken by a transaction
  that rolled back is skipped: numbers can have gaps, as in most service desks on PostgreSQL.
- A failed statement aborts a PostgreSQL transaction. Statements whose failure is an expected
  answer (a second ledger entry for one message) are written so they do not fail
  (``ON CONFLICT DO NOTHING``), and the refusal is raised as in SQLite.
- PostgreSQL text cannot hold the NUL character: it is stored as U+FFFD (the replacement
  character), and read back as such.
- ``lock_timeout`` (the ``timeout`` argument) bounds how long a statement waits for a row
  another transaction holds, as SQLite's busy timeout does.

Every ``psycopg`` failure surfaces as :class:`~asm_email_rules.errors.RepositoryError` whose
message names the server and the database, never the password. A connection that broke
(server restart, network) is reopened on the next call made outside a transaction.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

import attrs

try:
    import psycopg
    from psycopg import conninfo as pg_conninfo
    from psycopg import sql
    from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL store needs psycopg 3: pip install 'asm-email-rules[postgres]'"
    ) from exc

from asm_email_rules.adapters._repository import QUARANTINE_RECORD_PREFIX, check_finish
from asm_email_rules.adapters.memory import (
    SUMMARY_KINDS,
    TASK_DONE_STATUSES,
    address_key,
    message_id_key,
    short_description,
    to_utc,
)
from asm_email_rules.adapters.sqlite import reply_from_json, reply_to_json
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
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.settings import CallTemplate

__all__ = ["MIGRATIONS", "PostgresRepository", "describe_conninfo"]

log = logging.getLogger(__name__)

Migration = tuple[str, ...]
"""One schema step: SQL statements run in order inside one transaction."""

MIGRATION_LOCK = 0x61736D2D6D6967
"""The advisory lock key that serialises schema migrations between processes ("asm-mig")."""

MIGRATION_WAIT = 300.0
"""Seconds a process waits for another one's schema migration before giving up."""


def _check(column: str, enum_type: type[enum.Enum]) -> str:
    """A CHECK constraint that keeps ``column`` to the values of ``enum_type``."""
    values = ", ".join(f"'{member.value}'" for member in enum_type)
    return f"CHECK ({column} IN ({values}))"


_BOOL = "boolean NOT NULL DEFAULT false"

_V1: Migration = (
    """CREATE TABLE asm_schema_version (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )""",
    f"""CREATE TABLE persons (
        id bigint PRIMARY KEY,
        email text NOT NULL,
        email_key text NOT NULL,
        name text NOT NULL DEFAULT '',
        is_analyst {_BOOL},
        is_user {_BOOL},
        can_take_over {_BOOL},
        analyst_can_reopen {_BOOL},
        user_can_reopen {_BOOL}
    )""",
    "CREATE INDEX persons_by_email_key ON persons (email_key, id)",
    "CREATE SEQUENCE person_ids AS bigint",
    f"""CREATE TABLE calls (
        number bigint PRIMARY KEY,
        status text NOT NULL {_check("status", CallStatus)},
        user_id bigint,
        owner_id bigint,
        group_name text NOT NULL DEFAULT '',
        partition text NOT NULL DEFAULT '',
        description text NOT NULL DEFAULT '',
        logging_analyst_id bigint,
        updated {_BOOL},
        last_update timestamptz
    )""",
    "CREATE INDEX calls_by_owner ON calls (owner_id, status)",
    "CREATE SEQUENCE call_numbers AS bigint",
    f"""CREATE TABLE tasks (
        number bigint PRIMARY KEY,
        kind text NOT NULL {_check("kind", TaskKind)},
        status text NOT NULL {_check("status", TaskStatus)},
        request_number bigint,
        owner_id bigint,
        group_name text NOT NULL DEFAULT '',
        partition text NOT NULL DEFAULT '',
        description text NOT NULL DEFAULT '',
        updated {_BOOL},
        last_update timestamptz
    )""",
    "CREATE INDEX tasks_by_owner ON tasks (owner_id)",
    """CREATE TABLE task_approvers (
        task_number bigint NOT NULL REFERENCES tasks (number) ON DELETE CASCADE,
        position integer NOT NULL,
        person_id bigint NOT NULL,
        PRIMARY KEY (task_number, position)
    )""",
    "CREATE INDEX task_approvers_by_person ON task_approvers (person_id)",
    """CREATE TABLE task_forwarded (
        task_number bigint NOT NULL REFERENCES tasks (number) ON DELETE CASCADE,
        position integer NOT NULL,
        person_id bigint NOT NULL,
        PRIMARY KEY (task_number, position)
    )""",
    "CREATE INDEX task_forwarded_by_person ON task_forwarded (person_id)",
    f"""CREATE TABLE requests (
        number bigint PRIMARY KEY,
        status text NOT NULL {_check("status", RequestStatus)},
        owner_id bigint,
        group_name text NOT NULL DEFAULT '',
        partition text NOT NULL DEFAULT '',
        description text NOT NULL DEFAULT '',
        updated {_BOOL},
        last_update timestamptz
    )""",
    "CREATE INDEX requests_by_owner ON requests (owner_id)",
    """CREATE TABLE request_forwarded (
        request_number bigint NOT NULL REFERENCES requests (number) ON DELETE CASCADE,
        position integer NOT NULL,
        person_id bigint NOT NULL,
        PRIMARY KEY (request_number, position)
    )""",
    "CREATE INDEX request_forwarded_by_person ON request_forwarded (person_id)",
    f"""CREATE TABLE log_entries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        entity_kind text NOT NULL {_check("entity_kind", EntityKind)},
        entity_number bigint NOT NULL,
        kind text NOT NULL {_check("kind", EntryKind)},
        text text NOT NULL,
        author text NOT NULL DEFAULT '',
        security_profile text,
        at timestamptz
    )""",
    "CREATE INDEX log_entries_by_entity ON log_entries (entity_kind, entity_number, id)",
    f"""CREATE TABLE attachments (
        entry_id bigint PRIMARY KEY REFERENCES log_entries (id) ON DELETE CASCADE,
        filename text NOT NULL,
        content_type text NOT NULL,
        data bytea NOT NULL,
        inline {_BOOL},
        content_id text
    )""",
    f"""CREATE TABLE ledger (
        mailbox text NOT NULL,
        message_id text NOT NULL,
        sha256 text NOT NULL,
        decision_json text NOT NULL,
        reply_json text,
        reply_status text NOT NULL {_check("reply_status", ReplyStatus)},
        attempts integer NOT NULL DEFAULT 0,
        last_error text NOT NULL DEFAULT '',
        processed_at timestamptz,
        PRIMARY KEY (mailbox, message_id, sha256)
    )""",
    f"""CREATE TABLE sent_messages (
        message_id text PRIMARY KEY,
        entity_kind text {_check("entity_kind", EntityKind)},
        entity_number bigint,
        recipient text NOT NULL,
        recipient_key text NOT NULL,
        sent_at timestamptz NOT NULL,
        CHECK ((entity_kind IS NULL) = (entity_number IS NULL))
    )""",
    "CREATE INDEX sent_by_recipient ON sent_messages (recipient_key, sent_at)",
    """CREATE TABLE used_tokens (
        token_id text PRIMARY KEY,
        used_at timestamptz NOT NULL
    )""",
)

_V2: Migration = (
    # The reply outbox lives in the ledger row that recorded the reply (as in SQLite); our
    # reply's Message-ID, without angle brackets, names it.
    "ALTER TABLE ledger ADD COLUMN reply_message_id text",
    "ALTER TABLE ledger ADD COLUMN queued_at timestamptz",
    "ALTER TABLE ledger ADD COLUMN next_attempt_at timestamptz",
    "ALTER TABLE ledger ADD COLUMN claimed_by text NOT NULL DEFAULT ''",
    "ALTER TABLE ledger ADD COLUMN claimed_until timestamptz",
    "ALTER TABLE ledger ADD COLUMN sent_at timestamptz",
    """UPDATE ledger SET
        reply_message_id = btrim(btrim(reply_json::json ->> 'message_id'), '<>'),
        queued_at = COALESCE(processed_at, 'epoch'),
        next_attempt_at = COALESCE(processed_at, 'epoch')
        WHERE reply_json IS NOT NULL""",
    "CREATE UNIQUE INDEX ledger_by_reply ON ledger (reply_message_id)"
    " WHERE reply_message_id IS NOT NULL",
    "CREATE INDEX ledger_replies_due ON ledger (next_attempt_at) WHERE reply_status = 'pending'",
    """CREATE TABLE leases (
        name text PRIMARY KEY,
        owner text NOT NULL,
        expires timestamptz NOT NULL
    )""",
)

_V3: Migration = (
    # Issue 12: the call template's properties on the call, a subject the host may keep,
    # who forwarded a request or task, security roles with rights, assignment groups with an
    # address for notifications (the same step as SQLite's schema 3).
    "ALTER TABLE calls ADD COLUMN call_screen_set text NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN ipk_status text NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN ipk_stream text NOT NULL DEFAULT ''",
    "ALTER TABLE calls ADD COLUMN subject text NOT NULL DEFAULT ''",
    """CREATE TABLE task_forwarded_by (
        task_number bigint NOT NULL REFERENCES tasks (number) ON DELETE CASCADE,
        position integer NOT NULL,
        person_id bigint NOT NULL,
        PRIMARY KEY (task_number, position)
    )""",
    "CREATE INDEX task_forwarders_by_person ON task_forwarded_by (person_id)",
    """CREATE TABLE request_forwarded_by (
        request_number bigint NOT NULL REFERENCES requests (number) ON DELETE CASCADE,
        position integer NOT NULL,
        person_id bigint NOT NULL,
        PRIMARY KEY (request_number, position)
    )""",
    "CREATE INDEX request_forwarders_by_person ON request_forwarded_by (person_id)",
    "ALTER TABLE persons ADD COLUMN analyst_role text",
    "ALTER TABLE persons ADD COLUMN user_role text",
    "CREATE TABLE security_roles (name text PRIMARY KEY)",
    f"""CREATE TABLE role_rights (
        role_name text NOT NULL REFERENCES security_roles (name) ON DELETE CASCADE,
        right_name text NOT NULL {_check("right_name", Right)},
        PRIMARY KEY (role_name, right_name)
    )""",
    """CREATE TABLE assignment_groups (
        name text PRIMARY KEY,
        email text NOT NULL DEFAULT ''
    )""",
)

_V4: Migration = (
    # Issue 10, ledger retention: when each message was last seen in a mailbox (NULL: not since
    # it was processed), and an index to prune one mailbox's entries by age (as SQLite's 5).
    "ALTER TABLE ledger ADD COLUMN seen_at timestamptz",
    "CREATE INDEX ledger_by_age ON ledger (mailbox, (COALESCE(seen_at, processed_at)))",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4)
"""Schema steps; ``asm_schema_version`` holds one row per step applied (the highest is current)."""

_RECORD_TABLES: dict[EntityKind, str] = {
    EntityKind.CALL: "calls",
    EntityKind.TASK: "tasks",
    EntityKind.REQUEST: "requests",
}


def _opt_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else to_utc(moment)


def describe_conninfo(conninfo: str) -> str:
    """``PostgreSQL server HOST:PORT, database NAME`` for a libpq connection string or URL.

    Never includes the password or any other parameter; unparseable input gives a neutral
    text rather than an echo of it (it may hold a password).
    """
    try:
        params = pg_conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "PostgreSQL (unparseable connection string)"
    host = str(params.get("host") or params.get("hostaddr") or "local socket")
    port = str(params.get("port") or "5432")
    database = str(params.get("dbname") or params.get("user") or "(default)")
    return f"PostgreSQL server {host}:{port}, database {database}"


class _NulFreeStrDumper(StrDumperUnknown):
    """Text parameters with NUL (which PostgreSQL text cannot hold) replaced by U+FFFD."""

    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace("\x00", "\ufffd"))


class _NulFreeStrBinaryDumper(StrBinaryDumper):
    """The binary-format twin of :class:`_NulFreeStrDumper`."""

    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace("\x00", "\ufffd"))


class PostgresRepository:
    """A :class:`~asm_email_rules.protocols.SeedableRepository` in one PostgreSQL database.

    ``conninfo`` is a libpq connection string or ``postgresql://`` URL. ``password`` is given
    separately (from an environment variable or a file: see the configuration), so that the
    connection string can be logged; when ``None``, libpq's own sources apply (``PGPASSWORD``,
    ``~/.pgpass``, a password in ``conninfo``). ``timeout`` is how long, in seconds, a statement
    waits for a row lock another transaction holds (and how long connecting may take) before
    failing. ``schema``, when given, is created if missing and holds our tables.
    Commits are made durable by :meth:`sync` (the polling service calls it once per mailbox
    session, before deletions take effect); ``flush_every_commit=True`` makes every commit
    wait for its own flush instead.
    The schema is created and migrated on first use.

    Raises :class:`~asm_email_rules.errors.RepositoryError` (naming server and database) when
    the server cannot be reached, refuses the login, or holds a newer schema.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        password: str | None = None,
        timeout: float = 5.0,
        schema: str | None = None,
        application_name: str = "asm-email-rules",
        flush_every_commit: bool = False,
    ) -> None:
        self._flush_every_commit = flush_every_commit
        self._conninfo = conninfo
        self._password = password
        self._timeout = timeout
        self._schema = schema
        self._application_name = application_name
        self._where = describe_conninfo(conninfo)
        self._depth = 0
        self._conn = self._connect()
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresRepository {self._where}>"

    # -- connection -----------------------------------------------------------------------
    @property
    def where(self) -> str:
        """``PostgreSQL server HOST:PORT, database NAME`` (never the password)."""
        return self._where

    @property
    def schema_version(self) -> int:
        """The schema version of the database (0 before the first migration)."""
        return self._version()

    def _secret_free(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _error(self, what: str, exc: BaseException) -> RepositoryError:
        """The typed error for a psycopg failure: :class:`StoreUnavailableError` when the server
        cannot work right now (connection lost or refused, disk full, out of memory, lock or
        statement timeout, shutdown, a serialization failure or deadlock, a read-only
        transaction: psycopg's ``OperationalError`` and ``InterfaceError``, SQLSTATE 25006),
        else a plain :class:`RepositoryError`."""
        detail = self._secret_free(str(exc).strip()) or type(exc).__name__
        unavailable = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or (
            getattr(exc, "sqlstate", None) == "25006"
        )
        kind = StoreUnavailableError if unavailable else RepositoryError
        return kind(f"{self._where}: {what}: {detail}")

    @property
    def _lock_timeout(self) -> str:
        return f"{max(1, int(self._timeout * 1000))}ms"

    def _connect(self) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(self._timeout)),
            "application_name": self._application_name,
        }
        if self._password is not None:
            extra["password"] = self._password
        try:
            conn = psycopg.connect(self._conninfo, **extra)
        except psycopg.Error as exc:
            raise self._error("cannot connect", exc) from None
        conn.adapters.register_dumper(str, _NulFreeStrBinaryDumper)
        conn.adapters.register_dumper(str, _NulFreeStrDumper)
        try:
            conn.execute(
                "SELECT set_config('TimeZone', 'UTC', false),"
                " set_config('lock_timeout', %s, false),"
                " set_config('synchronous_commit', %s, false)",
                (self._lock_timeout, "on" if self._flush_every_commit else "off"),
            )
            if self._schema is not None:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
        except psycopg.Error as exc:
            conn.close()
            raise self._error("cannot prepare the session", exc) from None
        return conn

    def _reconnect_if_broken(self) -> None:
        if self._depth == 0 and (self._conn.closed or self._conn.broken):
            log.warning("PostgreSQL connection lost; reconnecting", extra={"store": self._where})
            self._conn = self._connect()

    def _version(self) -> int:
        row = self._one("SELECT to_regclass('asm_schema_version') IS NOT NULL")
        if not row[0]:
            return 0
        return int(self._one("SELECT COALESCE(MAX(version), 0) FROM asm_schema_version")[0])

    def _migrate(self) -> None:
        """Apply the missing schema steps, one process at a time.

        A session-level advisory lock serialises processes that start together on a new
        database; the check and the steps then run in a transaction begun after the lock is
        held, so they see what the process before us committed (catalog caches included).
        The wait for that lock is bounded by :data:`MIGRATION_WAIT` seconds.
        """
        known = len(MIGRATIONS)
        version = self._version()
        self._refuse_newer(version, known)
        if version == known:
            return
        self._execute(
            "SELECT set_config('lock_timeout', %s, false), pg_advisory_lock(%s),"
            " set_config('lock_timeout', %s, false)",
            (f"{int(MIGRATION_WAIT * 1000)}ms", MIGRATION_LOCK, self._lock_timeout),
        )
        try:
            with self.transaction():
                if self._schema is not None:
                    self._execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            sql.Identifier(self._schema)
                        )
                    )
                version = self._version()  # another process may have migrated meanwhile
                self._refuse_newer(version, known)
                for target in range(version + 1, known + 1):
                    for statement in MIGRATIONS[target - 1]:
                        self._execute(statement)
                    self._execute("INSERT INTO asm_schema_version (version) VALUES (%s)", (target,))
                    log.info(
                        "PostgreSQL schema migrated",
                        extra={"store": self._where, "version": target},
                    )
        finally:
            if not self._conn.closed:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def _refuse_newer(self, version: int, known: int) -> None:
        if version > known:
            raise RepositoryError(
                f"{self._where}: database schema version {version} is newer than this "
                f"asm-email-rules knows (up to {known}); upgrade the library to open it"
            )

    def sync(self) -> None:
        """Make every transaction committed so far durable, even against a power loss.

        The session commits with ``synchronous_commit = off``: a commit is safe at once from a
        crash of our process, and from a crash of the server or the machine once the server's
        WAL writer has flushed it (within a fraction of a second), which this call forces: it
        commits one transaction with ``synchronous_commit = on``, whose wait for its own WAL
        record covers every earlier one. The polling service calls it before a mailbox's
        deletions take effect, so a message never leaves the mailbox while its record could
        still be lost; one flush per mailbox session instead of one per message, as for
        SQLite. With ``flush_every_commit=True`` every commit waits for its flush and this
        does nothing. Raises :class:`StoreUnavailableError` when the server cannot do it.
        """
        if self._flush_every_commit:
            return
        with self.transaction():
            self._execute("SET LOCAL synchronous_commit = on")
            # A transactional WAL record (no table touched): its commit record is flushed.
            self._execute("SELECT pg_logical_emit_message(true, %s, %s)", ("asm-sync", ""))

    def close(self) -> None:
        """Close the connection; an open transaction is rolled back by the server."""
        self._conn.close()

    def __enter__(self) -> PostgresRepository:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _execute(
        self,
        query: str | sql.Composed,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
    ) -> psycopg.Cursor[Any]:
        self._reconnect_if_broken()
        try:
            return self._conn.execute(query, params)
        except psycopg.Error as exc:
            raise self._error("PostgreSQL error", exc) from exc

    def _one(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        return self._execute(query, params).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN`` ... ``COMMIT``; ``ROLLBACK`` on an exception; nested calls join."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._execute("BEGIN")
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
        except psycopg.Error as exc:
            self._rollback()
            raise self._error("commit failed", exc) from exc

    def _rollback(self) -> None:
        if self._conn.closed:
            return
        try:
            self._conn.execute("ROLLBACK")
        except psycopg.Error:
            log.exception("PostgreSQL rollback failed", extra={"store": self._where})

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
            is_analyst=row[3],
            is_user=row[4],
            can_take_over=row[5],
            analyst_can_reopen=row[6],
            user_can_reopen=row[7],
            analyst_role=row[8],
            user_role=row[9],
        )

    def persons_by_address(self, address: str) -> Sequence[Person]:
        """Every person whose email matches ``address`` case-insensitively, lowest id first."""
        rows = self._execute(
            f"SELECT {self._PERSON_COLUMNS} FROM persons WHERE email_key = %s ORDER BY id",
            (address_key(address),),
        ).fetchall()
        return [self._person(row) for row in rows]

    def get_person(self, person_id: int) -> Person | None:
        """The person with this id, or ``None``."""
        row = self._one(f"SELECT {self._PERSON_COLUMNS} FROM persons WHERE id = %s", (person_id,))
        return None if row is None else self._person(row)

    def get_role(self, name: str) -> SecurityRole | None:
        """The security role called ``name``, or ``None`` (one statement, one snapshot)."""
        row = self._one(
            "SELECT ARRAY(SELECT right_name FROM role_rights WHERE role_name = r.name)"
            " FROM security_roles r WHERE r.name = %s",
            (name,),
        )
        return None if row is None else SecurityRole(name, frozenset(Right(v) for v in row[0]))

    def get_group(self, name: str) -> Group | None:
        """The assignment group called ``name``, or ``None``."""
        row = self._one("SELECT name, email FROM assignment_groups WHERE name = %s", (name,))
        return None if row is None else Group(row[0], row[1])

    def list_persons(self, *, after: int = 0, limit: int = 100) -> Sequence[Person]:
        """Persons with an id above ``after``, lowest id first, at most ``limit``."""
        rows = self._execute(
            f"SELECT {self._PERSON_COLUMNS} FROM persons WHERE id > %s ORDER BY id LIMIT %s",
            (after, max(limit, 0)),
        ).fetchall()
        return [self._person(row) for row in rows]

    def list_calls(
        self, *, status: CallStatus | None = None, after: int = 0, limit: int = 100
    ) -> Sequence[Call]:
        """Calls numbered above ``after`` (with ``status`` when given), lowest first."""
        wanted = None if status is None else status.value
        rows = self._execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls WHERE number > %(after)s"
            " AND (%(status)s::text IS NULL OR status = %(status)s::text)"
            " ORDER BY number LIMIT %(limit)s",
            {"after": after, "status": wanted, "limit": max(limit, 0)},
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
            updated=row[8],
            last_update=_opt_utc(row[9]),
            call_screen_set=row[10],
            ipk_status=row[11],
            ipk_stream=row[12],
            subject=row[13],
        )

    def get_call(self, number: int) -> Call | None:
        """The call with this number, or ``None``."""
        row = self._one(f"SELECT {self._CALL_COLUMNS} FROM calls WHERE number = %s", (number,))
        return None if row is None else self._call(row)

    def get_task(self, number: int) -> Task | None:
        """The task or approval with this number, or ``None`` (one statement, one snapshot)."""
        row = self._one(
            "SELECT number, kind, status, request_number, owner_id, group_name, partition,"
            " description, updated, last_update,"
            " ARRAY(SELECT person_id FROM task_approvers WHERE task_number = t.number"
            " ORDER BY position),"
            " ARRAY(SELECT person_id FROM task_forwarded WHERE task_number = t.number"
            " ORDER BY position),"
            " ARRAY(SELECT person_id FROM task_forwarded_by WHERE task_number = t.number"
            " ORDER BY position)"
            " FROM tasks t WHERE number = %s",
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
            approver_ids=tuple(row[10]),
            forwarded_ids=tuple(row[11]),
            group=row[5],
            partition=row[6],
            description=row[7],
            updated=row[8],
            last_update=_opt_utc(row[9]),
            forwarded_by_ids=tuple(row[12]),
        )

    def get_request(self, number: int) -> Request | None:
        """The request with this number, or ``None`` (one statement, one snapshot)."""
        row = self._one(
            "SELECT number, status, owner_id, group_name, partition, description, updated,"
            " last_update,"
            " ARRAY(SELECT person_id FROM request_forwarded WHERE request_number = r.number"
            " ORDER BY position),"
            " ARRAY(SELECT person_id FROM request_forwarded_by WHERE request_number = r.number"
            " ORDER BY position)"
            " FROM requests r WHERE number = %s",
            (number,),
        )
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
            updated=row[6],
            last_update=_opt_utc(row[7]),
            forwarded_by_ids=tuple(row[9]),
        )

    def summary(self, kind: str, person_id: int, limit: int) -> tuple[list[SummaryItem], int]:
        """Items of a summary (``calls``, ``requests`` or ``tasks``) newest first, and the total.

        ``calls``: open calls the person owns. ``requests``: open requests the person owns,
        forwarded or was forwarded. ``tasks``: tasks and approvals the person owns, may
        approve, forwarded or was forwarded, unless completed, approved or rejected. One
        statement: the items and the total come from one snapshot.
        """
        subject = "''"
        if kind == "calls":
            ref_kind, table = EntityKind.CALL, "calls"
            where = "r.owner_id = %(p)s AND r.status = 'open'"
            subject = "r.subject"
        elif kind == "requests":
            ref_kind, table = EntityKind.REQUEST, "requests"
            where = (
                "r.number IN (SELECT number FROM requests WHERE owner_id = %(p)s"
                " UNION SELECT request_number FROM request_forwarded WHERE person_id = %(p)s"
                " UNION SELECT request_number FROM request_forwarded_by"
                " WHERE person_id = %(p)s)"
                " AND r.status <> 'closed'"
            )
        elif kind == "tasks":
            ref_kind, table = EntityKind.TASK, "tasks"
            done = ", ".join(f"'{status.value}'" for status in sorted(TASK_DONE_STATUSES, key=str))
            where = (
                "r.number IN (SELECT number FROM tasks WHERE owner_id = %(p)s"
                " UNION SELECT task_number FROM task_approvers WHERE person_id = %(p)s"
                " UNION SELECT task_number FROM task_forwarded WHERE person_id = %(p)s"
                " UNION SELECT task_number FROM task_forwarded_by WHERE person_id = %(p)s)"
                f" AND r.status NOT IN ({done})"
            )
        else:
            raise RepositoryError(f"unknown summary kind {kind!r}; expected one of {SUMMARY_KINDS}")
        rows = self._execute(
            f"WITH matched AS (SELECT r.number, r.status, r.description, r.last_update,"
            f" r.group_name, r.owner_id, {subject} AS subject FROM {table} r WHERE {where})"
            " SELECT t.total, m.number, m.status, m.description, m.last_update, m.group_name,"
            " o.name, o.email, m.subject"
            " FROM (SELECT COUNT(*) AS total FROM matched) t"
            " LEFT JOIN LATERAL (SELECT * FROM matched"
            " ORDER BY last_update DESC NULLS LAST, number DESC LIMIT %(limit)s) m ON true"
            " LEFT JOIN persons o ON o.id = m.owner_id"
            " ORDER BY m.last_update DESC NULLS LAST, m.number DESC",
            {"p": person_id, "limit": max(limit, 0)},
        ).fetchall()
        total = int(rows[0][0]) if rows else 0
        items = [
            SummaryItem(
                ref=EntityRef(ref_kind, row[1]),
                state=row[2],
                description=short_description(row[3], row[8] or ""),
                last_update=_opt_utc(row[4]),
                assignee=(row[6] or row[7]) if row[7] is not None else row[5],
            )
            for row in rows
            if row[1] is not None
        ]
        return items, total

    def entity_for_message_id(self, message_id: str) -> EntityRef | None:
        """The record one of our own sent Message-IDs was about, or ``None``."""
        row = self._one(
            "SELECT entity_kind, entity_number FROM sent_messages WHERE message_id = %s",
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
            " FROM ledger WHERE mailbox = %s AND message_id = %s AND sha256 = %s",
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
            processed_at=_opt_utc(row[5]),
            seen_at=_opt_utc(row[6]),
        )

    def entries(self, ref: EntityRef) -> Sequence[LogEntry]:
        """The log of a record (history, notes, objects, notifications), oldest first."""
        rows = self._execute(
            "SELECT kind, text, author, security_profile, at FROM log_entries"
            " WHERE entity_kind = %s AND entity_number = %s ORDER BY id",
            (ref.kind.value, ref.number),
        ).fetchall()
        return [
            LogEntry(
                ref=ref,
                kind=EntryKind(row[0]),
                text=row[1],
                author=row[2],
                security_profile=row[3],
                at=_opt_utc(row[4]),
            )
            for row in rows
        ]

    def attachments(self, ref: EntityRef) -> Sequence[Attachment]:
        """The files attached to a record, oldest first, with their bytes (not in the protocol)."""
        rows = self._execute(
            "SELECT a.filename, a.content_type, a.data, a.inline, a.content_id"
            " FROM attachments a JOIN log_entries e ON e.id = a.entry_id"
            " WHERE e.entity_kind = %s AND e.entity_number = %s ORDER BY e.id",
            (ref.kind.value, ref.number),
        ).fetchall()
        return [
            Attachment(
                filename=row[0],
                content_type=row[1],
                data=bytes(row[2]),
                inline=row[3],
                content_id=row[4],
            )
            for row in rows
        ]

    def replies_sent_since(self, address: str, since: datetime) -> int:
        """How many replies went to ``address`` at or after ``since`` (for the reply budget)."""
        row = self._one(
            "SELECT COUNT(*) FROM sent_messages WHERE recipient_key = %s AND sent_at >= %s",
            (address_key(address), to_utc(since)),
        )
        return int(row[0])

    def is_token_used(self, token_id: str) -> bool:
        """True when this approval token was already spent."""
        return self._one("SELECT 1 FROM used_tokens WHERE token_id = %s", (token_id,)) is not None

    # -- reply outbox: reads ------------------------------------------------------------------
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
            queued_at=to_utc(row[5]),
            next_attempt_at=to_utc(row[6]),
            attempts=row[7],
            last_error=row[8],
            claimed_by=row[9],
            claimed_until=_opt_utc(row[10]),
            sent_at=_opt_utc(row[11]),
        )

    def outbox_entry(self, reply_message_id: str) -> OutboxEntry | None:
        """The outbox entry of our reply with this Message-ID (angle brackets optional)."""
        row = self._one(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger WHERE reply_message_id = %s",
            (message_id_key(reply_message_id),),
        )
        return None if row is None else self._outbox(row)

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        """PENDING replies due at ``now`` and not under a live claim, the longest due first."""
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger"
            " WHERE reply_status = 'pending' AND next_attempt_at <= %(at)s"
            " AND (claimed_by = '' OR claimed_until IS NULL OR claimed_until <= %(at)s)"
            " AND (%(mailbox)s::text IS NULL OR mailbox = %(mailbox)s)"
            " ORDER BY next_attempt_at, queued_at, reply_message_id LIMIT %(limit)s",
            {"at": to_utc(now), "mailbox": mailbox, "limit": max(limit, 0)},
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
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM ledger WHERE reply_message_id IS NOT NULL"
            " AND (%(all)s OR reply_status = ANY(%(statuses)s::text[]))"
            " AND (%(mailbox)s::text IS NULL OR mailbox = %(mailbox)s)"
            " ORDER BY queued_at DESC, reply_message_id DESC LIMIT %(limit)s",
            {
                "all": statuses is None,
                "statuses": [status.value for status in (statuses or ())],
                "mailbox": mailbox,
                "limit": max(limit, 0),
            },
        ).fetchall()
        return [self._outbox(row) for row in rows]

    # -- seeding ----------------------------------------------------------------------------
    def put_person(self, person: Person) -> None:
        """Insert or replace a person record as given (id included)."""
        self._execute(
            "INSERT INTO persons (id, email, email_key, name, is_analyst, is_user, can_take_over,"
            " analyst_can_reopen, user_can_reopen, analyst_role, user_role)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
                _opt_utc(call.last_update),
                call.call_screen_set,
                call.ipk_status,
                call.ipk_stream,
                call.subject,
            ),
        )

    def _put_people(self, table: str, column: str, number: int, ids: tuple[int, ...]) -> None:
        self._execute(f"DELETE FROM {table} WHERE {column} = %s", (number,))
        if ids:
            self._execute(
                f"INSERT INTO {table} ({column}, position, person_id) SELECT %s, p.ord - 1, p.id"
                " FROM unnest(%s::bigint[]) WITH ORDINALITY AS p(id, ord)",
                (number, list(ids)),
            )

    def put_task(self, task: Task) -> None:
        """Insert or replace a task or approval as given; datetimes become UTC."""
        with self.transaction():
            self._execute(
                "INSERT INTO tasks (number, kind, status, request_number, owner_id, group_name,"
                " partition, description, updated, last_update)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
                    _opt_utc(task.last_update),
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
                " description, updated, last_update) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
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
                    _opt_utc(request.last_update),
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
                "INSERT INTO security_roles (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                (role.name,),
            )
            self._execute("DELETE FROM role_rights WHERE role_name = %s", (role.name,))
            if role.rights:
                self._execute(
                    "INSERT INTO role_rights (role_name, right_name) SELECT %s, unnest(%s::text[])",
                    (role.name, sorted(right.value for right in role.rights)),
                )

    def put_group(self, group: Group) -> None:
        """Insert or replace an assignment group (by name) and its address."""
        self._execute(
            "INSERT INTO assignment_groups (name, email) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET email = excluded.email",
            (group.name, group.email),
        )

    # -- writes -----------------------------------------------------------------------------
    _BIG_GAP = 100_000
    """A gap this wide between a sequence and its table is closed with ``setval`` (see below)."""

    def _next_number(self, sequence: str, table: str, column: str) -> int:
        """The next value of ``sequence``, moved past any ``column`` put behind its back.

        The common case is one statement: ``nextval`` and an index lookup of the highest
        number. When a higher record exists (seeded, or inserted by a host), enough values are
        drawn in one more statement to pass it: ``nextval`` is atomic, so concurrent callers
        still get distinct numbers, and the sequence is never moved backwards. A gap wider than
        :attr:`_BIG_GAP` is closed with ``setval`` instead (no concurrent caller can draw that
        many values in the instant between reading and setting).
        """
        row = self._one(f"SELECT nextval('{sequence}'), (SELECT MAX({column}) FROM {table})")
        number, top = int(row[0]), row[1]
        if top is None or number > top:
            return number
        if top - number > self._BIG_GAP:
            row = self._one(f"SELECT setval('{sequence}', %s), nextval('{sequence}')", (top,))
            return int(row[1])
        row = self._one(
            f"SELECT MAX(n) FROM (SELECT nextval('{sequence}') AS n"
            " FROM generate_series(1, %s)) AS drawn",
            (top - number + 1,),
        )
        return int(row[0])

    def create_person(self, email: str, name: str, *, is_user: bool) -> Person:
        """A new person record with a new id above every existing one (User when ``is_user``).

        One statement in the common case (the id drawn, checked against the highest id in
        use, and the row written); see :meth:`_next_number` for the other.
        """
        values = (email, address_key(email), name, is_user)
        row = self._one(
            "INSERT INTO persons (id, email, email_key, name, is_user)"
            " SELECT n.v, %s, %s, %s, %s FROM (SELECT nextval('person_ids') AS v,"
            " (SELECT MAX(id) FROM persons) AS top) AS n"
            " WHERE n.top IS NULL OR n.v > n.top RETURNING id",
            values,
        )
        if row is None:  # ids were put above the sequence: move it past them
            with self.transaction():
                row = (self._next_number("person_ids", "persons", "id"),)
                self._execute(
                    "INSERT INTO persons (id, email, email_key, name, is_user)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (row[0], *values),
                )
        return Person(id=int(row[0]), email=email, name=name, is_user=is_user)

    def set_user_flag(self, person_id: int) -> None:
        """Select the User flag on an existing person."""
        cursor = self._execute("UPDATE persons SET is_user = true WHERE id = %s", (person_id,))
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
        """Log an open call with a new number (above every existing one, never reused).

        One statement in the common case, as :meth:`create_person`.
        """
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
        values = (
            call.status.value,
            call.user_id,
            call.owner_id,
            call.group,
            call.partition,
            call.description,
            call.logging_analyst_id,
            call.updated,
            call.last_update,
            call.call_screen_set,
            call.ipk_status,
            call.ipk_stream,
            call.subject,
        )
        row = self._one(
            f"INSERT INTO calls ({self._CALL_COLUMNS})"
            " SELECT n.v, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"
            " FROM (SELECT nextval('call_numbers') AS v, (SELECT MAX(number) FROM calls) AS top)"
            " AS n WHERE n.top IS NULL OR n.v > n.top RETURNING number",
            values,
        )
        if row is None:  # calls were put above the sequence: move it past them
            with self.transaction():
                row = (self._next_number("call_numbers", "calls", "number"),)
                self.put_call(attrs.evolve(call, number=row[0]))
        return attrs.evolve(call, number=int(row[0]))

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
        """One statement on record ``ref``: lock its row until the commit, append the log
        ``entry`` (kind, text, author) with its ``attachment``, and apply ``assignments``.

        Returns the record's status as it was; :class:`NotFoundError` when there is no such
        record. With ``when_status``, nothing is written unless the status was that one (the
        caller reads the returned status to say why). One round trip, atomic on its own, so
        these methods need no transaction of their own outside a unit of work.
        """
        table = _RECORD_TABLES[ref.kind]
        gate = " WHERE status = %(when_status)s" if when_status is not None else ""
        parts = [
            f"target AS (SELECT number, status FROM {table} WHERE number = %(number)s FOR UPDATE)",
            f"go AS (SELECT number FROM target{gate})",
        ]
        if entry is not None:
            parts.append(
                "entry AS (INSERT INTO log_entries (entity_kind, entity_number, kind, text,"
                " author, security_profile, at) SELECT %(entity_kind)s, number, %(kind)s,"
                " %(text)s, %(author)s, %(profile)s, %(at)s FROM go RETURNING id)"
            )
        if attachment is not None:
            parts.append(
                "stored AS (INSERT INTO attachments (entry_id, filename, content_type, data,"
                " inline, content_id) SELECT id, %(filename)s, %(content_type)s, %(data)s,"
                " %(inline)s, %(content_id)s FROM entry)"
            )
            params.update(
                filename=attachment.filename,
                content_type=attachment.content_type,
                data=attachment.data,
                inline=attachment.inline,
                content_id=attachment.content_id,
            )
        if assignments:
            parts.append(
                f"changed AS (UPDATE {table} SET {assignments}"
                " WHERE number IN (SELECT number FROM go))"
            )
        kind, text, author = entry if entry is not None else (EntryKind.HISTORY, "", "")
        row = self._one(
            f"WITH {', '.join(parts)} SELECT status FROM target",
            {
                "number": ref.number,
                "when_status": when_status,
                "entity_kind": ref.kind.value,
                "kind": kind.value,
                "text": text,
                "author": author,
                "profile": security_profile,
                "at": to_utc(at),
                **params,
            },
        )
        if row is None:
            raise NotFoundError(f"{ref} does not exist")
        return str(row[0])

    def add_history(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Append a history entry to a call, task or request (its last update becomes ``now``)."""
        entry = (EntryKind.HISTORY, text, author)
        self._write_on(ref, entry, "last_update = %(at)s", at=now)

    def add_note(self, ref: EntityRef, text: str, author: str, now: datetime) -> None:
        """Add a note to a record (used on closed calls, which keep their state)."""
        self._write_on(ref, (EntryKind.NOTE, text, author), "last_update = %(at)s", at=now)

    def attach(
        self, ref: EntityRef, attachment: Attachment, security_profile: str, now: datetime
    ) -> None:
        """Attach a file (bytes kept) as an object; its log line names the file and profile."""
        self._write_on(
            ref,
            (EntryKind.ATTACHMENT, attachment.filename, ""),
            "last_update = %(at)s",
            at=now,
            security_profile=security_profile,
            attachment=attachment,
        )

    def mark_updated(self, ref: EntityRef) -> None:
        """Set the note icon that tells the handling analyst the record changed."""
        row = self._one(
            f"UPDATE {_RECORD_TABLES[ref.kind]} SET updated = true WHERE number = %s RETURNING 1",
            (ref.number,),
        )
        if row is None:
            raise NotFoundError(f"{ref} does not exist")

    def close_call(self, number: int, by: str, now: datetime) -> None:
        """Close an open call; closing one that is already closed is refused."""
        ref = EntityRef(EntityKind.CALL, number)
        was = self._write_on(
            ref,
            (EntryKind.STATUS, "closed", by),
            "status = 'closed', last_update = %(at)s",
            at=now,
            when_status=CallStatus.OPEN.value,
        )
        if was != CallStatus.OPEN.value:
            raise RepositoryError(f"{ref} is already closed")

    def reopen_call(self, number: int, owner_id: int | None, group: str, now: datetime) -> None:
        """Reopen a closed call and assign it to ``owner_id`` and ``group``."""
        ref = EntityRef(EntityKind.CALL, number)
        was = self._write_on(
            ref,
            (EntryKind.STATUS, "reopened", ""),
            "status = 'open', owner_id = %(owner)s, group_name = %(group)s, last_update = %(at)s",
            at=now,
            when_status=CallStatus.CLOSED.value,
            owner=owner_id,
            group=group,
        )
        if was != CallStatus.CLOSED.value:
            raise RepositoryError(f"{ref} is not closed")

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        """Set a task's or approval's status (approve, reject, complete)."""
        self._write_on(
            EntityRef(EntityKind.TASK, number),
            (EntryKind.STATUS, status.value, by),
            "status = %(status)s, last_update = %(at)s",
            at=now,
            status=status.value,
        )

    def record_notification(self, ref: EntityRef, text: str, now: datetime) -> None:
        """Queue a notification to the record's assigned analyst or group."""
        self._write_on(ref, (EntryKind.NOTIFICATION, text, ""), "", at=now)

    def record_processed(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        decision_json: str,
        reply: OutgoingEmail | None,
        now: datetime,
    ) -> None:
        """Write the ledger entry (reply PENDING, or NONE without one); a second is refused.

        The refusal is a :class:`~asm_email_rules.errors.RepositoryError`, raised without
        aborting the surrounding transaction (the insert does nothing on a conflict). Two
        transactions recording one message at once: the second waits for the first and is
        refused when it commits.
        """
        status = ReplyStatus.NONE if reply is None else ReplyStatus.PENDING
        queued = None if reply is None else to_utc(now)
        row = self._one(
            "INSERT INTO ledger (mailbox, message_id, sha256, decision_json, reply_json,"
            " reply_status, attempts, last_error, processed_at, reply_message_id, queued_at,"
            " next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, 0, '', %s, %s, %s, %s)"
            " ON CONFLICT (mailbox, message_id, sha256) DO NOTHING RETURNING 1",
            (
                mailbox,
                message_id,
                sha256,
                decision_json,
                None if reply is None else reply_to_json(reply),
                status.value,
                to_utc(now),
                None if reply is None else message_id_key(reply.message_id),
                queued,
                queued,
            ),
        )
        if row is None:
            raise RepositoryError(
                f"message {message_id!r} ({sha256}) already recorded in {mailbox!r}"
            )

    # -- ledger retention (asm_email_rules.protocols.LedgerRetention) -------------------------
    def touch_ledger(self, mailbox: str, message_id: str, sha256: str, now: datetime) -> None:
        """Record that this entry's message was seen in a mailbox at ``now``."""
        self._execute(
            "UPDATE ledger SET seen_at = %s WHERE mailbox = %s AND message_id = %s AND sha256 = %s",
            (to_utc(now), mailbox, message_id, sha256),
        )

    def prune_ledger(self, mailbox: str, before: datetime) -> int:
        """Forget ``mailbox``'s entries last seen before ``before`` (their outbox entries live in
        the same rows), except those with a PENDING reply and quarantine records; how many."""
        cursor = self._execute(
            "DELETE FROM ledger WHERE mailbox = %s AND COALESCE(seen_at, processed_at) < %s"
            " AND reply_status <> 'pending'"
            " AND NOT (message_id = '' AND left(decision_json, %s) = %s)",
            (mailbox, to_utc(before), len(QUARANTINE_RECORD_PREFIX), QUARANTINE_RECORD_PREFIX),
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
            "UPDATE ledger SET reply_status = %s, attempts = %s, last_error = %s"
            " WHERE mailbox = %s AND message_id = %s AND sha256 = %s",
            (status.value, attempts, error, mailbox, message_id, sha256),
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"no ledger entry for {message_id!r} ({sha256}) in {mailbox!r}")

    # -- reply outbox and leases: writes ------------------------------------------------------
    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        """Claim a PENDING, due reply that no other sender holds; None when it cannot be.

        The row is picked with ``FOR UPDATE SKIP LOCKED``: a sender racing another one for
        the same reply does not wait for the other's lock, it gets None at once (the other
        is claiming it, or finishing it), and claims are never blocked by long transactions.
        """
        row = self._one(
            "UPDATE ledger SET claimed_by = %(owner)s, claimed_until = %(until)s"
            " WHERE reply_message_id = (SELECT reply_message_id FROM ledger"
            " WHERE reply_message_id = %(id)s AND reply_status = 'pending'"
            " AND next_attempt_at <= %(at)s AND (claimed_by IN ('', %(owner)s)"
            " OR claimed_until IS NULL OR claimed_until <= %(at)s)"
            " FOR UPDATE SKIP LOCKED)"
            f" RETURNING {self._OUTBOX_COLUMNS}",
            {
                "owner": owner,
                "until": to_utc(until),
                "id": message_id_key(reply_message_id),
                "at": to_utc(now),
            },
        )
        return None if row is None else self._outbox(row)

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
        row = self._one(
            "UPDATE ledger SET reply_status = %(status)s, attempts = attempts + 1,"
            " last_error = %(error)s, claimed_by = '', claimed_until = NULL,"
            " sent_at = CASE WHEN %(sent)s THEN %(at)s ELSE sent_at END,"
            " next_attempt_at = COALESCE(%(next)s, next_attempt_at)"
            " WHERE reply_message_id = %(id)s AND reply_status = 'pending'"
            " AND claimed_by = %(owner)s RETURNING 1",
            {
                "status": status.value,
                "error": error,
                "sent": status is ReplyStatus.SENT,
                "at": to_utc(now),
                "next": None if next_attempt_at is None else to_utc(next_attempt_at),
                "id": message_id_key(reply_message_id),
                "owner": owner,
            },
        )
        return row is not None

    def requeue_reply(self, reply_message_id: str, now: datetime) -> OutboxEntry:
        """Put a FAILED reply back in the outbox, due at ``now`` with a new retry window."""
        key = message_id_key(reply_message_id)
        with self.transaction():
            row = self._one(
                "SELECT reply_status FROM ledger WHERE reply_message_id = %s FOR UPDATE", (key,)
            )
            if row is None:
                raise NotFoundError(f"no reply {reply_message_id!r} in the outbox")
            if row[0] != ReplyStatus.FAILED.value:
                raise RepositoryError(
                    f"reply {reply_message_id!r} is {row[0]}, not failed: not requeued"
                )
            row = self._one(
                "UPDATE ledger SET reply_status = 'pending', queued_at = %(at)s,"
                " next_attempt_at = %(at)s, claimed_by = '', claimed_until = NULL"
                f" WHERE reply_message_id = %(id)s RETURNING {self._OUTBOX_COLUMNS}",
                {"at": to_utc(now), "id": key},
            )
        return self._outbox(row)

    def acquire_lease(self, name: str, owner: str, now: datetime, until: datetime) -> Lease:
        """Take or renew the lease ``name`` unless another owner holds it past ``now``.

        One ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``: two pollers asking at once are
        serialised on the row, and the second sees the first one's lease.
        """
        for _ in range(3):  # the holder may release between our upsert and our read
            row = self._one(
                "INSERT INTO leases (name, owner, expires) VALUES (%(name)s, %(owner)s, %(until)s)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " expires = excluded.expires"
                " WHERE leases.owner = excluded.owner OR leases.expires <= %(at)s"
                " RETURNING owner, expires",
                {"name": name, "owner": owner, "until": to_utc(until), "at": to_utc(now)},
            )
            if row is None:
                row = self._one("SELECT owner, expires FROM leases WHERE name = %s", (name,))
            if row is not None:
                return Lease(name, row[0], to_utc(row[1]))
        raise RepositoryError(f"{self._where}: lease {name!r} changed hands three times at once")

    def release_lease(self, name: str, owner: str) -> None:
        """Give up the lease ``name`` if ``owner`` holds it."""
        self._execute("DELETE FROM leases WHERE name = %s AND owner = %s", (name, owner))

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        """Remember a Message-ID we sent (threading, reply budget); the same id replaces."""
        self._execute(
            "INSERT INTO sent_messages (message_id, entity_kind, entity_number, recipient,"
            " recipient_key, sent_at) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (message_id) DO UPDATE SET entity_kind = excluded.entity_kind,"
            " entity_number = excluded.entity_number, recipient = excluded.recipient,"
            " recipient_key = excluded.recipient_key, sent_at = excluded.sent_at",
            (
                message_id_key(message_id),
                None if ref is None else ref.kind.value,
                None if ref is None else ref.number,
                to,
                address_key(to),
                to_utc(now),
            ),
        )

    def use_token(self, token_id: str, now: datetime) -> None:
        """Spend an approval token; spending it again keeps the first time."""
        self._execute(
            "INSERT INTO used_tokens (token_id, used_at) VALUES (%s, %s)"
            " ON CONFLICT (token_id) DO NOTHING",
            (token_id, to_utc(now)),
        )
