"""The subject grammar: reply/forward prefixes, bracket commands and update references.

``parse_subject`` never raises and runs in linear time: prefixes are consumed left to right
with anchored matches, and every bracket pattern is bounded in length.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import TypeVar

import attrs

from asm_email_rules.errors import require_type
from asm_email_rules.model import EntityKind, EntityRef, NewCall, SummaryKind

MAX_NUMBER_DIGITS = 12
"""Longer digit runs are not reference numbers (a 40-digit "number" is not recognised)."""


class CommandKind(enum.Enum):
    """What a subject asks for."""

    NONE = "none"
    CLOSE = "close"
    APPROVE = "approve"
    REJECT = "reject"
    MY_CALLS = "my_calls"
    MY_REQUESTS = "my_requests"
    MY_TASKS = "my_tasks"
    MY_APPROVALS = "my_approvals"
    UPDATE_CALL = "update_call"
    UPDATE_TASK = "update_task"
    UPDATE_REQUEST = "update_request"
    CONFLICT = "conflict"

    @property
    def is_summary(self) -> bool:
        """True for the four [My...] summaries."""
        return self in _SUMMARIES

    @property
    def summary_kind(self) -> SummaryKind | None:
        """The summary a [My...] command asks for; None for every other kind."""
        return _SUMMARY_OF.get(self)

    @property
    def is_update(self) -> bool:
        """True for references that update a call, task/approval or request."""
        return self in _UPDATES

    @property
    def is_command(self) -> bool:
        """True for the spec's bracket commands and summaries (they outrank references)."""
        return self in _COMMANDS


_SUMMARY_OF: dict[CommandKind, SummaryKind] = {
    CommandKind.MY_CALLS: SummaryKind.CALLS,
    CommandKind.MY_REQUESTS: SummaryKind.REQUESTS,
    CommandKind.MY_TASKS: SummaryKind.TASKS,
    CommandKind.MY_APPROVALS: SummaryKind.TASKS,
}
_SUMMARIES = frozenset(_SUMMARY_OF)
_UPDATES = frozenset({CommandKind.UPDATE_CALL, CommandKind.UPDATE_TASK, CommandKind.UPDATE_REQUEST})
_COMMANDS = frozenset(
    {CommandKind.CLOSE, CommandKind.APPROVE, CommandKind.REJECT, CommandKind.CONFLICT} | _SUMMARIES
)

_ENTITY_OF: dict[CommandKind, EntityKind] = {
    CommandKind.CLOSE: EntityKind.CALL,
    CommandKind.UPDATE_CALL: EntityKind.CALL,
    CommandKind.APPROVE: EntityKind.TASK,
    CommandKind.REJECT: EntityKind.TASK,
    CommandKind.CONFLICT: EntityKind.TASK,
    CommandKind.UPDATE_TASK: EntityKind.TASK,
    CommandKind.UPDATE_REQUEST: EntityKind.REQUEST,
}


class MatchSource(enum.Enum):
    """Where a command or reference was recognised."""

    NONE = "none"
    BRACKET = "bracket"  # [CLOSE#12], [CALL#12], [MyCalls]
    PHRASE = "phrase"  # "Call 12 has been updated" after the prefixes
    THREAD = "thread"  # In-Reply-To / References hold one of our Message-IDs


@attrs.frozen
class SubjectCommand:
    """The outcome of parsing a subject.

    ``token`` is the approval token after a dash (``[APPROVE#12-abc]``); ``ignored`` lists the
    other tokens found and outranked; ``reply``/``forward`` say a prefix of that kind was seen.
    """

    kind: CommandKind
    number: int | None = None
    token: str | None = None
    source: MatchSource = MatchSource.NONE
    matched: str = ""
    ignored: tuple[str, ...] = ()
    reply: bool = False
    forward: bool = False
    normalised: bool = False
    stripped: str = ""

    @property
    def ref(self) -> EntityRef | None:
        """The record this command names, if any."""
        kind = _ENTITY_OF.get(self.kind)
        if kind is None or self.number is None:
            return None
        return EntityRef(kind, self.number)

    @property
    def ambiguous(self) -> bool:
        """True when other tokens were found and outranked."""
        return bool(self.ignored)


NO_COMMAND = SubjectCommand(CommandKind.NONE)

