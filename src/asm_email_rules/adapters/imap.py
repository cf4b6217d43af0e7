"""IMAP :class:`~asm_email_rules.protocols.Mailbox` on :mod:`imaplib` (RFC 9051 / 3501).

Mailbox keys are the UIDs of the selected folder. Fetching uses ``BODY.PEEK[]`` so nothing is marked
``\\Seen``, several listed messages per ``UID FETCH`` (a batch bounded in count and in bytes);
deleting sets ``\\Deleted``, for several messages per ``UID STORE``, and the expunge happens on
:meth:`ImapMailbox.close` (``UID EXPUNGE`` with UIDPLUS, so only our own marks are removed;
without UIDPLUS a plain ``EXPUNGE`` only when no other message is marked ``\\Deleted``).
Quarantine files the message in a separate folder, by default as a copy that carries the
reason in a header.

A session that died after marking messages ``\\Deleted`` leaves them in the folder:
:meth:`ImapMailbox.deleted_keys` lists them and :meth:`ImapMailbox.expunge` removes those the
caller knows are done (the polling service asks its ledger at the start of each session).
"""

from __future__ import annotations

import base64
import heapq
import imaplib
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Sized
from contextlib import suppress
from typing import Any, ClassVar, cast

import attrs

from asm_email_rules.adapters._session import (
    MAX_NUMBER_DIGITS,
    ServerSession,
    busy_at_sign_in,
    error_text,
    refuses_only_what_was_asked,
    shown_text,
)
from asm_email_rules.adapters.maildir import QUARANTINE_HEADER, annotate
from asm_email_rules.adapters.oauth import (
    REFUSED_WHAT_TO_DO,
    OAuth2Login,
    error_detail,
    error_reply,
    sign_in,
)
from asm_email_rules.connection import Security, as_security
from asm_email_rules.errors import (
    MailboxAuthenticationError,
    MailboxBusyError,
    MailboxError,
    MailboxHungUpError,
    MessageGoneError,
    MessageUnreadableError,
    TokenError,
)

__all__ = ["QUARANTINE_HEADER", "ImapConfig", "ImapMailbox", "Security", "annotate"]

log = logging.getLogger(__name__)

_UID_RE = re.compile(rb"\bUID (\d+)")
_FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'\bINTERNALDATE ("[^"]*")')
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_NUMBER_RE = re.compile(rb"\d+")
_ATOM_RE = re.compile(r"[A-Za-z0-9!#$&'+,./:;<=>?@^_`|~-]+")


@attrs.frozen
class ImapConfig:
    """Where the mailbox is and how to sign in. ``quarantine_annotate`` stores a copy with the
    reason header.

    Sign-in is ``LOGIN`` with ``username`` and ``password``, or, when ``oauth2`` is set,
    ``AUTHENTICATE XOAUTH2`` / ``OAUTHBEARER`` (RFC 7628) as ``username`` with a token from
    ``oauth2.tokens`` (``password`` is then unused).

    With ``quarantine_annotate=False`` the message is moved untouched (``UID MOVE``, or
    ``UID COPY`` + ``\\Deleted`` on servers without MOVE) and the reason is only logged.

    Batches: a fetch brings the next ``batch_messages`` listed messages at most, and no more
    than ``batch_bytes`` of them (by ``RFC822.SIZE``; a larger message comes alone), so the
    bytes held at once stay bounded; ``\\Deleted`` marks go out on :meth:`ImapMailbox.close`,
    ``store_batch`` UIDs per ``UID STORE`` (servers bound the length of a command line).

    ``fetch_ahead``: once a batch is read, the ``UID FETCH`` of the next one is sent at once
    and its answer read when its first message is fetched, so the server prepares and sends
    the next batch while the caller processes this one (the answer waits in the socket, not
    in this process: the bytes held stay one batch). Any other command reads, and drops, an
    answer not read yet first. False fetches a batch only when it is needed.

    ``max_line_bytes`` bounds one line of the server's responses. The ``UID SEARCH`` that
    lists the whole folder (a listing without a limit, or one whose first messages hold too
    few to list) answers in one line of about 7 bytes a message; :mod:`imaplib`'s own
    bound, 1,000,000 bytes, refused the listing of a folder of some 140,000 messages, so a
    backlog that large could never be drained. The default, 16 MiB, lists about two million;
    a longer line raises :class:`~asm_email_rules.errors.MailboxError` naming the bound.

    ``max_message_size``: the most bytes of one message a fetch brings, in bytes (None: all
    of it). Set, every fetch asks for ``BODY.PEEK[]<0.max_message_size>`` (RFC 3501 6.4.5),
    which is the whole of any shorter message, so a message of gigabytes on the server costs
    that many bytes here; the polling service's mailboxes get
    :func:`~asm_email_rules.ledger_key.read_bound` of the configuration's
    :attr:`~asm_email_rules.settings.Limits.max_read_size`.
    """

    host: str
    port: int = 993
    security: Security = attrs.field(default=Security.TLS, converter=as_security)
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    folder: str = "INBOX"
    quarantine_folder: str = "Quarantine"
    quarantine_annotate: bool = True
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)
    oauth2: OAuth2Login | None = None
    batch_messages: int = 20
    batch_bytes: int = 1 << 20
    store_batch: int = 100
    max_line_bytes: int = 16 << 20
    fetch_ahead: bool = True
    max_message_size: int | None = None

    def context(self) -> ssl.SSLContext:
        """The TLS context to use: the configured one or a verifying default."""
        return self.ssl_context if self.ssl_context is not None else ssl.create_default_context()


def _count(said: object) -> int:
    """A message count the server sent (``b"12"``), or 0 when it is none."""
    try:
        return int(said) if isinstance(said, bytes | str | int) else 0
    except ValueError:
        return 0


def _refused(exc: MailboxError) -> bool:
    """True when ``exc`` (from ``ImapMailbox._call``) is the server's tagged answer refusing
    the command: ``NO`` (no cause: the answer came back) or ``BAD`` (imaplib raises its
    ``error`` saying "command error: BAD"); not a connection that failed or a response
    imaplib could not read, after which the stream is out of step."""
    cause = exc.__cause__
    if cause is None:
        return True
    return type(cause) is imaplib.IMAP4.error and "command error: BAD" in str(cause)


SESSION_CODES = frozenset(
    {
        "ALERT",
        "AUTHENTICATIONFAILED",
        "AUTHORIZATIONFAILED",
        "CONTACTADMIN",
        "EXPIRED",
        "INUSE",
        "LIMIT",
        "NONEXISTENT",
        "OVERQUOTA",
        "PRIVACYREQUIRED",
        "THROTTLED",
        "UNAVAILABLE",
    }
)
"""Response codes (RFC 3501 7.1, RFC 5530; ``THROTTLED`` as some servers send it) that make a
tagged ``NO`` to a ``UID FETCH`` the session's trouble, not the messages': the server is
unavailable, throttling us, over a limit or a quota, the folder gone, our rights withdrawn."""

_RESPONSE_CODE_RE = re.compile(r"\s*\[([A-Za-z0-9.-]+)")

SIGN_IN_BUSY_CODES = frozenset({"INUSE", "LIMIT", "SERVERBUG", "THROTTLED", "UNAVAILABLE"})
"""Response codes (RFC 5530; ``THROTTLED`` as some servers send it) that make a tagged ``NO``
to ``LOGIN`` or ``AUTHENTICATE`` the server's trouble, not the credentials': it is
unavailable, the mailbox in use, a limit reached (Dovecot's ``NO [LIMIT] Maximum number of
connections from user+IP exceeded``), it throttles us or failed."""

