"""Ledger retention: old entries go, an entry whose message is still in a mailbox never does.

Issue 10, "Growth": "a ledger retention setting (default 90 days) with pruning that never
forgets a message still in a mailbox". DESIGN 4, "Nothing is lost": forgetting the ledger entry
of a message that is still there would act on it a second time. The service prunes a mailbox's
entries only after a poll that handled every message in it, each sighting refreshing its
entry's ``seen_at``; entries with a pending reply and quarantine records are never pruned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import attrs
import pytest

from asm_email_rules.adapters import sqlite as sqlite_adapter
from asm_email_rules.adapters.sqlite import MIGRATIONS, SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import MailboxError, StoreUnavailableError
from asm_email_rules.model import EntityKind, EntityRef, TaskStatus
from asm_email_rules.sample import ALICE, DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings
from asm_email_rules.testing import check_ledger_retention
from asm_email_rules.tokens import make_approval_token

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def mail(number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"customer{number}@corp.example"
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = f"Badge reader {number} is dead"
    msg["Message-ID"] = f"<badge-{number}@corp.example>"
    msg.set_content(f"Badge reader {number} shows no light.")
    return msg.as_bytes()


@attrs.define
class SharedFolder:
    """A mailbox we may read but whose deletions do not stick (a shared folder, a server that
    keeps mail): what we processed stays, and is seen again at every poll."""

    messages: dict[str, bytes]
    keep: set[str] = attrs.field(factory=set)
    broken: set[str] = attrs.field(factory=set)

    def list_keys(self) -> Iterator[str]:
        return iter(sorted(self.messages))

    def fetch(self, key: str) -> bytes:
        if key in self.broken:
            raise MailboxError(f"cannot fetch {key}")
        return self.messages[key]

    def delete(self, key: str) -> None:
        if key not in self.keep:
            del self.messages[key]

    def quarantine(self, key: str, reason: str) -> None:
        raise AssertionError(f"nothing is quarantined here: {reason}")

    def close(self) -> None:
        pass


@attrs.define
class Clock:
    moment: datetime = T0

    def __call__(self) -> datetime:
        return self.moment


def make_service(
    store: SqliteRepository, folder: SharedFolder, clock: Clock, retention_days: int = 90
) -> PollingService:
    account = AccountConfig(
        name="helpdesk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(name="helpdesk", create_calls_anonymously=True),
    )
    system = SystemSettings(ledger_retention_days=retention_days)
    config = Config(Path("unused"), system, None, (account,))
    return PollingService(config, store, None, lambda _: folder, now=clock)


def badge_calls(store: SqliteRepository) -> int:
    calls = (store.get_call(number) for number in range(1, 200))
    return sum(1 for call in calls if call is not None and "Badge" in call.description)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRepository]:
    repository = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(repository)
    yield repository
    repository.close()


def ledger_rows(store: SqliteRepository) -> int:
    return int(store._one("SELECT COUNT(*) FROM ledger WHERE mailbox = 'helpdesk'")[0])


def test_old_entries_go_and_a_message_still_in_the_mailbox_is_never_acted_on_twice(
    store: SqliteRepository,
) -> None:
    folder = SharedFolder({"1": mail(1), "2": mail(2)}, keep={"2"})  # 2 stays in the folder
    clock = Clock()
    make_service(store, folder, clock).poll_once()
    assert (badge_calls(store), ledger_rows(store)) == (2, 2)

    # the service was stopped for 200 days, far past the 90 days of retention
    clock.moment = T0 + 200 * DAY
    report = make_service(store, folder, clock).poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.pruned) == (0, 1, 1)
    assert badge_calls(store) == 2  # message 2 is still a duplicate: not acted on again
    assert ledger_rows(store) == 1  # message 1 left the mailbox 200 days ago: forgotten

    clock.moment = T0 + 400 * DAY
    report = make_service(store, folder, clock).poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.pruned) == (0, 1, 0)
    assert badge_calls(store) == 2


def test_nothing_is_pruned_after_a_poll_that_could_not_read_every_message(
    store: SqliteRepository,
) -> None:
    folder = SharedFolder({"1": mail(1), "2": mail(2)}, keep={"1", "2"})
    clock = Clock()
    make_service(store, folder, clock).poll_once()
    folder.broken.add("2")  # cannot be fetched, so its entry is not refreshed this time
    clock.moment = T0 + 200 * DAY
    report = make_service(store, folder, clock).poll_once()["helpdesk"]
    assert (report.errors, report.pruned) == (1, 0)
    assert ledger_rows(store) == 2
    folder.broken.clear()
    clock.moment += DAY
    report = make_service(store, folder, clock).poll_once()["helpdesk"]
    assert (report.processed, report.pruned) == (0, 0)
    assert badge_calls(store) == 2


def test_retention_zero_keeps_every_entry(store: SqliteRepository) -> None:
    folder = SharedFolder({"1": mail(1)})
    clock = Clock()
    make_service(store, folder, clock, retention_days=0).poll_once()
    clock.moment = T0 + 5000 * DAY
    report = make_service(store, folder, clock, retention_days=0).poll_once()["helpdesk"]
    assert report.pruned == 0
    assert ledger_rows(store) == 1


def test_a_sighting_writes_seen_at_at_most_once_a_day(store: SqliteRepository) -> None:
    folder = SharedFolder({"1": mail(1)}, keep={"1"})
    clock = Clock()
    service = make_service(store, folder, clock)
    service.poll_once()

    def seen() -> object:
        return store._one("SELECT seen_at FROM ledger")[0]

    assert seen() is None  # never seen again yet: its age counts from processed_at
    clock.moment = T0 + timedelta(hours=1)
    service.poll_once()
    assert seen() is None  # an hour later: not worth a write
    clock.moment = T0 + 2 * DAY
    service.poll_once()
    assert seen() == (T0 + 2 * DAY).isoformat(timespec="microseconds")


def test_a_schema_4_file_gets_seen_at_and_its_entries_age_from_processed_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v4.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_adapter, "MIGRATIONS", MIGRATIONS[:4])
        with SqliteRepository(path) as old:
            old.record_processed("box", "<a@x>", "a", "{}", None, T0)
            old.record_processed("box", "<b@x>", "b", "{}", None, T0 + 100 * DAY)
    raw = sqlite3.connect(path)
    assert "seen_at" not in [row[1] for row in raw.execute("PRAGMA table_info(ledger)")]
    raw.close()
    with SqliteRepository(path) as repo:
        assert repo.schema_version == len(MIGRATIONS)
        entry = repo.ledger_entry("box", "<a@x>", "a")
        assert entry is not None
        assert entry.seen_at == T0
        assert repo.prune_ledger("box", T0 + 50 * DAY) == 1
        assert repo.ledger_entry("box", "<b@x>", "b") is not None


def test_a_store_that_fails_to_prune_costs_one_error_and_the_poll_goes_on(
    store: SqliteRepository,
) -> None:
    """The pruning after a complete poll is housekeeping: when the store refuses it (locked,
    full), poll_once still returns its report (it never raises), with one error, and the
    next complete poll prunes."""
    folder = SharedFolder({"1": mail(1)})
    clock = Clock()
    make_service(store, folder, clock).poll_once()
    clock.moment = T0 + 200 * DAY
    real = store.prune_ledger

    def refused(mailbox: str, before: datetime) -> int:
        raise StoreUnavailableError("store: database is locked (SQLITE_BUSY)")

    store.prune_ledger = refused  # type: ignore[method-assign]
    report = make_service(store, folder, clock).poll_once()["helpdesk"]
    assert (report.errors, report.pruned) == (1, 0)
    assert "SQLITE_BUSY" in report.last_error
    assert ledger_rows(store) == 1
    store.prune_ledger = real  # type: ignore[method-assign]
    clock.moment += DAY
    report = make_service(store, folder, clock).poll_once()["helpdesk"]
    assert (report.errors, report.pruned) == (0, 1)
    assert ledger_rows(store) == 0


def _old_ledger_rows(store: SqliteRepository, count: int) -> None:
    """``count`` entries of mailbox "box" processed a year before T0, each a second apart,
    then one with a pending reply, one quarantine record and one seen yesterday."""
    year_ago = T0 - 365 * DAY
    rows = [
        (f"<m{i}@x>", f"{i:064x}", "{}", "none", (year_ago + i * timedelta(seconds=1)).isoformat())
        for i in range(count)
    ]
    rows.append(("<pending@x>", "p" * 64, "{}", "pending", year_ago.isoformat()))
    rows.append(("", "q" * 64, '{"quarantined": "x"}', "none", year_ago.isoformat()))
    rows.append(("<fresh@x>", "f" * 64, "{}", "none", (T0 - DAY).isoformat()))
    with store.transaction():
        store._executemany(
            "INSERT INTO ledger (mailbox, message_id, sha256, decision_json, reply_status,"
            " processed_at) VALUES ('box', ?, ?, ?, ?, ?)",
            rows,
        )


def test_pruning_a_large_backlog_lets_other_writers_in_between_batches(tmp_path: Path) -> None:
    """Issue 10, "Growth": a desk switching retention on after two years has a million entries
    to forget. One DELETE of them all held SQLite's write lock for seconds (5.5 s for 900,000
    on a test machine): a poller of another account on the same store waited that long, past
    its busy timeout, and backed off as if the store were down. Pruning goes in bounded
    batches, each committed alone, so another writer gets the lock between them."""
    path = tmp_path / "store.sqlite3"
    with SqliteRepository(path) as store:
        _old_ledger_rows(store, 350)
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        written: list[int] = []
        deletes = 0

        def other_poller_writes(statement: str) -> None:
            nonlocal deletes
            if statement.startswith("DELETE"):
                deletes += 1
            if deletes == 0:
                return
            try:  # a poller of another account records a message, without waiting
                other.execute(
                    "INSERT INTO ledger (mailbox, message_id, sha256, decision_json,"
                    " reply_status, processed_at) VALUES ('other', ?, 's', '{}', 'none', ?)",
                    (f"<o{len(written)}@x>", T0.isoformat()),
                )
            except sqlite3.OperationalError:  # locked: the prune holds the write lock
                return
            written.append(len(written))

        store._conn.set_trace_callback(other_poller_writes)
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("asm_email_rules.adapters._sql.PRUNE_BATCH", 100, raising=False)
                pruned = store.prune_ledger("box", T0 - 30 * DAY)
        finally:
            store._conn.set_trace_callback(None)
            other.close()
        assert pruned == 350
        left = store._execute("SELECT message_id FROM ledger WHERE mailbox = 'box'").fetchall()
        assert sorted(row[0] for row in left) == ["", "<fresh@x>", "<pending@x>"]
        assert len(written) >= 3, "another poller got the write lock only after the whole prune"
        count = store._one("SELECT COUNT(*) FROM ledger WHERE mailbox = 'other'")[0]
        assert count == len(written)


def test_ledger_retention_holds_when_every_batch_is_one_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The conformance kit's retention check (entries sharing one age among them) with
    batches of one entry: batching changes what is forgotten in no way."""
    monkeypatch.setattr("asm_email_rules.adapters._sql.PRUNE_BATCH", 1)
    with SqliteRepository() as fresh:
        check_ledger_retention(fresh)


