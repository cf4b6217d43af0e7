"""Several messages per commit (``messages_per_commit``), where it could go wrong.

DESIGN 4, "Nothing is lost": a message is never deleted from its mailbox before its record
is committed; our own failures never cost a message. Each test here was first written
against a fault a review found in the shared commits, and failed then.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_store_faults import Clock, good_mail, timed_writes

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.postgres import PostgresRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import MailboxError, RepositoryError, StoreUnavailableError
from asm_email_rules.sample import sample_mailbox, seed_sample_desk
from asm_email_rules.service import ACCOUNT_LEASE_PREFIX, PollingService
from asm_email_rules.settings import SystemSettings

if TYPE_CHECKING:
    from postgres_fixtures import PgDatabase

pytestmark = pytest.mark.integration


def test_postgres_statement_error_outside_a_savepoint_loses_no_message_of_the_batch(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    """PostgreSQL aborts the whole transaction when any statement in it fails, and a COMMIT
    of an aborted transaction is a ROLLBACK that raises nothing. A statement the service
    runs in the open unit outside any savepoint (here the lease renewal, timing out on a
    row lock another connection holds; equally a read of gather_facts, quarantine_reason,
    find_ledger_entry or touch_ledger) failing on the server must not let the session end
    "commit" the unit and then delete its messages: their records were rolled back (the
    store sees the aborted transaction and raises StoreUnavailableError instead). Every
    message is afterwards either still in the mailbox or recorded."""
    repo = PostgresRepository(
        pg_database.conninfo, password=pg_database.password, schema=pg_database.schema, timeout=1
    )
    seed_sample_desk(repo)
    maildir = tmp_path / "Maildir"
    box = MaildirMailbox(maildir)
    for number in (1, 2, 3):
        box.add(good_mail(number))
    clock = Clock()
    blocker = PostgresRepository(
        pg_database.conninfo, password=pg_database.password, schema=pg_database.schema
    )
    fetched: list[str] = []

    class LockingMaildir(MaildirMailbox):
        def fetch(self, key: str) -> bytes:
            fetched.append(key)
            if len(fetched) == 2:
                # the lease is due for renewal before the third message, and another
                # connection holds its row meanwhile (lock_timeout: 1 s)
                clock.advance(5 * 60)
                blocker._native("BEGIN")
                blocker._native(
                    "SELECT 1 FROM leases WHERE name = %s FOR UPDATE",
                    (f"{ACCOUNT_LEASE_PREFIX}helpdesk",),
                )
            return super().fetch(key)

    account = AccountConfig(
        name="helpdesk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(name="helpdesk", auto_reply=True, create_calls_anonymously=True),
        path=maildir,
    )
    config = Config(store=None, system=SystemSettings(), smtp=None, accounts=(account,))
    service = PollingService(config, repo, None, lambda a: LockingMaildir(maildir), now=clock)
    report = service.poll_once()["helpdesk"]
    blocker._native("ROLLBACK")
    assert report.errors >= 1  # the lock timeout: our failure
    left = len(list(MaildirMailbox(maildir).list_keys()))
    recorded = int(repo._native_one("SELECT COUNT(*) FROM ledger WHERE message_id <> ''")[0])
    assert left + recorded == 3, f"{3 - left - recorded} message(s) deleted without a record"
    blocker.close()
    repo.close()


def _maildir_account(maildir: Path) -> AccountConfig:
    return AccountConfig(
        name="helpdesk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(name="helpdesk", auto_reply=True, create_calls_anonymously=True),
        path=maildir,
    )


def test_sqlite_write_lock_is_not_held_while_the_mailbox_fetches_the_next_message(
    tmp_path: Path,
) -> None:
    """The open unit of several messages (BEGIN IMMEDIATE: SQLite's one write lock) must not
    stay open while the service fetches the next message from a server (IMAP, POP3: a network
    round trip of any length, up to the mailbox timeout): every other writer of the store
    (another poller's account, ``people add``) would wait and, past its busy timeout, fail
    with "database is locked" and back off. Here each fetch is where another connection
    writes, with a short busy timeout: none of its writes is refused."""
    store_path = tmp_path / "store.sqlite3"
    repo = SqliteRepository(store_path)
    seed_sample_desk(repo)
    maildir = tmp_path / "Maildir"
    box = MaildirMailbox(maildir)
    for number in (1, 2, 3):
        box.add(good_mail(number))
    blocked: list[str] = []

    class SlowMaildir(MaildirMailbox):
        """A mailbox whose fetch waits on a server, as IMAP's and POP3's do (a Maildir file
        is read locally: ``fetch_ready``), which says so."""

        @staticmethod
        def fetch_ready(key: str) -> bool:
            return False

        def fetch(self, key: str) -> bytes:
            # the network round trip of a remote mailbox: another writer's turn
            with SqliteRepository(store_path, timeout=0.2) as other:
                try:
                    other.create_person(f"{key}@other.example", "Other", is_user=False)
                except StoreUnavailableError as exc:
                    blocked.append(str(exc))
            return super().fetch(key)

    account = _maildir_account(maildir)
    config = Config(store=store_path, system=SystemSettings(), smtp=None, accounts=(account,))
    service = PollingService(config, repo, None, lambda a: SlowMaildir(maildir), now=Clock())
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors) == (3, 0)
    assert blocked == [], f"{len(blocked)} write(s) of another connection refused: {blocked[0]}"
    repo.close()


def test_sqlite_nested_unit_after_sqlite_rolled_the_transaction_back_is_not_kept_alone(
    tmp_path: Path,
) -> None:
    """storage.md: "when SQLite rolled the whole transaction back on its own (it may, on
    SQLITE_FULL or an I/O error), the next nested unit and the outer commit raise
    StoreUnavailableError". Also when the statement SQLite answered with SQLITE_FULL ran in
    the outer unit (not in a savepoint) and the caller went on: the next nested unit's
    ``SAVEPOINT`` would open a transaction of its own (SQLite's SAVEPOINT outside a
    transaction is a BEGIN) and its ``RELEASE`` commit it, its writes kept alone, outside the
    outer unit that then fails."""
    repo = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(repo)
    conn = repo._conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 4}")
    nested_error: Exception | None = None

    def outer_unit() -> None:
        nonlocal nested_error
        with repo.transaction():
            repo.create_person("outer@example.com", "Outer", is_user=False)
            with pytest.raises(StoreUnavailableError):  # SQLITE_FULL: SQLite rolls it all back
                repo.create_person("x@example.com", "x" * 200_000, is_user=False)
            try:
                with repo.transaction():
                    repo.create_person("inner@example.com", "Inner", is_user=False)
            except StoreUnavailableError as exc:
                nested_error = exc

    with pytest.raises(RepositoryError):  # the outer unit fails, however it says so
        outer_unit()
    conn.execute("PRAGMA max_page_count = 1073741823")
    kept = [p.email for p in repo.persons_by_address("inner@example.com")]
    assert kept == [], "the nested unit was committed on its own"
    assert nested_error is not None
    repo.close()


def test_a_message_the_mailbox_refuses_to_delete_does_not_keep_the_others_in_it(
    tmp_path: Path,
) -> None:
    """A mailbox may refuse to delete one message (MailboxError from ``delete``: a POP3
    server's -ERR to one DELE, a host mailbox): that costs one error, and the other messages
    whose records the same commit holds are deleted (the refused one is not retried first
    for ever, keeping every later one in the mailbox poll after poll)."""
    store_path = tmp_path / "store.sqlite3"
    repo = SqliteRepository(store_path)
    seed_sample_desk(repo)
    maildir = tmp_path / "Maildir"
    box = MaildirMailbox(maildir)
    stuck = box.add(good_mail(1))
    for number in (2, 3, 4, 5):
        box.add(good_mail(number))

    class RefusingMaildir(MaildirMailbox):
        def delete(self, key: str) -> None:
            if key == stuck:
                raise MailboxError(f"-ERR cannot delete message {key}")
            super().delete(key)

    account = _maildir_account(maildir)
    config = Config(store=store_path, system=SystemSettings(), smtp=None, accounts=(account,))
    clock = Clock()
    service = PollingService(config, repo, None, lambda a: RefusingMaildir(maildir), now=clock)
    for _ in range(3):
        service.poll_once()
        clock.advance(3600)  # past any backoff
    left = sorted(MaildirMailbox(maildir).list_keys())
    assert left == [stuck], f"{len(left) - 1} other message(s) kept in the mailbox"
    repo.close()


# -- any one failure, anywhere -------------------------------------------------------------------

GOOD = 12
UNPARSEABLE = b" \r\n\r\n"


class FailsOnce(SqliteRepository):
    """The store, except that one statement (the ``at``-th) fails once with a store outage,
    after SQLite rolled the whole transaction back if ``whole`` (as it may on SQLITE_FULL or
    an I/O error), or the first commit from then on fails if ``at_commit``."""

    at = 0
    whole = False
    at_commit = False
    statements = 0

    def _execute(self, sql: str, params: Any = ()) -> Any:
        self.statements += 1
        if self.statements == self.at and not self.at_commit:
            if self.whole and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreUnavailableError("injected: SQLite disk I/O error (SQLITE_IOERR)")
        return super()._execute(sql, params)

    def _commit(self) -> None:
        if self.at_commit and self.at and self.statements >= self.at:
            self.at = 0
            self._rollback()
            raise StoreUnavailableError("injected: commit failed (SQLITE_IOERR)")
        super()._commit()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    at=st.integers(min_value=1, max_value=200),  # a clean first poll runs about 170
    whole=st.booleans(),
    at_commit=st.booleans(),
    refused=st.sets(st.integers(min_value=1, max_value=GOOD), max_size=3),
)
def test_any_one_store_or_mailbox_failure_costs_no_message_and_acts_on_none_twice(
    at: int, whole: bool, at_commit: bool, refused: set[int]
) -> None:
    """Twelve good messages and an unparseable one, in sessions of five, replies sent as the
    poll goes; one statement of the store fails once, anywhere (or one commit), and the
    mailbox refuses some deletions once: after a few more polls every good message was
    acted on exactly once (one call, one reply), none is left in the mailbox, and only the
    unparseable one is quarantined."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = FailsOnce(folder / "store.sqlite3")
        seed_sample_desk(store)
        maildir = folder / "Maildir"
        box = MaildirMailbox(maildir)
        keys = {box.add(good_mail(number)): number for number in range(1, GOOD + 1)}
        box.add(UNPARSEABLE)
        refusing = {key for key, number in keys.items() if number in refused}

        class Refusing(MaildirMailbox):
            def delete(self, key: str) -> None:
                if key in refusing:
                    refusing.discard(key)
                    raise MailboxError(f"-ERR cannot delete {key} now")
                super().delete(key)

        account = attrs.evolve(_maildir_account(maildir), max_messages_per_session=5)
        config = Config(store=None, system=SystemSettings(), smtp=None, accounts=(account,))
        mailer, clock = RecordingMailer(), Clock()
        service = PollingService(
            config,
            store,
            mailer,
            lambda a: Refusing(maildir, quarantine_folder=".Quarantine"),
            now=clock,
        )
        store.statements, store.at, store.whole, store.at_commit = 0, at, whole, at_commit
        for _ in range(5):
            service.poll_once()
            clock.advance(3600)  # past any backoff, and any claim a failure left
        store.at = 0  # the polls are over: the checks below read a sound store
        assert list(MaildirMailbox(maildir).list_keys()) == []
        quarantine = MaildirMailbox(maildir / ".Quarantine")
        assert [quarantine.fetch(key).endswith(UNPARSEABLE) for key in quarantine.list_keys()] == [
            True
        ]
        calls = [
            store.get_call(number) for number in range(1, 200) if store.get_call(number) is not None
        ]
        acted = sorted(
            call.description.split(".")[0]
            for call in calls
            if call is not None and call.description.startswith("Smoke from printer")
        )
        assert acted == sorted(f"Smoke from printer {n}" for n in range(1, GOOD + 1))
        assert sorted(mail.to for mail in mailer.sent) == sorted(
            f"customer{n}@corp.example" for n in range(1, GOOD + 1)
        )
        store.close()


def test_another_writer_gets_its_turn_while_the_poller_shares_commits(tmp_path: Path) -> None:
    """The poller holds SQLite's one write lock for a shared commit at a time and takes it
    again at once (``messages_per_commit``): the gaps between are short. Another writer of the
    store (``people add``, a second poller) tries again every millisecond, not at SQLite's
    own 100 ms, so it gets in within a fraction of a second, never times out."""
    store_path = tmp_path / "store.sqlite3"
    with SqliteRepository(store_path) as repo:
        seed_sample_desk(repo)
    maildir = tmp_path / "Maildir"
    box = MaildirMailbox(maildir)
    for number in range(1, 2001):  # a poll of some seconds: it outlasts the other writer's turns
        box.add(good_mail(number))
    config = Config(
        store=store_path,
        system=SystemSettings(),
        smtp=None,
        accounts=(_maildir_account(maildir),),
    )

    def poll() -> None:  # a connection is used by the thread that made it
        with SqliteRepository(store_path) as store:
            factory = lambda a: MaildirMailbox(maildir)  # noqa: E731
            PollingService(config, store, None, factory, now=Clock()).poll_once()

    started = threading.Event()

    class Watching(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            started.set()

    watcher = Watching()
    logging.getLogger("asm_email_rules.service").addHandler(watcher)
    logging.getLogger("asm_email_rules.service").setLevel(logging.INFO)
    poller = threading.Thread(target=poll)
    try:
        poller.start()
        assert started.wait(30)
        waits = timed_writes(store_path, timeout=2.0, pause=0.05)
        still_polling = poller.is_alive()
    finally:
        poller.join(120)
        logging.getLogger("asm_email_rules.service").removeHandler(watcher)
    # a shared commit lasts a quarter of a second at most: one gap is waited for, not several
    assert max(waits) < 0.6, f"another writer waited {max(waits):.2f} s for its turn"
    assert still_polling, "the poll ended before the other writer was done: not a contest"
    assert len(list(MaildirMailbox(maildir).list_keys())) == 0
