"""The sent journal: what the SMTP server accepted is kept on disk at once, read back by the
next pump once the writing pump has stopped, and recorded SENT for it.

DESIGN 4, "Replies are an outbox": "The only duplicate left is a crash between the server's 250
and our commit". The journal narrows that window: a reply the server accepted and the journal
kept is recorded SENT by the next pump (:func:`settle`) instead of being sent a second time.
Whether a journal's pump has stopped is told by a file lock the pump holds on its own file
from its first entry until it closes the journal (the kernel lets go of it when the process
dies), so a running pump's journal is never read nor deleted by another.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from outbox_replies import QUEUED_AT, five_pending_replies, outbox_reply

from asm_email_rules.adapters import journal_files
from asm_email_rules.adapters.journal_files import DirectorySentJournal
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.errors import StoreUnavailableError
from asm_email_rules.model import ReplyStatus, SentEntry
from asm_email_rules.protocols import SentJournal
from asm_email_rules.sent_journal import settle

T0 = QUEUED_AT
NOW = T0 + timedelta(minutes=1)
CLAIMED_UNTIL = NOW + timedelta(minutes=5)
SENT_AT = NOW + timedelta(seconds=7, microseconds=250)

SENDER = "host-a:101:aaa111"
"""The sender whose stopped pump left the journal entries being settled."""
OTHER = "host-b:202:bbb222"
"""Another sender, which took a reply over once the first one's claim expired."""

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals and flock")


def _key(number: int) -> str:
    return outbox_reply(number).message_id


def _entry(number: int, owner: str = SENDER, sent_at: datetime = SENT_AT) -> SentEntry:
    return SentEntry(_key(number), owner, sent_at)


def _claim(
    store: SqliteRepository, number: int, owner: str, until: datetime = CLAIMED_UNTIL
) -> None:
    """Claim reply ``number`` for ``owner`` until ``until`` (it must succeed)."""
    assert store.claim_reply(_key(number), owner, NOW, until) is not None


def _status(store: SqliteRepository, number: int) -> tuple[ReplyStatus, str, datetime | None]:
    entry = store.outbox_entry(_key(number))
    assert entry is not None
    return entry.status, entry.claimed_by, entry.sent_at


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRepository]:
    """A SQLite store with five pending replies in its outbox, none claimed."""
    with five_pending_replies(tmp_path) as repository:
        yield repository


# -- DirectorySentJournal ------------------------------------------------------------------


def test_a_closed_journal_is_read_back_by_another_and_an_open_one_is_not(
    tmp_path: Path,
) -> None:
    """What a pump's worker wrote is what the next pump reads once that pump has closed its
    journal: every entry, in order, with its owner and its aware ``sent_at`` (else a reply
    the server accepted would be sent again, or recorded under the wrong sender or time).
    While the writing pump is still open nothing of its journal is read: it records its
    replies itself and may still write (reading it would record SENT under a live pump, and
    a later forget() would delete entries it appends after)."""
    folder = tmp_path / "journal"
    writer = DirectorySentJournal(folder, "host-a:1:aaa")
    paris = timezone(timedelta(hours=2))
    written = [
        SentEntry("<one@example.com>", "host-a:1:aaa", SENT_AT),
        SentEntry("<two@example.com>", "host-a:1:bbb", SENT_AT + timedelta(seconds=1)),
    ]
    later = [
        SentEntry("<three@example.com>", "host-a:1:aaa", datetime(2026, 5, 1, 12, tzinfo=paris))
    ]
    writer.add(written)
    writer.add(later)

    reader = DirectorySentJournal(folder, "host-b:2:ccc")
    reader.add([SentEntry("<mine@example.com>", "host-b:2:ccc", SENT_AT)])
    assert reader.leftovers() == []  # the writer still holds its lock

    writer.close(recorded=False)
    read = reader.leftovers()

    assert read == [*written, *later]
    assert [entry.sent_at.utcoffset() for entry in read] == [
        timedelta(0),
        timedelta(0),
        timedelta(hours=2),
    ]
    assert "<mine@example.com>" not in {entry.reply_message_id for entry in read}
    reader.close(recorded=True)


_KILLED_PUMP = """
import os, signal
from datetime import datetime
from asm_email_rules.adapters.journal_files import DirectorySentJournal
from asm_email_rules.model import SentEntry

folder, owner, at = {folder!r}, {owner!r}, {at!r}
journal = DirectorySentJournal(folder, owner)
journal.add([SentEntry(key, owner, datetime.fromisoformat(at)) for key in {keys!r}])
os.kill(os.getpid(), signal.SIGKILL)  # the server's 250 is in the journal; never closed
"""


