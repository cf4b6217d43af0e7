"""A PostgreSQL repository (``psycopg`` 3): a store that pollers on several hosts can share.

Install with the ``postgres`` extra (``pip install 'asm-email-rules[postgres]'``). The
semantics are those of :class:`~asm_email_rules.adapters.sqlite.SqliteRepository`, checked by
the same conformance kit: inside ``transaction()`` every write joins one transaction that
commits on normal exit and rolls back on an exception; a write made outside any transaction
commits at once (autocommit). One connection per instance: use an instance from one thread.
The queries and row mappings it shares with SQLite are written once, in
:mod:`asm_email_rules.adapters._sql` (``?`` and ``:name`` marks, rewritten to psycopg's once
per statement text); this module keeps what PostgreSQL does its own way.

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

import contextlib
import functools
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
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


from asm_email_rules.adapters._repository import address_key, message_id_key, to_utc
from asm_email_rules.adapters._sql import (
    RECORD_TABLES,
    REKEY_ADDRESSES,
    Migration,
    Params,
    SqlRepository,
    check_constraint,
)
from asm_email_rules.errors import NotFoundError, RepositoryError, StoreUnavailableError
from asm_email_rules.model import (
    Attachment,
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    EntryKind,
    OutboxEntry,
    OutgoingEmail,
    Person,
    ReplyStatus,
    RequestStatus,
    Right,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.quarantine import QuarantineState
from asm_email_rules.settings import CallTemplate
from asm_email_rules.summary_text import SUMMARY_SCAN_CHARS

__all__ = ["MIGRATIONS", "PostgresRepository", "describe_conninfo"]

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x61736D2D6D6967
"""The advisory lock key that serialises schema migrations between processes ("asm-mig")."""

MIGRATION_WAIT = 300.0
"""Seconds a process waits for another one's schema migration before giving up."""

_check = check_constraint


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

_V5: Migration = (
    # The store's quarantine (asm_email_rules.quarantine), the table of SQLite's schema 4.
    f"""CREATE TABLE quarantine (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account text NOT NULL,
        source text NOT NULL,
        mailbox_key text NOT NULL DEFAULT '',
        sha256 text NOT NULL,
        reason text NOT NULL,
        raw bytea NOT NULL,
        quarantined_at timestamptz NOT NULL,
        state text NOT NULL {_check("state", QuarantineState)},
        resolved_at timestamptz,
        resolution text NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX quarantine_by_state ON quarantine (state, id)",
)

_V6: Migration = (REKEY_ADDRESSES,)
"""Addresses compared in a new form (IDN domains in Unicode, lower case one character to one:
no ``ß`` -> ``ss``, ``ς`` -> ``σ`` fold)."""

_V7: Migration = (
    # ``replies list --failed`` (newest queued first, at most --limit) read every reply in
    # the ledger and sorted them; the failed ones are few, so an index of them alone costs
    # the writes of every other message nothing. (Indexes of every reply, for ``--sent`` and
    # ``--all``, cost the Maildir column 5 % more CPU a message: not kept.)
    "CREATE INDEX ledger_failed_replies ON ledger (queued_at, reply_message_id)"
    " WHERE reply_message_id IS NOT NULL AND reply_status = 'failed'",
    # Our Message-IDs about no record are read only by the reply budget (the last hour);
    # prune_sent_messages forgets the older ones oldest first through this index.
    "CREATE INDEX sent_unthreaded_by_age ON sent_messages (sent_at) WHERE entity_kind IS NULL",
    # A used approval token is refused anyway once it expires: its expiry (NULL for tokens
    # used before this step, unknown, kept) lets prune_used_tokens forget it then.
    "ALTER TABLE used_tokens ADD COLUMN expires_at timestamptz",
    "CREATE INDEX used_tokens_by_expiry ON used_tokens (expires_at) WHERE expires_at IS NOT NULL",
    # quarantine purge forgets entries by state and last change, oldest first (SQLite's 8).
    "CREATE INDEX quarantine_by_age ON quarantine (state, (COALESCE(resolved_at, quarantined_at)))",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7)
"""Schema steps; ``asm_schema_version`` holds one row per step applied (the highest is current)."""


_NAMED_MARK = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def _pyformat(query: str) -> str:
    """Shared SQL (``?`` and ``:name`` marks, see :mod:`asm_email_rules.adapters._sql`) in
    psycopg's marks (``%s``, ``%(name)s``), a literal ``%`` doubled; computed once per text."""
    return _NAMED_MARK.sub(r"%(\1)s", query.replace("%", "%%")).replace("?", "%s")


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


_REFUSED_WORDS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "does not exist",
    "pg_hba.conf",
)
"""How the server words a login it refuses for good (a wrong password, no such role or
database, no ``pg_hba.conf`` entry). psycopg gives no SQLSTATE for a failed connection, so
the words are all there is; a server with other ``lc_messages`` is waited for, as one that
does not answer."""


