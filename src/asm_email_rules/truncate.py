"""Reply truncation: keep the new text of an incoming reply, drop the quoted history.

Cuts, in order: our own reply marker line, operator-configured separator lines (either
locates our history: its quote intro goes, the person's text above and below it stays), then a
line-classifying heuristic (``>`` quote blocks, attributions in many languages, Outlook header
blocks, "Original Message" / forward separators), optionally followed by signature stripping.
Every step looks at each line a bounded number of times, so the whole pass is linear.
The vocabulary and the line tests (what an attribution, header label or signature looks like)
live in :mod:`~asm_email_rules.reply_lines`; this module holds the steps that use them.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Sequence

import attrs

from asm_email_rules.errors import require_strings, require_type
from asm_email_rules.reply_lines import (
    ATTR_LAST_CHARS,
    COLON_ENDS,
    NAME_SIGNATURE_RE,
    START_PREFIXES,
    START_RE,
    TOBIT_SEPARATOR,
    attribution_at,
    has_announcement_words,
    header_block_at,
    inline_answers_announced,
    is_bare_separator,
    is_device_line,
    is_groupwise_header,
    is_rule,
    is_separator,
    is_sig_delimiter,
    is_valediction,
    notes_header_start,
    split_flattened_line,
    split_shared_line,
)

__all__ = ["Truncation", "TruncationMethod", "truncate_reply"]

_LOG = logging.getLogger(__name__)

#: bidirectional marks Gmail and Outlook wrap around Hebrew and Arabic names and addresses
_BIDI_RE = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: Reasons listed in ``Truncation.detail`` before the rest is summarised as a count.
_MAX_REASONS = 8
#: Non-blank lines a "-- " / "____" signature or list footer may have at most.
_MAX_SIG_LINES = 15


class TruncationMethod(enum.Enum):
    """Which step decided the cut."""

    MARKER = "marker"
    SEPARATOR = "separator"
    HEURISTIC = "heuristic"
    NONE = "none"
    KEPT_WHOLE = "kept_whole"


@attrs.frozen
class Truncation:
    """Result of truncating a reply: the new text, what was cut, and why."""

    kept: str
    elided: str
    method: TruncationMethod
    detail: str


# --------------------------------------------------------------------------- heuristic

# Line roles, one letter per line so regexes can find blocks without backtracking blow-ups:
# T reply text, B blank, Q quoted (">"), A a splitter (attribution, header block, separator)
# that introduces a quote block, H the message's own leading headers, S signature.
_T, _B, _Q, _A, _H, _S = "T", "B", "Q", "A", "H", "S"
#: verdict of a line inside a quote block that is removed
_X = "X"
#: a single text line between two quoted lines: a wrapped link inside the quote, unless the
#: quoted line above ends a sentence (then it is an answer: see ``_ends_sentence``)
_SANDWICH_RE = re.compile(r"(?<=Q)T(?=Q)")
#: attribution and/or quoted lines (with blanks and wrapped lines between), then blank lines
_BLOCK_RE = re.compile(r"[AQ](?:[AQBc]*[AQ])?B*")


@attrs.frozen
class _Cut:
    """Heuristic outcome over a list of lines: which to keep and a human reason."""

    keep: list[bool]
    reasons: list[str]


@attrs.frozen
class _Splitter:
    """A line that may start the quoted history: its kind, where it ends, how sure we are."""

    kind: str  # "separator", "header block" or "attribution"
    end: int  # index of the first line after it
    strength: str = "strong"


def _heuristic(lines: list[str], strip_signature: bool) -> _Cut:
    """Classify lines and keep only the new reply text (see module docstring).

    Steps: find the splitters and the first hard cut; find the quote blocks above the cut;
    mark signature blocks (when asked); decide which lines stay (interleaved replies keep
    their quotes); then, when asked, trim a closing signature.
    """
    stripped = _stripped_lines(lines)
    roles = [_B if not text else (_Q if _is_quote_line(text) else _T) for text in stripped]
    reasons: list[str] = []
    cut = _mark_splitters(stripped, roles, reasons)
    verdicts, quote_blocks = _mark_quote_blocks(roles, cut, stripped)
    if strip_signature:
        _mark_signature_blocks(stripped, verdicts, cut, reasons)
    keep = _keep_flags(verdicts, roles, quote_blocks, cut < len(lines), reasons)
    keep.extend([False] * (len(lines) - len(keep)))
    if strip_signature:
        _trim_tail(stripped, keep, reasons)
    return _Cut(keep=keep, reasons=reasons)


def _is_quote_line(text: str) -> bool:
    """A ``>``-quoted line (stripped); GroupWise's ``>>> Name 26/11/2026 16:02 >>>`` header
    is a separator line, not a quote."""
    return text[0] == ">" and not (text[:3] == ">>>" and is_groupwise_header(text))


def _stripped_lines(lines: list[str]) -> list[str]:
    """Each line stripped, without the bidirectional marks that classifying would trip on."""
    return [
        line.strip() if line.isascii() or _BIDI_RE.search(line) is None else _unbidi(line)
        for line in lines
    ]


def _unbidi(line: str) -> str:
    """A line without its bidirectional marks, stripped."""
    return _BIDI_RE.sub("", line).strip()


def _splitter_candidates(stripped: list[str]) -> list[int]:
    """Indexes of the lines worth examining as splitters.

    A splitter's last line ends with ":", ">" or decoration; header and separator lines have an
    early colon or start with decoration (Tobit David's separator has neither); attributions
    may start with an opening word.
    """
    tail_ok = [bool(text) and text[-1] in ATTR_LAST_CHARS for text in stripped]
    tail_ok += [False, False, False]
    return [
        k
        for k, text in enumerate(stripped)
        if text
        and not _is_quote_line(text)
        and (
            tail_ok[k]
            or tail_ok[k + 1]
            or tail_ok[k + 2]
            or text[0] in "-_=*"
            or ":" in text[:60]
            or "：" in text[:60]
            or (text[:2] in START_PREFIXES and START_RE.match(text))
            or (text[0] in "Oo" and text[: len(TOBIT_SEPARATOR)].casefold() == TOBIT_SEPARATOR)
        )
    ]


def _splitter_at(stripped: list[str], i: int) -> _Splitter | None:
    """The separator (with the header block after it), header block or attribution at ``i``."""
    if is_separator(stripped[i]):
        end = i + 1
        header_line = _next_nonblank(stripped, end)
        if header_line < len(stripped):
            header_end = header_block_at(stripped, header_line)
            if header_end is not None:
                end = header_end
        return _Splitter("separator", end)
    header_end = header_block_at(stripped, i)
    if header_end is not None:
        return _Splitter("header block", header_end)
    attribution = attribution_at(stripped, i)
    if attribution is not None:
        end, strength = attribution
        return _Splitter("attribution", end, strength)
    return None


def _mark_splitters(stripped: list[str], roles: list[str], reasons: list[str]) -> int:
    """Step 1: mark soft splitters (followed by a quote block) and return the first hard cut.

    A splitter followed by quoted lines becomes role A; a leading header block or separator
    (a forward without comment) becomes role H and is dropped; any other strong splitter is
    the cut: everything from it on is history. Returns ``len(stripped)`` when there is none.
    """
    n = len(stripped)
    lead = _next_nonblank(stripped, 0)  # first line of the message proper (after own headers)
    resume = 0
    for i in _splitter_candidates(stripped):
        if i < resume or roles[i] != _T:
            continue
        splitter = _splitter_at(stripped, i)
        if splitter is None:
            continue
        kind, end = splitter.kind, splitter.end
        next_line = _next_nonblank(stripped, end)
        if next_line < n and roles[next_line] == _Q:
            roles[i:end] = _A * (end - i)
            reasons.append(f"{kind} at line {i + 1} introduces a quote block")
            resume = end
            continue
        if kind == "attribution" and splitter.strength != "strong":
            continue
        if kind == "separator" and end == i + 1 and not is_bare_separator(stripped[i]):
            continue  # a heading of the person's ("--- Original plan ---") over their text
        if i == lead and kind in ("header block", "separator") and next_line < n:
            # Headers of the message itself (a forward without comment): drop them, go on.
            while end < n and stripped[end]:
                end += 1
            roles[i:end] = _H * (end - i)
            reasons.append(f"leading {kind} at line {i + 1} dropped")
            resume = end
            lead = _next_nonblank(stripped, end)
            continue
        cut = _rule_above(stripped, i) if kind == "header block" else i
        reasons.append(f"{kind} at line {cut + 1}: {stripped[cut][:60]!r}; history follows")
        return cut
    return n


def _rule_above(stripped: list[str], i: int) -> int:
    """The rule or framed separator line just above a header block at ``i`` (blanks between),
    or ``i``."""
    back = i - 1
    while back >= 0 and back >= i - 4 and not stripped[back]:
        back -= 1
    if back >= 0 and is_rule(stripped[back]):
        return back
    return i


def _mark_quote_blocks(roles: list[str], cut: int, stripped: list[str]) -> tuple[list[str], int]:
    """Step 2: per-line verdicts above the cut, quote blocks as X; and how many blocks.

    A block (splitter and/or quoted lines, with blanks and wrapped link lines between, then
    trailing blanks) is removed when it has a splitter, two quoted lines, or no reply text
    after it. Outside removed blocks every non-blank, non-header line is reply text.
    """
    role_string = _SANDWICH_RE.sub(
        lambda m: "T" if _ends_sentence(stripped[m.start() - 1]) else "c", "".join(roles[:cut])
    )
    last_text = role_string.rfind(_T)
    verdicts = list(role_string)
    quote_blocks = 0
    for match in _BLOCK_RE.finditer(role_string):
        block = match.group()
        start, end = match.span()
        if _A not in block and start and _introduces_own_quote(role_string, stripped, start):
            continue  # "I ran:" over "> ping 10.0.0.1": the person's own quote
        if _A in block or block.count(_Q) >= 2 or last_text < end:
            verdicts[start:end] = _X * (end - start)
            quote_blocks += 1
    return [(_T if verdict in "TcQA" else verdict) for verdict in verdicts], quote_blocks


def _introduces_own_quote(role_string: str, stripped: list[str], start: int) -> bool:
    """True when the reply line right above a quote block (no blank line between) ends with a
    colon and carries nothing of an attribution (no digit, no address): the person introduces
    lines they quote themselves ("I ran:", "The error says:"), which are their reply."""
    if role_string[start - 1] != _T:
        return False
    above = stripped[start - 1]
    return above[-1:] in (":", "：") and not any(ch.isdigit() or ch == "@" for ch in above)


def _ends_sentence(quoted: str) -> bool:
    """True when a quoted line ends a sentence, so the text line under it is an answer.

    A text line squeezed between two quoted lines is a wrapped piece of the quote (a long link)
    only when the quoted line above stops mid-sentence.
    """
    return quoted.rstrip()[-1:] in (".", "?", "!", "？", "。", "！", ":")


def _mark_signature_blocks(
    stripped: list[str], verdicts: list[str], cut: int, reasons: list[str]
) -> None:
    """Step 3: mark "-- " / "____" signature and list-footer blocks as S (signature mode)."""
    signature_blocks = 0
    k = 0
    while k < cut:
        if verdicts[k] == _T and _starts_signature(stripped[k]):
            end = _signature_end(stripped, verdicts, k, cut)
            if end is not None:
                verdicts[k:end] = _S * (end - k)
                if not signature_blocks:
                    reasons.append(f"signature block at line {k + 1}")
                signature_blocks += 1
                k = end
                continue
        k += 1


def _starts_signature(text: str) -> bool:
    """True for a "-- " / "____" signature delimiter line."""
    return text[:2] in ("--", "__") and is_sig_delimiter(text)


def _signature_end(stripped: list[str], verdicts: list[str], start: int, cut: int) -> int | None:
    """End of the signature block opened at ``start``, or None when it is too long to be one.

    The block runs to the next delimiter, a removed quote block or the cut, and may hold at
    most ``_MAX_SIG_LINES`` non-blank lines.
    """
    j = start
    count = 0
    while j < cut and verdicts[j] != _X and count <= _MAX_SIG_LINES:
        if j > start and _starts_signature(stripped[j]):
            break  # the next delimiter starts its own block
        if stripped[j]:
            count += 1
        j += 1
    return j if count <= _MAX_SIG_LINES else None


def _answers_after_quotes(verdicts: list[str], roles: list[str]) -> int:
    """How many runs of reply text follow a quote (removed or a single kept ``>`` line).

    Two or more make an interleaved reply: each answer sits under the question it answers.
    """
    answers = 0
    after_quote = False
    for verdict, role in zip(verdicts, roles, strict=False):
        if verdict == _B or verdict in "HS":
            continue
        if verdict == _X or role in (_Q, _A):
            after_quote = True
        elif after_quote:
            answers += 1
            after_quote = False
    return answers


def _keep_flags(
    verdicts: list[str],
    roles: list[str],
    quote_blocks: int,
    history_follows: bool,
    reasons: list[str],
) -> list[bool]:
    """Step 4: which lines above the cut stay, from the verdicts.

    Interleaved (inline) replies keep the quotes between reply lines (reply text between two
    removed quote blocks, or between a quote block and the history that follows the cut, or
    two answers each under its own quote); otherwise only text and blank lines stay.
    """
    verdict_string = "".join(verdicts)
    first_x, last_x = verdict_string.find(_X), verdict_string.rfind(_X)
    # Text after a quote block is the person's even when older history follows: with text
    # above the quote too, the quote is one they made in their reply (T X T <history> is read
    # like T X T X). The one corpus case that needed the text cut hid a Tobit David separator.
    quoted_in_reply = (
        history_follows
        and first_x > 0
        and _T in verdict_string[:first_x]
        and _T in verdict_string[last_x:]
    )
    if (
        (first_x >= 0 and _T in verdict_string[first_x:last_x])
        or quoted_in_reply
        or ((first_x >= 0 or _Q in roles) and _answers_after_quotes(verdicts, roles) >= 2)
    ):
        last_text_end = verdict_string.rfind(_T) + 1
        reasons.append("interleaved reply: quotes between reply lines kept")
        return [verdict not in "HS" for verdict in verdict_string[:last_text_end]]
    keep = [verdict in "TB" for verdict in verdict_string]
    if quote_blocks:
        reasons.append(f"{quote_blocks} quote block(s) removed")
    return keep


def _next_nonblank(stripped: list[str], i: int) -> int:
    """Index of the first non-blank line at or after ``i`` (``len(stripped)`` if none)."""
    n = len(stripped)
    while i < n and not stripped[i]:
        i += 1
    return i


def _trim_tail(stripped: list[str], keep: list[bool], reasons: list[str]) -> None:
    """Step 5: drop a closing signature from the kept text: device line, "-Name", valediction."""
    kept = [k for k, flag in enumerate(keep) if flag and stripped[k]]
    while kept:
        last = kept[-1]
        text = stripped[last]
        if is_device_line(text):
            keep[last] = False
            kept.pop()
            reasons.append(f"device line at line {last + 1}")
            continue
        if NAME_SIGNATURE_RE.fullmatch(text) and len(text) <= 40 and len(kept) >= 2:
            previous = stripped[kept[-2]]
            if not previous.startswith(("-", "/", "*", "•")):
                keep[last] = False
                kept.pop()
                reasons.append(f"name signature at line {last + 1}")
                continue
        found = _closing_valediction(stripped, kept)
        if found > 0:
            for k in kept[found:]:
                keep[k] = False
            reasons.append(f"closing valediction at line {kept[found] + 1}")
            del kept[found:]
            continue
        break


def _closing_valediction(stripped: list[str], kept: list[int]) -> int:
    """Position in ``kept`` of a valediction followed by 1-3 short lines (a name), else -1.

    Only the last four kept lines are looked at; a valediction at position 0 is the whole
    reply and is never removed.
    """
    window = kept[-4:]
    for pos, k in enumerate(window):
        if is_valediction(stripped[k]) and all(len(stripped[x]) <= 40 for x in window[pos + 1 :]):
            found = len(kept) - len(window) + pos
            tail_count = len(kept) - found - 1
            return found if 1 <= tail_count <= 3 else -1
    return -1


# --------------------------------------------------------------------------- located history

#: Lines above our history searched for the splitter that introduces it (a separator, a blank
#: line and an eight-line header block fit; the rule line over a header block is added after).
_INTRO_WINDOW = 12


def _located_history(lines: list[str], boundary: int, strip_signature: bool) -> _Cut:
    """Keep flags when our marker (or an operator separator) at ``boundary`` locates our history.

    Our history is the marker line on, or, when the marker line is ``>``-quoted, the quote
    block around it. When a splitter (attribution, header block, separator; over an unquoted
    marker also a Lotus Notes column header) ends just above our history (blank lines
    between), it is the history's quote intro and goes with it, and everything above it is
    the person's reply, their own quotes and pasted ``>>>`` lines included; otherwise the
    heuristic runs on the text above, as before. Below a quote block is the person's text
    again (a bottom-posted reply, answers typed into our message): see
    :func:`_keep_text_below`.
    """
    stripped = _stripped_lines(lines)
    n = len(lines)
    first, end = boundary, boundary + 1
    quoted = stripped[boundary][:1] == ">"
    if quoted:
        while first > 0 and stripped[first - 1][:1] == ">":
            first -= 1
        while end < n and stripped[end][:1] == ">":
            end += 1
    keep = [False] * n
    reasons: list[str] = []
    intro = _intro_above(stripped, first)
    if intro is None and not quoted:
        intro = _notes_header_above(lines, stripped, first)
    if intro is None:
        above = _heuristic(lines[:first], strip_signature)
        keep[:first] = above.keep
        reasons.extend(above.reasons)
    else:
        start, kind = intro
        keep[:start] = _reply_text(stripped[:start], strip_signature, reasons)
        reasons.append(f"{kind} at line {start + 1} introduces our history")
    last_kept = first - 1
    while last_kept >= 0 and not (keep[last_kept] and stripped[last_kept]):
        keep[last_kept] = False  # blank lines between the reply and our history are neither
        last_kept -= 1
    if quoted:
        _keep_text_below(stripped, boundary, end, keep, strip_signature, reasons)
    return _Cut(keep=keep, reasons=reasons)


def _intro_above(stripped: list[str], first: int) -> tuple[int, str] | None:
    """The splitter ending just above line ``first`` (blank lines between): its start and kind.

    At most ``_INTRO_WINDOW`` lines up are tried, never across a quoted line; the topmost start
    wins, so a separator over a header block counts from the separator, and a splitter that
    ends where the one found starts joins it: an attribution a mail program wrapped ("On ...
    Service Desk <helpdesk@desk.example>" over "wrote:") counts from its first line. A header
    block also joins one it overlaps: with blank lines between its labels (Outlook's HTML as
    text) a block counts from its From line, though the Subject is past its eight lines.
    """
    last = first - 1
    while last >= 0 and not stripped[last]:
        last -= 1
    found: tuple[int, str] | None = None
    k = last
    while k >= 0 and k > last - _INTRO_WINDOW and not (stripped[k] and _is_quote_line(stripped[k])):
        if stripped[k]:
            splitter = _splitter_at(stripped, k)
            joins = (
                found is not None
                and splitter is not None
                and (
                    splitter.end == found[0]
                    or (splitter.kind == "header block" and splitter.end > found[0])
                )
            )
            if splitter is not None and (last < splitter.end <= first or joins):
                start = _rule_above(stripped, k) if splitter.kind == "header block" else k
                found = (start, splitter.kind)
        k -= 1
    return found


def _notes_header_above(
    lines: list[str], stripped: list[str], first: int
) -> tuple[int, str] | None:
    """A Lotus Notes column header ending just above line ``first`` (blank lines between)."""
    last = first - 1
    while last >= 0 and not stripped[last]:
        last -= 1
    start = notes_header_start(lines, last) if last >= 0 else None
    return None if start is None else (start, "Lotus Notes header")


def _reply_text(stripped: list[str], strip_signature: bool, reasons: list[str]) -> list[bool]:
    """Keep flags for lines known to be the person's: all of them, less a signature if asked."""
    if not strip_signature:
        return [True] * len(stripped)
    verdicts = [_T if text else _B for text in stripped]
    _mark_signature_blocks(stripped, verdicts, len(stripped), reasons)
    keep = [verdict in "TB" for verdict in verdicts]
    _trim_tail(stripped, keep, reasons)
    return keep


def _keep_text_below(
    stripped: list[str],
    marker: int,
    end: int,
    keep: list[bool],
    strip_signature: bool,
    reasons: list[str],
) -> None:
    """Keep the person's text under our quoted history (lines ``end`` on).

    It runs to the last unquoted line; quoted lines after it are the rest of our message and
    go. When quoted lines sit between the kept lines, the person answered inside our message:
    our quoted text after the marker line stays too, so each answer keeps its question.
    """
    last = len(stripped) - 1
    while last >= end and stripped[last][:1] in ("", ">"):
        last -= 1
    if last < end:
        return
    keep[end : last + 1] = _reply_text(stripped[end : last + 1], strip_signature, reasons)
    if not any(text[:1] == ">" for text in stripped[end:last]):
        below = end + next(k for k, text in enumerate(stripped[end:]) if text)
        reasons.append(f"reply text below our history kept from line {below + 1}")
        return
    question = marker + 1
    while question < end and not stripped[question].lstrip("> \t"):
        question += 1
    keep[question:end] = [True] * (end - question)
    reasons.append("answers typed into our quoted message: the quotes between them kept")


# --------------------------------------------------------------------------- public API


def _first_line_containing(lines: list[str], needles: Sequence[str]) -> tuple[int, str] | None:
    """First line index (and the needle) containing any of ``needles``, case-insensitive."""
    folded = [nd.casefold() for nd in needles if nd and nd.strip()]
    if not folded:
        return None
    for idx, line in enumerate(lines):
        low = line.casefold()
        for nd in folded:
            if nd in low:
                return idx, nd
    return None


def _trim_blank_ends(parts: list[str]) -> list[str]:
    """Remove blank lines at both ends of a list of lines."""
    a, b = 0, len(parts)
    while a < b and not parts[a].strip():
        a += 1
    while b > a and not parts[b - 1].strip():
        b -= 1
    return parts[a:b]


#: Non-blank lines at the start and at the end of the kept text where an announcement of
#: inline answers counts (a phrase deep in a long reply is about something else).
_ANNOUNCEMENT_LINES = 3
#: Lines after a "below" announcement: at most this many, each a short closing line.
_CLOSING_LINES, _CLOSING_CHARS = 3, 40
#: Non-blank lines at the start of the history searched for a question a bare "see below"
#: answers; words of a closing line under it (a valediction, a name).
_QUESTION_LINES, _CLOSING_WORDS = 60, 4


def _announced_inline_answers(kept: list[str], elided: list[str]) -> tuple[int, str] | None:
    """Position in ``kept`` and phrase of an announcement of answers typed into the history.

    Such answers cannot be told apart from an Outlook-style history, which is not ``>``-quoted,
    so only a history whose last line is unquoted counts (quoted answers show by themselves:
    see the interleaved rule). The phrase must be in the first or last
    ``_ANNOUNCEMENT_LINES`` non-blank kept lines; a "below" phrase ("answers below") only when
    nothing but a short closing follows it and it does not end with a colon (then it introduces
    the kept lines under it); a bare "see below" (the whole line, after a greeting at most)
    only when that closing has no digits (``ERR 1`` is not a name) and the history asks a
    question (a line ending with "?" among its first ``_QUESTION_LINES``): it may as well point
    at a log or a forwarded mail. Returns None when there is none.
    """
    last_cut = len(elided) - 1
    while last_cut >= 0 and not elided[last_cut].strip():
        last_cut -= 1
    if last_cut < 0 or elided[last_cut].lstrip()[0] == ">":
        return None
    head = _nonblank(kept, range(len(kept)), _ANNOUNCEMENT_LINES)
    tail = _nonblank(kept, range(len(kept) - 1, -1, -1), _CLOSING_LINES + 1)
    tail.reverse()  # the last kept lines, in order: enough to see what follows a "below"
    candidates = sorted(set(head) | set(tail[-_ANNOUNCEMENT_LINES:]))
    if not has_announcement_words(" ".join(kept[k].strip()[:300] for k in candidates)):
        return None
    for k in candidates:
        found = inline_answers_announced(kept[k].strip())
        if found is None:
            continue
        kind, phrase = found
        if kind != "inline":
            after = tail[tail.index(k) + 1 :] if k in tail else None
            if (
                after is None
                or any(len(kept[j].strip()) > _CLOSING_CHARS for j in after)
                or (after and kept[k].rstrip().endswith(":"))
            ):
                continue
            if kind == "see below" and (
                not all(_is_closing(kept[j]) for j in after) or not _asks_a_question(elided)
            ):
                continue
        return k, phrase
    return None


def _is_closing(line: str) -> bool:
    """A line that can close a reply: a valediction or a name (few words, no digits)."""
    words = line.split()
    return len(words) <= _CLOSING_WORDS and not any(ch.isdigit() for ch in line)


def _asks_a_question(elided: list[str]) -> bool:
    """True when one of the first ``_QUESTION_LINES`` non-blank lines of the history (quoted
    or not) ends with a question mark: the questions the announced answers are under."""
    for k in _nonblank(elided, range(len(elided)), _QUESTION_LINES):
        if elided[k].rstrip().endswith(("?", "？")):
            return True
    return False


def _nonblank(lines: list[str], order: range, count: int) -> list[int]:
    """The first ``count`` indexes, in ``order``, of non-blank lines."""
    found: list[int] = []
    for k in order:
        if lines[k].strip():
            found.append(k)
            if len(found) == count:
                break
    return found


MAX_SCAN_CHARS = 256 * 1024
"""How much of a body is examined for the reply boundary (a reply is found near the top)."""


def truncate_reply(
    body: str,
    *,
    marker: str | None = None,
    separators: Sequence[str] = (),
    strip_signature: bool = False,
    max_scan_chars: int = MAX_SCAN_CHARS,
) -> Truncation:
    """Keep the new reply text of ``body`` and say what was cut and why.

    Cut order: the first line containing ``marker``, else the first line containing one of
    ``separators``, locates our history (see :func:`_located_history`); without either, the
    quote/attribution heuristic decides. If the cut would leave nothing, or the kept text
    announces answers typed into an unquoted history, the whole body is kept (method
    ``KEPT_WHOLE``). Only the first ``max_scan_chars`` characters are examined, so a huge body
    costs no more than a large one; when a boundary is found there, everything after the
    examined start counts as quoted history.

    ``separators`` is a sequence of str, each a text whose first line locates the history
    (``("-----Original Message-----",)``). A bare str is refused with
    :class:`~asm_email_rules.errors.ArgumentTypeError`: read one character at a time it would
    cut at the first line holding any of them (a hyphen in "well-known"). A ``body`` or
    ``marker`` that is not a str raises ArgumentTypeError too; a ``max_scan_chars`` under 1
    raises ValueError (nothing examined would keep every body whole without saying why).
    """
    require_type(body, str, "truncate_reply", "body")
    require_type(marker, (str, type(None)), "truncate_reply", "marker", "a str or None")
    require_type(max_scan_chars, int, "truncate_reply", "max_scan_chars")
    if max_scan_chars < 1:
        raise ValueError(
            f"truncate_reply(): max_scan_chars must be 1 or more, got {max_scan_chars}"
        )
    separators = require_strings(separators, "truncate_reply", "separators")
    if len(body) <= max_scan_chars:
        return _truncate_all(body, marker, separators, strip_signature)
    end = body.rfind("\n", 0, max_scan_chars)
    end = max_scan_chars if end <= 0 else end
    head = _truncate_all(body[:end], marker, separators, strip_signature)
    note = f"only the first {end} of {len(body)} characters were examined"
    if head.method in (TruncationMethod.NONE, TruncationMethod.KEPT_WHOLE):
        return Truncation(body, "", head.method, f"{head.detail}; {note}")
    rest = body[end:].replace("\r\n", "\n").replace("\r", "\n")
    return Truncation(
        head.kept, head.elided + rest, head.method, f"{head.detail}; {note}, the rest elided"
    )


def _split_shared_lines(raw_lines: list[str]) -> list[str]:
    """Split lines that hold two things: "reply On <date>, X wrote:" (the reply part is kept),
    and a header block flattened onto one line (each field becomes a line)."""
    shared: list[tuple[int, list[str]]] = []
    colon_lines = [k for k, line in enumerate(raw_lines) if ":" in line or "：" in line]
    for k in colon_lines:
        line = raw_lines[k]
        if line.endswith(COLON_ENDS) and (split := split_shared_line(line)) is not None:
            shared.append((k, list(split)))
        elif _may_be_flattened(line) and (flat := split_flattened_line(line)) is not None:
            shared.append((k, flat))
    if not shared:
        return raw_lines
    lines: list[str] = []
    previous = 0
    for k, pieces in shared:
        lines.extend(raw_lines[previous:k])
        lines.extend(pieces)
        previous = k + 1
    lines.extend(raw_lines[previous:])
    return lines


def _may_be_flattened(line: str) -> bool:
    """Cheap test: enough colons for a flattened header block (three, or two after dashes)."""
    colons = line.count(":") + line.count("：")
    if colons >= 3:
        return True
    return colons == 2 and ("--" in line or "__" in line or "==" in line or "**" in line)


def _configured_boundary(
    lines: list[str], marker: str | None, separators: Sequence[str]
) -> tuple[TruncationMethod, list[str], int]:
    """The method, details and line index of the first reply marker, else separator line.

    Without either the method is HEURISTIC and the boundary is ``len(lines)`` (all examined).
    """
    hit = _first_line_containing(lines, [marker] if marker else [])
    if hit is not None:
        return TruncationMethod.MARKER, [f"reply marker {marker!r} at line {hit[0] + 1}"], hit[0]
    if separators:
        hit = _first_line_containing(lines, separators)
        if hit is not None:
            detail = f"separator {hit[1]!r} at line {hit[0] + 1}"
            return TruncationMethod.SEPARATOR, [detail], hit[0]
    return TruncationMethod.HEURISTIC, [], len(lines)


def _truncate_all(
    body: str, marker: str | None, separators: Sequence[str], strip_signature: bool
) -> Truncation:
    """:func:`truncate_reply` on the whole of ``body``."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    lines = _split_shared_lines(text.split("\n"))
    method, details, boundary = _configured_boundary(lines, marker, separators)
    if boundary < len(lines):
        result = _located_history(lines, boundary, strip_signature)
    else:
        result = _heuristic(lines, strip_signature)
    kept_lines: list[str] = []
    elided_lines: list[str] = []
    for line, keep in zip(lines, result.keep, strict=True):
        (kept_lines if keep else elided_lines).append(line)
    announced = _announced_inline_answers(kept_lines, elided_lines)
    if announced is not None:
        position, phrase = announced
        line_index = [k for k, keep in enumerate(result.keep) if keep][position]
        reason = "; ".join(details + result.reasons[:_MAX_REASONS])
        return Truncation(
            kept="\n".join(_trim_blank_ends(text.split("\n"))),
            elided="",
            method=TruncationMethod.KEPT_WHOLE,
            detail=f"{phrase!r} at line {line_index + 1} announces answers inside the history, "
            f"which is not '>'-quoted ({reason}); whole body kept",
        )
    kept_lines = _trim_blank_ends(kept_lines)
    details.extend(result.reasons[:_MAX_REASONS])
    if len(result.reasons) > _MAX_REASONS:
        details.append(f"{len(result.reasons) - _MAX_REASONS} more cuts")
    kept = "\n".join(kept_lines)
    if not kept.strip():
        _LOG.debug("truncation would leave nothing; keeping the whole body")
        reason = "; ".join(details) or "nothing recognised"
        return Truncation(
            kept="\n".join(_trim_blank_ends(text.split("\n"))),
            elided="",
            method=TruncationMethod.KEPT_WHOLE,
            detail=f"cut would leave nothing ({reason}); whole body kept",
        )
    elided = "\n".join(_trim_blank_ends(elided_lines))
    if not elided.strip() and method is TruncationMethod.HEURISTIC:
        method = TruncationMethod.NONE
        details = details or ["no quoted history found"]
    return Truncation(kept=kept, elided=elided, method=method, detail="; ".join(details))
