"""Turn an :class:`~asm_email_rules.model.OutgoingEmail` into the bytes we hand to SMTP.

Every header line is written by this module from validated text: values holding CR, LF, NUL or
any other control or line-break character are refused, text that is not plain printable ASCII
is sent as RFC 2047 encoded-words, and callers cannot override the headers we set. Header
injection is therefore impossible by construction, not by escaping after the fact.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from email import quoprimime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import format_datetime

import attrs

from asm_email_rules.addresses import DOMAIN_DOTS, a_label, comparison_domain
from asm_email_rules.errors import AsmEmailError, require_strings, require_type
from asm_email_rules.model import OutgoingEmail

__all__ = [
    "AUTO_SUBMITTED",
    "RESERVED_HEADERS",
    "HeaderInjectionError",
    "NeedsSmtpUtf8Error",
    "OutgoingMessageError",
    "RenderedReply",
    "check_address",
    "check_header_text",
    "format_header_field",
    "make_message_id",
    "normalize_msg_id",
    "parse_sender",
    "render_outgoing",
    "render_reply",
    "sanitize_header_text",
]

AUTO_SUBMITTED = "auto-replied"
"""Our ``Auto-Submitted`` value (RFC 3834 section 5): every reply we send is automatic."""

RESERVED_HEADERS: frozenset[str] = frozenset(
    {
        "to",
        "cc",
        "bcc",
        "from",
        "sender",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "auto-submitted",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "return-path",
    }
)
"""Header names (lower case) that ``extra_headers`` may not set: we write them ourselves."""

_FOLD_AT = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
_HARD_LIMIT = 998  # RFC 5322 2.1.1: lines MUST be at most 998 characters
_EW_PREFIX = "=?utf-8?b?"
_EW_SUFFIX = "?="
_EW_MAX_BYTES = 45  # 45 bytes -> 60 base64 chars -> 72-char encoded-word (RFC 2047 max 75)
_FIELD_NAME_RE = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except ':'
_MSG_ID_BODY_RE = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII without '<' '>' SP
_ATOM_PHRASE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_KIND_RE = re.compile(r"[a-z][a-z0-9_]*")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_MAX_MSG_ID = 900  # longer ids could not be written on one legal line
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_UTF8_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"  # RFC 6532 3.2 atext
_UTF8_ADDR_SPEC_RE = re.compile(
    rf"{_UTF8_ATOM}(?:\.{_UTF8_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
_PLAIN_ADDR_SPEC_RE = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
"""A dot-atom local part at a domain of letters, digits and hyphens: nearly every address,
and one ``email.headerregistry.Address`` takes as it is (it would only re-quote the others)."""


class OutgoingMessageError(AsmEmailError, ValueError):
    """An outgoing message cannot be rendered (bad address, bad Message-ID, bad text)."""


class NeedsSmtpUtf8Error(OutgoingMessageError):
    """The address has a non-ASCII local part (``josé@example.com``): it can be sent only to
    a server that offers SMTPUTF8 (RFC 6531), never rewritten."""


class HeaderInjectionError(OutgoingMessageError):
    """A header name or value would break out of its field (CR, LF, NUL or other controls)."""


_ASCII_UNSAFE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""The ASCII characters :func:`_is_unsafe` refuses (the C0 controls but TAB, and DEL)."""


def _is_unsafe(char: str) -> bool:
    """True for characters that must never reach a header: controls (TAB aside), line breaks."""
    if char == "\t":
        return False
    category = unicodedata.category(char)
    return category in ("Cc", "Zl", "Zp") or category == "Cs"


def check_header_text(field: str, value: str) -> None:
    """Raise :class:`HeaderInjectionError` when ``value`` holds CR, LF, NUL or another control.

    Unicode line and paragraph separators (U+2028, U+2029, U+0085) and lone surrogates are
    refused too: they are line breaks to some consumers or cannot be encoded at all.
    """
    if value.isascii():  # the usual case: one regex scan instead of a look-up per character
        match = _ASCII_UNSAFE_RE.search(value)
        if match is None:
            return
        value = value[: match.end()]
    for index, char in enumerate(value):
        if _is_unsafe(char):
            raise HeaderInjectionError(
                f"header {field!r} holds the forbidden character U+{ord(char):04X} "
                f"at position {index}"
            )


