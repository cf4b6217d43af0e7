"""Sender authentication from ``Authentication-Results`` headers (RFC 8601).

Only the topmost header carrying the operator-configured authserv-id is believed: our own MTA
prepends it, and anything below it (or with another id) may have been written by the sender.
The parser is a single left-to-right pass over the value, so its cost is linear in the input.
"""

from __future__ import annotations

import enum
import logging
import re
import unicodedata
from collections.abc import Sequence

import attrs

from asm_email_rules.addresses import DOMAIN_DOTS, a_label, comparison_domain
from asm_email_rules.errors import ConfigError

__all__ = [
    "MAX_HEADER_LENGTH",
    "AuthResults",
    "AuthVerdict",
    "MethodResult",
    "SenderAuthentication",
    "authenticate_sender",
    "domains_aligned",
    "organizational_domain",
    "parse_authentication_results",
]

log = logging.getLogger(__name__)

MAX_HEADER_LENGTH = 64 * 1024
"""Header values longer than this many characters are not parsed (their id is still peeked)."""

_ID_PEEK_LENGTH = 1024
_MAX_SHOWN = 120
_KEYWORD = re.compile(r"[a-z0-9](?:[a-z0-9_-]*)\Z")
_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_DIGITS = re.compile(r"[0-9]{1,9}\Z")
_WHITESPACE = frozenset(" \t\r\n")
_SPECIALS = frozenset(';=()"') | _WHITESPACE

# Second-level labels that, under a two-letter country TLD, are public suffixes (co.uk, com.au,
# ac.jp, ...). A deliberately small approximation of the Public Suffix List.
_CC_SECOND_LEVEL = frozenset(
    {
        "ac", "co", "com", "edu", "gob", "go", "gov", "govt", "gv", "id", "ltd", "me", "mil",
        "ne", "net", "nhs", "nic", "nom", "or", "org", "plc", "sch",
    }
)  # fmt: skip


class AuthVerdict(enum.Enum):
    """Outcome of checking the sender's From domain against the trusted header."""

    PASS = "pass"
    FAIL = "fail"
    NONE = "none"  # no trusted header, or nothing in it that speaks about the From domain


