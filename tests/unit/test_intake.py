"""Unit tests of intake: raw bytes to InboundEmail (headers, bodies, attachments, limits)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime, timedelta
from email import policy

import pytest

from asm_email_rules import intake
from asm_email_rules.errors import MessageParseError
from asm_email_rules.intake import (
    decode_header_text,
    parse_address,
    parse_message,
    parse_msg_ids,
)
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind
from asm_email_rules.mime_tree import content_disposition, content_type
from asm_email_rules.model import LimitKind, NamedAddress
from asm_email_rules.settings import Limits


def kinds(notes: tuple[IntakeNote, ...]) -> list[IntakeNoteKind]:
    """The kinds of intake notes, in order."""
    return [note.kind for note in notes]


def mail(*headers: str, body: str | bytes = "Hello\n") -> bytes:
    """A message with CRLF line ends from header lines and a body."""
    head = "\r\n".join(headers).encode("utf-8") + b"\r\n\r\n"
    data = body.encode("utf-8") if isinstance(body, str) else body
    return head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


PLAIN = mail(
    "Return-Path: <jane@example.com>",
    "From: Jane Doe <jane@example.com>",
    "To: Service Desk <help@desk.example>",
    "Subject: Printer on floor 3 is broken",
    "Date: Tue, 04 Mar 2025 09:15:00 +0000",
    "Message-ID: <CAB123@mail.example.com>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    body="Hi,\nthe printer jams.\nJane\n",
)


# --------------------------------------------------------------------------- basics


def test_plain_message_fields() -> None:
    email = parse_message(PLAIN)
    assert email.sender == "jane@example.com"
    assert email.sender_name == "Jane Doe"
    assert email.subject == "Printer on floor 3 is broken"
    assert email.body == "Hi,\nthe printer jams.\nJane\n"
    assert email.body_source == "text/plain"
    assert email.body_html is None
    assert email.message_id == "<CAB123@mail.example.com>"
    assert email.to == ("help@desk.example",)
    assert email.return_path == "jane@example.com"
    assert email.date == datetime(2025, 3, 4, 9, 15, tzinfo=UTC)
    assert email.raw_sha256 == hashlib.sha256(PLAIN).hexdigest()
    assert email.raw_size == len(PLAIN)
    assert email.header("subject") == "Printer on floor 3 is broken"
    assert ("MIME-Version", "1.0") in email.headers
    assert email.notes == ()
    assert email.limit_violations == ()


def test_a_digest_the_caller_has_is_taken_as_the_raw_hash() -> None:
    # The polling service hashes each message before it parses it (the quarantine is keyed by
    # that hash); the ledger must key the message by the same digest, not hash it again.
    digest = hashlib.sha256(PLAIN).hexdigest()
    given = parse_message(PLAIN, raw_sha256=digest)
    assert given.raw_sha256 == digest
    assert given == parse_message(PLAIN)


def test_a_bare_cr_header_is_found_whether_the_body_uses_lf_or_crlf() -> None:
    # The probe for bare-CR line ends (RFC 5322 section 2.3) stops at the first blank line,
    # LF ("\n\n") or CRLF ("\n\r\n"), whichever comes first.
    for tail in (b"\n\nbody\n\r\nmore\r\n", b"\n\r\nbody\n\nmore\n"):
        raw = b"From: a@b.example\rSubject: old mac\nTo: help@desk.example" + tail
        email = parse_message(raw)
        assert email.subject == "old mac"
        assert IntakeNoteKind.BARE_CR_LINE_ENDS in [note.kind for note in email.notes]


def test_not_bytes_and_empty_input_raise_parse_error() -> None:
    with pytest.raises(MessageParseError):
        parse_message("From: a@b.c\r\n\r\nhi")  # type: ignore[arg-type]
    with pytest.raises(MessageParseError):
        parse_message(b"")


def test_unexpected_failure_is_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object) -> None:
        raise KeyError("internal")

    monkeypatch.setattr(intake._Intake, "run", boom)
    with pytest.raises(MessageParseError, match="KeyError"):
        parse_message(PLAIN)


# --------------------------------------------------------------------------- sender identity


def test_cve_2023_27043_address_is_not_misread() -> None:
    raw = mail("From: alice@evil.example <bob@good.example>", "Subject: approve")
    email = parse_message(raw)
    assert email.sender == ""  # neither the forged alice nor a guess
    assert IntakeNoteKind.INVALID_FROM in kinds(email.notes)


def test_utf8_from_headers_give_the_internationalized_sender() -> None:
    """RFC 6532 3.2: raw UTF-8 in From, as Gmail and Outlook.com send it to SMTPUTF8 servers."""
    email = parse_message(mail("From: José Núñez <josé@bücher.example>", "Subject: Drucker"))
    assert (email.sender, email.sender_name) == ("josé@bücher.example", "José Núñez")
    email = parse_message(mail("From: 王 <用户@例子.广告>"))
    assert email.sender == "用户@例子.广告"


@pytest.mark.parametrize(
    "address",
    [
        "anna\u202e@example.com",  # right-to-left override: the address shows backwards
        "anna@example.com\u200b",  # zero-width space: looks like anna@example.com
        "anna@xn--zz.example",  # not Punycode (RFC 5890 2.3.2.1)
        "anna@" + "b" * 64 + ".example",  # a DNS label is at most 63 octets
    ],
)
def test_a_from_address_that_shows_falsely_or_cannot_exist_is_no_sender(address: str) -> None:
    """DESIGN 4: the sender is From's addr-spec; one with invisible controls or an impossible
    domain is nobody's, noted as an invalid From, never matched to a person."""
    email = parse_message(mail(f"From: Anna <{address}>", "Subject: approve"))
    assert email.sender == ""
    assert IntakeNoteKind.INVALID_FROM in kinds(email.notes)


def test_quoted_display_name_with_at_sign_uses_the_real_address() -> None:
    email = parse_message(mail('From: "alice@evil.example" <bob@good.example>'))
    assert email.sender == "bob@good.example"
    assert email.sender_name == "alice@evil.example"


def test_several_from_addresses_leave_sender_empty() -> None:
    email = parse_message(mail("From: a@x.example, b@y.example"))
    assert email.sender == ""
    assert kinds(email.notes) == [IntakeNoteKind.MULTIPLE_FROM_ADDRESSES]
    assert str(email.notes[0]) == "From has 2 addresses; sender unknown"


