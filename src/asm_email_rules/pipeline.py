"""The flow around ``decide``: gather facts (the only reads), apply (the only writes), process.

``process`` runs one raw message end to end: parse, skip duplicates, gather, decide, apply the
decision and record it in one transaction together with the reply, then send the reply.
A crash after the commit never acts twice: the ledger entry makes the retry a no-op, and the
stored reply is sent on the retry if it was not sent before.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs

from asm_email_rules.auth import AuthVerdict, authenticate_sender
from asm_email_rules.classify import Classification, classify
from asm_email_rules.errors import PermanentSendError, SendError
from asm_email_rules.intake import parse_message
from asm_email_rules.model import (
    EntityKind,
    EntityRef,
    InboundEmail,
    LedgerEntry,
    OutgoingEmail,
    Person,
    ReplyStatus,
    SummaryItem,
    TaskStatus,
)
from asm_email_rules.outgoing import OutgoingMessageError, make_message_id, normalize_msg_id
from asm_email_rules.protocols import Mailer, Repository
from asm_email_rules.replies import render
from asm_email_rules.rules import (
    NEW_CALL,
    AddHistory,
    AddNote,
    ApproveTask,
    AttachObjects,
    CloseCall,
    CreateUser,
    Decision,
    Facts,
    LogCall,
    MarkUpdated,
    NotifyAssignee,
    RejectTask,
    ReopenCall,
    Reply,
    SetUserFlag,
    SpendToken,
    decide,
    reply_address,
)
from asm_email_rules.sender import resolve_sender
from asm_email_rules.settings import MailboxSettings, SystemSettings
from asm_email_rules.subject import CommandKind, MatchSource, SubjectCommand, parse_subject
from asm_email_rules.tokens import TokenStatus, verify_approval_token

logger = logging.getLogger("asm_email_rules")

_UPDATE_FOR: dict[EntityKind, CommandKind] = {
    EntityKind.CALL: CommandKind.UPDATE_CALL,
    EntityKind.TASK: CommandKind.UPDATE_TASK,
    EntityKind.REQUEST: CommandKind.UPDATE_REQUEST,
}


def _thread_command(
    email: InboundEmail, command: SubjectCommand, repository: Repository
) -> tuple[SubjectCommand, bool]:
    """Apply the thread key: a reply to one of our Message-IDs updates what that mail was about.

    Commands outrank the thread; the thread outranks subject references. The flag says whether
    the mail answers one of our messages at all.
    """
    for message_id in email.thread_ids:
        ref = repository.entity_for_message_id(message_id)
        if ref is None:
            continue
        if command.kind.is_command:
            return command, True
        ignored = command.ignored + ((command.matched,) if command.matched else ())
        threaded = attrs.evolve(
            command,
            kind=_UPDATE_FOR[ref.kind],
            number=ref.number,
            source=MatchSource.THREAD,
            matched=message_id,
            ignored=ignored,
        )
        return threaded, True
    return command, False


def _in_partition(record_partition: str | None, mailbox: MailboxSettings) -> bool:
    return mailbox.partition is None or record_partition == mailbox.partition


def _bounce_summary(classification: Classification, system: SystemSettings) -> str:
    """One sentence on a delivery report: action, status, SMTP code and whether it is fatal."""
    bounce = classification.bounce
    if bounce is None:
        return ""
    parts = [f"action {bounce.action or '-'}", f"status {bounce.status or '-'}"]
    if bounce.smtp_code is not None:
        parts.append(f"SMTP {bounce.smtp_code}")
    text = "delivery report: " + ", ".join(parts)
    if bounce.fatal_code:
        codes = "/".join(str(code) for code in system.fatal_smtp_codes)
        text += f" (one of the spec's permanent and fatal codes {codes})"
    elif bounce.permanent:
        text += " (permanent failure)"
    return text


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def gather_facts(
    email: InboundEmail,
    repository: Repository,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
) -> Facts:
    """Read everything ``decide`` needs; the only place the rules touch the repository."""
    classification = classify(
        email,
        own_addresses=mailbox.addresses,
        loop_header=system.loop_header,
        fatal_codes=system.fatal_smtp_codes,
    )
    command, replies_to_us = _thread_command(email, parse_subject(email.subject), repository)
    if system.reply_marker and system.reply_marker in email.body:
        replies_to_us = True
    if command.reply and command.kind.is_update:
        replies_to_us = True
    sender = resolve_sender(email.sender, repository.persons_by_address(email.sender))
    person = sender.person
    ref = command.ref
    call = task = request = None
    partition: str | None = None
    if ref is not None:
        if ref.kind is EntityKind.CALL:
            call = repository.get_call(ref.number)
            partition = call.partition if call else None
        elif ref.kind is EntityKind.TASK:
            task = repository.get_task(ref.number)
            partition = task.partition if task else None
        else:
            request = repository.get_request(ref.number)
            partition = request.partition if request else None
    items: tuple[SummaryItem, ...] = ()
    total = 0
    summary_kind = command.kind.summary_kind
    if summary_kind is not None and person is not None and sender.case.is_analyst:
        found, total = repository.summary(summary_kind, person.id, system.summary_limit)
        items = tuple(found)
    to = reply_address(email, person)
    recent = repository.replies_sent_since(to, now - timedelta(hours=1)) if to else 0
    authenticated: bool | None = None
    auth_reason = ""
    if mailbox.trusted_authserv_id and command.kind in (
        CommandKind.CLOSE,
        CommandKind.APPROVE,
        CommandKind.REJECT,
        CommandKind.UPDATE_CALL,
    ):
        verdict = authenticate_sender(
            email.header_all("Authentication-Results"),
            authserv_id=mailbox.trusted_authserv_id,
            from_domain=_domain(email.sender),
        )
        authenticated = verdict.verdict is AuthVerdict.PASS
        auth_reason = verdict.reason
    token_ok, token_reason, token_id = _check_token(
        command, person, repository, mailbox, system, now
    )
    return Facts(
        email=email,
        command=command,
        sender=sender,
        now=now,
        mail_kind=classification.kind,
        mail_kind_reasons=classification.reasons,
        bounce_permanent=classification.bounce is not None and classification.bounce.permanent,
        bounce_summary=_bounce_summary(classification, system),
        may_auto_reply=classification.may_auto_reply,
        call=call,
        task=task,
        request=request,
        in_partition=_in_partition(partition, mailbox) if ref is not None else True,
        summary_items=items,
        summary_total=total,
        replies_last_hour=recent,
        replies_to_us=replies_to_us,
        authenticated=authenticated,
        auth_reason=auth_reason,
        token_ok=token_ok,
        token_reason=token_reason,
        token_id=token_id,
    )


def _check_token(
    command: SubjectCommand,
    person: Person | None,
    repository: Repository,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
) -> tuple[bool | None, str, str | None]:
    """Verify the approval token when the mailbox requires one; None when not required."""
    if not mailbox.require_approval_token or command.kind not in (
        CommandKind.APPROVE,
        CommandKind.REJECT,
    ):
        return None, "", None
    if command.token is None:
        return False, "no approval token in the subject", None
    if person is None or command.number is None or not system.approval_token_secret:
        return False, "the token cannot be checked for this sender", None
    check = verify_approval_token(
        system.approval_token_secret,
        command.token,
        task_number=command.number,
        approver_id=person.id,
        now=now,
        action=command.kind.value,
    )
    if check.status is not TokenStatus.VALID:
        return False, check.reason, None
    if check.token_id is not None and repository.is_token_used(check.token_id):
        return False, "this approval token was already used", None
    return True, check.reason, check.token_id


# --------------------------------------------------------------------------------------------
# apply
# --------------------------------------------------------------------------------------------


@attrs.frozen
class ApplyResult:
    """What apply did: the call it logged (if any) and the reply it recorded (if any)."""

    new_call_number: int | None
    reply: OutgoingEmail | None
    new_person_id: int | None = None


def _host(mailbox: MailboxSettings) -> str:
    for address in mailbox.addresses:
        host = _domain(address)
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
    ref: EntityRef | None,
    random_token: str,
) -> OutgoingEmail:
    """The outgoing message for a reply: the spec's subject plus the record's bracket token,
    our marker line first in the body, threading headers, our Message-ID and loop header."""
    subject = reply.subject
    if ref is not None:
        subject = f"{subject} [{ref.kind.value.upper()}#{ref.number}]"
    body = reply.body
    if system.reply_marker:
        body = f"{system.reply_marker}\n\n{body}\n"
    kind = ref.kind.value if ref is not None else "reply"
    message_id = make_message_id(
        kind, ref.number if ref is not None else None, _host(mailbox), random_token
    )
    in_reply_to = _safe_message_id(email.message_id)
    references = tuple(
        mid for mid in map(_safe_message_id, email.references[-19:]) if mid is not None
    ) + ((in_reply_to,) if in_reply_to else ())
    return OutgoingEmail(
        to=reply.to,
        subject=subject,
        body=body,
        sender=mailbox.addresses[0] if mailbox.addresses else "",
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        extra_headers=((system.loop_header, mailbox.name),),
    )


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

    The reply is built and stored (status PENDING) but not sent: :func:`send_pending` sends it
    after the commit, so a failed send never undoes the actions and is retried instead.
    """
    with repository.transaction():
        new_person: int | None = None
        new_call: int | None = None

        def target(ref: EntityRef) -> EntityRef:
            if ref == NEW_CALL:
                assert new_call is not None, "an action names the new call before LogCall"
                return EntityRef(EntityKind.CALL, new_call)
            return ref

        for action in decision.actions:
            if isinstance(action, CreateUser):
                new_person = repository.create_person(action.address, action.name, is_user=True).id
            elif isinstance(action, SetUserFlag):
                repository.set_user_flag(action.person_id)
            elif isinstance(action, LogCall):
                user_id = action.user_id if action.user_id is not None else new_person
                call = repository.create_call(
                    template=mailbox.call_template,
                    user_id=user_id,
                    logging_analyst_id=action.logging_analyst_id,
                    description=action.description,
                    now=now,
                )
                new_call = call.number
            elif isinstance(action, AddHistory):
                repository.add_history(target(action.ref), action.text, action.author, now)
            elif isinstance(action, AddNote):
                repository.add_note(target(action.ref), action.text, action.author, now)
            elif isinstance(action, AttachObjects):
                for attachment in email.attachments:
                    repository.attach(target(action.ref), attachment, action.security_profile, now)
            elif isinstance(action, MarkUpdated):
                repository.mark_updated(target(action.ref))
            elif isinstance(action, NotifyAssignee):
                ref = target(action.ref)
                repository.record_notification(
                    ref, f"{ref.kind.value.capitalize()} {ref.number} was updated by email", now
                )
            elif isinstance(action, CloseCall):
                repository.close_call(action.number, action.by, now)
            elif isinstance(action, ReopenCall):
                repository.reopen_call(action.number, action.owner_id, action.group, now)
            elif isinstance(action, ApproveTask):
                repository.set_task_status(action.number, TaskStatus.APPROVED, action.by, now)
            elif isinstance(action, RejectTask):
                repository.set_task_status(action.number, TaskStatus.REJECTED, action.by, now)
            elif isinstance(action, SpendToken):
                repository.use_token(action.token_id, now)
            # SendSummary and Discard write nothing: the reply and the ledger carry them.

        outgoing: OutgoingEmail | None = None
        if decision.reply is not None:
            reply = decision.reply
            reply_ref = reply.ref
            if reply_ref == NEW_CALL:
                reply_ref = EntityRef(EntityKind.CALL, new_call) if new_call is not None else None
                text = render(reply.template_id, {"number": new_call}, mailbox.reply_templates)
                reply = attrs.evolve(reply, subject=text.subject, body=text.body)
            outgoing = build_reply_email(
                reply, email, mailbox, system, ref=reply_ref, random_token=random_token()
            )
            repository.record_sent(outgoing.message_id, reply_ref, outgoing.to, now)
        repository.record_processed(
            mailbox.name,
            email.message_id or "",
            email.raw_sha256,
            decision.to_json(),
            outgoing,
            now,
        )
    return ApplyResult(new_call, outgoing, new_person)


