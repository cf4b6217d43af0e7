"""``asm-email-rules quarantine list|show|release|replay``: the messages set aside, and after.

Every quarantined message is kept in the store with its exact bytes and the reason (also when
the polling service filed it in the mailbox's quarantine folder). After fixing the cause:

- ``replay ID`` runs it through the rules now, as ``process`` would (the ledger still keeps a
  message that was acted on from acting twice);
- ``release ID`` hands it back to its mailbox, to be read at the next poll: a Maildir or IMAP
  account gets the original bytes back in its inbox; a POP3 message never left the server and
  is read again once the service restarts (or at the next ``poll --once``). A message that
  came from ``deliver`` has no mailbox to go back to: replay it.

And ``purge`` forgets entries for good, with their bytes: by default the released and replayed
ones unchanged for 90 days; held ones only with ``--held`` (``--dry-run`` lists what would go).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from asm_email_rules.adapters._sql import SqlRepository
from asm_email_rules.bootstrap import make_mailer
from asm_email_rules.cli._common import (
    EXIT_CONFIG,
    EXIT_MESSAGE,
    EXIT_OK,
    UsageError,
    print_table,
    store_for,
    terminal_text,
    utc_minute,
)
from asm_email_rules.cli.process import describe_result
from asm_email_rules.config import (
    AccountConfig,
    MailProtocol,
    load_config,
    no_account,
    only_account,
)
from asm_email_rules.decision import days_before
from asm_email_rules.errors import AsmEmailError
from asm_email_rules.pipeline import process
from asm_email_rules.quarantine import (
    RESOLVED_STATES,
    QuarantinedMessage,
    QuarantineListing,
    QuarantineOutline,
    QuarantineState,
    count_quarantined,
    headline,
    list_quarantined,
    outline_quarantined,
    purge_quarantined,
)

NAME = "quarantine"

PURGE_AFTER_DAYS = 90
"""``quarantine purge`` forgets entries unchanged for this many days unless told otherwise."""

_ID_HELP = "the entry's id (the first column of `quarantine list`)"

_MAILBOX_SOURCES = frozenset({"imap", "maildir"})
"""Sources whose message the service also filed in the mailbox's quarantine folder."""


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``quarantine`` and its four actions."""
    parser = commands.add_parser(
        NAME,
        help="list, show, release or replay quarantined messages",
        description="Messages set aside because they could not be parsed or processed, or "
        "their reply kept failing: kept in the store with their bytes and the reason.",
    )
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="the messages held (oldest first)", description="List quarantined mail."
    )
    listing.add_argument("--all", action="store_true", help="also released and replayed ones")
    listing.add_argument("--account", metavar="NAME", help="only this account's")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser(
        "show", help="one message and why", description="Show one quarantined message."
    )
    show.add_argument("id", metavar="ID", type=int, help=_ID_HELP)
    show.add_argument("--raw", action="store_true", help="print the message's exact bytes only")
    release = actions.add_parser(
        "release",
        help="hand a message back to its mailbox (read at the next poll)",
        description="Hand the message back to its account's mailbox, unprocessed: the next "
        "poll reads it as new mail. Maildir and IMAP get the bytes back in the inbox; POP3 "
        "reads it again from the server after a restart of the service.",
    )
    release.add_argument("id", metavar="ID", type=int, help=_ID_HELP)
    replay = actions.add_parser(
        "replay",
        help="run a message through the rules now",
        description="Process the message now against the store, as `process` would, with "
        "its account's settings; the reply goes out through [smtp].",
    )
    replay.add_argument("id", metavar="ID", type=int, help=_ID_HELP)
    purge = actions.add_parser(
        "purge",
        help="forget old entries and their bytes (released and replayed ones by default)",
        description="Forget quarantine entries, with their bytes, for good: by default the "
        f"released and replayed ones unchanged for {PURGE_AFTER_DAYS} days. Held ones only "
        "with --held: a message from IMAP or Maildir stays in the mailbox's quarantine "
        "folder, one from POP3 on the server (the ledger keeps setting it aside either way), "
        "and one from deliver had no other copy.",
    )
    purge.add_argument(
        "--older-than",
        metavar="DAYS",
        type=int,
        default=PURGE_AFTER_DAYS,
        help=f"only entries unchanged for this many days (default {PURGE_AFTER_DAYS}; "
        "0: every one)",
    )
    purge.add_argument("--held", action="store_true", help="also held ones (not dealt with)")
    purge.add_argument("--account", metavar="NAME", help="only this account's")
    purge.add_argument(
        "--dry-run", action="store_true", help="list what would be forgotten; change nothing"
    )
    for sub in (listing, show, purge):
        sub.add_argument("--config", metavar="F", help="configuration file (its store)")
        sub.add_argument("--store", metavar="DB", help="the SQLite store (instead of --config)")
    for sub in (release, replay):  # they need the message's account, not only a store
        sub.add_argument(
            "--config",
            metavar="F",
            required=True,
            help="configuration file (its store and the message's account)",
        )


def _entry(repo: SqlRepository, entry_id: int) -> QuarantinedMessage:
    entry = repo.quarantined_message(entry_id)
    if entry is None:
        raise UsageError(f"no quarantined message {entry_id} (see `quarantine list`)")
    return entry


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _entry_dict(entry: QuarantineListing) -> dict[str, Any]:
    sender, subject = headline(entry.head)
    return {
        "id": entry.id,
        "account": entry.account,
        "source": entry.source,
        "mailbox_key": entry.mailbox_key,
        "sha256": entry.sha256,
        "reason": entry.reason,
        "quarantined_at": entry.quarantined_at.isoformat(),
        "state": entry.state.value,
        "resolved_at": entry.resolved_at.isoformat() if entry.resolved_at else None,
        "resolution": entry.resolution,
        "from": sender,
        "subject": subject,
        "size": entry.size,
    }


def run_list(args: argparse.Namespace) -> int:
    """The held messages (``--all``: every one), oldest first."""
    state = None if args.all else QuarantineState.HELD
    with store_for(args) as repo:
        entries = list(list_quarantined(repo, state=state, account=args.account))
    if args.json:
        print(json.dumps([_entry_dict(e) for e in entries], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not entries:
        print("nothing in quarantine" if not args.all else "nothing was ever quarantined")
        return EXIT_OK
    rows: list[Sequence[str]] = [("id", "when", "account", "state", "from", "subject", "reason")]
    for entry in entries:
        sender, subject = headline(entry.head)
        rows.append(
            (
                str(entry.id),
                utc_minute(entry.quarantined_at),
                f"{entry.account} ({entry.source})",
                entry.state.value,
                _short(sender or "-", 30),
                _short(subject or "-", 30),
                _short(entry.reason, 60),
            )
        )
    print_table(rows, sys.stdout)
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """One entry: where it came from, why, what was done; then the message's header."""
    with store_for(args) as repo:
        entry = _entry(repo, args.id)
    if args.raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(entry.raw)
        sys.stdout.buffer.flush()
        return EXIT_OK
    data = _entry_dict(QuarantineListing.of(entry))
    for key in ("id", "account", "source", "mailbox_key", "quarantined_at", "state", "reason"):
        if data[key] not in ("", None):
            print(f"{key}: {terminal_text(str(data[key]))}")
    if entry.resolution:
        print(f"resolution: {terminal_text(entry.resolution)} ({data['resolved_at']})")
    print(f"size: {len(entry.raw)} bytes; sha256: {entry.sha256}")
    head, _, _ = entry.raw.partition(b"\r\n\r\n" if b"\r\n\r\n" in entry.raw else b"\n\n")
    print("--- header")
    header = head[:8192].decode("utf-8", "replace").rstrip().replace("\r\n", "\n")
    print(terminal_text(header, keep="\n\t"))  # a sender's bytes: escapes shown escaped
    print(f"--- (the whole message: `quarantine show {entry.id} --raw`)")
    return EXIT_OK


