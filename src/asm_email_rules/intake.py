"""Raw RFC 5322 bytes -> :class:`~asm_email_rules.model.InboundEmail`, linear and never crashing.

The jobs of intake, one module each:

- :mod:`~asm_email_rules.mime_tree` splits the MIME tree in one linear pass (``bytes.find`` on
  boundary lines, no recursion) so the structural limits are checked before anything expensive
  runs, and undoes transfer encodings;
- :mod:`~asm_email_rules.header_values` decodes header values (charsets, RFC 2047, RFC 2231
  parameters, msg-ids, dates);
- :mod:`~asm_email_rules.addresses` reads address fields, one bounded registry call per address;
- this module picks the body and attachments from the leaves, decodes the identity and thread
  fields into a :class:`HeaderFields` value, and assembles the :class:`InboundEmail`.

Every repair is an :class:`~asm_email_rules.intake_notes.IntakeNote`; every limit crossed is a
:class:`~asm_email_rules.model.LimitViolation`.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import datetime

import attrs

from asm_email_rules.addresses import (
    parse_address,
    parse_address_list,
    plain_display_name,
    return_path_address,
    visible_name,
)
from asm_email_rules.charsets import Hints, codec_name, decode_text, html_meta_charset
from asm_email_rules.container_text import calendar_text, enriched_text, rtf_text
from asm_email_rules.errors import MessageParseError, TnefError, require_type
from asm_email_rules.flowed import unflow
from asm_email_rules.header_values import (
    clean_text,
    decode_header_text,
    header_bytes_to_str,
    parse_date,
    parse_msg_ids,
)
from asm_email_rules.html_text import html_to_text
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind
from asm_email_rules.ledger_key import earlier_ledger_sha256s, ledger_sha256
from asm_email_rules.mime_tree import (
    MIME_HEADERS,
    MimePart,
    MimeReader,
    cut_lines,
    has_line_over,
    longest_line,
)
from asm_email_rules.mime_tree import content_type as read_content_type
from asm_email_rules.model import Attachment, InboundEmail, LimitKind, NamedAddress
from asm_email_rules.settings import Limits
from asm_email_rules.tnef import MAX_FILES, TnefContents, decompress_rtf, read_tnef
from asm_email_rules.uuencode import split_blocks

__all__ = [
    "HeaderFields",
    "decode_header_text",
    "parse_address",
    "parse_address_list",
    "parse_message",
    "parse_msg_ids",
]

_LOG = logging.getLogger(__name__)

_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The charset, an optional RFC 2231 language after "*", then "?B?" or "?Q?": no two quantifiers
# over the same bytes, so a "=?" followed by a long run that never closes is read once.
_WORD_CHARSET = re.compile(rb"=\?([^?*\s]{1,64})(?:\*[^?\s]{0,64})?\?[bBqQ]\?")
_MAX_HTML_TEXT = 1_000_000  # characters of HTML converted to the text body
_MAX_FORWARDS = 5  # forwarded messages read inside one another for a body that has no text
_FORWARD_MARKER = "---------- Forwarded message ----------"
_PGP_MESSAGE = "-----BEGIN PGP MESSAGE-----"  # RFC 4880 section 6.2: an armored encrypted message
# its Armor Header Line: a line of its own (a sentence naming it, or a quoted "> " copy, is
# not an encrypted message); the literal anchors each try, so the search is linear
_PGP_MESSAGE_LINE = re.compile(r"^-----BEGIN PGP MESSAGE-----[ \t\r]*$", re.MULTILINE)
_PGP_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"  # RFC 4880 section 7: cleartext signature
_PGP_SIGNATURE = "\n-----BEGIN PGP SIGNATURE-----"
_PGP_SIGNATURE_END = "-----END PGP SIGNATURE-----"
_DASH_ESCAPED = re.compile(r"^- ", re.MULTILINE)
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_TNEF_NAMES = ("winmail.dat", "win.dat")
#: header fields RFC 5322 section 3.6 allows once; a repeat is noted and the first one used
_SINGLE_FIELDS = ("from", "subject", "message-id", "date")
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
}


_DIRECTORY_SEPARATORS = re.compile(r"[\\/]")
_RESERVED_FILE_STEMS = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{device}{digit}" for device in ("com", "lpt") for digit in "0123456789\u00b9\u00b2\u00b3"}
)
"""Windows device names: a file called ``CON`` or ``aux.txt`` opens the device, not a file."""
_UNSEEN = frozenset({"Cc", "Cs", "Zl", "Zp"})
"""Unicode categories a file name loses: controls, lone surrogates, line and paragraph
separators. Spaces of every script (no-break, ideographic) and the joiners of emoji stay."""
_MAX_FILENAME_BYTES = 255
"""The longest file name (UTF-8 bytes) most file systems take."""


def safe_filename(name: str) -> str:
    """``name`` as one plain file name a host can store an object under, or "" for none.

    Only the part after the last ``/`` or ``\\`` is kept (``../../etc/passwd`` is
    ``passwd``); control characters and bidirectional overrides are removed (so
    ``invoice<RLO>fdp.exe`` cannot show as ``invoiceexe.pdf``; no-break and ideographic
    spaces and the joiners of emoji stay); trailing dots and spaces,
    which Windows drops, go; ``.`` and ``..`` are no name; a Windows device name (``CON``,
    ``aux.txt``) gets a ``_`` in front; a name over 255 UTF-8 bytes is cut before its
    extension. One linear pass each.
    """
    base = _DIRECTORY_SEPARATORS.split(name)[-1]
    base = "".join(ch for ch in visible_name(base) if unicodedata.category(ch) not in _UNSEEN)
    base = base.strip().rstrip(". ")
    if base in ("", ".", ".."):
        return ""
    if base.partition(".")[0].rstrip(" ").lower() in _RESERVED_FILE_STEMS:
        base = "_" + base
    encoded = base.encode("utf-8")
    if len(encoded) > _MAX_FILENAME_BYTES:
        stem, dot, extension = base.rpartition(".")
        tail = f".{extension}" if dot and stem and len(extension.encode("utf-8")) <= 16 else ""
        room = _MAX_FILENAME_BYTES - len(tail.encode("utf-8"))
        head = (stem if tail else base).encode("utf-8")[:room]
        base = head.decode("utf-8", "ignore").rstrip(". ") + tail
    return base


@attrs.frozen
class HeaderFields:
    """The top-level header section, decoded: every field, and the ones the rules read.

    ``headers`` keeps each field as a decoded ``(name, value)`` pair in message order; the
    address tuples hold addr-specs; ``sender`` is ``""`` unless From has exactly one valid
    mailbox; ``sender_name`` is that mailbox's display name, or the name of a From that has a
    name and no address; ``return_path`` is ``None`` without the field and ``""`` for the null
    path ``<>``. The ``*_mailboxes`` fields keep the display names (see ``InboundEmail``).
    """

    headers: tuple[tuple[str, str], ...]
    sender: str
    sender_name: str
    from_mailboxes: tuple[NamedAddress, ...]
    sender_mailbox: NamedAddress | None
    reply_to_mailboxes: tuple[NamedAddress, ...]
    reply_to: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    return_path: str | None
    subject: str
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None


@attrs.frozen
class _Contents:
    """What the leaves of the MIME tree give: the text body, the HTML, and the attachments."""

    body: str = ""
    body_html: str | None = None
    body_source: str = "none"
    attachments: tuple[Attachment, ...] = ()


_UU_TYPES = {"txt": "text/plain", "log": "text/plain", "csv": "text/csv"} | {
    extension.lstrip("."): content_type
    for content_type, extension in _EXTENSIONS.items()
    if content_type.startswith(("application/", "image/"))
}
"""Content types of uuencoded files by their name's extension (else octet-stream)."""
_UTF8_BOM = b"\xef\xbb\xbf"
_ENCODED = ("base64", "quoted-printable")
_WIDE_CHARSETS = ("utf-16", "utf16", "utf-32", "utf32", "ucs-2", "ucs2", "ucs-4", "ucs4")


