"""Text and files that arrive wrapped: Outlook's winmail.dat (TNEF), forwarded messages
attached, a text part marked as an attachment, text/enriched, RTF and calendar invitations.

Before, the call's description was the subject alone (the body was empty) and the files
inside winmail.dat reached nobody."""

from __future__ import annotations

import base64
import struct
import time
import tracemalloc

from asm_email_rules.classify import MailKind, classify
from asm_email_rules.container_text import calendar_text, enriched_text, rtf_text
from asm_email_rules.intake import parse_message
from asm_email_rules.intake_notes import IntakeNoteKind
from asm_email_rules.settings import Limits
from asm_email_rules.tnef import MAX_FILES, decompress_rtf, read_tnef

HEAD = (
    "From: Pat Example <pat@example.org>\r\nTo: desk@example.org\r\n"
    "Subject: {subject}\r\nMessage-ID: <{subject_id}@example.org>\r\nMIME-Version: 1.0\r\n"
)
PDF = b"%PDF-1.4\n% a made-up report\n" + bytes(range(256))
COMPRESSED_RTF = bytes.fromhex(
    "600000007a0000004c5a4675d9eb0c3103000a00726370673132354e3200f401f702a220430740691662051002"
    "807d0f62546865a0206261646710a07005103f0230049011140640026000706b2052630b11732e0aa3421228"
    "202c61670b7112c37d1490"
)
"""LZFu-compressed RTF ([MS-OXRTFCP]) of a two-paragraph message about a badge printer."""


def message(subject: str, rest: str) -> bytes:
    return (HEAD.format(subject=subject, subject_id=abs(hash(subject))) + rest).encode()


def mixed(*parts: str, boundary: str = "b1", subtype: str = "mixed") -> str:
    out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'
    for part in parts:
        out += f"--{boundary}\r\n{part}\r\n"
    return out + f"--{boundary}--\r\n"


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


def attribute(level: int, name: int, data: bytes) -> bytes:
    """One TNEF attribute ([MS-OXTNEF] 2.1.3.3): level, id, length, data, checksum."""
    return struct.pack("<BII", level, name, len(data)) + data + struct.pack("<H", sum(data) % 65536)


def mapi(props: list[tuple[int, int, bytes]], longs: tuple[tuple[int, int], ...] = ()) -> bytes:
    """A MAPI property list of variable-size single values (type, id, bytes), after the
    PT_LONG values ``longs`` (id, value)."""
    out = struct.pack("<I", len(props) + len(longs))
    for tag, number in longs:
        out += struct.pack("<HHI", 0x0003, tag, number)
    for kind, tag, value in props:
        out += struct.pack("<HHII", kind, tag, 1, len(value)) + value + b"\0" * (-len(value) % 4)
    return out


def tnef(
    *,
    body: str | None = None,
    rtf: bytes | None = None,
    files: tuple[tuple[str, bytes], ...] = (),
    codepage: int = 1252,
    internet_codepage: int | None = None,
) -> bytes:
    """A winmail.dat as Outlook writes one: version, code page, message class, the body's MAPI
    properties, then per file its rendering data, title and data."""
    out = b"\x78\x9f\x3e\x22" + b"\x34\x12"
    out += attribute(1, 0x00089006, struct.pack("<I", 0x00010000))
    out += attribute(1, 0x00069007, struct.pack("<II", codepage, 0))
    out += attribute(1, 0x00078008, b"IPM.Microsoft Mail.Note\0")
    props = []
    if body is not None:
        props.append((0x001E, 0x1000, body.encode("latin-1") + b"\0"))
    if rtf is not None:
        props.append((0x0102, 0x1009, rtf))
    if props:
        cpid = () if internet_codepage is None else ((0x3FDE, internet_codepage),)
        out += attribute(1, 0x00069003, mapi(props, cpid))
    for name, data in files:
        out += attribute(2, 0x00069002, b"\0" * 14)
        out += attribute(2, 0x00018010, name.encode("latin-1") + b"\0")
        out += attribute(2, 0x0006800F, data)
    return out


