"""Outlook's ``winmail.dat`` (TNEF, ``application/ms-tnef``): the files and the text inside.

Outlook sending "Rich Text" mail puts the real attachments, and often the only copy of the
text, into one ``winmail.dat`` part ([MS-OXTNEF]). Nobody at a desk can open that file, so
intake takes the files out beside it and keeps its text for a body that has none.

:func:`read_tnef` is our own reader, small, bounded and linear (the shape of
:mod:`~asm_email_rules.smime`'s BER reader): it walks the attribute stream once (each
attribute's header read once, its value sliced, never the rest of the stream), reads the
MAPI property lists of the message and of each attachment ([MS-OXTNEF] 2.1.3.4) in one pass
each, and undoes the RTF compression of ``PR_RTF_COMPRESSED`` ([MS-OXRTFCP]) with a 4 KiB
dictionary. ``tnefparse`` was not used: it slices the rest of the stream for every
attribute (quadratic: a hostile 15 MB file of 12-byte attributes copies terabytes), follows
embedded messages without a depth limit, and loops over a recipient count read from the data.

Any shape it does not understand raises :class:`~asm_email_rules.errors.TnefError`; nothing
else is raised. What was read before the fault is not returned: the caller keeps the
``winmail.dat`` as it came, with a note.
"""

from __future__ import annotations

import struct

import attrs

from asm_email_rules.charsets import code_page_codec
from asm_email_rules.errors import TnefError

__all__ = ["MAX_FILES", "TnefContents", "TnefFile", "decompress_rtf", "is_tnef", "read_tnef"]

SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian ([MS-OXTNEF] 2.1.3.1)
MAX_FILES = 500
"""Files taken out of one ``winmail.dat`` at most (the message's part limit applies too)."""
_MAX_PROPERTIES = 100_000  # MAPI properties read in one list (each takes >= 8 bytes anyway)

_LVL_MESSAGE = 1
_LVL_ATTACHMENT = 2
_ATT_BODY = 0x0002800C
_ATT_MAPI_PROPS = 0x00069003
_ATT_ATTACH_REND_DATA = 0x00069002  # starts a new attachment
_ATT_ATTACH_TITLE = 0x00018010
_ATT_ATTACH_DATA = 0x0006800F
_ATT_ATTACHMENT = 0x00069005  # the attachment's MAPI properties
_ATT_OEM_CODEPAGE = 0x00069007

_PR_BODY = 0x1000
_PR_RTF_COMPRESSED = 0x1009
_PR_BODY_HTML = 0x1013
_PR_INTERNET_CPID = 0x3FDE
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E

_PT_LONG = 0x0003
_PT_STRING8 = 0x001E
_PT_UNICODE = 0x001F
_PT_BINARY = 0x0102
_PT_OBJECT = 0x000D
_MULTI = 0x1000
_VARIABLE = (_PT_STRING8, _PT_UNICODE, _PT_BINARY, _PT_OBJECT)
_FIXED = {
    0x0001: 4,  # null
    0x0002: 4,  # short, padded
    0x0003: 4,  # long
    0x0004: 4,  # float
    0x0005: 8,  # double
    0x0006: 8,  # currency
    0x0007: 8,  # application time
    0x000A: 4,  # error
    0x000B: 4,  # boolean, padded
    0x0014: 8,  # 64-bit integer
    0x0040: 8,  # file time
    0x0048: 16,  # GUID
}
"""Bytes of one value of each fixed-size MAPI property type ([MS-OXTNEF] 2.1.3.4)."""


@attrs.frozen
class TnefFile:
    """One file from a ``winmail.dat``: its name as Outlook gave it (may be empty), its MIME
    type when Outlook recorded one (else empty), and its bytes."""

    name: str
    mime_type: str
    data: bytes = attrs.field(repr=False)


@attrs.frozen
class TnefContents:
    """What a ``winmail.dat`` holds: the message text (plain, HTML, RTF; each may be empty),
    the attached files, in order, and how many files were left inside it."""

    text: str = ""
    html: str = ""
    rtf: bytes = b""
    files: tuple[TnefFile, ...] = ()
    left_inside: int = 0
    """Files not returned: past :data:`MAX_FILES`, or over the size limit."""


def is_tnef(data: bytes) -> bool:
    """True when ``data`` starts with the TNEF signature."""
    return data[:4] == SIGNATURE


@attrs.define
class _Attachment:
    title: str = ""
    long_name: str = ""
    short_name: str = ""
    mime_type: str = ""
    data: bytes = b""


