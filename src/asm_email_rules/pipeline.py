"""The flow around ``decide``, step by step: parse, gather, decide, apply, send.

``process`` runs one raw message end to end: parse, skip duplicates, gather the facts
(:mod:`~asm_email_rules.gather`, the only reads), decide (:mod:`~asm_email_rules.rules`,
pure), apply the decision and record it in one transaction together with the reply and any
notifications (:mod:`~asm_email_rules.applying`, the only writes; they enter the store's
outbox), then, given a mailer, send them (:mod:`~asm_email_rules.send`, which claims each
first). A crash after the commit never acts twice: the ledger entry makes the retry a no-op,
and the outbox keeps the mails until a sender has them accepted. ``explain`` is the dry run:
the same decision, nothing written or sent.
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
from asm_email_rules.decision import Decision, require_aware
from asm_email_rules.errors import RepositoryError, StaleRecordError
from asm_email_rules.gather import gather_facts
from asm_email_rules.intake import parse_message
from asm_email_rules.ledger_key import find_ledger_entry, ledger_key
from asm_email_rules.model import InboundEmail, LedgerEntry, ReplyStatus
from asm_email_rules.protocols import Mailer, Repository, RuleReader
from asm_email_rules.rules import decide, reply_address
from asm_email_rules.send import Disposition, SendOutcome, default_owner, send_pending, send_reply
from asm_email_rules.settings import MailboxSettings, SystemSettings

logger = logging.getLogger("asm_email_rules")

STALE_RETRIES = 2
"""How many times :func:`process` decides a message again after
:class:`~asm_email_rules.errors.StaleRecordError` (each time another worker changed a record
the decision relied on first: more than twice in a row means something else is wrong)."""


@attrs.frozen
class ProcessResult:
    """The outcome of processing one raw message.

    ``duplicate`` is True when the ledger already held this message (nothing was acted on
    again); ``decision`` is then None. ``reply_status`` says where its reply stands,
    ``notification_statuses`` where each notification stands (Email at Update via Email In),
    and ``disposition`` what the mailbox should do with the message: DELETE once the decision
    and its mails are committed (the outbox keeps the mails). ``sent`` is the attempt at the
    reply made here, if one was (a mailer was given and the reply was due and free to claim).
    ``outgoing`` holds the Message-IDs of the reply and the notifications this run put in the
    outbox, in order (none for a duplicate).
    """

    email: InboundEmail
    decision: Decision | None
    duplicate: bool
    reply_status: ReplyStatus
    disposition: Disposition = Disposition.DELETE
    new_call_number: int | None = None
    notification_statuses: tuple[ReplyStatus, ...] = ()
    sent: SendOutcome | None = None
    outgoing: tuple[str, ...] = ()


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


def _send(
    entry: LedgerEntry,
    repository: Repository,
    mailer: Mailer | None,
    system: SystemSettings,
    now: datetime,
    owner: str | None,
) -> tuple[ReplyStatus, SendOutcome | None]:
    """Send the mail of a ledger entry if it is pending, due and free to claim; its status
    afterwards and the attempt made (None when none was)."""
    if mailer is None or entry.reply is None or entry.reply_status is not ReplyStatus.PENDING:
        return entry.reply_status, None
    sent = send_reply(
        entry.reply.message_id,
        repository,
        mailer,
        system,
        owner=owner or default_owner(),
        clock=lambda: now,
    )
    return (entry.reply_status if sent is None else sent.status), sent


def _send_notifications(
    entries: list[LedgerEntry],
    repository: Repository,
    mailer: Mailer | None,
    system: SystemSettings,
    now: datetime,
    owner: str | None,
) -> tuple[ReplyStatus, ...]:
    """Send the notifications still pending (as replies are sent); their statuses."""
    return tuple(_send(entry, repository, mailer, system, now, owner)[0] for entry in entries)


def _require_settings(where: str, order: str, mailbox: object, system: object) -> None:
    """TypeError naming the argument when ``mailbox`` or ``system`` is not a settings value
    (swapped arguments, ``None``): said at the call, not as an AttributeError deep inside."""
    for name, value, kind in (
        ("mailbox", mailbox, MailboxSettings),
        ("system", system, SystemSettings),
    ):
        if not isinstance(value, kind):
            got = "None" if value is None else type(value).__name__
            raise TypeError(
                f"{where}(): {name} must be a {kind.__name__}, got {got} (the arguments are "
                f"{order})"
            )


def explain(
    raw: bytes,
    repository: RuleReader,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
) -> Decision:
    """Dry run: the decision for ``raw`` without writing or sending anything; ``repository``
    is read only, and needs no more than a :class:`~asm_email_rules.protocols.RuleReader`
    (a :class:`~asm_email_rules.protocols.Repository` is one). TypeError for a
    naive ``now`` (:func:`~asm_email_rules.decision.require_aware`) or a ``mailbox`` or
    ``system`` that is not a settings value."""
    _require_settings("explain", "raw, repository, mailbox, system, now", mailbox, system)
    now = require_aware(now)  # UTC: windows counted from it are their length across DST
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
    raw_sha256: str | None = None,
    log_outcome: bool = True,
) -> ProcessResult:
    """Run one message through the whole flow. Raises MessageParseError for unusable bytes,
    TypeError for a naive ``now`` (:func:`~asm_email_rules.decision.require_aware`) or a
    ``mailbox`` or ``system`` that is not a settings value.

    ``raw_sha256``, the hex SHA-256 of ``raw`` when the caller has it already, saves hashing
    it again (see :func:`~asm_email_rules.intake.parse_message`). A processed message is
    logged (INFO, ``message processed``) unless ``log_outcome`` is False: a caller with its
    own line per message (the polling service's ``message handled``) says it once.

    With ``mailer`` None the reply and notifications are left in the outbox (PENDING) for a
    sender (:func:`~asm_email_rules.send.send_due`); with a mailer each is claimed as ``owner``
    (default: :func:`~asm_email_rules.send.default_owner`) and sent at once. A message another
    worker recorded between our ledger check and our commit comes back as a duplicate: the
    ledger's refusal rolled our writes back. A record another worker changed between the
    rules' read and our write (:class:`~asm_email_rules.errors.StaleRecordError`: a call
    closed, an approval decided) rolls our writes back too, and the message is decided again
    on what is there, up to :data:`STALE_RETRIES` times (then the error is raised).
    """
    _require_settings("process", "raw, repository, mailer, mailbox, system, now", mailbox, system)
    now = require_aware(now)  # UTC: windows counted from it are their length across DST
    email = parse_message(raw, limits=system.limits, raw_sha256=raw_sha256)
    message_id = email.message_id or ""
    existing = find_ledger_entry(repository, mailbox.name, email)
    if existing is not None:
        return _duplicate(email, existing, repository, mailer, mailbox, system, now, owner)
    stale = 0
    while True:
        facts = gather_facts(email, repository, mailbox, system, now)
        decision = decide(facts, mailbox, system)
        try:
            result = apply(
                decision, email, repository, mailbox, system, now, random_token=random_token
            )
        except RepositoryError as exc:
            raced = find_ledger_entry(repository, mailbox.name, email)
            if raced is not None:
                return _duplicate(email, raced, repository, mailer, mailbox, system, now, owner)
            if not isinstance(exc, StaleRecordError) or stale == STALE_RETRIES:
                raise
            stale += 1
            logger.info(
                "a record changed since the rules read it: deciding again",
                extra={"mailbox": mailbox.name, "message_id": message_id, "change": str(exc)},
            )
            continue
        break
    status, sent = ReplyStatus.NONE, None
    if result.reply is not None:
        status = ReplyStatus.PENDING  # just recorded so; nothing to read back without a mailer
        entry = None if mailer is None else find_ledger_entry(repository, mailbox.name, email)
        if entry is not None:
            status, sent = _send(entry, repository, mailer, system, now, owner)
    notes: tuple[ReplyStatus, ...] = ()
    if result.notifications and mailer is None:
        notes = (ReplyStatus.PENDING,) * len(result.notifications)
    elif result.notifications:
        notes = _send_notifications(
            _notification_entries(repository, mailbox, email),
            repository,
            mailer,
            system,
            now,
            owner,
        )
    if log_outcome:
        _log_processed(mailbox, message_id, decision, status, notes)
    return ProcessResult(
        email,
        decision,
        False,
        status,
        Disposition.DELETE,
        result.new_call_number,
        notification_statuses=notes,
        sent=sent,
        outgoing=tuple(
            mail.message_id for mail in (result.reply, *result.notifications) if mail is not None
        ),
    )


def _log_processed(
    mailbox: MailboxSettings,
    message_id: str,
    decision: Decision,
    status: ReplyStatus,
    notes: tuple[ReplyStatus, ...],
) -> None:
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


def _duplicate(
    email: InboundEmail,
    entry: LedgerEntry,
    repository: Repository,
    mailer: Mailer | None,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
    owner: str | None,
) -> ProcessResult:
    """A message the ledger holds: nothing acted on again; its reply and notifications sent
    if they are due and nobody else holds them (a crash cut their first send off)."""
    status, sent = _send(entry, repository, mailer, system, now, owner)
    notes = _send_notifications(
        _notification_entries(repository, mailbox, email), repository, mailer, system, now, owner
    )
    return ProcessResult(
        email, None, True, status, Disposition.DELETE, notification_statuses=notes, sent=sent
    )


__all__ = [
    "ApplyResult",
    "Disposition",
    "ProcessResult",
    "SendOutcome",
    "apply",
    "build_notification_email",
    "build_reply_email",
    "explain",
    "gather_facts",
    "notification_key",
    "process",
    "reply_address",
    "send_pending",
    "send_reply",
]
