"""An embedded SQLite repository (stdlib ``sqlite3``): versioned schema, WAL, real transactions.

Safe for one writer process and any number of concurrent readers (WAL journal on files).
Inside ``transaction()`` every write joins one ``BEGIN IMMEDIATE`` transaction; a write made
outside any transaction runs in a transaction of its own and commits at once (autocommit).
One connection per instance: use an instance from the thread that created it.

The queries and row mappings it shares with the PostgreSQL store live in
:mod:`asm_email_rules.adapters._sql`; this module keeps the schema, the connection, its
transactions and durability, and what SQLite does its own way (call numbers from a counter row,
person ids from the rowid, writes on a record as a few statements in one transaction).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import attrs

from asm_email_rules.adapters._repository import address_key, message_id_key, to_utc
from asm_email_rules.adapters._sql import (
    RECORD_TABLES,
    REKEY_ADDRESSES,
    Migration,
    Params,
    SqlRepository,
    check_constraint,
    reply_from_json,
    reply_to_json,
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
from asm_email_rules.protocols import SentJournal
from asm_email_rules.quarantine import QuarantineState
from asm_email_rules.settings import CallTemplate
from asm_email_rules.summary_text import SUMMARY_SCAN_CHARS

__all__ = ["MIGRATIONS", "SqliteRepository", "reply_from_json", "reply_to_json"]


BLOB_PIECE = 64 * 1024
"""Bytes of an attachment written at a time (:meth:`SqliteRepository._write_blob`)."""

WAL_CHECKPOINT_PAGES = 10_000
"""Pages the WAL may hold before a commit copies it back into the database file (4 KiB each).
Under the polling service most of it has been copied by then, behind the writer
(:meth:`SqliteRepository.detached_upkeep`): the commit copies the rest and starts the WAL again
from its beginning."""

log = logging.getLogger(__name__)

_check = check_constraint


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
    "ALTER TABLE used_tokens ADD COLUMN expires_at TEXT",
    "CREATE INDEX used_tokens_by_expiry ON used_tokens (expires_at) WHERE expires_at IS NOT NULL",
    # quarantine purge forgets entries by state and last change, oldest first, through this
    # index (a scan of the table would read each kept message's bytes to reach its times).
    "CREATE INDEX quarantine_by_age ON quarantine (state, COALESCE(resolved_at, quarantined_at))",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7)
"""Schema steps; the file's ``PRAGMA user_version`` is how many of them it has applied."""


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


_NOT_OUR_STORE_CODES = frozenset(
    {
        11,  # SQLITE_CORRUPT
        26,  # SQLITE_NOTADB
    }
)
"""Primary result codes that, when the database is opened, mean the file is not a store that
waiting would make usable: opening it raises a plain :class:`RepositoryError` (while running,
they are :class:`StoreUnavailableError` like the others: the service backs off)."""


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
    if code is not None and (code & 0xFF) in _SPACE_CODES:
        message += _full_disk_note(where)
    return (StoreUnavailableError if unavailable else RepositoryError)(message)


_SPACE_CODES = frozenset({10, 13})  # SQLITE_IOERR, SQLITE_FULL
"""Result codes a full file system gives: SQLITE_FULL, or an I/O error (SQLITE_IOERR_SHMSIZE,
_WRITE, _FSYNC) when the ``-shm`` or ``-wal`` file cannot grow, as at start on a full disk."""

FULL_DISK_BYTES = 1 << 20
"""Below this much free space on the store's file system the error says the disk is full."""


def _full_disk_note(path: str) -> str:
    """``"; the file system of /srv/helpdesk has 0 bytes free"`` when the store's file system
    is (nearly) full, else ``""``: SQLite says "disk I/O error" when a full disk stops its
    ``-shm`` file growing, which reads as failing hardware. One ``statvfs``, on an error only."""
    if path == ":memory:" or path.startswith("file:"):
        return ""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if free >= FULL_DISK_BYTES:
        return ""
    return f"; the file system of {folder} is full ({free} bytes free): free some space"


BUSY_POLL_SECONDS = 0.001
"""How often a statement that found the database locked by another writer tries again, until
the store's ``timeout``. SQLite's own wait tries every 100 ms once it has waited a quarter of
a second, and a writer that commits often (the polling service commits every few dozen
milliseconds and takes the lock again at once) leaves it only short gaps: polled that
seldom, another writer (``people add``, a second poller) could wait for seconds or time out."""

