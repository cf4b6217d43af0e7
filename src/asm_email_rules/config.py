"""The host configuration: one TOML file for the store, the system, SMTP and the mail accounts.

:func:`load_config` validates every key (types, ranges, choices, unknown keys) and raises
:class:`~asm_email_rules.errors.ConfigError` naming the file, the dotted key and the problem.
Passwords may be given inline or as the name of an environment variable (``password_env``).
"""

from __future__ import annotations

import difflib
import enum
import os
import re
import shlex
import ssl
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from asm_email_rules.connection import Security, SmtpConfig, check_envelope_sender
from asm_email_rules.errors import ConfigError
from asm_email_rules.replies import override_key_problem
from asm_email_rules.settings import (
    FATAL_SMTP_CODES,
    CallTemplate,
    Limits,
    MailboxSettings,
    ReopenAssignment,
    SystemSettings,
    partition_problem,
)
from asm_email_rules.signin import (
    AuthMethod,
    ClientAuth,
    ClientCredentialsGrant,
    CommandTokens,
    FileTokens,
    OAuth2Settings,
    RefreshTokenGrant,
    SaslMechanism,
    TokenSourceSpec,
)

__all__ = [
    "AccountConfig",
    "AccountSecrets",
    "Config",
    "MailProtocol",
    "Security",
    "load_config",
    "no_account",
    "only_account",
    "parse_config",
]

_E = TypeVar("_E", bound=enum.Enum)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class MailProtocol(enum.Enum):
    """How an account's mail is read."""

    IMAP = "imap"
    POP3 = "pop3"
    MAILDIR = "maildir"


_DEFAULT_PORTS: Mapping[tuple[MailProtocol, Security], int] = {
    (MailProtocol.IMAP, Security.PLAIN): 143,
    (MailProtocol.IMAP, Security.STARTTLS): 143,
    (MailProtocol.IMAP, Security.TLS): 993,
    (MailProtocol.POP3, Security.PLAIN): 110,
    (MailProtocol.POP3, Security.STARTTLS): 110,
    (MailProtocol.POP3, Security.TLS): 995,
}
_SMTP_PORTS: Mapping[Security, int] = {
    Security.PLAIN: 25,
    Security.STARTTLS: 587,
    Security.TLS: 465,
}


