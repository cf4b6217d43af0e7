"""MaildirMailbox on a temporary folder: deletes on close, Maildir++ quarantine with reason."""

from __future__ import annotations

import mailbox
import os
import random
import tracemalloc
from collections.abc import Callable, Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from asm_email_rules.adapters import maildir
from asm_email_rules.adapters.maildir import (
    LISTING_AHEAD,
    QUARANTINE_HEADER,
    MaildirMailbox,
    annotate,
)
from asm_email_rules.errors import MailboxError
from asm_email_rules.protocols import Mailbox

pytestmark = pytest.mark.integration


def test_list_fetch_delete_quarantine_then_reopen(
    tmp_path: Path, make_message: Callable[..., bytes]
) -> None:
    sent = [make_message(n) for n in (1, 2, 3)]
    with MaildirMailbox(tmp_path / "Maildir") as box:
        assert isinstance(box, Mailbox)
        keys = [box.add(raw) for raw in sent]
        assert list(box.list_keys()) == keys
        assert [box.fetch(key) for key in keys] == sent
        box.delete(keys[0])
        box.quarantine(keys[1], "loop detected:\nsame Message-ID")
        assert list(box.list_keys()) == [keys[2]]

    reopened = MaildirMailbox(tmp_path / "Maildir")
    assert [reopened.fetch(key) for key in reopened.list_keys()] == [sent[2]]

    folder = tmp_path / "Maildir" / ".Quarantine"
    assert (folder / "maildirfolder").exists()  # a Maildir++ sub-folder mail clients show
    held = mailbox.Maildir(folder, factory=None)
    [quarantined] = [held.get_bytes(key) for key in held.keys()]  # noqa: SIM118
    assert quarantined.endswith(sent[1])
    msg = BytesParser(policy=policy.default).parsebytes(quarantined)
    assert msg[QUARANTINE_HEADER] == "loop detected: same Message-ID"


def test_new_and_cur_are_both_listed_in_delivery_order(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "cur" / "1700000002.M1P1.host:2,S").write_bytes(b"Subject: b\n\nsecond\n")
    (root / "new" / "1700000001.M1P1.host").write_bytes(b"Subject: a\n\nfirst\n")
    (root / "tmp" / "1700000000.M1P1.host").write_bytes(b"Subject: t\n\nbeing delivered\n")
    box = MaildirMailbox(root)
    assert [box.fetch(key) for key in box.list_keys()] == [
        b"Subject: a\n\nfirst\n",
        b"Subject: b\n\nsecond\n",
    ]


def test_delete_is_idempotent_and_unknown_fetch_is_an_error(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "Maildir")
    key = box.add(b"Subject: x\n\nbody\n")
    box.delete(key)
    box.delete(key)
    with pytest.raises(MailboxError, match="no message"):
        box.fetch(key)
    with pytest.raises(MailboxError, match="no message"):
        box.quarantine(key, "gone")


def test_quarantine_keeps_lf_messages_in_lf(tmp_path: Path) -> None:
    raw = b"Subject: lf\n\nbody\n"
    assert annotate(raw, "why") == b"X-ASM-Quarantine-Reason: why\n" + raw
    assert annotate(raw.replace(b"\n", b"\r\n"), "why").startswith(
        b"X-ASM-Quarantine-Reason: why\r\nSubject"
    )


def test_unusable_path_is_a_mailbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MailboxError, match="cannot open"):
        MaildirMailbox(blocker / "Maildir")


