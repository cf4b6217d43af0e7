"""The decision tables and ``decide``: facts x settings -> Decision. Pure: no I/O, no clock.

Every rule of the spec is a row: named conditions -> an outcome, with the sentence it
implements. Each condition is one :class:`Condition` record (name, meaning, how it is
computed, the values it takes); rows are checked against them when this module is imported.
``decide`` evaluates the conditions once, finds the first matching row of the table for the
command, and builds the actions and the complete reply that outcome stands for.
``docs/decision-tables.md`` is rendered from these rows (``render_tables_markdown``).

This module is one machine (tables, conditions, builders, decide), kept whole on purpose, as
h11 keeps its rules in ``_state.py``; the values it produces live in ``actions.py`` and
``decision.py``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import attrs

from asm_email_rules.actions import (
    NEW_CALL,
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
from asm_email_rules.addresses import normalise_address
from asm_email_rules.classify import MailKind
from asm_email_rules.decision import Decision, Facts, Outcome, Reply, for_operators
from asm_email_rules.errors import require_type
from asm_email_rules.intake_notes import IntakeNoteKind
from asm_email_rules.model import (
    CallStatus,
    EntityKind,
    EntityRef,
    InboundEmail,
    NewCall,
    Person,
    PersonCase,
    Right,
    RoleKind,
    SummaryItem,
    SummaryKind,
    TaskStatus,
)
from asm_email_rules.outgoing import OutgoingMessageError, check_address
from asm_email_rules.replies import CATALOGUE, Text, merge_text, place_token, render
from asm_email_rules.sender import caller_name, contact_address, has_two_from_headers
from asm_email_rules.settings import MailboxSettings, ReopenAssignment, SystemSettings
from asm_email_rules.subject import CommandKind, MatchSource, bracket_token, bracket_token_parts
from asm_email_rules.summary_text import SUMMARY_DESCRIPTION_LENGTH

__all__ = [  # Action, Decision, Facts, Outcome, Reply...: re-exported from actions.py, decision.py
    "CONDITIONS",
    "NEW_CALL",
    "PRIVILEGED_COMMANDS",
    "TABLES",
    "TWO_FROM_HEADERS",
    "Action",
    "AddAutomaticEntry",
    "AddHistory",
    "AddNote",
    "ApproveTask",
    "AttachObjects",
    "CloseCall",
    "CreateUser",
    "Decision",
    "Discard",
    "Facts",
    "LogCall",
    "MarkUpdated",
    "NotifyAssignee",
    "Outcome",
    "RejectTask",
    "ReopenCall",
    "Reply",
    "Row",
    "SendSummary",
    "SetUserFlag",
    "SpendToken",
    "compose_reply",
    "contact_address",
    "decide",
    "evaluate_conditions",
    "first_match",
    "format_summary",
    "render_tables_markdown",
    "reply_address",
    "sender_authenticated",
]


@attrs.frozen
class Row:
    """One rule: when every named condition has the given value, ``outcome`` follows.

    ``why`` is required on a discarding row: the few words the ledger, the log and the pass
    summary give for a message that is neither acted on nor answered (issue 9: nothing is
    dropped in silence).
    """

    id: str
    when: Mapping[str, object]
    outcome: Outcome
    spec: str
    why: str = ""

    def matches(self, conditions: Mapping[str, object]) -> bool:
        """True when every condition of this row holds in ``conditions``."""
        return all(conditions.get(name) == value for name, value in self.when.items())


# --------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------

_O = Outcome

GATE: tuple[Row, ...] = (
    Row(
        "GATE-1",
        {"kind": MailKind.BOUNCE, "bounce_permanent": True},
        _O.DISCARD,
        "ASM Core considers SMTP error numbers 501, 503, 550 and 553 to be permanent and fatal "
        "errors. ... it will immediately delete this message (DESIGN 4: and any 5.x.x)",
        why="bounce: permanent delivery failure",
    ),
    Row(
        "GATE-2",
        {"kind": MailKind.BOUNCE},
        _O.DISCARD,
        "DESIGN 4: a delivery report never logs a call; a delay notice is recorded and deleted",
        why="bounce: delivery delayed",
    ),
    Row(
        "GATE-3",
        {"kind": MailKind.OWN_MAIL},
        _O.DISCARD,
        "DESIGN 4: mail from our own addresses or carrying our loop header is a loop",
        why="our own mail (loop)",
    ),
    Row("GATE-4", {}, _O.CONTINUE, "Every other message goes on to its command's table"),
)

LOG_CALL: tuple[Row, ...] = (
    Row(
        "LOG-1",
        {"calls_allowed": False},
        _O.DISCARD,
        "DESIGN 4: auto-replies never log a call (nor machine-generated mail, when the mailbox "
        "turns calls from it off)",
        why="{kind}",
    ),
    Row(
        "LOG-2",
        {"case": PersonCase.UNKNOWN, "contact": False, "create_anon": True, "has_address": True},
        _O.LOG_NEW_USER,
        "Case 1: ... and Create New Calls Anonymously is selected for the incoming email "
        "account, a new User record is created ... The logging analyst is set to the analyst "
        "specified in the Default Logging Analyst field",
    ),
    Row(
        "LOG-2a",
        {"case": PersonCase.UNKNOWN, "contact": True, "create_anon": True},
        _O.LOG_CONTACT_AS_USER,
        "Case 1 (DESIGN 4b): a person record with neither flag (a contact) is not a User or "
        "analyst, so Create New Calls Anonymously applies; the existing record gets the User "
        "flag and is the call's User: no second person with the same address is created",
    ),
    Row(
        "LOG-3",
        {"case": PersonCase.UNKNOWN},
        _O.DISCARD,
        "If the Create New Calls Anonymously option is not selected for the incoming email "
        "account, a call is not created. (DESIGN 4: nor when From holds no usable address)",
        why="unknown sender without Create New Calls Anonymously",
    ),
    Row(
        "LOG-4",
        {"case": PersonCase.ANALYST_ONLY, "use_linked": True},
        _O.LOG_LINKED_ANALYST,
        "Case 2: If the Use Linked Analyst option is selected for the incoming email account, "
        "the logging analyst is set to the person who sent the email. (and: the User flag will "
        "be selected on the analyst's person record)",
    ),
    Row(
        "LOG-5",
        {"case": PersonCase.ANALYST_ONLY},
        _O.LOG_DEFAULT_ANALYST,
        "Case 2: If the Use Linked Analyst option is not selected ..., the logging analyst is "
        "set to the analyst specified in the Default Logging Analyst field (and: the User flag "
        "will be selected on the analyst's person record)",
    ),
    Row(
        "LOG-6",
        {"case": PersonCase.USER_ONLY},
        _O.LOG_DEFAULT_ANALYST,
        "Case 3 (DESIGN 4): logged with the person as User; the logging analyst is always the "
        "Default Logging Analyst",
    ),
    Row(
        "LOG-7",
        {"case": PersonCase.ANALYST_AND_USER, "use_linked": True},
        _O.LOG_LINKED_ANALYST,
        "Case 4: If the Use Linked Analyst option is selected for the incoming email account, "
        "the logging analyst is set to the person who sent the email.",
    ),
    Row(
        "LOG-8",
        {},
        _O.LOG_DEFAULT_ANALYST,
        "Case 4: If the Use Linked Analyst option is not selected ..., the logging analyst is "
        "set to the analyst specified in the Default Logging Analyst field",
    ),
)

UPDATE_CALL: tuple[Row, ...] = (
    Row(
        "UC-1",
        {"found": False, "log_on_invalid": True},
        _O.LOG_CALL,
        "... but it does not recognize the call number specified in the subject line, it logs "
        "a new call if the incoming email account has the Log New Call on Invalid Number option",
    ),
    Row(
        "UC-2",
        {"found": False},
        _O.DISCARD,
        "However, if Log New Call on Invalid Number is not selected, ASM Core ignores the email "
        "and the person who sent the incoming email is not notified.",
        why="invalid call number without Log New Call on Invalid Number",
    ),
    Row(
        "UC-3",
        {"known": False, "update_anon": False},
        _O.DISCARD,
        "... but it does not recognize the sender's email address, it ignores the email.",
        why="unknown sender without Update Calls Anonymously",
    ),
    Row(
        "UC-3a",
        {"auto_reply": True, "answers_us": True, "closed": False},
        _O.AUTOMATIC_ENTRY,
        "DESIGN 4: an auto-reply that answers a message of ours is added to that record's "
        "history as an automatic entry (no note icon, no notification, no reply)",
    ),
    Row(
        "UC-3c",
        {"auto_reply": True, "answers_us": True, "update_closed": True},
        _O.AUTOMATIC_ENTRY,
        "DESIGN 4: on a closed call, with Update Closed Calls, the call remains closed and the "
        "auto-reply is kept as an automatic entry (no note icon, no notification, no reply)",
    ),
    Row(
        "UC-3d",
        {"auto_reply": True, "answers_us": True},
        _O.DISCARD,
        "Update Closed Calls via email must be enabled in the Incoming email server settings "
        "or closed calls will not be updated. (DESIGN 4: an auto-reply gets no reply)",
        why="auto-reply on a closed call without Update Closed Calls",
    ),
    Row(
        "UC-3b",
        {"calls_allowed": False},
        _O.DISCARD,
        "DESIGN 4: any other auto-reply is discarded with its reason (so is machine-generated "
        "mail when the mailbox turns calls from it off)",
        why="{kind}",
    ),
    Row(
        "UC-4",
        {"closed": False},
        _O.UPDATE_CALL,
        "The body of the incoming email is added to the history of the specified call. (and: "
        "However, if the Update Calls Anonymously option is selected ..., the call is updated.)",
    ),
    Row(
        "UC-4a",
        {"automatic": True, "update_closed": True},
        _O.NOTE_CLOSED_CALL,
        "DESIGN 4: machine-generated mail updates calls like any mail but never reopens: with "
        "Update Closed Calls the call remains closed but a note is added (no reply)",
    ),
    Row(
        "UC-5",
        {"automatic": True},
        _O.DISCARD,
        "DESIGN 4: machine-generated mail never reopens a call (and without Update Closed Calls "
        "it gets no reply)",
        why="machine-generated mail on a closed call",
    ),
    Row(
        "UC-6",
        {"bulk": True, "update_closed": True},
        _O.NOTE_CLOSED_CALL,
        "DESIGN 4b: list and bulk mail may update but never reopen",
    ),
    Row(
        "UC-7",
        {"bulk": True},
        _O.DISCARD,
        "DESIGN 4b: list and bulk mail never reopen a call",
        why="list mail on a closed call",
    ),
    Row(
        "UC-8a",
        {
            "reopen_option": True,
            "self_service_reopen": True,
            "role_reopen": True,
            "authenticated": False,
            "update_closed": True,
        },
        _O.NOTE_CLOSED_CALL,
        "DESIGN 4: with both options on, reopen wins when all its conditions hold, else "
        "update-closed: reopening needs authentication (Issue 5), a note does not, so an "
        "unauthenticated mail leaves the call closed with a note",
    ),
    Row(
        "UC-8",
        {
            "reopen_option": True,
            "self_service_reopen": True,
            "role_reopen": True,
            "authenticated": False,
        },
        _O.REFUSE_UNAUTHENTICATED,
        "Issue 5: with a trusted authserv-id set, reopening requires dmarc=pass or aligned dkim; "
        "nothing changes and the reply says why",
    ),
    Row(
        "UC-9",
        {"reopen_option": True, "self_service_reopen": True, "role_reopen": True},
        _O.REOPEN_CALL,
        "... the specified call is closed, and the Reopen Closed Calls option is selected on "
        "the incoming email server, this will reopen the call in ASM Core and add the details "
        "of the email as a note to the call. (DESIGN 4: reopen wins when all its conditions hold)",
    ),
    Row(
        "UC-10",
        {"update_closed": True},
        _O.NOTE_CLOSED_CALL,
        "If Update Closed Calls is selected on the incoming email server, the call remains "
        "closed but a note is added to the call with the details of the email.",
    ),
    Row(
        "UC-11",
        {},
        _O.REPLY_CLOSED_NOT_UPDATED,
        "If Update Closed Calls is not selected, the call remains closed and the following "
        "message is sent back to the sender of the email: \u201cCall No xyz is already closed "
        "and has not been updated.\u201d",
    ),
)

CLOSE: tuple[Row, ...] = (
    Row(
        "CL-1",
        {"found": False, "log_on_invalid": True},
        _O.LOG_CALL,
        "A call will also be logged if the email matches a recognized subject line but has an "
        "invalid call number and the Log New Call on Invalid Number option is selected",
    ),
    Row(
        "CL-2",
        {"found": False},
        _O.DISCARD,
        "If Log New Call on Invalid Number is not selected, the email will be discarded and "
        "the person who sent the email will not be notified.",
        why="invalid call number without Log New Call on Invalid Number",
    ),
    Row(
        "CL-3",
        {"automatic": True},
        _O.DISCARD,
        "DESIGN 4: automatic mail never closes a call",
        why="automatic mail cannot close a call",
    ),
    Row(
        "CL-4",
        {"bulk": True},
        _O.DISCARD,
        "DESIGN 4b: list and bulk mail never close a call",
        why="list mail cannot close a call",
    ),
    Row(
        "CL-5",
        {"known": False, "close_anon": False},
        _O.DISCARD,
        "If the Close Calls Anonymously option is not selected in the incoming email account, "
        "a call cannot be closed by an email sent from an unrecognized address (DESIGN 4b: no "
        "reply to unknown senders)",
        why="unknown sender without Close Calls Anonymously",
    ),
    Row(
        "CL-6",
        {"authenticated": False},
        _O.REFUSE_UNAUTHENTICATED,
        "Issue 5: with a trusted authserv-id set, closing requires dmarc=pass or aligned dkim",
    ),
    Row(
        "CL-7",
        {"closed": True},
        _O.REPLY_ALREADY_CLOSED,
        "The square brackets are required and It must be a valid open call number. (DESIGN 4: "
        "a closed call gets a reply, no new call)",
    ),
    Row(
        "CL-8",
        {"known": False},
        _O.CLOSE_CALL,
        "(Close Calls Anonymously selected) The call you specified will be closed and a return "
        "email will be sent to you to confirm the closure.",
    ),
    Row(
        "CL-9",
        {"call_user": True},
        _O.CLOSE_CALL,
        "If the sender is flagged as a User only, the call will only be closed if the same "
        "User is specified in the User field of the call. (DESIGN 4b: so may a person with both "
        "flags)",
    ),
    Row(
        "CL-10",
        {"owner": True},
        _O.CLOSE_CALL,
        "If the sender is a ASM Core analyst, the call will be closed if they own the call",
    ),
    Row(
        "CL-11",
        {"take_over": True},
        _O.CLOSE_CALL,
        "... or have Take Over rights as part of their IPK Management security role.",
    ),
    Row(
        "CL-12",
        {},
        _O.REFUSE_PERMISSION,
        "Otherwise, a return email with the following message will be sent: \u201cReason: "
        "Insufficient Permission\u201d.",
    ),
)

APPROVAL: tuple[Row, ...] = (
    Row(
        "AP-1",
        {"found": False},
        _O.LOG_CALL,
        "If the email matches a recognized subject line but has an invalid request or task "
        "number, a call is always logged (DESIGN 4b: whoever sent it, as for [TASK#n]; there "
        "is no Approval Task to refuse)",
    ),
    Row(
        "AP-2",
        {"automatic": True},
        _O.DISCARD,
        "DESIGN 4: automatic mail never approves or rejects",
        why="automatic mail cannot approve or reject",
    ),
    Row(
        "AP-3",
        {"bulk": True},
        _O.DISCARD,
        "DESIGN 4b: list and bulk mail never approve or reject",
        why="list mail cannot approve or reject",
    ),
    Row(
        "AP-4",
        {"known": False},
        _O.REPLY_NOT_IDENTIFIED,
        "If the email address is not recognized, the Approval Task is not approved and a return "
        "email is sent, stating that the sender has not been identified. (DESIGN 4b: likewise "
        "for reject)",
    ),
    Row(
        "AP-5",
        {"conflict": True},
        _O.REPLY_CONFLICT,
        "DESIGN 4: conflicting commands on one number ([APPROVE#1] [REJECT#1]) do nothing and "
        "say why",
    ),
    Row(
        "AP-6",
        {"approval": False},
        _O.REPLY_NOT_APPROVAL,
        "This includes standard Approval Tasks as well as User Approval Tasks. (DESIGN 4b: a "
        "task that is not an approval gets a reply and nothing changes)",
    ),
    Row(
        "AP-7",
        {"approver": False},
        _O.REFUSE_PERMISSION,
        "DESIGN 4b: only an approver of that task may act; anyone else recognised gets "
        "\u201cReason: Insufficient Permission\u201d",
    ),
    Row(
        "AP-8",
        {"pending": False},
        _O.REPLY_NOT_PENDING,
        "DESIGN 4b / issue 5: an approval no longer pending is not changed again; the reply "
        "says its state",
    ),
    Row(
        "AP-9",
        {"authenticated": False},
        _O.REFUSE_UNAUTHENTICATED,
        "Issue 5: with a trusted authserv-id set, approving and rejecting require dmarc=pass",
    ),
    Row(
        "AP-10",
        {"token_ok": False},
        _O.REFUSE_TOKEN,
        "Issue 5: with approval tokens required, a missing, foreign, expired or replayed token "
        "does nothing",
    ),
    Row(
        "AP-11",
        {},
        _O.APPROVE_OR_REJECT,
        "If a task has been successfully approved through incoming email, a return email with "
        "the subject \u201cTask <Task Number> has been successfully approved\u201d is sent "
        "(rejected: \u201cTask <Approval Task Number> has been successfully rejected\u201d)",
    ),
)

UPDATE_TASK: tuple[Row, ...] = (
    Row(
        "UT-1",
        {"found": False},
        _O.LOG_CALL,
        "If the email matches a recognized subject line but has an invalid request or task "
        "number, a call is always logged",
    ),
    Row(
        "UT-2",
        {"known": False},
        _O.DISCARD,
        "DESIGN 4b: no anonymous option exists for tasks, so unknown senders are ignored",
        why="unknown sender on a task",
    ),
    Row(
        "UT-2a",
        {"auto_reply": True, "answers_us": True},
        _O.AUTOMATIC_ENTRY,
        "DESIGN 4: an auto-reply that answers a message of ours is added to that record's "
        "history as an automatic entry",
    ),
    Row(
        "UT-2b",
        {"calls_allowed": False},
        _O.DISCARD,
        "DESIGN 4: any other auto-reply is discarded with its reason",
        why="{kind}",
    ),
    Row(
        "UT-3",
        {},
        _O.UPDATE_TASK,
        "The body of the incoming email is added to the history of the specified task or "
        "approval. ... a return email message is sent with the subject \u201cTask/Approval "
        "<Task/Approval Number> has been updated\u201d",
    ),
)

UPDATE_REQUEST: tuple[Row, ...] = (
    Row(
        "UR-1",
        {"found": False},
        _O.LOG_CALL,
        "If receives an incoming email with a subject heading used to update a request, but it "
        "does not recognize the request number specified in the subject line, it will log a "
        "new call",
    ),
    Row(
        "UR-2",
        {"known": False},
        _O.DISCARD,
        "DESIGN 4b: no anonymous option exists for requests, so unknown senders are ignored",
        why="unknown sender on a request",
    ),
    Row(
        "UR-2a",
        {"auto_reply": True, "answers_us": True},
        _O.AUTOMATIC_ENTRY,
        "DESIGN 4: an auto-reply that answers a message of ours is added to that record's "
        "history as an automatic entry",
    ),
    Row(
        "UR-2b",
        {"calls_allowed": False},
        _O.DISCARD,
        "DESIGN 4: any other auto-reply is discarded with its reason",
        why="{kind}",
    ),
    Row(
        "UR-3",
        {},
        _O.UPDATE_REQUEST,
        "The body of the incoming email is added to the history of the specified request. ... "
        "a return email message is sent with the subject \u201cRequest <Request Number> has "
        "been updated\u201d",
    ),
)

SUMMARY: tuple[Row, ...] = (
    Row(
        "SU-1",
        {"automatic": True},
        _O.DISCARD,
        "DESIGN 4: automatic mail gets no summary",
        why="automatic mail gets no summary",
    ),
    Row(
        "SU-2",
        {"bulk": True},
        _O.DISCARD,
        "DESIGN 4b: list and bulk mail get no summary",
        why="list mail gets no summary",
    ),
    Row(
        "SU-3",
        {"known": False},
        _O.DISCARD,
        "DESIGN 4b: an unknown sender asking for a summary gets nothing",
        why="unknown sender asking for a summary",
    ),
    Row(
        "SU-4",
        {"analyst": False},
        _O.REPLY_ANALYSTS_ONLY,
        "A support analyst can check a summary ... (DESIGN 4b: a recognised non-analyst gets "
        "one line saying summaries are for analysts)",
    ),
    Row(
        "SU-5",
        {},
        _O.SEND_SUMMARY,
        "A return email is sent to that support analyst with a summary of all the requests "
        "(tasks and approvals; calls) they are working on, have forwarded, or have been "
        "forwarded.",
    ),
)

TABLES: Mapping[str, tuple[Row, ...]] = {
    "gate": GATE,
    "log_call": LOG_CALL,
    "update_call": UPDATE_CALL,
    "close": CLOSE,
    "approval": APPROVAL,
    "update_task": UPDATE_TASK,
    "update_request": UPDATE_REQUEST,
    "summary": SUMMARY,
}
"""Every table, by name, in the order the docs list them."""

_TABLE_FOR: Mapping[CommandKind, str] = {
    CommandKind.NONE: "log_call",
    CommandKind.UPDATE_CALL: "update_call",
    CommandKind.CLOSE: "close",
    CommandKind.APPROVE: "approval",
    CommandKind.REJECT: "approval",
    CommandKind.CONFLICT: "approval",
    CommandKind.UPDATE_TASK: "update_task",
    CommandKind.UPDATE_REQUEST: "update_request",
    CommandKind.MY_CALLS: "summary",
    CommandKind.MY_REQUESTS: "summary",
    CommandKind.MY_TASKS: "summary",
    CommandKind.MY_APPROVALS: "summary",
}


def first_match(table: tuple[Row, ...], conditions: Mapping[str, object]) -> Row:
    """The first row of ``table`` whose conditions hold (every table ends in a catch-all)."""
    for row in table:
        if row.matches(conditions):
            return row
    raise AssertionError("decision table without a catch-all row")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# The conditions: each named once, with its meaning and how it is computed
# --------------------------------------------------------------------------------------------

Compute = Callable[[Facts, MailboxSettings, SystemSettings], object]
"""How a condition is computed: facts x mailbox settings x system settings -> its value."""

_YES_NO: tuple[object, ...] = (True, False)


@attrs.frozen
class Condition:
    """One named condition of the tables.

    ``meaning`` is the sentence the docs print; ``compute`` reads it off the facts and settings;
    ``values`` are the values it takes, the only ones a table row may ask for (rows are checked
    against them when this module is imported).
    """

    name: str
    meaning: str
    compute: Compute = attrs.field(eq=False, repr=False)
    values: tuple[object, ...] = _YES_NO


PRIVILEGED_COMMANDS = frozenset(
    {CommandKind.CLOSE, CommandKind.APPROVE, CommandKind.REJECT, CommandKind.UPDATE_CALL}
)
"""Commands that need an authenticated sender: close, approve, reject, and an update that may
reopen a closed call (DESIGN 4, "Sender identity")."""

TWO_FROM_HEADERS = "two From headers: nobody is authenticated"
"""The reason a message with two From headers runs no privileged command (DESIGN 4)."""


def sender_authenticated(facts: Facts) -> tuple[bool | None, str]:
    """``(facts.authenticated, facts.auth_reason)``, except that a message with two From
    headers is unauthenticated for a :data:`PRIVILEGED_COMMANDS` command whatever ``Facts``
    says when it says nothing (``authenticated`` None): DESIGN 4, "Two From headers: nobody is
    authenticated and no privileged command (close, reopen, approve, reject) runs". ``Facts``
    a host builds by hand leave ``authenticated`` None; the rule holds for them too."""
    if (
        facts.authenticated is None
        and facts.command.kind in PRIVILEGED_COMMANDS
        and has_two_from_headers(facts.email)
    ):
        return False, TWO_FROM_HEADERS
    return facts.authenticated, facts.auth_reason


def _found(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> bool:
    ref = facts.command.ref
    if ref is None or not facts.in_partition:
        return False
    records = {
        EntityKind.CALL: facts.call,
        EntityKind.TASK: facts.task,
        EntityKind.REQUEST: facts.request,
    }
    record: object = records[ref.kind]
    return record is not None


def _rights(facts: Facts, acting_as: RoleKind) -> frozenset[Right]:
    """The sender's rights acting as an analyst or a User (their role's, plus old grants)."""
    person = facts.sender.person
    if person is None:
        return frozenset()
    role = facts.analyst_role if acting_as is RoleKind.ANALYST else facts.user_role
    return person.rights(acting_as, role)


def _role_reopen(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> bool:
    """DESIGN 4b: "reopen closed calls" in the role the sender acts in (either, with both)."""
    reopen = Right.REOPEN_CLOSED_CALLS
    return reopen in _rights(facts, RoleKind.ANALYST) or reopen in _rights(facts, RoleKind.USER)


def _call_user(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> bool:
    person, call = facts.sender.person, facts.call
    return (
        person is not None
        and facts.sender.case.is_user
        and call is not None
        and call.user_id == person.id
    )


def _owner(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> bool:
    person, call = facts.sender.person, facts.call
    return (
        person is not None
        and facts.sender.case.is_analyst
        and call is not None
        and call.owner_id == person.id
    )


def _take_over(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> bool:
    return Right.TAKE_OVER in _rights(facts, RoleKind.ANALYST)


def _approver(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> bool:
    person, task = facts.sender.person, facts.task
    return person is not None and task is not None and person.id in task.approver_ids


_AUTOMATIC = frozenset({MailKind.AUTO_REPLY, MailKind.AUTO_GENERATED})


def _calls_allowed(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> bool:
    if facts.mail_kind is MailKind.AUTO_REPLY or facts.receipt:
        return False
    return facts.mail_kind is not MailKind.AUTO_GENERATED or mailbox.calls_from_machine_mail


CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "kind",
        "the mail kind from classification (normal, auto_reply, bounce, list, own_mail...)",
        lambda facts, mailbox, system: facts.mail_kind,
        tuple(MailKind),
    ),
    Condition(
        "bounce_permanent",
        "the bounce reports a permanent failure (5.x.x or 501/503/550/553)",
        lambda facts, mailbox, system: facts.bounce_permanent,
    ),
    Condition(
        "automatic",
        "auto-reply or machine-generated mail",
        lambda facts, mailbox, system: facts.mail_kind in _AUTOMATIC,
    ),
    Condition(
        "auto_reply",
        "an out-of-office reply, autoresponder or challenge-response, or a read or delivery "
        "receipt (it answers a message and asks for nothing)",
        lambda facts, mailbox, system: facts.mail_kind is MailKind.AUTO_REPLY or facts.receipt,
    ),
    Condition(
        "calls_allowed",
        "the mail may log and update records: not an auto-reply or a receipt, and not "
        "machine-generated mail when the mailbox turns calls from it off "
        "(calls_from_machine_mail)",
        _calls_allowed,
    ),
    Condition(
        "answers_us",
        "the mail answers one of our messages (our Message-ID in In-Reply-To/References, our "
        "marker line, a reply to our subject, or our bracket token)",
        lambda facts, mailbox, system: (
            facts.replies_to_us or facts.command.source is MatchSource.BRACKET
        ),
    ),
    Condition(
        "bulk",
        "mailing-list or bulk mail",
        lambda facts, mailbox, system: facts.mail_kind is MailKind.LIST,
    ),
    Condition(
        "case",
        "the sender's person case (unknown, analyst_only, user_only, analyst_and_user)",
        lambda facts, mailbox, system: facts.sender.case,
        tuple(PersonCase),
    ),
    Condition(
        "known",
        "the sender's address belongs to an analyst or User",
        lambda facts, mailbox, system: facts.sender.case.is_known,
    ),
    Condition(
        "contact",
        "the address belongs only to a person record with neither flag (a contact)",
        lambda facts, mailbox, system: facts.sender.contact is not None,
    ),
    Condition(
        "has_address",
        "the sender has one usable address (a new User record needs one)",
        lambda facts, mailbox, system: bool(facts.sender.address.strip()),
    ),
    Condition(
        "analyst",
        "the sender holds the analyst flag",
        lambda facts, mailbox, system: facts.sender.case.is_analyst,
    ),
    Condition(
        "found",
        "the referenced call/task/request exists (in the mailbox's partition)",
        _found,
    ),
    Condition(
        "closed",
        "the referenced call is closed",
        lambda facts, mailbox, system: (
            facts.call is not None and facts.call.status is CallStatus.CLOSED
        ),
    ),
    Condition(
        "create_anon",
        "mailbox: Create New Calls Anonymously",
        lambda facts, mailbox, system: mailbox.create_calls_anonymously,
    ),
    Condition(
        "update_anon",
        "mailbox: Update Calls Anonymously",
        lambda facts, mailbox, system: mailbox.update_calls_anonymously,
    ),
    Condition(
        "close_anon",
        "mailbox: Close Calls Anonymously",
        lambda facts, mailbox, system: mailbox.close_calls_anonymously,
    ),
    Condition(
        "log_on_invalid",
        "mailbox: Log New Call on Invalid Number",
        lambda facts, mailbox, system: mailbox.log_new_call_on_invalid_number,
    ),
    Condition(
        "update_closed",
        "mailbox: Update Closed Calls",
        lambda facts, mailbox, system: mailbox.update_closed_calls,
    ),
    Condition(
        "reopen_option",
        "mailbox: Reopen Closed Calls",
        lambda facts, mailbox, system: mailbox.reopen_closed_calls,
    ),
    Condition(
        "use_linked",
        "mailbox: Use Linked Analyst",
        lambda facts, mailbox, system: mailbox.use_linked_analyst,
    ),
    Condition(
        "self_service_reopen",
        "system: Self Service Portal has Reopen Closed Calls enabled",
        lambda facts, mailbox, system: system.self_service_reopen_closed_calls,
    ),
    Condition(
        "role_reopen",
        "the security role the sender acts in (analyst role or user role) has the right to "
        "reopen closed calls",
        _role_reopen,
    ),
    Condition(
        "call_user",
        "the sender is flagged as a User and is the call's User",
        _call_user,
    ),
    Condition(
        "owner",
        "the sender is an analyst who owns (is assigned) the call",
        _owner,
    ),
    Condition(
        "take_over",
        "the sender is an analyst whose analyst role has the Take Over right (IPK Management)",
        _take_over,
    ),
    Condition(
        "authenticated",
        "sender authentication passed, or is not required by the mailbox",
        lambda facts, mailbox, system: sender_authenticated(facts)[0] is not False,
    ),
    Condition(
        "conflict",
        "the subject both approves and rejects the same task",
        lambda facts, mailbox, system: facts.command.kind is CommandKind.CONFLICT,
    ),
    Condition(
        "approval",
        "the task is a standard or User Approval Task",
        lambda facts, mailbox, system: facts.task is not None and facts.task.kind.is_approval,
    ),
    Condition(
        "approver",
        "the sender is an approver of the task",
        _approver,
    ),
    Condition(
        "pending",
        "the approval task is still pending",
        lambda facts, mailbox, system: (
            facts.task is not None and facts.task.status is TaskStatus.PENDING
        ),
    ),
    Condition(
        "token_ok",
        "a valid unused approval token was given, or tokens are not required",
        lambda facts, mailbox, system: facts.token_ok is not False,
    ),
)
"""Every condition the tables may name: the only list (docs, checks and evaluation use it)."""


def evaluate_conditions(
    facts: Facts, mailbox: MailboxSettings, system: SystemSettings
) -> dict[str, object]:
    """Compute every condition of :data:`CONDITIONS` from the facts and settings, by name."""
    return {condition.name: condition.compute(facts, mailbox, system) for condition in CONDITIONS}


def check_tables(tables: Mapping[str, tuple[Row, ...]], conditions: tuple[Condition, ...]) -> None:
    """Refuse rows that name an unknown condition or ask for a value it never takes.

    Raises ``ValueError`` (unknown name, value outside the condition's values, a discarding
    row without its ``why``, a table without a final catch-all row) or ``TypeError`` (a value
    of the wrong type, e.g. the string ``"bounce"`` where the condition takes a
    :class:`MailKind`). Run once at import time.
    """
    by_name = {condition.name: condition for condition in conditions}
    for table_name, table in tables.items():
        if not table or table[-1].when:
            raise ValueError(f"table {table_name!r} does not end with a catch-all row")
        for row in table:
            for name, value in row.when.items():
                condition = by_name.get(name)
                if condition is None:
                    raise ValueError(
                        f"row {row.id} of table {table_name!r} names the unknown condition "
                        f"{name!r}; known: {', '.join(sorted(by_name))}"
                    )
                types = {type(known) for known in condition.values}
                if type(value) not in types:
                    raise TypeError(
                        f"row {row.id}: condition {name!r} takes "
                        f"{' or '.join(sorted(t.__name__ for t in types))}, "
                        f"not {type(value).__name__} ({value!r})"
                    )
                if value not in condition.values:
                    raise ValueError(f"row {row.id}: condition {name!r} never takes {value!r}")
            if row.outcome is Outcome.DISCARD and not row.why:
                raise ValueError(f"row {row.id} discards without saying why (Row.why)")


check_tables(TABLES, CONDITIONS)


# --------------------------------------------------------------------------------------------
# decide
# --------------------------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    """What an outcome builder returns: actions, the reply to send (if any) and reasons."""

    actions: tuple[Action, ...] = ()
    reply_template: str | None = None
    reply_params: Mapping[str, object] = attrs.field(factory=dict)
    reply_ref: Target | None = None
    reasons: tuple[str, ...] = ()
    notifications: tuple[Reply, ...] = ()


@attrs.frozen
class _Context:
    facts: Facts
    mailbox: MailboxSettings
    system: SystemSettings
    _history: list[tuple[str, tuple[str, ...]]] = attrs.field(
        factory=list, init=False, eq=False, repr=False
    )  # history_text's result, once computed (an update and its notification both use it)

    @property
    def author(self) -> str:
        person = self.facts.sender.person
        if person is None:
            return f"anonymous ({self.facts.sender.address})"
        return f"{person.name} <{person.email}>" if person.name else person.email

    @property
    def number(self) -> int:
        number = self.facts.command.number
        assert number is not None
        return number

    def history_text(self) -> tuple[str, tuple[str, ...]]:
        """The text to add to a record: the reply part only when truncation applies; with
        the reasons. Computed once per decision."""
        if not self._history:
            text, reasons = self._cut_history()
            notice = unread_notice(self.facts.email)
            if notice:  # the analyst reading the history learns why there is no text
                text = f"{text.rstrip()}\n\n{notice}" if text.strip() else notice
                reasons = (*reasons, "encrypted content not read: the history says so")
            self._history.append((text, reasons))
        return self._history[0]

    def _cut_history(self) -> tuple[str, tuple[str, ...]]:
        body = self.facts.email.body
        if not (self.system.truncate_incoming_emails and self.facts.replies_to_us):
            return body, ()
        from asm_email_rules.truncate import TruncationMethod, truncate_reply

        cut = truncate_reply(
            body, marker=self.system.reply_marker, separators=self.mailbox.separators
        )
        if cut.method is TruncationMethod.KEPT_WHOLE:
            return body, (f"Truncate Incoming Emails: {cut.detail}",)
        if cut.method is TruncationMethod.NONE:
            return body, ("Truncate Incoming Emails is on but no quoted history was found",)
        return cut.kept, (
            f"Truncate Incoming Emails: only the reply portion was kept ({cut.method.value}: "
            f"{cut.detail})",
        )

    def attach(self, ref: Target) -> tuple[Action, ...]:
        files = tuple(attachment.filename for attachment in self.facts.email.attachments)
        if not files:
            return ()
        return (AttachObjects(ref, files, self.system.unspecified_profile_name),)

    def update(
        self, ref: Target, *, note: bool = False
    ) -> tuple[tuple[Action, ...], tuple[str, ...]]:
        text, reasons = self.history_text()
        entry: Action = (
            AddNote(ref, text, self.author) if note else AddHistory(ref, text, self.author)
        )
        actions: tuple[Action, ...] = (entry, *self.attach(ref), MarkUpdated(ref))
        return actions, reasons

    def command_history(self, ref: EntityRef) -> tuple[tuple[Action, ...], tuple[str, ...]]:
        """What a successful close, approve or reject adds to its record: a history entry with
        the words of the subject after the command token ("[REJECT#501] Wrong cost centre.")
        and the body, truncated to its reply portion as an update's would be (none without
        words), and the mail's attachments as objects (Unspecified profile), as an update's."""
        command = self.facts.command
        rest = command.stripped
        for token in (command.matched, *command.ignored):
            rest = rest.replace(token, " ", 1) if token else rest
        rest = " ".join(rest.split())
        body, reasons = self.history_text()
        parts = [part for part in (rest, body.strip()) if part]
        files = self.attach(ref)
        if not parts:
            return files, ("the mail holds no words besides the command: no history entry",)
        return (AddHistory(ref, "\n\n".join(parts), self.author), *files), reasons

    def notify(
        self,
        ref: EntityRef,
        *,
        owner_id: int | None,
        group: str,
        template_id: str,
        text: str,
        status: str = "",
    ) -> tuple[tuple[Action, ...], tuple[Reply, ...], tuple[str, ...]]:
        """Email at Update via Email In: the email to the call's assigned analyst, else its
        group's address; the action that records it on the call; the reasons.

        "To have email notifications sent to the assigned analyst or group when a call is
        updated by incoming email, ensure that the Email at Update via Email In option is
        selected". No email to the analyst who sent the update, to the address it came from
        (a group's shared mailbox), to one of our own addresses or to an address SMTP cannot
        take; the notification is then recorded only.
        ``status`` is the call's status after the update (default: the status it has now).
        """
        if not self.system.email_at_update_via_email_in:
            return (), (), ()
        facts = self.facts
        if facts.mail_kind is MailKind.AUTO_REPLY or facts.receipt:
            return (), (), ("an auto-reply notifies nobody",)
        people = {person.id: person for person in facts.notify_people}
        groups = {item.name: item for item in facts.notify_groups}
        sender = facts.sender.person
        if owner_id is not None and sender is not None and owner_id == sender.id:
            return (), (), ("the assigned analyst sent this update: no notification",)
        to = recipient = ""
        reasons: list[str] = []
        owner = people.get(owner_id) if owner_id is not None else None
        if owner is not None:
            to, recipient = owner.email, f"analyst {owner.name or owner.email}"
        elif owner_id is not None:
            reasons.append(f"the assigned analyst (person {owner_id}) is not in the store")
        if not to and group:
            found = groups.get(group)
            recipient = f"group {group}"
            if found is not None and found.email:
                to = found.email
            else:
                reasons.append(f"the group {group!r} has no address in the store")
        if not recipient:
            reasons.append("the call has no assigned analyst or group")
        if to and normalise_address(to) == normalise_address(facts.sender.address):
            reasons.append(f"{to} sent this update: its own words are not emailed back to it")
            to = ""
        elif to and self.mailbox.is_own_address(to):
            reasons.append(f"{to} is one of our own addresses (loop guard): not emailed")
            to = ""
        elif to and not _sendable_address(to):
            reasons.append(f"{to!r} is not a deliverable ASCII address: not emailed")
            to = ""
        action = NotifyAssignee(ref, to, recipient or "nobody")
        if not to:
            reasons.append("the notification is recorded on the call, no email is sent")
            return (action,), (), tuple(reasons)
        if not status:
            status = facts.call.status.value if facts.call is not None else "open"
        params = {"number": ref.number, "author": self.author, "text": text, "status": status}
        email = compose_reply(to, template_id, params, ref, self.mailbox, self.system)
        reasons.append(f"Email at Update via Email In: notification to the {recipient} ({to})")
        return (action,), (email,), tuple(reasons)


def _log_call(ctx: _Context, logging: str) -> _Plan:
    facts = ctx.facts
    person = facts.sender.person
    mailbox = ctx.mailbox
    actions: list[Action] = []
    reasons: list[str] = []
    contact = facts.sender.contact
    if person is None and contact is not None:
        user_id: int | None = contact.id
        actions.append(SetUserFlag(contact.id))
        reasons.append(
            f"person {contact.id} has this address but neither flag (a contact): it is "
            "flagged as a User and is the call's User (DESIGN 4b)"
        )
    elif person is None:
        address = facts.sender.address
        name = caller_name(facts.email, address)
        actions.append(CreateUser(address, name))
        user_id = None
    else:
        user_id = person.id
        if not person.is_user:
            actions.append(SetUserFlag(person.id))
            reasons.append("the analyst is not yet a User: the User flag is selected")
    if logging == "linked" and person is not None:
        analyst: int | None = person.id
    else:
        analyst = mailbox.default_logging_analyst_id
        why_none = "no Default Logging Analyst is set"
        if analyst is not None and facts.default_analyst_ok is False:
            why_none = (
                f"the Default Logging Analyst (person {analyst}) is not an analyst in the "
                "store (`asm-email-rules check` names the fix)"
            )
            analyst = None
        if analyst is None and person is not None and person.is_analyst:
            analyst = person.id
            reasons.append(f"{why_none}: the sending analyst logs the call")
        elif analyst is None and facts.default_analyst_ok is False:
            reasons.append(f"{why_none}: the call is logged without a logging analyst")
    description = facts.email.body
    if not description or description.isspace():  # no stripped copy of a long body
        description = facts.email.subject
        reasons.append("the body is empty: the subject is the description")
    notice = unread_notice(facts.email)
    if notice:
        description = f"{description.rstrip()}\n\n{notice}"
        reasons.append("encrypted content not read: the description says so")
    actions.append(LogCall(user_id, analyst, mailbox.call_template.name, description))
    actions.extend(ctx.attach(NEW_CALL))
    return _Plan(
        tuple(actions),
        "call_logged" if mailbox.auto_reply else None,
        {"number": NEW_CALL},
        NEW_CALL,
        reasons=tuple(reasons),
    )


def _notify_call(
    ctx: _Context,
    ref: EntityRef,
    owner_id: int | None,
    group: str,
    template_id: str,
    status: str = "",
) -> tuple[tuple[Action, ...], tuple[Reply, ...], tuple[str, ...]]:
    text, _ = ctx.history_text()
    return ctx.notify(
        ref, owner_id=owner_id, group=group, template_id=template_id, text=text, status=status
    )


def _update_call(ctx: _Context) -> _Plan:
    ref = EntityRef(EntityKind.CALL, ctx.number)
    actions, reasons = ctx.update(ref)
    call = ctx.facts.call
    owner, group = (call.owner_id, call.group) if call is not None else (None, "")
    notify, emails, why = _notify_call(ctx, ref, owner, group, "call_updated_notification")
    template = "call_updated" if ctx.mailbox.auto_reply else None
    if template is None:
        reasons = (*reasons, "auto-reply is off for this mailbox: no reply")
    return _Plan(
        (*actions, *notify), template, {"number": ctx.number}, ref, (*reasons, *why), emails
    )


def _automatic_entry(ctx: _Context) -> _Plan:
    ref = ctx.facts.command.ref
    assert ref is not None, "the automatic-entry rows follow found=True"
    text, reasons = ctx.history_text()
    return _Plan(
        (AddAutomaticEntry(ref, text, ctx.author),),
        reasons=(
            "an auto-reply to one of our messages: kept in the history as an automatic entry "
            "(no note icon, no notification, no reply)",
            *reasons,
        ),
    )


def _reopen(ctx: _Context) -> _Plan:
    call = ctx.facts.call
    assert call is not None
    template = ctx.mailbox.call_template
    assignment = ctx.system.reopen_assignment
    if assignment is ReopenAssignment.TEMPLATE:
        owner, group = template.assigned_analyst_id, template.assigned_group
    elif assignment is ReopenAssignment.GROUP:
        owner, group = None, call.group
    else:
        owner, group = call.owner_id, call.group
    assigned = f"reopened and assigned by the '{assignment.value}' setting"
    if owner is None and not group and (call.owner_id is not None or call.group):
        owner, group = call.owner_id, call.group
        assigned = (
            f"the '{assignment.value}' reopen setting names nobody for this call: reopened "
            "with the analyst and group it had, so it is not left unassigned"
        )
    ref = EntityRef(EntityKind.CALL, call.number)
    update, reasons = ctx.update(ref, note=True)
    notify, emails, why = _notify_call(
        ctx, ref, owner, group, "call_reopened_notification", CallStatus.OPEN.value
    )
    return _Plan(
        (ReopenCall(call.number, owner, group), *update, *notify),
        "call_reopened",
        {"number": call.number},
        ref,
        (*reasons, assigned, *why),
        emails,
    )


def _note_closed(ctx: _Context) -> _Plan:
    ref = EntityRef(EntityKind.CALL, ctx.number)
    actions, reasons = ctx.update(ref, note=True)
    call = ctx.facts.call
    owner, group = (call.owner_id, call.group) if call is not None else (None, "")
    notify, emails, why = _notify_call(ctx, ref, owner, group, "call_updated_notification")
    return _Plan(
        (*actions, *notify),
        "closed_call_updated",
        {"number": ctx.number},
        ref,
        (*reasons, *why),
        emails,
    )


def _reply(template: str, **params: object) -> Callable[[_Context], _Plan]:
    def build(ctx: _Context) -> _Plan:
        values: dict[str, object] = {"number": ctx.facts.command.number, **params}
        return _Plan(reply_template=template, reply_params=values, reply_ref=ctx.facts.command.ref)

    return build


def _close(ctx: _Context) -> _Plan:
    ref = EntityRef(EntityKind.CALL, ctx.number)
    history, reasons = ctx.command_history(ref)
    return _Plan(
        (*history, CloseCall(ctx.number, ctx.author)),
        "call_closed",
        {"number": ctx.number},
        ref,
        reasons,
    )


def _verb(ctx: _Context) -> str:
    return "rejected" if ctx.facts.command.kind is CommandKind.REJECT else "approved"


def _what(ctx: _Context) -> str:
    ref = ctx.facts.command.ref
    return "Call" if ref is None or ref.kind is EntityKind.CALL else "Task"


def _approval_reply(template: str) -> Callable[[_Context], _Plan]:
    def build(ctx: _Context) -> _Plan:
        task = ctx.facts.task
        params: dict[str, object] = {
            "number": ctx.number,
            "verb": _verb(ctx),
            "state": task.status.value if task is not None else "",
            "what": _what(ctx),
            "detail": sender_authenticated(ctx.facts)[1]
            if template == "not_authenticated"
            else ctx.facts.token_reason,
            "action": _refused_action(ctx),
        }
        return _Plan(reply_template=template, reply_params=params, reply_ref=ctx.facts.command.ref)

    return build


def _refused_action(ctx: _Context) -> str:
    kind = ctx.facts.command.kind
    if kind is CommandKind.CLOSE:
        return "close the call"
    if kind is CommandKind.UPDATE_CALL:
        return "reopen the call"
    return f"be {_verb(ctx)}"


def _approve(ctx: _Context) -> _Plan:
    by = ctx.author
    action: Action = (
        RejectTask(ctx.number, by)
        if ctx.facts.command.kind is CommandKind.REJECT
        else ApproveTask(ctx.number, by)
    )
    ref = EntityRef(EntityKind.TASK, ctx.number)
    history, reasons = ctx.command_history(ref)
    actions: tuple[Action, ...] = (*history, action)
    if ctx.facts.token_id is not None and ctx.facts.token_ok:
        actions = (*actions, SpendToken(ctx.facts.token_id, ctx.facts.token_expires_at))
    template = "task_rejected" if ctx.facts.command.kind is CommandKind.REJECT else "task_approved"
    return _Plan(actions, template, {"number": ctx.number}, ref, reasons)


def _update_task(ctx: _Context) -> _Plan:
    ref = EntityRef(EntityKind.TASK, ctx.number)
    actions, reasons = ctx.update(ref)
    return _Plan(actions, "task_updated", {"number": ctx.number}, ref, reasons)


def _update_request(ctx: _Context) -> _Plan:
    ref = EntityRef(EntityKind.REQUEST, ctx.number)
    actions, reasons = ctx.update(ref)
    return _Plan(actions, "request_updated", {"number": ctx.number}, ref, reasons)


def _summary_kind(ctx: _Context) -> SummaryKind:
    kind = ctx.facts.command.kind.summary_kind
    assert kind is not None, "the summary table only sees [My...] commands"
    return kind


_LONGEST_OFFSET = timedelta(hours=14)
"""The widest UTC offset a place keeps (Kiribati +14:00; the far west is -12:00)."""


def _reader_zone(email: InboundEmail) -> tzinfo:
    """The zone to show times in to the writer of ``email``: the UTC offset of its Date (its
    writer's clock, RFC 5322 3.3), else UTC. A Date without an offset (read leniently),
    ``-0000`` (zone unknown), or an offset no place keeps (beyond +-14:00, or not a whole
    quarter hour) gives UTC."""
    offset = email.date.utcoffset() if email.date is not None else None
    if offset is None or abs(offset) > _LONGEST_OFFSET or offset % timedelta(minutes=15):
        return UTC
    return timezone(offset)


def _shown(moment: datetime, zone: tzinfo) -> str:
    """``moment`` as ``2026-11-20 14:30 +0530`` in ``zone`` (``... UTC`` at offset zero); a
    naive ``moment`` (a host store's) is taken as UTC, like the stores do; one at the very
    end of the calendar, which ``zone`` cannot hold, is shown in its own offset."""
    aware = moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment
    try:
        local = aware.astimezone(zone)
    except OverflowError:
        local = aware
    label = "UTC" if local.utcoffset() == timedelta(0) else local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {label}"


def format_summary(items: tuple[SummaryItem, ...], total: int, zone: tzinfo = UTC) -> str:
    """One line per item (reference, state, description, last update, assignee), newest first.

    The last update is shown in ``zone`` with its offset (``2026-11-20 14:30 +0530``), so a
    reader anywhere knows which hour it means (see :func:`_reader_zone`). Each field is made
    one line (its white space runs, line breaks included, as one space) and the description
    is cut to :data:`~asm_email_rules.summary_text.SUMMARY_DESCRIPTION_LENGTH` characters,
    whatever a host's store hands over: an item is one line (DESIGN 4, summaries)."""
    if not items:
        return "You have no open items."
    lines = []
    for item in items:
        when = _shown(item.last_update, zone) if item.last_update else "-"
        token = bracket_token(item.ref)
        text = item.description.lstrip()[: 2 * SUMMARY_DESCRIPTION_LENGTH]  # bounded work
        description = _one_line(text)[:SUMMARY_DESCRIPTION_LENGTH].rstrip()
        fields = (token, _one_line(item.state), description, when, _one_line(item.assignee))
        lines.append("  ".join(field or "-" for field in fields))
    if total > len(items):
        lines.append(f"... and {total - len(items)} more")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """``text`` with every run of white space (line breaks included) as one space."""
    return " ".join(text.split())


def _summary(ctx: _Context) -> _Plan:
    person = ctx.facts.sender.person
    assert person is not None
    kind = _summary_kind(ctx)
    items = ctx.facts.summary_items
    action = SendSummary(kind, person.id, len(items), ctx.facts.summary_total)
    body = format_summary(items, ctx.facts.summary_total, _reader_zone(ctx.facts.email))
    return _Plan((action,), "summary", {"what": kind.label, "summary": body})


def _analysts_only(ctx: _Context) -> _Plan:
    return _Plan(
        reply_template="summary_analysts_only",
        reply_params={"what": _summary_kind(ctx).label},
    )


_BUILDERS: Mapping[Outcome, Callable[[_Context], _Plan]] = {
    _O.DISCARD: lambda ctx: _Plan(),
    _O.LOG_NEW_USER: lambda ctx: _log_call(ctx, "default"),
    _O.LOG_CONTACT_AS_USER: lambda ctx: _log_call(ctx, "default"),
    _O.LOG_DEFAULT_ANALYST: lambda ctx: _log_call(ctx, "default"),
    _O.LOG_LINKED_ANALYST: lambda ctx: _log_call(ctx, "linked"),
    _O.UPDATE_CALL: _update_call,
    _O.AUTOMATIC_ENTRY: _automatic_entry,
    _O.REOPEN_CALL: _reopen,
    _O.NOTE_CLOSED_CALL: _note_closed,
    _O.REPLY_CLOSED_NOT_UPDATED: _reply("closed_call_not_updated"),
    _O.CLOSE_CALL: _close,
    _O.REPLY_ALREADY_CLOSED: _reply("close_already_closed"),
    _O.REFUSE_PERMISSION: _approval_reply("insufficient_permission"),
    _O.REFUSE_UNAUTHENTICATED: _approval_reply("not_authenticated"),
    _O.REFUSE_TOKEN: _approval_reply("bad_token"),
    _O.APPROVE_OR_REJECT: _approve,
    _O.REPLY_NOT_IDENTIFIED: _approval_reply("sender_not_identified"),
    _O.REPLY_NOT_APPROVAL: _approval_reply("not_an_approval"),
    _O.REPLY_NOT_PENDING: _approval_reply("approval_not_pending"),
    _O.REPLY_CONFLICT: _reply("approval_conflict"),
    _O.UPDATE_TASK: _update_task,
    _O.UPDATE_REQUEST: _update_request,
    _O.SEND_SUMMARY: _summary,
    _O.REPLY_ANALYSTS_ONLY: _analysts_only,
}


def reply_address(email: InboundEmail, person: Person | None) -> str:
    """Where the result of a command goes: the identified person's stored address, else the
    contact address (Reply-To, else From). DESIGN 4: "Results of privileged commands go to the
    identified person's stored address only"; Reply-To never redirects them.
    """
    if person is not None:
        return person.email
    return contact_address(email)


ACKNOWLEDGEMENTS = frozenset(
    {
        "call_logged",
        "call_updated",
        "closed_call_updated",
        "closed_call_not_updated",
        "task_updated",
        "request_updated",
    }
)
"""Replies that acknowledge a mail (not a command's result): they go to the contact address."""


def _recipient(facts: Facts, template_id: str) -> str:
    """DESIGN 4: acknowledgements go to the contact address (Reply-To, else From); command
    results to the identified person's stored address, else the contact address."""
    if template_id in ACKNOWLEDGEMENTS:
        return contact_address(facts.email)
    return reply_address(facts.email, facts.sender.person)


_ADDRESS = re.compile(r"[!-~]{1,64}@[A-Za-z0-9.\[\]:-]{1,255}", re.ASCII)


_MAX_ADDRESS = 320  # 64 octets of local part, "@", 255 of domain (RFC 5321 4.5.3.1)


def _sendable_address(address: str) -> bool:
    """True for an addr-spec we can hand to SMTP (no controls, spaces or brackets) that the
    outgoing message accepts as its To (so a decided reply can always be rendered): no
    ``=?``, which readers take for an encoded-word (RFC 2047 5(3): none may appear in an
    addr-spec), and a dot-atom or quoted local part (RFC 5322 3.4.1). Internationalized
    addresses too: a Unicode domain goes out as A-labels (RFC 5891), a non-ASCII local part
    (RFC 6531) to a server that offers SMTPUTF8; the mailer keeps the reply, refused with
    its reason, when its server does not."""
    if "<" in address or ">" in address or "=?" in address:
        return False
    if address.isascii() and _ADDRESS.fullmatch(address) is None:
        return False
    if len(address) > _MAX_ADDRESS:
        return False
    try:
        check_address("To", address, smtputf8=True)
    except OutgoingMessageError:
        return False
    return True


def _too_old(email: InboundEmail, now: datetime, max_days: int) -> bool:
    """Whether ``email`` reached us more than ``max_days`` days before ``now`` (0: never).

    Beyond the spec (docs/security.md, "Backlog storms"): the first run on a mailbox that
    kept months of mail must not answer all of it. What counts is when the message arrived,
    the newest Received field's time stamp; its Date (the writer's clock) only without one,
    since mail written offline and sent days later is new to us and its writer waits for the
    answer the spec promises."""
    arrived = email.received_at or email.date
    if not max_days or arrived is None:
        return False
    if arrived.tzinfo is None:  # a time without a zone (read leniently): taken as UTC
        arrived = arrived.replace(tzinfo=UTC)
    return now - arrived > timedelta(days=min(max_days, timedelta.max.days))  # any int of days


def _suppression(facts: Facts, to: str, mailbox: MailboxSettings, system: SystemSettings) -> str:
    """Why a planned reply must not go out, or "" when it may."""
    if not facts.may_auto_reply:
        return f"no reply to {facts.mail_kind.value} mail (RFC 3834)"
    if facts.email.return_path == "":
        return "the return path is null (<>): no reply (RFC 3834 2, RFC 5321 4.5.5)"
    if not to:
        return "no address to reply to"
    if not _sendable_address(to):
        return f"the reply address {to!r} is not a deliverable ASCII address"
    if mailbox.is_own_address(to):
        return "the reply would go to one of our own addresses (loop guard)"
    if _too_old(facts.email, facts.now, system.max_reply_age_days):
        return f"the message reached us over {system.max_reply_age_days} days ago: no reply"
    if facts.replies_last_hour >= system.reply_budget_per_hour:
        return (
            f"reply budget: {facts.replies_last_hour} replies to {to} in the last hour "
            f"(limit {system.reply_budget_per_hour})"
        )
    return ""


def compose_reply(
    to: str,
    template_id: str,
    params: Mapping[str, object],
    ref: Target | None,
    mailbox: MailboxSettings,
    system: SystemSettings,
) -> Reply:
    """The complete reply: the catalogue text (or the mailbox's override) filled in, the
    record's bracket token placed by ``mailbox.reply_subject`` (after the subject by default),
    and our marker line first in the body.

    DESIGN 4 "Replies we send": the spec's subjects exactly, plus the entity's bracket token;
    every reply starts with our marker line, so truncation finds the sender's part of an answer.
    """
    text = render(template_id, params, mailbox.reply_templates)
    subject = text.subject
    if ref is not None:
        token: Text = (
            bracket_token_parts(ref.kind, ref)
            if isinstance(ref, NewCall)
            else (bracket_token(ref),)
        )
        subject = place_token(mailbox.reply_subject, subject, token)
    body = text.body
    if system.reply_marker:
        body = merge_text(f"{system.reply_marker}\n\n", *body, "\n")
    return Reply(to, subject, body, template_id, ref)


ENCRYPTED_NOTICE = (
    "[This message was encrypted ({what}). It was not decrypted here, so its text could not "
    "be read; the encrypted content is kept as it came.]"
)
"""What a call's description and history say of encrypted content intake could not read."""


ENCRYPTED_REPLY_LINE = CATALOGUE["encrypted_unread"].body
"""The line an acknowledgement of encrypted mail (:data:`_ACKNOWLEDGEMENTS`) ends with by
default; a mailbox words it its own way with ``reply_templates["encrypted_unread.body"]``."""
_ACKNOWLEDGEMENTS = ("call_logged", "call_updated", "task_updated", "request_updated")


def unread_notice(email: InboundEmail) -> str:
    """:data:`ENCRYPTED_NOTICE` for a message with encrypted content intake did not read
    (an ``ENCRYPTED_NOT_READ`` note: S/MIME enveloped data, PGP/MIME, an inline PGP
    message), else ``""``. Without it the analyst saw the subject alone, or ciphertext."""
    kinds = [
        "PGP" if "PGP" in note.detail else "S/MIME"
        for note in email.notes
        if note.kind is IntakeNoteKind.ENCRYPTED_NOT_READ
    ]
    if not kinds:
        return ""
    return ENCRYPTED_NOTICE.format(what=" and ".join(dict.fromkeys(kinds)))


def _base_reasons(facts: Facts) -> list[str]:
    reasons: list[str] = list(facts.mail_kind_reasons)
    if facts.bounce_summary:
        reasons.append(facts.bounce_summary)
    reasons.extend(facts.sender_reasons)
    command = facts.command
    if command.kind is CommandKind.NONE:
        reasons.append("the subject is not recognised")
    else:
        reasons.append(
            f"the subject asks {command.kind.value}"
            + (f" #{command.number}" if command.number is not None else "")
            + f" ({command.source.value}: {command.matched!r})"
        )
    if command.ignored:
        reasons.append(f"outranked tokens ignored: {', '.join(command.ignored)}")
    if command.normalised:
        reasons.append("the subject was NFKC-normalised before matching")
    if facts.sender.ambiguous:
        person, contact = facts.sender.person, facts.sender.contact
        chosen = (
            f"the lowest id flagged analyst or User ({person.id}) was chosen"
            if person is not None
            else f"none is an analyst or User; the lowest id ({contact.id if contact else '-'}) "
            "was chosen"
        )
        reasons.append(
            f"{facts.sender.matches} person records share {facts.sender.address}; {chosen}"
        )
    if not facts.in_partition:
        reasons.append("the referenced record is outside this mailbox's partition")
    authenticated, auth_reason = sender_authenticated(facts)
    if authenticated is not None:
        reasons.append(f"sender authentication: {auth_reason}")
    if facts.token_ok is not None:
        reasons.append(f"approval token: {facts.token_reason}")
    reasons.extend(str(note) for note in facts.email.notes)
    for violation in facts.email.limit_violations:
        over = f"limit {violation.kind.value}: {violation.actual} > {violation.limit}"
        reasons.append(f"{over} {violation.detail}".rstrip())
    return reasons


def decide(facts: Facts, mailbox: MailboxSettings, system: SystemSettings) -> Decision:
    """Decide what to do with one message. Pure: the same facts give the same Decision.

    :class:`~asm_email_rules.errors.ArgumentTypeError` when ``facts``, ``mailbox`` or
    ``system`` is not a :class:`Facts`, :class:`MailboxSettings` or :class:`SystemSettings`.
    """
    if not (
        isinstance(facts, Facts)
        and isinstance(mailbox, MailboxSettings)
        and isinstance(system, SystemSettings)
    ):  # the usual case costs one test; the error names the argument
        require_type(facts, Facts, "decide", "facts")
        require_type(mailbox, MailboxSettings, "decide", "mailbox")
        require_type(system, SystemSettings, "decide", "system")
    conditions = evaluate_conditions(facts, mailbox, system)
    fired: list[Row] = [first_match(GATE, conditions)]
    if fired[0].outcome is _O.CONTINUE:
        fired.append(first_match(TABLES[_TABLE_FOR[facts.command.kind]], conditions))
        if fired[-1].outcome is _O.LOG_CALL:
            fired.append(first_match(LOG_CALL, conditions))
    row = fired[-1]
    ctx = _Context(facts, mailbox, system)
    plan = _BUILDERS[row.outcome](ctx)
    reasons = _base_reasons(facts)
    if len(fired) > 2:
        reasons.append(f"{fired[1].id}: the number is not valid, so the mail logs a call")
    reasons.extend(plan.reasons)
    actions = plan.actions
    discard_reason = _discard_reason(row, facts, conditions)
    if not actions:
        actions = (Discard(f"{row.id}: {discard_reason or row.outcome.value}"),)
    reply: Reply | None = None
    suppressed = ""
    if plan.reply_template is not None:
        to = _recipient(facts, plan.reply_template)
        suppressed = _suppression(facts, to, mailbox, system)
        if not suppressed:
            reply = compose_reply(
                to, plan.reply_template, plan.reply_params, plan.reply_ref, mailbox, system
            )
            if plan.reply_template in _ACKNOWLEDGEMENTS and unread_notice(facts.email):
                # the sender would else believe the desk read what they wrote
                line = render("encrypted_unread", {}, mailbox.reply_templates).body
                body = merge_text(*reply.body_text, "\n", *line, "\n")
                reply = attrs.evolve(reply, body_text=body)
                reasons.append("encrypted content not read: the acknowledgement says so")
    person = facts.sender.person
    return Decision(
        rule=" > ".join(item.id for item in fired[1:] or fired),
        spec=for_operators(row.spec),
        outcome=row.outcome,
        mail_kind=facts.mail_kind,
        command=facts.command,
        person_case=facts.sender.case,
        person_id=person.id if person is not None else None,
        actions=actions,
        reply=reply,
        reasons=tuple(reasons),
        conditions=tuple(sorted(conditions.items())),
        reply_suppressed=suppressed,
        notifications=plan.notifications,
        status_class=facts.bounce_status_class,
        discard_reason=discard_reason,
    )


_KIND_WHY = {
    MailKind.AUTO_REPLY: "auto-reply",
    MailKind.AUTO_GENERATED: "machine-generated mail (calls from it are off for this mailbox)",
}


def _discard_reason(row: Row, facts: Facts, conditions: Mapping[str, object]) -> str:
    """The few words saying why a discarded message was dropped ("" when it was not)."""
    if row.outcome is not _O.DISCARD:
        return ""
    if row.why == "{kind}":
        if facts.receipt:
            return "read or delivery receipt"
        return _KIND_WHY.get(facts.mail_kind, facts.mail_kind.value)
    if row.id == "LOG-3" and not conditions["has_address"]:
        return "no usable sender address"
    return row.why


def render_tables_markdown() -> str:
    """The decision tables as Markdown: one table per command family, first match wins."""
    out = [
        "# Decision tables",
        "",
        "Generated from `asm_email_rules.rules` by `asm-email-rules tables`; a test "
        "fails when this file is stale. In each table the first row whose conditions all hold "
        'fires; an empty cell means "any". `log_call` is also reached from any row whose '
        "outcome is `log_call` (an invalid number).",
        "",
        "## Conditions",
        "",
        "| condition | meaning |",
        "|---|---|",
    ]
    out += [f"| `{c.name}` | {c.meaning} |" for c in CONDITIONS]
    for name, table in TABLES.items():
        columns = list(dict.fromkeys(key for row in table for key in row.when))
        out += ["", f"## {name}", ""]
        out.append("| row | " + " | ".join(f"`{c}`" for c in columns) + " | outcome | spec |")
        out.append("|---" * (len(columns) + 3) + "|")
        for row in table:
            cells = [_cell(row.when.get(column, "")) for column in columns]
            spec = for_operators(row.spec).replace("|", "\\|")
            outcome = f"`{row.outcome.value}`"
            if row.why:
                why = row.why.replace("{kind}", "the mail kind").replace("|", "\\|")
                outcome += f" ({why})"
            out.append(f"| {row.id} | " + " | ".join(cells) + f" | {outcome} | {spec} |")
    return "\n".join(out) + "\n"


def _cell(value: object) -> str:
    if value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    return f"`{value}`"