@posix_only
def test_a_pump_killed_with_sigkill_leaves_a_journal_the_next_pump_reads(
    tmp_path: Path,
) -> None:
    """A pump whose process is killed outright never closes its journal; the kernel lets go
    of its lock all the same, so the next pump reads what it kept (else every reply such a
    crash had sent would be sent again once its claim expired)."""
    folder = tmp_path / "journal"
    keys = ["<killed-1@example.com>", "<killed-2@example.com>"]
    script = textwrap.dedent(
        _KILLED_PUMP.format(folder=str(folder), owner=SENDER, at=SENT_AT.isoformat(), keys=keys)
    )

    child = subprocess.run([sys.executable, "-c", script], check=False)

    assert child.returncode == -signal.SIGKILL
    assert len(list(folder.glob("*.sent"))) == 1  # the file is left behind, unclosed
    assert DirectorySentJournal(folder, OTHER).leftovers() == [
        SentEntry(key, SENDER, SENT_AT) for key in keys
    ]


def test_close_deletes_the_file_only_when_everything_was_recorded(tmp_path: Path) -> None:
    """A pump that recorded all it sent leaves nothing behind (else the folder grows with
    every pump); one that did not leaves its entries for the next pump (else a reply the
    server accepted is sent again); a pump that sent nothing makes no file nor folder."""
    folder = tmp_path / "journal"
    idle = DirectorySentJournal(folder, "host:1:idle")
    idle.add([])
    idle.close(recorded=False)
    idle.close(recorded=True)
    assert not folder.exists()

    recorded = DirectorySentJournal(folder, "host:1:aaa")
    recorded.add([SentEntry("<a@example.com>", "host:1:aaa", SENT_AT)])
    assert recorded.path.exists()
    recorded.close(recorded=True)
    assert not recorded.path.exists()

    unrecorded = DirectorySentJournal(folder, "host:1:bbb")
    unrecorded.add([SentEntry("<b@example.com>", "host:1:bbb", SENT_AT)])
    unrecorded.close(recorded=False)
    assert unrecorded.path.exists()

    assert DirectorySentJournal(folder, "host:2:ccc").leftovers() == [
        SentEntry("<b@example.com>", "host:1:bbb", SENT_AT)
    ]


def test_a_cut_line_and_garbage_lines_are_skipped(tmp_path: Path) -> None:
    """A line cut short by a power loss, or any line that is not an entry, is skipped: the
    good lines around it are still read, and the reading does not fail (else one bad line
    would leave every reply of the journal to be sent again, or stop the poller)."""
    folder = tmp_path / "journal"
    writer = DirectorySentJournal(folder, "host:1:aaa")
    first = SentEntry("<first@example.com>", "host:1:aaa", SENT_AT)
    second = SentEntry("<second@example.com>", "host:1:aaa", SENT_AT + timedelta(seconds=1))
    writer.add([first])
    with writer.path.open("a", encoding="utf-8") as raw:
        raw.write("garbage\n")
        raw.write("\n")
        raw.write("not a date\thost:1:aaa\t<bad-date@example.com>\n")
        raw.write("2026-05-01T09:01:00\thost:1:aaa\t<naive@example.com>\n")  # no zone
        raw.write(f"{SENT_AT.isoformat()}\t\t<no-owner@example.com>\n")
        raw.write(f"{SENT_AT.isoformat()}\thost:1:aaa\t\n")  # no Message-ID
        raw.write(f"{SENT_AT.isoformat()}\thost:1:aaa\t<x@example.com>\textra\n")
    writer.add([second])
    with writer.path.open("ab") as raw:
        raw.write(b"\xff\xfe not utf-8\n")
        raw.write(f"{SENT_AT.isoformat()}\thost:1:aaa\t<cut@exa".encode())  # power loss
    writer.close(recorded=False)

    assert DirectorySentJournal(folder, "host:2:bbb").leftovers() == [first, second]


