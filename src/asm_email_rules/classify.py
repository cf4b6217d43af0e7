"""Automatic-mail classification: own mail, bounces (DSN and text NDRs), auto-replies, lists.

Pure and total: :func:`classify` reads only the :class:`InboundEmail` and never raises. Every
reason names the header (or subject) and the value that matched, so a decision can say why.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence

import attrs

from asm_email_rules.addresses import normalise_address
from asm_email_rules.header_values import parse_msg_ids
from asm_email_rules.model import InboundEmail
from asm_email_rules.settings import FATAL_SMTP_CODES

__all__ = ["BounceInfo", "Classification", "MailKind", "classify", "parse_delivery_status"]


class MailKind(enum.Enum):
    """What kind of mail a message is, for the rules: only NORMAL mail is a person writing."""

    NORMAL = "normal"
    AUTO_REPLY = "auto_reply"
    AUTO_GENERATED = "auto_generated"
    BOUNCE = "bounce"
    LIST = "list"
    OWN_MAIL = "own_mail"


@attrs.frozen
class BounceInfo:
    """What a delivery report says about the failed message (RFC 3464 / RFC 3463 / RFC 5321)."""

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

    ``auto_reply_suppressed`` is set by ``X-Auto-Response-Suppress: All/AutoReply/OOF``: a
    request not to auto-reply to the message, not a sign that the message is automatic.
    """

    kind: MailKind
    reasons: tuple[str, ...]
    bounce: BounceInfo | None = None
    auto_reply_suppressed: bool = False

    @property
    def automatic(self) -> bool:
        """True for anything but mail a person wrote to us directly."""
        return self.kind is not MailKind.NORMAL

    @property
    def may_auto_reply(self) -> bool:
        """True only for normal mail that did not ask not to be auto-replied to (RFC 3834)."""
        return self.kind is MailKind.NORMAL and not self.auto_reply_suppressed


_OOO_PHRASES = (
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "automatic response",
    "abwesenheitsnotiz",
    "automatische antwort",
    "abwesend",
    "réponse automatique",
    "reponse automatique",
    "absence",
    "absent",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "fuori sede",
    "risposta automatica",
    "afwezig",
    "automatisch antwoord",
    "frånvaro",
    "autosvar",
    "automatiskt svar",
    "automatisk svar",
    "poza biurem",
    "automatyczna odpowiedź",
    "odpowiedź automatyczna",
    "resposta automática",
    "ausência",
    "automaattinen vastaus",
    "poissa",
    "automatikus válasz",
    "automatická odpověď",
    "автоматический ответ",
    "автоответ",
    "otomatik yanıt",
    "自动回复",
    "自動回覆",
    "自動応答",
    "不在",
)
_OOO_ALTERNATIVES = "|".join(re.escape(p) for p in _OOO_PHRASES)
_OOO_SUBJECT = re.compile(
    rf"\s*(?:\[\s*({_OOO_ALTERNATIVES})\s*\]|({_OOO_ALTERNATIVES})\s*(?:[:：]|$))", re.IGNORECASE
)
_BOUNCE_SUBJECT = re.compile(
    r"\s*(?:undeliverable|undelivered mail|delivery status notification|mail delivery failed"
    r"|returned mail|delivery failure|failure notice|non remis|unzustellbar"
    r"|no se puede entregar|mail delivery subsystem|delivery has failed)",
    re.IGNORECASE,
)
_DAEMONS = frozenset({"mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster"})
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CODE_WITH_STATUS = re.compile(r"(?<![\d.])([245]\d\d)[ -]#?([245]\.\d{1,3}\.\d{1,3})\b")
_CODE_AFTER_WORD = re.compile(
    r"(?:smtp;|said:|error|returned|code|reply:)\W{0,4}([245]\d\d)\b", re.IGNORECASE
)
_LEADING_CODE = re.compile(r"\s*#?([245]\d\d)\b")
_MSGID_LINE = re.compile(r"^\s*message-id\s*:\s*(<[^>\r\n]{1,500}>)", re.IGNORECASE | re.MULTILINE)
_BODY_SCAN = 65536
_REPORT_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = (
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "message/global-headers",
)


