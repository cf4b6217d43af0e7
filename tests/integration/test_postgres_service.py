"""``store = "postgresql://..."`` end to end: ``init`` creates the tables, ``poll --once`` runs the
demo inbox from a Maildir into PostgreSQL, and the outcome is the one SQLite gives.

The password reaches the program only through an environment variable; it never shows in
the config file, the output or the logs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.postgres import PostgresRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.errors import MessageParseError
from asm_email_rules.intake import parse_message
from asm_email_rules.model import EntityKind, EntityRef
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.sample import (
    CALLS,
    DESK_ADDRESS,
    REQUESTS,
    TASKS,
    demo_inbox,
    seed_sample_desk,
)

if TYPE_CHECKING:
    from postgres_fixtures import PgDatabase

pytestmark = pytest.mark.integration

PASSWORD_ENV = "ASM_TEST_STORE_PASSWORD"

CONFIG = """\
{store}

[system]
truncate_incoming_emails = true

[[accounts]]
name = "helpdesk"
protocol = "maildir"
path = "Maildir"

[accounts.mailbox]
addresses = ["{desk}"]
default_logging_analyst_id = 1
auto_reply = true
create_calls_anonymously = true
update_closed_calls = true
log_new_call_on_invalid_number = true

[accounts.mailbox.call_template]
name = "Email call"
partition = "Default"
assigned_analyst_id = 2
assigned_group = "Service Desk"
"""


def _postgres_lines(db: PgDatabase) -> str:
    return (
        f'store = "{db.conninfo}"\n'
        f'store_password_env = "{PASSWORD_ENV}"\n'
        f'store_schema = "{db.schema}"'
    )


def _open_pg(db: PgDatabase) -> PostgresRepository:
    return PostgresRepository(db.conninfo, password=db.password, schema=db.schema)


def _poll_demo_inbox(
    folder: Path, store_lines: str, repo: SeedableRepository, capsys: pytest.CaptureFixture[str]
) -> str:
    """Seed the sample desk, deliver the demo inbox into a Maildir, ``poll --once``."""
    seed_sample_desk(repo)
    MaildirMailbox(folder / "Maildir").close()  # creates new/, cur/, tmp/
    for second, (_, raw) in enumerate(demo_inbox()):  # one delivery second each: a fixed order
        (folder / "Maildir" / "new" / f"{1_700_000_000 + second}.M1P1.test").write_bytes(raw)
    config = folder / "config.toml"
    config.write_text(CONFIG.format(store=store_lines, desk=DESK_ADDRESS), encoding="utf-8")
    code = main(["poll", "--once", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _outcome(repo: SqliteRepository | PostgresRepository, calls: int) -> dict[str, Any]:
    """What an analyst would see: the records, their logs, and each message's stored reply."""
    numbers = [c.number for c in CALLS] + list(range(103, 103 + calls))
    found: dict[str, Any] = {}
    for number in numbers:
        call = repo.get_call(number)
        entries = repo.entries(EntityRef(EntityKind.CALL, number))
        found[f"call {number}"] = (
            call and (call.status, call.user_id, call.owner_id, call.group, call.description),
            [(e.kind, e.text, e.author, e.security_profile) for e in entries],
        )
    for task in TASKS:
        got = repo.get_task(task.number)
        found[f"task {task.number}"] = got and got.status
    for request in REQUESTS:
        entries = repo.entries(EntityRef(EntityKind.REQUEST, request.number))
        found[f"request {request.number}"] = [(e.kind, e.text) for e in entries]
    return found


