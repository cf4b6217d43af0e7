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
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.backoff import Backoff, BackoffPolicy, Change
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import MailboxAuthenticationError
from asm_email_rules.protocols import Mailbox
from asm_email_rules.sample import sample_mailbox
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings


def test_waits_double_up_to_the_cap_and_a_success_ends_them() -> None:
    policy = BackoffPolicy(initial=60, factor=2, cap=600)
    state = Backoff(policy)
    delays = []
    for attempt in range(7):
        state, _ = state.failure(1000.0 * attempt, "refused")
        delays.append(state.delay)
    assert delays == [60, 120, 240, 480, 600, 600, 600]
    assert not state.ready(6000.0 + 599)
    assert state.ready(6000.0 + 600)
    state, change = state.success()
    assert change is Change.RECOVERED
    assert state == Backoff(policy)
    assert state.ready(0.0)


def test_one_change_per_state_not_one_line_per_attempt() -> None:
    state = Backoff(BackoffPolicy(initial=1, persistent_after=3))
    changes = []
    for error in ("refused", "refused", "refused", "refused", "unreachable", "unreachable"):
        state, change = state.failure(0.0, error)
        changes.append(change)
    assert changes == [
        Change.STARTED_FAILING,
        None,
        Change.BECAME_PERSISTENT,
        None,
        Change.ERROR_CHANGED,
        None,
    ]
    assert state.persistent
    _, change = Backoff().success()
    assert change is None  # healthy stays healthy, silently


@given(
    initial=st.floats(min_value=0.001, max_value=1e6),
    factor=st.floats(min_value=1.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=1e6),
    failures=st.integers(min_value=0, max_value=10**9),
)
def test_the_wait_is_never_above_the_cap_nor_below_the_first(
    initial: float, factor: float, extra: float, failures: int
) -> None:
    policy = BackoffPolicy(initial=initial, factor=factor, cap=initial + extra)
    delay = policy.delay(failures)
    if failures == 0:
        assert delay == 0
    else:
        assert initial <= delay <= initial + extra
        assert policy.delay(failures + 1) >= delay  # never shrinks while failing


def test_nonsense_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="initial > 0"):
        BackoffPolicy(initial=0)
    with pytest.raises(ValueError, match="cap >= initial"):
        BackoffPolicy(initial=10, cap=5)


class RefusingMailbox:
    """A mailbox whose server refuses our password."""

    def list_keys(self) -> list[str]:
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

    def factory(_: AccountConfig) -> Mailbox:
        attempts.append(time.monotonic())
        return RefusingMailbox()

    service = PollingService(config, InMemoryRepository(), None, factory)
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="asm_email_rules")
    worker = threading.Thread(target=service.run, args=(stop,))
    worker.start()
    time.sleep(1.0)  # waits of 0.05, 0.1, 0.2, 0.4 s: five attempts, not twenty
    stop.set()
    worker.join(timeout=5)
    assert 4 <= len(attempts) <= 6, attempts
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(";")[0] for r in errors] == [
        "account started failing",
        "account failing persistently",
    ]
    assert "retrying next interval" not in caplog.text
    assert "b'" not in caplog.text
    assert service.persistently_failing == ("desk",)


def test_sigterm_after_persistent_failures_exits_non_zero(tmp_path: Path) -> None:
    # A real `poll` process against a port nobody listens on, stopped as systemd stops it.
    config = tmp_path / "config.toml"
    config.write_text(
        'store = "s.sqlite3"\n[[accounts]]\nname = "desk"\nprotocol = "imap"\n'
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
    assert err.count("account started failing") == 1
