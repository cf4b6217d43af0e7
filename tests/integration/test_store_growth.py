"""A store that runs for years: what its reads cost once the tables are big.

The big stores are filled through SQL (a ``WITH RECURSIVE`` / ``generate_series`` insert), in
well under a second, rather than through the repository one message at a time."""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asm_email_rules.adapters import _sql
from asm_email_rules.adapters._sql import SqlRepository
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.model import Call, EntityKind, EntityRef, Person, ReplyStatus, SummaryKind
from asm_email_rules.protocols import SeedableRepository

if TYPE_CHECKING:
    from postgres_fixtures import PgDatabase

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)

_SQLITE_REPLIES = """
WITH RECURSIVE k(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM k WHERE i < ?)
INSERT INTO ledger (mailbox, message_id, sha256, decision_json, reply_json, reply_status,
    attempts, last_error, processed_at, reply_message_id, queued_at, next_attempt_at)
SELECT 'box', 'm' || i || '@example.org', 'h' || i, '{}',
    '{"to": "uma@example.org", "subject": "Call 1 has been updated", "body": "b",'
    || ' "message_id": "<r' || i || '@example.org>"}',
    CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'sent' END, 1, '', t, 'r' || i || '@example.org',
    t, t
FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', 1577836800 + i, 'unixepoch') AS t
      FROM k)
"""
"""Replies ``?`` to ``?`` (one a second from 2020), one in a hundred failed, the rest sent."""


def _add_sqlite_replies(path: Path, first: int, last: int) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute(_SQLITE_REPLIES, (first, last))


def _work(repo: SqliteRepository, read: Callable[[], object]) -> int:
    """How many thousands of SQLite VM steps ``read`` took (a count, not a clock)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn = repo._conn
    assert conn is not None
    conn.set_progress_handler(count, 1000)
    try:
        read()
    finally:
        conn.set_progress_handler(None, 0)
    return steps


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite3"
    SqliteRepository(path).close()
    return path


def test_replies_list_failed_costs_the_same_on_a_store_ten_times_bigger(
    sqlite_store: Path,
) -> None:
    """``replies list --failed`` shows the newest hundred failed replies: it must not read and
    sort every reply the store ever sent to find them."""
    statuses = [ReplyStatus.FAILED]
    _add_sqlite_replies(sqlite_store, 1, 20_000)
    with SqliteRepository(sqlite_store) as repo:
        small = _work(repo, lambda: repo.list_replies(statuses, limit=101))
        newest = repo.list_replies(statuses, limit=101)
    _add_sqlite_replies(sqlite_store, -180_000, 0)  # ten times as many, all older
    with SqliteRepository(sqlite_store) as repo:
        big = _work(repo, lambda: repo.list_replies(statuses, limit=101))
        assert repo.list_replies(statuses, limit=101) == newest
    assert len(newest) == 101
    assert newest[0].queued_at > newest[-1].queued_at
    assert big < 2 * small + 50, f"{small} then {big} thousand steps"


def _capture(repo: SqlRepository, read: Callable[[], object]) -> list[tuple[str, Any]]:
    """The statements ``read`` ran, with their parameters."""
    seen: list[tuple[str, Any]] = []
    execute = repo._execute

    def recording(sql: str, params: Any = ()) -> Any:
        seen.append((sql, params))
        return execute(sql, params)

    repo._execute = recording  # type: ignore[method-assign]
    try:
        read()
    finally:
        del repo._execute
    return seen


_PG_REPLIES = """
INSERT INTO ledger (mailbox, message_id, sha256, decision_json, reply_json, reply_status,
    attempts, last_error, processed_at, reply_message_id, queued_at, next_attempt_at)
SELECT 'box', 'm' || i || '@example.org', 'h' || i, '{}',
    '{"to": "uma@example.org", "subject": "s", "body": "b", "message_id": "<r' || i
    || '@example.org>"}',
    CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'sent' END, 1, '', t, 'r' || i || '@example.org',
    t, t
FROM (SELECT i, timestamptz '2020-01-01 00:00:00+00' + i * interval '1 second' AS t
      FROM generate_series(1, 50000) AS i) AS rows
