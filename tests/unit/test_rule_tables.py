"""The decision tables themselves: no dead rows, a catch-all in each, docs in sync."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from asm_email_rules import rules
from asm_email_rules.classify import MailKind
from asm_email_rules.decision import Facts
from asm_email_rules.model import (
    Call,
    CallStatus,
    InboundEmail,
    PersonCase,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.rules import CONDITIONS, TABLES, Outcome, Row, decide, first_match
from asm_email_rules.sample import ALICE, PEOPLE, UMA, sample_mailbox
from asm_email_rules.sender import resolve_sender
from asm_email_rules.settings import MailboxSettings, SystemSettings
from asm_email_rules.subject import parse_subject

DOCS = Path(__file__).resolve().parents[2] / "docs" / "decision-tables.md"

_VALUES: dict[str, tuple[object, ...]] = {c.name: c.values for c in CONDITIONS}


def _space(table: tuple[Row, ...]) -> list[dict[str, object]]:
    """Every combination of the values the table's conditions take (from their records)."""
    names = sorted({name for row in table for name in row.when})
    values = [_VALUES[name] for name in names]
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
    assert used <= {condition.name for condition in CONDITIONS}


def test_every_outcome_has_a_builder() -> None:
    routed = {Outcome.CONTINUE, Outcome.LOG_CALL}
    used = {row.outcome for table in TABLES.values() for row in table} - routed
    assert used <= set(rules._BUILDERS)


def test_docs_decision_tables_are_current() -> None:
    """docs/decision-tables.md is generated from the rows; regenerate with
    `asm-email-rules tables > docs/decision-tables.md`."""
    assert DOCS.read_text(encoding="utf-8") == rules.render_tables_markdown()


# -- rows, conditions and evaluation tied together ------------------------------------------

_NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_SUBJECTS = ("Printer broken", "[CALL#100]", "[CLOSE#100]", "[APPROVE#500]", "[MyCalls]")
_CALLS = (None, Call(100, owner_id=ALICE.id, user_id=UMA.id), Call(100, CallStatus.CLOSED))


def _scenarios() -> list[tuple[Facts, MailboxSettings]]:
    """Facts across mail kinds, senders, subjects and record states, under two mailboxes."""
    found: list[tuple[Facts, MailboxSettings]] = []
    mailboxes = (sample_mailbox(), sample_mailbox(**{f.name: True for f in _MAILBOX_OPTIONS}))
    for kind, sender, subject, call, mailbox in itertools.product(
        MailKind, ("nobody@else.example", *(p.email for p in PEOPLE)), _SUBJECTS, _CALLS, mailboxes
    ):
        email = InboundEmail(sender=sender, subject=subject, body="text")
        facts = Facts(
            email=email,
            command=parse_subject(subject),
            sender=resolve_sender(sender, [p for p in PEOPLE if p.email == sender]),
            now=_NOW,
            mail_kind=kind,
            call=call,
            task=Task(500, TaskKind.APPROVAL, TaskStatus.PENDING, approver_ids=(ALICE.id,)),
        )
        found.append((facts, mailbox))
    return found


_MAILBOX_OPTIONS = [
    field
    for field in attrs.fields(MailboxSettings)
    if field.default is False or field.default is True
]


def test_condition_names_are_unique_and_each_is_used_by_a_row() -> None:
    names = [condition.name for condition in CONDITIONS]
    used = {name for table in TABLES.values() for row in table for name in row.when}
    assert len(names) == len(set(names))
    assert set(names) == used, "a condition no row names is dead; a row naming none fails import"


def test_rows_ask_for_typed_values_not_strings() -> None:
    """Where a condition is a kind, rows hold the enum (MailKind.BOUNCE), never "bounce"."""
    gate = {row.id: row for row in TABLES["gate"]}
    assert gate["GATE-2"].when == {"kind": MailKind.BOUNCE}
    assert {type(row.when["case"]) for row in TABLES["log_call"] if "case" in row.when} == {
        PersonCase
    }


def test_evaluation_gives_every_condition_one_of_its_values() -> None:
    """evaluate_conditions computes exactly the conditions the records list, within their
    values, and decide fires the row first_match finds for those values."""
    names = {condition.name for condition in CONDITIONS}
    for facts, mailbox in _scenarios():
        values = rules.evaluate_conditions(facts, mailbox, SystemSettings())
        assert set(values) == names
        for condition in CONDITIONS:
            value = values[condition.name]
            assert any(type(value) is type(v) and value == v for v in condition.values), (
                condition.name,
                value,
            )
        decision = decide(facts, mailbox, SystemSettings())
        gate = first_match(TABLES["gate"], values)
        assert decision.rules[0] == gate.id or gate.outcome is Outcome.CONTINUE
        assert dict(decision.conditions) == values


def _table(*rows: Row) -> dict[str, tuple[Row, ...]]:
    return {"t": (*rows, Row("T-9", {}, Outcome.DISCARD, "catch-all row"))}


@pytest.mark.parametrize(
    ("when", "error", "says"),
    [
        ({"colour": True}, ValueError, "unknown condition 'colour'"),
        ({"kind": "bounce"}, TypeError, "takes MailKind, not str"),
        ({"case": "unknown"}, TypeError, "takes PersonCase, not str"),
        ({"found": 1}, TypeError, "takes bool, not int"),
    ],
)
def test_a_row_naming_an_unknown_condition_or_a_wrong_value_fails_loudly(
    when: dict[str, object], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=re.escape(says)):
        rules.check_tables(_table(Row("T-1", when, Outcome.DISCARD, "x")), CONDITIONS)


def test_a_table_without_a_catch_all_fails_loudly() -> None:
    table = {"t": (Row("T-1", {"found": True}, Outcome.DISCARD, "x"),)}
    with pytest.raises(ValueError, match="catch-all"):
        rules.check_tables(table, CONDITIONS)


def test_the_shipped_tables_pass_the_check() -> None:
    rules.check_tables(TABLES, CONDITIONS)
