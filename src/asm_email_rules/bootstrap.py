"""The composition root: the one place that builds the store, the mailer, the mailboxes and the
polling service from a :class:`~asm_email_rules.config.Config`.

The command line, the demo and hosts that run the bundled service call :func:`bootstrap` (or
the single builders below); everything else in the library receives its Repository, Mailer and
mailbox factory as arguments and never imports an adapter (DESIGN section 1)::

    with bootstrap(load_config("config.toml")) as wiring:
        report = wiring.service.poll_once()

A host that brings its own store or mailer passes it in; :func:`bootstrap` then wires only what
is missing, and closes only what it opened.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import attrs

from asm_email_rules.config import AccountConfig, Config, MailProtocol, PostgresStore
from asm_email_rules.errors import ConfigError, RepositoryError, StoreUnavailableError
from asm_email_rules.ledger_key import read_bound
from asm_email_rules.protocols import Mailbox, Mailer, Repository, SeedableRepository
from asm_email_rules.sample import seed_sample_desk
from asm_email_rules.service import MailboxFactory, PollingService
from asm_email_rules.settings import Limits

if TYPE_CHECKING:
    from asm_email_rules.adapters.oauth import OAuth2Login
    from asm_email_rules.adapters.postgres import PostgresRepository
    from asm_email_rules.adapters.sqlite import SqliteRepository

__all__ = [
    "FROM_CONFIG",
    "Wiring",
    "bootstrap",
    "mailbox_factory",
    "make_mailer",
    "open_configured_store",
    "open_sample_store",
    "open_store",
]

_log = logging.getLogger("asm_email_rules")


class _FromConfig(enum.Enum):
    FROM_CONFIG = "from the configuration"


FROM_CONFIG = _FromConfig.FROM_CONFIG
"""``bootstrap(mailer=FROM_CONFIG)`` (the default): the SMTP mailer of the ``[smtp]`` section."""


def open_store(
    location: Path | PostgresStore, *, must_exist: bool = False, migrate: bool = True
) -> SqliteRepository | PostgresRepository:
    """The store ``location`` names: a SQLite file, or a PostgreSQL database.

    A SQLite file is created with the current schema unless ``must_exist``. A PostgreSQL
    database must exist (we never create databases); its tables are created (with a WARNING:
    a typo in ``store_schema`` is a new, empty desk) or migrated on opening. ``migrate=False``
    leaves an older schema as it is (its ``schema_version`` below its ``schema_latest``), for
    commands that promise to change nothing. Raises ConfigError
    naming the file or the server and database (never the password) when the store is
    missing (``must_exist``), is not a store of ours (not a database, a newer schema),
    refuses the login, or psycopg is not installed; and
    :class:`~asm_email_rules.errors.StoreUnavailableError` when it is there but cannot be used
    now (locked, read-only, full, a server that does not answer): a service waits for it.
    """
    if isinstance(location, PostgresStore):
        return _open_postgres(location, migrate=migrate)
    from asm_email_rules.adapters.sqlite import SqliteRepository

    if must_exist and not location.exists():
        raise ConfigError(
            "store not found: no such file (a relative `store` in the configuration is taken "
            "from the configuration file's folder, not the current one; `asm-email-rules init "
            "DIR` writes a new configuration and an empty store)",
            source=str(location),
        )
    if not location.parent.is_dir():  # not a store to wait for: a folder to create, or a typo
        raise ConfigError(
            f"cannot create the store: {location.parent} does not exist or is not a folder",
            source=str(location),
        )
    if location.exists() and not location.is_file():
        raise ConfigError("not a store: it is not a file (a folder?)", source=str(location))
    try:
        return SqliteRepository(location, migrate=migrate)
    except StoreUnavailableError:
        raise
    except RepositoryError as exc:
        raise ConfigError(f"cannot open the store: {exc}", source=str(location)) from None


def _open_postgres(store: PostgresStore, *, migrate: bool = True) -> PostgresRepository:
    try:
        from asm_email_rules.adapters.postgres import PostgresRepository
    except ImportError:
        raise ConfigError(
            "the PostgreSQL store needs psycopg: pip install 'asm-email-rules[postgres]'",
            source=str(store),
        ) from None
    try:
        repository = PostgresRepository(
            store.url, password=store.password, schema=store.schema, migrate=migrate
        )
    except StoreUnavailableError:
        raise
    except RepositoryError as exc:
        raise ConfigError(f"cannot open the store: {exc}") from None
    if repository.created:  # a new desk, or a typo in store / store_schema: say which
        _log.warning(
            "store %s%s had none of our tables: created them, empty (if the desk's store is "
            "elsewhere, correct `store` or `store_schema` in the configuration)",
            store,
            f", schema {store.schema}" if store.schema else "",
        )
    return repository


def open_configured_store(config: Config) -> SqliteRepository | PostgresRepository:
    """:func:`open_store` for the configuration's ``store``, creating a SQLite file that is
    not there, as ``poll`` and ``process`` do; a WARNING names the file created, so a typo in
    ``store`` (or a relative path read from another folder) is not a new, empty desk in
    silence that knows nobody (for PostgreSQL, :func:`open_store` says it)."""
    location = config.require_store()
    created = isinstance(location, Path) and not location.exists()
    repository = open_store(location)
    if created:
        _log.warning(
            "store %s did not exist: created a new, empty one (if the desk's store is "
            "elsewhere, correct `store` in %s; a relative path is taken from that file's "
            "folder)",
            location,
            config.source,
        )
    return repository


def schema_behind(repository: object) -> str | None:
    """Why a store opened with ``migrate=False`` cannot be read by this version (its schema is
    older than the one it migrates to), or None when it can (current, or a host's store)."""
    version = getattr(repository, "schema_version", None)
    latest = getattr(repository, "schema_latest", None)
    if not isinstance(version, int) or not isinstance(latest, int) or version >= latest:
        return None
    if version == 0:  # a database (or store_schema) where no version ever created our tables
        return (
            "the store has no tables of ours (no people, no ledger): the next poll, process "
            "or deliver creates them, empty; if the desk's store is elsewhere, correct "
            "`store` or `store_schema` first"
        )
    return (
        f"the store's schema is version {version}, older than this version's {latest}: the "
        "next poll, process or deliver migrates it, after which older versions cannot open "
        "it (back it up first: docs/operators.md, 'Upgrading to a newer version')"
    )


def open_sample_store(path: Path | PostgresStore | None = None) -> SeedableRepository:
    """A store seeded with the sample desk (:mod:`asm_email_rules.sample`).

    In memory when ``path`` is None; else the store at ``path``: a SQLite file (the demo uses a
    temporary one so it runs the same code as production) or a PostgreSQL database. The caller
    closes it.
    """
    repository: SeedableRepository
    if path is None:
        from asm_email_rules.adapters.memory import InMemoryRepository

        repository = InMemoryRepository()
    else:
        repository = open_store(path)
    seed_sample_desk(repository)
    return repository


def make_mailer(config: Config) -> Mailer | None:
    """The SMTP mailer of the configuration, or None when it has no ``[smtp]`` section
    (replies are then recorded in the store as pending and not sent)."""
    if config.smtp is None:
        return None
    from asm_email_rules.adapters.smtp import SmtpMailer

    return SmtpMailer(config.smtp)


class _ConfiguredMailboxes:
    """Opens the adapter an account names; remembers POP3 skip lists between sessions."""

    def __init__(self, limits: Limits) -> None:
        self._max_message_size = read_bound(limits.max_read_size)
        self._pop3_skip: dict[str, frozenset[str]] = {}
        self._pop3_open: dict[str, object] = {}
        self._logins: dict[str, OAuth2Login] = {}

    def __call__(self, account: AccountConfig) -> Mailbox:
        if account.protocol is None:
            raise ConfigError(
                f"account {account.name!r} names no protocol: its mailbox is the host's to open"
            )
        if account.protocol is MailProtocol.MAILDIR:
            return _maildir(account, self._max_message_size)
        if account.protocol is MailProtocol.IMAP:
            return _imap(account, self._oauth2(account), self._max_message_size)
        return self._pop3(account)

    def _oauth2(self, account: AccountConfig) -> OAuth2Login | None:
        """The account's OAuth2 login, kept across sessions so its token cache lives on."""
        if account.oauth2 is None:
            return None
        from asm_email_rules.adapters.oauth import OAuth2Login

        login = self._logins.get(account.name)
        if login is None:
            login = OAuth2Login.from_settings(account.oauth2)
            self._logins[account.name] = login
        return login

    def _pop3(self, account: AccountConfig) -> Mailbox:
        from asm_email_rules.adapters.pop3 import Pop3Config, Pop3Mailbox

        previous = self._pop3_open.get(account.name)
        if isinstance(previous, Pop3Mailbox):
            self._pop3_skip[account.name] = previous.skip_ids
        mailbox = Pop3Mailbox(
            Pop3Config(
                host=account.host,
                port=account.port,
                security=account.security,
                username=account.username,
                password=account.password,
                oauth2=self._oauth2(account),
                timeout=account.timeout,
                ssl_context=account.ssl_context,
                max_message_size=self._max_message_size,
            ),
            skip_ids=self._pop3_skip.get(account.name, frozenset()),
        )
        self._pop3_open[account.name] = mailbox
        return mailbox


def _maildir(account: AccountConfig, max_message_size: int) -> Mailbox:
    from asm_email_rules.adapters.maildir import MaildirMailbox

    assert account.path is not None  # config requires path for maildir accounts
    return MaildirMailbox(
        account.path,
        quarantine_folder=account.quarantine_folder,
        max_message_size=max_message_size,
    )


def _imap(account: AccountConfig, oauth2: OAuth2Login | None, max_message_size: int) -> Mailbox:
    from asm_email_rules.adapters.imap import ImapConfig, ImapMailbox

    return ImapMailbox(
        ImapConfig(
            host=account.host,
            port=account.port,
            security=account.security,
            username=account.username,
            password=account.password,
            oauth2=oauth2,
            folder=account.folder,
            quarantine_folder=account.quarantine_folder,
            timeout=account.timeout,
            ssl_context=account.ssl_context,
            max_message_size=max_message_size,
        )
    )


def mailbox_factory(limits: Limits | None = None) -> MailboxFactory:
    """A mailbox factory for the bundled adapters (IMAP, POP3, Maildir) the accounts name.

    Each call of the factory opens a fresh session. Keep one factory per service: it carries
    the POP3 skip lists (quarantined UIDLs) from one session to the next. Its Maildir and IMAP
    mailboxes read no more of one message than the polling service keeps of it with
    ``limits`` (the configuration's ``system.limits``; default: the defaults), so a message
    of gigabytes costs no more memory than :attr:`~asm_email_rules.settings.Limits.max_read_size`.
    """
    return _ConfiguredMailboxes(limits or Limits())


@attrs.define
class Wiring:
    """What :func:`bootstrap` built: use ``service``, or the parts; ``close`` when done.

    A ``with`` block closes the store on exit, if :func:`bootstrap` opened it.
    """

    config: Config
    repository: Repository
    mailer: Mailer | None
    mailbox_factory: MailboxFactory
    service: PollingService
    owns_repository: bool = False

    def close(self) -> None:
        """Close the store when bootstrap opened it (a host's own store is left open)."""
        close = getattr(self.repository, "close", None)
        if self.owns_repository and close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def bootstrap(
    config: Config,
    *,
    repository: Repository | None = None,
    mailer: Mailer | _FromConfig | None = FROM_CONFIG,
    mailboxes: MailboxFactory | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    random_token: Callable[[], str] = lambda: secrets.token_hex(8),
) -> Wiring:
    """Wire the polling service from ``config``, taking any part the host passes instead.

    ``repository``: default the store of ``config.store`` (a SQLite file, created when
    missing, or a PostgreSQL database); a configuration without ``store`` needs one passed.
    ``mailer``: default :func:`make_mailer`; None records replies as pending without sending.
    ``mailboxes``: default :func:`mailbox_factory`. ``now`` and ``random_token`` go to the
    service (tests pass fixed ones). Raises what :func:`open_store` raises, and ConfigError
    when no repository is passed and the configuration names no store.
    """
    owns = repository is None
    store = open_configured_store(config) if repository is None else repository
    chosen_mailer = make_mailer(config) if isinstance(mailer, _FromConfig) else mailer
    factory = mailboxes if mailboxes is not None else mailbox_factory(config.system.limits)
    service = PollingService(
        config, store, chosen_mailer, factory, now=now, random_token=random_token
    )
    return Wiring(config, store, chosen_mailer, factory, service, owns_repository=owns)
