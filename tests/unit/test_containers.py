"""Text and files that arrive wrapped: Outlook's winmail.dat (TNEF).

Before, the files inside winmail.dat reached nobody."""

from __future__ import annotations

import base64
import struct
import time

from asm_email_rules.intake import parse_message
from asm_email_rules.intake_notes import IntakeNoteKind
from asm_email_rules.settings import Limits
from asm_email_rules.tnef import decompress_rtf, read_tnef

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


def mapi(props: list[tuple[int, int, bytes]]) -> bytes:
    """A MAPI property list of variable-size single values (type, id, bytes)."""
    out = struct.pack("<I", len(props))
    for kind, tag, value in props:
        out += struct.pack("<HHII", kind, tag, 1, len(value)) + value + b"\0" * (-len(value) % 4)
    return out


def tnef(
    *, body: str | None = None, rtf: bytes | None = None, files: tuple[tuple[str, bytes], ...] = ()
) -> bytes:
    """A winmail.dat as Outlook writes one: version, code page, message class, the body's MAPI
    properties, then per file its rendering data, title and data."""
    out = b"\x78\x9f\x3e\x22" + b"\x34\x12"
    out += attribute(1, 0x00089006, struct.pack("<I", 0x00010000))
    out += attribute(1, 0x00069007, struct.pack("<II", 1252, 0))
    out += attribute(1, 0x00078008, b"IPM.Microsoft Mail.Note\0")
    props = []
    if body is not None:
        props.append((0x001E, 0x1000, body.encode("cp1252") + b"\0"))
    if rtf is not None:
        props.append((0x0102, 0x1009, rtf))
    if props:
        out += attribute(1, 0x00069003, mapi(props))
    for name, data in files:
        out += attribute(2, 0x00069002, b"\0" * 14)
        out += attribute(2, 0x00018010, name.encode("cp1252") + b"\0")
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


def test_broken_winmail_dat_is_kept_as_it_came_with_a_note() -> None:
    data = tnef(files=(("report.pdf", PDF),))[:-40]  # cut inside the file's data
    email = parse_message(message("Figures", mixed(TEXT + "See attached.", winmail_part(data))))
    assert [(a.filename, a.data) for a in email.attachments] == [("winmail.dat", data)]
    assert IntakeNoteKind.TNEF_NOT_READ in [note.kind for note in email.notes]


def test_tnef_files_count_against_the_part_limit() -> None:
    data = tnef(files=tuple((f"f{i}.txt", b"x") for i in range(5)))
    raw = message("Many", mixed(TEXT + "files", winmail_part(data)))
    email = parse_message(raw, limits=Limits(max_part_count=4))
    assert [a.filename for a in email.attachments] == ["winmail.dat", "f0.txt", "f1.txt"]


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
