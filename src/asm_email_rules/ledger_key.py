"""The content half of the ledger key: a SHA-256 of the message without the trace headers.

DESIGN 4, "Nothing is lost": "the key is the Message-ID plus a hash of the message *without* the
trace headers that relays add (Received, Return-Path, Delivered-To, X-Original-To,
Authentication-Results, ARC-*), so a redelivery through another relay is still a duplicate,
while two different messages that reuse one Message-ID are both acted on."

Two more fields are trace fields by their definition and are dropped too: ``Received-SPF``
(RFC 7208 section 9.1) and ``X-Received`` (the trace line Gmail adds beside ``Received``). Only
the top-level header section is looked at; a header of an attached message is content. Every
other byte counts, in order, as received: line endings are not normalised.

The header section is split once, line by line with ``bytes.find``, and the kept spans are fed
to the hash through a ``memoryview``: linear in the size of the message, no copy of the body,
no parse. A message without trace fields hashes to the SHA-256 of its raw bytes.
"""

from __future__ import annotations

import hashlib

from asm_email_rules.model import InboundEmail, LedgerEntry
from asm_email_rules.protocols import Repository

__all__ = [
    "MAX_HEADER_SCAN",
    "TRACE_FIELDS",
    "TRACE_PREFIXES",
    "find_ledger_entry",
    "is_trace_field",
    "ledger_key",
    "ledger_sha256",
]

TRACE_FIELDS = frozenset(
    {
        b"received",
        b"return-path",
        b"delivered-to",
        b"x-original-to",
        b"authentication-results",
        b"received-spf",
        b"x-received",
    }
)
"""Header field names (lower case) that relays add on the way: left out of the hash."""

TRACE_PREFIXES = (b"arc-",)
"""Name prefixes of trace fields (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results;
RFC 8617)."""

_MAX_NAME = 128
"""A longer field name is no trace field (the longest one above is 22 bytes)."""

MAX_HEADER_SCAN = 1024 * 1024
"""Only the first MiB is searched for trace fields; anything after it counts (a header section
that long is hostile; intake keeps 256 KiB of it)."""


def is_trace_field(name: bytes) -> bool:
    """True when header field ``name`` (any case, surrounding blanks allowed) is a trace field."""
    folded = name.strip(b" \t").lower()
    return folded in TRACE_FIELDS or folded.startswith(TRACE_PREFIXES)


def ledger_sha256(raw: bytes) -> str:
    """The hex SHA-256 of ``raw`` without its trace header fields (each with its folded lines).

    The header section ends at the first empty line (``\\n`` or ``\\r\\n``); without one, the
    whole message is header. A line that is not a field (no colon, an mbox ``From`` line) is
    kept, and so is everything after the first :data:`MAX_HEADER_SCAN` bytes. Never raises for
    ``bytes``; linear in ``len(raw)``.
    """
    digest = hashlib.sha256()
    view = memoryview(raw)
    size = len(raw)
    scan_end = min(size, MAX_HEADER_SCAN)
    keep_from = 0  # start of the span of kept bytes not yet hashed
    skipping = False  # inside a trace field (its first line or a folded one)
    pos = 0
    while pos < scan_end:
        newline = raw.find(b"\n", pos)
        line_end = size if newline < 0 else newline + 1
        first = raw[pos]
        if first in (10, 13) and raw[pos:line_end].strip(b"\r\n") == b"":
            break  # the empty line: the body starts here
        if first not in (32, 9):  # a new field (a folded line keeps the current state)
            colon = raw.find(b":", pos, min(line_end, pos + _MAX_NAME + 1))
            trace = colon > pos and is_trace_field(raw[pos:colon])
            if trace and not skipping:
                digest.update(view[keep_from:pos])
                skipping = True
            elif not trace and skipping:
                keep_from = pos
                skipping = False
        pos = line_end
    if skipping:
        keep_from = pos
    digest.update(view[keep_from:])
    return digest.hexdigest()


def ledger_key(email: InboundEmail) -> tuple[str, str]:
    """``(Message-ID, content hash)`` under which ``email`` is recorded in the ledger: the
    Message-ID (``""`` without one) and :attr:`InboundEmail.ledger_sha256` (the raw bytes' hash
    for an ``InboundEmail`` built without it)."""
    return email.message_id or "", email.ledger_sha256 or email.raw_sha256


def find_ledger_entry(
    repository: Repository, mailbox: str, email: InboundEmail
) -> LedgerEntry | None:
    """The ledger entry of ``email`` in ``mailbox``, or None when it was never recorded.

    Looks it up by :func:`ledger_key`; then, when that differs, by the hash of the raw bytes,
    which keyed the entries that earlier versions of the library wrote: a message still in a
    mailbox from before an upgrade stays a duplicate. Raises what the repository raises.
    """
    message_id, sha256 = ledger_key(email)
    entry = repository.ledger_entry(mailbox, message_id, sha256)
    if entry is None and email.raw_sha256 and email.raw_sha256 != sha256:
        entry = repository.ledger_entry(mailbox, message_id, email.raw_sha256)
    return entry