def _account(
    args: argparse.Namespace, entry: QuarantinedMessage, *, signs_in: bool
) -> AccountConfig:
    """The entry's account; its secrets are read only when the command ``signs_in`` to its
    mailbox (``release`` gives the message back there; ``replay`` only uses its rules)."""
    if not args.config:
        raise UsageError("--config is required: the message goes through its account")
    accounts = only_account(entry.account) if signs_in else no_account
    return load_config(args.config, secret_accounts=accounts).account(entry.account)


def _give_back(account: AccountConfig, entry: QuarantinedMessage) -> str:
    """Put the bytes back where the service reads; what was done, in words."""
    if account.protocol is MailProtocol.MAILDIR:
        from asm_email_rules.adapters.maildir import MaildirMailbox

        assert account.path is not None
        with MaildirMailbox(account.path, quarantine_folder=account.quarantine_folder) as box:
            key = box.add(entry.raw)
        return f"back in Maildir {account.path} as {key}"
    if account.protocol is MailProtocol.IMAP:
        from asm_email_rules.bootstrap import mailbox_factory

        imap = mailbox_factory()(account)
        try:
            append = getattr(imap, "append", None)
            if append is None:
                raise UsageError("this IMAP mailbox cannot take messages back")
            append(entry.raw)
        finally:
            imap.close()
        return f"back in IMAP folder {account.folder!r} of {account.username}"
    return "still on the POP3 server: read again when the service restarts, or by poll --once"