def winmail_part(data: bytes) -> str:
    return (
        'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        'Content-Disposition: attachment; filename="winmail.dat"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64(data)
    )


TEXT = "Content-Type: text/plain; charset=utf-8\r\n\r\n"


# -- winmail.dat ------------------------------------------------------------------------------


def test_files_inside_winmail_dat_are_attached_beside_it() -> None:
    data = tnef(files=(("report.pdf", PDF), ("Grüße.txt", b"line one\r\n")))
    email = parse_message(message("Figures", mixed(TEXT + "See attached.", winmail_part(data))))
    assert email.body == "See attached."
    found = [(a.filename, a.content_type, a.data) for a in email.attachments]
    assert found == [
        ("winmail.dat", "application/ms-tnef", data),
        ("report.pdf", "application/pdf", PDF),
        ("Grüße.txt", "text/plain", b"line one\r\n"),
    ]
    assert IntakeNoteKind.TNEF_OPENED in [note.kind for note in email.notes]


def test_winmail_dat_as_the_only_part_gives_its_plain_body() -> None:
    data = tnef(body="My VPN drops every ten minutes since Monday.")
    rest = 'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
    rest += "Content-Transfer-Encoding: base64\r\n\r\n" + b64(data)
    email = parse_message(message("VPN", rest))
    assert email.body == "My VPN drops every ten minutes since Monday."
    assert email.body_source == "application/ms-tnef"
    assert [a.filename for a in email.attachments] == ["winmail.dat"]
    assert IntakeNoteKind.BODY_FROM_ATTACHMENT in [note.kind for note in email.notes]


def test_winmail_dat_with_compressed_rtf_only_gives_the_rtf_text() -> None:
    data = tnef(rtf=COMPRESSED_RTF, files=(("card.png", b"\x89PNG made up"),))
    email = parse_message(message("Badge printer", mixed(winmail_part(data))))
    assert email.body == "The badge printer prints blank cards.\nBlank cards again."
    assert [a.filename for a in email.attachments] == ["winmail.dat", "card.png"]


def test_broken_winmail_dat_is_kept_as_it_came_with_a_note() -> None:
    data = tnef(files=(("report.pdf", PDF),))[:-40]  # cut inside the file's data
    email = parse_message(message("Figures", mixed(TEXT + "See attached.", winmail_part(data))))
    assert [(a.filename, a.data) for a in email.attachments] == [("winmail.dat", data)]
    assert IntakeNoteKind.TNEF_NOT_READ in [note.kind for note in email.notes]


def test_a_winmail_dat_in_any_code_page_is_read_and_the_message_kept() -> None:
    # Python knows only some Windows code pages as cpNNNN: a winmail.dat whose code page was
    # 28591 (ISO-8859-1), 20127 (US-ASCII), 50220 (ISO-2022-JP) or a number naming none
    # raised LookupError from inside the reader, and the whole message failed to parse (it
    # went to quarantine: no call, no files). Each is read; an unknown number as cp1252.
    for codepage, text in ((28591, "Café"), (0, "Café"), (123456, "Café"), (20127, "Caf\ufffd")):
        data = tnef(body="Café printer", files=(("Café.txt", b"notes"),), codepage=codepage)
        email = parse_message(message(f"Printer {codepage}", mixed(winmail_part(data))))
        assert email.body == f"{text} printer", codepage
        assert [a.filename for a in email.attachments] == ["winmail.dat", f"{text}.txt"]
        assert [a.data for a in email.attachments][1] == b"notes"


def test_a_winmail_dat_body_is_read_in_its_internet_code_page() -> None:
    # The body's 8-bit text is in the message's code page (PR_INTERNET_CPID), not the OEM
    # one of the sender's console: the property was looked up by a key it never has, so a
    # German Outlook's body (OEM 850, body in windows-1252) read "Gr³▀e" for "Grüße".
    data = tnef(body="Grüße, the printer is down", codepage=850, internet_codepage=1252)
    email = parse_message(message("Drucker", mixed(winmail_part(data))))
    assert email.body == "Grüße, the printer is down"


