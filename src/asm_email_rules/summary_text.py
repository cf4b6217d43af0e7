"""What one line of a ``[My...]`` summary says about a record.

A description logged by email usually opens with "Hi," or "Hello team,": the first line is
not what the record is about. :func:`first_line_that_says_something` skips blank lines,
greetings, our reply marker and rules of dashes or stars, and :func:`summary_description`
puts the record's subject (when the host stores one) in front. Every test looks at a bounded
number of characters per line, so the cost is linear in the text.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "SUMMARY_DESCRIPTION_LENGTH",
    "SUMMARY_SCAN_CHARS",
    "first_line_that_says_something",
    "is_greeting",
    "summary_description",
]

SUMMARY_DESCRIPTION_LENGTH = 80
"""Longest description a summary line carries, in characters."""

_PROBE = 120
"""Lines longer than this are never greetings (they say something)."""

# Greeting words and phrases, matched case-insensitively at the start of a line as whole words.
_GREETINGS = (
    "hi",
    "hello",
    "hey",
    "hiya",
    "howdy",
    "greetings",
    "dear",
    "good morning",
    "good afternoon",
    "good evening",
    "good day",
    "morning",
    "to whom it may concern",
    "hallo",
    "moin",
    "servus",
    "guten morgen",
    "guten tag",
    "guten abend",
    "grüß gott",
    "grüezi",
    "liebe",
    "lieber",
    "liebes",
    "sehr geehrte",
    "sehr geehrter",
    "sehr geehrte damen und herren",
    "bonjour",
    "bonsoir",
    "salut",
    "cher",
    "chère",
    "madame, monsieur",
    "hola",
    "buenos días",
    "buenos dias",
    "buenas tardes",
    "buenas",
    "estimado",
    "estimada",
    "olá",
    "ola",
    "oi",
    "bom dia",
    "boa tarde",
    "prezado",
    "prezada",
    "ciao",
    "salve",
    "buongiorno",
    "buonasera",
    "gentile",
    "egregio",
    "hej",
    "hei",
    "hallå",
    "god morgen",
    "god morgon",
    "goedemorgen",
    "goedemiddag",
    "goedendag",
    "beste",
    "cześć",
    "dzień dobry",
    "witam",
    "szanowni państwo",
    "ahoj",
    "dobrý den",
    "merhaba",
    "sayın",
    "здравствуйте",
    "привет",
    "добрый день",
    "доброе утро",
    "γεια σας",
    "你好",
    "您好",
    "こんにちは",
    "お疲れ様です",
    "안녕하세요",
)
# Words that may follow a greeting on its own line without making it say something.
_ADDRESSEES_TEXT = (
    "all everyone everybody team there folks guys colleagues support desk helpdesk service "
    "sir madam sirs it concern zusammen allerseits tous todos tutti alle"
)
_ADDRESSEES = frozenset(_ADDRESSEES_TEXT.split())
_GREETING_RE = re.compile(
    r"(?:"
    + "|".join(re.escape(g) for g in sorted(_GREETINGS, key=len, reverse=True))
    + r")(?![\w])",
    re.IGNORECASE,
)
_HEAD_RE = re.compile(r"[^\W\d_]+")


def _first_word(text: str) -> str:
    match = _HEAD_RE.match(text)
    return match.group(0).casefold() if match else ""


_FIRST_WORDS = frozenset(_first_word(greeting) for greeting in _GREETINGS)
"""The first word of every greeting: a line starting otherwise is checked no further."""
_WORD_RE = re.compile(r"[^\W\d_][\w.'’-]*")
_TRAILING = ",!:;.。、！ \t"
_MARKER_RE = re.compile(r"^#{1,3}-.*-#{1,3}$")


def _says_nothing_but_symbols(line: str) -> bool:
    """True for a rule or decoration: no letter or digit at all ("-----", "***", "==")."""
    return not any(char.isalnum() for char in line)


def is_greeting(line: str) -> bool:
    """True when ``line`` is only a greeting: "Hi,", "Hello Alice!", "Dear Service Desk team,".

    A greeting word or phrase, then at most three words that name whom it greets, then only
    punctuation. The addressed words must be capitalised names or words such as "team" and
    "all" unless the line ends in a comma, colon or exclamation mark ("Hello world" says
    something; "Hello world," greets). Lines over 120 characters are never greetings.
    """
    if len(line) > 4 * _PROBE:
        return False
    text = unicodedata.normalize("NFKC", line).strip()
    if not text or len(text) > _PROBE:
        return False
    if _first_word(text) not in _FIRST_WORDS:
        return False
    match = _GREETING_RE.match(text)
    if match is None:
        return False
    rest = text[match.end() :]
    punctuated = rest.rstrip(" \t") != rest.rstrip(_TRAILING)
    body = rest.rstrip(_TRAILING).strip(" \t,")
    if not body:
        return True
    words = body.replace(",", " ").split()
    if len(words) > 3 or any(_WORD_RE.fullmatch(word) is None for word in words):
        return False
    if punctuated:
        return True
    return all(word[0].isupper() or word.lower() in _ADDRESSEES for word in words)


SUMMARY_SCAN_CHARS = 20_000
"""Only the start of a text is searched: a summary line needs its first words, nothing more.
A store may read no more of a description than this (the SQL stores do not)."""

_SCAN_LINES = 200
"""At most this many lines are looked at before giving up on finding one that says something."""


def first_line_that_says_something(text: str, *, marker: str = "") -> str:
    """The first line of ``text`` that is not blank, a greeting, ``marker`` or a rule.

    When every line is one of those, the first non-blank line (so a record with text never
    shows as empty); "" for a text with no visible character. Stripped of surrounding space.
    Only the first 20,000 characters and 200 lines are searched (a line running past them is
    cut there), so the cost is bounded whatever the size of the text.
    """
    fallback = ""
    for raw in text[:SUMMARY_SCAN_CHARS].splitlines()[:_SCAN_LINES]:
        line = raw.strip()
        if not line:
            continue
        if not fallback:
            fallback = line
        if marker and line == marker.strip():
            continue
        if _MARKER_RE.match(line[:_PROBE]) and len(line) <= _PROBE:
            continue
        if _says_nothing_but_symbols(line[:_PROBE]) and len(line) <= _PROBE:
            continue
        if is_greeting(line):
            continue
        return line
    return fallback


def summary_description(
    description: str, subject: str = "", *, limit: int = SUMMARY_DESCRIPTION_LENGTH
) -> str:
    """What a summary line shows for a record: ``subject - first line``, cut to ``limit``.

    ``subject`` is the record's stored subject (blank when the host keeps none); the first
    line is :func:`first_line_that_says_something` of ``description``. Either part alone when
    the other is empty; the text is cut to ``limit`` characters (default 80).
    """
    line = first_line_that_says_something(description)
    head = " ".join(subject.split())
    text = f"{head} - {line}" if head and line and line != head else head or line
    return text[: max(limit, 0)].rstrip()
