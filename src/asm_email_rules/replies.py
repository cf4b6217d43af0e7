"""The catalogue of reply texts: ids -> subject and body templates.

Defaults hold the spec's sentences exactly. A mailbox overrides any of them through
``MailboxSettings.reply_templates`` with keys ``"<id>.subject"`` or ``"<id>.body"``. Templates use
``string.Template`` placeholders (``$number``), which cannot reach attributes or run code.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping

import attrs

from asm_email_rules.model import NewCall


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
    "call_updated_notification": ReplyText(
        "Call $number has been updated by email",
        "$author has updated call $number ($status) by email:\n\n$text",
        "Spec: email notifications sent to the assigned analyst or group when a call is "
        "updated by incoming email (Email at Update via Email In)",
    ),
    "call_reopened_notification": ReplyText(
        "Call $number has been reopened by email",
        "$author has reopened call $number by email; it is now assigned to you:\n\n$text",
        "Spec: email notifications sent to the assigned analyst or group when a call is "
        "updated by incoming email (here: reopened; Email at Update via Email In)",
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
    "encrypted_unread": ReplyText(
        "",
        "Your message was encrypted and could not be read here. Please send what you need "
        "without encryption, or in a way agreed with the service desk.",
        "Beyond the spec: the line an acknowledgement (call logged, call/task/request updated) "
        "of encrypted mail ends with, so the sender does not believe the desk read it; only "
        "its body is used",
    ),
}

OVERRIDE_KEYS: frozenset[str] = frozenset(
    f"{template_id}.{part}" for template_id in CATALOGUE for part in ("subject", "body")
)
"""Every key ``MailboxSettings.reply_templates`` may hold: ``"<id>.subject"``, ``"<id>.body"``."""


def override_key_problem(key: str) -> str | None:
    """Why ``key`` cannot override a reply text, with the nearest valid key; None when it can.

    A key outside :data:`OVERRIDE_KEYS` would never be read, so the default wording would go
    out without a word: settings and the configuration file refuse it with this text.
    """
    if key in OVERRIDE_KEYS:
        return None
    close = difflib.get_close_matches(key, sorted(OVERRIDE_KEYS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown reply template; keys are <id>.subject or <id>.body{hint}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
_SPACES = re.compile(r"\s+")

Part = str | NewCall
"""A piece of reply text: literal text, or the :data:`NEW_CALL` placeholder for a number."""

Text = tuple[Part, ...]
"""Reply text in parts; adjacent literal parts are always merged."""


def single_line(text: str) -> str:
    """Collapse control characters (CR, LF, NUL, ...) into spaces: safe as a header value."""
    return " ".join(_CONTROL.sub(" ", text).split())


def join_text(parts: Text, number: int | None = None) -> str:
    """``parts`` as one string: the placeholder shown as "(new call)", or as ``number``."""
    return "".join(
        part if isinstance(part, str) else str(part if number is None else number) for part in parts
    )


def merge_text(*parts: Part) -> Text:
    """``parts`` with adjacent literal pieces joined and empty ones dropped."""
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str):
            if not part:
                continue
            if merged and isinstance(merged[-1], str):
                merged[-1] += part
                continue
        merged.append(part)
    return tuple(merged)


def single_line_text(parts: Text) -> Text:
    """:func:`single_line` over text in parts: controls become spaces, runs of white space one
    space, and the ends are trimmed (the placeholder counts as a word)."""
    cleaned = [
        _SPACES.sub(" ", _CONTROL.sub(" ", part)) if isinstance(part, str) else part
        for part in merge_text(*parts)
    ]
    if cleaned and isinstance(cleaned[0], str):
        cleaned[0] = cleaned[0].lstrip()
    if cleaned and isinstance(cleaned[-1], str):
        cleaned[-1] = cleaned[-1].rstrip()
    return merge_text(*cleaned)


def substitute(template: str, values: Mapping[str, Part]) -> Text:
    """``string.Template(template).safe_substitute(values)`` keeping a placeholder value typed.

    Same grammar and semantics: ``$name`` and ``${name}`` are replaced, ``$$`` is a dollar,
    unknown names and stray dollars are left as written; nothing reaches attributes or code.
    """
    parts: list[Part] = []
    position = 0
    for match in string.Template.pattern.finditer(template):
        parts.append(template[position : match.start()])
        position = match.end()
        name = match.group("named") or match.group("braced")
        if name is not None and name in values:
            parts.append(values[name])
        elif match.group("escaped") is not None:
            parts.append("$")
        else:
            parts.append(match.group(0))
    parts.append(template[position:])
    return merge_text(*parts)


@attrs.frozen
class RenderedReply:
    """A reply text with its template id, ready to address; text in parts (see :data:`Text`)."""

    template_id: str
    subject: Text
    body: Text


def render(
    template_id: str,
    params: Mapping[str, object],
    overrides: Mapping[str, str] | None = None,
) -> RenderedReply:
    """Fill a catalogue entry (or its per-mailbox override) with ``params``.

    Unknown placeholders are left as written; the subject is always a single line. A
    :data:`NEW_CALL` value stays a typed part of the text until the call number exists.
    """
    entry = CATALOGUE[template_id]
    overrides = overrides or {}
    subject_template = overrides.get(f"{template_id}.subject", entry.subject)
    body_template = overrides.get(f"{template_id}.body", entry.body)
    values: dict[str, Part] = {
        key: value if isinstance(value, NewCall) else str(value) for key, value in params.items()
    }
    subject = single_line_text(substitute(subject_template, values))
    body = substitute(body_template, values)
    return RenderedReply(template_id, subject, body)


_SUBJECT_PLACES = re.compile(r"(\$subject|\$token)")


def place_token(template: str, subject: Text, token: Text) -> Text:
    """The reply subject from ``template``: ``$subject`` becomes ``subject``, ``$token`` the
    record's bracket token (``[CALL#12]``); any other text stays as written.

    ``"$subject $token"`` (the default) gives ``Call 12 has been logged [CALL#12]``.
    """
    parts: list[Part] = []
    for piece in _SUBJECT_PLACES.split(template):
        if piece == "$subject":
            parts.extend(subject)
        elif piece == "$token":
            parts.extend(token)
        else:
            parts.append(piece)
    return merge_text(*parts)