def sanitize_header_text(text: str, max_length: int = 1000) -> str:
    """``text`` made safe for a header: every control or line break becomes a space.

    For text we generate ourselves (error messages, quarantine reasons), where refusing would
    lose information; echoed input in replies goes through :func:`check_header_text` instead.
    """
    cleaned = "".join(" " if _is_unsafe(char) else char for char in text[:max_length])
    return _squash_spaces(cleaned)


def _squash_spaces(value: str) -> str:
    """Runs of spaces and tabs become one space; leading and trailing ones go."""
    return " ".join(part for part in value.replace("\t", " ").split(" ") if part)


def _normalize_text(field: str, value: str) -> str:
    check_header_text(field, value)
    return _squash_spaces(value)


def _encoded_words(text: str) -> list[str]:
    """``text`` as UTF-8 base64 encoded-words, each whole characters and at most 75 chars."""
    words: list[str] = []
    chunk: list[bytes] = []
    size = 0
    for char in text:
        data = char.encode("utf-8")
        if size + len(data) > _EW_MAX_BYTES and chunk:
            words.append(_EW_PREFIX + base64.b64encode(b"".join(chunk)).decode() + _EW_SUFFIX)
            chunk, size = [], 0
        chunk.append(data)
        size += len(data)
    if chunk:
        words.append(_EW_PREFIX + base64.b64encode(b"".join(chunk)).decode() + _EW_SUFFIX)
    return words


def _fold(name: str, tokens: Iterable[str]) -> str:
    """Join ``tokens`` with single spaces, folding before a token when a line would pass 78."""
    lines: list[str] = []
    current = f"{name}:"
    for token in tokens:
        if len(current) + 1 + len(token) > _FOLD_AT and current != f"{name}:":
            lines.append(current)
            current = " " + token
        else:
            current += " " + token
    lines.append(current)
    return "\r\n".join(lines)


def _needs_encoding(value: str) -> bool:
    if "=?" in value or not value.isascii():
        return True
    # A word that cannot fit a legal line is encoded, so it can be split across lines.
    return any(len(word) > _HARD_LIMIT - 80 for word in value.split(" "))


def format_header_field(name: str, value: str) -> str:
    """One folded header field ``Name: value`` (no final CRLF) for free text.

    Plain printable ASCII is written as is; anything else (non-ASCII, text that would read as
    an encoded-word, over-long words) is written as UTF-8 encoded-words. Spaces and tabs are
    squashed to single spaces, so the field reads back exactly as normalised here.
    """
    if not _FIELD_NAME_RE.fullmatch(name):
        raise HeaderInjectionError(f"invalid header name {name!r}")
    text = _normalize_text(name, value)
    if not text:
        return f"{name}:"
    if _needs_encoding(text):
        return _fold(name, _encoded_words(text))
    return _fold(name, text.split(" "))


def normalize_msg_id(value: str) -> str | None:
    """``value`` as ``<left@right>``, or ``None`` when it is not a usable Message-ID.

    Angle brackets are added when missing. CR, LF, NUL or other controls raise
    :class:`HeaderInjectionError`, since they can only come from a bug or an attack. An id
    holding ``=?`` (the start of an RFC 2047 encoded-word, such as
    ``<=?utf-8?Q?a=0D=0ABcc:...?=@x>``) is not usable either: RFC 5322's atext allows those
    characters, but a reader that decodes encoded-words in In-Reply-To or References would turn
    it into a line break and a header of the sender's choosing (DESIGN 4, "Replies we send").
    """
    check_header_text("message id", value)
    text = value.strip(" \t")
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if len(text) > _MAX_MSG_ID or "=?" in text or not _MSG_ID_BODY_RE.fullmatch(text):
        return None
    return f"<{text}>"


