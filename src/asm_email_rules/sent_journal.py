"""The sent journal: each reply the SMTP server accepted, kept the moment it answered.

Why it exists (DESIGN 4, "Replies are an outbox"). A reply is claimed, sent, then recorded
SENT; a crash between the server's 250 and that record sends it again once the claim expires
(with the same Message-ID). The reply pump (:mod:`asm_email_rules.outbox_pump`) sends on a
worker thread, and only the poller's thread writes the store, between messages: so without a
journal every accepted reply waits for the poller's next round to be recorded, the pump may
claim no more than ``replies_in_flight`` ahead (also how many a crash resends), and the
worker hands back every few replies, each time a round on the poller's thread (most of what
a reply cost: docs/scaling.md).

With a journal (a store's ``sent_journal(owner)``: the SQLite store keeps one as a folder
beside its file, :class:`DirectorySentJournal`), the worker appends each accepted reply to
the journal before it sends the next ``replies_in_flight``, and hands back a whole batch at
once; the poller records the outcomes in the store as before. A pump may then claim a
session's replies at once. A crash leaves unrecorded only what the server accepted and the
journal did not get yet: the replies of one write, ``replies_in_flight`` at most (one when the
server takes replies one by one). The next pump of any poller on the store records SENT what
a sender that is gone left in the journal (:func:`settle`), before it claims anything, so
those are not sent again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import attrs

from asm_email_rules.errors import StoreUnavailableError
from asm_email_rules.model import ReplyStatus, SentEntry
from asm_email_rules.protocols import Repository

__all__ = ["DirectorySentJournal", "Settled", "owner_gone", "settle"]

logger = logging.getLogger("asm_email_rules")

SUFFIX = ".sent"
"""The suffix of a journal file in a :class:`DirectorySentJournal`'s folder."""


class DirectorySentJournal:
    """A :class:`~asm_email_rules.protocols.SentJournal` as a folder of append-only text
    files, one per pump: ``<pid>-<random>.sent``, a line per accepted reply (its ``sent_at``
    in ISO 8601, its owner and its Message-ID, separated by tabs).

    An entry is one ``write`` to a file opened with ``O_APPEND``: durable against a crash of
    the process as soon as :meth:`add` returns (the kernel holds the page), and against a
    power loss once the system wrote it out, as the store's commits between two syncs (a
    reply whose entry a power loss took is sent again, with the same Message-ID). The folder
    (mode 0700) and the file are made at the first entry; a pump that recorded everything
    deletes its file when it closes. A line that cannot be read (cut short by a power loss)
    is skipped. Raises :class:`~asm_email_rules.errors.StoreUnavailableError` when the
    folder or a file cannot be written or read.
    """

    def __init__(self, folder: str | os.PathLike[str], owner: str) -> None:
        self.folder = Path(folder)
        self.owner = owner
        self.path = self.folder / f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        """This journal's own file (made at the first :meth:`add`)."""
        self._fd: int | None = None
        self._others: dict[str, list[str]] = {}  # owner -> files read by leftovers()

    def add(self, entries: Sequence[SentEntry]) -> None:
        """Append ``entries`` in one write."""
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
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                self._fd = os.open(self.path, flags, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise StoreUnavailableError(
                f"{self.path}: cannot write the sent journal: {exc}"
            ) from exc

    def leftovers(self) -> list[SentEntry]:
        """The entries other journals in the folder hold (earlier pumps', other pollers'), in
        the order of their files' names and lines."""
        self._others.clear()
        entries: list[SentEntry] = []
        try:
            files = sorted(self.folder.glob(f"*{SUFFIX}"))
        except OSError as exc:
            raise StoreUnavailableError(
                f"{self.folder}: cannot list the sent journal: {exc}"
            ) from exc
        for path in files:
            if path == self.path:
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:  # its pump closed meanwhile: recorded
                continue
            except OSError as exc:
                raise StoreUnavailableError(f"{path}: cannot read the sent journal: {exc}") from exc
            for line in text.splitlines(keepends=True):
                entry = _read_line(line)
                if entry is None:
                    logger.debug(
                        "unreadable line in the sent journal skipped", extra={"path": str(path)}
                    )
                    continue
                entries.append(entry)
                files_of = self._others.setdefault(entry.owner, [])
                if not files_of or files_of[-1] != str(path):
                    files_of.append(str(path))
        return entries

    def forget(self, owners: Collection[str]) -> None:
        """Delete the files, read by the last :meth:`leftovers`, that hold only entries of
        ``owners`` (all recorded now)."""
        keep = {
            path for owner, paths in self._others.items() if owner not in owners for path in paths
        }
        for owner in owners:
            for path in self._others.pop(owner, []):
                if path in keep:
                    continue
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StoreUnavailableError(f"{path}: cannot delete: {exc}") from exc

    def close(self, *, recorded: bool) -> None:
        """Close this journal's file; ``recorded``: every entry added is recorded in the
        store, so the file is deleted (else it is left for the next :func:`settle`)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        os.close(fd)
        if recorded:
            try:
                os.unlink(self.path)
            except OSError as exc:
                logger.warning(
                    "cannot delete a sent journal file; the next pump reads and deletes it",
                    extra={"path": str(self.path), "error": str(exc)},
                )


def _writable(field: str) -> bool:
    """True when ``field`` fits a journal line: no tab, no line break."""
    return not any(mark in field for mark in "\t\r\n")


def _read_line(line: str) -> SentEntry | None:
    """The entry a journal line holds; None for a line cut short or not ours."""
    if not line.endswith("\n"):
        return None
    parts = line[:-1].split("\t")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        sent_at = datetime.fromisoformat(parts[0])
    except ValueError:
        return None
    if sent_at.tzinfo is None:
        return None
    return SentEntry(parts[2], parts[1], sent_at)


def owner_gone(owner: str) -> bool:
    """True when the sender ``owner`` (``host:pid:random``, as
    :func:`~asm_email_rules.send.default_owner` makes it) ran on this host as a process that
    no longer exists, so it will record nothing more. False whenever that cannot be told (an
    owner named otherwise, another host, this process, a system without POSIX signals):
    :func:`settle` then waits for the owner's claim to expire."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if os.name != "posix" or host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's: EPERM)
        return False
    return False


