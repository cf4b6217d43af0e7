"""Intake speed and memory next to the stdlib, in one process: ``python benchmarks/intake.py``.

For each message (2 KB plain, 20 KB text+HTML, 300 KB and 5 MB with attachments) it times
our parse + classify (+ subject + truncation when those modules exist), the stdlib ``compat32``
parse-and-walk, ``policy.default`` parse-and-walk, and ``policy.default`` + mail-parser-reply,
and prints ratios against compat32 and tracemalloc peaks.
"""

from __future__ import annotations

import base64
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from email import policy
from email.message import Message
from email.parser import BytesParser

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from asm_email_rules.classify import classify
from asm_email_rules.intake import parse_message

try:
    from asm_email_rules.subject import parse_subject
except ImportError:  # written by another engineer; optional here
    parse_subject = None  # type: ignore[assignment]
try:
    from asm_email_rules.truncate import truncate_reply
except ImportError:
    truncate_reply = None  # type: ignore[assignment]
try:
    from mailparser_reply import EmailReplyParser
except ImportError:
    EmailReplyParser = None

WORDS = [
    *("printer", "jam", "floor", "three", "toner", "request", "laptop", "password", "reset"),
    *("account", "locked", "vpn", "access", "meeting", "room", "screen", "broken", "please"),
    *("help", "urgent", "monitor", "keyboard", "license", "install", "update"),
]


def prose(rng: random.Random, size: int) -> str:
    """Readable-ish text of about ``size`` characters in 72-column lines."""
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(11))[:72]
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


HEADERS = (
    "Return-Path: <jane.doe@example.com>\n"
    "Received: from mx1.example.com (mx1.example.com [192.0.2.10])\n"
    "\tby mail.desk.example (Postfix) with ESMTPS id 4F1A2B3C4D\n"
    "\tfor <help@desk.example>; Tue,  4 Mar 2025 09:15:02 +0000 (UTC)\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s1;\n"
    "\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n"
    "\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaGFzIHRoZSByaWdodCBzaGFwZQ==\n"
    "From: Jane Doe <jane.doe@example.com>\n"
    "To: Service Desk <help@desk.example>\n"
    "Cc: Bob Smith <bob.smith@example.com>\n"
    "Subject: Re: [CALL#1234] Printer on floor 3 keeps jamming\n"
    "Date: Tue, 4 Mar 2025 09:15:00 +0000\n"
    "Message-ID: <CAB4xQ1=abc123@mail.example.com>\n"
    "In-Reply-To: <asm.call-1234.k3j4h5@desk.example>\n"
    "References: <asm.call-1234.k3j4h5@desk.example>\n"
    "MIME-Version: 1.0\n"
)
REPLY_TAIL = (
    "\n\nOn Mon, 3 Mar 2025 at 17:02, Service Desk <help@desk.example> wrote:\n"
    "> ##- Please type your reply above this line -##\n> Call 1234 has been logged.\n"
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def message_plain(rng: random.Random) -> bytes:
    body = prose(rng, 1000) + REPLY_TAIL
    return crlf(HEADERS + "Content-Type: text/plain; charset=utf-8\n\n" + body)


def message_alternative(rng: random.Random) -> bytes:
    text = prose(rng, 6000) + REPLY_TAIL
    html = "".join(f"<p>{line}</p>\n" for line in prose(rng, 11000).split("\n"))
    return crlf(
        HEADERS + 'Content-Type: multipart/alternative; boundary="alt"\n\n'
        "--alt\nContent-Type: text/plain; charset=utf-8\n\n" + text + "\n"
        "--alt\nContent-Type: text/html; charset=utf-8\n\n<html><body>" + html + "</body></html>\n"
        "--alt--\n"
    )


def message_attachments(rng: random.Random, sizes: list[int]) -> bytes:
    parts = [
        "--mix\nContent-Type: multipart/alternative; boundary=alt\n\n"
        "--alt\nContent-Type: text/plain; charset=utf-8\n\n" + prose(rng, 3000) + REPLY_TAIL + "\n"
        "--alt\nContent-Type: text/html; charset=utf-8\n\n<p>" + prose(rng, 5000) + "</p>\n"
        "--alt--\n"
    ]
    for number, size in enumerate(sizes):
        data = base64.encodebytes(rng.randbytes(size)).decode("ascii")
        parts.append(
            f'--mix\nContent-Type: application/pdf; name="report-{number}.pdf"\n'
            f'Content-Disposition: attachment; filename="report-{number}.pdf"\n'
            "Content-Transfer-Encoding: base64\n\n" + data
        )
    return crlf(
        HEADERS + 'Content-Type: multipart/mixed; boundary="mix"\n\n' + "".join(parts) + "--mix--\n"
    )


# --------------------------------------------------------------------------- contenders


def ours(raw: bytes) -> object:
    email = parse_message(raw)
    return classify(email, own_addresses=("help@desk.example",))


def ours_full(raw: bytes) -> object:
    email = parse_message(raw)
    result = classify(email, own_addresses=("help@desk.example",))
    if parse_subject is not None:
        parse_subject(email.subject)
    if truncate_reply is not None:
        truncate_reply(email.body, marker="##- Please type your reply above this line -##")
    return result


def compat32_walk(raw: bytes) -> object:
    msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    _ = msg["from"], msg["subject"], msg["message-id"]
    for part in msg.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)
    return msg