def make_message_id(kind: str, number: int | None, host: str, random_token: str) -> str:
    """Our Message-ID, ``<asm.{kind}-{number}.{random}@{host}>`` (no ``-{number}`` without one).

    Randomness is the caller's (pass ``secrets.token_hex(8)``), so tests can pin it.
    """
    if not _KIND_RE.fullmatch(kind):
        raise OutgoingMessageError(f"invalid Message-ID kind {kind!r}")
    if number is not None and (isinstance(number, bool) or number < 0):
        raise OutgoingMessageError(f"invalid record number {number!r}")
    if not _TOKEN_RE.fullmatch(random_token):
        raise OutgoingMessageError(f"invalid Message-ID random token {random_token!r}")
    if len(host) > 253 or not _HOST_RE.fullmatch(host):
        raise OutgoingMessageError(f"invalid Message-ID host {host!r}")
    label = kind if number is None else f"{kind}-{number}"
    return f"<asm.{label}.{random_token}@{host}>"


def _ascii_domain(field: str, address: str, domain: str) -> str:
    """``domain`` with each Unicode label as its A-label (``bücher`` -> ``xn--bcher-kva``,
    RFC 5890 2.3.2.1, Punycode RFC 3492), which any SMTP server takes without SMTPUTF8
    (RFC 5891 4.2). The domain is first taken in the form its person is identified by
    (:func:`~asm_email_rules.addresses.comparison_domain`: NFKC, lower case one character to
    one), so a reply never goes to another DNS name than that person's: ``str.lower()`` of
    ``ΣΑΣ`` is ``σας``, another domain than ``σασ``. Raises OutgoingMessageError for a label
    that cannot be one: controls, spaces or format characters (bidi overrides among them),
    or longer than 63 octets."""
    labels = []
    for label in DOMAIN_DOTS.split(comparison_domain(domain)):
        if label.isascii():
            labels.append(label)
            continue
        text = label
        if not text.isprintable() or " " in text:
            raise OutgoingMessageError(f"{field}: invalid domain label {label!r} in {address!r}")
        ace = a_label(text)  # a label over 63 characters comes back as it is: refused
        if not ace.isascii() or len(ace) > 63:
            raise OutgoingMessageError(f"{field}: domain label {label!r} too long in {address!r}")
        labels.append(ace)
    return ".".join(labels)


def _addr_spec(field: str, value: str, *, smtputf8: bool = False) -> str:
    """Validate a bare addr-spec (ASCII, with a domain) and return it. A Unicode domain is
    written with A-labels; a non-ASCII local part only with ``smtputf8`` (RFC 6531), as a
    dot-atom of atext and non-ASCII letters (RFC 6532 3.2), else NeedsSmtpUtf8Error."""
    check_header_text(field, value)
    text = value.strip(" \t")
    if not text or text == "<>":
        raise OutgoingMessageError(f"{field}: empty address")
    if not text.isascii():
        local, _, domain = text.rpartition("@")
        text = f"{local}@{_ascii_domain(field, text, domain)}" if local else text
        if not text.isascii():
            if not smtputf8:
                raise NeedsSmtpUtf8Error(f"{field}: non-ASCII address {text!r} needs SMTPUTF8")
            if not text.isprintable() or not _UTF8_ADDR_SPEC_RE.fullmatch(text):
                raise OutgoingMessageError(f"{field}: invalid address {text!r}")
            return text
    if _PLAIN_ADDR_SPEC_RE.fullmatch(text):
        return text  # what the full parse below gives for it, about 50 times faster
    try:
        address = Address(addr_spec=text)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise OutgoingMessageError(f"{field}: invalid address {text!r}: {exc}") from exc
    if not address.username or not address.domain:
        raise OutgoingMessageError(f"{field}: address {text!r} needs a local part and a domain")
    return address.addr_spec