@attrs.frozen
class MethodResult:
    """One ``method=result`` clause with its properties, e.g. ``("header.d", "example.com")``.

    ``method`` and ``result`` are lower-cased (a method version like ``dkim/1`` is dropped);
    property names are lower-cased, values kept as written. ``reason=`` is kept as a property.
    """

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        """The first value of property ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.properties:
            if key == wanted:
                return value
        return None


@attrs.frozen
class AuthResults:
    """A parsed ``Authentication-Results`` value; ``results`` is empty for ``none``."""

    authserv_id: str
    version: int | None
    results: tuple[MethodResult, ...]


@attrs.frozen
class SenderAuthentication:
    """The verdict, a readable sentence saying why, and how many headers bore the trusted id."""

    verdict: AuthVerdict
    reason: str
    trusted_headers: int


# -- tokenizer ----------------------------------------------------------------------------------


class _Kind(enum.Enum):
    WORD = "word"
    SEMI = ";"
    EQ = "="


@attrs.frozen
class _Token:
    kind: _Kind
    text: str = ""
    quoted: bool = False  # the word contained a quoted-string
    spaced: bool = True  # whitespace or a comment came right before it


def _tokenize(value: str) -> tuple[list[_Token], bool]:
    """Split ``value`` into words, ``;`` and ``=``; comments are skipped.

    Returns the tokens read and whether the whole value was well formed (balanced comments,
    closed quotes). One pass, so linear in ``len(value)``.
    """
    tokens: list[_Token] = []
    n = len(value)
    i = 0
    spaced = True
    while i < n:
        ch = value[i]
        if ch in _WHITESPACE:
            spaced = True
            i += 1
        elif ch == "(":
            after = _comment_end(value, i)
            if after is None:
                return tokens, False
            i = after
            spaced = True
        elif ch == ")":
            return tokens, False
        elif ch in ";=":
            tokens.append(_Token(_Kind.SEMI if ch == ";" else _Kind.EQ, ch, spaced=spaced))
            spaced = False
            i += 1
        else:
            word = _read_word(value, i)
            if word is None:
                return tokens, False
            text, quoted, i = word
            tokens.append(_Token(_Kind.WORD, text, quoted=quoted, spaced=spaced))
            spaced = False
    return tokens, True


def _comment_end(value: str, i: int) -> int | None:
    """Index after the (nested) comment opening at ``value[i]``, or None when it is unclosed."""
    n = len(value)
    depth = 1
    i += 1
    while i < n and depth:
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        i += 1
    return None if depth else i


def _read_word(value: str, i: int) -> tuple[str, bool, int] | None:
    """The word at ``i``: its text, whether it had a quoted string, and the index after it.

    A word is adjacent runs of atom characters and quoted strings, e.g. ``"a b"@example.com``;
    None when a quoted string is not closed.
    """
    n = len(value)
    parts: list[str] = []
    quoted = False
    while i < n and (value[i] == '"' or value[i] not in _SPECIALS):
        if value[i] == '"':
            quoted = True
            i += 1
            start = i
            chunk: list[str] = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    chunk.append(value[start:i])
                    chunk.append(value[i + 1])
                    i += 2
                    start = i
                else:
                    i += 1
            if i >= n:
                return None
            chunk.append(value[start:i])
            parts.append("".join(chunk))
            i += 1
        else:
            start = i
            while i < n and value[i] not in _SPECIALS:
                i += 1
            parts.append(value[start:i])
    return "".join(parts), quoted, i


# -- parser -------------------------------------------------------------------------------------


class _MalformedError(Exception):
    """Internal signal: the value does not follow the RFC 8601 grammar."""


def _split_statements(tokens: list[_Token]) -> list[list[_Token]]:
    statements: list[list[_Token]] = [[]]
    for tok in tokens:
        if tok.kind is _Kind.SEMI:
            statements.append([])
        else:
            statements[-1].append(tok)
    return statements


def _joinable(key: str, following: str) -> bool:
    """True when two words belong to one key written with spaces, as in ``header . from``."""
    return key.endswith((".", "/")) or following.startswith((".", "/"))


def _pairs(statement: list[_Token]) -> list[tuple[str, str]]:
    """Read ``key=value`` pairs; a value runs over adjacent words and ``=`` (``b=abc=``)."""
    pairs: list[tuple[str, str]] = []
    key: list[str] = []  # pieces of a key written with spaces; joined once, so linear
    i = 0
    n = len(statement)
    while i < n:
        tok = statement[i]
        if tok.kind is _Kind.WORD:
            if tok.quoted:
                raise _MalformedError("quoted key")
            if key and not _joinable(key[-1], tok.text):
                raise _MalformedError("stray word")
            key.append(tok.text)
            i += 1
            continue
        # "=": needs a key before and a word after
        if not key or i + 1 >= n or statement[i + 1].kind is not _Kind.WORD:
            raise _MalformedError("dangling '='")
        parts = [statement[i + 1].text]
        i += 2
        while i < n and not statement[i].spaced:
            parts.append(statement[i].text)
            i += 1
        pairs.append(("".join(key), "".join(parts)))
        key = []
    if key:
        raise _MalformedError("key without value")
    return pairs


def _method_result(statement: list[_Token]) -> MethodResult:
    pairs = _pairs(statement)
    if not pairs:
        raise _MalformedError("empty result")
    method_text, result_text = pairs[0]
    method, _, method_version = method_text.lower().partition("/")
    result = result_text.lower()
    if not _KEYWORD.match(method) or (method_version and not _DIGITS.match(method_version)):
        raise _MalformedError("bad method")
    if not _KEYWORD.match(result):
        raise _MalformedError("bad result")
    properties: list[tuple[str, str]] = []
    for key_text, value in pairs[1:]:
        key = key_text.lower()
        if not _KEY.match(key) or key.endswith(".") or ".." in key:
            raise _MalformedError("bad property")
        properties.append((key, value))
    return MethodResult(method=method, result=result, properties=tuple(properties))


def _parse(value: str) -> AuthResults:
    tokens, complete = _tokenize(value)
    if not complete:
        raise _MalformedError("unbalanced comment or quote")
    statements = _split_statements(tokens)
    head = statements[0]
    if not head or any(t.kind is not _Kind.WORD for t in head) or len(head) > 2:
        raise _MalformedError("bad authserv-id")
    authserv_id = head[0].text
    if not authserv_id:
        raise _MalformedError("empty authserv-id")
    version: int | None = None
    if len(head) == 2:
        if head[1].quoted or not _DIGITS.match(head[1].text):
            raise _MalformedError("bad version")
        version = int(head[1].text)
    results: list[MethodResult] = []
    for statement in statements[1:]:
        if not statement:
            continue  # tolerate a trailing or doubled ";"
        if (
            len(statement) == 1
            and statement[0].kind is _Kind.WORD
            and not statement[0].quoted
            and statement[0].text.lower() == "none"
        ):
            continue  # "; none": no authentication was done
        results.append(_method_result(statement))
    return AuthResults(authserv_id=authserv_id, version=version, results=tuple(results))


def parse_authentication_results(value: str) -> AuthResults | None:
    """Parse one header value (without the field name); ``None`` when it is unreadable.

    Never raises on any string; values over :data:`MAX_HEADER_LENGTH` are not parsed.
    """
    if len(value) > MAX_HEADER_LENGTH:
        return None
    try:
        return _parse(value)
    except _MalformedError:
        return None


def _peek_authserv_id(value: str) -> str | None:
    """The leading authserv-id of a header that may be too long or malformed to parse fully."""
    tokens, _ = _tokenize(value[:_ID_PEEK_LENGTH])
    if tokens and tokens[0].kind is _Kind.WORD:
        return tokens[0].text
    return None


# -- alignment ----------------------------------------------------------------------------------


def _a_label(label: str) -> str:
    """``label`` as its A-label (RFC 5891 4.4: NFC, then Punycode; ``faß`` is ``xn--fa-hia``).
    Not IDNA 2003's ``encodings.idna``, whose nameprep maps ``ß`` to ``ss``, the final ``ς`` to
    ``σ`` and drops joiners, so that another domain's owner would align with this one. A
    label that cannot be an A-label (controls, invisible characters, too long) stays in
    Unicode, where it matches no signature's domain."""
    if label.isascii():
        return label
    text = unicodedata.normalize("NFC", label)
    return a_label(text) if text.isprintable() else text


