"""SMTP :class:`~asm_email_rules.protocols.Mailer` on :mod:`smtplib`, with typed failures.

Replies 5xx become :class:`PermanentSendError` (the spec's 501, 503, 550 and 553 among them),
4xx and network trouble become :class:`TransientSendError`, so the caller knows whether to retry.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import datetime

from asm_email_rules.adapters.oauth import OAuth2Login, error_detail, error_reply, sign_in
from asm_email_rules.connection import Security, SmtpConfig
from asm_email_rules.errors import (
    PermanentSendError,
    SendAuthenticationError,
    SendError,
    TokenError,
    TransientSendError,
)
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.outgoing import OutgoingMessageError, parse_sender, render_outgoing

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


class SmtpMailer:
    """Sends each reply over a fresh SMTP session (replies are rare; no pooling needed).

    OAuth2 sign-in (``AUTH XOAUTH2`` / ``OAUTHBEARER``, RFC 4954 and RFC 7628) uses ``oauth2``
    when given, else a login built once from ``config.oauth2``; either way its token cache
    lives as long as the mailer. A refused sign-in raises
    :class:`~asm_email_rules.errors.SendAuthenticationError` (transient: the reply waits).
    """

    def __init__(self, config: SmtpConfig, *, oauth2: OAuth2Login | None = None) -> None:
        self.config = config
        if oauth2 is None and config.oauth2 is not None:
            oauth2 = OAuth2Login.from_settings(config.oauth2)
        self._oauth2 = oauth2

    def __repr__(self) -> str:
        return f"SmtpMailer({self.config.host}:{self.config.port}, {self.config.security.value})"

    def send(self, message: OutgoingEmail, *, now: datetime | None = None) -> None:
        """Deliver ``message`` to its one recipient or raise a typed :class:`SendError`."""
        recipient = message.to.strip()
        if not recipient or recipient == "<>":
            raise PermanentSendError("no recipient (empty or null path): not sending")
        try:
            raw = render_outgoing(message, now=now, default_sender=self.config.default_sender)
            _, from_addr = parse_sender(message.sender or self.config.default_sender)
        except OutgoingMessageError as exc:
            raise PermanentSendError(f"reply cannot be rendered: {exc}") from exc
        envelope = self.config.envelope_sender or from_addr
        if envelope == "<>":
            envelope = ""
        where = f"SMTP {self.config.host}:{self.config.port}"
        try:
            self._deliver(envelope, recipient, raw)
        except SendError as exc:
            log.warning(
                "reply not sent",
                extra={"smtp_server": where, "to": recipient, "code": exc.code, "error": str(exc)},
            )
            raise
        log.info("reply sent", extra={"smtp_server": where, "to": recipient})

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
            client.starttls(context=cfg.context())
            client.ehlo()
        return client

    def verify(self) -> str:
        """Connect, sign in (when ``username`` is set) and quit, sending nothing.

        For ``asm-email-rules check``. Returns what was checked, in words; raises the same
        typed :class:`SendError` as :meth:`send` (a refused sign-in is a
        :class:`~asm_email_rules.errors.SendAuthenticationError`).
        """
        self._deliver("", "", None)
        where = f"SMTP {self.config.host}:{self.config.port} ({self.config.security.value})"
        if not self.config.username:
            return f"{where}: connected (no sign-in configured)"
        how = self._oauth2.mechanism.sasl_name if self._oauth2 is not None else "password"
        return f"{where}: signed in as {self.config.username} ({how})"

    def _deliver(self, envelope: str, recipient: str, raw: bytes | None) -> None:
        """One session: connect, sign in, send ``raw`` (or only NOOP when it is None), quit."""
        where = f"SMTP {self.config.host}:{self.config.port}"
        client: smtplib.SMTP | None = None
        try:
            client = self._connect()
            if self.config.username:
                self._sign_in(client)
            if raw is None:
                client.noop()
            else:
                client.sendmail(envelope, [recipient], raw)
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
            raise TransientSendError(f"{where} lacks a needed extension: {exc}") from exc
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
            raise error_for_code(exc.smtp_code, f"{where}: {_text(exc.smtp_error)}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientSendError(f"{where} closed the connection: {exc}") from exc
        except smtplib.SMTPException as exc:
            raise TransientSendError(f"{where}: {exc}") from exc
        except UnicodeError as exc:  # smtplib sends AUTH credentials as ASCII only
            raise TransientSendError(f"{where}: credentials must be ASCII: {exc}") from exc
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, timeout, TLS failure
            raise TransientSendError(f"{where} unreachable: {exc}") from exc
        finally:
            if client is not None:
                _quit(client)

    def _sign_in(self, client: smtplib.SMTP) -> None:
        """AUTH with the password (smtplib picks the mechanism) or with an OAuth2 token."""
        cfg = self.config
        login = self._oauth2
        if login is None:
            client.login(cfg.username, cfg.password)
            return
        where = f"SMTP {cfg.host}:{cfg.port}"
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
            raise failed(f"refused: {refusal}", codes[-1] if codes else None)


def _quit(client: smtplib.SMTP) -> None:
    """End the session politely; a failure here cannot change what the server accepted."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
