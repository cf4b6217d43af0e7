"""The MIME tree of one message, split in one linear pass, and the bodies of its leaf parts.

:class:`MimeReader` reads header sections (a fast regex pass for a well-formed top-level
header, a careful line-by-line reader otherwise), finds the parts by ``bytes.find`` on boundary
lines without recursion (RFC 2046 section 5.1), and undoes Content-Transfer-Encodings
(RFC 2045 section 6). It enforces the structural :class:`~asm_email_rules.settings.Limits`
(header count and bytes, MIME depth, part count) as it goes, recording limit violations and
intake notes instead of raising.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterator

import attrs

from asm_email_rules.errors import DerError
from asm_email_rules.header_values import clean_text, header_bytes_to_str, mime_params
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind
from asm_email_rules.model import LimitKind, LimitViolation
from asm_email_rules.settings import Limits
from asm_email_rules.smime import cms_content_type, locate_signed_content
from asm_email_rules.uuencode import decode_body

__all__ = [
    "MIME_HEADERS",
    "MimePart",
    "MimeReader",
    "content_type",
    "cut_lines",
    "has_line_over",
    "longest_line",
]

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_HEADER_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\n]*\n(?:[ \t][^\n]*\n)*)*")
_HEADER_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):([^\n]*\n(?:[ \t][^\n]*\n)*)")
_FIELD_START = re.compile(rb"\n[^ \t\r\n]")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
MIME_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding", "content-id"}
)
#: characters of Content-Type/-Disposition read (compat32's parameter parser is quadratic)
_MAX_MIME_HEADER = 8192
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n"
#: a byte that may not follow a base64 body's padding for pybase64 to read it as binascii does
_AFTER_PADDING = re.compile(rb"[^= \t\r\n]")

_fast_b64decode: Callable[[memoryview], bytes] | None
try:  # the optional `fast` extra: base64 decoded in C, six to seven times binascii's speed
    from pybase64 import b64decode as _fast_b64decode
except ImportError:  # pragma: no cover - the extra is installed by the test suite
    _fast_b64decode = None


@attrs.define
class MimePart:
    """One MIME part found by the scanner: header pairs and the byte range of its body in
    ``source``, the bytes it was read from (the message, or an opened S/MIME entity)."""

    headers: list[tuple[bytes, bytes]]
    body_start: int
    body_end: int
    depth: int
    source: bytes = attrs.field(repr=False)
    kept: bool = True
    children: list[MimePart] = attrs.Factory(list)
    ctype: str = "text/plain"
    boundary: str | None = None
    params: dict[str, str] = attrs.Factory(dict)
    disposition: str | None = None
    filename: str = ""
    cte: str = ""
    content_id: str | None = None


@attrs.define
class _Level:
    """An open multipart: its boundary and the part currently being read inside it."""

    boundary: bytes
    part: MimePart
    previous: int | None
    current: MimePart | None = None


class MimeReader:
    """State of reading one message's MIME tree: the raw bytes, the limits, notes, violations."""

    def __init__(self, raw: bytes, limits: Limits) -> None:
        self.raw = raw  # the bytes being read: the message, or an S/MIME entity's buffer
        self.stop: int | None = None  # where the bytes being read end in raw (None: its end)
        self.limits = limits
        self.notes: list[IntakeNote] = []
        self.violations: dict[LimitKind, LimitViolation] = {}
        self.cut_at = 0
        self.part_count = 0
        self.max_depth = 0
        self.signed_limit = self.signed_room = 0  # decoded .p7m bytes to open: all, left
        self.signed_data: dict[int, tuple[bytes, list[IntakeNote]]] = {}
        """id(leaf) -> an opened .p7m, decoded, and the notes of its decoding: its attachment."""

    def raw_end(self) -> int:
        """Where the bytes being read end in ``raw``: its end, or an S/MIME entity's."""
        return len(self.raw) if self.stop is None else self.stop

    def note(self, kind: IntakeNoteKind, detail: str) -> None:
        """Record a repair intake made."""
        self.notes.append(IntakeNote(kind, detail))

    def violate(self, kind: LimitKind, limit: int, actual: int, detail: str) -> None:
        """Record a limit violation (the largest ``actual`` per kind)."""
        old = self.violations.get(kind)
        if old is None or actual > old.actual:
            self.violations[kind] = LimitViolation(kind, limit, actual, detail)

    def normalise_line_ends(self, raw: bytes, what: str = "") -> bytes:
        """``raw`` (a message, or an opened S/MIME entity) with bare CR line ends (old Mac
        mail, broken gateways) read as line breaks.

        RFC 5322 section 2.3 allows CR only in CRLF. When the top header section (at most
        ``max_header_bytes``) holds a CR that is not part of a CRLF, the bytes were written
        with bare-CR or mixed line ends: every bare CR in them becomes LF (noted), so their
        headers, boundaries and text lines are found. Only the header section is probed, so
        well-formed bytes cost one short scan; text parts have their own line ends normalised
        anyway. ``what`` names the entity in the note (empty for the message).
        """
        if not _bare_cr_in_header(raw, 0, len(raw), self.limits.max_header_bytes):
            return raw
        bare = raw.count(b"\r") - raw.count(b"\r\n")
        self.note(
            IntakeNoteKind.BARE_CR_LINE_ENDS,
            f"{what}{bare} bare CR line end(s) read as line breaks",
        )
        return _BARE_CR.sub(b"\n", raw)

    # -- headers ------------------------------------------------------------------------

    def read_headers(self, pos: int, top: bool) -> tuple[list[tuple[bytes, bytes]], int]:
        """Header fields from ``pos`` to the blank line (or first non-header line); body start."""
        if top and not self.cut_at:
            fast = self.read_headers_fast()
            if fast is not None:
                return fast
        return self.read_headers_slow(pos, top)

    def read_headers_fast(self) -> tuple[list[tuple[bytes, bytes]], int] | None:
        """The top-level header in one regex pass when it is well formed and within the limits."""
        raw = self.raw
        blank = _BLANK_LINE.search(raw, 0, self.limits.max_header_bytes + 2)
        if blank is None or raw[:1] in (b" ", b"\t", b"\r", b"\n"):
            return None
        block = raw[: blank.start() + 1]
        if _HEADER_BLOCK.fullmatch(block) is None:
            return None  # a line that is not a header field: let the careful reader decide
        fields = _HEADER_FIELD.findall(block)
        if len(fields) > self.limits.max_header_count:
            return None
        out = [
            (name, value.replace(b"\r\n", b"").replace(b"\n", b"").strip(b" \t"))
            if value.count(b"\n") > 1
            else (name, value.strip(b" \t\r\n"))
            for name, value in fields
        ]
        return out, blank.end()

    def read_headers_slow(self, pos: int, top: bool) -> tuple[list[tuple[bytes, bytes]], int]:
        """Header fields line by line, applying the count, size and line-length limits."""
        raw = self.raw
        n = self.raw_end()
        limits = self.limits
        fields: list[tuple[bytes, list[bytes]]] = []
        start = pos
        count = 0
        dropped = 0
        over_bytes = False
        while pos < n:
            if pos - start > limits.max_header_bytes or (
                count >= limits.max_header_count and raw[pos] not in (32, 9)
            ):
                # budget spent: skip to the end of the header section at C speed
                blank = _BLANK_LINE.search(raw, max(pos - 1, 0), n)
                stop = blank.end() if blank is not None else n
                extra = len(_FIELD_START.findall(raw, max(pos - 1, 0), stop))
                dropped += extra
                count += extra
                over_bytes = over_bytes or stop - start > limits.max_header_bytes
                pos = stop
                break
            nl = raw.find(b"\n", pos, n)
            end = n if nl < 0 else nl + 1
            first = raw[pos]
            if first in (10, 13) and raw[pos:end].strip(b"\r\n") == b"":
                pos = end
                break
            if first in (32, 9):
                if fields:
                    fields[-1][1].append(raw[pos:end])
                pos = end
                continue
            colon = raw.find(b":", pos, end)
            if colon <= pos or not _FIELD_NAME.fullmatch(raw, pos, colon):
                if not fields and raw.startswith(b"From ", pos, n):
                    pos = end  # mbox "From " line
                    continue
                break
            count += 1
            fields.append((raw[pos:colon], [raw[colon + 1 : end]]))
            pos = end
        if (dropped or over_bytes) and (top or count > limits.max_header_count or over_bytes):
            self.record_header_limit(over_bytes, pos - start, count, dropped)
        return [(name, self.unfold(pieces)) for name, pieces in fields], pos

    def record_header_limit(self, over_bytes: bool, size: int, count: int, dropped: int) -> None:
        """Record the header-bytes (``size`` bytes) or header-count limit a section crossed."""
        limits = self.limits
        if over_bytes:
            self.violate(
                LimitKind.HEADER_BYTES,
                limits.max_header_bytes,
                size,
                f"header section over {limits.max_header_bytes} bytes; "
                f"the rest of it ({dropped} header field(s) more) dropped",
            )
        else:
            self.violate(
                LimitKind.HEADER_COUNT,
                limits.max_header_count,
                count,
                f"{dropped} header(s) after the first {limits.max_header_count} dropped",
            )

    def unfold(self, pieces: list[bytes]) -> bytes:
        """A field value from its physical lines: line breaks removed, cut to the line limit."""
        value = b"".join(pieces) if len(pieces) > 1 else pieces[0]
        value = value.replace(b"\r\n", b"").replace(b"\n", b"").strip(b" \t\r")
        if self.cut_at and len(value) > self.cut_at:
            value = value[: self.cut_at]
        return value

    # -- MIME -----------------------------------------------------------------------------

    def make_part(self, pos: int, depth: int, parent: MimePart | None) -> MimePart:
        """Read a part's headers at ``pos`` and attach it to ``parent`` if within the limits."""
        headers, body_start = self.read_headers(pos, top=parent is None)
        mime: dict[str, str] = {}
        for name, value in headers:
            if not name[:8].lower().startswith(b"content-"):
                continue
            lname = name.decode("ascii").lower()
            if lname in MIME_HEADERS and lname not in mime:
                mime[lname] = header_bytes_to_str(value, lname, self.notes)
        return self.new_part(headers, body_start, depth, parent, mime)

    def new_part(
        self,
        headers: list[tuple[bytes, bytes]],
        body_start: int,
        depth: int,
        parent: MimePart | None,
        mime: dict[str, str],
    ) -> MimePart:
        """A part from its headers (``mime``: first Content-* values, lower-case names)."""
        part = MimePart(headers, body_start, self.raw_end(), depth, self.raw)
        mime = {key: value[:_MAX_MIME_HEADER] for key, value in mime.items()}
        default = "text/plain"
        if parent is not None and parent.ctype == "multipart/digest":
            default = "message/rfc822"
        part.ctype, part.params, repair = content_type(mime.get("content-type"), default)
        if repair:
            self.note(IntakeNoteKind.INVALID_CONTENT_TYPE, repair)
        disposition, disp_params, repair = content_disposition(mime.get("content-disposition"))
        if repair:
            self.note(IntakeNoteKind.INVALID_CONTENT_DISPOSITION, repair)
        part.disposition = disposition or None
        part.filename = disp_params.get("filename") or part.params.get("name") or ""
        part.cte = mime.get("content-transfer-encoding", "").strip().lower()
        cid = mime.get("content-id")
        part.content_id = (clean_text(cid).strip() or None) if cid is not None else None
        if part.ctype.startswith("multipart/"):
            boundary = part.params.get("boundary", "").rstrip()
            if boundary:
                part.boundary = boundary
            else:
                self.note(
                    IntakeNoteKind.NO_BOUNDARY_IN_MULTIPART,
                    f"{part.ctype} part without boundary read as text",
                )
                part.ctype = "text/plain"
        if depth > self.max_depth:
            self.max_depth = depth
        if parent is not None:
            if not parent.kept or depth > self.limits.max_mime_depth:
                part.kept = False
            else:
                self.part_count += 1
                if self.part_count > self.limits.max_part_count:
                    part.kept = False
                else:
                    parent.children.append(part)
        return part

    def scan(self, root: MimePart) -> None:
        """Split the multipart tree in one pass over the boundary lines (no recursion)."""
        raw = self.raw
        n = self.raw_end()
        levels: list[_Level] = []
        index: dict[bytes, int] = {}

        def push(part: MimePart) -> None:
            assert part.boundary is not None
            key = part.boundary.encode("utf-8", "surrogateescape")
            levels.append(_Level(key, part, index.get(key)))
            index[key] = len(levels) - 1

        def pop() -> None:
            level = levels.pop()
            if level.previous is None:
                del index[level.boundary]
            else:
                index[level.boundary] = level.previous

        push(root)
        pos = max(root.body_start - 1, 0)
        while levels:
            i = raw.find(b"\n--", pos, n)  # root.body_start >= 1: a header precedes any boundary
            if i < 0:
                break
            line_start = i + 1
            nl = raw.find(b"\n", line_start, n)
            line_end = n if nl < 0 else nl
            token = raw[line_start + 2 : line_end].rstrip(b" \t\r")
            k = index.get(token)
            closing = False
            if k is None and token.endswith(b"--"):
                k = index.get(token[:-2])
                closing = k is not None
            if k is None:
                pos = line_end
                continue
            end = i - 1 if i > 0 and raw[i - 1] == 13 else i
            while len(levels) - 1 > k:
                level = levels[-1]
                if level.current is not None:
                    level.current.body_end = max(end, level.current.body_start)
                level.part.body_end = max(end, level.part.body_start)
                pop()
            level = levels[k]
            if level.current is not None:
                level.current.body_end = max(end, level.current.body_start)
                level.current = None
            if closing:
                level.part.body_end = max(end, level.part.body_start)
                pop()
                pos = line_end
                continue
            child = self.make_part(min(line_end + 1, n), level.part.depth + 1, level.part)
            level.current = child
            if self.part_count > self.limits.max_part_count:
                break  # every later part is dropped: no need to read on
            if child.boundary is not None and child.kept:
                push(child)  # a part too deep stays opaque: its own boundaries are not tracked
            pos = max(child.body_start - 1, line_end)
            if pos >= n:
                break
        for level in levels:
            if level.current is not None:
                level.current.body_end = n

    # -- leaves ---------------------------------------------------------------------------

    def transfer_decode(self, part: MimePart, what: str) -> bytes:
        """Body bytes of a leaf with its Content-Transfer-Encoding undone (never raises)."""
        cte = part.cte
        raw = part.source
        invalid = cte == "base64" and _has_invalid_base64(raw, part.body_start, part.body_end)
        if invalid and _written_as_text(raw, part.body_start, part.body_end):
            self.note(
                IntakeNoteKind.NOT_BASE64,
                f"{what}: declared base64 but written as plain text; kept as written",
            )
            cte = "8bit"
        if cte == "base64":
            view = memoryview(raw)[part.body_start : part.body_end]
            if invalid:
                self.note(
                    IntakeNoteKind.INVALID_BASE64_CHARACTERS,
                    f"{what}: invalid characters in base64 ignored",
                )
            decode = _base64_decoder(raw, part.body_start, part.body_end, invalid)
            try:
                return decode(view)
            except binascii.Error:
                cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", view)
                cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
                self.note(
                    IntakeNoteKind.INVALID_BASE64_LENGTH,
                    f"{what}: invalid base64 repaired (trailing bits dropped)",
                )
                try:
                    return binascii.a2b_base64(cleaned)
                except binascii.Error:
                    return b""
        data = raw[part.body_start : part.body_end]
        if cte == "quoted-printable":
            return binascii.a2b_qp(data)
        if cte in _UUENCODE:
            decoded = decode_body(data)
            if decoded is not None:
                return decoded
            self.note(
                IntakeNoteKind.NOT_UUENCODED,
                f"{what}: declared {cte} but not uuencoded; kept as is",
            )
            return data
        if cte and cte not in ("7bit", "8bit", "binary"):
            self.note(
                IntakeNoteKind.UNKNOWN_TRANSFER_ENCODING,
                f"{what}: transfer encoding {cte!r} unknown; kept as is",
            )
        return data

    # -- S/MIME -----------------------------------------------------------------------------

    def open_signed(self, root: MimePart) -> MimePart:
        """Open opaque-signed S/MIME parts (RFC 8551 section 3.5.2); the root, maybe new.

        A kept leaf that is ``application/pkcs7-mime`` or ``application/x-pkcs7-mime`` with
        ``smime-type=signed-data``, or without ``smime-type`` (or ``application/octet-stream``
        named ``*.p7m``) holding SignedData, has its signed MIME entity read by
        :func:`~asm_email_rules.smime.locate_signed_content`, the signature **not** checked
        (noted ``SIGNATURE_NOT_CHECKED``). The leaf is replaced by a container holding that
        entity, read like any part, then the ``.p7m`` itself (kept as an attachment).
        Encrypted data (``enveloped-data``) stays an attachment, noted ``ENCRYPTED_NOT_READ``;
        data the reader refuses too (``SMIME_NOT_READ``). At most ``_MAX_SIGNED`` parts are
        opened (a signature inside a signature counts twice), and the ``.p7m`` parts opened,
        decoded, total at most :meth:`signed_budget` bytes.

        Memory: the entity is read where it lies in the decoded ``.p7m`` (its parts'
        ``source``; a BER entity of chunks is joined once), and that decoded ``.p7m`` is
        the attachment (``signed_data``): an opening holds no copy of the message, and the
        entity none of its own unless its chunks had to be joined.
        """
        self.signed_room = self.signed_limit = self.signed_budget()
        pending = [found for found in self.leaves_with_parents(root) if _maybe_signed(found[2])]
        pending.reverse()  # a stack: document order, an opened entity's own parts first
        opened = 0
        while pending and opened < _MAX_SIGNED:
            parent, index, leaf = pending.pop()
            if leaf.depth >= self.limits.max_mime_depth:  # its entity would be too deep
                self.max_depth = max(self.max_depth, leaf.depth + 1)
                continue
            what = f"part ({leaf.ctype}{', ' + leaf.filename if leaf.filename else ''})"
            entity = self.signed_entity(leaf, what)
            if entity is None:
                continue
            opened += 1
            container = self.open_entity(leaf, entity, what)
            if parent is None:
                root = container
            else:
                parent.children[index] = container  # the siblings' indexes stay as they were
            inner = self.leaves_with_parents(container)
            pending.extend(reversed([f for f in inner if f[2] is not leaf and _maybe_signed(f[2])]))
        return root

    def signed_budget(self) -> int:
        """Decoded bytes of ``.p7m`` parts one message may open, in all: within
        ``max_attachment_size`` (docs/intake.md: "the .p7m must be within
        max_attachment_size"), and no more than the message itself (or ``_SIGNED_FLOOR``
        for a smaller one). One opening always fits (a part is no larger than its
        message); a signed entity inside one as large, which would cost the message's size
        in memory again, is not opened."""
        return min(self.limits.max_attachment_size, max(len(self.raw), _SIGNED_FLOOR))

    def signed_entity(self, leaf: MimePart, what: str) -> tuple[bytes, int, int] | None:
        """Where the signed MIME entity of a part :func:`_maybe_signed` picked lies, as
        ``(buffer, start, end)``, or None: noted when the part is encrypted, unreadable, or
        over what is left of :meth:`signed_budget`; silent when it is no S/MIME data we
        open, or over ``max_attachment_size`` (the attachment is then dropped with its own
        note). The size checked is the decoded size; a part is decoded only when its
        encoded size allows it. An opened part's decoded bytes are kept in ``signed_data``
        for its attachment, so it is decoded once."""
        limit = self.limits.max_attachment_size
        least = _decoded_at_least(leaf)
        if least > limit:
            return None
        declared = leaf.params.get("smime-type", "").strip().lower()
        if declared in _ENCRYPTED:
            self.note_encrypted(what, declared)
            return None
        data = b""
        decoding: list[IntakeNote] = []  # the attachment's notes: made when it is read
        if least <= self.signed_room:
            kept, self.notes = self.notes, decoding
            try:
                data = self.transfer_decode(leaf, what)
            finally:
                self.notes = kept
            if len(data) > limit:
                return None
        if least > self.signed_room or len(data) > self.signed_room:
            self.note(
                IntakeNoteKind.SMIME_NOT_READ,
                f"{what}: S/MIME data not opened: the .p7m parts opened in one message "
                f"total at most {self.signed_limit} bytes decoded; kept as an attachment",
            )
            return None
        try:
            kind = declared or cms_content_type(data)
            if kind in _ENCRYPTED:
                self.note_encrypted(what, kind)
                return None
            if kind != "signed-data":
                return None
            entity = locate_signed_content(data)
        except DerError as exc:
            self.note(
                IntakeNoteKind.SMIME_NOT_READ,
                f"{what}: S/MIME signed data not read ({exc}); kept as an attachment",
            )
            return None
        self.signed_room -= len(data)
        self.signed_data[id(leaf)] = (data, decoding)
        self.note(
            IntakeNoteKind.SIGNATURE_NOT_CHECKED,
            f"{what}: S/MIME signed message; its content read, the signature not checked "
            "(not treated as authenticated)",
        )
        return entity

    def note_encrypted(self, what: str, kind: str) -> None:
        """Note an S/MIME encrypted part, kept as it is."""
        self.note(
            IntakeNoteKind.ENCRYPTED_NOT_READ,
            f"{what}: S/MIME encrypted ({kind}); kept as an attachment, not decrypted",
        )

    def open_entity(self, leaf: MimePart, entity: tuple[bytes, int, int], what: str) -> MimePart:
        """A container in place of ``leaf``: the MIME entity ``buffer[start:end]`` (read as
        a part where it lies, scanned if multipart), then ``leaf`` itself. The entity's line
        ends are read as the message's are: with a bare CR in its header, every bare CR is a
        line break (a copy of the entity, noted)."""
        buffer, start, end = entity
        limits = self.limits
        if _bare_cr_in_header(buffer, start, end, limits.max_header_bytes):
            buffer = self.normalise_line_ends(buffer[start:end], f"{what}, signed content: ")
            start, end = 0, len(buffer)
        if not self.cut_at and has_line_over(buffer, limits.max_line_length, start, end):
            self.cut_at = limits.max_line_length
            self.violate(
                LimitKind.LINE_LENGTH,
                limits.max_line_length,
                longest_line(buffer[start:end]),
                f"header values and text lines truncated to {limits.max_line_length}",
            )
        container = MimePart(
            [],
            leaf.body_start,
            leaf.body_end,
            leaf.depth,
            leaf.source,
            ctype="multipart/mixed",
            boundary="",
        )  # a container without a boundary line of its own: its parts are already known
        message, self.raw, self.stop = self.raw, buffer, end
        try:
            inner = self.make_part(start, leaf.depth + 1, container)
            if inner.boundary is not None and inner.kept:
                self.scan(inner)
        finally:
            self.raw, self.stop = message, None
        container.children.append(leaf)
        return container

    def leaves_with_parents(
        self, root: MimePart
    ) -> Iterator[tuple[MimePart | None, int, MimePart]]:
        """Kept leaf parts in document order, each with its parent and its index there (the
        root, when it is a leaf, has no parent)."""
        if root.boundary is None:
            yield None, 0, root
            return
        stack = [(root, index) for index in range(len(root.children) - 1, -1, -1)]
        while stack:
            parent, index = stack.pop()
            part = parent.children[index]
            if part.boundary is None:
                yield parent, index, part
            else:
                stack.extend((part, k) for k in range(len(part.children) - 1, -1, -1))

    def leaves(self, root: MimePart) -> Iterator[MimePart]:
        """Kept leaf parts in document order (iterative walk)."""
        stack = [root]
        while stack:
            part = stack.pop()
            if part.boundary is None:
                yield part
            else:
                stack.extend(reversed(part.children))

    # -- the whole message ----------------------------------------------------------------