def test_missing_from_is_noted() -> None:
    email = parse_message(mail("Subject: no sender"))
    assert email.sender == ""
    assert kinds(email.notes) == [IntakeNoteKind.MISSING_FROM]


def test_reply_to_and_sender_headers_never_identify_the_actor() -> None:
    raw = mail(
        "From: Real <real@example.com>",
        "Sender: agent@list.example",
        "Reply-To: other@example.com",
    )
    email = parse_message(raw)
    assert email.sender == "real@example.com"
    assert email.reply_to == ("other@example.com",)


def test_encoded_display_name_and_comment_forms() -> None:
    email = parse_message(mail("From: =?utf-8?B?w4lyaWM=?= Dupont <eric@example.fr>"))
    assert (email.sender, email.sender_name) == ("eric@example.fr", "Éric Dupont")
    assert parse_message(mail("From: bob@x.example (Bob)")).sender == "bob@x.example"


def _word(charset: str, codec: str, name: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(name.encode(codec)).decode('ascii')}?="


@pytest.mark.parametrize(
    ("charset", "codec", "name"),
    [
        ("Shift_JIS", "cp932", "髙橋 一郎"),  # an IBM kanji, as Windows writes Shift_JIS
        ("gb2312", "gbk", "王喆"),  # a GBK character under the GB2312 label
        ("ks_c_5601-1987", "cp949", "김똠"),  # Outlook's Korean label, a windows-949 syllable
        ("euc-kr", "cp949", "이똘"),
        ("big5", "big5hkscs", "陳峯"),
        ("iso-8859-1", "cp1252", "Zoë \u201cOps\u201d Ward"),
    ],
)
def test_encoded_display_name_in_a_narrow_label_is_read_as_its_superset(
    charset: str, codec: str, name: str
) -> None:
    email = parse_message(mail(f"From: {_word(charset, codec, name)} <ann@example.org>"))
    assert (email.sender, email.sender_name) == ("ann@example.org", name)


def test_encoded_display_name_inside_quotes_is_decoded() -> None:
    # Outlook and Notes quote the encoded-word of a name with a comma
    word = _word("utf-8", "utf-8", "Müller, Jürgen")
    email = parse_message(mail(f'From: "{word}" <juergen@example.de>'))
    assert (email.sender, email.sender_name) == ("juergen@example.de", "Müller, Jürgen")


@pytest.mark.parametrize(
    "header",
    [
        "From: {word} <bob@evil.example>",  # an encoded right-to-left override
        'From: "Bob \u202eelpmaxe.proc@ssob\u202c" <bob@evil.example>',  # raw UTF-8
        "From: {word}",  # a name and no address
    ],
)
def test_a_display_name_cannot_show_its_text_backwards(header: str) -> None:
    # A name holding U+202E (RIGHT-TO-LEFT OVERRIDE) shows the rest of it reversed: "Bob
    # boss@corp.example" on the screen of whoever reads the created User's name, the reply's
    # greeting or a notification (CVE-2021-42574's shape). The bidirectional controls are
    # dropped; the letters stay, and right-to-left names keep their own direction.
    word = _word("utf-8", "utf-8", "Bob \u202eelpmaxe.proc@ssob\u202c")
    email = parse_message(mail(header.format(word=word)))
    assert email.sender_name == "Bob elpmaxe.proc@ssob"
    hebrew = parse_message(mail(f"From: {_word('utf-8', 'utf-8', 'דנה לוי')} <dana@x.example>"))
    assert hebrew.sender_name == "דנה לוי"


def test_to_and_cc_lists_with_quoted_commas_and_groups() -> None:
    raw = mail(
        'To: "Doe, John" <john@x.example>, team: a@y.example, b@y.example;',
        "Cc: <c@z.example>",
    )
    email = parse_message(raw)
    assert email.to == ("john@x.example", "a@y.example", "b@y.example")
    assert email.cc == ("c@z.example",)


@pytest.mark.parametrize(
    "value",
    [
        "Jane Doe <jane@example.com>",
        '"Doe, Jane" <jane@example.com>',
        "jane.doe+tag@mail.example.co.uk",
        "  <x@y.example>  ",
        "O'Brien <ob@example.ie>",
    ],
)
def test_fast_path_agrees_with_header_registry(value: str) -> None:
    header = policy.default.header_factory("From", value)
    (address,) = header.addresses
    assert parse_address(value) == (address.display_name, address.addr_spec)


# Issue 9, "Senders lost": an unquoted comma in the only mailbox's display name.
def test_unquoted_comma_keeps_the_whole_display_name() -> None:
    email = parse_message(mail("From: Joe Foo, PhD <joe.foo@example.org>"))
    assert (email.sender, email.sender_name) == ("joe.foo@example.org", "Joe Foo, PhD")
    assert email.from_mailboxes == (NamedAddress("joe.foo@example.org", "Joe Foo, PhD"),)
    assert kinds(email.notes) == [IntakeNoteKind.LENIENT_ADDRESS]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Müller, Hans Dr. <hans@example.de>", [("Müller, Hans Dr.", "hans@example.de")]),
        ("=?utf-8?Q?M=C3=BCller?=, Hans <h@example.de>", [("Müller, Hans", "h@example.de")]),
        (
            "Smith, John <john@x.example>, Doe, Jane <jane@x.example>",
            [("Smith, John", "john@x.example"), ("Doe, Jane", "jane@x.example")],
        ),
        (
            '"Doe, Jane" <jane@x.example>, Roe, R. <r@x.example>',
            [("Doe, Jane", "jane@x.example"), ("Roe, R.", "r@x.example")],
        ),
        ("Dr. Joe Q. Public <joe@x.example>", [("Dr. Joe Q. Public", "joe@x.example")]),
        ('"Joe Public <joe@x.example>', [("Joe Public", "joe@x.example")]),
        ("[External] Help Desk <help@x.example>", [("[External] Help Desk", "help@x.example")]),
    ],
)
def test_lenient_display_names_around_one_address(
    value: str, expected: list[tuple[str, str]]
) -> None:
    assert intake.parse_address_list(value) == expected


def test_lenient_reading_never_merges_an_address_into_a_name() -> None:
    # The CVE-2023-27043 shape stays invalid; a bare address after a name stays bare.
    assert intake.parse_address_list("alice@evil.example <bob@good.example>") == []
    assert intake.parse_address_list("Evil, alice@evil.example <bob@good.example>") == []
    assert intake.parse_address_list("Joe, joe@x.example") == [("", "joe@x.example")]


