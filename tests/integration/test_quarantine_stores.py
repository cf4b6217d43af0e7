"""The quarantine store (``asm_email_rules.quarantine.QuarantineStore``) in the three bundled
repositories: the conformance kit's quarantine checks on the in-memory reference, SQLite and
PostgreSQL (a throwaway cluster, ``postgres_fixtures.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.quarantine import (
    LISTING_HEAD_BYTES,
    QuarantineListing,
    QuarantineState,
    QuarantineStore,
    count_quarantined,
    list_quarantined,
    purge_quarantined,
)
from asm_email_rules.testing import Check, check_quarantine_store, quarantine_checks

if TYPE_CHECKING:
    from postgres_fixtures import PgDatabase

pytestmark = pytest.mark.integration

CHECKS = quarantine_checks()
STORES = ("memory", "sqlite", "postgres")


@pytest.fixture(params=STORES)
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], SeedableRepository]]:
    """A factory of fresh, empty stores of one kind; they are closed after the test."""
    opened: list[SqliteRepository] = []
    if request.param == "memory":
        yield InMemoryRepository
        return
    if request.param == "sqlite":
        paths = iter(range(1000))

        def sqlite() -> SqliteRepository:
            opened.append(SqliteRepository(tmp_path / f"store{next(paths)}.sqlite3"))
            return opened[-1]

        yield sqlite
    else:
        from asm_email_rules.adapters.postgres import PostgresRepository

        new_database: Callable[[], PgDatabase] = request.getfixturevalue("new_database")
        pg: list[PostgresRepository] = []

        def postgres() -> PostgresRepository:
            db = new_database()
            pg.append(PostgresRepository(db.conninfo, password=db.password, schema=db.schema))
            return pg[-1]

        yield postgres
        for store in pg:
            store.close()
    for repository in opened:
        repository.close()


def test_the_kit_has_quarantine_checks() -> None:
    assert len(CHECKS) >= 5


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_quarantine_conformance(check: Check, open_store: Callable[[], SeedableRepository]) -> None:
    repo = open_store()
    assert isinstance(repo, QuarantineStore)
    check.run(repo)


def test_check_quarantine_store_reports_no_failures(
    open_store: Callable[[], SeedableRepository],
) -> None:
    assert check_quarantine_store(open_store) == []


def test_a_store_without_a_quarantine_fails_the_checks() -> None:
    class NoQuarantine(InMemoryRepository):
        quarantine_message = None  # type: ignore[assignment]

    failures = check_quarantine_store(NoQuarantine)
    assert [name for name, _ in failures] == [c.name for c in CHECKS]
    assert all("no QuarantineStore" in message for _, message in failures)


class CountIgnoresAccount(InMemoryRepository):
    def count_quarantined(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> int:
        return super().count_quarantined(state=state)


class ListingIgnoresState(InMemoryRepository):
    def quarantine_listing(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> Sequence[QuarantineListing]:
        return super().quarantine_listing(state=None, account=account)


@pytest.mark.parametrize(
    ("broken", "fault"),
    [
        (CountIgnoresAccount, "count (state=QuarantineState.HELD, account='a')"),
        (ListingIgnoresState, "listing (state=QuarantineState.HELD, account=None)"),
    ],
)
def test_the_kit_checks_the_optional_count_and_listing(
    broken: type[InMemoryRepository], fault: str
) -> None:
    """``check`` and ``quarantine list`` trust these two methods when a store has them: a
    host's that ignores a filter passed the kit and showed other accounts' messages."""
    failures = dict(check_quarantine_store(broken))
    assert fault in failures.get("quarantine_count_and_listing_agree_with_quarantined", "")


def test_a_listing_and_a_count_read_the_head_and_size_not_the_message(
    open_store: Callable[[], SeedableRepository],
) -> None:
    """What ``quarantine list`` and ``check`` read: every field, the first 64 KiB, the size."""
    store = open_store()
    assert isinstance(store, QuarantineStore)
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    big = b"Subject: big\r\n\r\n" + bytes(range(256)) * 1024  # NUL bytes too
    first = store.quarantine_message("a", big, "too big", at, source="pop3", mailbox_key="7")
    small = b"Subject: small\r\n\r\nhi"
    second = store.quarantine_message("b", small, "bad", at, source="imap")
    store.resolve_quarantined(second, QuarantineState.RELEASED, "back in INBOX", at)
    assert count_quarantined(store) == 1
    assert count_quarantined(store, state=None) == 2
    assert count_quarantined(store, state=None, account="b") == 1
    listed = list_quarantined(store, state=None)
    assert listed == [QuarantineListing.of(entry) for entry in store.quarantined(state=None)]
    assert [(e.id, e.size, len(e.head)) for e in listed] == [
        (first, len(big), LISTING_HEAD_BYTES),
        (second, len(small), len(small)),
    ]
    assert listed[0].head == big[:LISTING_HEAD_BYTES]
    assert [e.id for e in list_quarantined(store, account="a")] == [first]


def test_a_host_store_without_the_listing_methods_is_read_the_old_way() -> None:
    class HostStore(InMemoryRepository):
        count_quarantined = None  # type: ignore[assignment]
        quarantine_listing = None  # type: ignore[assignment]

    store = HostStore()
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    store.quarantine_message("a", b"Subject: x\r\n\r\nbody", "bad", at, source="pop3")
    assert count_quarantined(store) == 1
    [listed] = list_quarantined(store)
    assert (listed.size, listed.head, listed.reason) == (18, b"Subject: x\r\n\r\nbody", "bad")


def test_a_purge_goes_in_batches_and_leaves_other_accounts_and_held_entries(
    open_store: Callable[[], SeedableRepository], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Years of resolved entries go in several batches (here of 3), oldest first; entries of
    another account, held ones and recent ones stay, whatever their place in the order."""
    from asm_email_rules.adapters import _sql

    monkeypatch.setattr(_sql, "PRUNE_BATCH", 3)
    store = open_store()
    assert isinstance(store, QuarantineStore)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    kept: list[int] = []
    for n in range(20):
        account = "a" if n % 3 else "b"
        entry_id = store.quarantine_message(account, b"m", "why", at, source="maildir")
        if n % 5 == 4:
            kept.append(entry_id)  # held
            continue
        when = at + timedelta(days=n % 4 if n != 7 else 200)  # one resolved lately
        store.resolve_quarantined(entry_id, QuarantineState.RELEASED, "back", when)
        if account == "b" or n == 7:
            kept.append(entry_id)
    purged = purge_quarantined(store, at + timedelta(days=100), account="a")
    assert purged == 20 - len(kept)
    assert sorted(e.id for e in store.quarantined(state=None)) == sorted(kept)


def test_a_host_store_without_purge_says_so() -> None:
    class HostStore(InMemoryRepository):
        purge_quarantined = None  # type: ignore[assignment]

    store = HostStore()
    store.quarantine_message("a", b"m", "bad", datetime(2026, 1, 1, tzinfo=UTC), source="pop3")
    assert purge_quarantined(store, datetime(2027, 1, 1, tzinfo=UTC)) is None
    assert len(store.quarantined(state=None)) == 1
