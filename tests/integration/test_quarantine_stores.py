"""The quarantine store (``asm_email_rules.quarantine.QuarantineStore``) in the three bundled
repositories: the conformance kit's quarantine checks on the in-memory reference, SQLite and
PostgreSQL (a throwaway cluster, ``postgres_fixtures.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.quarantine import QuarantineStore
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
