"""SMTP :class:`~asm_email_rules.protocols.Mailer` on :mod:`smtplib`, with typed failures.

Replies 5xx become :class:`PermanentSendError` (the spec's 501, 503, 550 and 553 among them),
4xx and network trouble become :class:`TransientSendError`, so the caller knows whether to retry.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

import attrs

from asm_email_rules.adapters.oauth import (
    REFUSED_WHAT_TO_DO,
    OAuth2Login,
    error_detail,
    error_reply,
    sign_in,
)
from asm_email_rules.connection import Security, SmtpConfig
from asm_email_rules.errors import (
    PermanentSendError,
    SendAuthenticationError,
    SendError,
    TokenError,
    TransientSendError,
)
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.outgoing import (
    NeedsSmtpUtf8Error,
    OutgoingMessageError,
    parse_sender,
    render_reply,
)
from asm_email_rules.send import is_temporary

__all__ = ["Security", "SmtpConfig", "SmtpMailer", "error_for_code"]

log = logging.getLogger(__name__)


def error_for_code(code: int, text: str, *, during: str = "") -> SendError:
    """The typed error for an SMTP reply code: 5xx permanent, 4xx transient (RFC 5321 4.2.1).

    A 552 to RCPT means "too many recipients" and is transient (RFC 5321 4.5.3.1.10).
    Codes outside 400-599 (smtplib uses -1 for a garbled reply) are transient with no code.
    """
    message = f"{during}: {text}" if during else text
    if 500 <= code <= 599 and not (code == 552 and during == "RCPT"):
        return PermanentSendError(message, code=code)
    if 400 <= code <= 599:
        return TransientSendError(message, code=code)
    return TransientSendError(f"{message} (unexpected reply code {code})")


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


class _StaleSessionError(Exception):
    """A reused session turned out closed before the server took any part of the message."""


class _EndSessionError(Exception):
    """The transaction failed with ``refusal`` and its session cannot carry another one."""

    def __init__(self, refusal: smtplib.SMTPException) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


class _Replies:
    """The replies to one transaction's commands, in order. ``pipelined``: every command has
    been sent already and each reply is only read; else each command is sent when its reply
    is asked for (one command, then its reply: RFC 5321 4.1.1)."""

    def __init__(self, client: smtplib.SMTP, commands: list[str], pipelined: bool) -> None:
        self._client = client
        self._commands = commands
        self._pipelined = pipelined
        self._read = 0

    def reply_to_next(self) -> tuple[int, bytes]:
        """The reply to the next command (sending that command first when not pipelined)."""
        command = self._commands[self._read]
        self._read += 1
        code, text = self._client.getreply() if self._pipelined else self._client.docmd(command)
        if not 200 <= code <= 599:  # smtplib's -1: it stopped inside a garbled reply
            raise smtplib.SMTPResponseException(code, text)  # out of step: _typed drops it
        return code, text

    def refused(self, code: int, refusal: smtplib.SMTPException) -> Exception:
        """What to raise for a MAIL or RCPT refused with ``code``: ``refusal``, once the
        replies still owed to the commands pipelined after it are read (so the session stays
        in step for RSET), or a :class:`_EndSessionError` carrying it when the session cannot go
        on: a later command was answered 354 (the server waits for a message we will not
        send; RFC 2920 3.1 would have the client send a lone dot, which could deliver an
        empty message) or 421, or the server hung up or fell silent meanwhile. A 421 refusal
        itself is returned as it is (the server is closing; the caller knows what to do)."""
        if not self._pipelined or code == 421:
            return refusal
        try:
            while self._read < len(self._commands):
                later, _ = self.reply_to_next()
                if later in (354, 421):
                    return _EndSessionError(refusal)
        except smtplib.SMTPServerDisconnected:
            return _EndSessionError(refusal)
        return refusal


@attrs.frozen
class _Outgoing:
    """A reply ready for the wire: its envelope's paths (``<addr>`` or ``<>``, and the bare
    recipient addr-spec) and its bytes."""

    reverse_path: str
    recipient: str
    raw: bytes
    smtputf8: bool = False  # a non-ASCII local part: only for a server offering SMTPUTF8


def _group(commands: list[str], message: bytes) -> bytes:
    """Pipelined commands as one write, each ended by CRLF, then ``message`` (BDAT's bytes,
    or nothing)."""
    return "".join(f"{command}\r\n" for command in commands).encode("utf-8") + message


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _data_lines(raw: bytes) -> bytes:
    """``raw`` as DATA's content: a leading dot doubled on every line (RFC 5321 4.5.2), a
    final CRLF, then the lone dot that ends it."""
    body = _LEADING_DOT.sub(b"..", raw)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class SmtpMailer:
    """Sends replies over one SMTP session, kept open from one reply to the next.

    The session is opened (connect, EHLO, STARTTLS, AUTH) by the first :meth:`send` and reused
    by the next ones, each its own mail transaction (MAIL, RCPT, DATA): :meth:`send` returns
    only after the server's 250 for that message, so a caller records each reply as sent after
    its own acceptance. :meth:`close` ends the session (QUIT); the polling service calls it at
    the end of each poll pass. A new session is opened after ``max_per_session`` messages,
    after ``max_idle`` seconds without a message (servers drop idle sessions, RFC 5321
    4.5.3.2.7), and when a reused session turns out closed (the server hung up or answered
    421) before it took the message: that message is then sent once more, on a new session.
    Any other failure ends the session, and the next send opens a new one.

    OAuth2 sign-in (``AUTH XOAUTH2`` / ``OAUTHBEARER``, RFC 4954 and RFC 7628) uses ``oauth2``
    when given, else a login built once from ``config.oauth2``; either way its token cache
    lives as long as the mailer. A refused sign-in raises
    :class:`~asm_email_rules.errors.SendAuthenticationError` (transient: the reply waits).
    """

    def __init__(
        self,
        config: SmtpConfig,
        *,
        oauth2: OAuth2Login | None = None,
        max_per_session: int = 100,
        max_idle: float = 60.0,
    ) -> None:
        self.config = config
        if oauth2 is None and config.oauth2 is not None:
            oauth2 = OAuth2Login.from_settings(config.oauth2)
        self._oauth2 = oauth2
        self.max_per_session = max(1, max_per_session)
        self.max_idle = max_idle
        self._client: smtplib.SMTP | None = None
        self._configured = ("", "")  # envelope_sender and its addr-spec, once parsed
        self._sent_in_session = 0
        self._last_used = 0.0
        self.sessions = 0
        """How many SMTP sessions this mailer has opened (for tests and benchmarks)."""

    def __repr__(self) -> str:
        return f"SmtpMailer({self.config.host}:{self.config.port}, {self.config.security.value})"

    def send(self, message: OutgoingEmail, *, now: datetime | None = None) -> None:
        """Deliver ``message`` to its one recipient or raise a typed :class:`SendError`."""
        outcome = self.send_many([message], now=now)[0]
        if outcome is not None:
            raise outcome

    def send_many(
        self,
        messages: Sequence[OutgoingEmail],
        *,
        now: datetime | None = None,
        answered: Callable[[Sequence[SendError | None]], bool] | None = None,
    ) -> list[SendError | None]:
        """Deliver ``messages`` in order, each to its one recipient; what each came to (None:
        the server's 250 for it, else the typed :class:`SendError` :meth:`send` raises).

        Where the session offers PIPELINING and CHUNKING (RFC 2920, RFC 3030), they go out in
        one write, each as ``MAIL``, ``RCPT`` and ``BDAT <size> LAST`` with its bytes, the
        second and later after an ``RSET`` (so one refused leaves nothing behind for the
        next), and their replies are read in order: one round trip for them all, each still
        accepted by its own 250. Otherwise one transaction after the other. No transaction
        is started after a window (or a lone transaction) with a temporary failure: the list
        then stops before the first message left unsent, shorter than ``messages`` (the
        server is likely down; the caller keeps the rest for later): nothing of a message past
        its end was written to the server.

        ``answered``, when given, is called between windows, before anything more is written:
        with what the messages so far came to (the start of the list this returns, in the
        same order); when it returns False nothing more is sent, and the list ends there. A
        caller that keeps a record of what the server accepted (the reply pump's sent
        journal) writes it there: without PIPELINING and CHUNKING that is after each
        message, so a crash leaves at most the one message being sent unrecorded.
        """
        outcomes: list[SendError | None] = []
        ready: list[_Outgoing] = []
        places: list[int] = []
        for message in messages:
            try:
                ready.append(self._prepare(message, now))
                places.append(len(outcomes))
                outcomes.append(None)
            except PermanentSendError as exc:
                outcomes.append(exc)  # the caller records and logs it

        def go_on(delivered: Sequence[SendError | None]) -> bool:
            if answered is None:
                return True
            for place, outcome in zip(places, delivered, strict=False):
                outcomes[place] = outcome
            return answered(outcomes[: places[len(delivered)]])  # up to the next one to send

        delivered = self._deliver(ready, go_on)
        where = self._where
        for place, item, outcome in zip(places, ready, delivered, strict=False):
            outcomes[place] = outcome
            if outcome is None:  # the outbox logs it (INFO, with its Message-ID): one line a reply
                log.debug("reply sent", extra={"smtp_server": where, "to": item.recipient})
            else:
                fields = {"smtp_server": where, "to": item.recipient, "code": outcome.code}
                log.warning("reply not sent", extra={**fields, "error": str(outcome)})
        if len(delivered) < len(ready):  # not tried: after a temporary failure, or ``answered``
            outcomes = outcomes[: places[len(delivered)]]
        return outcomes

    def _prepare(self, message: OutgoingEmail, now: datetime | None) -> _Outgoing:
        """``message`` rendered, with its envelope's paths; PermanentSendError when it cannot
        be sent at all (no recipient, or it cannot be rendered)."""
        recipient = message.to.strip()
        if not recipient or recipient == "<>":
            raise PermanentSendError("no recipient (empty or null path): not sending")
        sender = self.config.default_sender
        try:
            try:
                rendered = render_reply(message, now=now, default_sender=sender)
            except NeedsSmtpUtf8Error:  # whether the server offers SMTPUTF8: see _window
                rendered = render_reply(message, now=now, default_sender=sender, smtputf8=True)
        except OutgoingMessageError as exc:
            raise PermanentSendError(f"reply cannot be rendered: {exc}") from exc
        recipient, reverse_path = rendered.recipient, self._reverse_path(rendered.sender)
        if "\r" in reverse_path + recipient or "\n" in reverse_path + recipient:
            # validated above; a line break here would add a command (RFC 5321 2.3.8)
            raise PermanentSendError(f"an SMTP path holds a line break: {reverse_path!r}")
        return _Outgoing(reverse_path, recipient, rendered.raw, rendered.smtputf8)

    @property
    def _where(self) -> str:
        """``SMTP host:port``, as messages and logs name the server."""
        return f"SMTP {self.config.host}:{self.config.port}"

    def _reverse_path(self, from_addr: str) -> str:
        """``MAIL FROM``'s path (RFC 5321 4.1.2): ``config.envelope_sender`` when set (``<>``
        the null path), else the reply's From addr-spec, which rendering validated."""
        configured = self.config.envelope_sender
        if configured == "<>":
            return "<>"
        if configured:
            if configured != self._configured[0]:  # parsed once (the config is frozen)
                self._configured = (configured, parse_sender(configured)[1])
            return f"<{self._configured[1]}>"
        return f"<{from_addr}>"

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        if cfg.security is Security.TLS:
            return smtplib.SMTP_SSL(
                cfg.host,
                cfg.port,
                local_hostname=cfg.local_hostname,
                timeout=cfg.timeout,
                context=cfg.context(),
            )
        client = smtplib.SMTP(
            cfg.host, cfg.port, local_hostname=cfg.local_hostname, timeout=cfg.timeout
        )
        if cfg.security is Security.STARTTLS:
            client.ehlo()
            try:
                client.starttls(context=cfg.context())
            except smtplib.SMTPNotSupportedError:
                raise
            except smtplib.SMTPResponseException as exc:  # STARTTLS refused: the session is
                _quit(client)
                raise smtplib.SMTPHeloError(exc.smtp_code, exc.smtp_error) from exc
            client.ehlo()
        return client

    def close(self) -> None:
        """End the SMTP session, if one is open (QUIT); the next send opens a new one."""
        client, self._client = self._client, None
        self._sent_in_session = 0
        if client is not None:
            with contextlib.suppress(OSError):
                _read_timeout(client, self.config.timeout)  # a window's may be longer
            _quit(client)

    def _drop(self) -> None:
        """Forget the session without QUIT (it failed: the server may be gone)."""
        client, self._client = self._client, None
        self._sent_in_session = 0
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.close()

    def _session(self) -> tuple[smtplib.SMTP, bool]:
        """The open session (and True), or a new one (and False) when there is none, it has
        carried ``max_per_session`` messages or has been idle for ``max_idle`` seconds."""
        if self._client is not None:
            idle = time.monotonic() - self._last_used
            if self._sent_in_session < self.max_per_session and idle < self.max_idle:
                return self._client, True
            self.close()
        client = self._connect()
        try:
            if self.config.username:
                self._sign_in(client)
        except BaseException:
            _quit(client)
            raise
        self._client = client
        self.sessions += 1
        return client, False

    def verify(self) -> str:
        """Open a fresh session, sign in (when ``username`` is set), NOOP and QUIT: nothing is
        sent. For ``asm-email-rules check``. Returns what was checked, in words; raises the same
        typed :class:`SendError` as :meth:`send` (a refused sign-in is a
        :class:`~asm_email_rules.errors.SendAuthenticationError`).
        """
        with self._typed(""):
            self.close()
            client, _ = self._session()
            client.noop()
            self.close()
        where = f"{self._where} ({self.config.security.value})"
        if not self.config.username:
            return f"{where}: connected (no sign-in configured)"
        how = self._oauth2.mechanism.sasl_name if self._oauth2 is not None else "password"
        return f"{where}: signed in as {self.config.username} ({how})"

    def _deliver(
        self, items: Sequence[_Outgoing], go_on: Callable[[Sequence[SendError | None]], bool]
    ) -> list[SendError | None]:
        """Send ``items`` in order, in windows where the session allows; the outcome of each,
        up to and including the window with a temporary failure (the rest are not tried), or
        the window after which ``go_on`` (given the outcomes so far, while some are left to
        send) returned False."""
        outcomes: list[SendError | None] = []
        while len(outcomes) < len(items):
            done = self._window(items[len(outcomes) :])
            outcomes += done
            if any(is_temporary(outcome) for outcome in done):
                break
            if len(outcomes) < len(items) and not go_on(outcomes):
                break
        return outcomes

    def _window(self, items: Sequence[_Outgoing]) -> list[SendError | None]:
        """Send the first of ``items`` or, where the session offers PIPELINING and CHUNKING,
        as many as it may still carry, in one write: their outcomes (at least one). A reused
        session that turns out closed before answering is replaced once, and the window sent
        again on the new one (the server took nothing)."""
        for reopened in (False, True):
            if reopened:
                self._drop()
            try:
                with self._typed(items[0].recipient):
                    client, reused = self._session()
                    client.ehlo_or_helo_if_needed()
            except SendError as exc:
                return [exc]
            windowed = client.has_extn("pipelining") and client.has_extn("chunking")
            room = max(1, self.max_per_session - self._sent_in_session) if windowed else 1
            if not client.has_extn("smtputf8"):
                # RFC 6531 3.4: a non-ASCII mailbox goes only to a server that offers
                # SMTPUTF8; rewriting it would reach someone else (or no one)
                if items[0].smtputf8:
                    return [
                        PermanentSendError(
                            f"{self._where} does not offer SMTPUTF8 (RFC 6531), which the"
                            f" address {items[0].recipient!r} needs: not sent (send it through"
                            " a server that offers it, then 'replies resend')"
                        )
                    ]
                room = next((i for i, it in enumerate(items[:room]) if it.smtputf8), room)
            try:
                return self._send_window(client, items[:room], reused=reused and not reopened)
            except _StaleSessionError:
                continue
        raise AssertionError("a new session cannot be stale")  # pragma: no cover

    def _send_window(
        self, client: smtplib.SMTP, window: Sequence[_Outgoing], *, reused: bool
    ) -> list[SendError | None]:
        """One transaction, or several written at once (see :meth:`send_many`): the outcome
        of each. Raises _StaleSessionError when the ``reused`` session was closed before the
        server answered anything."""
        written: list[list[str] | None] = [None]  # one transaction: it writes its own
        if len(window) > 1:
            groups = [
                self._commands(client, item, chunking=True, reset_first=index > 0)
                for index, item in enumerate(window)
            ]
            data = b"".join(
                _group(commands, item.raw) for commands, item in zip(groups, window, strict=True)
            )
            written = list(groups)
            assert client.sock is not None
            # A server may answer the first only once it has taken them all (Postfix holds
            # pipelined replies while input is waiting): each read may wait that long.
            _read_timeout(client, self.config.timeout * len(window))
            try:
                client.sock.sendall(data)
            except OSError:
                # The server may have answered, and taken, the first ones before it hung up
                # (or stopped reading): read what it said; send nothing of it again here.
                reused = False
        else:
            _read_timeout(client, self.config.timeout)
        return self._read_window(client, window, written, reused=reused)

    def _read_window(
        self,
        client: smtplib.SMTP,
        window: Sequence[_Outgoing],
        written: list[list[str] | None],
        *,
        reused: bool,
    ) -> list[SendError | None]:
        """The outcome of each transaction of ``window``, read in order (see
        :meth:`_send_window`)."""
        where = self._where
        outcomes: list[SendError | None] = []
        for index, (item, commands) in enumerate(zip(window, written, strict=False)):
            if self._client is not client:  # the session ended with an earlier transaction
                outcomes.append(
                    TransientSendError(f"{where} ended the session before answering this reply")
                )
                continue
            try:
                with self._typed(item.recipient):
                    self._transaction(
                        client,
                        item,
                        reused=reused and index == 0,
                        written=commands,
                        last=index == len(window) - 1,
                    )
                outcomes.append(None)
            except SendError as exc:
                outcomes.append(exc)
        return outcomes

    @contextlib.contextmanager
    def _typed(self, recipient: str) -> Iterator[None]:
        """SMTP and network failures inside the block become typed :class:`SendError` (the
        session dropped where it cannot go on); _StaleSessionError passes through, the
        session dropped too."""
        where = self._where
        try:
            yield
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(recipient, next(iter(exc.recipients.values())))
            raise error_for_code(
                code, f"{where} refused {recipient}: {_text(text)}", during="RCPT"
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            # Our credentials, not the reply, are at fault: retry once the operator fixes them.
            user = self.config.username
            raise SendAuthenticationError(
                f"{where}: sign-in as {user!r} failed: {_text(exc.smtp_error)}",
                server=where,
                user=user,
                mechanism="password",
                code=exc.smtp_code,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            self._drop()
            raise TransientSendError(f"{where} lacks a needed extension: {exc}") from exc
        except (smtplib.SMTPConnectError, smtplib.SMTPHeloError) as exc:
            # The server refuses us a session (its greeting, or both EHLO and HELO; RFC 5321
            # 3.1: 554 "no SMTP service here"): it says nothing of this reply, so the reply is
            # retried once the server serves us again, as after a refused sign-in.
            self._drop()
            raise TransientSendError(
                f"{where} refused the session: {exc.smtp_code} {_text(exc.smtp_error)}",
                code=exc.smtp_code,
            ) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise error_for_code(
                exc.smtp_code, f"{where} refused sender: {_text(exc.smtp_error)}", during="MAIL"
            ) from exc
        except smtplib.SMTPDataError as exc:
            raise error_for_code(
                exc.smtp_code,
                f"{where} refused the message: {_text(exc.smtp_error)}",
                during="DATA",
            ) from exc
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise error_for_code(exc.smtp_code, f"{where}: {_text(exc.smtp_error)}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TransientSendError(f"{where} closed the connection: {exc}") from exc
        except smtplib.SMTPException as exc:
            self._drop()
            raise TransientSendError(f"{where}: {exc}") from exc
        except UnicodeError as exc:  # smtplib sends AUTH credentials as ASCII only
            self._drop()
            raise TransientSendError(f"{where}: credentials must be ASCII: {exc}") from exc
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, timeout, TLS failure
            self._drop()
            raise TransientSendError(f"{where} unreachable: {exc}") from exc
        except BaseException:
            self._drop()
            raise

    @staticmethod
    def _commands(
        client: smtplib.SMTP, item: _Outgoing, *, chunking: bool, reset_first: bool = False
    ) -> list[str]:
        """MAIL (with SIZE where offered, RFC 1870), RCPT, and DATA or ``BDAT <size> LAST``
        (RFC 3030 2); ``reset_first``: RSET before them."""
        size = f" SIZE={len(item.raw)}" if client.has_extn("size") else ""
        if item.smtputf8:  # RFC 6531 3.4; its UTF-8 header is 8-bit data (RFC 6152)
            size += " SMTPUTF8" + (" BODY=8BITMIME" if client.has_extn("8bitmime") else "")
        last = f"BDAT {len(item.raw)} LAST" if chunking else "DATA"
        commands = [f"MAIL FROM:{item.reverse_path}{size}", f"RCPT TO:<{item.recipient}>", last]
        return ["RSET", *commands] if reset_first else commands

    def _transaction(
        self,
        client: smtplib.SMTP,
        item: _Outgoing,
        *,
        reused: bool,
        written: list[str] | None = None,
        last: bool = True,
    ) -> None:
        """One mail transaction (MAIL, RCPT, DATA) on ``client``; returns after the 250.

        Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write
        and their replies are read in order (two round trips a reply instead of four); the
        message follows the 354 (DATA ends a group, RFC 2920 3.1). Where it also offers
        CHUNKING (RFC 3030), ``BDAT <size> LAST`` with the message itself takes DATA's place
        in that one write: one round trip a reply, and no dot-stuffing. The paths go out as
        given (``smtplib``'s ``mail()`` and ``rcpt()`` would parse each address again).
        ``written``: the commands a window wrote already, message included (pipelined and
        chunked, maybe RSET first): only their replies are read here.

        A refusal of MAIL, RCPT or DATA resets the transaction (RSET; in a window only after
        the ``last``: the next transaction was written with its own RSET) and keeps the
        session; a 421 ends it, and so does a pipelined refusal after which the server
        answered 354, closed or fell silent (the refusal is what is raised; nothing is
        sent). On a ``reused`` session, a hang-up (not a timeout: a slow server may be taking
        it all) or a 421 before DATA raises :class:`_StaleSessionError`: the server took
        nothing, the message is safe to send again on a new session. (With BDAT the message
        travels with MAIL; a server answers MAIL before it takes the message, so no answer at
        all still means a closed session.)
        """
        stage = "MAIL"
        if item.smtputf8:
            client.command_encoding = "utf-8"  # RCPT TO's mailbox (smtplib's own choice too)
        try:
            if written is None:
                pipelined = client.has_extn("pipelining")
                chunking = pipelined and client.has_extn("chunking")
                commands = self._commands(client, item, chunking=chunking)
                if pipelined:
                    client.send(_group(commands, item.raw if chunking else b""))
            else:
                pipelined, chunking, commands = True, True, written
            replies = _Replies(client, commands, pipelined)
            if commands[0] == "RSET":
                code, text = replies.reply_to_next()
                if code != 250:  # the server cannot start this transaction: end the session
                    self._drop()
                    raise TransientSendError(
                        f"{self._where} answered RSET {code}"
                        f" {_text(text)}: this reply was not answered"
                    )
            code, text = replies.reply_to_next()
            if code != 250:
                refusal = smtplib.SMTPSenderRefused(code, text, item.reverse_path)
                raise replies.refused(code, refusal)
            stage = "RCPT"
            code, text = replies.reply_to_next()
            if code not in (250, 251):
                refused = smtplib.SMTPRecipientsRefused({item.recipient: (code, text)})
                raise replies.refused(code, refused)
            stage = "DATA"
            code, text = replies.reply_to_next()
            if not chunking:
                if code != 354:
                    raise smtplib.SMTPDataError(code, text)
                client.send(_data_lines(item.raw))
                code, text = client.getreply()
            if code != 250:
                raise smtplib.SMTPDataError(code, text)
        except smtplib.SMTPServerDisconnected as exc:
            timed_out = isinstance(exc.__context__, TimeoutError)  # slow, maybe taking it all
            if reused and stage != "DATA" and not timed_out:
                raise _StaleSessionError from exc
            raise
        except _EndSessionError as exc:
            self._drop()
            raise exc.refusal from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused) as exc:
            code = (
                exc.smtp_code
                if isinstance(exc, smtplib.SMTPSenderRefused)
                else next(iter(exc.recipients.values()))[0]
            )
            if code == 421:  # the server is closing the session
                if reused:
                    raise _StaleSessionError from exc
                self._drop()
            elif last:
                self._reset(client)
            raise
        except smtplib.SMTPDataError as exc:
            if exc.smtp_code == 421:
                self._drop()
            elif last:
                self._reset(client)
            raise
        self._sent_in_session += 1
        self._last_used = time.monotonic()

    def _reset(self, client: smtplib.SMTP) -> None:
        """RSET after a refused transaction, so the session can carry the next message."""
        try:
            _read_timeout(client, self.config.timeout)
            code, _ = client.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop()
        else:
            self._last_used = time.monotonic()

    def _sign_in(self, client: smtplib.SMTP) -> None:
        """AUTH with the password (smtplib picks the mechanism) or with an OAuth2 token."""
        cfg = self.config
        login = self._oauth2
        if login is None:
            client.login(cfg.username, cfg.password)
            return
        where = self._where
        mechanism = login.mechanism.sasl_name

        def failed(detail: str, code: int | None = None) -> SendAuthenticationError:
            return SendAuthenticationError(
                f"{where}: sign-in as {cfg.username!r} with {mechanism} failed: {detail}",
                server=where,
                user=cfg.username,
                mechanism=mechanism,
                code=code,
            )

        client.ehlo_or_helo_if_needed()
        offered = client.esmtp_features.get("auth", "").upper().split()
        if mechanism not in offered:
            raise failed(f"the server does not offer it (it offers: {' '.join(offered) or 'none'})")
        codes: list[int] = []

        def attempt(response: bytes) -> str | None:
            challenges: list[bytes] = []

            def answer(challenge: bytes | None = None) -> str:
                if challenge is None:
                    return response.decode("ascii")
                challenges.append(challenge)
                return error_reply(login.mechanism).decode("ascii")

            try:
                client.auth(mechanism, answer)
            except smtplib.SMTPAuthenticationError as exc:
                codes.append(exc.smtp_code)
                said = error_detail(challenges[0]) if challenges else ""
                return _text(exc.smtp_error) + (f" ({said})" if said else "")
            return None

        try:
            refusal = sign_in(login, cfg.username, attempt, cfg.host, cfg.port)
        except TokenError as exc:
            raise failed(f"no access token: {exc}") from exc
        if refusal is not None:
            raise failed(f"refused: {refusal}{REFUSED_WHAT_TO_DO}", codes[-1] if codes else None)


def _read_timeout(client: smtplib.SMTP, seconds: float) -> None:
    """Let each read on ``client``'s socket wait ``seconds``; set only when it changes: each
    ``settimeout`` is a system call that releases the interpreter lock, twice a window if
    set and restored around every one."""
    sock = client.sock
    if sock is not None and sock.gettimeout() != seconds:
        sock.settimeout(seconds)


def _quit(client: smtplib.SMTP) -> None:
    """End the session politely; a failure here cannot change what the server accepted."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
