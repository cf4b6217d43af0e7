"""Field trial, fault 2: S/MIME opaque-signed mail (RFC 8551 section 3.5.2) keeps its text.

The fixtures in ``smime/`` were made with ``openssl cms`` and a throwaway key (see its
README); the signature is never checked, here or in intake.
"""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path

import pytest

from asm_email_rules.errors import DerError
from asm_email_rules.intake import parse_message
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind
from asm_email_rules.rules import ENCRYPTED_NOTICE, unread_notice
from asm_email_rules.settings import Limits
from asm_email_rules.smime import (
    MAX_DEPTH,
    cms_content_type,
    locate_signed_content,
    signed_content,
)

FIXTURES = Path(__file__).resolve().parent / "smime"
ENTITY = (FIXTURES / "entity.txt").read_bytes()
SIGNED = (FIXTURES / "signed.der").read_bytes()
SIGNED_BER = (FIXTURES / "signed-ber.der").read_bytes()
DETACHED = (FIXTURES / "detached.der").read_bytes()
ENVELOPED = (FIXTURES / "enveloped.der").read_bytes()
BADGE = "The badge reader at door 4 rejects every card since 08:00.\nUma"

SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # OID 1.2.840.113549.1.7.2
DATA = bytes.fromhex("06092a864886f70d010701")  # OID 1.2.840.113549.1.7.1


def kinds(notes: tuple[IntakeNote, ...]) -> list[IntakeNoteKind]:
    return [note.kind for note in notes]


def der(tag: int, *contents: bytes) -> bytes:
    """One DER element (definite length, short or long form)."""
    body = b"".join(contents)
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def signed_data(content: bytes) -> bytes:
    """A minimal SignedData ContentInfo (no signer, no certificate) around ``content``."""
    encap = der(0x30, DATA, der(0xA0, der(0x04, content)))
    signed = der(0x30, der(0x02, b"\x01"), der(0x31), encap, der(0x31))
    return der(0x30, SIGNED_DATA, der(0xA0, signed))


