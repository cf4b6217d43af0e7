"""POP3 :class:`~asm_email_rules.protocols.Mailbox` on :mod:`poplib` (RFC 1939).

Mailbox keys are UIDL values. ``DELE`` only marks a message: the server removes it when the session
ends with ``QUIT`` (:meth:`Pop3Mailbox.close`). A session that breaks, or is ended with
:meth:`Pop3Mailbox.abort`, deletes nothing, so processing is at-least-once. POP3 has no folders:
a quarantined message stays on the server and its UIDL joins :attr:`Pop3Mailbox.skip_ids`,
which the caller persists and passes back next time so it is not listed again.
"""

from __future__ import annotations

import base64
import logging
import poplib
import re
import ssl
from collections.abc import Collection, Iterator
from contextlib import suppress

import attrs

from asm_email_rules.adapters._session import (
    MAX_NUMBER_DIGITS,
    ServerSession,
    busy_at_sign_in,
    error_text,
    refuses_only_what_was_asked,
    shown_text,
)
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
    MessageUnreadableError,
    TokenError,
)

__all__ = ["MAX_LINE", "Pop3Config", "Pop3Mailbox", "Security"]

log = logging.getLogger(__name__)

MAX_LINE = 1_000_000
"""Longest line we accept from the server; poplib's own limit (2048) breaks on real mail."""

MAX_COMMAND = 255
"""Longest AUTH command line with an initial response (RFC 5034 4); longer ones go after ``+``."""


@attrs.frozen
class Pop3Config:
    """Where the mailbox is and how to sign in.

    ``USER``/``PASS`` with ``username`` and ``password``, or, when ``oauth2`` is set,
    ``AUTH XOAUTH2`` / ``OAUTHBEARER`` (RFC 5034, RFC 7628) as ``username`` with a token from
    ``oauth2.tokens`` (``password`` is then unused).

    ``max_message_size``: the most bytes of one message :meth:`Pop3Mailbox.fetch` keeps, in
    bytes (None: all of it); the rest of the ``RETR`` answer is read and dropped line by line.
    The polling service's mailboxes get :func:`~asm_email_rules.ledger_key.read_bound` of the
    configuration's :attr:`~asm_email_rules.settings.Limits.max_read_size`.
    """

    host: str
    port: int = 995
    security: Security = attrs.field(default=Security.TLS, converter=as_security)
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)
    oauth2: OAuth2Login | None = None
    max_message_size: int | None = None

    def context(self) -> ssl.SSLContext:
        """The TLS context to use: the configured one or a verifying default."""
        return self.ssl_context if self.ssl_context is not None else ssl.create_default_context()


def _read_line(client: poplib.POP3) -> tuple[bytes, int]:
    """One server line without its line end, allowing lines up to :data:`MAX_LINE`."""
    line = client.file.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise poplib.error_proto("line too long")
    if not line:
        raise poplib.error_proto("-ERR EOF")
    octets = len(line)
    if line.endswith(b"\r\n"):
        return line[:-2], octets
    return line.rstrip(b"\n"), octets


SESSION_CODES = frozenset({"AUTH", "IN-USE", "LOGIN-DELAY", "SYS/PERM", "SYS/TEMP"})
"""RFC 2449 8 response codes that make a ``-ERR`` the session's trouble, not one message's:
the maildrop is locked or may not be used now, the system failed, our credentials."""

_RESPONSE_CODE_RE = re.compile(rb"-ERR\s+\[([A-Za-z0-9/.-]+)\]")

SIGN_IN_BUSY_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/PERM", "SYS/TEMP"})
"""RFC 2449 8 and RFC 3206 response codes that make a ``-ERR`` to ``PASS`` or ``AUTH`` the
server's trouble, not the credentials': the maildrop locked by another session (Dovecot's
``-ERR [IN-USE] Mailbox is locked by another POP3 session.``), a sign-in too soon after the
last one, the system failing."""

SIGN_IN_CREDENTIAL_CODES = frozenset({"AUTH"})
"""The RFC 3206 code of a sign-in refused for the credentials, whatever its words."""


