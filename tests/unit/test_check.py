"""``check`` and the start-up checks of ``poll`` and ``deliver`` (issue 11, item 4).

"The ``init`` config with an empty store deletes every message, with INFO lines only.
``default_logging_analyst_id = 1`` on an empty store made the first customer person 1 ...
``assigned_analyst_id = 2`` pointed at nobody. Nothing checks that configured ids exist and are
analysts."
"""

from __future__ import annotations

import io
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from asm_email_rules.adapters import sqlite as sqlite_adapter
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.desk_check import Level, check_mailbox
from asm_email_rules.model import Person
from asm_email_rules.settings import CallTemplate, MailboxSettings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path / "config.toml"


def set_ids(config: Path, logging_analyst: int | None, assigned: int | None = None) -> None:
    text = config.read_text()
    if logging_analyst is not None:
        text = text.replace(
            "# default_logging_analyst_id = 1", f"default_logging_analyst_id = {logging_analyst}"
        )
    if assigned is not None:
        text = text.replace(
            'assigned_group = "Service Desk"',
            f'assigned_group = "Service Desk"\nassigned_analyst_id = {assigned}',
        )
    config.write_text(text)


def test_configured_ids_must_name_analysts() -> None:
    store = InMemoryRepository()
    store.put_person(Person(id=1, email="customer@example.org", is_user=True))
    store.put_person(Person(id=2, email="dana@example.org", is_analyst=True))
    mailbox = MailboxSettings(
        addresses=("desk@example.org",),
        default_logging_analyst_id=1,
        call_template=CallTemplate(assigned_analyst_id=7),
    )
    findings = check_mailbox("accounts[1] (desk)", mailbox, store, known_senders=2)
    assert [(f.level, f.where.rsplit(": ", 1)[1]) for f in findings] == [
        (Level.ERROR, "mailbox.default_logging_analyst_id"),
        (Level.ERROR, "mailbox.call_template.assigned_analyst_id"),
    ]
    assert "customer@example.org) is not an analyst" in findings[0].message
    assert "person 7 does not exist" in findings[1].message
    good = MailboxSettings(addresses=("desk@example.org",), default_logging_analyst_id=2)
    assert check_mailbox("accounts[1] (desk)", good, store, known_senders=2) == []


