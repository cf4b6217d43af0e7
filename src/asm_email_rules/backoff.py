"""Exponential, capped back-off after repeated failures, as a plain value (no clock, no I/O).

Issue 11, item 5: "A wrong password retries every interval forever with no backoff (account
lockout risk)". The polling service keeps one :class:`Backoff` per account for sign-in and
connection failures: each failure doubles the wait before the next attempt, up to a cap; a
success ends it. Each transition also says whether the state *changed*
(:class:`Change`), so the caller logs one line per change instead of one per attempt.

Times are seconds on any monotonic clock the caller chooses (``time.monotonic()``)::

    backoff = Backoff(BackoffPolicy(initial=60, cap=3600))
    backoff, change = backoff.failure(now, "IMAP ...: sign-in refused")  # STARTED_FAILING
    backoff.ready(now + 30)      # False: the next attempt is due at now + 60
    backoff, change = backoff.failure(now + 60, "same error")            # None: no new state
    backoff.delay                # 120.0
    backoff, change = backoff.success()                                  # RECOVERED
"""

from __future__ import annotations

import enum
import math

import attrs

__all__ = ["Backoff", "BackoffPolicy", "Change"]


@attrs.frozen
class BackoffPolicy:
    """How long to wait after ``n`` consecutive failures: ``initial * factor**(n-1)``, at most
    ``cap`` seconds. After ``persistent_after`` consecutive failures the failure counts as
    persistent (the service then exits non-zero when stopped)."""

    initial: float = 60.0
    factor: float = 2.0
    cap: float = 3600.0
    persistent_after: int = 3

    def __attrs_post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.cap < self.initial:
            raise ValueError(
                f"back-off needs initial > 0, factor >= 1 and cap >= initial, got {self!r}"
            )
        if self.persistent_after < 1:
            raise ValueError(f"persistent_after must be 1 or more, got {self.persistent_after}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 for none)."""
        if failures <= 0:
            return 0.0
        if self.factor == 1:
            return self.initial
        # compare logarithms, not powers: a week-long outage must not overflow a float
        if (failures - 1) * math.log(self.factor) >= math.log(self.cap / self.initial):
            return self.cap
        return self.initial * self.factor ** (failures - 1)


class Change(enum.Enum):
    """A change of state worth one log line."""

    STARTED_FAILING = "started failing"
    ERROR_CHANGED = "failing differently"
    BECAME_PERSISTENT = "failing persistently"
    RECOVERED = "recovered"


@attrs.frozen
class Backoff:
    """The failure state of one thing that is retried (an account, a store).

    ``failures`` counts consecutive failures; ``retry_at`` is when the next attempt may run
    (None while healthy); ``last_error`` the latest failure's text.
    """

    policy: BackoffPolicy = BackoffPolicy()
    failures: int = 0
    retry_at: float | None = None
    last_error: str = ""

    @property
    def failing(self) -> bool:
        """True after a failure and until the next success."""
        return self.failures > 0

    @property
    def persistent(self) -> bool:
        """True after ``policy.persistent_after`` consecutive failures."""
        return self.failures >= self.policy.persistent_after

    @property
    def delay(self) -> float:
        """Seconds between the latest failure and the next attempt (0 while healthy)."""
        return self.policy.delay(self.failures)

    def ready(self, now: float) -> bool:
        """True when an attempt may run at ``now``."""
        return self.retry_at is None or now >= self.retry_at

    def failure(self, now: float, error: str) -> tuple[Backoff, Change | None]:
        """The state after a failure at ``now``, and the change worth logging (or None)."""
        failures = self.failures + 1
        after = attrs.evolve(
            self,
            failures=failures,
            retry_at=now + self.policy.delay(failures),
            last_error=error,
        )
        if not self.failing:
            return after, Change.STARTED_FAILING
        if after.persistent and not self.persistent:
            return after, Change.BECAME_PERSISTENT
        if error != self.last_error:
            return after, Change.ERROR_CHANGED
        return after, None

    def success(self) -> tuple[Backoff, Change | None]:
        """The state after a success: healthy; RECOVERED when it was failing."""
        healthy = Backoff(self.policy)
        return healthy, (Change.RECOVERED if self.failing else None)
