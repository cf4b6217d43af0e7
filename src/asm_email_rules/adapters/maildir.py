"""Maildir :class:`~asm_email_rules.protocols.Mailbox` on :class:`mailbox.Maildir`.

Mailbox keys are Maildir keys. Deleting hides the message at once and unlinks its file on
:meth:`~MaildirMailbox.close` (as IMAP expunges and POP3 deletes at the end of a session), so
the polling service can make its store durable first. Quarantine stores the message in a
Maildir++ sub-folder (``.Quarantine``) with the reason in a leading ``X-ASM-Quarantine-Reason``
header, then removes the original: the copy is written first, so a crash in between leaves a
duplicate, never a loss.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import mailbox
import os
import re
import socket
import threading
import time
from collections.abc import Container, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from asm_email_rules.adapters._session import KeyedMailbox
from asm_email_rules.errors import MailboxError
from asm_email_rules.outgoing import format_header_field, sanitize_header_text

__all__ = ["QUARANTINE_HEADER", "MaildirMailbox", "annotate"]

log = logging.getLogger(__name__)

QUARANTINE_HEADER = "X-ASM-Quarantine-Reason"
"""Header prepended to a quarantined message (IMAP and Maildir) to say why it was set aside."""

_KEY_TIME_RE = re.compile(r"(\d+)(?:\.(?:M(\d+))?(\d+)?)?")
_KEY_COUNTER_RE = re.compile(r"Q(\d+)")
_KEY_MICRO_RE = re.compile(r"M(\d+)")
_SUBFOLDERS = ("tmp", "new", "cur")


def annotate(raw: bytes, reason: str) -> bytes:
    """``raw`` with a leading ``X-ASM-Quarantine-Reason`` header, in the message's line ends.

    The reason is flattened to one safe line (it often holds exception text). The original
    bytes follow unchanged, so dropping the first header field restores them exactly.
    """
    first = raw.find(b"\n")
    crlf = first < 0 or raw[first - 1 : first] == b"\r"
    field = format_header_field(QUARANTINE_HEADER, sanitize_header_text(reason) or "unspecified")
    line_end = "\r\n" if crlf else "\n"
    return (field.replace("\r\n", line_end) + line_end).encode("ascii") + raw


def _order(key: str) -> tuple[int, int, int, str]:
    """Delivery order: the seconds Maildir keys start with, then the microseconds (``M``
    field, compared as a number: other programs do not always zero-pad it), then the delivery
    counter (``Q`` field), then the key."""
    match = _KEY_TIME_RE.match(key)
    if match is None:
        return (0, 0, 0, key)
    micro = match.group(2) or match.group(3) or "0"
    counter = _KEY_COUNTER_RE.search(key)
    return (int(match.group(1)), int(micro), int(counter.group(1)) if counter else 0, key)


class _Files:
    """File names by key from one scan of ``new`` and ``cur``: ``names`` the one found last,
    ``earlier`` any found before it (the same key twice: a file moved from ``new`` to ``cur``
    while the scan ran, or a copy), so that a deletion removes every file of the key."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.earlier: dict[str, list[str]] = {}

    def add(self, key: str, name: str) -> None:
        if key in self.names:
            self.earlier.setdefault(key, []).append(self.names[key])
        self.names[key] = name

    def drop(self, key: str) -> None:
        del self.names[key]
        self.earlier.pop(key, None)


class _Newest:
    """A key in :func:`_oldest`'s heap, which keeps the newest of the keys kept on top."""

    __slots__ = ("key", "order")

    def __init__(self, key: str) -> None:
        self.key = key
        self.order = _order(key)

    def __lt__(self, other: _Newest) -> bool:
        return self.order > other.order