def _is_wide(charset: str | None) -> bool:
    """True for a UTF-16 or UTF-32 label, or a label read as one (``unicode``, ``ucs-2``)."""
    if (charset or "").strip().lower().startswith(_WIDE_CHARSETS):
        return True
    codec = codec_name(charset)
    return codec is not None and codec.startswith(("utf-16", "utf-32"))


def _lf_lines(data: bytes, charset: str | None) -> bytes:
    """CRLF line ends as LF, on the bytes: one copy of the bytes instead of two of the decoded
    text (a text of emoji takes four bytes a character). Safe for every charset but UTF-16
    and UTF-32, in which no other character holds the bytes CR or LF; those are left as they
    are (the text's line ends are normalised after decoding anyway)."""
    if b"\r\n" not in data or _is_wide(charset):
        return data
    return data.replace(b"\r\n", b"\n")


def _cut_text(prefix: bytes, charset: str | None) -> bytes:
    """``prefix`` (the start of a text part) cut where no character is split: after its last
    line end; for UTF-16/32 at a multiple of 4 bytes; for one long line in UTF-8 before a
    continuation byte. Linear, one copy at most."""
    if _is_wide(charset):
        return prefix[: len(prefix) - len(prefix) % 4]
    end = prefix.rfind(b"\n")
    if end >= 0:
        return prefix[: end + 1]
    lead = len(prefix) - 1  # find the last lead byte among the final four
    while lead > 0 and len(prefix) - lead < 4 and 0x80 <= prefix[lead] < 0xC0:
        lead -= 1
    first = prefix[lead] if prefix else 0
    needs = 4 if first >= 0xF0 else 3 if first >= 0xE0 else 2 if first >= 0xC0 else 1
    return prefix if lead + needs <= len(prefix) else prefix[:lead]


