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
from asm_email_rules.model import Call, OutgoingEmail
from asm_email_rules.pipeline import process
from asm_email_rules.sample import (
    DEMO_MAILBOX_OPTIONS,
    DEMO_NOW,
    DEMO_SYSTEM,
    PEOPLE,
    demo_inbox,
)

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
    """One demo message: its decision, the mails it sent (the reply first, then any
    notification), the call it logged (as stored) and its User's stored name, or why it could
    not be parsed."""

    name: str
    decision: Decision | None
    replies: tuple[OutgoingEmail, ...]
    error: str = ""
    new_call: Call | None = None
    new_call_user: str = ""

    @property
    def reply(self) -> OutgoingEmail | None:
        """The mail that went back to the sender, if any."""
        if self.decision is None or self.decision.reply is None or not self.replies:
            return None
        return self.replies[0]

    @property
    def notifications(self) -> tuple[OutgoingEmail, ...]:
        """The notifications sent to an assignee (Email at Update via Email In)."""
        return self.replies[1:] if self.reply is not None else self.replies


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
                number = result.new_call_number
                new_call = repository.get_call(number) if number is not None else None
                user_id = new_call.user_id if new_call is not None else None
                user = repository.get_person(user_id) if user_id is not None else None
                rows.append(
                    DemoRow(
                        name,
                        result.decision,
                        tuple(mailer.sent[before:]),
                        new_call=new_call,
                        new_call_user=user.name if user is not None else "",
                    )
                )
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
            "notifications": [reply_dict(mail) for mail in row.notifications],
            "new_call": _call_dict(row.new_call),
            "error": row.error or None,
        }
        for row in rows
    ]
    json.dump(data, out, ensure_ascii=False, indent=2)
    print(file=out)


def _call_dict(call: Call | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {
        "number": call.number,
        "user_id": call.user_id,
        "logging_analyst_id": call.logging_analyst_id,
        "partition": call.partition,
        "call_screen_set": call.call_screen_set,
        "ipk_status": call.ipk_status,
        "ipk_stream": call.ipk_stream,
        "owner_id": call.owner_id,
        "group": call.group,
    }


def _print_text(rows: list[DemoRow], where: str, out: TextIO) -> None:
    _print_header(len(rows), where, out)
    print_table(_summary_rows(rows), out)
    calls = [row for row in rows if row.new_call is not None]
    if calls:
        print("\nCalls logged, with the properties of the mailbox's call template", file=out)
        heading = ("call", "User", "logged by", "partition", "call screen set", "IPK status")
        table: list[tuple[str, ...]] = [(*heading, "IPK stream", "analyst", "group")]
        for row in calls:
            call = row.new_call
            assert call is not None
            table.append(
                (
                    str(call.number),
                    _id(call.user_id, row.new_call_user),
                    _id(call.logging_analyst_id),
                    call.partition,
                    call.call_screen_set,
                    call.ipk_status,
                    call.ipk_stream,
                    _id(call.owner_id),
                    call.group,
                )
            )
        print_table(table, out)
    print(
        "\nMail sent (replies to the sender; notifications to the assigned analyst or group)",
        file=out,
    )
    for row in rows:
        for sent in row.replies:
            label = "reply" if sent is row.reply else "notification"
            print(f"\n--- {row.name} ({label})", file=out)
            print(f"To: {sent.to}\nSubject: {sent.subject}\n", file=out)
            print(sent.body.rstrip("\n"), file=out)
    print(_NEXT, file=out)


_NEXT = """
Next, a desk of your own (docs/operators.md, "First steps"): init writes a configuration that
reads a local Maildir and an empty store; add your people, then drop .eml files into its new/.
  asm-email-rules init DIR
  asm-email-rules people import people.csv --config DIR/config.toml   (email,name,analyst,user)
  asm-email-rules check --config DIR/config.toml
  asm-email-rules poll --once --config DIR/config.toml"""


def _id(value: int | None, stored_name: str = "") -> str:
    """A sample person's first name; for someone the demo created (a new User), the first
    word of the name the store gave them and "(new)", else "person <id>"."""
    if value is None:
        return "-"
    names = {person.id: person.name.split()[0] for person in PEOPLE}
    if value in names:
        return names[value]
    first = stored_name.split()[0] if stored_name.split() else f"person {value}"
    return f"{first} (new)"


def _print_header(count: int, where: str, out: TextIO) -> None:
    options = ", ".join(f"{name}=on" for name in DEMO_MAILBOX_OPTIONS)
    print(f"asm-email-rules demo: {count} messages from {where}", file=out)
    print(
        "Store: a temporary SQLite helpdesk seeded with the sample desk (Dana: default logging "
        "analyst; Alice: analyst; Uma: user; Bob: analyst and user; Tom: analyst whose IPK "
        "Managers role has Take Over; calls 100 open, 101 closed, 102 open; approval 500, "
        "user approval 501, task 502, request 700 (Alice's), request 701 (Alice forwarded it "
        "to Tom); groups Service Desk and Network with their addresses).",
        file=out,
    )
    print(
        f"Mailbox helpdesk@desk.example: {options}; call template 'Email call' (partition "
        "Default, call screen set Standard, IPK status Incident, IPK stream Service Desk, "
        "Alice, Service Desk); system: truncate_incoming_emails=on, "
        "email_at_update_via_email_in=on.",
        file=out,
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
        reply = row.reply.subject if row.reply is not None else "-"
        if row.reply is None and decision.reply_suppressed:
            reply = f"(none: {decision.reply_suppressed})"
        actions = ", ".join(kind for kind in decision.action_kinds() if kind != "discard")
        if not actions:  # say why nothing is done (an auto-reply, a bounce), as poll logs it
            actions = f"(none: {decision.discard_reason})" if decision.discard_reason else "(none)"
        table.append((row.name, decision.person_case.value, decision.rule, actions, reply))
    return table
