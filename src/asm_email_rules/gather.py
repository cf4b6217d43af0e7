"""Gather facts: everything ``decide`` looks at, read before it runs (the only reads).

Classification, the subject command (with the thread key applied), the sender's person
case, the referenced record, summary items, the reply budget count, sender authentication
and the approval token are all read here, so ``decide`` stays pure.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from asm_email_rules.auth import AuthVerdict, authenticate_sender
from asm_email_rules.classify import Classification, MailKind, classify
from asm_email_rules.decision import Facts, require_aware
from asm_email_rules.model import (
    Call,
    EntityKind,
    Group,
    InboundEmail,
    Person,
    SecurityRole,
    SummaryItem,
)
from asm_email_rules.protocols import RuleReader
from asm_email_rules.rules import PRIVILEGED_COMMANDS, TWO_FROM_HEADERS, reply_address
from asm_email_rules.sender import (
    actor_address,
    contact_address,
    has_two_from_headers,
    resolve_sender,
)
from asm_email_rules.settings import MailboxSettings, SystemSettings
from asm_email_rules.subject import CommandKind, MatchSource, SubjectCommand, parse_subject
from asm_email_rules.tokens import TokenStatus, verify_approval_token

__all__ = ["REPLY_BUDGET_WINDOW", "domain_of", "gather_facts"]

REPLY_BUDGET_WINDOW = timedelta(hours=1)
"""The per-sender reply budget counts our replies sent in this last stretch of time; a
Message-ID of ours about no record is read for nothing else, so the store may forget it after
this (``prune_sent_messages``)."""

_UPDATE_FOR: dict[EntityKind, CommandKind] = {
    EntityKind.CALL: CommandKind.UPDATE_CALL,
    EntityKind.TASK: CommandKind.UPDATE_TASK,
    EntityKind.REQUEST: CommandKind.UPDATE_REQUEST,
}


def _thread_command(
    email: InboundEmail, command: SubjectCommand, repository: RuleReader
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


def _role(repository: RuleReader, name: str | None) -> SecurityRole | None:
    return repository.get_role(name) if name else None


def _notify_targets(
    call: Call | None,
    repository: RuleReader,
    mailbox: MailboxSettings,
    system: SystemSettings,
) -> tuple[tuple[Person, ...], tuple[Group, ...]]:
    """Who a notification about ``call`` may go to: its assigned analyst and group, and the
    call template's (a reopen may assign the call to those). Read only when Email at Update
    via Email In is on. A person who is not an analyst is left out: an id that names a
    customer (settings built in code, which no ``asm-email-rules check`` saw) must not mail
    them the desk's notifications."""
    if call is None or not system.email_at_update_via_email_in:
        return (), ()
    template = mailbox.call_template
    people: dict[int, Person] = {}
    for person_id in (call.owner_id, template.assigned_analyst_id):
        if person_id is not None and person_id not in people:
            found = repository.get_person(person_id)
            if found is not None and found.is_analyst:
                people[person_id] = found
    groups: dict[str, Group] = {}
    for name in (call.group, template.assigned_group):
        if name and name not in groups:
            group = repository.get_group(name)
            if group is not None:
                groups[name] = group
    return tuple(people.values()), tuple(groups.values())


def domain_of(address: str) -> str:
    """The domain of an addr-spec (after the last ``@``; "" without one)."""
    return address.rpartition("@")[2]