@pytest.mark.parametrize(
    "mark",
    ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
    ids=["VT", "FF", "FS", "GS", "RS", "NEL", "LS", "PS"],
)
def test_a_message_id_with_a_unicode_line_boundary_is_read_back_as_written(
    tmp_path: Path, mark: str
) -> None:
    """Only a line feed ends a journal line: a Message-ID holding a form feed, U+2028 or any
    other character ``str.splitlines`` breaks on is written and read back intact (else its
    entry would be lost, or read as another Message-ID, and the reply sent again)."""
    folder = tmp_path / "journal"
    writer = DirectorySentJournal(folder, "host:1:aaa")
    written = [
        SentEntry(f"<odd{mark}id@example.com>", "host:1:aaa", SENT_AT),
        SentEntry("<after@example.com>", "host:1:aaa", SENT_AT),
    ]
    writer.add(written)
    writer.close(recorded=False)

    assert DirectorySentJournal(folder, "host:2:bbb").leftovers() == written


def test_an_entry_with_a_tab_or_line_break_is_not_written(tmp_path: Path) -> None:
    """A Message-ID or owner holding a tab or a line break would split or shift a line (and
    could forge one, recording SENT a reply never accepted); such an entry is dropped, the
    others of the same write are kept (else one odd Message-ID would lose the whole batch)."""
    folder = tmp_path / "journal"
    writer = DirectorySentJournal(folder, "host:1:aaa")
    good = [
        SentEntry("<good-1@example.com>", "host:1:aaa", SENT_AT),
        SentEntry("<good-2@example.com>", "host:1:aaa", SENT_AT),
    ]
    writer.add(
        [
            good[0],
            SentEntry("<tab\t@example.com>", "host:1:aaa", SENT_AT),
            SentEntry(
                f"<x@y>\n{SENT_AT.isoformat()}\thost:1:aaa\t<forged@y>", "host:1:aaa", SENT_AT
            ),
            SentEntry("<cr\r@example.com>", "host:1:aaa", SENT_AT),
            SentEntry("<owner-cr@example.com>", "host:1:a\raa", SENT_AT),
            SentEntry("<owner-lf@example.com>", "host:1:a\naa", SENT_AT),
            SentEntry("<owner-tab@example.com>", "host:1\taaa", SENT_AT),
            good[1],
        ]
    )
    writer.close(recorded=False)

    assert writer.path.read_bytes().count(b"\n") == 2
    assert DirectorySentJournal(folder, "host:2:bbb").leftovers() == good


def test_forget_deletes_exactly_the_files_the_last_leftovers_read(tmp_path: Path) -> None:
    """Once the store has recorded what leftovers() returned, those files go (else the folder
    grows and every pump reads them again); a running pump's file stays (it still appends to
    it: what it appends after would be lost to a crash), and so does a file the reading did
    not see (its entries are not recorded yet), and the reader's own."""
    folder = tmp_path / "journal"
    stopped_a = DirectorySentJournal(folder, "a:1:a")
    stopped_a.add([SentEntry("<a1@example.com>", "a:1:a", SENT_AT)])
    stopped_b = DirectorySentJournal(folder, "b:1:b")
    stopped_b.add([SentEntry("<b1@example.com>", "b:1:b", SENT_AT)])
    for journal in (stopped_a, stopped_b):
        journal.close(recorded=False)
    running = DirectorySentJournal(folder, "c:1:c")
    running.add([SentEntry("<c1@example.com>", "c:1:c", SENT_AT)])

    reader = DirectorySentJournal(folder, "r:1:r")
    reader.add([SentEntry("<r1@example.com>", "r:1:r", SENT_AT)])
    assert {e.reply_message_id for e in reader.leftovers()} == {
        "<a1@example.com>",
        "<b1@example.com>",
    }
    unread = DirectorySentJournal(folder, "d:1:d")  # stopped after the reading
    unread.add([SentEntry("<d1@example.com>", "d:1:d", SENT_AT)])
    unread.close(recorded=False)
    reader.forget()

    assert not stopped_a.path.exists()
    assert not stopped_b.path.exists()
    assert running.path.exists()
    assert unread.path.exists()
    assert reader.path.exists()

    reader.forget()  # nothing read since: nothing more goes
    assert unread.path.exists()
    running.add([SentEntry("<c2@example.com>", "c:1:c", SENT_AT)])
    running.close(recorded=False)
    assert {e.reply_message_id for e in DirectorySentJournal(folder, "s:1:s").leftovers()} == {
        "<c1@example.com>",
        "<c2@example.com>",
        "<d1@example.com>",
    }  # the reader is running still: its own entry is not read
    reader.close(recorded=True)