def test_delete_hides_at_once_and_unlinks_on_close_abort_keeps_the_message(
    tmp_path: Path,
) -> None:
    # The polling service makes its store durable between the two (docs/transport.md).
    root = tmp_path / "Maildir"
    box = MaildirMailbox(root)
    kept, gone = box.add(b"Subject: kept\n\n1\n"), box.add(b"Subject: gone\n\n2\n")
    assert list(box.list_keys()) == [kept, gone]
    box.delete(gone)
    assert list(box.list_keys()) == [kept]
    assert len(list((root / "new").iterdir())) == 2  # the file is still there
    box.close()
    assert [p.read_bytes() for p in (root / "new").iterdir()] == [b"Subject: kept\n\n1\n"]

    again = MaildirMailbox(root)
    again.delete(next(again.list_keys()))
    again.abort()
    assert [MaildirMailbox(root).fetch(key) for key in MaildirMailbox(root).list_keys()] == [
        b"Subject: kept\n\n1\n"
    ]


def test_mail_delivered_in_the_same_second_is_read_in_delivery_order(tmp_path: Path) -> None:
    # Other programs write the microsecond field unpadded: M5 came before M40000, which sorts
    # after it as text. The counter (Q) decides within the same microsecond.
    root = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "new" / "1700000000.M40000P7Q1.host").write_bytes(b"Subject: 3\n\nthird\n")
    (root / "new" / "1700000000.M5P7Q3.host").write_bytes(b"Subject: 2\n\nsecond\n")
    (root / "new" / "1700000000.M5P7Q2.host").write_bytes(b"Subject: 1\n\nfirst\n")
    box = MaildirMailbox(root)
    assert [box.fetch(key).split(b"\n")[0] for key in box.list_keys()] == [
        b"Subject: 1",
        b"Subject: 2",
        b"Subject: 3",
    ]


def test_names_we_write_have_a_zero_padded_microsecond_field(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "Maildir")
    keys = [box.add(f"Subject: {n}\n\nbody\n".encode()) for n in range(30)]
    for key in keys:
        micro = key.split(".")[1]
        assert micro.startswith("M"), key
        assert len(micro.split("P")[0]) == len("M000000"), key
    assert sorted(keys) == keys  # text order is delivery order
    assert list(box.list_keys()) == keys


def test_a_maildir_with_only_new_is_completed_and_read(tmp_path: Path) -> None:
    # What a mail server or a hand-made folder often leaves: new/ and nothing else.
    root = tmp_path / "Maildir"
    (root / "new").mkdir(parents=True)
    (root / "new" / "1700000001.M1P1.host").write_bytes(b"Subject: a\n\nfirst\n")
    box = MaildirMailbox(root)
    assert [box.fetch(key) for key in box.list_keys()] == [b"Subject: a\n\nfirst\n"]
    assert (root / "cur").is_dir()
    assert (root / "tmp").is_dir()


# -- the polling service's listing: a session's worth of keys (issue 14) ----------------------


def _deliver_names(root: Path, names: list[str]) -> None:
    """Tiny message files under ``root`` (``sub/name``), as a mail server leaves them."""
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(b"Subject: x\n\nx\n")


def _mixed_names(rng: random.Random, count: int, seconds: int = 5) -> list[str]:
    """Delivery names of several writers over ``seconds`` seconds, in random order: an
    unpadded or padded microsecond field (often the same within a second), plain digits or
    no field at all, a Q counter or none, in ``new`` or (with flags) in ``cur``."""
    names = []
    for n in range(count):
        second = 1_700_000_000 + rng.randrange(seconds)
        micro = rng.choice([rng.randrange(1_000_000), rng.randrange(4), 40, 400000])
        field = rng.choice([f"M{micro}", f"M{micro:06d}", f"{micro}", f"M{micro}P{n}", ""])
        counter = f"Q{rng.randrange(9)}" if rng.random() < 0.5 else ""
        key = f"{second}.{field}{counter}.host{n}"
        names.append(f"cur/{key}:2,S" if rng.random() < 0.4 else f"new/{key}")
    rng.shuffle(names)
    return names


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_limited_listing_is_the_oldest_keys_of_the_full_one_but_the_skipped(
    tmp_path: Path, seed: int
) -> None:
    # The polling service asks for its session's worth (limit) without the keys it handled
    # earlier in the pass (skip): the same keys, in the same delivery order, as the full
    # listing with those left out and cut at the limit.
    rng = random.Random(seed)
    box = _limited_listings_agree(
        tmp_path / "Maildir", _mixed_names(rng, 80), rng, 25, (1, 2, 7, 54, 55, 56, 200)
    )
    assert list(box.list_keys(limit=0)) == []