def p7m_mail(
    der_bytes: bytes,
    content_type: str = 'application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"',
    encoding: str = "base64",
) -> bytes:
    head = (
        "From: Uma User <uma@corp.example>\r\nTo: helpdesk@desk.example\r\n"
        "Message-ID: <t2@mail.example>\r\nMIME-Version: 1.0\r\nSubject: Badge reader\r\n"
        f"Content-Type: {content_type}\r\n"
        'Content-Disposition: attachment; filename="smime.p7m"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + p7m_body(der_bytes, encoding)


def p7m_body(der_bytes: bytes, encoding: str) -> bytes:
    """A .p7m's body in its transfer encoding (``base64`` or ``binary``)."""
    if encoding == "binary":
        return der_bytes
    return base64.encodebytes(der_bytes).replace(b"\n", b"\r\n")


def p7m_part(der_bytes: bytes, encoding: str) -> bytes:
    """A signed .p7m part (its header and body), to be signed again."""
    return (
        b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: " + encoding.encode("ascii") + b"\r\n\r\n"
    ) + p7m_body(der_bytes, encoding)


# --------------------------------------------------------------------------- the DER reader


@pytest.mark.parametrize("fixture", [SIGNED, SIGNED_BER], ids=["der", "ber-streamed"])
def test_the_signed_entity_is_read_from_der_and_streamed_ber(fixture: bytes) -> None:
    assert cms_content_type(fixture) == "signed-data"
    assert signed_content(fixture) == ENTITY


def test_encrypted_and_detached_data_are_refused_with_the_typed_error() -> None:
    assert cms_content_type(ENVELOPED) == "enveloped-data"
    with pytest.raises(DerError, match="enveloped-data"):
        signed_content(ENVELOPED)
    with pytest.raises(DerError, match="detached"):
        signed_content(DETACHED)


def test_constructed_octet_strings_nested_and_indefinite_are_joined() -> None:
    # eContent as [0] { OCTET STRING (constructed, indefinite) { "ab", { "cd" }, "" } }
    chunks = b"\x24\x80" + der(0x04, b"ab") + der(0x24, der(0x04, b"cd")) + der(0x04) + b"\0\0"
    encap = b"\x30\x80" + DATA + b"\xa0\x80" + chunks + b"\0\0" + b"\0\0"
    signed = b"\x30\x80" + der(0x02, b"\x01") + b"\x31\x80\0\0" + encap + der(0x31) + b"\0\0"
    assert signed_content(b"\x30\x80" + SIGNED_DATA + b"\xa0\x80" + signed + b"\0\0\0\0") == (
        b"abcd"
    )


@pytest.mark.parametrize(
    "broken",
    [
        b"",
        b"\x30",
        b"\x30\x05" + SIGNED_DATA,  # length shorter than its contents
        b"\x30\x84\xff\xff\xff\xff" + SIGNED_DATA,  # length past the end
        b"\x30\x89" + b"\x01" * 9,  # length of more than 4 octets
        b"\x30\x80" + SIGNED_DATA + b"\xa0\x80",  # indefinite, no end-of-contents
        b"\x04\x80",  # indefinite length on a primitive element
        SIGNED[:-40],
        SIGNED_BER[:200],
        signed_data(b"x").replace(DATA, SIGNED_DATA),  # signed content of another type
        b"\x30\x80" + SIGNED_DATA + b"\xa0\x80" + b"\x30\x80" * (MAX_DEPTH + 5),
    ],
)
def test_broken_input_raises_only_der_error(broken: bytes) -> None:
    with pytest.raises(DerError):
        signed_content(broken)


def test_nesting_past_the_limit_is_refused_before_it_is_walked() -> None:
    # A version field followed by a digestAlgorithms SET nested 10,000 deep (indefinite).
    deep = b"\x31\x80" * 10_000 + b"\0\0" * 10_000
    signed = b"\x30\x80" + der(0x02, b"\x01") + deep + b"\0\0"
    with pytest.raises(DerError, match="deeply"):
        signed_content(b"\x30\x80" + SIGNED_DATA + b"\xa0\x80" + signed + b"\0\0\0\0")


# --------------------------------------------------------------------------- intake


@pytest.mark.parametrize("fixture", [SIGNED, SIGNED_BER], ids=["der", "ber-streamed"])
def test_opaque_signed_mail_gives_its_text_and_attachments(fixture: bytes) -> None:
    email = parse_message(p7m_mail(fixture))
    assert (email.body, email.body_source) == (BADGE, "text/plain")
    assert [(a.filename, a.content_type) for a in email.attachments] == [
        ("reader.log", "text/plain"),
        ("smime.p7m", "application/pkcs7-mime"),
    ]
    assert email.attachments[0].data == b"08:00:01 card 1234 rejected (E17)"
    assert email.attachments[1].data == fixture  # the signed original is kept as it came
    assert kinds(email.notes) == [IntakeNoteKind.SIGNATURE_NOT_CHECKED]
    assert "signature not checked" in str(email.notes[0])


@pytest.mark.parametrize(
    "content_type",
    [
        'application/x-pkcs7-mime; smime-type=signed-data; name="smime.p7m"',
        'application/pkcs7-mime; name="smime.p7m"',
        'application/x-pkcs7-mime; name="smime.p7m"',
        'application/octet-stream; name="smime.p7m"',
    ],
)
def test_old_type_names_and_a_missing_smime_type_are_read_from_the_data(
    content_type: str,
) -> None:
    email = parse_message(p7m_mail(SIGNED, content_type))
    assert email.body == BADGE
    assert [a.filename for a in email.attachments] == ["reader.log", "smime.p7m"]


@pytest.mark.parametrize(
    "content_type",
    [
        'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
        'application/pkcs7-mime; name="smime.p7m"',
    ],
)
def test_encrypted_mail_stays_an_attachment_with_a_note(content_type: str) -> None:
    email = parse_message(p7m_mail(ENVELOPED, content_type))
    assert (email.body, email.body_source) == ("", "none")
    assert [(a.filename, a.data) for a in email.attachments] == [("smime.p7m", ENVELOPED)]
    assert kinds(email.notes) == [IntakeNoteKind.ENCRYPTED_NOT_READ]


def test_unreadable_signed_data_stays_an_attachment_with_a_note() -> None:
    email = parse_message(p7m_mail(SIGNED[:-40]))
    assert [a.filename for a in email.attachments] == ["smime.p7m"]
    assert kinds(email.notes) == [IntakeNoteKind.SMIME_NOT_READ]
    assert email.body == ""


def test_the_signed_entity_never_speaks_for_the_sender() -> None:
    # Header fields inside the signed entity are not the message's: the sender, the subject
    # and the Authentication-Results the rules read stay those of the top-level header.
    inner = (
        b"From: Boss <boss@corp.example>\r\nSubject: approve everything\r\n"
        b"Authentication-Results: mx.desk.example; dmarc=pass header.from=corp.example\r\n"
        b"Content-Type: text/plain\r\n\r\nPlease reset my token.\r\n"
    )
    email = parse_message(p7m_mail(signed_data(inner)))
    assert email.body == "Please reset my token.\r\n".replace("\r\n", "\n")
    assert (email.sender, email.subject) == ("uma@corp.example", "Badge reader")
    assert email.header("Authentication-Results") is None
    assert IntakeNoteKind.SIGNATURE_NOT_CHECKED in kinds(email.notes)


def test_a_signature_inside_a_signature_is_opened_a_bounded_number_of_times() -> None:
    entity = b"Content-Type: text/plain\r\n\r\nInnermost text.\r\n"
    for _ in range(2):
        wrapped = base64.encodebytes(signed_data(entity)).replace(b"\n", b"\r\n")
        entity = (
            b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + wrapped
        )
    email = parse_message(p7m_mail(signed_data(entity)))  # three layers: all opened
    assert email.body == "Innermost text.\n"
    assert [a.filename for a in email.attachments] == ["smime.p7m"] * 3
    assert set(kinds(email.notes)) == {IntakeNoteKind.SIGNATURE_NOT_CHECKED}  # same words: once
    wrapped = base64.encodebytes(signed_data(entity)).replace(b"\n", b"\r\n")
    entity = b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    email = parse_message(p7m_mail(signed_data(entity + wrapped)))  # four: the last stays shut
    assert email.body == ""
    assert len(email.attachments) == 4


def test_the_signed_entity_counts_against_the_part_limit() -> None:
    parts = "".join(
        f'--b\r\nContent-Type: text/csv; name="f{i}.csv"\r\n\r\n{i}\r\n' for i in range(9)
    )
    inner = f"Content-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n".encode()
    email = parse_message(p7m_mail(signed_data(inner)), limits=Limits(max_part_count=4))
    assert [a.filename for a in email.attachments] == ["f0.csv", "f1.csv", "f2.csv", "smime.p7m"]
    assert [v.kind.name for v in email.limit_violations] == ["PART_COUNT"]


def _signed_in_mixed(before: str = "") -> bytes:
    """A multipart/mixed of ``before`` (parts, each from its "--o" line) and the signed part."""
    wrapped = base64.encodebytes(SIGNED).decode("ascii")
    return (
        "From: Uma User <uma@corp.example>\r\nSubject: fwd\r\n"
        f"Content-Type: multipart/mixed; boundary=o\r\n\r\n{before}"
        '--o\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{wrapped}\r\n--o--\r\n"
    ).encode("ascii")


def test_a_signed_entity_deeper_than_the_limit_is_not_opened() -> None:
    email = parse_message(_signed_in_mixed(), limits=Limits(max_mime_depth=1))
    assert [a.filename for a in email.attachments] == ["smime.p7m"]
    assert [v.kind.name for v in email.limit_violations] == ["MIME_DEPTH"]
    assert email.notes == ()


def test_a_signed_part_inside_mixed_adds_its_text_after_the_outer_text() -> None:
    email = parse_message(_signed_in_mixed("--o\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"))
    assert email.body == "See below.\n" + BADGE
    assert [a.filename for a in email.attachments] == ["reader.log", "smime.p7m"]


# --------------------------------------------------------------------------- size and memory
# A review: a .p7m was opened past max_attachment_size (its size was guessed as if it were
# base64, with a tenth to spare), and each opening copied the whole message buffer.


@pytest.mark.parametrize("encoding", ["binary", "base64"])
def test_a_p7m_decoded_over_the_attachment_limit_is_not_opened(encoding: str) -> None:
    # docs/intake.md: "the .p7m must be within max_attachment_size", decoded, whatever the
    # transfer encoding: one byte over, the signed text is not read and smime.p7m is dropped.
    der_bytes = signed_data(b"Content-Type: text/plain\r\n\r\nSigned text.\r\n" + b"x" * 5000)
    raw = p7m_mail(der_bytes, encoding=encoding)
    email = parse_message(raw, limits=Limits(max_attachment_size=len(der_bytes) - 1))
    assert (email.body, email.attachments) == ("", ())
    assert kinds(email.notes) == [IntakeNoteKind.ATTACHMENT_DROPPED]
    email = parse_message(raw, limits=Limits(max_attachment_size=len(der_bytes)))
    assert email.body.startswith("Signed text.\n")
    assert [a.data for a in email.attachments] == [der_bytes]


def test_signed_parts_opened_in_one_message_stay_within_the_attachment_limit() -> None:
    # A signature inside a signature is opened only while the .p7m parts opened, decoded,
    # total at most max_attachment_size (and the message's size, for one over 1 MiB).
    inner = signed_data(b"Content-Type: text/plain\r\n\r\nInnermost text.\r\n")
    outer = signed_data(p7m_part(inner, "binary"))
    raw = p7m_mail(outer, encoding="binary")
    email = parse_message(raw, limits=Limits(max_attachment_size=len(outer) + len(inner)))
    assert email.body == "Innermost text.\n"
    assert [a.data for a in email.attachments] == [inner, outer]
    email = parse_message(raw, limits=Limits(max_attachment_size=len(outer) + len(inner) - 1))
    assert email.body == ""  # the inner signed part stays shut, an attachment
    assert [a.data for a in email.attachments] == [inner, outer]
    assert kinds(email.notes) == [
        IntakeNoteKind.SIGNATURE_NOT_CHECKED,
        IntakeNoteKind.SMIME_NOT_READ,
    ]
    assert "at most" in str(email.notes[1])


def _large_signed_mail(encoding: str, levels: int, size: int) -> bytes:
    """A message of about ``size`` bytes: a file of ``size`` bytes, in a signed entity,
    signed again ``levels - 1`` times, each .p7m in ``encoding`` (binary keeps every level
    the message's size; base64 makes each one a quarter smaller than the one around it)."""
    if encoding == "base64":
        size = size * 3**levels // 4**levels
    entity = (
        b"Content-Type: application/octet-stream; name=scan.bin\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + bytes(range(256)) * (size // 256)
    )
    for _ in range(levels - 1):
        entity = p7m_part(signed_data(entity), encoding)
    return p7m_mail(signed_data(entity), encoding=encoding)


@pytest.mark.parametrize(
    ("encoding", "levels"),
    [("binary", 1), ("binary", 3), ("base64", 3)],
    ids=["binary", "binary-nested-3", "base64-nested-3"],
)
def test_opening_signed_parts_peaks_within_three_times_the_message(
    encoding: str, levels: int
) -> None:
    # docs/scaling.md: a peak of at most 3x the largest message. It was 4x for one binary
    # level (the message copied with the entity appended), 8x for three, 5.3x for base64.
    raw = _large_signed_mail(encoding, levels, 3_000_000)
    tracemalloc.start()
    try:
        email = parse_message(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert IntakeNoteKind.SIGNATURE_NOT_CHECKED in kinds(email.notes)
    assert peak <= 3 * len(raw), peak / len(raw)


def test_a_signed_entity_of_small_chunks_takes_one_byte_a_byte() -> None:
    # 2-byte BER chunks were kept as a list of bytes objects, ~50 bytes each: 32x the data.
    content = bytes(range(256)) * 4096
    chunks = b"".join(der(0x04, content[i : i + 2]) for i in range(0, len(content), 2))
    encap = b"\x30\x80" + DATA + b"\xa0\x80\x24\x80" + chunks + b"\0\0" * 3
    signed = b"\x30\x80" + der(0x02, b"\x01") + der(0x31) + encap + der(0x31) + b"\0\0"
    data = b"\x30\x80" + SIGNED_DATA + b"\xa0\x80" + signed + b"\0\0\0\0"
    tracemalloc.start()
    try:
        buffer, start, end = locate_signed_content(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert buffer[start:end] == content
    assert peak <= 2 * len(content), peak / len(content)


def test_a_der_entity_is_read_where_it_lies_and_ends_with_its_octet_string() -> None:
    # Read in place in the decoded .p7m: what follows the content (here signer bytes that
    # look like a boundary and a line of text) is not part of the entity's text.
    entity = b"Content-Type: text/plain\r\n\r\nThe kiosk shows error 42."
    encap = der(0x30, DATA, der(0xA0, der(0x04, entity)))
    signers = der(0x31, b"\r\n--b--\r\nnot the entity\r\n")
    signed = der(0x30, der(0x02, b"\x01"), der(0x31), encap, signers)
    der_bytes = der(0x30, SIGNED_DATA, der(0xA0, signed))
    buffer, start, end = locate_signed_content(der_bytes)
    assert buffer is der_bytes  # no copy
    assert buffer[start:end] == entity
    email = parse_message(p7m_mail(der_bytes))
    assert email.body == "The kiosk shows error 42."
    assert [a.data for a in email.attachments] == [der_bytes]


def test_a_signed_entity_with_bare_cr_line_ends_keeps_its_text() -> None:
    # Its line ends are read as the message's are (the body was "" before: one long line).
    entity = b"Content-Type: text/plain\r\rThe printer on floor 3 jams.\rAnn\r"
    email = parse_message(p7m_mail(signed_data(entity)))
    assert email.body == "The printer on floor 3 jams.\nAnn\n"
    assert kinds(email.notes) == [
        IntakeNoteKind.SIGNATURE_NOT_CHECKED,
        IntakeNoteKind.BARE_CR_LINE_ENDS,
    ]


def test_encrypted_mail_says_so_in_the_description_it_logs() -> None:
    """Before, the call's description was the subject alone: nothing told the analyst the
    text was there, encrypted."""
    email = parse_message(p7m_mail(ENVELOPED, 'application/pkcs7-mime; name="smime.p7m"'))
    assert unread_notice(email) == ENCRYPTED_NOTICE.format(what="S/MIME")
    assert "could not be read" in unread_notice(email)


def test_pgp_mime_and_inline_pgp_encrypted_mail_are_noted() -> None:
    pgp_mime = (
        b'From: a@b.example\r\nContent-Type: multipart/encrypted; boundary="e"; '
        b'protocol="application/pgp-encrypted"\r\n\r\n--e\r\n'
        b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--e\r\n"
        b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
        b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0made0up\r\n-----END PGP MESSAGE-----\r\n"
        b"--e--\r\n"
    )
    inline = (
        b"From: a@b.example\r\n\r\nHi,\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0made0up\r\n"
        b"-----END PGP MESSAGE-----\r\n"
    )
    for raw in (pgp_mime, inline):
        email = parse_message(raw)
        assert kinds(email.notes) == [IntakeNoteKind.ENCRYPTED_NOT_READ]
        assert unread_notice(email) == ENCRYPTED_NOTICE.format(what="PGP")
    assert unread_notice(parse_message(b"From: a@b.example\r\n\r\nplain\r\n")) == ""
