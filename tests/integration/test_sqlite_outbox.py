"""The reply outbox and the leases on SQLite files: the schema upgrade, and two connections
(two pollers) racing for one reply or one account.

The conformance kit checks the semantics on one connection; these tests check that they hold
between connections, where the database, not the Python object, must keep the second one out.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from asm_email_rules.adapters import sqlite as sqlite_adapter
from asm_email_rules.adapters.sqlite import MIGRATIONS, SqliteRepository, reply_to_json
from asm_email_rules.model import OutgoingEmail, ReplyStatus

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def _reply(number: int) -> OutgoingEmail:
    return OutgoingEmail(
        to="uma@example.com",
        subject=f"Call {number} has been logged [CALL#{number}]",
        body="Thank you.",
        sender="desk@example.com",
        message_id=f"<asm.call-{number}.abc{number}@example.com>",
    )


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_version_1_ledger_becomes_the_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies recorded before the outbox existed keep their state and can be sent or resent."""
    path = tmp_path / "v1.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_adapter, "MIGRATIONS", MIGRATIONS[:1])
        SqliteRepository(path).close()
    raw = sqlite3.connect(path)
    rows = [
        ("<p@x>", "s1", _reply(1), "pending", 2, "451 later"),
        ("<f@x>", "s2", _reply(2), "failed", 5, "gave up after 5 attempts"),
        ("<s@x>", "s3", _reply(3), "sent", 1, ""),
        ("<n@x>", "s4", None, "none", 0, ""),
    ]
    for message_id, sha, reply, status, attempts, error in rows:
        raw.execute(
            "INSERT INTO ledger VALUES ('box', ?, ?, '{}', ?, ?, ?, ?, ?)",
            (
                message_id,
                sha,
                None if reply is None else reply_to_json(reply),
                status,
                attempts,
                error,
                _at(0).isoformat(timespec="microseconds"),
            ),
        )
    raw.commit()
    raw.close()

    with SqliteRepository(path) as repo:
        assert repo.schema_version == len(MIGRATIONS)
        pending = repo.outbox_entry(_reply(1).message_id)
        assert pending is not None
        assert (pending.status, pending.attempts, pending.last_error) == (
            ReplyStatus.PENDING,
            2,
            "451 later",
        )
        assert (pending.queued_at, pending.next_attempt_at) == (_at(0), _at(0))
        assert [e.reply.message_id for e in repo.due_replies(_at(1))] == [_reply(1).message_id]
        failed = repo.list_replies([ReplyStatus.FAILED])
        assert [e.reply for e in failed] == [_reply(2)]
        assert repo.requeue_reply(_reply(2).message_id, _at(5)).status is ReplyStatus.PENDING
        assert len(repo.list_replies()) == 3  # the message without a reply queued nothing
        ledger = repo.ledger_entry("box", "<s@x>", "s3")
        assert ledger is not None
        assert ledger.reply_status is ReplyStatus.SENT


def test_two_connections_never_both_claim_one_reply(tmp_path: Path) -> None:
    """Two pollers on one store race for each of 200 due replies: each is claimed once."""
    path = tmp_path / "race.db"
    with SqliteRepository(path) as repo, repo.transaction():
        for number in range(200):
            repo.record_processed("box", f"<m{number}@x>", "s", "{}", _reply(number), T0)
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def sender(owner: str) -> None:
        with SqliteRepository(path, timeout=30) as own:
            barrier.wait()
            for number in range(200):
                entry = own.claim_reply(_reply(number).message_id, owner, _at(1), _at(6))
                if entry is not None:
                    claimed[owner].append(entry.reply.message_id)

    threads = [threading.Thread(target=sender, args=(owner,)) for owner in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both = claimed["a"] + claimed["b"]
    assert len(both) == 200
    assert len(set(both)) == 200


def test_a_lease_is_held_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "lease.db"
    with SqliteRepository(path) as first, SqliteRepository(path) as second:
        assert first.acquire_lease("account:helpdesk", "a", _at(0), _at(2)).owner == "a"
        held = second.acquire_lease("account:helpdesk", "b", _at(1), _at(3))
        assert (held.owner, held.expires) == ("a", _at(2))
        assert second.acquire_lease("account:helpdesk", "b", _at(2), _at(4)).owner == "b"
        assert first.acquire_lease("account:helpdesk", "a", _at(3), _at(5)).owner == "b"


def test_the_outbox_columns_are_indexed(tmp_path: Path) -> None:
    """Claims look replies up by Message-ID and senders list what is due: both use an index."""
    with SqliteRepository(tmp_path / "plan.db") as repo:
        plan = repo._execute(
            "EXPLAIN QUERY PLAN SELECT * FROM ledger WHERE reply_message_id = 'x'"
        ).fetchall()
        assert "ledger_by_reply" in json.dumps(plan)
        plan = repo._execute(
            "EXPLAIN QUERY PLAN SELECT * FROM ledger"
            " WHERE reply_status = 'pending' AND next_attempt_at <= 'z'"
        ).fetchall()
        assert "ledger_replies_due" in json.dumps(plan)


def test_counting_the_waiting_replies_reads_the_pending_index_not_the_whole_ledger(
    tmp_path: Path,
) -> None:
    """`poll --once` counts each account's waiting replies after every pass
    (``list_replies([PENDING], mailbox=...)``). Its statement named no status, so SQLite read
    every entry of the ledger for it: 0.25 s and the whole file for a million entries, at
    every cron run. It reads the partial index of pending replies; other lists still work."""
    with SqliteRepository(tmp_path / "plan.db") as repo:
        statements: list[str] = []
        repo._conn.set_trace_callback(statements.append)
        try:
            assert list(repo.list_replies([ReplyStatus.PENDING], mailbox="helpdesk")) == []
        finally:
            repo._conn.set_trace_callback(None)
        (listing,) = [s for s in statements if s.startswith("SELECT")]
        plan = json.dumps(repo._execute(f"EXPLAIN QUERY PLAN {listing}").fetchall())
        assert "ledger_replies_due" in plan, plan
        assert list(repo.list_replies([])) == []
        assert list(repo.list_replies([ReplyStatus.SENT, ReplyStatus.FAILED])) == []
