"""Sent journals as files: a folder of append-only files, one per reply pump.

A :class:`~asm_email_rules.protocols.SentJournal` for a store whose pollers share a host
(:mod:`asm_email_rules.sent_journal` says why a journal exists); the SQLite store keeps its
journals in ``<database>.sent``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from asm_email_rules.errors import StoreUnavailableError
from asm_email_rules.model import SentEntry

__all__ = ["OPENING", "SUFFIX", "DirectorySentJournal"]

logger = logging.getLogger("asm_email_rules")

SUFFIX = ".sent"
"""The suffix of a journal file in a :class:`DirectorySentJournal`'s folder."""

OPENING = ".opening"
"""The suffix of a journal file being made (not locked yet; empty until it is renamed)."""

ABANDONED_SECONDS = 60.0
"""How old a half-made journal must be before another pump deletes it: one being made is
locked and renamed within moments, and checking one earlier could take its lock first."""


class DirectorySentJournal:
    """A :class:`~asm_email_rules.protocols.SentJournal` as a folder of append-only text
    files, one per pump: ``<pid>-<random>.sent``, a line per accepted reply (its ``sent_at``
    in ISO 8601, its owner and its Message-ID, separated by tabs).

    A pump holds an exclusive ``flock`` on its file from its first entry until it closes
    the journal; the kernel lets go of it when the process dies, however it dies. So a file
    whose lock can be taken belongs to a pump that has stopped and will write no more (a pid
    used again, a container whose poller is always process 1, another poller of the same
    process: none of them mistaken for it), and :meth:`leftovers` reads only those.

    An entry is one ``write`` to the file, opened with ``O_APPEND``: durable against a crash
    of the process as soon as :meth:`add` returns (the kernel holds the page), and against a
    power loss once the system wrote it out, as the store's commits between two syncs (a
    reply whose entry a power loss took is sent again, with the same Message-ID). The folder
    (mode 0700) and the file are made at the first entry; a pump that recorded everything
    deletes its file when it closes. A line that cannot be read (cut short by a power loss)
    is skipped. A child made by ``fork`` (not ``exec``) while the journal is open shares its
    lock: until it exits, a pump that died is taken for a running one (its replies are then
    sent again once their claims expire, as without a journal). Raises
    :class:`~asm_email_rules.errors.StoreUnavailableError` when the folder or a file cannot
    be written, read or locked. POSIX only (``fcntl.flock``).
    """

    def __init__(self, folder: str | os.PathLike[str], owner: str) -> None:
        self.folder = Path(folder)
        self.owner = owner
        self.path = self.folder / f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        """This journal's own file (made at the first :meth:`add`)."""
        self._fd: int | None = None
        self._stopped: list[Path] = []  # the files the last leftovers() read

    def add(self, entries: Sequence[SentEntry]) -> None:
        """Append ``entries`` in one write (an entry whose owner or Message-ID holds a tab or
        a line break is left out: it could not be read back)."""
        lines = [
            f"{e.sent_at.isoformat()}\t{e.owner}\t{e.reply_message_id}\n"
            for e in entries
            if _writable(e.owner) and _writable(e.reply_message_id)
        ]
        if not lines:
            return
        data = "".join(lines).encode("utf-8")
        try:
            if self._fd is None:
                self._fd = self._open_own()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            message = f"{self.path}: cannot write the sent journal: {exc}"
            raise StoreUnavailableError(message) from exc

    def _open_own(self) -> int:
        """Make this journal's file, locked before it shows under its name: it is made and
        locked as ``<name>.opening`` (no pump reads those), then renamed, so no other pump can
        take an empty journal for a stopped one and delete it under this one. Nobody else
        ever opens it for writing."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        opening = self.path.with_suffix(OPENING)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(opening, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(opening, self.path)
        except OSError:
            os.close(fd)
            opening.unlink(missing_ok=True)
            raise
        return fd

    def leftovers(self) -> list[SentEntry]:
        """The entries of the folder's journals whose pumps have stopped (closed, or their
        process gone), this one's excepted: in the order of their files' names and lines."""
        self._stopped.clear()
        try:
            files = sorted(self.folder.iterdir())
        except FileNotFoundError:  # no pump of this store has written a journal yet
            files = []
        except OSError as exc:
            message = f"{self.folder}: cannot list the sent journal: {exc}"
            raise StoreUnavailableError(message) from exc
        entries: list[SentEntry] = []
        for path in files:
            if path.suffix == SUFFIX and path != self.path:
                entries += self._read_stopped(path)
            elif path.suffix == OPENING and _abandoned(path):
                self._stopped.append(path)
        return entries

    def _read_stopped(self, path: Path) -> list[SentEntry]:
        """The entries of the journal ``path`` if its pump has stopped (its lock is free),
        else none."""
        try:
            with path.open("rb") as file:
                try:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its pump is running: its own to record
                    return []
                data = file.read()
        except FileNotFoundError:  # its pump closed meanwhile: all recorded
            return []
        except OSError as exc:  # another user's file, a folder: left, its replies unread
            logger.warning(
                "a sent journal file cannot be read; its replies may be sent again",
                extra={"path": str(path), "error": str(exc)},
            )
            return []
        self._stopped.append(path)
        *lines, _cut = data.decode("utf-8", errors="replace").split("\n")  # _cut: no line feed
        entries = []
        for line in lines:
            entry = _read_line(line)
            if entry is None:
                logger.debug("sent journal: unreadable line skipped", extra={"path": str(path)})
                continue
            entries.append(entry)
        return entries

    def forget(self) -> None:
        """Delete the journals the last :meth:`leftovers` read (their replies are recorded
        now); their pumps have stopped, so nothing is written to them any more."""
        stopped, self._stopped = self._stopped, []
        for path in stopped:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StoreUnavailableError(f"{path}: cannot delete: {exc}") from exc

    def close(self, *, recorded: bool) -> None:
        """Close this journal's file, which lets go of its lock; ``recorded``: every entry
        added is recorded in the store, so the file is deleted first (else it is left for
        the next pump's :func:`~asm_email_rules.sent_journal.settle`)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if recorded:
            try:
                self.path.unlink()
            except OSError as exc:
                logger.warning(
                    "cannot delete a sent journal file; the next pump reads and deletes it",
                    extra={"path": str(self.path), "error": str(exc)},
                )
        try:
            os.close(fd)
        except OSError as exc:
            message = f"{self.path}: cannot close the sent journal: {exc}"
            raise StoreUnavailableError(message) from exc


def _writable(field: str) -> bool:
    """True when ``field`` fits a journal line: no tab, no line break."""
    return not any(mark in field for mark in "\t\r\n")


def _read_line(line: str) -> SentEntry | None:
    """The entry a journal line (without its line feed) holds; None for one not ours."""
    parts = line.split("\t")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        sent_at = datetime.fromisoformat(parts[0])
    except ValueError:
        return None
    if sent_at.tzinfo is None:
        return None
    return SentEntry(parts[2], parts[1], sent_at)


def _abandoned(path: Path) -> bool:
    """True when the half-made journal ``path`` (``.opening``) was left by a pump that
    stopped: older than :data:`ABANDONED_SECONDS` (a pump names its file at once after
    making it) and not locked. A file gone meanwhile, or that cannot be opened, is not."""
    try:
        if time.time() - path.stat().st_mtime < ABANDONED_SECONDS:
            return False
        with path.open("rb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
