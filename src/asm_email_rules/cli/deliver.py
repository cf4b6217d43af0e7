"""``asm-email-rules deliver --config F``: one message from the mail server on standard input.

For a Postfix pipe transport, an Exim pipe transport, procmail or fetchmail's ``mda``: exit 0
when the message was handled (acted on, discarded by a rule, or quarantined in the store), 75
(``EX_TEMPFAIL``) when our side is not ready, so the mail server keeps it and retries. Nothing
else: a broken configuration or store is a retry too, never a bounce to the customer, and
never a traceback (one line on stderr, which the mail server writes to its log).

A mail server kills a command that runs too long and *bounces* the message (Postfix: the pipe
transport's ``time_limit``, 1000 s by default, ``status=bounced (Command time limit
exceeded)``), even when its call was logged. So ``deliver`` keeps a time limit of its own,
below the mail server's (``--time-limit``): past it, it stops where it is and answers 75.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from asm_email_rules.bootstrap import make_mailer, open_store
from asm_email_rules.cli._common import PROG, read_bounded, read_limit
from asm_email_rules.cli.poll import refuse_misconfigured
from asm_email_rules.config import Config, load_config, no_account
from asm_email_rules.delivery import EX_TEMPFAIL, Verdict, deliver_message
from asm_email_rules.ledger_key import cut_over, read_bound

NAME = "deliver"

TIME_LIMIT = 600.0
"""``deliver``'s own time limit by default, in seconds: well below Postfix's default pipe
``time_limit`` (1000 s), past which Postfix bounces the message instead of retrying it."""


class OutOfTime(BaseException):
    """``deliver``'s time limit passed. Not an :class:`Exception`, so that no handler on the
    way takes it for a failed send (recorded and tried again at once) or a store error."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, got {text}")
    return value


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`OutOfTime` in the main thread once ``seconds`` have passed (0: never;
    nothing where there is no SIGALRM)."""
    alarm = getattr(signal, "SIGALRM", None)
    if not seconds or alarm is None:
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise OutOfTime(f"deliver's time limit ({seconds:g} s) passed")

    previous = signal.signal(alarm, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(alarm, previous)


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``deliver`` and its options."""
    parser = commands.add_parser(
        NAME,
        help="handle one message from the mail server (standard input); exit 0 or 75",
        description="Read one message on standard input and run it through the rules, as the "
        "polling service would. Exit 0 when it was handled (acted on, discarded with a reason, "
        "or quarantined in the store), 75 (EX_TEMPFAIL) when it should be retried later "
        "(store locked or down, reply not sent yet). For Postfix, Exim, procmail, fetchmail.",
    )
    parser.add_argument("--config", metavar="F", required=True, help="configuration file")
    parser.add_argument(
        "--account",
        metavar="NAME",
        help="account whose mailbox settings to use (default: the first)",
    )
    parser.add_argument(
        "--time-limit",
        metavar="SECONDS",
        type=_seconds,
        default=TIME_LIMIT,
        help=f"stop and exit 75 after this long (default {TIME_LIMIT:g}; 0: no limit); keep it "
        "below the mail server's own limit (Postfix's pipe time_limit, 1000 s by default), "
        "past which the mail server bounces the message",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle standard input; 0 or 75, with one line on stderr when it is 75.

    At most :func:`~asm_email_rules.cli._common.read_limit` bytes of the message are kept
    (four times ``max_total_size``), not counting its trace fields (those the ledger key leaves
    out, at most :data:`~asm_email_rules.ledger_key.MAX_HEADER_SCAN` bytes), so that every
    copy of a message is cut alike and stays a duplicate; a longer message is read to its end
    and handled on its first bytes, which the intake reads as over ``max_total_size``: its
    header only, as for any message over the limit (intake.md, "Limits"). A line on stderr
    gives its length."""
    try:
        with _deadline(args.time_limit):
            return _run(args)
    except (Exception, KeyboardInterrupt, OutOfTime) as exc:  # the mail server: 0 or 75
        print(f"{PROG} deliver: not ready, try later: {_one_line(exc)}", file=sys.stderr)
        return EX_TEMPFAIL


def _run(args: argparse.Namespace) -> int:
    """:func:`run` within the time limit."""
    config = load_config(args.config, secret_accounts=no_account)
    keep = read_limit(config.system.limits)
    # the cut counts the bytes the ledger key covers: another copy of the message, with
    # other trace fields (another relay, another delivery), is cut at the same content
    raw, size = read_bounded(sys.stdin.buffer, read_bound(keep) - 1)
    raw = cut_over(raw, keep)
    if len(raw) < size:
        print(
            f"{PROG} deliver: a message of {size} bytes: its first {keep} read "
            f"(max_total_size is {config.system.limits.max_total_size}: header only)",
            file=sys.stderr,
        )
    return _deliver(args, config, raw)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def _deliver(args: argparse.Namespace, config: Config, raw: bytes) -> int:
    account = config.account(args.account)
    mailer = make_mailer(config)
    repository = open_store(config.require_store(), must_exist=True)
    try:
        refuse_misconfigured(config, repository, warn=False)
        outcome = deliver_message(
            raw, repository, mailer, account.mailbox, config.system, datetime.now(UTC)
        )
    finally:
        repository.close()
    if outcome.verdict is Verdict.TRY_LATER:
        print(f"{PROG} deliver: try later: {outcome.detail}", file=sys.stderr)
    else:
        print(f"{PROG} deliver: {account.name}: {outcome.detail}")
    return outcome.exit_code
