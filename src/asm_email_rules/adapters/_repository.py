"""What every repository adapter shares: lookup keys, UTC times and summary rules.

The in-memory reference and the SQLite adapter both use these, so they compare addresses and
Message-IDs, store times and shape summary lines the same way (the conformance kit in
:mod:`asm_email_rules.testing` checks that they do).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

from asm_email_rules.addresses import a_label, mailbox_key
from asm_email_rules.errors import RepositoryError
from asm_email_rules.model import ReplyStatus, SummaryKind, TaskStatus
from asm_email_rules.sender import normalise_address
from asm_email_rules.summary_text import SUMMARY_DESCRIPTION_LENGTH, summary_description

__all__ = [
    "QUARANTINE_RECORD_PREFIX",
    "SUMMARY_DESCRIPTION_LENGTH",
    "SUMMARY_KINDS",
    "TASK_DONE_STATUSES",
    "address_key",
    "check_finish",
    "is_quarantine_record",
    "legacy_address_keys",
    "message_id_key",
    "recipient_key",
    "short_description",
    "summary_kind",
    "to_utc",
]

SUMMARY_KINDS: tuple[SummaryKind, ...] = tuple(SummaryKind)
"""The summary kinds a repository's ``summary`` accepts."""

TASK_DONE_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.APPROVED, TaskStatus.REJECTED}
)
"""Task states that drop a task or approval out of the tasks summary."""


QUARANTINE_RECORD_PREFIX = '{"quarantined":'
"""How a quarantine record's decision JSON starts (``json.dumps({"quarantined": reason})``)."""


def is_quarantine_record(message_id: str, decision_json: str) -> bool:
    """True for the ledger record of a quarantined message: an empty Message-ID and a decision
    ``{"quarantined": reason}``. Ledger retention never prunes one (it keeps a message that
    stays on a POP3 server from being processed again)."""
    return message_id == "" and decision_json.startswith(QUARANTINE_RECORD_PREFIX)


address_key = normalise_address
"""The form addresses are compared in (the rules' own: NFKC, trimmed, case-folded)."""


_MAX_LABEL = 63
"""Characters in a domain label, at most (RFC 1035 2.3.4: octets; a Unicode label is longer
as A-label): Punycode's time grows with the square of a label's length, so a longer one, which
no domain can hold, is not encoded."""


def legacy_address_keys(address: str) -> tuple[str, str, str]:
    """The keys versions before schema 6 stored for ``address`` (NFKC, trimmed, full case
    folding, the domain as written): as ``address`` writes it, with its domain in Unicode, and
    in A-labels (a person written in either spelling, whichever the lookup uses).

    A poller of such a version still running while the store is migrated (or a host's own
    code) goes on writing people with them, so a lookup by :func:`address_key` also tries
    these and keeps the rows whose address matches."""
    written = unicodedata.normalize("NFKC", address).strip().casefold()
    local, at, domain = address_key(address).rpartition("@")
    if not at or domain.isascii() or any(len(label) > _MAX_LABEL for label in domain.split(".")):
        return written, written, written  # a label over 63 characters is no DNS name anyway
    labels = [a_label(label) for label in domain.split(".")]
    # ``domain`` is in Unicode (address_key's form) however ``address`` wrote it, so both
    # spellings are keyed from it: a sender writing A-labels finds a person written in Unicode
    in_unicode = unicodedata.normalize("NFKC", f"{local}@{domain}").casefold()
    in_a_labels = f"{local}@{'.'.join(labels)}".casefold()
    return written, in_unicode, in_a_labels


recipient_key = mailbox_key
"""The form reply recipients are counted in for the reply budget: ``address_key`` without a
``+tag``, so sub-addresses of one mailbox share its budget."""


def message_id_key(message_id: str) -> str:
    """A Message-ID without surrounding whitespace and angle brackets, so both forms match."""
    text = message_id.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


def to_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def short_description(description: str, subject: str = "") -> str:
    """What a summary line shows: the record's subject (if stored) and the first line of
    ``description`` that says something (no greeting, no blank line), cut to 80 characters.
    See :func:`asm_email_rules.summary_text.summary_description`."""
    return summary_description(description, subject)


def summary_kind(kind: str) -> SummaryKind:
    """``kind`` as a :class:`SummaryKind` (the plain strings work too).

    Raises :class:`RepositoryError` for anything else: a host passing an unknown kind gets a
    typed error, not an empty summary.
    """
    try:
        return SummaryKind(kind)
    except ValueError:
        expected = ", ".join(k.value for k in SUMMARY_KINDS)
        raise RepositoryError(
            f"unknown summary kind {kind!r}; expected one of {expected}"
        ) from None


def check_finish(status: ReplyStatus, next_attempt_at: datetime | None) -> None:
    """Refuse a ``finish_reply`` outcome that makes no sense, before touching the store.

    Raises ``ValueError`` unless ``status`` is SENT, FAILED, or PENDING with a
    ``next_attempt_at`` (a retry needs to know when).
    """
    if status is ReplyStatus.PENDING and next_attempt_at is None:
        raise ValueError("finish_reply(PENDING) needs next_attempt_at: when to try again")
    if status not in (ReplyStatus.SENT, ReplyStatus.FAILED, ReplyStatus.PENDING):
        raise ValueError(f"finish_reply takes SENT, FAILED or PENDING, not {status.name}")
