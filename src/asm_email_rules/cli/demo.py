"""``asm-email-rules demo``: the sample inbox through a temporary SQLite helpdesk, no network."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import attrs

from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.bootstrap import open_sample_store
from asm_email_rules.cli._common import EXIT_OK, demo_mailbox, print_table, read_inbox, reply_dict
from asm_email_rules.decision import Decision
from asm_email_rules.errors import MessageParseError
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.pipeline import process
from asm_email_rules.sample import DEMO_MAILBOX_OPTIONS, DEMO_NOW, DEMO_SYSTEM, demo_inbox

NAME = "demo"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``demo`` and its options."""
    parser = commands.add_parser(
        NAME,
        help="run the sample inbox through a temporary SQLite helpdesk (no network)",
        description="Create a temporary SQLite helpdesk seeded with the sample desk, run every "
        ".eml of the demo inbox through the rules and print the decisions and the replies.",
    )
    parser.add_argument("--inbox", metavar="DIR", help="a folder of .eml files to use instead")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


@attrs.frozen
class DemoRow:
    """One demo message: its decision and the replies it sent, or why it could not be parsed."""

    name: str
    decision: Decision | None
    replies: tuple[OutgoingEmail, ...]
    error: str = ""


def _tokens() -> Callable[[], str]:
    """Predictable Message-ID tokens (demo0001, demo0002, ...) so the output is stable."""
    counter = itertools.count(1)
    return lambda: f"demo{next(counter):04d}"


def run_demo(inbox: list[tuple[str, bytes]]) -> list[DemoRow]:
    """Process ``inbox`` (file name, bytes) in order against a fresh sample desk."""
    mailbox = demo_mailbox()
    mailer = RecordingMailer()
    rows: list[DemoRow] = []
    token = _tokens()
    with tempfile.TemporaryDirectory(prefix="asm-demo-") as folder:
        repository = open_sample_store(Path(folder) / "demo.sqlite3")
        try:
            for name, raw in inbox:
                before = len(mailer.sent)
                try:
                    result = process(
                        raw, repository, mailer, mailbox, DEMO_SYSTEM, DEMO_NOW, random_token=token
                    )
                except MessageParseError as exc:
                    rows.append(DemoRow(name, None, (), f"cannot parse: {exc}"))
                    continue
                rows.append(DemoRow(name, result.decision, tuple(mailer.sent[before:])))
        finally:
            close = getattr(repository, "close", None)
            if close is not None:
                close()
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the demo as a table and the replies, or as JSON with ``--json``."""
    inbox = read_inbox(Path(args.inbox)) if args.inbox else demo_inbox()
    rows = run_demo(inbox)
    if args.json:
        _print_json(rows, sys.stdout)
    else:
        _print_text(rows, args.inbox or "the demo inbox shipped with the package", sys.stdout)
    return EXIT_OK


def _print_json(rows: list[DemoRow], out: TextIO) -> None:
    data = [
        {
            "file": row.name,
            "decision": row.decision.to_dict() if row.decision else None,
            "replies": [reply_dict(reply) for reply in row.replies],
            "error": row.error or None,
        }
        for row in rows
    ]
    json.dump(data, out, ensure_ascii=False, indent=2)
    print(file=out)


def _print_text(rows: list[DemoRow], where: str, out: TextIO) -> None:
    _print_header(len(rows), where, out)
    print_table(_summary_rows(rows), out)
    print("\nReplies", file=out)
    for row in rows:
        for sent in row.replies:
            print(f"\n--- {row.name}", file=out)
            print(f"To: {sent.to}\nSubject: {sent.subject}\n", file=out)
            print(sent.body.rstrip("\n"), file=out)


def _print_header(count: int, where: str, out: TextIO) -> None:
    options = ", ".join(f"{name}=on" for name in DEMO_MAILBOX_OPTIONS)
    print(f"asm-email-rules demo: {count} messages from {where}", file=out)
    print(
        "Store: a temporary SQLite helpdesk seeded with the sample desk (Dana: default logging "
        "analyst; Alice: analyst; Uma: user; Bob: analyst and user; Tom: analyst with Take "
        "Over; calls 100 open, 101 closed, 102 open; approval 500, user approval 501, "
        "task 502, request 700).",
        file=out,
    )
    print(
        f"Mailbox helpdesk@desk.example: {options}; system: truncate_incoming_emails=on.", file=out
    )
    print(
        "No network: replies are recorded, not sent. (Alice shows as analyst_and_user once "
        "she has logged a call: the spec then selects her User flag.)\n",
        file=out,
    )


def _summary_rows(rows: list[DemoRow]) -> list[tuple[str, ...]]:
    """One table row per message: sender case, rule, actions and the reply's subject."""
    table: list[tuple[str, ...]] = [("message", "sender", "rule", "actions", "reply")]
    for row in rows:
        if row.decision is None:
            table.append((row.name, "-", "-", row.error, "-"))
            continue
        decision = row.decision
        reply = row.replies[0].subject if row.replies else "-"
        if not row.replies and decision.reply_suppressed:
            reply = f"(none: {decision.reply_suppressed})"
        actions = ", ".join(kind for kind in decision.action_kinds() if kind != "discard")
        table.append(
            (row.name, decision.person_case.value, decision.rule, actions or "(none)", reply)
        )
    return table