def check_address(field: str, value: str, *, smtputf8: bool = False) -> str:
    """The addr-spec ``value`` as ``render_outgoing`` will write it into ``field`` (To, From).

    Raises :class:`OutgoingMessageError` for what it refuses: an empty or invalid address
    (RFC 5322 3.4.1 dot-atom local part and a domain), or CR/LF in it, and (its subclass
    :class:`NeedsSmtpUtf8Error`) a non-ASCII local part unless ``smtputf8``. A Unicode
    domain comes back as A-labels (``anna@xn--bcher-kva.example``).
    """
    return _addr_spec(field, value, smtputf8=smtputf8)


def parse_sender(value: str) -> tuple[str, str]:
    """``(display_name, addr_spec)`` of a From value, given as ``addr`` or ``Name <addr>``."""
    check_header_text("From", value)
    text = value.strip(" \t")
    if text.endswith(">") and "<" in text:
        name, _, addr = text[:-1].rpartition("<")
        name = name.strip(" \t")
        if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return _normalize_text("From", name), _addr_spec("From", addr)
    return "", _addr_spec("From", text)


def _from_field(display_name: str, addr_spec: str) -> str:
    if not display_name:
        return f"From: {addr_spec}"
    if "=?" not in display_name and display_name.isascii():
        if _ATOM_PHRASE_RE.fullmatch(display_name):
            phrase = display_name.split(" ")
        else:
            escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
            phrase = [f'"{escaped}"']
    else:
        phrase = _encoded_words(display_name)
    return _fold("From", [*phrase, f"<{addr_spec}>"])