SQLITE_WAIT_MS = 1
"""How long SQLite's own busy handler waits before :data:`BUSY_POLL_SECONDS` takes over. One
millisecond: within its wait SQLite looks again after 1, 3 and 8 ms, so a longer wait would
leave gaps of up to 5 ms between looks, longer than the gaps a busy poller leaves."""

_T = TypeVar("_T")


_NEWEST = " ORDER BY r.last_update IS NULL, r.last_update DESC, r.number DESC"
"""A summary's order: newest update first, records never updated last, ties by number."""


def _text_head(column: str) -> str:
    """SQL for the first :data:`SUMMARY_SCAN_CHARS` characters of a text ``column`` (:func:`_head`
    reads the value). SQLite's ``substr`` of a text stops at a NUL character, so "Printer\\0
    jams" came back as "Printer": a text holding one is read as the UTF-8 bytes that hold
    those characters instead (``instr`` of a blob looks at bytes, and only at the head's: a
    long description costs no more than a short one, as :meth:`_summary_rows` promises)."""
    head = f"substr(CAST({column} AS BLOB), 1, {4 * SUMMARY_SCAN_CHARS})"
    return (
        f"CASE WHEN instr({head}, x'00') > 0 THEN {head}"
        f" ELSE substr({column}, 1, {SUMMARY_SCAN_CHARS}) END"
    )


def _head(value: bytes | str | None) -> str:
    """What :func:`_text_head` read, as text of at most :data:`SUMMARY_SCAN_CHARS` characters
    (a character the byte cut split is dropped)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else bytes(value).decode("utf-8", "ignore")
    return text[:SUMMARY_SCAN_CHARS]


def _is_busy(exc: sqlite3.Error) -> bool:
    """True for SQLITE_BUSY: another connection holds the lock (nothing was done)."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY


CHECKPOINT_PASSES = 4
"""The most ``PASSIVE`` checkpoints one upkeep makes (:meth:`_Checkpointer._copy_back`)."""


_FileIdentity = tuple[int, int]
"""A file's ``(st_dev, st_ino)``: which file a path names, whatever it is called."""


