"""What the bundled mailboxes share: the deprecated ``list_ids`` name, ``with`` support for the
ones that hold a server connection, and how their errors read."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Set
from types import TracebackType
from typing import Self

from asm_email_rules.errors import MailboxError

log = logging.getLogger(__name__)


_SESSION_TROUBLE_RE = re.compile(
    r"throttl|unavailable|exceeded|try again later|too many|busy", re.IGNORECASE
)


MAX_NUMBER_DIGITS = 20
"""The most digits of a number a mail server sends that is read as one (RFC 9051's number64
has 19; UIDs, message numbers and sizes fewer): a longer one is the server's nonsense, and
Python refuses to convert one of over 4,300 digits (``ValueError``, which would escape the
adapter instead of its MailboxError)."""


SHOWN_TEXT = 300
"""The most characters of a server's own words (a refusal's, a hang-up's) an error quotes:
what is kept per message or per UID, and logged with each, stays this long whatever the
server sent (a line may be up to the adapter's ``max_line_bytes``, megabytes)."""


def shown_text(text: str) -> str:
    """``text``, a server's words, cut to :data:`SHOWN_TEXT` characters (``...`` marks a cut)."""
    return text if len(text) <= SHOWN_TEXT else text[:SHOWN_TEXT] + "..."


def says_session_trouble(text: str) -> bool:
    """True when a server's refusal says, in words, that the session is in trouble rather
    than the message asked for: it throttles us or is unavailable, busy, over a limit
    (Microsoft's "Request is throttled" and "Server Unavailable", Gmail's "Account exceeded
    command or bandwidth limits"). Such a refusal is never taken for one message's."""
    return _SESSION_TROUBLE_RE.search(text) is not None


def refuses_only_what_was_asked(code: str | None, text: str, session_codes: Set[str]) -> bool:
    """True when a server's refusal, with response code ``code`` (None: it has none) and
    words ``text``, refuses what was asked for (one message, a fetch's messages), not the
    session: not when ``code`` is one of the protocol's ``session_codes`` (case-insensitive),
    nor when :func:`says_session_trouble` of ``text``. IMAP's tagged ``NO`` and POP3's
    ``-ERR`` are read alike this way; each protocol gives its codes."""
    if code is not None and code.upper() in session_codes:
        return False
    return not says_session_trouble(text)


def busy_at_sign_in(
    code: str | None, text: str, busy_codes: Set[str], credential_codes: Set[str]
) -> bool:
    """True when a server's refusal of a sign-in, with response code ``code`` (None: it has
    none) and words ``text``, says it cannot take the session now (the maildrop locked by
    another session, too many connections, throttled, unavailable) rather than that the
    credentials are wrong: ``code`` is one of the protocol's ``busy_codes``, or, not one of
    its ``credential_codes``, the words say so (:func:`says_session_trouble`: Dovecot's
    "Maximum number of connections ... exceeded", Gmail's "[ALERT] Too many simultaneous
    connections"). Such a refusal is the server's trouble, to be tried again later, and not
    a reason to look at the password or the token."""
    if code is not None and code.upper() in busy_codes:
        return True
    if code is not None and code.upper() in credential_codes:
        return False
    return says_session_trouble(text)


def error_text(exc: BaseException) -> str:
    """A server library's error as text: the server's own words (imaplib and poplib pass its
    bytes through), or the system's for a socket error ("Broken pipe", "Connection reset by
    peer", where ``str()`` of a bare errno would give "32")."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeError):  # its first argument is only the codec's name
        return str(exc)
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace")
    return str(arg) or type(exc).__name__


class KeyedMailbox:
    """Gives a mailbox with :meth:`list_keys` the old name ``list_ids`` (deprecated).

    The Mailbox methods take mailbox keys (UID, UIDL, Maildir key), not Message-IDs, so
    ``list_ids`` became ``list_keys``; callers of the old name get the same keys and a warning.
    """

    def list_keys(self) -> Iterator[str]:
        """The keys of the messages waiting, oldest first."""
        raise NotImplementedError

    def list_ids(self) -> Iterator[str]:
        """Deprecated: use :meth:`list_keys` (same result)."""
        warnings.warn(
            f"{type(self).__name__}.list_ids() is deprecated; use list_keys()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.list_keys()


class ServerSession(KeyedMailbox):
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