def test_a_folder_that_cannot_be_made_raises_store_unavailable(tmp_path: Path) -> None:
    """A journal that cannot be written is the store's failure (StoreUnavailableError, which
    the pump and the service handle), not a bare OSError that would end the poller."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    journal = DirectorySentJournal(blocker / "journal", "host:1:aaa")
    with pytest.raises(StoreUnavailableError, match="sent journal"):
        journal.add([SentEntry("<a@example.com>", "host:1:aaa", SENT_AT)])
    journal.close(recorded=False)


# -- settle --------------------------------------------------------------------------------


def test_settle_records_a_stopped_senders_reply_under_its_live_claim(
    store: SqliteRepository,
) -> None:
    """A sender that stopped after the server's 250, its claim still live: its reply is
    recorded SENT at the moment the server accepted it, without waiting for the claim to
    expire (else a poller restarted at once would hold the reply until then, and the record
    would carry the wrong time)."""
    _claim(store, 1, SENDER)

    assert settle([_entry(1)], store) == 1

    assert _status(store, 1) == (ReplyStatus.SENT, "", SENT_AT)


def test_settle_records_a_reply_whose_expired_claim_nobody_took_over(
    store: SqliteRepository,
) -> None:
    """A claim that expired but is still the entry owner's (nobody claimed the reply since):
    the reply is recorded SENT (else the next claim would send it a second time)."""
    _claim(store, 1, SENDER, until=NOW)  # over at NOW already

    assert settle([_entry(1)], store) == 1

    assert _status(store, 1) == (ReplyStatus.SENT, "", SENT_AT)


def test_settle_leaves_alone_replies_recorded_taken_over_or_unknown(
    store: SqliteRepository,
) -> None:
    """An entry whose reply is already SENT, is claimed by another sender now, is not claimed
    at all, or is not in the store, is not the entry owner's to record: nothing in the store
    changes (else a second sent_at, or a claim stolen from a sender about to send) and none
    counts as recorded."""
    first_sent = NOW + timedelta(seconds=2)
    _claim(store, 1, SENDER)
    assert store.finish_reply(_key(1), SENDER, ReplyStatus.SENT, first_sent)
    _claim(store, 2, OTHER)  # taken over after the sender's claim expired
    numbers = (1, 2, 3, 4, 5)
    before = [store.outbox_entry(_key(n)) for n in numbers]
    entries = [_entry(1), _entry(2), _entry(3), SentEntry("<unknown@example.com>", SENDER, NOW)]

    assert settle(entries, store) == 0

    assert [store.outbox_entry(_key(n)) for n in numbers] == before
    assert _status(store, 1) == (ReplyStatus.SENT, "", first_sent)
    assert _status(store, 2) == (ReplyStatus.PENDING, OTHER, None)
    assert _status(store, 3) == (ReplyStatus.PENDING, "", None)
    assert store.outbox_entry("<unknown@example.com>") is None


def test_a_reply_recorded_by_settle_is_never_sent_again(store: SqliteRepository) -> None:
    """The point of the journal: a reply the server accepted before its sender stopped is not
    claimed (so not sent) again, not even after the stopped sender's claim would have
    expired."""
    _claim(store, 1, SENDER)
    assert settle([_entry(1)], store) == 1

    much_later = CLAIMED_UNTIL + timedelta(hours=1)
    assert store.claim_reply(_key(1), OTHER, much_later, much_later + timedelta(minutes=5)) is None
    assert _key(1) not in {e.reply_message_id for e in store.due_replies(much_later)}


def test_a_running_pumps_journal_is_kept_until_it_stops_then_settled_and_deleted(
    store: SqliteRepository, tmp_path: Path
) -> None:
    """Another poller settling while a pump runs reads and deletes nothing of its journal:
    the pump goes on appending to it, and what it appends after (then stops before recording)
    is still read and recorded, not sent a second time; once settled, the stopped pump's
    journal is deleted so no pump reads it again."""
    folder = tmp_path / "journal"
    live = DirectorySentJournal(folder, SENDER)
    _claim(store, 1, SENDER)
    _claim(store, 2, SENDER)
    live.add([_entry(1)])
    assert store.finish_reply(_key(1), SENDER, ReplyStatus.SENT, SENT_AT)

    other = DirectorySentJournal(folder, OTHER)
    assert settle(other.leftovers(), store) == 0
    other.forget()
    assert live.path.exists()

    live.add([_entry(2)])  # accepted; the pump stops before recording it
    live.close(recorded=False)
    reader = DirectorySentJournal(folder, OTHER)
    assert settle(reader.leftovers(), store) == 1  # entry 1 was recorded by its pump
    reader.forget()

    assert _status(store, 2) == (ReplyStatus.SENT, "", SENT_AT)
    later = CLAIMED_UNTIL + timedelta(seconds=1)
    assert store.claim_reply(_key(2), OTHER, later, later + timedelta(minutes=5)) is None
    assert not live.path.exists()
    assert DirectorySentJournal(folder, OTHER).leftovers() == []


# -- the SQLite store's journal ------------------------------------------------------------


def test_only_a_file_store_offers_a_journal_beside_its_file(tmp_path: Path) -> None:
    """A file store's pumps journal in ``<path>.sent`` (where every poller of that store
    looks: a journal elsewhere would never be settled); ``":memory:"`` offers none (it would
    not outlive a crash either), so its pumps record each reply as before."""
    with SqliteRepository(":memory:") as memory:
        assert memory.sent_journal("x") is None

    path = tmp_path / "store.sqlite3"
    with SqliteRepository(path) as repository:
        journal = repository.sent_journal("x")
    assert isinstance(journal, DirectorySentJournal)
    assert isinstance(journal, SentJournal)
    assert journal.folder == Path(f"{path}.sent")
    journal.add([SentEntry("<a@example.com>", "x", SENT_AT)])
    assert journal.path.parent == Path(f"{path}.sent")
    assert journal.path.exists()
    journal.close(recorded=True)


def test_a_journal_being_made_is_never_taken_for_a_stopped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another pump reads the folder at the very moment a journal's file is made, before the
    new pump holds its lock: an empty file whose lock is free. Taken for a stopped pump's and
    deleted, the new pump's entries would go to a file nobody reads, and a crash would send
    its replies again. The file shows under its name only once locked."""
    folder = tmp_path / "store.sqlite3.sent"
    reader, writer = DirectorySentJournal(folder, "reader"), DirectorySentJournal(folder, SENDER)
    real_flock = fcntl.flock
    looked: list[list[SentEntry]] = []

    def look_first(fd: int, operation: int) -> None:
        if not looked:
            looked.append([])  # set first: the reader's own flock comes through here too
            looked[0] = reader.leftovers()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", look_first)
    writer.add([_entry(1)])
    monkeypatch.undo()
    assert looked == [[]]
    reader.forget()
    assert writer.path.exists()
    writer.add([_entry(2)])
    writer.close(recorded=False)
    assert [e.reply_message_id for e in reader.leftovers()] == [_key(1), _key(2)]