class Disposition(enum.Enum):
    """What the mailbox should do with the message once it has been processed."""

    DELETE = "delete"  # acted on and recorded (the spec: "the email is deleted")
    RETRY = "retry"  # keep it: the reply hit a transient failure and is retried next poll
    QUARANTINE = "quarantine"  # move it aside: unusable, failing, or out of send attempts


def send_pending(
    entry: LedgerEntry,
    repository: Repository,
    mailer: Mailer,
    system: SystemSettings,
) -> tuple[ReplyStatus, Disposition]:
    """Send the stored reply of a ledger entry, record the outcome, say what to do with the mail.

    Permanent refusals (the spec's 501/503/550/553 and other 5xx) are final and the message is
    still deleted; transient ones keep the message for a retry until
    ``system.max_send_attempts`` is reached, after which it is quarantined.
    """
    if entry.reply is None or entry.reply_status is not ReplyStatus.PENDING:
        return entry.reply_status, Disposition.DELETE
    attempts = entry.attempts + 1
    try:
        mailer.send(entry.reply)
    except PermanentSendError as exc:
        fatal = exc.code in system.fatal_smtp_codes
        logger.warning(
            "reply refused for good: %s",
            exc,
            extra={"to": entry.reply.to, "code": exc.code, "fatal_code": fatal},
        )
        status, disposition, error = ReplyStatus.FAILED, Disposition.DELETE, str(exc)
    except SendError as exc:  # TransientSendError, or a mailer raising the base class
        error = str(exc)
        if attempts >= system.max_send_attempts:
            status, disposition = ReplyStatus.FAILED, Disposition.QUARANTINE
            error = f"gave up after {attempts} attempts: {exc}"
        else:
            status, disposition = ReplyStatus.PENDING, Disposition.RETRY
        logger.info("reply deferred: %s", exc, extra={"to": entry.reply.to, "attempts": attempts})
    else:
        status, disposition, error = ReplyStatus.SENT, Disposition.DELETE, ""
    repository.set_reply_status(
        entry.mailbox, entry.message_id, entry.sha256, status, attempts=attempts, error=error
    )
    return status, disposition