def test_from_with_a_name_and_no_address_keeps_the_name_and_reply_to() -> None:
    email = parse_message(mail("From: Joe Foo", "Reply-To: Joe Foo <joe.foo@example.org>"))
    assert (email.sender, email.sender_name) == ("", "Joe Foo")
    assert email.from_mailboxes == ()
    assert email.reply_to == ("joe.foo@example.org",)
    assert email.reply_to_mailboxes == (NamedAddress("joe.foo@example.org", "Joe Foo"),)
    assert IntakeNoteKind.FROM_WITHOUT_ADDRESS in kinds(email.notes)
    assert IntakeNoteKind.INVALID_FROM not in kinds(email.notes)


def test_from_with_two_authors_keeps_both_and_the_sender_field() -> None:
    email = parse_message(
        mail(
            "From: Ann Lee <ann@example.org>, Bo Kim <bo@example.org>",
            "Sender: Ann Lee <ann@example.org>",
        )
    )
    assert email.sender == ""  # who acts is decided from Sender (RFC 5322 3.6.2), not here
    assert email.from_mailboxes == (
        NamedAddress("ann@example.org", "Ann Lee"),
        NamedAddress("bo@example.org", "Bo Kim"),
    )
    assert email.sender_mailbox == NamedAddress("ann@example.org", "Ann Lee")
    assert kinds(email.notes) == [IntakeNoteKind.MULTIPLE_FROM_ADDRESSES]


def test_sender_field_that_is_not_one_mailbox_is_none() -> None:
    assert (
        parse_message(mail("From: a@x.example", "Sender: a@x.example, b@x.example")).sender_mailbox
        is None
    )
    assert parse_message(mail("From: a@x.example")).sender_mailbox is None


def test_registry_crash_input_is_no_address() -> None:
    # policy.default raises IndexError on this value; it must just not be an address.
    assert parse_address("bob@") is None
    assert parse_message(mail("From: bob@")).sender == ""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("Return-Path: <>", ""),
        ("Return-Path: <bounce@x.example>", "bounce@x.example"),
    ],
)
def test_return_path(header: str | None, expected: str | None) -> None:
    headers = ["From: a@b.example"] + ([header] if header else [])
    assert parse_message(mail(*headers)).return_path == expected


# --------------------------------------------------------------------------- line ends


# Issue 9, "Senders lost": a message with bare-CR line ends was "no usable address".
def test_bare_cr_line_ends_are_line_breaks() -> None:
    raw = (
        b"From: Joe Foo <joe@example.org>\rSubject: Printer\rMessage-ID: <cr@example.org>\r"
        b"Content-Type: text/plain\r\rFirst line\rSecond line\r"
    )
    email = parse_message(raw)
    assert (email.sender, email.subject, email.message_id) == (
        "joe@example.org",
        "Printer",
        "<cr@example.org>",
    )
    assert email.body == "First line\nSecond line\n"
    assert kinds(email.notes) == [IntakeNoteKind.BARE_CR_LINE_ENDS]
    assert email.raw_size == len(raw)
    assert email.raw_sha256 == hashlib.sha256(raw).hexdigest()


def test_mixed_line_ends_in_headers_and_multipart() -> None:
    raw = (
        b"From: Joe <joe@example.org>\r\nSubject: Mixed\rTo: help@desk.example\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r"
        b"--b\rContent-Type: text/plain\r\n\nHello\r\nthere\rend\n"
        b"--b\r\nContent-Type: text/csv; name=a.csv\r\ra,b\r"
        b"--b--\r"
    )
    email = parse_message(raw)
    assert (email.sender, email.subject, email.to) == (
        "joe@example.org",
        "Mixed",
        ("help@desk.example",),
    )
    assert email.body == "Hello\nthere\nend"
    assert [(a.filename, a.data) for a in email.attachments] == [("a.csv", b"a,b")]


def test_crlf_message_is_not_rewritten() -> None:
    assert IntakeNoteKind.BARE_CR_LINE_ENDS not in kinds(parse_message(PLAIN).notes)


# --------------------------------------------------------------------------- header decoding


def test_subject_adjacent_encoded_words_join_split_characters() -> None:
    # "é" is split across two encoded-words; whitespace between them disappears.
    raw = mail("From: a@b.example", "Subject: =?utf-8?Q?R=C3?= =?utf-8?Q?=A9union?= [CALL#12]")
    assert parse_message(raw).subject == "Réunion [CALL#12]"


def test_encoded_command_token_is_decoded() -> None:
    raw = mail("From: a@b.example", "Subject: =?UTF-8?B?W0FQUFJPVkUjNTgzN10=?=")
    assert parse_message(raw).subject == "[APPROVE#5837]"


def test_broken_encoded_word_kept_as_text_and_noted() -> None:
    raw = mail("From: a@b.example", "Subject: Hello =?utf-8?B?###?= world")
    email = parse_message(raw)
    assert email.subject == "Hello =?utf-8?B?###?= world"
    assert kinds(email.notes) == [IntakeNoteKind.BROKEN_ENCODED_WORD]


def test_encoded_word_cannot_inject_line_breaks() -> None:
    raw = mail("From: a@b.example", "Subject: =?utf-8?Q?a=0D=0ABcc:_evil@x.example?=")
    subject = parse_message(raw).subject
    assert "\r" not in subject
    assert "\n" not in subject
    assert subject == "a Bcc: evil@x.example"


def test_folded_subject_is_unfolded() -> None:
    raw = mail("From: a@b.example", "Subject: a long\r\n  folded\r\n\tsubject")
    assert parse_message(raw).subject == "a long folded subject"


def test_unknown_charset_in_encoded_word_falls_back() -> None:
    email = parse_message(mail("From: a@b.example", "Subject: =?x-klingon?Q?caf=C3=A9?="))
    assert email.subject == "café"
    assert email.notes == (
        IntakeNote(
            IntakeNoteKind.UNKNOWN_CHARSET, "Subject: charset 'x-klingon' unknown; decoded as utf-8"
        ),
    )


def test_raw_utf8_header_is_decoded() -> None:
    raw = b"From: a@b.example\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nhi\r\n"
    email = parse_message(raw)
    assert email.subject == "Grüße"
    assert email.notes == ()