def _login_refused(exc: BaseException) -> bool:
    """True when ``exc`` from connecting says the login is refused, not the server away."""
    text = str(exc)
    return any(words in text for words in _REFUSED_WORDS)


_KEEPALIVES: Mapping[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
"""libpq's TCP settings (its "Connection Strings" parameters), unless the store's URL sets
its own: a server host that vanishes (powered off, a network cut) is noticed in about a minute
(an idle connection's probes unanswered, or data sent and never acknowledged) and the store
raises StoreUnavailableError. Without them a poller waiting for an answer waited as long as
the kernel's TCP let it: two hours and more. A busy server's kernel answers the probes, so a
long statement is never cut by them."""


class PostgresRepository(SqlRepository):
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
    The schema is created and migrated on first use (``migrate=False``: an older schema is
    left as it is, for commands that change nothing; see :attr:`schema_latest`).

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
        migrate: bool = True,
    ) -> None:
        self._migrate_on_open = migrate
        self._flush_every_commit = flush_every_commit
        self._conninfo = conninfo
        self._password = password
        self._timeout = timeout
        self._schema = schema
        self._application_name = application_name
        self._where = describe_conninfo(conninfo)
        self._depth = 0
        self.created = False
        """True when this opening created our tables (the schema had none: a new desk)."""
        self._conn = self._connect(opening=True)
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

    @property
    def schema_latest(self) -> int:
        """The schema version this library migrates a database to (:data:`MIGRATIONS`)."""
        return len(MIGRATIONS)

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

    def _connect(self, *, opening: bool = False) -> psycopg.Connection[Any]:
        """A configured connection; StoreUnavailableError when the server cannot be reached.
        ``opening`` (the first connection): a login the server refuses is a plain
        RepositoryError instead, a configuration to fix (while running, a refusal after a
        password change is an outage the service backs off from)."""
        extra: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(self._timeout)),
            "application_name": self._application_name,
        }
        if self._password is not None:
            extra["password"] = self._password
        written = pg_conninfo.conninfo_to_dict(self._conninfo)
        extra.update({k: v for k, v in _KEEPALIVES.items() if k not in written})
        try:
            conn = psycopg.connect(self._conninfo, **extra)
        except psycopg.Error as exc:
            error = self._error("cannot connect", exc)
            if opening and _login_refused(exc):  # nothing to wait for: fix the configuration
                raise RepositoryError(str(error)) from None
            raise error from None
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
        row = self._native_one("SELECT to_regclass('asm_schema_version') IS NOT NULL")
        if not row[0]:
            return 0
        return int(self._native_one("SELECT COALESCE(MAX(version), 0) FROM asm_schema_version")[0])

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
        if version == known or not self._migrate_on_open:
            return
        self._native(
            "SELECT set_config('lock_timeout', %s, false), pg_advisory_lock(%s),"
            " set_config('lock_timeout', %s, false)",
            (f"{int(MIGRATION_WAIT * 1000)}ms", MIGRATION_LOCK, self._lock_timeout),
        )
        try:
            with self.transaction():
                if (
                    self._schema is not None
                    and not self._native_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)",
                        (self._schema,),
                    )[0]
                ):
                    # only when missing: CREATE SCHEMA IF NOT EXISTS asks for the right to
                    # create in the database even when the schema is there (a schema a DBA
                    # made for a role that may not create schemas could never be migrated)
                    self._native(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self._schema)))
                version = self._version()  # another process may have migrated meanwhile
                self._refuse_newer(version, known)
                for target in range(version + 1, known + 1):
                    for statement in MIGRATIONS[target - 1]:
                        if statement == REKEY_ADDRESSES:
                            self._rekey_addresses()
                        else:
                            self._native(statement)
                    self._native("INSERT INTO asm_schema_version (version) VALUES (%s)", (target,))
                    log.info(
                        "PostgreSQL schema migrated",
                        extra={"store": self._where, "version": target},
                    )
                self.created = version == 0
        finally:
            if not self._conn.closed:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

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

        A server with synchronous standbys (``synchronous_standby_names``) makes that commit
        wait for one of them as well, for ever when none answers. The wait is bounded by
        ``timeout`` seconds: past them the wait is cancelled (the server then reports the
        commit flushed here, perhaps not on a standby) and this raises
        :class:`StoreUnavailableError`, so the polling service deletes nothing and backs the
        account off instead of hanging.
        """
        if self._flush_every_commit:
            return
        self._reconnect_if_broken()
        conn = self._conn
        warnings: list[str] = []
        cancelled = threading.Event()

        def notice(diagnostic: psycopg.errors.Diagnostic) -> None:
            if diagnostic.severity_nonlocalized == "WARNING":
                warnings.append(diagnostic.message_primary or "")

        def cancel() -> None:
            cancelled.set()
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=max(1.0, self._timeout))

        timer = threading.Timer(self._timeout, cancel)
        timer.daemon = True
        conn.add_notice_handler(notice)
        try:
            with self.transaction():
                self._native("SET LOCAL synchronous_commit = on")
                # A transactional WAL record (no table touched): its commit record is flushed.
                self._native("SELECT pg_logical_emit_message(true, %s, %s)", ("asm-sync", ""))
                timer.start()  # bounds the COMMIT, which waits for the flush (and standbys)
        finally:
            timer.cancel()
            if timer.is_alive():
                timer.join()  # a cancel on its way reaches an idle session: ignored there
            conn.remove_notice_handler(notice)
        if cancelled.is_set() and warnings:
            raise StoreUnavailableError(
                f"{self._where}: the commit that makes the store durable was not confirmed "
                f"within {self._timeout:g} s (a synchronous standby did not answer?): "
                f"{warnings[-1]}"
            )

    def close(self) -> None:
        """Close the connection; an open transaction is rolled back by the server."""
        self._conn.close()

    def _begin(self) -> None:
        self._native("BEGIN")

    def _commit(self) -> None:
        try:
            self._conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._rollback()
            raise self._error("commit failed", exc) from exc

    def _broken(self) -> str:
        if self._conn.closed or self._conn.broken:
            return "the connection to PostgreSQL was lost"
        status = self._conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.INERROR:
            # every statement now fails and a COMMIT would be a silent ROLLBACK
            return "a statement failed and PostgreSQL aborted the open transaction"
        if status == psycopg.pq.TransactionStatus.IDLE:
            return "the open transaction is gone"
        return ""

    def _rollback(self) -> None:
        if self._conn.closed:
            return
        try:
            self._conn.execute("ROLLBACK")
        except psycopg.Error:
            log.exception("PostgreSQL rollback failed", extra={"store": self._where})

    def _native(
        self,
        query: str | sql.Composed,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
    ) -> psycopg.Cursor[Any]:
        """Run one statement written for psycopg (``%s`` marks)."""
        self._reconnect_if_broken()
        try:
            return self._conn.execute(query, params)
        except psycopg.Error as exc:
            raise self._error("PostgreSQL error", exc) from exc

    def _native_one(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Any:
        return self._native(query, params).fetchone()

    def _execute(self, sql: str, params: Params = ()) -> psycopg.Cursor[Any]:
        return self._native(_pyformat(sql), params)

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._reconnect_if_broken()
        try:
            with self._conn.cursor() as cursor:
                cursor.executemany(_pyformat(sql), rows)
        except psycopg.Error as exc:
            raise self._error("PostgreSQL error", exc) from exc

    _ts = staticmethod(to_utc)

    # ``key IN (subquery)`` is planned as a hash semi-join that reads the whole table once per
    # batch (quadratic over a backlog); ``= ANY(ARRAY(...))`` looks each key up in its index.
    _BATCH_OF_KEYS = "{key} = ANY(ARRAY({batch}))"

    _FOR_UPDATE = " FOR UPDATE"

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read-only ``REPEATABLE READ`` transaction, so several reads see one snapshot."""
        if self._depth:
            yield
            return
        self._native("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            self._rollback()

    # -- reads in one statement (one snapshot, one round trip) ----------------------------------
    def _task_row(self, number: int) -> Sequence[Any] | None:
        row: Sequence[Any] | None = self._one(
            f"SELECT {self._TASK_COLUMNS},"
            " ARRAY(SELECT person_id FROM task_approvers WHERE task_number = t.number"
            " ORDER BY position),"
            " ARRAY(SELECT person_id FROM task_forwarded WHERE task_number = t.number"
            " ORDER BY position),"
            " ARRAY(SELECT person_id FROM task_forwarded_by WHERE task_number = t.number"
            " ORDER BY position)"
            " FROM tasks t WHERE number = ?",
            (number,),
        )
        return row

    def _request_row(self, number: int) -> Sequence[Any] | None:
        row: Sequence[Any] | None = self._one(
            f"SELECT {self._REQUEST_COLUMNS},"
            " ARRAY(SELECT person_id FROM request_forwarded WHERE request_number = r.number"
            " ORDER BY position),"
            " ARRAY(SELECT person_id FROM request_forwarded_by WHERE request_number = r.number"
            " ORDER BY position)"
            " FROM requests r WHERE number = ?",
            (number,),
        )
        return row

    def _role_rights(self, name: str) -> Sequence[str] | None:
        row = self._one(
            "SELECT ARRAY(SELECT right_name FROM role_rights WHERE role_name = r.name)"
            " FROM security_roles r WHERE r.name = ?",
            (name,),
        )
        return None if row is None else list(row[0])

    def _summary_rows(
        self, table: str, where: str, subject: str, params: Mapping[str, Any]
    ) -> tuple[int, Sequence[Sequence[Any]]]:
        rows = self._execute(
            # The texts are cut in the outer SELECT, for the rows kept only: in the CTE they
            # stay TOAST pointers, not decompressed for every matching record.
            f"WITH matched AS (SELECT r.number, r.status, r.description, r.last_update,"
            f" r.group_name, r.owner_id, {subject} AS subject FROM {table} r WHERE {where})"
            f" SELECT t.total, m.number, m.status, substr(m.description, 1, {SUMMARY_SCAN_CHARS}),"
            " m.last_update, m.group_name, o.name, o.email,"
            f" substr(m.subject, 1, {SUMMARY_SCAN_CHARS})"
            " FROM (SELECT COUNT(*) AS total FROM matched) t"
            " LEFT JOIN LATERAL (SELECT * FROM matched"
            " ORDER BY last_update DESC NULLS LAST, number DESC LIMIT :limit) m ON true"
            " LEFT JOIN persons o ON o.id = m.owner_id"
            " ORDER BY m.last_update DESC NULLS LAST, m.number DESC",
            params,
        ).fetchall()
        total = int(rows[0][0]) if rows else 0
        return total, [row[1:] for row in rows if row[1] is not None]

    # -- writes -----------------------------------------------------------------------------
    _BIG_GAP = 100_000
    """A gap this wide between a sequence and its table is closed with ``setval`` (see below)."""

    _NEXT_CALL_NUMBER = (
        "SELECT GREATEST(CASE WHEN is_called THEN last_value + 1 ELSE last_value END,"
        " (SELECT COALESCE(MAX(number), 0) + 1 FROM calls)) FROM call_numbers"
    )

    def next_call_number(self) -> int:
        """The number the next call logged will get (the sequence, or past the highest call;
        a number drawn by a transaction that rolled back is skipped)."""
        return int(self._one(self._NEXT_CALL_NUMBER)[0])

    def raise_next_call_number(self, number: int) -> int:
        """The sequence moved up so that the next call gets at least ``number``; never back
        (``setval`` to the larger of the two); the next number."""
        with self.transaction():
            if number > self.next_call_number():  # so the value set is at least 1
                # the larger of the two read and set in one statement: a poller drawing a
                # number between a read and a later setval would move the sequence back
                self._one(
                    "SELECT setval('call_numbers', GREATEST(last_value, ?), true)"
                    " FROM call_numbers",
                    (number - 1,),
                )
            return self.next_call_number()

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
            row = self._one(f"SELECT setval('{sequence}', ?), nextval('{sequence}')", (top,))
            return int(row[1])
        row = self._one(
            f"SELECT MAX(n) FROM (SELECT nextval('{sequence}') AS n"
            " FROM generate_series(1, ?)) AS drawn",
            (top - number + 1,),
        )
        return int(row[0])

    def create_person(self, email: str, name: str, *, is_user: bool) -> Person:
        """A new person record with a new id above every existing one (User when ``is_user``).

        One statement in the common case (the id drawn, checked against the highest id in
        use, and the row written); see :meth:`_next_number` for the other.
        """
        values = (email, address_key(email), name, is_user)
        row = self._returning(
            "INSERT INTO persons (id, email, email_key, name, is_user)"
            " SELECT n.v, ?, ?, ?, ? FROM (SELECT nextval('person_ids') AS v,"
            " (SELECT MAX(id) FROM persons) AS top) AS n"
            " WHERE n.top IS NULL OR n.v > n.top RETURNING id",
            values,
        )
        if row is None:  # ids were put above the sequence: move it past them
            with self.transaction():
                row = (self._next_number("person_ids", "persons", "id"),)
                self._execute(
                    "INSERT INTO persons (id, email, email_key, name, is_user)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (row[0], *values),
                )
        return Person(id=int(row[0]), email=email, name=name, is_user=is_user)

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
        call = self._new_call(template, user_id, logging_analyst_id, description, now)
        row = self._returning(
            f"INSERT INTO calls ({self._CALL_COLUMNS})"
            " SELECT n.v, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            " FROM (SELECT nextval('call_numbers') AS v, (SELECT MAX(number) FROM calls) AS top)"
            " AS n WHERE n.top IS NULL OR n.v > n.top RETURNING number",
            self._call_row(call)[1:],
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
        table = RECORD_TABLES[ref.kind]
        gate = " WHERE status = :when_status" if when_status is not None else ""
        parts = [
            f"target AS (SELECT number, status FROM {table} WHERE number = :number FOR UPDATE)",
            f"go AS (SELECT number FROM target{gate})",
        ]
        if entry is not None:
            parts.append(
                "entry AS (INSERT INTO log_entries (entity_kind, entity_number, kind, text,"
                " author, security_profile, at) SELECT :entity_kind, number, :kind,"
                " :text, :author, :profile, :at FROM go RETURNING id)"
            )
        if attachment is not None:
            parts.append(
                "stored AS (INSERT INTO attachments (entry_id, filename, content_type, data,"
                " inline, content_id) SELECT id, :filename, :content_type, :data,"
                " :inline, :content_id FROM entry)"
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

    _RECORD_LEDGER = (
        SqlRepository._INSERT_LEDGER
        + " ON CONFLICT (mailbox, message_id, sha256) DO NOTHING RETURNING 1"
    )
    """The ledger insert that does nothing on a second entry (so it never aborts the caller's
    transaction), returning a row only when it wrote one."""

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
        row = self._returning(
            self._RECORD_LEDGER,
            self._ledger_row(mailbox, message_id, sha256, decision_json, reply, now),
        )
        if row is None:
            raise RepositoryError(
                f"message {message_id!r} ({sha256}) already recorded in {mailbox!r}"
            )

    # -- reply outbox: claims -----------------------------------------------------------------
    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        """Claim a PENDING, due reply that no other sender holds; None when it cannot be.

        The row is picked with ``FOR UPDATE SKIP LOCKED``: a sender racing another one for
        the same reply does not wait for the other's lock, it gets None at once (the other
        is claiming it, or finishing it), and claims are never blocked by long transactions.
        """
        row = self._returning(
            "UPDATE ledger SET claimed_by = :owner, claimed_until = :until"
            " WHERE reply_message_id = (SELECT reply_message_id FROM ledger"
            " WHERE reply_message_id = :id AND reply_status = 'pending'"
            " AND next_attempt_at <= :at AND (claimed_by IN ('', :owner)"
            " OR claimed_until IS NULL OR claimed_until <= :at)"
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
