"""How we reach mail servers: the TLS mode and the SMTP settings, as plain values.

Both the configuration (:mod:`asm_email_rules.config`) and the adapters
(:mod:`asm_email_rules.adapters.smtp`, ``imap``, ``pop3``) use these, so they live here rather
than in an adapter: the core never imports ``adapters`` (DESIGN section 1). Nothing here opens
a connection.
"""

from __future__ import annotations

import enum
import ssl

import attrs

from asm_email_rules.outgoing import OutgoingMessageError, parse_sender
from asm_email_rules.signin import OAuth2Settings

__all__ = ["Security", "SmtpConfig", "as_security", "check_envelope_sender"]


class Security(enum.Enum):
    """How a connection is protected: none, upgraded by STARTTLS/STLS, or TLS from the start."""

    PLAIN = "plain"
    STARTTLS = "starttls"
    TLS = "tls"


def as_security(value: Security | str) -> Security:
    """``value`` as a :class:`Security` (``"plain"``, ``"starttls"`` or ``"tls"`` accepted).

    Raises ValueError for any other string.
    """
    return value if isinstance(value, Security) else Security(value)


def check_envelope_sender(value: str) -> str:
    """``value`` if it can be ``SmtpConfig.envelope_sender``: empty (the reply's From), ``<>``
    (the null reverse-path) or an address as ``addr`` or ``Name <addr>`` (RFC 5321 4.1.2);
    ValueError naming what is wrong otherwise (a line break, non-ASCII, no domain...)."""
    if value and value != "<>":
        try:
            parse_sender(value)
        except OutgoingMessageError as exc:
            detail = str(exc).removeprefix("From: ").replace("header 'From' holds", "it holds")
            raise ValueError(
                f"envelope_sender {value!r} is not an address ('addr', 'Name <addr>' or '<>'):"
                f" {detail}"
            ) from None
    return value


def _envelope_sender(instance: object, attribute: object, value: str) -> None:
    check_envelope_sender(value)


@attrs.frozen
class SmtpConfig:
    """Where and how to send. ``envelope_sender`` empty means the reply's From; ``"<>"`` is null.

    ``ssl_context`` defaults to :func:`ssl.create_default_context` (certificate and host name
    checked). AUTH is used when ``username`` is set: with ``password``, or, when ``oauth2`` is
    set, with an OAuth2 token (SASL XOAUTH2 / OAUTHBEARER) from the source it describes.
    """

    host: str
    port: int = 25
    security: Security = attrs.field(default=Security.STARTTLS, converter=as_security)
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    timeout: float = 30.0
    envelope_sender: str = attrs.field(default="", validator=_envelope_sender)
    local_hostname: str | None = None
    default_sender: str = ""
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)
    oauth2: OAuth2Settings | None = None

    def context(self) -> ssl.SSLContext:
        """The TLS context to use: the configured one or a verifying default."""
        return self.ssl_context if self.ssl_context is not None else ssl.create_default_context()