def default_walk(raw: bytes) -> object:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    _ = msg["from"].addresses, msg["subject"], msg["to"], msg["cc"]
    for part in msg.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)
    return msg


def default_reply_parser(raw: bytes) -> object:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    _ = msg["from"].addresses, msg["subject"]
    body = msg.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if isinstance(body, Message) else ""
    for part in msg.iter_attachments():
        part.get_content()
    if EmailReplyParser is not None:
        EmailReplyParser(languages=["en"]).parse_reply(text=text)
    return msg


def per_call(fn: Callable[[bytes], object], raw: bytes, budget: float) -> float:
    """Median seconds per call over several timed batches (after one warm-up call)."""
    fn(raw)
    start = time.perf_counter()
    fn(raw)
    one = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(budget / 7 / one))
    samples = []
    for _ in range(7):
        gc.collect()
        start = time.perf_counter()
        for _ in range(number):
            fn(raw)
        samples.append((time.perf_counter() - start) / number)
    return min(statistics.median(samples), min(samples) * 1.05)


def peak(fn: Callable[[bytes], object], raw: bytes) -> int:
    gc.collect()
    tracemalloc.start()
    fn(raw)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:9.0f} us" if seconds < 0.01 else f"{seconds * 1e3:9.1f} ms"


def main() -> None:
    rng = random.Random(1234)
    messages = {
        "2 KB plain": message_plain(rng),
        "20 KB text+HTML": message_alternative(rng),
        "300 KB attachment": message_attachments(rng, [210_000]),
        "5 MB attachments": message_attachments(rng, [2_400_000, 1_300_000]),
    }
    contenders: list[tuple[str, Callable[[bytes], object]]] = [
        ("compat32 parse+walk", compat32_walk),
        ("ours: parse_message + classify", ours),
        ("ours + parse_subject + truncate_reply", ours_full),
        ("policy.default parse+walk", default_walk),
        ("policy.default + mail-parser-reply", default_reply_parser),
    ]
    print(f"python {sys.version.split()[0]}; ratios are against compat32 parse+walk")
    print(
        f"subject module: {'yes' if parse_subject is not None else 'no'}; truncate module: "
        f"{'yes' if truncate_reply is not None else 'no'}"
    )
    for label, raw in messages.items():
        budget = 1.0 if len(raw) < 1_000_000 else 3.0
        print(f"\n== {label} ({len(raw):,} bytes)")
        base_time = base_peak = 0.0
        for name, fn in contenders:
            seconds = per_call(fn, raw, budget)
            memory = peak(fn, raw)
            if fn is compat32_walk:
                base_time, base_peak = seconds, memory
            print(
                f"  {name:42s} {fmt(seconds)}  x{seconds / base_time:5.2f}   "
                f"peak {memory / 1024:9.0f} KiB  x{memory / base_peak:5.2f}"
            )


if __name__ == "__main__":
    main()