_TOKEN = r"[!#$%&'*+.^_`{|}~0-9A-Za-z-]+"
"""An RFC 2045 section 5.1 token: no space, control character or tspecial."""
_MIME_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")
_COMMENT = re.compile(r"\([^()]*\)")
# A run of white space (or commas) is tried only from its first character (the lookbehind)
# and taken whole (possessive): tried from every character, a run of n spaces that does not
# end in what follows cost n * n / 2 steps (0.4 s for 8,000 spaces, in each part).
_SPACED_SLASH = re.compile(r"(?<!\s)\s*+/\s*")
_LEADING_TYPE = re.compile(rf"\s*({_TOKEN})\s*/\s*({_TOKEN})")
_UNSEPARATED = re.compile(r'("(?:[^"\\]|\\.)*"?)|(?<![\s,])[\s,]++(?=[^\s=;,"]+\s*=)')
"""A quoted string (kept), or the white space or comma before a ``name=`` that should
have been a ``;`` (each run read once: linear)."""
_PARAMETER_ANYWHERE = {
    name: re.compile(rf'\b{name}\s*=\s*("[^"]*"|[^\s";,]+)', re.IGNORECASE)
    for name in ("charset", "boundary")
}


def content_type(value: str | None, default: str) -> tuple[str, dict[str, str], str]:
    """The lower-cased type and the parameters of a Content-Type value, and ``""`` or, when
    the value is not valid, what was read instead (for an ``INVALID_CONTENT_TYPE`` note).

    RFC 2045 section 5.2: a syntactically invalid Content-Type is read as ``text/plain``.
    Before that, a value that starts with a valid ``type/subtype`` keeps it, its parameters
    read as if each had its ``;`` (``text/plain charset=utf-8``, ``multipart/mixed
    boundary="x"``, ``text/html, charset=utf-8``, ``text/plain (comment)``): a multipart
    with an odd header is still split, and text keeps its charset. A value with no type at
    all gives ``text/plain`` with any ``charset=`` it names (no charset otherwise, so the
    usual checks of the bytes apply) and its other parameters (a ``name`` keeps a file a
    file), or ``multipart/mixed`` when it says ``multipart`` and names a ``boundary=``. An
    absent or blank value is ``default`` without a note.
    """
    if value is None or not value.strip():
        return default, {}, ""
    head = value.partition(";")[0].strip()
    if _MIME_TYPE.fullmatch(head):
        kind, params = mime_params(value, default)
        return kind, params, ""
    bare = _SPACED_SLASH.sub("/", _COMMENT.sub(" ", head)).strip()
    if _MIME_TYPE.fullmatch(bare):  # RFC 822 comments and white space around "/" are allowed
        return bare.lower(), mime_params(value, default)[1], ""
    leading = _LEADING_TYPE.match(value)
    if leading is not None:
        kind = f"{leading[1]}/{leading[2]}".lower()
        rest = _UNSEPARATED.sub(lambda m: m[1] or "; ", value[leading.end() :])
        params = mime_params(f"{kind}; {rest}", default)[1]
    else:
        params = mime_params(value, default)[1]  # the parameters after a ";", if any
        for name, pattern in _PARAMETER_ANYWHERE.items():
            match = pattern.search(value) if name not in params else None
            if match is not None:
                params[name] = _strip_quotes(match[1])
        kind = "text/plain"
        if "boundary" in params and head.lower().startswith("multipart"):
            kind = "multipart/mixed"  # RFC 2046 section 5.1.3: an unknown subtype is mixed
        else:
            params.pop("boundary", None)
    shown = "; ".join(
        [kind, *(f"{name}={params[name]}" for name in ("charset", "boundary") if name in params)]
    )
    return kind, params, f"Content-Type {value[:100]!r} is not valid; read as {shown}"


