"""Mailbox addresses: reading them from address fields, and the one form they are compared in.

Reading is bounded: an address list is split at top-level commas by a linear scan, and each
piece goes alone to the stdlib ``policy.default`` header registry (which is quadratic on long
lists and would otherwise be the slowest part of intake).

Reading is lenient where real mail breaks RFC 5322 without ambiguity: a display name with an
unquoted comma (``Joe Foo, PhD <joe.foo@example.org>``) is one mailbox named ``Joe Foo, PhD``,
not an invalid ``Joe Foo`` and a mailbox named ``PhD``. A piece that has no ``@`` and no angle
brackets cannot be a mailbox of its own, so it is read as the start of the display name of the
``name <addr>`` piece after it (each such repair is noted as ``LENIENT_ADDRESS``). A piece with
an ``@`` outside angle brackets is never merged: ``alice@evil.example <bob@good.example>``
(CVE-2023-27043) stays invalid.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from email import policy as email_policy
from email.errors import InvalidHeaderDefect

from asm_email_rules.header_values import clean_text, decode_header_text
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind

__all__ = [
    "DOMAIN_DOTS",
    "a_label",
    "address_problem",
    "comparison_domain",
    "mailbox_key",
    "normalise_address",
    "parse_address",
    "parse_address_list",
    "plain_display_name",
    "return_path_address",
]

_ADDRESS_SPECIALS = re.compile(r'["(:;\\]')
_SIMPLE_ADDR = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_SIMPLE_MAILBOX = re.compile(
    r'\s*(?:"(?P<q>[^"\\\r\n]*)"|(?P<p>[A-Za-z0-9 _\'-]*?))\s*<(?P<a>'
    + _SIMPLE_ADDR.pattern
    + r")>\s*"
)
_SIMPLE_BARE = re.compile(r"\s*(?P<a>" + _SIMPLE_ADDR.pattern + r")\s*")
#: a display name the registry refuses (broken quotes, undecodable encoded-words, specials)
#: in front of one plain angle address; no "@" in the name, so never the CVE-2023-27043 shape
_LENIENT_MAILBOX = re.compile(r"(?P<n>[^<>@]*)<(?P<a>" + _SIMPLE_ADDR.pattern + r")>\s*")
_MAX_PIECE = 2048  # one address given to the (quadratic) header registry
_MAX_ADDRESSES = 1000  # addresses kept per address header


DOMAIN_DOTS = re.compile("[.\u3002\uff0e\uff61]")
"""Label separators of a domain (RFC 3490 3.1): the full stop and its ideographic, full-width
and half-width forms, which mail programs write in Unicode domains."""
_MAX_LABEL = 63  # octets in a DNS label (RFC 1035 2.3.4), an A-label's ``xn--`` included


def a_label(label: str) -> str:
    """The A-label of the Unicode domain label ``label`` (``bücher`` -> ``xn--bcher-kva``: its
    Punycode, RFC 3492, after ``xn--``), as given; an ASCII label, or one longer than any DNS
    label (63), comes back as it is (Punycode's time grows with the square of a label's
    length). No mapping is made (no IDNA 2003 nameprep: ``ß`` stays ``ß``): the caller puts
    the label in the form it compares in first."""
    if label.isascii() or len(label) > _MAX_LABEL:
        return label
    return "xn--" + label.encode("punycode").decode("ascii")


def u_label(label: str) -> str | None:
    """The Unicode form of the A-label ``label`` (``xn--bcher-kva`` -> ``bücher``, RFC 5890
    2.3.2.1), or None when ``label`` is not a valid A-label: not ``xn--`` + ASCII, longer than
    63 octets, not Punycode (``xn--zz``), decoding to ASCII, controls or a non-NFC form, or
    not decoding back to itself. The Punycode codec, nameprep-free, so ``ß`` stays ``ß``."""
    body = label[4:].lower()
    if label[:4].lower() != "xn--" or len(label) > _MAX_LABEL or not body.isascii():
        return None
    try:
        decoded = body.encode("ascii").decode("punycode")
    except UnicodeError:
        return None
    if (
        decoded.isascii()
        or not decoded.isprintable()
        or not unicodedata.is_normalized("NFC", decoded)
        or decoded.encode("punycode").decode("ascii") != body
    ):
        return None
    return decoded


_MAX_DOMAIN = 253  # octets in a domain name, written with dots (RFC 1035 2.3.4)


def address_problem(address: str) -> str | None:
    """Why the addr-spec ``address`` cannot be a person's address, or None when it can.

    Refused: a control or invisible formatting character anywhere (bidi overrides such as
    U+202E show the address backwards, a zero-width space makes a look-alike of a known
    address), an invalid A-label (``xn--zz``: not Punycode, RFC 5890 2.3.2.1), a domain label
    over 63 octets or a domain over 253 as sent (A-labels, RFC 1035 2.3.4). Letters of any
    script are fine (RFC 6531/6532), and so is a domain literal (``[192.0.2.1]``).
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "not local-part@domain"
    if (  # nearly every address: printable ASCII, short labels, no A-label
        address.isascii()
        and address.isprintable()
        and len(domain) <= _MAX_DOMAIN
        and "xn--" not in domain.lower()
        and max(map(len, domain.split("."))) <= _MAX_LABEL
    ):
        return None
    if not address.isprintable():
        bad = next(c for c in address if not c.isprintable())
        return f"holds the invisible or control character U+{ord(bad):04X}"
    if domain.startswith("[") and domain.endswith("]"):
        return None
    if len(domain) > _MAX_DOMAIN:
        return f"its domain is longer than {_MAX_DOMAIN} characters"
    octets = 0
    for label in DOMAIN_DOTS.split(domain):
        if label[:4].lower() == "xn--" and u_label(label) is None:
            return f"{label!r} is not a valid IDNA A-label"
        size = len(a_label(label.lower()))
        if size > _MAX_LABEL:
            return f"the domain label {label[:20]!r}... is longer than {_MAX_LABEL} octets"
        octets += size + 1
    if octets - 1 > _MAX_DOMAIN:
        return f"its domain is longer than {_MAX_DOMAIN} octets as sent"
    return None


