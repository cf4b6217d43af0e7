"""The ``asm-email-rules`` command line: demo, explain, process, poll, truncate and init.

Exit codes: 0 success; 1 a message could not be parsed or processed; 2 usage or configuration
error (including a store that cannot be opened); 3 a mailbox or the SMTP server failed.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import attrs

from asm_email_rules.config import AccountConfig, Config, load_config
from asm_email_rules.errors import (
    AsmEmailError,
    ConfigError,
    MailboxError,
    MessageParseError,
    RepositoryError,
)
from asm_email_rules.model import OutgoingEmail, ReplyStatus
from asm_email_rules.pipeline import Disposition, ProcessResult, process
from asm_email_rules.protocols import Repository
from asm_email_rules.rules import Decision
from asm_email_rules.sample import DEMO_MAILBOX_OPTIONS, DEMO_NOW, DEMO_SYSTEM, demo_inbox
from asm_email_rules.settings import MailboxSettings, SystemSettings

if TYPE_CHECKING:
    from asm_email_rules.adapters.sqlite import SqliteRepository

__all__ = [
    "DEMO_MAILBOX_OPTIONS",
    "DEMO_NOW",
    "EXIT_CONFIG",
    "EXIT_MESSAGE",
    "EXIT_OK",
    "EXIT_TRANSPORT",
    "demo_inbox",
    "main",
]

EXIT_OK = 0
EXIT_MESSAGE = 1
EXIT_CONFIG = 2
EXIT_TRANSPORT = 3

PROG = "asm-email-rules"


_STANDARD_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _UsageError(Exception):
    """A command-line usage mistake (argparse would exit; we want one line and code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see --help)")


# --------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------