def test_a_type_recorded_in_winmail_dat_is_held_to_what_a_mime_header_may_say() -> None:
    # The MIME type Outlook recorded for a file (PR_ATTACH_MIME_TAG) was kept whatever it
    # held, line breaks included: a store or host serving the file with that type would
    # write them into its own header. A valid type is kept (lower case, no parameters),
    # anything else gives the type its name says.
    files = b""
    for name, tag in (
        ("report.pdf", "application/pdf\r\nX-Injected: 1"),
        ("a.png", "IMAGE/PNG; x=1"),
    ):
        files += attribute(2, 0x00069002, b"\0" * 14)
        files += attribute(2, 0x00018010, name.encode() + b"\0")
        files += attribute(2, 0x0006800F, PDF)
        files += attribute(2, 0x00069005, mapi([(0x001E, 0x370E, tag.encode() + b"\0")]))
    email = parse_message(message("Types", mixed(TEXT + "files", winmail_part(tnef() + files))))
    found = [(a.filename, a.content_type) for a in email.attachments[1:]]
    assert found == [("report.pdf", "application/pdf"), ("a.png", "image/png")]


def test_tnef_files_count_against_the_part_limit() -> None:
    data = tnef(files=tuple((f"f{i}.txt", b"x") for i in range(5)))
    raw = message("Many", mixed(TEXT + "files", winmail_part(data)))
    email = parse_message(raw, limits=Limits(max_part_count=4))
    assert [a.filename for a in email.attachments] == ["winmail.dat", "f0.txt", "f1.txt"]


