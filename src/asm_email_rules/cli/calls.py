"""``asm-email-rules calls list|show|next-number``: the calls in the store (SQLite or
PostgreSQL), one call's log, and the number the next call gets.

What email did to the desk, without SQL: every call with its state, User, assigned analyst
and group, and for one call its history, notes, attached objects and notifications.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import attrs

from asm_email_rules.adapters._sql import SqlRepository
from asm_email_rules.cli._common import EXIT_OK, UsageError, print_table, store_for, utc_minute
from asm_email_rules.model import Call, CallStatus, EntityKind, EntityRef
from asm_email_rules.subject import MAX_NUMBER_DIGITS

NAME = "calls"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``calls`` and its two actions."""
    parser = commands.add_parser(
        NAME,
        help="list the calls in the store, or show one with its log",
        description="The calls of the store (newest first), or one call with its "
        "history, notes, attached objects and notifications.",
    )
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list calls, newest first", description="List calls.")
    listing.add_argument("--status", choices=[s.value for s in CallStatus], help="only these")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="one call and its log", description="Show one call.")
    show.add_argument(
        "number", metavar="NUMBER", type=int, help="the call number (see `calls list`)"
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    numbering = actions.add_parser(
        "next-number",
        help="the number the next call gets; --at-least N moves it up (after a restore)",
        description="Print the number the next call logged by email will get. With "
        "--at-least N, move it up to N if it is lower (never down): after restoring a backup, "
        "so the numbers handed out since the backup, which customers hold as [CALL#n] in "
        "our replies, are not given to new calls again.",
    )
    numbering.add_argument("--at-least", metavar="N", type=int, help="the lowest number to give")
    for sub in (listing, show, numbering):
        sub.add_argument("--config", metavar="F", help="configuration file (its store)")
        sub.add_argument("--store", metavar="DB", help="the SQLite store (instead of --config)")


def _when(moment: datetime | None) -> str:
    return utc_minute(moment)


def _who(repo: SqlRepository, person_id: int | None) -> str:
    if person_id is None:
        return "-"
    person = repo.get_person(person_id)
    if person is None:
        return f"{person_id} (no such person)"
    return f"{person_id} {person.name or person.email}"


def _first_line(text: str, width: int = 60) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def _call_dict(call: Call) -> dict[str, Any]:
    data = attrs.asdict(call)
    data["status"] = call.status.value
    data["last_update"] = call.last_update.isoformat() if call.last_update else None
    return data


def run_list(args: argparse.Namespace) -> int:
    """The calls as a table (or JSON), newest number first."""
    if args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    status = CallStatus(args.status) if args.status else None
    with store_for(args) as repo:
        calls, total = repo.recent_calls(status=status, limit=args.limit)
        if args.json:
            print(json.dumps([_call_dict(c) for c in calls], ensure_ascii=False, indent=2))
            return EXIT_OK
        if not calls:
            print("no calls" + (f" with status {status.value}" if status else ""))
            return EXIT_OK
        rows: list[Sequence[str]] = [
            ("call", "status", "user", "analyst", "group", "last update", "description")
        ]
        for call in calls:
            rows.append(
                (
                    str(call.number),
                    call.status.value,
                    _who(repo, call.user_id),
                    _who(repo, call.owner_id),
                    call.group or "-",
                    _when(call.last_update),
                    _first_line(call.description),
                )
            )
    print_table(rows, sys.stdout)
    if total > len(calls):
        print(f"({len(calls)} of {total} shown; --limit {total} shows all)")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """One call, its description and its log, oldest entry first."""
    ref = EntityRef(EntityKind.CALL, args.number)
    with store_for(args) as repo:
        call = repo.get_call(args.number)
        if call is None:
            raise UsageError(f"no call {args.number} (see `calls list`)")
        entries = list(repo.entries(ref))
        if args.json:
            data = _call_dict(call)
            data["log"] = [
                {
                    "kind": entry.kind.value,
                    "text": entry.text,
                    "author": entry.author,
                    "security_profile": entry.security_profile,
                    "at": entry.at.isoformat() if entry.at else None,
                }
                for entry in entries
            ]
            print(json.dumps(data, ensure_ascii=False, indent=2))
            return EXIT_OK
        print(f"call {call.number}: {call.status.value}")
        print(f"  user: {_who(repo, call.user_id)}")
        print(f"  logged by: {_who(repo, call.logging_analyst_id)}")
        print(f"  analyst: {_who(repo, call.owner_id)}; group: {call.group or '-'}")
        if call.partition:
            print(f"  partition: {call.partition}")
        print(f"  last update: {_when(call.last_update)}" + ("; updated" if call.updated else ""))
    print("  description:")
    for line in call.description.splitlines() or [""]:
        print(f"    {line}")
    print(f"  log ({len(entries)}):")
    for entry in entries:  # each entry whole: `show` is where the history is read
        who = f" by {entry.author}" if entry.author else ""
        profile = f" [{entry.security_profile}]" if entry.security_profile else ""
        print(f"    {_when(entry.at)} {entry.kind.value}{who}{profile}:")
        for line in entry.text.splitlines() or [""]:
            print(f"      {line}")
    return EXIT_OK


_LARGEST_NUMBER = 10**MAX_NUMBER_DIGITS - 1
"""The largest call number a subject token (``[CALL#n]``) is read with."""


def run_next_number(args: argparse.Namespace) -> int:
    """Say the next call's number; with ``--at-least N`` move it up to N first."""
    if args.at_least is not None and args.at_least < 1:
        raise UsageError("--at-least must be 1 or more")
    if args.at_least is not None and args.at_least > _LARGEST_NUMBER:
        # the numbering never moves down: a number replies cannot carry would be for good
        raise UsageError(
            f"--at-least must be at most {_LARGEST_NUMBER} ({MAX_NUMBER_DIGITS} digits): a "
            "longer call number is not read back from the [CALL#n] of a customer's answer"
        )
    with store_for(args) as repo:
        before = repo.next_call_number()
        if args.at_least is None or args.at_least <= before:
            print(f"the next call will be number {before}")
            return EXIT_OK
        after = repo.raise_next_call_number(args.at_least)
    print(f"the next call will be number {after} (was {before})")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run the action named on the command line."""
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "list": run_list,
        "show": run_show,
        "next-number": run_next_number,
    }
    return actions[args.action](args)
