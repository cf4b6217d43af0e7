"""uuencoded files: blocks written into a text body, and bodies sent with a uuencode transfer
encoding (``x-uuencode``, ``uuencode``, ``x-uue``), decoded with ``binascii.a2b_uu`` a line
at a time.

A block is ``begin MODE NAME`` (MODE three or four octal digits), data lines, a line holding
only a backquote or a space (length zero), and ``end`` (POSIX ``uuencode``). The reading of a
block in text is strict, so that prose is never taken for one: every line between ``begin``
and ``end`` must be a data line, whose first character gives its length (at most 45 bytes)
and whose other characters all lie between space and backquote (so no lower-case letter);
it may lack up to four trailing spaces (a relay strips them) and carry one checksum
character more; the padding characters after its bytes are read as zeros, whatever the
encoder wrote there.
Anything else leaves the text as it is. Both readers are linear in their input.
"""

from __future__ import annotations

import binascii
import re

import attrs

__all__ = ["UuFile", "decode_body", "split_blocks"]

_BEGIN = re.compile(r"^begin[ \t]+[0-7]{3,4}[ \t]+(\S[^\r\n]*)\r?$", re.MULTILINE)
_DATA = re.compile(r"[\x20-\x60]+")
_END = re.compile(r"end[ \t]*\r?")
_MAX_LINE_BYTES = 45  # what one uuencoded line carries (the length character "M")
_MAX_CUT_SPACES = 4  # trailing spaces (zero bits) a relay may have cut from a data line


@attrs.frozen
class UuFile:
    """A uuencoded file found in a text: its name, its bytes, and where its block lay."""

    filename: str
    data: bytes
    start: int  # offset of the ``begin`` line in the text
    end: int  # offset just past the ``end`` line (and its line break)


def _data_line(line: str) -> bytes | None:
    """The bytes of one uuencoded data line, or None when it is not one (strict)."""
    if not _DATA.fullmatch(line):
        return None
    size = (ord(line[0]) - 32) & 0x3F
    if size > _MAX_LINE_BYTES:
        return None
    needed = 1 + (size + 2) // 3 * 4
    if not needed - _MAX_CUT_SPACES <= len(line) <= needed + 1:  # one checksum character
        return None
    carried = 1 + (size * 4 + 2) // 3  # the characters that hold the bytes; the rest pad
    try:  # padding as zeros (encoders differ), trailing spaces a relay cut put back
        return binascii.a2b_uu(line[:carried].ljust(needed))
    except binascii.Error:  # pragma: no cover - every character is in range by now
        return None


def _line_at(text: str, pos: int) -> tuple[str, int]:
    """The line starting at ``pos`` (without its line end) and where the next one starts."""
    newline = text.find("\n", pos)
    stop = len(text) if newline < 0 else newline
    return text[pos:stop].rstrip("\r"), stop + 1


def _block_at(text: str, match: re.Match[str]) -> UuFile | None:
    """The block whose ``begin`` line ``match`` found, read strictly; None if it is none.

    After ``begin``: data lines, then ``end``, with the zero-length line (a backquote, a
    space, or nothing where a relay cut the space) before it or not; a file of no data
    needs the zero-length line, so that ``begin 644 x`` then ``end`` is no file.
    """
    pos = match.end() + 1  # past the begin line's line break
    pieces: list[bytes] = []
    terminated = False  # the zero-length line was read: only "end" may follow
    while pos < len(text):
        line, pos = _line_at(text, pos)
        if _END.fullmatch(line) is not None:
            if not (pieces or terminated):
                return None
            name = match[1].rstrip(" \t")
            return UuFile(name, b"".join(pieces), match.start(), min(pos, len(text)))
        if terminated:
            return None
        if line in ("`", " ") or (line == "" and pieces):
            terminated = True
            continue
        data = _data_line(line)
        if data is None:
            return None
        pieces.append(data)
    return None


def split_blocks(text: str, limit: int) -> tuple[str, list[UuFile], bool]:
    """``text`` without its uuencoded blocks (at most ``limit`` of them, the first ones), the
    files they held in order, and whether a block more was left in the text.

    One pass: each ``begin`` line is looked at once, and a block's lines are read once
    (the search goes on after a block, or after a ``begin`` line that starts none).
    """
    files: list[UuFile] = []
    left = False
    pos = 0
    while True:
        match = _BEGIN.search(text, pos)
        if match is None:
            break
        found = _block_at(text, match)
        if found is None:
            pos = match.end()
            continue
        if len(files) >= limit:
            left = True
            break
        files.append(found)
        pos = found.end
    if not files:
        return text, files, left
    kept: list[str] = []
    last = 0
    for found in files:
        kept.append(text[last : found.start])
        last = found.end
        if text.startswith("\n", last) and (not kept[-1].strip() or kept[-1].endswith("\n\n")):
            last += 1  # one blank line where the block was, not two
    kept.append(text[last:])
    return "".join(kept), files, left


def decode_body(data: bytes) -> bytes | None:
    """The bytes of a body sent with a uuencode transfer encoding, or None when it is not
    uuencoded. The ``begin`` and ``end`` lines are optional here (the part's headers already
    say what it is); blank lines are skipped; any other line must be a data line."""
    pieces: list[bytes] = []
    lines = data.split(b"\n")
    begun = False
    for raw_line in lines:
        line = raw_line.rstrip(b"\r").decode("latin-1")
        if not begun and _BEGIN.fullmatch(line):
            begun = True
            continue
        if _END.fullmatch(line):
            break
        if line.strip() == "" or line in ("`", " "):
            continue
        decoded = _data_line(line)
        if decoded is None:
            return None
        pieces.append(decoded)
    return b"".join(pieces)