def test_a_winmail_dat_of_countless_empty_files_does_not_take_memory_for_each() -> None:
    # Each rendering record (11 bytes) made a record in memory, dropped only at the end: a
    # 15 MB winmail.dat of them took about 8 times its size (120 MB) for nothing. Only the
    # first MAX_FILES are kept; those past it are counted and said to be left inside.
    records = 200_000
    data = tnef() + attribute(2, 0x00069002, b"") * records
    tracemalloc.start()
    try:
        contents = read_tnef(data, 1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert contents.files == ()
    assert peak < 2 * len(data), peak
    files = tuple((f"f{i}.txt", b"x") for i in range(MAX_FILES + 3))
    contents = read_tnef(tnef(files=files), 1 << 20)
    assert (len(contents.files), contents.left_inside) == (MAX_FILES, 3)
    email = parse_message(
        message("Many", mixed(TEXT + "files", winmail_part(tnef(files=files)))),
        limits=Limits(max_part_count=1000),
    )
    [note] = [note for note in email.notes if note.kind is IntakeNoteKind.TNEF_OPENED]
    assert "3 more left inside it" in note.detail


def test_hostile_tnef_of_tiny_attributes_is_read_in_linear_time() -> None:
    """12-byte attributes by the hundred thousand: tnefparse copies the rest of the stream for
    each one (quadratic); ours reads each header once."""
    unit = attribute(1, 0x00078008, b"x")
    small = b"\x78\x9f\x3e\x22\0\0" + unit * 20_000
    large = b"\x78\x9f\x3e\x22\0\0" + unit * 160_000
    started = time.perf_counter()
    read_tnef(small, 1 << 20)
    small_time = time.perf_counter() - started
    started = time.perf_counter()
    read_tnef(large, 1 << 20)
    large_time = time.perf_counter() - started
    assert large_time < 20 * small_time + 0.05  # 8x the input: about 8x the time


def test_decompress_rtf_stops_at_the_cap() -> None:
    assert decompress_rtf(COMPRESSED_RTF, 10) == b"{\\rtf1\\ans"


# -- forwarded messages ----------------------------------------------------------------------

INNER = (
    "From: Robin Sample <robin@example.net>\r\nSubject: Laptop will not boot\r\n"
    "Date: Mon, 30 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
)


def test_forwarded_message_attached_to_an_empty_mail_becomes_the_body() -> None:
    inner = INNER + "Content-Type: text/plain\r\n\r\nMy laptop shows a black screen.\r\n"
    rest = mixed(TEXT, "Content-Type: message/rfc822\r\n\r\n" + inner)
    email = parse_message(message("FW: Laptop will not boot", rest))
    assert email.body == (
        "---------- Forwarded message ----------\n"
        "From: Robin Sample <robin@example.net>\n"
        "Date: Mon, 30 Nov 2026 09:00:00 +0000\n"
        "Subject: Laptop will not boot\n\n"
        "My laptop shows a black screen.\n"
    )
    assert email.body_source == "message/rfc822"
    assert [a.content_type for a in email.attachments] == ["message/rfc822"]


def test_forwarded_eml_file_in_another_charset_and_encoding_is_read() -> None:
    inner = INNER + "Content-Type: text/plain; charset=koi8-r\r\n"
    inner += "Content-Transfer-Encoding: base64\r\n\r\n"
    inner += b64("Принтер не печатает.\r\n".encode("koi8-r"))
    part = 'Content-Type: application/octet-stream; name="Laptop.eml"\r\n'
    part += "Content-Transfer-Encoding: base64\r\n\r\n" + b64(inner.encode())
    email = parse_message(message("FW: printer", mixed(TEXT, part)))
    assert email.body.endswith("\n\nПринтер не печатает.\n")
    assert [a.filename for a in email.attachments] == ["Laptop.eml"]


def test_nested_forwards_are_read_to_the_text_and_a_limit_stops_the_descent() -> None:
    inner = INNER + "Content-Type: text/plain\r\n\r\nThe badge reader rejects every card.\r\n"
    for depth in range(3):
        inner = f"From: fwd{depth}@example.org\r\nSubject: FW\r\n" + mixed(
            TEXT, "Content-Type: message/rfc822\r\n\r\n" + inner, boundary=f"n{depth}"
        )
    email = parse_message(
        message("FW: FW: FW: badge", "Content-Type: message/rfc822\r\n\r\n" + inner)
    )
    assert email.body.count("---------- Forwarded message ----------") == 4
    assert email.body.endswith("The badge reader rejects every card.\n")
    deep = INNER + "Content-Type: text/plain\r\n\r\ntoo deep\r\n"
    for _ in range(12):
        deep = "Subject: FW\r\nContent-Type: message/rfc822\r\n\r\n" + deep
    email = parse_message(message("deep", "Content-Type: message/rfc822\r\n\r\n" + deep))
    assert "too deep" not in email.body


def test_the_message_a_report_returns_is_never_the_body() -> None:
    # A bounce (DSN), a complaint (ARF) or a read receipt (MDN) whose own text is empty
    # returns the message it is about: that message is not what the reporter wrote.
    original = "Content-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\n\r\nOur reply.\r\n"
    for report in ("delivery-status", "feedback-report", "disposition-notification"):
        fields = f"Content-Type: message/{report}\r\n\r\nFinal-Recipient: rfc822; p@example.org"
        rest = mixed(TEXT, fields, original, subtype=f"report; report-type={report}")
        email = parse_message(message(f"Report {report}", rest))
        assert email.body == "", report
        assert IntakeNoteKind.BODY_FROM_ATTACHMENT not in [note.kind for note in email.notes]
        assert "message/rfc822" in [a.content_type for a in email.attachments]


def test_a_forward_below_the_senders_own_text_leaves_the_body_as_written() -> None:
    inner = INNER + "Content-Type: text/plain\r\n\r\nMy laptop shows a black screen.\r\n"
    rest = mixed(TEXT + "Please look at this.", "Content-Type: message/rfc822\r\n\r\n" + inner)
    email = parse_message(message("FW: laptop", rest))
    assert email.body == "Please look at this."
    assert IntakeNoteKind.BODY_FROM_ATTACHMENT not in [note.kind for note in email.notes]


# -- text in another part or format ----------------------------------------------------------


def test_the_only_text_part_marked_as_an_attachment_is_the_body() -> None:
    rest = "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment\r\n\r\n"
    email = parse_message(message("Phone", rest + "My desk phone has no dial tone.\r\n"))
    assert email.body == "My desk phone has no dial tone.\n"
    assert [a.filename for a in email.attachments] == ["part-1.txt"]


def test_a_txt_file_under_an_empty_body_is_the_body_and_a_log_file_is_not() -> None:
    def with_file(name: str) -> str:
        return parse_message(
            message(
                "Problem",
                mixed(
                    TEXT,
                    f'Content-Type: text/plain; name="{name}"\r\n'
                    f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'
                    "The shared drive S: is not mapped after login.",
                ),
            )
        ).body

    assert with_file("problem.txt") == "The shared drive S: is not mapped after login."
    assert with_file("error.log") == ""


def test_enriched_rtf_and_calendar_only_mail_give_their_text() -> None:
    enriched = (
        "Content-Type: text/enriched\r\n\r\n<bold>Disk</bold> is\r\nfull.\r\n\r\nUse <<C:>.\r\n"
    )
    assert parse_message(message("Disk", enriched)).body == "Disk is full.\nUse <C:>."
    rtf = r"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Wifi drops \'e0 3pm.\par Thanks}"
    for ctype in ("text/rtf", "application/rtf"):
        email = parse_message(message("Wifi", f"Content-Type: {ctype}\r\n\r\n{rtf}"))
        assert email.body == "Wifi drops à 3pm.\nThanks"
    ics = (
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Server room walkthrough\r\n"
        "DESCRIPTION:The UPS alarm in rack 3 beeps\\, please check.\\nBring the key.\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    email = parse_message(message("Invitation", "Content-Type: text/calendar\r\n\r\n" + ics))
    assert email.body == (
        "Subject: Server room walkthrough\n\nThe UPS alarm in rack 3 beeps, please check.\n"
        "Bring the key."
    )
    # still an invitation with no text of the sender's own: classified as before
    assert classify(email).kind is MailKind.AUTO_GENERATED


def test_an_invitation_gives_its_events_description_not_its_alarms_or_parameters() -> None:
    # A reminder (VALARM) inside the event carries a DESCRIPTION of its own ("Reminder"),
    # which was taken for the event's when it came first; and a quoted parameter holding a
    # colon (RFC 5545 3.2.1's own ALTREP example) cut the value there, so the text began
    # with the rest of the URI.
    ics = (
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Printer training\r\n"
        'LOCATION;ALTREP="http://example.org/rooms/2":Room 2\r\n'
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nEND:VALARM\r\n"
        'DESCRIPTION;ALTREP="CID:part3.msg@example.org":Bring the badge printer manual.\r\n'
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    assert calendar_text(ics) == (
        "Subject: Printer training\nLocation: Room 2\n\nBring the badge printer manual."
    )


ENCAPSULATED_HTML = (
    b"{\\rtf1\\ansi\\ansicpg1252\\fromhtml1 \\deff0{\\fonttbl{\\f0\\fswiss Arial;}}\r\n"
    b"{\\*\\htmltag19 <html>}{\\*\\htmltag50 <body>}\\htmlrtf \\lang1033 \\htmlrtf0\r\n"
    b"{\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 Hello Desk,\\htmlrtf \\par\r\n}\\htmlrtf0\r\n"
    b"{\\*\\htmltag72 </p>}{\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 The printer says "
    b"\\'93Paper jam\\'94{\\*\\htmltag84 &nbsp;}\\htmlrtf \\'a0\\htmlrtf0 again."
    b"{\\*\\htmltag116 <br>}\\htmlrtf \\line\r\n\\htmlrtf0 Pat\\htmlrtf \\par\r\n}\\htmlrtf0\r\n"
    b"{\\*\\htmltag72 </p>}{\\*\\htmltag58 </body>}{\\*\\htmltag27 </html>}}"
)
"""Outlook's RTF of an HTML mail ([MS-OXRTFEX]): the HTML's tags in \\*\\htmltag groups, what
only RTF readers should show between \\htmlrtf and \\htmlrtf0."""


def test_rtf_encapsulating_html_keeps_its_paragraphs_and_spaces() -> None:
    # Outlook's RTF of an HTML mail (\\fromhtml1) holds its paragraphs and its &nbsp; only in
    # the HTML tags, and their RTF copies in \\htmlrtf parts: the reader dropped both, and
    # the text ran together ("Hello Desk,The printer ... jam\u201dagain.Pat").
    assert rtf_text(ENCAPSULATED_HTML) == (
        "Hello Desk,\n\nThe printer says \u201cPaper jam\u201d again.\nPat"
    )


def test_rtf_binary_data_is_skipped_even_when_it_holds_braces() -> None:
    assert rtf_text(rb"{\rtf1 Before{\pict\bin4 }}{{x} after\par}") == "Before after"


def test_text_readers_never_raise_on_junk() -> None:
    for junk in (b"", b"\\", b"{{{{\\u-99999999999 \\'zz\\*", b"}" * 50 + b"{" * 5000 + b"x"):
        rtf_text(junk)
    assert enriched_text("<<<<<param>x<") == "<<"
    assert calendar_text("END:VEVENT\r\nBEGIN:VEVENT\r\n") == ""


# -- inline PGP signatures ---------------------------------------------------------------------


def test_inline_pgp_signed_text_loses_its_armor_and_signature() -> None:
    """Before, the description began with the armor and Hash lines and ended in the signature."""
    signed = (
        "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\n"
        "My monitor flickers.\r\n- -- \r\nPat\r\n"
        "-----BEGIN PGP SIGNATURE-----\r\n\r\niQEzBAEBCAAdFiEEmadeup\r\n=abcd\r\n"
        "-----END PGP SIGNATURE-----\r\n"
    )
    email = parse_message(message("Monitor", TEXT + signed + "\r\nsent from my desk\r\n"))
    assert email.body == "My monitor flickers.\n-- \nPat\n\nsent from my desk\n"
    assert IntakeNoteKind.SIGNATURE_NOT_CHECKED in [note.kind for note in email.notes]


def test_inline_pgp_armor_without_its_signature_or_inside_a_line_is_left_as_written() -> None:
    unsigned = "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nno signature\r\n"
    assert parse_message(message("A", TEXT + unsigned)).body == unsigned.replace("\r\n", "\n")
    quoted = "> -----BEGIN PGP SIGNED MESSAGE-----\r\n>\r\n> quoted\r\n"
    assert parse_message(message("B", TEXT + quoted)).body == quoted.replace("\r\n", "\n")


def test_apple_double_resource_fork_does_not_take_the_files_name() -> None:
    """Apple Mail's multipart/appledouble (RFC 1740) sends the Mac header and the file under
    one name: before, the call had two "budget.xlsx", one of them 8 bytes nobody can open."""
    double = mixed(
        'Content-Type: application/applefile; name="budget.xlsx"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64(b"\x00\x05\x16\x07made up"),
        'Content-Type: application/vnd.ms-excel; name="budget.xlsx"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64(b"PK\x03\x04made up"),
        boundary="apple",
        subtype="appledouble",
    )
    email = parse_message(message("Budget", mixed(TEXT + "It will not open.", double)))
    assert [(a.filename, a.data[:2]) for a in email.attachments] == [
        ("._budget.xlsx", b"\x00\x05"),
        ("budget.xlsx", b"PK"),
    ]