def _identity(path: str) -> _FileIdentity | None:
    """The identity of the file at ``path``, None when there is none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


@attrs.define(slots=True)
class _OpenFiles:
    """The database file and the WAL a store's connection opened (their identities, taken
    when the store was opened), so a sync can tell that ``path`` and ``path-wal`` still
    name them. SQLite keeps writing to the files it opened: moved, deleted or replaced under
    a running store (a backup restored with ``mv``, a WAL removed by hand), its commits go
    to files nobody will read again, and a message deleted from its mailbox after such a
    commit would be lost."""

    path: str
    database: _FileIdentity | None = None
    wal: _FileIdentity | None = None

    def take(self) -> None:
        """Remember the files ``path`` and its WAL name now."""
        self.database = _identity(self.path)
        self.wal = _identity(self.path + "-wal")

    def changed(self) -> str:
        """What changed under the open store since :meth:`take`, "" when nothing did."""
        if _identity(self.path) != self.database:
            return "the database file was moved, deleted or replaced while the store was open"
        if self.wal is not None and _identity(self.path + "-wal") != self.wal:
            return "the WAL file was deleted or replaced while the store was open"
        return ""


def _sync_wal(files: _OpenFiles) -> None:
    """fsync the WAL file of the database ``files`` name (none: nothing to sync, every
    commit is in the synced database file), after checking that the database file and the
    WAL are still those the store opened (:class:`_OpenFiles`). Raises StoreUnavailableError
    when it cannot, or when they are not: this store's commits since then are in files
    nobody will read, so the messages they record must stay in their mailbox (restart the
    service on the files in place). The WAL and never the database file: SQLite holds no
    POSIX lock on the WAL, so closing this descriptor drops none of its locks (see
    :class:`_Checkpointer`)."""
    path = files.path
    changed = files.changed()
    if changed:
        raise StoreUnavailableError(
            f"{path}: {changed}: its commits since then are not in the file at that path;"
            " restart the service to open the store that is there now"
        )
    try:
        fd = os.open(path + "-wal", os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreUnavailableError(f"{path}: cannot open the WAL to sync it: {exc}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StoreUnavailableError(f"{path}: cannot sync the WAL: {exc}") from exc
    finally:
        os.close(fd)


class _Checkpointer:
    """Copies the WAL back into the database file on a connection of its own, off the writer's
    thread: :meth:`SqliteRepository.detached_upkeep`.

    A checkpoint copies every page committed since the last one, syncing the WAL before and
    the database file after (``synchronous=NORMAL``); made by a commit (SQLite's own, every
    :data:`WAL_CHECKPOINT_PAGES`) it stalls the writer for all of that. A ``PASSIVE``
    checkpoint (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html) takes no write lock and
    waits for nobody, so the writer goes on meanwhile; the pages committed meanwhile wait for
    the next pass (:meth:`_copy_back`). SQLite syncs the database file only after a
    checkpoint that copied everything, and the WAL starts again from its beginning only when
    the writer begins a transaction after such a one; else the writer's own checkpoint does
    it, finding the pages copied. The database file is never opened
    here but by SQLite: closing any descriptor of it would drop every POSIX lock this process
    holds on it, SQLite's own included, and another process closing its last connection
    would then remove the WAL this store still writes to (its later commits lost, and the
    other processes' unseen: https://www.sqlite.org/howtocorrupt.html section 2.2). The
    connection opens the file only if it exists (``mode=rw``): a database moved or deleted
    under a running store is never replaced by an empty one, which would discard the WAL
    the writer still uses. A failure is logged and left to the writer's own checkpoint;
    nothing is raised.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()  # one checkpoint at a time; close() waits for it
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def run(self) -> None:
        """Checkpoint the WAL (``PASSIVE``)."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(
                        f"file:{urllib.parse.quote(self._path)}?mode=rw",
                        uri=True,
                        timeout=0,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                    self._conn.execute("PRAGMA synchronous = NORMAL")
                self._copy_back(self._conn)
            except sqlite3.Error as exc:
                log.debug(
                    "background checkpoint failed; the writer's own will do it",
                    extra={"path": self._path, "error": str(exc)},
                )

    @staticmethod
    def _copy_back(conn: sqlite3.Connection) -> None:
        """``PASSIVE`` checkpoints until one ran without another connection committing
        meanwhile (``PRAGMA data_version`` unchanged) or found another checkpoint running
        (busy: that one copies), at most :data:`CHECKPOINT_PASSES`.

        SQLite syncs the database file only after a checkpoint that found, its copy done, no
        frame committed meanwhile. Copying a session's pages takes tens of milliseconds, and
        a poller that sends replies commits every few: one pass was nearly always overtaken,
        and the pages it wrote stayed unsynced until the writer's own checkpoint synced them
        all within one of the poller's commits (70 to 100 ms for 40 MB of WAL on the
        benchmark's disk; about 25 ms after short passes). A pass after the first copies
        only the pages committed during the one before, and is seldom overtaken."""
        version = conn.execute("PRAGMA data_version").fetchall()[0][0]
        for _ in range(CHECKPOINT_PASSES):
            busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][0]
            after = conn.execute("PRAGMA data_version").fetchall()[0][0]
            if busy or after == version:
                return
            version = after

    def close(self) -> None:
        """Close the connection, after the checkpoint in progress; none is made afterwards."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _nothing() -> None:
    """The sync of a store with nothing to sync (``":memory:"``)."""


def _text(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC text, so SQL text order is time order."""
    return to_utc(moment).isoformat(timespec="microseconds")


class SqliteRepository(SqlRepository):
    """A :class:`~asm_email_rules.protocols.SeedableRepository` in one SQLite database.

    ``path`` is a file (created and migrated as needed, WAL journal) or ``":memory:"``.
    ``timeout`` is how long, in seconds, to wait for another writer's lock before failing.
    ``migrate=False`` opens an older schema as it is, changing nothing (``check``, ``explain``:
    see :attr:`schema_latest`); a newer one is refused either way. Every ``sqlite3`` failure
    surfaces as :class:`~asm_email_rules.errors.RepositoryError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        timeout: float = 5.0,
        migrate: bool = True,
    ) -> None:
        self._path = os.fspath(path)
        self._migrate_on_open = migrate
        self._where = self._path
        self._depth = 0
        self._wal = False
        self._files = _OpenFiles(self._path)
        self._timeout = timeout
        self._checkpointer = _Checkpointer(self._path)
        try:
            self._conn = sqlite3.connect(self._path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise _store_error(self._path, "cannot open SQLite database", exc) from exc
        try:
            self._configure(timeout)
            self._migrate()
            if self._wal:
                self._files.take()  # after a read: SQLite has opened (or created) the WAL
        except StoreUnavailableError as exc:
            self._conn.close()
            code = getattr(exc.__cause__, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _NOT_OUR_STORE_CODES:
                raise RepositoryError(str(exc)) from exc.__cause__  # nothing to wait for
            raise
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
        self._execute(f"PRAGMA busy_timeout = {min(int(timeout * 1000), SQLITE_WAIT_MS)}")
        # A savepoint (a nested transaction(): each message of a shared commit) keeps the
        # pages it changes in a statement journal, written to a temporary file once it passes
        # 64 KiB (a message's writes often do): in memory, it costs no file writes.
        self._execute("PRAGMA temp_store = MEMORY")
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

    @property
    def schema_latest(self) -> int:
        """The schema version this library migrates a store to (:data:`MIGRATIONS`)."""
        return len(MIGRATIONS)

    def _migrate(self) -> None:
        known = len(MIGRATIONS)
        version = self.schema_version
        self._refuse_newer(version, known)
        if version == known or not self._migrate_on_open:
            return
        with self.transaction():
            version = self.schema_version  # another process may have migrated meanwhile
            self._refuse_newer(version, known)
            for target in range(version + 1, known + 1):
                for statement in MIGRATIONS[target - 1]:
                    self._migration_statement(statement)
                self._execute(f"PRAGMA user_version = {target}")
                log.info("SQLite schema migrated", extra={"path": self._path, "version": target})

    def sync(self) -> None:
        """Make every committed transaction durable, even against a power loss (one fsync).

        A file store runs in WAL mode with ``synchronous=NORMAL``: each commit is durable
        against a crash of the process at once, and against a crash of the machine once its
        WAL frames reach the disk, which this call forces (the polling service calls it
        before the mailbox's deletions take effect, so a message never leaves the mailbox
        while its record could still be lost). Nothing to do for ``":memory:"``. Raises
        :class:`StoreUnavailableError` when the WAL file cannot be synced, or when the
        database file or the WAL at ``path`` is no longer the one this store opened (moved,
        deleted or replaced: the commits went to files nobody will read).
        """
        if self._wal:
            _sync_wal(self._files)

    def detached_sync(self) -> Callable[[], None]:
        """:meth:`sync` as a function that may run on another thread while this repository is
        in use (it syncs the WAL file and never touches the connection): the polling service
        lets a session's end run behind the next session with it
        (:mod:`~asm_email_rules.session_end`). Every commit made before the function is called
        is durable when it returns; it raises what :meth:`sync` raises."""
        if not self._wal:
            return _nothing
        return functools.partial(_sync_wal, self._files)

    def detached_upkeep(self) -> Callable[[], None]:
        """A function that copies the WAL back into the database file, on a connection of
        its own, while this repository is in use (another thread may call it): the polling
        service runs it at a session's end, after the mailbox's deletions, behind the next
        session, so the writer's commits seldom find a checkpoint due and stall for it (about
        0.2 s for 40 MB of WAL). It never raises: a checkpoint that fails is left to the
        writer's own (:class:`_Checkpointer`). Nothing to do for ``":memory:"``."""
        if not self._wal:
            return _nothing
        return self._checkpointer.run

    def sent_journal(self, owner: str) -> SentJournal | None:
        """A sent journal for one reply pump of ``owner``: a file in the folder
        ``<path>.sent`` beside the database
        (:class:`~asm_email_rules.adapters.journal_files.DirectorySentJournal`), which the
        pump's worker appends to without waiting for this store's write lock. None for
        ``":memory:"``, whose journal would not outlive a crash either, and where there are
        no POSIX file locks."""
        if not self._wal or os.name != "posix":
            return None
        from asm_email_rules.adapters.journal_files import DirectorySentJournal

        return DirectorySentJournal(f"{self._path}.sent", owner)

    def close(self) -> None:
        """Close the connection (and the background checkpoint's, once the one in progress
        is done); an open transaction is rolled back by SQLite."""
        self._checkpointer.close()
        self._conn.close()

    def _execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self._run(lambda: self._conn.execute(sql, params))

    def _run(self, statement: Callable[[], _T]) -> _T:
        """Run one statement; one that found the database locked outside a transaction (a
        ``BEGIN IMMEDIATE``, a write that commits alone: nothing was done) is tried again
        every :data:`BUSY_POLL_SECONDS` until ``timeout``. Raises RepositoryError (locked past
        the timeout: StoreUnavailableError, SQLITE_BUSY)."""
        deadline: float | None = None  # set by the first SQLITE_BUSY
        while True:
            try:
                return statement()
            except sqlite3.Error as exc:
                if not _is_busy(exc) or self._conn.in_transaction:
                    raise _store_error(self._path, "SQLite error", exc) from exc
                if deadline is None:
                    deadline = time.monotonic() + self._timeout
                elif time.monotonic() >= deadline:
                    raise _store_error(self._path, "SQLite error", exc) from exc
            time.sleep(BUSY_POLL_SECONDS)

    def _begin(self) -> None:
        # IMMEDIATE: the write lock at once, so a unit of work never fails half-way on it.
        self._execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
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

    def _broken(self) -> str:
        if self._conn.in_transaction:
            return ""
        return "SQLite rolled the open transaction back on its own (a full disk, an I/O error)"

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

    def _write_blob(self, table: str, column: str, rowid: int, data: bytes) -> None:
        """Fill a ``zeroblob`` cell with ``data`` in pieces (incremental blob I/O), so SQLite
        never holds a copy of the whole value as a bound parameter would: a large attachment
        costs its own size in memory once, not twice."""
        if not data:
            return
        view = memoryview(data)
        try:
            with self._conn.blobopen(table, column, rowid) as blob:
                for start in range(0, len(view), BLOB_PIECE):
                    blob.write(view[start : start + BLOB_PIECE])
        except sqlite3.Error as exc:
            raise _store_error(self._path, "SQLite error", exc) from exc

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        kept = list(rows)  # tried again as they are when the database was locked
        self._run(lambda: self._conn.executemany(sql, kept))

    def _returning_rows(self, sql: str, params: Params = ()) -> list[Any]:
        # A RETURNING statement does its work while its rows are fetched: errors come then.
        return self._run(lambda: self._conn.execute(sql, params).fetchall())

    _ts = staticmethod(_text)
    _PENDING_REPLIES = " INDEXED BY ledger_replies_due"

    # -- reads in one snapshot ----------------------------------------------------------------
    def _people(self, table: str, column: str, number: int) -> tuple[int, ...]:
        rows = self._execute(
            f"SELECT person_id FROM {table} WHERE {column} = ? ORDER BY position", (number,)
        ).fetchall()
        return tuple(row[0] for row in rows)

    def _task_row(self, number: int) -> Sequence[Any] | None:
        with self._snapshot():
            row = self._one(f"SELECT {self._TASK_COLUMNS} FROM tasks WHERE number = ?", (number,))
            if row is None:
                return None
            return (
                *row,
                self._people("task_approvers", "task_number", number),
                self._people("task_forwarded", "task_number", number),
                self._people("task_forwarded_by", "task_number", number),
            )

    def _request_row(self, number: int) -> Sequence[Any] | None:
        with self._snapshot():
            row = self._one(
                f"SELECT {self._REQUEST_COLUMNS} FROM requests WHERE number = ?", (number,)
            )
            if row is None:
                return None
            return (
                *row,
                self._people("request_forwarded", "request_number", number),
                self._people("request_forwarded_by", "request_number", number),
            )

    def _role_rights(self, name: str) -> Sequence[str] | None:
        with self._snapshot():
            if self._one("SELECT 1 FROM security_roles WHERE name = ?", (name,)) is None:
                return None
            rows = self._execute(
                "SELECT right_name FROM role_rights WHERE role_name = ?", (name,)
            ).fetchall()
        return [row[0] for row in rows]

    def _summary_rows(
        self, table: str, where: str, subject: str, params: Mapping[str, Any]
    ) -> tuple[int, Sequence[Sequence[Any]]]:
        with self._snapshot():
            total = int(self._one(f"SELECT COUNT(*) FROM {table} r WHERE {where}", params)[0])
            rows = self._execute(
                # the newest numbers first, then their texts: the heads are read for the
                # rows shown, not for every row the sort looks at
                f"SELECT r.number, r.status, {_text_head('r.description')},"
                f" r.last_update, r.group_name, o.name, o.email,"
                f" {_text_head(subject)}"
                f" FROM (SELECT r.number FROM {table} r WHERE {where}{_NEWEST} LIMIT :limit)"
                f" AS shown JOIN {table} r ON r.number = shown.number"
                f" LEFT JOIN persons o ON o.id = r.owner_id{_NEWEST}",
                params,
            ).fetchall()
        return total, [(*row[:2], _head(row[2]), *row[3:7], _head(row[7])) for row in rows]

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
        call = self._new_call(template, user_id, logging_analyst_id, description, now)
        with self.transaction():
            # The number: the counter, or above the highest call (one a host inserted itself);
            # the counter moves past it in the same statement.
            (number,) = self._returning(
                "UPDATE counters SET value = max(value,"
                " (SELECT COALESCE(MAX(number), 0) + 1 FROM calls)) + 1"
                " WHERE name = 'next_call_number' RETURNING value - 1"
            )
            call = attrs.evolve(call, number=int(number))
            self.put_call(call)
        return call

    _NEXT_CALL_NUMBER = (
        "SELECT max(value, (SELECT COALESCE(MAX(number), 0) + 1 FROM calls))"
        " FROM counters WHERE name = 'next_call_number'"
    )

    def next_call_number(self) -> int:
        """The number the next call logged will get."""
        return int(self._one(self._NEXT_CALL_NUMBER)[0])

    def raise_next_call_number(self, number: int) -> int:
        """The counter moved up to ``number`` if it is below; the next number."""
        with self.transaction():
            self._execute(
                "UPDATE counters SET value = max(value, ?) WHERE name = 'next_call_number'",
                (number,),
            )
            return int(self._one(self._NEXT_CALL_NUMBER)[0])

    def _require(self, ref: EntityRef) -> str:
        """The status of record ``ref``; :class:`NotFoundError` when there is none."""
        row = self._one(
            f"SELECT status FROM {RECORD_TABLES[ref.kind]} WHERE number = ?", (ref.number,)
        )
        if row is None:
            raise NotFoundError(f"{ref} does not exist")
        return str(row[0])

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
        """In one transaction: check the status (with ``when_status``, or when nothing is
        assigned), update the record (:class:`NotFoundError` when no row changed, so a write
        that updates its record needs no separate existence check), append the log entry."""
        with self.transaction():
            status = ""
            if when_status is not None or not assignments:
                status = self._require(ref)
                if when_status is not None and status != when_status:
                    return status
            if assignments:
                cursor = self._execute(
                    f"UPDATE {RECORD_TABLES[ref.kind]} SET {assignments} WHERE number = :number",
                    {**params, "at": _text(at), "number": ref.number},
                )
                if cursor.rowcount == 0:
                    raise NotFoundError(f"{ref} does not exist")
            if entry is not None:
                kind, text, author = entry
                cursor = self._execute(
                    "INSERT INTO log_entries (entity_kind, entity_number, kind, text, author,"
                    " security_profile, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        ref.kind.value,
                        ref.number,
                        kind.value,
                        text,
                        author,
                        security_profile,
                        _text(at),
                    ),
                )
                if attachment is not None:
                    entry_id = cursor.lastrowid
                    assert entry_id is not None, "an INSERT sets lastrowid"
                    self._execute(
                        "INSERT INTO attachments (entry_id, filename, content_type, data, inline,"
                        " content_id) VALUES (?, ?, ?, zeroblob(?), ?, ?)",
                        (
                            entry_id,
                            attachment.filename,
                            attachment.content_type,
                            len(attachment.data),
                            attachment.inline,
                            attachment.content_id,
                        ),
                    )
                    self._write_blob("attachments", "data", entry_id, attachment.data)
            return status

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
        try:
            self._conn.execute(
                self._INSERT_LEDGER,
                self._ledger_row(mailbox, message_id, sha256, decision_json, reply, now),
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

    # -- reply outbox: claims -----------------------------------------------------------------
    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        """Claim a PENDING, due reply that no other sender holds; None when it cannot be."""
        key, at = message_id_key(reply_message_id), _text(now)
        # One statement, atomic on its own: the claim and the entry it claimed.
        row = self._returning(
            "UPDATE ledger SET claimed_by = ?, claimed_until = ?"
            " WHERE reply_message_id = ? AND reply_status = 'pending'"
            " AND next_attempt_at <= ?"
            " AND (claimed_by IN ('', ?) OR claimed_until IS NULL OR claimed_until <= ?)"
            f" RETURNING {self._OUTBOX_COLUMNS}",
            (owner, _text(until), key, at, owner, at),
        )
        return None if row is None else self._outbox(row)
