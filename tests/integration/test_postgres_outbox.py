"""The reply outbox and the leases between two PostgreSQL connections (two pollers, or two
machines sharing the store): the database, not the Python object, keeps the second one out."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.postgres import PostgresRepository
from asm_email_rules.model import OutgoingEmail

if TYPE_CHECKING:
    from postgres_fixtures import PgDatabase

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def _reply(number: int) -> OutgoingEmail:
    return OutgoingEmail(
        to="uma@example.com",
        subject=f"Call {number} has been logged [CALL#{number}]",
        body="Thank you.",
        message_id=f"<asm.call-{number}.pg{number}@example.com>",
    )


def _open(db: PgDatabase) -> PostgresRepository:
    return PostgresRepository(db.conninfo, password=db.password, schema=db.schema, timeout=30)


def test_two_connections_never_both_claim_one_reply(pg_database: PgDatabase) -> None:
    with _open(pg_database) as repo, repo.transaction():
        for number in range(100):
            repo.record_processed("box", f"<m{number}@x>", "s", "{}", _reply(number), T0)
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def sender(owner: str) -> None:
        with _open(pg_database) as own:
            barrier.wait()
            for number in range(100):
                until = T0 + timedelta(minutes=5)
                entry = own.claim_reply(_reply(number).message_id, owner, T0, until)
                if entry is not None:
                    claimed[owner].append(entry.reply.message_id)

    threads = [threading.Thread(target=sender, args=(owner,)) for owner in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both = claimed["a"] + claimed["b"]
    assert sorted(both) == sorted(_reply(n).message_id for n in range(100))


def _race_for_lease(repos: list[PostgresRepository], owners: list[str], now: datetime) -> set[str]:
    """Both connections ask for the lease at the same moment; the owners that got it."""
    barrier = threading.Barrier(len(repos))
    got: set[str] = set()

    def ask(repo: PostgresRepository, owner: str) -> None:
        barrier.wait()
        lease = repo.acquire_lease("account:helpdesk", owner, now, now + timedelta(minutes=5))
        if lease.owner == owner:
            got.add(owner)

    threads = [threading.Thread(target=ask, args=pair) for pair in zip(repos, owners, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got


def test_two_connections_never_both_hold_one_lease(pg_database: PgDatabase) -> None:
    """50 rounds of two pollers asking for a free lease at once: exactly one gets it."""
    with _open(pg_database) as first, _open(pg_database) as second:
        winners = [
            _race_for_lease(
                [first, second],
                [f"a{round_number}", f"b{round_number}"],
                T0 + timedelta(minutes=10 * round_number),  # the last round's lease expired
            )
            for round_number in range(50)
        ]
    assert all(len(got) == 1 for got in winners), winners


def test_a_claim_skips_a_reply_another_sender_holds_locked(pg_database: PgDatabase) -> None:
    """``FOR UPDATE SKIP LOCKED``: while another connection holds the row, a claim answers
    None at once instead of waiting for its lock (here: longer than the lock timeout)."""
    reply = _reply(1)
    with _open(pg_database) as holder, _open(pg_database) as other:
        holder.record_processed("box", "<m1@x>", "s", "{}", reply, T0)
        until = T0 + timedelta(minutes=5)
        with holder.transaction():
            assert holder.claim_reply(reply.message_id, "holder", T0, until) is not None
            started = time.monotonic()
            assert other.claim_reply(reply.message_id, "other", T0, until) is None
            assert time.monotonic() - started < 5
        entry = other.outbox_entry(reply.message_id)
        assert entry is not None
        assert entry.claimed_by == "holder"
