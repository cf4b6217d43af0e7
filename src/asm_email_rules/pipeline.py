"""The flow around ``decide``, step by step: parse, gather, decide, apply, send.

``process`` runs one raw message end to end: parse, skip duplicates, gather the facts
(:mod:`~asm_email_rules.gather`, the only reads), decide (:mod:`~asm_email_rules.rules`,
pure), apply the decision and record it in one transaction together with the reply
(:mod:`~asm_email_rules.applying`, the only writes), then send the reply
(:mod:`~asm_email_rules.send`). A crash after the commit never acts twice: the ledger entry
makes the retry a no-op, and the stored reply is sent on the retry if it was not sent before.
``explain`` is the dry run: the same decision, nothing written or sent.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime

import attrs

from asm_email_rules.applying import (
    ApplyResult,
    apply,
    build_notification_email,
    build_reply_email,
    notification_key,
)
from asm_email_rules.decision import Decision
from asm_email_rules.gather import gather_facts
from asm_email_rules.intake import parse_message
from asm_email_rules.ledger_key import find_ledger_entry, ledger_key
from asm_email_rules.model import InboundEmail, LedgerEntry, ReplyStatus
from asm_email_rules.protocols import Mailer, Repository
from asm_email_rules.rules import decide, reply_address
from asm_email_rules.send import Disposition, send_pending
from asm_email_rules.settings import MailboxSettings, SystemSettings

logger = logging.getLogger("asm_email_rules")


@attrs.frozen
class ProcessResult:
    """The outcome of processing one raw message.

    ``duplicate`` is True when the ledger already held this message (nothing was acted on
    again); ``decision`` is then None. ``reply_status`` says where its reply stands,
    ``notification_statuses`` where each notification stands (Email at Update via Email In),
    and ``disposition`` what the mailbox should do with the message: kept for a retry while
    any of its mails waits on a transient failure.
    """

    email: InboundEmail
    decision: Decision | None
    duplicate: bool
    reply_status: ReplyStatus
    disposition: Disposition = Disposition.DELETE
    new_call_number: int | None = None
    notification_statuses: tuple[ReplyStatus, ...] = ()


_SEVERITY = {Disposition.DELETE: 0, Disposition.RETRY: 1, Disposition.QUARANTINE: 2}


def _worst(first: Disposition, second: Disposition) -> Disposition:
    return first if _SEVERITY[first] >= _SEVERITY[second] else second


def _notification_entries(
    repository: Repository, mailbox: MailboxSettings, email: InboundEmail
) -> list[LedgerEntry]:
    """The ledger entries of the notifications this message recorded, in order."""
    found: list[LedgerEntry] = []
    while True:
        message_id, sha256 = ledger_key(email)
        key = notification_key(sha256, len(found))
        entry = repository.ledger_entry(mailbox.name, message_id, key)
        if entry is None:
            return found
        found.append(entry)


def _send_notifications(
    entries: list[LedgerEntry],
    repository: Repository,
    mailer: Mailer | None,
    system: SystemSettings,
    disposition: Disposition,
) -> tuple[tuple[ReplyStatus, ...], Disposition]:
    """Send the notifications still pending (as replies are sent); their statuses and the
    disposition of the message once they are taken into account."""
    statuses: list[ReplyStatus] = []
    for entry in entries:
        status = entry.reply_status
        if mailer is not None:
            status, outcome = send_pending(entry, repository, mailer, system)
            disposition = _worst(disposition, outcome)
        statuses.append(status)
    return tuple(statuses), disposition


def explain(
    raw: bytes,
    repository: Repository,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
) -> Decision:
    """Dry run: the decision for ``raw`` without writing or sending anything."""
    email = parse_message(raw, limits=system.limits)
    return decide(gather_facts(email, repository, mailbox, system, now), mailbox, system)


def process(
    raw: bytes,
    repository: Repository,
    mailer: Mailer | None,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
    *,
    random_token: Callable[[], str] = lambda: secrets.token_hex(8),
) -> ProcessResult:
    """Run one message through the whole flow. Raises MessageParseError for unusable bytes.

    With ``mailer`` None the reply is recorded as PENDING and left for a later send.
    """
    email = parse_message(raw, limits=system.limits)
    message_id = email.message_id or ""
    existing = find_ledger_entry(repository, mailbox.name, email)
    if existing is not None:
        status, disposition = existing.reply_status, Disposition.DELETE
        if mailer is not None:
            status, disposition = send_pending(existing, repository, mailer, system)
        resent, disposition = _send_notifications(
            _notification_entries(repository, mailbox, email),
            repository,
            mailer,
            system,
            disposition,
        )
        return ProcessResult(email, None, True, status, disposition, notification_statuses=resent)
    facts = gather_facts(email, repository, mailbox, system, now)
    decision = decide(facts, mailbox, system)
    result = apply(decision, email, repository, mailbox, system, now, random_token=random_token)
    status = ReplyStatus.NONE if result.reply is None else ReplyStatus.PENDING
    disposition = Disposition.DELETE
    if result.reply is not None and mailer is not None:
        entry = find_ledger_entry(repository, mailbox.name, email)
        if entry is not None:
            status, disposition = send_pending(entry, repository, mailer, system)
    notes: tuple[ReplyStatus, ...] = ()
    if result.notifications:
        notes, disposition = _send_notifications(
            _notification_entries(repository, mailbox, email),
            repository,
            mailer,
            system,
            disposition,
        )
    logger.info(
        "message processed",
        extra={
            "mailbox": mailbox.name,
            "message_id": message_id,
            "rule": decision.rule,
            "outcome": decision.outcome.value,
            "reply_status": status.value,
            "notifications": [note.value for note in notes],
            "discard_reason": decision.discard_reason,
        },
    )
    return ProcessResult(
        email,
        decision,
        False,
        status,
        disposition,
        result.new_call_number,
        notification_statuses=notes,
    )


__all__ = [
    "ApplyResult",
    "Disposition",
    "ProcessResult",
    "apply",
    "build_notification_email",
    "build_reply_email",
    "explain",
    "gather_facts",
    "notification_key",
    "process",
    "reply_address",
    "send_pending",
]
