"""Adversarial inputs of doubling size up to 10 MB: ``python benchmarks/intake_linear.py``.

Each family is parsed and classified (and its subject parsed, when that module exists) at
sizes doubling from 64 KiB to 10 MB; the script prints seconds per size and the ratio to the
previous size (about 2 means linear, about 4 quadratic) and flags any input over 2 s.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from asm_email_rules.classify import classify
from asm_email_rules.intake import parse_message

try:
    from asm_email_rules.subject import parse_subject
except ImportError:  # written by another engineer; optional here
    parse_subject = None  # type: ignore[assignment]

HEAD = b"From: Jane <jane@example.com>\r\nMessage-ID: <m@example.com>\r\n"
MAX = 10 * 1024 * 1024
BUDGET = 2.0


def repeat(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def folded_header(size: int) -> bytes:
    return HEAD + b"Subject: start\r\n" + repeat(b" folded line\r\n", size) + b"\r\nbody\r\n"


def address_list(size: int) -> bytes:
    addresses = repeat(b"User Name <user@example.com>, ", size)
    return HEAD + b"To: " + addresses + b"last@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


def encoded_subject(size: int) -> bytes:
    return HEAD + b"Subject: " + repeat(b"=?utf-8?B?w6lk?= ", size) + b"\r\n\r\nbody\r\n"


def broken_encoded_subject(size: int) -> bytes:
    return HEAD + b"Subject: " + repeat(b"=?utf-8?q?=?= =?x?B?###?=", size) + b"\r\n\r\nbody\r\n"


def re_prefixes(size: int) -> bytes:
    return HEAD + b"Subject: " + repeat(b"Re: ", size) + b"[CALL#12]\r\n\r\nbody\r\n"


def deep_nesting(size: int) -> bytes:
    unit_len = len(b"--b0000000\r\nContent-Type: multipart/mixed; boundary=b0000000\r\n\r\n")
    depth = max(1, size // unit_len)
    parts = [HEAD, b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    parts.extend(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    parts.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\nbody\r\n" % depth)
    return b"".join(parts)


def many_parts(size: int) -> bytes:
    body = repeat(b"--p\r\nContent-Type: text/csv; name=a.csv\r\n\r\na,b\r\n", size)
    return HEAD + b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + body + b"--p--\r\n"


def one_big_header(size: int) -> bytes:
    return HEAD + b"X-Big: " + b"a" * size + b"\r\nSubject: hi\r\n\r\nbody\r\n"


def quote_line(size: int) -> bytes:
    return HEAD + b"Subject: hi\r\n\r\nreply\r\n" + b">" * size + b"\r\n"


def html_tag_soup(size: int) -> bytes:
    head = HEAD + b"Content-Type: text/html\r\n\r\n"
    return head + repeat(b"<blockquote><a href=x>t<li><p>&amp;<a ", size)


def html_lines(size: int) -> bytes:
    head = HEAD + b"Content-Type: text/html\r\n\r\n"
    return head + repeat(b"<blockquote><p>quoted <a href='https://x.example'>x</a><br>\r\n", size)


def many_references(size: int) -> bytes:
    return HEAD + b"References: " + repeat(b"<a@b> (c) ", size) + b"\r\n\r\nbody\r\n"


def flowed_body(size: int) -> bytes:
    head = HEAD + b"Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\n"
    return head + repeat(b"> > a soft-broken quoted line \r\n", size)


def bare_cr(size: int) -> bytes:
    head = b"From: Jane <jane@example.com>\rSubject: cr\rContent-Type: text/plain\r\r"
    return head + repeat(b"a line ended by a bare CR\r", size)


def long_display_name(size: int) -> bytes:
    name = repeat(b"Surname, Given, Dr. ", size)
    return (
        HEAD.replace(b"From: Jane", b"X-Old: Jane")
        + b"From: "
        + name
        + b"<jane@example.com>\r\n\r\nbody\r\n"
    )


def undeclared_legacy_text(size: int) -> bytes:
    text = "Принтер на третьем этаже не печатает. ".encode("cp1251")
    return HEAD + b"Content-Type: text/plain\r\n\r\n" + repeat(text + b"\r\n", size)


def many_inline_texts(size: int) -> bytes:
    unit = (
        b"--p\r\nContent-Type: text/plain\r\n\r\ntext part\r\n"
        b"--p\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\r\nPNG\r\n"
    )
    return (
        HEAD
        + b"Content-Type: multipart/mixed; boundary=p\r\n\r\n"
        + repeat(unit, size)
        + b"--p--\r\n"
    )


def html_tables(size: int) -> bytes:
    """Outlook-style cells (a paragraph each) in tables nested without end."""
    head = HEAD + b"Content-Type: text/html\r\n\r\n"
    return head + repeat(b"<table><tr><td><p class=MsoNormal>k</p><td><p>v</p>\r\n", size)


def uuencode_lookalikes(size: int) -> bytes:
    """A text body of ``begin`` lines and uuencoded data lines that never reach ``end``."""
    head = HEAD + b"Content-Type: text/plain\r\nSubject: log\r\n\r\n"
    unit = b"begin 644 error.log\r\n" + b"M" + b"A" * 60 + b"\r\n"
    return head + repeat(unit + b"M" + b"B" * 60 + b"\r\n", size)


def smime_chunks(size: int) -> bytes:
    """Opaque-signed S/MIME whose eContent is one-byte BER chunks (indefinite lengths)."""
    data = bytes.fromhex("06092a864886f70d010701")
    signed_data = bytes.fromhex("06092a864886f70d010702")
    econtent = b"\xa0\x80\x24\x80" + repeat(b"\x04\x01x", size * 3 // 4) + b"\0\0\0\0"
    signed = b"\x30\x80\x02\x01\x01\x31\x00\x30\x80" + data + econtent + b"\0\0\0\0"
    der = b"\x30\x80" + signed_data + b"\xa0\x80" + signed + b"\0\0\0\0"
    head = b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
    head += b"Content-Transfer-Encoding: base64\r\nSubject: signed\r\n\r\n"
    return HEAD + head + base64.encodebytes(der).replace(b"\n", b"\r\n")


def spaced_content_types(size: int) -> bytes:
    """Parts whose Content-Type has a word and 8,000 spaces after its type, no ``name=``
    after them (each part took 0.4 s when every space was a start for the missing ``;``)."""
    unit = b"--p\r\nContent-Type: text/plain x" + b" " * 8000 + b"y\r\n\r\nhi\r\n"
    return (
        HEAD
        + b"Content-Type: multipart/mixed; boundary=p\r\n\r\n"
        + repeat(unit, size)
        + b"--p--\r\n"
    )


FAMILIES: list[tuple[str, Callable[[int], bytes]]] = [
    ("10^5 folded header lines", folded_header),
    ("addresses in To", address_list),
    ("encoded-word subject", encoded_subject),
    ("broken encoded-words", broken_encoded_subject),
    ("'Re: ' prefixes", re_prefixes),
    ("deep multipart nesting", deep_nesting),
    ("many parts", many_parts),
    ("one huge header", one_big_header),
    ("a line of '>'", quote_line),
    ("HTML tag soup body", html_tag_soup),
    ("HTML body with many lines", html_lines),
    ("References with comments", many_references),
    # issue 9
    ("format=flowed quoted body (delsp=yes)", flowed_body),
    ("bare-CR line ends", bare_cr),
    ("long display name with commas", long_display_name),
    ("undeclared windows-1251 body", undeclared_legacy_text),
    ("text and inline image parts", many_inline_texts),
    # field trial
    ("HTML tables nested, a paragraph per cell", html_tables),
    ("S/MIME signed data in one-byte BER chunks", smime_chunks),
    ("uuencode begin lines that never end", uuencode_lookalikes),
    # review of the field trial's code
    ("Content-Types of 8,000 spaces after the type", spaced_content_types),
]


def run(raw: bytes) -> float:
    start = time.perf_counter()
    email = parse_message(raw)
    classify(email)
    if parse_subject is not None:
        parse_subject(email.subject)
    return time.perf_counter() - start


def main() -> int:
    sizes = [64 * 1024 << i for i in range(8)] + [MAX]
    slow = 0
    for name, make in FAMILIES:
        print(f"\n== {name}")
        previous = None
        for size in sizes:
            raw = make(size)
            seconds = min(run(raw), run(raw)) if len(raw) < 1_000_000 else run(raw)
            ratio = f"x{seconds / previous:5.2f}" if previous else "      "
            flag = "  OVER 2 s" if seconds > BUDGET else ""
            print(f"  {len(raw):>10,} bytes  {seconds * 1e3:9.1f} ms  {ratio}{flag}")
            slow += seconds > BUDGET
            previous = seconds
    print(f"\n{slow} input(s) over {BUDGET} s")
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
