"""``asm-email-rules replies list|resend``: the store's reply outbox, for operators.

``list`` shows the replies in the outbox (by default all of them, newest first; ``--failed``,
``--pending``, ``--sent`` narrow it). ``resend`` puts failed replies back in the outbox, with
a new retry window, and sends them at once through ``[smtp]`` (without it they wait for the
polling service). A resent reply keeps its Message-ID, so threading still works.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from asm_email_rules.bootstrap import make_mailer, open_store
from asm_email_rules.cli._common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REPLIES_FAILED,
    EXIT_TRANSPORT,
    PROG,
    UsageError,
    close_mailer,
    outbox_when,
    print_table,
)
from asm_email_rules.config import Config, load_config, no_account
from asm_email_rules.model import OutboxEntry, ReplyStatus
from asm_email_rules.protocols import Mailer, Repository
from asm_email_rules.send import SendResult, default_owner, send_reply
from asm_email_rules.settings import SystemSettings

NAME = "replies"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``replies`` with its two actions, ``list`` and ``resend``."""
    parser = commands.add_parser(
        NAME,
        help="list the replies in the store's outbox, or resend failed ones",
        description="The outbox keeps every reply with its state: pending (waiting to be "
        "sent or retried), sent, or failed (refused by the SMTP server, or given up after "
        "reply_retry_hours). Failed replies can be resent.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="list replies, newest first",
        description="List the outbox's replies, newest first: Message-ID, status, attempts, "
        "recipient, when queued, the next attempt (pending) or when sent, and the last error.",
    )
    _common_options(listing)
    for status in ("failed", "pending", "sent"):
        listing.add_argument(
            f"--{status}", action="store_true", help=f"only {status} replies (combinable)"
        )
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (100)")
    listing.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line, per reply, with its body (JSON Lines)",
    )
    resend = actions.add_parser(
        "resend",
        help="requeue failed replies and send them now",
        description="Put failed replies back in the outbox (a new retry window, the same "
        "Message-ID) and send them now through [smtp]; without [smtp] they wait for the "
        "polling service. Exit 0 when all were sent (or queued), 3 when one met a temporary "
        "failure (it stays queued), 4 when one failed for good again, 2 when a Message-ID is "
        "unknown or its reply is not failed.",
    )
    _common_options(resend)
    resend.add_argument("message_ids", metavar="MESSAGE-ID", nargs="*", help="our reply's id")
    resend.add_argument(
        "--all-failed", action="store_true", help="every failed reply (of --account, if given)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """``replies list`` or ``replies resend``, as ``args.action`` says."""
    return run_list(args) if args.action == "list" else run_resend(args)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="F", required=True, help="configuration file")
    parser.add_argument("--account", metavar="NAME", help="only this account's replies")


def _open(
    args: argparse.Namespace, *, sends: bool = False
) -> tuple[Repository, SystemSettings, str | None, Config]:
    """The store, the system settings, the account's mailbox name (or None) and the config;
    its secrets are read only for a command that ``sends`` (the SMTP ones: replies are not
    read from any account's mailbox)."""
    config = load_config(args.config, secrets=sends, secret_accounts=no_account)
    mailbox = config.account(args.account).mailbox.name if args.account else None
    return open_store(config.require_store(), must_exist=True), config.system, mailbox, config


def _as_dict(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "message_id": entry.reply.message_id,
        "status": entry.status.value,
        "attempts": entry.attempts,
        "to": entry.reply.to,
        "subject": entry.reply.subject,
        "body": entry.reply.body,
        "account": entry.mailbox,
        "incoming_message_id": entry.message_id,
        "queued_at": entry.queued_at.isoformat(),
        "next_attempt_at": entry.next_attempt_at.isoformat(),
        "sent_at": entry.sent_at.isoformat() if entry.sent_at else None,
        "last_error": entry.last_error,
    }


def run_list(args: argparse.Namespace) -> int:
    """Print the replies asked for, as a table (or JSON lines with ``--json``)."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    wanted = [s for s in ReplyStatus if getattr(args, s.value, False)]
    repository, _, mailbox, _ = _open(args)
    try:
        entries = repository.list_replies(wanted or None, mailbox=mailbox, limit=args.limit + 1)
    finally:
        _close(repository)
    if len(entries) > args.limit:  # on stderr: --json keeps one object per line on stdout
        entries = entries[: args.limit]
        print(f"(the newest {args.limit} only: --limit N for more)", file=sys.stderr)
    if args.json:
        for entry in entries:
            print(json.dumps(_as_dict(entry), ensure_ascii=False))
        return EXIT_OK
    if not entries:
        print("no replies")
        return EXIT_OK
    rows = [["MESSAGE-ID", "STATUS", "TRIES", "TO", "QUEUED", "NEXT / SENT", "LAST ERROR"]]
    for entry in entries:
        when = entry.sent_at if entry.status is ReplyStatus.SENT else entry.next_attempt_at
        if entry.status is ReplyStatus.FAILED:
            when = None
        rows.append(
            [
                entry.reply.message_id,
                entry.status.value,
                str(entry.attempts),
                entry.reply.to,
                outbox_when(entry.queued_at),
                outbox_when(when),
                entry.last_error,
            ]
        )
    print_table(rows, sys.stdout)
    return EXIT_OK


def run_resend(args: argparse.Namespace) -> int:
    """Requeue the named (or all failed) replies and send them now when [smtp] is set."""
    if bool(args.message_ids) == bool(args.all_failed):
        raise UsageError("name the replies to resend, or give --all-failed (not both)")
    repository, system, mailbox, config = _open(args, sends=True)
    try:
        ids = list(args.message_ids)
        if args.all_failed:
            failed = repository.list_replies([ReplyStatus.FAILED], mailbox=mailbox, limit=10_000)
            ids = [entry.reply.message_id for entry in failed]
            if not ids:
                print("no failed replies")
                return EXIT_OK
        mailer = make_mailer(config)
        if mailer is None:
            print("no [smtp] section: the replies are queued for the polling service to send")
        try:
            return _resend(ids, repository, mailer, system)
        finally:
            close_mailer(mailer)
    finally:
        _close(repository)


def _resend(
    ids: list[str], repository: Repository, mailer: Mailer | None, system: SystemSettings
) -> int:
    code, owner = EXIT_OK, default_owner()
    for message_id in ids:
        current = repository.outbox_entry(message_id)
        if current is None or current.status is not ReplyStatus.FAILED:
            why = "no such reply in the outbox"
            if current is not None:
                why = f"the reply is {current.status.value}, not failed: nothing to resend"
            print(f"{PROG}: {message_id}: {why}", file=sys.stderr)
            code = max(code, EXIT_CONFIG)
            continue
        entry = repository.requeue_reply(message_id, datetime.now(UTC))
        if mailer is None:
            print(f"{entry.reply.message_id}: queued (to {entry.reply.to})")
            continue
        outcome = send_reply(
            entry.reply.message_id,
            repository,
            mailer,
            system,
            owner=owner,
            clock=lambda: datetime.now(UTC),
        )
        if outcome is None:  # another sender claimed it meanwhile: it is on its way
            print(f"{entry.reply.message_id}: queued; another sender is sending it")
            continue
        detail = f" ({outcome.error})" if outcome.error else ""
        print(f"{entry.reply.message_id}: {outcome.result.value} (to {outcome.to}){detail}")
        if outcome.result in (SendResult.REFUSED, SendResult.GAVE_UP):
            code = max(code, EXIT_REPLIES_FAILED)
        elif outcome.result is SendResult.DEFERRED:
            code = max(code, EXIT_TRANSPORT)
    return code


def _close(repository: Repository) -> None:
    close = getattr(repository, "close", None)
    if close is not None:
        close()