def sent_rows(store: SqliteRepository) -> int:
    return int(store._one("SELECT COUNT(*) FROM sent_messages")[0])


def test_a_complete_poll_forgets_old_message_ids_only_the_reply_budget_reads(
    store: SqliteRepository,
) -> None:
    """sent_messages grew for ever. A Message-ID of ours about no record (a summary, a refusal)
    is read only by the reply budget (the last hour): it goes. One about a record is what an
    answer's In-Reply-To finds the record by, however late: it stays."""
    call = EntityRef(EntityKind.CALL, 1)
    with store.transaction():
        for number in range(3):
            store.record_sent(f"<asm.none.{number}@desk>", None, "ann@corp.example", T0)
        store.record_sent("<asm.call-1.a@desk>", call, "ann@corp.example", T0)
    folder = SharedFolder({})
    clock = Clock(T0 + 200 * DAY)
    store.record_sent("<asm.none.recent@desk>", None, "ann@corp.example", clock.moment - MINUTE)
    make_service(store, folder, clock).poll_once()
    assert sent_rows(store) == 2
    assert store.entity_for_message_id("<asm.call-1.a@desk>") == call
    assert store.replies_sent_since("ann@corp.example", clock.moment - HOUR) == 1
    assert store.entity_for_message_id("<asm.none.0@desk>") is None


