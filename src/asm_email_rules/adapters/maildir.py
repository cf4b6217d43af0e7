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
import glob
import heapq
import logging
import mailbox
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

import attrs

from asm_email_rules.adapters._session import KeyedMailbox
from asm_email_rules.errors import MailboxError, MessageGoneError, MessageUnreadableError
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


class _Readable(Protocol):
    """A message file open for reading (a file, or the Maildir's proxy of one)."""

    def read(self, size: int = ..., /) -> bytes: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> object: ...


_ANNOTATED_HEAD = 64 << 10
"""Bytes of a message read before its quarantine copy's reason header is written (the header
takes the line end of the message's first line)."""

_COPY_CHUNK = 1 << 20
"""Bytes copied at a time into a quarantine copy."""


def _bounded_read(handle: _Readable, limit: int | None) -> bytes:
    """All of ``handle``, or its first ``limit`` bytes when it is longer (a ``read(n)``
    allocates ``n`` bytes first, so a file known to be shorter is read whole: 40 µs a message
    less with the service's bound of 100 MiB)."""
    if limit is None:
        return handle.read()
    fileno = getattr(handle, "fileno", None)  # a file; not the Maildir's proxy of one
    if fileno is not None and os.fstat(fileno()).st_size <= limit:
        return handle.read()
    return handle.read(limit)


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


LISTING_AHEAD = 4
"""A limited Maildir listing keeps this many times its ``limit`` of the folder's oldest keys
for the next sessions (:meth:`MaildirMailbox.list_keys`), :data:`LISTING_AHEAD_KEYS` at
most."""

LISTING_AHEAD_KEYS = 2048
"""The most keys a scan keeps (a session's worth, when that is more): about 1 MB at its peak."""

LISTING_AHEAD_SECONDS = 60.0
"""How long the keys a scan kept ahead serve the next listings of the folder, at most."""

_KEPT_FOLDERS = 8  # folders whose keys are kept ahead at once (the least recent one goes)

_Entry = tuple[str, str, Sequence[str]]  # a key, its file, its earlier files (new/..., cur/...)


@attrs.define
class _Kept:
    """What one limited scan of a folder kept for the next listings (see :class:`_KeptAhead`)."""

    at: float  # time.monotonic() of the scan
    keys: list[_Entry]  # oldest first
    skipped: list[str]  # the keys in the scan's skip older than the newest kept
    unlinked: set[str] = attrs.Factory(set)  # keys this process has unlinked since


class _KeptAhead:
    """The oldest keys of each folder's last limited scan, for the next limited listings of
    the folder in this process (the polling service's next sessions, each with a mailbox of
    its own): kept for :data:`LISTING_AHEAD_SECONDS`, for :data:`_KEPT_FOLDERS` folders at
    most (about a hundred bytes a key).

    A listing served from them is the ``limit`` oldest keys kept that it does not skip. The
    keys whose files this process unlinked since (a session's deletions, quarantines: told by
    :meth:`forget`) are dropped. Anything else that changed is left to a new scan: a kept
    key to list whose file is no longer where the scan found it (moved from ``new`` to
    ``cur`` by a mail program, or removed by one), a key the scan skipped that the listing
    does not skip (a message kept to retry, in the next pass: it is listed in its place),
    fewer than ``limit`` keys left, or keys kept too long ago.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[str, _Kept] = {}
        # folders being served or scanned -> the keys this process unlinked there meanwhile
        # (a session's end unlinks on its own thread while the next session lists)
        self._watched: dict[str, set[str]] = {}

    def keep(self, root: str, kept: _Kept) -> None:
        """Keep what a scan of ``root`` kept for the next listings (the earlier goes), with
        what was unlinked while it scanned."""
        with self._lock:
            kept.unlinked.update(self._watched.pop(root, ()))
            self._folders.pop(root, None)
            while len(self._folders) >= _KEPT_FOLDERS:
                del self._folders[next(iter(self._folders))]
            self._folders[root] = kept

    def unwatch(self, root: str) -> None:
        """The scan that :meth:`serve` left ``root`` watched for kept nothing (or failed)."""
        with self._lock:
            self._watched.pop(root, None)

    def forget(self, root: str, key: str) -> None:
        """This process unlinked the files of ``key`` in ``root``: not to be listed again."""
        with self._lock:
            kept = self._folders.get(root)
            if kept is not None:
                kept.unlinked.add(key)
            elif root in self._watched:
                self._watched[root].add(key)

    def serve(self, root: str, limit: int, skip: Container[str]) -> list[_Entry] | None:
        """The ``limit`` oldest keys kept for ``root`` that ``skip`` does not hold, with their
        files; None when the folder must be scanned (see the class; what was kept for it is
        then dropped), and until :meth:`keep` or :meth:`unwatch` the keys unlinked there are
        remembered for the scan's keys. The files are looked at without the lock."""
        with self._lock:
            kept = self._folders.pop(root, None)
            self._watched[root] = set()
            if kept is None:
                return None
        served = None
        try:
            served = self._served(root, kept, limit, skip)
        finally:
            with self._lock:
                if served is not None:
                    kept.unlinked.update(self._watched.pop(root, ()))
                    self._folders.setdefault(root, kept)
        return served

    @staticmethod
    def _served(root: str, kept: _Kept, limit: int, skip: Container[str]) -> list[_Entry] | None:
        """:meth:`serve`'s answer from ``kept``, which it owns meanwhile (and tidies)."""
        if time.monotonic() - kept.at > LISTING_AHEAD_SECONDS:
            return None
        unlinked, kept.unlinked = kept.unlinked, set()
        kept.skipped = [key for key in kept.skipped if key not in unlinked]
        if any(key not in skip for key in kept.skipped):
            return None
        if unlinked:
            kept.keys = [entry for entry in kept.keys if entry[0] not in unlinked]
        served: list[_Entry] = []
        for entry in kept.keys:
            if entry[0] in skip:
                continue
            if not os.path.exists(os.path.join(root, entry[1])):
                return None
            served.append(entry)
            if len(served) == limit:
                return served
        return None