def _fold_char(char: str) -> str:
    """``char`` in lower case, one character to one (Unicode's simple lowercase mapping): a
    mapping that would change the length (``İ`` -> ``i̇``) is not made. Not case *folding*,
    which also maps lower-case letters onto others (the final ``ς`` onto ``σ``, the old
    Cyrillic forms such as U+1C82 onto ``о``, ``ß`` onto ``ss``): ``σας.example`` and
    ``σασ.example`` are two IDNA 2008 domains (RFC 5892 2.6) with two owners, and two
    addresses that differ in more than case (``straße``, ``strasse``) stay two."""
    lowered = char.lower()
    return lowered if len(lowered) == 1 else char


def _fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", "".join(map(_fold_char, text)))


def normalise_address(address: str) -> str:
    """The comparison form of an address: NFKC, trimmed, case-folded (no plus-address folding),
    its domain in Unicode.

    The one place addresses are folded (DESIGN 4b: "Addresses match case-insensitively (whole
    address, after NFKC; no plus-address folding)"): sender lookup, own-address checks and the
    stores all compare ``normalise_address(a) == normalise_address(b)``. A domain's A-labels
    (``xn--bcher-kva``) become their U-labels (``bücher``), so ``anna@xn--bcher-kva.example``
    and ``anna@Bücher.example`` are one address (RFC 5890: one domain, two spellings); an
    invalid A-label stays as written. Case is changed one character to one, never folded
    (see :func:`_fold_char`): ``ÖMER`` is ``ömer``, but ``straße`` is not ``strasse``,
    ``σας`` is not ``σασ`` and the dotless ``ı`` is not ``i``. Accents are never dropped;
    NFC and NFD spellings are one.
    """
    if address.isascii():  # nearly every address: NFKC leaves ASCII as it is
        text = address.strip().lower()
        if "xn--" not in text:
            return text
    text = unicodedata.normalize("NFKC", address).strip()
    local, at, domain = text.rpartition("@")
    if at and (not domain.isascii() or "xn--" in domain.lower()):
        labels = DOMAIN_DOTS.split(domain)
        domain = ".".join(
            (u_label(label) or label) if label[:4].lower() == "xn--" else label for label in labels
        )
        text = f"{local}@{domain}"
    return _fold(text)