def _limited_listings_agree(
    root: Path, names: list[str], rng: random.Random, skipped: int, limits: tuple[int, ...]
) -> MaildirMailbox:
    """Deliver ``names``; assert that each limited listing, with ``skipped`` random keys
    skipped and without, is the full listing (those left out) cut at the limit."""
    _deliver_names(root, names)
    box = MaildirMailbox(root)
    full = list(box.list_keys())
    assert len(full) == len(names)
    skip = set(rng.sample(full, skipped))
    rest = [key for key in full if key not in skip]
    for limit in limits:
        assert list(box.list_keys(limit=limit, skip=skip)) == rest[:limit], limit
        assert list(box.list_keys(limit=limit)) == full[:limit], limit
    return box


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_limited_listing_of_mail_delivered_in_one_second_is_the_oldest_keys(
    tmp_path: Path, seed: int
) -> None:
    # Within the newest kept key's second the listing passes over names on their microseconds
    # alone: the same keys, in the same order, as the full listing cut at the limit.
    rng = random.Random(seed)
    names = _mixed_names(rng, 150, seconds=1)  # a backlog fetched at once
    _limited_listings_agree(tmp_path / "Maildir", names, rng, 40, (1, 3, 17, 60, 109, 110, 111))


def test_a_limited_listing_over_many_seconds_still_deletes_every_file_of_a_late_key(
    tmp_path: Path,
) -> None:
    # Most files of a backlog are passed over on their name's leading seconds alone (later
    # than every key kept); a key this session deleted must still have its files found by a
    # later listing, so that close() unlinks them however late they were delivered.
    rng = random.Random(7)
    root = tmp_path / "Maildir"
    names = [f"new/{1_700_000_000 + n}.M{rng.randrange(10**6)}P{n}.host" for n in range(300)]
    names.append(f"new/{1_700_000_400}.M1P999.host")  # the latest key, in new and in cur
    names.append(f"cur/{1_700_000_400}.M1P999.host:2,S")
    rng.shuffle(names)
    _deliver_names(root, names)
    box = MaildirMailbox(root)
    full = list(box.list_keys())
    assert [int(key.split(".")[0]) for key in full] == sorted(
        int(key.split(".")[0]) for key in full
    )
    assert list(box.list_keys(limit=5)) == full[:5]
    late = full[-1]
    assert late == "1700000400.M1P999.host"
    box.fetch(late)
    box.delete(late)
    assert list(box.list_keys(limit=5, skip={full[0]})) == full[1:6]
    box.close()
    after = list(MaildirMailbox(root).list_keys())
    assert late not in after
    assert after == full[:-1]


def test_a_limited_listing_serves_fetch_delete_and_quarantine(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "Maildir")
    keys = [box.add(f"Subject: {n}\n\nbody {n}\n".encode()) for n in range(6)]
    assert list(box.list_keys(limit=3, skip={keys[0]})) == keys[1:4]
    assert box.fetch(keys[1]) == b"Subject: 1\n\nbody 1\n"
    box.delete(keys[1])
    box.quarantine(keys[2], "why")
    assert list(box.list_keys(limit=3)) == [keys[0], keys[3], keys[4]]  # deleted: hidden
    box.close()
    assert list(MaildirMailbox(tmp_path / "Maildir").list_keys()) == [keys[0], *keys[3:]]


