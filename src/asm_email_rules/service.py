"""The polling service: read every active account, run each message through the rules, dispose.

Per message: fetch, hash, :func:`~asm_email_rules.pipeline.process` (parse, decide, apply and
record in one transaction, send the reply), then delete, keep (transient reply failure) or
quarantine it. The ledger (mailbox + Message-ID + SHA-256) makes a crash anywhere in between
harmless: the next poll acknowledges the message without acting twice. A message that cannot be
parsed or processed is quarantined with its error and remembered in the ledger, so a mailbox
that cannot move mail (POP3) skips it from then on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import attrs

from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import MailboxError, MessageParseError, NotFoundError, RepositoryError
from asm_email_rules.model import ReplyStatus
from asm_email_rules.pipeline import Disposition, process
from asm_email_rules.protocols import Mailbox, Mailer, Repository

if TYPE_CHECKING:
    from asm_email_rules.adapters.oauth import OAuth2Login

__all__ = [
    "AccountReport",
    "MailboxFactory",
    "PollReport",
    "PollingService",
    "make_mailer",
    "open_mailbox",
]

log = logging.getLogger("asm_email_rules.service")

MailboxFactory = Callable[[AccountConfig], Mailbox]
"""Opens the mailbox of an account (a fresh session each call)."""

_MAX_MAILBOX_ERRORS = 3
"""Consecutive mailbox failures after which a session is abandoned until the next interval."""


@attrs.frozen
class AccountReport:
    """What one poll of one account did.

    ``processed``: acted on for the first time; ``duplicates``: already in the ledger (a crash
    or retry), acknowledged without acting again; ``retried``: kept because the reply hit a
    transient failure; ``quarantined``: set aside; ``errors``: mailbox or store failures.
    """

    account: str
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    quarantined: int = 0
    errors: int = 0
    sessions: int = 0
    skipped: bool = False
    last_error: str = ""


@attrs.frozen
class PollReport:
    """One :meth:`PollingService.poll_once`: a report per configured account, in order."""

    accounts: tuple[AccountReport, ...]

    def __getitem__(self, name: str) -> AccountReport:
        for report in self.accounts:
            if report.account == name:
                return report
        raise KeyError(name)

    def total(self, field: str) -> int:
        """The sum of one counter (``processed``, ``errors``, ...) over all accounts."""
        return sum(int(getattr(report, field)) for report in self.accounts)


@attrs.define
class _Counts:
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    quarantined: int = 0
    errors: int = 0
    sessions: int = 0
    last_error: str = ""

    def freeze(self, account: str) -> AccountReport:
        return AccountReport(account, **attrs.asdict(self))


class _StoreUnavailableError(Exception):
    """The store failed in a way that is not this message's fault: stop and retry later."""


def _is_quarantine_record(decision_json: str) -> bool:
    try:
        data = json.loads(decision_json)
    except ValueError:
        return False
    return isinstance(data, dict) and "quarantined" in data


