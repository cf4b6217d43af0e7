"""``asm-email-rules check --config F``: is this desk ready? Configuration, store, sign-ins.

Validates the configuration; opens the store and checks the settings against its people
(configured ids exist and are analysts; settings that would discard every message);
signs in to every active account and to SMTP, sending nothing and changing nothing; and says
what it found, one line each. Exit 0 when ready (warnings allowed), 2 when the configuration
or the store is wrong, 3 when a mailbox or SMTP sign-in failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asm_email_rules.bootstrap import mailbox_factory, make_mailer, open_store, schema_behind
from asm_email_rules.cli._common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_TRANSPORT,
    every_person,
    outbox_when,
)
from asm_email_rules.config import AccountConfig, Config, MailProtocol, load_config
from asm_email_rules.desk_check import Finding, Level, check_mailbox
from asm_email_rules.errors import AsmEmailError, MailboxError, SendError
from asm_email_rules.protocols import Repository, SeedableRepository
from asm_email_rules.quarantine import QuarantineStore, count_quarantined
from asm_email_rules.signin import RefreshTokenGrant

__all__ = [
    "account_label",
    "known_senders",
    "outbox_stalled",
    "settings_findings",
    "stranded_replies",
    "token_file_findings",
]

NAME = "check"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``check`` and its options."""
    parser = commands.add_parser(
        NAME,
        help="check the configuration, the store and every sign-in; change nothing",
        description="Validate the configuration, check its settings against the store's "
        "people, sign in to every active account and to SMTP (nothing is read, sent or "
        "changed) and say what was found. Exit 0 ready, 2 configuration or store problem, "
        "3 a sign-in failed.",
    )
    parser.add_argument("--config", metavar="F", required=True, help="configuration file")
    parser.add_argument(
        "--no-sign-in", action="store_true", help="skip the mailbox and SMTP sign-ins"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (ready, exit_code, findings, the lines checked)",
    )
    parser.set_defaults(handler=run)


def account_label(config: Config, account: AccountConfig) -> str:
    """``accounts[2] (helpdesk)``: the account as the configuration file counts it."""
    return f"accounts[{config.accounts.index(account) + 1}] ({account.name})"


def settings_findings(config: Config, repository: Repository) -> list[Finding]:
    """Every active account's mailbox settings checked against the store's people."""
    known = known_senders(repository)
    findings: list[Finding] = []
    for account in config.accounts:
        if account.active:
            label = account_label(config, account)
            findings += check_mailbox(label, account.mailbox, repository, known_senders=known)
    return findings


STRANDED_SCAN = 1000
"""At most this many due replies are read to find those of mailboxes no account names."""


def stranded_replies(
    config: Config, repository: Repository, now: datetime | None = None
) -> list[Finding]:
    """A WARNING for each mailbox with replies due in the outbox that no ``[[accounts]]`` entry
    of this configuration names. The ledger, the outbox and the quarantine are keyed by the
    account's ``name``; a poller sends only its own accounts' replies, so after a rename the
    replies the old name left pending are never sent, and nothing else would say so.

    Reads the ``STRANDED_SCAN`` longest-due replies (a stranded reply is never claimed, so
    it stays among the longest due): one bounded query, whatever the outbox holds."""
    known = {account.mailbox.name for account in config.accounts}
    due = repository.due_replies(now or datetime.now(UTC), limit=STRANDED_SCAN)
    counts = Counter(entry.mailbox for entry in due if entry.mailbox not in known)
    return [
        Finding(
            Level.WARNING,
            "outbox",
            f"{count} repl{'y' if count == 1 else 'ies'} of mailbox {mailbox!r} "
            f"wait{'s' if count == 1 else ''} in the outbox, and no [[accounts]] entry "
            "of this configuration is named so: no poller of it will send them (the "
            "ledger, the outbox and the quarantine are keyed by the account's name; was "
            "the account renamed?). Give the account its old name back; ignore this if "
            "another poller's configuration has that account",
        )
        for mailbox, count in sorted(counts.items())
    ]