def test_poll_on_postgres_acts_as_on_sqlite(
    pg_database: PgDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
    lite_dir, pg_dir = tmp_path / "sqlite", tmp_path / "postgres"
    lite_dir.mkdir()
    pg_dir.mkdir()
    with SqliteRepository(lite_dir / "desk.sqlite3") as lite:
        lite_out = _poll_demo_inbox(lite_dir, 'store = "desk.sqlite3"', lite, capsys)
    with _open_pg(pg_database) as pg:
        pg_out = _poll_demo_inbox(pg_dir, _postgres_lines(pg_database), pg, capsys)
    assert lite_out == pg_out
    assert "helpdesk: processed 18, duplicates 0" in pg_out
    assert list((pg_dir / "Maildir" / "new").iterdir()) == []

    with SqliteRepository(lite_dir / "desk.sqlite3") as lite, _open_pg(pg_database) as pg:
        new_calls = 0
        while lite.get_call(103 + new_calls) is not None:
            new_calls += 1
        assert new_calls >= 3
        assert _outcome(pg, new_calls) == _outcome(lite, new_calls)
        assert pg.get_call(103 + new_calls) is None
        for name, raw in demo_inbox():  # every message has its ledger entry, reply included
            try:
                email = parse_message(raw)
            except MessageParseError:
                continue
            want = lite.ledger_entry("helpdesk", email.message_id or "", email.raw_sha256)
            got = pg.ledger_entry("helpdesk", email.message_id or "", email.raw_sha256)
            assert (got is None) == (want is None), name
            if got is not None and want is not None:
                assert got.reply_status == want.reply_status, name
                assert (got.reply and (got.reply.to, got.reply.subject, got.reply.body)) == (
                    want.reply and (want.reply.to, want.reply.subject, want.reply.body)
                ), name

    assert pg_database.password not in pg_out + caplog.text
    assert pg_database.password not in (pg_dir / "config.toml").read_text()


def test_init_creates_the_tables_and_writes_no_password(
    pg_database: PgDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
    folder = tmp_path / "desk"
    code = main(
        [
            "init",
            str(folder),
            "--store",
            pg_database.conninfo,
            "--store-password-env",
            PASSWORD_ENV,
            "--store-schema",
            pg_database.schema,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    port = pg_database.cluster.port
    assert f"the store is PostgreSQL server 127.0.0.1:{port}, database asm_tests" in out
    text = (folder / "config.toml").read_text()
    assert f'store = "{pg_database.conninfo}"' in text
    assert f'store_password_env = "{PASSWORD_ENV}"' in text
    assert pg_database.password not in text + out
    assert not (folder / "helpdesk.sqlite3").exists()
    with _open_pg(pg_database) as repo:
        assert repo.schema_version >= 1
        assert repo.get_call(1) is None
    # the written config runs as written: poll its empty Maildir once
    code = main(["poll", "--once", "--config", str(folder / "config.toml")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "helpdesk: processed 0" in out


def test_init_writes_nothing_when_the_database_refuses(
    pg_database: PgDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    folder = tmp_path / "desk"
    code = main(
        ["init", str(folder), "--store", pg_database.conninfo, "--store-password-env", PASSWORD_ENV]
    )
    _, err = capsys.readouterr()
    assert code == 2
    assert "database asm_tests" in err
    assert "password authentication failed" in err
    assert "not-the-password" not in err
    assert not (folder / "config.toml").exists()


def test_a_wrong_password_in_the_environment_is_a_configuration_error(
    pg_database: PgDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "Wr0ng-pa55")
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(store=_postgres_lines(pg_database), desk=DESK_ADDRESS), encoding="utf-8"
    )
    code = main(["poll", "--once", "--config", str(config)])
    _, err = capsys.readouterr()
    assert code == 2
    assert f"127.0.0.1:{pg_database.cluster.port}, database asm_tests" in err
    assert "Wr0ng-pa55" not in err
    assert "Traceback" not in err


def test_explain_reads_a_postgres_store(
    pg_database: PgDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _open_pg(pg_database) as repo:
        seed_sample_desk(repo)
    monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(store=_postgres_lines(pg_database), desk=DESK_ADDRESS), encoding="utf-8"
    )
    name, raw = next((n, r) for n, r in demo_inbox() if "close-call-100" in n)
    message = tmp_path / name
    message.write_bytes(raw)
    code = main(["explain", str(message), "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "PostgreSQL server 127.0.0.1" in out
    assert "nothing changed" in out
    with _open_pg(pg_database) as repo:
        call = repo.get_call(100)
        assert call is not None
        assert call.status.value == "open"  # a dry run
