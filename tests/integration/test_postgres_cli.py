"""The operator's commands on ``store = "postgresql://..."``: ``check`` reports the store and
its quarantine, ``quarantine list|show|release|replay``, ``deliver`` keeping what it cannot
parse, ``people`` and ``calls`` (the shapes of ``tests/unit/test_quarantine_cli.py`` on SQLite).

The password reaches the commands only through an environment variable.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.postgres import PostgresRepository
from asm_email_rules.cli import main
from asm_email_rules.quarantine import QuarantineState, set_aside

if TYPE_CHECKING:
    from postgres_fixtures import PgDatabase

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PASSWORD_ENV = "ASM_TEST_CLI_DB_PASSWORD"


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
def desk(
    tmp_path: Path,
    pg_database: PgDatabase,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """``init``'s desk with its store moved to PostgreSQL; an analyst (1) and a User (2)."""
    monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
    assert main(["init", str(tmp_path)]) == 0
    config = tmp_path / "config.toml"
    text = config.read_text(encoding="utf-8")
    assert 'store = "helpdesk.sqlite3"' in text
    config.write_text(
        text.replace(
            'store = "helpdesk.sqlite3"',
            f'store = "{pg_database.conninfo}"\n'
            f'store_password_env = "{PASSWORD_ENV}"\n'
            f'store_schema = "{pg_database.schema}"',
        ).replace("# default_logging_analyst_id = 1", "default_logging_analyst_id = 1"),
        encoding="utf-8",
    )
    (tmp_path / "helpdesk.sqlite3").unlink()  # init's SQLite file: not the store any more
    assert main(["people", "add", "dana@example.org", "--analyst", "--config", str(config)]) == 0
    assert main(["people", "add", "uma@example.org", "--user", "--config", str(config)]) == 0
    capsys.readouterr()
    return config


def store(db: PgDatabase) -> PostgresRepository:
    return PostgresRepository(db.conninfo, password=db.password, schema=db.schema)