def test_a_key_found_in_new_and_in_cur_is_listed_once_and_deleted_whole(tmp_path: Path) -> None:
    # A mail program moves new/K to cur/K:2,S while we scan, or a copy was left in both: the
    # key takes one place in the session's limit, and deleting it removes every file of it, so
    # no copy is listed again after the session closed.
    root = tmp_path / "Maildir"
    twice, later = "1700000001.M1P1.host", "1700000002.M1P1.host"
    _deliver_names(root, [f"new/{twice}", f"cur/{twice}:2,S", f"new/{later}"])
    box = MaildirMailbox(root)
    assert list(box.list_keys(limit=2)) == [twice, later]
    box.delete(twice)
    box.close()
    assert list(MaildirMailbox(root).list_keys()) == [later]


def test_a_limited_listing_holds_a_bounded_number_of_names_whatever_the_folder(
    tmp_path: Path,
) -> None:
    # Issue 14, "peak memory at most 3x the largest message": a backlog of 15,000 messages
    # must not cost the service 15,000 file names per session. The full listing holds them
    # all (a few MB here); the polling service's listing (101 keys, and LISTING_AHEAD times
    # that kept for the next sessions) holds the same few hundred KB for 5,000 as for 15,000.
    def peak(list_them: Callable[[], list[str]]) -> tuple[int, list[str]]:
        tracemalloc.start()
        try:
            keys = list_them()
            return tracemalloc.get_traced_memory()[1], keys
        finally:
            tracemalloc.stop()

    peaks = []
    for count in (5_000, 15_000):
        root = tmp_path / f"Maildir{count}"
        _deliver_names(
            root, [f"new/{1_700_000_000 + n // 1000}.M{n:06d}P1Q{n}.h" for n in range(count)]
        )
        box = MaildirMailbox(root)
        full_peak, full = peak(lambda: list(box.list_keys()))  # noqa: B023
        limited_peak, limited = peak(
            lambda: list(box.list_keys(limit=101, skip=set(full[:50])))  # noqa: B023
        )
        assert limited == full[50:151]
        assert full_peak > 200 * count  # a couple of hundred bytes a name
        peaks.append(limited_peak)
    assert peaks[1] < peaks[0] * 1.2 + 20_000, peaks  # flat: not the folder's size
    assert peaks[1] < 101 * LISTING_AHEAD * 700, peaks


