"""A real PostgreSQL for the PostgreSQL store's tests: one throwaway cluster per test session.

The fixtures are imported into ``conftest.py`` (a module of its own keeps them together
without a second ``conftest`` module, which other tests import by that name).

The cluster (initdb into a temporary folder, 127.0.0.1 on a free port, its own unix socket
folder, fsync off) starts once, in about 2 s, with one database; each test that asks for
``pg_database`` gets a new empty schema in it (a schema costs a millisecond, a database a
second of disk writes), which the repository is opened on with ``schema=``. Without the
server binaries or psycopg the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import attrs
import pytest
from loopback import _missing

from asm_email_rules.adapters.postgres_cluster import ClusterError, TemporaryCluster, find_bindir

_SCHEMAS = itertools.count(1)


@attrs.frozen
class PgDatabase:
    """One fresh schema in the session's database: where it is and how to sign in."""

    cluster: TemporaryCluster
    name: str
    schema: str

    @property
    def conninfo(self) -> str:
        """``postgresql://asm@127.0.0.1:PORT/NAME`` (no password in it)."""
        return self.cluster.conninfo(self.name)

    @property
    def password(self) -> str:
        return self.cluster.password


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TemporaryCluster]:
    """The session's throwaway PostgreSQL cluster."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg (the 'postgres' extra)")
    if find_bindir() is None:
        _missing("the PostgreSQL server (initdb, pg_ctl)")
    try:
        cluster = TemporaryCluster.start(settings={"max_connections": "200"})
    except ClusterError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_database_name(pg_cluster: TemporaryCluster) -> str:
    """The session's database, owned by the cluster's login role."""
    return pg_cluster.create_database("asm_tests")


@pytest.fixture
def new_database(pg_cluster: TemporaryCluster, pg_database_name: str) -> Callable[[], PgDatabase]:
    """Factory of fresh (not yet created) schemas in the session's database."""
    return lambda: PgDatabase(pg_cluster, pg_database_name, f"t_{next(_SCHEMAS)}")


@pytest.fixture
def pg_database(new_database: Callable[[], PgDatabase]) -> PgDatabase:
    """A fresh schema: the repository creates and migrates it on first use."""
    return new_database()