def gather_facts(
    email: InboundEmail,
    repository: RuleReader,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
) -> Facts:
    """Read everything ``decide`` needs; the only place the rules touch the repository.
    TypeError for a naive ``now``; an aware one is taken in UTC (the reply budget's hour is
    counted back from it: see :func:`~asm_email_rules.decision.require_aware`)."""
    now = require_aware(now)
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
    identity, why = actor_address(email)
    sender_reasons = (why,) if why else ()
    if email.reply_to and command.kind is CommandKind.NONE:
        if mailbox.contact_from_reply_to:
            identity = email.reply_to[0]
            sender_reasons = (
                f"web-form mailbox (contact_from_reply_to): the caller is Reply-To {identity}",
            )
        elif not identity:  # a new call needs an address; Reply-To is the only one given
            identity = email.reply_to[0]
            sender_reasons = (f"From has no usable address: the caller is Reply-To {identity}",)
    sender = resolve_sender(identity, repository.persons_by_address(identity))
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
    since = now - REPLY_BUDGET_WINDOW
    recipients = {reply_address(email, person), contact_address(email)} - {""}
    recent = max((repository.replies_sent_since(to, since) for to in recipients), default=0)
    authenticated: bool | None = None
    auth_reason = ""
    privileged = command.kind in PRIVILEGED_COMMANDS
    if privileged and has_two_from_headers(email):
        authenticated = False
        auth_reason = TWO_FROM_HEADERS
    elif privileged and mailbox.trusted_authserv_id:
        verdict = authenticate_sender(
            email.header_all("Authentication-Results"),
            authserv_id=mailbox.trusted_authserv_id,
            from_domain=domain_of(identity),
        )
        authenticated = verdict.verdict is AuthVerdict.PASS
        auth_reason = verdict.reason
    token_ok, token_reason, token_id, token_expires_at = _check_token(
        command, person, repository, mailbox, system, now
    )
    notify_people, notify_groups = _notify_targets(call, repository, mailbox, system)
    return Facts(
        email=email,
        command=command,
        sender=sender,
        now=now,
        mail_kind=classification.kind,
        mail_kind_reasons=classification.reasons,
        receipt=classification.receipt,
        bounce_permanent=classification.bounce is not None and classification.bounce.permanent,
        bounce_status_class=(
            classification.bounce.status_class if classification.bounce is not None else None
        ),
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
        token_expires_at=token_expires_at,
        analyst_role=_role(repository, person.analyst_role) if person is not None else None,
        user_role=_role(repository, person.user_role) if person is not None else None,
        notify_people=notify_people,
        notify_groups=notify_groups,
        sender_reasons=sender_reasons,
        default_analyst_ok=(
            None
            if classification.kind in _NEVER_LOGS_A_CALL
            else _default_analyst_ok(repository, mailbox, person)
        ),
    )


_NEVER_LOGS_A_CALL = frozenset({MailKind.BOUNCE, MailKind.OWN_MAIL, MailKind.AUTO_REPLY})
"""Kinds of mail the rules never log a call for (GATE-1 to 3; auto-replies, LOG-1): the
Default Logging Analyst is not looked up for them."""


def _default_analyst_ok(
    repository: RuleReader, mailbox: MailboxSettings, sender: Person | None
) -> bool | None:
    """Whether ``default_logging_analyst_id`` names an analyst (None when it is not set).

    The spec sets the logging analyst of a call logged by email to "the analyst specified in
    the Default Logging Analyst field"; an id that names a customer (person 1 of an empty
    store is the first customer to write) or nobody must not be used as one.
    """
    wanted = mailbox.default_logging_analyst_id
    if wanted is None:
        return None
    found = sender if sender is not None and sender.id == wanted else repository.get_person(wanted)
    return found is not None and found.is_analyst


def _check_token(
    command: SubjectCommand,
    person: Person | None,
    repository: RuleReader,
    mailbox: MailboxSettings,
    system: SystemSettings,
    now: datetime,
) -> tuple[bool | None, str, str | None, datetime | None]:
    """Verify the approval token when the mailbox requires one; None when not required.
    With a valid token, its id and when it expires."""
    if not mailbox.require_approval_token or command.kind not in (
        CommandKind.APPROVE,
        CommandKind.REJECT,
    ):
        return None, "", None, None
    if command.token is None:
        return False, "no approval token in the subject", None, None
    if person is None or command.number is None or not system.approval_token_secret:
        return False, "the token cannot be checked for this sender", None, None
    check = verify_approval_token(
        system.approval_token_secret,
        command.token,
        task_number=command.number,
        approver_id=person.id,
        now=now,
        action=command.kind.value,
    )
    if check.status is not TokenStatus.VALID:
        return False, check.reason, None, None
    if check.token_id is not None and repository.is_token_used(check.token_id):
        return False, "this approval token was already used", None, None
    return True, check.reason, check.token_id, check.expires_at
