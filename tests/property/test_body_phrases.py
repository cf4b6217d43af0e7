"""``body_phrases`` reads a body in one pass and must say exactly what the four readings it
replaces say, one search each (``failure_phrase``, ``auto_reply_features``, ``notice_phrase``,
``list_footer``): the same phrase, quoted the same way, or none, for any text."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from cpu_timing import assert_linear, least_cpu
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asm_email_rules import classify_text as text

PHRASES = sorted(
    {
        phrase
        for table in (
            text._FAILURE_PHRASES,
            *(phrases for _, phrases in text._AUTO_REPLY_TABLES),
            text._NOTICE_PHRASES,
            text._LIST_FOOTER_PHRASES,
        )
        for phrase in table
    }
)
BLANKS = st.text(alphabet=" \t\r\n", min_size=1, max_size=10)  # a phrase's space: 1 to 8


@st.composite
def _phrase(draw: st.DrawFn) -> str:
    """A phrase of the tables as a body may carry it: whole or cut short, its spaces any run
    of blanks (more than 8 breaks it), in any case."""
    phrase = draw(st.sampled_from(PHRASES))
    if draw(st.booleans()):
        phrase = phrase[: draw(st.integers(1, len(phrase)))]
    words = phrase.split(" ")
    joined = words[0]
    for word in words[1:]:
        joined += draw(BLANKS) + word
    case: Callable[[str], str] = draw(st.sampled_from([str.lower, str.upper, str.title]))
    return case(joined)


PIECES = st.one_of(
    _phrase(),
    st.sampled_from(["550 5.1.1", "said: 554", "smtp; 421", "error 500", "İ", "ß", "\u3042"]),
    st.text(alphabet="abcdeilnorstu .,:;-\n", max_size=12),
)
BODIES = st.lists(st.tuples(PIECES, st.sampled_from(["", " ", "\n", "x", "-"])), max_size=12).map(
    lambda pairs: "".join(piece + between for piece, between in pairs)
)


def _one_search_each(body: str) -> text.BodyPhrases:
    return text.BodyPhrases(
        failure=text.failure_phrase(body),
        auto_reply=text.auto_reply_features(body),
        notice=text.notice_phrase(body),
        footer=text.list_footer(body),
    )


@settings(max_examples=600, deadline=None)
@given(body=BODIES)
@example(body="We will be out of the office until Monday.\nFor urgent matters contact the desk.")
@example(body="to unsubscribe from this list, do not reply")  # one phrase inside a longer one
@example(body="undeliverableİ: 550 5.1.1 user unknown")  # lower() lengthens the text
@example(body="xdelayed and uNSUBSCRIBE")  # phrases inside words
@example(body="We will get back to you.")  # another table's phrase 3 characters in
@example(body="I will be away until you confirm")  # a phrase another table's extends
@example(body="Автоматический ответ")  # the same, notice in limited's
@example(body="urgent. until you confirm")  # two patterns of one character hit at one place
def test_body_phrases_says_what_one_search_per_table_says(body: str) -> None:
    assert text.body_phrases(body) == _one_search_each(body)


# Made-up tables over a small alphabet, so that phrases share first characters, extend one
# another, start with a blank or with a character lower() lengthens (İ), and double a letter:
# the scanner must give each table's first match whatever the tables hold.
TABLE = st.lists(st.text(alphabet="ab İK", min_size=1, max_size=4), min_size=1, max_size=4)
SMALL_BODY = st.text(
    alphabet=["a", "b", "A", "B", " ", "\t", "\n", "İ", "i", "\u0307", "K", "k", "x"]
)


@settings(max_examples=500, deadline=None)
@given(tables=st.lists(TABLE, min_size=1, max_size=6), bodies=st.lists(SMALL_BODY, max_size=5))
@example(tables=[["aab"], ["ab"]], bodies=["aaab"])  # found by review: a doubled first letter
def test_the_scanner_finds_each_tables_first_match_for_any_tables(
    tables: list[list[str]], bodies: list[str]
) -> None:
    named = tuple(
        (f"t{n}", tuple(phrases), text._Lazy(text._alternation(tuple(phrases))))
        for n, phrases in enumerate(tables)
    )
    scanner = text._Scanner(named)
    for body in bodies:
        alone = {name: text._search(pattern, body) for name, _, pattern in named}
        assert scanner.first_matches(body) == {
            name: found for name, found in alone.items() if found is not None
        }


def test_a_body_of_phrases_gets_each_tables_first_one_in_the_tables_order() -> None:
    body = (
        "Your message could not be delivered.\n"
        "I am out of the office and will be back on Monday.\n"
        "This is an automated message, please do not reply.\n"
        "To unsubscribe from this list, click here."
    )
    found = text.body_phrases(body)
    assert found.failure == "message could not be"
    assert found.auto_reply == {
        "absence": "I am out",
        "return": "be back",
        "limited": "This is an automated message",
        "confirmation": "click here",
    }
    assert list(found.auto_reply) == ["absence", "return", "limited", "confirmation"]
    assert found.notice == "This is an automated message"
    assert found.footer == "To unsubscribe"
    assert found == _one_search_each(body)


HOSTILE = (
    "até ",
    "acil",
    "until ",
    "unsubscribe ",
    "退信",
    "a",
    "do not reply ",
    "mailing list to unsubscribe to unsubscribe ",  # footer matched under m, then t hits
)
"""Bodies of one phrase, or one letter, again and again: a table matched at once, its phrases
found at every word after that, sharing first characters with tables still waiting."""


def _repeated(shape: str, size: int) -> str:
    return (shape * (size // len(shape) + 1))[:size]


def _reading(shape: str, size: int) -> Callable[[], object]:
    return partial(text.body_phrases, _repeated(shape, size))


def test_body_phrases_is_linear_in_the_text_on_hostile_bodies() -> None:
    """The time per character stays flat from 16 KB to 128 KB (a quadratic scan would take 64
    times longer, not 8)."""
    for shape in HOSTILE:
        assert_linear(partial(_reading, shape), 16_384, what=shape)


def test_body_phrases_is_never_slower_than_one_search_per_table_on_hostile_bodies() -> None:
    """A review found these bodies of BODY_WINDOW characters four to seven times slower in one
    pass than in ten searches, while every phrase of a table already matched still stopped the
    scan (25 to 35 ms); now about a fifth to a half of their time."""
    for shape in HOSTILE:
        body = _repeated(shape, text.BODY_WINDOW)
        text.body_phrases(body)
        one_pass = least_cpu(partial(text.body_phrases, body))
        assert one_pass < least_cpu(partial(_one_search_each, body)), shape
