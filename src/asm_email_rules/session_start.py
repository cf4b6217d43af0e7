"""The start of the next mailbox session, opened ahead on a worker thread.

A session on a mail server begins with round trips that depend on nothing the session before
it does: connect, TLS, sign in (for IMAP three to five round trips, and whatever the server
does meanwhile). On a distant server they are much of what a session of a hundred messages
costs. So when a session's listing shows more messages than it will handle
(a next session is certain), the polling service creates the next session's mailbox and lets
it open on a worker thread (:class:`SessionStart`) while the current session is read; the next
session then begins with its listing.

A mailbox opts in with ``opens_ahead = True`` and an ``open()`` that connects and signs in
at once instead of at the first call that needs it, raising what that call would raise
(:class:`~asm_email_rules.adapters.imap.ImapMailbox`). It must allow two sessions of the same
folder at once: the one opening ahead, and the one being read (with ``closes_concurrently``, a
third one's end may still run behind them). POP3 does not: a server locks the maildrop for
one session. And ``open()`` must not take a view of the folder that the end running behind
could leave stale: IMAP's ``SELECT`` waits for the session's first call, since an expunge by
another connection may stay in a selected view until the server reports it (RFC 3501 7.4.1),
and the polling service forgets the keys of a session's end once that end has returned.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol, cast

from asm_email_rules.protocols import Mailbox
from asm_email_rules.session_end import abandon, closes_concurrently

__all__ = ["SessionStart", "opens_ahead"]

log = logging.getLogger(__name__)


class _Opening(Protocol):
    def open(self) -> None: ...


def opens_ahead(mailbox: Mailbox) -> bool:
    """True when ``mailbox`` says a mailbox of its kind may be opened ahead of its session,
    and that its sessions may overlap at all (``closes_concurrently``): docs/integrators.md
    has a server of one connection a user served by a subclass with ``closes_concurrently =
    False``, which inherits ``opens_ahead``; opening ahead would be a second connection."""
    return (
        getattr(mailbox, "opens_ahead", False) is True
        and callable(getattr(mailbox, "open", None))
        and closes_concurrently(mailbox)
    )


class SessionStart:
    """``mailbox.open()`` on a worker thread, started at once (``RuntimeError`` when no thread
    can be had). :meth:`take` waits for it and hands the mailbox over; :meth:`discard` gives
    it up without waiting (it is abandoned, ``abort()`` or ``close()``, once open).

    From now on only this object uses ``mailbox`` until :meth:`take` returns it.
    """

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._finished = False
        self._discarded = False
        self._opened = threading.Event()
        threading.Thread(target=self._run, name="asm-session-start", daemon=True).start()

    def _run(self) -> None:
        try:
            cast(_Opening, self._mailbox).open()
        except BaseException as exc:  # handed to the session that takes the mailbox
            self._error = exc
        with self._lock:
            self._finished = True
            discarded = self._discarded
        self._opened.set()
        if discarded:
            _give_up(self._mailbox)

    def take(self) -> Mailbox:
        """The mailbox, once open; raises what its ``open()`` raised (the session fails to
        connect as it would have on its own thread), after abandoning whatever that left
        open, as a session that fails at its first call ends its mailbox. Interrupted
        while it waits (Ctrl-C), it discards the mailbox before that goes on up: no one
        else holds it any more."""
        try:
            self._opened.wait()
        except BaseException:
            self.discard()
            raise
        if self._error is not None:
            _give_up(self._mailbox)
            raise self._error
        return self._mailbox

    def failure(self) -> BaseException | None:
        """Once ``open()`` has finished (waited for): what it raised, or None when it
        opened. Interrupted while it waits (Ctrl-C), the mailbox is discarded first."""
        try:
            self._opened.wait()
        except BaseException:
            self.discard()
            raise
        return self._error

    def discard(self) -> None:
        """Give the mailbox up: abandoned here when its ``open()`` has finished (however it
        went), else by the worker thread once it has (not waited for)."""
        with self._lock:
            self._discarded = True
            finished = self._finished
        if finished:
            _give_up(self._mailbox)


def _give_up(mailbox: Mailbox) -> None:
    """:func:`~asm_email_rules.session_end.abandon`, never raising: it runs where nothing can
    be done about a failure (on the worker thread, or on the way out of a failure)."""
    try:
        abandon(mailbox)
    except Exception:
        log.debug("abandoning a mailbox opened ahead failed", exc_info=True)