def _references(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        mid = normalize_msg_id(value)
        if mid is not None:
            seen.setdefault(mid, None)
    return list(seen)


@attrs.frozen
class RenderedReply:
    """A reply in its wire form, with the addresses its SMTP envelope is made of.

    ``raw``: the message, CRLF line ends, 7-bit (but see ``smtputf8``). ``sender``: the From
    addr-spec, the default reverse-path (``MAIL FROM``, RFC 5321 4.1.1.2). ``recipient``: the
    To addr-spec, the forward-path (``RCPT TO``, RFC 5321 4.1.1.3). Both are validated as
    written in the header, so a mailer can put them between angle brackets without parsing
    them again.
    """

    raw: bytes
    sender: str
    recipient: str
    smtputf8: bool = False
    """True when the recipient's local part is not ASCII: ``raw``'s To is UTF-8 (RFC 6532)
    and the message may go only to a server that offers SMTPUTF8 (RFC 6531)."""


def render_outgoing(
    message: OutgoingEmail,
    *,
    now: datetime | None = None,
    default_sender: str = "",
    random_token: str | None = None,
) -> bytes:
    """The wire form (CRLF, 7-bit) of ``message`` with our threading and RFC 3834 headers.

    ``now`` gives the Date (default: the current UTC time); ``default_sender`` is the From used
    when the message has none. A message without a Message-ID gets
    ``<asm.reply.{random}@{sender domain}>``. Raises :class:`OutgoingMessageError` (or its
    :class:`HeaderInjectionError`) when any value cannot be written safely.
    """
    _check_message(message, "render_outgoing")
    return render_reply(
        message, now=now, default_sender=default_sender, random_token=random_token
    ).raw


def _check_message(message: OutgoingEmail, where: str) -> None:
    """ArgumentTypeError when ``message`` is not an OutgoingEmail or a text field of it is not
    a str (``to=None``): said at the call, not as an AttributeError from inside."""
    require_type(message, OutgoingEmail, where, "message")
    for name in ("to", "subject", "body", "sender", "message_id"):
        require_type(getattr(message, name), str, where, f"message.{name}")
    require_strings(message.references, where, "message.references")


def render_reply(
    message: OutgoingEmail,
    *,
    now: datetime | None = None,
    default_sender: str = "",
    random_token: str | None = None,
    smtputf8: bool = False,
) -> RenderedReply:
    """:func:`render_outgoing`, with the From and To addr-specs it wrote (for the envelope).

    Same arguments and errors as :func:`render_outgoing`; a recipient with a non-ASCII local
    part raises :class:`NeedsSmtpUtf8Error` unless ``smtputf8`` (the mailer's server offers
    SMTPUTF8): then its To is written in UTF-8 (RFC 6532 3.2) and the result says
    ``smtputf8``. Every other header stays ASCII (encoded-words) either way.
    """
    _check_message(message, "render_reply")
    display_name, sender = parse_sender(message.sender or default_sender or "")
    to = _addr_spec("To", message.to, smtputf8=smtputf8)
    when = now if now is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise OutgoingMessageError("the Date needs a timezone-aware datetime")

    if message.message_id:
        message_id = normalize_msg_id(message.message_id)
        if message_id is None:
            raise OutgoingMessageError(f"invalid Message-ID {message.message_id!r}")
    else:
        token = random_token if random_token is not None else secrets.token_hex(8)
        host = sender.rpartition("@")[2]
        if not _HOST_RE.fullmatch(host):
            host = "asm.invalid"  # an address literal cannot be a Message-ID host
        message_id = make_message_id("reply", None, host, token)
    in_reply_to = _references([message.in_reply_to] if message.in_reply_to else [])
    references = _references(message.references)

    fields = [
        _from_field(display_name, sender),
        f"To: {to}",
        format_header_field("Subject", message.subject),
        f"Date: {format_datetime(when)}",
        f"Message-ID: {message_id}",
    ]
    if in_reply_to:
        fields.append(f"In-Reply-To: {in_reply_to[0]}")
    if references:
        fields.append(_fold("References", references))
    fields.append(f"Auto-Submitted: {AUTO_SUBMITTED}")
    for name, value in message.extra_headers:
        if name.lower() in RESERVED_HEADERS:
            raise HeaderInjectionError(f"extra header {name!r} would override one we set")
        fields.append(format_header_field(name, value))

    check_body(message.body)
    transfer_encoding, body = _encode_body(message.body)
    fields += [
        'Content-Type: text/plain; charset="utf-8"',
        f"Content-Transfer-Encoding: {transfer_encoding}",
        "MIME-Version: 1.0",
        "",
        _NEWLINE_RE.sub("\r\n", body),
    ]
    utf8 = not to.isascii()
    raw = "\r\n".join(fields).encode("utf-8" if utf8 else "ascii")
    return RenderedReply(raw, sender, to, smtputf8=utf8)


def check_body(body: str) -> None:
    """Refuse a body that cannot be encoded as UTF-8 (lone surrogates)."""
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OutgoingMessageError(f"body is not encodable as UTF-8: {exc.reason}") from exc


_NEWLINE_RE = re.compile(r"\r\n|\r|\n")
_BODY_LINE_MAX = 78  # RFC 5322 2.1.1, as email.policy.SMTP's max_line_length
_BASE64_LINE_BYTES = _BODY_LINE_MAX // 4 * 3


def _encode_body(body: str) -> tuple[str, str]:
    """``(Content-Transfer-Encoding, encoded text with LF line ends)`` of a UTF-8 text body.

    The choice ``email.message.EmailMessage.set_content(body, charset="utf-8")`` makes under a
    7-bit policy, made without building a message: 7bit when the text is ASCII in lines of at
    most 78 bytes, else quoted-printable or base64, whichever is shorter on the first ten
    lines (RFC 2045 section 6). ``tests/property/test_outgoing_properties.py`` checks the
    output byte for byte against the stdlib's.
    """
    lines = body.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) <= _BODY_LINE_MAX and all(map(bytes.isascii, lines)):
        return "7bit", (b"\n".join(lines) + b"\n").decode("ascii")
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), _BODY_LINE_MAX)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        data = b"\r\n".join(lines) + b"\r\n"
        step = _BASE64_LINE_BYTES
        encoded = (binascii.b2a_base64(data[i : i + step]) for i in range(0, len(data), step))
        return "base64", b"".join(encoded).decode("ascii")
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    text = (b"\n".join(lines) + b"\n").decode("latin-1")
    return "quoted-printable", quoprimime.body_encode(text, _BODY_LINE_MAX)
