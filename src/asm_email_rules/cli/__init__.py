"""The ``asm-email-rules`` command line: one sub-command per module (see :data:`COMMANDS`).

One module per command, each with ``add_parser(subparsers)`` (its options, next to its code)
and ``run(args) -> int``. Exit codes: 0 success; 1 a message could not be parsed or processed;
2 usage or configuration error (including a store that cannot be opened); 3 a mailbox or the
SMTP server failed (a reply deferred); 4 a reply failed for good (refused, or given up after
``reply_retry_hours``: see ``replies list --failed``); 130 interrupted; ``deliver`` alone
answers 0 or 75 (``EX_TEMPFAIL``) for the mail server. Errors are one line on stderr, never a
traceback: :data:`EXIT_CODES` maps each exception type to its code and message.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

from asm_email_rules.cli import (
    calls,
    check,
    deliver,
    demo,
    explain,
    init,
    people,
    poll,
    process,
    quarantine,
    replies,
    tables,
    truncate,
)
from asm_email_rules.cli._common import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_MESSAGE,
    EXIT_OK,
    EXIT_REPLIES_FAILED,
    EXIT_TRANSPORT,
    PROG,
    Parser,
    UsageError,
)
from asm_email_rules.delivery import EX_TEMPFAIL
from asm_email_rules.errors import (
    AsmEmailError,
    ConfigError,
    MailboxError,
    MessageParseError,
    StoreUnavailableError,
)
from asm_email_rules.logs import JsonFormatter as JsonFormatter  # importable here as before
from asm_email_rules.logs import KeyValueFormatter as KeyValueFormatter
from asm_email_rules.logs import install_handler, remove_handler
from asm_email_rules.sample import DEMO_MAILBOX_OPTIONS, DEMO_NOW, demo_inbox

__all__ = [
    "DEMO_MAILBOX_OPTIONS",
    "DEMO_NOW",
    "EXIT_CONFIG",
    "EXIT_MESSAGE",
    "EXIT_OK",
    "EXIT_REPLIES_FAILED",
    "EXIT_TRANSPORT",
    "demo_inbox",
    "main",
]

COMMANDS: tuple[ModuleType, ...] = (
    init,
    people,
    check,
    poll,
    deliver,
    process,
    explain,
    calls,
    quarantine,
    replies,
    demo,
    truncate,
    tables,
)
"""The commands in the order ``--help`` lists them."""

EXIT_CODES: tuple[tuple[type[BaseException], int, Callable[[BaseException], str]], ...] = (
    (UsageError, EXIT_CONFIG, lambda exc: f"{PROG}: {exc}"),
    (ConfigError, EXIT_CONFIG, lambda exc: f"{PROG}: configuration error: {exc}"),
    (MessageParseError, EXIT_MESSAGE, lambda exc: f"{PROG}: cannot parse the message: {exc}"),
    (MailboxError, EXIT_TRANSPORT, lambda exc: f"{PROG}: mailbox error: {exc}"),
    (StoreUnavailableError, EXIT_TRANSPORT, lambda exc: f"{PROG}: store unavailable: {exc}"),
    (AsmEmailError, EXIT_MESSAGE, lambda exc: f"{PROG}: {type(exc).__name__}: {exc}"),
    (KeyboardInterrupt, EXIT_INTERRUPTED, lambda exc: f"{PROG}: interrupted"),
)
"""Exception type -> exit code and the one stderr line; the first row that matches wins, so a
subclass comes before its base (a test checks that no row is shadowed)."""

_HANDLED = tuple(kind for kind, _, _ in EXIT_CODES)


def exit_code_for(exc: BaseException) -> tuple[int, str]:
    """The exit code and stderr line for ``exc`` (one of the :data:`EXIT_CODES` types)."""
    for kind, code, describe in EXIT_CODES:
        if isinstance(exc, kind):
            return code, describe(exc)
    raise TypeError(f"no exit code for {type(exc).__name__}") from exc


def _version() -> str:
    try:
        return version("asm-email-rules")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per module of :data:`COMMANDS`."""
    parser = Parser(
        prog=PROG,
        description="Incoming-email rules for service desks.",
        epilog="Exit codes: 0 ok; 1 a message could not be parsed or processed; "
        "2 usage or configuration error; 3 mailbox or SMTP failure; "
        "4 a reply failed for good (see `replies list --failed`); 75 `deliver` only: try "
        "later (it exits 0 or 75, nothing else); 130 interrupted (Ctrl-C).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log at INFO level (-vv: DEBUG)"
    )
    parser.add_argument(
        "--log-json", action="store_true", help="log one JSON object per line (stderr)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    _everywhere(subparsers)
    return parser


def _everywhere(subparsers: argparse._SubParsersAction[Any]) -> None:
    """``-v`` and ``--log-json`` after the command too (``poll --once --log-json``), in every
    command and action; given before the command they work as always."""
    for sub in subparsers.choices.values():
        sub.add_argument(
            "-v",
            "--verbose",
            action="count",
            dest="verbose_after",  # counted apart: a sub-parser's namespace replaces the top's
            default=argparse.SUPPRESS,
            help="log at INFO (-vv: DEBUG)",
        )
        sub.add_argument(
            "--log-json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="log one JSON object per line (stderr)",
        )
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _everywhere(action)


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: the first word that is not an option (the options before
    the command, ``-v``, ``--log-json``, ``--version`` and ``-h``, take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code when parsing ended the run (usage, --help).

    A usage mistake in a ``deliver`` command line (a typo in the mail server's ``master.cf``,
    a missing ``--config``) is the mail server's retry, 75, as a broken configuration is: any
    other code would bounce the customer's message (operators.md, "deliver exits 0 or 75 and
    nothing else").
    """
    words = sys.argv[1:] if argv is None else argv
    try:
        return parser.parse_args(words)
    except UsageError as exc:
        if _command_of(words) == deliver.NAME:
            said = str(exc).partition(": ")[2] if str(exc).startswith(PROG) else str(exc)
            print(f"{PROG} deliver: not ready, try later: {said}", file=sys.stderr)
            return EX_TEMPFAIL
        print(_action_first(parser, words) or exc, file=sys.stderr)
        return EXIT_CONFIG
    except SystemExit as exc:  # --help and --version
        code = int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_CONFIG
        if code == EXIT_OK and _command_of(words) == deliver.NAME and not _at_terminal():
            # a mail server piping a message in (``-h`` in master.cf's argv): 0 would tell it
            # the message was delivered, and it would drop a message nobody read
            print(f"{PROG} deliver: not ready, try later: --help given", file=sys.stderr)
            return EX_TEMPFAIL
        return code


_BEFORE_ANY_ACTION = frozenset({"-v", "-vv", "-vvv", "--verbose", "--log-json"})
"""The options a command with actions takes before its action word (``calls -v list``)."""


def _actions_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    """The sub-commands (or actions) ``parser`` dispatches to, if it has any."""
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _action_first(parser: argparse.ArgumentParser, words: Sequence[str]) -> str | None:
    """The usage line for a command with actions given an option first (``calls --config F``,
    ``people --store DB list``), or ``None`` for any other mistake.

    argparse skips the option it does not know at that level and takes its value for the
    action word, so it would say "invalid choice: 'F'", naming the file as the action."""
    command = _command_of(words)
    commands = _actions_of(parser)
    if command is None or commands is None or command not in commands.choices:
        return None
    actions = _actions_of(commands.choices[command])
    if actions is None:
        return None
    rest = list(words)[list(words).index(command) + 1 :]
    first = next((word for word in rest if word not in _BEFORE_ANY_ACTION), None)
    if first is None or not first.startswith("-"):
        return None
    return (
        f"{PROG} {command}: the action comes first, then its options: "
        f"{PROG} {command} ACTION {first} ... (ACTION: {', '.join(actions.choices)}; "
        "see --help)"
    )


def _at_terminal() -> bool:
    """True when standard input is a terminal (a person reading ``deliver --help``)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False


def _silence_stdout() -> None:
    """The reader went away (``... | head``): point stdout at /dev/null for the final flush."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    level = getattr(args, "log_level", logging.WARNING)
    verbose = args.verbose + getattr(args, "verbose_after", 0)  # -v before and after the command
    if verbose:  # -v: INFO, -vv: DEBUG (never quieter than the command's own level)
        level = min(level, logging.DEBUG if verbose > 1 else logging.INFO)
    handler = install_handler(sys.stderr, level, as_json=args.log_json)
    try:
        code: int = args.handler(args)
        return code
    except _HANDLED as exc:
        code, line = exit_code_for(exc)
        print(line, file=sys.stderr)
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    finally:
        remove_handler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