def test_raw_legacy_8bit_header_falls_back_with_note() -> None:
    raw = b"From: a@b.example\r\nSubject: caf\xe9 \x80\r\n\r\nhi\r\n"
    email = parse_message(raw)
    assert email.subject == "café €"
    assert email.notes == (
        IntakeNote(
            IntakeNoteKind.NON_UTF8_HEADER,
            "header 'Subject' has 8-bit bytes that are not utf-8; decoded as windows-1252",
        ),
    )


def test_decode_header_text_direct() -> None:
    assert decode_header_text("=?iso-8859-1?q?p=F6stal?=") == "pöstal"
    assert decode_header_text("x\x00y\x07z") == "xyz"


# --------------------------------------------------------------------------- msg-ids and date


def test_msg_ids_keep_brackets_and_skip_comments() -> None:
    assert parse_msg_ids("<a@b> (was <not@this>)") == ("<a@b>",)
    assert parse_msg_ids("<p0@h>\r\n <p1@h>  <p2@h>") == ("<p0@h>", "<p1@h>", "<p2@h>")
    assert parse_msg_ids("bare-id@host.example") == ("<bare-id@host.example>",)
    assert parse_msg_ids("") == ()


def test_thread_headers_are_parsed() -> None:
    raw = mail(
        "From: a@b.example",
        "In-Reply-To: <asm.call-12.x@desk.example> (our reply)",
        "References: <root@x.example>\r\n <asm.call-12.x@desk.example>",
    )
    email = parse_message(raw)
    assert email.in_reply_to == ("<asm.call-12.x@desk.example>",)
    assert email.references == ("<root@x.example>", "<asm.call-12.x@desk.example>")
    assert email.thread_ids[0] == "<asm.call-12.x@desk.example>"


def test_lenient_date_is_read_with_a_note() -> None:
    email = parse_message(mail("From: a@b.example", "Date: 2025-03-04 09:15:00"))
    assert email.date == datetime(2025, 3, 4, 9, 15)
    assert kinds(email.notes) == [IntakeNoteKind.LENIENT_DATE]


@pytest.mark.parametrize("date", ["10:42", "Tuesday 10:42", "1 Dec 10:42 +0100", "Dec 2026"])
def test_a_date_missing_its_year_month_or_day_is_unreadable_not_made_up(date: str) -> None:
    """DESIGN 1: above apply, "no clock or network inside": dateutil filled the missing part
    from the host's clock, so the same message read on another day had another Date (and
    the reply-age guard another answer)."""
    email = parse_message(mail("From: a@b.example", f"Date: {date}"))
    assert email.date is None
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_DATE]


def test_garbage_date_is_none_with_a_note() -> None:
    email = parse_message(mail("From: a@b.example", "Date: the day after tomorrow-ish ???"))
    assert email.date is None
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_DATE]


def test_received_at_is_the_newest_received_field_s_time_stamp() -> None:
    """RFC 5321 section 4.4: each relay prepends "Received: ...; date-time", so the first one
    is the last hop's, next to our mailbox: when the message reached us."""
    email = parse_message(
        mail(
            "Received: from mx.desk.example by store.desk.example;\r\n"
            " Tue, 01 Dec 2026 10:00:05 +0100",
            "Received: from laptop (by mx.corp.example); Mon, 23 Nov 2026 08:00:00 +0000",
            "From: a@b.example",
            "Date: Mon, 23 Nov 2026 07:59:00 +0000",
        )
    )
    assert email.received_at == datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)
    assert email.date == datetime(2026, 11, 23, 7, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "received",
    ["Received: from a by b", "Received: from a by b; the day after tomorrow-ish", ""],
)
def test_received_at_is_none_without_a_readable_received_time(received: str) -> None:
    email = parse_message(mail(*filter(None, [received, "From: a@b.example"])))
    assert email.received_at is None
    assert kinds(email.notes) == []


@pytest.mark.parametrize("zone", ["+2400", "+9900", "-2500"])
def test_a_zone_no_datetime_can_hold_makes_the_date_unreadable_not_a_later_crash(
    zone: str,
) -> None:
    """A review found "Received: x; 2 Jan 2025 10:00:00 +2400" read into a time whose zone
    raised on first use, so explain crashed when the reply-age guard compared it."""
    email = parse_message(
        mail(
            f"Received: x; 2 Jan 2025 10:00:00 {zone}",
            "From: a@b.example",
            f"Date: 2 Jan 2025 10:00:00 {zone}",
        )
    )
    assert email.received_at is None
    assert email.date is None
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_DATE]


@pytest.mark.parametrize(
    ("written", "year"),
    [
        ("49", 2049),
        ("50", 1950),
        ("68", 1968),
        ("69", 1969),
        ("99", 1999),
        ("00", 2000),
        ("126", 2026),
        ("099", 1999),
        ("2026", 2026),
    ],
)
def test_obsolete_years_are_read_as_rfc_5322_says(written: str, year: int) -> None:
    """RFC 5322 4.3: "If a two digit year is encountered whose value is between 00 and 49, the
    year is interpreted by adding 2000 ... between 50 and 99, or any three digit year is
    encountered, the year is interpreted by adding 1900." The reply-age guard reads the Date
    when no Received field says when mail arrived: a message of 1950 was taken for 2050 and
    answered, one of 2026 written "126" for 126 and never answered."""
    email = parse_message(mail("From: a@b.example", f"Date: Tue, 1 Dec {written} 10:00 +0100"))
    assert email.date is not None
    assert (email.date.year, email.date.month, email.date.day) == (year, 12, 1)
    assert email.date.utcoffset() == timedelta(hours=1)


