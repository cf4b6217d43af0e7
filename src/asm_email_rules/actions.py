"""The actions a Decision holds: what to do, as small frozen values (no behaviour).

``kind`` names each action in JSON, logs and docs. :func:`asm_email_rules.applying.apply`
carries them out with a ``match`` over :data:`Action` that ends in ``typing.assert_never``, so
a new action that nobody applies is a type error, not a silent no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import attrs

from asm_email_rules.model import NEW_CALL, EntityRef, NewCall, SummaryKind

__all__ = [
    "NEW_CALL",
    "Action",
    "AddAutomaticEntry",
    "AddHistory",
    "AddNote",
    "ApproveTask",
    "AttachObjects",
    "CloseCall",
    "CreateUser",
    "Discard",
    "LogCall",
    "MarkUpdated",
    "NotifyAssignee",
    "RejectTask",
    "ReopenCall",
    "SendSummary",
    "SetUserFlag",
    "SpendToken",
    "Target",
]

Target = EntityRef | NewCall
"""The record an action is about: an existing one, or :data:`NEW_CALL`, the call this
decision logs (its number exists only once ``apply`` has carried out the ``LogCall``)."""


@attrs.frozen
class CreateUser:
    """Create a person record flagged as a User for an unknown address."""

    kind: ClassVar[str] = "create_user"
    address: str
    name: str


@attrs.frozen
class SetUserFlag:
    """Select the User flag on an analyst who logs a call by email."""

    kind: ClassVar[str] = "set_user_flag"
    person_id: int


@attrs.frozen
class LogCall:
    """Log a call from the template; ``user_id`` None means the user this decision creates."""

    kind: ClassVar[str] = "log_call"
    user_id: int | None
    logging_analyst_id: int | None
    template: str
    description: str


@attrs.frozen
class AddHistory:
    """Add the email's text to a record's history."""

    kind: ClassVar[str] = "add_history"
    ref: Target
    text: str
    author: str


@attrs.frozen
class AddAutomaticEntry:
    """Add an auto-reply to the history of the record it answers, as an automatic entry.

    DESIGN 4: "away until Monday" helps the analyst, so an out-of-office reply to one of our
    messages is kept; it marks nothing as updated, notifies nobody and gets no reply.
    """

    kind: ClassVar[str] = "add_automatic_entry"
    ref: Target
    text: str
    author: str


@attrs.frozen
class AddNote:
    """Add the email's text as a note (closed calls keep their state)."""

    kind: ClassVar[str] = "add_note"
    ref: Target
    text: str
    author: str


@attrs.frozen
class AttachObjects:
    """Attach the email's files as objects under a security profile."""

    kind: ClassVar[str] = "attach_objects"
    ref: Target
    filenames: tuple[str, ...]
    security_profile: str


@attrs.frozen
class MarkUpdated:
    """Set the note icon on the record in the Outstanding window."""

    kind: ClassVar[str] = "mark_updated"
    ref: Target


@attrs.frozen
class NotifyAssignee:
    """Notify the assigned analyst or group that the call was updated by email.

    ``to`` is the address the notification email goes to ("" when none can be: the decision's
    reasons say why) and ``recipient`` who that is ("analyst Alice Analyst", "group Network").
    The email itself is in :attr:`Decision.notifications`; this action records it on the
    call's log.
    """

    kind: ClassVar[str] = "notify_assignee"
    ref: Target
    to: str = ""
    recipient: str = ""


@attrs.frozen
class CloseCall:
    """Close an open call."""

    kind: ClassVar[str] = "close_call"
    number: int
    by: str


@attrs.frozen
class ReopenCall:
    """Reopen a closed call and assign it."""

    kind: ClassVar[str] = "reopen_call"
    number: int
    owner_id: int | None
    group: str


@attrs.frozen
class ApproveTask:
    """Approve a pending approval task."""

    kind: ClassVar[str] = "approve_task"
    number: int
    by: str


@attrs.frozen
class RejectTask:
    """Reject a pending approval task."""

    kind: ClassVar[str] = "reject_task"
    number: int
    by: str


@attrs.frozen
class SpendToken:
    """Mark an approval token used so a replay does nothing (until it expires, when it is
    refused anyway and the store may forget it)."""

    kind: ClassVar[str] = "spend_token"
    token_id: str
    expires_at: datetime | None = None


@attrs.frozen
class SendSummary:
    """Send a [My...] summary to the analyst who asked."""

    kind: ClassVar[str] = "send_summary"
    what: SummaryKind
    person_id: int
    items: int
    total: int


@attrs.frozen
class Discard:
    """Do nothing with the message except record why (it is then deleted)."""

    kind: ClassVar[str] = "discard"
    reason: str


Action = (
    CreateUser
    | SetUserFlag
    | LogCall
    | AddHistory
    | AddAutomaticEntry
    | AddNote
    | AttachObjects
    | MarkUpdated
    | NotifyAssignee
    | CloseCall
    | ReopenCall
    | ApproveTask
    | RejectTask
    | SpendToken
    | SendSummary
    | Discard
)
