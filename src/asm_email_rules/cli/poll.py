"""``asm-email-rules poll``: the polling service over the configured accounts."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from asm_email_rules.bootstrap import Wiring, bootstrap
from asm_email_rules.cli._common import (
    EXIT_OK,
    EXIT_REPLIES_FAILED,
    EXIT_TRANSPORT,
    outbox_when,
)
from asm_email_rules.cli.check import settings_findings, stranded_replies, token_file_findings
from asm_email_rules.config import Config, load_config
from asm_email_rules.desk_check import Level
from asm_email_rules.errors import AsmEmailError, ConfigError, StoreUnavailableError
from asm_email_rules.model import ReplyStatus
from asm_email_rules.protocols import Repository
from asm_email_rules.service import PollReport

NAME = "poll"

log = logging.getLogger("asm_email_rules.cli")


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``poll`` and its options; it logs at INFO level even without ``--verbose``."""
    parser = commands.add_parser(
        NAME,
        help="run the polling service over the configured accounts",
        description="Poll every active account on its interval until SIGTERM or Ctrl-C "
        "(the message in hand is finished first); SIGHUP reads the configuration again. "
        "--once polls each account once and exits.",
    )
    parser.add_argument("--config", metavar="F", required=True, help="configuration file")
    parser.add_argument("--once", action="store_true", help="poll each account once, then exit")
    parser.set_defaults(handler=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    """``--once``: one pass; exit 4 if a reply failed for good in it, else 3 if an account had
    errors or a reply was deferred, else 0. Without ``--once``: run until a signal."""
    config = load_config(args.config)
    if not any(account.active for account in config.accounts):
        raise ConfigError("no active [[accounts]] to poll", source=str(config.source or ""))
    stop = threading.Event()
    if args.once:
        with bootstrap(config) as wiring:  # a store that cannot be used now: exit 3
            _start(config, wiring)
            report = wiring.service.poll_once(stop, final=True)
            _print_report(report)
            if wiring.mailer is not None:
                _print_waiting(config, wiring.repository, report)
            return exit_code(report)
    reload, terminate = threading.Event(), threading.Event()
    with _signals_set(stop, reload, terminate):
        running = config  # the configuration the service last started with
        while True:
            try:
                waited = _bootstrap_when_ready(config, stop)
            except AsmEmailError as exc:  # the new settings, or the store they name
                if config is running:
                    raise
                log.error("SIGHUP: configuration refused, going on with the previous one: %s", exc)
                config = running
                continue
            running = config
            if waited is None and not reload.is_set():
                log.error("stopped before the store could be used")
                return EXIT_TRANSPORT
            failing: tuple[str, ...] = ()
            if waited is not None:
                with waited as wiring:
                    wiring.service.run(stop)
                    failing = wiring.service.persistently_failing
            if not reload.is_set() or terminate.is_set():
                break
            # cleared before the file is read: a SIGHUP (or SIGTERM) that comes while it is
            # read sets them again, and is answered next, not forgotten
            reload.clear()
            stop.clear()
            if terminate.is_set():  # SIGTERM while reloading: stop at once
                stop.set()
            config = _reloaded(args.config, config)
        if failing:
            log.error(
                "stopped while accounts were failing persistently: %s",
                ", ".join(failing),
                extra={"accounts": list(failing)},
            )
            return EXIT_TRANSPORT
        return EXIT_OK


def exit_code(report: PollReport) -> int:
    """4 when a reply failed for good in this pass (refused, or given up after
    ``reply_retry_hours``: an operator should look, ``replies list --failed``); else 3 when an
    account could not be polled or a reply met a temporary SMTP failure; else 0."""
    if report.total("replies_failed"):
        return EXIT_REPLIES_FAILED
    if report.total("errors") or report.total("replies_deferred"):
        return EXIT_TRANSPORT
    return EXIT_OK


def refuse_misconfigured(config: Config, repository: Repository, *, warn: bool = True) -> None:
    """Log the settings' warnings; raise ConfigError on the first error (ids naming nobody or
    a non-analyst), so the service never runs with a desk that logs calls wrongly.
    ``warn=False`` (``deliver``, run once per message) skips the warnings.

    A refresh token the service could not keep when the server rotates it (a
    ``refresh_token_file`` in a folder this user cannot write, or one from the configuration)
    is logged too, as ``check`` reports it, but does not stop the service: the token works
    until the process ends, and the operator learns at start-up, not from the next
    ``invalid_grant``."""
    findings = settings_findings(config, repository)
    errors = [finding for finding in findings if finding.level is Level.ERROR]
    if errors:
        more = f" (and {len(errors) - 1} more: see `asm-email-rules check`)" if errors[1:] else ""
        first = errors[0]
        raise ConfigError(f"{first.where}: {first.message}{more}", source=str(config.source or ""))
    if not warn:
        return
    for finding in [*findings, *token_file_findings(config)[0]]:
        level = logging.ERROR if finding.level is Level.ERROR else logging.WARNING
        log.log(level, "%s: %s", finding.where, finding.message)


WAITING_SHOWN = 1000
"""At most this many waiting replies are counted per account by ``poll --once``."""


def _print_waiting(config: Config, repository: Repository, report: PollReport) -> None:
    """After ``poll --once``: the replies each polled account still has in the outbox (deferred
    by a temporary failure, or not reached this pass), and when the first is due: else a
    cron job's operator learns of them only from ``replies list``."""
    mailboxes = {account.name: account.mailbox.name for account in config.accounts}
    for account in report.accounts:
        if account.skipped or account.waiting or account.account not in mailboxes:
            continue
        pending = repository.list_replies(
            [ReplyStatus.PENDING], mailbox=mailboxes[account.account], limit=WAITING_SHOWN
        )
        if not pending:
            continue
        count = f"{len(pending)}{'+' if len(pending) >= WAITING_SHOWN else ''}"
        due = min(entry.next_attempt_at or entry.queued_at for entry in pending)
        print(
            f"  {count} replies wait in the outbox, the first due {outbox_when(due)}"
            " (replies list --pending)"
        )


def _print_report(report: PollReport) -> None:
    for account in report.accounts:
        if account.skipped:
            print(f"{account.account}: inactive, skipped")
            continue
        if account.waiting:
            until = account.lease_until.isoformat() if account.lease_until else "?"
            print(
                f"{account.account}: waiting: another poller ({account.lease_holder}) holds "
                f"the account until {until}"
            )
            continue
        print(
            f"{account.account}: processed {account.processed}, duplicates "
            f"{account.duplicates}, retried {account.retried}, quarantined "
            f"{account.quarantined}, errors {account.errors}; replies sent "
            f"{account.replies_sent}, deferred {account.replies_deferred}, failed "
            f"{account.replies_failed}"
            + (f" (last: {account.last_error})" if account.last_error else "")
            + (
                f"; backing off {account.backoff_seconds:.0f} s: our side failed"
                + (
                    f" ({account.backoff_cause})"
                    if account.backoff_cause and account.backoff_cause != account.last_error
                    else ""
                )
                + ", no message was blamed for it"
                if account.backoff_seconds
                else ""
            )
        )
        if account.discarded:
            print(f"  {account.discard_summary()}")
        if account.gone:
            print(f"  {account.gone} message(s) gone before they were read (another client)")
        if account.expunged:
            print(f"  expunged {account.expunged} message(s) a previous session had deleted")
        if account.pruned:
            print(f"  ledger: {account.pruned} entries past ledger_retention_days forgotten")
        if account.suppressed:
            print(f"  {account.suppressed} replies held back (each message's log line says why)")


def _start(config: Config, wiring: Wiring) -> None:
    """Refuse a misconfigured desk; say that replies are not sent without ``[smtp]``."""
    refuse_misconfigured(config, wiring.repository)
    for finding in stranded_replies(config, wiring.repository):
        log.warning("%s: %s", finding.where, finding.message)
    if wiring.mailer is None:
        log.warning("no [smtp] section: replies are recorded in the store as pending, not sent")


def _bootstrap_when_ready(config: Config, stop: threading.Event) -> Wiring | None:
    """The service's wiring, once its store can be opened and its settings checked against
    it (:func:`_start`); None when ``stop`` was set first.

    A store that is there but cannot be used now (a read-only file system, a full disk, a
    PostgreSQL server that does not answer: :class:`StoreUnavailableError`) is tried again with
    the accounts' backoff (``backoff_initial_seconds``, doubled up to ``backoff_max_seconds``),
    each wait logged, as the service backs off from such a failure once running: "Failures
    never stop the service". Anything else (a missing store, a file that is not one) raises.
    """
    delay = config.system.backoff_initial_seconds
    while True:
        try:
            return _opened_and_started(config)
        except StoreUnavailableError as exc:
            log.warning(
                "the store cannot be used yet: %s; trying again in %g s",
                exc,
                delay,
                extra={"error": str(exc), "retry_seconds": delay},
            )
        if stop.wait(delay):
            return None
        delay = min(delay * 2, config.system.backoff_max_seconds)


def _opened_and_started(config: Config) -> Wiring:
    """:func:`bootstrap` and :func:`_start`; the wiring is closed when the start fails."""
    wiring = bootstrap(config)
    try:
        _start(config, wiring)
    except BaseException:
        wiring.close()
        raise
    return wiring


def _reloaded(path: str, config: Config) -> Config:
    """After SIGHUP: the configuration file read again, or ``config`` (the one running) when
    the file is now wrong, so a typo made while editing never stops the service."""
    try:
        fresh = load_config(path)
    except (ConfigError, OSError) as exc:
        log.error("SIGHUP: configuration not reloaded, going on with the previous one: %s", exc)
        return config
    if not any(account.active for account in fresh.accounts):
        log.error(
            "SIGHUP: configuration not reloaded, going on with the previous one: "
            "no active [[accounts]] to poll"
        )
        return config
    log.info("SIGHUP: configuration reloaded from %s", path)
    return fresh


@contextlib.contextmanager
def _signals_set(
    stop: threading.Event, reload: threading.Event, terminate: threading.Event
) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` and ``terminate`` meanwhile; SIGHUP sets ``reload`` and
    ``stop`` (the message in hand is finished, the configuration read again, the service
    started afresh); the previous handlers come back after. Python's default for SIGHUP ends
    the process at once, with no line in the log, which an operator reloading the
    configuration never meant."""

    def hang_up(*_: object) -> None:
        reload.set()
        stop.set()

    def end(*_: object) -> None:
        terminate.set()
        stop.set()

    previous = {sig: signal.signal(sig, end) for sig in (signal.SIGTERM, signal.SIGINT)}
    if hasattr(signal, "SIGHUP"):  # POSIX only
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hang_up)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