def read_tnef(data: bytes, max_file_size: int) -> TnefContents:
    """The text and files of the TNEF stream ``data`` (a decoded ``winmail.dat``).

    Files over ``max_file_size`` bytes and files past :data:`MAX_FILES` are not returned,
    only counted (``left_inside``: the caller notes it, the ``winmail.dat`` keeps them), and
    the attributes of those past :data:`MAX_FILES` are checked but not kept: memory stays
    bounded by the stream, not by its count of rendering records (11 bytes each). Raises
    TnefError for anything that is not a well-formed TNEF stream. Linear in ``len(data)``.
    """
    if not is_tnef(data):
        raise TnefError("no TNEF signature")
    codepage = "cp1252"
    text = html = ""
    rtf = b""
    attachments: list[_Attachment] = []
    # an attachment past MAX_FILES is read into a scratch record, counted if it held a file
    scratch: _Attachment | None = None
    left = 0
    pos, end = 6, len(data)  # signature, then a 16-bit key
    while pos < end:
        if pos + 9 > end:
            raise TnefError("truncated attribute header")
        level = data[pos]
        attribute, length = struct.unpack_from("<II", data, pos + 1)
        start = pos + 9
        stop = start + length
        if stop + 2 > end:
            raise TnefError("attribute longer than the stream")
        value = data[start:stop]
        pos = stop + 2  # the 16-bit checksum is not checked: the bytes are read either way
        if attribute == _ATT_OEM_CODEPAGE and length >= 4:
            codepage = code_page_codec(struct.unpack_from("<I", value)[0], codepage)
        elif attribute == _ATT_ATTACH_REND_DATA:
            if scratch is not None and scratch.data:
                left += 1
            if len(attachments) < MAX_FILES:
                attachments.append(_Attachment())
            else:
                scratch = _Attachment()
        elif level == _LVL_ATTACHMENT:
            if not attachments:
                raise TnefError("attachment attribute before its rendering data")
            current = attachments[-1] if scratch is None else scratch
            _attachment_attribute(current, attribute, value, codepage)
        elif attribute == _ATT_BODY:
            text = value.decode(codepage, "replace").rstrip("\x00")
        elif attribute == _ATT_MAPI_PROPS and level == _LVL_MESSAGE:
            props = _properties(value, codepage)
            cpid = props.get(_PT_LONG << 16 | _PR_INTERNET_CPID)  # keys carry the type
            internet = codepage
            if cpid:
                internet = code_page_codec(int.from_bytes(cpid[:4], "little"), codepage)
            for key, raw in props.items():
                if key == _PR_BODY | _PT_UNICODE << 16:
                    text = raw.decode("utf-16-le", "replace").rstrip("\x00")
                elif key == _PR_BODY | _PT_STRING8 << 16:
                    text = raw.decode(internet, "replace").rstrip("\x00")
                elif key & 0xFFFF == _PR_BODY_HTML:
                    encoding = "utf-16-le" if key >> 16 == _PT_UNICODE else internet
                    html = raw.decode(encoding, "replace").rstrip("\x00")
                elif key & 0xFFFF == _PR_RTF_COMPRESSED:
                    rtf = raw
    if scratch is not None and scratch.data:
        left += 1
    files = []
    for attachment in attachments:
        if attachment.data and len(attachment.data) <= max_file_size:
            name = attachment.long_name or attachment.title or attachment.short_name
            files.append(TnefFile(name, attachment.mime_type, attachment.data))
        elif attachment.data:
            left += 1
    return TnefContents(text, html, rtf, tuple(files), left)


def _attachment_attribute(attachment: _Attachment, attribute: int, value: bytes, cp: str) -> None:
    """Read one attachment-level attribute into ``attachment``."""
    if attribute == _ATT_ATTACH_TITLE:
        attachment.title = value.decode(cp, "replace").rstrip("\x00").strip()
    elif attribute == _ATT_ATTACH_DATA:
        attachment.data = value
    elif attribute == _ATT_ATTACHMENT:
        for key, raw in _properties(value, cp).items():
            tag, kind = key & 0xFFFF, key >> 16
            if tag == _PR_ATTACH_DATA and kind == _PT_BINARY:
                attachment.data = raw
            elif tag in (_PR_ATTACH_LONG_FILENAME, _PR_ATTACH_FILENAME, _PR_ATTACH_MIME_TAG):
                encoding = "utf-16-le" if kind == _PT_UNICODE else cp
                decoded = raw.decode(encoding, "replace").rstrip("\x00").strip()
                if tag == _PR_ATTACH_LONG_FILENAME:
                    attachment.long_name = decoded
                elif tag == _PR_ATTACH_FILENAME:
                    attachment.short_name = decoded
                else:
                    attachment.mime_type = decoded.lower()


