"""The polling service end to end, next to a bare floor loop and django-helpdesk, in one run.

    python benchmarks/service.py [N ...] [--skip imap,peer] [--peer-limit M] [--profile FILE]
        [--repeat K] [--warmup W] [--sink-without-pipelining] [--sink-without-chunking]
        [--sink-rtt-ms N] [--imap-rtt-ms N] [--replies-in-flight N]

For each N (default 2000 and 10000) it builds N messages, a fixed-seed mix of what a service
desk mailbox receives:

    new requests from known users and from unknown senders, replies to our own replies (tag
    in the subject, In-Reply-To our Message-ID, two levels of quoted history with the reply
    marker), HTML-only requests, requests with an attachment of 50 KB to 1 MB,
    out-of-office replies, bounces (multipart/report DSN) and mailing-list mail

and times, on the same messages, each in a fresh store:

- ``floor``: the bare loop: read each Maildir file, parse it with the stdlib ``compat32``
  parser, store sender, subject, Message-ID, date, the first text part and every attachment
  (decoded) in SQLite (WAL, synchronous=NORMAL) in one transaction, delete the file.
- ``maildir``: ours, ``PollingService.poll_once`` on a Maildir account into the SQLite store,
  replies recorded but not sent (no mailer).
- ``maildir+accept``: the same with every reply handed to a mailer that renders it as the
  SMTP mailer does and accepts it at once, with no server (``AcceptingMailer``): what replies
  cost in the library itself (the outbox's claims and records, the reply pump's thread, the
  rendering), without SMTP or a sink sharing the machine. The report sets it beside the
  10x-django-helpdesk line: the least replies can cost here.
- ``maildir+smtp``: the same with every reply sent to a counting aiosmtpd sink on loopback
  (its own process, so it does not share our interpreter lock; its EHLO offers PIPELINING and
  CHUNKING as real servers do, ``--sink-without-pipelining`` / ``--sink-without-chunking``
  leave them out; ``--sink-rtt-ms N`` holds its traffic as a server N ms away would).
  ``--replies-in-flight N`` runs our columns with that ``replies_in_flight`` instead of the
  library's default (2), the setting that trades reply throughput against the replies a crash
  leaves to resend (docs/operators.md, "Choosing ``replies_in_flight``").
- ``imap``: ours on an IMAP account of a Dovecot on loopback (started as the integration tests
  start it), no mailer; ``--imap-rtt-ms N`` holds its traffic as a server N ms away would.
- ``helpdesk``: django-helpdesk's ``get_email`` (``process_email``) on its "local directory"
  mailbox, on SQLite (WAL, synchronous=NORMAL) with replies to the same sink, in a separate
  process with the minimal Django project in ``benchmarks/helpdesk_peer``. Needs the optional
  ``bench-peer`` extra; skipped, with the reason, when it is not installed.

The store starts with the sample desk plus 1,000 users, 1,000 open calls and the Message-IDs
of our earlier replies about them (what the replies in the mix answer). Printed per column:
ms per message (mean, and per kind of message), messages per second, peak memory next to the
largest message, and the ratios the issue sets goals for. The notes say, for our columns, how
many times the kernel preempted the column's process during its timed pass (involuntary
context switches: on a machine of few cores, the sink, our reply worker and our reading take
turns), and for the columns that send, the CPU time the sink used per message it got (once
it was ready, the warm-up's messages included): ours pipelines replies in a few sessions,
django-helpdesk opens one per reply.

Memory. Each column runs in a fresh process of its own. Before its timed pass it runs the
same code once over a warm-up set: ``W`` messages (default 1,000) of the small kinds only (no
attachment, each under 64 KB), built with another seed, in a Maildir of their own: the floor
loop over them on its connection, ours through a second ``PollingService`` on the same store
with an account of its own (the same mailer; a Maildir, and for the IMAP column a folder
``Warm`` on the same Dovecot, so that the one-off costs of IMAP sessions are paid there too:
before 2026-11-30 it warmed up on a Maildir). The warm-up is not timed. 1,000 small messages
bring the process to its steady size (SQLite's page cache full, the allocator's arenas
settled); none is large, so what a large message costs is not paid in advance. Then the
resident high-water mark is reset (Linux ``VmHWM``, through ``/proc/self/clear_refs``) and the
timed pass runs:

- ``peak mem`` (and ``x larg``, that over the largest message of the run): the peak resident
  size during the timed pass above the size it started at, warm. This is the goal figure (at
  most 3x the largest message): a service runs for weeks, so the one-off costs (SQLite's page
  cache filling up to its ``cache_size``, compiled regular expressions, lazy imports, the
  allocator's arenas) are paid once, and the goal is about the memory a message costs;
- ``cold mem``: the peak of the warm-up and the pass together above the size before the
  warm-up, what a fresh process pays on its first pass.

Both keep the per-message times in arrays of floats (8 bytes a message), not by Message-ID,
so the benchmark's own bookkeeping stays out of the figures. django-helpdesk's column gets no
warm-up: its figure is cold only.
"""

from __future__ import annotations

import argparse
import array
import base64
import contextlib
import email
import email.parser
import email.policy
import json
import logging
import mailbox as stdlib_mailbox
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from asm_email_rules.adapters.smtp import SmtpMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.connection import Security, SmtpConfig
from asm_email_rules.errors import SendError
from asm_email_rules.model import Call, EntityKind, EntityRef, OutgoingEmail, Person
from asm_email_rules.outgoing import render_reply
from asm_email_rules.sample import (
    ALICE,
    DEMO_MAILBOX_OPTIONS,
    DEMO_SYSTEM,
    DESK_ADDRESS,
    sample_mailbox,
    seed_sample_desk,
)
from asm_email_rules.service import PollingService

HERE = Path(__file__).resolve().parent