def test_a_file_that_cannot_be_read_is_passed_over_and_the_rest_still_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Something in the folder that cannot be read as a journal (here a folder named like
    one; another user's file does the same) is logged and left: the other stopped journals
    are still read, and the journal still works."""
    folder = tmp_path / "store.sqlite3.sent"
    writer = DirectorySentJournal(folder, SENDER)
    writer.add([_entry(1)])
    writer.close(recorded=False)
    (folder / "0-odd.sent").mkdir()
    reader = DirectorySentJournal(folder, OTHER)
    assert [e.reply_message_id for e in reader.leftovers()] == [_key(1)]
    assert any("cannot be read" in r.getMessage() for r in caplog.records)
    reader.forget()
    assert sorted(p.name for p in folder.iterdir()) == ["0-odd.sent"]


def test_a_journal_left_half_made_is_cleared_and_one_being_made_is_not(tmp_path: Path) -> None:
    """A pump killed between making its file and naming it leaves an empty ``.opening``
    file; a later pump's forget() deletes it once it is a minute old, so such files do not
    pile up. One just made (its pump is about to lock it), or whose pump holds its lock, is
    left alone: taking its lock first would make that pump's journal fail."""
    folder = tmp_path / "store.sqlite3.sent"
    folder.mkdir()
    dead = folder / "4242-dead.opening"
    dead.touch()
    long_ago = time.time() - 2 * journal_files.ABANDONED_SECONDS
    os.utime(dead, (long_ago, long_ago))
    (folder / "4244-new.opening").touch()  # just made: its pump is about to lock it
    live = folder / "4343-live.opening"
    with live.open("wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        reader = DirectorySentJournal(folder, OTHER)
        assert reader.leftovers() == []
        reader.forget()
        assert sorted(p.name for p in folder.iterdir()) == [
            "4244-new.opening",
            "4343-live.opening",
        ]
