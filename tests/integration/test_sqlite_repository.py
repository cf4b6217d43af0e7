"""The SQLite repository: the conformance kit, plus behaviour on real database files."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asm_email_rules.adapters import sqlite as sqlite_adapter
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import MIGRATIONS, SqliteRepository
from asm_email_rules.errors import RepositoryError
from asm_email_rules.model import (
    Attachment,
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    Person,
    Request,
    RequestStatus,
    SummaryKind,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.settings import CallTemplate
from asm_email_rules.testing import Check, check_repository, repository_checks

CHECKS = repository_checks()
NOW = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_conformance_in_memory_database(check: Check) -> None:
    with SqliteRepository() as repo:
        check.run(repo)


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_conformance_on_a_file(check: Check, tmp_path: Path) -> None:
    with SqliteRepository(tmp_path / "helpdesk.db") as repo:
        check.run(repo)


def test_is_a_seedable_repository() -> None:
    with SqliteRepository() as repo:
        assert isinstance(repo, SeedableRepository)


def test_check_repository_reports_no_failures() -> None:
    assert check_repository(SqliteRepository) == []


def _new_call(repo: SqliteRepository, description: str = "d") -> Call:
    with repo.transaction():
        return repo.create_call(
            template=CallTemplate(assigned_group="Desk"),
            user_id=None,
            logging_analyst_id=None,
            description=description,
            now=NOW,
        )


# -- files ------------------------------------------------------------------------------------
def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.db"
    attachment = Attachment("scan.pdf", "application/pdf", bytes(range(256)) * 64, content_id="x1")
    with SqliteRepository(path) as repo:
        call = _new_call(repo, "Printer jammed")
        ref = EntityRef(EntityKind.CALL, call.number)
        with repo.transaction():
            repo.put_person(Person(id=7, email="Ann@Example.com", name="Ann", is_analyst=True))
            repo.put_task(Task(number=3, kind=TaskKind.APPROVAL, approver_ids=(7, 2)))
            repo.attach(ref, attachment, "Confidential", NOW)
            repo.record_sent("<asm.call-1.z@example.com>", ref, "ann@example.com", NOW)
            repo.use_token("tok", NOW)
    with SqliteRepository(path) as repo:
        assert repo.get_call(call.number) == call
        assert [p.id for p in repo.persons_by_address("ann@example.com")] == [7]
        task = repo.get_task(3)
        assert task is not None
        assert task.approver_ids == (7, 2)
        assert repo.attachments(ref) == [attachment]
        assert [e.security_profile for e in repo.entries(ref)] == ["Confidential"]
        assert repo.entity_for_message_id("<asm.call-1.z@example.com>") == ref
        assert repo.is_token_used("tok")
        assert _new_call(repo).number == call.number + 1


@pytest.mark.parametrize(
    "size", [0, 1, sqlite_adapter.BLOB_PIECE, 3 * sqlite_adapter.BLOB_PIECE + 17]
)
def test_an_attachment_of_any_size_comes_back_byte_for_byte(tmp_path: Path, size: int) -> None:
    """Attachments are written into the file piece by piece (no second copy of a large one in
    memory): every byte, in order, whatever the size, including an empty file."""
    data = bytes((n * 7 + n // 251) % 256 for n in range(size))
    attachment = Attachment("scan.bin", "application/octet-stream", data)
    path = tmp_path / "helpdesk.db"
    with SqliteRepository(path) as repo:
        ref = EntityRef(EntityKind.CALL, _new_call(repo, "Scanner output").number)
        with repo.transaction():
            repo.attach(ref, attachment, "Unspecified", NOW)
    with SqliteRepository(path) as repo:
        assert repo.attachments(ref) == [attachment]


def test_call_numbers_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.db"
    with SqliteRepository(path) as repo:
        first = _new_call(repo)
        second = _new_call(repo)
    raw = sqlite3.connect(path)  # a host removes the newest call behind our back
    with raw:
        raw.execute("DELETE FROM calls WHERE number = ?", (second.number,))
    raw.close()
    with SqliteRepository(path) as repo:
        third = _new_call(repo)
        repo.put_call(Call(number=1000))
        fourth = _new_call(repo)
    assert (first.number, second.number, third.number, fourth.number) == (1, 2, 3, 1001)


def test_fresh_file_is_migrated_to_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    with SqliteRepository(path) as repo:
        assert repo.schema_version == len(MIGRATIONS)
    raw = sqlite3.connect(path)
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    raw.close()
    assert {
        "persons",
        "calls",
        "tasks",
        "task_approvers",
        "task_forwarded",
        "requests",
        "request_forwarded",
        "log_entries",
        "attachments",
        "ledger",
        "sent_messages",
        "used_tokens",
        "counters",
        "leases",
        "task_forwarded_by",
        "request_forwarded_by",
        "security_roles",
        "role_rights",
        "assignment_groups",
        "quarantine",
    } <= tables


def test_people_stored_before_the_idn_fold_are_found_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN 4b: addresses match as one whole address. A store written by a version that
    folded ``ß`` to ``ss`` and kept A-labels keeps finding its people after the upgrade."""
    path = tmp_path / "v5.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_adapter, "MIGRATIONS", MIGRATIONS[:5])
        with SqliteRepository(path):
            pass
    raw = sqlite3.connect(path)  # keys as the old fold wrote them
    with raw:
        raw.executemany(
            "INSERT INTO persons (id, email, email_key, name, is_user) VALUES (?, ?, ?, ?, 1)",
            [
                (1, "Straße@Example.com", "strasse@example.com", "One"),
                (2, "anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example", "Anna"),
            ],
        )
    raw.close()
    with SqliteRepository(path) as repo:
        assert [p.id for p in repo.persons_by_address("straße@example.com")] == [1]
        assert repo.persons_by_address("strasse@example.com") == []
        assert [p.id for p in repo.persons_by_address("anna@bücher.example")] == [2]


