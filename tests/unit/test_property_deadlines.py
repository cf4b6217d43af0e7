"""No property test is timed by the wall clock.

Hypothesis fails an example that takes longer than its ``deadline`` (200 ms unless set) and
then reports the test as flaky when the example, run again, is quick. On a loaded or paused
CI machine an example of half a millisecond was measured at 359 ms: a red run with nothing
wrong. Speed is what the linear-time tests check (``cpu_timing``: this process's CPU time,
one size against eight times it), so every ``@given`` test here says ``deadline=None``.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _untimed(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True when the function's ``@settings(...)`` says ``deadline=None``."""
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("settings"):
            for keyword in decorator.keywords:
                if keyword.arg == "deadline":
                    return isinstance(keyword.value, ast.Constant) and keyword.value.value is None
    return False


def _given(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("given")
        for decorator in function.decorator_list
    )


def test_every_property_test_has_no_deadline() -> None:
    timed = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if _given(node) and not _untimed(node):
                timed.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert timed == [], "set @settings(deadline=None) on these (see this module's docstring)"
