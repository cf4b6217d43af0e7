"""``quarantine list|show|release|replay`` (issue 11, item 7: "No way to look at, release or
replay quarantined messages")."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.quarantine import QuarantineState, set_aside

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def mail(subject: str, number: int) -> bytes:
    return (
        f"From: Uma User <uma@example.org>\r\nTo: helpdesk@example.org\r\n"
        f"Subject: {subject}\r\nMessage-ID: <q{number}@example.org>\r\n\r\n"
        f"{subject} since this morning.\r\n"
    ).encode()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", str(tmp_path)]) == 0
    config = tmp_path / "config.toml"
    config.write_text(
        config.read_text().replace(
            "# default_logging_analyst_id = 1", "default_logging_analyst_id = 1"
        )
    )
    main(["people", "add", "dana@example.org", "--analyst", "--config", str(config)])
    main(["people", "add", "uma@example.org", "--user", "--config", str(config)])
    capsys.readouterr()
    return config


def store(config: Path) -> SqliteRepository:
    return SqliteRepository(config.parent / "helpdesk.sqlite3")


def test_a_message_from_deliver_is_listed_shown_and_cannot_be_released(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = b"\r\n\r\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(garbage)))
    assert main(["deliver", "--config", str(desk)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "quarantine", "list", "--config", str(desk))
    assert code == 0
    assert "helpdesk (deliver)" in out
    assert "cannot parse" in out
    code, out, _ = run(capsys, "quarantine", "show", "1", "--config", str(desk))
    assert code == 0
    assert "reason: cannot parse" in out
    code, _, err = run(capsys, "quarantine", "release", "1", "--config", str(desk))
    assert code == 2
    assert "quarantine replay 1" in err
    code, _, err = run(capsys, "quarantine", "replay", "1", "--config", str(desk))
    assert code == 1  # still unparseable: it stays held, with the new reason
    assert "still held: replay failed: empty message" in err
    with store(desk) as repo:
        [held] = repo.quarantined()
    assert held.resolution.startswith("replay failed")


def test_an_empty_message_from_deliver_is_listed_not_a_traceback(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty standard input (a pipe that handed over nothing, a 0-byte file) is kept in
    the quarantine; SQLite's substr() of an empty blob is NULL, and ``quarantine list``
    ended in a traceback for every entry as long as that one was held."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["deliver", "--config", str(desk)]) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\r\n\r\n")))
    assert main(["deliver", "--config", str(desk)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "quarantine", "list", "--config", str(desk))
    assert (code, err) == (0, "")
    assert out.count("cannot parse: empty message") == 2
    code, out, _ = run(capsys, "quarantine", "show", "1", "--config", str(desk))
    assert code == 0
    assert "reason: cannot parse" in out


def test_replay_processes_a_held_message_once(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = mail("Printer offline", 1)
    with store(desk) as repo:
        entry = set_aside(
            repo, "helpdesk", raw, "processing failed: store full", NOW, source="pop3"
        )
    assert entry == 1
    code, out, err = run(capsys, "quarantine", "replay", "1", "--config", str(desk))
    assert code == 0, err
    assert "replayed quarantine 1: rule LOG-6" in out
    code, out, _ = run(capsys, "calls", "list", "--config", str(desk))
    assert "Printer offline since this morning." in out
    code, out, _ = run(capsys, "quarantine", "list", "--config", str(desk))
    assert "nothing in quarantine" in out
    code, out, _ = run(capsys, "quarantine", "list", "--all", "--json", "--config", str(desk))
    [listed] = json.loads(out)
    assert listed["state"] == "replayed"
    assert listed["subject"] == "Printer offline"
    code, _, err = run(capsys, "quarantine", "replay", "1", "--config", str(desk))
    assert code == 2
    assert "replayed already" in err


def test_release_gives_a_maildir_message_back_to_the_next_poll(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = mail("Scanner jammed", 2)
    with store(desk) as repo:
        set_aside(repo, "helpdesk", raw, "processing failed: bug", NOW, source="maildir")
    code, out, err = run(capsys, "quarantine", "release", "1", "--config", str(desk))
    assert code == 0, err
    assert "released 1: back in Maildir" in out
    [back] = list((desk.parent / "Maildir" / "new").iterdir())
    assert back.read_bytes() == raw
    code, out, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0, err
    assert "processed 1" in out  # processed, not set aside again
    with store(desk) as repo:
        [entry] = repo.quarantined(state=None)
    assert entry.state is QuarantineState.RELEASED
    code, out, _ = run(capsys, "quarantine", "show", "1", "--raw", "--config", str(desk))
    assert out.encode() == raw


def test_listings_say_their_times_are_utc(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/operators.md: the store keeps UTC; on a server set to Europe/Berlin, a listing
    that printed 12:00 unmarked read as noon local time, an hour off (two in summer)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    with store(desk) as repo:
        set_aside(repo, "helpdesk", mail("Scanner jammed", 2), "store full", NOW, source="pop3")
    code, out, _ = run(capsys, "quarantine", "list", "--config", str(desk))
    assert code == 0
    assert "2026-11-27 12:00Z" in out
    assert run(capsys, "quarantine", "replay", "1", "--config", str(desk))[0] == 0
    code, out, _ = run(capsys, "calls", "list", "--config", str(desk))
    assert code == 0
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\dZ", out), out


def big_mail(number: int, size: int) -> bytes:
    """A held message of about ``size`` bytes: a short header, then a long body."""
    head = mail(f"Scanner log {number}", number)
    return head + b"x" * (size - len(head) - 2) + b"\r\n"


def test_list_and_check_do_not_read_every_held_message_whole(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hundreds of held messages of up to 25 MB each are gigabytes: ``quarantine list`` (From,
    Subject, size) and ``check`` (a count) read the first 64 KiB of each, or nothing."""
    import tracemalloc

    held, size = 12, 2 * 1024 * 1024
    with store(desk) as repo, repo.transaction():
        for number in range(held):
            set_aside(repo, "helpdesk", big_mail(number, size), "too big", NOW, source="pop3")
    commands = (
        ("quarantine", "list", "--config", str(desk)),
        ("quarantine", "list", "--json", "--config", str(desk)),
        ("check", "--config", str(desk)),
    )
    for argv in commands:
        tracemalloc.start()
        try:
            main(list(argv))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        out, _ = capsys.readouterr()
        assert peak < held * size // 4, f"{argv[:2]}: {peak} bytes at the peak"
        if argv[0] == "check":
            assert f"{held} held in quarantine" in out
        elif "--json" in argv:
            listed = json.loads(out)
            assert [entry["subject"] for entry in listed][:2] == ["Scanner log 0", "Scanner log 1"]
            assert {entry["size"] for entry in listed} == {size}
        else:
            assert "Scanner log 11" in out


