"""The store's quarantine: messages set aside with their exact bytes and the reason why.

A message is quarantined when it cannot be parsed or processed, or when its reply still failed
after ``max_send_attempts``. The polling service also files it in the mailbox's quarantine
folder (IMAP, Maildir); messages handed over by the mail server (``asm-email-rules deliver``)
have no mailbox, so the store's quarantine is where they are kept. Either way the store keeps a
copy, so ``asm-email-rules quarantine list|show|release|replay`` sees every one of them.

These are plain values and a small structural protocol; a store that wants the quarantine
implements :class:`QuarantineStore` (the bundled SQLite, PostgreSQL and in-memory stores do).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Collection, Sequence
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Protocol, runtime_checkable

import attrs

from asm_email_rules.protocols import Repository

__all__ = [
    "LISTING_HEAD_BYTES",
    "RESOLVED_STATES",
    "QuarantineListing",
    "QuarantineOutline",
    "QuarantineState",
    "QuarantineStore",
    "QuarantinedMessage",
    "count_quarantined",
    "headline",
    "last_change",
    "list_quarantined",
    "outline_quarantined",
    "purge_quarantined",
    "quarantine_reason",
    "set_aside",
]


class QuarantineState(enum.Enum):
    """Where a quarantined message stands.

    ``HELD``: waiting for the operator. ``RELEASED``: handed back to its mailbox, to be read
    again at the next poll. ``REPLAYED``: processed again with ``quarantine replay``.
    """

    HELD = "held"
    RELEASED = "released"
    REPLAYED = "replayed"


RESOLVED_STATES: frozenset[QuarantineState] = frozenset(
    {QuarantineState.RELEASED, QuarantineState.REPLAYED}
)
"""The states of an entry the operator has dealt with: what a purge forgets by default."""


@attrs.frozen
class QuarantinedMessage:
    """One quarantined message: its bytes (``raw``), where it came from and why it was set aside.

    ``account`` is the ``[[accounts]]`` name (the ledger's mailbox name); ``source`` is
    ``deliver``, ``imap``, ``pop3``, ``maildir`` or ``process``; ``mailbox_key`` is the key it
    had in that mailbox (empty for ``deliver``). ``resolution`` says what ``release`` or
    ``replay`` did. Times are UTC.
    """

    id: int
    account: str
    source: str
    sha256: str
    reason: str
    raw: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    quarantined_at: datetime
    mailbox_key: str = ""
    state: QuarantineState = QuarantineState.HELD
    resolved_at: datetime | None = None
    resolution: str = ""


@runtime_checkable
class QuarantineStore(Protocol):
    """A store that keeps quarantined messages (optional: the service works without it)."""

    def quarantine_message(
        self,
        account: str,
        raw: bytes,
        reason: str,
        now: datetime,
        *,
        source: str,
        mailbox_key: str = "",
    ) -> int:
        """Keep ``raw`` with ``reason``; returns the new entry's id (1, 2, ...)."""
        ...

    def quarantined(
        self, *, state: QuarantineState | None = QuarantineState.HELD, account: str | None = None
    ) -> Sequence[QuarantinedMessage]:
        """The entries in ``state`` (every state when None), oldest first."""
        ...

    def quarantined_message(self, entry_id: int) -> QuarantinedMessage | None:
        """The entry with this id, or None."""
        ...

    def resolve_quarantined(
        self, entry_id: int, state: QuarantineState, resolution: str, now: datetime
    ) -> None:
        """Mark the entry released, replayed or held again (with a new reason in
        ``resolution``); raises :class:`~asm_email_rules.errors.NotFoundError` when absent."""
        ...

    def forget_quarantine_record(self, mailbox: str, sha256: str) -> None:
        """Drop the ledger's ``{"quarantined": ...}`` record of these bytes, so the same message
        is processed, not set aside, the next time it is read. Nothing happens without one."""
        ...


LISTING_HEAD_BYTES = 64 * 1024
"""Only this much of a message is read to find its From and Subject for a listing."""


@attrs.frozen
class QuarantineListing:
    """One quarantined message as a listing shows it: what :class:`QuarantinedMessage` says,
    but only the first 64 KiB of the bytes (``head``, enough for :func:`headline`) and the
    whole message's ``size``. A store lists these without reading the messages whole (each
    may be up to 25 MB), so ``check`` and ``quarantine list`` stay small with hundreds held."""

    id: int
    account: str
    source: str
    sha256: str
    reason: str
    head: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    size: int
    quarantined_at: datetime
    mailbox_key: str = ""
    state: QuarantineState = QuarantineState.HELD
    resolved_at: datetime | None = None
    resolution: str = ""

    @classmethod
    def of(cls, entry: QuarantinedMessage) -> QuarantineListing:
        """The listing of an entry read whole."""
        return cls(
            id=entry.id,
            account=entry.account,
            source=entry.source,
            sha256=entry.sha256,
            reason=entry.reason,
            head=entry.raw[:LISTING_HEAD_BYTES],
            size=len(entry.raw),
            quarantined_at=entry.quarantined_at,
            mailbox_key=entry.mailbox_key,
            state=entry.state,
            resolved_at=entry.resolved_at,
            resolution=entry.resolution,
        )


def count_quarantined(
    store: QuarantineStore,
    *,
    state: QuarantineState | None = QuarantineState.HELD,
    account: str | None = None,
) -> int:
    """How many entries :meth:`QuarantineStore.quarantined` would return.

    A store with the optional ``count_quarantined`` method (the bundled ones) counts without
    reading a message; a host's store without it is asked for the entries, as before.
    """
    counter = getattr(store, "count_quarantined", None)
    if callable(counter):
        return int(counter(state=state, account=account))
    return len(store.quarantined(state=state, account=account))


def list_quarantined(
    store: QuarantineStore,
    *,
    state: QuarantineState | None = QuarantineState.HELD,
    account: str | None = None,
) -> Sequence[QuarantineListing]:
    """The entries in ``state`` (every state when None), oldest first, as listings.

    A store with the optional ``quarantine_listing`` method (the bundled ones) reads only the
    first 64 KiB of each message; a host's store without it is asked for the entries whole.
    """
    lister = getattr(store, "quarantine_listing", None)
    if callable(lister):
        listed: Sequence[QuarantineListing] = lister(state=state, account=account)
        return listed
    return [
        QuarantineListing.of(entry) for entry in store.quarantined(state=state, account=account)
    ]


@attrs.frozen
class QuarantineOutline:
    """What a purge says of an entry it forgets: never the message (there may be thousands
    of entries, each up to 25 MB; a SQL store reads these without reading a message)."""

    id: int
    account: str
    source: str
    state: QuarantineState
    changed: datetime
    """The entry's last change (:func:`last_change`)."""
    size: int


def outline_quarantined(
    store: QuarantineStore,
    before: datetime,
    *,
    states: Collection[QuarantineState] = RESOLVED_STATES,
    account: str | None = None,
) -> list[QuarantineOutline]:
    """The entries :func:`purge_quarantined` would forget, by id.

    A store with the optional ``quarantine_outline`` method (the bundled ones) reads no
    message; a host's store without it is listed (:func:`list_quarantined`) one state at a
    time.
    """
    outline = getattr(store, "quarantine_outline", None)
    if callable(outline):
        found: Sequence[QuarantineOutline] = outline(
            before, states=frozenset(states), account=account
        )
        return sorted(found, key=lambda entry: entry.id)
    listed = [
        QuarantineOutline(e.id, e.account, e.source, e.state, last_change(e), e.size)
        for state in states
        for e in list_quarantined(store, state=state, account=account)
        if last_change(e) < before
    ]
    return sorted(listed, key=lambda entry: entry.id)


def last_change(entry: QuarantinedMessage | QuarantineListing) -> datetime:
    """When the entry last changed: resolved (or held again), else quarantined. A purge's
    ``before`` is compared with this."""
    return entry.resolved_at if entry.resolved_at is not None else entry.quarantined_at


def purge_quarantined(
    store: QuarantineStore,
    before: datetime,
    *,
    states: Collection[QuarantineState] = RESOLVED_STATES,
    account: str | None = None,
) -> int | None:
    """Forget the entries in ``states`` (by default the resolved ones) whose last change
    (:func:`last_change`) is before ``before``, with their bytes; how many went, or None when
    the store cannot purge.

    ``purge_quarantined`` is an optional method of a :class:`QuarantineStore` (the bundled
    stores have it; they delete in batches, each committed alone outside a transaction). Only
    the stored copies go: the ledger's ``{"quarantined": ...}`` record of a held message stays,
    so the same bytes read again are still set aside, never processed.
    """
    purge = getattr(store, "purge_quarantined", None)
    if not callable(purge):
        return None
    return int(purge(before, states=frozenset(states), account=account))


def headline(raw: bytes) -> tuple[str, str]:
    """``(From, Subject)`` of ``raw`` for a listing; empty strings when they cannot be read.

    Reads the header section only (at most the first 64 KiB), so it is cheap on big messages
    and never raises on broken ones.
    """
    try:
        head = BytesHeaderParser(policy=default_policy).parsebytes(raw[:LISTING_HEAD_BYTES])
        sender = str(head.get("From", "") or "")
        subject = str(head.get("Subject", "") or "")
    except Exception:  # a listing must show broken mail too
        return "", ""
    return " ".join(sender.split()), " ".join(subject.split())


def quarantine_reason(repository: Repository, mailbox: str, sha256: str) -> str | None:
    """Why these bytes were quarantined before, from the ledger; None when they were not."""
    known = repository.ledger_entry(mailbox, "", sha256)
    if known is None:
        return None
    try:
        data = json.loads(known.decision_json)
    except ValueError:
        return None
    if isinstance(data, dict) and "quarantined" in data:
        return str(data["quarantined"])
    return None


def set_aside(
    repository: Repository,
    mailbox: str,
    raw: bytes,
    reason: str,
    now: datetime,
    *,
    source: str,
    mailbox_key: str = "",
) -> int | None:
    """Remember in the ledger that ``raw`` was quarantined, and keep a copy in the store.

    The ledger record (``{"quarantined": reason}`` under an empty Message-ID) makes the same
    bytes be set aside again, unprocessed, if they are read again; the copy is what ``quarantine
    list|show|release|replay`` work on. Both are written in one transaction. Returns the copy's
    id, or None when the store keeps no quarantine (:class:`QuarantineStore`). Raises
    :class:`~asm_email_rules.errors.RepositoryError` when the store fails.
    """
    sha256 = hashlib.sha256(raw).hexdigest()
    with repository.transaction():
        if repository.ledger_entry(mailbox, "", sha256) is None:
            record = json.dumps({"quarantined": reason}, ensure_ascii=False)
            repository.record_processed(mailbox, "", sha256, record, None, now)
        if not isinstance(repository, QuarantineStore):
            return None
        return repository.quarantine_message(
            mailbox, raw, reason, now, source=source, mailbox_key=mailbox_key
        )
