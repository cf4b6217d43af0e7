"""Mail handed over by the mail server: one message, handled now or refused for a later retry.

``asm-email-rules deliver`` (a Postfix pipe transport, an Exim pipe, procmail, fetchmail's
``mda``) gets one message on standard input. :func:`deliver_message` runs it through the same
:func:`~asm_email_rules.pipeline.process` as the polling service and answers with one of two
verdicts, as the mail server understands them (``sysexits.h``):

- **handled** (exit 0): acted on, discarded by a rule with its reason, or quarantined in the
  store (a message we cannot parse or process is kept there, never lost and never bounced);
- **try later** (exit 75, ``EX_TEMPFAIL``): our side is not ready (the store is locked or
  down, or the reply could not be sent yet); the mail server keeps the message and retries.

A message is never blamed for our own failure: a store fault is a retry, not a quarantine.

Like every sender on the store, ``deliver`` keeps each reply the SMTP server accepted in the
store's sent journal (:mod:`~asm_email_rules.sent_journal`, where the store offers one) until
the store has recorded it, and records first what the journals of stopped senders hold: a
store that fails between the server's 250 and our record (locked past its timeout, full)
makes the mail server retry, and the retry records the reply sent instead of sending it again
once its claim expires.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime

import attrs

from asm_email_rules.decision import require_aware
from asm_email_rules.errors import MessageParseError, RepositoryError, raised_inside
from asm_email_rules.ledger_key import find_ledger_entry
from asm_email_rules.model import OutgoingEmail, ReplyStatus, SentEntry
from asm_email_rules.pipeline import Disposition, ProcessResult, process
from asm_email_rules.protocols import Mailer, Repository, SentJournal
from asm_email_rules.quarantine import QuarantineStore, quarantine_reason, set_aside
from asm_email_rules.send import default_owner
from asm_email_rules.sent_journal import open_sent_journal, settle
from asm_email_rules.settings import MailboxSettings, SystemSettings

__all__ = ["EX_OK", "EX_TEMPFAIL", "Delivered", "Verdict", "deliver_message"]

log = logging.getLogger("asm_email_rules.delivery")

EX_OK = 0
"""``sysexits.h``: delivered (handled)."""

EX_TEMPFAIL = 75
"""``sysexits.h``: temporary failure; Postfix, Exim and procmail keep the message and retry."""


class Verdict(enum.Enum):
    """What the mail server is told."""

    HANDLED = "handled"
    TRY_LATER = "try later"

    @property
    def exit_code(self) -> int:
        """0 for HANDLED, 75 (``EX_TEMPFAIL``) for TRY_LATER."""
        return EX_OK if self is Verdict.HANDLED else EX_TEMPFAIL


@attrs.frozen
class Delivered:
    """The verdict on one message and what happened to it, in words for the log and stderr.

    ``result`` is the processing result when the rules ran; ``quarantine_id`` the store's
    quarantine entry when the message was set aside there.
    """

    verdict: Verdict
    detail: str
    result: ProcessResult | None = None
    quarantine_id: int | None = None

    @property
    def exit_code(self) -> int:
        """The exit status for the mail server (0 or 75)."""
        return self.verdict.exit_code


def _set_aside(
    repository: Repository, mailbox: MailboxSettings, raw: bytes, reason: str, now: datetime
) -> Delivered:
    """Quarantine in the store; a store that cannot keep it means: try later."""
    if not isinstance(repository, QuarantineStore):
        return Delivered(Verdict.TRY_LATER, f"cannot quarantine ({reason}): the store keeps none")
    try:
        entry = set_aside(repository, mailbox.name, raw, reason, now, source="deliver")
    except Exception as exc:  # any failure of the store (a host store's unwrapped one too)
        return Delivered(Verdict.TRY_LATER, f"cannot quarantine ({reason}): store failed: {exc}")
    log.warning(
        "message quarantined in the store",
        extra={"account": mailbox.name, "quarantine_id": entry, "reason": reason},
    )
    return Delivered(Verdict.HANDLED, f"quarantined as {entry}: {reason}", quarantine_id=entry)


@attrs.define
class _Journaled:
    """A mailer that keeps each reply the server accepted in the sent journal, the moment
    the server answered: a journal that cannot be written is logged, never taken for a
    failed send (the server has the reply; counting it as failed would send it again)."""

    mailer: Mailer
    journal: SentJournal
    owner: str
    now: datetime

    def send(self, message: OutgoingEmail) -> None:
        self.mailer.send(message)
        try:
            self.journal.add([SentEntry(message.message_id, self.owner, self.now)])
        except RepositoryError as exc:
            log.warning(
                "cannot write the sent journal; if the store fails before it records the "
                "reply, it is sent again: %s",
                exc,
                extra={"reply_message_id": message.message_id, "error": str(exc)},
            )


def _settle_stopped(journal: SentJournal, repository: Repository) -> None:
    """Record sent what the journals of stopped senders hold (raises what the store raises;
    journals that cannot be read or cleared are logged and left to the next sender)."""
    try:
        leftovers = journal.leftovers()
    except RepositoryError as exc:
        log.warning("cannot read the sent journals of stopped senders: %s", exc)
        return
    if not leftovers:
        return
    settle(leftovers, repository)
    try:
        journal.forget()
    except RepositoryError as exc:
        log.warning("could not clear the sent journals of stopped senders: %s", exc)


def deliver_message(
    raw: bytes,
    repository: Repository,
    mailer: Mailer | None,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
    *,
    random_token: Callable[[], str] = lambda: secrets.token_hex(8),
) -> Delivered:
    """Handle one message from the mail server; never raises for a message or a store fault
    (TypeError for a naive ``now``: :func:`~asm_email_rules.decision.require_aware`).

    The same bytes quarantined before are not processed again (the ledger says so). A
    reply (or notification) that hit a temporary failure asks for a retry: the decision is
    already applied and recorded, and the mail waits in the store's outbox, so the retry only
    sends it once it is due (the ledger makes the message a duplicate); after
    ``system.reply_retry_hours`` it is recorded as failed (``replies list``) and the message
    is handled.
    """
    now = require_aware(now)  # naive: a host's mistake, raised, never blamed on the message
    owner = default_owner()
    journal = None if mailer is None else open_sent_journal(repository, owner)
    if journal is None:
        return _deliver(raw, repository, mailer, mailbox, system, now, owner, random_token)
    handled = False
    try:
        try:
            _settle_stopped(journal, repository)
        except Exception as exc:  # any failure of the store (a host store's unwrapped one too)
            return Delivered(Verdict.TRY_LATER, f"store not ready: {exc}")
        journaled = _Journaled(mailer, journal, owner, now) if mailer is not None else None
        outcome = _deliver(raw, repository, journaled, mailbox, system, now, owner, random_token)
        handled = outcome.verdict is Verdict.HANDLED
        return outcome
    finally:
        try:  # not handled: what the server accepted waits for the next sender's settle
            journal.close(recorded=handled)
        except RepositoryError as exc:
            log.warning("cannot close the sent journal: %s", exc)


def _deliver(
    raw: bytes,
    repository: Repository,
    mailer: Mailer | None,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
    owner: str,
    random_token: Callable[[], str],
) -> Delivered:
    """:func:`deliver_message` once the sent journal is settled (the replies sent as
    ``owner``)."""
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        before = quarantine_reason(repository, mailbox.name, sha256)
    except Exception as exc:  # any failure of the store (a host store's unwrapped one too)
        return Delivered(Verdict.TRY_LATER, f"store not ready: {exc}")
    if before is not None:
        return Delivered(Verdict.HANDLED, f"quarantined before: {before}")
    try:
        result = process(
            raw, repository, mailer, mailbox, system, now, random_token=random_token, owner=owner
        )
    except MessageParseError as exc:
        return _set_aside(repository, mailbox, raw, f"cannot parse: {exc}", now)
    except RepositoryError as exc:  # NotFoundError too: the retry decides on what is there
        return Delivered(Verdict.TRY_LATER, f"store not ready: {exc}")
    except Exception as exc:  # a bug must not bounce the mail nor lose it
        log.exception("processing a delivered message failed", extra={"account": mailbox.name})
        error = f"{type(exc).__name__}: {exc}"
        if raised_inside(exc, repository):  # the store's own failure, not the message's
            return Delivered(Verdict.TRY_LATER, f"store not ready: {error}")
        return _set_aside(repository, mailbox, raw, f"processing failed: {error}", now)
    waiting = mailer is not None and ReplyStatus.PENDING in (
        result.reply_status,
        *result.notification_statuses,
    )
    return _verdict(result, raw, repository, mailbox, now, waiting=waiting)


def _verdict(
    result: ProcessResult,
    raw: bytes,
    repository: Repository,
    mailbox: MailboxSettings,
    now: datetime,
    *,
    waiting: bool = False,
) -> Delivered:
    """HANDLED, TRY_LATER (reply to retry) or a quarantine, from the processing result."""
    decision = result.decision
    if decision is None:
        what = "already processed (ledger)"
    else:
        what = f"rule {decision.rule}: {decision.outcome.value}"
        if decision.discard_reason:  # the line the mail server logs is all an operator sees
            what += f" ({decision.discard_reason})"
    reply = result.reply_status.value
    if decision is not None and decision.reply_suppressed:  # Postfix logs 100 characters
        reply = f"held back: {decision.reply_suppressed}"
    detail = f"{what}; reply {reply}"
    if waiting or result.disposition is Disposition.RETRY:
        return Delivered(Verdict.TRY_LATER, f"{detail}: the reply will be retried", result)
    if result.disposition is Disposition.QUARANTINE:
        entry = find_ledger_entry(repository, mailbox.name, result.email)
        error = entry.last_error if entry is not None and entry.last_error else "gave up"
        quarantined = _set_aside(repository, mailbox, raw, f"reply not sent: {error}", now)
        return attrs.evolve(quarantined, result=result)
    return Delivered(Verdict.HANDLED, detail, result)
