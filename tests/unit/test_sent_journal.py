"""The sent journal: what the SMTP server accepted is kept on disk at once, read back by the
next pump, and recorded SENT for senders that will not record it themselves.

DESIGN 4, "Replies are an outbox": "The only duplicate left is a crash between the server's 250
and our commit". The journal narrows that window: a reply the server accepted and the journal
kept is recorded SENT by the next pump (:func:`settle`) instead of being sent a second time,
while a reply a live sender may still record is left to it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.errors import StoreUnavailableError
from asm_email_rules.model import OutgoingEmail, ReplyStatus, SentEntry
from asm_email_rules.sent_journal import DirectorySentJournal, owner_gone, settle

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)
CLAIMED_UNTIL = NOW + timedelta(minutes=5)
SENT_AT = NOW + timedelta(seconds=7, microseconds=250)

OTHER_HOST = "elsewhere.invalid:4242:abc123"
"""A sender on another host: whether it is alive cannot be told, so it counts as alive."""
ME = f"{socket.gethostname()}:{os.getpid()}:mine00"
"""The sender running the settle (its earlier, closed pumps left their journals)."""

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX process signals")


def _reply(number: int) -> OutgoingEmail:
    return OutgoingEmail(
        to=f"user{number}@example.com",
        subject=f"Call {number} has been logged [CALL#{number}]",
        body="Thank you.",
        sender="desk@example.com",
        message_id=f"<asm.call-{number}.journal{number}@example.com>",
    )


def _key(number: int) -> str:
    return _reply(number).message_id


def _entry(number: int, owner: str, sent_at: datetime = SENT_AT) -> SentEntry:
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


def _gone_owner() -> str:
    """The owner name of a sender on this host whose process has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:abc123"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteRepository]:
    """A SQLite store with five pending replies in its outbox, none claimed."""
    with SqliteRepository(tmp_path / "store.sqlite3") as repository:
        for number in range(1, 6):
            repository.record_processed(
                "box", f"<m{number}@example.com>", f"s{number}", "{}", _reply(number), T0
            )
        yield repository


# -- DirectorySentJournal ------------------------------------------------------------------


def test_entries_added_by_one_journal_are_read_back_by_another(tmp_path: Path) -> None:
    """What a pump's worker wrote is what the next pump reads: every entry, in order, with
    its owner and its aware ``sent_at``; a journal never lists its own entries (they are its
    own pump's to record)."""
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
    writer.close(recorded=False)

    reader = DirectorySentJournal(folder, "host-b:2:ccc")
    reader.add([SentEntry("<mine@example.com>", "host-b:2:ccc", SENT_AT)])
    read = reader.leftovers()

    assert read == [*written, *later]
    assert [entry.sent_at.utcoffset() for entry in read] == [
        timedelta(0),
        timedelta(0),
        timedelta(hours=2),
    ]
    assert "<mine@example.com>" not in {entry.reply_message_id for entry in read}
    reader.close(recorded=True)


