"""``asm-email-rules explain FILE.eml``: the decision for one message and why; changes nothing."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.bootstrap import open_sample_store, open_store, schema_behind
from asm_email_rules.cli._common import (
    EXIT_MESSAGE,
    EXIT_OK,
    STDIN,
    read_file,
    read_limit,
    settings_for,
)
from asm_email_rules.config import Config, PostgresStore, store_location
from asm_email_rules.errors import ConfigError, MessageParseError
from asm_email_rules.intake import parse_message
from asm_email_rules.ledger_key import find_ledger_entry
from asm_email_rules.pipeline import explain
from asm_email_rules.protocols import Repository

NAME = "explain"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``explain`` and its options."""
    parser = commands.add_parser(
        NAME,
        help="dry run: print the decision for one message and why",
        description="Decide what would happen to FILE.eml without changing anything (no "
        "password is needed; a store that does not exist yet counts as empty). Without "
        "--config and --store the sample desk and the demo mailbox options are used.",
    )
    parser.add_argument("file", metavar="FILE.eml", help="the message (- for standard input)")
    parser.add_argument("--config", metavar="F", help="configuration file (mailbox settings)")
    parser.add_argument(
        "--store",
        metavar="DB",
        help="store to read: a SQLite file or a postgresql:// URL (default: config's)",
    )
    parser.add_argument(
        "--account", metavar="NAME", help="account whose settings to use (default: the first)"
    )
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.set_defaults(handler=run)


def _store(args: argparse.Namespace, config: Config | None) -> tuple[Repository, str]:
    """``--store``, else the configuration's store, else the sample desk in memory; and its
    name for the output. A configured store that does not exist yet is an empty one (nothing
    is created: this is a dry run)."""
    if args.store:
        return _as_it_is(store_location(args.store, Path.cwd())), args.store
    if config is not None:
        store = config.require_store()
        if isinstance(store, Path) and not store.exists():
            empty = f"an empty store ({store} does not exist yet)"
            return InMemoryRepository(), empty
        return _as_it_is(store), str(store)
    return open_sample_store(), "the sample desk (in memory)"


def _as_it_is(location: Path | PostgresStore) -> Repository:
    """The store at ``location``, not migrated (a dry run changes nothing); ConfigError when
    its schema is older than this version reads (:func:`schema_behind`)."""
    repository = open_store(location, must_exist=True, migrate=False)
    behind = schema_behind(repository)
    if behind is not None:
        repository.close()
        raise ConfigError(f"cannot explain against it: {behind}", source=str(location))
    return repository


def run(args: argparse.Namespace) -> int:
    """Print the decision (text or ``--json``); exit 1 when the message cannot be parsed."""
    config, mailbox, system = settings_for(args, secrets=False)
    raw = read_file(args.file, read_limit(system.limits))
    repository, store = _store(args, config)
    try:
        decision = explain(raw, repository, mailbox, system, datetime.now(UTC))
        recorded = find_ledger_entry(
            repository, mailbox.name, parse_message(raw, limits=system.limits)
        )
    except MessageParseError as exc:
        if args.json:
            print(json.dumps({"error": f"cannot parse: {exc}"}))
            return EXIT_MESSAGE
        raise
    finally:
        close = getattr(repository, "close", None)
        if close is not None:
            close()
    name = "standard input" if args.file == STDIN else args.file
    if recorded is not None:  # a poll (or process) would act on nothing: say so first
        when = recorded.processed_at.isoformat(timespec="seconds") if recorded.processed_at else "?"
        note = (
            f"{name} is in the ledger of mailbox {mailbox.name} (processed {when}, reply "
            f"{recorded.reply_status.value}): a poll or process would do nothing again; the "
            "decision below is what the rules give it as a new message"
        )
        print(note, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(decision.to_json())
    else:
        print(f"dry run of {name} against {store}, mailbox {mailbox.name}: nothing changed")
        print(decision.explain())
    return EXIT_OK