def test_people_an_older_poller_writes_are_found_by_either_spelling_of_their_domain(
    tmp_path: Path,
) -> None:
    """DESIGN 4b: addresses match as one whole address (a domain's A-labels and Unicode
    spelling are one domain). A poller of a version before schema 6 still running after the
    upgrade keys a person as written, case-folded (``ß`` as ``ss``): one it wrote with a
    Unicode domain is found when the sender writes the domain in A-labels, and one written in
    A-labels when the sender writes it in Unicode."""
    path = tmp_path / "store.db"
    with SqliteRepository(path):
        pass
    raw = sqlite3.connect(path)  # what that version's create_person writes
    with raw:
        raw.executemany(
            "INSERT INTO persons (id, email, email_key, name, is_user) VALUES (?, ?, ?, ?, 1)",
            [
                (7, "Große@Bücher.example", "grosse@bücher.example", "Unicode domain"),
                (8, "Weiß@xn--mnchen-3ya.example", "weiss@xn--mnchen-3ya.example", "A-labels"),
            ],
        )
    raw.close()
    with SqliteRepository(path) as repo:
        assert [p.id for p in repo.persons_by_address("große@xn--bcher-kva.example")] == [7]
        assert [p.id for p in repo.persons_by_address("GROẞE@bücher.example")] == [7]
        assert [p.id for p in repo.persons_by_address("weiß@münchen.example")] == [8]
        assert [p.id for p in repo.persons_by_address("Weiß@XN--MNCHEN-3YA.example")] == [8]
        assert repo.persons_by_address("grosse@xn--bcher-kva.example") == []


def test_people_keyed_by_the_earlier_case_fold_are_found_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN 4b: addresses match case-insensitively, and nothing more. Schema 5 keyed
    ``boss@σας.example`` as ``boss@σασ.example`` (case folding maps the final sigma); the
    person is still found by their own address after the upgrade, and not by the other's."""
    path = tmp_path / "v5.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_adapter, "MIGRATIONS", MIGRATIONS[:5])
        with SqliteRepository(path):
            pass
    raw = sqlite3.connect(path)  # the key as schema 5's case fold wrote it
    with raw:
        raw.execute(
            "INSERT INTO persons (id, email, email_key, name, is_user) VALUES (?, ?, ?, ?, 1)",
            (1, "boss@σας.example", "boss@σασ.example", "Boss"),
        )
    raw.close()
    with SqliteRepository(path) as repo:
        assert [p.id for p in repo.persons_by_address("boss@σας.example")] == [1]
        assert repo.persons_by_address("boss@σασ.example") == []


