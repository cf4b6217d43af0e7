"""Back-off on sign-in and connection failures (issue 11, item 5: "A wrong password retries
every interval forever with no backoff (account lockout risk) and the continuous service exits 0
on SIGTERM after hours of failures")."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.backoff import BackoffPolicy
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import MailboxAuthenticationError
from asm_email_rules.protocols import Mailbox
from asm_email_rules.sample import sample_mailbox
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings


class RefusingMailbox:
    """A mailbox whose server refuses our password."""

    def list_keys(self) -> Iterator[str]:
        raise MailboxAuthenticationError(
            "IMAP 127.0.0.1:1: sign-in as 'desk' with LOGIN failed: refused: "
            "[AUTHENTICATIONFAILED] Authentication failed.",
            server="IMAP 127.0.0.1:1",
            user="desk",
            mechanism="LOGIN",
        )

    def fetch(self, key: str) -> bytes:
        raise AssertionError("never reached")

    def delete(self, key: str) -> None:
        raise AssertionError("never reached")

    def quarantine(self, key: str, reason: str) -> None:
        raise AssertionError("never reached")

    def close(self) -> None:
        pass


def test_the_service_backs_off_a_refused_sign_in_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = AccountConfig(
        name="desk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(name="desk"),
        path=Path("/nonexistent"),
        interval_seconds=0.05,
    )
    config = Config(store=Path(":memory:"), system=SystemSettings(), smtp=None, accounts=(account,))
    attempts: list[float] = []
    fifth = threading.Event()

    def factory(_: AccountConfig) -> Mailbox:
        attempts.append(time.monotonic())
        if len(attempts) == 5:
            fifth.set()
        return RefusingMailbox()

    service = PollingService(
        config, InMemoryRepository(), None, factory, backoff=BackoffPolicy(0.05, 10.0)
    )
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="asm_email_rules")
    worker = threading.Thread(target=service.run, args=(stop,))
    worker.start()
    assert fifth.wait(30), attempts
    stop.set()
    worker.join(timeout=30)
    assert len(attempts) == 5, attempts
    # Waits of 0.05, 0.1, 0.2 and 0.4 s (without backoff: 0.05 s each, twenty attempts a
    # second). Each gap is at least its wait: a loaded machine can only make it longer, so
    # no upper bound (a gap of 0.05 s stretched to 0.14 s by a pause once failed a test of
    # "each gap longer than the one before").
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.9 * 0.05 * 2**n for n, gap in enumerate(gaps)), gaps
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # the third failure in a row: persistent
    assert errors[0].getMessage().startswith("account failing persistently: sign-in refused")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the first failure; the repeats are not logged again
    assert warnings[0].getMessage().startswith("account backing off: sign-in refused")
    assert "retrying next interval" not in caplog.text
    assert "b'" not in caplog.text
    assert service.persistently_failing == ("desk",)


def test_sigterm_after_persistent_failures_exits_non_zero(tmp_path: Path) -> None:
    # A real `poll` process against a port nobody listens on, stopped as systemd stops it.
    config = tmp_path / "config.toml"
    config.write_text(
        'store = "s.sqlite3"\n[system]\nbackoff_initial_seconds = 0.05\n'
        'backoff_max_seconds = 0.2\n[[accounts]]\nname = "desk"\nprotocol = "imap"\n'
        'host = "127.0.0.1"\nport = 9\nsecurity = "plain"\nusername = "desk"\n'
        'password = "x"\ninterval_seconds = 0.05\ntimeout = 1\n'
        '[accounts.mailbox]\naddresses = ["desk@example.org"]\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "asm_email_rules", "poll", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        deadline = time.monotonic() + 60
        while "failing persistently" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    err = log.read_text()
    assert process.returncode == 3, err
    assert "account failing persistently" in err
    assert "stopped while accounts were failing persistently: desk" in err
    assert err.count("account backing off: mailbox unreachable") == 1


def test_poll_once_says_the_poll_failed_and_promises_no_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 11, item 8: "``--once`` says 'retrying next interval'" although it then exits.
    from asm_email_rules.cli import main

    config = tmp_path / "config.toml"
    config.write_text(
        'store = "s.sqlite3"\n[[accounts]]\nname = "desk"\nprotocol = "imap"\n'
        'host = "127.0.0.1"\nport = 9\nsecurity = "plain"\nusername = "desk"\n'
        'password = "x"\ntimeout = 1\n[accounts.mailbox]\naddresses = ["desk@example.org"]\n',
        encoding="utf-8",
    )
    code = main(["poll", "--once", "--config", str(config)])
    _, err = capsys.readouterr()
    assert code == 3
    assert "account poll failed: mailbox unreachable: IMAP 127.0.0.1:9" in err
    assert "retrying" not in err
    assert "next try" not in err
