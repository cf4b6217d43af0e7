"""Automatic-mail classification: own mail, bounces, auto-replies, machine notices, lists.

Pure and total: :func:`classify` reads only the :class:`InboundEmail` and never raises.

Every clue is a :class:`Signal` with a weight: 1 *weak* (a subject phrase, a ``postmaster`` or
``no-reply`` address, a sentence of the body), 2 *strong* (``Auto-Submitted``, ``Precedence:
bulk``, a ``List-Id``, a null return path), 3 *definitive* (a delivery-status or feedback
report). Clues come from independent sources (each header, the sender, the envelope, the
subject, the body, the MIME structure); a source counts with its strongest clue only, so two
phrases of one body are still one weak signal. A message is automatic when its sources add up
to :data:`THRESHOLD` (2): one strong signal, or two weak ones from different sources. A single
weak signal never decides alone (DESIGN 4, "a subject phrase alone never makes a message
automatic"). The body is only read when another source already points at a machine. A
person's subject, body and attached message are one source there once one of them reads like
a bounce: a person asking about mail that bounced is not a bounce (:func:`_score`).

The kind is the first of bounce > auto-reply > auto-generated > list whose own clues reach the
threshold; failing that, the kind with the most own clues; failing that, the default of the
strongest generic clue (``Auto-Submitted: auto-generated`` and a null return path say "a
machine", not which kind: auto-generated; ``Precedence: bulk`` says list, unless From or
Sender is a robot's address).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence

import attrs

from asm_email_rules import classify_text as text
from asm_email_rules.addresses import normalise_address
from asm_email_rules.errors import require_strings, require_type
from asm_email_rules.header_values import parse_msg_ids
from asm_email_rules.intake_notes import IntakeNoteKind
from asm_email_rules.model import Attachment, InboundEmail
from asm_email_rules.settings import FATAL_SMTP_CODES
from asm_email_rules.subject import strip_prefixes

__all__ = [
    "THRESHOLD",
    "BounceInfo",
    "Classification",
    "MailKind",
    "Signal",
    "classify",
    "parse_delivery_status",
]

THRESHOLD = 2
"""Evidence needed to call a message automatic: one strong signal or two weak ones."""
WEAK, STRONG, DEFINITIVE = 1, 2, 3


class MailKind(enum.Enum):
    """What kind of mail a message is, for the rules: only NORMAL mail is a person writing."""

    NORMAL = "normal"
    AUTO_REPLY = "auto_reply"
    AUTO_GENERATED = "auto_generated"
    BOUNCE = "bounce"
    LIST = "list"
    OWN_MAIL = "own_mail"


_ORDER = (MailKind.BOUNCE, MailKind.AUTO_REPLY, MailKind.AUTO_GENERATED, MailKind.LIST)


@attrs.frozen
class Signal:
    """One clue about who sent a message, and how much it counts.

    ``source`` names the independent source it was read from ("Auto-Submitted", "sender",
    "Return-Path", "subject", "body", "report", "attachment", ...); a source counts with its
    strongest signal only. ``weight`` is 0 (a note that counts for nothing, e.g. an inbox-rule
    forward), 1 weak, 2 strong or 3 definitive. ``specific`` is True when the clue names its
    ``kind`` (a DSN says bounce); False when it only says "a machine sent this" and ``kind`` is
    the default used when nothing more specific is known.
    """

    source: str
    kind: MailKind
    weight: int
    reason: str
    specific: bool = True


@attrs.frozen
class BounceInfo:
    """What a delivery report says about the failed message (RFC 3464 / RFC 3463 / RFC 5321).

    ``status_class`` is 5 for a permanent failure and 4 for a delay (delivery still being
    retried): the class of the DSN ``Status`` (RFC 3463), else its ``Action`` (delayed: 4,
    failed: 5), else the SMTP code or enhanced status in the report's text (RFC 5321 4.2.1),
    else its wording ("delayed", "will retry": 4; anything else: 5).
    """

    action: str | None
    status: str | None
    status_class: int | None
    smtp_code: int | None
    diagnostic: str
    original_message_id: str | None
    permanent: bool
    fatal_code: bool


@attrs.frozen
class Classification:
    """The kind of a message, every signal that led there, and bounce details for bounces.

    ``evidence`` holds every :class:`Signal` found; ``score`` is what they add up to (each
    source counted once); ``reasons`` are their readable texts plus the verdict.
    ``auto_reply_suppressed`` is set by ``X-Auto-Response-Suppress: All/AutoReply/OOF``: a
    request not to auto-reply to the message, not a sign that the message is automatic.
    ``receipt`` is True for a read or delivery receipt (an RFC 8098 MDN, a DSN whose
    recipients were all delivered or relayed, Outlook's "Read:" notice sent as text): a
    report about a message someone sent, which answers it and asks for nothing, so it never
    logs a call (DESIGN 4 treats it as an auto-reply).
    """

    kind: MailKind
    reasons: tuple[str, ...]
    bounce: BounceInfo | None = None
    auto_reply_suppressed: bool = False
    receipt: bool = False
    evidence: tuple[Signal, ...] = ()
    score: int = 0

    @property
    def automatic(self) -> bool:
        """True for anything but mail a person wrote to us directly."""
        return self.kind is not MailKind.NORMAL

    @property
    def may_auto_reply(self) -> bool:
        """True only for normal mail that did not ask not to be auto-replied to (RFC 3834)."""
        return self.kind is MailKind.NORMAL and not self.auto_reply_suppressed


# --------------------------------------------------------------------------- bounce details

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_FAILURE_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_CODE_WITH_STATUS = re.compile(r"(?<![\d.])([245]\d\d)[ -]#?([245]\.\d{1,3}\.\d{1,3})\b")
_CODE_AFTER_WORD = re.compile(
    r"(?:smtp;|said:|error|returned|code|reply:)\W{0,4}([45]\d\d)\b", re.IGNORECASE
)
_LEADING_CODE = re.compile(r"\s*#?([245]\d\d)\b")
_LINE_CODE = re.compile(r"^[ \t]{0,8}([45]\d\d)[ -]{1,3}[A-Za-z<#]", re.MULTILINE)
# Blanks, not \s, before the name: \s would run across line ends, so each line start would
# rescan the lines below it (quadratic in a body of blank lines); a folded value still counts.
_MSGID_LINE = re.compile(
    r"^[ \t]*message-id[ \t]*:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]{1,500}>)",
    re.IGNORECASE | re.MULTILINE,
)
_BODY_SCAN = 65536
_REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status")
_FEEDBACK_PARTS = ("message/feedback-report",)
_MDN_PARTS = ("message/disposition-notification", "message/global-disposition-notification")
_ORIGINAL_TYPES = (
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "text/rfc822-header",
    "message/global-headers",
)
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_RECEIPT_SOURCE = "report (receipt)"
"""The source of the signals that say "a read or delivery receipt" (``Classification.receipt``)."""


def _param(value: str, name: str) -> str | None:
    """A parameter of a structured header value (``report-type`` of Content-Type)."""
    if name not in value.lower():
        return None
    match = re.search(
        rf"(?:^|;)\s*{re.escape(name)}\s*=\s*(?:\"([^\"]*)\"|([^;\s]*))", value, re.IGNORECASE
    )
    if match is None:
        return None
    return (match.group(1) if match.group(1) is not None else match.group(2)).strip().lower()


def _fields(report: str) -> list[dict[str, str]]:
    """Header-style blocks (separated by blank lines) as lower-cased name -> value dicts."""
    blocks: list[dict[str, str]] = []
    block: dict[str, list[str]] = {}  # each field's parts, joined once at the block's end
    last = ""
    for line in report.splitlines():
        if not line.strip():
            if block:
                blocks.append(_joined_fields(block))
            block, last = {}, ""
        elif line[:1] in (" ", "\t") and last:
            block[last].append(line.strip())  # a folded line: not a copy of the value per line
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            block.setdefault(last, [value.strip()])
    if block:
        blocks.append(_joined_fields(block))
    return blocks


def _joined_fields(block: dict[str, list[str]]) -> dict[str, str]:
    return {name: " ".join(parts) for name, parts in block.items()}


def _code_and_status(report: str) -> tuple[int | None, str | None]:
    """SMTP reply code and enhanced status code found in a diagnostic or NDR text."""
    match = _CODE_WITH_STATUS.search(report)
    if match is not None:
        return int(match.group(1)), match.group(2)
    code_match = (
        _LEADING_CODE.match(report) or _CODE_AFTER_WORD.search(report) or _LINE_CODE.search(report)
    )
    status_match = _FAILURE_STATUS.search(report)
    return (
        int(code_match.group(1)) if code_match else None,
        status_match.group(0) if status_match else None,
    )


def _original_message_id(email: InboundEmail, heads: dict[str, str]) -> str | None:
    """Message-ID of the returned message: DSN field, attached original, or quoted headers."""
    for name in ("original-message-id", "x-original-message-id"):
        value = heads.get(name)
        if value:
            ids = parse_msg_ids(value)
            if ids:
                return ids[0]
    for attachment in email.attachments:
        if attachment.content_type in _ORIGINAL_TYPES:
            match = _MSGID_LINE.search(_attached_head(attachment))
            if match:
                ids = parse_msg_ids(match.group(1))
                if ids:
                    return ids[0]
    match = _MSGID_LINE.search(email.body[:_BODY_SCAN])
    if match:
        ids = parse_msg_ids(match.group(1))
        if ids:
            return ids[0]
    return None


def _attached_head(attachment: Attachment) -> str:
    """The header block of an attached message (at most the first 64 KiB)."""
    head = attachment.data[:_BODY_SCAN].decode("utf-8", "replace")
    end = re.search(r"\r?\n\r?\n", head)
    return head[: end.start()] if end else head


def _action_of(block: dict[str, str]) -> str:
    """A DSN recipient block's action, lower case, without a trailing comment; a block that
    has no Action field but a 5.x.x (4.x.x) Status is "failed" ("delayed")."""
    action = block.get("action", "").strip().lower().split("(", 1)[0].strip()
    if action:
        return action
    status = _STATUS.search(block.get("status", ""))
    if status is None or status.group(1) == "2":
        return ""
    return "failed" if status.group(1) == "5" else "delayed"


def parse_delivery_status(report: str) -> tuple[str | None, str | None, int | None, str]:
    """``(action, status, smtp_code, diagnostic)`` of the first failed recipient of a DSN body."""
    blocks = _fields(report)
    recipients = [b for b in blocks[1:] if "action" in b or "status" in b] or [
        b for b in blocks if "action" in b or "status" in b
    ]
    chosen = next((b for b in recipients if _action_of(b) == "failed"), None)
    if chosen is None:
        chosen = next((b for b in recipients if _action_of(b) == "delayed"), None)
    if chosen is None and recipients:
        chosen = recipients[0]
    if chosen is None:
        return None, None, None, ""
    action = _action_of(chosen) or None
    diagnostic = chosen.get("diagnostic-code", "")
    kind, sep, rest = diagnostic.partition(";")
    diagnostic_text = rest.strip() if sep and len(kind) < 20 else diagnostic.strip()
    code, diag_status = _code_and_status(diagnostic_text)
    status_match = _STATUS.search(chosen.get("status", ""))
    status = status_match.group(0) if status_match else diag_status
    return action, status, code, diagnostic_text


def _all_delivered(report: str) -> bool:
    """Whether every recipient of a DSN body was delivered, relayed or expanded: an action of
    :data:`_SUCCESS_ACTIONS` (a comment after it allowed) and no 4.x.x or 5.x.x status. A
    report with one recipient delivered and one failed, or a failed one written without its
    Action field, is a bounce, not a receipt."""
    blocks = _fields(report)
    recipients = [b for b in blocks[1:] if "action" in b or "status" in b] or [
        b for b in blocks if "action" in b or "status" in b
    ]
    for block in recipients:
        action = _action_of(block)
        status = _STATUS.search(block.get("status", ""))
        if action not in _SUCCESS_ACTIONS or (status is not None and status.group(0)[0] in "45"):
            return False
    return bool(recipients)


def _bounce_info(
    email: InboundEmail,
    heads: dict[str, str],
    report: str | None,
    fatal_codes: Sequence[int],
) -> BounceInfo:
    """Details of a message already classified as a bounce (DSN fields, else its text)."""
    action = status = None
    code: int | None = None
    diagnostic = ""
    if report is not None:
        action, status, code, diagnostic = parse_delivery_status(report)
    if code is None and status is None:
        body = email.body[:_BODY_SCAN]
        code, status = _code_and_status(body)
        if code is not None or status is not None:
            position = _diag_pos(body, code, status)
            line_start = body.rfind("\n", 0, position) + 1
            line_end = body.find("\n", line_start)
            diagnostic = body[line_start : line_end if line_end >= 0 else None].strip()
    if status is not None and status[0] in "45":
        status_class: int = int(status[0])
    elif action == "delayed":
        status_class = 4
    elif action == "failed":
        status_class = 5
    elif code is not None and code // 100 in (4, 5):
        status_class = code // 100
    elif text.delay_phrase(email.subject) or text.delay_phrase(text.body_region(email.body)):
        status_class = 4
    else:
        status_class = 5
    return BounceInfo(
        action=action,
        status=status,
        status_class=status_class,
        smtp_code=code,
        diagnostic=diagnostic[:1000],
        original_message_id=_original_message_id(email, heads),
        permanent=status_class == 5 or (code is not None and code // 100 == 5),
        fatal_code=code is not None and code in fatal_codes,
    )


def _diag_pos(body: str, code: int | None, status: str | None) -> int:
    """Where the failure code sits in the body (for quoting the diagnostic line)."""
    for needle in (f"{code}" if code is not None else None, status):
        if needle:
            found = body.find(needle, 0, _BODY_SCAN)
            if found >= 0:
                return found
    return 0


# --------------------------------------------------------------------------- sender analysis


@functools.lru_cache(maxsize=64)
def _own_set(addresses: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalise_address(a) for a in addresses)


_ADDRESS = re.compile(r"<?([^<>\s\"@,;]{1,128})@[^<>\s\",;]{1,255}>?")
_DAEMON_LOCAL = frozenset(
    {"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "maildaemon", "mdaemon"}
)
_DELIVERY_SYSTEM = re.compile(
    r"^mail[-_.]?delivery[-_.]?(?:sub)?system$|^mail[-_.]?delivery$|^maildelivery$"
)
_DAEMON_NAME = re.compile(
    r"\bmailer[-_ ]?daemon\b|\bmail delivery (?:sub)?system\b|\bmail delivery service\b",
    re.IGNORECASE,
)
_POSTMASTER_LOCAL = frozenset({"postmaster", "post_master", "post-master", "hostmaster"})
_POSTMASTER_NAME = re.compile(
    r"^\W*(?:postmaster|mail administrator|mail system|e-?mail system)\W*$", re.IGNORECASE
)
_NOREPLY_WORDS = ("noreply", "donotreply", "dontreply", "noresponse", "noreturn", "nereponds")
_NOREPLY_NAME = re.compile(r"\bno[-_ .]?reply\b|\bdo[-_ .]?not[-_ .]?reply\b", re.IGNORECASE)
_ROBOT_WORDS = frozenset(
    {
        *("notify", "robot", "bounce", "bounces", "nagios", "zabbix", "icinga", "cron", "root"),
        *("system", "sysadmin", "auto", "aviso", "avisos", "avis", "www-data", "wwwrun"),
        *("logwatch", "grafana", "prometheus", "datadog", "pagerduty", "opsgenie", "veeam"),
        *("smartd", "mdadm"),
    }
)
# Word beginnings of machine senders in several languages: notification / notificación /
# notificação / notifiche, alert / alerta / alerte, automated / automatico / automatisch...
_ROBOT_PREFIXES = (
    "notif",
    "alert",
    "automat",
    "automail",
    "autorepl",
    "autorespon",
    "benachrichtig",
    "mailer",
    "daemon",
    "monitor",
)
_NOREPLY_LOCAL = re.compile(
    r"^(?:" + "|".join(rf"{'[-_.+]?'.join(w)}" for w in _NOREPLY_WORDS) + r")"
    r"|(?:" + "|".join(rf"{'[-_.+]?'.join(w)}" for w in _NOREPLY_WORDS) + r")$"
)
# The tools that send alerts and reports in their own templates (TOOL_TEMPLATE_LINES), and
# the system account smartd and mdadm mail from.
_TOOL_WORDS = frozenset(
    {
        *("nagios", "zabbix", "icinga", "icinga2", "cron", "root", "logwatch", "grafana"),
        *("prometheus", "alertmanager", "datadog", "pagerduty", "opsgenie", "veeam"),
        *("smartd", "mdadm"),
    }
)
_ROBOT_LOCAL = re.compile(
    r"(?:^|[-_.+])(?:(?:" + "|".join(sorted(_ROBOT_WORDS)) + r")(?:$|[-_.+])"
    r"|(?:" + "|".join(_ROBOT_PREFIXES) + r"))"
)
# System accounts that only scripts send from (a web server's PHP mail(), a cron job).
_SCRIPT_ACCOUNTS = frozenset({"www-data", "wwwrun", "apache", "nginx", "httpd", "nobody", "www"})
_LIST_LOCAL = re.compile(
    r"^owner-|-owner$|-request$|-bounces?$|-admin$"
    r"|^(?:majordomo|listserv|listproc|mailman|sympa|ezmlm|lyris)$"
)
_QUOTED_LOCAL = re.compile(r"\"[^\"@\r\n]{1,64}\"@")
# The system mailbox of an Exchange organisation ("Microsoft Outlook"
# <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@...>): it sends NDRs, recall reports and
# other notices, in the recipient's language and sometimes as plain text; nobody writes from it.
_EXCHANGE_SYSTEM_LOCAL = re.compile(r"^microsoftexchange[0-9a-f]{32}$")
# A display name no person has: cron's "Cron Daemon" (Vixie cron, cronie).
_ROBOT_NAME = re.compile(r"\bcron daemon\b", re.IGNORECASE)
_LIST_DOMAIN = re.compile(r"^(?:lists?|listserv|mailman|groups)\.")
# Quick tests that say "nothing to see" for most people's addresses and names.
_LOCAL_HINT = re.compile(
    "|".join(
        [
            "^(?:"
            + "|".join(re.escape(w) for w in sorted(_DAEMON_LOCAL | _POSTMASTER_LOCAL))
            + "|"
            + "|".join(re.escape(w) for w in sorted(_SCRIPT_ACCOUNTS))
            + ")$",
            _DELIVERY_SYSTEM.pattern,
            _NOREPLY_LOCAL.pattern,
            _ROBOT_LOCAL.pattern,
            _LIST_LOCAL.pattern,
            _EXCHANGE_SYSTEM_LOCAL.pattern,
        ]
    )
)
_NAME_HINT = re.compile(
    "|".join(p.pattern for p in (_DAEMON_NAME, _POSTMASTER_NAME, _NOREPLY_NAME, _ROBOT_NAME)),
    re.IGNORECASE,
)


_LIST_OWNER_LOCAL = re.compile(r"^owner-|-owner$|-request$|-admin$")


def _to_list_owner(to: str | None) -> bool:
    """Whether every address of the To field is a list's owner or admin address (``owner-x``,
    ``x-owner``, ``x-request``, ``x-admin``): where list software sends its notices (loop
    alerts, moderation and bounce reports), never where a post to the list goes."""
    if not to:
        return False
    parts = [part for part in to[:2000].split(",") if part.strip()]
    return bool(parts) and all(
        bool(_LIST_OWNER_LOCAL.search(_split_address(part)[0])) for part in parts
    )


def _split_address(value: str) -> tuple[str, str]:
    """``(local part, domain)`` of the first addr-spec in a header value, folded."""
    match = _ADDRESS.search(value[:2000])
    if match is None:
        return "", ""
    address = normalise_address(match.group(0).strip("<>"))
    local, _, domain = address.rpartition("@")
    return local, domain


_SCRIPT_ACCOUNT = "a system account that scripts send from"
_ROBOT_ADDRESS = "a robot's address"
_ROBOT_NAME_NOTE = "a robot's name"
"""The notes of From clues that a person's team mailbox or a web form shows too
(:data:`_TEAM_MAILBOX_NOTES`)."""


def _robot_local(local: str) -> str | None:
    """Why a local part names a machine ("noreply", "notifications", "alerts"), or None."""
    if _NOREPLY_LOCAL.search(local):
        return "a no-reply address"
    if local in _SCRIPT_ACCOUNTS:
        return _SCRIPT_ACCOUNT
    if _ROBOT_LOCAL.search(local):
        return _ROBOT_ADDRESS
    return None


def _from_a_tool(email: InboundEmail) -> bool:
    """Whether the From address names a monitoring or system tool (``zabbix@``,
    ``alertmanager-prod@``, ``root@``): only such a sender writes a tool's template lines as
    its own; a team address (``sysadmin@``, ``alerts@``) may be people pasting one."""
    local = normalise_address(email.sender).rpartition("@")[0]
    return any(word in _TOOL_WORDS for word in re.split(r"[-_.+]", local[:64]))


def _sender_signals(email: InboundEmail) -> list[Signal]:
    """Clues from From: who the sender claims to be (one source: it counts once)."""
    signals: list[Signal] = []
    raw_from = email.header("From") or ""
    local = normalise_address(email.sender).rpartition("@")[0] if "@" in email.sender else ""
    if not local:
        local = _split_address(raw_from)[0]
    name = email.sender_name or raw_from.partition("<")[0]
    if (
        _LOCAL_HINT.search(local) is None
        and _NAME_HINT.search(name[:200]) is None
        and '"@' not in raw_from[:400]
    ):
        return []  # the common case: a person's address, decided by two quick searches
    shown = email.sender or raw_from.strip()[:120]
    if local in _DAEMON_LOCAL or _DAEMON_NAME.search(name[:200]):
        signals.append(
            Signal(
                "sender",
                MailKind.AUTO_GENERATED,
                STRONG,
                f"From: {shown} (mailer daemon)",
                specific=False,
            )
        )
    elif _EXCHANGE_SYSTEM_LOCAL.match(local):
        signals.append(
            Signal(
                "sender",
                MailKind.AUTO_GENERATED,
                STRONG,
                f"From: {shown} (an Exchange organisation's system mailbox)",
                specific=False,
            )
        )
    elif _DELIVERY_SYSTEM.match(local):
        signals.append(
            Signal("sender", MailKind.BOUNCE, WEAK, f"From: {shown} (mail delivery system)")
        )
    if local in _POSTMASTER_LOCAL or _POSTMASTER_NAME.match(name[:200]):
        signals.append(
            Signal(
                "sender",
                MailKind.AUTO_GENERATED,
                WEAK,
                f"From: {shown} (postmaster)",
                specific=False,
            )
        )
    robot = _robot_local(local) if local else None
    if robot is None and _NOREPLY_NAME.search(name[:200]):
        robot = "a no-reply name"
    if robot is None and _ROBOT_NAME.search(name[:200]):
        robot = _ROBOT_NAME_NOTE
    if robot is not None:
        signals.append(
            Signal(
                "sender", MailKind.AUTO_GENERATED, WEAK, f"From: {shown} ({robot})", specific=False
            )
        )
    if _QUOTED_LOCAL.search(raw_from[:400]):
        signals.append(
            Signal(
                "sender",
                MailKind.AUTO_GENERATED,
                WEAK,
                f"From: {shown} (a quoted local part: a fax, SMS or X.400 gateway)",
                specific=False,
            )
        )
    if local and _LIST_LOCAL.search(local):
        signals.append(Signal("sender", MailKind.LIST, WEAK, f"From: {shown} (a list manager)"))
    return signals


def _envelope_signals(email: InboundEmail) -> list[Signal]:
    """Clues from Return-Path, the envelope sender (RFC 5321 4.4)."""
    path = email.return_path
    if path is None:
        return []
    if path == "":
        return [
            Signal(
                "Return-Path",
                MailKind.AUTO_GENERATED,
                STRONG,
                "Return-Path: <> (null return path)",
                specific=False,
            )
        ]
    folded = path.strip().lower()
    local = folded.rpartition("@")[0] if "@" in folded else folded
    if local in _DAEMON_LOCAL:
        return [
            Signal(
                "Return-Path",
                MailKind.AUTO_GENERATED,
                STRONG,
                f"Return-Path: <{path}> (mailer daemon)",
                specific=False,
            )
        ]
    if local in _SCRIPT_ACCOUNTS:
        return [
            Signal(
                "Return-Path",
                MailKind.AUTO_GENERATED,
                WEAK,
                f"Return-Path: <{path[:120]}> ({_SCRIPT_ACCOUNT})",
                specific=False,
            )
        ]
    if re.match(r"^(?:bounces?|bnc)(?:[-_.+=]|$)|[-_.+](?:bounces?|bnc)(?:[-_.+=]|$)", local):
        return [
            Signal(
                "Return-Path",
                MailKind.LIST,
                WEAK,
                f"Return-Path: <{path[:120]}> (a bulk sender's bounce address)",
                specific=False,
            )
        ]
    return []


# --------------------------------------------------------------------------- header signals

_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-autogenerated")
_LIST_HEADERS = (
    "mailing-list",
    "x-mailing-list",
    "x-list",
    "x-ml-name",
    "x-beenthere",
    "x-mailman-version",
    "x-listprocessor-version",
    "x-listserver",
    "x-ecartis-version",
    "x-mlserver",
    "x-loop-list",
)
_LOOP_HEADERS = ("x-loop", "x-otrs-loop", "x-rt-loop-prevention", "rt-loop-prevention")
_BULK_HEADERS = (
    "feedback-id",
    "x-ses-outgoing",
    "x-amz-sns-message-id",
    "x-sg-eid",
    "x-mailgun-sid",
    "x-mc-user",
    "x-pm-message-id",
    "x-csa-complaints",
)
_NOTIFIER_HEADERS = (
    "x-github-reason",
    "x-gitlab-notificationreason",
    "x-gitlab-project",
    "x-bugzilla-reason",
    "x-bugzilla-type",
    "x-jira-fingerprint",
    "x-servicenow-source",
    "x-zendesk-from-account-id",
)
"""Headers that a ticket, issue or alert system writes into its own notifications (GitHub,
GitLab, Bugzilla, Jira, ServiceNow, Zendesk), many of which carry no RFC 3834 mark: mail a
system made, which answering could make a desk-to-desk loop. A person's mail never has them
(a notification a person forwards has them in its attached copy, not at the top)."""
_SIGNAL_HEADERS = frozenset(
    {
        *_AUTOREPLY_HEADERS,
        *_LIST_HEADERS,
        *_LOOP_HEADERS,
        *_BULK_HEADERS,
        *_NOTIFIER_HEADERS,
        *("auto-submitted", "x-apple-action", "precedence", "sender", "x-mailer"),
        *("x-ms-exchange-generated-message-source", "x-ms-exchange-inbox-rules-loop"),
        *("x-ms-exchange-message-is-ndr", "x-failed-recipients", "x-cron-env"),
        "x-list-administrivia",
    }
)
# Mail libraries of programs and scripts (web forms, reports, alerts), not of mail clients.
_SCRIPTED_MAILER = re.compile(
    r"\bphpmailer\b|^php/?[0-9]|\bswift ?mailer\b|\bzend[_ ]mail\b|\bmime::lite\b"
    r"|\bmail::sender\b|\bjavamail\b|\bnodemailer\b|\bmicrosoft cdo\b|\bcdosys\b"
    r"|\bpython\b|\bsmtplib\b|\bperl\b",
    re.IGNORECASE,
)
_EMPTY_GROUP = re.compile(r"^[ \t]*+\"?[^:<>@,\"]{1,100}+\"?[ \t]*:[ \t]*;[ \t]*$")


def _header_signals(
    heads: dict[str, str], names: dict[str, str], list_key: str | None
) -> list[Signal]:
    """Clues from headers: RFC 3834, Precedence, RFC 2369/2919 list fields, vendor marks."""
    signals: list[Signal] = []
    to = heads.get("to")
    if to is not None and ";" in to and _EMPTY_GROUP.match(to[:300]):
        signals.append(
            Signal(
                "To",
                MailKind.LIST,
                WEAK,
                f"To: {to[:120]} (an empty group: undisclosed bulk recipients)",
                specific=False,
            )
        )
    if list_key is None and heads.keys().isdisjoint(_SIGNAL_HEADERS):
        return signals  # the common case: none of the headers below is present
    auto_submitted = heads.get("auto-submitted")
    if auto_submitted is not None:
        token = auto_submitted.split(";", 1)[0].strip().lower()
        if token == "auto-replied":
            signals.append(
                Signal(
                    "Auto-Submitted",
                    MailKind.AUTO_REPLY,
                    STRONG,
                    f"Auto-Submitted: {auto_submitted} (RFC 3834)",
                )
            )
        elif token != "no":
            signals.append(
                Signal(
                    "Auto-Submitted",
                    MailKind.AUTO_GENERATED,
                    STRONG,
                    f"Auto-Submitted: {auto_submitted} (RFC 3834)",
                    specific=False,
                )
            )
    for key in _AUTOREPLY_HEADERS:
        value = heads.get(key)
        if value is None or value.strip().lower() in ("no", "false", "0"):
            continue
        if key == "x-autogenerated" and value.strip().lower() != "reply":
            if value.strip().lower() not in ("forward", "redirect"):  # a rule's forward: a person
                signals.append(
                    Signal(
                        "autoreply header",
                        MailKind.AUTO_GENERATED,
                        STRONG,
                        f"{names[key]}: {value} (generated by the mail system)",
                        specific=False,
                    )
                )
            continue
        signals.append(
            Signal("autoreply header", MailKind.AUTO_REPLY, STRONG, f"{names[key]}: {value}")
        )
    apple = heads.get("x-apple-action")
    if apple is not None and "vacation" in apple.lower():
        signals.append(
            Signal("autoreply header", MailKind.AUTO_REPLY, STRONG, f"X-Apple-Action: {apple}")
        )
    precedence = heads.get("precedence")
    if precedence is not None:
        value = precedence.strip().lower()
        if value in ("bulk", "junk", "list"):
            signals.append(
                Signal(
                    "Precedence",
                    MailKind.LIST,
                    STRONG,
                    f"Precedence: {precedence.strip()}",
                    specific=False,
                )
            )
        elif value in ("auto_reply", "auto-reply"):
            signals.append(
                Signal(
                    "Precedence", MailKind.AUTO_REPLY, STRONG, f"Precedence: {precedence.strip()}"
                )
            )
    administrivia = heads.get("x-list-administrivia")
    if administrivia is not None and administrivia.strip().lower() == "yes":
        signals.append(
            Signal(
                "list notice",
                MailKind.AUTO_GENERATED,
                STRONG,
                "X-List-Administrivia: yes (a notice of the list software, not a post)",
            )
        )
    for list_name in (list_key, *_LIST_HEADERS) if list_key else _LIST_HEADERS:
        list_field = heads.get(list_name)
        if list_field is not None and not list_name.startswith("list-") and _to_list_owner(to):
            signals.append(
                Signal(
                    "list notice",
                    MailKind.AUTO_GENERATED,
                    STRONG,
                    f"{names[list_name]}: {list_field[:200]} on mail to the list's owner "
                    f"({(to or '')[:120]}): a notice of the list software, not a post",
                )
            )
            break
        if list_field is not None:
            signals.append(
                Signal(
                    "list header",
                    MailKind.LIST,
                    STRONG,
                    f"{names[list_name]}: {list_field[:200]} (RFC 2369/2919 list header)"
                    if list_name.startswith("list-")
                    else f"{names[list_name]}: {list_field[:200]} (list manager header)",
                )
            )
            break
    sender = heads.get("sender")
    if sender is not None:
        local, domain = _split_address(sender)
        if local and (_LIST_LOCAL.search(local) or _LIST_DOMAIN.match(domain)):
            signals.append(
                Signal(
                    "Sender",
                    MailKind.LIST,
                    STRONG,
                    f"Sender: {sender[:200]} (a list's distribution address)",
                )
            )
        elif local and _robot_local(local):
            signals.append(
                Signal(
                    "Sender",
                    MailKind.AUTO_GENERATED,
                    WEAK,
                    f"Sender: {sender[:200]} ({_robot_local(local)})",
                    specific=False,
                )
            )
    for key in _LOOP_HEADERS:
        value = heads.get(key)
        if value is not None:
            signals.append(
                Signal(
                    "loop header",
                    MailKind.AUTO_GENERATED,
                    WEAK,
                    f"{names[key]}: {value[:200]}",
                    specific=False,
                )
            )
            break
    for key in _BULK_HEADERS:
        value = heads.get(key)
        if value is not None:
            signals.append(
                Signal(
                    "bulk-sender header",
                    MailKind.AUTO_GENERATED,
                    WEAK,
                    f"{names[key]}: {value[:120]} (a bulk sending service)",
                    specific=False,
                )
            )
            break
    mailer = heads.get("x-mailer")
    if mailer is not None:
        program = _SCRIPTED_MAILER.search(mailer[:200])
        if program is not None:
            signals.append(
                Signal(
                    "X-Mailer",
                    MailKind.AUTO_GENERATED,
                    WEAK,
                    f"X-Mailer: {mailer[:120]} (a program's mail library)",
                    specific=False,
                )
            )
    generated = heads.get("x-ms-exchange-generated-message-source")
    if generated is not None and "mailbox rules" not in generated.lower():
        signals.append(
            Signal(
                "Exchange header",
                MailKind.AUTO_GENERATED,
                WEAK,
                f"X-MS-Exchange-Generated-Message-Source: {generated[:120]}",
                specific=False,
            )
        )
    rules_loop = heads.get("x-ms-exchange-inbox-rules-loop")
    if rules_loop is not None:
        signals.append(
            Signal(
                "Exchange header",
                MailKind.NORMAL,
                0,
                f"X-MS-Exchange-Inbox-Rules-Loop: {rules_loop[:120]} (forwarded by the "
                "sender's own inbox rule: the person wrote it; not a sign of automatic mail)",
            )
        )
    if heads.get("x-ms-exchange-message-is-ndr") is not None:
        signals.append(
            Signal(
                "Exchange NDR header",
                MailKind.BOUNCE,
                DEFINITIVE,
                "X-MS-Exchange-Message-Is-Ndr present (Exchange NDR)",
            )
        )
    failed = heads.get("x-failed-recipients")
    if failed is not None:
        signals.append(
            Signal(
                "X-Failed-Recipients",
                MailKind.BOUNCE,
                STRONG,
                f"X-Failed-Recipients: {failed[:120]}",
            )
        )
    notifier = next((name for name in _NOTIFIER_HEADERS if name in heads), None)
    if notifier is not None:
        signals.append(
            Signal(
                "notifier header",
                MailKind.AUTO_GENERATED,
                STRONG,
                f"{names[notifier]}: {heads[notifier][:120]} (a ticket, issue or alert "
                "system's notification)",
            )
        )
    cron = heads.get("x-cron-env")
    if cron is not None:
        signals.append(
            Signal(
                "X-Cron-Env",
                MailKind.AUTO_GENERATED,
                STRONG,
                f"X-Cron-Env: {cron[:120]} (output of a cron job)",
            )
        )
    return signals


# --------------------------------------------------------------------------- MIME structure


def _structure_signals(
    email: InboundEmail, heads: dict[str, str]
) -> tuple[list[Signal], str | None]:
    """Clues from report types and attached parts; also the DSN text when there is one."""
    content_type = heads.get("content-type") or ""
    if not email.attachments and "report" not in content_type.lower():
        return [], None
    signals: list[Signal] = []
    is_report = content_type.split(";", 1)[0].strip().lower() == "multipart/report"
    report_type = _param(content_type, "report-type") if is_report else None
    types = {a.content_type for a in email.attachments}
    dsn_part = next((a for a in email.attachments if a.content_type in _REPORT_PARTS), None)
    report: str | None = None
    if report_type == "delivery-status" or dsn_part is not None:
        if dsn_part is not None:
            report = dsn_part.data[:_BODY_SCAN].decode("utf-8", "replace")
        action = parse_delivery_status(report)[0] if report is not None else None
        if action in _SUCCESS_ACTIONS and report is not None and _all_delivered(report):
            signals.append(
                Signal(
                    _RECEIPT_SOURCE,
                    MailKind.AUTO_GENERATED,
                    DEFINITIVE,
                    f"delivery-status report with Action: {action} (a success DSN)",
                )
            )
        else:
            signals.append(
                Signal(
                    "report",
                    MailKind.BOUNCE,
                    DEFINITIVE,
                    f"Content-Type: multipart/report; report-type={report_type} (RFC 3464 DSN)"
                    if report_type
                    else "message/delivery-status part (RFC 3464 DSN)",
                )
            )
    elif report_type == "feedback-report" or types & set(_FEEDBACK_PARTS):
        signals.append(
            Signal(
                "report",
                MailKind.AUTO_GENERATED,
                DEFINITIVE,
                "feedback report (RFC 5965 ARF: abuse/complaint report)",
            )
        )
    elif report_type == "disposition-notification" or types & set(_MDN_PARTS):
        signals.append(
            Signal(
                _RECEIPT_SOURCE,
                MailKind.AUTO_GENERATED,
                DEFINITIVE,
                "Content-Type: multipart/report; report-type=disposition-notification",
            )
        )
    elif is_report:
        signals.append(
            Signal(
                "report",
                MailKind.AUTO_GENERATED,
                STRONG,
                f"Content-Type: multipart/report; report-type={report_type or '(none)'} "
                "(RFC 6522: machine report)",
                specific=False,
            )
        )
    for attachment in email.attachments[:50]:
        if attachment.content_type in ("text/calendar", "application/ics"):
            signals.append(
                Signal(
                    "attachment",
                    MailKind.AUTO_GENERATED,
                    WEAK,
                    "a calendar invitation (text/calendar)",
                    specific=False,
                )
            )
            break
        if attachment.content_type == "message/external-body":
            signals.append(
                Signal(
                    "attachment",
                    MailKind.AUTO_GENERATED,
                    WEAK,
                    "a message/external-body reference (RFC 2046 5.2.3: a file server's "
                    "announcement)",
                )
            )
            break
        if text.dmarc_report_name(attachment.filename):
            signals.append(
                Signal(
                    "attachment",
                    MailKind.AUTO_GENERATED,
                    STRONG,
                    f"attachment {attachment.filename[:120]} (DMARC aggregate report, "
                    "RFC 7489 7.2.1.1)",
                )
            )
            break
        if attachment.content_type in _ORIGINAL_TYPES:
            head = _attached_head(attachment)
            if re.search(r"^x-hmxmroriginalrecipient:", head, re.IGNORECASE | re.MULTILINE):
                signals.append(
                    Signal(
                        "attachment",
                        MailKind.AUTO_GENERATED,
                        STRONG,
                        "attached message carries X-HmXmrOriginalRecipient (Hotmail JMRP "
                        "complaint report)",
                    )
                )
                break
            signals.append(
                Signal(
                    "attachment",
                    MailKind.BOUNCE,
                    WEAK,
                    f"a returned message is attached ({attachment.content_type})",
                )
            )
            break
    return signals, report


# --------------------------------------------------------------------------- text signals


def _text_receipt_signals(email: InboundEmail, structure: Sequence[Signal]) -> list[Signal]:
    """Outlook's read receipt sent as plain text: subject "Read: ..." (or its translation) and
    a body saying the message "was read on" a date. Both must hold: a person's subject
    starting "Read:" is not a receipt, nor a sentence about a message that was read."""
    if any(s.source == _RECEIPT_SOURCE for s in structure):
        return []
    prefix = text.read_receipt_subject(email.subject)
    if prefix is None:
        return []
    sentence = text.read_receipt_body(text.body_region(email.body))
    if sentence is None:
        return []
    return [
        Signal(
            _RECEIPT_SOURCE,
            MailKind.AUTO_GENERATED,
            STRONG,
            f"Subject {prefix!r} and body {sentence!r} (a read receipt sent as text)",
        )
    ]


def _subject_signals(subject: str) -> list[Signal]:
    """Clues from the subject (one weak source; a forwarded subject gives none)."""
    _, reply, forward = strip_prefixes(subject[: text.SUBJECT_WINDOW])
    if forward:
        return []
    signals: list[Signal] = []
    # "Re: ** PROBLEM Service Alert ..." is a person answering an alert: no tool sends a reply
    machine = None if reply else text.machine_notice_subject(subject)
    if machine is not None:
        signals.append(
            Signal(
                "subject",
                MailKind.AUTO_GENERATED,
                WEAK,
                f"Subject has {machine!r} (a cron job's or monitoring system's subject)",
            )
        )
    if not text.subject_may_signal(subject):
        return signals
    dmarc = text.dmarc_report_subject(subject)
    if dmarc is not None:
        signals.append(
            Signal(
                "subject",
                MailKind.AUTO_GENERATED,
                STRONG,
                f"Subject {dmarc!r}... (DMARC aggregate report, RFC 7489 7.2.1.1)",
            )
        )
    phrase = text.auto_reply_subject(subject)
    if phrase is not None:
        signals.append(
            Signal(
                "subject",
                MailKind.AUTO_REPLY,
                WEAK,
                f"Subject starts with {phrase!r} (out-of-office subject)",
            )
        )
    challenge = text.challenge_subject(subject)
    if challenge is not None:
        signals.append(
            Signal(
                "subject",
                MailKind.AUTO_REPLY,
                WEAK,
                f"Subject has {challenge!r} (challenge-response subject)",
            )
        )
    bounce = text.bounce_subject(subject)
    if bounce is not None:
        signals.append(
            Signal("subject", MailKind.BOUNCE, WEAK, f"Subject has {bounce!r} (bounce subject)")
        )
    digest = text.digest_subject(subject)
    if digest is not None:
        signals.append(
            Signal("subject", MailKind.LIST, WEAK, f"Subject has {digest!r} (list digest)")
        )
    report = text.report_subject(subject)
    if report is not None:
        signals.append(
            Signal(
                "subject",
                MailKind.AUTO_GENERATED,
                WEAK,
                f"Subject has {report!r} (complaint / feedback report)",
            )
        )
    return signals


def _body_signals(email: InboundEmail) -> list[Signal]:
    """Clues from what the body says (one weak source, read before any forwarded history)."""
    if strip_prefixes(email.subject[: text.SUBJECT_WINDOW])[2]:
        return []
    # a body read out of an attachment (a forwarded mail, a .txt, an invitation) is not the
    # sender's own text: the message is read as having none, as it was before intake read it
    wrapped = any(note.kind is IntakeNoteKind.BODY_FROM_ATTACHMENT for note in email.notes)
    region = "" if wrapped else text.body_region(email.body)
    if not region.strip():
        files = [a for a in email.attachments if a.content_type not in _ORIGINAL_TYPES]
        if files and (wrapped or not email.body.strip()) and not (email.body_html or "").strip():
            return [
                Signal(
                    "body",
                    MailKind.AUTO_GENERATED,
                    WEAK,
                    "no text at all, only attachments (a scanner, fax or device)",
                    specific=False,
                )
            ]
        return []
    signals: list[Signal] = []
    says = text.body_phrases(region)  # the four readings below, in one pass
    failure = says.failure
    if failure is not None:
        signals.append(
            Signal("body", MailKind.BOUNCE, WEAK, f"body reads like a delivery report: {failure!r}")
        )
    features = says.auto_reply
    if len(features) >= 2 and set(features) - {"return", "contact", "confirmation"}:
        quoted = ", ".join(f"{name} {phrase!r}" for name, phrase in features.items())
        signals.append(
            Signal("body", MailKind.AUTO_REPLY, WEAK, f"body reads like an auto-reply: {quoted}")
        )
    notice = says.notice
    if notice in text.TOOL_TEMPLATE_LINES and not _from_a_tool(email):
        notice = None  # a person (a sysadmin team, too) pasting an alert they got
    if notice is not None:
        signals.append(
            Signal(
                "body",
                MailKind.AUTO_GENERATED,
                WEAK,
                f"body reads like a machine notice: {notice!r}",
            )
        )
    footer = says.footer
    if footer is not None:
        signals.append(Signal("body", MailKind.LIST, WEAK, f"body has a list footer: {footer!r}"))
    return signals


# --------------------------------------------------------------------------- weighing


_WRITERS_WORDS = frozenset({"subject", "body"})
"""The sources a person types (with a message they attach: :func:`_writer_source`)."""


def _writer_source(signal: Signal) -> bool:
    """Whether ``signal`` comes from what the writer chose to send: the subject, the body, or
    a message attached (a person attaches the mail that came back to them)."""
    return signal.source in _WRITERS_WORDS or (
        signal.source == "attachment" and signal.kind is MailKind.BOUNCE
    )


def _score(signals: Sequence[Signal], kind: MailKind | None = None) -> int:
    """Sum over sources of each source's strongest signal (of ``kind``, when given).

    In the total (``kind`` None: is the message automatic at all?), once one of the writer's
    sources (:func:`_writer_source`) reads like a bounce, all of them count as one source.
    People write to a service desk about mail that bounced ("Returned mail", "my mail to Bob
    is undeliverable: 550 user unknown", with the returned mail attached, or a word about
    being away next week), so what they wrote about it is one clue, however often and however
    they say it: a message is a bounce only with a clue the writer does not type (a delivery
    report, a null return path, a mailer-daemon or postmaster address, ``Auto-Submitted``). A
    bounce is deleted without a reply (DESIGN 4): a person's mail taken for one would be
    lost. Once such a clue says "a machine", the subject and the body count apart again to
    name the kind (an Exim delay warning marked ``Auto-Submitted: auto-replied`` is still a
    bounce).
    """
    merge = kind is None and any(s.kind is MailKind.BOUNCE and _writer_source(s) for s in signals)
    best: dict[str, int] = {}
    for signal in signals:
        if kind is not None and (signal.kind is not kind or not signal.specific):
            continue
        source = "writer" if merge and _writer_source(signal) else signal.source
        if signal.weight > best.get(source, 0):
            best[source] = signal.weight
    return sum(best.values())


_TEAM_MAILBOX_NOTES = tuple(
    f"({note})" for note in (_ROBOT_ADDRESS, _ROBOT_NAME_NOTE, _SCRIPT_ACCOUNT)
)
"""How the reasons of From clues end that a person's team mailbox or a web form shows too
(``sysadmin@``, ``monitoring@``, ``www-data@``): they say a script or a team may have sent
the message, not that the mail system did."""


def _confirms_bounce(signal: Signal) -> bool:
    """Whether ``signal`` is a clue the writer does not type that says the mail system wrote
    the message (:func:`_score`): a delivery report or another bounce clue outside the
    writer's words, a null or mailer-daemon Return-Path, ``Auto-Submitted``, a mailer-daemon,
    system-mailbox, postmaster, no-reply or gateway From. A loop header, ``Precedence``, a
    list header or a team mailbox's From (:data:`_TEAM_MAILBOX_NOTES`) say a relay, a list or
    a team handled the message, not that it failed."""
    if signal.kind is MailKind.BOUNCE:
        return not _writer_source(signal)
    if signal.source in ("Return-Path", "Auto-Submitted"):
        return signal.weight >= STRONG
    if signal.source == "sender":
        return signal.weight >= STRONG or not signal.reason.endswith(_TEAM_MAILBOX_NOTES)
    return False


def _unconfirmed_bounce_talk(signals: list[Signal]) -> list[Signal]:
    """``signals`` with the writer's bounce clues (subject, body, an attached message) made
    notes of weight 0 when they are what makes the message automatic and no clue the writer
    does not type confirms them (:func:`_confirms_bounce`): a person writing from a team
    mailbox (``sysadmin@``) or through a forwarder that adds ``X-Loop`` about a parcel "not
    delivered yet" or a "Message not delivered" error is no bounce, which would be deleted
    without a call or a reply (DESIGN 4)."""
    talk = [s for s in signals if s.kind is MailKind.BOUNCE and _writer_source(s) and s.weight]
    if not talk or _score(signals) < THRESHOLD:
        return signals  # a person's mail anyway: its reasons say so as before
    if any(_confirms_bounce(s) for s in signals if s.weight):
        return signals
    return [
        attrs.evolve(
            s, weight=0, reason=f"{s.reason}; unconfirmed: nothing says a mail system wrote it"
        )
        if s in talk
        else s
        for s in signals
    ]


_ROBOT_SOURCES = frozenset({"sender", "Sender"})
"""The sources that say who wrote a message (From, Sender): a robot's address there names
machine mail, which a generic list default (``Precedence: bulk``) does not outrank."""


def _choose(signals: Sequence[Signal]) -> MailKind:
    """The kind named by the evidence (see the module docstring for the order)."""
    weights = {kind: _score(signals, kind) for kind in _ORDER}
    for kind in _ORDER:
        if weights[kind] >= THRESHOLD:
            return kind
    best = max(_ORDER, key=lambda k: (weights[k], -_ORDER.index(k)))
    if weights[best] > 0:
        return best
    generic = [s for s in signals if not s.specific and s.kind in _ORDER]
    if any(s.source in _ROBOT_SOURCES and s.kind is MailKind.AUTO_GENERATED for s in generic):
        # an alert or notice from a robot's address with "Precedence: bulk" (Datadog, Jira):
        # Precedence only asks not to be answered, the From says a system wrote it
        return MailKind.AUTO_GENERATED
    if generic:
        top = max(generic, key=lambda s: (s.weight, -_ORDER.index(s.kind)))
        return top.kind
    return MailKind.AUTO_GENERATED


def classify(
    email: InboundEmail,
    *,
    own_addresses: Sequence[str] = (),
    loop_header: str = "X-ASM-Email-Rules-Loop",
    fatal_codes: Sequence[int] = FATAL_SMTP_CODES,
) -> Classification:
    """Classify a parsed message by weighing every signal (own mail outranks everything).

    Returns the kind, the evidence and its reasons, and for a bounce its :class:`BounceInfo`.
    ``own_addresses`` are the desk's own addresses (a message from one is OWN_MAIL): a
    sequence of str, ``("help@desk.example",)``; a bare str is refused with
    :class:`~asm_email_rules.errors.ArgumentTypeError`, since read one character at a time it
    would recognise none of them and the desk's mail would loop back as new calls.
    Never raises for any message: an unexpected failure inside gives AUTO_GENERATED with a
    reason saying so. Arguments of the wrong type raise ArgumentTypeError.
    """
    require_type(email, InboundEmail, "classify", "email")
    own_addresses = require_strings(own_addresses, "classify", "own_addresses")
    try:
        return _classify(email, own_addresses, loop_header, fatal_codes)
    except Exception as exc:  # classification must never stop the pipeline
        return Classification(
            MailKind.AUTO_GENERATED,
            (f"classification failed ({type(exc).__name__}); treated as automatic mail",),
        )


def _classify(
    email: InboundEmail,
    own_addresses: Sequence[str],
    loop_header: str,
    fatal_codes: Sequence[int],
) -> Classification:
    heads: dict[str, str] = {}
    names: dict[str, str] = {}
    list_key: str | None = None
    for key, field in email.headers:
        lower = key.lower()
        if lower not in heads:
            heads[lower] = field
            names[lower] = key
            if list_key is None and lower.startswith("list-"):
                list_key = lower

    suppress = heads.get("x-auto-response-suppress") or ""
    suppressed = bool(
        {t.strip().lower() for t in suppress.split(",")} & {"all", "autoreply", "oof"}
    )
    suppress_reason = (
        f"X-Auto-Response-Suppress: {suppress} (a request not to auto-reply; "
        "not a sign of automatic mail)"
    )

    own: list[str] = []
    sender = normalise_address(email.sender)
    if sender and sender in _own_set(tuple(own_addresses)):
        own.append(f"From: {email.sender} is one of our own addresses")
    loop = heads.get(loop_header.lower())
    if loop is not None:
        own.append(f"{loop_header}: {loop} (our loop header)")
    if own:
        reasons = [*own, suppress_reason] if suppressed else own
        return Classification(
            MailKind.OWN_MAIL,
            tuple(reasons),
            auto_reply_suppressed=suppressed,
            evidence=tuple(Signal("own", MailKind.OWN_MAIL, DEFINITIVE, r) for r in own),
            score=DEFINITIVE,
        )

    structure, report = _structure_signals(email, heads)
    signals = [
        *structure,
        *_text_receipt_signals(email, structure),
        *_header_signals(heads, names, list_key),
        *_envelope_signals(email),
        *_sender_signals(email),
        *_subject_signals(email.subject),
    ]
    if _score(signals) >= 1:  # the body never decides alone: read it only to confirm or name
        signals.extend(_body_signals(email))
    signals = _unconfirmed_bounce_talk(signals)
    score = _score(signals)
    counted = [s for s in signals if s.weight > 0]
    notes = [s.reason for s in signals if s.weight == 0]
    if score < THRESHOLD:
        kind = MailKind.NORMAL
        reasons = [s.reason for s in counted]
        if reasons:
            reasons.append(f"weak evidence only ({score} of {THRESHOLD} needed): a person's mail")
        reasons += notes
    else:
        kind = _choose(counted)
        ordered = sorted(counted, key=lambda s: (s.kind is not kind or not s.specific, -s.weight))
        reasons = [s.reason for s in ordered] + notes
    if suppressed:
        reasons.append(suppress_reason)
    if not reasons:
        reasons.append("no sign of automatic mail")
    receipt = kind is not MailKind.NORMAL and any(s.source == _RECEIPT_SOURCE for s in signals)
    if receipt and kind is MailKind.BOUNCE:
        # a report whose recipients were all delivered says so itself: "Delivery report" in
        # the subject or "This is the mail system at host" in its text does not make it fail
        kind = MailKind.AUTO_GENERATED
        reasons.append("a delivery receipt (every recipient delivered or relayed), not a bounce")
    bounce = _bounce_info(email, heads, report, fatal_codes) if kind is MailKind.BOUNCE else None
    return Classification(
        kind=kind,
        reasons=tuple(reasons),
        bounce=bounce,
        auto_reply_suppressed=suppressed,
        receipt=receipt,
        evidence=tuple(signals),
        score=score,
    )