def run_release(args: argparse.Namespace) -> int:
    """Hand the message back to its mailbox and forget that it was quarantined."""
    with store_for(args) as repo:
        entry = _entry(repo, args.id)
        if entry.state is not QuarantineState.HELD:
            raise UsageError(f"message {entry.id} was {entry.state.value} already")
        if entry.source == "deliver":
            raise UsageError(
                f"message {entry.id} came from the mail server (deliver): there is no mailbox "
                f"to give it back to; run `quarantine replay {entry.id}`"
            )
        account = _account(args, entry, signs_in=True)
        where = _give_back(account, entry)
        now = datetime.now(UTC)
        with repo.transaction():
            repo.forget_quarantine_record(entry.account, entry.sha256)
            repo.resolve_quarantined(entry.id, QuarantineState.RELEASED, where, now)
    print(f"released {entry.id}: {where}")
    return EXIT_OK


def run_replay(args: argparse.Namespace) -> int:
    """Process the message now; exit 1 (and keep it held, with the new reason) if it fails."""
    with store_for(args) as repo:
        entry = _entry(repo, args.id)
        if entry.state is not QuarantineState.HELD:
            raise UsageError(f"message {entry.id} was {entry.state.value} already")
        account = _account(args, entry, signs_in=False)
        config = load_config(args.config, secret_accounts=no_account)
        mailer = make_mailer(config)
        now = datetime.now(UTC)
        repo.forget_quarantine_record(entry.account, entry.sha256)
        try:
            result = process(entry.raw, repo, mailer, account.mailbox, config.system, now)
        except AsmEmailError as exc:
            reason = f"replay failed: {exc}"
            record = json.dumps({"quarantined": reason}, ensure_ascii=False)
            with repo.transaction():
                repo.record_processed(entry.account, "", entry.sha256, record, None, now)
                repo.resolve_quarantined(entry.id, QuarantineState.HELD, reason, now)
            print(f"quarantine {entry.id}: still held: {reason}", file=sys.stderr)
            return EXIT_MESSAGE
        what = describe_result(f"quarantine {entry.id}", result)
        repo.resolve_quarantined(entry.id, QuarantineState.REPLAYED, what, now)
    print(f"replayed {what}")
    if mailer is None and result.reply_status.value == "pending":
        print("  no [smtp] section: the reply is recorded in the store, not sent")
    return EXIT_OK


