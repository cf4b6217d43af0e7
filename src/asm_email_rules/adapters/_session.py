"""Context-manager support shared by the mailboxes that hold a server connection."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from asm_email_rules.errors import MailboxError

log = logging.getLogger(__name__)


class ServerSession:
    """``with`` connects on entry and closes on exit.

    A close that fails while another error is already propagating is logged, not raised, so the
    caller sees the first error (the one that explains what went wrong).
    """

    def _client(self) -> object:
        """Connect (or return the open connection)."""
        raise NotImplementedError

    def close(self) -> None:
        """Commit what the protocol commits on close and release the connection."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._client()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except MailboxError:
            log.warning("%r: close failed while handling another error", self, exc_info=True)