SEED = 20261127
USERS = 1000
FIRST_USER = 1000
FIRST_CALL = 1000
MARKER = DEMO_SYSTEM.reply_marker
KINDS: tuple[tuple[str, int], ...] = (
    ("new-known", 25),
    ("new-unknown", 12),
    ("reply", 30),
    ("html-only", 8),
    ("attachment", 5),
    ("out-of-office", 8),
    ("bounce", 5),
    ("list", 7),
)
_VOCABULARY = (
    "printer jam floor toner request laptop password reset account locked vpn access meeting "
    "room screen broken please help urgent monitor keyboard licence install update the a to "
    "and is it not since this morning again we our team cannot open share drive outlook"
)
WORDS = tuple(_VOCABULARY.split())


# --------------------------------------------------------------------------------------------
# the messages
# --------------------------------------------------------------------------------------------


def prose(rng: random.Random, size: int) -> str:
    """Text of about ``size`` characters in lines of at most 72."""
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12))[:72].strip()
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def user_address(index: int) -> str:
    return f"user{index}@corp.example"


def our_message_id(call: int) -> str:
    return f"<asm.call-{call}.seed{call:04x}@desk.example>"


def _head(
    sender: str, subject: str, when: datetime, rng: random.Random, **extra: str
) -> dict[str, str]:
    return {
        "Return-Path": f"<{sender}>",
        "Received": (
            "from mx.corp.example (mx.corp.example [192.0.2.10]) by mx.desk.example with "
            f"ESMTPS id {rng.getrandbits(40):010x}; {format_datetime(when)}"
        ),
        "From": sender,
        "To": f"Service Desk <{DESK_ADDRESS}>",
        "Subject": subject,
        "Date": format_datetime(when),
        "Message-ID": make_msgid(f"m{rng.getrandbits(48):012x}", "mail.corp.example"),
        "MIME-Version": "1.0",
        **extra,
    }


