"""Facts in, Decision out: the values around ``decide`` and their JSON and explain rendering.

``Facts`` is everything ``decide`` looks at (gathered beforehand: the only reads happen there);
a ``Decision`` says what to do with one message and why: the rows that fired, the spec
sentence, the actions, the complete reply and the reasons. Both are plain frozen values.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from asm_email_rules.actions import Action
from asm_email_rules.classify import MailKind
from asm_email_rules.errors import ArgumentTypeError, FactsError, require_type
from asm_email_rules.model import (
    Call,
    EntityKind,
    EntityRef,
    Group,
    InboundEmail,
    NewCall,
    Person,
    PersonCase,
    Request,
    SecurityRole,
    SummaryItem,
    Task,
)
from asm_email_rules.replies import Text, join_text
from asm_email_rules.sender import SenderResolution
from asm_email_rules.subject import SubjectCommand

__all__ = ["Decision", "Facts", "Outcome", "Reply", "for_operators"]

_DESIGN_NOTE = re.compile(r"\(DESIGN 4b?(?: / issue \d+)?\)|DESIGN 4b?(?: / issue \d+)?:")


@functools.lru_cache(maxsize=512)
def for_operators(spec: str) -> str:
    """A row's spec text as operators read it: the project's own rules, marked ``DESIGN 4:``
    in the tables for developers (a design document operators do not have), are marked
    ``beyond the spec:`` instead. ``Case 3 (DESIGN 4): ...`` -> ``Case 3 (beyond the spec): ...``.
    """
    return _DESIGN_NOTE.sub(
        lambda match: "(beyond the spec)" if match.group(0).startswith("(") else "beyond the spec:",
        spec,
    )


def require_aware(now: datetime, what: str = "now") -> datetime:
    """``now`` as the same moment in UTC when it is timezone-aware; else
    :class:`~asm_email_rules.errors.ArgumentTypeError` (a TypeError) naming ``what``, for a
    naive datetime or a value that is not a datetime at all (``None``).

    A naive ``datetime.now()`` is the host's local time with no offset: the rules compare it
    with the message's Date (the reply-age guard, ``max_reply_age_days``) and the stores keep
    it as UTC, so it is refused rather than guessed at (``datetime.now(UTC)`` is meant).

    An aware time in a zone with daylight saving time (``datetime.now(ZoneInfo(...))``) is
    converted: Python adds a ``timedelta`` to such a time on the wall clock, and compares and
    subtracts two times of one zone by their wall-clock readings, so a window computed in it
    (the reply budget's hour, a lease, a retry delay) is an hour short or long across a DST
    change. In UTC every window is its length."""
    if type(now) is datetime and now.tzinfo is UTC:  # the usual reading: nothing to check
        return now
    require_type(now, datetime, "", what, "a timezone-aware datetime")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ArgumentTypeError(
            f"{what} must be a timezone-aware datetime, e.g. datetime.now(UTC); got the naive "
            f"{now.isoformat()}"
        )
    return now.astimezone(UTC)


def days_before(now: datetime, days: int) -> datetime:
    """``now`` less ``days`` days, or the earliest time there is when that is before the year 1:
    a retention of more days than the calendar holds (``1000000`` for "for ever") forgets
    nothing, where ``now - timedelta(days=days)`` raises OverflowError."""
    try:
        return now - timedelta(days=days)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def utc_clock(clock: Callable[[], datetime], what: str = "now") -> Callable[[], datetime]:
    """``clock`` giving UTC (:func:`require_aware` of each reading): a host's clock in its
    local zone counts windows in real time across DST changes too."""
    return lambda: require_aware(clock(), what)


def _utc_if_aware(value: datetime) -> datetime:
    """An aware ``value`` in UTC; a naive one unchanged, for :func:`_aware_now` to refuse."""
    require_type(value, datetime, "Facts", "now", "a timezone-aware datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        return value
    return value.astimezone(UTC)


def _aware_now(_: object, __: attrs.Attribute[datetime], value: datetime) -> None:
    require_aware(value, "Facts.now")


@attrs.frozen
class Facts:
    """Everything ``decide`` looks at, gathered beforehand (the only reads happen there).

    ``authenticated`` / ``token_ok`` are None when the mailbox does not require them (two
    From headers make ``authenticated`` False for the privileged commands, DESIGN 4).
    ``replies_to_us`` is True when the mail answers one of our messages (thread or marker).
    ``receipt`` is True for a read or delivery receipt (:attr:`Classification.receipt`).
    ``analyst_role`` / ``user_role`` are the security roles the sender's record names (None
    when it names none or the store has no such role). ``notify_people`` / ``notify_groups``
    are the persons and groups a notification about the referenced call may go to (its
    assigned analyst and group, and the template's for a reopen), read only when Email at
    Update via Email In is on.
    ``sender_reasons`` say how the acting or contact person was chosen when it is not simply
    From (Sender for a From with several mailboxes; Reply-To for a web-form mailbox).
    ``default_analyst_ok`` is whether the mailbox's ``default_logging_analyst_id`` names an
    analyst in the store (None: not set, or not looked up); a call is never logged with a
    customer as its logging analyst.

    Built by hand (without :func:`~asm_email_rules.gather.gather_facts`), every default says
    "a person wrote this straight to us": ``mail_kind``, ``receipt``, ``bounce_*`` and
    ``may_auto_reply`` come from :func:`~asm_email_rules.classify.classify` (left NORMAL, a
    bounce or an auto-reply is treated as a person's mail), and ``replies_to_us`` must be set
    for Truncate Incoming Emails to cut. Two From headers refuse a privileged command even
    with ``authenticated`` left None.

    Raises :class:`~asm_email_rules.errors.FactsError` when ``call``, ``task`` or ``request``
    is of the kind the command names but not its number.
    """

    email: InboundEmail
    command: SubjectCommand
    sender: SenderResolution
    now: datetime = attrs.field(converter=_utc_if_aware, validator=_aware_now)
    mail_kind: MailKind = MailKind.NORMAL
    mail_kind_reasons: tuple[str, ...] = ()
    receipt: bool = False
    bounce_permanent: bool = False
    bounce_status_class: int | None = None
    bounce_summary: str = ""
    may_auto_reply: bool = True
    call: Call | None = None
    task: Task | None = None
    request: Request | None = None
    in_partition: bool = True
    summary_items: tuple[SummaryItem, ...] = ()
    summary_total: int = 0
    replies_last_hour: int = 0
    replies_to_us: bool = False
    authenticated: bool | None = None
    auth_reason: str = ""
    token_ok: bool | None = None
    token_reason: str = ""
    token_id: str | None = None
    token_expires_at: datetime | None = None
    analyst_role: SecurityRole | None = None
    user_role: SecurityRole | None = None
    notify_people: tuple[Person, ...] = ()
    notify_groups: tuple[Group, ...] = ()
    sender_reasons: tuple[str, ...] = ()
    default_analyst_ok: bool | None = None

    def __attrs_post_init__(self) -> None:
        """:class:`~asm_email_rules.errors.FactsError` when ``call``, ``task`` or ``request``
        is of the kind ``command`` names but another number (``[CLOSE#12]`` with call 99):
        the rules would judge that record's owner, User, status or approvers and act on the
        number in the subject. A record of a kind the command does not name is not looked
        at by the rules for that command."""
        ref = self.command.ref
        if ref is None:
            return
        record = {
            EntityKind.CALL: self.call,
            EntityKind.TASK: self.task,
            EntityKind.REQUEST: self.request,
        }[ref.kind]
        if record is not None and record.number != ref.number:
            raise FactsError(
                f"Facts.{ref.kind.value} is {ref.kind.value} {record.number}, but the command "
                f"{self.command.kind.value!r} names {ref}: pass the record the command names "
                f"(command.ref), or None when there is no such record"
            )


@attrs.frozen
class Reply:
    """The complete reply, exactly the mail that goes out: recipient, subject (the spec's
    words plus the record's bracket token), body (our marker line first), its template and
    the record it is about. Sending adds only the headers of the moment (Message-ID, Date)
    and the threading and From headers taken from the inbound mail and the mailbox.

    For a new call the number does not exist yet: ``ref`` is :data:`NEW_CALL` and the text
    holds it where the number goes. :attr:`subject` and :attr:`body` show it as
    "(new call)"; ``apply`` calls :meth:`for_call` once the call is logged.
    """

    to: str
    subject_text: Text
    body_text: Text
    template_id: str
    ref: EntityRef | NewCall | None = None

    @property
    def subject(self) -> str:
        """The subject line (a new call's number shown as "(new call)")."""
        return join_text(self.subject_text)

    @property
    def body(self) -> str:
        """The body text (a new call's number shown as "(new call)")."""
        return join_text(self.body_text)

    @property
    def awaits_call_number(self) -> bool:
        """True while the reply names a call that ``apply`` has yet to log."""
        return isinstance(self.ref, NewCall) or any(
            isinstance(part, NewCall) for part in (*self.subject_text, *self.body_text)
        )

    def for_call(self, number: int) -> Reply:
        """This reply with the new call's ``number`` filled in wherever it goes."""
        ref = EntityRef(EntityKind.CALL, number) if isinstance(self.ref, NewCall) else self.ref
        return attrs.evolve(
            self,
            subject_text=(join_text(self.subject_text, number),),
            body_text=(join_text(self.body_text, number),),
            ref=ref,
        )


class Outcome(enum.Enum):
    """What a table row decides."""

    CONTINUE = "continue"
    DISCARD = "discard"
    LOG_CALL = "log_call"
    LOG_NEW_USER = "log_new_user"
    LOG_CONTACT_AS_USER = "log_contact_as_user"
    LOG_DEFAULT_ANALYST = "log_default_analyst"
    LOG_LINKED_ANALYST = "log_linked_analyst"
    UPDATE_CALL = "update_call"
    AUTOMATIC_ENTRY = "automatic_entry"
    REOPEN_CALL = "reopen_call"
    NOTE_CLOSED_CALL = "note_closed_call"
    REPLY_CLOSED_NOT_UPDATED = "reply_closed_not_updated"
    CLOSE_CALL = "close_call"
    REPLY_ALREADY_CLOSED = "reply_already_closed"
    REFUSE_PERMISSION = "refuse_permission"
    REFUSE_UNAUTHENTICATED = "refuse_unauthenticated"
    REFUSE_TOKEN = "refuse_token"
    APPROVE_OR_REJECT = "approve_or_reject"
    REPLY_NOT_IDENTIFIED = "reply_not_identified"
    REPLY_NOT_APPROVAL = "reply_not_approval"
    REPLY_NOT_PENDING = "reply_not_pending"
    REPLY_CONFLICT = "reply_conflict"
    UPDATE_TASK = "update_task"
    UPDATE_REQUEST = "update_request"
    SEND_SUMMARY = "send_summary"
    REPLY_ANALYSTS_ONLY = "reply_analysts_only"


@attrs.frozen
class Decision:
    """What to do with one message and why: a value, printable and JSON-able.

    ``rule`` is the id of the table row that fired (``"CL-9"``; two joined by ``" > "`` when
    an invalid number routes to the log-call table: :attr:`rules` splits them) and ``spec``
    the sentence of the spec it implements, as docs/decision-tables.md, :meth:`explain` and
    :meth:`to_dict` show it (the project's own rules marked "beyond the spec").

    ``reply`` goes to the sender; ``notifications`` are the other mails the decision sends
    (the email to a call's assigned analyst or group at Update via Email In), each complete.
    ``status_class`` is a bounce's RFC 3463 class (5 permanent, 4 delay), else None.
    ``discard_reason`` names, in a few words, why a message that is neither acted on nor
    answered was dropped ("auto-reply", "unknown sender without Create New Calls
    Anonymously"); it is "" for every other decision (issue 9: nothing dropped in silence).
    """

    rule: str
    spec: str
    outcome: Outcome
    mail_kind: MailKind
    command: SubjectCommand
    person_case: PersonCase
    person_id: int | None
    actions: tuple[Action, ...]
    reply: Reply | None
    reasons: tuple[str, ...]
    conditions: tuple[tuple[str, object], ...] = ()
    reply_suppressed: str = ""
    notifications: tuple[Reply, ...] = ()
    status_class: int | None = None
    discard_reason: str = ""

    @property
    def rules(self) -> tuple[str, ...]:
        """Every row that fired, in order (a route to the log-call table fires two)."""
        return tuple(self.rule.split(" > "))

    def action_kinds(self) -> tuple[str, ...]:
        """The kinds of the actions, in order (handy in tests and logs)."""
        return tuple(action.kind for action in self.actions)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: mail kind, command, person case, actions, reply and reasons."""
        return self._as_dict(texts=True)

    def to_json(self) -> str:
        """The decision as one JSON object."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    def to_ledger_json(self) -> str:
        """The decision as the ledger records it: :meth:`to_json` without the texts the store
        keeps elsewhere, so a message body is stored once.

        An action's ``description`` or ``text`` (the body, in the call description, history
        entry or note it writes) becomes ``{"chars": n}``, and the reply and each notification
        keep their recipient, subject and template but not their body, which becomes
        ``{"chars": n}`` too (each mail is stored whole in the outbox: the reply with this
        ledger entry, a notification with its own, and a notification quotes the message).
        The texts are measured, never copied into the dict: this runs once per message.
        """
        return json.dumps(self._as_dict(texts=False), ensure_ascii=False, sort_keys=True)

    def _as_dict(self, *, texts: bool) -> dict[str, Any]:
        """:meth:`to_dict`, with the stored texts as ``{"chars": n}`` unless ``texts``."""
        command = self.command
        return {
            "rule": self.rule,
            "spec": for_operators(self.spec),
            "outcome": self.outcome.value,
            "mail_kind": self.mail_kind.value,
            "status_class": self.status_class,
            "discard_reason": self.discard_reason or None,
            "command": {
                "kind": command.kind.value,
                "number": command.number,
                "source": command.source.value,
                "matched": command.matched,
                "ignored": list(command.ignored),
            },
            "person_case": self.person_case.value,
            "person_id": self.person_id,
            "actions": [_action_dict(action, texts) for action in self.actions],
            "reply": None if self.reply is None else _mail_dict(self.reply, texts),
            "reply_suppressed": self.reply_suppressed or None,
            "notifications": [_mail_dict(item, texts) for item in self.notifications],
            "reasons": list(self.reasons),
            "conditions": {name: _jsonable(value) for name, value in self.conditions},
        }

    def explain(self) -> str:
        """A short human explanation: the rule, its spec sentence, the actions, the complete
        reply (recipient, subject, then its body lines after ``|``) and the reasons."""
        lines = [
            f"rule {self.rule}: {self.outcome.value}",
            f"  spec: {for_operators(self.spec)}",
            f"  mail: {self.mail_kind.value}"
            + (f" (status class {self.status_class})" if self.status_class is not None else "")
            + f"; command: {self.command.kind.value}"
            + (f" #{self.command.number}" if self.command.number is not None else "")
            + f"; sender: {self.person_case.value}",
        ]
        lines += [f"  action: {_describe(action)}" for action in self.actions]
        if self.reply is not None:
            lines.append(f"  reply to {self.reply.to}: {self.reply.subject}")
            lines += [f"  | {line}".rstrip() for line in self.reply.body.splitlines()]
        elif self.reply_suppressed:
            lines.append(f"  reply suppressed: {self.reply_suppressed}")
        else:
            lines.append("  no reply")
        for item in self.notifications:
            lines.append(f"  notification to {item.to}: {item.subject}")
            lines += [f"  | {line}".rstrip() for line in item.body.splitlines()]
        if self.discard_reason:
            lines.append(f"  discarded: {self.discard_reason}")
        lines += [f"  why: {reason}" for reason in self.reasons]
        return "\n".join(lines)


_PLAIN = frozenset({str, bool, int, type(None)})
"""Types JSON takes as they are (exactly these: a str or int enum still becomes its value)."""


def _jsonable(value: object) -> object:
    if type(value) in _PLAIN:
        return value  # most conditions: no conversion
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, EntityRef):
        return {"kind": value.kind.value, "number": value.number}
    if isinstance(value, NewCall):
        return {"kind": value.kind.value, "number": None}
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_STORED_TEXT = frozenset({"description", "text"})
"""Action fields that carry the message's text into a record (call, history entry, note)."""


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""The attrs field names of each action class met so far, in order."""


def _field_names(kind: type) -> tuple[str, ...]:
    """The attrs field names of an action class, in order (looked up once per class)."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(field.name for field in attrs.fields(kind))
    return names


def _action_dict(action: Action, texts: bool = True) -> dict[str, object]:
    """An action as JSON: its kind and fields; without ``texts``, a stored text's length."""
    found: dict[str, object] = {"kind": action.kind}
    for name in _field_names(type(action)):
        value = getattr(action, name)
        if not texts and name in _STORED_TEXT and isinstance(value, str):
            found[name] = {"chars": len(value)}
        else:
            found[name] = _jsonable(value)
    return found


def _mail_dict(mail: Reply, texts: bool) -> dict[str, object]:
    """The reply or a notification as JSON; without ``texts``, the body's length."""
    body = mail.body
    return {
        "to": mail.to,
        "subject": mail.subject,
        "body": body if texts else {"chars": len(body)},
        "template": mail.template_id,
    }


def _describe(action: Action) -> str:
    fields = ", ".join(
        f"{name}={_jsonable(value)!r}"
        for name, value in attrs.asdict(action, recurse=False).items()
        if name not in _STORED_TEXT
    )
    return f"{action.kind}({fields})"
