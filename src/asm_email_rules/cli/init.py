"""``asm-email-rules init DIR``: a starter config.toml and an empty store, never overwriting.

With ``--store postgresql://USER@HOST/DATABASE`` the store is that PostgreSQL database instead
of a SQLite file in DIR: its tables are created (the database itself must exist), and the
config names where the password comes from (``--store-password-env`` or
``--store-password-file``), never the password.
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from asm_email_rules.bootstrap import open_store
from asm_email_rules.cli._common import EXIT_OK, PROG, UsageError
from asm_email_rules.config import PostgresStore, parse_config, store_location

NAME = "init"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``init`` and its argument."""
    parser = commands.add_parser(
        NAME,
        help="write a sample config.toml and an empty store into DIR",
        description="Write DIR/config.toml (a commented sample) and an empty SQLite store "
        "DIR/helpdesk.sqlite3, or, with --store, create the tables in a PostgreSQL database. "
        "Existing files are never overwritten.",
    )
    parser.add_argument(
        "dir", metavar="DIR", help="the desk's folder (created if missing), e.g. /srv/helpdesk"
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="a PostgreSQL database, postgresql://USER@HOST:PORT/DATABASE (no password in it)",
    )
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--store-password-env", metavar="VAR", help="environment variable holding its password"
    )
    secret.add_argument("--store-password-file", metavar="FILE", help="file holding its password")
    parser.add_argument("--store-schema", metavar="NAME", help="schema for our tables")
    parser.set_defaults(handler=run)


def starter_config() -> str:
    """The config.toml that ``init`` writes: package data ``asm_email_rules/data/config.toml``.

    A local Maildir account and no ``[smtp]`` (replies recorded as pending), so it runs as
    written; ``examples/config.toml`` is the reference with every key.
    """
    data = resources.files("asm_email_rules") / "data" / "config.toml"
    return data.read_text(encoding="utf-8")


_STORE_LINES = re.compile(r"^# The SQLite store[^\n]*\nstore = [^\n]*\n", re.MULTILINE)


def postgres_config(args: argparse.Namespace) -> str:
    """The starter config with its ``store`` lines naming the PostgreSQL database of ``args``."""
    lines = [
        "# The PostgreSQL store (people, calls, tasks, requests, the processed-message ledger),",
        "# which any number of pollers on any number of hosts may share. No password here.",
        f"store = {json.dumps(args.store)}",
    ]
    if args.store_password_env:
        lines.append(f"store_password_env = {json.dumps(args.store_password_env)}")
    if args.store_password_file:
        path = str(Path(args.store_password_file).expanduser().resolve())
        lines.append(f"store_password_file = {json.dumps(path)}")
    if args.store_schema:
        lines.append(f"store_schema = {json.dumps(args.store_schema)}")
    text, found = _STORE_LINES.subn("\n".join(lines) + "\n", starter_config(), count=1)
    if not found:  # pragma: no cover - guards the packaged template against edits
        raise RuntimeError("the starter config has no store line to replace")
    return text


def run(args: argparse.Namespace) -> int:
    """Write the config and create the store; exit 2 when a file exists, the folder cannot be
    written, or the PostgreSQL server refuses the login or the database; 3 when it does not
    answer (nothing is written then)."""
    folder = Path(args.dir)
    config_path = folder / "config.toml"
    if args.store is None:
        for option in ("store_password_env", "store_password_file", "store_schema"):
            if getattr(args, option):
                raise UsageError(f"--{option.replace('_', '-')} needs --store")
        return _init_sqlite(folder, config_path)
    if not isinstance(store_location(args.store, folder), PostgresStore):
        raise UsageError("--store must be a postgresql:// URL (the default is a SQLite file)")
    if config_path.exists():
        raise UsageError(f"{config_path} already exists: not overwriting")
    text = postgres_config(args)
    config = parse_config(tomllib.loads(text), config_path.resolve())
    open_store(
        config.require_store()
    ).close()  # creates or migrates our tables; ConfigError if it fails
    _write(folder, config_path, text)
    print(f"wrote {config_path}; the store is {config.store} (tables created)")
    _next_steps(config_path)
    return EXIT_OK


def _init_sqlite(folder: Path, config_path: Path) -> int:
    store_path = folder / "helpdesk.sqlite3"
    for path in (config_path, store_path):
        if path.exists():
            raise UsageError(f"{path} already exists: not overwriting")
    _write(folder, config_path, starter_config())
    open_store(store_path).close()
    maildir = folder / "Maildir"
    try:
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{maildir}: cannot create: {exc.strerror or exc}") from None
    print(f"wrote {config_path}, an empty store {store_path} and the Maildir {maildir}")
    _next_steps(config_path)
    return EXIT_OK


def _next_steps(config_path: Path) -> None:
    """What to do next: an empty store knows nobody, so every message would be discarded."""
    print("next:")
    print(f"  {PROG} people import people.csv --config {config_path}   (or: people add)")
    print(f"  edit {config_path} (addresses, default_logging_analyst_id = an analyst's id)")
    print(f"  {PROG} check --config {config_path}")
    print(f"  {PROG} poll --once --config {config_path}")


def _write(folder: Path, config_path: Path, text: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        config_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{folder}: cannot write: {exc.strerror or exc}") from None