def comparison_domain(domain: str) -> str:
    """``domain`` in the form :func:`normalise_address` compares it in (NFKC, lower case one
    character to one, A-labels as U-labels): the domain a person is identified by. Where a
    domain is checked or written for that person (the From domain a signature must align
    with, the domain a reply is sent to), this is the one, never another DNS name that the
    domain as written would be (``Σ`` -> ``ς`` by ``str.lower()``, ``ｂ`` kept full-width)."""
    if domain.isascii() and "xn--" not in domain.lower():
        return domain.lower()  # nearly every domain
    return normalise_address(f"x@{domain}").rpartition("@")[2]


def mailbox_key(address: str) -> str:
    """The mailbox an address is delivered to, for counting replies (the reply budget):
    :func:`normalise_address` without a ``+tag`` sub-address (RFC 5233), so ``victim+1@x`` and
    ``victim+2@x``, which land in one inbox, share one budget. Identity never uses this form."""
    key = normalise_address(address)
    local, at, domain = key.rpartition("@")
    base = local.partition("+")[0]
    return f"{base}@{domain}" if at and base else key


def _split_addresses(value: str) -> Iterator[str]:
    """Split an address list at top-level commas (quotes, comments, <> respected); drop groups."""
    if _ADDRESS_SPECIALS.search(value) is None:
        yield from value.split(",")
        return
    start = 0
    depth = 0
    quoted = False
    angle = False
    escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif depth:
            depth += 1 if ch == "(" else -1 if ch == ")" else 0
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth = 1
        elif angle:
            angle = ch != ">"
        elif ch == "<":
            angle = True
        elif ch in ",;":
            yield value[start:i]
            start = i + 1
        elif ch == ":":
            start = i + 1  # a group's display name
    yield value[start:]


def parse_address(piece: str) -> tuple[str, str] | None:
    """``(display_name, addr_spec)`` of ONE mailbox, or None if invalid (see
    :func:`_parse_address`); an addr-spec with an :func:`address_problem` (a bidi override or
    a zero-width character in it, an invalid A-label, an over-long label) is invalid too."""
    parsed = _parse_address(piece)
    if parsed is None or address_problem(parsed[1]) is not None:
        return None
    return parsed


def _parse_address(piece: str) -> tuple[str, str] | None:
    """``(display_name, addr_spec)`` of ONE mailbox via the header registry, or None if invalid.

    A strict regex covers the unambiguous common forms first; anything else goes to the
    ``policy.default`` registry, and a registry result with an invalid-address defect (the
    CVE-2023-27043 shape ``a@evil <b@good>``) counts as no address. When the registry refuses
    a piece that is a display name without ``@`` in front of one plain ``<addr-spec>`` (an
    unbalanced quote, an encoded-word it cannot decode, specials such as ``Dr. Joe (IT)``), the
    name is read as written and the address kept. A name with encoded-words in front of one
    plain ``<addr-spec>`` is always read that way (:func:`plain_display_name`).
    """
    if "=?" in piece:
        worded = _LENIENT_MAILBOX.fullmatch(piece)
        if worded is not None:
            # the registry decodes encoded-words with Python's narrow codecs (Shift_JIS without
            # Windows-31J's characters, GB2312 without GBK's, ISO-8859-1 without windows-1252's)
            # and leaves them raw inside quotes, where Outlook and Notes put them: read the
            # name as header text is read, so it is the name the person's mail program shows
            return plain_display_name(worded.group("n")), worded.group("a")
    simple = _SIMPLE_MAILBOX.fullmatch(piece)
    if simple is not None:
        name = simple.group("q") if simple.group("q") is not None else simple.group("p")
        return " ".join(name.split()), simple.group("a")
    simple = _SIMPLE_BARE.fullmatch(piece)
    if simple is not None:
        return "", simple.group("a")
    if len(piece) > _MAX_PIECE:
        return None
    try:
        header = email_policy.default.header_factory("To", piece)
        addresses = header.addresses
        defects = header.defects
    except Exception:  # the registry raises IndexError and others on some garbage
        return _lenient_mailbox(piece)
    if len(addresses) != 1 or any(isinstance(d, InvalidHeaderDefect) for d in defects):
        return _lenient_mailbox(piece)
    address = addresses[0]
    if not address.username or not address.domain:
        return _lenient_mailbox(piece)
    return clean_text(str(address.display_name)), clean_text(str(address.addr_spec))


def _lenient_mailbox(piece: str) -> tuple[str, str] | None:
    """``(name, addr)`` of ``<name without @> <plain addr-spec>``, else None."""
    found = _LENIENT_MAILBOX.fullmatch(piece)
    if found is None:
        return None
    return plain_display_name(found.group("n")), found.group("a")


