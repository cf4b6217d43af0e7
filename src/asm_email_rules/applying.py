"""Apply a Decision: every write it stands for, in one transaction with its ledger entry.

The only writes of the flow happen here. The reply was composed in full by ``decide``; this
step fills in a new call's number, adds the headers of the moment (our Message-ID, threading,
From and loop headers) and stores it with the ledger entry, still unsent: ``send_pending``
sends it after the commit (:mod:`asm_email_rules.send`).

A notification to a call's assigned analyst or group (Email at Update via Email In) takes the
same path: it is stored, in the same transaction, as a ledger entry of its own whose key is
the message's with :func:`notification_key` for the hash, and sent after the commit exactly
as a reply is (the same retries, the same outbox).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import assert_never

import attrs

from asm_email_rules.actions import (
    Action,
    AddAutomaticEntry,
    AddHistory,
    AddNote,
    ApproveTask,
    AttachObjects,
    CloseCall,
    CreateUser,
    Discard,
    LogCall,
    MarkUpdated,
    NotifyAssignee,
    RejectTask,
    ReopenCall,
    SendSummary,
    SetUserFlag,
    SpendToken,
    Target,
)
from asm_email_rules.decision import Decision, Reply, require_aware
from asm_email_rules.gather import domain_of
from asm_email_rules.ledger_key import ledger_key
from asm_email_rules.model import (
    EntityKind,
    EntityRef,
    InboundEmail,
    NewCall,
    OutgoingEmail,
    TaskStatus,
)
from asm_email_rules.outgoing import OutgoingMessageError, make_message_id, normalize_msg_id
from asm_email_rules.protocols import Repository
from asm_email_rules.settings import MailboxSettings, SystemSettings

__all__ = [
    "ApplyResult",
    "apply",
    "build_notification_email",
    "build_reply_email",
    "notification_key",
]


@attrs.frozen
class ApplyResult:
    """What apply did: the call it logged (if any) and the reply it recorded (if any)."""

    new_call_number: int | None
    reply: OutgoingEmail | None
    new_person_id: int | None = None
    notifications: tuple[OutgoingEmail, ...] = ()


def notification_key(sha256: str, index: int) -> str:
    """The ledger hash under which the ``index``-th notification (0-based) of the message
    with hash ``sha256`` is stored: ``"<sha256>+notify-<index + 1>"``.

    A processed message has one ledger entry for itself (and its reply) and one per
    notification, so each outgoing mail has its own delivery state and retries.
    """
    return f"{sha256}+notify-{index + 1}"


def _host(mailbox: MailboxSettings) -> str:
    for address in mailbox.addresses:
        host = domain_of(address)
        if host:
            return host
    return "asm-email-rules.invalid"


def _safe_message_id(message_id: str | None) -> str | None:
    """The id in canonical form when it can go into a header of ours, else None (dropped)."""
    if not message_id:
        return None
    try:
        return normalize_msg_id(message_id)
    except OutgoingMessageError:
        return None


def build_reply_email(
    reply: Reply,
    email: InboundEmail,
    mailbox: MailboxSettings,
    system: SystemSettings,
    *,
    random_token: str,
) -> OutgoingEmail:
    """The outgoing message for a complete reply: its recipient, subject and body as they are,
    plus our Message-ID (``<asm.{kind}-{number}.{random}@{host}>``, DESIGN 4), In-Reply-To and
    References (the last 19 of the inbound mail's References, or its single In-Reply-To id
    when it has no References, RFC 5322 section 3.6.4; then its own id), From and our loop
    header.

    Raises ``ValueError`` when the reply still waits for a new call's number
    (:meth:`Reply.for_call` first).
    """
    ref = reply.ref
    if isinstance(ref, NewCall) or reply.awaits_call_number:
        raise ValueError("the reply names a new call whose number is not filled in yet")
    kind = ref.kind.value if ref is not None else "reply"
    message_id = make_message_id(
        kind, ref.number if ref is not None else None, _host(mailbox), random_token
    )
    in_reply_to = _safe_message_id(email.message_id)
    # RFC 5322 3.6.4: the parent's References, or else its In-Reply-To when that holds a
    # single id, then the parent's own Message-ID.
    earlier = email.references or (email.in_reply_to if len(email.in_reply_to) == 1 else ())
    references = tuple(mid for mid in map(_safe_message_id, earlier[-19:]) if mid is not None) + (
        (in_reply_to,) if in_reply_to else ()
    )
    return OutgoingEmail(
        to=reply.to,
        subject=reply.subject,
        body=reply.body,
        sender=mailbox.reply_from,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        extra_headers=((system.loop_header, mailbox.name),),
    )


def build_notification_email(
    notification: Reply,
    mailbox: MailboxSettings,
    system: SystemSettings,
    *,
    random_token: str,
) -> OutgoingEmail:
    """The outgoing message of a notification: recipient, subject and body as composed, our
    Message-ID (``<asm.call-{number}.{random}@{host}>``), From and our loop header. It answers
    no message of the analyst's, so it has no In-Reply-To or References; a reply to it finds
    the call by the bracket token in its subject."""
    ref = notification.ref
    if isinstance(ref, NewCall) or notification.awaits_call_number:
        raise ValueError("a notification names a call whose number is not filled in yet")
    kind = ref.kind.value if ref is not None else "notification"
    message_id = make_message_id(
        kind, ref.number if ref is not None else None, _host(mailbox), random_token
    )
    return OutgoingEmail(
        to=notification.to,
        subject=notification.subject,
        body=notification.body,
        sender=mailbox.addresses[0] if mailbox.addresses else "",
        message_id=message_id,
        extra_headers=((system.loop_header, mailbox.name),),
    )


@attrs.define
class _Writes:
    """Carries out actions in order, remembering the person and call they create."""

    repository: Repository
    email: InboundEmail
    mailbox: MailboxSettings
    now: datetime
    new_person: int | None = None
    new_call: int | None = None

    def record(self, ref: Target) -> EntityRef:
        """The record an action names, with the new call's number once it exists."""
        if isinstance(ref, NewCall):
            assert self.new_call is not None, "an action names the new call before LogCall"
            return EntityRef(EntityKind.CALL, self.new_call)
        return ref

    def do(self, action: Action) -> None:
        """One action's writes. mypy checks the match covers every action of the union."""
        repository, now = self.repository, self.now
        match action:
            case CreateUser():
                person = repository.create_person(action.address, action.name, is_user=True)
                self.new_person = person.id
            case SetUserFlag():
                repository.set_user_flag(action.person_id)
            case LogCall():
                user_id = action.user_id if action.user_id is not None else self.new_person
                call = repository.create_call(
                    template=self.mailbox.template_for_new_calls,
                    user_id=user_id,
                    logging_analyst_id=action.logging_analyst_id,
                    description=action.description,
                    now=now,
                )
                self.new_call = call.number
            case AddHistory():
                repository.add_history(self.record(action.ref), action.text, action.author, now)
            case AddAutomaticEntry():
                author = f"{action.author} (automatic reply)"
                repository.add_history(self.record(action.ref), action.text, author, now)
            case AddNote():
                repository.add_note(self.record(action.ref), action.text, action.author, now)
            case AttachObjects():
                for attachment in self.email.attachments:
                    repository.attach(
                        self.record(action.ref), attachment, action.security_profile, now
                    )
            case MarkUpdated():
                repository.mark_updated(self.record(action.ref))
            case NotifyAssignee():
                ref = self.record(action.ref)
                text = f"{ref.kind.value.capitalize()} {ref.number} was updated by email"
                if action.to:
                    text += f": email to the {action.recipient} <{action.to}>"
                elif action.recipient:
                    text += f": no email to the {action.recipient} (no address)"
                repository.record_notification(ref, text, now)
            case CloseCall():
                repository.close_call(action.number, action.by, now)
            case ReopenCall():
                repository.reopen_call(action.number, action.owner_id, action.group, now)
            case ApproveTask():
                repository.set_task_status(action.number, TaskStatus.APPROVED, action.by, now)
            case RejectTask():
                repository.set_task_status(action.number, TaskStatus.REJECTED, action.by, now)
            case SpendToken():
                _spend_token(repository, action, now)
            case SendSummary() | Discard():
                pass  # nothing to write: the reply and the ledger entry carry them
            case _:
                assert_never(action)