# Reply and forward prefixes (case-insensitive, after NFKC), each followed by an optional
# counter ("Re[2]:", "Re^2:", "Re*2:", "Re(2):") and a colon.
_REPLY_WORDS = (
    "re",
    "aw",
    "sv",
    "vs",
    "antw",
    "odp",
    "ynt",
    "r",
    "rif",
    "réf",
    "ref",
    "res",
    "απ",
    "σχετ",
    "回复",
    "答复",
    "回覆",
    "رد",
    "תגובה",
    "השב",
    "atb",
    "отв",
    "ответ",
    "odg",
    "회신",  # Korean Outlook
    "답장",
    "返信",  # Japanese
    "antwort",  # German Lotus Notes
    "válasz",  # Hungarian Outlook
    "ats",  # Lithuanian
    "bls",  # Indonesian
)
_FORWARD_WORDS = (
    "fwd",
    "fw",
    "tr",
    "wg",
    "rv",
    "doorst",
    "vb",
    "vl",
    "fs",
    "i",
    "enc",
    "pd",
    "ilt",
    "i̇lt",
    "πρθ",
    "转发",
    "轉寄",
    "הועבר",
    "trs",
    "pfw",
    "전달",  # Korean Outlook
    "転送",  # Japanese
    "weiterleitung",  # German Lotus Notes
    "továbbítás",  # Hungarian Outlook
    "pers",  # Lithuanian
    "pārs",  # Latvian
    "edasta",  # Estonian
)


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


_PREFIX = re.compile(
    r"[ \t]*(?:(?P<reply>" + _alternation(_REPLY_WORDS) + r")|(?P<forward>"
    r"" + _alternation(_FORWARD_WORDS) + r"))"
    # the counter's own blanks inside its optional group: two optional runs of blanks side by
    # side would share a long run of blanks in every way (quadratic on "Re" and spaces)
    r"(?:[ \t]*(?:\[[0-9]{1,4}\]|\^[0-9]{1,4}|\*[0-9]{1,4}|\([0-9]{1,4}\)))?[ \t]*:[ \t]*",
    re.IGNORECASE,
)
# A short tag in brackets before or between prefixes, e.g. "[EXT] Re:" (not one of our tokens).
_TAG = re.compile(r"[ \t]*\[[^\[\]\r\n]{1,40}\][ \t]*")
"""A label in brackets before or between the prefixes: a list's ``[helpdesk]``, a gateway's
``[EXTERNAL]``, ``[Caution: External Email]``, ``[Extérieur]`` or ``[外部]`` (any text of up to
40 characters without brackets); never one of our bracket tokens (``_BRACKET``)."""

_BRACKET = re.compile(
    r"\[[ \t]*(?:"
    r"(?P<verb>close|approve|reject|call|task|approval|request)[ \t]*\#[ \t]*"
    r"(?P<number>[0-9]{1," + str(MAX_NUMBER_DIGITS) + r"})"
    r"(?:[ \t]*-[ \t]*(?P<token>[A-Za-z0-9]{1,64}))?"
    r"|my[ \t]*(?P<summary>calls|requests|tasks|approvals)"
    r")[ \t]*\]",
    re.IGNORECASE | re.ASCII,
)

_PHRASE = re.compile(
    r"(?:(?P<numbered>call[ \t]+no\.)[ \t]*"  # "Call No.100" and "Call No. 100"
    r"|(?P<word>call[ \t]+no|call|task/approval|task|request)[ \t]+)"
    r"(?P<number>[0-9]{1," + str(MAX_NUMBER_DIGITS) + r"})(?![0-9A-Za-z])",
    re.IGNORECASE | re.ASCII,
)

