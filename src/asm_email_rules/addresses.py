"""Mailbox addresses: reading them from address fields, and the one form they are compared in.

Reading is bounded: an address list is split at top-level commas by a linear scan, and each
piece goes alone to the stdlib ``policy.default`` header registry (which is quadratic on long
lists and would otherwise be the slowest part of intake).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from email import policy as email_policy
from email.errors import InvalidHeaderDefect

from asm_email_rules.header_values import clean_text
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind

__all__ = [
    "normalise_address",
    "parse_address",
    "parse_address_list",
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
_MAX_PIECE = 2048  # one address given to the (quadratic) header registry
_MAX_ADDRESSES = 1000  # addresses kept per address header


def normalise_address(address: str) -> str:
    """The comparison form of an address: NFKC, trimmed, case-folded (no plus-address folding).

    The one place addresses are folded (DESIGN 4b: "Addresses match case-insensitively (whole
    address, after NFKC; no plus-address folding)"): sender lookup, own-address checks and the
    stores all compare ``normalise_address(a) == normalise_address(b)``.
    """
    return unicodedata.normalize("NFKC", address).strip().casefold()


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
    """``(display_name, addr_spec)`` of ONE mailbox via the header registry, or None if invalid.

    A strict regex covers the unambiguous common forms first; anything else goes to the
    ``policy.default`` registry, and a registry result with an invalid-address defect (the
    CVE-2023-27043 shape ``a@evil <b@good>``) counts as no address.
    """
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
        return None
    if len(addresses) != 1 or any(isinstance(d, InvalidHeaderDefect) for d in defects):
        return None
    address = addresses[0]
    if not address.username or not address.domain:
        return None
    return clean_text(str(address.display_name)), str(address.addr_spec)


def parse_address_list(
    value: str, notes: list[IntakeNote] | None = None, what: str = "To"
) -> list[tuple[str, str]]:
    """Every valid mailbox of an address header, at most 1000, one bounded registry call each."""
    found: list[tuple[str, str]] = []
    sink: list[IntakeNote] = notes if notes is not None else []
    bad = 0
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
        parsed = parse_address(piece)
        if parsed is None:
            bad += 1
        else:
            found.append(parsed)
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