STALLED_AFTER = timedelta(hours=1)
"""A reply due this long (or two poll intervals, if longer) and not tried is a stalled outbox:
retries are never more than an hour apart, and a running poller tries its due replies after
each poll of its account."""


def outbox_stalled(
    config: Config, repository: Repository, now: datetime | None = None
) -> list[Finding]:
    """A WARNING when a reply has been due for longer than :data:`STALLED_AFTER` (or two of
    the longest poll interval) without a sender trying it: no poller runs, or none sends (its
    SMTP server down, its pass never ending). ``check`` is a monitoring probe, and a store
    whose replies stopped going out looked "ready". One indexed read of one reply. Nothing to
    say without ``[smtp]`` (replies wait by design, and that has its own warning)."""
    if config.smtp is None:
        return []
    now = now or datetime.now(UTC)
    longest = max((a.interval_seconds for a in config.accounts if a.active), default=0)
    late = max(STALLED_AFTER, timedelta(seconds=2 * longest))
    overdue = repository.due_replies(now - late, limit=1)
    if not overdue:
        return []
    entry = overdue[0]
    hours = (now - entry.next_attempt_at).total_seconds() / 3600
    return [
        Finding(
            Level.WARNING,
            "outbox",
            f"replies are not going out: a reply of mailbox {entry.mailbox!r} has been due "
            f"since {outbox_when(entry.next_attempt_at)} ({hours:.1f} h) and no sender has "
            "tried it; is the polling service running? (`replies list --pending`)",
        )
    ]


def known_senders(repository: Repository) -> int | None:
    """How many people are analysts or Users (the rules know nobody else); None for a host's
    store that cannot list its people."""
    if not isinstance(repository, SeedableRepository):
        return None
    return sum(1 for person in every_person(repository) if person.is_analyst or person.is_user)


def _store_summary(repository: SeedableRepository) -> str:
    parts = [f"schema {getattr(repository, 'schema_version', '?')}"]
    people = every_person(repository)
    analysts = sum(1 for p in people if p.is_analyst)
    users = sum(1 for p in people if p.is_user)
    parts.append(f"{len(people)} people ({analysts} analysts, {users} Users)")
    recent_calls = getattr(repository, "recent_calls", None)
    if recent_calls is not None:
        _, total = recent_calls(limit=1)
        parts.append(f"{total} calls")
    if isinstance(repository, QuarantineStore):
        parts.append(f"{count_quarantined(repository)} held in quarantine")
    return "; ".join(parts)