class _Oldest:
    """The files of the ``limit`` oldest keys (:func:`_order`) offered so far (None: of every
    key); a key offered twice counts once. Holds the names of ``limit`` keys at most: one pass
    over the folder, ``O(n log limit)``."""

    def __init__(self, limit: int | None) -> None:
        self.files = _Files()
        self._limit = limit
        self._heap: list[_Newest] = []  # the keys kept, the newest first
        self._horizon = ""  # once ``limit`` keys are kept: the newest one's seconds, as digits

    def later(self, name: str) -> bool:
        """True when the key or file ``name`` was delivered after every key kept, ``limit``
        of them being kept: it cannot be among the oldest (most files of a backlog). Read off
        the name's leading seconds alone (:func:`_seconds`), compared as text with the
        horizon's when both have as many digits (equal-length digit strings order as numbers:
        no ``int`` for most files), and in the horizon's own second off its microseconds
        (:meth:`_later_in_second`); a name without them is left to :meth:`offer`."""
        horizon = self._horizon
        if not horizon:
            return False
        if name.find(".") == len(horizon):
            head = name[: len(horizon)]
            if head == horizon:
                return self._later_in_second(name, len(horizon) + 1)
            return head > horizon and head.isascii() and head.isdigit()
        seconds = _seconds(name)
        return seconds is not None and seconds > int(horizon)

    def _later_in_second(self, name: str, at: int) -> bool:
        """For a name of the horizon's second (its ``.`` at ``at - 1``): True when its
        microsecond field (``M``, as :func:`_order` reads it) is after the newest kept key's,
        so its whole order is; False when the rest of the order must decide (the same
        microsecond, or no ``M`` field: :meth:`offer` does). A burst of deliveries in one
        second (a backlog fetched at once) is then passed over at the cost of one match per
        file, not a heap entry each, session after session."""
        micro = _KEY_MICRO_RE.match(name, at)
        return micro is not None and int(micro.group(1)) > self._heap[0].order[1]

    def offer(self, key: str, name: str) -> None:
        """Keep the file ``name`` of ``key`` if ``key`` is among the oldest offered so far."""
        files, heap, limit = self.files, self._heap, self._limit
        if key in files.names or limit is None:
            files.add(key, name)
        elif len(files.names) < limit:
            files.add(key, name)
            heapq.heappush(heap, _Newest(key))
            if len(files.names) == limit:
                self._horizon = str(heap[0].order[0])
        elif heap and not self.later(key):
            candidate = _Newest(key)
            if heap[0] < candidate:  # older than the newest kept: it takes its place
                files.drop(heapq.heapreplace(heap, candidate).key)
                files.add(key, name)
                self._horizon = str(heap[0].order[0])


def _seconds(key: str) -> int | None:
    """The seconds a key starts with, the first field of :func:`_order`, read without a
    regular expression; None where that takes :func:`_order` itself (no ASCII digits up to
    the first dot)."""
    dot = key.find(".")
    head = key if dot < 0 else key[:dot]
    return int(head) if head.isascii() and head.isdigit() else None


LISTING_SESSIONS = 4
"""A listing with a ``limit`` scans the folder for this many times ``limit`` of the oldest keys
and keeps them for the listings after it (:class:`_Listing`): a scan reads every file name of
the folder, so a backlog of ``F`` messages read ``limit`` at a time cost ``F / limit`` scans
of up to ``F`` names each, which grows as the square of the backlog (50,000 waiting messages:
37 ms a scan, 0.37 ms a message of a 100-message session). Now one scan serves up to this many
sessions."""

LISTING_SECONDS = 30.0
"""How long a kept listing may serve later listings at most, however unchanged the folder."""


class _Listing:
    """The oldest keys of one scan of a folder (``order``, oldest first; ``files``, their file
    names, less those deleted or quarantined since), the keys the scan found and left out
    because they were skipped (``excluded``: a later listing may use this one only if it skips
    them too, or they are gone), and the folder's state when the scan began (``stamp``: the
    modification times of ``new`` and ``cur``, changed by any file added or removed; our own
    removals record the new state)."""

    __slots__ = ("excluded", "files", "order", "stamp", "taken_at")

    def __init__(
        self, order: list[str], files: _Files, excluded: set[str], stamp: tuple[int, int]
    ) -> None:
        self.order = order
        self.files = files
        self.excluded = excluded
        self.stamp = stamp
        self.taken_at = time.monotonic()