class _CountingScans:
    """``os.scandir``, counting the folders the Maildir adapter opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = os.scandir

        def scandir(path: Any) -> Any:
            self.count += 1
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)  # the module the adapter calls it from


def test_a_backlogs_sessions_scan_the_folder_once_in_listing_ahead_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 14 ("flat from 2,000 to 10,000 messages"; DESIGN: nothing worse than linear): each
    # session scanned the whole folder for its oldest keys, so a backlog of n files cost
    # n / limit scans of up to n names (0.05 ms a message at 10,000 files, 0.5 ms at
    # 100,000). The sessions, each with a mailbox of its own and each session's deletions
    # unlinked only after the next one listed (the end behind), get every key once, oldest
    # first, from one scan every LISTING_AHEAD - 1 sessions (the previous session's keys, not
    # yet unlinked, take one's room).
    rng = random.Random(11)
    root = tmp_path / "Maildir"
    _deliver_names(root, _mixed_names(rng, 700, seconds=40))
    everything = list(MaildirMailbox(root).list_keys())
    scans = _CountingScans(monkeypatch)
    limit, seen, served = 11, set[str](), list[str]()
    behind: tuple[MaildirMailbox, list[str]] | None = None
    while True:
        box = MaildirMailbox(root)
        keys = list(box.list_keys(limit=limit, skip=seen))
        if behind is not None:  # the previous session's end: its files go only now
            behind[0].close()
            seen.difference_update(behind[1])
        if not keys:
            break
        for key in keys:
            box.fetch(key)
            box.delete(key)
        served += keys
        seen.update(keys)
        behind = (box, keys)
    sessions = -(-len(everything) // limit)
    assert served == everything
    # new and cur a scan; the previous session's keys, still there, take a session's room
    assert scans.count <= 2 * (-(-sessions // (LISTING_AHEAD - 1)) + 2), scans.count
    assert scans.count <= sessions  # a scan (new and cur) every other session at most


def _names(count: int) -> tuple[list[str], list[str]]:
    """``count`` file names in ``new``, one a second, and their keys (the same order)."""
    names = [f"new/{1_700_000_000 + n}.M{n:06d}P1.h" for n in range(count)]
    return names, [name[4:] for name in names]


def _folder(tmp_path: Path, count: int) -> tuple[Path, list[str], list[str]]:
    """A Maildir under ``tmp_path`` with :func:`_names` ``count`` delivered: its root, the
    file names and the keys."""
    root = tmp_path / "Maildir"
    names, keys = _names(count)
    _deliver_names(root, names)
    return root, names, keys


def _handled(root: Path, keys: list[str]) -> None:
    """Delete ``keys`` as a session does: through a mailbox, unlinked on close."""
    box = MaildirMailbox(root)
    for key in keys:
        box.delete(key)
    box.close()


def test_a_listing_from_the_keys_kept_ahead_is_what_a_scan_would_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, names, keys = _folder(tmp_path, 60)
    assert list(MaildirMailbox(root).list_keys(limit=5)) == keys[:5]
    scans = _CountingScans(monkeypatch)
    _handled(root, keys[:5])  # the session's deletions: forgotten, not listed again
    _deliver_names(root, [f"new/{1_700_000_000 + 1_000}.M1P2.h"])  # newer than all kept
    box = MaildirMailbox(root)
    assert list(box.list_keys(limit=5)) == keys[5:10]
    assert box.fetch(keys[5]) == b"Subject: x\n\nx\n"
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[5:8]))) == keys[8:11]
    assert scans.count == 0  # all of that from the one scan
    # a mail program marks one read (new/K to cur/K:2,S): scanned again, listed in its place
    (root / names[8]).rename(root / "cur" / f"{keys[8]}:2,S")
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[5:8]))) == keys[8:11]
    assert scans.count == 2  # new and cur
    # one removes a message: scanned again
    (root / names[9]).unlink()
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[5:8]))) == [
        keys[8],
        keys[10],
        keys[11],
    ]
    assert scans.count == 4
    # mail put in with an older name than the keys kept: listed once they are too old
    _deliver_names(root, [f"new/{1_600_000_000}.M1P3.h"])
    assert list(MaildirMailbox(root).list_keys(limit=2, skip=set(keys[5:8]))) == [
        keys[8],
        keys[10],
    ]
    monkeypatch.setattr(maildir, "LISTING_AHEAD_SECONDS", -1.0)
    assert list(MaildirMailbox(root).list_keys(limit=2, skip=set(keys[5:8]))) == [
        "1600000000.M1P3.h",
        keys[8],
    ]
    assert scans.count == 6


def test_a_key_the_scan_skipped_and_a_listing_skips_no_more_is_listed_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The polling service skips the keys it handled in the pass; a scan under that skip does
    # not keep them. Those it deleted are forgotten once unlinked; one it kept (to retry in the
    # next pass) and skips no more has the folder scanned again, and is listed first, even
    # when a mail program moved its file meanwhile.
    root, names, keys = _folder(tmp_path, 40)
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[:6]))) == keys[6:9]
    scans = _CountingScans(monkeypatch)
    _handled(root, keys[:3])
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[3:9]))) == keys[9:12]
    assert scans.count == 0
    again = MaildirMailbox(root).list_keys(limit=3, skip={*keys[3:5], *keys[6:9]})
    assert list(again) == [keys[5], keys[9], keys[10]]  # skipped by the scan, still there
    assert scans.count == 2
    (root / names[5]).rename(root / "cur" / f"{keys[5]}:2,S")  # kept, then marked read
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[6:12]))) == [
        keys[3],
        keys[4],
        keys[5],
    ]
    assert scans.count == 4


def test_a_sessions_end_unlinking_while_the_next_listing_is_served_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session's end unlinks its files on another thread while the next session lists:
    # what it unlinks meanwhile is forgotten all the same, so the session after does not
    # take those files for ones a mail program removed (which would scan the folder again).
    root, _, keys = _folder(tmp_path, 40)
    first = MaildirMailbox(root)
    assert list(first.list_keys(limit=3)) == keys[:3]
    for key in keys[:3]:
        first.delete(key)
    scans = _CountingScans(monkeypatch)
    real = os.path.exists
    ended: list[bool] = []

    def exists(path: Any) -> bool:
        if not ended and os.path.basename(path) in keys:  # the listing looks at the files
            ended.append(True)
            first.close()  # the end behind runs meanwhile
        return real(path)

    monkeypatch.setattr(os.path, "exists", exists)
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[:3]))) == keys[3:6]
    monkeypatch.setattr(os.path, "exists", real)
    assert ended
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[3:6]))) == keys[6:9]
    assert scans.count == 0


@pytest.mark.parametrize("seed", range(12))
def test_sessions_served_from_the_keys_kept_ahead_list_what_a_fresh_scan_lists(
    tmp_path: Path, seed: int
) -> None:
    # Sessions as the polling service runs them (a mailbox each, the previous one's end
    # closing it after the next one listed, its keys skipped until then, failures kept and
    # skipped for the pass), with new mail, and mail programs removing files and moving them
    # from new to cur, and passes ending: every limited listing is what a full scan lists.
    rng = random.Random(seed)
    root = tmp_path / "Maildir"
    clock, serial = [1_700_000_000], [0]

    def deliver(count: int) -> None:
        names = []
        for _ in range(count):
            clock[0] += rng.choice((0, 0, 1))  # a name never older than one before it
            serial[0] += 1
            key = f"{clock[0]}.M{serial[0]:06d}P1Q{serial[0]}.h"
            names.append(f"new/{key}" if rng.random() < 0.7 else f"cur/{key}:2,S")
        _deliver_names(root, names)

    def files() -> list[Path]:
        return sorted(path for sub in ("new", "cur") for path in (root / sub).iterdir())

    deliver(rng.randrange(30, 250))
    limit = rng.choice((1, 3, 7, 11))
    seen: set[str] = set()
    behind: tuple[MaildirMailbox, set[str]] | None = None
    for step in range(100):
        box = MaildirMailbox(root)
        every = [key for key in MaildirMailbox(root).list_keys() if key not in seen]
        listed = list(box.list_keys(limit=limit, skip=seen))
        assert listed == every[:limit], step
        if behind is not None:
            behind[0].close()
            seen.difference_update(behind[1])
        gone = set()
        for key in listed:
            box.fetch(key)
            seen.add(key)
            chance = rng.random()
            if chance < 0.8:
                box.delete(key)
                gone.add(key)
            elif chance < 0.9:
                box.quarantine(key, "set aside")
                gone.add(key)  # else: failed, kept and skipped for the pass
        behind = (box, gone)
        chance = rng.random()
        if chance < 0.2:
            deliver(rng.randrange(1, 15))
        elif chance < 0.3 and files():
            rng.choice(files()).unlink()  # a mail program removes one
        elif chance < 0.4:
            fresh = [path for path in files() if path.parent.name == "new"]
            if fresh:  # a mail program marks one read
                moved = rng.choice(fresh)
                moved.rename(root / "cur" / f"{moved.name}:2,S")
        elif chance < 0.45:  # the pass ends: its end is waited for, nothing is skipped
            behind[0].close()
            behind, seen = None, set()


def test_the_keys_a_scan_keeps_ahead_are_bounded_whatever_the_sessions_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session's worth times LISTING_AHEAD, but LISTING_AHEAD_KEYS at most: a desk with
    # large sessions keeps what one scan finds for fewer sessions, not more keys.
    monkeypatch.setattr(maildir, "LISTING_AHEAD_KEYS", 20)
    root, _, keys = _folder(tmp_path, 100)
    scans = _CountingScans(monkeypatch)
    for session in range(5):
        box = MaildirMailbox(root)
        assert list(box.list_keys(limit=5)) == keys[5 * session : 5 * session + 5]
        for key in keys[5 * session : 5 * session + 5]:
            box.delete(key)
        box.close()
    assert scans.count == 4  # 20 keys kept: four sessions a scan


class _Listed:
    """Directory entries read before they are handed out (``os.scandir``'s interface)."""

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self._entries = entries

    def __enter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(self._entries)

    def __exit__(self, *exc_info: object) -> None:
        return None


def test_a_sessions_end_unlinking_while_the_next_session_scans_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same while the next session scans: the files it found may be unlinked before it
    # keeps what it found; those keys are forgotten too (else every later listing would take
    # them for files a mail program removed, and scan again: in the benchmark's pass of
    # 10,000 messages, 91 of 100 sessions did).
    root, _, keys = _folder(tmp_path, 40)
    first = MaildirMailbox(root)
    assert list(first.list_keys(limit=3)) == keys[:3]
    for key in keys[:3]:
        first.delete(key)
    real = os.scandir
    ended: list[bool] = []

    def scandir(path: Any) -> _Listed:
        with real(path) as found:
            entries = list(found)
        if not ended:  # the scan has read the files: the end behind unlinks some now
            ended.append(True)
            first.close()
        return _Listed(entries)

    monkeypatch.setattr(maildir, "LISTING_AHEAD_SECONDS", -1.0)  # what was kept is too old
    monkeypatch.setattr(os, "scandir", scandir)
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[:3]))) == keys[3:6]
    assert ended
    monkeypatch.setattr(maildir, "LISTING_AHEAD_SECONDS", 60.0)
    scans = _CountingScans(monkeypatch)
    assert list(MaildirMailbox(root).list_keys(limit=3, skip=set(keys[3:6]))) == keys[6:9]
    assert scans.count == 0