def test_check_on_the_init_desk_warns_that_every_message_would_be_discarded(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check", "--config", str(desk))
    assert code == 0, err
    assert "configuration" in out
    assert "valid (1 accounts, 1 active; no [smtp])" in out
    assert "0 people (0 analysts, 0 Users); 0 calls" in out
    assert "Maildir" in out
    assert "every message will be discarded" in out
    assert "check: ready (0 errors, 3 warnings)" in out


def test_check_refuses_ids_that_name_nobody_and_so_do_poll_and_deliver(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_ids(desk, logging_analyst=1, assigned=2)
    code, out, _ = run(capsys, "check", "--config", str(desk))
    assert code == 2
    assert "error: accounts[1] (helpdesk): mailbox.default_logging_analyst_id: person 1" in out
    assert "mailbox.call_template.assigned_analyst_id: person 2 does not exist" in out
    assert "check: not ready (2 errors" in out
    code, _, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 2
    assert "person 1 does not exist" in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Subject: x\r\n\r\nhi\r\n")))
    code, _, err = run(capsys, "deliver", "--config", str(desk))
    assert code == 75
    assert "person 1 does not exist" in err
    # with the analyst in the store it is ready
    run(capsys, "people", "add", "dana@example.org", "--analyst", "--config", str(desk))
    run(capsys, "people", "add", "alice@example.org", "--analyst", "--config", str(desk))
    code, out, _ = run(capsys, "check", "--config", str(desk))
    assert code == 0, out
    assert "check: ready (0 errors, 1 warning)" in out  # only: no [smtp]


def test_poll_logs_the_warnings_at_warning_level(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0
    assert "WARNING" in err
    assert "every message will be discarded" in err


def test_check_and_explain_leave_an_older_store_as_it_is(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 'check' says it changes nothing, and explain is a dry run; both migrated an older
    # store, which the version it came from then refused ("schema version 6 is newer"):
    # trying the new version meant no way back without a backup.
    store = desk.parent / "helpdesk.sqlite3"
    store.unlink()
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_adapter, "MIGRATIONS", sqlite_adapter.MIGRATIONS[:1])
        SqliteRepository(store).close()

    def version() -> int:
        with sqlite3.connect(store) as raw:
            return int(raw.execute("PRAGMA user_version").fetchone()[0])

    code, out, err = run(capsys, "check", "--config", str(desk), "--no-sign-in")
    assert code == 0, err
    assert f"store {store}: schema 1" in out
    assert "older than this version's" in out
    assert "next poll, process or deliver migrates it" in out
    assert version() == 1
    message = desk.parent / "m.eml"
    message.write_bytes(b"From: a@example.org\r\nSubject: hello\r\n\r\nhi\r\n")
    code, out, err = run(capsys, "explain", str(message), "--config", str(desk))
    assert code == 2
    assert "cannot explain against it" in err
    assert version() == 1
    code, out, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0, err
    assert version() == len(sqlite_adapter.MIGRATIONS)  # the service migrates, as before


def test_check_is_not_ready_when_this_user_cannot_write_the_store(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store created by root and polled by the service's user: 'check' (run as that user)
    # said "ready", and 'poll' then backed off at every pass with "attempt to write a
    # readonly database". The test runs as root, who may write anything, so the kernel's
    # answer for the store file is replaced by the one another user gets.
    run(capsys, "people", "add", "dana@example.org", "--analyst", "--config", str(desk))
    set_ids(desk, 1)
    store = desk.parent / "helpdesk.sqlite3"
    real_access = os.access

    def access(path: object, mode: int, **kwargs: bool) -> bool:
        if Path(str(path)) == store and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    code, out, _ = run(capsys, "check", "--config", str(desk), "--no-sign-in")
    assert code == 2, out
    assert "error: store: not writable by this user" in out
    assert f"{store} (owner " in out
    assert "check: not ready (1 error" in out
    monkeypatch.setattr(os, "access", real_access)
    code, out, _ = run(capsys, "check", "--config", str(desk), "--no-sign-in")
    assert code == 0, out
    assert "not writable" not in out


def test_replies_left_by_a_renamed_account_are_not_left_in_silence(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An operator renames [[accounts]] name = "helpdesk" to "it-desk". The outbox is keyed by
    # the account's name and a poller sends only its accounts' replies, so the reply the old
    # name left pending was never sent, and neither check nor poll said a word.
    run(capsys, "people", "add", "dana@example.org", "--analyst", "--config", str(desk))
    run(capsys, "people", "add", "uma@example.org", "--user", "--config", str(desk))
    set_ids(desk, logging_analyst=1)
    (desk.parent / "Maildir" / "new" / "1.eml").write_bytes(
        b"From: uma@example.org\r\nTo: helpdesk@example.org\r\nSubject: Printer down\r\n"
        b"Message-ID: <rename-1@client.example>\r\n\r\nThe printer is down.\r\n"
    )
    code, _, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0, err
    desk.write_text(desk.read_text().replace('name = "helpdesk"', 'name = "it-desk"'))
    code, out, _ = run(capsys, "check", "--no-sign-in", "--config", str(desk))
    assert code == 0
    assert "warning: outbox: 1 reply of mailbox 'helpdesk' waits" in out
    assert "was the account renamed?" in out
    code, _, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0
    assert "WARNING asm_email_rules.cli: outbox: 1 reply of mailbox 'helpdesk'" in err
    # with the old name back, nothing is said
    desk.write_text(desk.read_text().replace('name = "it-desk"', 'name = "helpdesk"'))
    code, out, _ = run(capsys, "check", "--no-sign-in", "--config", str(desk))
    assert "outbox" not in out


def test_check_says_when_replies_stopped_going_out(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `check` as a monitoring probe: a desk whose service had stopped for hours, its customers'
    # replies waiting in the outbox, still said "ready" with nothing about the outbox.
    run(capsys, "people", "add", "dana@example.org", "--analyst", "--config", str(desk))
    run(capsys, "people", "add", "uma@example.org", "--user", "--config", str(desk))
    set_ids(desk, logging_analyst=1)
    (desk.parent / "Maildir" / "new" / "1.eml").write_bytes(
        b"From: uma@example.org\r\nTo: helpdesk@example.org\r\nSubject: Printer down\r\n"
        b"Message-ID: <stalled-1@client.example>\r\n\r\nThe printer is down.\r\n"
    )
    assert run(capsys, "poll", "--once", "--config", str(desk))[0] == 0  # no [smtp]: pending
    with desk.open("a", encoding="utf-8") as handle:
        handle.write('\n[smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "plain"\n')
    code, out, _ = run(capsys, "check", "--no-sign-in", "--config", str(desk))
    assert (code, "replies are not going out" in out) == (0, False)  # due now: not late
    with sqlite3.connect(desk.parent / "helpdesk.sqlite3") as db:  # the service down 3 hours
        db.execute(
            "UPDATE ledger SET next_attempt_at = '2026-01-01T09:00:00.000000+00:00',"
            " queued_at = '2026-01-01T09:00:00.000000+00:00' WHERE reply_message_id IS NOT NULL"
        )
    code, out, _ = run(capsys, "check", "--no-sign-in", "--config", str(desk))
    assert code == 0
    assert "warning: outbox: replies are not going out: a reply of mailbox 'helpdesk'" in out
    assert "due since 2026-01-01 09:00:00Z" in out
    assert "check: ready (0 errors, 1 warning)" in out


def test_check_json_gives_a_monitoring_probe_one_object(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A probe had only the exit code, or lines of prose to grep: check had no machine-readable
    # output. --json prints one object with the verdict, the findings and the lines checked.
    import json

    code, out, _ = run(capsys, "check", "--json", "--config", str(desk))
    report = json.loads(out)
    assert (code, report["ready"], report["exit_code"], report["errors"]) == (0, True, 0, 0)
    assert report["warnings"] == len(report["findings"]) == 3
    assert {f["where"] for f in report["findings"]} >= {"smtp"}
    assert report["checked"][0].startswith("configuration ")
    assert any("Maildir" in line for line in report["checked"])
    set_ids(desk, logging_analyst=1)  # names nobody: not ready
    code, out, _ = run(capsys, "check", "--json", "--no-sign-in", "--config", str(desk))
    report = json.loads(out)
    assert (code, report["ready"], report["exit_code"], report["errors"]) == (2, False, 2, 1)
    [error] = [f for f in report["findings"] if f["level"] == "error"]
    assert error["where"].endswith("mailbox.default_logging_analyst_id")
    assert "person 1 does not exist" in error["message"]


def test_check_json_gives_an_object_when_the_configuration_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A probe that parses ``check --json`` got nothing on stdout when the configuration (or
    the store) could not even be opened: the worst case gave it no object to read. It now
    gets one, not ready, with the error as its finding; stderr and the exit code as before."""
    import json

    broken = tmp_path / "config.toml"
    broken.write_text("store = \n", encoding="utf-8")
    code, out, err = run(capsys, "check", "--json", "--config", str(broken))
    report = json.loads(out)
    assert code == report["exit_code"] == 2
    assert report["ready"] is False
    [finding] = report["findings"]
    assert finding["level"] == "error"
    assert str(broken) in finding["message"]
    assert finding["message"] in err