def test_minus_zero_zone_is_utc() -> None:
    """RFC 5322 section 3.3: "-0000" is a time in UTC whose sender's zone is unknown (qmail
    writes its Received stamps so); read naive, it turned the reply-age guard off."""
    email = parse_message(
        mail(
            "Received: (qmail 1234 invoked by uid 89); 2 Jan 2025 10:00:00 -0000",
            "From: a@b.example",
            "Date: Thu, 2 Jan 2025 10:00:00 -0000",
        )
    )
    assert email.received_at == datetime(2025, 1, 2, 10, 0, tzinfo=UTC)
    assert email.date == datetime(2025, 1, 2, 10, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- bodies


def multipart(boundary: str, *parts: str) -> str:
    inner = "".join(f"--{boundary}\n{part}\n" for part in parts)
    return f"This is a multi-part message.\n{inner}--{boundary}--\n"


def test_alternative_uses_plain_and_keeps_html() -> None:
    body = multipart(
        "alt",
        "Content-Type: text/plain; charset=utf-8\n\nPlain version",
        "Content-Type: text/html; charset=utf-8\n\n<p>HTML <b>version</b></p>",
    )
    raw = mail(
        "From: a@b.example", 'Content-Type: multipart/alternative; boundary="alt"', body=body
    )
    email = parse_message(raw)
    assert email.body == "Plain version"
    assert email.body_source == "text/plain"
    assert email.body_html == "<p>HTML <b>version</b></p>"


def test_html_only_mail_becomes_readable_text() -> None:
    html = (
        "<html><head><style>p{color:red}</style></head><body>"
        "<p>Dear desk,</p><p>please reset my password&nbsp;&amp; unlock.</p>"
        '<ul><li>user: jdoe</li><li>see <a href="https://wiki.example/pw">guide</a></li></ul>'
        "</body></html>"
    )
    raw = mail("From: a@b.example", "Content-Type: text/html; charset=utf-8", body=html)
    email = parse_message(raw)
    assert email.body_source == "text/html"
    assert email.body_html == html
    assert email.body == (
        "Dear desk,\n\nplease reset my password & unlock.\n\n"
        "- user: jdoe\n- see guide (https://wiki.example/pw)"
    )


def test_no_text_part_gives_source_none() -> None:
    raw = mail("From: a@b.example", "Content-Type: image/png", body="PNG")
    email = parse_message(raw)
    assert email.body_source == "none"
    assert email.body == ""
    assert [a.content_type for a in email.attachments] == ["image/png"]


def test_quoted_printable_body_and_crlf_normalised() -> None:
    raw = mail(
        "From: a@b.example",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
        body="Gr=FC=DFe,\nsoft=\n break\n",
    )
    assert parse_message(raw).body == "Grüße,\nsoft break\n"


def test_unknown_charset_body_falls_back_to_utf8_then_cp1252() -> None:
    raw = mail("From: a@b.example", "Content-Type: text/plain; charset=x-unknown", body="café")
    email = parse_message(raw)
    assert email.body == "café"
    assert email.notes == (
        IntakeNote(
            IntakeNoteKind.UNKNOWN_CHARSET,
            "part 1 (text/plain): charset 'x-unknown' unknown; decoded as utf-8",
        ),
    )
    raw = mail("From: a@b.example", "Content-Type: text/plain; charset=x-unknown", body=b"caf\xe9")
    email = parse_message(raw)
    assert email.body == "café"
    assert email.notes == (
        IntakeNote(
            IntakeNoteKind.UNKNOWN_CHARSET,
            "part 1 (text/plain): charset 'x-unknown' unknown; decoded as windows-1252",
        ),
    )


# Issue 9 (a crash found by hypothesis): text with lone surrogates broke the SQLite store.
def test_unknown_charset_bytes_give_valid_unicode_with_a_note() -> None:
    raw = mail("From: a@b.example", "Content-Type: text/plain; charset=x-unknown", body=b"\xff\xfe")
    email = parse_message(raw)
    assert email.body == "\xff\xfe".encode("latin-1").decode("windows-1252")  # "ÿþ"
    email.body.encode("utf-8")
    assert kinds(email.notes) == [IntakeNoteKind.UNKNOWN_CHARSET]


@pytest.mark.parametrize(
    ("charset", "data"),
    [("utf-7", b"a+2AA-b"), ("unicode_escape", b"a\\ud800b"), ("raw-unicode-escape", b"a\\ud800b")],
)
def test_codecs_that_give_lone_surrogates_never_leak_them(charset: str, data: bytes) -> None:
    raw = mail(
        "From: =?utf-7?Q?+2AA-?= <a@b.example>",
        "Subject: =?utf-7?Q?x+2AA-?=",
        f"Content-Type: text/plain; charset={charset}",
        body=data,
    )
    email = parse_message(raw)
    for text in (email.body, email.subject, email.sender_name, *(v for _, v in email.headers)):
        text.encode("utf-8")
    assert email.body.startswith("a")
    assert email.body.endswith("b")
    assert "\ufffd" in email.subject
    assert email.sender == "a@b.example"
    assert IntakeNoteKind.SURROGATES_REPLACED in kinds(email.notes) or charset != "utf-7"


def test_rfc2231_filename_in_utf7_has_no_surrogates() -> None:
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nbody",
        "Content-Type: text/plain\nContent-Disposition: attachment; filename*=utf-7''a+2AA-\n\nx",
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    (attachment,) = parse_message(raw).attachments
    assert attachment.filename == "a\ufffd"


def test_bad_base64_body_does_not_crash() -> None:
    raw = mail(
        "From: a@b.example",
        "Content-Type: text/plain",
        "Content-Transfer-Encoding: base64",
        body="SGVsbG8gd29ybGQ!!!x",
    )
    email = parse_message(raw)
    assert email.body.startswith("Hello world")
    assert IntakeNoteKind.INVALID_BASE64_CHARACTERS in kinds(email.notes)


def test_words_declared_base64_are_kept_as_written_not_decoded_into_noise() -> None:
    # A broken mail program labelled a person's text base64: decoding it turned the request
    # into a line of noise, and the call's description lost what they wrote.
    raw = mail(
        "From: a@b.example",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        body="Hello, my printer is broken again.\nIt says paper jam on tray 2.\n",
    )
    email = parse_message(raw)
    assert email.body == "Hello, my printer is broken again.\nIt says paper jam on tray 2.\n"
    assert kinds(email.notes) == [IntakeNoteKind.NOT_BASE64]


# Field trial, fault 3: RFC 2045 section 5.2, a syntactically invalid Content-Type is read as
# text/plain; before that, a type whose parameters lack their ";" is read leniently.


def test_a_content_type_without_its_semicolon_keeps_the_body_and_its_charset() -> None:
    raw = mail(
        "From: Uma User <uma@corp.example>",
        "Content-Type: text/plain charset=koi8-r",
        body="Принтер не печатает.\n".encode("koi8-r"),
    )
    email = parse_message(raw)
    assert (email.body, email.body_source) == ("Принтер не печатает.\n", "text/plain")
    assert email.attachments == ()
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_CONTENT_TYPE]  # no charset guessed