def test_close_deletes_the_file_only_when_everything_was_recorded(tmp_path: Path) -> None:
    """A pump that recorded all it sent leaves nothing behind; one that did not leaves its
    entries for the next pump; a pump that sent nothing makes no file nor folder."""
    folder = tmp_path / "journal"
    idle = DirectorySentJournal(folder, "host:1:idle")
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
    good lines around it are still read (and the reading does not fail)."""
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
        raw.write(f"{SENT_AT.isoformat()}\thost:1:aaa\t<x@example.com>\textra\n")
    writer.add([second])
    with writer.path.open("ab") as raw:
        raw.write(b"\xff\xfe not utf-8\n")
        raw.write(f"{SENT_AT.isoformat()}\thost:1:aaa\t<cut@exa".encode())  # power loss
    writer.close(recorded=False)

    assert DirectorySentJournal(folder, "host:2:bbb").leftovers() == [first, second]


def test_an_entry_with_a_tab_or_line_break_is_not_written(tmp_path: Path) -> None:
    """A Message-ID or owner holding a tab or a line break would split or shift a line (and
    could forge one); such an entry is dropped, the others of the same write are kept."""
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
            SentEntry("<cr@example.com>", "host:1:a\raa", SENT_AT),
            SentEntry("<owner-tab@example.com>", "host:1\taaa", SENT_AT),
            good[1],
        ]
    )
    writer.close(recorded=False)

    assert writer.path.read_text(encoding="utf-8").count("\n") == 2
    assert DirectorySentJournal(folder, "host:2:bbb").leftovers() == good


def test_forget_deletes_only_files_holding_nothing_but_those_owners(tmp_path: Path) -> None:
    """Once the store has recorded an owner's entries, its files go; a file that also holds
    another owner's entries stays (they may still need recording), and so does a file the
    last leftovers() did not read."""
    folder = tmp_path / "journal"
    only_x = DirectorySentJournal(folder, "x:1:x")
    only_x.add([SentEntry("<x1@example.com>", "x:1:x", SENT_AT)])
    only_y = DirectorySentJournal(folder, "y:1:y")
    only_y.add([SentEntry("<y1@example.com>", "y:1:y", SENT_AT)])
    mixed = DirectorySentJournal(folder, "x:1:x")
    mixed.add(
        [
            SentEntry("<x2@example.com>", "x:1:x", SENT_AT),
            SentEntry("<z1@example.com>", "z:1:z", SENT_AT),
        ]
    )
    for journal in (only_x, only_y, mixed):
        journal.close(recorded=False)

    reader = DirectorySentJournal(folder, "r:1:r")
    assert len(reader.leftovers()) == 4
    unread = DirectorySentJournal(folder, "x:1:x")  # written after the reading
    unread.add([SentEntry("<x3@example.com>", "x:1:x", SENT_AT)])
    unread.close(recorded=False)
    reader.forget({"x:1:x", "y:1:y"})

    assert not only_x.path.exists()
    assert not only_y.path.exists()
    assert mixed.path.exists()
    assert unread.path.exists()
    assert {e.reply_message_id for e in DirectorySentJournal(folder, "r:2:r").leftovers()} == {
        "<x2@example.com>",
        "<z1@example.com>",
        "<x3@example.com>",
    }


def test_a_folder_that_cannot_be_made_raises_store_unavailable(tmp_path: Path) -> None:
    """A journal that cannot be written is the store's failure (StoreUnavailableError, which
    the pump and the service handle), not a bare OSError that would end the poller."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    journal = DirectorySentJournal(blocker / "journal", "host:1:aaa")
    with pytest.raises(StoreUnavailableError, match="sent journal"):
        journal.add([SentEntry("<a@example.com>", "host:1:aaa", SENT_AT)])
    journal.close(recorded=False)


# -- owner_gone ----------------------------------------------------------------------------


@posix_only
def test_owner_gone_only_for_an_exited_process_of_this_host() -> None:
    """Only a sender known to be dead has its journal recorded at once: this process, a
    sender on another host, or an owner not named host:pid:token might still record (and a
    wrong True would record SENT a reply that was never accepted)."""
    here = socket.gethostname()
    assert not owner_gone(f"{here}:{os.getpid()}:abc123")
    assert not owner_gone(f"another-{here}:{os.getpid() + 1_000_000}:abc123")
    assert not owner_gone("poller-1")
    assert not owner_gone(f"{here}:not-a-pid:abc123")
    assert not owner_gone(f"{here}::abc123")
    assert owner_gone(_gone_owner())


# -- settle --------------------------------------------------------------------------------


@posix_only
def test_settle_records_sent_what_a_gone_sender_left(store: SqliteRepository) -> None:
    """A sender that crashed after the server's 250, with its claim still live: its reply is
    recorded SENT at the moment the server accepted it, and its journal may go."""
    gone = _gone_owner()
    _claim(store, 1, gone)

    settled = settle([_entry(1, gone)], store, owner=ME, now=NOW)

    assert _status(store, 1) == (ReplyStatus.SENT, "", SENT_AT)
    assert settled.recorded == 1
    assert settled.done == {gone}
    assert settled.waiting == {}


