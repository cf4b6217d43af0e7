"""Exponential, capped backoff for one account: a small frozen value and its state changes.

DESIGN 4, "Nothing is lost": a failure of our own side (the store locked, read-only or full;
the SMTP server or the mailbox server down; a refused sign-in) is never blamed on a message.
The *account* backs off instead: the first failure waits ``policy.initial`` seconds, each
further one ``policy.factor`` times longer, never more than ``policy.maximum``; the first
success ends it. The value is pure (time comes in as ``now``), so the polling service, the
sign-in code and tests share it, and a test drives it with a fake clock.

Logging once per change of state: :func:`change` compares two states and names the change
(``"started"``, ``"changed"`` for a failure of another kind, ``"recovered"``), or returns None
when the account just failed again the same way, which deserves no new warning.

>>> from datetime import UTC, datetime
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> b = Backoff().failure("store unavailable", "database is locked", now)
>>> b.delay, b.retry_at == now + timedelta(seconds=15)
(15.0, True)
>>> b.failure("store unavailable", "database is locked", now).delay
30.0
>>> change(b, b.success())
'recovered'
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import attrs

__all__ = ["Backoff", "BackoffChange", "BackoffPolicy", "change"]

BackoffChange = Literal["started", "changed", "recovered"]
"""What :func:`change` reports: the account started backing off, now fails for another kind of
reason, or recovered."""


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 seconds, got {value!r}")


@attrs.frozen
class BackoffPolicy:
    """How long to wait after ``n`` failures in a row: ``initial * factor ** (n - 1)`` seconds,
    at most ``maximum``. Defaults: 15 s, doubling, capped at 15 minutes.

    Raises ``ValueError`` for a non-positive ``initial`` or ``maximum`` or a ``factor`` below 1.
    """

    initial: float = attrs.field(default=15.0, validator=_positive)
    maximum: float = attrs.field(default=900.0, validator=_positive)
    factor: float = 2.0

    def __attrs_post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (0 for none)."""
        if failures <= 0:
            return 0.0
        delay = self.initial
        for _ in range(failures - 1):  # a loop, not a power: it stops at the cap, no overflow
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)


@attrs.frozen
class Backoff:
    """One account's backoff state; :meth:`failure` and :meth:`success` return the next state.

    ``failures``: failures in a row (0: healthy). ``kind``: what failed, a short fixed phrase
    (``"store unavailable"``, ``"sign-in refused"``...) compared by :func:`change`; ``detail``:
    the last error's text. ``since``: when the first failure of the run happened; ``retry_at``:
    the earliest moment to try again. Times are whatever ``now`` the caller passes (aware UTC in
    this library).
    """

    policy: BackoffPolicy = BackoffPolicy()
    failures: int = 0
    kind: str = ""
    detail: str = ""
    since: datetime | None = None
    retry_at: datetime | None = None

    @property
    def backing_off(self) -> bool:
        """True after a failure, until the next success."""
        return self.failures > 0

    @property
    def delay(self) -> float:
        """Seconds between the last failure and :attr:`retry_at` (0 when healthy)."""
        return self.policy.delay(self.failures)

    def failure(self, kind: str, detail: str, now: datetime) -> Backoff:
        """The state after one more failure at ``now``: wait longer, up to the cap."""
        failures = self.failures + 1
        return attrs.evolve(
            self,
            failures=failures,
            kind=kind,
            detail=detail,
            since=self.since if self.since is not None else now,
            retry_at=now + timedelta(seconds=self.policy.delay(failures)),
        )

    def success(self) -> Backoff:
        """The healthy state (same policy): the next failure starts again at ``initial``."""
        return Backoff(self.policy)

    def ready(self, now: datetime) -> bool:
        """True when the account may be tried at ``now`` (healthy, or its wait is over)."""
        return self.retry_at is None or now >= self.retry_at

    def seconds_left(self, now: datetime) -> float:
        """Seconds from ``now`` until :attr:`retry_at` (0 when it may be tried now), never more
        than :attr:`delay`: a wall clock stepped back (NTP, an operator) after the failure
        puts ``retry_at`` further ahead than any wait, and the account must not fall silent
        for the size of the step."""
        if self.retry_at is None:
            return 0.0
        return min(self.delay, max(0.0, (self.retry_at - now).total_seconds()))


def change(before: Backoff, after: Backoff) -> BackoffChange | None:
    """The change of state from ``before`` to ``after`` worth one log line, or None.

    ``"started"``: healthy, now failing; ``"changed"``: failing, now for another ``kind`` of
    reason; ``"recovered"``: failing, now healthy. A repeat of the same kind of failure (only
    the wait grows) and staying healthy are no change.
    """
    if not before.backing_off:
        return "started" if after.backing_off else None
    if not after.backing_off:
        return "recovered"
    return "changed" if after.kind != before.kind else None
