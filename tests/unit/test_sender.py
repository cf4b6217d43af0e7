"""Resolving the sender into the four person cases."""

from __future__ import annotations

from asm_email_rules.model import Person, PersonCase
from asm_email_rules.sender import resolve_sender

ANALYST = Person(1, "a@x.example", is_analyst=True)
USER = Person(2, "u@x.example", is_user=True)
BOTH = Person(3, "b@x.example", is_analyst=True, is_user=True)
NEITHER = Person(4, "n@x.example")


def test_four_cases() -> None:
    people = [ANALYST, USER, BOTH, NEITHER]
    assert resolve_sender("zz@x.example", people).case is PersonCase.UNKNOWN
    assert resolve_sender("a@x.example", people).case is PersonCase.ANALYST_ONLY
    assert resolve_sender("u@x.example", people).case is PersonCase.USER_ONLY
    assert resolve_sender("b@x.example", people).case is PersonCase.ANALYST_AND_USER


def test_a_record_with_no_flag_identifies_nobody() -> None:
    assert resolve_sender("n@x.example", [NEITHER]).case is PersonCase.UNKNOWN


def test_case_insensitive_and_nfkc() -> None:
    found = resolve_sender("Ａ@X.EXAMPLE", [ANALYST])
    assert found.person == ANALYST


def test_plus_addresses_are_different_addresses() -> None:
    assert resolve_sender("a+tag@x.example", [ANALYST]).case is PersonCase.UNKNOWN


def test_several_matches_lowest_id_wins_and_is_recorded() -> None:
    late = Person(9, "A@x.example", is_user=True)
    found = resolve_sender("a@x.example", [late, ANALYST])
    assert found.person == ANALYST
    assert found.matches == 2
    assert found.ambiguous


def test_empty_address_is_unknown() -> None:
    assert resolve_sender("", [ANALYST]).case is PersonCase.UNKNOWN