SIGN_IN_CREDENTIAL_CODES = frozenset(
    {"AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "CONTACTADMIN", "EXPIRED", "PRIVACYREQUIRED"}
)
"""Response codes (RFC 5530) of a sign-in refusal that are about the credentials or the
account, whatever the words that follow."""


def refuses_only_the_messages(detail: str) -> bool:
    """True when a tagged ``NO`` to a ``UID FETCH``, whose text is ``detail``, refuses the
    messages asked for and not the session (RFC 3501 6.4.5, 7.1.2: "NO - fetch error: can't
    fetch that data"; Dovecot's ``NO [SERVERBUG]`` for a message file it cannot read): not
    when its response code is one of :data:`SESSION_CODES`, nor when its text says the server
    is unavailable or throttling us (Microsoft's "Request is throttled", "Server
    Unavailable"; Gmail's "exceeded ... bandwidth limits":
    :func:`~asm_email_rules.adapters._session.says_session_trouble`)."""
    code = _RESPONSE_CODE_RE.match(detail)
    named = code.group(1) if code is not None else None
    return refuses_only_what_was_asked(named, detail, SESSION_CODES)


def _said(data: object) -> str:
    """The text of a command's answer as imaplib gives it (a list of bytes)."""
    items = data if isinstance(data, list | tuple) else ()
    return b" ".join(d for d in items if isinstance(d, bytes)).decode("utf-8", "replace")


def encode_mailbox_name(name: str) -> str:
    """``name`` as an IMAP astring in modified UTF-7 (RFC 3501 5.1.3), quoted when needed."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    text = "".join(out)
    if _ATOM_RE.fullmatch(text) and text.upper() != "NIL":
        return text
    return _quoted(text)


_CAPABILITY_CODE_RE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


def _capabilities_said(client: imaplib.IMAP4, signed_in: list[Any]) -> bytes | None:
    """The capabilities the server gave with its answer to the sign-in: a ``[CAPABILITY ...]``
    response code in the OK (RFC 3501 7.1; Dovecot sends one), else an untagged
    ``CAPABILITY`` response (7.2.1; Gmail sends one after AUTHENTICATE), which imaplib keeps
    (its own, asked for at connect time, it took then); None when it gave neither, and the
    client asks (6.1.1)."""
    for item in signed_in:
        code = _CAPABILITY_CODE_RE.match(item) if isinstance(item, bytes) else None
        if code is not None and code.group(1).strip():
            return code.group(1)
    listed = [item for item in client.response("CAPABILITY")[1] if isinstance(item, bytes)]
    return listed[-1] if listed and listed[-1].strip() else None


_PERSONAL_NAMESPACE_RE = re.compile(rb'\(\("([\x20-\x7e]*?)" ')
"""The prefix of the first personal namespace in a ``NAMESPACE`` answer (RFC 2342 5:
``(("INBOX." ".")) NIL NIL``), a quoted string."""


def _under(name: str, prefix: str) -> bool:
    """True when the mailbox ``name`` is already under the namespace ``prefix`` (``INBOX``
    in either in any case, RFC 3501 5.1)."""
    if name.startswith(prefix):
        return True
    head, rest = name[:5], prefix[:5]
    return head.upper() == rest.upper() == "INBOX" and name[5:].startswith(prefix[5:])


def _quoted(text: str) -> str:
    """An IMAP quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_IMAPLIB_MAX_LINE = 1_000_000
"""imaplib's own bound on a response line (``imaplib._MAXLINE``)."""


def _read_line(client: imaplib.IMAP4, limit: int) -> bytes:
    """One response line of at most ``limit`` bytes (``imaplib.IMAP4.readline`` with the
    configured bound instead of the module's 1,000,000)."""
    line = cast(bytes, client.file.readline(limit + 1))  # imaplib opens the socket file "rb"
    if len(line) > limit:
        raise client.error(f"got more than {limit} bytes in one response line (max_line_bytes)")
    return line


class _Imap(imaplib.IMAP4):
    """:class:`imaplib.IMAP4` reading response lines up to ``max_line`` bytes."""

    max_line = _IMAPLIB_MAX_LINE

    def readline(self) -> bytes:
        return _read_line(self, self.max_line)


class _ImapTls(imaplib.IMAP4_SSL):
    """:class:`imaplib.IMAP4_SSL` reading response lines up to ``max_line`` bytes."""

    max_line = _IMAPLIB_MAX_LINE

    def readline(self) -> bytes:
        return _read_line(self, self.max_line)


@attrs.frozen
class _Ahead:
    """A ``UID FETCH`` sent ahead (:attr:`ImapConfig.fetch_ahead`) whose answer is not read."""

    tag: bytes
    uids: list[str]


_AHEAD_TAG = b"ZA"
"""The prefix of the tags of the fetches sent ahead: imaplib's tags are made of the letters
``A`` to ``P`` and digits (``imaplib.Int2AP``), so no answer is taken for the other's."""

_LITERAL_RE = re.compile(rb"\{(\d+)\}\r?\n?\Z")
"""A response line that ends with a literal's length (RFC 3501 4.3): its bytes follow."""

_BODY_LITERAL_RE = re.compile(rb"BODY\[\](?:<0>)? \{\d+\}\r?\n?\Z")
"""The text before the literal of a ``BODY[]`` item: the message itself (``BODY[]<0>``: its
start, when ``max_message_size`` bounds the fetch, RFC 3501 6.4.5)."""

_FETCH_RESPONSE_RE = re.compile(rb"(?:\* )?\d+ (?:FETCH )?\(")
"""The start of an untagged ``FETCH`` response (``* 2 FETCH (``, or ``2 (`` as imaplib keeps
it), not the rest of one after a literal."""

_DROP_CHUNK = 64 << 10
"""The pieces a literal only skipped is read in (the answer ahead that another command
drops, as :meth:`ImapMailbox.close` does at a session's end, on the thread that ends it
while the next session holds its own batch)."""

_LITERAL_CHUNK = 64 << 20
"""A literal announced longer than this is read in pieces of this size, so the bytes held
are at most those received, whatever length the server announced (a buffered ``read(n)``
allocates ``n`` bytes at once). A shorter one is read at once: pieces and their join would
hold it twice."""

SIZES_AHEAD = 200
"""Listed UIDs whose sizes one ``UID FETCH ... (RFC822.SIZE)`` asks for (the batches of
:meth:`ImapMailbox.fetch` are chosen by size): more than a polling session lists."""

HANG_UP_RETRY_SECONDS = 3600.0
"""How long a message the server hung up on (:class:`~asm_email_rules.errors.MailboxHungUpError`)
is left out of the sessions of its folder before it is asked for again: a message an admin
repaired is then handled without a restart (a restart forgets them all)."""

_FolderKey = tuple[str, int, str, str, str]
"""Host, port, user, folder and UIDVALIDITY: the UIDs of one numbering of one folder."""


class _HungUpOn:
    """The UIDs the server hung up on, by folder (:data:`_FolderKey`), with when (monotonic
    seconds) and what it said; kept by the process, so that the next session, on a new
    connection and a new :class:`ImapMailbox`, leaves them out. Safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uids: dict[_FolderKey, dict[str, tuple[float, str]]] = {}

    def note(self, folder: _FolderKey, uid: str, said: str) -> None:
        with self._lock:
            self._uids.setdefault(folder, {})[uid] = (time.monotonic(), said)

    def current(self, folder: _FolderKey) -> dict[str, str]:
        """The UIDs of ``folder`` to leave out now, with what the server said; those noted
        :data:`HANG_UP_RETRY_SECONDS` ago or more are forgotten (asked for again)."""
        now = time.monotonic()
        with self._lock:
            uids = self._uids.get(folder)
            if not uids:
                return {}
            due = [uid for uid, (when, _) in uids.items() if now - when >= HANG_UP_RETRY_SECONDS]
            for uid in due:
                del uids[uid]
            if not uids:
                del self._uids[folder]
            return {
                uid: f"it hung up on the last FETCH of it ({said}); not asked for again "
                f"for {max(0.0, HANG_UP_RETRY_SECONDS - (now - when)):.0f} s"
                for uid, (when, said) in uids.items()
            }


_HUNG_UP_ON = _HungUpOn()


def _bare_uid(said: bytes) -> str | None:
    """The UID a ``FETCH`` response names without the data asked for (no ``BODY[]``, no
    ``RFC822.SIZE``: Dovecot's ``* 3 FETCH (UID 3)`` for a message it cannot read), else
    None."""
    if not _FETCH_RESPONSE_RE.match(said) or b"BODY[" in said or b"RFC822.SIZE" in said:
        return None
    uid = _UID_RE.search(said)
    return uid.group(1).decode() if uid is not None else None


_FETCH_FAILED = b"FETCH failed"
"""What Dovecot's ``BYE`` says when it hangs up on a message it cannot read."""


def _refused_by_hang_up(
    named: Collection[str], last_bare: str | None, asked: Collection[str], bye: bytes | None
) -> str | None:
    """The UID of ``asked`` the server hung up on: the one its last response named without
    the data asked for (``last_bare``); else, when its ``BYE`` says the FETCH failed (Dovecot
    asked for sizes it must read a file for sends no response for the message it cannot
    read), the lowest asked that it did not answer for (it answers in ascending order).
    None when neither says which."""
    if last_bare is not None:
        return last_bare if last_bare in asked else None
    if bye is None or _FETCH_FAILED.lower() not in bye.lower():
        return None
    left = [int(uid) for uid in asked if uid not in named]
    return str(min(left)) if left else None


def _fetch_responses(data: Iterable[object]) -> Iterator[tuple[bytes, bytes | None]]:
    """The ``FETCH`` responses of an answer as imaplib keeps it (a response with a literal is
    a ``(text, literal)`` tuple, then the text after the literal as bytes): each one's text
    without its literals, and the literal of its ``BODY[]`` item (else its first literal;
    None when it has none). RFC 3501 7.4.2 sets no order for the data items, and some servers
    send the ``UID`` after the message (``* 1 FETCH (BODY[] {n} ... UID 7)``): it is in the
    text either way."""
    text: list[bytes] = []
    body: bytes | None = None
    exact = False  # body is the literal of a BODY[] item
    for item in data:
        head = item[0] if isinstance(item, tuple) else item
        if not isinstance(head, bytes):
            continue
        if text and _FETCH_RESPONSE_RE.match(head):
            yield b"".join(text), body
            text, body, exact = [], None, False
        text.append(head)
        literal = item[1] if isinstance(item, tuple) and len(item) == 2 else None
        if isinstance(literal, bytes) and not exact:
            if _BODY_LITERAL_RE.search(head):
                body, exact = literal, True
            elif body is None:
                body = literal
    if text:
        yield b"".join(text), body


def _answered(data: Iterable[object]) -> tuple[set[str], str | None]:
    """The UIDs a ``UID FETCH`` answer (as imaplib keeps it) named, and the one its last
    response named without the data asked for (:func:`_bare_uid`), if it did."""
    named: set[str] = set()
    last_bare: str | None = None
    for said, body in _fetch_responses(data):
        if not _FETCH_RESPONSE_RE.match(said):
            continue
        uid = _UID_RE.search(said)
        if uid is not None:
            named.add(uid.group(1).decode())
        last_bare = None if body is not None else _bare_uid(said)
    return named, last_bare


def _last_said(client: imaplib.IMAP4, name: str) -> bytes | None:
    """The last untagged ``name`` response (its data) imaplib kept, if any, left kept."""
    said = client.untagged_responses.get(name) or []
    last = said[-1] if said else None
    return last if isinstance(last, bytes) else None


def _hung_up(exc: BaseException) -> bool:
    """True when ``exc`` (reading an answer) is the server's hang-up: imaplib's ``abort``
    (an untagged ``BYE``, or the connection closed: "socket error: EOF") or a connection
    reset; not a timeout, after which the server may still be answering."""
    return isinstance(exc, imaplib.IMAP4.abort | ConnectionError)


def _untagged(
    client: imaplib.IMAP4, line: bytes, *, keep: bool = True
) -> tuple[bytes, bytes | None]:
    """One untagged response that began with ``line``, read to its end: its text without the
    literals, and the literal of its ``BODY[]`` item (None when it has none, or without
    ``keep``: then every literal is read in pieces of :data:`_DROP_CHUNK` and dropped, so a
    message only skipped is never held whole)."""
    said = [line]
    body: bytes | None = None
    while (literal := _LITERAL_RE.search(line)) is not None:
        if len(literal.group(1)) > MAX_NUMBER_DIGITS:
            raise client.error(f"a literal of {len(literal.group(1))} digits announced")
        size = int(literal.group(1))
        if not keep:
            _skip_literal(client, size)
        else:
            data = _read_literal(client, size)
            if body is None and _BODY_LITERAL_RE.search(line):
                body = data
        line = client.readline()
        said.append(line)
    return b"".join(said), body


def _skip_literal(client: imaplib.IMAP4, size: int) -> None:
    """Read the ``size`` octets of a literal in pieces of :data:`_DROP_CHUNK`, keeping none;
    raises imaplib's ``abort`` when the connection ends first."""
    while size > 0 and (piece := client.read(min(size, _DROP_CHUNK))):
        size -= len(piece)
    if size:
        raise client.abort("the server closed the connection within a literal")


def _read_literal(client: imaplib.IMAP4, size: int) -> bytes:
    """The ``size`` octets of a literal (RFC 3501 4.3), read at once or, announced longer than
    :data:`_LITERAL_CHUNK`, in pieces of that size; raises imaplib's ``abort`` when the
    connection ends first."""
    if size <= _LITERAL_CHUNK:
        data = client.read(size)
    else:
        pieces = []
        left = size
        while left > 0 and (piece := client.read(min(left, _LITERAL_CHUNK))):
            pieces.append(piece)
            left -= len(piece)
        data = b"".join(pieces)
    if len(data) < size:
        raise client.abort("the server closed the connection within a literal")
    return data


def _uid_set(uids: list[str]) -> str:
    """An IMAP sequence set (RFC 3501 9, ``sequence-set``) of ``uids``, listed in ascending
    order, with runs of consecutive numbers as ranges: ``1:3,7,9:10``."""
    parts: list[str] = []
    first = last = -1
    for uid in map(int, uids):
        if uid == last + 1 and first >= 0:
            last = uid
            continue
        if first >= 0:
            parts.append(str(first) if first == last else f"{first}:{last}")
        first = last = uid
    if first >= 0:
        parts.append(str(first) if first == last else f"{first}:{last}")
    return ",".join(parts)


class ImapMailbox(ServerSession):
    """One IMAP folder as a :class:`~asm_email_rules.protocols.Mailbox`; connects on first use."""

    closes_concurrently: ClassVar[bool] = True
    """:meth:`close` (marking, expunging, logging out, on this session's own connection) may
    run on another thread while a new session of the same folder is read
    (:mod:`~asm_email_rules.session_end`): the polling service skips the keys it handled in
    the pass, both when it lists and when it looks for a dead session's leftovers."""

    bounded_listing: ClassVar[bool] = True
    """:meth:`list_keys` takes ``limit`` and ``skip`` and keeps only ``limit`` UIDs as it
    reads the search result, however many the folder holds; a message deleted in a session
    whose :meth:`close` returned is marked ``\\Deleted`` (if not expunged) and never listed
    again (:class:`~asm_email_rules.protocols.Mailbox`)."""

    opens_ahead: ClassVar[bool] = True
    """:meth:`open` (connect and sign in) may run on another thread, before the session: the
    polling service opens the next session's connection while the current one is read
    (:mod:`~asm_email_rules.session_start`); a server allows several sessions of a folder."""

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self._imap: imaplib.IMAP4 | None = None
        self._selected = False  # the folder is selected on the connection
        self._selected_count = 0  # the message count SELECT answered with
        self._expunged_here = 0  # messages a plain EXPUNGE of ours removed since
        self._opened_ahead = False  # connected by open(), not yet used: may be replaced once
        self._capabilities: frozenset[str] = frozenset()
        self._deleted: set[str] = set()
        self._unflagged: list[str] = []  # deleted here, \\Deleted not yet sent to the server
        self._listed: list[str] = []  # the last list_keys(), for fetching ahead
        self._ahead_end = 0  # the listed UIDs before this one may be fetched with others
        self._position: dict[str, int] = {}
        self._sizes: dict[str, int] = {}  # RFC822.SIZE of listed UIDs, asked ahead
        self._sized: set[str] = set()  # the listed UIDs whose size was asked (found or not)
        self._gone: set[str] = set()  # listed, asked for in a batch, not brought back
        # listed, refused by the server (a tagged NO to its UID FETCH): UID -> what it said
        self._unreadable: dict[str, str] = {}
        self._fetched: dict[str, bytes] = {}  # fetched ahead, not yet handed out
        self._ahead: _Ahead | None = None  # a batch's UID FETCH sent, its answer not read
        self._ahead_tags = 0
        # (what failed, why): sending or reading a fetch ahead failed, so the stream is out
        # of step and no command may follow
        self._broken: tuple[str, Exception] | None = None
        self._quarantine_ready = False
        self._quarantine_name: str | None = None  # the quarantine folder's name here
        self._uidvalidity: str | None = None  # the folder's, as SELECT said it
        # the server hung up on a fetch (the UID is remembered): raised again by any command
        # of the session; close() sends the session's marks on a new connection
        self._hung_up_error: MailboxHungUpError | None = None
        self.left_marked: frozenset[str] = frozenset()
        """The UIDs this session deleted that :meth:`close` marked ``\\Deleted`` but did not
        expunge (no UIDPLUS, and someone else's message is marked too): the polling service
        knows them done and does not fetch them again as a dead session's leftovers."""

    def __repr__(self) -> str:
        cfg = self.config
        return f"ImapMailbox({cfg.host}:{cfg.port}, folder={cfg.folder!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _where(self) -> str:
        cfg = self.config
        return f"IMAP {cfg.host}:{cfg.port} folder {cfg.folder!r}"

    def _call(self, action: str, func: Callable[[], tuple[str, Any]]) -> list[Any]:
        """Run one imaplib call; any failure or non-OK answer becomes a MailboxError.

        The answer to a fetch sent ahead is read (and dropped) first: imaplib would take it
        for its own command's."""
        self._settle()
        try:
            status, data = func()
        except (imaplib.IMAP4.error, OSError, UnicodeError, ValueError) as exc:
            # ValueError: imaplib converts a literal's announced size with int()
            raise MailboxError(f"{self._where()}: {action} failed: {error_text(exc)}") from exc
        if status != "OK":
            detail = b" ".join(d for d in data or () if isinstance(d, bytes)).decode(
                "utf-8", "replace"
            )
            raise MailboxError(f"{self._where()}: {action} refused: {status} {detail}")
        return list(data or ())

    def _connect(self) -> imaplib.IMAP4:
        cfg = self.config
        client: _Imap | _ImapTls
        if cfg.security is Security.TLS:
            client = _ImapTls(cfg.host, cfg.port, ssl_context=cfg.context(), timeout=cfg.timeout)
        else:
            client = _Imap(cfg.host, cfg.port, timeout=cfg.timeout)
        client.max_line = cfg.max_line_bytes
        if cfg.security is Security.STARTTLS:
            client.starttls(ssl_context=cfg.context())
        return client

    def _client(self) -> imaplib.IMAP4:
        """The connection, signed in and with the folder selected (each done when not yet).

        A connection opened ahead (:meth:`open`) that the server or the network closed while
        it waited is replaced once, here: it has done nothing yet, so a new one loses nothing
        (a firewall's idle timeout, a server's autologout, RFC 3501 5.4).

        After the server hung up on a fetch (:meth:`_hung_up_on`) it raises that again: the
        session is over (only :meth:`close` connects again, for the session's marks)."""
        if self._hung_up_error is not None:
            raise self._hung_up_error
        client = self._signed_in()
        if not self._selected:
            try:
                self._select(client)
            except MailboxError as exc:
                waited, self._opened_ahead = self._opened_ahead, False
                if not waited or not isinstance(exc.__cause__, imaplib.IMAP4.abort | OSError):
                    raise
                log.info(
                    "IMAP connection opened ahead was closed while it waited; connecting again",
                    extra={"imap_server": self._where(), "error": str(exc)},
                )
                client = self._signed_in()
                self._select(client)
            self._selected = True
            self._opened_ahead = False
            log.debug("IMAP session open", extra={"imap_server": self._where()})
        return client

    def _select(self, client: imaplib.IMAP4) -> None:
        """``SELECT`` the folder; on failure the connection is dropped (MailboxError)."""
        try:
            said = self._call(
                "SELECT", lambda: client.select(encode_mailbox_name(self.config.folder))
            )
        except MailboxError:
            self._drop()
            raise
        self._selected_count, self._expunged_here = _count(said[0] if said else None), 0
        validity = _last_said(client, "UIDVALIDITY")
        now = validity.decode("ascii", "replace") if validity is not None else None
        if self._uidvalidity is not None and now != self._uidvalidity:
            was = self._uidvalidity
            self._drop()  # and the session's marks: UIDs of another numbering
            raise MailboxError(
                f"{self._where()}: UIDVALIDITY changed from {was} to {now} since the session "
                "began; its deletions are not sent (the messages are handled again as "
                "duplicates)"
            )
        self._uidvalidity = now
        self._unreadable.update(self._remembered())

    def _folder_key(self) -> _FolderKey | None:
        """This folder's key among the UIDs the server hung up on (None without a
        UIDVALIDITY: UIDs of an unknown numbering are not remembered)."""
        if self._uidvalidity is None:
            return None
        cfg = self.config
        return (cfg.host, cfg.port, cfg.username, cfg.folder, self._uidvalidity)

    def _remembered(self) -> dict[str, str]:
        """The UIDs of this folder the server hung up on lately, with why they are refused."""
        folder = self._folder_key()
        return {} if folder is None else _HUNG_UP_ON.current(folder)

    def _hung_up_on(self, uid: str, exc: BaseException, action: str) -> MailboxHungUpError:
        """The server hung up right after answering for ``uid`` without it: ``uid`` is
        remembered (left out of the folder's sessions for :data:`HANG_UP_RETRY_SECONDS`),
        the connection dropped with what was fetched and not handed out (fetched again by
        the next session), and the error returned, raised again by any later command but
        :meth:`close`. The session's deletions are kept: :meth:`close` sends them on a new
        connection."""
        said = shown_text(error_text(exc))  # kept for the UID for HANG_UP_RETRY_SECONDS
        folder = self._folder_key()
        if folder is not None:
            _HUNG_UP_ON.note(folder, uid, said)
        self._unreadable[uid] = f"it hung up on the FETCH of it ({said})"
        client, self._imap = self._imap, None
        if client is not None:
            with suppress(imaplib.IMAP4.error, OSError):
                client.shutdown()
        self._fetched.clear()
        self._ahead, self._broken, self._selected = None, None, False
        self._opened_ahead = False
        kept = (
            f"left out of this folder's sessions for {HANG_UP_RETRY_SECONDS:.0f} s"
            if folder is not None
            else "not remembered: the folder has no UIDVALIDITY"
        )
        self._hung_up_error = MailboxHungUpError(
            f"{self._where()}: the server hung up on {action} right after answering for UID "
            f"{uid} without it (a message it cannot read?): {said}; UID {uid} is {kept}",
            key=uid,
        )
        log.info(
            "IMAP server hung up on a fetch at UID %s; %s",
            uid,
            kept,
            extra={"imap_server": self._where(), "uid": uid, "error": said},
        )
        return self._hung_up_error

    def _signed_in(self) -> imaplib.IMAP4:
        """The connection, signed in and its capabilities known (connected when not yet)."""
        if self._imap is not None:
            return self._imap
        try:
            client = self._connect()
        except (imaplib.IMAP4.error, OSError, UnicodeError) as exc:
            raise MailboxError(f"{self._where()}: cannot connect: {exc}") from exc
        self._imap = client
        try:
            said = self._sign_in(client)
            listed = _capabilities_said(client, said)
            if listed is None:  # not given with the sign-in: asked for (a round trip more)
                caps = self._call("CAPABILITY", client.capability)
                listed = b" ".join(c for c in caps if isinstance(c, bytes))
            self._capabilities = frozenset(listed.decode("ascii", "replace").upper().split())
        except MailboxError:
            self._drop()
            raise
        return client

    def open(self) -> None:
        """Connect and sign in now, rather than at the first call that needs it (nothing
        happens when already connected). Raises MailboxError
        (:class:`~asm_email_rules.errors.MailboxAuthenticationError` for a refused sign-in).

        The folder is selected at that first call, not here: a connection selects a view of
        the folder that changes only as the server reports it (RFC 3501 7.4.1: an expunge by
        another session may stay in the view until then), so a session opened ahead of the
        end of the one before it would still list what that end expunged."""
        fresh = self._imap is None
        self._signed_in()
        self._opened_ahead = fresh

    def _sign_in(self, client: imaplib.IMAP4) -> list[Any]:
        """LOGIN with the password, or AUTHENTICATE with an OAuth2 token (retried once); the
        data of the server's OK (where it may list its capabilities, RFC 3501 7.1).

        A refusal raises :class:`MailboxAuthenticationError` naming server, user and mechanism.
        """
        cfg = self.config
        login = cfg.oauth2
        where = f"IMAP {cfg.host}:{cfg.port}"
        mechanism = "LOGIN" if login is None else login.mechanism.sasl_name

        def failed(detail: str) -> MailboxAuthenticationError:
            return MailboxAuthenticationError(
                f"{where}: sign-in as {cfg.username!r} with {mechanism} failed: {detail}",
                server=where,
                user=cfg.username,
                mechanism=mechanism,
            )

        def busy(said: str) -> MailboxBusyError | None:
            """The error for a refusal that is the server's trouble, not the credentials'
            (:func:`~asm_email_rules.adapters._session.busy_at_sign_in`), else None."""
            code = _RESPONSE_CODE_RE.match(said)
            named = code.group(1) if code is not None else None
            if not busy_at_sign_in(named, said, SIGN_IN_BUSY_CODES, SIGN_IN_CREDENTIAL_CODES):
                return None
            return MailboxBusyError(
                f"{where}: sign-in as {cfg.username!r} with {mechanism} turned away for now: "
                f"the server cannot take the session (busy, in use, a connection limit or "
                f"throttled), the credentials were not refused: {shown_text(said)}"
            )

        if login is None:
            user = cfg.username if _ATOM_RE.fullmatch(cfg.username) else _quoted(cfg.username)
            try:
                return list(client.login(user, cfg.password)[1] or ())
            except imaplib.IMAP4.abort as exc:
                raise MailboxError(f"{where}: connection lost during sign-in: {exc}") from exc
            except imaplib.IMAP4.error as exc:
                said = error_text(exc)
                raise busy(said) or failed(f"refused: {said}") from exc
            except (OSError, UnicodeError) as exc:
                raise MailboxError(f"{where}: LOGIN failed: {exc}") from exc
        if f"AUTH={mechanism}" not in client.capabilities:
            offered = sorted(c[5:] for c in client.capabilities if c.startswith("AUTH="))
            raise failed(
                f"the server does not offer it (it offers: {', '.join(offered) or 'none'})"
            )

        answered: list[Any] = []

        def attempt(response: bytes) -> str | None:
            challenges: list[bytes] = []

            def answer(challenge: bytes) -> bytes:
                challenges.append(challenge)
                return response if len(challenges) == 1 else error_reply(login.mechanism)

            try:
                answered[:] = client.authenticate(mechanism, answer)[1] or ()
            except imaplib.IMAP4.abort as exc:
                raise MailboxError(f"{where}: connection lost during sign-in: {exc}") from exc
            except imaplib.IMAP4.error as exc:
                turned_away = busy(error_text(exc))
                if turned_away is not None:  # not the token's fault: it is not replaced
                    raise turned_away from exc
                said = error_detail(challenges[1]) if len(challenges) > 1 else ""
                return error_text(exc) + (f" ({said})" if said else "")
            except OSError as exc:
                raise MailboxError(f"{where}: connection lost during sign-in: {exc}") from exc
            return None

        try:
            refusal = sign_in(login, cfg.username, attempt, cfg.host, cfg.port)
        except TokenError as exc:
            raise failed(f"no access token: {exc}") from exc
        if refusal is not None:
            raise failed(f"refused: {refusal}{REFUSED_WHAT_TO_DO}")
        return answered

    def _drop(self) -> None:
        """Forget the connection without any protocol exchange."""
        client, self._imap = self._imap, None
        self._forget()
        if client is not None:
            with suppress(imaplib.IMAP4.error, OSError):
                client.shutdown()

    def _forget(self) -> None:
        """Drop the session's state (marks not sent, listing, messages fetched ahead)."""
        self._deleted.clear()
        self._unflagged.clear()
        self._listed, self._position, self._ahead_end = [], {}, 0
        self._sizes, self._sized, self._gone = {}, set(), set()
        self._unreadable.clear()
        self._fetched.clear()
        self._ahead = None
        self._broken = None
        self._selected = False
        self._quarantine_ready = False
        self._quarantine_name = None
        self._uidvalidity = None
        self._hung_up_error = None

    def _uid(self, action: str, command: str, *args: str) -> list[object]:
        client = self._client()
        return self._call(action, lambda: client.uid(command, *args))

    def _uid_fetch(
        self, action: str, uids: str, items: str, asked: Collection[str]
    ) -> tuple[list[Any], str | None]:
        """``UID FETCH uids items``: the data the server sent, and its refusal of some of the
        messages (the text of a tagged ``NO`` that :func:`refuses_only_the_messages`; the
        data then holds what it did send), or None when it answered OK. Any other failure (a
        ``NO`` that refuses the session, ``BAD``, ``BYE``, the connection) raises
        MailboxError, as :meth:`_call` does; a hang-up right after a response that names one
        of ``asked`` without its data, or after a ``BYE`` that says the FETCH failed, raises
        MailboxHungUpError (:func:`_refused_by_hang_up`, :meth:`_hung_up_on`)."""
        client = self._client()
        self._settle()
        try:
            status, data = client.uid("FETCH", uids, items)
        except (imaplib.IMAP4.error, OSError, UnicodeError, ValueError) as exc:
            if _hung_up(exc):
                named, last_bare = _answered(client.untagged_responses.get("FETCH") or ())
                bye = _last_said(client, "BYE")
                uid = _refused_by_hang_up(named, last_bare, asked, bye)
                if uid is not None:
                    raise self._hung_up_on(uid, exc, action) from exc
            raise MailboxError(f"{self._where()}: {action} failed: {error_text(exc)}") from exc
        if status == "OK":
            return list(data or ()), None
        said = _said(data)
        detail = shown_text(said)  # kept for each message refused, and logged with each
        if status != "NO" or not refuses_only_the_messages(said):
            raise MailboxError(f"{self._where()}: {action} refused: {status} {detail}")
        # imaplib leaves the data sent with a NO among its untagged responses
        return list(client.untagged_responses.pop("FETCH", None) or ()), detail

    def _keep_fetched(self, data: list[Any], wanted: Container[str]) -> set[str]:
        """Put the messages of a ``UID FETCH (UID BODY.PEEK[])`` answer that are ``wanted``
        in ``_fetched``; the wanted UIDs the server answered for without their body."""
        bare: set[str] = set()
        for said, body in _fetch_responses(data):
            match = _UID_RE.search(said)
            uid = match.group(1).decode() if match is not None else ""
            if uid not in wanted:
                continue
            if body is not None:
                self._fetched[uid] = body
            elif _FETCH_RESPONSE_RE.match(said):
                bare.add(uid)
        return bare - self._fetched.keys()

    # -- Mailbox protocol -------------------------------------------------------------------

    def list_keys(self, *, limit: int | None = None, skip: Container[str] = ()) -> Iterator[str]:
        """UIDs not marked ``\\Deleted``, oldest (lowest UID) first (``UID SEARCH UNDELETED``).

        ``limit``: only the ``limit`` lowest UIDs, chosen as the search result is read (one
        UID at a time, not a list of them all), so a session holds ``limit`` keys however
        large the folder; None lists every one. When ``limit`` UIDs are listed, the last is
        fetched only when asked for, not in a batch (a caller may have listed it only to learn
        whether any are left). ``skip``: UIDs not to list (the polling
        service's keys handled earlier in the pass). The UIDs listed serve the batched
        :meth:`fetch` until the next listing. Raises MailboxError.

        A limited listing with a ``skip`` that has a size searches only the first ``limit``
        plus that many messages (plus the session's deletions) by sequence number, which
        are the lowest UIDs (RFC 3501 section 2.3.1.2): the server's answer is a session's
        worth of UIDs, not the folder's, so a backlog of ``n`` messages costs ``n / limit``
        searches of a session's worth, not of up to ``n`` UIDs each. Only when those hold
        fewer than ``limit`` UIDs to list (messages marked ``\\Deleted`` by someone else) or
        the server refuses the range is the whole folder searched.
        """
        first = self._first_messages(limit, skip)
        data = self._search(first)
        deleted = self._deleted

        def found() -> Iterator[int]:
            for line in data:
                if not isinstance(line, bytes):
                    continue
                for match in _NUMBER_RE.finditer(line):
                    uid = self._number(match.group(), "UID SEARCH")
                    key = str(uid)
                    if key not in deleted and key not in skip:
                        yield uid

        uids = sorted(found()) if limit is None else heapq.nsmallest(max(0, limit), found())
        if first is not None and limit is not None and len(uids) < limit:
            data = self._search(None)  # some marked \Deleted by others: search them all
            uids = heapq.nsmallest(limit, found())
        listed = [str(uid) for uid in uids]
        self._listed, self._position = listed, {uid: n for n, uid in enumerate(listed)}
        # The last UID of a listing cut at its limit is fetched only when asked for, never
        # with others: a caller that lists one more than it reads, to learn whether any are
        # left (the polling service does), would have it downloaded for nothing, and held by
        # the session's end while the next session downloads it again.
        cut = limit is not None and 0 < limit == len(listed)
        self._ahead_end = len(listed) - 1 if cut else len(listed)
        self._sizes, self._sized, self._gone = {}, set(), set()
        self._unreadable.clear()
        self._unreadable.update(self._remembered())  # hung up on lately: not asked for
        self._fetched.clear()
        return iter(listed)

    def _first_messages(self, limit: int | None, skip: Container[str]) -> int | None:
        """How many messages, from the first by sequence number, a limited listing searches:
        ``limit`` plus the UIDs it leaves out (``skip``, this session's deletions), so that
        at least ``limit`` of them are listed unless some are marked ``\\Deleted`` by someone
        else; None (the whole folder) when ``skip`` has no size, or when that many might pass
        the last message: the messages of ``skip`` may be expunging on another connection
        (the polling service's session end runs behind the next session) without the server
        having said so here yet, so the range must fit in the count less those."""
        if limit is None or limit <= 0 or not isinstance(skip, Sized):
            return None
        span = limit + len(skip) + len(self._deleted)
        return span if span + len(skip) <= self._message_count(self._client()) else None

    def _message_count(self, client: imaplib.IMAP4) -> int:
        """How many messages the folder holds, as far as the server has said here: the last
        ``EXISTS`` (at ``SELECT``, or since, as mail arrived) less the ``EXPUNGE`` responses
        received since (RFC 3501 7.4.1), those a plain ``EXPUNGE`` of ours took included. An
        ``EXISTS`` after some expunges already counts them, and they are taken off again:
        the count is low rather than high (fewer searched, never past the end)."""
        since = client.untagged_responses.get("EXISTS")
        said = _count(since[-1]) if since else self._selected_count
        expunged = len(client.untagged_responses.get("EXPUNGE") or ())
        return max(0, said - expunged - self._expunged_here)

    def _search(self, first: int | None) -> list[object]:
        """``UID SEARCH UNDELETED``, of the first ``first`` messages (by sequence number) or
        of the whole folder (None). A server that refuses the range with a tagged ``NO`` or
        ``BAD`` (past its last message, when someone else expunged meanwhile: RFC 9051 asks
        for a BAD then) gets the whole search instead; any other failure (the connection,
        a line over ``max_line_bytes``) is raised, as for the whole search."""
        if first is None:
            return self._uid("UID SEARCH", "SEARCH", "UNDELETED")
        try:
            return self._uid("UID SEARCH", "SEARCH", f"1:{first}", "UNDELETED")
        except MailboxError as exc:
            if not _refused(exc) or self._broken:
                raise
            log.info(
                "IMAP server refused a search of the first messages; searching them all",
                extra={"imap_server": self._where(), "error": str(exc)},
            )
            return self._uid("UID SEARCH", "SEARCH", "UNDELETED")

    def _fetch(self, key: str, items: str) -> tuple[bytes, bytes]:
        """``(response line, literal)`` of a UID FETCH for exactly this UID."""
        if not key.isdigit():
            raise MailboxError(f"{self._where()}: {key!r} is not a UID")
        data, refusal = self._uid_fetch(f"UID FETCH {key}", key, items, {key})
        for said, body in _fetch_responses(data):
            match = _UID_RE.search(said)
            if body is not None and match is not None and match.group(1).decode() == key:
                return said, body
        if refusal is not None:
            self._unreadable[key] = refusal
            raise self._refused(key)
        raise MessageGoneError(f"{self._where()}: no message with UID {key}")

    def _number(self, digits: bytes, action: str) -> int:
        """A number the server sent (a UID, a size); MailboxError for one of more than
        :data:`~asm_email_rules.adapters._session.MAX_NUMBER_DIGITS` digits."""
        if len(digits) > MAX_NUMBER_DIGITS:
            raise MailboxError(
                f"{self._where()}: {action}: the server sent a number of {len(digits)} digits"
            )
        return int(digits)

    def _refused(self, key: str) -> MessageUnreadableError:
        """The error for ``key``, a message the server refused to send."""
        said = self._unreadable.get(key, "")
        return MessageUnreadableError(f"{self._where()}: the server refused UID {key}: {said}")

    def _batch(self, key: str) -> list[str]:
        """``key`` and the listed UIDs after it, within the batch's count and byte limits."""
        start = self._position.get(key)
        if start is None or self.config.batch_messages <= 1:
            return [key]
        end = max(start + 1, min(start + self.config.batch_messages, self._ahead_end))
        window = self._listed[start:end]
        window = [uid for uid in window if uid not in self._deleted and uid not in self._unreadable]
        if len(window) <= 1:
            return [key]
        sizes = self._sizes_from(start, window)
        chosen, total = [key], sizes.get(key, 0)
        for uid in window[1:]:
            if uid not in sizes or total + sizes[uid] > self.config.batch_bytes:
                break
            chosen.append(uid)
            total += sizes[uid]
        return chosen

    def _sizes_from(self, start: int, window: list[str]) -> dict[str, int]:
        """The sizes (``RFC822.SIZE``) of the listed UIDs, asked for when ``window`` holds one
        not yet asked for: then for the next :data:`SIZES_AHEAD` listed from ``start``, in one
        ``UID FETCH`` (a round trip a session, where it was one a batch). A UID the server
        did not answer for (expunged meanwhile) has none, and is not asked for again. When
        the server refuses some of them (a tagged ``NO``, :func:`refuses_only_the_messages`:
        Dovecot must read a message whose size its file name does not give), one it answered
        for without its size is refused (``_unreadable``): Dovecot hangs up on a second
        ``FETCH`` of a message it failed to read."""
        if all(uid in self._sized for uid in window):
            return self._sizes
        ahead = [
            uid
            for uid in self._listed[start : start + max(SIZES_AHEAD, self.config.batch_messages)]
            if uid not in self._sized and uid not in self._deleted and uid not in self._unreadable
        ]
        if not ahead:
            return self._sizes
        asked = set(ahead)
        data, refusal = self._uid_fetch("UID FETCH sizes", _uid_set(ahead), "(RFC822.SIZE)", asked)
        self._sized.update(ahead)
        for part in data:
            head = part[0] if isinstance(part, tuple) else part
            if isinstance(head, bytes):
                named, size = _UID_RE.search(head), _SIZE_RE.search(head)
                uid = named.group(1).decode() if named is not None else ""
                if uid not in asked:
                    continue
                if size is not None:
                    self._sizes[uid] = self._number(size.group(1), "UID FETCH sizes")
                elif refusal is not None and _FETCH_RESPONSE_RE.match(head):
                    self._unreadable[uid] = refusal
        if refusal is not None:  # those not answered for are fetched alone (no size)
            log.info(
                "IMAP server refused the sizes of some messages: %s",
                refusal,
                extra={"imap_server": self._where(), "uids": sorted(self._unreadable, key=int)},
            )
        return self._sizes

    @property
    def _body(self) -> str:
        """The fetch item of a message's bytes: ``BODY.PEEK[]``, or its start of
        ``max_message_size`` octets (:class:`ImapConfig`)."""
        limit = self.config.max_message_size
        return "BODY.PEEK[]" if limit is None else f"BODY.PEEK[]<0.{limit}>"

    def fetch_ready(self, key: str) -> bool:
        """True when :meth:`fetch` of ``key`` answers from the messages fetched ahead, without
        a round trip to the server (see :class:`~asm_email_rules.protocols.Mailbox`)."""
        return key in self._fetched

    def fetch(self, key: str) -> bytes:
        """The exact bytes of the message, or their first ``max_message_size``
        (``BODY.PEEK[]``: the ``\\Seen`` flag is untouched).

        Fetching a listed message also brings the next listed ones, up to the batch limits
        (:class:`ImapConfig`), in the same ``UID FETCH``; they are handed out from memory, and
        the next batch's ``UID FETCH`` is sent at once (``fetch_ahead``). One the batch did not
        bring back (another client expunged it) raises MailboxError at once, the others kept.
        """
        ready = self._fetched.pop(key, None)
        if ready is not None:
            return ready
        if not key.isdigit():
            raise MailboxError(f"{self._where()}: {key!r} is not a UID")
        if not self._selected:
            self._client()  # selected first: the UIDs the server hung up on are known then
        if key in self._gone:  # a batch asked for it and the server had it no more
            raise MessageGoneError(f"{self._where()}: no message with UID {key}")
        if key in self._unreadable:  # a batch asked for it and the server refused it
            raise self._refused(key)
        self._fetched.clear()  # anything fetched ahead and skipped is not wanted any more
        ahead = self._ahead
        if ahead is not None and key in ahead.uids:
            self._ahead = None
            batch = ahead.uids
            refusal, bare = self._read_ahead(ahead, keep=True)
        else:
            batch = self._batch(key)  # a fetch out of the listing's order: ahead is dropped
            if key in self._unreadable:  # refused when its size was asked
                self._send_ahead(key)
                raise self._refused(key)
            if len(batch) == 1:
                alone = self._fetch(key, f"({self._body})")[1]
                self._send_ahead(key)
                return alone
            uids = ",".join(batch)
            data, refusal = self._uid_fetch(
                f"UID FETCH {key}", uids, f"(UID {self._body})", set(batch)
            )
            bare = self._keep_fetched(data, set(batch))
        if refusal is None:
            self._gone.update(uid for uid in batch if uid not in self._fetched and uid != key)
        else:
            self._one_at_a_time(batch, bare, refusal)
        raw = self._fetched.pop(key, None)
        if raw is None and key not in self._unreadable:
            raise MessageGoneError(f"{self._where()}: no message with UID {key}")
        self._send_ahead(batch[-1])
        if raw is None:
            raise self._refused(key)
        return raw

    def _one_at_a_time(self, batch: list[str], bare: set[str], refusal: str) -> None:
        """After the server refused some messages of ``batch`` (a tagged ``NO``,
        :func:`refuses_only_the_messages`): those it answered for without their body
        (``bare``) are the ones it refused, and are not asked for again (Dovecot, with
        ``imap_fetch_failure = no-after``, hangs up on a second fetch of a message it failed
        to read); each other one it did not send is fetched alone, and is refused (kept in
        ``_unreadable``), brought back, or gone (expunged meanwhile). A batch of one is
        that one refused."""
        for uid in batch:
            if uid in self._fetched:
                continue
            if uid in bare or len(batch) == 1:
                self._unreadable[uid] = refusal
                continue
            data, alone = self._uid_fetch(f"UID FETCH {uid}", uid, f"(UID {self._body})", {uid})
            self._keep_fetched(data, {uid})
            if uid in self._fetched:
                continue
            if alone is not None:
                self._unreadable[uid] = alone
            else:
                self._gone.add(uid)
        refused = sorted(self._unreadable.keys() & set(batch), key=int)
        log.info(
            "IMAP server refused %d message(s) of a batch: %s",
            len(refused),
            refusal,
            extra={"imap_server": self._where(), "uids": refused},
        )

    # -- fetching ahead (ImapConfig.fetch_ahead) ----------------------------------------------

    def _send_ahead(self, last: str) -> None:
        """Send the ``UID FETCH`` of the batch listed after ``last`` without reading its answer.

        Sizes not known yet are asked first (one round trip, as for any batch); if that fails,
        nothing is sent ahead: the message in hand is the caller's, and the next fetch asks
        again (RFC 3501 6.4.8) and raises then. A failure to send is kept in ``_broken``,
        raised by the next command: the stream may hold part of a command, so none may
        follow it."""
        position = self._position.get(last)
        if not self.config.fetch_ahead or position is None or self._imap is None:
            return
        following = (
            uid
            for uid in self._listed[position + 1 : self._ahead_end]
            if uid not in self._deleted and uid not in self._gone and uid not in self._unreadable
        )
        first = next(following, None)
        if first is None:
            return
        try:
            batch = self._batch(first)
        except MailboxError:
            return  # a connection lost here fails the next command that needs the server
        batch = [uid for uid in batch if uid not in self._unreadable]  # refused their size
        if not batch:
            return
        self._ahead_tags += 1
        tag = _AHEAD_TAG + str(self._ahead_tags).encode()
        uids = ",".join(batch)
        command = f"{tag.decode()} UID FETCH {uids} (UID {self._body})\r\n".encode()
        try:
            self._imap.send(command)
        except OSError as exc:
            self._broken = ("sending a fetch ahead", exc)
            return
        self._ahead = _Ahead(tag, batch)

    def _settle(self) -> None:
        """Before any other command: read and drop the answer to a fetch sent ahead (its
        messages are fetched again if asked for), or raise the failure to send one or to read
        one to its end."""
        if self._broken is not None:
            what, why = self._broken
            raise MailboxError(
                f"{self._where()}: the connection failed {what}: {error_text(why)}"
            ) from why
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._read_ahead(ahead, keep=False)

    def _read_ahead(self, ahead: _Ahead, *, keep: bool) -> tuple[str | None, set[str]]:
        """Read the answer to ``ahead`` up to its tagged line, with imaplib's public ``readline``
        and ``read``; with ``keep``, the messages of the batch go to ``_fetched``, and the
        result is the server's refusal of some of them (the text of a tagged ``NO`` that
        :func:`refuses_only_the_messages`, else None) and the UIDs it answered for without
        their body.

        Raises MailboxError when the connection fails, or, with ``keep``, when the server
        refused the command otherwise (dropped, a refusal does not matter). A failure within
        the answer leaves the stream at an unknown point of it (RFC 3501 2.2.2, 4.3: a
        literal's octets read as lines): it is kept in ``_broken``, so no command follows, as
        when sending fails."""
        client = self._imap
        assert client is not None  # only a connected session sends ahead
        wanted = set(ahead.uids)
        bare: set[str] = set()
        named: set[str] = set()  # the UIDs answered for
        last_bare: str | None = None  # the last response named it without its body
        bye: bytes | None = None
        action = f"UID FETCH {ahead.uids[0]}"
        try:
            while True:
                line = client.readline()
                if not line:
                    raise client.abort("the server closed the connection")
                if line.startswith(ahead.tag + b" "):
                    break
                said, body = _untagged(client, line, keep=keep)
                if said.startswith(b"* BYE"):  # the hang-up, said: the connection closes
                    bye = said[6:].strip()
                    raise client.abort(bye.decode("utf-8", "replace") or "the server said BYE")
                last_bare = _bare_uid(said)
                uid = _UID_RE.search(said)
                if uid is not None and _FETCH_RESPONSE_RE.match(said):
                    named.add(uid.group(1).decode())
                if keep and uid is not None and uid.group(1).decode() in wanted:
                    key = uid.group(1).decode()
                    if body is not None and key not in self._deleted:
                        self._fetched[key] = body
                    elif body is None and _FETCH_RESPONSE_RE.match(said):
                        bare.add(key)
        except (imaplib.IMAP4.error, OSError, UnicodeError) as exc:
            refused = _refused_by_hang_up(named, last_bare, wanted, bye)
            if refused is not None and _hung_up(exc):
                raise self._hung_up_on(refused, exc, action) from exc
            self._fetched.clear()
            self._broken = ("reading a fetch ahead", exc)
            raise MailboxError(f"{self._where()}: {action} failed: {error_text(exc)}") from exc
        if not keep:
            return None, bare
        status, _, rest = line[len(ahead.tag) + 1 :].partition(b" ")
        if status.upper() == b"OK":
            return None, bare
        words = rest.strip().decode("utf-8", "replace")
        detail = shown_text(words)
        if status.upper() == b"NO" and refuses_only_the_messages(words):
            return detail, bare - self._fetched.keys()
        self._fetched.clear()
        answer = status.decode("ascii", "replace")
        raise MailboxError(f"{self._where()}: {action} refused: {answer} {detail}")

    def delete(self, key: str) -> None:
        """Hide the message now; :meth:`close` marks it ``\\Deleted`` (``store_batch`` UIDs per
        ``UID STORE``) and expunges it.

        Nothing reaches the server before :meth:`close`, so the polling service can make its
        store durable first: a message is never marked while its record could still be lost.
        """
        if not key.isdigit():
            raise MailboxError(f"{self._where()}: {key!r} is not a UID")
        self._deleted.add(key)
        self._fetched.pop(key, None)
        self._unflagged.append(key)

    def _flag_deleted(self) -> None:
        """Send the ``\\Deleted`` marks not sent yet, ``store_batch`` UIDs per ``UID STORE``."""
        size = max(1, self.config.store_batch)
        while self._unflagged:
            uids = ",".join(self._unflagged[:size])
            self._uid(f"UID STORE {uids}", "STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")
            del self._unflagged[:size]

    def quarantine(self, key: str, reason: str) -> None:
        """File the message in the quarantine folder (created when missing) and drop it here.

        With ``quarantine_annotate`` the copy carries the reason header, which means fetching
        the message whole and appending it; a message known (``RFC822.SIZE``) to be longer than
        ``max_message_size`` (asked for when no batch did), or of a size the server does not
        say, is moved or copied on the server instead, as without it, and the reason only
        logged: a message of gigabytes is never held here whole."""
        client = self._client()
        target = encode_mailbox_name(self._quarantine_folder())
        self._ensure_quarantine(target)
        limit = self.config.max_message_size
        too_big = (
            limit is not None and self.config.quarantine_annotate and self._too_big(key, limit)
        )
        if self.config.quarantine_annotate and not too_big:
            head, raw = self._fetch(key, "(FLAGS INTERNALDATE BODY.PEEK[])")
            flags = _FLAGS_RE.search(head)
            kept = [
                f
                for f in (flags.group(1).decode().split() if flags else [])
                if f.lower() not in (r"\recent", r"\deleted")
            ]
            date = _DATE_RE.search(head)
            self._call(
                f"APPEND to {self._quarantine_folder()!r}",
                lambda: client.append(
                    target,
                    f"({' '.join(kept)})" if kept else None,
                    date.group(1).decode() if date else None,
                    annotate(raw, reason),
                ),
            )
            self._mark_quarantined(key)
        elif "MOVE" in self._capabilities:
            self._uid(f"UID MOVE {key}", "MOVE", key, target)
            self._deleted.add(key)
        else:
            self._uid(f"UID COPY {key}", "COPY", key, target)
            self._mark_quarantined(key)
        log.info(
            "message quarantined",
            extra={"imap_server": self._where(), "uid": key, "reason": reason},
        )

    def _too_big(self, key: str, limit: int) -> bool:
        """Whether ``key`` is longer than ``limit`` by its ``RFC822.SIZE``, asked for now when
        no batch did (a message alone in the mailbox, or ``batch_messages = 1``); one whose
        size the server does not say counts as too big: it is never fetched whole to find out."""
        if key not in self._sized:
            start = self._position.get(key)
            if start is not None:
                self._sizes_from(start, [key])
        size = self._sizes.get(key)
        return size is None or size > limit

    def _mark_quarantined(self, key: str) -> None:
        """Mark ``key`` ``\\Deleted`` now, once its copy is in the quarantine folder (expunged
        at :meth:`close`). Not left to :meth:`close` as :meth:`delete` does: a session that dies
        before its end would leave the message unmarked, to be filed in the quarantine folder
        again by the next one; marked, it is a leftover the next session expunges (the store's
        quarantine record says it is done). Its store record is committed before this call,
        and the folder already has the copy, so nothing is lost if that record is not durable.
        """
        self._uid(f"UID STORE {key}", "STORE", key, "+FLAGS.SILENT", r"(\Deleted)")
        self._deleted.add(key)
        self._fetched.pop(key, None)

    def _quarantine_folder(self) -> str:
        """The quarantine folder's name on this server: ``quarantine_folder``, put under the
        prefix of the server's personal namespace (RFC 2342) when it has one that the name
        lacks: a server whose folders all live under ``INBOX.`` (Courier, Cyrus, cPanel's
        Dovecot) refuses to create ``Quarantine`` ("nonexistent namespace"), so every
        quarantine failed there; it is ``INBOX.Quarantine``. Asked once a session, and only
        when a message is quarantined."""
        if self._quarantine_name is not None:
            return self._quarantine_name
        name = self.config.quarantine_folder
        prefix = self._personal_prefix() if "NAMESPACE" in self._capabilities else ""
        if prefix and name.upper() != "INBOX" and not _under(name, prefix):
            log.info(
                "IMAP quarantine folder %r put under the server's personal namespace: %r",
                name,
                prefix + name,
                extra={"imap_server": self._where()},
            )
            name = prefix + name
        self._quarantine_name = name
        return name

    def _personal_prefix(self) -> str:
        """The prefix of the server's first personal namespace (``NAMESPACE``), "" when it
        has none, says none, or the answer cannot be read (a quoted ASCII string is read:
        a prefix in modified UTF-7 or as a literal is left alone)."""
        client = self._client()
        try:
            said = self._call("NAMESPACE", client.namespace)
        except MailboxError as exc:
            if not _refused(exc) or self._broken:
                raise
            return ""
        first = said[0] if said and isinstance(said[0], bytes) else b""
        personal = _PERSONAL_NAMESPACE_RE.match(first)
        if personal is None or b"&" in personal.group(1) or b"\\" in personal.group(1):
            return ""
        return personal.group(1).decode("ascii", "replace")

    def _ensure_quarantine(self, target: str) -> None:
        if self._quarantine_ready:
            return
        client = self._client()
        listed = self._call("LIST", lambda: client.list('""', target))
        if not any(item for item in listed if item):
            folder = self._quarantine_folder()
            self._call(f"CREATE {folder!r}", lambda: client.create(target))
        self._quarantine_ready = True

    def append(self, raw: bytes, folder: str | None = None) -> str | None:
        """Store ``raw`` in ``folder`` (default: ours); the new UID when the server says it."""
        client = self._client()
        name = encode_mailbox_name(folder or self.config.folder)
        data = self._call("APPEND", lambda: client.append(name, None, None, raw))
        text = b" ".join(d for d in data if isinstance(d, bytes))
        match = re.search(rb"APPENDUID \d+ (\d+)", text)
        return match.group(1).decode() if match else None

    def abort(self) -> None:
        """Log out without expunging: the messages marked ``\\Deleted`` stay in the folder.

        With the answer to a fetch sent ahead unread, or the stream out of step (sending or
        reading one failed), the connection is shut down without ``LOGOUT`` (RFC 3501 6.1.3):
        the answer would be downloaded only to be dropped."""
        client = self._imap
        try:
            if client is not None:
                self._hang_up(client)
        finally:
            self._imap = None
            self._forget()  # marks not sent yet are never sent

    def _hang_up(self, client: imaplib.IMAP4) -> None:
        """``LOGOUT``, or a shutdown when an answer ahead is unread or the stream is out of
        step (no command may follow then); never raises."""
        with suppress(imaplib.IMAP4.error, OSError):
            if self._ahead is not None or self._broken is not None:
                client.shutdown()
            else:
                client.logout()  # answers BYE; nothing left to check

    def _search_uids(self, criterion: str) -> list[str]:
        data = self._uid(f"UID SEARCH {criterion}", "SEARCH", criterion)
        words = b" ".join(d for d in data if isinstance(d, bytes)).split()
        action = f"UID SEARCH {criterion}"
        return [str(uid) for uid in sorted(self._number(w, action) for w in words if w.isdigit())]

    def deleted_keys(self) -> Iterator[str]:
        """UIDs marked ``\\Deleted`` and not expunged, oldest first, other than this session's
        own deletions: what a session that died (or another client) left behind."""
        return iter([uid for uid in self._search_uids("DELETED") if uid not in self._deleted])

    def expunge(self, keys: Collection[str]) -> int:
        """Remove now the messages ``keys`` (UIDs marked ``\\Deleted``); how many went.

        With UIDPLUS: ``UID EXPUNGE`` of exactly ``keys`` (RFC 4315), so a message someone
        else marked ``\\Deleted`` stays. Without it a plain ``EXPUNGE`` removes every marked
        message, so it runs only when the marked ones are all ``keys`` or this session's own
        deletions; otherwise nothing is removed (0, logged). Raises MailboxError.
        """
        wanted = sorted({key for key in keys if key.isdigit()}, key=int)
        if not wanted:
            return 0
        client = self._client()
        self._flag_deleted()  # this session's marks first: a plain EXPUNGE takes them too
        if "UIDPLUS" in self._capabilities:
            uids = ",".join(wanted)
            self._call("UID EXPUNGE", lambda: client.uid("EXPUNGE", uids))
            return len(wanted)
        if not self._expunge_is_safe(set(wanted)):
            return 0
        gone = self._call("EXPUNGE", client.expunge)  # and takes the EXPUNGE responses
        self._expunged_here += sum(1 for item in gone if item is not None)
        self._deleted.clear()  # a plain EXPUNGE removed this session's deletions too
        return len(wanted)

    def _expunge_is_safe(self, also: set[str]) -> bool:
        """Without UIDPLUS: True when every ``\\Deleted`` message is ours to remove."""
        marked = set(self._search_uids("DELETED"))
        others = marked - self._deleted - also
        if others:
            log.warning(
                "IMAP server without UIDPLUS: not expunging, since %d message(s) marked "
                "\\Deleted by someone else would go too",
                len(others),
                extra={"imap_server": self._where(), "uids": sorted(others, key=int)},
            )
        return not others

    def close(self) -> None:
        """Expunge what we deleted (only ours: ``UID EXPUNGE`` with UIDPLUS, else ``EXPUNGE``
        when no other message is marked ``\\Deleted``, else they stay marked and are named in
        :attr:`left_marked`), then log out. Safe to repeat.

        After the server hung up on a fetch (:class:`MailboxHungUpError`), the session's
        deletions are sent on a new connection, if the folder's UIDVALIDITY is still the
        same (else MailboxError, and nothing is marked)."""
        if self._imap is None and (self._hung_up_error is None or not self._deleted):
            self._forget()  # (after a hang-up: nothing to send) the object may be used again
            return
        self.left_marked = frozenset()
        try:
            with suppress(MailboxHungUpError):  # remembered; the marks go on a new connection
                self._settle()  # the answer to a fetch sent ahead, before any other command
            self._hung_up_error = None
            self._flag_deleted()
            if self._deleted:
                client = self._client()
                uids = ",".join(sorted(self._deleted, key=int))
                if "UIDPLUS" in self._capabilities:
                    self._call("UID EXPUNGE", lambda: client.uid("EXPUNGE", uids))
                elif self._expunge_is_safe(set()):
                    self._call("EXPUNGE", client.expunge)
                else:
                    self.left_marked = frozenset(self._deleted)
        finally:
            if self._imap is not None:
                self._hang_up(self._imap)
            self._imap = None
            self._forget()
