"""The sent journal: each reply the SMTP server accepted, kept the moment it answered.

Why it exists (DESIGN 4, "Replies are an outbox"). A reply is claimed, sent, then recorded
SENT; a crash between the server's 250 and that record sends it again once the claim expires
(with the same Message-ID). The reply pump (:mod:`asm_email_rules.outbox_pump`) sends on a
worker thread, and only the poller's thread writes the store, between messages: so without a
journal every accepted reply waits for the poller's next round to be recorded, the pump may
claim no more than ``replies_in_flight`` ahead (also how many a crash resends), and the
worker hands back every few replies, each time a round on the poller's thread (most of what
a reply cost: docs/scaling.md).

With a journal (a store's ``sent_journal(owner)``: the SQLite store keeps them in a folder
beside its file, :class:`~asm_email_rules.adapters.journal_files.DirectorySentJournal`), the
worker appends each accepted reply to its pump's journal before it sends the next (after
each reply, or after each pipelined window of ``replies_in_flight``), and hands back a whole
batch at once; the poller records the outcomes in the store as before. A pump may then claim
a session's replies at once. A crash leaves unrecorded only what the server accepted and the
journal did not get yet: the reply or window being sent, ``replies_in_flight`` at most.
Before it claims anything, the next pump of any poller on the store records SENT what the
journals of stopped pumps hold (:func:`settle`), so those are not sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asm_email_rules.errors import RepositoryError
from asm_email_rules.model import ReplyStatus, SentEntry
from asm_email_rules.protocols import Repository, SentJournal

__all__ = ["open_sent_journal", "settle"]

logger = logging.getLogger("asm_email_rules")


def settle(entries: Iterable[SentEntry], repository: Repository) -> int:
    """Record SENT, for their owners, the replies the journals of stopped pumps kept
    (:meth:`~asm_email_rules.protocols.SentJournal.leftovers`): the server accepted them, and
    their senders will record nothing more. How many were recorded.

    A reply no longer PENDING and claimed by the entry's owner is left as it is: recorded
    already, or taken over by another sender after the claim expired (that one's resend is the
    crash window DESIGN 4 allows). The writes join the caller's unit of work, if any: forget
    the journals only after it committed. Raises what the repository raises."""
    recorded = 0
    for entry in entries:
        key = entry.reply_message_id
        outbox = repository.outbox_entry(key)
        if (
            outbox is None
            or outbox.status is not ReplyStatus.PENDING
            or outbox.claimed_by != entry.owner
        ):
            continue
        if repository.finish_reply(key, entry.owner, ReplyStatus.SENT, entry.sent_at):
            recorded += 1
            logger.info(
                "reply recorded sent from the sent journal (its sender stopped before "
                "recording it)",
                extra={"reply_message_id": key, "owner": entry.owner},
            )
    return recorded


def open_sent_journal(repository: Repository, owner: str) -> SentJournal | None:
    """A sent journal for one reply pump of ``owner``, from a store that offers them
    (``sent_journal(owner)``, looked up by name); None without one, or when it cannot be had
    (logged: the pump then records as it would without). The caller closes it (a
    :class:`~asm_email_rules.outbox_pump.ReplyPump` given it does)."""
    opener = getattr(repository, "sent_journal", None)
    if not callable(opener):
        return None
    try:
        journal: SentJournal | None = opener(owner)
    except RepositoryError as exc:
        logger.warning(
            "cannot open the sent journal; replies are recorded by the poller only: %s",
            exc,
            extra={"owner": owner, "error": str(exc)},
        )
        return None
    return journal