def approval(token: str, number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = ALICE.email
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = f"[APPROVE#500-{token}]"
    msg["Message-ID"] = f"<approve-{number}@desk.example>"
    msg.set_content("Approved.")
    return msg.as_bytes()


def test_a_used_approval_token_is_forgotten_once_it_has_expired(store: SqliteRepository) -> None:
    """used_tokens grew for ever. A used token matters only while it could still be accepted:
    after its expiry a replay is refused as expired, so the store may forget it then."""
    secret = "s3cret-for-tests"
    token = make_approval_token(
        secret, task_number=500, approver_id=ALICE.id, expires_at=T0 + 3 * DAY, nonce="0a1b2c3d"
    ).token
    account = AccountConfig(
        name="helpdesk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(name="helpdesk", require_approval_token=True),
    )
    system = SystemSettings(ledger_retention_days=90, approval_token_secret=secret)
    config = Config(Path("unused"), system, None, (account,))
    folder = SharedFolder({"1": approval(token, 1)})
    clock = Clock()

    def poll() -> None:
        PollingService(config, store, None, lambda _: folder, now=clock).poll_once()

    def tokens() -> int:
        return int(store._one("SELECT COUNT(*) FROM used_tokens")[0])

    def status() -> TaskStatus:
        task = store.get_task(500)
        assert task is not None
        return task.status

    poll()
    assert status() is TaskStatus.APPROVED
    task = store.get_task(500)
    assert task is not None
    store.put_task(attrs.evolve(task, status=TaskStatus.PENDING))  # a host reused the task
    clock.moment = T0 + 2 * DAY
    folder.messages["2"] = approval(token, 2)  # a replay before the expiry: already used
    poll()
    assert tokens() == 1
    assert status() is TaskStatus.PENDING
    clock.moment = T0 + 3 * DAY + MINUTE
    folder.messages["3"] = approval(token, 3)  # a replay after it: expired
    poll()
    assert tokens() == 0
    assert status() is TaskStatus.PENDING
