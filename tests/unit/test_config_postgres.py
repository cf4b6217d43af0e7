"""``store = "postgresql://..."``: the config selects a PostgreSQL store; its password never
sits in the file, the URL, ``repr`` or a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from asm_email_rules.config import PostgresStore, load_config, store_location
from asm_email_rules.errors import ConfigError

ACCOUNT = """
[[accounts]]
name = "helpdesk"
protocol = "maildir"
path = "Maildir"

[accounts.mailbox]
addresses = ["helpdesk@example.org"]
"""


def _load(tmp_path: Path, top: str) -> PostgresStore | Path:
    path = tmp_path / "config.toml"
    path.write_text(top + ACCOUNT, encoding="utf-8")
    store = load_config(path).store
    assert store is not None
    return store


def test_a_sqlite_path_stays_a_path(tmp_path: Path) -> None:
    assert _load(tmp_path, 'store = "desk.sqlite3"\n') == tmp_path / "desk.sqlite3"


def test_a_postgresql_url_selects_postgres_with_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASM_TEST_DB_PW", "pa55-w0rd")
    store = _load(
        tmp_path,
        'store = "postgresql://asm@db.example:6543/helpdesk"\n'
        'store_password_env = "ASM_TEST_DB_PW"\n'
        'store_schema = "desk"\n',
    )
    assert store == PostgresStore(
        "postgresql://asm@db.example:6543/helpdesk", password="pa55-w0rd", schema="desk"
    )
    assert isinstance(store, PostgresStore)
    assert "pa55-w0rd" not in repr(store)
    assert str(store) == "PostgreSQL server db.example:6543, database helpdesk"


def test_the_password_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "db-password").write_text("fr0m-a-file\n", encoding="utf-8")
    store = _load(
        tmp_path,
        'store = "postgres://asm@db.example/helpdesk"\nstore_password_file = "db-password"\n',
    )
    assert isinstance(store, PostgresStore)
    assert store.password == "fr0m-a-file"
    assert str(store) == "PostgreSQL server db.example:5432, database helpdesk"


def test_no_password_leaves_it_to_libpq(tmp_path: Path) -> None:
    store = _load(tmp_path, 'store = "postgresql:///helpdesk?host=/run/postgresql"\n')
    assert store == PostgresStore("postgresql:///helpdesk?host=/run/postgresql")
    assert str(store) == "PostgreSQL server /run/postgresql:5432, database helpdesk"


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (
            'store = "postgresql://asm:hunter2@db.example/helpdesk"\n',
            "store: the URL must not hold the password",
        ),
        (
            'store = "postgresql://asm@db.example/helpdesk?password=hunter2"\n',
            "store: the URL must not hold the password",
        ),
        (
            'store = "postgresql://asm@db.example/helpdesk"\nstore_password = "hunter2"\n',
            "store_password: must not be written here",
        ),
        ('store = "postgresql://asm@db.example"\n', "store: the PostgreSQL URL names no database"),
        ('store = "postgresql://asm@db.example:port/x"\n', "store: not a valid PostgreSQL URL"),
        (
            'store = "postgresql://asm@db.example/x"\nstore_password_env = "ASM_UNSET_VAR_XYZ"\n',
            "store_password_env: environment variable 'ASM_UNSET_VAR_XYZ' is not set",
        ),
        (
            'store = "postgresql://asm@db.example/x"\nstore_password_file = "missing"\n',
            "store_password_file: cannot read",
        ),
        (
            'store = "postgresql://asm@db.example/x"\nstore_schema = "a; DROP TABLE x"\n',
            "store_schema: must be a plain SQL name",
        ),
        (
            'store = "desk.sqlite3"\nstore_password_env = "X"\n',
            "store_password_env: is only for a PostgreSQL store",
        ),
    ],
)
def test_mistakes_name_their_key_and_never_echo_the_password(
    tmp_path: Path, top: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, top)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_store_location_for_the_command_line(tmp_path: Path) -> None:
    assert store_location("desk.db", tmp_path) == tmp_path / "desk.db"
    assert store_location("POSTGRESQL://h/d", tmp_path) == PostgresStore("POSTGRESQL://h/d")
