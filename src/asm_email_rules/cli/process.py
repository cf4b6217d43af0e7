"""``asm-email-rules process FILE.eml ...``: apply messages to the configured store and reply."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from asm_email_rules.bootstrap import make_mailer, open_configured_store
from asm_email_rules.cli._common import (
    EXIT_MESSAGE,
    EXIT_OK,
    EXIT_REPLIES_FAILED,
    EXIT_TRANSPORT,
    PROG,
    UsageError,
    close_mailer,
    read_file,
    read_limit,
)
from asm_email_rules.config import AccountConfig, Config, load_config, no_account
from asm_email_rules.errors import AsmEmailError, MessageParseError
from asm_email_rules.ledger_key import find_ledger_entry
from asm_email_rules.model import ReplyStatus
from asm_email_rules.pipeline import ProcessResult, process
from asm_email_rules.protocols import Mailer, Repository

NAME = "process"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``process`` and its options."""
    parser = commands.add_parser(
        NAME,
        help="apply messages to the configured store and send the replies",
        description="Run each FILE.eml through the rules against the configured store; "
        "replies go out through [smtp] (or are recorded as pending without it).",
    )
    parser.add_argument(
        "files", metavar="FILE.eml", nargs="+", help="messages to process (- for standard input)"
    )
    parser.add_argument("--config", metavar="F", required=True, help="configuration file")
    parser.add_argument(
        "--account", metavar="NAME", help="account whose settings to use (default: the first)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Process every file; exit 1 if one could not be processed, 3 if a reply was deferred
    (it waits in the outbox), 4 if one failed for good."""
    config = load_config(args.config, secret_accounts=no_account)
    account = config.account(args.account)
    mailer = make_mailer(config)
    if mailer is None:
        print(
            "no [smtp] section: replies are recorded in the store as pending, not sent",
            file=sys.stderr,
        )
    repository = open_configured_store(config)
    code = EXIT_OK
    try:
        for name in args.files:
            code = max(code, _process_file(name, config, account, repository, mailer))
    finally:
        close_mailer(mailer)
        repository.close()
    return code


def _process_file(
    name: str,
    config: Config,
    account: AccountConfig,
    repository: Repository,
    mailer: Mailer | None,
) -> int:
    """Process one file and print what happened; its exit code (0, 1, 3 or 4)."""
    try:
        raw = read_file(name, read_limit(config.system.limits))
        result = process(raw, repository, mailer, account.mailbox, config.system, datetime.now(UTC))
    except UsageError as exc:  # it names the file
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_MESSAGE
    except MessageParseError as exc:
        print(f"{PROG}: {name}: {exc}", file=sys.stderr)
        return EXIT_MESSAGE
    except AsmEmailError as exc:
        print(f"{PROG}: {name}: processing failed: {exc}", file=sys.stderr)
        return EXIT_MESSAGE
    print(describe_result(name, result))
    for line in _reply_lines(result, repository, account, mailer is None):
        print(f"  {line}")
    if mailer is not None and result.reply_status is ReplyStatus.FAILED:
        return EXIT_REPLIES_FAILED
    if mailer is not None and result.reply_status is ReplyStatus.PENDING:
        return EXIT_TRANSPORT  # deferred: the outbox keeps it for the polling service
    return EXIT_OK


def describe_result(name: str, result: ProcessResult) -> str:
    """One line: the rule and outcome (and why a discard), the reply status, and what a
    mailbox would do with the message (``process`` and ``quarantine replay`` leave it where
    it is: the line says "from a mailbox", not that it was deleted)."""
    disposition = f"from a mailbox: {result.disposition.value}"
    if result.duplicate:  # the reply is the one the first processing recorded
        what = "already processed (ledger): nothing done again"
        return f"{name}: {what}; its recorded reply {result.reply_status.value}; {disposition}"
    assert result.decision is not None  # a result that is not a duplicate has a decision
    what = f"rule {result.decision.rule}: {result.decision.outcome.value}"
    if result.decision.discard_reason:
        what += f" ({result.decision.discard_reason})"
    return f"{name}: {what}; reply {result.reply_status.value}; {disposition}"


def _reply_lines(
    result: ProcessResult, repository: Repository, account: AccountConfig, recorded: bool
) -> Iterator[str]:
    entry = find_ledger_entry(repository, account.mailbox.name, result.email)
    if entry is None or entry.reply is None:
        return
    state = "recorded (not sent)" if recorded else entry.reply_status.value
    kind = "reply"
    if result.duplicate:  # the reply the first processing recorded, as it stands now
        kind, state = "recorded reply", entry.reply_status.value
    yield f"{kind} {state} to {entry.reply.to}: {entry.reply.subject}"
    if entry.last_error:
        yield f"error: {entry.last_error}"
