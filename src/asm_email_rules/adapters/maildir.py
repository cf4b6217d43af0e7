"""Maildir :class:`~asm_email_rules.protocols.Mailbox` on :class:`mailbox.Maildir`.

Mailbox keys are Maildir keys. Deleting unlinks the file at once. Quarantine stores the message
in a Maildir++ sub-folder (``.Quarantine``) with the reason in a leading
``X-ASM-Quarantine-Reason`` header, then removes the original: the copy is written first, so a
crash in between leaves a duplicate, never a loss.
"""

from __future__ import annotations

import logging
import mailbox
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from asm_email_rules.adapters._session import KeyedMailbox
from asm_email_rules.errors import MailboxError
from asm_email_rules.outgoing import format_header_field, sanitize_header_text

__all__ = ["QUARANTINE_HEADER", "MaildirMailbox", "annotate"]

log = logging.getLogger(__name__)

QUARANTINE_HEADER = "X-ASM-Quarantine-Reason"
"""Header prepended to a quarantined message (IMAP and Maildir) to say why it was set aside."""

_KEY_TIME_RE = re.compile(r"(\d+)(?:\.(\d+))?")


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


def _order(key: str) -> tuple[int, int, str]:
    """Delivery order: the seconds (and microseconds) Maildir keys start with, then the key."""
    match = _KEY_TIME_RE.match(key)
    if match is None:
        return (0, 0, key)
    return (int(match.group(1)), int(match.group(2) or 0), key)


class MaildirMailbox(KeyedMailbox):
    """A Maildir folder (``new`` and ``cur``) as a mailbox; folders are created as needed."""

    def __init__(self, path: str | Path, quarantine_folder: str = ".Quarantine") -> None:
        self.path = Path(path)
        self.quarantine_folder = quarantine_folder
        try:
            self._maildir = mailbox.Maildir(self.path, factory=None, create=True)
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

    def list_keys(self) -> Iterator[str]:
        """Keys of the messages in ``new`` and ``cur``, oldest delivery first."""
        try:
            keys = sorted(self._maildir.keys(), key=_order)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot list: {exc}") from exc
        return iter(keys)

    def fetch(self, key: str) -> bytes:
        """The exact bytes of the message file.

        Read through ``get_file``: ``mailbox.Maildir.get_bytes`` copies the whole message once
        more to turn ``os.linesep`` into ``\\n``, a no-op on POSIX that doubled peak memory.
        """
        try:
            with self._maildir.get_file(key) as handle:
                data = handle.read()
            return data if os.linesep == "\n" else data.replace(os.linesep.encode(), b"\n")
        except KeyError as exc:
            raise MailboxError(f"Maildir {self.path}: no message {key!r}") from exc
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot read {key!r}: {exc}") from exc

    def delete(self, key: str) -> None:
        """Remove the message file now; a message already gone is not an error."""
        try:
            self._maildir.discard(key)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot delete {key!r}: {exc}") from exc

    def _quarantine_box(self) -> mailbox.Maildir:
        name = self.quarantine_folder.lstrip(".")
        if not name or "/" in name:
            raise MailboxError(
                f"Maildir {self.path}: bad quarantine folder {self.quarantine_folder!r}"
            )
        try:
            return self._maildir.add_folder(name)  # Maildir++: <path>/.<name>, created if missing
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot create folder .{name}: {exc}") from exc

    def quarantine(self, key: str, reason: str) -> None:
        """Copy the message, with the reason header, into the quarantine folder; then remove it."""
        raw = self.fetch(key)
        box = self._quarantine_box()
        try:
            new_key = box.add(annotate(raw, reason))
            self._maildir.discard(key)
        except OSError as exc:
            raise MailboxError(f"Maildir {self.path}: cannot quarantine {key!r}: {exc}") from exc
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
        """Nothing to commit: Maildir changes are immediate."""
        self._maildir.close()
