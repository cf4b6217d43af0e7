"""The account backoff value: exponential, capped, and a change of state only when it matters.

DESIGN 4, "Nothing is lost": a failure of our own side makes "the account back off and retry
later"; the issue asks for "exponential, capped, logged once per change of state".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from asm_email_rules.backoff import Backoff, BackoffPolicy, change

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_waits_double_from_the_first_and_stop_at_the_cap() -> None:
    policy = BackoffPolicy(initial=15, maximum=900)
    assert [policy.delay(n) for n in range(9)] == [0, 15, 30, 60, 120, 240, 480, 900, 900]


def test_a_huge_failure_count_is_the_cap_not_an_overflow() -> None:
    assert BackoffPolicy(initial=1, maximum=60, factor=10).delay(10**6) == 60


def test_each_failure_moves_the_retry_time_and_success_ends_it() -> None:
    backoff = Backoff(BackoffPolicy(initial=10, maximum=25))
    first = backoff.failure("store unavailable", "database is locked", NOW)
    assert first.retry_at == NOW + timedelta(seconds=10)
    assert not first.ready(NOW + timedelta(seconds=9))
    assert first.ready(NOW + timedelta(seconds=10))
    later = NOW + timedelta(seconds=10)
    second = first.failure("store unavailable", "database is locked", later)
    assert (second.failures, second.since, second.retry_at) == (
        2,
        NOW,
        later + timedelta(seconds=20),
    )
    third = second.failure("store unavailable", "disk full", later)
    assert third.delay == 25
    assert third.detail == "disk full"
    assert third.seconds_left(later) == 25
    healthy = third.success()
    assert (healthy.backing_off, healthy.retry_at, healthy.policy) == (False, None, third.policy)
    assert healthy.ready(NOW)
    assert healthy.seconds_left(NOW) == 0


@pytest.mark.parametrize("step", [timedelta(hours=1), timedelta(days=1), timedelta(days=366)])
def test_a_clock_stepped_back_after_a_failure_does_not_stretch_the_wait(step: timedelta) -> None:
    """DESIGN 4: the account "backs off and retries later": the wait the service sleeps
    (``seconds_left``) is at most the backoff's delay, however far the wall clock was stepped
    back after the failure; forward, the wait is over."""
    failed = Backoff(BackoffPolicy(initial=15, maximum=900)).failure("store unavailable", "x", NOW)
    assert failed.seconds_left(NOW - step) == 15
    assert failed.seconds_left(NOW + step) == 0


def test_change_of_state_is_reported_once_not_at_each_repeat() -> None:
    healthy = Backoff()
    failing = healthy.failure("store unavailable", "locked", NOW)
    again = failing.failure("store unavailable", "locked", NOW)
    other = again.failure("sign-in refused", "bad password", NOW)
    assert change(healthy, failing) == "started"
    assert change(failing, again) is None  # only the wait grew: no new warning
    assert change(again, other) == "changed"
    assert change(other, other.success()) == "recovered"
    assert change(healthy, healthy.success()) is None


@pytest.mark.parametrize(
    "fields", [{"initial": 0}, {"maximum": -1}, {"factor": 0.5}], ids=["initial", "max", "factor"]
)
def test_a_policy_that_would_not_wait_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        BackoffPolicy(**fields)
