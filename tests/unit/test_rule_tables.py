"""The decision tables themselves: no dead rows, a catch-all in each, docs in sync."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from asm_email_rules import rules
from asm_email_rules.rules import TABLES, Outcome, Row, first_match

DOCS = Path(__file__).resolve().parents[2] / "docs" / "decision-tables.md"

_CHOICES: dict[str, tuple[object, ...]] = {
    "kind": ("normal", "bounce", "own_mail", "auto_reply", "list"),
    "case": ("unknown", "analyst_only", "user_only", "analyst_and_user"),
}


def _space(table: tuple[Row, ...]) -> list[dict[str, object]]:
    names = sorted({name for row in table for name in row.when})
    values = [_CHOICES.get(name, (True, False)) for name in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


@pytest.mark.parametrize(
    ("table_name", "row"),
    [(name, row) for name, table in TABLES.items() for row in table],
    ids=lambda value: value.id if isinstance(value, Row) else str(value),
)
def test_every_row_can_fire(table_name: str, row: Row) -> None:
    """A row that no combination of conditions reaches is a rule that silently never applies."""
    table = TABLES[table_name]
    assert any(first_match(table, conditions) is row for conditions in _space(table)), (
        f"{row.id} is shadowed by earlier rows"
    )


@pytest.mark.parametrize("table_name", list(TABLES))
def test_every_table_ends_with_a_catch_all(table_name: str) -> None:
    assert TABLES[table_name][-1].when == {}


def test_row_ids_are_unique_and_cite_a_sentence() -> None:
    rows = [row for table in TABLES.values() for row in table]
    assert len({row.id for row in rows}) == len(rows)
    assert all(len(row.spec) > 20 for row in rows)


def test_every_condition_used_is_documented() -> None:
    used = {name for table in TABLES.values() for row in table for name in row.when}
    assert used <= set(rules.CONDITIONS)


def test_every_outcome_has_a_builder() -> None:
    routed = {Outcome.CONTINUE, Outcome.LOG_CALL}
    used = {row.outcome for table in TABLES.values() for row in table} - routed
    assert used <= set(rules._BUILDERS)


def test_docs_decision_tables_are_current() -> None:
    """docs/decision-tables.md is generated from the rows; regenerate with
    `asm-email-rules tables > docs/decision-tables.md`."""
    assert DOCS.read_text(encoding="utf-8") == rules.render_tables_markdown()