class KeyValueFormatter(logging.Formatter):
    """``time level logger: message key=value ...``: the ``extra=`` fields made visible."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{when} {record.levelname} {record.name}: {record.getMessage()}"
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS}
        for key, value in extras.items():
            text = str(value)
            if not text or any(c.isspace() or c in '"=' for c in text):
                text = json.dumps(text, ensure_ascii=False)
            line += f" {key}={text}"
        if record.exc_info and record.levelno >= logging.ERROR:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_KEYS:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def _setup_logging(level: int, as_json: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else KeyValueFormatter())
    logger = logging.getLogger("asm_email_rules")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _read_inbox(path: Path) -> list[tuple[str, bytes]]:
    if not path.is_dir():
        raise _UsageError(f"--inbox {path}: not a folder")
    found = sorted((p.name, p.read_bytes()) for p in path.glob("*.eml") if p.is_file())
    if not found:
        raise _UsageError(f"--inbox {path}: no .eml files")
    return found


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _tokens() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"demo{next(counter):04d}"


def _sample_repository() -> Repository:
    from asm_email_rules.adapters.memory import InMemoryRepository
    from asm_email_rules.sample import seed_sample_desk

    repository = InMemoryRepository()
    seed_sample_desk(repository)
    return repository


def _sample_mailbox() -> MailboxSettings:
    from asm_email_rules.sample import sample_mailbox

    return sample_mailbox(**DEMO_MAILBOX_OPTIONS)


def _open_store(path: Path, *, must_exist: bool) -> SqliteRepository:
    from asm_email_rules.adapters.sqlite import SqliteRepository

    if must_exist and not path.exists():
        raise ConfigError(
            "store not found (create one with `asm-email-rules init`)", source=str(path)
        )
    try:
        return SqliteRepository(path)
    except RepositoryError as exc:
        raise ConfigError(f"cannot open the store: {exc}", source=str(path)) from None


def _account(config: Config, name: str | None) -> AccountConfig:
    return config.account(name)


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)
        if index == 0:
            print("  ".join("-" * width for width in widths), file=out)


def _reply_dict(reply: OutgoingEmail | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "to": reply.to,
        "subject": reply.subject,
        "body": reply.body,
        "message_id": reply.message_id,
        "in_reply_to": reply.in_reply_to,
    }


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


@attrs.frozen
class _DemoRow:
    name: str
    decision: Decision | None
    replies: tuple[OutgoingEmail, ...]
    error: str = ""


def _run_demo(inbox: list[tuple[str, bytes]]) -> list[_DemoRow]:
    from asm_email_rules.adapters.recording import RecordingMailer
    from asm_email_rules.adapters.sqlite import SqliteRepository
    from asm_email_rules.sample import seed_sample_desk

    mailbox = _sample_mailbox()
    mailer = RecordingMailer()
    rows: list[_DemoRow] = []
    token = _tokens()
    with tempfile.TemporaryDirectory(prefix="asm-demo-") as folder:
        repository = SqliteRepository(Path(folder) / "demo.sqlite3")
        try:
            seed_sample_desk(repository)
            for name, raw in inbox:
                before = len(mailer.sent)
                try:
                    result = process(
                        raw, repository, mailer, mailbox, DEMO_SYSTEM, DEMO_NOW, random_token=token
                    )
                except MessageParseError as exc:
                    rows.append(_DemoRow(name, None, (), f"cannot parse: {exc}"))
                    continue
                rows.append(_DemoRow(name, result.decision, tuple(mailer.sent[before:])))
        finally:
            repository.close()
    return rows


def _cmd_demo(args: argparse.Namespace) -> int:
    inbox = _read_inbox(Path(args.inbox)) if args.inbox else demo_inbox()
    rows = _run_demo(inbox)
    out = sys.stdout
    if args.json:
        data = [
            {
                "file": row.name,
                "decision": row.decision.to_dict() if row.decision else None,
                "replies": [_reply_dict(reply) for reply in row.replies],
                "error": row.error or None,
            }
            for row in rows
        ]
        json.dump(data, out, ensure_ascii=False, indent=2)
        print(file=out)
        return EXIT_OK
    where = args.inbox or "the demo inbox shipped with the package"
    options = ", ".join(f"{name}=on" for name in DEMO_MAILBOX_OPTIONS)
    print(f"asm-email-rules demo: {len(inbox)} messages from {where}", file=out)
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
    table = [("message", "sender", "rule", "actions", "reply")]
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
    _table(table, out)
    print("\nReplies", file=out)
    for row in rows:
        for sent in row.replies:
            print(f"\n--- {row.name}", file=out)
            print(f"To: {sent.to}\nSubject: {sent.subject}\n", file=out)
            print(sent.body.rstrip("\n"), file=out)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# explain, process, truncate
# --------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> tuple[Config | None, MailboxSettings, SystemSettings]:
    if not args.config:
        if getattr(args, "account", None):
            raise _UsageError("--account needs --config")
        return None, _sample_mailbox(), DEMO_SYSTEM
    config = load_config(args.config)
    account = _account(config, args.account)
    return config, account.mailbox, config.system


def _cmd_explain(args: argparse.Namespace) -> int:
    from asm_email_rules.pipeline import explain

    raw = _read_file(Path(args.file))
    config, mailbox, system = _settings(args)
    repository: Repository
    if args.store:
        repository = _open_store(Path(args.store), must_exist=True)
    elif config is not None:
        repository = _open_store(config.store, must_exist=True)
    else:
        repository = _sample_repository()
    try:
        decision = explain(raw, repository, mailbox, system, datetime.now(UTC))
    except MessageParseError as exc:
        if args.json:
            print(json.dumps({"error": f"cannot parse: {exc}"}))
            return EXIT_MESSAGE
        raise
    finally:
        close = getattr(repository, "close", None)
        if close is not None:
            close()
    if args.json:
        print(decision.to_json())
    else:
        store = args.store or (str(config.store) if config else "the sample desk (in memory)")
        print(f"dry run of {args.file} against {store}, mailbox {mailbox.name}: nothing changed")
        print(decision.explain())
    return EXIT_OK


def _describe_result(name: str, result: ProcessResult) -> str:
    if result.duplicate:
        what = "already processed (ledger): nothing done again"
    else:
        assert result.decision is not None
        what = f"rule {result.decision.rule}: {result.decision.outcome.value}"
    return f"{name}: {what}; reply {result.reply_status.value}; {result.disposition.value}"


def _cmd_process(args: argparse.Namespace) -> int:
    from asm_email_rules.service import make_mailer

    config = load_config(args.config)
    account = _account(config, args.account)
    mailer = make_mailer(config)
    if mailer is None:
        print(
            "no [smtp] section: replies are recorded in the store as pending, not sent",
            file=sys.stderr,
        )
    repository = _open_store(config.store, must_exist=False)
    code = EXIT_OK
    try:
        for name in args.files:
            try:
                raw = _read_file(Path(name))
                result = process(
                    raw, repository, mailer, account.mailbox, config.system, datetime.now(UTC)
                )
            except (MessageParseError, _UsageError) as exc:
                print(f"{PROG}: {name}: {exc}", file=sys.stderr)
                code = max(code, EXIT_MESSAGE)
                continue
            except AsmEmailError as exc:
                print(f"{PROG}: {name}: processing failed: {exc}", file=sys.stderr)
                code = max(code, EXIT_MESSAGE)
                continue
            print(_describe_result(name, result))
            for line in _reply_lines(result, repository, account, mailer is None):
                print(f"  {line}")
            if mailer is not None and (
                result.reply_status is ReplyStatus.FAILED
                or result.disposition is not Disposition.DELETE
            ):
                code = EXIT_TRANSPORT
    finally:
        repository.close()
    return code


def _reply_lines(
    result: ProcessResult, repository: Repository, account: AccountConfig, recorded: bool
) -> Iterator[str]:
    entry = repository.ledger_entry(
        account.mailbox.name, result.email.message_id or "", result.email.raw_sha256
    )
    if entry is None or entry.reply is None:
        return
    state = "recorded (not sent)" if recorded else entry.reply_status.value
    yield f"reply {state} to {entry.reply.to}: {entry.reply.subject}"
    if entry.last_error:
        yield f"error: {entry.last_error}"


def _cmd_truncate(args: argparse.Namespace) -> int:
    from asm_email_rules.intake import parse_message
    from asm_email_rules.truncate import truncate_reply

    raw = _read_file(Path(args.file))
    email = parse_message(raw)
    marker = args.marker if args.marker is not None else SystemSettings().reply_marker
    cut = truncate_reply(
        email.body,
        marker=marker or None,
        separators=tuple(args.separator or ()),
        strip_signature=args.strip_signature,
    )
    if args.json:
        data = {
            "kept": cut.kept,
            "elided": cut.elided,
            "method": cut.method.value,
            "detail": cut.detail,
        }
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(cut.kept)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# poll
# --------------------------------------------------------------------------------------------


def _cmd_poll(args: argparse.Namespace) -> int:
    from asm_email_rules.service import PollingService, make_mailer, open_mailbox

    config = load_config(args.config)
    if not any(account.active for account in config.accounts):
        raise ConfigError("no active [[accounts]] to poll", source=str(config.source or ""))
    mailer = make_mailer(config)
    repository = _open_store(config.store, must_exist=False)
    log = logging.getLogger("asm_email_rules.cli")
    if mailer is None:
        log.warning("no [smtp] section: replies are recorded in the store as pending, not sent")
    service = PollingService(config, repository, mailer, open_mailbox())
    stop = threading.Event()
    try:
        if args.once:
            report = service.poll_once(stop)
            for account in report.accounts:
                if account.skipped:
                    print(f"{account.account}: inactive, skipped")
                    continue
                print(
                    f"{account.account}: processed {account.processed}, duplicates "
                    f"{account.duplicates}, retried {account.retried}, quarantined "
                    f"{account.quarantined}, errors {account.errors}"
                    + (f" (last: {account.last_error})" if account.last_error else "")
                )
            return EXIT_TRANSPORT if report.total("errors") else EXIT_OK
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            service.run(stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return EXIT_OK
    finally:
        repository.close()


# --------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------

_INIT_CONFIG = """\
# asm-email-rules configuration written by `asm-email-rules init`.
# Every key, with comments: examples/config.toml in the project, or docs/operators.md.
# Relative paths are resolved against this file's folder.