def test_a_version_1_file_is_upgraded_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v1.db"
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_adapter, "MIGRATIONS", MIGRATIONS[:1])
        with SqliteRepository(path) as repo:
            assert repo.schema_version == 1
    raw = sqlite3.connect(path)  # rows as schema 1 wrote them
    with raw:
        raw.execute(
            "INSERT INTO calls (number, status, description, last_update)"
            " VALUES (7, 'open', 'kept across the upgrade', '2024-05-01T09:00:00.000000+00:00')"
        )
        raw.execute(
            "INSERT INTO persons (id, email, email_key, name, is_analyst, can_take_over)"
            " VALUES (3, 'Ann@Example.com', 'ann@example.com', 'Ann', 1, 1)"
        )
        raw.execute("INSERT INTO requests (number, status) VALUES (9, 'open')")
        raw.execute("INSERT INTO request_forwarded VALUES (9, 0, 3)")
    raw.close()
    extra = ("ALTER TABLE calls ADD COLUMN priority INTEGER NOT NULL DEFAULT 3",)
    monkeypatch.setattr(sqlite_adapter, "MIGRATIONS", (*MIGRATIONS, extra))
    with SqliteRepository(path) as repo:
        assert repo.schema_version == len(MIGRATIONS) + 1
        assert repo.get_call(7) == Call(7, description="kept across the upgrade", last_update=NOW)
        assert repo.get_person(3) == Person(
            3, "Ann@Example.com", "Ann", is_analyst=True, can_take_over=True
        )
        request = repo.get_request(9)
        assert request is not None
        assert (request.forwarded_ids, request.forwarded_by_ids) == ((3,), ())
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT priority FROM calls").fetchall() == [(3,)]
    raw.close()


