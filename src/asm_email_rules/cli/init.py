"""``asm-email-rules init DIR``: a starter config.toml and an empty store, never overwriting."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli._common import EXIT_OK, PROG, UsageError

NAME = "init"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``init`` and its argument."""
    parser = commands.add_parser(
        NAME,
        help="write a sample config.toml and an empty store into DIR",
        description="Write DIR/config.toml (a commented sample) and an empty SQLite store "
        "DIR/helpdesk.sqlite3. Existing files are never overwritten.",
    )
    parser.add_argument("dir", metavar="DIR")
    parser.set_defaults(handler=run)


def starter_config() -> str:
    """The config.toml that ``init`` writes: package data ``asm_email_rules/data/config.toml``.

    A local Maildir account and no ``[smtp]`` (replies recorded as pending), so it runs as
    written; ``examples/config.toml`` is the reference with every key.
    """
    data = resources.files("asm_email_rules") / "data" / "config.toml"
    return data.read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Write the two files; exit 2 when either exists or the folder cannot be written."""
    folder = Path(args.dir)
    config_path = folder / "config.toml"
    store_path = folder / "helpdesk.sqlite3"
    for path in (config_path, store_path):
        if path.exists():
            raise UsageError(f"{path} already exists: not overwriting")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        config_path.write_text(starter_config(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{folder}: cannot write: {exc.strerror or exc}") from None
    SqliteRepository(store_path).close()
    print(f"wrote {config_path} and an empty store {store_path}")
    print(f"next: edit the config, then `{PROG} poll --once --config {config_path}`")
    return EXIT_OK