# The SQLite store (people, calls, tasks, requests and the processed-message ledger).
store = "helpdesk.sqlite3"

[system]
truncate_incoming_emails = true
max_send_attempts = 5

# Uncomment to send the replies; without this section they are recorded as pending.
# [smtp]
# host = "smtp.example.org"
# security = "starttls"        # plain | starttls | tls
# port = 587
# username = "helpdesk@example.org"
# password_env = "ASM_SMTP_PASSWORD"

# A local Maildir to start with: drop .eml files into Maildir/new and run
#   asm-email-rules poll --once --config config.toml
[[accounts]]
name = "helpdesk"
protocol = "maildir"            # imap | pop3 | maildir
path = "Maildir"
quarantine_folder = ".Quarantine"
interval_seconds = 60
max_messages_per_session = 100

# An IMAP account looks like this instead:
# protocol = "imap"
# host = "imap.example.org"
# security = "tls"
# username = "helpdesk@example.org"
# password_env = "ASM_IMAP_PASSWORD"
# folder = "INBOX"
# quarantine_folder = "Quarantine"

[accounts.mailbox]
addresses = ["helpdesk@example.org"]
# default_logging_analyst_id = 1
create_calls_anonymously = false
update_calls_anonymously = false
close_calls_anonymously = false
log_new_call_on_invalid_number = false
update_closed_calls = false
reopen_closed_calls = false
use_linked_analyst = false
auto_reply = true