def _busy(said: bytes | str) -> bool:
    """True when ``said``, a ``-ERR`` to a sign-in, is the server's trouble, not the
    credentials' (:func:`~asm_email_rules.adapters._session.busy_at_sign_in`)."""
    line = said.encode("utf-8", "replace") if isinstance(said, str) else said
    code = _RESPONSE_CODE_RE.match(line)
    named = code.group(1).decode("ascii") if code is not None else None
    text = line.decode("utf-8", "replace")
    return busy_at_sign_in(named, text, SIGN_IN_BUSY_CODES, SIGN_IN_CREDENTIAL_CODES)


def refuses_only_the_message(exc: Exception) -> bool:
    """True when ``exc``, raised by a ``RETR``, is the server's ``-ERR`` for that message
    while the session works (RFC 1939 5: "-ERR no such message"; Dovecot's "-ERR Message 2
    expunged." for a message file it cannot read): poplib raises ``error_proto`` with the
    server's line, as bytes. Not a connection that closed or timed out (``OSError``, or
    ``error_proto`` with poplib's or :func:`_read_line`'s own text, a ``str``), nor a
    ``-ERR`` with one of the :data:`SESSION_CODES` or whose text says the server is
    unavailable or throttling us
    (:func:`~asm_email_rules.adapters._session.says_session_trouble`)."""
    said = exc.args[0] if type(exc) is poplib.error_proto and exc.args else None
    if not isinstance(said, bytes) or not said.startswith(b"-ERR"):
        return False
    code = _RESPONSE_CODE_RE.match(said)
    named = code.group(1).decode("ascii") if code is not None else None
    return refuses_only_what_was_asked(named, said.decode("utf-8", "replace"), SESSION_CODES)


def _retr(client: poplib.POP3, number: int, limit: int | None) -> bytes:
    """``RETR number`` (RFC 1939 7): the message dot-unstuffed, with CRLF line ends, or its
    first ``limit`` bytes: the lines past them are read to the answer's end and dropped, so a
    message of gigabytes holds ``limit`` bytes and a line. Raises ``poplib.error_proto``
    (the server's ``-ERR`` line, as bytes, or a broken answer) or ``OSError``, as poplib's
    ``retr``."""
    reply = _command(client, f"RETR {number}")
    if not reply.startswith(b"+"):
        raise poplib.error_proto(reply)
    kept: list[bytes] = []
    size = 0
    while (line := _read_line(client)[0]) != b".":
        if limit is not None and size >= limit:
            continue
        if line.startswith(b".."):
            line = line[1:]
        kept.append(line)
        kept.append(b"\r\n")
        size += len(line) + 2
    raw = b"".join(kept)
    return raw if limit is None else raw[:limit]


def _sasl_mechanisms(client: poplib.POP3) -> list[str] | None:
    """The SASL mechanisms CAPA lists (RFC 2449), or None when the server does not say."""
    try:
        capabilities = client.capa()
    except (poplib.error_proto, OSError):
        return None
    if "SASL" not in capabilities:
        return None
    return [m.upper() for m in capabilities["SASL"]]


def _command(client: poplib.POP3, line: str) -> bytes:
    """Send one command line and read the one-line answer (``+OK``, ``-ERR`` or ``+ ...``)."""
    client.sock.sendall(line.encode("ascii") + b"\r\n")
    reply, _ = _read_line(client)
    return reply


def _is_continuation(reply: bytes) -> bool:
    """A SASL challenge line (``+`` or ``+ <base64>``, RFC 5034), not ``+OK``."""
    return reply == b"+" or reply.startswith(b"+ ")


def _unbase64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return b""


class _Pop3(poplib.POP3):
    def _getline(self) -> tuple[bytes, int]:
        return _read_line(self)


class _Pop3Ssl(poplib.POP3_SSL):
    def _getline(self) -> tuple[bytes, int]:
        return _read_line(self)


