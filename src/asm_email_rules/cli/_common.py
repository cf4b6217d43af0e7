"""What the commands share: exit codes, the usage error, file reading and table printing."""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TextIO

from asm_email_rules.adapters._repository import to_utc
from asm_email_rules.adapters._sql import SqlRepository
from asm_email_rules.config import Config, load_config, store_location
from asm_email_rules.model import OutgoingEmail, Person
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.sample import DEMO_MAILBOX_OPTIONS, DEMO_SYSTEM, sample_mailbox
from asm_email_rules.settings import Limits, MailboxSettings, SystemSettings

PROG = "asm-email-rules"

EXIT_OK = 0
EXIT_MESSAGE = 1
EXIT_CONFIG = 2
EXIT_TRANSPORT = 3
EXIT_REPLIES_FAILED = 4
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line usage mistake (argparse would exit; we want one line and code 2)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


STDIN = "-"
"""The file name that means standard input (``explain -``, ``process -``)."""


def read_limit(limits: Limits | None = None) -> int:
    """The most bytes a command reads of one file, for ``limits`` (default: the defaults):
    :attr:`~asm_email_rules.settings.Limits.max_read_size`. A file past that is refused rather
    than read into memory (``explain /dev/zero``)."""
    return (limits or Limits()).max_read_size


def read_file(path: Path | str, limit: int | None = None) -> bytes:
    """The bytes of ``path`` (standard input for ``-``); UsageError (exit 2) when it cannot be
    read, or holds more than ``limit`` bytes (default :func:`read_limit`), read no further."""
    limit = read_limit() if limit is None else limit
    name = "standard input" if str(path) == STDIN else str(path)
    too_big = UsageError(f"{name}: larger than {limit} bytes: not read")
    try:
        if str(path) == STDIN:
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with Path(path).open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size  # 0 for a device or a pipe
                if size > limit:
                    raise too_big
                raw = handle.read(limit + 1)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"{name}: cannot read: {detail}") from None
    if len(raw) > limit:
        raise too_big
    return raw


def read_bounded(stream: BinaryIO, keep: int, chunk: int = 1 << 20) -> tuple[bytes, int]:
    """The first ``keep + 1`` bytes of ``stream`` and the stream's whole length in bytes.

    The rest is read to its end and let go of, ``chunk`` bytes at a time, so that a writer on
    the other side of a pipe is never cut off, and memory stays ``keep`` whatever the input's
    length (``deliver < /dev/zero`` is bounded in memory, linear in time). ``keep + 1`` bytes
    are kept so that a caller sees a cut stream as longer than ``keep``. Raises what the
    stream's ``read`` raises (``OSError``)."""
    head = stream.read(keep + 1)
    size = len(head)
    if size > keep:
        while rest := stream.read(chunk):
            size += len(rest)
    return head, size


def read_inbox(path: Path) -> list[tuple[str, bytes]]:
    """Every ``*.eml`` of the folder ``path`` as (file name, bytes), sorted by name."""
    if not path.is_dir():
        raise UsageError(f"--inbox {path}: not a folder")
    found = sorted((p.name, p.read_bytes()) for p in path.glob("*.eml") if p.is_file())
    if not found:
        raise UsageError(f"--inbox {path}: no .eml files")
    return found


def demo_mailbox() -> MailboxSettings:
    """The sample mailbox with the options the demo switches on."""
    return sample_mailbox(**DEMO_MAILBOX_OPTIONS)


def settings_for(
    args: argparse.Namespace, *, secrets: bool = True
) -> tuple[Config | None, MailboxSettings, SystemSettings]:
    """The configuration and the account's settings of ``--config``/``--account``, or the demo
    mailbox and system (and no configuration) without ``--config``. ``secrets=False`` for dry
    runs: passwords are not read (see :func:`~asm_email_rules.config.load_config`)."""
    if not args.config:
        if getattr(args, "account", None):
            raise UsageError("--account needs --config")
        return None, demo_mailbox(), DEMO_SYSTEM
    config = load_config(args.config, secrets=secrets)
    account = config.account(args.account)
    return config, account.mailbox, config.system


def store_for(args: argparse.Namespace) -> SqlRepository:
    """The SQLite store of ``--store``, else the store of ``--config``'s ``store``: a SQLite
    file (it must exist) or a PostgreSQL database (its password from ``store_password_env`` or
    ``store_password_file``).

    The configuration is read without its other secrets: these commands sign in nowhere else.
    Raises UsageError without either option, ConfigError when the store is missing or cannot
    be opened (naming the file, or the server and database).
    """
    from asm_email_rules.bootstrap import open_store

    if getattr(args, "store", None):
        location = store_location(args.store, Path.cwd())
    elif getattr(args, "config", None):
        location = load_config(args.config, secrets=False).require_store()
    else:
        raise UsageError("say which store: --config F or --store DB")
    return open_store(location, must_exist=True)


def every_person(repository: SeedableRepository) -> list[Person]:
    """Every person of the store, lowest id first (``list_persons`` a page at a time)."""
    people: list[Person] = []
    while True:
        page = list(repository.list_persons(after=people[-1].id if people else 0, limit=500))
        if not page:
            return people
        people.extend(page)


def utc_minute(moment: datetime | None) -> str:
    """A stored moment as the listings print it: UTC to the minute, marked ``Z``
    (``2026-11-20 09:00Z``), as ``replies list`` marks its times, so an operator on a server
    set to local time does not read it as local; ``-`` for none (a naive moment is UTC)."""
    return "-" if moment is None else f"{to_utc(moment):%Y-%m-%d %H:%M}Z"


def outbox_when(moment: datetime | None) -> str:
    """An outbox moment as ``replies list`` and ``poll --once`` print it (UTC, to the
    second); empty for none."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%SZ")


_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
"""Terminal control characters (C0, DEL, C1) as ``str.translate`` escapes them: ``\\x1b``."""


def terminal_text(text: str, *, keep: str = "") -> str:
    """``text`` with every terminal control character but those in ``keep`` written as an
    escape (``\\x1b``), for printing text a sender controls (a header, a subject, a
    description): an ESC sequence in a mail must not clear the operator's screen, retitle the
    window or hide a row. Linear in ``text``."""
    table = _CONTROLS if not keep else {k: v for k, v in _CONTROLS.items() if chr(k) not in keep}
    return text.translate(table)


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: two for a wide (East Asian) character, none for a
    combining mark or a format character, one for any other."""
    width = 0
    for char in text:
        if unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def print_table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Left-aligned columns, the first row as a header underlined with dashes; aligned by
    terminal columns, so names in Chinese or Japanese do not push the next column along.
    Control characters in a cell are printed escaped (:func:`terminal_text`)."""
    rows = [[terminal_text(cell) for cell in row] for row in rows]
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [
            cell + " " * (width - display_width(cell))
            for cell, width in zip(row, widths, strict=True)
        ]
        print("  ".join(cells).rstrip(), file=out)
        if index == 0:
            print("  ".join("-" * width for width in widths), file=out)


def reply_dict(reply: OutgoingEmail | None) -> dict[str, Any] | None:
    """The JSON shape of a reply in command output: to, subject, body, Message-IDs."""
    if reply is None:
        return None
    return {
        "to": reply.to,
        "subject": reply.subject,
        "body": reply.body,
        "message_id": reply.message_id,
        "in_reply_to": reply.in_reply_to,
    }


def close_mailer(mailer: object) -> None:
    """End the SMTP session a mailer keeps open between replies (QUIT), if it has one."""
    close = getattr(mailer, "close", None)
    if callable(close):
        close()