[accounts.mailbox.call_template]
name = "Email call"
assigned_group = "Service Desk"
"""


def _cmd_tables(args: argparse.Namespace) -> int:
    from asm_email_rules.rules import render_tables_markdown

    print(render_tables_markdown(), end="")
    return EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    from asm_email_rules.adapters.sqlite import SqliteRepository

    folder = Path(args.dir)
    config_path = folder / "config.toml"
    store_path = folder / "helpdesk.sqlite3"
    for path in (config_path, store_path):
        if path.exists():
            raise _UsageError(f"{path} already exists: not overwriting")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        config_path.write_text(_INIT_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise _UsageError(f"{folder}: cannot write: {exc.strerror or exc}") from None
    SqliteRepository(store_path).close()
    print(f"wrote {config_path} and an empty store {store_path}")
    print(f"next: edit the config, then `{PROG} poll --once --config {config_path}`")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser and main
# --------------------------------------------------------------------------------------------


def _version() -> str:
    try:
        return version("asm-email-rules")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = _Parser(
        prog=PROG,
        description="Incoming-email rules for service desks.",
        epilog="Exit codes: 0 ok; 1 a message could not be parsed or processed; "
        "2 usage or configuration error; 3 mailbox or SMTP failure.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "--log-json", action="store_true", help="log one JSON object per line (stderr)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo",
        help="run the sample inbox through a temporary SQLite helpdesk (no network)",
        description="Create a temporary SQLite helpdesk seeded with the sample desk, run every "
        ".eml of the demo inbox through the rules and print the decisions and the replies.",
    )
    demo.add_argument("--inbox", metavar="DIR", help="a folder of .eml files to use instead")
    demo.add_argument("--json", action="store_true", help="print JSON instead of a table")
    demo.set_defaults(handler=_cmd_demo)

    explain = commands.add_parser(
        "explain",
        help="dry run: print the decision for one message and why",
        description="Decide what would happen to FILE.eml without changing anything. Without "
        "--config and --store the sample desk and the demo mailbox options are used.",
    )
    explain.add_argument("file", metavar="FILE.eml")
    explain.add_argument("--config", metavar="F", help="configuration file (mailbox settings)")
    explain.add_argument("--store", metavar="DB", help="SQLite store to read (default: config's)")
    explain.add_argument(
        "--account", metavar="NAME", help="account whose settings to use (default: the first)"
    )
    explain.add_argument("--json", action="store_true", help="print the decision as JSON")
    explain.set_defaults(handler=_cmd_explain)

    proc = commands.add_parser(
        "process",
        help="apply messages to the configured store and send the replies",
        description="Run each FILE.eml through the rules against the configured store; "
        "replies go out through [smtp] (or are recorded as pending without it).",
    )
    proc.add_argument("files", metavar="FILE.eml", nargs="+")
    proc.add_argument("--config", metavar="F", required=True, help="configuration file")
    proc.add_argument(
        "--account", metavar="NAME", help="account whose settings to use (default: the first)"
    )
    proc.set_defaults(handler=_cmd_process)

    poll = commands.add_parser(
        "poll",
        help="run the polling service over the configured accounts",
        description="Poll every active account on its interval until SIGTERM or Ctrl-C "
        "(the message in hand is finished first). --once polls each account once and exits.",
    )
    poll.add_argument("--config", metavar="F", required=True, help="configuration file")
    poll.add_argument("--once", action="store_true", help="poll each account once, then exit")
    poll.set_defaults(handler=_cmd_poll)

    trunc = commands.add_parser(
        "truncate",
        help="print the reply text that truncation keeps",
        description="Parse FILE.eml and print the part of its body that would be kept as the "
        "reply (our marker line, then separators, then the quote heuristic).",
    )
    trunc.add_argument("file", metavar="FILE.eml")
    trunc.add_argument("--marker", help="reply marker line (default: the standard one)")
    trunc.add_argument(
        "--separator", action="append", metavar="TEXT", help="a separator line (repeatable)"
    )
    trunc.add_argument("--strip-signature", action="store_true", help="also cut the signature")
    trunc.add_argument("--json", action="store_true", help="print kept, elided, method, detail")
    trunc.set_defaults(handler=_cmd_truncate)

    init = commands.add_parser(
        "init",
        help="write a sample config.toml and an empty store into DIR",
        description="Write DIR/config.toml (a commented sample) and an empty SQLite store "
        "DIR/helpdesk.sqlite3. Existing files are never overwritten.",
    )
    init.add_argument("dir", metavar="DIR")
    init.set_defaults(handler=_cmd_init)

    tables = commands.add_parser(
        "tables",
        help="print the decision tables as Markdown (docs/decision-tables.md)",
        description="Print every decision table: its rows, conditions, outcomes and the spec "
        "sentence each row implements.",
    )
    tables.set_defaults(handler=_cmd_tables)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_CONFIG
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    level = logging.INFO if args.verbose or args.command == "poll" else logging.WARNING
    handler = _setup_logging(level, args.log_json)
    try:
        code: int = args.handler(args)
        return code
    except _UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except MessageParseError as exc:
        print(f"{PROG}: cannot parse the message: {exc}", file=sys.stderr)
        return EXIT_MESSAGE
    except MailboxError as exc:
        print(f"{PROG}: mailbox error: {exc}", file=sys.stderr)
        return EXIT_TRANSPORT
    except AsmEmailError as exc:
        print(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_MESSAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error; silence the final flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    finally:
        logger = logging.getLogger("asm_email_rules")
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