class Pop3Mailbox(ServerSession):
    """A POP3 maildrop as a mailbox; connects on first use, commits deletions on close."""

    def __init__(self, config: Pop3Config, skip_ids: Collection[str] = ()) -> None:
        self.config = config
        self._skip: set[str] = set(skip_ids)
        self.quarantined: dict[str, str] = {}
        """UIDLs quarantined in this session and why (also added to :attr:`skip_ids`)."""
        self._pop: poplib.POP3 | None = None
        self._numbers: dict[str, int] = {}
        self._deleted: set[str] = set()

    def __repr__(self) -> str:
        return f"Pop3Mailbox({self.config.host}:{self.config.port})"

    @property
    def skip_ids(self) -> frozenset[str]:
        """UIDLs never to list: those given at construction plus those quarantined since."""
        return frozenset(self._skip)

    def _where(self) -> str:
        return f"POP3 {self.config.host}:{self.config.port}"

    def _connect(self) -> poplib.POP3:
        cfg = self.config
        if cfg.security is Security.TLS:
            return _Pop3Ssl(cfg.host, cfg.port, timeout=cfg.timeout, context=cfg.context())
        client = _Pop3(cfg.host, cfg.port, timeout=cfg.timeout)
        if cfg.security is Security.STARTTLS:
            client.stls(context=cfg.context())
        return client

    def _client(self) -> poplib.POP3:
        if self._pop is not None:
            return self._pop
        try:
            client = self._connect()
        except (poplib.error_proto, OSError) as exc:
            raise MailboxError(f"{self._where()}: cannot connect: {exc}") from exc
        try:
            self._sign_in(client)
            _, listing, _ = client.uidl()
        except MailboxError:
            with suppress(OSError):
                client.close()
            raise
        except (poplib.error_proto, OSError) as exc:
            with suppress(OSError):
                client.close()
            raise MailboxError(f"{self._where()}: UIDL failed: {error_text(exc)}") from exc
        numbers: dict[str, int] = {}
        for entry in listing:
            number, _, uidl = entry.decode("ascii", "replace").partition(" ")
            if number.isdigit() and uidl:
                if len(number) > MAX_NUMBER_DIGITS:
                    with suppress(OSError):
                        client.close()
                    raise MailboxError(
                        f"{self._where()}: UIDL listed a message number of {len(number)} digits"
                    )
                numbers.setdefault(uidl.strip(), int(number))
        self._pop, self._numbers = client, numbers
        return client

    def _sign_in(self, client: poplib.POP3) -> None:
        """USER/PASS, or AUTH with an OAuth2 token (retried once with a fresh token).

        A refusal raises :class:`MailboxAuthenticationError` naming server, user and mechanism.
        """
        cfg = self.config
        login = cfg.oauth2
        where = self._where()
        mechanism = "USER/PASS" if login is None else login.mechanism.sasl_name

        def failed(detail: str) -> MailboxAuthenticationError:
            return MailboxAuthenticationError(
                f"{where}: sign-in as {cfg.username!r} with {mechanism} failed: {detail}",
                server=where,
                user=cfg.username,
                mechanism=mechanism,
            )

        def busy(said: str) -> MailboxBusyError:
            return MailboxBusyError(
                f"{where}: sign-in as {cfg.username!r} with {mechanism} turned away for now: "
                f"the server cannot take the session (the maildrop in use, too soon, or the "
                f"system failing), the credentials were not refused: {shown_text(said)}"
            )

        if login is None:
            try:
                client.user(cfg.username)
                client.pass_(cfg.password)
            except poplib.error_proto as exc:
                said = error_text(exc)
                if exc.args and isinstance(exc.args[0], bytes) and _busy(exc.args[0]):
                    raise busy(said) from exc
                raise failed(f"refused: {said}") from exc
            except OSError as exc:
                raise MailboxError(f"{where}: connection lost during sign-in: {exc}") from exc
            return
        sasl = _sasl_mechanisms(client)
        if sasl is not None and mechanism not in sasl:
            raise failed(f"the server does not offer it (it offers: {' '.join(sasl) or 'none'})")

        def attempt(response: bytes) -> str | None:
            encoded = base64.b64encode(response).decode("ascii")
            try:
                line = f"AUTH {mechanism} {encoded}"
                if len(line) + 2 <= MAX_COMMAND:
                    reply = _command(client, line)
                else:
                    reply = _command(client, f"AUTH {mechanism}")
                    if _is_continuation(reply):
                        reply = _command(client, encoded)
                if _is_continuation(reply):
                    # the error challenge (RFC 7628 3.2.2): answer it and the -ERR follows
                    said = error_detail(_unbase64(reply[1:].strip()))
                    answer = base64.b64encode(error_reply(login.mechanism)).decode("ascii")
                    reply = _command(client, answer)
                    if not reply.startswith(b"+OK"):
                        text = reply.decode("utf-8", "replace")
                        return text + (f" ({said})" if said else "")
            except (poplib.error_proto, OSError) as exc:
                raise MailboxError(f"{where}: connection lost during sign-in: {exc}") from exc
            if reply.startswith(b"+OK"):
                return None
            if _busy(reply):  # not the token's fault: it is not replaced
                raise busy(reply.decode("utf-8", "replace"))
            return reply.decode("utf-8", "replace")

        try:
            refusal = sign_in(login, cfg.username, attempt, cfg.host, cfg.port)
        except TokenError as exc:
            raise failed(f"no access token: {exc}") from exc
        if refusal is not None:
            raise failed(f"refused: {refusal}{REFUSED_WHAT_TO_DO}")

    def list_keys(self) -> Iterator[str]:
        """UIDLs in maildrop order (oldest first), without skipped or deleted ones."""
        self._client()
        ordered = sorted(self._numbers.items(), key=lambda item: item[1])
        return iter([u for u, _ in ordered if u not in self._skip and u not in self._deleted])

    def _number(self, key: str) -> int:
        self._client()
        number = self._numbers.get(key)
        if number is None or key in self._deleted:
            raise MailboxError(f"{self._where()}: no message with UIDL {key!r}")
        return number

    def fetch(self, key: str) -> bytes:
        """The message as sent by RETR, dot-unstuffed, with CRLF line ends; its first
        ``max_message_size`` bytes when it is longer (:class:`Pop3Config`).

        A ``-ERR`` to the ``RETR`` of this one message, the session still working
        (:func:`refuses_only_the_message`), raises MessageUnreadableError; any other failure
        MailboxError."""
        number = self._number(key)
        try:
            return _retr(self._client(), number, self.config.max_message_size)
        except (poplib.error_proto, OSError) as exc:
            said = f"{self._where()}: RETR {number} failed: {error_text(exc)}"
            if refuses_only_the_message(exc):
                raise MessageUnreadableError(said) from exc
            raise MailboxError(said) from exc

    def delete(self, key: str) -> None:
        """Mark for deletion (DELE); takes effect only at :meth:`close`. Unknown ids are ignored,
        and so is a quarantined one (in :attr:`skip_ids`): it stays on the server, as
        ``docs/operators.md`` promises, whoever asks to delete it."""
        if key in self._deleted:
            return
        if key in self._skip:
            log.warning(
                "POP3 delete of a quarantined message refused: it stays on the server",
                extra={"pop3_server": self._where(), "uidl": key},
            )
            return
        self._client()
        number = self._numbers.get(key)
        if number is None:
            log.debug("POP3 delete of an unknown UIDL", extra={"uidl": key})
            return
        try:
            self._client().dele(number)
        except (poplib.error_proto, OSError) as exc:
            raise MailboxError(f"{self._where()}: DELE {number} failed: {error_text(exc)}") from exc
        self._deleted.add(key)

    def quarantine(self, key: str, reason: str) -> None:
        """Leave the message on the server and stop listing it (see :attr:`skip_ids`)."""
        self._skip.add(key)
        self.quarantined[key] = reason
        log.info(
            "message quarantined (kept on server)",
            extra={"pop3_server": self._where(), "uidl": key, "reason": reason},
        )

    def close(self) -> None:
        """QUIT: the server now removes what we deleted. Safe to repeat."""
        client, self._pop = self._pop, None
        deleted = len(self._deleted)
        self._numbers, self._deleted = {}, set()
        if client is None:
            return
        try:
            client.quit()
        except (poplib.error_proto, OSError) as exc:
            with suppress(OSError):
                client.close()
            raise MailboxError(
                f"{self._where()}: QUIT failed, {deleted} deletion(s) may not be committed: "
                f"{error_text(exc)}"
            ) from exc

    def abort(self) -> None:
        """Drop the connection without QUIT: by POP3's rules nothing marked is deleted."""
        client, self._pop = self._pop, None
        self._numbers, self._deleted = {}, set()
        if client is not None:
            with suppress(OSError):
                client.close()