_VERB_KIND: dict[str, CommandKind] = {
    "close": CommandKind.CLOSE,
    "approve": CommandKind.APPROVE,
    "reject": CommandKind.REJECT,
    "call": CommandKind.UPDATE_CALL,
    "task": CommandKind.UPDATE_TASK,
    "approval": CommandKind.UPDATE_TASK,
    "request": CommandKind.UPDATE_REQUEST,
}
_SUMMARY_KIND: dict[str, CommandKind] = {
    "calls": CommandKind.MY_CALLS,
    "requests": CommandKind.MY_REQUESTS,
    "tasks": CommandKind.MY_TASKS,
    "approvals": CommandKind.MY_APPROVALS,
}
_PHRASE_KIND: dict[str, CommandKind] = {
    "call": CommandKind.UPDATE_CALL,
    "task": CommandKind.UPDATE_TASK,
    "task/approval": CommandKind.UPDATE_TASK,
    "request": CommandKind.UPDATE_REQUEST,
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

_Number = TypeVar("_Number", int, NewCall)


def bracket_token_parts(kind: EntityKind, number: _Number) -> tuple[str, _Number, str]:
    """The bracket token of a record, ``[CALL#12]``, as (opening, number, closing).

    The one place the token is formatted (every reply we send carries one; summaries list
    them); in parts so a new call's number can stay a :class:`NewCall` placeholder until
    it exists. ``parse_subject`` reads the same tokens back.
    """
    return f"[{kind.value.upper()}#", number, "]"


def bracket_token(ref: EntityRef) -> str:
    """The bracket token of ``ref`` as text: ``[CALL#12]``, ``[TASK#500]``, ``[REQUEST#7]``."""
    opening, number, closing = bracket_token_parts(ref.kind, ref.number)
    return f"{opening}{number}{closing}"


def normalise_subject(subject: str) -> str:
    """NFKC (full-width brackets and digits become ASCII) with control characters as spaces."""
    return _CONTROL.sub(" ", unicodedata.normalize("NFKC", subject))


def strip_prefixes(subject: str) -> tuple[str, bool, bool]:
    """Remove leading reply/forward prefixes and tags; say whether each kind was seen."""
    position = 0
    reply = forward = False
    length = len(subject)
    while position < length:
        match = _PREFIX.match(subject, position)
        if match is not None:
            if match.group("reply") is not None:
                reply = True
            else:
                forward = True
            position = match.end()
            continue
        tag = _TAG.match(subject, position)
        if tag is not None and _BRACKET.match(subject, tag.start() + _leading_blanks(tag)) is None:
            position = tag.end()
            continue
        break
    return subject[position:].strip(), reply, forward


def _leading_blanks(match: re.Match[str]) -> int:
    text = match.group(0)
    return len(text) - len(text.lstrip(" \t"))


def _bracket_command(match: re.Match[str]) -> SubjectCommand:
    summary = match.group("summary")
    if summary is not None:
        return SubjectCommand(
            _SUMMARY_KIND[summary.lower()], source=MatchSource.BRACKET, matched=match.group(0)
        )
    token = match.group("token")
    return SubjectCommand(
        _VERB_KIND[match.group("verb").lower()],
        number=int(match.group("number")),
        token=token.lower() if token else None,
        source=MatchSource.BRACKET,
        matched=match.group(0),
    )


def _phrase_command(text: str) -> SubjectCommand | None:
    match = _PHRASE.match(text)
    if match is None:
        return None
    word = " ".join((match.group("numbered") or match.group("word")).lower().split())
    kind = CommandKind.UPDATE_CALL if word.startswith("call") else _PHRASE_KIND[word]
    return SubjectCommand(
        kind, number=int(match.group("number")), source=MatchSource.PHRASE, matched=match.group(0)
    )


def _choose(found: list[SubjectCommand]) -> tuple[SubjectCommand, list[SubjectCommand]]:
    """Commands outrank references, leftmost wins; approve and reject of one task conflict."""
    commands = [item for item in found if item.kind.is_command]
    pool = commands or found
    winner = pool[0]
    if winner.kind in (CommandKind.APPROVE, CommandKind.REJECT):
        opposite = CommandKind.REJECT if winner.kind is CommandKind.APPROVE else CommandKind.APPROVE
        if any(item.kind is opposite and item.number == winner.number for item in commands):
            winner = attrs.evolve(winner, kind=CommandKind.CONFLICT, token=None)
    return winner, [item for item in found if item is not pool[0]]


def parse_subject(subject: str) -> SubjectCommand:
    """Recognise the command or reference in a subject line; never raises for any text.

    Bracket tokens are found anywhere; the reply phrasing ("Call 12 ...") only at the start
    after prefixes. Unrecognised or malformed subjects give ``CommandKind.NONE``. A
    ``subject`` that is not a str (None, bytes) raises
    :class:`~asm_email_rules.errors.ArgumentTypeError`: ``InboundEmail.subject`` is "" when
    the message has none.
    """
    require_type(subject, str, "parse_subject", "subject")
    normalised = normalise_subject(subject)
    stripped, reply, forward = strip_prefixes(normalised)
    found = [_bracket_command(match) for match in _BRACKET.finditer(normalised)]
    if not found:
        phrase = _phrase_command(stripped)
        if phrase is not None:
            found.append(phrase)
    winner, others = _choose(found) if found else (NO_COMMAND, [])
    return attrs.evolve(
        winner,
        ignored=tuple(other.matched for other in others),
        reply=reply,
        forward=forward,
        normalised=normalised != subject,
        stripped=stripped,
    )
