"""The end of a mailbox session: the store made durable, then the mailbox's deletions.

The order is the exactly-once rule (DESIGN 4): a message leaves the mailbox only once its
record survives a power loss, so :func:`end_session` syncs the store first and, when the sync
fails, abandons the session without deleting anything.

Both steps are mostly waiting on the disk (an ``fsync`` of the store's write-ahead log; one
``unlink`` per message for Maildir), so the polling service lets them run on a worker thread
(:class:`SessionEnd`) while it reads the next session, where both sides allow it:

- the store offers ``detached_sync()``: a function doing what its ``sync()`` does that may run
  on another thread while the store is in use (:class:`~asm_email_rules.adapters.sqlite.
  SqliteRepository`: an ``fsync`` of its WAL file, which never touches the connection);
- the mailbox sets ``closes_concurrently = True``: its ``close()`` may run while a new
  session of the same folder is read (:class:`~asm_email_rules.adapters.maildir.
  MaildirMailbox`: unlinks; :class:`~asm_email_rules.adapters.imap.ImapMailbox`: ``UID
  STORE`` and ``UID EXPUNGE`` on its own connection). The next session may still see those
  messages (listed, or marked ``\\Deleted`` and not yet expunged); the polling service skips
  every key it has handled in the pass (for a mailbox with ``bounded_listing``: until the
  end that removes it has closed the mailbox without error). POP3 does not: a second session
  finds the maildrop locked until the first one's QUIT.

A store without ``detached_sync`` is synced on the caller's thread, and only the mailbox's
close overlaps. A store may also offer ``detached_upkeep()``: a function run on that thread
after a durable end, while the next session goes on (:meth:`SessionEnd.wait` does not wait
for it; the bundled SQLite store copies its WAL back into the database file there, so its
writer's commits seldom stall for that).

Until a session's end has finished, the replies that session recorded are not durable and
must not be sent: the polling service holds them back (by their Message-IDs,
:attr:`~asm_email_rules.pipeline.ProcessResult.outgoing`) and offers them to its reply pump
once it has waited for that end, at the end of the next session.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import attrs

from asm_email_rules.errors import MailboxError, RepositoryError
from asm_email_rules.protocols import Mailbox

__all__ = [
    "EndOutcome",
    "SessionEnd",
    "abandon",
    "closes_concurrently",
    "detached_sync",
    "detached_upkeep",
]

log = logging.getLogger(__name__)


@attrs.frozen
class EndOutcome:
    """How a session's end went: ``sync_error`` when the store could not be made durable
    (nothing was deleted), ``close_error`` when the mailbox's deletions failed after a good
    sync (the messages come back and are duplicates then)."""

    sync_error: RepositoryError | None = None
    close_error: MailboxError | None = None

    @property
    def durable(self) -> bool:
        """True when the session's records reached the disk."""
        return self.sync_error is None


def abandon(mailbox: Mailbox) -> None:
    """End a session without its deletions (``abort``, where the mailbox has one; otherwise
    ``close``, the only end it has). A mailbox failure here is ignored: nothing was lost."""
    abort = getattr(mailbox, "abort", None)
    with contextlib.suppress(MailboxError):
        if callable(abort):
            abort()
        else:
            mailbox.close()


def end_session(sync: Callable[[], None] | None, mailbox: Mailbox) -> EndOutcome:
    """Run ``sync`` (None: nothing to sync), then close ``mailbox`` so its deletions take
    effect; when the sync raises :class:`RepositoryError` the mailbox is abandoned instead
    (``abort`` where it has one). Raises only what neither step was expected to raise."""
    if sync is not None:
        try:
            sync()
        except RepositoryError as exc:
            abandon(mailbox)
            return EndOutcome(sync_error=exc)
    try:
        mailbox.close()
    except MailboxError as exc:
        return EndOutcome(close_error=exc)
    return EndOutcome()


class SessionEnd:
    """:func:`end_session` on a worker thread, started at once; :meth:`wait` for its outcome.

    ``sync`` must be safe to call on another thread (``detached_sync()``), and ``mailbox``
    must not be used by anyone else from now on. ``upkeep`` (the store's
    ``detached_upkeep()``) runs on the same thread after an end that was durable, once its
    outcome is known: :meth:`wait` returns without waiting for it. One that raises is
    logged and forgotten (it is upkeep: nothing was lost).
    """

    def __init__(
        self,
        sync: Callable[[], None] | None,
        mailbox: Mailbox,
        upkeep: Callable[[], None] | None = None,
    ) -> None:
        self._sync = sync
        self._mailbox = mailbox
        self._upkeep = upkeep
        self._outcome: EndOutcome | None = None
        self._error: BaseException | None = None
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asm-session-end", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = end_session(self._sync, self._mailbox)
        except BaseException as exc:  # handed to the waiting thread, which raises it
            self._error = exc
        finally:
            self._ended.set()
        if self._upkeep is not None and self._outcome is not None and self._outcome.durable:
            try:
                self._upkeep()
            except Exception:
                log.warning("the store's upkeep after a session's end failed", exc_info=True)

    def wait(self) -> EndOutcome:
        """The outcome, once the end has finished (not the upkeep after it); raises what it
        raised unexpectedly."""
        self._ended.wait()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome


def detached_sync(store: object) -> Callable[[], None] | None:
    """The store's ``detached_sync()``: a sync that may run on another thread; None when the
    store has none (then only its own thread may call ``sync()``)."""
    detach = getattr(store, "detached_sync", None)
    return detach() if callable(detach) else None


def detached_upkeep(store: object) -> Callable[[], None] | None:
    """The store's ``detached_upkeep()``: work that may run on another thread after a
    session's durable end; None when the store has none."""
    upkeep = getattr(store, "detached_upkeep", None)
    return upkeep() if callable(upkeep) else None


def closes_concurrently(mailbox: Mailbox) -> bool:
    """True when ``mailbox`` says its ``close()`` may overlap the next session's reading."""
    return getattr(mailbox, "closes_concurrently", False) is True
