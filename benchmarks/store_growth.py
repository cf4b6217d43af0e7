"""Store growth and peak memory against message size: ``python benchmarks/store_growth.py``.

A benchmark, not a test (issue 10, "Growth"). Every message goes the way the service takes it:
a real Maildir, :class:`~asm_email_rules.service.PollingService`, a SQLite store on disk. Two
tables:

1. **Bytes per message in the store.** A batch of new-call messages of one size is polled into
   a fresh store; the store's growth (database plus WAL after a checkpoint) divided by the
   number of messages, next to the message size, and where the bytes are: the call's
   description, the log entries, the ledger's decision JSON, the reply JSON, attachments.
2. **Peak memory against message size.** One message of each size and shape (ASCII text, text
   with characters outside the BMP such as emoji, a base64 attachment) polled alone with
   :mod:`tracemalloc` running from before the fetch; the peak over the message size. The
   target is at most 3x the largest message (24 MB).

``--quick`` runs smaller sizes (for a smoke run).
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import sqlite3
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.sample import DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAILBOX = sample_mailbox(name="helpdesk", auto_reply=True, create_calls_anonymously=True)
MIB = 1024 * 1024


def head(number: int, content_type: str) -> bytes:
    return (
        f"Received: from mx.corp.example by mx.desk.example; Fri, 27 Nov 2026 11:00:00 +0000\r\n"
        f"From: customer{number}@corp.example\r\nTo: {DESK_ADDRESS}\r\n"
        f"Subject: Report {number}\r\nMessage-ID: <report-{number}@corp.example>\r\n"
        f"Date: Fri, 27 Nov 2026 11:00:00 +0000\r\nMIME-Version: 1.0\r\n{content_type}\r\n"
    ).encode()


def ascii_text(number: int, size: int) -> bytes:
    line = b"The printer on floor 3 prints every page twice since Monday.\r\n"
    start = head(number, "Content-Type: text/plain; charset=us-ascii") + b"\r\n"
    return start + line * max(1, (size - len(start)) // len(line))


def emoji_text(number: int, size: int) -> bytes:
    line = "The printer 🖨 on floor 3 prints every page twice ✌ since Monday.\r\n".encode()
    start = (
        head(number, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit")
        + b"\r\n"
    )
    return start + line * max(1, (size - len(start)) // len(line))


def attachment(number: int, size: int) -> bytes:
    data = os.urandom(max(1, (size - 1024) * 3 // 4))
    return (
        head(number, 'Content-Type: multipart/mixed; boundary="b"')
        + b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe log is attached.\r\n"
        + b"--b\r\nContent-Type: application/octet-stream\r\n"
        + b'Content-Disposition: attachment; filename="log.bin"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data)
        + b"\r\n--b--\r\n"
    )


SHAPES: dict[str, Callable[[int, int], bytes]] = {
    "ascii text": ascii_text,
    "emoji text": emoji_text,
    "attachment": attachment,
}


class Desk:
    """A fresh store and Maildir in a temporary folder, and a service over them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "store.sqlite3"
        self.store = SqliteRepository(self.path)
        seed_sample_desk(self.store)
        self.maildir = folder / "Maildir"
        self.box = MaildirMailbox(self.maildir)
        account = AccountConfig(
            name="helpdesk",
            protocol=MailProtocol.MAILDIR,
            mailbox=MAILBOX,
            path=self.maildir,
            max_messages_per_session=1000,
        )
        system = SystemSettings(truncate_incoming_emails=True)
        config = Config(store=self.path, system=system, smtp=None, accounts=(account,))
        self.service = PollingService(
            config, self.store, None, lambda a: MaildirMailbox(self.maildir), now=lambda: NOW
        )

    def size(self) -> int:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return sum(p.stat().st_size for p in self.folder.glob("store.sqlite3*"))

    def columns(self) -> dict[str, int]:
        """Bytes held in the columns that grow with a message."""
        conn = sqlite3.connect(self.path)
        try:

            def one(sql: str) -> int:
                return int(conn.execute(sql).fetchone()[0] or 0)

            return {
                "call": one("SELECT SUM(length(CAST(description AS BLOB))) FROM calls"),
                "log": one("SELECT SUM(length(CAST(text AS BLOB))) FROM log_entries"),
                "decision": one("SELECT SUM(length(CAST(decision_json AS BLOB))) FROM ledger"),
                "reply": one("SELECT SUM(length(CAST(reply_json AS BLOB))) FROM ledger"),
                "files": one("SELECT SUM(length(data)) FROM attachments"),
            }
        finally:
            conn.close()


def bytes_per_message(sizes: list[tuple[int, int]]) -> None:
    print("\n== Bytes per message in the store (new calls, ASCII text)")
    print(
        f"{'message':>10} {'count':>6} {'store/msg':>11} {'x msg':>6}   "
        "per message: call  log  decision  reply  files"
    )
    for size, count in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            desk = Desk(Path(tmp))
            empty = desk.size()
            before = desk.columns()
            raws = [ascii_text(n, size) for n in range(count)]
            for raw in raws:
                desk.box.add(raw)
            report = desk.service.poll_once()["helpdesk"]
            assert report.processed == count, report
            grown = (desk.size() - empty) / count
            after = desk.columns()
            each = {k: (after[k] - before[k]) / count for k in after}
            mean = sum(map(len, raws)) / count
            print(
                f"{mean:>10,.0f} {count:>6} {grown:>11,.0f} {grown / mean:>6.2f}   "
                + "  ".join(f"{k} {v / mean:.2f}" for k, v in each.items())
            )
            desk.store.close()


def peak_memory(sizes: list[int]) -> float:
    print("\n== Peak memory (tracemalloc) while polling one message, over its size")
    print(f"{'shape':<12} " + " ".join(f"{s // MIB:>7} MB" for s in sizes))
    worst = 0.0
    for name, make in SHAPES.items():
        cells = []
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                desk = Desk(Path(tmp))
                raw = make(1, size)
                desk.box.add(raw)
                length = len(raw)
                del raw
                gc.collect()
                tracemalloc.start()
                report = desk.service.poll_once()["helpdesk"]
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                assert report.processed == 1, report
                ratio = peak / length
                worst = max(worst, ratio) if size == max(sizes) else worst
                cells.append(f"{ratio:>8.2f}x")
                desk.store.close()
        print(f"{name:<12} " + " ".join(cells))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    if args.quick:
        growth = [(2_000, 50), (64_000, 10)]
        peaks = [1 * MIB, 4 * MIB]
    else:
        growth = [(2_000, 500), (64_000, 100), (1 * MIB, 20), (8 * MIB, 3)]
        peaks = [1 * MIB, 8 * MIB, 24 * MIB]
    bytes_per_message(growth)
    worst = peak_memory(peaks)
    print(f"\nworst peak at {peaks[-1] // MIB} MB: {worst:.2f}x the message (target: <= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
