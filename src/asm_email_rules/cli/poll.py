"""``asm-email-rules poll``: the polling service over the configured accounts."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from asm_email_rules.bootstrap import bootstrap
from asm_email_rules.cli._common import EXIT_OK, EXIT_TRANSPORT
from asm_email_rules.config import load_config
from asm_email_rules.errors import ConfigError
from asm_email_rules.service import PollingService, PollReport

NAME = "poll"

log = logging.getLogger("asm_email_rules.cli")


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``poll`` and its options; it logs at INFO level even without ``--verbose``."""
    parser = commands.add_parser(
        NAME,
        help="run the polling service over the configured accounts",
        description="Poll every active account on its interval until SIGTERM or Ctrl-C "
        "(the message in hand is finished first). --once polls each account once and exits.",
    )
    parser.add_argument("--config", metavar="F", required=True, help="configuration file")
    parser.add_argument("--once", action="store_true", help="poll each account once, then exit")
    parser.set_defaults(handler=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    """``--once``: one pass, exit 3 if any account had errors; else run until a signal."""
    config = load_config(args.config)
    if not any(account.active for account in config.accounts):
        raise ConfigError("no active [[accounts]] to poll", source=str(config.source or ""))
    with bootstrap(config) as wiring:
        if wiring.mailer is None:
            log.warning("no [smtp] section: replies are recorded in the store as pending, not sent")
        stop = threading.Event()
        if args.once:
            report = wiring.service.poll_once(stop)
            _print_report(report)
            return EXIT_TRANSPORT if report.total("errors") else EXIT_OK
        _run_until_signalled(wiring.service, stop)
        return EXIT_OK


def _print_report(report: PollReport) -> None:
    for account in report.accounts:
        if account.skipped:
            print(f"{account.account}: inactive, skipped")
            continue
        print(
            f"{account.account}: processed {account.processed}, duplicates "
            f"{account.duplicates}, retried {account.retried}, quarantined "
            f"{account.quarantined}, errors {account.errors}"
            + (f" (last: {account.last_error})" if account.last_error else "")
            + (
                f"; backing off {account.backoff_seconds:.0f} s: our side failed, no message "
                "was blamed for it"
                if account.backoff_seconds
                else ""
            )
        )
        if account.discarded:
            print(f"  {account.discard_summary()}")
        if account.expunged:
            print(f"  expunged {account.expunged} message(s) a previous session had deleted")


def _run_until_signalled(service: PollingService, stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; the previous handlers come back afterwards."""
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        service.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