@attrs.define
class Settled:
    """What :func:`settle` came to: ``done``, the owners all of whose entries the store now
    has recorded (or had, or no longer holds for them): their journals may be forgotten once
    the unit of work it ran in committed; ``waiting``, the entries of senders that may still
    record them themselves, by Message-ID; ``recorded``, how many replies it recorded SENT."""

    done: set[str] = attrs.field(factory=set)
    waiting: dict[str, SentEntry] = attrs.field(factory=dict)
    recorded: int = 0


def settle(
    entries: Iterable[SentEntry],
    repository: Repository,
    *,
    owner: str,
    now: datetime,
    into: Settled | None = None,
) -> Settled:
    """Record SENT, for their owners, the journal's entries whose owners will not: ``owner``
    itself (an earlier pump of this sender, closed: its replies are still claimed by it), an
    owner whose process is gone (:func:`owner_gone`), or one whose claim has expired (a claim
    another sender may take: the reply would be sent again).

    An entry whose reply is no longer PENDING and claimed by its owner is done already
    (recorded, or taken over by another sender after its claim expired: that one's resend is
    the crash window DESIGN 4 allows). Other entries wait in :attr:`Settled.waiting`. The
    writes join the caller's unit of work, if any: forget the journals of
    :attr:`Settled.done` only after it committed. Raises what the repository raises."""
    settled = Settled() if into is None else into
    entries = list(entries)
    gone: dict[str, bool] = {}
    for entry in entries:
        key = entry.reply_message_id
        settled.waiting.pop(key, None)
        outbox = repository.outbox_entry(key)
        if (
            outbox is None
            or outbox.status is not ReplyStatus.PENDING
            or outbox.claimed_by != entry.owner
        ):
            continue  # recorded already, or no longer this owner's to record
        if entry.owner not in gone:
            gone[entry.owner] = entry.owner == owner or owner_gone(entry.owner)
        expired = outbox.claimed_until is None or outbox.claimed_until <= now
        if not (gone[entry.owner] or expired):
            settled.waiting[key] = entry
            continue
        if repository.finish_reply(key, entry.owner, ReplyStatus.SENT, entry.sent_at):
            settled.recorded += 1
            logger.info(
                "reply recorded sent from the sent journal (its sender stopped before "
                "recording it)",
                extra={"reply_message_id": key, "owner": entry.owner},
            )
    still = {entry.owner for entry in settled.waiting.values()}
    settled.done |= {entry.owner for entry in entries} - still
    return settled