"""


def test_postgres_replies_list_failed_reads_an_index_in_order(pg_database: PgDatabase) -> None:
    """PostgreSQL's plan for ``replies list --failed`` on 50,000 replies: an index read in
    order up to the limit, no scan and sort of the whole ledger."""
    statuses = [ReplyStatus.FAILED]
    from asm_email_rules.adapters.postgres import PostgresRepository

    with PostgresRepository(
        pg_database.conninfo, password=pg_database.password, schema=pg_database.schema
    ) as repo:
        repo._execute(_PG_REPLIES)
        repo._execute("ANALYZE ledger")
        [(sql, params)] = _capture(repo, lambda: repo.list_replies(statuses, limit=101))
        plan = "\n".join(row[0] for row in repo._execute("EXPLAIN " + sql, params).fetchall())
        assert len(repo.list_replies(statuses, limit=101)) == 101
    assert "Sort" not in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeedableRepository]:
    """An empty store of each bundled kind."""
    if request.param == "memory":
        yield InMemoryRepository()
        return
    if request.param == "sqlite":
        with SqliteRepository(tmp_path / "store.sqlite3") as sqlite_repo:
            yield sqlite_repo
        return
    from asm_email_rules.adapters.postgres import PostgresRepository

    db: PgDatabase = request.getfixturevalue("pg_database")
    with PostgresRepository(db.conninfo, password=db.password, schema=db.schema) as pg_repo:
        yield pg_repo


def test_pruning_sent_message_ids_keeps_the_threads_and_the_last_hour(
    any_store: SeedableRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In batches (three here), oldest first: the Message-IDs about no record sent before the
    cut go; those about a record, and the later ones, stay."""
    monkeypatch.setattr(_sql, "PRUNE_BATCH", 2)
    call = EntityRef(EntityKind.CALL, 4)
    with any_store.transaction():
        for minute in range(5):
            any_store.record_sent(
                f"<asm.none.{minute}@desk>", None, "ann@corp.example", T0 + minute * MINUTE
            )
            any_store.record_sent(
                f"<asm.call-4.{minute}@desk>", call, "ann@corp.example", T0 + minute * MINUTE
            )
    assert isinstance(any_store, InMemoryRepository | SqlRepository)
    prune = any_store.prune_sent_messages
    assert prune(T0 + 4 * MINUTE) == 4
    assert prune(T0 + 4 * MINUTE) == 0
    assert any_store.entity_for_message_id("<asm.call-4.0@desk>") == call
    assert any_store.replies_sent_since("ann@corp.example", T0) == 6
    assert any_store.replies_sent_since("ann@corp.example", T0 + 4 * MINUTE) == 2


def test_pruning_used_tokens_forgets_the_expired_and_keeps_the_unknown(
    any_store: SeedableRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In batches (three here): a token expired at the cut goes (a replay is refused as expired
    anyway); one still valid, or used without an expiry (before schema 7), stays used."""
    monkeypatch.setattr(_sql, "PRUNE_BATCH", 2)
    assert isinstance(any_store, InMemoryRepository | SqlRepository)
    with any_store.transaction():
        for minute in range(6):
            any_store.use_token_until(f"tok-{minute}", T0, T0 + minute * MINUTE)
        any_store.use_token("tok-old", T0)
        any_store.use_token_until("tok-0", T0, T0 + DAY)  # spent again: the first one holds
    assert any_store.prune_used_tokens(T0 + 4 * MINUTE) == 5
    assert any_store.prune_used_tokens(T0 + 4 * MINUTE) == 0
    used = [token for token in ("tok-4", "tok-5", "tok-old") if any_store.is_token_used(token)]
    assert used == ["tok-5", "tok-old"]
    assert not any_store.is_token_used("tok-0")


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlRepository]:
    """An empty SQL store of each bundled kind."""
    if request.param == "sqlite":
        with SqliteRepository(tmp_path / "store.sqlite3") as sqlite_repo:
            yield sqlite_repo
        return
    from asm_email_rules.adapters.postgres import PostgresRepository

    db: PgDatabase = request.getfixturevalue("pg_database")
    with PostgresRepository(db.conninfo, password=db.password, schema=db.schema) as pg_repo:
        yield pg_repo


def test_a_summary_reads_the_start_of_each_description_not_all_of_it(
    sql_store: SqlRepository,
) -> None:
    """DESIGN 4, "Summaries": one line per item. 50 calls logged from mails quoting a whole
    history (half a megabyte each) cost 25 MB of memory read in full; the store reads only the
    start a summary line is taken from."""
    filler = "> an earlier message of the thread, quoted once more\n" * 10_000  # 530 KB
    when = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    sql_store.put_person(Person(1, "ana@desk.example", "Ana", is_analyst=True))
    with sql_store.transaction():
        for number in range(1, 51):
            description = f"Hi,\nPrinter {number} jams on tray 2\n{filler}"
            call = Call(number, owner_id=1, description=description, last_update=when)
            sql_store.put_call(call)
    tracemalloc.start()
    try:
        items, total = sql_store.summary(SummaryKind.CALLS, 1, 50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 50
    assert items[0].description == "Printer 50 jams on tray 2"
    assert peak < 5_000_000, f"a summary of 50 lines took {peak / 1e6:.0f} MB"