_listings: dict[str, _Listing] = {}
"""The kept listing of each folder (by its path), shared by the sessions of this process."""
_listings_lock = threading.Lock()  # a session's end unlinks on a thread of its own


def _stamp(root: str) -> tuple[int, int] | None:
    """The modification times of ``new`` and ``cur`` under ``root`` (None: unreadable)."""
    try:
        return (
            os.stat(os.path.join(root, "new")).st_mtime_ns,
            os.stat(os.path.join(root, "cur")).st_mtime_ns,
        )
    except OSError:
        return None


class _Maildir(mailbox.Maildir):
    """:class:`mailbox.Maildir` writing unique names with a zero-padded microsecond field.

    The standard library writes ``M5`` for 5 microseconds, so names of mail delivered in the
    same second do not sort as text in delivery order; ours are ``M000005``.
    """

    _serial = 0

    def _create_tmp(self) -> Any:
        now = time.time()
        host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        _Maildir._serial += 1
        unique = f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{_Maildir._serial}.{host}"
        path = os.path.join(self._path, "tmp", unique)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666))
            return open(path, "rb+")  # mailbox.Maildir writes and closes it
        except FileExistsError:
            raise mailbox.ExternalClashError(
                f"name clash prevented file creation: {path}"
            ) from None


class MaildirMailbox(KeyedMailbox):
    """A Maildir folder (``new`` and ``cur``) as a mailbox; folders are created as needed
    (also ``cur`` or ``tmp`` alone, when a mail server created only ``new``)."""

    closes_concurrently: ClassVar[bool] = True
    """:meth:`close` (unlinking the deleted messages' files) may run on another thread while
    a new session of the same folder is read (:mod:`~asm_email_rules.session_end`): that
    session may still list the files being unlinked, and the polling service skips them, as
    it skips every key it has handled in the pass that may still be listed."""

    bounded_listing: ClassVar[bool] = True
    """:meth:`list_keys` takes ``limit`` and ``skip``, so the polling service's session holds
    a session's worth of file names, not the folder's; and a key deleted or quarantined in a
    session whose :meth:`close` returned without error is never listed again (each of its
    files found by the listing is unlinked: a quarantine at once, a deletion on close), so
    the service forgets it (:class:`~asm_email_rules.protocols.Mailbox`)."""

    def __init__(self, path: str | Path, quarantine_folder: str = ".Quarantine") -> None:
        self.path = Path(path)
        self._root = os.fspath(self.path)
        self.quarantine_folder = quarantine_folder
        self._files: dict[str, str] = {}  # key -> file under path, from the last listing
        self._earlier: dict[str, list[str]] = {}  # key -> other files of it in that listing
        self._deleted: set[str] = set()  # hidden now, unlinked on close()
        try:
            if self.path.is_dir():
                for sub in _SUBFOLDERS:
                    (self.path / sub).mkdir(mode=0o700, exist_ok=True)
            self._maildir = _Maildir(self.path, factory=None, create=True)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot open: {exc}") from exc

    def __repr__(self) -> str:
        return f"MaildirMailbox({str(self.path)!r})"

    def __enter__(self) -> MaildirMailbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def list_keys(self, *, limit: int | None = None, skip: Container[str] = ()) -> Iterator[str]:
        """Keys of the messages in ``new`` and ``cur``, oldest delivery first (:func:`_order`).

        One directory scan (no per-file ``stat``), so a session costs the same whatever the
        backlog; the file names found serve :meth:`fetch` and :meth:`delete` until the next
        listing. ``limit``: only the ``limit`` oldest keys, chosen as the scan goes, so the
        listing holds ``limit`` file names however many the folder has (the polling service
        asks for one session's worth, :attr:`bounded_listing`); None lists every key.
        ``skip``: keys not to list (the polling service's keys handled earlier in the pass;
        checked once per file). Raises MailboxError when a folder cannot be read.
        """
        if limit is not None and limit > 0:
            kept_before = self._kept(limit, skip)
            if kept_before is not None:
                return kept_before
        deleted = _Files()  # this session's deletions: their files, for close()
        excluded: set[str] = set()  # keys found and skipped
        kept = _Oldest(None if limit is None else limit * LISTING_SESSIONS)
        track = self._deleted  # every file of a deleted key is found, however late
        stamp = _stamp(self._root)  # before the scan: a file added meanwhile is seen next time
        try:
            for sub in ("new", "cur"):
                with os.scandir(self.path / sub) as entries:
                    for entry in entries:
                        name = entry.name
                        if not track and kept.later(name):
                            continue
                        if name.startswith(".") or entry.is_dir():
                            continue
                        key = name.split(":", 1)[0]
                        if key in track:
                            deleted.add(key, f"{sub}/{name}")
                        elif key not in skip:
                            kept.offer(key, f"{sub}/{name}")
                        else:
                            excluded.add(key)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot list: {exc}") from exc
        files = kept.files
        keys = sorted(files.names, key=_order)
        if limit is not None and limit > 0:
            if stamp is not None:
                with _listings_lock:
                    _listings[self._root] = _Listing(keys, files, excluded, stamp)
            keys = keys[:limit]
        self._files = {key: files.names[key] for key in keys} | deleted.names
        self._earlier = {
            key: files.earlier[key] for key in keys if key in files.earlier
        } | deleted.earlier
        return iter(keys)

    def _kept(self, limit: int, skip: Container[str]) -> Iterator[str] | None:
        """The ``limit`` oldest keys not in ``skip`` from the listing an earlier scan kept
        (:data:`LISTING_SESSIONS`), when the folder has not changed since but by our own
        removals, the listing is younger than :data:`LISTING_SECONDS`, every key the scan left
        out is skipped now too, and it still holds ``limit`` such keys (beyond them, the
        folder holds keys it never saw). None: scan (so also once this mailbox has deleted a
        key: a scan finds every file of it, for :meth:`close`)."""
        if self._deleted:  # a scan finds every file of the keys deleted here, for close()
            return None
        with _listings_lock:
            listing = _listings.get(self._root)
            if listing is None:
                return None
            if (
                time.monotonic() - listing.taken_at > LISTING_SECONDS
                or _stamp(self._root) != listing.stamp
            ):
                del _listings[self._root]
                return None
            if not all(key in skip for key in listing.excluded):
                return None  # a key the scan left out is wanted now: it must scan again
            names, earlier = listing.files.names, listing.files.earlier
            keys: list[str] = []
            for key in listing.order:
                if key in names and key not in skip:
                    keys.append(key)
                    if len(keys) == limit:
                        break
            else:
                return None
            self._files = {key: names[key] for key in keys}
            self._earlier = {key: earlier[key] for key in keys if key in earlier}
        return iter(keys)

    def _forget_listed(self, *keys: str) -> None:
        """Take ``keys`` out of the kept listing: deleted or quarantined, never listed again."""
        with _listings_lock:
            listing = _listings.get(self._root)
            if listing is not None:
                for key in keys:
                    listing.excluded.discard(key)
                    if key in listing.files.names:
                        listing.files.drop(key)

    def _removed(self) -> None:
        """After our own removals: the kept listing knows of them (:meth:`_forget_listed`), so
        the folder's new state is its state."""
        with _listings_lock:
            listing = _listings.get(self._root)
            if listing is not None:
                stamp = _stamp(self._root)
                if stamp is None:
                    del _listings[self._root]
                else:
                    listing.stamp = stamp

    @staticmethod
    def fetch_ready(key: str) -> bool:
        """True: a fetch reads a local file and waits on no server (see
        :class:`~asm_email_rules.protocols.Mailbox`)."""
        return True

    def _file(self, name: str) -> str:
        """The path of the message file ``name`` (``new/...`` or ``cur/...``), as text: a
        :class:`~pathlib.Path` per message would intern every file name (Python 3.11's
        pathlib), and the interned-string table grows by a megabyte over a backlog."""
        return os.path.join(self._root, name)

    def _read(self, key: str) -> bytes:
        name = self._files.get(key)
        if name is not None:
            try:
                with open(self._file(name), "rb") as handle:
                    return handle.read()
            except FileNotFoundError:
                pass  # moved (new -> cur) or gone since the listing: ask the Maildir
            except OSError as exc:
                raise MailboxError(f"Maildir {self.path}: cannot read {key!r}: {exc}") from exc
        return self._maildir.get_bytes(key)

    def fetch(self, key: str) -> bytes:
        """The exact bytes of the message file."""
        if key in self._deleted:
            raise MailboxError(f"Maildir {self.path}: no message {key!r} (deleted)")
        try:
            return self._read(key)
        except KeyError as exc:
            raise MailboxError(f"Maildir {self.path}: no message {key!r}") from exc
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot read {key!r}: {exc}") from exc

    def delete(self, key: str) -> None:
        """Hide the message now and unlink its file on :meth:`close`; a message already gone is
        not an error."""
        self._deleted.add(key)
        self._forget_listed(key)

    def _unlink(self, key: str) -> None:
        for earlier in self._earlier.get(key, ()):  # the same key found twice in the listing
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(earlier))
        self._earlier.pop(key, None)
        name = self._files.get(key)
        if name is not None:
            try:
                os.unlink(self._file(name))
                return
            except FileNotFoundError:
                pass  # moved since the listing: let the Maildir find it
        self._maildir.discard(key)

    def _quarantine_box(self) -> mailbox.Maildir:
        name = self.quarantine_folder.lstrip(".")
        if not name or "/" in name:
            raise MailboxError(
                f"Maildir {self.path}: bad quarantine folder {self.quarantine_folder!r}"
            )
        try:
            self._maildir.add_folder(name)  # Maildir++: <path>/.<name>, created if missing
            return _Maildir(self.path / f".{name}", factory=None, create=False)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot create folder .{name}: {exc}") from exc

    def quarantine(self, key: str, reason: str) -> None:
        """Copy the message, with the reason header, into the quarantine folder; then remove it."""
        raw = self.fetch(key)
        box = self._quarantine_box()
        try:
            new_key = box.add(annotate(raw, reason))
            self._forget_listed(key)
            self._unlink(key)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot quarantine {key!r}: {exc}") from exc
        finally:
            self._removed()
        log.info(
            "message quarantined",
            extra={
                "maildir": str(self.path),
                "key": key,
                "new_key": new_key,
                "reason": reason,
            },
        )

    def add(self, raw: bytes) -> str:
        """Deliver ``raw`` into ``new`` (for tests and tools); returns its key."""
        try:
            return self._maildir.add(raw)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot add a message: {exc}") from exc

    def close(self) -> None:
        """Unlink the files of the deleted messages; safe to repeat."""
        removing = bool(self._deleted)
        try:
            while self._deleted:
                key = next(iter(self._deleted))
                self._unlink(key)
                self._deleted.discard(key)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot delete {key!r}: {exc}") from exc
        finally:
            if removing:
                self._removed()
            self._maildir.close()

    def abort(self) -> None:
        """End the session without deleting anything: the deleted messages come back (and the
        listing kept for later sessions, which forgot them, is dropped)."""
        self._deleted.clear()
        with _listings_lock:
            _listings.pop(self._root, None)
        self._maildir.close()