def _text_message(head: dict[str, str], body: str, subtype: str = "plain") -> bytes:
    lines = [f"{name}: {value}" for name, value in head.items()]
    lines += [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: 8bit"]
    return ("\n".join(lines) + "\n\n" + body + "\n").encode()


def _quoted(rng: random.Random, call: int, when: datetime) -> str:
    """Two levels of quoted history under our reply marker, as mail programs quote them."""
    ours = f"{MARKER}\n\nCall {call} has been updated.\n\n{prose(rng, 300)}"
    theirs = prose(rng, 400)
    older = format_datetime(when - timedelta(days=1))
    oldest = format_datetime(when - timedelta(days=2))
    return (
        f"On {older}, Service Desk <{DESK_ADDRESS}> wrote:\n"
        + "\n".join("> " + line for line in ours.splitlines())
        + f"\n>\n> On {oldest}, a user wrote:\n"
        + "\n".join(">> " + line for line in theirs.splitlines())
    )


def build_message(kind: str, index: int, rng: random.Random, when: datetime) -> bytes:
    """One message of ``kind`` (see KINDS); ``index`` makes unknown senders unique."""
    user = FIRST_USER + rng.randrange(USERS)
    sender = f"User {user} <{user_address(user)}>"
    if kind in ("new-known", "new-unknown"):
        if kind == "new-unknown":
            sender = f"Newcomer {index} <new{index}@elsewhere.example>"
        subject = " ".join(rng.choice(WORDS) for _ in range(5)).capitalize()
        return _text_message(_head(sender, subject, when, rng), prose(rng, rng.randint(200, 2000)))
    if kind == "reply":
        call = FIRST_CALL + rng.randrange(USERS)
        sender = f"User {call} <{user_address(call)}>"
        ours = our_message_id(call)
        head = _head(
            sender,
            f"Re: Call {call} has been updated [CALL#{call}]",
            when,
            rng,
            **{"In-Reply-To": ours, "References": ours},
        )
        body = prose(rng, rng.randint(100, 600)) + "\n\nThanks\n\n" + _quoted(rng, call, when)
        return _text_message(head, body)
    if kind == "html-only":
        subject = " ".join(rng.choice(WORDS) for _ in range(4)).capitalize()
        paragraphs = "".join(
            f"<p>{prose(rng, 200)}</p>\n" for _ in range(rng.randint(2, 6))
        ).replace("\n<", "<")
        html = (
            "<html><head><style>p{margin:0}</style></head><body>"
            f'<div dir="ltr">{paragraphs}<br><div>Kind regards<br>User {user}</div></div>'
            "</body></html>"
        )
        return _text_message(_head(sender, subject, when, rng), html, "html")
    if kind == "attachment":
        size = rng.randint(50_000, 1_000_000)
        data = base64.encodebytes(rng.randbytes(size)).decode()
        head = _head(
            sender,
            "Screenshot of the error",
            when,
            rng,
            **{"Content-Type": 'multipart/mixed; boundary="=_b"'},
        )
        lines = [f"{name}: {value}" for name, value in head.items()]
        return (
            "\n".join(lines)
            + "\n\n--=_b\nContent-Type: text/plain; charset=utf-8\n\n"
            + prose(rng, 400)
            + "\n--=_b\nContent-Type: application/octet-stream\n"
            + 'Content-Disposition: attachment; filename="capture.bin"\n'
            + "Content-Transfer-Encoding: base64\n\n"
            + data
            + "--=_b--\n"
        ).encode()
    if kind == "out-of-office":
        head = _head(
            sender,
            "Automatic reply: " + " ".join(rng.choice(WORDS) for _ in range(3)),
            when,
            rng,
            **{"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
        )
        return _text_message(head, "I am out of the office until Monday with no email.")
    if kind == "bounce":
        head = _head(
            "MAILER-DAEMON@mx.corp.example",
            "Undelivered Mail Returned to Sender",
            when,
            rng,
            **{
                "Auto-Submitted": "auto-replied",
                "Content-Type": 'multipart/report; report-type=delivery-status; boundary="=_d"',
            },
        )
        head["Return-Path"] = "<>"
        lines = [f"{name}: {value}" for name, value in head.items()]
        gone = f"gone{index}@corp.example"
        return (
            "\n".join(lines)
            + "\n\n--=_d\nContent-Type: text/plain; charset=us-ascii\n\n"
            + f"<{gone}>: host mail.corp.example said: 550 5.1.1 User unknown\n"
            + "\n--=_d\nContent-Type: message/delivery-status\n\n"
            + "Reporting-MTA: dns; mx.corp.example\n\n"
            + f"Final-Recipient: rfc822; {gone}\nAction: failed\nStatus: 5.1.1\n"
            + "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
            + "\n--=_d\nContent-Type: text/rfc822-headers\n\n"
            + f"From: {DESK_ADDRESS}\nTo: {gone}\nSubject: Call 1000 has been updated\n"
            + "--=_d--\n"
        ).encode()
    if kind == "list":
        head = _head(
            "Vendor News <news@vendor.example>",
            "[vendor-news] " + " ".join(rng.choice(WORDS) for _ in range(5)),
            when,
            rng,
            **{
                "List-Id": "Vendor news <news.vendor.example>",
                "List-Unsubscribe": "<mailto:leave@vendor.example>",
                "Precedence": "list",
            },
        )
        return _text_message(head, prose(rng, rng.randint(1000, 4000)))
    raise ValueError(kind)


@attrs.frozen
class Sample:
    kind: str
    message_id: str
    raw: bytes


def build_messages(count: int, seed: int = SEED) -> list[Sample]:
    """``count`` messages of the KINDS mix, oldest first, the same for the same seed."""
    rng = random.Random(seed)
    names = [name for name, _ in KINDS]
    weights = [weight for _, weight in KINDS]
    start = datetime.now(UTC) - timedelta(minutes=30)
    found: list[Sample] = []
    for index in range(count):
        kind = rng.choices(names, weights)[0]
        raw = build_message(kind, index, rng, start + timedelta(milliseconds=index))
        match = re.search(rb"^Message-ID: (<[^>]+>)", raw, re.MULTILINE)
        assert match is not None
        found.append(Sample(kind, match.group(1).decode(), raw))
    return found


WARMUP_COUNT = 1000
"""Enough small messages to bring the column's process to its steady size: SQLite's page cache
(``cache_size``, 2 MB) full and the allocator's arenas settled, one-off costs and not
per-message memory. After 40, SQLite's memory still grew by 1.5 MB in the timed pass; after
200 by 0.4 MB, and the resident size of the columns with replies by 0.6 to 1 MB more than
without (their peak read 2.4x to 2.8x the largest message, once 3.7x); after 1,000 the four
columns read 1.7x to 1.9x and 2,000 changed nothing (docs/scaling.md, "Memory")."""
WARMUP_SEED = SEED + 1
WARMUP_MAX_BYTES = 64_000
_WARMUP_INDEX = 1_000_000  # unknown senders and bounced addresses the real run never uses


def build_warmup(count: int = WARMUP_COUNT, seed: int = WARMUP_SEED) -> list[Sample]:
    """The warm-up set: ``count`` messages of the small kinds (every kind but attachments),
    each under 64 KB, with their own seed, senders and Message-IDs."""
    rng = random.Random(seed)
    small = [(name, weight) for name, weight in KINDS if name != "attachment"]
    start = datetime.now(UTC) - timedelta(hours=1)
    found: list[Sample] = []
    for index in range(count):
        kind = rng.choices([n for n, _ in small], [w for _, w in small])[0]
        raw = build_message(kind, _WARMUP_INDEX + index, rng, start + timedelta(milliseconds=index))
        assert len(raw) < WARMUP_MAX_BYTES, (kind, len(raw))
        match = re.search(rb"^Message-ID: (<[^>]+>)", raw, re.MULTILINE)
        assert match is not None
        found.append(Sample(kind, match.group(1).decode(), raw))
    return found


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (0 where there is no /proc)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def _reset_peak() -> int:
    """Reset the resident high-water mark (VmHWM) to the current resident size; that size."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


class Memory:
    """The column's two figures: :meth:`warming` before the warm-up, :meth:`timed` around the
    timed pass; then ``warm`` (the pass's peak above its start) and ``cold`` (the peak of the
    warm-up and the pass above the size before the warm-up), in bytes."""

    def __init__(self) -> None:
        self.before_warmup = 0
        self.warm = 0
        self.cold = 0

    def warming(self) -> None:
        self.before_warmup = _reset_peak()

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        warmup_peak = _status("VmHWM")
        start = _reset_peak()
        yield
        peak = _status("VmHWM")
        self.warm = max(0, peak - start)
        self.cold = max(0, max(peak, warmup_peak) - self.before_warmup)


@attrs.define
class Column:
    name: str
    count: int
    seconds: float
    per_kind: dict[str, list[float]]
    peak: int  # above the warm state at the start of the timed pass; -1: not measured warm
    note: str = ""
    cpu_seconds: float = 0.0
    cold_peak: int = 0  # above the state before the warm-up (fresh process)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def ms(self) -> float:
        return 1000 * self.seconds / self.count if self.count else 0.0

    @property
    def cpu_ms(self) -> float:
        """CPU time of the column's own process per message (the sink's, Dovecot's and the
        kernel's work for them excluded): steadier than wall time on a loaded machine."""
        return 1000 * self.cpu_seconds / self.count if self.count else 0.0


def _times(kinds: dict[str, str]) -> dict[str, array.array[float]]:
    """Per-message times (ms) by kind, 8 bytes a message."""
    return {kind: array.array("d") for kind in {*kinds.values(), "?"}}


class _Elapsed(logging.Handler):
    """Collects the ``elapsed_ms`` of the service's per-message log line, by kind of message
    (``kinds``: Message-ID to kind, made before the measurement; others are not kept)."""

    def __init__(self, kinds: dict[str, str]) -> None:
        super().__init__(logging.DEBUG)
        self.kinds = kinds
        self.by_kind = _times(kinds)

    def emit(self, record: logging.LogRecord) -> None:
        kind = self.kinds.get(getattr(record, "message_id", ""))
        if kind is not None:
            self.by_kind[kind].append(float(getattr(record, "elapsed_ms", 0.0)))


@contextlib.contextmanager
def capture_elapsed(kinds: dict[str, str]) -> Iterator[_Elapsed]:
    logger = logging.getLogger("asm_email_rules.service")
    handler = _Elapsed(kinds)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def per_kind(times: dict[str, array.array[float]]) -> dict[str, list[float]]:
    return {kind: list(values) for kind, values in times.items() if values}


def fill_maildir(folder: Path, samples: list[Sample]) -> None:
    box = stdlib_mailbox.Maildir(folder, factory=None, create=True)
    for sample in samples:
        box.add(sample.raw)
    box.close()


# --------------------------------------------------------------------------------------------
# the columns
# --------------------------------------------------------------------------------------------


_FLOOR_SCHEMA = (
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT, sender TEXT,"
    " subject TEXT, sent TEXT, body TEXT)",
    "CREATE TABLE attachments (id INTEGER PRIMARY KEY, message INTEGER, filename TEXT,"
    " content_type TEXT, data BLOB)",
)


def floor_loop(
    conn: sqlite3.Connection,
    folder: Path,
    kinds: dict[str, str],
    times: dict[str, array.array[float]],
) -> None:
    """The bare loop over ``folder``: read, compat32 parse, one transaction per message,
    delete; each message's time (ms) goes to ``times`` by its kind."""
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    paths = sorted(p for sub in ("new", "cur") for p in (folder / sub).iterdir())
    for path in paths:
        begun = time.perf_counter()
        raw = path.read_bytes()
        message = parser.parsebytes(raw)
        body = ""
        files: list[tuple[str, str, bytes]] = []
        for part in message.walk():
            if part.is_multipart():
                continue
            filename = part.get_filename()
            decoded = part.get_payload(decode=True)  # bytes, or None for a multipart
            payload = decoded if isinstance(decoded, bytes) else b""
            if filename or part.get_content_maintype() != "text":
                files.append((filename or "", part.get_content_type(), payload))
            elif not body:
                charset = part.get_content_charset() or "utf-8"
                body = payload.decode(charset, "replace")
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.execute(
            "INSERT INTO messages (message_id, sender, subject, sent, body) VALUES (?, ?, ?, ?, ?)",
            (message["Message-ID"], message["From"], message["Subject"], message["Date"], body),
        )
        for filename, content_type, data in files:
            conn.execute(
                "INSERT INTO attachments (message, filename, content_type, data)"
                " VALUES (?, ?, ?, ?)",
                (cursor.lastrowid, filename, content_type, data),
            )
        conn.execute("COMMIT")
        path.unlink()
        kind = kinds.get(str(message["Message-ID"]))
        if kind is not None:
            times[kind].append(1000 * (time.perf_counter() - begun))


def run_floor(work: Path, samples: list[Sample]) -> Column:
    """The bare loop, warmed up on the warm-up set first (same connection, not timed)."""
    conn = sqlite3.connect(work / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for statement in _FLOOR_SCHEMA:
        conn.execute(statement)
    kinds = {sample.message_id: sample.kind for sample in samples}
    times = _times(kinds)
    memory = Memory()
    memory.warming()
    warm_count = sum(1 for sub in ("new", "cur") for _ in (work / "floor-warm" / sub).iterdir())
    floor_loop(conn, work / "floor-warm", {}, {})
    with memory.timed():
        started, cpu = time.perf_counter(), time.process_time()
        floor_loop(conn, work / "floor", kinds, times)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    conn.close()
    note = f"{stored - warm_count} stored (and {warm_count} warm-up)"
    return Column(
        "floor", len(samples), seconds, per_kind(times), memory.warm, note, cpu, memory.cold
    )


def seed_store(path: Path) -> SqliteRepository:
    """The sample desk, 1,000 users with an open call each and our earlier reply about it."""
    repository = SqliteRepository(path)
    seed_sample_desk(repository)
    when = datetime.now(UTC) - timedelta(days=3)
    with repository.transaction():
        for offset in range(USERS):
            person = Person(
                FIRST_USER + offset,
                user_address(FIRST_USER + offset),
                f"User {FIRST_USER + offset}",
                is_user=True,
            )
            repository.put_person(person)
            number = FIRST_CALL + offset
            repository.put_call(
                Call(
                    number,
                    user_id=person.id,
                    owner_id=ALICE.id,
                    group="Service Desk",
                    description=f"Seeded call {number}",
                    last_update=when,
                )
            )
            repository.record_sent(
                our_message_id(number), EntityRef(EntityKind.CALL, number), person.email, when
            )
    return repository


REPLIES_IN_FLIGHT: int | None = None
"""``--replies-in-flight``: the ``replies_in_flight`` of our columns (None: the library's default,
:class:`~asm_email_rules.settings.SystemSettings`); reaches a column's process in its options."""


def _config(store: Path, account: AccountConfig) -> Config:
    system = DEMO_SYSTEM
    if REPLIES_IN_FLIGHT is not None:
        system = attrs.evolve(system, replies_in_flight=REPLIES_IN_FLIGHT)
    return Config(store=store, system=system, smtp=None, accounts=(account,))


def _mailbox_settings() -> Any:
    return sample_mailbox(**DEMO_MAILBOX_OPTIONS)


def run_ours(
    name: str,
    work: Path,
    samples: list[Sample],
    account: AccountConfig,
    mailer: Any,
    *,
    profile: Path | None = None,
) -> Column:
    """``poll_once`` over ``account`` into a freshly seeded SQLite store, after a warm-up: a
    second service on the same store and mailer polls an account of the warm-up set, not
    timed: a Maildir (``<name>-warm``), or for an IMAP account its folder ``Warm``."""
    store = work / f"{name}.db"
    repository = seed_store(store)
    service = PollingService(_config(store, account), repository, mailer, _mailbox_factory())
    profiler: Any = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    kinds = {sample.message_id: sample.kind for sample in samples}
    warm_account = attrs.evolve(
        (
            attrs.evolve(account, folder="Warm")
            if account.protocol is MailProtocol.IMAP
            else maildir_account(work / f"{name}-warm")
        ),
        name="bench-warm",
        mailbox=attrs.evolve(_mailbox_settings(), name="warm-up"),
    )
    warm_service = PollingService(
        _config(store, warm_account), repository, mailer, _mailbox_factory()
    )
    memory = Memory()
    memory.warming()
    with capture_elapsed({}):
        warmed = warm_service.poll_once().accounts[0]
    with capture_elapsed(kinds) as elapsed, memory.timed():
        preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
        started, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        report = service.poll_once()
        if profiler is not None:
            profiler.disable()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - preempted
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    close = getattr(mailer, "close", None)
    if close is not None:
        close()
    row = repository._one(  # a look into our own store
        "SELECT COUNT(*), SUM(reply_status = 'sent'), SUM(reply_status = 'pending') FROM ledger"
        " WHERE mailbox = ?",
        (account.mailbox.name,),
    )
    repository.close()
    totals = report.accounts[0]
    note = (
        f"processed {totals.processed}, quarantined {totals.quarantined}, errors "
        f"{totals.errors}, ledger {row[0]}, replies sent {row[1] or 0} pending {row[2] or 0}"
        f" (warm-up: processed {warmed.processed}, replies sent {warmed.replies_sent});"
        f" preempted {preempted} times"
        + (
            ""
            if REPLIES_IN_FLIGHT is None or mailer is None
            else f"; replies_in_flight {REPLIES_IN_FLIGHT}"
        )
    )
    return Column(
        name,
        len(samples),
        seconds,
        per_kind(elapsed.by_kind),
        memory.warm,
        note,
        cpu,
        memory.cold,
    )


def _mailbox_factory() -> Any:
    from asm_email_rules.bootstrap import mailbox_factory

    return mailbox_factory()


def maildir_account(folder: Path) -> AccountConfig:
    return AccountConfig(
        name="bench", protocol=MailProtocol.MAILDIR, mailbox=_mailbox_settings(), path=folder
    )


# -- SMTP sink ------------------------------------------------------------------------------


SINK_OPTIONS: list[str] = []
"""Extra arguments for benchmarks/_sink.py (``--no-pipelining``)."""
IMAP_RTT_MS = 0.0
"""``--imap-rtt-ms``: the round trip a relay adds in front of Dovecot (0: none)."""


@contextlib.contextmanager
def smtp_sink() -> Iterator[dict[str, int]]:
    """The counting sink (benchmarks/_sink.py) on a free loopback port; yields its port and,
    after the block, the messages and sessions it counted and the CPU time it used once ready,
    in microseconds (``cpu_us``: it shares this machine's cores with the column it serves)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_sink.py"), str(port), *SINK_OPTIONS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError("the SMTP sink did not start")
    result = {"port": port}
    try:
        yield result
    finally:
        process.stdin.close()
        counted = process.stdout.read().split()
        process.wait(timeout=10)
        if len(counted) == 3:
            result["messages"], result["sessions"] = int(counted[0]), int(counted[1])
            result["cpu_us"] = int(counted[2])


def _sink_cpu(sink: dict[str, int]) -> str:
    """The sink's CPU time per message it got, for a column's notes: on a machine of few cores
    it runs beside the column, so it takes CPU from our reading (the sending overlaps it),
    not from django-helpdesk's (which waits for each reply)."""
    messages, cpu_us = sink.get("messages"), sink.get("cpu_us")
    if not messages or cpu_us is None:
        return ""
    return f", using {cpu_us / 1000 / messages:.2f} ms CPU each ({os.cpu_count()} cores here)"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smtp_mailer(port: int) -> SmtpMailer:
    return SmtpMailer(
        SmtpConfig(
            host="127.0.0.1",
            port=port,
            security=Security.PLAIN,
            default_sender=DESK_ADDRESS,
            timeout=30.0,
        )
    )


class AcceptingMailer:
    """A mailer that renders each reply as :class:`SmtpMailer` does and accepts it at once,
    with no server: the ``maildir+accept`` column, where replies cost only what the library
    does around sending (the outbox's claims and records, the reply pump, the rendering),
    and nothing of SMTP or of a sink sharing the machine."""

    def send(self, message: OutgoingEmail, *, now: datetime | None = None) -> None:
        render_reply(message, now=now, default_sender=DESK_ADDRESS)

    def send_many(
        self,
        messages: Sequence[OutgoingEmail],
        *,
        now: datetime | None = None,
        answered: Callable[[Sequence[SendError | None]], bool] | None = None,
    ) -> list[SendError | None]:
        for message in messages:
            self.send(message, now=now)
        return [None] * len(messages)


# -- IMAP on Dovecot ------------------------------------------------------------------------


@contextlib.contextmanager
def dovecot(rtt_ms: float = 0.0) -> Iterator[dict[str, Any]]:
    """Dovecot on loopback with the integration tests' configuration (user ``test``); with
    ``rtt_ms``, reached through a relay in this process that holds each chunk of bytes
    ``rtt_ms / 2`` in each direction (the SMTP sink's, ``_sink._relay``)."""
    sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
    import conftest  # type: ignore[import-not-found, unused-ignore]  # the tests' Dovecot

    binary = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    if binary is None:
        raise RuntimeError("the dovecot binary is not installed")
    root = Path(tempfile.mkdtemp(prefix="asm-bench-dv-"))
    root.chmod(0o755)
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    (root / "passwd").write_text(f"test:{{PLAIN}}{conftest.PASSWORD}\n", encoding="utf-8")
    (root / "passwd").chmod(0o644)
    imap_port, pop3_port = _free_port(), _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(
        conftest._DOVECOT_CONF.format(  # the tests' server setup
            root=root,
            host="127.0.0.1",
            imap_port=imap_port,
            pop3_port=pop3_port,
            mail_user="nobody",
            mail_group="nogroup",
        ),
        encoding="utf-8",
    )
    output = (root / "stdout.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf), "-F"], stdout=output, stderr=output)
    try:
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", imap_port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("dovecot did not start") from None
                time.sleep(0.05)
        port = imap_port
        if rtt_ms > 0:
            import _sink  # the relay next to this file

            port, listening = _free_port(), threading.Event()
            threading.Thread(
                target=_sink._relay,
                args=(port, imap_port, rtt_ms / 1000, listening),
                daemon=True,
            ).start()
            listening.wait(10)
        yield {"port": port, "root": root, "password": conftest.PASSWORD}
    finally:
        process.terminate()
        process.wait(timeout=10)
        output.close()
        shutil.rmtree(root, ignore_errors=True)


def fill_imap(server: dict[str, Any], samples: list[Sample], warmup: list[Sample]) -> None:
    """Deliver ``samples`` into the user's INBOX and ``warmup`` into its folder ``Warm``
    (Maildir++ ``.Warm``) as an MDA would, then let Dovecot index both once."""
    import imaplib

    folder = server["root"] / "mail" / "test" / "Maildir"
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.parent.mkdir()
    fill_maildir(folder, samples)
    fill_maildir(folder / ".Warm", warmup)
    for path in [folder.parent, *folder.parent.rglob("*")]:
        shutil.chown(path, "nobody", "nogroup")
    client = imaplib.IMAP4("127.0.0.1", server["port"])
    client.login("test", server["password"])
    for name in ("INBOX", "Warm"):
        client.select(name)
        client.uid("SEARCH", "ALL")
    client.logout()


def imap_account(server: dict[str, Any]) -> AccountConfig:
    return AccountConfig(
        name="bench",
        protocol=MailProtocol.IMAP,
        mailbox=_mailbox_settings(),
        host="127.0.0.1",
        port=server["port"],
        security=Security.PLAIN,
        username="test",
        password=server["password"],
    )


# -- django-helpdesk --------------------------------------------------------------------------


def helpdesk_missing() -> str:
    """Why the django-helpdesk column cannot run ("" when it can)."""
    try:
        import helpdesk  # noqa: F401
    except ImportError:
        return "django-helpdesk is not installed (pip install -e '.[bench-peer]')"
    return ""


def run_helpdesk(work: Path, samples: list[Sample], smtp_port: int) -> Column:
    """django-helpdesk's get_email in its own process (benchmarks/helpdesk_peer/run.py)."""
    folder = work / "helpdesk-mail"
    folder.mkdir()
    for number, sample in enumerate(samples):
        (folder / f"{number:07d}.eml").write_bytes(sample.raw)
    kinds = work / "helpdesk-kinds.json"
    kinds.write_text(json.dumps({s.message_id: s.kind for s in samples}))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="helpdesk_peer.settings",
        PYTHONPATH=str(HERE),
        BENCH_DB=str(work / "helpdesk.db"),
        BENCH_SMTP_PORT=str(smtp_port),
        BENCH_MEDIA=str(work / "helpdesk-media"),
    )
    done = subprocess.run(
        [sys.executable, str(HERE / "helpdesk_peer" / "run.py"), str(folder), str(kinds)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"django-helpdesk run failed:\n{done.stderr[-3000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Column(
        "helpdesk",
        len(samples),
        data["seconds"],
        data["per_kind"],
        -1,  # no warm-up: cold only
        data["note"],
        data["cpu_seconds"],
        data["peak"],
    )


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _mb(value: int) -> str:
    return f"{value / 1e6:7.1f} MB"


def _memory_cells(value: int, largest: int) -> str:
    """``  12.3 MB   9.2x``, or dashes where the figure was not measured."""
    if value < 0:
        return f"{'-':>11}{'-':>7}"
    return f"{_mb(value):>11}{value / largest:6.1f}x"


def _base64_decoder() -> str:
    """Which decoder the MIME reader uses here: the optional ``fast`` extra or the stdlib."""
    try:
        import pybase64
    except ImportError:
        return "binascii (the `fast` extra, pybase64, is not installed)"
    return f"pybase64 {pybase64.__version__} (the `fast` extra)"


def report(
    count: int,
    samples: list[Sample],
    columns: dict[str, Column],
    skipped: dict[str, str],
    warmup: int = WARMUP_COUNT,
) -> None:
    largest = max(len(s.raw) for s in samples)
    mix: defaultdict[str, int] = defaultdict(int)
    for sample in samples:
        mix[sample.kind] += 1
    print(
        f"\n=== {count} messages ({sum(len(s.raw) for s in samples) / 1e6:.1f} MB, largest "
        f"{largest / 1e6:.2f} MB): " + ", ".join(f"{k} {v}" for k, v in mix.items())
    )
    print(
        f"{'column':<14}{'ms/msg':>9}{'cpu ms':>9}{'msg/s':>9}{'peak mem':>11}{'x larg':>7}"
        f"{'cold mem':>11}{'x larg':>7}  notes"
    )
    for column in columns.values():
        print(
            f"{column.name:<14}{column.ms:9.2f}{column.cpu_ms:9.2f}{column.rate:9.0f}"
            f"{_memory_cells(column.peak, largest)}{_memory_cells(column.cold_peak, largest)}"
            f"  {column.note}"
        )
    print(
        "peak mem: the timed pass's peak resident size above its start, after a warm-up of"
        f" {warmup} small messages; cold mem: above the fresh process, warm-up included"
    )
    print(f"ours decodes base64 attachments with {_base64_decoder()}")
    for name, why in skipped.items():
        print(f"{name:<14} skipped: {why}")
    kinds = [name for name, _ in KINDS]
    print("\nmedian ms per message, by kind (ours: the service's own elapsed_ms per message)")
    print(f"{'column':<14}" + "".join(f"{k[:11]:>12}" for k in kinds))
    for column in columns.values():
        cells = []
        for kind in kinds:
            values = column.per_kind.get(kind)
            cells.append(f"{statistics.median(values):12.2f}" if values else f"{'-':>12}")
        print(f"{column.name:<14}" + "".join(cells))

    def ratio(label: str, top: str, bottom: str, goal: str, *, per_message: bool = False) -> None:
        if top not in columns or bottom not in columns:
            return
        a, b = columns[top], columns[bottom]
        value = (b.ms / a.ms) if per_message else (a.rate / b.rate)
        cpu = (b.cpu_ms / a.cpu_ms) if a.cpu_ms and b.cpu_ms else 0.0
        wanted = f"   goal {goal}" if goal else ""
        print(f"  {label:<44}{value:6.2f}x  (cpu {cpu:5.2f}x){wanted}")

    print("\nmemory (peak above warm / largest message)")
    for name in ("maildir", "maildir+accept", "maildir+smtp", "imap", "floor"):
        if name in columns and columns[name].peak >= 0:
            value = columns[name].peak / largest
            goal = "goal <= 3.0x" if name != "floor" else "(the floor: no goal)"
            print(f"  {'peak above warm / largest message, ' + name:<50}{value:6.2f}x   {goal}")

    print("\nratios (throughput from wall time; in brackets the same from CPU time)")
    ratio("maildir / floor", "maildir", "floor", ">= 0.90")
    ratio("maildir+smtp / maildir", "maildir+smtp", "maildir", ">= 0.75")
    ratio("maildir+accept / maildir (no server)", "maildir+accept", "maildir", "")
    ratio("imap / maildir", "imap", "maildir", ">= 0.70")
    ratio(
        "per message: helpdesk / maildir+smtp",
        "maildir+smtp",
        "helpdesk",
        ">= 10",
        per_message=True,
    )
    if "helpdesk" in columns:
        line = columns["helpdesk"].ms / 10
        print(
            f"  ten times django-helpdesk is {line:.2f} ms a message with replies; ours is"
            + "".join(
                f" {columns[name].ms:.2f} {label}"
                for name, label in (
                    ("maildir", "without replies,"),
                    ("maildir+accept", "with replies accepted at once (no server),"),
                    ("maildir+smtp", "with replies to the sink"),
                )
                if name in columns
            )
        )


def run_column(name: str, work: Path, options: dict[str, Any], tree: Path | None = None) -> Column:
    """One column in a process of its own (a clean peak-memory figure): see :func:`child`.
    ``tree``: another checkout of the project whose library and benchmark run it instead
    (``benchmarks/paired.py``)."""
    script, env = __file__, None
    if REPLIES_IN_FLIGHT is not None:
        options = {**options, "replies_in_flight": REPLIES_IN_FLIGHT}
    if tree is not None:
        script = str(tree / "benchmarks" / "service.py")
        env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, script, "--child", name, str(work), json.dumps(options)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tree or 'this tree'}: column {name} failed:\n{done.stderr[-3000:]}")
    return Column(**json.loads(done.stdout.strip().splitlines()[-1]))


def child(name: str, work: Path, options: dict[str, Any]) -> int:
    """Run one column on the mail the parent prepared in ``work``; print it as JSON."""
    meta = [
        Sample(kind, message_id, b"")
        for kind, message_id in json.loads((work / "samples.json").read_text())
    ]
    profile = Path(options["profile"]) if options.get("profile") else None
    global REPLIES_IN_FLIGHT
    REPLIES_IN_FLIGHT = options.get("replies_in_flight")
    if name == "floor":
        column = run_floor(work, meta)
    elif name == "maildir":
        column = run_ours(name, work, meta, maildir_account(work / name), None, profile=profile)
    elif name == "maildir+smtp":
        column = run_ours(
            name,
            work,
            meta,
            maildir_account(work / name),
            smtp_mailer(options["smtp_port"]),
            profile=profile,
        )
    elif name == "maildir+accept":
        column = run_ours(
            name, work, meta, maildir_account(work / name), AcceptingMailer(), profile=profile
        )
    elif name == "imap":
        column = run_ours(name, work, meta, imap_account(options), None, profile=profile)
    else:
        raise ValueError(name)
    print(json.dumps(attrs.asdict(column)))
    return 0


def _fresh(work: Path, name: str) -> None:
    """Remove a column's store from an earlier round (its files: the database, WAL, index, and
    the folder of its sent journal)."""
    for path in work.glob(f"{name}.db*"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def one_round(
    work: Path,
    samples: list[Sample],
    skip: set[str],
    profile: Any,
    skipped: dict[str, str],
    warmup_count: int = WARMUP_COUNT,
) -> dict[str, Column]:
    """One run of each of our columns and the floor, each on a fresh store and mailbox, each
    with a fresh copy of the warm-up set (``<column>-warm``)."""
    found: dict[str, Column] = {}
    warmup = build_warmup(warmup_count)

    def profiled(name: str) -> dict[str, str]:
        return profile(name) if profile is not None else {}

    for name in ("floor", "maildir", "maildir+accept", "maildir+smtp", "imap"):
        _fresh(work, name)
        shutil.rmtree(work / f"{name}-warm", ignore_errors=True)
        if {"maildir+smtp": "smtp", "maildir+accept": "accept"}.get(name, name) not in skip:
            fill_maildir(work / f"{name}-warm", warmup)
    if "floor" not in skip:
        fill_maildir(work / "floor", samples)
        found["floor"] = run_column("floor", work, {})
    if "maildir" not in skip:
        fill_maildir(work / "maildir", samples)
        found["maildir"] = run_column("maildir", work, profiled("maildir"))
    if "accept" not in skip:
        fill_maildir(work / "maildir+accept", samples)
        found["maildir+accept"] = run_column("maildir+accept", work, profiled("accept"))
    if "smtp" not in skip:
        fill_maildir(work / "maildir+smtp", samples)
        with smtp_sink() as sink:
            column = run_column(
                "maildir+smtp", work, {"smtp_port": sink["port"], **profiled("smtp")}
            )
        column.note += f"; sink got {sink.get('messages')} in {sink.get('sessions')} sessions"
        column.note += _sink_cpu(sink)
        found["maildir+smtp"] = column
    if "imap" not in skip:
        try:
            with dovecot(IMAP_RTT_MS) as server:
                fill_imap(server, samples, warmup)
                found["imap"] = run_column(
                    "imap",
                    work,
                    {
                        "port": server["port"],
                        "password": server["password"],
                        **profiled("imap"),
                    },
                )
        except RuntimeError as exc:
            skipped["imap"] = str(exc)
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], Path(argv[2]), json.loads(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[2000, 10000])
    parser.add_argument(
        "--skip",
        default="",
        help="columns to skip: floor,maildir,accept (maildir+accept),smtp,imap,peer",
    )
    parser.add_argument(
        "--peer-limit",
        type=int,
        default=2000,
        help="run django-helpdesk on at most this many of the messages",
    )
    parser.add_argument(
        "--profile", type=Path, help="cProfile our columns into FILE.<column>.<N>.prof"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the floor and our columns this many times each, in turn, and report each"
        " column's median run (steadier ratios on a busy machine; django-helpdesk runs once)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=WARMUP_COUNT,
        help="small messages each column handles, untimed, before its timed pass (memory)",
    )
    parser.add_argument(
        "--sink-without-pipelining",
        action="store_true",
        help="the SMTP sink's EHLO leaves PIPELINING and CHUNKING out (RFC 2920, RFC 3030;"
        " real servers offer both)",
    )
    parser.add_argument(
        "--sink-without-chunking",
        action="store_true",
        help="the SMTP sink's EHLO leaves CHUNKING out (no BDAT: DATA after a 354)",
    )
    parser.add_argument(
        "--sink-rtt-ms",
        type=float,
        default=0.0,
        help="hold the bytes to and from the SMTP sink this many ms per round trip, as a"
        " server that far away would (default 0: loopback)",
    )
    parser.add_argument(
        "--imap-rtt-ms",
        type=float,
        default=0.0,
        help="hold the bytes to and from Dovecot this many ms per round trip, as a server that"
        " far away would (default 0: loopback)",
    )
    parser.add_argument(
        "--replies-in-flight",
        type=int,
        default=None,
        help="our columns' replies_in_flight (default: the library's): replies sent ahead of"
        " their records, so also how many a crash can leave to resend (docs/operators.md)",
    )
    options = parser.parse_args(argv)
    global IMAP_RTT_MS, REPLIES_IN_FLIGHT
    IMAP_RTT_MS = options.imap_rtt_ms
    if options.replies_in_flight is not None and options.replies_in_flight < 0:
        parser.error("--replies-in-flight must be 0 or more")
    REPLIES_IN_FLIGHT = options.replies_in_flight
    if options.sink_without_pipelining:
        SINK_OPTIONS.append("--no-pipelining")
    if options.sink_without_chunking:
        SINK_OPTIONS.append("--no-chunking")
    if options.sink_rtt_ms > 0:
        SINK_OPTIONS.extend(["--rtt-ms", str(options.sink_rtt_ms)])
    skip = set(filter(None, options.skip.split(",")))
    rates: dict[int, dict[str, Column]] = {}
    for count in options.counts:
        samples = build_messages(count)
        columns: dict[str, Column] = {}
        skipped: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="asm-bench-") as tmp:
            work = Path(tmp)
            (work / "samples.json").write_text(
                json.dumps([[s.kind, s.message_id] for s in samples])
            )

            def profile(name: str, count: int = count) -> dict[str, str]:
                if options.profile is None:
                    return {}
                return {"profile": f"{options.profile}.{name}.{count}.prof"}

            rounds = [
                one_round(work, samples, skip, profile if k == 0 else None, skipped, options.warmup)
                for k in range(options.repeat)
            ]
            for name in rounds[0]:
                runs = sorted((r[name] for r in rounds if name in r), key=lambda c: c.seconds)
                columns[name] = runs[len(runs) // 2]  # the median run (the upper one of two)
                if options.repeat > 1:
                    columns[name].note += (
                        f"; median of {len(runs)} runs (msg/s "
                        + ", ".join(f"{c.rate:.0f}" for c in runs)
                        + ")"
                    )
            if "peer" not in skip:
                why = helpdesk_missing()
                if why:
                    skipped["helpdesk"] = why
                else:
                    subset = samples[: options.peer_limit]
                    with smtp_sink() as sink:
                        column = run_helpdesk(work, subset, sink["port"])
                    column.note += (
                        f"; sink got {sink.get('messages')} in {sink.get('sessions')} sessions"
                        + _sink_cpu(sink)
                    )
                    if len(subset) < count:
                        column.note += f"; first {len(subset)} messages only"
                    columns["helpdesk"] = column
        report(count, samples, columns, skipped, options.warmup)
        rates[count] = columns
    if len(rates) >= 2:
        small, large = min(rates), max(rates)
        print(
            f"\ngrowth {small} -> {large} messages (throughput, 1.00 = flat; goal >= 0.90 for"
            " maildir)"
        )
        for name in rates[small]:
            if name in rates[large] and rates[small][name].rate:
                print(f"  {name:<14}{rates[large][name].rate / rates[small][name].rate:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