def _user(uid: int) -> str:
    """``asm-desk (uid 998)``: a user by name where the system knows it."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def store_write_findings(store: Path) -> list[Finding]:
    """A SQLite store this user cannot write: the file, its ``-wal``/``-shm`` files, or its
    folder (SQLite creates those files there, a poller its sent journal). ``poll`` would open
    it and back off at every pass (``attempt to write a readonly database``), so ``check``
    says so instead of ``ready``."""
    blocked = [
        path
        for path in (store, Path(f"{store}-wal"), Path(f"{store}-shm"))
        if path.exists() and not os.access(path, os.W_OK)
    ]
    if not os.access(store.parent, os.W_OK | os.X_OK):
        blocked.append(store.parent)
    if not blocked:
        return []
    names = ", ".join(f"{path} (owner {_user(path.stat().st_uid)})" for path in blocked)
    return [
        Finding(
            Level.ERROR,
            "store",
            f"not writable by this user, {_user(os.geteuid())}: {names}; `poll`, `deliver` "
            "and `people` would fail (attempt to write a readonly database): run them as the "
            "store's owner, or give the store, its -wal/-shm files and its folder to the user "
            "that runs the service (chown)",
        )
    ]


def _refresh_grants(config: Config) -> list[tuple[str, RefreshTokenGrant]]:
    """``(label, grant)`` of every active account's and SMTP's refresh-token grant."""
    found: list[tuple[str, RefreshTokenGrant]] = []
    sections = [(account_label(config, a), a.oauth2) for a in config.accounts if a.active]
    if config.smtp is not None:
        sections.append(("smtp", config.smtp.oauth2))
    for label, oauth2 in sections:
        if oauth2 is not None and isinstance(oauth2.source, RefreshTokenGrant):
            found.append((label, oauth2.source))
    return found


def token_file_findings(config: Config) -> tuple[list[Finding], set[str]]:
    """A refresh token from the configuration or the environment (WARNING: a rotated one is
    not kept across processes), and a ``refresh_token_file`` whose folder this user cannot
    write (ERROR). Either way a refresh token the server rotates (Microsoft does at every
    refresh) lives only in the memory of the process that received it, and the next one
    presents the old token and may be refused (``invalid_grant``: a new consent). The
    findings, and the labels (``smtp`` or an account's) whose sign-in ``check`` must not
    try, lest it rotate the token away itself."""
    findings: list[Finding] = []
    blocked: set[str] = set()
    for label, grant in _refresh_grants(config):
        if grant.refresh_token_file is None:
            findings.append(
                Finding(
                    Level.WARNING,
                    f"{label}: oauth2.refresh_token",
                    "comes from the configuration or the environment: a refresh token the "
                    "server rotates (Microsoft does) is kept only in the poller's memory, and "
                    "a restart, `check` or `deliver` present the configured one, which the "
                    "server may refuse (invalid_grant); use refresh_token_file",
                )
            )
            continue
        folder = grant.refresh_token_file.parent
        if os.access(folder, os.W_OK | os.X_OK):
            continue
        blocked.add(label)
        findings.append(
            Finding(
                Level.ERROR,
                f"{label}: oauth2.refresh_token_file: {folder}",
                f"not writable by this user, {_user(os.geteuid())}: a refresh token the "
                "server rotates could not be written back, and the next process would "
                "present the old one (invalid_grant: a new consent). Give the folder to the "
                "user that runs the service (chown), or move the file to a folder it owns; "
                "the sign-in was not tried, so the token in the file is still good",
            )
        )
    return findings, blocked


def _sign_in(account: AccountConfig) -> str:
    """Open the account's mailbox, count the waiting messages, close; what was found."""
    if account.protocol is MailProtocol.MAILDIR:
        assert account.path is not None
        if not account.path.exists():
            parent = account.path.parent
            if not parent.is_dir():  # the first poll creates the Maildir, not the folders above
                raise MailboxError(
                    f"Maildir {account.path} cannot be created at the first poll: "
                    f"{parent} does not exist (or is not a folder)"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise MailboxError(
                    f"Maildir {account.path} cannot be created at the first poll: "
                    f"{parent} is not writable by this user"
                )
            return f"Maildir {account.path} does not exist yet (created at the first poll)"
    mailbox = mailbox_factory()(account)
    try:
        waiting = sum(1 for _ in mailbox.list_keys())
    finally:
        mailbox.close()
    where = (
        f"Maildir {account.path}"
        if account.protocol is MailProtocol.MAILDIR
        else f"{account.protocol.value.upper() if account.protocol else 'host mailbox'} "
        f"{account.host}:{account.port} as {account.username}"
    )
    return f"{where}: {waiting} message{'s' if waiting != 1 else ''} waiting"


def run(args: argparse.Namespace) -> int:
    """Print one line per thing checked, then the findings; the exit code says the worst.
    ``--json``: one JSON object instead, for a monitoring probe."""
    checked: list[str] = []
    as_json = bool(getattr(args, "json", False))
    if as_json:
        try:
            code, findings, failed = _check(args, checked.append)
        except Exception as exc:
            return _unopened(exc, checked)
    else:
        code, findings, failed = _check(args, print)
    if as_json:
        _print_json(code, findings, failed, checked)
        return code
    errors = sum(1 for f in findings if f.level is Level.ERROR)
    warnings = len(findings) - errors
    for finding in findings:
        print(finding)
    verdict = "not ready" if code else "ready"
    refused = f", {failed} sign-in{'s' if failed > 1 else ''} failed" if failed else ""
    counts = f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"
    print(f"check: {verdict} ({counts}{refused})")
    return code


def _unopened(exc: Exception, checked: list[str]) -> int:
    """``check --json`` when the configuration or the store could not even be opened: the
    object a probe parses all the same (``ready`` false, the error as its one finding), and
    the stderr line and exit code every command gives (2, or 3 for a store that cannot be
    used now). Anything else is raised as it was."""
    from asm_email_rules.cli import exit_code_for  # the command table imports this module

    try:
        code, line = exit_code_for(exc)
    except TypeError:
        raise exc from None
    _print_json(code, [Finding(Level.ERROR, "check", line)], 0, checked)
    print(line, file=sys.stderr)
    return code


def _print_json(code: int, findings: list[Finding], failed: int, checked: list[str]) -> None:
    """``check --json``'s one object: the verdict, the counts, the findings and the lines
    checked."""
    errors = sum(1 for f in findings if f.level is Level.ERROR)
    report = {
        "ready": code == EXIT_OK,
        "exit_code": code,
        "errors": errors,
        "warnings": len(findings) - errors,
        "sign_ins_failed": failed,
        "findings": [
            {"level": f.level.value, "where": f.where, "message": f.message} for f in findings
        ],
        "checked": checked,
    }
    print(json.dumps(report, ensure_ascii=False))


def _count(number: int, noun: str) -> str:
    """``1 error``, ``2 errors``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _check(
    args: argparse.Namespace, say: Callable[[str], object]
) -> tuple[int, list[Finding], int]:
    """Check everything, ``say`` a line per thing checked; the exit code, the findings and
    how many sign-ins failed."""
    config = load_config(args.config)
    active = [a for a in config.accounts if a.active]
    smtp = f"SMTP {config.smtp.host}:{config.smtp.port}" if config.smtp else "no [smtp]"
    say(
        f"configuration {config.source}: valid ({len(config.accounts)} accounts, "
        f"{len(active)} active; {smtp})"
    )
    code = EXIT_OK
    store = config.require_store()
    repository = open_store(store, must_exist=True, migrate=False)  # check changes nothing
    try:
        behind = schema_behind(repository)
        if behind is None:
            say(f"store {store}: {_store_summary(repository)}")
            findings = settings_findings(config, repository)
            findings += stranded_replies(config, repository)
            findings += outbox_stalled(config, repository)
        else:  # its tables are read only once migrated
            say(f"store {store}: schema {getattr(repository, 'schema_version', '?')}")
            findings = [Finding(Level.WARNING, "store", behind)]
    finally:
        repository.close()
    if isinstance(store, Path):
        findings = store_write_findings(store) + findings
    if not active:
        findings.append(Finding(Level.WARNING, "accounts", "no active account: nothing to poll"))
    if config.smtp is None:
        findings.append(
            Finding(Level.WARNING, "smtp", "no [smtp] section: replies are recorded, not sent")
        )
    token_findings, blocked = token_file_findings(config)
    findings = token_findings + findings
    failed = 0  # servers that refused us, or could not be reached
    if not args.no_sign_in:
        failed = _check_sign_ins(config, active, blocked, say)
        if failed:
            code = max(code, EXIT_TRANSPORT)
    if any(f.level is Level.ERROR for f in findings):
        code = EXIT_CONFIG
    return code, findings, failed


_NOT_TRIED = "not signed in: its refresh_token_file could not be written back (see below)"


def _check_sign_ins(
    config: Config, active: list[AccountConfig], blocked: set[str], say: Callable[[str], object]
) -> int:
    """Sign in to every active account's server and the SMTP server, a line for each; how
    many failed (refused, or not reached). Those ``blocked`` are named, not tried."""
    failed = 0
    for account in active:
        label = account_label(config, account)
        if label in blocked:
            say(f"{label}: {_NOT_TRIED}")
            continue
        try:
            say(f"{label}: {_sign_in(account)}")
        except (MailboxError, OSError) as exc:
            say(f"{label}: FAILED: {exc}")
            failed += 1
    if "smtp" in blocked:
        say(f"smtp: {_NOT_TRIED}")
        return failed
    mailer = make_mailer(config)
    if mailer is not None:
        verify = getattr(mailer, "verify", None)
        try:
            say(f"smtp: {verify() if verify is not None else 'cannot be checked'}")
        except (SendError, AsmEmailError) as exc:
            say(f"smtp: FAILED: {exc}")
            failed += 1
    return failed