@attrs.frozen
class AccountConfig:
    """One incoming mail account: where to read mail and the mailbox settings the rules use.

    ``protocol`` is None for an account whose mailbox the host opens itself
    (:meth:`~asm_email_rules.service.PollingService.from_parts`); a configuration file always
    names one.
    """

    name: str
    protocol: MailProtocol | None
    mailbox: MailboxSettings
    host: str = ""
    port: int = 0
    security: Security = Security.TLS
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    password_env: str = ""
    auth: AuthMethod = AuthMethod.PASSWORD
    oauth2: OAuth2Settings | None = None
    folder: str = "INBOX"
    quarantine_folder: str = "Quarantine"
    path: Path | None = None
    interval_seconds: float = 60.0
    active: bool = True
    max_messages_per_session: int = 100
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class PostgresStore:
    """``store = "postgresql://USER@HOST:PORT/DATABASE"``: a PostgreSQL database as the store.

    ``url`` never holds a password (the loader refuses one); ``password`` comes from
    ``store_password_env`` or ``store_password_file`` (``None``: libpq's own sources, such as
    ``PGPASSWORD`` or ``~/.pgpass``) and is left out of ``repr``. ``schema`` is
    ``store_schema``. ``str()`` names the server and the database, for messages and logs.
    """

    url: str
    password: str | None = attrs.field(default=None, repr=False)
    schema: str | None = None

    def __str__(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.parse_qs(parts.query)
        host = parts.hostname or query.get("host", ["local socket"])[0]
        port = parts.port or query.get("port", ["5432"])[0]
        database = parts.path.lstrip("/") or query.get("dbname", ["(default)"])[0]
        return f"PostgreSQL server {host}:{port}, database {database}"


POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes that make ``store`` a PostgreSQL database rather than a SQLite file."""


def store_location(text: str, base: Path, *, source: str = "") -> Path | PostgresStore:
    """``text`` as a store: a ``postgresql://`` URL, else a SQLite file relative to ``base``.

    Raises ConfigError (key ``store``, file ``source``) when a URL carries a password (it would
    end up in logs and process lists: give it with ``store_password_env`` or
    ``store_password_file``), names no database, or is malformed.
    """
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    if scheme not in POSTGRES_SCHEMES:
        return _resolve(text, base)

    def fail(message: str) -> ConfigError:
        return ConfigError(message, source=source, key="store")

    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise fail(f"not a valid PostgreSQL URL: {exc}") from None
    query = urllib.parse.parse_qs(parts.query)
    if parts.password is not None or "password" in query:
        raise fail(
            "the URL must not hold the password; "
            "give it with store_password_env or store_password_file"
        )
    if not parts.path.lstrip("/") and "dbname" not in query:
        raise fail("the PostgreSQL URL names no database (postgresql://HOST/DATABASE)")
    return PostgresStore(text)


@attrs.frozen
class Config:
    """A loaded configuration file; ``source`` is the file it came from.

    ``store`` is the SQLite file, a :class:`PostgresStore` for a ``postgresql://`` URL, or
    None when the file names no store (a host that brings its own repository needs none:
    :meth:`require_store` says so where one is needed).
    """

    store: Path | PostgresStore | None
    system: SystemSettings
    smtp: SmtpConfig | None
    accounts: tuple[AccountConfig, ...]
    source: Path | None = None

    def require_store(self) -> Path | PostgresStore:
        """The configured store; ConfigError (key ``store``) when the file names none."""
        if self.store is None:
            raise ConfigError(
                'no store configured: set store = "FILE.sqlite3" or a postgresql:// URL '
                "(a host that brings its own repository passes it to bootstrap instead)",
                source=str(self.source or ""),
                key="store",
            )
        return self.store

    def account(self, name: str | None = None) -> AccountConfig:
        """The account called ``name``, or the first one when ``name`` is None."""
        if name is None:
            if not self.accounts:
                raise ConfigError("no [[accounts]] configured", source=str(self.source or ""))
            return self.accounts[0]
        for account in self.accounts:
            if account.name == name:
                return account
        known = ", ".join(a.name for a in self.accounts) or "none"
        raise ConfigError(
            f"no account named {name!r} (configured: {known})", source=str(self.source or "")
        )


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return names.get(type(value), type(value).__name__)


class _Table:
    """One TOML table being read: typed getters that name the key on error, then ``finish``."""

    def __init__(
        self, data: Mapping[str, Any], path: str, source: str, *, secrets: bool = True
    ) -> None:
        self.data = data
        self.path = path
        self.source = source
        self.secrets = secrets
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str) -> ConfigError:
        """An error about key ``name``; when ``name`` is missing and a key nobody read is close
        to it (``hots`` for ``host``), the error says so: the typo, not only its effect."""
        if name not in self.data:
            unread = [key for key in self.data if key not in self.used]
            close = difflib.get_close_matches(name, unread, n=1)
            if close:
                message = f"{message} ({close[0]!r} is written instead: a typo of {name!r}?)"
        return ConfigError(message, source=self.source, key=self.key(name))

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name)

    def _typed(self, name: str, default: Any, check: Callable[[Any], bool], what: str) -> Any:
        value = self._get(name)
        if value is None:
            return default
        if not check(value):
            raise self.fail(name, f"must be {what}, got {_type_name(value)} {value!r}")
        return value

    def string(self, name: str, default: str = "", *, required: bool = False) -> str:
        if required and name not in self.data:
            raise self.fail(name, "is required")
        value: str = self._typed(name, default, lambda v: isinstance(v, str), "a string")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self.string(name, "")
        return value or None

    def boolean(self, name: str, default: bool) -> bool:
        value: bool = self._typed(name, default, lambda v: isinstance(v, bool), "true or false")
        return value

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        def ok(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        value: int = self._typed(name, default, ok, "an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            span = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(name, f"must be {span}, got {value}")
        return value

    def optional_integer(self, name: str, *, minimum: int = 0) -> int | None:
        if name not in self.data:
            self.used.add(name)
            return None
        return self.integer(name, 0, minimum=minimum)

    def number(self, name: str, default: float, *, minimum_exclusive: float = 0.0) -> float:
        def ok(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        value = float(self._typed(name, default, ok, "a number"))
        if value <= minimum_exclusive:
            raise self.fail(name, f"must be greater than {minimum_exclusive:g}, got {value:g}")
        return value

    def choice(self, name: str, enum_type: type[_E], default: _E) -> _E:
        raw = self.string(name, default.value)
        try:
            return enum_type(raw.lower())
        except ValueError:
            choices = ", ".join(repr(m.value) for m in enum_type)
            raise self.fail(name, f"must be one of {choices}, got {raw!r}") from None

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"must be an array of strings, got {value!r}")
        return tuple(value)

    def integers(self, name: str, default: tuple[int, ...], lo: int, hi: int) -> tuple[int, ...]:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value
        ):
            raise self.fail(name, f"must be an array of integers from {lo} to {hi}, got {value!r}")
        return tuple(value)

    def table(self, name: str) -> _Table:
        value = self._get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table, got {_type_name(value)}")
        return _Table(value, self.key(name), self.source, secrets=self.secrets)

    def optional_table(self, name: str) -> _Table | None:
        return self.table(name) if name in self.data else None

    def secret(self, name: str, env_name: str) -> str:
        """``name`` inline, or the environment variable named by ``env_name``; not both."""
        if name in self.data and env_name in self.data:
            raise self.fail(env_name, f"give either {name} or {env_name}, not both")
        inline = self.string(name)
        variable = self.string(env_name)
        if not variable:
            return inline
        if not self.secrets:  # a dry run needs no password: the variable may be unset
            return ""
        value = os.environ.get(variable)
        if value is None:
            raise self.fail(env_name, f"environment variable {variable!r} is not set")
        return value

    def secret_from(self, name: str, *, required: bool) -> tuple[str, Path | None]:
        """``name`` inline, from ``name_env`` or from ``name_file``: at most one of the three.

        Returns ``(value, None)``, or ``("", path)`` for a file (read by whoever needs it).
        """
        given = [k for k in (name, f"{name}_env", f"{name}_file") if k in self.data]
        if len(given) > 1:
            raise self.fail(given[1], f"give only one of {', '.join(given)}")
        if not given:
            self.used.update((name, f"{name}_env", f"{name}_file"))
            if required:
                raise self.fail(name, f"is required (or {name}_env, or {name}_file)")
            return "", None
        key = given[0]
        if key.endswith("_file"):
            raw = self.string(key)
            if not raw:
                raise self.fail(key, "must not be empty")
            return "", _resolve(raw, Path(self.source).parent)
        value = self.secret(name, f"{name}_env")
        if not value and self.secrets:
            raise self.fail(key, "must not be empty")
        return value, None

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        for name in self.data:
            if name not in self.used:
                close = difflib.get_close_matches(name, sorted(self.used), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(name, f"unknown key{hint}")


def _ssl_context(table: _Table) -> ssl.SSLContext | None:
    """A verifying TLS context trusting ``ca_file`` (for private CAs), or None for the default."""
    ca_file = table.string("ca_file")
    if not ca_file:
        return None
    path = _resolve(ca_file, Path(table.source).parent)
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise table.fail("ca_file", f"cannot load CA certificates from {path}: {exc}") from exc


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def _limits(table: _Table) -> Limits:
    defaults = Limits()
    values = {
        field.name: table.integer(field.name, getattr(defaults, field.name), minimum=1)
        for field in attrs.fields(Limits)
    }
    table.finish()
    return Limits(**values)


def _system(table: _Table) -> SystemSettings:
    d = SystemSettings()
    secret = table.secret("approval_token_secret", "approval_token_secret_env")
    backoff_initial = table.number("backoff_initial_seconds", d.backoff_initial_seconds)
    backoff_max = table.number("backoff_max_seconds", d.backoff_max_seconds)
    if backoff_max < backoff_initial:
        raise table.fail(
            "backoff_max_seconds", f"must be at least backoff_initial_seconds ({backoff_initial})"
        )
    system = SystemSettings(
        truncate_incoming_emails=table.boolean(
            "truncate_incoming_emails", d.truncate_incoming_emails
        ),
        email_at_update_via_email_in=table.boolean(
            "email_at_update_via_email_in", d.email_at_update_via_email_in
        ),
        unspecified_profile_name=table.string(
            "unspecified_profile_name", d.unspecified_profile_name
        ),
        self_service_reopen_closed_calls=table.boolean(
            "self_service_reopen_closed_calls", d.self_service_reopen_closed_calls
        ),
        reopen_assignment=table.choice("reopen_assignment", ReopenAssignment, d.reopen_assignment),
        fatal_smtp_codes=table.integers("fatal_smtp_codes", FATAL_SMTP_CODES, 500, 599),
        summary_limit=table.integer("summary_limit", d.summary_limit, minimum=1),
        reply_marker=table.string("reply_marker", d.reply_marker),
        reply_budget_per_hour=table.integer(
            "reply_budget_per_hour", d.reply_budget_per_hour, minimum=0
        ),
        max_reply_age_days=table.integer("max_reply_age_days", d.max_reply_age_days, minimum=0),
        max_send_attempts=table.integer("max_send_attempts", d.max_send_attempts, minimum=1),
        reply_retry_hours=table.number("reply_retry_hours", d.reply_retry_hours),
        lease_seconds=table.number("lease_seconds", d.lease_seconds),
        replies_in_flight=table.integer(
            "replies_in_flight", d.replies_in_flight, minimum=0, maximum=1000
        ),
        messages_per_commit=table.integer(
            "messages_per_commit", d.messages_per_commit, minimum=1, maximum=1000
        ),
        backoff_initial_seconds=backoff_initial,
        backoff_max_seconds=backoff_max,
        ledger_retention_days=table.integer(
            "ledger_retention_days", d.ledger_retention_days, minimum=0
        ),
        quarantine_retention_days=table.integer(
            "quarantine_retention_days", d.quarantine_retention_days, minimum=0
        ),
        approval_token_secret=secret or None,
        loop_header=table.string("loop_header", d.loop_header),
        limits=_limits(table.table("limits")),
    )
    if not system.unspecified_profile_name.strip():
        raise table.fail("unspecified_profile_name", "must not be empty")
    if not re.fullmatch(r"[!-9;-~]+", system.loop_header):
        raise table.fail("loop_header", f"must be a header field name, got {system.loop_header!r}")
    table.finish()
    return system


_OAUTH2_SOURCES = ("command", "file", "client_credentials", "refresh_token")
_OAUTH2_KEYS: Mapping[str, tuple[str, ...]] = {
    "command": ("command",),
    "path": ("file",),
    "timeout": ("command", "client_credentials", "refresh_token"),
    "token_url": ("client_credentials", "refresh_token"),
    "client_id": ("client_credentials", "refresh_token"),
    "client_secret": ("client_credentials", "refresh_token"),
    "client_secret_env": ("client_credentials", "refresh_token"),
    "client_secret_file": ("client_credentials", "refresh_token"),
    "client_auth": ("client_credentials", "refresh_token"),
    "scope": ("client_credentials", "refresh_token"),
    "refresh_token": ("refresh_token",),
    "refresh_token_env": ("refresh_token",),
    "refresh_token_file": ("refresh_token",),
}
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _token_url(table: _Table) -> str:
    """The token endpoint: https, or plain http on loopback only (test endpoints)."""
    url = table.string("token_url", required=True)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url
    if parts.scheme != "https" or not parts.hostname:
        raise table.fail(
            "token_url", f"must be an https:// URL (plain http only on loopback), got {url!r}"
        )
    return url


def _client_secret(table: _Table, *, required: bool) -> str:
    value, path = table.secret_from("client_secret", required=required)
    if path is None or not table.secrets:  # a dry run reads no secret files
        return value
    return _secret_file(table, "client_secret_file", path)


def _password(table: _Table) -> str:
    """``password`` inline, from ``password_env``, or from ``password_file`` (at most one):
    a mail server's pipe (``deliver``) runs with no environment, so a file the service's user
    can read is how a password reaches it there. "" when none is given."""
    if "password_file" not in table.data:  # inline or environment, as before files came
        table.used.add("password_file")
        return table.secret("password", "password_env")
    _, path = table.secret_from("password", required=True)  # one of the three, resolved
    assert path is not None
    if not table.secrets:  # a dry run reads no secret files
        return ""
    return _secret_file(table, "password_file", path)


def _secret_file(table: _Table, name: str, path: Path) -> str:
    """The secret in the file ``path`` named by key ``name``, stripped; a ConfigError naming
    the key when the file cannot be read, is not UTF-8 or holds nothing."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise table.fail(name, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise table.fail(name, f"{path} is not UTF-8 (byte {exc.start + 1})") from None
    if not secret:
        raise table.fail(name, f"{path} is empty")
    return secret


def _token_source(table: _Table, source: str) -> TokenSourceSpec:
    if source == "command":
        raw = table._get("command")
        if isinstance(raw, str):
            try:
                argv = tuple(shlex.split(raw))
            except ValueError as exc:
                raise table.fail("command", f"cannot be split into words: {exc}") from None
        elif isinstance(raw, list) and all(isinstance(a, str) for a in raw):
            argv = tuple(raw)
        else:
            raise table.fail("command", "is required: a string or an array of strings")
        if not argv or not argv[0]:
            raise table.fail("command", "must name a program")
        return CommandTokens(argv, timeout=table.number("timeout", 30.0))
    if source == "file":
        raw_path = table.string("path", required=True)
        if not raw_path:
            raise table.fail("path", "must not be empty")
        return FileTokens(_resolve(raw_path, Path(table.source).parent))
    token_url = _token_url(table)
    client_id = table.string("client_id", required=True)
    if not client_id:
        raise table.fail("client_id", "must not be empty")
    client_auth = {"post": ClientAuth.POST, "basic": ClientAuth.BASIC}
    auth_name = table.string("client_auth", "post")
    if auth_name not in client_auth:
        raise table.fail("client_auth", f"must be 'post' or 'basic', got {auth_name!r}")
    scope = table.string("scope")
    timeout = table.number("timeout", 30.0)
    if source == "client_credentials":
        return ClientCredentialsGrant(
            token_url=token_url,
            client_id=client_id,
            client_secret=_client_secret(table, required=True),
            scope=scope,
            client_auth=client_auth[auth_name],
            timeout=timeout,
        )
    refresh_token, refresh_file = table.secret_from("refresh_token", required=True)
    return RefreshTokenGrant(
        token_url=token_url,
        client_id=client_id,
        client_secret=_client_secret(table, required=False),
        refresh_token=refresh_token,
        refresh_token_file=refresh_file,
        scope=scope,
        client_auth=client_auth[auth_name],
        timeout=timeout,
    )


def _oauth2(table: _Table) -> OAuth2Settings:
    """An ``oauth2`` section: the SASL mechanism and where tokens come from."""
    mechanism = table.choice("mechanism", SaslMechanism, SaslMechanism.XOAUTH2)
    source = table.string("source", required=True)
    if source not in _OAUTH2_SOURCES:
        choices = ", ".join(repr(s) for s in _OAUTH2_SOURCES)
        raise table.fail("source", f"must be one of {choices}, got {source!r}")
    for key, sources in _OAUTH2_KEYS.items():
        if key in table.data and source not in sources:
            raise table.fail(key, f"does not apply to source = {source!r}")
    settings = OAuth2Settings(_token_source(table, source), mechanism)
    table.finish()
    return settings


def _auth(table: _Table) -> tuple[AuthMethod, OAuth2Settings | None]:
    """``auth`` and its ``oauth2`` section: required with oauth2, refused with a password."""
    auth = table.choice("auth", AuthMethod, AuthMethod.PASSWORD)
    section = table.optional_table("oauth2")
    if auth is AuthMethod.PASSWORD:
        if section is not None:
            raise table.fail("oauth2", 'applies only with auth = "oauth2"')
        return auth, None
    for key in ("password", "password_env", "password_file"):
        if key in table.data:
            raise table.fail(key, 'does not apply with auth = "oauth2"')
    if section is None:
        raise table.fail("oauth2", 'is required with auth = "oauth2" (the token source)')
    if not table.data.get("username"):
        raise table.fail("username", 'is required with auth = "oauth2" (the mailbox address)')
    return auth, _oauth2(section)


def _envelope_sender(table: _Table) -> str:
    try:
        return check_envelope_sender(table.string("envelope_sender"))
    except ValueError as exc:
        raise table.fail("envelope_sender", str(exc)) from None


def _smtp(table: _Table) -> SmtpConfig:
    security = table.choice("security", Security, Security.STARTTLS)
    host = table.string("host", required=True)
    if not host:
        raise table.fail("host", "must not be empty")
    _, oauth2 = _auth(table)
    config = SmtpConfig(
        host=host,
        port=table.integer("port", _SMTP_PORTS[security], minimum=1, maximum=65535),
        security=security,
        username=table.string("username"),
        password=_password(table),
        oauth2=oauth2,
        timeout=table.number("timeout", 30.0),
        envelope_sender=_envelope_sender(table),
        local_hostname=table.optional_string("local_hostname"),
        default_sender=table.string("default_sender"),
        ssl_context=_ssl_context(table),
    )
    table.finish()
    return config


def _call_template(table: _Table) -> CallTemplate:
    d = CallTemplate()
    template = CallTemplate(
        name=table.string("name", d.name),
        partition=table.string("partition", d.partition),
        call_screen_set=table.string("call_screen_set", d.call_screen_set),
        ipk_status=table.string("ipk_status", d.ipk_status),
        ipk_stream=table.string("ipk_stream", d.ipk_stream),
        assigned_analyst_id=table.optional_integer("assigned_analyst_id", minimum=1),
        assigned_group=table.string("assigned_group", d.assigned_group),
    )
    table.finish()
    return template


def _reply_templates(table: _Table) -> dict[str, str]:
    templates: dict[str, str] = {}
    for name in list(table.data):
        problem = override_key_problem(name)
        if problem is not None:
            raise table.fail(f'"{name}"', problem)
        templates[name] = table.string(name)
    table.finish()
    return templates


DEFAULT_FROM_NAME = "Service Desk"
"""The display name of our replies' From when the configuration does not set ``from_name``."""


def _from_name(table: _Table) -> str:
    name = table.string("from_name", DEFAULT_FROM_NAME)
    if any(not c.isprintable() for c in name):
        raise table.fail("from_name", "must be one line of printable text")
    return name.strip()


def _reply_subject(table: _Table) -> str:
    template = table.string("reply_subject", MailboxSettings().reply_subject)
    if "$token" not in template:
        raise table.fail(
            "reply_subject",
            "must contain $token (the [CALL#n] token answers are matched by), e.g. "
            '"$subject $token"',
        )
    if any(not c.isprintable() for c in template):
        raise table.fail("reply_subject", "must be one line of printable text")
    return template


def _mailbox(table: _Table, name: str) -> MailboxSettings:
    d = MailboxSettings()
    addresses = table.strings("addresses")
    if not addresses:
        raise table.fail("addresses", "must list at least one address of this mailbox")
    for address in addresses:
        if address.count("@") != 1 or any(c.isspace() for c in address):
            raise table.fail("addresses", f"{address!r} is not an email address")
    separators = table.strings("separators")
    if any(not s.strip() for s in separators):
        raise table.fail("separators", "separators must not be empty")
    template_table = table.table("call_template")
    template = _call_template(template_table)
    partition = table.optional_string("partition")
    problem = partition_problem(partition, template.partition)
    if problem is not None:
        raise template_table.fail("partition", problem)
    mailbox = MailboxSettings(
        name=name,
        addresses=addresses,
        call_template=template,
        default_logging_analyst_id=table.optional_integer("default_logging_analyst_id", minimum=1),
        create_calls_anonymously=table.boolean(
            "create_calls_anonymously", d.create_calls_anonymously
        ),
        update_calls_anonymously=table.boolean(
            "update_calls_anonymously", d.update_calls_anonymously
        ),
        close_calls_anonymously=table.boolean("close_calls_anonymously", d.close_calls_anonymously),
        log_new_call_on_invalid_number=table.boolean(
            "log_new_call_on_invalid_number", d.log_new_call_on_invalid_number
        ),
        update_closed_calls=table.boolean("update_closed_calls", d.update_closed_calls),
        reopen_closed_calls=table.boolean("reopen_closed_calls", d.reopen_closed_calls),
        use_linked_analyst=table.boolean("use_linked_analyst", d.use_linked_analyst),
        auto_reply=table.boolean("auto_reply", d.auto_reply),
        partition=partition,
        reply_templates=_reply_templates(table.table("reply_templates")),
        separators=separators,
        trusted_authserv_id=table.optional_string("trusted_authserv_id"),
        require_approval_token=table.boolean("require_approval_token", d.require_approval_token),
        calls_from_machine_mail=table.boolean("calls_from_machine_mail", d.calls_from_machine_mail),
        contact_from_reply_to=table.boolean("contact_from_reply_to", d.contact_from_reply_to),
        from_name=_from_name(table),
        reply_subject=_reply_subject(table),
    )
    table.finish()
    return mailbox


_ONLY_FOR: Mapping[str, tuple[MailProtocol, ...]] = {
    "host": (MailProtocol.IMAP, MailProtocol.POP3),
    "port": (MailProtocol.IMAP, MailProtocol.POP3),
    "security": (MailProtocol.IMAP, MailProtocol.POP3),
    "username": (MailProtocol.IMAP, MailProtocol.POP3),
    "password": (MailProtocol.IMAP, MailProtocol.POP3),
    "password_env": (MailProtocol.IMAP, MailProtocol.POP3),
    "password_file": (MailProtocol.IMAP, MailProtocol.POP3),
    "auth": (MailProtocol.IMAP, MailProtocol.POP3),
    "oauth2": (MailProtocol.IMAP, MailProtocol.POP3),
    "timeout": (MailProtocol.IMAP, MailProtocol.POP3),
    "ca_file": (MailProtocol.IMAP, MailProtocol.POP3),
    "folder": (MailProtocol.IMAP,),
    "quarantine_folder": (MailProtocol.IMAP, MailProtocol.MAILDIR),
    "path": (MailProtocol.MAILDIR,),
}


def _account(table: _Table, base: Path) -> AccountConfig:
    name = table.string("name", required=True)
    if not _NAME_RE.fullmatch(name):
        raise table.fail("name", f"must be 1-64 letters, digits, '.', '_' or '-' (got {name!r})")
    protocol = table.choice("protocol", MailProtocol, MailProtocol.IMAP)
    if "protocol" not in table.data:
        raise table.fail("protocol", "is required (imap, pop3 or maildir)")
    for key, protocols in _ONLY_FOR.items():
        if key in table.data and protocol not in protocols:
            allowed = " and ".join(p.value for p in protocols)
            raise table.fail(key, f"applies only to {allowed} accounts, not {protocol.value}")
    security = table.choice("security", Security, Security.TLS)
    host = table.string("host")
    path: Path | None = None
    if protocol is MailProtocol.MAILDIR:
        raw_path = table.string("path", required=True)
        if not raw_path:
            raise table.fail("path", "must not be empty")
        path = _resolve(raw_path, base)
    elif not host:
        raise table.fail("host", f"is required for {protocol.value} accounts")
    default_port = _DEFAULT_PORTS.get((protocol, security), 0)
    default_quarantine = ".Quarantine" if protocol is MailProtocol.MAILDIR else "Quarantine"
    auth, oauth2 = _auth(table)
    account = AccountConfig(
        name=name,
        protocol=protocol,
        host=host,
        port=table.integer("port", default_port, minimum=1, maximum=65535)
        if protocol is not MailProtocol.MAILDIR
        else 0,
        security=security,
        username=table.string("username"),
        password=_password(table),
        password_env=table.string("password_env"),
        auth=auth,
        oauth2=oauth2,
        folder=table.string("folder", "INBOX"),
        quarantine_folder=table.string("quarantine_folder", default_quarantine),
        path=path,
        interval_seconds=table.number("interval_seconds", 60.0),
        active=table.boolean("active", True),
        max_messages_per_session=table.integer("max_messages_per_session", 100, minimum=1),
        timeout=table.number("timeout", 30.0),
        ssl_context=_ssl_context(table),
        mailbox=_mailbox(table.table("mailbox"), name),
    )
    if protocol is not MailProtocol.MAILDIR and not account.username:
        raise table.fail("username", f"is required for {protocol.value} accounts")
    if not account.folder:
        raise table.fail("folder", "must not be empty")
    if not account.quarantine_folder:
        raise table.fail("quarantine_folder", "must not be empty")
    table.finish()
    return account


def _store(root: _Table, text: str, base: Path) -> Path | PostgresStore:
    """Top-level ``store``; for PostgreSQL also ``store_password_env|_file``, ``store_schema``."""
    store = store_location(text, base, source=root.source)
    if isinstance(store, Path):
        for key in ("store_password_env", "store_password_file", "store_schema"):
            if key in root.data:
                raise root.fail(key, "is only for a PostgreSQL store (store = 'postgresql://...')")
        return store
    if "store_password" in root.data:
        raise root.fail(
            "store_password", "must not be written here: use store_password_env or _file"
        )
    # The store's password is read even for dry runs: explain reads the store.
    reading, root.secrets = root.secrets, True
    try:
        password, path = root.secret_from("store_password", required=False)
    finally:
        root.secrets = reading
    if path is not None:
        password = _secret_file(root, "store_password_file", path)
    schema = root.string("store_schema") or None
    if schema is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise root.fail("store_schema", "must be a plain SQL name (letters, digits, _)")
    return attrs.evolve(store, password=password or None, schema=schema)


_ROOT_KEYS = frozenset(
    {
        "store",
        "store_password",
        "store_password_env",
        "store_password_file",
        "store_schema",
        "system",
        "smtp",
        "accounts",
    }
)
"""The keys of the file's top level (``store_password`` only to be refused with its reason)."""

_ACCOUNT_TABLES: Mapping[str, str] = {
    "mailbox": "[accounts.mailbox]",
    "oauth2": "[accounts.oauth2] or [smtp.oauth2]",
    "call_template": "[accounts.mailbox.call_template]",
    "reply_templates": "[accounts.mailbox.reply_templates]",
}
"""Tables of an account that a file may wrongly write at the top level (``[mailbox]``), and
where they go."""


AccountSecrets = Callable[[int, str], bool]
"""Which accounts' secrets to read, asked with each account's position (0 for the first) and
its ``name`` as written."""


def only_account(name: str | None) -> AccountSecrets:
    """An :data:`AccountSecrets` for the one account ``name`` (None: the first), as
    :meth:`Config.account` picks it: a command that signs in to that account's mailbox."""
    return lambda index, found: found == name if name else index == 0


def no_account(index: int, name: str) -> bool:
    """An :data:`AccountSecrets` for none: a command that signs in to no mailbox (``deliver``
    and ``process`` use an account's rules, not its server)."""
    return False


def parse_config(
    data: Mapping[str, Any],
    source: Path,
    *,
    secrets: bool = True,
    secret_accounts: AccountSecrets | None = None,
) -> Config:
    """Validate already-parsed TOML ``data``; relative paths resolve against ``source``'s folder.

    ``store`` may be left out (``Config.store`` is then None) by a host that supplies its own
    repository; the commands and :func:`~asm_email_rules.bootstrap.bootstrap` that need the
    store say so with a ConfigError naming the key. With ``secrets=False`` passwords named by
    ``password_env`` are not read (they stay empty and an unset variable is no error): for dry
    runs such as ``explain``, which sign in nowhere. ``secret_accounts`` narrows that to the
    accounts it says yes to (:func:`only_account`, :func:`no_account`): ``deliver`` needs the
    SMTP password, not the accounts' (a mail server's pipe passes no environment).
    Every key of every account is checked either way.
    """
    label = str(source)
    base = source.parent
    root = _Table(data, "", label, secrets=secrets)
    # The top level's keys first: a misspelt section ([account.mailbox], [smpt]) must be named
    # itself, not by what it leaves missing (an account without addresses, no [smtp]).
    for name in data:
        if name in _ROOT_KEYS:
            continue
        if name in _ACCOUNT_TABLES:
            raise root.fail(
                name, f"unknown key (it goes under an account: {_ACCOUNT_TABLES[name]})"
            )
        close = difflib.get_close_matches(name, sorted(_ROOT_KEYS), n=1)
        raise root.fail(name, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
    store: Path | PostgresStore | None = None
    if "store" in root.data:
        store_text = root.string("store")
        if not store_text:
            raise root.fail("store", "must name the SQLite file or a postgresql:// URL")
        store = _store(root, store_text, base)
    else:
        for key in ("store_password_env", "store_password_file", "store_schema"):
            if key in root.data:
                raise root.fail(key, "is only for a PostgreSQL store (store = 'postgresql://...')")
    system = _system(root.table("system"))
    smtp_table = root.optional_table("smtp")
    smtp = _smtp(smtp_table) if smtp_table is not None else None
    raw_accounts = root._get("accounts")
    if raw_accounts is None:
        raw_accounts = []
    if not isinstance(raw_accounts, list) or not all(isinstance(a, dict) for a in raw_accounts):
        raise root.fail("accounts", "must be an array of tables ([[accounts]])")
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_accounts):
        named = raw.get("name")
        wanted = secret_accounts is None or secret_accounts(
            index, named if isinstance(named, str) else ""
        )
        table = _Table(raw, f"accounts[{index + 1}]", label, secrets=secrets and wanted)
        account = _account(table, base)
        if account.name in seen:
            raise table.fail("name", f"duplicate account name {account.name!r}")
        seen.add(account.name)
        accounts.append(account)
    root.finish()
    return Config(
        store=store,
        system=system,
        smtp=smtp,
        accounts=tuple(accounts),
        source=source,
    )


def load_config(
    path: str | os.PathLike[str],
    *,
    secrets: bool = True,
    secret_accounts: AccountSecrets | None = None,
) -> Config:
    """Read and validate a TOML configuration file. Raises ConfigError naming file and key.

    Every key is checked; ``store`` is optional (see :func:`parse_config`). Accounts are named
    ``accounts[1]``, ``accounts[2]``, ... in errors, counting from 1 as the file does.
    ``secrets`` and ``secret_accounts``: see :func:`parse_config`.
    """
    source = Path(path).expanduser().resolve()
    try:
        # A byte order mark (Windows Notepad writes one) is not TOML; it says nothing either.
        data = tomllib.loads(source.read_bytes().decode("utf-8").removeprefix("\ufeff"))
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(source)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=str(source)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=str(source)) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (TOML 1.0, "Spec")
        raise ConfigError(
            f"not UTF-8 (byte {exc.start + 1} is {exc.object[exc.start : exc.start + 1]!r});"
            " TOML files are UTF-8: save it as UTF-8",
            source=str(source),
        ) from None
    return parse_config(data, source, secrets=secrets, secret_accounts=secret_accounts)