# --------------------------------------------------------------------------------------------
# process
# --------------------------------------------------------------------------------------------


@attrs.frozen
class ProcessResult:
    """The outcome of processing one raw message.

    ``duplicate`` is True when the ledger already held this message (nothing was acted on
    again); ``decision`` is then None. ``reply_status`` says where its reply stands and
    ``disposition`` what the mailbox should do with the message.
    """

    email: InboundEmail
    decision: Decision | None
    duplicate: bool
    reply_status: ReplyStatus
    disposition: Disposition = Disposition.DELETE
    new_call_number: int | None = None


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
    existing = repository.ledger_entry(mailbox.name, message_id, email.raw_sha256)
    if existing is not None:
        status, disposition = existing.reply_status, Disposition.DELETE
        if mailer is not None:
            status, disposition = send_pending(existing, repository, mailer, system)
        return ProcessResult(email, None, True, status, disposition)
    facts = gather_facts(email, repository, mailbox, system, now)
    decision = decide(facts, mailbox, system)
    result = apply(decision, email, repository, mailbox, system, now, random_token=random_token)
    status = ReplyStatus.NONE if result.reply is None else ReplyStatus.PENDING
    disposition = Disposition.DELETE
    if result.reply is not None and mailer is not None:
        entry = repository.ledger_entry(mailbox.name, message_id, email.raw_sha256)
        if entry is not None:
            status, disposition = send_pending(entry, repository, mailer, system)
    logger.info(
        "message processed",
        extra={
            "mailbox": mailbox.name,
            "message_id": message_id,
            "rule": decision.rule,
            "outcome": decision.outcome.value,
            "reply_status": status.value,
        },
    )
    return ProcessResult(email, decision, False, status, disposition, result.new_call_number)


__all__ = [
    "ApplyResult",
    "Disposition",
    "ProcessResult",
    "apply",
    "build_reply_email",
    "explain",
    "gather_facts",
    "process",
    "reply_address",
    "send_pending",
]
