"""CPU timing for the linear-time tests: one input of ``n`` units and one of ``8 n``.

Linear work takes about 8 times longer at 8 times the size; a quadratic pass 64 times. The
bound allowed (24 by default) leaves room for a loaded machine, and the time is the least
of three runs of this process's CPU time, so other processes do not count.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SCALE = 8
ALLOWED = 24.0


def least_cpu(work: Callable[[], object], runs: int = 3) -> float:
    """The least CPU time (seconds, this process only) of ``runs`` runs of ``work``."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def assert_linear(
    build: Callable[[int], Callable[[], object]],
    n: int,
    *,
    allowed: float = ALLOWED,
    floor: float = 0.01,
    what: object = "",
) -> tuple[float, float]:
    """Assert that ``build(8 n)`` takes less than ``allowed`` times ``build(n)`` (a time under
    ``floor`` seconds counts as ``floor``) and under 2 s; the two timings. ``build(n)`` runs
    once first, untimed: compiled patterns and tables are not counted."""
    small, large = build(n), build(SCALE * n)
    small()
    timings = (least_cpu(small), least_cpu(large))
    assert timings[1] < 2.0, (what, timings)
    assert timings[1] < max(timings[0], floor) * allowed, (what, timings)
    return timings