def test_an_invalid_part_content_type_is_text_and_keeps_its_charset() -> None:
    body = multipart(
        "m",
        "Content-Type: text/plain, charset=iso-8859-1\n\nCaf\xe9 machine broken.",
        'Content-Type: text/csv; name="a.csv"\n\na,b',
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    raw = raw.replace("\xe9".encode(), b"\xe9")
    email = parse_message(raw)
    assert email.body == "Café machine broken."
    assert [a.filename for a in email.attachments] == ["a.csv"]
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_CONTENT_TYPE]


@pytest.mark.parametrize(
    "header",
    ['Content-Type: multipart/mixed boundary="m"', 'Content-Type: multipart; boundary="m"'],
)
def test_a_multipart_with_an_odd_header_is_still_split(header: str) -> None:
    body = multipart(
        "m", "Content-Type: text/plain\n\nSee the log.", 'Content-Type: text/csv; name="a.csv"\n\na'
    )
    email = parse_message(mail("From: a@b.example", header, body=body))
    assert email.body == "See the log."
    assert [a.filename for a in email.attachments] == ["a.csv"]
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_CONTENT_TYPE]


@pytest.mark.parametrize(
    "header", ["Content-Type: <html>", "Content-Type: text", "Content-Type: ;"]
)
def test_a_content_type_with_no_type_is_plain_text(header: str) -> None:
    email = parse_message(mail("From: a@b.example", header, body="Screen flickers.\n"))
    assert (email.body, email.body_source) == ("Screen flickers.\n", "text/plain")
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_CONTENT_TYPE]


@pytest.mark.parametrize(
    ("value", "kind", "params", "repaired"),
    [
        ("text/plain; charset=utf-8", "text/plain", {"charset": "utf-8"}, False),
        ("Text/HTML (from Notes); charset=x", "text/html", {"charset": "x"}, False),
        ("text / plain", "text/plain", {}, False),
        (None, "text/plain", {}, False),
        ("  ", "text/plain", {}, False),
        (
            "text/plain charset=utf-8 format=flowed",
            "text/plain",
            {"charset": "utf-8", "format": "flowed"},
            True,
        ),
        ('multipart/related boundary="a b=c"', "multipart/related", {"boundary": "a b=c"}, True),
        ("text/plain/html", "text/plain", {}, True),
        ('application-x-gzip; name="log.gz"', "text/plain", {"name": "log.gz"}, True),
        ("charset=koi8-r", "text/plain", {"charset": "koi8-r"}, True),
        ("text; boundary=b", "text/plain", {}, True),
    ],
)
def test_content_type_values(
    value: str | None, kind: str, params: dict[str, str], repaired: bool
) -> None:
    found_kind, found_params, repair = content_type(value, "text/plain")
    assert (found_kind, found_params, bool(repair)) == (kind, params, repaired)


@pytest.mark.parametrize(
    ("disposition", "kind", "filename"),
    [
        ('attachment filename="printer log.txt"', "attachment", "printer log.txt"),
        ("inline, filename=screen.png", "inline", "screen.png"),
        ('Attachment  filename="a.pdf" size=3', "attachment", "a.pdf"),
    ],
)
def test_a_disposition_whose_parameters_lack_their_semicolon_keeps_its_file_name(
    disposition: str, kind: str, filename: str
) -> None:
    # RFC 2183 section 2 wants "attachment; filename=..."; some mail programs and scripts
    # leave the ";" out. The file then lost the name its sender gave it (the Content-Type's
    # "name", or "attachment-1.bin", was used instead) and its disposition read as the whole
    # value. It is read as the Content-Type's parameters are, with a note.
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nLog attached.",
        f'Content-Type: text/plain; name="log.bin"\nContent-Disposition: {disposition}\n\n'
        "paper jam at 10:02\n",
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    email = parse_message(raw)
    assert email.body == "Log attached."
    assert [a.filename for a in email.attachments] == [filename]
    assert kinds(email.notes) == [IntakeNoteKind.INVALID_CONTENT_DISPOSITION]
    assert content_disposition(disposition)[0] == kind


@pytest.mark.parametrize(
    "value", ["attachment", 'attachment; filename="a b.pdf"', "inline", None, ""]
)
def test_a_valid_disposition_is_read_without_a_note(value: str | None) -> None:
    assert content_disposition(value)[2] == ""


# --------------------------------------------------------------------------- attachments


def test_rfc2231_filename_with_continuations() -> None:
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nSee attached.",
        "Content-Type: application/pdf\n"
        "Content-Disposition: attachment;\n"
        " filename*0*=utf-8''%E2%82%AC%20ra;\n filename*1=tes.pdf\n"
        "Content-Transfer-Encoding: base64\n\n" + base64.b64encode(b"%PDF-1.4").decode(),
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    (attachment,) = parse_message(raw).attachments
    assert attachment.filename == "€ rates.pdf"
    assert attachment.data == b"%PDF-1.4"
    assert attachment.content_type == "application/pdf"


def test_rfc2047_filename_as_outlook_sends_it() -> None:
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nx",
        'Content-Type: application/octet-stream; name="=?utf-8?B?w6ljaGVj?="\n\ndata',
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    assert parse_message(raw).attachments[0].filename == "échec"