def _properties(data: bytes, codepage: str) -> dict[int, bytes]:
    """The MAPI property list ``data`` as ``{type << 16 | id: first value's bytes}`` for the
    variable-size single values (strings, binaries, objects) and the first fixed value of
    the others; named properties are skipped over. One pass; every step consumes at least
    four bytes or raises TnefError."""
    end = len(data)
    if end < 4:
        raise TnefError("truncated property list")
    (count,) = struct.unpack_from("<I", data, 0)
    if count > _MAX_PROPERTIES:
        raise TnefError("too many properties")
    pos = 4
    found: dict[int, bytes] = {}

    def take(size: int) -> int:
        nonlocal pos
        if size < 0 or pos + size > end:
            raise TnefError("property past the end of its list")
        start = pos
        pos += size
        return start

    for _ in range(count):
        start = take(4)
        kind, tag = struct.unpack_from("<HH", data, start)
        if tag >= 0x8000:  # a named property: its GUID, then a number or a name
            start = take(20)
            if struct.unpack_from("<I", data, start + 16)[0] != 0:
                (size,) = struct.unpack_from("<I", data, take(4))
                take(size + (-size % 4))
            else:
                take(4)
        base = kind & ~_MULTI
        values = 1
        if kind & _MULTI or base in _VARIABLE:
            (values,) = struct.unpack_from("<I", data, take(4))
        for index in range(values):
            if base in _VARIABLE:
                (size,) = struct.unpack_from("<I", data, take(4))
                start = take(size)
                take(-size % 4)
                if base == _PT_OBJECT and size >= 16:
                    start, size = start + 16, size - 16  # the object's interface GUID
                    base_kind = _PT_BINARY
                else:
                    base_kind = base
            elif base in _FIXED:
                size = _FIXED[base]
                start = take(size)
                base_kind = base
            else:
                raise TnefError(f"unknown property type {kind:#06x}")
            if index == 0:
                found.setdefault(base_kind << 16 | tag, data[start : start + size])
    return found


_RTF_PREFIX = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern "
    b"\\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0"
    b"\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
"""The dictionary's initial contents ([MS-OXRTFCP] 2.1.2.1), 207 bytes."""
_COMPRESSED = 0x75465A4C  # "LZFu"
_UNCOMPRESSED = 0x414C454D  # "MELA"


def decompress_rtf(data: bytes, max_size: int) -> bytes:
    """The RTF of a ``PR_RTF_COMPRESSED`` value ([MS-OXRTFCP] 2.2.3), at most ``max_size``
    bytes of it. Linear: each control byte and each reference is read once, and the output
    stops at ``max_size`` or at the size the header declares. Raises TnefError for an unknown
    compression type."""
    if len(data) < 16:
        raise TnefError("compressed RTF header truncated")
    _, raw_size, kind, _ = struct.unpack_from("<IIII", data, 0)
    limit = min(raw_size, max_size)
    if kind == _UNCOMPRESSED:
        return data[16 : 16 + limit]
    if kind != _COMPRESSED:
        raise TnefError("unknown RTF compression")
    window = bytearray(_RTF_PREFIX.ljust(4096, b" "))
    write = len(_RTF_PREFIX)
    out = bytearray()
    pos, end = 16, len(data)
    while pos < end and len(out) < limit:
        control = data[pos]
        pos += 1
        for bit in range(8):
            if pos >= end or len(out) >= limit:
                break
            if not control >> bit & 1:
                byte = data[pos]
                pos += 1
                out.append(byte)
                window[write] = byte
                write = (write + 1) & 0xFFF
                continue
            if pos + 2 > end:
                raise TnefError("compressed RTF reference truncated")
            reference = data[pos] << 8 | data[pos + 1]
            pos += 2
            offset, length = reference >> 4, (reference & 0xF) + 2
            if offset == write:
                return bytes(out)  # the end marker
            for step in range(length):
                byte = window[(offset + step) & 0xFFF]
                out.append(byte)
                window[write] = byte
                write = (write + 1) & 0xFFF
    return bytes(out[:limit])
