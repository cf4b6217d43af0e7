"""Values that flow through the pipeline: the parsed message, people, and helpdesk records.

All are frozen, slotted ``attrs`` classes: safe to share, hash and compare in tests.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import ClassVar

import attrs

from asm_email_rules.intake_notes import IntakeNote


@attrs.frozen
class Attachment:
    """One attached file as received; ``data`` holds the decoded bytes."""

    filename: str
    content_type: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    inline: bool = False
    content_id: str | None = None

    @property
    def size(self) -> int:
        """Decoded size in bytes."""
        return len(self.data)


class LimitKind(enum.Enum):
    """Which intake limit a message went over."""

    TOTAL_SIZE = "total_size"
    HEADER_COUNT = "header_count"
    HEADER_BYTES = "header_bytes"
    SUBJECT_LENGTH = "subject_length"
    LINE_LENGTH = "line_length"
    MIME_DEPTH = "mime_depth"
    PART_COUNT = "part_count"
    ATTACHMENT_SIZE = "attachment_size"
    BODY_SIZE = "body_size"


@attrs.frozen
class NamedAddress:
    """One mailbox of an address field (RFC 5322 section 3.4): its addr-spec and display name.

    ``address`` is the addr-spec as written (compare with
    :func:`~asm_email_rules.addresses.normalise_address`); ``name`` is the decoded display name,
    ``""`` when there is none.
    """

    address: str
    name: str = ""


@attrs.frozen
class LimitViolation:
    """A limit that was exceeded, with what was done about it (``dropped`` / ``truncated``)."""

    kind: LimitKind
    limit: int
    actual: int
    detail: str = ""


@attrs.frozen
class InboundEmail:
    """A received message, decoded into the few things the rules look at.

    ``sender`` is the addr-spec of ``From`` (empty when there is none); ``return_path`` is
    ``None`` when the header is absent and ``""`` for the null path ``<>``.
    ``headers`` keeps every header as a decoded ``(name, value)`` pair in message order, for
    classification. ``from_mailboxes`` holds every mailbox of the (first) From field, so a From
    with several authors is still known (``sender`` stays ``""`` then); ``sender_mailbox`` is the
    Sender field's mailbox (RFC 5322 section 3.6.2: who sent a message several people wrote),
    ``None`` when absent or not one valid mailbox; ``reply_to_mailboxes`` are the Reply-To
    mailboxes with their names (``reply_to`` holds the same addr-specs). ``notes`` records
    anything intake had to repair (charset fallbacks, broken encoded-words), each a typed
    :class:`~asm_email_rules.intake_notes.IntakeNote`, so a decision can say so. Every text
    field is valid Unicode: it always encodes as UTF-8 (no lone surrogates).
    ``date`` is the Date field (the writer's clock, when the message was written);
    ``received_at`` the time stamp of the newest Received field (when it reached the last
    relay: our mail server, or the provider's), None without one.
    ``raw_sha256`` is the SHA-256 of the bytes as received; ``ledger_sha256`` that of the same
    bytes without the trace header fields relays add (:mod:`~asm_email_rules.ledger_key`): with
    the Message-ID, the ledger key (DESIGN 4, "Nothing is lost"). Empty when not computed.
    ``earlier_ledger_sha256s`` are the content hashes earlier versions keyed the same message
    by, where they differ (:func:`~asm_email_rules.ledger_key.earlier_ledger_sha256s`): the
    ledger is searched for them too, so mail recorded before an upgrade stays a duplicate.
    """

    sender: str
    subject: str = ""
    body: str = ""
    sender_name: str = ""
    message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    return_path: str | None = None
    reply_to: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    date: datetime | None = None
    received_at: datetime | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body_html: str | None = None
    body_source: str = "text/plain"
    attachments: tuple[Attachment, ...] = ()
    notes: tuple[IntakeNote, ...] = ()
    limit_violations: tuple[LimitViolation, ...] = ()
    raw_sha256: str = ""
    raw_size: int = 0
    ledger_sha256: str = ""
    earlier_ledger_sha256s: tuple[str, ...] = ()
    from_mailboxes: tuple[NamedAddress, ...] = ()
    sender_mailbox: NamedAddress | None = None
    reply_to_mailboxes: tuple[NamedAddress, ...] = ()

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_all(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name`` (case-insensitive), in message order."""
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key.lower() == wanted)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this mail replies to: In-Reply-To first, then References newest first."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)


class PersonCase(enum.Enum):
    """The spec's person cases for the sender's address (case 3 is the spec's missing one)."""

    UNKNOWN = "unknown"  # case 1
    ANALYST_ONLY = "analyst_only"  # case 2
    USER_ONLY = "user_only"  # case 3
    ANALYST_AND_USER = "analyst_and_user"  # case 4

    @property
    def is_analyst(self) -> bool:
        """True when the person holds the analyst flag."""
        return self in (PersonCase.ANALYST_ONLY, PersonCase.ANALYST_AND_USER)

    @property
    def is_user(self) -> bool:
        """True when the person holds the User flag."""
        return self in (PersonCase.USER_ONLY, PersonCase.ANALYST_AND_USER)

    @property
    def is_known(self) -> bool:
        """True when the address matched a person record."""
        return self is not PersonCase.UNKNOWN


class Right(enum.Enum):
    """A right a security role grants; the spec names these two.

    "You must also have reopen closed calls enabled on the Analysts security role and the User
    security role"; "... have Take Over rights as part of their IPK Management security role".
    """

    REOPEN_CLOSED_CALLS = "reopen_closed_calls"
    TAKE_OVER = "take_over"  # IPK Management: take over a call another analyst owns


class RoleKind(enum.Enum):
    """Which of a person's two roles applies: the one they hold as an analyst or as a User."""

    ANALYST = "analyst"
    USER = "user"


@attrs.frozen
class SecurityRole:
    """A security role: a named set of rights, shared by every person who holds it.

    A person refers to roles by name (:attr:`Person.analyst_role`, :attr:`Person.user_role`);
    the store keeps the roles, so changing a role's rights changes them for all its holders.
    """

    name: str
    rights: frozenset[Right] = frozenset()

    def grants(self, right: Right) -> bool:
        """True when this role has ``right``."""
        return right in self.rights


@attrs.frozen
class Person:
    """A person record: the analyst and User flags, and the security role of each.

    ``analyst_role`` and ``user_role`` name :class:`SecurityRole` records in the store (or
    ``None``): a person acting as an analyst has the rights of their analyst role, acting as a
    User those of their user role (DESIGN 4b). ``can_take_over``, ``analyst_can_reopen`` and
    ``user_can_reopen`` are the older per-person grants, still honoured for hosts that set
    them: each adds its right to the role the person acts in (see :meth:`rights`).
    """

    id: int
    email: str
    name: str = ""
    is_analyst: bool = False
    is_user: bool = False
    can_take_over: bool = False
    analyst_can_reopen: bool = False
    user_can_reopen: bool = False
    analyst_role: str | None = None
    user_role: str | None = None

    @property
    def case(self) -> PersonCase:
        """The person case this record puts its address in."""
        if self.is_analyst and self.is_user:
            return PersonCase.ANALYST_AND_USER
        if self.is_analyst:
            return PersonCase.ANALYST_ONLY
        if self.is_user:
            return PersonCase.USER_ONLY
        return PersonCase.UNKNOWN

    @property
    def is_contact(self) -> bool:
        """True for a record with neither the analyst nor the User flag (a contact)."""
        return not (self.is_analyst or self.is_user)

    def role_name(self, acting_as: RoleKind) -> str | None:
        """The name of the role this person holds as an analyst or as a User."""
        return self.analyst_role if acting_as is RoleKind.ANALYST else self.user_role

    def rights(self, acting_as: RoleKind, role: SecurityRole | None) -> frozenset[Right]:
        """The rights this person holds acting as an analyst or a User.

        ``role`` is the :class:`SecurityRole` their :meth:`role_name` names, as the store
        has it (``None`` when they hold none). No flag, no rights: a person not flagged as an
        analyst has no analyst rights, whatever role is named. The per-person grants add to
        the role's rights (``can_take_over`` and ``analyst_can_reopen`` as an analyst,
        ``user_can_reopen`` as a User).
        """
        flagged = self.is_analyst if acting_as is RoleKind.ANALYST else self.is_user
        if not flagged:
            return frozenset()
        granted = set(role.rights) if role is not None else set()
        if acting_as is RoleKind.ANALYST:
            if self.can_take_over:
                granted.add(Right.TAKE_OVER)
            if self.analyst_can_reopen:
                granted.add(Right.REOPEN_CLOSED_CALLS)
        elif self.user_can_reopen:
            granted.add(Right.REOPEN_CLOSED_CALLS)
        return frozenset(granted)


@attrs.frozen
class Group:
    """An assignment group and the address its email notifications go to ("" for none)."""

    name: str
    email: str = ""


class EntityKind(enum.Enum):
    """The three kinds of record an email can address."""

    CALL = "call"
    TASK = "task"
    REQUEST = "request"


@attrs.frozen
class EntityRef:
    """A reference to a call, task/approval or request by number."""

    kind: EntityKind
    number: int

    def __str__(self) -> str:
        return f"{self.kind.value} {self.number}"


@attrs.frozen
class NewCall:
    """Stands for the call a decision logs, whose number exists only once ``apply`` logs it.

    Actions that follow a ``LogCall`` name it as their record, and the acknowledgement carries
    it where the call number goes; ``apply`` fills in the number. Shown as "(new call)".
    """

    kind: ClassVar[EntityKind] = EntityKind.CALL

    def __str__(self) -> str:
        return "(new call)"


NEW_CALL = NewCall()
"""The one :class:`NewCall` placeholder."""


class CallStatus(enum.Enum):
    """Whether a call is open or closed."""

    OPEN = "open"
    CLOSED = "closed"


@attrs.frozen
class Call:
    """A call (ticket). ``owner_id`` is the assigned analyst; ``user_id`` the call's User.

    ``call_screen_set``, ``ipk_status`` and ``ipk_stream`` come from the mailbox's call
    template when a call is logged by email ("The call template will determine the call
    properties such as the partition, call screen set, IPK status and stream, assigned
    analyst and group"). ``subject`` is the call's short summary when the host keeps one;
    a call logged by email leaves it blank (the spec: "The other fields are left blank").
    """

    number: int
    status: CallStatus = CallStatus.OPEN
    user_id: int | None = None
    owner_id: int | None = None
    group: str = ""
    partition: str = ""
    description: str = ""
    logging_analyst_id: int | None = None
    updated: bool = False
    last_update: datetime | None = None
    call_screen_set: str = ""
    ipk_status: str = ""
    ipk_stream: str = ""
    subject: str = ""


class TaskKind(enum.Enum):
    """Plain tasks and the two approval kinds the spec names."""

    TASK = "task"
    APPROVAL = "approval"
    USER_APPROVAL = "user_approval"

    @property
    def is_approval(self) -> bool:
        """True for standard and User Approval Tasks."""
        return self is not TaskKind.TASK


class TaskStatus(enum.Enum):
    """Task life cycle; approvals move from PENDING to APPROVED or REJECTED."""

    OPEN = "open"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMPLETED = "completed"


DECIDED_TASK_STATUSES = frozenset({TaskStatus.APPROVED, TaskStatus.REJECTED})
"""The statuses that decide an approval: a store sets one only on a PENDING task (DESIGN 4b:
an approval no longer pending is not changed again)."""


@attrs.frozen
class Task:
    """A task or approval. ``approver_ids`` are those allowed to approve or reject it.

    ``forwarded_ids`` are the persons it was forwarded to, ``forwarded_by_ids`` those who
    forwarded it: both see it in their ``[MyTasks]`` summary ("they are working on, have
    forwarded, or have been forwarded").
    """

    number: int
    kind: TaskKind = TaskKind.TASK
    status: TaskStatus = TaskStatus.OPEN
    request_number: int | None = None
    owner_id: int | None = None
    approver_ids: tuple[int, ...] = ()
    forwarded_ids: tuple[int, ...] = ()
    group: str = ""
    partition: str = ""
    description: str = ""
    updated: bool = False
    last_update: datetime | None = None
    forwarded_by_ids: tuple[int, ...] = ()


class RequestStatus(enum.Enum):
    """Whether a request is open or closed."""

    OPEN = "open"
    CLOSED = "closed"


@attrs.frozen
class Request:
    """A request (a workflow made of tasks).

    ``forwarded_ids`` are the persons it was forwarded to, ``forwarded_by_ids`` those who
    forwarded it; both see it in their ``[MyRequests]`` summary.
    """

    number: int
    status: RequestStatus = RequestStatus.OPEN
    owner_id: int | None = None
    forwarded_ids: tuple[int, ...] = ()
    group: str = ""
    partition: str = ""
    description: str = ""
    updated: bool = False
    last_update: datetime | None = None
    forwarded_by_ids: tuple[int, ...] = ()


class SummaryKind(enum.StrEnum):
    """The three summaries a repository lists (``[MyTasks]`` and ``[MyApprovals]`` share one).

    A ``str`` enum, so a repository written against the plain strings ``"calls"``,
    ``"requests"`` and ``"tasks"`` keeps working.
    """

    CALLS = "calls"  # open calls the person owns
    REQUESTS = "requests"  # requests the person owns, forwarded or was forwarded
    TASKS = "tasks"  # tasks and approvals the person owns, may approve, forwarded or was forwarded

    @property
    def label(self) -> str:
        """How a reply names this summary ("Summary of your tasks and approvals")."""
        return "tasks and approvals" if self is SummaryKind.TASKS else self.value


@attrs.frozen
class SummaryItem:
    """One line of a [My...] summary."""

    ref: EntityRef
    state: str
    description: str
    last_update: datetime | None
    assignee: str


@attrs.frozen
class OutgoingEmail:
    """A reply ready to send. Header values here never contain CR or LF."""

    to: str
    subject: str
    body: str
    sender: str = ""
    message_id: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()


class EntryKind(enum.Enum):
    """What a line in a record's log is."""

    HISTORY = "history"
    NOTE = "note"
    ATTACHMENT = "attachment"
    NOTIFICATION = "notification"
    STATUS = "status"


@attrs.frozen
class LogEntry:
    """One line in a record's log: history, note, attached object, notification or status."""

    ref: EntityRef
    kind: EntryKind
    text: str
    author: str = ""
    security_profile: str | None = None
    at: datetime | None = None


class ReplyStatus(enum.Enum):
    """Where the reply of a processed message stands."""

    NONE = "none"  # the decision had no reply
    PENDING = "pending"  # recorded, not yet accepted by the SMTP server
    SENT = "sent"
    FAILED = "failed"  # refused for good (permanent code) or out of attempts
    SUPPRESSED = "suppressed"  # reply budget, loop guard or age limit held it back


@attrs.frozen
class LedgerEntry:
    """The record that a message was acted on, with its reply's delivery state.

    ``seen_at`` is when the message was last seen in a mailbox (``processed_at`` at first):
    ledger retention counts from it, so an entry whose message is still in a mailbox is never
    pruned (:class:`~asm_email_rules.protocols.LedgerRetention`). None when the store does not
    keep it.
    """

    mailbox: str
    message_id: str
    sha256: str
    decision_json: str
    reply: OutgoingEmail | None
    reply_status: ReplyStatus
    attempts: int = 0
    last_error: str = ""
    processed_at: datetime | None = None
    seen_at: datetime | None = None


@attrs.frozen
class OutboxEntry:
    """A reply in the store's outbox: the reply a ledger entry recorded, and its delivery state.

    DESIGN 4, "Replies are an outbox": the reply is stored with the decision in one
    transaction and sent afterwards by whoever holds its *claim* (``claimed_by`` until
    ``claimed_until``), so two pollers never send it twice. ``reply.message_id`` (our own
    Message-ID, kept across every attempt and resend) names the entry.

    ``mailbox``, ``message_id`` and ``sha256`` are the key of the ledger entry the reply
    belongs to (``message_id`` is the *incoming* message's). ``queued_at`` is when the reply
    was recorded or last requeued by an operator: the retry window (``reply_retry_hours``)
    counts from it. ``next_attempt_at`` is the earliest time a sender may try it again;
    ``attempts`` counts the send attempts finished so far; ``last_error`` is the last failure
    ("" when none); ``sent_at`` is when the SMTP server accepted it. Times are aware UTC.
    """

    reply: OutgoingEmail
    mailbox: str
    message_id: str
    sha256: str
    status: ReplyStatus
    queued_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    last_error: str = ""
    claimed_by: str = ""
    claimed_until: datetime | None = None
    sent_at: datetime | None = None

    @property
    def reply_message_id(self) -> str:
        """Our reply's Message-ID, the name of this outbox entry."""
        return self.reply.message_id


@attrs.frozen
class SentEntry:
    """One reply the SMTP server accepted, as the sent journal keeps it until the store has
    recorded it SENT (:mod:`asm_email_rules.sent_journal`).

    ``reply_message_id`` names the outbox entry; ``owner`` is the sender that held its claim
    (``host:pid:random``, :func:`~asm_email_rules.send.default_owner`); ``sent_at`` is when
    the server's 250 arrived (aware UTC).
    """

    reply_message_id: str
    owner: str
    sent_at: datetime


@attrs.frozen
class Lease:
    """Who holds a named lease (an account, DESIGN 4 "One poller per account") and until when.

    A lease whose ``expires`` is at or before the current time is free for anyone to take.
    """

    name: str
    owner: str
    expires: datetime