_LEADING_TOKEN = re.compile(rf"\s*({_TOKEN})(?=[\s,])")


def content_disposition(value: str | None) -> tuple[str, dict[str, str], str]:
    """The lower-cased disposition type (``""`` when absent) and the parameters of a
    Content-Disposition value, and ``""`` or, when its parameters lack their ``;``, what was
    read instead (for an ``INVALID_CONTENT_DISPOSITION`` note).

    RFC 2183 section 2: ``disposition-type *(";" disposition-parm)``. A value such as
    ``attachment filename="a.pdf"`` or ``inline, filename=b.png`` is read as if each parameter
    had its ``;`` (as :func:`content_type` reads a type's), so the file keeps its name and
    its disposition type is ``attachment``, not the whole value.
    """
    kind, params = mime_params(value, "")
    if value is None or not kind or re.fullmatch(_TOKEN, kind):
        return kind, params, ""
    leading = _LEADING_TOKEN.match(value)
    if leading is None:
        return kind, params, ""
    kind = leading[1].lower()
    rest = _UNSEPARATED.sub(lambda m: m[1] or "; ", value[leading.end() :])
    params = mime_params(f"{kind}; {rest}", "")[1]
    shown = "; ".join(
        [kind, *(f"{name}={params[name]}" for name in ("filename",) if name in params)]
    )
    return kind, params, f"Content-Disposition {value[:100]!r} is not valid; read as {shown}"