def test_a_key_whose_file_could_not_be_unlinked_is_still_listed_from_the_keys_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session's end that could not unlink a file keeps its message (the service keeps the
    # key skipped for the pass); the keys kept ahead must not take it for gone either.
    root, _, keys = _folder(tmp_path, 40)
    box = MaildirMailbox(root)
    assert list(box.list_keys(limit=3)) == keys[:3]
    box.delete(keys[0])
    real = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.path.basename(path) == keys[0]:
            raise PermissionError(f"cannot unlink {path}")
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(MailboxError, match="cannot delete"):
        box.close()
    monkeypatch.setattr(os, "unlink", real)
    scans = _CountingScans(monkeypatch)
    assert list(MaildirMailbox(root).list_keys(limit=3)) == keys[:3]  # the next pass
    assert scans.count == 0


def test_a_quarantine_cut_off_after_its_copy_leaves_one_copy_when_done_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process killed between the copy and the removal of the original: the next session
    # finds the message and sets it aside again; the folder must not get a second copy.
    raw = b"From: a@example.org\r\nSubject: unreadable\r\n\r\n\x00\r\n"
    with MaildirMailbox(tmp_path / "Maildir") as box:
        key = box.add(raw)

        def killed(self: MaildirMailbox, key: str) -> None:
            raise OSError("killed")

        with monkeypatch.context() as patch:
            patch.setattr(MaildirMailbox, "_unlink", killed)
            with pytest.raises(MailboxError):
                box.quarantine(key, "first try")
        assert list(box.list_keys()) == [key]  # the original is still there
        box.quarantine(key, "second try")
        assert list(box.list_keys()) == []
    folder = tmp_path / "Maildir" / ".Quarantine"
    copies = list((folder / "new").iterdir()) + list((folder / "cur").iterdir())
    assert len(copies) == 1
    assert copies[0].read_bytes().endswith(raw)
