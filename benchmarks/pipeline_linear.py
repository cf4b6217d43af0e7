"""Whole pipeline, adversarial input: ``python benchmarks/pipeline_linear.py``.

Every input goes through ``process`` (parse, classify, subject, sender, decide with truncation
on, apply to the in-memory reference, reply) as a reply to one of our calls, at sizes doubling
from 64 KiB to 10 MB. Prints seconds per size and the ratio to the previous size (about 2 is
linear) and flags anything over the 2 s budget: any input up to 10 MB is decided or rejected
within 2 s.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.errors import MessageParseError
from asm_email_rules.pipeline import process
from asm_email_rules.sample import UMA, sample_mailbox, seed_sample_desk
from asm_email_rules.settings import SystemSettings
from intake_linear import FAMILIES as INTAKE_FAMILIES

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAX = 10 * 1024 * 1024
BUDGET = 2.0
MAILBOX = sample_mailbox(auto_reply=True, create_calls_anonymously=True)
SYSTEM = SystemSettings(truncate_incoming_emails=True)
REPLY_HEAD = (
    f"From: {UMA.email}\r\nTo: helpdesk@desk.example\r\nSubject: Re: [CALL#100] printer\r\n"
    "Message-ID: <adversary@corp.example>\r\n\r\n"
).encode()


def body_of(unit: bytes) -> Callable[[int], bytes]:
    def make(size: int) -> bytes:
        return REPLY_HEAD + b"Thanks.\n\n" + unit * max(1, size // len(unit))

    return make


BODY_FAMILIES: list[tuple[str, Callable[[int], bytes]]] = [
    ("reply body: blank lines", body_of(b"\n")),
    ("reply body: '> ' lines", body_of(b"> x\n")),
    ("reply body: near-miss attributions", body_of(b"On Mon, 2 Nov 2026, Bob wrote\n")),
    ("reply body: '-- ' delimiters", body_of(b"-- \n")),
    ("reply body: Outlook header labels", body_of(b"From: a\nSent: b\nTo: c\n")),
    ("reply body: 'On ' + letters", lambda size: REPLY_HEAD + b"On " + b"a" * size),
    ("reply body: a line of dashes", lambda size: REPLY_HEAD + b"-" * size + b"\n"),
]


def run(raw: bytes) -> float:
    repository = InMemoryRepository()
    seed_sample_desk(repository)
    start = time.perf_counter()
    with contextlib.suppress(MessageParseError):  # rejected with the typed error: an outcome
        process(raw, repository, RecordingMailer(), MAILBOX, SYSTEM, NOW)
    return time.perf_counter() - start


def main() -> int:
    sizes = [64 * 1024 << i for i in range(8)] + [MAX]
    slow = 0
    worst = 0.0
    for name, make in [*BODY_FAMILIES, *INTAKE_FAMILIES]:
        print(f"\n== {name}")
        previous = None
        for size in sizes:
            raw = make(size)
            seconds = run(raw)
            ratio = f"x{seconds / previous:5.2f}" if previous else "      "
            flag = "  OVER 2 s" if seconds > BUDGET else ""
            print(f"  {len(raw):>10,} bytes  {seconds * 1e3:9.1f} ms  {ratio}{flag}")
            slow += seconds > BUDGET
            worst = max(worst, seconds)
            previous = seconds
    print(f"\nslowest: {worst:.2f} s; {slow} input(s) over {BUDGET} s")
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