def _strip_quotes(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value


_UUENCODE = ("x-uuencode", "uuencode", "x-uue", "uue")
"""Content-Transfer-Encodings of uuencoded bodies (not in RFC 2045, but sent: section 6.4
allows ``x-`` names)."""
_MAX_SIGNED = 3
"""Opaque-signed S/MIME parts opened in one message (a signature inside a signature, as
triple-wrapped mail has, counts as two)."""
_SIGNED_FLOOR = 1 << 20
"""Decoded bytes of ``.p7m`` parts a message smaller than this may open (if within
``max_attachment_size``): a small signature inside a signature is still read."""
_IDENTITY = ("", "7bit", "8bit", "binary")
"""Content-Transfer-Encodings that leave the bytes as they are (RFC 2045 section 6.2)."""
_PKCS7_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_ENCRYPTED = ("enveloped-data", "authenveloped-data")


def _bare_cr_in_header(raw: bytes, start: int, end: int, limit: int) -> bool:
    """True when the header section of ``raw[start:end]`` (its first ``limit`` bytes at
    most) holds a CR that is not part of a CRLF: bytes written with bare-CR line ends."""
    blank = _BLANK_LINE.search(raw, start, min(start + limit, end))  # the header's end
    head = raw[start : min(start + limit, end) if blank is None else blank.start() + 1]
    return head.count(b"\r") != head.count(b"\r\n")


def _decoded_at_least(part: MimePart) -> int:
    """The fewest bytes a leaf's body decodes to, as its encoded size tells: that size for
    the identity encodings; for base64 three quarters of it, less a tenth and 1 KiB for line
    breaks (what ``attachment`` allows: "clearly oversized base64 is never decoded"); a
    third for the others (quoted-printable writes a byte as ``=XX``)."""
    encoded = part.body_end - part.body_start
    if part.cte in _IDENTITY:
        return encoded
    if part.cte == "base64":
        return max((encoded * 3 // 4 - 1024) * 10 // 11, 0)
    return encoded // 3


def _maybe_signed(part: MimePart) -> bool:
    """A leaf that may hold opaque-signed S/MIME: a pkcs7-mime type with ``smime-type``
    ``signed-data`` or none (the data says which: encrypted mail is noted as such), or an
    ``application/octet-stream`` named ``*.p7m``."""
    if part.ctype in _PKCS7_TYPES:
        declared = part.params.get("smime-type", "").strip().lower()
        return declared in ("", "signed-data", *_ENCRYPTED)
    return part.ctype == "application/octet-stream" and part.filename.lower().endswith(".p7m")


_PIECE = 1 << 16
"""Bytes scanned at a time by the whole-message checks below (bounds their extra memory)."""


def _base64_decoder(
    raw: bytes, start: int, end: int, invalid: bool
) -> Callable[[memoryview], bytes]:
    """The decoder for the base64 body ``raw[start:end]``: ``binascii.a2b_base64`` (RFC 2045
    section 6.8: characters outside the alphabet ignored), or the same decoding by
    ``pybase64`` (the optional ``fast`` extra) where the two give the same bytes, or raise
    ``binascii.Error`` both: a body of the alphabet and white space only, its ``=`` padding
    (if any) at the end, followed by white space only. Elsewhere they may differ
    (``binascii`` stops at a group's full padding, ``pybase64`` 1.5 reads on: ``QUI=QUJD``
    is ``AB`` to the one, ``Incorrect padding`` to the other), so such a body keeps
    ``binascii``'s reading. Linear, and copies nothing: the body after its first ``=`` is
    searched in place."""
    if _fast_b64decode is None or invalid:
        return binascii.a2b_base64
    padding = raw.find(b"=", start, end)
    if padding >= 0 and _AFTER_PADDING.search(raw, padding, end) is not None:
        return binascii.a2b_base64
    return _fast_b64decode


_TEXT_SAMPLE = 4096
"""Bytes of a base64 body :func:`_written_as_text` looks at."""


def _written_as_text(raw: bytes, start: int, end: int) -> bool:
    """True when a body declared base64 (``raw[start:end]``), which holds bytes outside its
    alphabet (punctuation), is plainly words: most of its first lines hold three or more words
    apart. Decoding such text would only turn a person's words into noise; base64 that a
    broken mail program spaced out (no byte outside the alphabet) is never asked."""
    lines = [
        line for line in raw[start : min(end, start + _TEXT_SAMPLE)].splitlines() if line.strip()
    ]
    worded = sum(1 for line in lines if len(line.split()) >= 3)
    return bool(lines) and worded * 2 > len(lines)


def _has_invalid_base64(raw: bytes, start: int, end: int) -> bool:
    """True when ``raw[start:end]`` holds bytes outside base64 and whitespace (64 KiB pieces,
    so a large attachment is never copied whole)."""
    step = _PIECE
    return any(
        raw[offset : min(offset + step, end)].translate(None, _B64_ALPHABET)
        for offset in range(start, end, step)
    )


def has_line_over(raw: bytes, limit: int, start: int = 0, end: int | None = None) -> bool:
    """True when a line of ``raw[start:end]`` (the bytes between two ``\\n``, a CR counted)
    is longer than ``limit`` bytes: ``longest_line(raw[start:end]) > limit``, without
    splitting (or copying) ``raw`` into lines.

    Each step looks for the last line break within the next ``limit + 1`` bytes from the
    start of a line: without one, that line is too long; with one, every line that starts
    before it ends in the window, so the next step starts after it. Steps of up to
    ``limit + 1`` bytes (``bytes.rfind``), no copies: linear; 0.3 ms for a 700 KB message with
    base64 lines, where :func:`longest_line` takes 1.1 ms. Raises ``ValueError`` for a
    negative ``limit``.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    size = len(raw) if end is None else end
    while size - start > limit:
        newline = raw.rfind(b"\n", start, start + limit + 1)
        if newline < 0:
            return True
        start = newline + 1
    return False


def longest_line(raw: bytes) -> int:
    """Length of the longest line, read in 64 KiB pieces so memory stays small (linear): the
    lines of a piece, as separate objects, take about one and a half times its size."""
    longest = carry = 0
    step = _PIECE
    for offset in range(0, len(raw), step):
        lines = raw[offset : offset + step].split(b"\n")
        if len(lines) == 1:
            carry += len(lines[0])
            continue
        longest = max(longest, carry + len(lines[0]), max(map(len, lines[1:-1]), default=0))
        carry = len(lines[-1])
    return max(longest, carry)


def cut_lines(text: str, limit: int) -> str:
    """Cut every line of ``text`` to ``limit`` characters (linear)."""
    lines = text.split("\n")
    if max(map(len, lines)) <= limit:
        return text
    return "\n".join(line[:limit] for line in lines)