def _spend_token(repository: Repository, action: SpendToken, now: datetime) -> None:
    """``use_token``; with a store that has the optional ``use_token_until`` (the bundled
    ones), the token's expiry goes with it, so the store can forget it once it has passed."""
    until = getattr(repository, "use_token_until", None)
    if action.expires_at is not None and callable(until):
        until(action.token_id, now, action.expires_at)
    else:
        repository.use_token(action.token_id, now)


def apply(
    decision: Decision,
    email: InboundEmail,
    repository: Repository,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
    *,
    random_token: Callable[[], str] = lambda: secrets.token_hex(8),
) -> ApplyResult:
    """Carry out every write of ``decision`` and record it in the ledger, in one transaction.

    The reply is stored (status PENDING) but not sent: :func:`~asm_email_rules.send.send_pending`
    sends it after the commit, so a failed send never undoes the actions and is retried instead.
    An exception from the repository rolls back every write of the decision. ``now`` is
    made UTC before any write (TypeError when naive), as :func:`~asm_email_rules.pipeline.process`
    does: the store keeps and hands back UTC.
    """
    now = require_aware(now)
    with repository.transaction():
        writes = _Writes(repository, email, mailbox, now)
        for action in decision.actions:
            writes.do(action)
        outgoing: OutgoingEmail | None = None
        reply = decision.reply
        if reply is not None:
            if reply.awaits_call_number:
                assert writes.new_call is not None, "a reply names a new call nobody logged"
                reply = reply.for_call(writes.new_call)
            outgoing = build_reply_email(reply, email, mailbox, system, random_token=random_token())
            ref = reply.ref
            assert not isinstance(ref, NewCall)
            repository.record_sent(outgoing.message_id, ref, outgoing.to, now)
        message_id, sha256 = ledger_key(email)
        repository.record_processed(
            mailbox.name, message_id, sha256, decision.to_ledger_json(), outgoing, now
        )
        notifications = tuple(
            build_notification_email(item, mailbox, system, random_token=random_token())
            for item in decision.notifications
        )
        for index, notification in enumerate(notifications):
            repository.record_processed(
                mailbox.name,
                message_id,
                notification_key(sha256, index),
                json.dumps({"notification_of": sha256, "to": notification.to}, ensure_ascii=False),
                notification,
                now,
            )
    return ApplyResult(writes.new_call, outgoing, writes.new_person, notifications)
