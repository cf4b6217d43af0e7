"""The flow around ``decide``, step by step: parse, gather, decide, apply, send.

``process`` runs one raw message end to end: parse, skip duplicates, gather the facts
(:mod:`~asm_email_rules.gather`, the only reads), decide (:mod:`~asm_email_rules.rules`,
pure), apply the decision and record it in one transaction together with the reply
(:mod:`~asm_email_rules.applying`, the only writes; the reply enters the store's outbox), then,
given a mailer, send the reply (:mod:`~asm_email_rules.send`, which claims it first). A crash
after the commit never acts twice: the ledger entry makes the retry a no-op, and the outbox
keeps the reply until a sender has it accepted. ``explain`` is the dry run: the same decision,
nothing written or sent.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime

import attrs

from asm_email_rules.applying import ApplyResult, apply, build_reply_email
from asm_email_rules.decision import Decision
from asm_email_rules.errors import RepositoryError
from asm_email_rules.gather import gather_facts
from asm_email_rules.intake import parse_message
from asm_email_rules.model import InboundEmail, LedgerEntry, ReplyStatus
from asm_email_rules.protocols import Mailer, Repository
from asm_email_rules.rules import decide, reply_address
from asm_email_rules.send import Disposition, SendOutcome, default_owner, send_pending, send_reply
from asm_email_rules.settings import MailboxSettings, SystemSettings

logger = logging.getLogger("asm_email_rules")


@attrs.frozen
class ProcessResult:
    """The outcome of processing one raw message.

    ``duplicate`` is True when the ledger already held this message (nothing was acted on
    again); ``decision`` is then None. ``reply_status`` says where its reply stands and
    ``disposition`` what the mailbox should do with the message: DELETE once the decision and
    its reply are committed (the outbox keeps the reply). ``sent`` is the send attempt made
    here, if one was (a mailer was given and the reply was due and free to claim).
    """

    email: InboundEmail
    decision: Decision | None
    duplicate: bool
    reply_status: ReplyStatus
    disposition: Disposition = Disposition.DELETE
    new_call_number: int | None = None
    sent: SendOutcome | None = None


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
    owner: str | None = None,
) -> ProcessResult:
    """Run one message through the whole flow. Raises MessageParseError for unusable bytes.

    With ``mailer`` None the reply is left in the outbox (PENDING) for a sender
    (:func:`~asm_email_rules.send.send_due`); with a mailer it is claimed as ``owner``
    (default: :func:`~asm_email_rules.send.default_owner`) and sent at once. A message another
    worker recorded between our ledger check and our commit comes back as a duplicate: the
    ledger's refusal rolled our writes back.
    """
    email = parse_message(raw, limits=system.limits)
    message_id = email.message_id or ""
    existing = repository.ledger_entry(mailbox.name, message_id, email.raw_sha256)
    if existing is not None:
        return _duplicate(email, existing, repository, mailer, system, now, owner)
    facts = gather_facts(email, repository, mailbox, system, now)
    decision = decide(facts, mailbox, system)
    try:
        result = apply(decision, email, repository, mailbox, system, now, random_token=random_token)
    except RepositoryError:
        raced = repository.ledger_entry(mailbox.name, message_id, email.raw_sha256)
        if raced is None:
            raise
        return _duplicate(email, raced, repository, mailer, system, now, owner)
    status = ReplyStatus.NONE if result.reply is None else ReplyStatus.PENDING
    sent = None
    if result.reply is not None and mailer is not None:
        sent = _send(result.reply.message_id, repository, mailer, system, now, owner)
        status = status if sent is None else sent.status
    logger.info(
        "message processed",
        extra={
            "mailbox": mailbox.name,
            "message_id": message_id,
            "rule": decision.rule,
            "outcome": decision.outcome.value,
            "reply_status": status.value,
            "discard_reason": decision.discard_reason,
        },
    )
    return ProcessResult(
        email, decision, False, status, Disposition.DELETE, result.new_call_number, sent
    )


def _send(
    reply_message_id: str,
    repository: Repository,
    mailer: Mailer,
    system: SystemSettings,
    now: datetime,
    owner: str | None,
) -> SendOutcome | None:
    return send_reply(
        reply_message_id,
        repository,
        mailer,
        system,
        owner=owner or default_owner(),
        clock=lambda: now,
    )


def _duplicate(
    email: InboundEmail,
    entry: LedgerEntry,
    repository: Repository,
    mailer: Mailer | None,
    system: SystemSettings,
    now: datetime,
    owner: str | None,
) -> ProcessResult:
    """A message the ledger holds: nothing acted on again; its reply sent if it is due and
    nobody else holds it (a crash cut its first send off)."""
    status, sent = entry.reply_status, None
    if mailer is not None and entry.reply is not None and status is ReplyStatus.PENDING:
        sent = _send(entry.reply.message_id, repository, mailer, system, now, owner)
        status = status if sent is None else sent.status
    return ProcessResult(email, None, True, status, Disposition.DELETE, sent=sent)


__all__ = [
    "ApplyResult",
    "Disposition",
    "ProcessResult",
    "SendOutcome",
    "apply",
    "build_reply_email",
    "explain",
    "gather_facts",
    "process",
    "reply_address",
    "send_pending",
    "send_reply",
]
