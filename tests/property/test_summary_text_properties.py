"""Summary lines (issue 12): the first line that says something, for any text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules.summary_text import (
    SUMMARY_DESCRIPTION_LENGTH,
    first_line_that_says_something,
    is_greeting,
    summary_description,
)

LINES = st.lists(
    st.one_of(
        st.sampled_from(["Hi,", "Hello team,", "", "   ", "-----", "Dear Service Desk,"]),
        st.text(max_size=60),
    ),
    max_size=12,
)


@settings(deadline=None)
@given(LINES)
def test_the_line_chosen_is_a_line_of_the_text(lines: list[str]) -> None:
    text = "\n".join(lines)
    chosen = first_line_that_says_something(text)
    assert chosen == chosen.strip()
    if chosen:
        assert chosen in [line.strip() for line in text.splitlines()]
    else:
        assert not text.strip()
    assert len(chosen) <= 20_000


@settings(deadline=None)
@given(LINES, st.text(max_size=120))
def test_a_description_never_exceeds_the_limit(lines: list[str], subject: str) -> None:
    text = summary_description("\n".join(lines), subject)
    assert len(text) <= SUMMARY_DESCRIPTION_LENGTH
    assert "\n" not in text


@settings(deadline=None)
@given(st.text(max_size=200))
def test_greeting_detection_never_raises(line: str) -> None:
    assert is_greeting(line) in (True, False)


@pytest.mark.parametrize(
    "line",
    [
        "Hi,",
        "Hello Alice,",
        "Hi Alice",
        "Dear Service Desk team,",
        "Good morning all!",
        "Guten Tag,",
        "Bonjour à tous,",
        "Hola equipo,",
        "Dear Sir or Madam,",
        "こんにちは、",
        "Hey there",
    ],
)
def test_greetings(line: str) -> None:
    assert is_greeting(line)


@pytest.mark.parametrize(
    "line",
    [
        "Hi, the printer on floor 2 is jammed",
        "Hello world program fails",
        "Hello world",
        "Morning standup room projector broken",
        "Printer jammed",
    ],
)
def test_lines_that_say_something(line: str) -> None:
    assert not is_greeting(line)


def test_a_huge_body_costs_no_more_than_its_start() -> None:
    """Nothing worse than linear, and here bounded: only the start of a text is searched."""
    greetings = "Hi,\n" * 200_000 + "The real line\n"
    long_line = "x" * 1_000_000 + "\nThe real line\n"
    start = time.process_time()  # CPU time of this process: a loaded machine does not count
    assert first_line_that_says_something(greetings) == "Hi,"  # nothing said in 200 lines
    assert first_line_that_says_something(long_line) == "x" * 20_000  # cut at the window
    assert summary_description(long_line) == "x" * SUMMARY_DESCRIPTION_LENGTH
    assert first_line_that_says_something("Hi,\n" * 150 + "Printer jam") == "Printer jam"
    assert time.process_time() - start < 1.0