def _is_name_fragment(piece: str) -> bool:
    """True for a list piece that can only be part of a display name (no ``@``, no ``<>``)."""
    return "@" not in piece and "<" not in piece and ">" not in piece


_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
"""Unicode's bidirectional embeddings, overrides and isolates (LRE, RLE, PDF, LRO, RLO, LRI,
RLI, FSI, PDI): a display name holding ``U+202E`` shows its text backwards (``Bob
<moc.evil@...>`` reads as another address), the "Trojan Source" shape of CVE-2021-42574."""


def visible_name(name: str) -> str:
    """``name`` without bidirectional embedding, override and isolate characters, so it shows
    in the order it is written, wherever it is shown (the created User's name, the reply's
    greeting, a notification). Right-to-left names need none of them: their letters carry
    their direction (Unicode Bidirectional Algorithm, UAX #9)."""
    return _BIDI_CONTROLS.sub("", name) if _BIDI_CONTROLS.search(name) else name


def plain_display_name(text: str) -> str:
    """A display name written without address syntax, as a person reads it.

    RFC 2047 encoded-words decoded, the double quotes of quoted strings and their backslash
    escapes removed, whitespace runs as one space; e.g. ``"Foo", Joe`` -> ``Foo, Joe``.
    """
    text = decode_header_text(text)
    if '"' in text:
        text = re.sub(r"\\(.)", r"\1", text.replace('"', ""))
    return " ".join(text.split())


def parse_address_list(
    value: str, notes: list[IntakeNote] | None = None, what: str = "To"
) -> list[tuple[str, str]]:
    """Every valid mailbox of an address header, at most 1000, one bounded registry call each.

    Returns ``(display_name, addr_spec)`` pairs in order. Pieces that can only be the start of
    a display name with an unquoted comma are joined to the ``name <addr>`` piece after them
    (noted as ``LENIENT_ADDRESS``); other pieces that do not parse are noted as
    ``INVALID_ADDRESS`` and ignored.
    """
    sink: list[IntakeNote] = notes if notes is not None else []
    if "," not in value and ";" not in value and ":" not in value:  # one mailbox: the usual
        single = parse_address(value) if value.strip() else None
        if single is not None:
            return [single]
        if value.strip():
            sink.append(
                IntakeNote(
                    IntakeNoteKind.INVALID_ADDRESS,
                    f"{what}: 1 address(es) could not be parsed and were ignored",
                )
            )
        return []
    found: list[tuple[str, str]] = []
    bad = 0
    fragments: list[str] = []  # pieces that can only start the next mailbox's display name
    for piece in _split_addresses(value):
        if not piece.strip():
            continue
        if len(found) >= _MAX_ADDRESSES:
            sink.append(
                IntakeNote(
                    IntakeNoteKind.TOO_MANY_ADDRESSES,
                    f"{what}: more than {_MAX_ADDRESSES} addresses; the rest ignored",
                )
            )
            break
        if "@" not in piece and _is_name_fragment(piece) and len(piece) <= _MAX_PIECE:
            fragments.append(piece)
            continue
        parsed = parse_address(piece)
        if parsed is not None and fragments and "<" in piece:
            # "Joe Foo, PhD <joe@x>": the fragments start this mailbox's display name.
            name = plain_display_name(",".join([*fragments, piece[: piece.rfind("<")]]))
            sink.append(
                IntakeNote(
                    IntakeNoteKind.LENIENT_ADDRESS,
                    f"{what}: display name {name[:80]!r} has an unquoted comma; read as one name",
                )
            )
            parsed = (name, parsed[1])
            fragments = []
        bad += len(fragments) + (parsed is None)
        fragments = []
        if parsed is not None:
            found.append(parsed)
    bad += len(fragments)
    if bad:
        sink.append(
            IntakeNote(
                IntakeNoteKind.INVALID_ADDRESS,
                f"{what}: {bad} address(es) could not be parsed and were ignored",
            )
        )
    return found


def return_path_address(value: str) -> str:
    """Envelope sender of ``Return-Path``: ``""`` for the null path ``<>``."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        inner = value[start + 1 : end if end >= 0 else len(value)]
        return "".join(inner.split())
    parts = value.split()
    return parts[0] if parts else ""