def _normalize_domain(domain: str) -> str:
    """Lower-case, drop a trailing dot and turn a Unicode domain into its A-label form."""
    text = domain.strip().rstrip(".").lower()
    if not text.isascii():
        text = ".".join(_a_label(label) for label in DOMAIN_DOTS.split(text))
    return text


def _identified_domain(from_domain: str) -> str:
    """The domain of ``from_domain`` (an address or a bare domain) as the sender is identified
    by it (:func:`~asm_email_rules.addresses.comparison_domain`). A From domain the identity
    reads as another (``ｂücher`` with a full-width ``b``, an A-label of ``bÜcher``: both
    ``bücher``) is another DNS name, which someone else may hold: only the identified
    domain's signature may vouch for the person."""
    domain = from_domain.rpartition("@")[2]
    return comparison_domain(domain) if domain else ""


def organizational_domain(domain: str) -> str:
    """Approximate the DMARC organisational domain: the last two labels, or three under a
    two-letter country TLD whose second level is a common public suffix (``example.co.uk``)."""
    labels = [label for label in _normalize_domain(domain).split(".") if label]
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _CC_SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def domains_aligned(a: str, b: str, *, strict: bool = False) -> bool:
    """DMARC identifier alignment: equal domains (strict) or the same organisational domain."""
    left, right = _normalize_domain(a), _normalize_domain(b)
    if not left or not right:
        return False
    if left == right:
        return True
    return not strict and organizational_domain(left) == organizational_domain(right)


def _dkim_domain(result: MethodResult) -> str | None:
    """The signing domain of a dkim result: ``header.d``, else the domain of ``header.i``."""
    d = result.get("header.d")
    if d:
        return d
    i = result.get("header.i")
    if i:
        return i.rpartition("@")[2] or None
    return None