@functools.lru_cache(maxsize=64)
def _own_set(addresses: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalise_address(a) for a in addresses)


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


def _fields(text: str) -> list[dict[str, str]]:
    """Header-style blocks (separated by blank lines) as lower-cased name -> value dicts."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if block:
                blocks.append(block)
            block, last = {}, ""
        elif line[:1] in (" ", "\t") and last:
            block[last] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            block.setdefault(last, value.strip())
    if block:
        blocks.append(block)
    return blocks


def _code_and_status(text: str) -> tuple[int | None, str | None]:
    """SMTP reply code and enhanced status code found in a diagnostic or NDR text."""
    match = _CODE_WITH_STATUS.search(text)
    if match is not None:
        return int(match.group(1)), match.group(2)
    code_match = _LEADING_CODE.match(text) or _CODE_AFTER_WORD.search(text)
    status_match = _STATUS.search(text)
    return (
        int(code_match.group(1)) if code_match else None,
        status_match.group(0) if status_match else None,
    )


def _original_message_id(email: InboundEmail, heads: dict[str, str]) -> str | None:
    """Message-ID of the returned message: DSN field, attached original, or quoted headers."""
    for name in ("Original-Message-ID", "X-Original-Message-ID"):
        value = heads.get(name.lower())
        if value:
            ids = parse_msg_ids(value)
            if ids:
                return ids[0]
    for attachment in email.attachments:
        if attachment.content_type in _ORIGINAL_TYPES:
            head = attachment.data[:_BODY_SCAN].decode("utf-8", "replace")
            end = re.search(r"\r?\n\r?\n", head)
            match = _MSGID_LINE.search(head[: end.start()] if end else head)
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


def parse_delivery_status(text: str) -> tuple[str | None, str | None, int | None, str]:
    """``(action, status, smtp_code, diagnostic)`` of the first failed recipient of a DSN body."""
    blocks = _fields(text)
    recipients = [b for b in blocks[1:] if "action" in b or "status" in b] or [
        b for b in blocks if "action" in b or "status" in b
    ]
    chosen = next((b for b in recipients if b.get("action", "").lower() == "failed"), None)
    if chosen is None and recipients:
        chosen = recipients[0]
    if chosen is None:
        return None, None, None, ""
    action = chosen.get("action", "").strip().lower() or None
    diagnostic = chosen.get("diagnostic-code", "")
    kind, sep, rest = diagnostic.partition(";")
    diagnostic_text = rest.strip() if sep and len(kind) < 20 else diagnostic.strip()
    code, diag_status = _code_and_status(diagnostic_text)
    status_match = _STATUS.search(chosen.get("status", ""))
    status = status_match.group(0) if status_match else diag_status
    return action, status, code, diagnostic_text


def _bounce_info(
    action: str | None,
    status: str | None,
    code: int | None,
    diagnostic: str,
    original: str | None,
    fatal_codes: Sequence[int],
) -> BounceInfo:
    status_class = int(status[0]) if status else (code // 100 if code is not None else None)
    permanent = status_class == 5 or (code is not None and code // 100 == 5)
    return BounceInfo(
        action=action,
        status=status,
        status_class=status_class,
        smtp_code=code,
        diagnostic=diagnostic[:1000],
        original_message_id=original,
        permanent=permanent,
        fatal_code=code is not None and code in fatal_codes,
    )


def _bounce(
    email: InboundEmail,
    heads: dict[str, str],
    from_daemon: bool,
    null_path: bool,
    fatal_codes: Sequence[int],
) -> tuple[BounceInfo | None, list[str]]:
    """Bounce details and reasons, or ``(None, [])`` when the mail is not a delivery report."""
    reasons: list[str] = []
    content_type = heads.get("content-type") or ""
    report = content_type.split(";", 1)[0].strip().lower() == "multipart/report"
    report_type = _param(content_type, "report-type") if report else None
    dsn_part = next((a for a in email.attachments if a.content_type in _REPORT_TYPES), None)
    if report_type == "delivery-status" or dsn_part is not None:
        reasons.append(
            f"Content-Type: multipart/report; report-type={report_type} (RFC 3464 DSN)"
            if report_type
            else "message/delivery-status part (RFC 3464 DSN)"
        )
        action = status = None
        code: int | None = None
        diagnostic = ""
        if dsn_part is not None:
            text = dsn_part.data[:_BODY_SCAN].decode("utf-8", "replace")
            action, status, code, diagnostic = parse_delivery_status(text)
        if code is None and status is None:
            code, status = _code_and_status(email.body[:_BODY_SCAN])
        info = _bounce_info(
            action, status, code, diagnostic, _original_message_id(email, heads), fatal_codes
        )
        return info, reasons
    ndr_header = heads.get("x-ms-exchange-message-is-ndr")
    if ndr_header is not None:
        reasons.append("X-MS-Exchange-Message-Is-Ndr present (Exchange NDR)")
    if not (from_daemon or null_path or ndr_header is not None):
        return None, []
    code, status = _code_and_status(email.body[:_BODY_SCAN])
    subject_match = _BOUNCE_SUBJECT.match(email.subject)
    if (code is not None and code >= 400) or (status is not None and status[0] in "45"):
        what = f"{code} {status or ''}".strip() if code is not None else str(status)
        reasons.append(f"body carries SMTP failure {what} (non-DSN bounce)")
    elif subject_match is not None:
        reasons.append(f"Subject starts with {subject_match.group(0).strip()!r} (bounce subject)")
    elif ndr_header is None:
        return None, []
    diagnostic = ""
    if code is not None or status is not None:
        line_start = email.body.rfind("\n", 0, _diag_pos(email.body, code, status)) + 1
        line_end = email.body.find("\n", line_start)
        diagnostic = email.body[line_start : line_end if line_end >= 0 else None].strip()
    info = _bounce_info(
        None, status, code, diagnostic, _original_message_id(email, heads), fatal_codes
    )
    return info, reasons


def _diag_pos(body: str, code: int | None, status: str | None) -> int:
    """Where the failure code sits in the body (for quoting the diagnostic line)."""
    for needle in (f"{code}" if code is not None else None, status):
        if needle:
            found = body.find(needle, 0, _BODY_SCAN)
            if found >= 0:
                return found
    return 0


def classify(
    email: InboundEmail,
    *,
    own_addresses: Sequence[str] = (),
    loop_header: str = "X-ASM-Email-Rules-Loop",
    fatal_codes: Sequence[int] = FATAL_SMTP_CODES,
) -> Classification:
    """Classify a parsed message; precedence own mail > bounce > auto-reply > generated > list."""
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
    """Gather the reasons for each kind, then pick the kind by precedence."""
    heads, list_header = _first_headers(email)
    sender = normalise_address(email.sender)
    own = _own_mail_reasons(email, sender, heads, own_addresses, loop_header)
    local = sender.rpartition("@")[0] if "@" in sender else sender
    from_daemon = local in _DAEMONS
    null_path = email.return_path == ""
    generated: list[str] = []
    if from_daemon:
        generated.append(f"From: {email.sender} (mailer daemon / postmaster)")
    if null_path:
        generated.append("Return-Path: <> (null return path)")
    bounce, bounce_reasons = _bounce(email, heads, from_daemon, null_path, fatal_codes)
    replies, automatic = _automatic_reasons(email, heads)
    generated.extend(automatic)
    lists = _list_reasons(heads, list_header)

    suppress = heads.get("x-auto-response-suppress") or ""
    tokens = {t.strip().lower() for t in suppress.split(",")}
    suppressed = bool(tokens & {"all", "autoreply", "oof"})

    kind = MailKind.NORMAL
    if own:
        kind = MailKind.OWN_MAIL
    elif bounce is not None:
        kind = MailKind.BOUNCE
    elif replies:
        kind = MailKind.AUTO_REPLY
    elif generated:
        kind = MailKind.AUTO_GENERATED
    elif lists:
        kind = MailKind.LIST
    reasons = [*own, *bounce_reasons, *replies, *generated, *lists]
    if suppressed:
        reasons.append(
            f"X-Auto-Response-Suppress: {suppress} (a request not to auto-reply; "
            "not a sign of automatic mail)"
        )
    if not reasons:
        reasons.append("no sign of automatic mail")
    return Classification(
        kind=kind,
        reasons=tuple(reasons),
        bounce=bounce,
        auto_reply_suppressed=suppressed,
    )


def _first_headers(email: InboundEmail) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Each header's first value (lower-case names); and the first ``List-*`` header."""
    heads: dict[str, str] = {}
    list_header: tuple[str, str] | None = None
    for key, field in email.headers:
        lower = key.lower()
        if lower not in heads:
            heads[lower] = field
            if list_header is None and lower.startswith("list-"):
                list_header = (key, field)
    return heads, list_header


