"""The content half of the ledger key: a SHA-256 of the message without the trace headers.

DESIGN 4, "Nothing is lost": "the key is the Message-ID plus a hash of the message *without* the
trace headers that relays add (Received, Return-Path, Delivered-To, X-Original-To,
Authentication-Results, ARC-*), so a redelivery through another relay is still a duplicate,
while two different messages that reuse one Message-ID are both acted on."

Two more fields are trace fields by their definition and are dropped too: ``Received-SPF``
(RFC 7208 section 9.1) and ``X-Received`` (the trace line Gmail adds beside ``Received``). Only
the top-level header section is looked at; a header of an attached message is content. A
leading mbox ``From `` line (``From sender date``) is left out too: procmail, Exim's pipe
transport (its default ``message_prefix``) and Postfix's pipe with the ``F`` flag write one,
with the time of the delivery, so the same message handed over again would otherwise differ.
Every other byte counts, in order, as received: line endings are not normalised.

The header section is split once, line by line with ``bytes.find``, and the kept spans are fed
to the hash through a ``memoryview``: linear in the size of the message, no copy of the body,
no parse. A message without trace fields (nor ``From `` line) hashes to the SHA-256 of its raw
bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from asm_email_rules.model import InboundEmail, LedgerEntry
from asm_email_rules.protocols import Repository

__all__ = [
    "MAX_HEADER_SCAN",
    "TRACE_FIELDS",
    "TRACE_PREFIXES",
    "cut_kept",
    "cut_over",
    "earlier_ledger_sha256s",
    "find_ledger_entry",
    "is_trace_field",
    "ledger_key",
    "ledger_sha256",
    "read_bound",
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


def _is_from_line(raw: bytes) -> bool:
    """True when ``raw`` starts with an mbox ``From `` line (``From sender date``), which a
    delivery agent writes before the message (procmail, Exim's pipe ``message_prefix``, Postfix
    pipe's ``F`` flag), not the obsolete ``From :`` field (blanks before the colon)."""
    return raw.startswith(b"From ") and not raw[5 : 5 + _MAX_NAME].lstrip(b" \t").startswith(b":")


def _kept_spans(raw: bytes, *, skip_from_line: bool = True) -> Iterator[tuple[int, int]]:
    """The ``(start, end)`` spans of ``raw`` that the ledger hash covers, in order: all but a
    leading mbox ``From `` line and the top-level trace fields (each with its folded lines)
    found in the first :data:`MAX_HEADER_SCAN` bytes. Linear in ``len(raw)``.
    ``skip_from_line=False`` keeps the ``From `` line, as versions before it was left out did
    (:func:`earlier_ledger_sha256s`)."""
    size = len(raw)
    scan_end = min(size, MAX_HEADER_SCAN)
    pos = 0
    if skip_from_line and _is_from_line(raw):
        newline = raw.find(b"\n", 0, scan_end)
        pos = scan_end if newline < 0 else newline + 1
    keep_from = pos  # start of the span of kept bytes not yet given
    skipping = False  # inside a trace field (its first line or a folded one)
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
                if pos > keep_from:
                    yield keep_from, pos
                skipping = True
            elif not trace and skipping:
                keep_from = pos
                skipping = False
        pos = line_end
    if skipping:
        keep_from = pos
    if size > keep_from:
        yield keep_from, size


def ledger_sha256(raw: bytes) -> str:
    """The hex SHA-256 of ``raw`` without its trace header fields (each with its folded lines)
    and without a leading mbox ``From `` line (a delivery agent's, with the time it ran: the
    same message handed over again gets another one).

    The header section ends at the first empty line (``\\n`` or ``\\r\\n``); without one, the
    whole message is header. A line that is not a field (no colon) is kept, and so is
    everything after the first :data:`MAX_HEADER_SCAN` bytes. Never raises for ``bytes``;
    linear in ``len(raw)``.
    """
    digest = hashlib.sha256()
    view = memoryview(raw)
    for start, end in _kept_spans(raw):
        digest.update(view[start:end])
    return digest.hexdigest()


def earlier_ledger_sha256s(raw: bytes) -> tuple[str, ...]:
    """The content hashes under which earlier versions of the library recorded ``raw`` in the
    ledger, where they differ from :func:`ledger_sha256` and from the SHA-256 of the raw bytes
    (which :func:`find_ledger_entry` tries anyway): a message read again after an upgrade, and
    recorded before it, must stay a duplicate.

    One derivation so far: the trace fields left out but a leading mbox ``From `` line kept
    (versions before that line was left out). Empty for a message without such a line, so
    most messages cost nothing more; else one more linear pass over ``raw``.
    """
    if not _is_from_line(raw):
        return ()
    digest = hashlib.sha256()
    view = memoryview(raw)
    for start, end in _kept_spans(raw, skip_from_line=False):
        digest.update(view[start:end])
    return (digest.hexdigest(),)


def cut_kept(raw: bytes, count: int) -> bytes:
    """The shortest start of ``raw`` that holds ``count`` of the bytes :func:`ledger_sha256`
    covers (all of ``raw`` when it holds fewer).

    For a message cut to a bounded length: cut this way, the same message with other trace
    fields (another relay, another delivery) keeps the same content and so the same ledger
    key. Linear in ``len(raw)``."""
    left = count
    for start, end in _kept_spans(raw):
        if end - start >= left:
            return raw[: start + left]
        left -= end - start
    return raw


def cut_over(raw: bytes, keep: int) -> bytes:
    """``raw`` when it is at most ``keep`` bytes long; else its start that holds ``keep + 1``
    of the bytes :func:`ledger_sha256` covers (:func:`cut_kept`).

    How every reader bounds a message (``keep`` is
    :attr:`~asm_email_rules.settings.Limits.max_read_size`): the intake still sees it as over
    ``max_total_size`` and keeps its header, and every copy of it, through whatever relays,
    is cut at the same content and so keeps one ledger key. A reader that reads at most
    :func:`read_bound` bytes of a message has all this needs. Linear in ``len(raw)``."""
    return cut_kept(raw, keep + 1) if len(raw) > keep else raw


def read_bound(keep: int) -> int:
    """The bytes of a message a reader reads, at most, for :func:`cut_over` with ``keep``:
    ``keep + 1`` bytes the key covers behind up to :data:`MAX_HEADER_SCAN` of trace fields."""
    return keep + MAX_HEADER_SCAN + 1


def ledger_key(email: InboundEmail) -> tuple[str, str]:
    """``(Message-ID, content hash)`` under which ``email`` is recorded in the ledger: the
    Message-ID (``""`` without one) and :attr:`InboundEmail.ledger_sha256` (the raw bytes' hash
    for an ``InboundEmail`` built without it)."""
    return email.message_id or "", email.ledger_sha256 or email.raw_sha256


def find_ledger_entry(
    repository: Repository, mailbox: str, email: InboundEmail
) -> LedgerEntry | None:
    """The ledger entry of ``email`` in ``mailbox``, or None when it was never recorded.

    Looks it up by :func:`ledger_key`; then, when that differs, by the hash of the raw bytes
    and by :attr:`InboundEmail.earlier_ledger_sha256s`, which keyed the entries that earlier
    versions of the library wrote: a message still in a mailbox from before an upgrade (or
    handed over again after it) stays a duplicate. Raises what the repository raises.
    """
    message_id, sha256 = ledger_key(email)
    entry = repository.ledger_entry(mailbox, message_id, sha256)
    tried = {sha256}
    for earlier in (email.raw_sha256, *email.earlier_ledger_sha256s):
        if entry is not None:
            break
        if earlier and earlier not in tried:
            tried.add(earlier)
            entry = repository.ledger_entry(mailbox, message_id, earlier)
    return entry