_KEPT_AHEAD = _KeptAhead()


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

    def __init__(
        self,
        path: str | Path,
        quarantine_folder: str = ".Quarantine",
        *,
        max_message_size: int | None = None,
    ) -> None:
        """``max_message_size``: the most bytes of one message file :meth:`fetch` reads (None:
        all of it); the polling service's mailboxes get
        :func:`~asm_email_rules.ledger_key.read_bound` of the configuration's
        :attr:`~asm_email_rules.settings.Limits.max_read_size`. MailboxError when the folder
        cannot be opened or created."""
        self.path = Path(path)
        self._root = os.fspath(self.path)
        self.quarantine_folder = quarantine_folder
        self.max_message_size = max_message_size
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

        One directory scan (no per-file ``stat``); the file names found serve :meth:`fetch`
        and :meth:`delete` until the next listing. ``limit``: only the ``limit`` oldest keys,
        chosen as the scan goes, so the listing holds a bounded number of file names however
        many the folder has (the polling service asks for one session's worth,
        :attr:`bounded_listing`); None lists every key. ``skip``: keys not to list (the
        polling service's keys handled earlier in the pass). Raises MailboxError when a
        folder cannot be read.

        A limited scan keeps the oldest ``LISTING_AHEAD`` times ``limit`` keys not skipped
        (:data:`LISTING_AHEAD_KEYS` at most), and the next limited listings of the folder in
        this process (the next sessions, each with a mailbox of its own) take theirs from
        those (:class:`_KeptAhead`, which says when the folder is scanned again instead): one
        scan for several sessions, so a backlog of ``n`` files costs about
        ``n / (LISTING_AHEAD * limit)`` scans, not ``n / limit``, each of the whole folder.
        Maildir names start with the time of delivery, so mail delivered after the scan
        comes after the keys it kept, as a scan would list it. Mail whose name is older
        than those (moved into the folder, or a delivery that sat in ``tmp`` past a later
        one) is listed once they run out, or after ``LISTING_AHEAD_SECONDS``.
        """
        if limit is None or limit <= 0 or self._deleted:
            return iter(self._scan(limit, skip))
        try:
            served = _KEPT_AHEAD.serve(self._root, limit, skip)
            if served is not None:
                self._files = {key: name for key, name, _ in served}
                self._earlier = {key: list(earlier) for key, _, earlier in served if earlier}
                return iter([key for key, _, _ in served])
            skipped: list[str] = []
            ahead = max(limit, min(limit * LISTING_AHEAD, LISTING_AHEAD_KEYS))
            keys = self._scan(ahead, skip, skipped)
            if len(keys) > limit:  # a next session: it starts from these
                newest = _order(keys[-1])
                files, earlier = self._files, self._earlier
                _KEPT_AHEAD.keep(
                    self._root,
                    _Kept(
                        time.monotonic(),
                        [(key, files[key], earlier.get(key, ())) for key in keys],
                        [key for key in skipped if _order(key) < newest],
                    ),
                )
        finally:
            _KEPT_AHEAD.unwatch(self._root)  # nothing more to watch for (also on Ctrl-C)
        return iter(keys[:limit])

    def _scan(
        self,
        limit: int | None,
        skip: Container[str],
        skipped: list[str] | None = None,
    ) -> list[str]:
        """One scan of ``new`` and ``cur``: the ``limit`` oldest keys not in ``skip`` (None:
        every key), in order; their files (and those of the keys deleted this session,
        wherever they are now) are what :meth:`fetch`, :meth:`delete` and :meth:`close` use.
        ``skipped`` gets the keys in ``skip`` the scan came across (not
        all of those newer than the ``limit`` kept: most are passed over on their names)."""
        deleted = _Files()  # this session's deletions: their files, for close()
        kept = _Oldest(limit)
        track = self._deleted  # every file of a deleted key is found, however late
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
                        elif skipped is not None:
                            skipped.append(key)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot list: {exc}") from exc
        files = kept.files
        keys = sorted(files.names, key=_order)
        self._files = files.names | deleted.names
        self._earlier = files.earlier | deleted.earlier
        return keys

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

    def fetch(self, key: str) -> bytes:
        """The exact bytes of the message file, or its first ``max_message_size`` bytes. A
        file that cannot be read (its permissions, an I/O error) raises
        MessageUnreadableError; one gone since the listing, MessageGoneError."""
        with self._open(key) as handle:
            try:
                return _bounded_read(handle, self.max_message_size)
            except OSError as exc:  # this file (an I/O error): the folder still works
                raise MessageUnreadableError(
                    f"Maildir {self.path}: cannot read {key!r}: {exc}"
                ) from exc

    def _open(self, key: str) -> _Readable:
        """The message file of ``key``, open for reading; errors as :meth:`fetch`'s."""
        if key in self._deleted:
            raise MailboxError(f"Maildir {self.path}: no message {key!r} (deleted)")
        name = self._files.get(key)
        try:
            if name is not None:
                with contextlib.suppress(FileNotFoundError):  # moved since the listing
                    return open(self._file(name), "rb")
            return self._maildir.get_file(key)
        except KeyError as exc:
            raise MessageGoneError(f"Maildir {self.path}: no message {key!r}") from exc
        except OSError as exc:
            raise MessageUnreadableError(
                f"Maildir {self.path}: cannot read {key!r}: {exc}"
            ) from exc

    def delete(self, key: str) -> None:
        """Hide the message now and unlink its file on :meth:`close`; a message already gone is
        not an error."""
        self._deleted.add(key)

    def _unlink(self, key: str) -> None:
        """Unlink every file of ``key``; then the keys kept ahead for the next listings of
        the folder (:class:`_KeptAhead`) forget it (not when unlinking raised: the file may
        still be there)."""
        for earlier in self._earlier.get(key, ()):  # the same key found twice in the listing
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(earlier))
        self._earlier.pop(key, None)
        name = self._files.get(key)
        if name is not None:
            try:
                os.unlink(self._file(name))
            except FileNotFoundError:
                name = None  # moved since the listing: let the Maildir find it
        if name is None:
            self._maildir.discard(key)
        _KEPT_AHEAD.forget(self._root, key)

    def _quarantine_folder(self) -> Path:
        """The Maildir++ quarantine folder (``<path>/.<name>``), created if missing."""
        name = self.quarantine_folder.lstrip(".")
        if not name or "/" in name:
            raise MailboxError(
                f"Maildir {self.path}: bad quarantine folder {self.quarantine_folder!r}"
            )
        try:
            self._maildir.add_folder(name)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot create folder .{name}: {exc}") from exc
        return self.path / f".{name}"

    def quarantine(self, key: str, reason: str) -> None:
        """Copy the whole message (not cut at ``max_message_size``, and streamed: never held
        whole), with the reason header, into the quarantine folder under its own key; then
        remove it.

        The copy is written in the folder's ``tmp`` and renamed into its ``new`` (the Maildir
        delivery), replacing a copy an earlier attempt left there, and not made when one is
        already in its ``cur``: a process killed between the copy and the removal leaves the
        message to be set aside again, never a second copy in the folder."""
        folder = self._quarantine_folder()
        target = folder / "new" / key
        with self._open(key) as source:
            try:
                if not glob.glob(glob.escape(str(folder / "cur" / key)) + ":*"):
                    self._copy_annotated(source, folder / "tmp", target, reason)
                self._unlink(key)
            except OSError as exc:
                raise MailboxError(
                    f"Maildir {self.path}: cannot quarantine {key!r}: {exc}"
                ) from exc
        log.info(
            "message quarantined",
            extra={"maildir": str(self.path), "key": key, "new_key": key, "reason": reason},
        )

    @staticmethod
    def _copy_annotated(source: _Readable, tmp: Path, target: Path, reason: str) -> None:
        """Write ``source`` with the reason header into ``tmp``, then rename it to ``target``
        (replacing what is there), a megabyte at a time; nothing is left in ``tmp``."""
        scratch = tmp / f"{target.name}.{os.getpid()}.{threading.get_ident()}"
        try:
            with open(scratch, "wb") as out:
                head = source.read(_ANNOTATED_HEAD)
                out.write(annotate(head, reason))
                shutil.copyfileobj(source, out, _COPY_CHUNK)
            os.replace(scratch, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()  # left only when the write or the rename failed

    def add(self, raw: bytes) -> str:
        """Deliver ``raw`` into ``new`` (for tests and tools); returns its key."""
        try:
            return self._maildir.add(raw)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot add a message: {exc}") from exc

    def close(self) -> None:
        """Unlink the files of the deleted messages; safe to repeat."""
        try:
            while self._deleted:
                key = next(iter(self._deleted))
                self._unlink(key)
                self._deleted.discard(key)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot delete {key!r}: {exc}") from exc
        finally:
            self._maildir.close()

    def abort(self) -> None:
        """End the session without deleting anything: the deleted messages come back."""
        self._deleted.clear()
        self._maildir.close()