def test_forwarded_message_is_kept_as_eml() -> None:
    inner = "From: boss@x.example\nSubject: Quarterly numbers\n\nSee below."
    body = multipart(
        "fw",
        "Content-Type: text/plain\n\nFYI, forwarding.",
        "Content-Type: message/rfc822\n\n" + inner,
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=fw", body=body)
    email = parse_message(raw)
    assert email.body == "FYI, forwarding."
    (attachment,) = email.attachments
    assert attachment.filename == "Quarterly numbers.eml"
    assert attachment.content_type == "message/rfc822"
    assert attachment.data == inner.replace("\n", "\r\n").encode()


def test_winmail_dat_kept_as_is() -> None:
    tnef = b"\x78\x9f\x3e\x22\x00\x00binary"
    body = multipart(
        "t",
        "Content-Type: text/plain\n\nbody",
        'Content-Type: application/ms-tnef; name="winmail.dat"\n'
        "Content-Transfer-Encoding: base64\n\n" + base64.b64encode(tnef).decode(),
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=t", body=body)
    (attachment,) = parse_message(raw).attachments
    assert (attachment.filename, attachment.data) == ("winmail.dat", tnef)


def test_text_part_with_filename_is_an_attachment_and_inline_image_keeps_cid() -> None:
    body = multipart(
        "r",
        'Content-Type: text/plain\nContent-Disposition: attachment; filename="log.txt"\n\nERR 1',
        "Content-Type: text/plain\n\nThe real body",
        "Content-Type: image/png\nContent-Disposition: inline\nContent-ID: <img1@x>\n\nPNG",
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/related; boundary=r", body=body)
    email = parse_message(raw)
    assert email.body == "The real body"
    log, image = email.attachments
    assert (log.filename, log.data) == ("log.txt", b"ERR 1")
    assert image.inline
    assert image.content_id == "<img1@x>"
    assert image.filename == "part-3.png"


# Field trial, fault 5: uuencoded files, inline in a text body or as a transfer encoding.
LOG = b"2026-11-30 08:00:01 ERROR reader 4: card 1234 rejected (E17)\n" * 3


def uuencoded(data: bytes, name: str = "error.log") -> str:
    lines = "".join(binascii.b2a_uu(data[i : i + 45]).decode() for i in range(0, len(data), 45))
    return f"begin 644 {name}\n{lines}`\nend\n"


def test_an_inline_uuencoded_file_becomes_an_attachment_and_the_text_stays() -> None:
    body = f"Hello desk,\nthe reader log:\n\n{uuencoded(LOG)}\nThanks,\nUma\n"
    email = parse_message(mail("From: a@b.example", "Content-Type: text/plain", body=body))
    assert email.body == "Hello desk,\nthe reader log:\n\nThanks,\nUma\n"
    assert [(a.filename, a.content_type, a.data) for a in email.attachments] == [
        ("error.log", "text/plain", LOG)
    ]
    assert kinds(email.notes) == [IntakeNoteKind.UUENCODED_FILE]


@pytest.mark.parametrize(
    "text",
    [
        "We begin 644 tests tomorrow.\n",
        "begin 644 the rollout after lunch\nend\n",
        "begin 644 notes.txt\nM the reader\nend\n",  # a lower-case letter: not uuencode
        "begin 644 cut.log\n" + uuencoded(LOG).splitlines()[1] + "\n",  # no end line
        "begin 9 x.bin\n`\nend\n",  # no octal mode
        uuencoded(LOG).replace("`\nend", "`\nThe end"),
    ],
)
def test_prose_that_looks_like_uuencode_is_untouched(text: str) -> None:
    email = parse_message(mail("From: a@b.example", "Content-Type: text/plain", body=text))
    assert email.body == text
    assert (email.attachments, email.notes) == ((), ())


@pytest.mark.parametrize("encoding", ["x-uuencode", "uuencode", "x-uue", "X-UUENCODE"])
def test_a_uuencode_transfer_encoding_is_decoded(encoding: str) -> None:
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nTrace attached.",
        "Content-Type: application/octet-stream; name=trace.bin\n"
        f"Content-Transfer-Encoding: {encoding}\n\n{uuencoded(LOG, 'trace.bin')}",
        f"Content-Type: text/plain\nContent-Transfer-Encoding: {encoding}\n\n"
        + uuencoded(b"More text.\n", "x"),
    )
    email = parse_message(
        mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    )
    assert email.body == "Trace attached.\nMore text.\n"
    assert [(a.filename, a.data) for a in email.attachments] == [("trace.bin", LOG)]
    assert email.notes == ()


def test_a_body_declared_uuencode_that_is_not_is_kept_with_a_note() -> None:
    raw = mail(
        "From: a@b.example",
        "Content-Type: text/plain",
        "Content-Transfer-Encoding: x-uuencode",
        body="just words\n",
    )
    email = parse_message(raw)
    assert email.body == "just words\n"
    assert kinds(email.notes) == [IntakeNoteKind.NOT_UUENCODED]


def test_inline_uuencoded_files_are_held_to_the_limits() -> None:
    body = uuencoded(LOG, "a.log") + "between\n" + uuencoded(b"x" * 50, "b.bin")
    raw = mail("From: a@b.example", "Content-Type: text/plain", body=body)
    email = parse_message(raw, limits=Limits(max_part_count=1))
    assert [a.filename for a in email.attachments] == ["a.log"]
    assert email.body == "between\n" + uuencoded(b"x" * 50, "b.bin")
    assert [v.kind for v in email.limit_violations] == [LimitKind.PART_COUNT]
    email = parse_message(raw, limits=Limits(max_attachment_size=100))
    assert [a.filename for a in email.attachments] == ["b.bin"]
    assert email.body == "between\n"
    assert IntakeNoteKind.ATTACHMENT_DROPPED in kinds(email.notes)


def test_a_plain_alternative_holding_only_a_uuencoded_file_gives_way_and_keeps_it() -> None:
    body = multipart(
        "alt",
        f"Content-Type: text/plain\n\n{uuencoded(LOG)}",
        "Content-Type: text/html\n\n<p>Log attached.</p>",
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/alternative; boundary=alt", body=body)
    email = parse_message(raw)
    assert (email.body, email.body_source) == ("Log attached.", "text/html")
    assert [a.filename for a in email.attachments] == ["error.log"]


# --------------------------------------------------------------------------- limits


def nested(depth: int) -> bytes:
    head = (
        "From: a@b.example\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    )
    opening = "".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(depth)
    )
    leaf = f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeep body\r\n"
    closing = "".join(f"--b{i}--\r\n" for i in range(depth, -1, -1))
    return (head + opening + leaf + closing).encode()


def test_deep_nesting_5000_levels_is_a_violation_not_a_recursion_error() -> None:
    email = parse_message(nested(5000))
    (violation,) = email.limit_violations
    assert violation.kind is LimitKind.MIME_DEPTH
    assert violation.limit == 20
    assert violation.actual > 20
    assert email.subject == "deep"
    assert email.body == ""


def test_nesting_within_the_limit_reaches_the_body() -> None:
    email = parse_message(nested(10))
    assert email.limit_violations == ()
    assert email.body == "deep body"


def test_oversized_attachment_is_dropped_and_the_rest_kept() -> None:
    big = base64.encodebytes(b"x" * 5000).decode()
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nsee attachment",
        'Content-Type: application/zip; name="big.zip"\nContent-Transfer-Encoding: base64\n\n'
        + big,
        'Content-Type: text/csv; name="small.csv"\n\na,b',
    )
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    email = parse_message(raw, limits=Limits(max_attachment_size=1000))
    assert email.body == "see attachment"
    assert [a.filename for a in email.attachments] == ["small.csv"]
    (violation,) = email.limit_violations
    assert violation.kind is LimitKind.ATTACHMENT_SIZE
    assert violation.actual >= 5000
    assert email.notes == (
        IntakeNote(
            IntakeNoteKind.ATTACHMENT_DROPPED,
            f"attachment 'big.zip' ({violation.actual} bytes) dropped: over 1000 bytes",
        ),
    )


def test_too_many_parts_keeps_the_first_n() -> None:
    parts = [f'Content-Type: text/csv; name="f{i}.csv"\n\n{i}' for i in range(10)]
    body = multipart("m", "Content-Type: text/plain\n\nbody", *parts)
    raw = mail("From: a@b.example", "Content-Type: multipart/mixed; boundary=m", body=body)
    email = parse_message(raw, limits=Limits(max_part_count=3))
    assert email.body == "body"
    assert [a.filename for a in email.attachments] == ["f0.csv", "f1.csv"]
    (violation,) = email.limit_violations
    assert (violation.kind, violation.limit, violation.actual) == (LimitKind.PART_COUNT, 3, 4)


def test_over_total_size_keeps_headers_only() -> None:
    raw = mail("From: a@b.example", "Subject: huge", body="x" * 5000)
    email = parse_message(raw, limits=Limits(max_total_size=1000))
    assert (email.sender, email.subject, email.body) == ("a@b.example", "huge", "")
    assert email.limit_violations[0].kind is LimitKind.TOTAL_SIZE
    assert email.raw_size == len(raw)


def test_too_many_headers_keeps_the_first_n() -> None:
    headers = ["From: a@b.example", *(f"X-Spam-{i}: {i}" for i in range(50))]
    email = parse_message(mail(*headers), limits=Limits(max_header_count=10))
    assert len(email.headers) == 10
    violation = email.limit_violations[0]
    assert (violation.kind, violation.actual) == (LimitKind.HEADER_COUNT, 51)


def test_header_bytes_limit() -> None:
    headers = ["From: a@b.example", *(f"X-Pad-{i}: {'p' * 90}" for i in range(100))]
    email = parse_message(mail(*headers), limits=Limits(max_header_bytes=2000))
    assert email.sender == "a@b.example"
    assert len(email.headers) < 30
    assert email.limit_violations[0].kind is LimitKind.HEADER_BYTES


def test_overlong_subject_is_cut_and_reported() -> None:
    email = parse_message(
        mail("From: a@b.example", f"Subject: {'s' * 500}"), limits=Limits(max_subject_length=100)
    )
    assert email.subject == "s" * 100
    (violation,) = email.limit_violations
    assert (violation.kind, violation.limit, violation.actual) == (
        LimitKind.SUBJECT_LENGTH,
        100,
        500,
    )


def test_overlong_lines_are_cut() -> None:
    raw = mail("From: a@b.example", f"Subject: {'s' * 500}", body="short\n" + ">" * 3000 + "\n")
    email = parse_message(raw, limits=Limits(max_line_length=200))
    assert email.body.split("\n")[1] == ">" * 200
    assert len(email.subject) <= 200
    violation = email.limit_violations[0]
    assert violation.kind is LimitKind.LINE_LENGTH
    assert violation.actual >= 3000


def test_huge_address_list_is_bounded() -> None:
    to = ", ".join(f"User {i} <u{i}@x.example>" for i in range(3000))
    email = parse_message(mail("From: a@b.example", f"To: {to}"))
    assert len(email.to) == 1000
    assert kinds(email.notes) == [IntakeNoteKind.TOO_MANY_ADDRESSES]


# ------------------------------------------------------------ hostile attachment names


def _with_attachment(disposition: str) -> bytes:
    return mail(
        "From: uma@corp.example",
        "Subject: logs",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b"',
        body=(
            "--b\nContent-Type: text/plain\n\nsee the file\n"
            f"--b\nContent-Type: application/octet-stream\nContent-Disposition: {disposition}\n"
            "Content-Transfer-Encoding: base64\n\naGk=\n--b--\n"
        ),
    )


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="/etc/cron.d/job"', "job"),
        ('attachment; filename="=?utf-8?q?..=2F..=2Fwww=2Findex.php?="', "index.php"),
        (r'attachment; filename="..\\..\\Windows\\win.ini"', "win.ini"),
        ("attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe", "invoicefdp.exe"),
        ('attachment; filename=".."', "part-2.bin"),
        ('attachment; filename="CON"', "_CON"),
        ('attachment; filename="aux.txt"', "_aux.txt"),
        ('attachment; filename="report.pdf. . "', "report.pdf"),
    ],
)
def test_an_attachment_name_cannot_leave_its_folder_or_hide_its_type(
    disposition: str, expected: str
) -> None:
    """A host stores attachments as objects by name; the name we give it is one plain file
    name: no directories, no ``..``, no bidi override showing ``exe`` as ``pdf``, no
    reserved Windows device name. The change is noted."""
    email = parse_message(_with_attachment(disposition))
    assert [a.filename for a in email.attachments] == [expected]
    assert IntakeNoteKind.ATTACHMENT_RENAMED in kinds(email.notes)


def test_a_very_long_attachment_name_is_cut_and_keeps_its_extension() -> None:
    email = parse_message(_with_attachment(f'attachment; filename="{"x" * 3000}.pdf"'))
    (attachment,) = email.attachments
    assert attachment.filename.endswith("x.pdf")
    assert len(attachment.filename.encode("utf-8")) <= 255


@pytest.mark.parametrize(
    "name",
    [
        "Q3 report (final).pdf",
        "Rapport\u00a0final.docx",  # a no-break space, as French typing puts one
        "会議\u3000資料.pdf",  # an ideographic space
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467.jpg",  # an emoji with its joiners
    ],
)
def test_an_ordinary_attachment_name_is_kept_as_written(name: str) -> None:
    word = _word("utf-8", "utf-8", name)
    email = parse_message(_with_attachment(f'attachment; filename="{word}"'))
    assert [a.filename for a in email.attachments] == [name]
    assert IntakeNoteKind.ATTACHMENT_RENAMED not in kinds(email.notes)
