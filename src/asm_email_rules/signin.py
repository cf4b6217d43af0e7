"""How an adapter signs in to a mail server: by password, or by OAuth2 with a token source.

These are plain values (no I/O): :mod:`asm_email_rules.config` builds them from the TOML file
and :mod:`asm_email_rules.adapters.oauth` turns them into cached access tokens and SASL
responses. Secrets (client secrets, refresh tokens) are never part of a ``repr``.

Microsoft 365 and Google Workspace accept only OAuth2 for IMAP, POP3 and SMTP: the SASL
mechanisms ``XOAUTH2`` (their own, widely supported) and ``OAUTHBEARER`` (RFC 7628).
"""

from __future__ import annotations

import enum
from pathlib import Path

import attrs

__all__ = [
    "AuthMethod",
    "ClientAuth",
    "ClientCredentialsGrant",
    "CommandTokens",
    "FileTokens",
    "OAuth2Settings",
    "RefreshTokenGrant",
    "SaslMechanism",
    "TokenSourceSpec",
]


class AuthMethod(enum.Enum):
    """How an account signs in: a password (LOGIN / USER+PASS / AUTH PLAIN) or an OAuth2 token."""

    PASSWORD = "password"
    OAUTH2 = "oauth2"


class SaslMechanism(enum.Enum):
    """The SASL mechanism that carries the bearer token.

    ``XOAUTH2`` is Google's and Microsoft's original one; ``OAUTHBEARER`` is the standard one
    (RFC 7628). Both servers accept XOAUTH2; Gmail accepts OAUTHBEARER too.
    """

    XOAUTH2 = "xoauth2"
    OAUTHBEARER = "oauthbearer"

    @property
    def sasl_name(self) -> str:
        """The name as written in ``AUTHENTICATE`` / ``AUTH`` (upper case)."""
        return self.value.upper()


class ClientAuth(enum.Enum):
    """How the client authenticates at the token endpoint (RFC 6749 2.3.1).

    ``POST`` sends ``client_id`` and ``client_secret`` in the form body (what Microsoft's and
    Google's documentation show); ``BASIC`` sends them as HTTP Basic credentials.
    """

    POST = "client_secret_post"
    BASIC = "client_secret_basic"


@attrs.frozen
class CommandTokens:
    """A command that prints an access token, like the ``PassCmd`` of mail tools.

    ``argv`` runs without a shell. Its standard output is either the bare token (then it is run
    again at every sign-in: the command keeps its own cache) or a JSON object with
    ``access_token`` and ``expires_in`` (seconds) or ``expires_at`` (Unix time), which is cached.
    """

    argv: tuple[str, ...]
    timeout: float = 30.0


@attrs.frozen
class FileTokens:
    """A file that another program keeps filled with a current access token.

    Same formats as :class:`CommandTokens`; a bare token is read again at every sign-in.
    """

    path: Path


@attrs.frozen
class ClientCredentialsGrant:
    """The client-credentials grant (RFC 6749 4.4): an app signs in as itself.

    Microsoft 365 app-only access: ``token_url`` is
    ``https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`` and ``scope``
    ``https://outlook.office365.com/.default``.
    """

    token_url: str
    client_id: str
    client_secret: str = attrs.field(repr=False)
    scope: str = ""
    client_auth: ClientAuth = ClientAuth.POST
    timeout: float = 30.0


@attrs.frozen
class RefreshTokenGrant:
    """The refresh-token grant (RFC 6749 6): a long-lived refresh token buys access tokens.

    Google Workspace: ``token_url`` ``https://oauth2.googleapis.com/token``, the refresh token
    obtained once for the mailbox with the ``https://mail.google.com/`` scope. When the refresh
    token comes from ``refresh_token_file``, a new one the server hands out (rotation) is
    written back to that file; otherwise it is kept in memory.
    """

    token_url: str
    client_id: str
    client_secret: str = attrs.field(default="", repr=False)
    refresh_token: str = attrs.field(default="", repr=False)
    refresh_token_file: Path | None = None
    scope: str = ""
    client_auth: ClientAuth = ClientAuth.POST
    timeout: float = 30.0


TokenSourceSpec = CommandTokens | FileTokens | ClientCredentialsGrant | RefreshTokenGrant
"""Where an account's access tokens come from."""


@attrs.frozen
class OAuth2Settings:
    """OAuth2 sign-in of one account (or of SMTP): the SASL mechanism and the token source."""

    source: TokenSourceSpec
    mechanism: SaslMechanism = SaslMechanism.XOAUTH2
