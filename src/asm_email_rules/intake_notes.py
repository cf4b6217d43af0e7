"""Typed intake notes: what intake had to repair in a message, as a kind and a readable detail.

Modelled on the standard library's ``email.errors`` defect classes: a program (or a test)
tells notes apart by their :class:`IntakeNoteKind`; a person reads ``str(note)``, which is the
detail, e.g. ``part 1 (text/plain): charset 'x-unknown' unknown; decoded as utf-8``. A note
never means the message is refused: intake repaired or dropped something and carried on.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["IntakeNote", "IntakeNoteKind"]


class IntakeNoteKind(enum.Enum):
    """What intake repaired. Names follow ``email.errors`` where the stdlib has the defect."""

    # text and charsets (RFC 2045 section 4 charset parameter, RFC 2047, RFC 6532)
    UNKNOWN_CHARSET = "unknown_charset"
    """The declared charset is not known; the bytes were decoded with a fallback codec."""
    UNDECODABLE_BYTES = "undecodable_bytes"
    """Bytes invalid in the declared charset; decoded with a fallback codec."""
    UNDECLARED_8BIT_TEXT = "undeclared_8bit_text"
    """8-bit text with no charset that is not UTF-8; decoded as windows-1252 or latin-1."""
    NON_UTF8_HEADER = "non_utf8_header"
    """Raw 8-bit header bytes that are not UTF-8 (RFC 6532); decoded as a legacy charset."""
    BROKEN_ENCODED_WORD = "broken_encoded_word"
    """An RFC 2047 encoded-word whose base64 is broken; kept as text."""
    SURROGATES_REPLACED = "surrogates_replaced"
    """A codec (e.g. utf-7) gave lone surrogates, which are not text: each became U+FFFD."""
    CHARSET_DETECTED = "charset_detected"
    """The declared charset was missing or wrong; the text was read in the charset detected."""
    BARE_CR_LINE_ENDS = "bare_cr_line_ends"
    """Lines ended by a bare CR (not CRLF, RFC 5322 section 2.3): each read as a line break."""
    BYTE_ORDER_MARK = "byte_order_mark"
    """The message starts with a UTF-8 byte order mark (not part of RFC 5322); dropped."""
    # header fields (RFC 5322 section 3.6)
    DUPLICATE_HEADER = "duplicate_header"
    """A field that may occur once (From, Subject, Message-ID, Date) occurs again; first used."""
    MISSING_FROM = "missing_from"
    """No From field: the sender is unknown."""
    MULTIPLE_FROM_ADDRESSES = "multiple_from_addresses"
    """From lists several mailboxes: the sender is unknown."""
    INVALID_FROM = "invalid_from"
    """From has no valid mailbox (e.g. the CVE-2023-27043 shape): the sender is unknown."""
    FROM_WITHOUT_ADDRESS = "from_without_address"
    """From holds a display name but no address: ``sender_name`` kept, the sender is unknown."""
    LENIENT_ADDRESS = "lenient_address"
    """A display name with an unquoted comma (``Joe Foo, PhD <joe@x>``) read as one name."""
    INVALID_ADDRESS = "invalid_address"
    """Some addresses of an address field could not be parsed and were ignored."""
    TOO_MANY_ADDRESSES = "too_many_addresses"
    """An address field lists more addresses than intake keeps; the rest were ignored."""
    LENIENT_DATE = "lenient_date"
    """Date is not RFC 5322 (section 3.3) but was read leniently."""
    INVALID_DATE = "invalid_date"
    """Date could not be read at all: the date is unknown."""
    # MIME structure and transfer encodings (RFC 2045, RFC 2046)
    NO_BOUNDARY_IN_MULTIPART = "no_boundary_in_multipart"
    """A multipart part without a boundary parameter, read as text/plain."""
    INVALID_CONTENT_TYPE = "invalid_content_type"
    """A syntactically invalid Content-Type (RFC 2045 section 5.2): read leniently (a
    ``type/subtype`` whose parameters lack their ``;``) or as text/plain, keeping the charset
    or boundary it names."""
    INVALID_CONTENT_DISPOSITION = "invalid_content_disposition"
    """A Content-Disposition whose parameters lack their ``;`` (``attachment
    filename="a.pdf"``, RFC 2183 section 2): read leniently, the file name kept."""
    INVALID_BASE64_CHARACTERS = "invalid_base64_characters"
    """Characters outside the base64 alphabet in a base64 body; ignored."""
    INVALID_BASE64_LENGTH = "invalid_base64_length"
    """A base64 body that does not decode as is; repaired by dropping the trailing bits."""
    NOT_BASE64 = "not_base64"
    """A body declared base64 that is written as plain text (words); kept as written."""
    NOT_UUENCODED = "not_uuencoded"
    """A body declared ``x-uuencode`` (or ``uuencode``, ``x-uue``) that is not; kept as is."""
    UUENCODED_FILE = "uuencoded_file"
    """A uuencoded file (``begin 644 name`` ... ``end``) in a text body taken out of the text
    and kept as an attachment."""
    UNKNOWN_TRANSFER_ENCODING = "unknown_transfer_encoding"
    """A Content-Transfer-Encoding intake does not know; the body kept as is."""
    TEXT_PART_WITHOUT_TEXT = "text_part_without_text"
    """A text part with no text (blank, image placeholders, an "HTML message" notice) passed
    over: another part with text became the body."""
    SIGNATURE_NOT_CHECKED = "signature_not_checked"
    """An opaque-signed S/MIME part (RFC 8551 section 3.5.2) opened: its content read as part
    of the message, its signature not checked; nothing about it counts as authenticated."""
    ENCRYPTED_NOT_READ = "encrypted_not_read"
    """An S/MIME encrypted part (enveloped-data) kept as an attachment; nothing decrypted."""
    SMIME_NOT_READ = "smime_not_read"
    """S/MIME signed data the bounded reader refused (broken, detached, too deep): kept as an
    attachment only."""
    TNEF_OPENED = "tnef_opened"
    """Files taken out of an Outlook ``winmail.dat`` (TNEF) and kept beside it as attachments."""
    TNEF_NOT_READ = "tnef_not_read"
    """A ``winmail.dat`` (TNEF) the bounded reader refused: kept as it came, nothing taken out."""
    BODY_FROM_ATTACHMENT = "body_from_attachment"
    """The message had no text of its own: the body is the text of an attached or wrapped
    part (a forwarded message, a text file, RTF, text/enriched, an invitation, a winmail.dat),
    which stays an attachment too."""
    HTML_BODY_CUT = "html_body_cut"
    """An HTML-only body too long to convert whole: only its start became the text body."""
    ATTACHMENT_DROPPED = "attachment_dropped"
    """An attachment over the size limit was dropped (a limit violation is recorded too)."""
    ATTACHMENT_RENAMED = "attachment_renamed"
    """An attachment's name held directories, controls, bidi overrides or a device name, or
    was too long: it was made one plain file name (``intake.safe_filename``)."""


@attrs.frozen
class IntakeNote:
    """One repair intake made: its kind and a detail naming the field, part or value.

    ``str(note)`` is the detail, as explain and the logs show it.
    """

    kind: IntakeNoteKind
    detail: str

    def __str__(self) -> str:
        return self.detail