def test_a_failing_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v1.db"
    SqliteRepository(path).close()
    broken = ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL")
    monkeypatch.setattr(sqlite_adapter, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(RepositoryError, match="SQLite error"):
        SqliteRepository(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() == []
    raw.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SqliteRepository(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(RepositoryError, match=r"schema version 99 is newer .* upgrade"):
        SqliteRepository(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is plain text, not SQLite\n" * 100)
    with pytest.raises(RepositoryError):
        SqliteRepository(path)


def test_files_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    with SqliteRepository(path):
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        raw.close()
    with SqliteRepository(path) as repo, pytest.raises(RepositoryError, match="FOREIGN KEY"):
        repo._execute("INSERT INTO task_approvers VALUES (404, 0, 1)")


# -- concurrency and crashes --------------------------------------------------------------------
def test_reader_sees_committed_data_while_a_writer_holds_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with SqliteRepository(path) as writer, SqliteRepository(path) as reader:
        committed = _new_call(writer, "committed")
        with writer.transaction():
            pending = writer.create_call(
                template=CallTemplate(),
                user_id=None,
                logging_analyst_id=None,
                description="not yet committed",
                now=NOW,
            )
            writer.add_history(EntityRef(EntityKind.CALL, committed.number), "h", "a", NOW)
            assert reader.get_call(committed.number) == committed  # not blocked, last commit
            assert reader.get_call(pending.number) is None
            assert reader.entries(EntityRef(EntityKind.CALL, committed.number)) == []
        assert reader.get_call(pending.number) == pending


def test_a_second_writer_waits_then_gives_up(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with SqliteRepository(path) as first, SqliteRepository(path, timeout=0.1) as second:
        with first.transaction():
            first.use_token("a", NOW)
            with pytest.raises(RepositoryError, match="locked"), second.transaction():
                pass
        with second.transaction():  # free again once the first committed
            second.use_token("b", NOW)
        assert first.is_token_used("b")


def _database_file_alone(path: Path, into: Path) -> list[str]:
    """The call descriptions in a copy of the database file without its WAL: what a copy of
    the ``.db`` alone (a backup that misses the ``-wal``) would hold."""
    shutil.copyfile(path, into)
    raw = sqlite3.connect(into)
    try:
        return [row[0] for row in raw.execute("SELECT description FROM calls ORDER BY number")]
    finally:
        raw.close()


def test_the_upkeep_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    # SQLite copies the WAL back by itself only every WAL_CHECKPOINT_PAGES, in a commit; the
    # polling service runs detached_upkeep after each session's end, on that end's thread.
    path = tmp_path / "desk.db"

    def upkeep_on_a_thread(repo: SqliteRepository) -> None:
        behind = threading.Thread(target=repo.detached_upkeep())
        behind.start()
        behind.join()

    with SqliteRepository(path) as repo:
        upkeep_on_a_thread(repo)  # the schema
        _new_call(repo, "first session")
        assert _database_file_alone(path, tmp_path / "before.db") == []  # still in the WAL
        upkeep_on_a_thread(repo)
        _new_call(repo, "second session")  # the writer goes on after it, in the same WAL
        assert _database_file_alone(path, tmp_path / "after.db") == ["first session"]
        second = repo.get_call(2)
        assert second is not None
        assert second.description == "second session"


def test_a_checkpoint_alongside_an_open_transaction_keeps_it_out(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    with SqliteRepository(path) as repo:
        repo.detached_upkeep()()  # the schema
        _new_call(repo, "committed")
        with repo.transaction():
            repo.create_call(
                template=CallTemplate(assigned_group="Desk"),
                user_id=None,
                logging_analyst_id=None,
                description="not yet committed",
                now=NOW,
            )
            behind = threading.Thread(target=repo.detached_upkeep())
            behind.start()
            behind.join()
            assert _database_file_alone(path, tmp_path / "during.db") == ["committed"]
        assert [call.description for call in _calls(repo)] == ["committed", "not yet committed"]


class _Overtaken:
    """The upkeep's connection, with a commit of the writer's after each of its first
    ``commits`` checkpoints: a poller that commits while the upkeep copies."""

    def __init__(self, conn: sqlite3.Connection, writer: SqliteRepository, commits: int) -> None:
        self._conn, self._writer, self._commits = conn, writer, commits
        self.passes = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        if "wal_checkpoint" in sql:  # the commit lands after the copy: it overtook it
            self.passes += 1
            if self.passes <= self._commits:
                _new_call(self._writer, f"during pass {self.passes}")
        return cursor

    def close(self) -> None:
        self._conn.close()


def _overtake(
    monkeypatch: pytest.MonkeyPatch, writer: SqliteRepository, commits: int
) -> list[_Overtaken]:
    """Make the connections opened from now on (until ``monkeypatch.undo()``) :class:`_Overtaken`
    ones; they are listed in the list returned."""
    made: list[_Overtaken] = []
    connect = sqlite3.connect

    def overtaken(*args: Any, **kwargs: Any) -> _Overtaken:
        made.append(_Overtaken(connect(*args, **kwargs), writer, commits))
        return made[-1]

    monkeypatch.setattr(sqlite3, "connect", overtaken)
    return made


def _upkeep_overtaken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commits: int
) -> tuple[list[int], list[str]]:
    """One call made, then an upkeep whose first ``commits`` checkpoints are each overtaken by
    a commit of the writer's: the passes each connection of the upkeep made, and the calls
    in the database file alone afterwards. The store is closed and left at ``desk.db``."""
    path = tmp_path / "desk.db"
    with SqliteRepository(path) as repo:
        _new_call(repo, "before")
        opened = _overtake(monkeypatch, repo, commits)
        repo.detached_upkeep()()
        monkeypatch.undo()
        copied = _database_file_alone(path, tmp_path / "after.db")
    return [upkeep.passes for upkeep in opened], copied


def test_an_upkeep_overtaken_by_a_commit_copies_that_commit_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poller that sends replies commits every few milliseconds, and a checkpoint's copy of
    # a session's pages takes tens: SQLite syncs the database file only after a checkpoint no
    # commit overtook, so one pass left the file unsynced until the writer's own checkpoint
    # synced it all within one of the poller's commits (70 to 100 ms on the benchmark's disk).
    # The upkeep now checkpoints again, a short copy, until one finds no new commit.
    passes, copied = _upkeep_overtaken(tmp_path, monkeypatch, commits=1)
    assert copied == ["before", "during pass 1"]
    # the second pass copied that commit, and no commit overtook it
    assert passes == [2]


def test_an_upkeep_behind_a_writer_that_never_pauses_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes, copied = _upkeep_overtaken(tmp_path, monkeypatch, commits=100)
    assert passes == [sqlite_adapter.CHECKPOINT_PASSES]
    assert copied[0] == "before"
    assert len(copied) == sqlite_adapter.CHECKPOINT_PASSES  # the last commit waits
    assert _first_call_reopened(tmp_path / "desk.db") == "before"


def _calls(repo: SqliteRepository) -> list[Call]:
    return [call for number in (1, 2) if (call := repo.get_call(number)) is not None]


def test_an_upkeep_that_fails_raises_nothing_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "desk.db"
    with SqliteRepository(path) as repo:
        _new_call(repo, "kept")

        def refused(*args: object, **kwargs: object) -> sqlite3.Connection:
            raise sqlite3.OperationalError("unable to open database file")

        monkeypatch.setattr(sqlite3, "connect", refused)
        repo.detached_upkeep()()  # logged; the checkpoint is left to SQLite's own
        monkeypatch.undo()
    assert _first_call_reopened(path) == "kept"


def _first_call_reopened(path: Path) -> str | None:
    """The description of call 1 in the store at ``path``, opened anew (None: no such call)."""
    with SqliteRepository(path) as reopened:
        call = reopened.get_call(1)
        return None if call is None else call.description


def test_an_upkeep_after_the_file_was_moved_keeps_the_wal(tmp_path: Path) -> None:
    # The checkpoint's connection must not create an empty database in the moved file's
    # place: SQLite would then delete the WAL beside it, which holds the writer's commits.
    path = tmp_path / "desk.db"
    repo = SqliteRepository(path)
    _new_call(repo, "only in the WAL")
    path.rename(tmp_path / "aside.db")  # an operator moves it away (by mistake)
    repo.detached_upkeep()()  # the poller's next session end
    assert not path.exists()
    assert Path(f"{path}-wal").exists()
    repo.close()
    (tmp_path / "aside.db").rename(path)  # and puts it back
    assert _first_call_reopened(path) == "only in the WAL"


def test_closing_leaves_no_wal_behind_after_an_upkeep(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    repo = SqliteRepository(path)
    _new_call(repo)
    upkeep = repo.detached_upkeep()
    upkeep()
    repo.close()  # the checkpoint's connection too: the last one out removes the WAL
    assert not Path(f"{path}-wal").exists()
    upkeep()  # a session end still running when the store closed: nothing, no error
    assert not Path(f"{path}-wal").exists()


def _dump(path: Path) -> list[str]:
    raw = sqlite3.connect(path)
    try:
        return list(raw.iterdump())
    finally:
        raw.close()


def _seed_file(path: Path) -> None:
    with SqliteRepository(path) as repo:
        call = _new_call(repo)
        with repo.transaction():
            repo.put_person(Person(id=1, email="a@example.com"))
            repo.add_history(EntityRef(EntityKind.CALL, call.number), "first", "a", NOW)


def test_an_interrupted_transaction_leaves_the_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    _seed_file(path)
    before = _dump(path)

    def interrupted() -> None:
        with SqliteRepository(path) as repo, repo.transaction():
            call = repo.create_call(
                template=CallTemplate(),
                user_id=None,
                logging_analyst_id=None,
                description="lost",
                now=NOW,
            )
            repo.attach(
                EntityRef(EntityKind.CALL, call.number),
                Attachment("a.bin", "application/octet-stream", b"x" * 10_000),
                "Unspecified",
                NOW,
            )
            repo.record_processed("box", "<m@x>", "ab", "{}", None, NOW)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert _dump(path) == before


def test_a_process_killed_mid_transaction_leaves_the_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    _seed_file(path)
    before = _dump(path)
    script = textwrap.dedent(
        f"""
        import os
        from datetime import datetime, UTC
        from asm_email_rules.adapters.sqlite import SqliteRepository
        from asm_email_rules.model import Person
        from asm_email_rules.settings import CallTemplate
        repo = SqliteRepository({str(path)!r})
        with repo.transaction():
            repo.put_person(Person(id=2, email="b@example.com"))
            repo.create_call(template=CallTemplate(), user_id=None, logging_analyst_id=None,
                             description="lost", now=datetime.now(UTC))
            repo.use_token("tok", datetime.now(UTC))
            os._exit(3)  # no commit, no rollback, no cleanup: a crash
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()
    assert _dump(path) == before
    with SqliteRepository(path) as repo:
        assert repo.get_person(2) is None
        assert not repo.is_token_used("tok")
        assert _new_call(repo).number == 2


def test_writes_outside_a_transaction_autocommit(tmp_path: Path) -> None:
    path = tmp_path / "auto.db"
    with SqliteRepository(path) as writer, SqliteRepository(path) as reader:
        writer.put_task(Task(number=5, approver_ids=(1, 2, 3)))
        writer.use_token("t", NOW)
        task = reader.get_task(5)
        assert task is not None
        assert task.approver_ids == (1, 2, 3)
        assert reader.is_token_used("t")


def test_datetimes_are_stored_as_iso_utc_text(tmp_path: Path) -> None:
    path = tmp_path / "dates.db"
    local = datetime(2024, 5, 1, 13, 30, tzinfo=timezone(timedelta(hours=2)))
    with SqliteRepository(path) as repo:
        repo.put_call(Call(number=1, last_update=local))
        stored = repo.get_call(1)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT last_update FROM calls").fetchone() == (
        "2024-05-01T11:30:00.000000+00:00",
    )
    raw.close()
    assert stored is not None
    assert stored.last_update == local
    assert stored.last_update is not None
    assert stored.last_update.tzinfo is UTC


# -- same observable behaviour as the reference ------------------------------------------------
_people = st.integers(min_value=1, max_value=4)
_moments = st.one_of(
    st.none(), st.integers(min_value=0, max_value=5).map(lambda m: NOW + timedelta(minutes=m))
)
_records = st.one_of(
    st.builds(
        Call,
        number=st.integers(1, 8),
        status=st.sampled_from(CallStatus),
        owner_id=st.one_of(st.none(), _people),
        group=st.sampled_from(["", "Desk"]),
        description=st.text(max_size=100),
        last_update=_moments,
    ),
    st.builds(
        Task,
        number=st.integers(1, 8),
        kind=st.sampled_from(TaskKind),
        status=st.sampled_from(TaskStatus),
        owner_id=st.one_of(st.none(), _people),
        approver_ids=st.lists(_people, max_size=3, unique=True).map(tuple),
        forwarded_ids=st.lists(_people, max_size=3, unique=True).map(tuple),
        last_update=_moments,
    ),
    st.builds(
        Request,
        number=st.integers(1, 8),
        status=st.sampled_from(RequestStatus),
        owner_id=st.one_of(st.none(), _people),
        forwarded_ids=st.lists(_people, max_size=3, unique=True).map(tuple),
        group=st.sampled_from(["", "Desk"]),
        last_update=_moments,
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_records, max_size=20), limit=st.integers(0, 5))
def test_summaries_match_the_reference(records: list[Call | Task | Request], limit: int) -> None:
    reference, sqlite_repo = InMemoryRepository(), SqliteRepository()
    try:
        for repo in (reference, sqlite_repo):
            with repo.transaction():
                for person_id in range(1, 5):
                    repo.put_person(
                        Person(id=person_id, email=f"p{person_id}@x", name=f"P{person_id}")
                    )
                for record in records:
                    if isinstance(record, Call):
                        repo.put_call(record)
                    elif isinstance(record, Task):
                        repo.put_task(record)
                    else:
                        repo.put_request(record)
        for kind in SummaryKind:
            for person_id in range(1, 5):
                expected = reference.summary(kind, person_id, limit)
                assert sqlite_repo.summary(kind, person_id, limit) == expected
    finally:
        sqlite_repo.close()


def test_after_an_upkeep_the_store_sees_other_processes_and_they_see_it(tmp_path: Path) -> None:
    # A fresh-user trial: `people add` while `poll` ran, and the poller discarded the new
    # person's mail as from an unknown sender. The upkeep synced the database file with an
    # os.open/os.close of its path, and closing any descriptor of a file drops every POSIX
    # lock the process holds on it, SQLite's included (https://www.sqlite.org/howtocorrupt.html
    # section 2.2). The other process, closing its connection, then took itself for the last
    # one and removed the WAL: the running store went on in a WAL no one else saw, blind to
    # later writes, and its own were lost with it.
    path = tmp_path / "desk.db"
    with SqliteRepository(path) as repo:
        upkeep, sync = repo.detached_upkeep(), repo.detached_sync()
        for n in range(3):
            _new_call(repo, f"ours {n}")
            sync()  # the poller's session end: the WAL synced (its own descriptor), then
            upkeep()  # the WAL copied back
            person = f"person{n}@example.org"
            command = ["people", "add", "--store", str(path), "--user", person]
            added = subprocess.run(
                [sys.executable, "-m", "asm_email_rules", *command],
                capture_output=True,
                text=True,
                check=False,
            )
            assert added.returncode == 0, added.stderr
            assert repo.persons_by_address(person), f"{person} not seen"
        elsewhere = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
                " print(c.execute('SELECT COUNT(*) FROM calls').fetchone()[0])",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert elsewhere.stdout.strip() == "3"  # our writes, seen by another process
    assert _first_call_reopened(path) == "ours 0"


def test_a_quarantine_purge_waits_for_a_reader_like_every_write(tmp_path: Path) -> None:
    """A purge deletes with ``RETURNING``, whose commit SQLite makes while the rows are
    fetched: a reader holding the file (a rollback journal, where SQLite refused WAL mode: a
    network file system) made it raise sqlite3's own OperationalError, not a RepositoryError,
    and it was never tried again; now it waits for the lock as every other write does."""
    from asm_email_rules.quarantine import QuarantineState, purge_quarantined

    path = tmp_path / "store.db"
    old = datetime(2026, 1, 1, tzinfo=UTC)
    with SqliteRepository(path, timeout=5.0) as repo:
        repo._conn.execute("PRAGMA journal_mode = DELETE")  # as where WAL is refused
        entry = repo.quarantine_message("helpdesk", b"m", "why", old, source="pop3")
        repo.resolve_quarantined(entry, QuarantineState.RELEASED, "back", old)
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM quarantine").fetchone()  # holds a shared lock
        timer = threading.Timer(0.5, reader.rollback)
        timer.start()
        try:
            purged = purge_quarantined(repo, old + timedelta(days=1))
        finally:
            timer.join()
            reader.close()
        assert purged == 1
        assert repo.quarantined(state=None) == []


def test_a_summary_line_keeps_the_text_after_a_nul_character() -> None:
    """SQLite's ``substr`` of a text stops at a NUL character: a call described as
    "Printer\\0 jams on floor 2" (a host's import, a message's stray byte) was summarised as
    "Printer" on SQLite and whole in memory; the summaries' property test found it."""
    description = "Printer\x00 jams on floor 2"
    call = Call(
        7, owner_id=1, description=description, last_update=datetime(2026, 12, 1, tzinfo=UTC)
    )
    reference, sqlite_repo = InMemoryRepository(), SqliteRepository()
    try:
        for repo in (reference, sqlite_repo):
            with repo.transaction():
                repo.put_person(Person(id=1, email="p1@x", name="P1"))
                repo.put_call(call)
        [item], total = sqlite_repo.summary(SummaryKind.CALLS, 1, 5)
        assert total == 1
        assert "jams on floor 2" in item.description
        assert sqlite_repo.summary(SummaryKind.CALLS, 1, 5) == reference.summary(
            SummaryKind.CALLS, 1, 5
        )
    finally:
        sqlite_repo.close()