def test_check_reports_the_store_and_its_quarantine(
    desk: Path, pg_database: PgDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    with store(pg_database) as repo:
        set_aside(repo, "helpdesk", mail("Printer", 1), "cannot parse: x", NOW, source="maildir")
        set_aside(repo, "helpdesk", mail("Scanner", 2), "cannot parse: y", NOW, source="deliver")
    code, out, err = run(capsys, "check", "--no-sign-in", "--config", str(desk))
    assert code == 0, out + err
    [line] = [line for line in out.splitlines() if line.startswith("store ")]
    assert line.startswith(f"store PostgreSQL server 127.0.0.1:{pg_database.cluster.port}")
    assert "schema 7; 2 people (1 analysts, 1 Users); 0 calls; 2 held in quarantine" in line
    assert pg_database.password not in out + err


def test_check_and_explain_say_a_store_schema_without_our_tables_is_empty_not_older(
    desk: Path,
    new_database: Callable[[], PgDatabase],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``check`` and ``explain`` open the store without migrating it. A ``store_schema``
    nobody created tables in (a typo, or a new desk) was reported as a store of schema 0 to
    back up before an upgrade ("older versions cannot open it"): the next poll would create
    an empty desk that knows nobody, in silence. They now say the store has none of our
    tables, and the command that creates them says it did."""
    other = new_database()
    text = desk.read_text(encoding="utf-8")
    config = desk.parent / "typo.toml"
    config.write_text(
        re.sub(r'store_schema = "[^"]*"', f'store_schema = "{other.schema}"', text),
        encoding="utf-8",
    )
    code, out, err = run(capsys, "check", "--no-sign-in", "--config", str(config))
    assert code == 0, out + err
    assert "the store has no tables of ours (no people, no ledger)" in out
    assert "correct `store` or `store_schema`" in out
    assert "back it up" not in out
    message = desk.parent / "m.eml"
    message.write_bytes(mail("Printer", 1))
    code, out, err = run(capsys, "explain", str(message), "--config", str(config))
    assert code == 2
    assert "the store has no tables of ours" in err
    with PostgresRepository(
        other.conninfo, password=other.password, schema=other.schema, migrate=False
    ) as repo:
        assert repo.schema_version == 0  # still nothing created
    # The first command that does create them (a poll) says so, once; here it then stops
    # at the configured analyst, whom the new, empty desk does not know.
    code, out, err = run(capsys, "poll", "--once", "--config", str(config))
    assert code == 2, out + err
    assert f"schema {other.schema} had none of our tables: created them, empty" in err
    assert "correct `store` or `store_schema`" in err
    code, out, err = run(capsys, "people", "list", "--config", str(config))
    assert "had none of our tables" not in err


def test_list_show_release_a_maildir_message_then_poll_processes_it(
    desk: Path, pg_database: PgDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = mail("Scanner jammed", 2)
    with store(pg_database) as repo:
        entry = set_aside(repo, "helpdesk", raw, "processing failed: bug", NOW, source="maildir")
    assert entry == 1
    code, out, _ = run(capsys, "quarantine", "list", "--config", str(desk))
    assert code == 0
    assert "helpdesk (maildir)" in out
    assert "processing failed: bug" in out
    code, out, _ = run(capsys, "quarantine", "show", "1", "--config", str(desk))
    assert code == 0
    assert "reason: processing failed: bug" in out
    assert "Subject: Scanner jammed" in out
    code, out, err = run(capsys, "quarantine", "release", "1", "--config", str(desk))
    assert code == 0, err
    assert "released 1: back in Maildir" in out
    [back] = list((desk.parent / "Maildir" / "new").iterdir())
    assert back.read_bytes() == raw
    code, out, _ = run(capsys, "quarantine", "list", "--config", str(desk))
    assert "nothing in quarantine" in out
    code, out, err = run(capsys, "poll", "--once", "--config", str(desk))
    assert code == 0, err
    assert "processed 1" in out  # processed, not set aside again
    code, out, _ = run(capsys, "quarantine", "list", "--all", "--json", "--config", str(desk))
    [listed] = json.loads(out)
    assert (listed["state"], listed["subject"]) == ("released", "Scanner jammed")
    code, out, _ = run(capsys, "calls", "list", "--config", str(desk))
    assert "Scanner jammed since this morning." in out


def test_show_raw_gives_the_exact_bytes(
    desk: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = mail("Broken", 3) + b"\x00\xff not UTF-8\r\n"
    with store(pg_database) as repo:
        set_aside(repo, "helpdesk", raw, "cannot parse: NUL", NOW, source="pop3")
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    assert main(["quarantine", "show", "1", "--raw", "--config", str(desk)]) == 0
    sys.stdout.flush()
    assert out.getvalue() == raw


def test_deliver_keeps_what_it_cannot_parse_and_replay_retries_it(
    desk: Path,
    pg_database: PgDatabase,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\r\n\r\n")))
    assert main(["deliver", "--config", str(desk)]) == 0  # kept in the store: handled
    capsys.readouterr()
    code, out, _ = run(capsys, "quarantine", "list", "--config", str(desk))
    assert "helpdesk (deliver)" in out
    code, _, err = run(capsys, "quarantine", "release", "1", "--config", str(desk))
    assert code == 2
    assert "quarantine replay 1" in err
    code, _, err = run(capsys, "quarantine", "replay", "1", "--config", str(desk))
    assert code == 1  # still unparseable: it stays held, with the new reason
    assert "still held: replay failed: empty message" in err
    with store(pg_database) as repo:
        [held] = repo.quarantined()
    assert held.state is QuarantineState.HELD
    assert held.resolution.startswith("replay failed")


def test_replay_processes_a_held_message_once(
    desk: Path, pg_database: PgDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    MaildirMailbox(desk.parent / "Maildir").close()
    with store(pg_database) as repo:
        set_aside(
            repo, "helpdesk", mail("Printer offline", 1), "processing failed: x", NOW, source="pop3"
        )
    code, out, err = run(capsys, "quarantine", "replay", "1", "--config", str(desk))
    assert code == 0, err
    assert "replayed quarantine 1: rule LOG-6" in out
    code, _, err = run(capsys, "quarantine", "replay", "1", "--config", str(desk))
    assert code == 2
    assert "replayed already" in err
    with store(pg_database) as repo:
        [entry] = repo.quarantined(state=None)
        calls, total = repo.recent_calls()
    assert entry.state is QuarantineState.REPLAYED
    assert total == 1
    assert calls[0].description.startswith("Printer offline since this morning.")


def test_calls_next_number_moves_the_sequence_up_never_down(
    desk: Path, pg_database: PgDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    # After a restore (pg_restore of a dump taken before calls were logged), the numbers
    # handed out since are moved past with `calls next-number --at-least N`.
    maildir = desk.parent / "Maildir"
    MaildirMailbox(maildir).close()
    (maildir / "new" / "1.eml").write_bytes(mail("Printer down", 1))
    assert run(capsys, "poll", "--once", "--config", str(desk))[0] == 0
    assert run(capsys, "calls", "next-number", "--config", str(desk))[1] == (
        "the next call will be number 2\n"
    )
    code, out, _ = run(capsys, "calls", "next-number", "--at-least", "500", "--config", str(desk))
    assert (code, out) == (0, "the next call will be number 500 (was 2)\n")
    code, out, _ = run(capsys, "calls", "next-number", "--at-least", "7", "--config", str(desk))
    assert (code, out) == (0, "the next call will be number 500\n")
    (maildir / "new" / "2.eml").write_bytes(mail("Scanner down", 2))
    assert run(capsys, "poll", "--once", "--config", str(desk))[0] == 0
    with store(pg_database) as repo:
        assert [call.number for call in repo.recent_calls()[0]] == [500, 1]