class _Intake(MimeReader):
    """One parse: the MIME reader's state plus picking the body and decoding the fields."""

    received: bytes  # the bytes as received (``raw`` may drop a leading byte order mark)
    body_budget: int  # bytes of body text still to decode (limits.max_body_bytes in all)
    overflowed: list[Attachment]  # body parts over the cap, kept whole as attachments
    header_charsets: list[str]  # charsets of the header's encoded-words (hints for bodies)
    known_sha256: str | None = None  # the received bytes' hash, when the caller has it
    numbers: dict[int, int]  # id(leaf) -> its number (1-based, document order) in notes
    hints: _LazyHints  # the charsets the message declares, for text without a good one
    texts: dict[int, str]  # id(leaf) -> decoded text of an inline text leaf, decoded once
    converted: dict[int, str]  # id(leaf) -> text of an inline HTML leaf, converted once
    uuencoded: dict[int, list[Attachment]]  # id(leaf) -> files uuencoded in its text
    tnef_texts: dict[int, TnefContents]  # id(winmail.dat attachment) -> what it holds
    forward_depth: int = 0  # forwarded messages this one is inside (0: the message itself)

    def run(self) -> InboundEmail:
        """Parse the whole message."""
        self.received = self.raw  # size and hash are of the bytes as received
        self.header_charsets = []
        if self.raw.startswith(_UTF8_BOM):  # saved by an editor: the headers start after it
            self.raw = self.raw[len(_UTF8_BOM) :]
            self.note(IntakeNoteKind.BYTE_ORDER_MARK, "a UTF-8 byte order mark before the header")
        self.raw = self.normalise_line_ends(self.raw)
        headers_only = self.check_message_limits()
        headers, body_start = self.read_headers(0, top=True)
        root = self.new_part(headers, body_start, 0, None, _mime_values(headers))
        contents = _Contents()
        self.body_budget = self.limits.max_body_bytes
        self.overflowed = []
        if not headers_only:
            if root.boundary is not None:
                self.scan(root)
            root = self.open_signed(root)
            self.check_tree_limits()
        fields = self.decode_fields(headers, root)  # after the scan: its parts' charsets
        if not headers_only:
            contents = self.contents(root)
        if self.overflowed:  # body parts over the cap, kept whole beside the others
            attachments = contents.attachments + tuple(self.overflowed)
            contents = attrs.evolve(contents, attachments=attachments)
        return self.build(fields, contents)

    def check_message_limits(self) -> bool:
        """Check the total size and the longest line; True when only the header is to be read."""
        raw = self.raw
        limits = self.limits
        headers_only = False
        if len(raw) > limits.max_total_size:
            headers_only = True
            self.violate(
                LimitKind.TOTAL_SIZE,
                limits.max_total_size,
                len(raw),
                "message over the size limit: headers kept, body and attachments dropped",
            )
        if has_line_over(raw, limits.max_line_length):
            self.cut_at = limits.max_line_length
            self.violate(
                LimitKind.LINE_LENGTH,
                limits.max_line_length,
                longest_line(raw),  # the figure for the note: counted only for a message over
                f"header values and text lines truncated to {limits.max_line_length}",
            )
        return headers_only

    def check_tree_limits(self) -> None:
        """Record the MIME depth and part count violations the scan found."""
        limits = self.limits
        if self.max_depth > limits.max_mime_depth:
            self.violate(
                LimitKind.MIME_DEPTH,
                limits.max_mime_depth,
                self.max_depth,
                f"parts nested deeper than {limits.max_mime_depth} ignored (not read further)",
            )
        if self.part_count > limits.max_part_count:
            self.violate(
                LimitKind.PART_COUNT,
                limits.max_part_count,
                self.part_count,
                f"only the first {limits.max_part_count} parts kept; the rest not read",
            )

    # -- body and attachments -------------------------------------------------------------

    def contents(self, root: MimePart) -> _Contents:
        """Body text, HTML, body source and attachments from the kept leaves.

        The body is every inline text part that a mail client shows, in order: Apple Mail's
        "text, inline image, more text" gives both texts (the image stays an attachment).
        Inside ``multipart/alternative`` only one alternative counts for the text body (the
        first one with plain text, else the first with HTML) and one for ``body_html`` (the
        last one with HTML, RFC 2046 section 5.1.4: the last is the richest).

        A part with no text (:func:`has_text`: blank, image placeholders only, or only a
        notice that the mail is HTML) is not "plain text": the text body is the plain parts
        when one of them has text, else the HTML parts when their text is not empty, else
        whatever plain (then HTML) text there is. An inline text part passed over for having
        no text is not attached: its text is quoted in the ``TEXT_PART_WITHOUT_TEXT`` note.
        """
        plain: list[str] = []
        html_body: list[MimePart] = []
        html_view: list[str] = []
        attachments: list[Attachment] = []
        leaves = list(self.leaves(root)) if root.boundary is not None else [root]
        self.numbers = {id(part): number for number, part in enumerate(leaves, start=1)}
        self.hints = _LazyHints(leaves, self.header_charsets)
        self.texts = {}
        self.converted = {}
        self.uuencoded = {}
        self.tnef_texts = {}
        wrapped: list[tuple[MimePart, Attachment]] = []  # attachments that may hold the text
        for part, in_plain, in_html in self.leaf_views(root):
            ctype = part.ctype
            disposition = part.disposition
            filename = self.filename(part)
            number = self.numbers[id(part)]
            what = f"part {number} ({ctype})"
            if self.is_inline_text(part):
                if in_plain or in_html:
                    text = self.inline_text(part)
                    if ctype == "text/plain":
                        if in_plain:
                            plain.append(text)
                            attachments.extend(self.uuencoded.get(id(part), ()))
                            continue
                    else:
                        if in_plain:
                            html_body.append(part)
                        if in_html:
                            html_view.append(text)
                        continue
                elif id(part) in self.texts:  # an alternative passed over for having no text
                    attachments.extend(self.uuencoded.get(id(part), ()))
                    continue
            if ctype.startswith("multipart/"):
                continue
            if ctype == "application/pgp-encrypted":  # RFC 3156 section 4: the control part
                self.note(
                    IntakeNoteKind.ENCRYPTED_NOT_READ,
                    f"{what}: PGP/MIME encrypted; kept as an attachment, not decrypted",
                )
            attachment = self.attachment(part, number, filename, disposition, what)
            if attachment is not None:
                attachments.append(attachment)
                wrapped.append((part, attachment))
                if _is_tnef(part, attachment):
                    attachments.extend(self.open_tnef(attachment, what))
        html = "\n".join(html_view) if html_view else None
        chosen = self.chosen_body(plain, html_body, html, tuple(attachments))
        if has_text(chosen.body) or not wrapped:
            return chosen
        taken = self.wrapped_body(_outside_reports(self.leaves_with_parents(root), wrapped))
        if taken is None:
            return chosen
        return attrs.evolve(chosen, body=taken[0], body_source=taken[1])

    def chosen_body(
        self,
        plain: list[str],
        html_body: list[MimePart],
        html: str | None,
        found: tuple[Attachment, ...],
    ) -> _Contents:
        """The body from the inline text parts (see :meth:`contents`)."""
        if any(has_text(text) for text in plain):
            shown = [text for text in plain if _visible(text)]  # blank parts add nothing
            return _Contents(_joined(shown), html, "text/plain", found)
        html_text = self.html_body_text(html_body) if html_body else ""
        if html_body and (has_text(html_text) or not plain):
            if plain:
                self.note_passed_over("text/plain", "text/html", plain)
            return _Contents(html_text, html, "text/html", found)
        if plain:
            return _Contents(_joined(plain), html, "text/plain", found)
        return _Contents(body_html=html, attachments=found)

    def is_inline_text(self, part: MimePart) -> bool:
        """A text/plain or text/html leaf shown as text: not an attachment, no filename."""
        return (
            part.ctype in ("text/plain", "text/html")
            and part.disposition != "attachment"
            and not self.filename(part)
        )

    def holds_text(self, part: MimePart) -> tuple[bool, bool]:
        """Whether a part or its subtree holds (inline plain text, inline HTML); iterative."""
        plain = html = False
        stack = [part]
        while stack and not (plain and html):
            node = stack.pop()
            if node.boundary is not None:
                stack.extend(node.children)
            elif self.is_inline_text(node):
                plain = plain or node.ctype == "text/plain"
                html = html or node.ctype == "text/html"
        return plain, html

    def leaf_views(self, root: MimePart) -> Iterator[tuple[MimePart, bool, bool]]:
        """Kept leaves in document order, each with (in the text view, in the HTML view).

        One iterative walk (no recursion); below a ``multipart/alternative`` each view takes
        one child: the text view the one :meth:`text_alternative` picks, the HTML view the
        last holding HTML. A generator: the caller reads each leaf before the walk goes on,
        so text parts are decoded in document order (the body budget is spent in that order).
        """
        walk: list[tuple[MimePart, bool, bool]] = [(root, True, True)]
        while walk:
            part, in_plain, in_html = walk.pop()
            if part.boundary is None:
                yield part, in_plain, in_html
                continue
            children = part.children
            if part.ctype == "multipart/alternative" and children and (in_plain or in_html):
                held = [self.holds_text(child) for child in children]
                plain_pick = self.text_alternative(children, held) if in_plain else None
                html_pick = max((k for k, h in enumerate(held) if h[1]), default=None)
                walk.extend(
                    (children[k], in_plain and k == plain_pick, in_html and k == html_pick)
                    for k in range(len(children) - 1, -1, -1)
                )
            else:
                walk.extend((child, in_plain, in_html) for child in reversed(children))

    def text_alternative(
        self, children: list[MimePart], held: list[tuple[bool, bool]]
    ) -> int | None:
        """The alternative the text body reads: the first whose plain text has text, else the
        first whose HTML has text (:func:`has_text`), else, when none has any, the first
        holding plain text, else the first holding HTML (intake.md: "the first with plain
        text, else the first with HTML")."""
        with_plain = [k for k, (plain, _) in enumerate(held) if plain]
        with_html = [k for k, (_, html) in enumerate(held) if html]
        first = with_plain[0] if with_plain else with_html[0] if with_html else None
        for candidates, ctype in ((with_plain, "text/plain"), (with_html, "text/html")):
            for k in candidates:
                if any(has_text(text) for text in self.subtree_texts(children[k], ctype)):
                    if k != first and first is not None:
                        skipped = "text/plain" if with_plain else "text/html"
                        passed = self.subtree_texts(children[first], skipped)
                        self.note_passed_over(skipped, ctype, passed)
                    return k
        return first

    def subtree_texts(self, part: MimePart, ctype: str) -> Iterator[str]:
        """The texts of the inline ``ctype`` leaves of ``part`` (or of ``part`` itself), in
        order (an HTML leaf's converted), each decoded when it is reached."""
        stack = [part]
        while stack:
            node = stack.pop()
            if node.boundary is not None:
                stack.extend(reversed(node.children))
            elif node.ctype == ctype and self.is_inline_text(node):
                yield self.html_converted(node) if ctype == "text/html" else self.inline_text(node)

    def note_passed_over(self, skipped: str, used: str, texts: Iterable[str]) -> None:
        """Record that a text part without text was passed over for one with text, quoting
        what it said (``texts``, its white space collapsed, at most ``_MAX_QUOTED``
        characters: a notice is never cut), so that no words are dropped without a trace."""
        said = " ".join(" ".join(text.translate(_INVISIBLE_AS_SPACE).split()) for text in texts)
        said = said.strip()
        if len(said) > _MAX_QUOTED:
            said = said[:_MAX_QUOTED] + "..."
        self.note(
            IntakeNoteKind.TEXT_PART_WITHOUT_TEXT,
            f"a {skipped} part has no text ({f'only {said!r}' if said else 'blank'}); "
            f"the {used} part read as the body",
        )

    def inline_text(self, part: MimePart) -> str:
        """The decoded text of an inline text leaf, decoded once: the check for text in
        ``multipart/alternative`` and the body read the same string. A plain text has its
        uuencoded files taken out (:meth:`take_uuencoded`)."""
        text = self.texts.get(id(part))
        if text is None:
            what = f"part {self.numbers[id(part)]} ({part.ctype})"
            text = self.text_of(part, what, self.hints)
            if part.ctype == "text/plain" and "begin" in text:
                text = self.take_uuencoded(part, text, what)
            if (
                part.ctype == "text/plain"
                and _PGP_MESSAGE in text
                and _PGP_MESSAGE_LINE.search(text) is not None
            ):
                self.note(
                    IntakeNoteKind.ENCRYPTED_NOT_READ,
                    f"{what}: an inline PGP encrypted message; kept as written, not decrypted",
                )
            if part.ctype == "text/plain" and _PGP_SIGNED in text:
                text, blocks = _unarmored(text)
                if blocks:
                    self.note(
                        IntakeNoteKind.SIGNATURE_NOT_CHECKED,
                        f"{what}: inline PGP signed text ({blocks} block(s)) read without its "
                        "armor lines and signature; the signature not checked "
                        "(not treated as authenticated)",
                    )
            self.texts[id(part)] = text
        return text

    def take_uuencoded(self, part: MimePart, text: str, what: str) -> str:
        """``text`` without the uuencoded files written into it (``begin 644 error.log`` ...
        ``end``, read strictly by :func:`~asm_email_rules.uuencode.split_blocks`), each kept
        as an attachment of the part (in ``uuencoded``), noted. Each counts as a part
        against ``max_part_count`` (the blocks past it stay in the text) and is held to
        ``max_attachment_size`` (dropped, with a note, over it)."""
        limits = self.limits
        room = max(limits.max_part_count - self.part_count, 0)
        text, files, left = split_blocks(text, room)
        self.part_count += len(files)
        if left:
            self.violate(
                LimitKind.PART_COUNT,
                limits.max_part_count,
                limits.max_part_count + 1,
                "uuencoded files past the part limit left in the text",
            )
        found: list[Attachment] = []
        for file in files:
            name = self.plain_filename(file.filename) or f"part-{self.part_count}.bin"
            if len(file.data) > limits.max_attachment_size:
                self.drop_attachment(name, limits.max_attachment_size, len(file.data))
                continue
            self.note(
                IntakeNoteKind.UUENCODED_FILE,
                f"{what}: uuencoded file {name!r} ({len(file.data)} bytes) taken out of the "
                "text as an attachment",
            )
            extension = name.rpartition(".")[2].lower() if "." in name else ""
            content_type = _UU_TYPES.get(extension, "application/octet-stream")
            found.append(Attachment(filename=name, content_type=content_type, data=file.data))
        self.uuencoded[id(part)] = found
        return text

    def open_tnef(self, attachment: Attachment, what: str) -> list[Attachment]:
        """The files inside a ``winmail.dat`` (:func:`~asm_email_rules.tnef.read_tnef`),
        each an attachment after it (the ``winmail.dat`` stays as it came), noted
        ``TNEF_OPENED``; its text kept for :meth:`wrapped_body`. Each file counts as a part
        against ``max_part_count``; one over ``max_attachment_size`` stays inside only.
        A stream the reader refuses: ``TNEF_NOT_READ``, nothing taken out."""
        limits = self.limits
        name = attachment.filename
        try:
            contents = read_tnef(attachment.data, limits.max_attachment_size)
        except TnefError as exc:
            self.note(
                IntakeNoteKind.TNEF_NOT_READ,
                f"{what}: {name!r} (Outlook TNEF) not read ({exc}); kept as it came",
            )
            return []
        self.tnef_texts[id(attachment)] = contents
        room = max(limits.max_part_count - self.part_count, 0)
        files = contents.files[:room]
        if len(contents.files) > room:
            self.violate(
                LimitKind.PART_COUNT,
                limits.max_part_count,
                limits.max_part_count + 1,
                f"files in {name} past the part limit left inside it",
            )
        found: list[Attachment] = []
        for file in files:
            self.part_count += 1
            filename = self.plain_filename(file.name) or f"part-{self.part_count}.bin"
            # the type Outlook recorded is read as a MIME header's would be: only a valid
            # type/subtype (never control characters a host could echo), else the name's
            recorded, _, invalid = read_content_type(file.mime_type, "")
            kind = (
                recorded
                if recorded and not invalid
                else mimetypes.guess_type(filename)[0] or "application/octet-stream"
            )
            found.append(Attachment(filename=filename, content_type=kind, data=file.data))
        left = (
            f"; {contents.left_inside} more left inside it (past {MAX_FILES} files, or over "
            "max_attachment_size)"
            if contents.left_inside
            else ""
        )
        if found or left:
            names = ", ".join(repr(file.filename) for file in found[:10])
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            self.note(
                IntakeNoteKind.TNEF_OPENED,
                f"{what}: {len(found)} file(s) taken out of {name!r} (Outlook TNEF) and "
                f"attached beside it: {names or '-'}{more}{left}",
            )
        return found

    def wrapped_body(self, wrapped: list[tuple[MimePart, Attachment]]) -> tuple[str, str] | None:
        """For a message with no text of its own: the text of the first attachment that
        holds some (document order), and its kind for ``body_source``, noted
        ``BODY_FROM_ATTACHMENT``; None when none does. Read: a text file (no name, or a
        ``.txt``/``.htm(l)`` one), a forwarded message (``message/rfc822``, ``message/global``
        or a ``.eml`` file; its own header's From, Date and Subject above its text, under a
        forward marker), ``text/enriched``, RTF, a calendar invitation, a ``winmail.dat``.
        The attachment is kept too. At most ``max_body_bytes`` characters are kept."""
        for part, attachment in wrapped:
            kind, text = self.text_in(part, attachment)
            if not kind or not has_text(text):
                continue
            limit = self.limits.max_body_bytes
            text = text[:limit].replace("\r\n", "\n").replace("\r", "\n")
            if self.cut_at:
                text = cut_lines(text, self.cut_at)
            self.note(
                IntakeNoteKind.BODY_FROM_ATTACHMENT,
                f"the message has no text of its own: the body is the text of "
                f"{attachment.filename!r} ({kind}), which stays attached",
            )
            return text, kind
        return None

    def text_in(self, part: MimePart, attachment: Attachment) -> tuple[str, str]:
        """The kind of text an attachment holds and that text, or ``("", "")``."""
        ctype = attachment.content_type
        name = attachment.filename.lower()
        data = attachment.data
        what = f"attachment {attachment.filename!r}"
        if ctype in ("text/plain", "text/html") and (
            not part.filename or name.endswith((".txt", ".htm", ".html"))
        ):
            text = decode_text(data, part.params.get("charset"), what, [], self.hints)
            return ctype, html_to_text(text[:_MAX_HTML_TEXT]) if ctype == "text/html" else text
        if ctype in ("message/rfc822", "message/global") or name.endswith(".eml"):
            return "message/rfc822", self.forwarded_text(data)
        if ctype in ("text/enriched", "text/richtext"):
            return ctype, enriched_text(decode_text(data, part.params.get("charset"), what, []))
        if ctype in ("text/rtf", "application/rtf") or name.endswith(".rtf"):
            return "text/rtf", rtf_text(data)
        if ctype == "text/calendar" or name.endswith(".ics"):
            text = decode_text(data, part.params.get("charset"), what, [])
            return "text/calendar", calendar_text(text)
        tnef = self.tnef_texts.get(id(attachment))
        if tnef is not None:
            if has_text(tnef.text):
                return "application/ms-tnef", tnef.text
            if tnef.rtf:
                try:
                    rtf = decompress_rtf(tnef.rtf, self.limits.max_body_bytes)
                except TnefError:
                    rtf = b""
                if rtf:
                    return "application/ms-tnef", rtf_text(rtf)
            if tnef.html:
                return "application/ms-tnef", html_to_text(tnef.html[:_MAX_HTML_TEXT])
        return "", ""

    def forwarded_text(self, data: bytes) -> str:
        """The text of a forwarded message, under a forward marker and its From, Date and
        Subject (as mail programs write a forward inline), read by the same intake: a
        forward inside it is read the same way, at most ``_MAX_FORWARDS`` deep. ``""`` when
        it is empty, too deep, or could not be read (logged)."""
        if self.forward_depth >= _MAX_FORWARDS or not data.strip():
            return ""
        reader = _Intake(data, self.limits)
        reader.forward_depth = self.forward_depth + 1
        try:
            inner = reader.run()
        except Exception:  # a forwarded message we cannot read must not lose the outer one
            _LOG.warning("forwarded message not read; kept as an attachment", exc_info=True)
            return ""
        head = [_FORWARD_MARKER]
        for label, value in (
            ("From", inner.header("from")),
            ("Date", inner.header("date")),
            ("Subject", inner.subject),
        ):
            if value:
                head.append(f"{label}: {value}")
        return "\n".join(head) + "\n\n" + inner.body

    def html_converted(self, part: MimePart) -> str:
        """The text of an inline HTML leaf (its first ``_MAX_HTML_TEXT`` characters), once."""
        text = self.converted.get(id(part))
        if text is None:
            html = self.inline_text(part)
            text = self.converted[id(part)] = html_to_text(html[:_MAX_HTML_TEXT])
        return text

    def html_body_text(self, parts: list[MimePart]) -> str:
        """The text body from inline HTML parts (at most ``_MAX_HTML_TEXT`` characters read)."""
        if len(parts) == 1:
            html = self.inline_text(parts[0])
            converted = self.converted.get(id(parts[0]))
        else:
            html = "\n".join(self.inline_text(part) for part in parts)
            converted = None
        if len(html) > _MAX_HTML_TEXT:
            self.note(
                IntakeNoteKind.HTML_BODY_CUT,
                f"HTML body of {len(html)} characters: only the first {_MAX_HTML_TEXT} "
                "converted to text",
            )
        text = html_to_text(html[:_MAX_HTML_TEXT]) if converted is None else converted
        if self.cut_at:
            text = cut_lines(text, self.cut_at)
        return text

    def text_of(self, part: MimePart, what: str, hints: Hints | None = None) -> str:
        """Decoded text of a text part, line endings normalised to ``\\n``.

        The charset is checked against the bytes (:func:`~asm_email_rules.charsets.decode_text`;
        an HTML part without one may declare it in ``<meta>``); ``format=flowed`` text is
        unwrapped (RFC 3676).
        """
        data = self.body_bytes(part, what)  # capped at limits.max_body_bytes
        params = part.params
        charset = params.get("charset")
        if not charset and part.ctype == "text/html":
            charset = html_meta_charset(data)
        text = decode_text(data, charset, what, self.notes, hints)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if part.ctype == "text/plain" and params.get("format", "").lower() == "flowed":
            text = unflow(text, delsp=params.get("delsp", "").lower() == "yes")
        if self.cut_at:
            text = cut_lines(text, self.cut_at)
        return text

    def body_bytes(self, part: MimePart, what: str) -> bytes:
        """The bytes of a body text part to decode: all of them while the message's text stays
        within ``limits.max_body_bytes``; past it, the part is cut at a line end and kept whole
        as an attachment (see :meth:`overflow`). Never more than the cap is decoded to text,
        so a huge body costs no huge string (issue 10: peak memory at most 3x the message)."""
        budget = self.body_budget
        encoded = part.body_end - part.body_start
        charset = part.params.get("charset")
        if part.cte in _ENCODED and encoded > budget:
            data = self.transfer_decode(part, what)  # base64 or QP: the size is known after
            if len(data) <= budget:
                self.body_budget -= len(data)
                return _lf_lines(data, charset)
            prefix = _cut_text(data[:budget], charset)
        elif encoded > budget:
            data = b""  # read from the message only if it is kept whole (below)
            prefix = _cut_text(part.source[part.body_start : part.body_start + budget], charset)
        else:
            data = self.transfer_decode(part, what)
            self.body_budget -= len(data)
            return _lf_lines(data, charset)
        self.body_budget -= len(prefix)
        self.overflow(part, what, data, prefix)
        return _lf_lines(prefix, charset)

    def overflow(self, part: MimePart, what: str, data: bytes, prefix: bytes) -> None:
        """Record a body part cut to ``prefix``; keep it whole as ``body-N.txt`` (or ``.html``)
        when it fits ``max_attachment_size``, else note it dropped. ``data`` is the decoded
        part, or ``b""`` when it was not read yet."""
        size = len(data) if data else part.body_end - part.body_start
        name = f"body-{len(self.overflowed) + 1}{_EXTENSIONS.get(part.ctype, '.txt')}"
        kept = f"{what}: text of {size} bytes; the first {len(prefix)} kept as the body"
        if size > self.limits.max_attachment_size:  # too big to attach: the rest is lost
            self.violate(
                LimitKind.BODY_SIZE,
                self.limits.max_body_bytes,
                size,
                f"{kept}, the rest dropped (too big to attach as {name})",
            )
            self.drop_attachment(name, self.limits.max_attachment_size, size)
            return
        self.violate(
            LimitKind.BODY_SIZE,
            self.limits.max_body_bytes,
            size,
            f"{kept}, the whole part attached as {name}",
        )
        whole = data or self.transfer_decode(part, what)
        self.overflowed.append(Attachment(filename=name, content_type=part.ctype, data=whole))

    def filename(self, part: MimePart) -> str:
        """Attachment filename (RFC 2231 and RFC 2047 decoded, control chars removed) or ""."""
        if not part.filename:
            return ""
        if "=?" not in part.filename and part.filename.isprintable():
            return part.filename.strip()
        return decode_header_text(part.filename, self.notes, "filename").strip()

    def attachment(
        self, part: MimePart, number: int, filename: str, disposition: str | None, what: str
    ) -> Attachment | None:
        """An Attachment for a leaf, or None when it is over the size limit (noted). An
        opened S/MIME part is not decoded again: its bytes are those read when it was
        opened (``signed_data``), with the notes of their decoding."""
        limit = self.limits.max_attachment_size
        encoded = part.body_end - part.body_start
        opened = self.signed_data.pop(id(part), None)
        if opened is not None:
            data, decoding = opened
            self.notes.extend(decoding)
        elif encoded * 3 // 4 > limit * 11 // 10 + 1024:
            self.drop_attachment(filename or what, limit, encoded * 3 // 4)
            return None
        else:
            data = self.transfer_decode(part, what)
        if len(data) > limit:
            self.drop_attachment(filename or what, limit, len(data))
            return None
        filename = self.plain_filename(filename)
        if not filename:
            filename = self.default_name(part, number, data)
        if part.ctype == "application/applefile":  # RFC 1740: the Mac header, not the file
            renamed = f"._{filename}"
            self.note(
                IntakeNoteKind.ATTACHMENT_RENAMED,
                f"attachment {filename[:120]!r} renamed {renamed[:120]!r}: it is the Mac "
                "resource fork (application/applefile) of the file of that name, not the file",
            )
            filename = renamed
        content_id = part.content_id
        return Attachment(
            filename=filename,
            content_type=part.ctype,
            data=data,
            inline=disposition == "inline",
            content_id=content_id,
        )

    def plain_filename(self, name: str) -> str:
        """:func:`safe_filename` of an attachment's name, noted when it changes the name."""
        if not name:
            return ""
        safe = safe_filename(name)
        if safe != name:
            self.note(
                IntakeNoteKind.ATTACHMENT_RENAMED,
                f"attachment {clean_text(name)[:120]!r} renamed {safe[:120]!r}: a file name "
                "holds no directories, controls, bidi overrides or device names",
            )
        return safe

    def default_name(self, part: MimePart, number: int, data: bytes) -> str:
        """A filename for a part that has none: the subject of a forwarded mail, else part-N."""
        extension = _EXTENSIONS.get(part.ctype, ".bin")
        if part.ctype in ("message/rfc822", "message/global"):
            inner = MimeReader(data[: self.limits.max_header_bytes], self.limits)
            inner_headers, _ = inner.read_headers(0, top=False)
            for name, value in inner_headers:
                if name.lower() == b"subject":
                    subject = decode_header_text(header_bytes_to_str(value, "subject", []))
                    safe = re.sub(r'[\\/:*?"<>|]', "_", " ".join(subject.split()))[:100].strip()
                    if safe:
                        return safe + extension
        return f"part-{number}{extension}"

    def drop_attachment(self, name: str, limit: int, size: int) -> None:
        """Record an attachment dropped for size."""
        self.note(
            IntakeNoteKind.ATTACHMENT_DROPPED,
            f"attachment {name!r} ({size} bytes) dropped: over {limit} bytes",
        )
        self.violate(LimitKind.ATTACHMENT_SIZE, limit, size, f"{name} dropped")

    # -- header fields ------------------------------------------------------------------

    def decode_fields(self, headers: list[tuple[bytes, bytes]], root: MimePart) -> HeaderFields:
        """The decoded header fields of the message whose MIME tree ``root`` is.

        Raw 8-bit bytes that are not UTF-8 are read like body text, with the charsets the
        message declares elsewhere (its parts', in order, then its encoded-words') first.
        """
        notes = self.notes
        self.header_charsets = _word_charsets(headers)
        hints = _LazyHints(self.leaves(root), self.header_charsets)
        pairs, first = _decode_pairs(headers, notes, hints)
        from_mailboxes = _mailboxes(first.get("from"), "From", notes)
        sender_name, sender = _sender_of(first.get("from"), from_mailboxes, notes)
        sender_field = _mailboxes(first.get("sender"), "Sender", notes)
        reply_to = _mailboxes(first.get("reply-to"), "Reply-To", notes)
        return_path = first.get("return-path")
        message_ids = parse_msg_ids(first.get("message-id", ""))
        return HeaderFields(
            headers=pairs,
            sender=sender,
            sender_name=sender_name,
            from_mailboxes=from_mailboxes,
            sender_mailbox=sender_field[0] if len(sender_field) == 1 else None,
            reply_to_mailboxes=reply_to,
            reply_to=tuple(mailbox.address for mailbox in reply_to),
            to=_addr_specs(first.get("to"), "to", notes),
            cc=_addr_specs(first.get("cc"), "cc", notes),
            return_path=None if return_path is None else return_path_address(return_path),
            subject=self.subject_of(first.get("subject", "")),
            message_id=message_ids[0] if message_ids else None,
            in_reply_to=parse_msg_ids(first.get("in-reply-to", "")),
            references=parse_msg_ids(first.get("references", "")),
            date=parse_date(first.get("date"), notes),
        )

    def subject_of(self, value: str) -> str:
        """The decoded Subject, whitespace runs as one space, cut to the subject length limit."""
        subject = " ".join(decode_header_text(value, self.notes, "Subject").split())
        limit = self.limits.max_subject_length
        if len(subject) > limit:
            self.violate(LimitKind.SUBJECT_LENGTH, limit, len(subject), "subject cut to the limit")
            subject = subject[:limit]
        return subject

    def build(self, fields: HeaderFields, contents: _Contents) -> InboundEmail:
        """Assemble the InboundEmail value (hashing the received bytes unless known)."""
        return InboundEmail(
            sender=fields.sender,
            subject=fields.subject,
            body=contents.body,
            sender_name=fields.sender_name,
            from_mailboxes=fields.from_mailboxes,
            sender_mailbox=fields.sender_mailbox,
            reply_to_mailboxes=fields.reply_to_mailboxes,
            message_id=fields.message_id,
            in_reply_to=fields.in_reply_to,
            references=fields.references,
            return_path=fields.return_path,
            reply_to=fields.reply_to,
            to=fields.to,
            cc=fields.cc,
            date=fields.date,
            received_at=received_at(fields.headers),
            headers=fields.headers,
            body_html=contents.body_html,
            body_source=contents.body_source,
            attachments=contents.attachments,
            notes=tuple(dict.fromkeys(self.notes)),
            limit_violations=tuple(self.violations.values()),
            raw_sha256=self.known_sha256 or hashlib.sha256(self.received).hexdigest(),
            raw_size=len(self.received),
            ledger_sha256=ledger_sha256(self.received),
            earlier_ledger_sha256s=earlier_ledger_sha256s(self.received),
        )


def received_at(headers: tuple[tuple[str, str], ...]) -> datetime | None:
    """The time stamp of the newest ``Received`` field (the first in the header section: the
    last relay, at or next to our mailbox, writes it; RFC 5321 section 4.4, "; date-time"),
    or None when there is none or its time cannot be read. When the message reached us,
    which its own Date (the writer's clock, set when it was written) does not say."""
    for name, value in headers:
        if name.lower() == "received":
            _, semicolon, stamp = value.rpartition(";")
            return parse_date(stamp.strip(), []) if semicolon and stamp.strip() else None
    return None


class _LazyHints:
    """The charsets a message declares (its parts, then its header's encoded-words), once each.

    Built only when a text part or a raw 8-bit header needs them (a charset missing or
    wrong), then kept: a charset detected for one part is put first, so the next part tries
    it first. ``parts`` (the leaves, in order) is iterated then, and ``header_charsets`` (the
    header's encoded-words') added. It holds no reference to the reader: the reader keeps
    it, and a cycle would keep each message's bytes alive until the garbage collector runs.
    """

    def __init__(self, parts: Iterable[MimePart], header_charsets: list[str]) -> None:
        self.parts = parts
        self.header_charsets = header_charsets
        self.names: list[str] | None = None

    def __call__(self) -> list[str]:
        if self.names is None:
            found = [part.params["charset"] for part in self.parts if "charset" in part.params]
            found += self.header_charsets
            self.names = list(dict.fromkeys(name.strip().lower() for name in found if name))
        return self.names


_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
"""Zero-width characters (not white space to ``str.split``) that mail clients pad with."""
_INVISIBLE_AS_SPACE = dict.fromkeys(map(ord, _INVISIBLE), " ")
_VISIBLE = re.compile(rf"[^\s{_INVISIBLE}]")
_PLACEHOLDER = re.compile(r"\[(?:image|cid)(?::[^\]\n]{0,300})?\]", re.IGNORECASE)
"""Where an image stood in a plain text made from HTML: Gmail's ``[image: logo]``,
Outlook's ``[cid:image001.png@01D9A1B2.C3D4E5F0]``."""
_MAX_NOTICE = 300
"""Characters at most of a text that is only a notice that the mail is HTML."""
_MAIL = r"(?:e-?mail|mail|message)"
_PROGRAM = (
    r"(?:(?:e-?mail |mail )?(?:client|program|reader|viewer|application|app|software)"
    r"|(?:web )?browser)"
)
_HTML_ABLE = rf"an? html[- ]?(?:capable|compatible|enabled|aware) {_PROGRAM}"
_THIS_MAIL = rf"(?:it|this {_MAIL}(?: {_MAIL})?)"
_TO_READ = rf"to (?:view|read|display|see) {_THIS_MAIL}"
_ENABLE_HTML = rf"(?:activate|enable|turn on) html(?: (?:view|display))?(?: in your {_PROGRAM})?"
_NOTICE_SENTENCE = (
    r"(?:"
    # "This is an HTML message", "This is an HTML-only e-mail", "This is a HTML formatted email"
    rf"this is an? html(?:[- ]?(?:formatted|only|based))? {_MAIL}"
    # "This message is in HTML format", "This e-mail was sent as HTML"
    rf"|this {_MAIL}(?: {_MAIL})? (?:is|was) (?:written |formatted |sent |composed |created )?"
    r"(?:in|as) html(?: format)?(?: only)?"
    # "Your email client does not support HTML messages", "Your mail program cannot display HTML"
    rf"|your {_PROGRAM} (?:does not|doesn't|doesnt|cannot|can't|cant|is unable to|"
    r"is not able to|may not|might not) (?:support|display|show|read|render) html"
    rf"(?: {_MAIL}s?| format| content)?"
    # "Please use an HTML capable mail program to read this message"
    rf"|(?:please )?use {_HTML_ABLE}(?: {_TO_READ})?"
    # "To view this email message, open it in a program that understands HTML" (PHPMailer),
    # "To view it, activate HTML in your email application" (PHPMailer 6), "To view this
    # message, please use an HTML compatible email viewer"
    rf"|{_TO_READ},? (?:please )?(?:use (?:a (?:web )?browser or )?{_HTML_ABLE}"
    rf"|open it (?:in|with) an? {_PROGRAM} that (?:understands|supports|can display|displays) html"
    rf"|{_ENABLE_HTML})"
    # "You need an HTML compatible email client to read it", "This email requires an HTML ..."
    rf"|(?:you need|{_THIS_MAIL} requires) {_HTML_ABLE}(?: {_TO_READ})?"
    # "Please enable HTML in your mail client"
    rf"|please {_ENABLE_HTML}(?: {_TO_READ})?"
    r")[.!]*"
)
_HTML_NOTICE = re.compile(rf"{_NOTICE_SENTENCE}(?: {_NOTICE_SENTENCE})*")
"""A whole text (lower case, white space collapsed) of notices that the mail is HTML, each
sentence one of the fixed sentences mail programs write there ("This is an HTML message",
"Your email client does not support HTML", "To view this message, open it in a program that
understands HTML"). A sentence that only talks about HTML and a mail program ("My mail client
does not display HTML mails since the update.") is not one."""
_MAX_QUOTED = 300
"""Characters of a part passed over for having no text quoted in its note (a notice is at
most ``_MAX_NOTICE``: never cut)."""


def _unarmored(text: str) -> tuple[str, int]:
    """``text`` with each inline PGP cleartext-signed block (RFC 4880 section 7) reduced to
    its signed text: the ``BEGIN PGP SIGNED MESSAGE`` line and its ``Hash:`` lines, and the
    signature from ``BEGIN PGP SIGNATURE`` to its ``END`` line, taken out; dash-escaped
    lines (``- -- ``) restored. A block without its signature is left as written. Returns
    the text and the number of blocks read. Linear: each block is found with ``str.find``
    from where the last one ended."""
    out: list[str] = []
    pos = blocks = 0
    while True:
        start = text.find(_PGP_SIGNED, pos)
        if start < 0 or (start > 0 and text[start - 1] != "\n"):
            break
        header_end = text.find("\n\n", start)
        signature = text.find(_PGP_SIGNATURE, max(header_end, start))
        end = text.find(_PGP_SIGNATURE_END, signature + 1) if signature >= 0 else -1
        if header_end < 0 or signature < 0 or end < 0:
            break
        after = text.find("\n", end)
        out.append(text[pos:start])
        out.append(_DASH_ESCAPED.sub("", text[header_end + 2 : signature + 1]))
        pos = len(text) if after < 0 else after + 1
        blocks += 1
    if not blocks:
        return text, 0
    out.append(text[pos:])
    return "".join(out), blocks


def _outside_reports(
    leaves: Iterable[tuple[MimePart | None, int, MimePart]],
    wrapped: list[tuple[MimePart, Attachment]],
) -> list[tuple[MimePart, Attachment]]:
    """``wrapped`` without the parts of a ``multipart/report`` (RFC 6522: a DSN, an MDN, an
    ARF complaint). The message a report returns is the one it reports on (often ours), not
    what its sender wrote: a bounce or a read receipt whose human-readable part is empty
    keeps an empty body, rather than our own reply's text. ``leaves`` come from
    :meth:`~asm_email_rules.mime_tree.MimeReader.leaves_with_parents` (one walk)."""
    reported = {
        id(leaf)
        for parent, _, leaf in leaves
        if parent is not None and parent.ctype == "multipart/report"
    }
    return [(part, attachment) for part, attachment in wrapped if id(part) not in reported]


def _is_tnef(part: MimePart, attachment: Attachment) -> bool:
    """True for an Outlook ``winmail.dat``: a TNEF type, or the name Outlook gives it."""
    return part.ctype in _TNEF_TYPES or attachment.filename.lower() in _TNEF_NAMES


def _visible(text: str) -> bool:
    """True when ``text`` holds a character that is neither white space nor zero-width."""
    return _VISIBLE.search(text) is not None


def has_text(text: str) -> bool:
    """Whether a decoded text part (or an HTML part's text) says anything: the test for
    "plain text" in intake.md's "the first with plain text, else the first with HTML".

    A part has no text when, once image placeholders (``[image: logo]``, ``[cid:...]``) are
    taken out, it is blank (white space and zero-width characters only) or, in at most
    ``_MAX_NOTICE`` characters, only the fixed sentences mail programs write to say the mail
    is HTML (``_HTML_NOTICE``: "This is an HTML message. Please use an HTML capable mail
    client."), the whole text matched. Everything else is text, however short ("ok", "see
    attached", a signature), and so is a sentence about HTML and a mail program ("My mail
    client does not display HTML mails since the update."). Linear in the text.
    """
    if not _visible(text):
        return False
    if "[" in text:
        text = _PLACEHOLDER.sub(" ", text)
        if not _visible(text):
            return False
    if len(text) > 4 * _MAX_NOTICE and len(text.strip().strip(_INVISIBLE)) > 4 * _MAX_NOTICE:
        return True  # too long for a notice, even with generous white space
    rest = " ".join(text.translate(_INVISIBLE_AS_SPACE).lower().split())
    if len(rest) > _MAX_NOTICE or "html" not in rest:
        return True
    return _HTML_NOTICE.fullmatch(rest) is None


def _joined(texts: list[str]) -> str:
    """Text parts shown one after another: joined with a line break where one is missing."""
    if len(texts) == 1:
        return texts[0]
    out = texts[0]
    for text in texts[1:]:
        if out and not out.endswith("\n") and text:
            out += "\n"
        out += text
    return out


def _mime_values(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The first value of each MIME header (lower-case names), as the MIME reader reads them.

    Raw 8-bit bytes here are read without hints and unnoted: the field itself is decoded (and
    noted) with the message's other fields once the MIME tree is known.
    """
    mime: dict[str, str] = {}
    for name_b, value_b in headers:
        lname = name_b.decode("ascii").lower()
        if lname in MIME_HEADERS and lname not in mime:
            mime[lname] = header_bytes_to_str(value_b, lname, [])
    return mime


def _word_charsets(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The charsets of the header's encoded-words, in order (hints for undeclared text)."""
    return [
        charset.decode("ascii", "replace")
        for _, value in headers
        if b"=?" in value
        for charset in _WORD_CHARSET.findall(value)
    ]


def _decode_pairs(
    headers: list[tuple[bytes, bytes]], notes: list[IntakeNote], hints: Hints
) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """Every field as a decoded ``(name, value)`` pair; and each field's first undecoded value.

    A repeat of a field RFC 5322 allows once is noted (the first one is the one used). Raw
    8-bit values that are not UTF-8 are read with ``hints`` first (the message's charsets).
    """
    pairs: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    append = pairs.append
    for name_b, value_b in headers:
        name = name_b.decode("ascii")
        lname = name.lower()
        try:
            value = value_b.decode("ascii")
        except UnicodeDecodeError:
            value = header_bytes_to_str(value_b, name, notes, hints)
        if lname in first:
            counts[lname] = counts.get(lname, 1) + 1
        else:
            first[lname] = value
        if "=?" in value:
            append((name, decode_header_text(value, notes, name)))
        elif _ANY_CONTROL.search(value) is not None:
            append((name, clean_text(value)))
        else:
            append((name, value))
    for lname in _SINGLE_FIELDS:
        if lname in counts:
            notes.append(
                IntakeNote(
                    IntakeNoteKind.DUPLICATE_HEADER,
                    f"{counts[lname]} {lname!r} headers; the first one used",
                )
            )
    return tuple(pairs), first


def _mailboxes(value: str | None, what: str, notes: list[IntakeNote]) -> tuple[NamedAddress, ...]:
    """Every valid mailbox of an address field (``()`` when the field is absent or empty)."""
    if not value:
        return ()
    pairs = parse_address_list(value, notes, what)
    return tuple(NamedAddress(addr, visible_name(name)) for name, addr in pairs)


def _sender_of(
    from_value: str | None, found: tuple[NamedAddress, ...], notes: list[IntakeNote]
) -> tuple[str, str]:
    """``(display_name, addr_spec)`` of From when it has exactly one valid mailbox.

    A From with a display name and no address at all gives ``(name, "")``; anything else
    gives blanks. Each case without a sender is noted.
    """
    if from_value is None:
        notes.append(IntakeNote(IntakeNoteKind.MISSING_FROM, "no From header; sender unknown"))
        return "", ""
    if len(found) == 1:
        return found[0].name, found[0].address
    if found:
        notes.append(
            IntakeNote(
                IntakeNoteKind.MULTIPLE_FROM_ADDRESSES,
                f"From has {len(found)} addresses; sender unknown",
            )
        )
        return "", ""
    bare = from_value.replace("<>", " ")
    if "@" not in bare and "<" not in bare and ">" not in bare:
        name = visible_name(plain_display_name(bare))
        if name:
            notes.append(
                IntakeNote(
                    IntakeNoteKind.FROM_WITHOUT_ADDRESS,
                    f"From has a name ({name[:80]!r}) but no address; sender unknown",
                )
            )
            return name, ""
    notes.append(
        IntakeNote(IntakeNoteKind.INVALID_FROM, "From has no valid address; sender unknown")
    )
    return "", ""


def _addr_specs(value: str | None, what: str, notes: list[IntakeNote]) -> tuple[str, ...]:
    """The addr-specs of an address field (``()`` when the field is absent or empty)."""
    if not value:
        return ()
    return tuple(addr for _, addr in parse_address_list(value, notes, what))


def parse_message(
    raw: bytes,
    *,
    limits: Limits = Limits(),  # noqa: B008
    raw_sha256: str | None = None,
) -> InboundEmail:
    """Parse raw message bytes into an :class:`InboundEmail`; over a limit degrades, never crashes.

    ``raw_sha256`` is the hex SHA-256 of ``raw`` when the caller has computed it already (the
    polling service hashes each message before parsing it, to look for it in the quarantine):
    it becomes :attr:`InboundEmail.raw_sha256` as given, unchecked, and saves hashing ``raw``
    again (about 0.5 ms for a 700 KB message). Raises :class:`MessageParseError` only for
    input that is not bytes or is empty, and wraps any unexpected failure in it (nothing else
    escapes for any input). ``limits`` that is not a :class:`Limits`, or a ``raw_sha256``
    that is not a str, is the caller's slip, not the message's: :class:`ArgumentTypeError`.
    """
    require_type(limits, Limits, "parse_message", "limits")
    require_type(raw_sha256, (str, type(None)), "parse_message", "raw_sha256", "a str or None")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MessageParseError("input is not bytes", detail=type(raw).__name__)
    data = bytes(raw)
    if not data or data.isspace():
        raise MessageParseError("empty message")
    try:
        reader = _Intake(data, limits)
        reader.known_sha256 = raw_sha256
        return reader.run()
    except MessageParseError:
        raise
    except Exception as exc:  # wrapped: nothing but MessageParseError may escape
        _LOG.exception("unexpected intake failure", extra={"raw_size": len(data)})
        raise MessageParseError(
            "unexpected error while parsing", detail=f"{type(exc).__name__}: {exc}"
        ) from exc