class PollingService:
    """Polls the configured accounts; one instance per store and mailer.

    ``now`` and ``random_token`` are injected so tests are deterministic. With ``mailer`` None
    the replies are recorded in the store as pending and not sent.
    """

    def __init__(
        self,
        config: Config,
        repository: Repository,
        mailer: Mailer | None,
        mailbox_factory: MailboxFactory,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_token: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.config = config
        self.repository = repository
        self.mailer = mailer
        self.mailbox_factory = mailbox_factory
        self.now = now
        self.random_token = random_token
        self._store_failures: dict[tuple[str, str], int] = {}

    # -- one message ------------------------------------------------------------------------

    def _quarantine(
        self, account: AccountConfig, mailbox: Mailbox, key: str, sha: str, reason: str
    ) -> None:
        """Remember the message in the ledger (so it is never retried), then move it aside."""
        self._store_failures.pop((account.name, sha), None)
        try:
            if self.repository.ledger_entry(account.mailbox.name, "", sha) is None:
                self.repository.record_processed(
                    account.mailbox.name,
                    "",
                    sha,
                    json.dumps({"quarantined": reason}),
                    None,
                    self.now(),
                )
        except RepositoryError:
            log.exception(
                "could not record a quarantined message in the ledger",
                extra={"account": account.name, "sha256": sha},
            )
        mailbox.quarantine(key, reason)

    def _handle(self, account: AccountConfig, mailbox: Mailbox, key: str, counts: _Counts) -> None:
        """Fetch, process and dispose of one message; raises only MailboxError or store outage."""
        started = time.monotonic()
        raw = mailbox.fetch(key)
        sha = hashlib.sha256(raw).hexdigest()
        fields: dict[str, object] = {
            "account": account.name,
            "mailbox_key": key,
            "sha256": sha,
            "message_id": "",
            "rule": "",
            "outcome": "",
            "reply_status": "",
            "disposition": "",
        }
        known = self.repository.ledger_entry(account.mailbox.name, "", sha)
        if known is not None and _is_quarantine_record(known.decision_json):
            reason = json.loads(known.decision_json)["quarantined"]
            mailbox.quarantine(key, f"quarantined before: {reason}")
            counts.quarantined += 1
            fields.update(outcome="quarantined before", disposition="quarantine")
            self._log(fields, started, logging.DEBUG)
            return
        try:
            result = process(
                raw,
                self.repository,
                self.mailer,
                account.mailbox,
                self.config.system,
                self.now(),
                random_token=self.random_token,
            )
        except MessageParseError as exc:
            self._quarantine(account, mailbox, key, sha, f"cannot parse: {exc}")
            counts.quarantined += 1
            fields.update(outcome="unparseable", disposition="quarantine", error=str(exc))
            self._log(fields, started, logging.WARNING)
            return
        except RepositoryError as exc:
            if isinstance(exc, NotFoundError) or self._store_failed(account, sha):
                self._quarantine(account, mailbox, key, sha, f"processing failed: {exc}")
                counts.quarantined += 1
                fields.update(outcome="failed", disposition="quarantine", error=str(exc))
                self._log(fields, started, logging.ERROR)
                return
            raise _StoreUnavailableError(str(exc)) from exc
        except Exception as exc:  # one bad message must never stop the others
            log.exception(
                "processing a message failed", extra={"account": account.name, "sha256": sha}
            )
            reason = f"processing failed: {type(exc).__name__}: {exc}"
            self._quarantine(account, mailbox, key, sha, reason)
            counts.quarantined += 1
            fields.update(outcome="failed", disposition="quarantine", error=reason)
            self._log(fields, started, logging.ERROR)
            return
        self._store_failures.pop((account.name, sha), None)
        message_id = result.email.message_id or ""
        fields.update(
            message_id=message_id,
            rule=result.decision.rule if result.decision else "",
            outcome=result.decision.outcome.value if result.decision else "duplicate",
            reply_status=result.reply_status.value,
            disposition=result.disposition.value,
        )
        if result.duplicate:
            counts.duplicates += 1
        else:
            counts.processed += 1
        if result.disposition is Disposition.DELETE:
            mailbox.delete(key)
        elif result.disposition is Disposition.RETRY:
            counts.retried += 1
        else:
            entry = self.repository.ledger_entry(account.mailbox.name, message_id, sha)
            detail = entry.last_error if entry is not None else "reply could not be sent"
            mailbox.quarantine(key, f"reply not sent: {detail}")
            counts.quarantined += 1
        troubled = result.reply_status is ReplyStatus.FAILED
        troubled = troubled or result.disposition is not Disposition.DELETE
        self._log(fields, started, logging.WARNING if troubled else logging.INFO)

    def _store_failed(self, account: AccountConfig, sha: str) -> bool:
        """Count a store failure for this message; True once it has failed too often."""
        key = (account.name, sha)
        self._store_failures[key] = self._store_failures.get(key, 0) + 1
        return self._store_failures[key] >= self.config.system.max_send_attempts

    def _log(self, fields: dict[str, object], started: float, level: int) -> None:
        fields["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        log.log(level, "message handled", extra=fields)

    # -- one account ------------------------------------------------------------------------

    def poll_account(
        self, account: AccountConfig, stop: threading.Event | None = None
    ) -> AccountReport:
        """Poll one account until its mailbox is empty (in sessions of at most
        ``max_messages_per_session``), or until ``stop`` is set; never raises."""
        if not account.active:
            return AccountReport(account.name, skipped=True)
        counts = _Counts()
        seen: set[str] = set()
        while stop is None or not stop.is_set():
            try:
                more = self._session(account, seen, counts, stop)
            except (MailboxError, RepositoryError, _StoreUnavailableError, OSError) as exc:
                counts.errors += 1
                counts.last_error = str(exc)
                log.error(
                    "account poll failed; retrying next interval: %s",
                    exc,
                    extra={"account": account.name, "error": str(exc)},
                )
                break
            if not more:
                break
        return counts.freeze(account.name)

    def _session(
        self,
        account: AccountConfig,
        seen: set[str],
        counts: _Counts,
        stop: threading.Event | None,
    ) -> bool:
        """One connection: handle up to the session limit; True if messages are left over."""
        mailbox = self.mailbox_factory(account)
        counts.sessions += 1
        failures = 0
        handled = 0
        left_over = False
        try:
            for key in mailbox.list_ids():
                if key in seen:
                    continue
                if stop is not None and stop.is_set():
                    break
                if handled >= account.max_messages_per_session:
                    left_over = True
                    break
                seen.add(key)
                handled += 1
                try:
                    self._handle(account, mailbox, key, counts)
                    failures = 0
                except MailboxError as exc:
                    failures += 1
                    counts.errors += 1
                    counts.last_error = str(exc)
                    log.warning(
                        "mailbox operation failed: %s",
                        exc,
                        extra={"account": account.name, "mailbox_key": key, "error": str(exc)},
                    )
                    if failures >= _MAX_MAILBOX_ERRORS:
                        raise
        finally:
            try:
                mailbox.close()
            except MailboxError as exc:
                counts.errors += 1
                counts.last_error = str(exc)
                log.error(
                    "closing the mailbox failed: %s",
                    exc,
                    extra={"account": account.name, "error": str(exc)},
                )
        return left_over

    # -- all accounts -----------------------------------------------------------------------

    def poll_once(self, stop: threading.Event | None = None) -> PollReport:
        """Poll every account once (inactive ones are reported as skipped)."""
        reports = []
        for account in self.config.accounts:
            if stop is not None and stop.is_set():
                break
            reports.append(self.poll_account(account, stop))
        return PollReport(tuple(reports))

    def run(self, stop: threading.Event) -> None:
        """Poll each active account on its own interval until ``stop`` is set.

        The message in hand is finished before stopping; an account that fails is retried at
        its next interval.
        """
        active = [account for account in self.config.accounts if account.active]
        if not active:
            log.warning("no active accounts: nothing to poll")
            return
        due = {account.name: time.monotonic() for account in active}
        log.info("polling service started", extra={"accounts": [a.name for a in active]})
        while not stop.is_set():
            for account in active:
                if stop.is_set():
                    break
                if time.monotonic() < due[account.name]:
                    continue
                try:
                    report = self.poll_account(account, stop)
                except Exception:  # a bug must not end the service; the account is retried
                    log.exception("account poll crashed", extra={"account": account.name})
                else:
                    log.info("account polled", extra=attrs.asdict(report))
                due[account.name] = time.monotonic() + account.interval_seconds
            stop.wait(max(0.0, min(due.values()) - time.monotonic()))
        log.info("polling service stopped")


# --------------------------------------------------------------------------------------------
# real adapters from the configuration
# --------------------------------------------------------------------------------------------


class _AdapterFactory:
    """Opens the configured adapter for an account; remembers POP3 skip lists between sessions."""

    def __init__(self) -> None:
        self._pop3_skip: dict[str, frozenset[str]] = {}
        self._pop3_open: dict[str, object] = {}
        self._logins: dict[str, OAuth2Login] = {}

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

    def __call__(self, account: AccountConfig) -> Mailbox:
        if account.protocol is MailProtocol.MAILDIR:
            from asm_email_rules.adapters.maildir import MaildirMailbox

            assert account.path is not None
            return MaildirMailbox(account.path, quarantine_folder=account.quarantine_folder)
        if account.protocol is MailProtocol.IMAP:
            from asm_email_rules.adapters.imap import ImapConfig, ImapMailbox

            return ImapMailbox(
                ImapConfig(
                    host=account.host,
                    port=account.port,
                    security=account.security,
                    username=account.username,
                    password=account.password,
                    oauth2=self._oauth2(account),
                    folder=account.folder,
                    quarantine_folder=account.quarantine_folder,
                    timeout=account.timeout,
                    ssl_context=account.ssl_context,
                )
            )
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
            ),
            skip_ids=self._pop3_skip.get(account.name, frozenset()),
        )
        self._pop3_open[account.name] = mailbox
        return mailbox


def open_mailbox() -> MailboxFactory:
    """A mailbox factory for the real adapters (IMAP, POP3, Maildir) the accounts name."""
    return _AdapterFactory()


def make_mailer(config: Config) -> Mailer | None:
    """The SMTP mailer of the configuration, or None when it has no [smtp] section."""
    if config.smtp is None:
        return None
    from asm_email_rules.adapters.smtp import SmtpMailer

    return SmtpMailer(config.smtp)