def test_purge_forgets_old_released_and_replayed_entries_only(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a few years a store is mostly quarantine: ``quarantine purge`` forgets the entries
    dealt with (released, replayed) and unchanged for 90 days; held and recent ones stay."""
    now = datetime.now(UTC)
    day = timedelta(days=1)
    with store(desk) as repo:
        old = now - 200 * day
        ids = [
            set_aside(repo, "helpdesk", mail(f"Old {n}", n), "bug", old, source=source)
            for n, source in enumerate(["maildir", "pop3", "pop3", "maildir"])
        ]
        assert ids == [1, 2, 3, 4]
        repo.resolve_quarantined(1, QuarantineState.RELEASED, "back in Maildir", now - 150 * day)
        repo.resolve_quarantined(2, QuarantineState.REPLAYED, "call 7", now - 100 * day)
        repo.resolve_quarantined(4, QuarantineState.RELEASED, "back in Maildir", now - 10 * day)
    code, out, err = run(capsys, "quarantine", "purge", "--config", str(desk))
    assert code == 0, err
    assert "forgot 2 quarantine entries (released, replayed, unchanged for 90 days" in out
    assert "entry 1 dealt with: a copy with the reason header may still be in the" in out
    assert "1 held entries kept: --held forgets them too" in out
    code, out, _ = run(capsys, "quarantine", "list", "--all", "--json", "--config", str(desk))
    assert [(e["id"], e["state"]) for e in json.loads(out)] == [(3, "held"), (4, "released")]
    with store(desk) as repo:
        new = set_aside(repo, "helpdesk", mail("New", 9), "bug", now, source="pop3")
    assert new == 5  # a purged entry's id is never given again


def test_purge_forgets_held_ones_only_when_asked_and_they_stay_set_aside(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A held message is forgotten only with --held; --dry-run lists it, changes nothing and
    says the message is still in the Maildir's quarantine folder; once forgotten, the same
    bytes read again are still set aside by the ledger's record, never processed."""
    garbage = b"\r\n\r\n"
    inbox = desk.parent / "Maildir" / "new"
    (inbox / "1.garbage").write_bytes(garbage)
    code, out, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0, err
    assert "quarantined 1" in out
    code, out, _ = run(capsys, "quarantine", "purge", "--older-than", "0", "--config", str(desk))
    assert code == 0
    assert "forgot 0 quarantine entries" in out
    assert "1 held entries kept" in out
    argv = ("quarantine", "purge", "--held", "--older-than", "0", "--config", str(desk))
    code, out, _ = run(capsys, *argv, "--dry-run")
    assert code == 0
    assert "would forget 1 entries (released, replayed or held, of any age" in out
    assert "dry run: nothing changed" in out
    assert "helpdesk (maildir)" in out
    assert "entry 1 held: the message is still in the quarantine folder of account" in out
    with store(desk) as repo:
        assert [e.id for e in repo.quarantined()] == [1]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "forgot 1 quarantine entries" in out
    assert "still in the quarantine folder of account helpdesk" in out
    code, out, _ = run(capsys, "quarantine", "list", "--all", "--config", str(desk))
    assert "nothing was ever quarantined" in out
    (inbox / "2.garbage-again").write_bytes(garbage)
    code, out, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0, err
    assert "processed 0" in out
    assert "quarantined 1" in out  # set aside again: the ledger still knows it
    assert not list(inbox.iterdir())


def test_purge_says_when_the_store_cannot(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from asm_email_rules.adapters._sql import SqlRepository

    monkeypatch.setattr(SqlRepository, "purge_quarantined", None)
    with store(desk) as repo:
        set_aside(repo, "helpdesk", mail("Old", 1), "bug", NOW, source="pop3")
        repo.resolve_quarantined(1, QuarantineState.REPLAYED, "call 7", NOW)
    code, _, err = run(capsys, "quarantine", "purge", "--older-than", "0", "--config", str(desk))
    assert code == 2
    assert "this store cannot purge" in err
    argv = ("quarantine", "purge", "--older-than", "0", "--dry-run", "--config", str(desk))
    code, out, err = run(capsys, *argv)  # a dry run does not promise what the purge cannot do
    assert code == 2
    assert "this store cannot purge" in err
    assert "would forget" not in out
    with store(desk) as repo:
        assert len(repo.quarantined(state=None)) == 1


def test_purge_does_not_read_the_messages_it_forgets(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Years of released messages are gigabytes: a purge and its dry run read no message, not
    even the first 64 KiB a listing reads of each."""
    import tracemalloc

    released, size = 200, 100 * 1024
    old = datetime.now(UTC) - timedelta(days=200)
    with store(desk) as repo, repo.transaction():
        for number in range(released):
            entry = set_aside(repo, "helpdesk", big_mail(number, size), "bug", old, source="imap")
            assert entry is not None
            repo.resolve_quarantined(entry, QuarantineState.RELEASED, "back", old)
    for dry_run in (("--dry-run",), ()):
        tracemalloc.start()
        try:
            code = main(["quarantine", "purge", *dry_run, "--config", str(desk)])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        out, _ = capsys.readouterr()
        assert code == 0
        assert f"forget {released} entries" in out or f"forgot {released} " in out
        assert peak < released * 64 * 1024 // 4, f"{dry_run}: {peak} bytes at the peak"
    with store(desk) as repo:
        assert repo.quarantined(state=None) == []


def test_a_hostile_header_cannot_drive_the_operators_terminal(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sender controls From and Subject (RFC 2047 encoded words decode to any character):
    ``quarantine list`` and ``show`` print terminal control characters escaped (``\\x1b``),
    never raw, so a held message cannot clear the operator's screen, retitle the window or
    hide a row of the listing; the text around them is still shown."""
    hostile = (
        b"From: =?utf-8?q?Eve=1B]0;owned=07?= <eve@example.org>\r\n"
        b"To: helpdesk@example.org\r\nSubject: =?utf-8?q?hi=1B[2J=0Dthere?=\r\n"
        b"X-Note: raw \x1b[31mred\r\nMessage-ID: <hostile@example.org>\r\n\r\nbody\r\n"
    )
    with store(desk) as repo:
        set_aside(repo, "helpdesk", hostile, "bug", NOW, source="pop3")
    code, listed, _ = run(capsys, "quarantine", "list", "--config", str(desk))
    assert code == 0
    code, shown, _ = run(capsys, "quarantine", "show", "1", "--config", str(desk))
    assert code == 0
    for out in (listed, shown):
        assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in out), out
    assert "hi\\x1b[2J there" in listed
    assert "Eve\\x1b]0;owned\\x07" in listed
    assert "X-Note: raw \\x1b[31mred" in shown


def test_purge_older_than_more_days_than_the_calendar_holds_forgets_nothing(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--older-than 1000000`` went below the year 1: an OverflowError traceback."""
    with store(desk) as repo:
        entry = set_aside(repo, "helpdesk", mail("Old", 1), "bug", NOW, source="pop3")
        assert entry is not None
        repo.resolve_quarantined(entry, QuarantineState.REPLAYED, "call 7", NOW)
    argv = ("quarantine", "purge", "--older-than", "1000000", "--config", str(desk))
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "forgot 0 quarantine entries" in out
    with store(desk) as repo:
        assert len(repo.quarantined(state=None)) == 1


@pytest.mark.parametrize("action", ["release", "replay"])
def test_release_and_replay_without_config_ask_for_config_not_a_store_they_refuse(
    desk: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    # both go through the message's account, so a store alone (--store) cannot do: the usage
    # error used to say "--config F or --store DB", and --store was then refused
    code, _, err = run(capsys, "quarantine", action, "1")
    assert code == 2
    assert "--config" in err
    assert "--store" not in err
    code, _, err = run(capsys, "quarantine", action, "1", "--store", str(store_path(desk)))
    assert code == 2
    assert "required: --config" in err
    code, out, _ = run(capsys, "quarantine", action, "--help")
    assert code == 0
    assert "[--config F]" not in out  # required, as the usage line now shows


def store_path(config: Path) -> Path:
    return config.parent / "helpdesk.sqlite3"