def _show(text: str) -> str:
    """A header-derived value made safe to echo: printable, single-line, bounded."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[: _MAX_SHOWN + 1])
    return clean if len(clean) <= _MAX_SHOWN else clean[:_MAX_SHOWN] + "..."


# -- verdict ------------------------------------------------------------------------------------


def _judge(results: AuthResults, *, from_domain: str, strict: bool) -> tuple[AuthVerdict, str]:
    """Verdict and reason (without the authserv-id suffix) for the one trusted header."""
    dmarc = [r for r in results.results if r.method == "dmarc"]
    dkim = [r for r in results.results if r.method == "dkim"]
    shown_from = _show(from_domain)
    for r in dmarc:
        if r.result == "fail":
            where = r.get("header.from")
            about = _show(where) if where else shown_from
            return AuthVerdict.FAIL, f"dmarc=fail for {about}"
    for r in dmarc:
        header_from = r.get("header.from")
        if r.result == "pass" and (
            header_from is None or _normalize_domain(header_from) == from_domain
        ):
            return AuthVerdict.PASS, f"dmarc=pass for {shown_from}"
    for r in dkim:
        signer = _dkim_domain(r)
        if r.result == "pass" and signer and domains_aligned(signer, from_domain, strict=strict):
            return (
                AuthVerdict.PASS,
                f"dkim=pass for {shown_from} (aligned signature d={_show(signer)})",
            )
    if not dmarc and not dkim:
        methods = ", ".join(sorted({_show(r.method) for r in results.results}))
        if methods:
            return AuthVerdict.NONE, f"no dmarc or dkim result (only {methods})"
        return AuthVerdict.NONE, "no authentication results (none)"
    notes: list[str] = []
    for r in dmarc:
        header_from = r.get("header.from")
        if r.result == "pass" and header_from is not None:
            notes.append(f"dmarc=pass is for {_show(header_from)}")
        else:
            notes.append(f"dmarc={_show(r.result)}")
    for r in dkim:
        signer = _dkim_domain(r)
        if r.result == "pass":
            notes.append(
                f"dkim=pass for {_show(signer)} is not aligned"
                if signer
                else "dkim=pass without d="
            )
        else:
            notes.append(f"dkim={_show(r.result)}" + (f" for {_show(signer)}" if signer else ""))
    return AuthVerdict.FAIL, f"no aligned dmarc or dkim pass for {shown_from} ({'; '.join(notes)})"


def authenticate_sender(
    headers: Sequence[str],
    *,
    authserv_id: str,
    from_domain: str,
    strict_alignment: bool = False,
) -> SenderAuthentication:
    """Judge ``from_domain`` by the topmost ``Authentication-Results`` with our authserv-id.

    ``headers`` are the header values in message order (topmost first), as given by
    ``InboundEmail.header_all("Authentication-Results")``. Headers with another id are ignored;
    trusted-id headers below the first are ignored too, since the sender could have added them.
    ``from_domain`` may be a bare domain or a full address (the part after the last ``@``),
    judged in the form the sender is identified by (:func:`_identified_domain`).
    """
    wanted = authserv_id.strip()
    if not wanted:
        raise ConfigError("the trusted authserv-id must not be empty", key="trusted_authserv_id")
    wanted_key = wanted.casefold()
    shown_id = _show(wanted)
    first: str | None = None
    count = 0
    for value in headers:
        peeked = _peek_authserv_id(value)
        if peeked is not None and peeked.casefold() == wanted_key:
            count += 1
            if first is None:
                first = value
    if first is None:
        return SenderAuthentication(
            AuthVerdict.NONE, f"no Authentication-Results from {shown_id}", 0
        )
    extra = ""
    if count > 1:
        extra = f"; {count - 1} more header(s) claiming {shown_id} below it were ignored"
        log.info(
            "ignored Authentication-Results headers below the trusted one",
            extra={"authserv_id": wanted, "ignored": count - 1},
        )
    parsed = parse_authentication_results(first)
    if parsed is None:
        return SenderAuthentication(
            AuthVerdict.NONE,
            f"the Authentication-Results from {shown_id} could not be read{extra}",
            count,
        )
    domain = _normalize_domain(_identified_domain(from_domain))
    if not domain:
        return SenderAuthentication(
            AuthVerdict.NONE, f"no From domain to authenticate{extra}", count
        )
    verdict, why = _judge(parsed, from_domain=domain, strict=strict_alignment)
    return SenderAuthentication(verdict, f"{why} from authserv-id {shown_id}{extra}", count)