def _purge_notes(doomed: Sequence[QuarantineOutline]) -> list[str]:
    """Where else the messages of ``doomed`` are, which an operator must know."""
    held = [e for e in doomed if e.state is QuarantineState.HELD]
    in_folder = [e for e in held if e.source in _MAILBOX_SOURCES]
    on_server = [e for e in held if e.source == "pop3"]
    only_copy = [e for e in held if e.source not in _MAILBOX_SOURCES and e.source != "pop3"]
    copies = [
        e for e in doomed if e.state is not QuarantineState.HELD and e.source in _MAILBOX_SOURCES
    ]
    notes = []
    if in_folder:
        notes.append(
            f"{_ids(in_folder)} held: the message is still in the quarantine folder of "
            f"{_accounts(in_folder)}, with its reason header (delete it there by hand once "
            "dealt with); the same message arriving again is still set aside (the ledger "
            "remembers it)."
        )
    if on_server:
        notes.append(
            f"{_ids(on_server)} held: the message is still on the POP3 server of "
            f"{_accounts(on_server)}, skipped as before (the ledger remembers it); delete it "
            "there with a mail client."
        )
    if only_copy:
        notes.append(
            f"{_ids(only_copy)} held: the store's copy was the only one (no mailbox): gone for "
            "good (to keep one, `quarantine show ID --raw > file.eml` before purging)."
        )
    if copies:
        notes.append(
            f"{_ids(copies)} dealt with: a copy with the reason header may still be in the "
            f"quarantine folder of {_accounts(copies)} (delete it there by hand)."
        )
    return notes


def _ids(entries: Sequence[QuarantineOutline]) -> str:
    shown = ", ".join(str(e.id) for e in entries[:10])
    more = f" and {len(entries) - 10} more" if len(entries) > 10 else ""
    return f"{'entry' if len(entries) == 1 else 'entries'} {shown}{more}"


def _accounts(entries: Sequence[QuarantineOutline]) -> str:
    names = sorted({e.account for e in entries})
    return ("account " if len(names) == 1 else "accounts ") + ", ".join(names)


def _cannot_purge() -> int:
    print(
        "quarantine purge: this store cannot purge (it has no purge_quarantined); "
        "nothing was forgotten",
        file=sys.stderr,
    )
    return EXIT_CONFIG


def run_purge(args: argparse.Namespace) -> int:
    """Forget the entries unchanged for ``--older-than`` days (held ones only with
    ``--held``), saying where else their messages are; ``--dry-run`` lists them. Exit 2 when
    the store cannot purge."""
    if args.older_than < 0:
        raise UsageError("--older-than: a number of days, 0 or more")
    states = RESOLVED_STATES | ({QuarantineState.HELD} if args.held else frozenset())
    before = days_before(datetime.now(UTC), args.older_than)  # any days: none is too many
    what = "released, replayed" + (" or held" if args.held else "")
    age = f"unchanged for {args.older_than} days" if args.older_than else "of any age"
    with store_for(args) as repo:
        if not callable(getattr(repo, "purge_quarantined", None)):  # --dry-run too: it would
            return _cannot_purge()  # list entries the purge then cannot forget
        doomed = outline_quarantined(repo, before, states=states, account=args.account)
        size = sum(entry.size for entry in doomed)
        if args.dry_run:
            rows: list[Sequence[str]] = [("id", "changed", "account", "state", "bytes")]
            rows.extend(
                (
                    str(e.id),
                    utc_minute(e.changed),
                    f"{e.account} ({e.source})",
                    e.state.value,
                    str(e.size),
                )
                for e in doomed
            )
            if doomed:
                print_table(rows, sys.stdout)
            print(
                f"would forget {len(doomed)} entries ({what}, {age}; {size} bytes); "
                "dry run: nothing changed"
            )
        else:
            count = purge_quarantined(repo, before, states=states, account=args.account)
            if count is None:
                return _cannot_purge()
            print(f"forgot {count} quarantine entries ({what}, {age}; {size} bytes)")
        kept_held = 0 if args.held else count_quarantined(repo, account=args.account)
    for note in _purge_notes(doomed):
        print(f"  {note}")
    if kept_held:
        print(f"  {kept_held} held entries kept: --held forgets them too (see --dry-run first)")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run the action named on the command line."""
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "list": run_list,
        "show": run_show,
        "release": run_release,
        "replay": run_replay,
        "purge": run_purge,
    }
    return actions[args.action](args)
