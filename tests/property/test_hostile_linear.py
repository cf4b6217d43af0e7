"""Hostile shapes a review found slower than linear, each now linear in its input.

docs/security.md, "Hostile MIME": "Every parser is linear in its input". Each case times
one input of ``n`` units and one of ``8 n``: linear work takes about 8 times longer, the
quadratic shapes these were took 40 to 64 times (the review's figures: a 255 KB header of
one unclosed encoded-word took 32 s to parse; a forged bounce of blank lines, 30 s for
64 KiB and about 5 s more per attached header part).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cpu_timing import ALLOWED, assert_linear

from asm_email_rules import classify, parse_message, parse_subject
from asm_email_rules.adapters._repository import legacy_address_keys
from asm_email_rules.html_text import html_to_text
from asm_email_rules.mime_tree import content_type
from asm_email_rules.truncate import truncate_reply

LINEAR = ALLOWED


def _encoded_word_header(n: int) -> bytes:
    return b"From: a@b.example\r\nSubject: hi\r\nX-A: =?" + b"a" * n + b"\r\n\r\nx\r\n"


def _forged_bounce(n: int) -> bytes:
    """A DSN whose notification is ``n`` blank lines and whose attached header part is
    ``n`` lines of one blank: where the Message-ID of the bounced mail is looked for."""
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.com\r\nTo: help@desk.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\r\n\r\n'
        "--BB\r\nContent-Type: text/plain\r\n\r\n"
        + "\r\n"
        * n
        + "--BB\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--BB\r\nContent-Type: text/rfc822-headers\r\n\r\n" + " \r\n" * n + "\r\n--BB--\r\n"
    ).encode()


def _spaced_content_type(n: int) -> bytes:
    """A part whose Content-Type has a word, ``n`` spaces and a word after its type: no
    ``name=`` follows the run, so it is no missing ``;`` (a review: 0.4 s for 8,000
    spaces, in each part: 110 s for 2 MB of such parts)."""
    part = b"--p\r\nContent-Type: text/plain x" + b" " * n + b"y\r\n\r\nhi\r\n"
    return (
        b"From: a@b.example\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n"
        + part
        + b"--p--\r\n"
    )


def _html(unit: str) -> Callable[[int], Callable[[], object]]:
    """``n`` copies of ``unit`` converted to text (the input built before the timing)."""

    def build(n: int) -> Callable[[], object]:
        html = unit * n
        return lambda: html_to_text(html)

    return build


_WORD_ITEM = (
    "<p class=MsoListParagraphCxSpMiddle style='margin-left:72.0pt;text-indent:-18.0pt;"
    "mso-list:l0 level2 lfo1'><![if !supportLists]><span style='font-family:Symbol'>"
    "<span style='mso-list:Ignore'>&middot;<span style='font:7.0pt \"Times New Roman\"'>"
    "&nbsp;&nbsp; </span></span></span><![endif]>Tray 2<o:p></o:p></p>\r\n"
)
_MB = 1_000_000
_SELECT = "<p>Priority: <select><option>Low<option selected>High, printing stopped</select>"
_LINE = "Printer HP 4000, floor 3 east</br>"

CASES: dict[str, tuple[Callable[[int], Callable[[], object]], int, float]] = {
    # intake.py: the charsets of encoded-words, looked for in every header
    "unclosed encoded-word": (
        lambda n: lambda: parse_message(_encoded_word_header(n)),
        4_000,
        LINEAR,
    ),
    # classify.py: the bounced mail's Message-ID, looked for line by line in a bounce
    "forged bounce of blank lines": (
        lambda n: lambda: classify(parse_message(_forged_bounce(n))),
        2_000,
        LINEAR,
    ),
    # html_text.py: the blank lines before the text, dropped (a pop(0) each was quadratic
    # with a small constant: 23 times longer at 8 times the size, so a tighter bound here)
    "HTML of leading blank lines": (
        lambda n: lambda: html_to_text("><br>\n" * n + "x"),
        20_000,
        14,
    ),
    # reply_lines.py: a separator inside a longer line, looked for in each line
    "lines of dashes": (
        lambda n: lambda: truncate_reply("hi\n" + ("-" * n + "a:b:\n") * 20, strip_signature=True),
        240,
        LINEAR,
    ),
    # mime_tree.py: the white space or comma that should have been a ";" in a Content-Type
    "Content-Type of a run of spaces": (
        lambda n: lambda: parse_message(_spaced_content_type(n)),
        1_000,
        LINEAR,
    ),
    "Content-Type of a run of commas": (
        lambda n: lambda: content_type("text/plain x" + "," * n + "y", "text/plain"),
        1_000,
        LINEAR,
    ),
    # mime_tree.py: white space around the "/" of a type, in a value with no type
    "Content-Type without a type, a run of spaces": (
        lambda n: lambda: content_type("a" + " " * n + "b", "text/plain"),
        2_000,
        LINEAR,
    ),
    # html_text.py: desktop Outlook's list paragraphs (1 MB and 8 MB), and their marker
    # spans never closed, nested without end
    "Outlook list paragraphs": (_html(_WORD_ITEM), _MB // len(_WORD_ITEM), LINEAR),
    "Word list markers never closed": (
        _html("<p style='mso-list:l0 level1 lfo1'><span style='mso-list:Ignore'>1. a"),
        _MB // 70,
        LINEAR,
    ),
    "Word list marker spans nested": (
        _html("<p style='mso-list:l0 level1 lfo1'><span style='mso-list:ignore'><span>"),
        _MB // 70,
        LINEAR,
    ),
    # html_text.py: runs of no-break spaces kept as spaces (1 MB and 8 MB, on one line)
    "runs of no-break spaces": (_html("a&nbsp;&nbsp; \t&nbsp;"), _MB // 20, LINEAR),
    "stray line break end tags": (_html(_LINE), _MB // len(_LINE), LINEAR),
    # html_text.py: reversed lists, counted in a pass of their own: closed, and unclosed
    # (nested without end); 125 KB and 1 MB (a pass more: 8 MB of these tags takes 3 s)
    "reversed lists": (_html("<ol reversed><li>a</li><li>b</li></ol>"), _MB // 8 // 38, LINEAR),
    "reversed lists never closed": (_html("<ol reversed><li>step"), _MB // 8 // 22, LINEAR),
    # html_text.py: drop-downs (1 MB and 8 MB): closed, and options never closed
    "drop-down options": (_html(_SELECT), _MB // len(_SELECT), LINEAR),
    "options never closed": (_html("<select><option>Printer HP 4000 in room 3"), _MB // 40, LINEAR),
    # subject.py: a reply prefix with its counter
    "prefix and blanks": (lambda n: lambda: parse_subject("Re" + " " * n), 2_000, LINEAR),
    # adapters/_repository.py: the keys older versions wrote, for a domain label of n distinct
    # CJK characters (Punycode is quadratic in them: 16,000 took 23 s; no domain holds one)
    "huge non-ASCII domain label": (
        lambda n: (
            lambda: legacy_address_keys(
                "boss@" + "".join(map(chr, range(0x4E00, 0x4E00 + n))) + ".example"
            )
        ),
        1_000,
        LINEAR,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_shapes_take_time_linear_in_their_size(name: str) -> None:
    build, n, allowed = CASES[name]
    assert_linear(build, n, allowed=allowed, floor=0.001, what=name)


def test_the_bounced_message_id_is_still_found_when_its_field_is_folded() -> None:
    """The Message-ID of the bounced mail, in its attached header part, folded onto the next
    line as RFC 5322 section 2.2.3 allows: still the one the bounce is about."""
    raw = _forged_bounce(1).replace(
        b"text/rfc822-headers\r\n\r\n \r\n",
        b"text/rfc822-headers\r\n\r\nMessage-ID:\r\n <asm.call-7.abc@desk.example>\r\n",
    )
    result = classify(parse_message(raw))
    assert result.bounce is not None
    assert result.bounce.original_message_id == "<asm.call-7.abc@desk.example>"