def test_settle_leaves_a_live_senders_reply_to_it(store: SqliteRepository) -> None:
    """A sender that may be alive (another host) and still holds its claim records the reply
    itself: settle changes nothing, the entry waits, and its journal is kept."""
    _claim(store, 1, OTHER_HOST)

    settled = settle([_entry(1, OTHER_HOST)], store, owner=ME, now=NOW)

    assert _status(store, 1) == (ReplyStatus.PENDING, OTHER_HOST, None)
    assert settled.recorded == 0
    assert settled.waiting == {_key(1): _entry(1, OTHER_HOST)}
    assert OTHER_HOST not in settled.done


def test_settle_records_a_reply_whose_claim_expired(store: SqliteRepository) -> None:
    """Once a sender's claim has expired another sender may claim the reply and send it
    again; settle records it SENT first, whoever the sender was."""
    _claim(store, 1, OTHER_HOST)
    later = CLAIMED_UNTIL + timedelta(seconds=1)

    settled = settle([_entry(1, OTHER_HOST)], store, owner=ME, now=later)

    assert _status(store, 1) == (ReplyStatus.SENT, "", SENT_AT)
    assert settled.recorded == 1
    assert settled.done == {OTHER_HOST}
    assert settled.waiting == {}


def test_settle_records_an_earlier_pump_of_the_same_sender(store: SqliteRepository) -> None:
    """An earlier, closed pump of this very sender left entries under its still-live claim:
    nobody else will record them, so settle does, without waiting for the claim to expire."""
    _claim(store, 1, ME)

    settled = settle([_entry(1, ME)], store, owner=ME, now=NOW)

    assert _status(store, 1) == (ReplyStatus.SENT, "", SENT_AT)
    assert settled.recorded == 1
    assert settled.done == {ME}


@posix_only
def test_settle_leaves_alone_replies_recorded_or_taken_over(store: SqliteRepository) -> None:
    """An entry whose reply is already SENT, or is claimed by another sender now, is not the
    entry owner's to record: nothing in the store changes (no second sent_at, no stolen
    claim), and the owner is done with."""
    gone = _gone_owner()
    _claim(store, 1, gone)
    first_sent = NOW + timedelta(seconds=2)
    assert store.finish_reply(_key(1), gone, ReplyStatus.SENT, first_sent)
    _claim(store, 2, OTHER_HOST)  # taken over after the gone sender's claim expired
    before = [store.outbox_entry(_key(n)) for n in (1, 2)]

    settled = settle([_entry(1, gone), _entry(2, gone)], store, owner=ME, now=NOW)

    assert [store.outbox_entry(_key(n)) for n in (1, 2)] == before
    assert _status(store, 1) == (ReplyStatus.SENT, "", first_sent)
    assert _status(store, 2) == (ReplyStatus.PENDING, OTHER_HOST, None)
    assert settled.recorded == 0
    assert settled.waiting == {}
    assert settled.done == {gone}


@posix_only
def test_a_reply_recorded_by_settle_is_never_sent_again(store: SqliteRepository) -> None:
    """The point of the journal: a reply the server accepted before its sender crashed is not
    claimed (so not sent) again, not even after the dead sender's claim would have expired."""
    gone = _gone_owner()
    _claim(store, 1, gone)
    settle([_entry(1, gone)], store, owner=ME, now=NOW)

    much_later = CLAIMED_UNTIL + timedelta(hours=1)
    assert (
        store.claim_reply(_key(1), OTHER_HOST, much_later, much_later + timedelta(minutes=5))
        is None
    )
    assert _key(1) not in {e.reply_message_id for e in store.due_replies(much_later)}