def _own_mail_reasons(
    email: InboundEmail,
    sender: str,
    heads: dict[str, str],
    own_addresses: Sequence[str],
    loop_header: str,
) -> list[str]:
    """Signs of our own mail: From is an own address, or our loop header is present."""
    own: list[str] = []
    if sender and sender in _own_set(tuple(own_addresses)):
        own.append(f"From: {email.sender} is one of our own addresses")
    loop = heads.get(loop_header.lower())
    if loop is not None:
        own.append(f"{loop_header}: {loop} (our loop header)")
    return own


def _automatic_reasons(email: InboundEmail, heads: dict[str, str]) -> tuple[list[str], list[str]]:
    """Signs of an auto-reply, and signs of other automatic mail (RFC 3834 and vendor headers)."""
    replies: list[str] = []
    generated: list[str] = []
    auto_submitted = heads.get("auto-submitted")
    if auto_submitted is not None:
        token = auto_submitted.split(";", 1)[0].strip().lower()
        if token == "auto-replied":
            replies.append(f"Auto-Submitted: {auto_submitted} (RFC 3834)")
        elif token != "no":
            generated.append(f"Auto-Submitted: {auto_submitted} (RFC 3834)")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        value = heads.get(name.lower())
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            replies.append(f"{name}: {value}")
    for name in (
        "X-MS-Exchange-Inbox-Rules-Loop",
        "X-MS-Exchange-Generated-Message-Source",
        "X-Loop",
    ):
        value = heads.get(name.lower())
        if value is not None:
            generated.append(f"{name}: {value}")
    content_type = heads.get("content-type") or ""
    if _param(content_type, "report-type") == "disposition-notification":
        generated.append("Content-Type: multipart/report; report-type=disposition-notification")
    ooo = _OOO_SUBJECT.match(email.subject)
    if ooo is not None:
        phrase = ooo.group(1) or ooo.group(2)
        replies.append(f"Subject starts with {phrase!r} (out-of-office subject)")
    return replies, generated


def _list_reasons(heads: dict[str, str], list_header: tuple[str, str] | None) -> list[str]:
    """Signs of list or bulk mail: Precedence bulk/junk/list, or an RFC 2369/2919 header."""
    lists: list[str] = []
    precedence = heads.get("precedence")
    if precedence is not None and precedence.strip().lower() in ("bulk", "junk", "list"):
        lists.append(f"Precedence: {precedence.strip()}")
    if list_header is not None:
        lists.append(f"{list_header[0]}: {list_header[1][:200]} (RFC 2369/2919 list header)")
    return lists
