"""The catalogue of reply texts: ids -> subject and body templates.

Defaults hold the spec's sentences exactly. A mailbox overrides any of them through
``MailboxSettings.reply_templates`` with keys ``"<id>.subject"`` or ``"<id>.body"``. Templates use
``string.Template`` placeholders (``$number``), which cannot reach attributes or run code.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

import attrs


@attrs.frozen
class ReplyText:
    """A subject and body template; ``spec`` cites where the wording comes from."""

    subject: str
    body: str
    spec: str


CATALOGUE: Mapping[str, ReplyText] = {
    "call_logged": ReplyText(
        "Call $number has been logged",
        "Call $number has been logged.\n\nReply to this email to add to the call.",
        "DESIGN 4b: acknowledgement of a new call (auto-reply switch)",
    ),
    "call_updated": ReplyText(
        "Call $number has been updated",
        "Call $number has been updated.",
        "Spec: a return email message is sent with the subject "
        "\u201cCall <Call Number> has been updated\u201d",
    ),
    "closed_call_updated": ReplyText(
        "Call No $number has been updated by ASM Core.",
        "Call No $number has been updated by ASM Core.",
        "Spec: \u201cCall No xyz has been updated by ASM Core.\u201d",
    ),
    "closed_call_not_updated": ReplyText(
        "Call No $number is already closed and has not been updated.",
        "Call No $number is already closed and has not been updated.",
        "Spec: \u201cCall No xyz is already closed and has not been updated.\u201d",
    ),
    "call_reopened": ReplyText(
        "Call $number has been reopened",
        "Call $number has been reopened and your email was added to it as a note.",
        "DESIGN 4b: a reopened call gets a confirmation",
    ),
    "call_closed": ReplyText(
        "Call $number has been closed",
        "Call $number has been closed.",
        "Spec: a return email will be sent to you to confirm the closure",
    ),
    "close_already_closed": ReplyText(
        "Call No $number is already closed",
        "Call No $number is already closed and has not been changed.",
        "Spec: it must be a valid open call number (DESIGN 4: reply, no new call)",
    ),
    "insufficient_permission": ReplyText(
        "$what $number has not been changed",
        "Reason: Insufficient Permission",
        "Spec: a return email with the following message will be sent: "
        "\u201cReason: Insufficient Permission\u201d",
    ),
    "task_approved": ReplyText(
        "Task $number has been successfully approved",
        "Task $number has been successfully approved.",
        "Spec: \u201cTask <Task Number> has been successfully approved\u201d",
    ),
    "task_rejected": ReplyText(
        "Task $number has been successfully rejected",
        "Task $number has been successfully rejected.",
        "Spec: \u201cTask <Approval Task Number> has been successfully rejected\u201d",
    ),
    "sender_not_identified": ReplyText(
        "Task $number has not been ${verb}",
        "Task $number has not been $verb: the sender of this email has not been identified.",
        "Spec: a return email is sent, stating that the sender has not been identified",
    ),
    "not_an_approval": ReplyText(
        "Task $number has not been ${verb}",
        "Task $number is not an approval task, so it cannot be $verb by email. "
        "Nothing has been changed.",
        "DESIGN 4b: a task that is not an approval gets a reply and nothing changes",
    ),
    "approval_not_pending": ReplyText(
        "Task $number has not been ${verb}",
        "Task $number is already $state. Nothing has been changed.",
        "DESIGN 4b: an approval no longer pending gets a reply saying its state",
    ),
    "approval_conflict": ReplyText(
        "Task $number has not been changed",
        "The subject asks both to approve and to reject task $number. "
        "Nothing has been changed; send one command.",
        "DESIGN 4: conflicting commands on one number do nothing and say why",
    ),
    "not_authenticated": ReplyText(
        "$what $number has not been changed",
        "This email could not be authenticated ($detail), so it cannot $action. "
        "Nothing has been changed.",
        "Issue 5: close, reopen, approve and reject require an authenticated sender when set",
    ),
    "bad_token": ReplyText(
        "Task $number has not been ${verb}",
        "This approval needs the token sent to you in the approval notification ($detail). "
        "Nothing has been changed.",
        "Issue 5: approve / reject require a valid, unused token from that approver when set",
    ),
    "task_updated": ReplyText(
        "Task/Approval $number has been updated",
        "Task/Approval $number has been updated.",
        "Spec: a return email message is sent with the subject "
        "\u201cTask/Approval <Task/Approval Number> has been updated\u201d",
    ),
    "request_updated": ReplyText(
        "Request $number has been updated",
        "Request $number has been updated.",
        "Spec: a return email message is sent with the subject "
        "\u201cRequest <Request Number> has been updated\u201d",
    ),
    "summary": ReplyText(
        "Summary of your $what",
        "$summary",
        "Spec: a return email is sent to that support analyst with a summary",
    ),
    "summary_analysts_only": ReplyText(
        "Summary of your $what",
        "Summaries by email are available to analysts only.",
        "DESIGN 4b: a recognised non-analyst gets one line saying summaries are for analysts",
    ),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


def single_line(text: str) -> str:
    """Collapse control characters (CR, LF, NUL, ...) into spaces: safe as a header value."""
    return " ".join(_CONTROL.sub(" ", text).split())


@attrs.frozen
class RenderedReply:
    """A reply text with its template id, ready to address."""

    template_id: str
    subject: str
    body: str


def render(
    template_id: str,
    params: Mapping[str, object],
    overrides: Mapping[str, str] | None = None,
) -> RenderedReply:
    """Fill a catalogue entry (or its per-mailbox override) with ``params``.

    Unknown placeholders are left as written; the subject is always a single line.
    """
    entry = CATALOGUE[template_id]
    overrides = overrides or {}
    subject_template = overrides.get(f"{template_id}.subject", entry.subject)
    body_template = overrides.get(f"{template_id}.body", entry.body)
    values = {key: str(value) for key, value in params.items()}
    subject = string.Template(subject_template).safe_substitute(values)
    body = string.Template(body_template).safe_substitute(values)
    return RenderedReply(template_id, single_line(subject), body)
