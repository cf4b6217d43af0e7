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
import logging
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import attrs

from asm_email_rules.actions import Discard
from asm_email_rules.backoff import Backoff, BackoffPolicy, Change
from asm_email_rules.config import AccountConfig, Config
from asm_email_rules.decision import Outcome
from asm_email_rules.errors import MailboxError, MessageParseError, NotFoundError, RepositoryError
from asm_email_rules.model import ReplyStatus
from asm_email_rules.pipeline import Disposition, ProcessResult, process
from asm_email_rules.protocols import Mailbox, Mailer, Repository
from asm_email_rules.quarantine import quarantine_reason, set_aside

__all__ = ["AccountReport", "MailboxFactory", "PollReport", "PollingService"]

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
    Among the processed: ``discarded`` by a rule (nothing acted, no reply), and
    ``suppressed``, whose reply the reply budget, the loop guard or the age limit held back.
    """

    account: str
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    quarantined: int = 0
    errors: int = 0
    discarded: int = 0
    suppressed: int = 0
    sessions: int = 0
    skipped: bool = False
    last_error: str = ""
    mailbox_failed: bool = False


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
    discarded: int = 0
    suppressed: int = 0
    sessions: int = 0
    last_error: str = ""
    mailbox_failed: bool = False

    def freeze(self, account: str) -> AccountReport:
        return AccountReport(account, **attrs.asdict(self))


def _list_keys(mailbox: Mailbox) -> Iterator[str]:
    """``mailbox.list_keys()``; a host mailbox written before the rename may only have
    ``list_ids``: it still works, with a DeprecationWarning."""
    if not hasattr(mailbox, "list_keys") and hasattr(mailbox, "list_ids"):
        warnings.warn(
            f"{type(mailbox).__name__}.list_ids() is deprecated: name it list_keys() "
            "(the Mailbox protocol's methods take mailbox keys, not Message-IDs)",
            DeprecationWarning,
            stacklevel=2,
        )
        keys: Iterator[str] = mailbox.list_ids()
        return keys
    return mailbox.list_keys()


def _log_fields(account: AccountConfig, key: str, sha256: str) -> dict[str, object]:
    """The fields of the per-message log line, in their fixed order, before any is known."""
    return {
        "account": account.name,
        "mailbox_key": key,
        "sha256": sha256,
        "message_id": "",
        "rule": "",
        "outcome": "",
        "reply_status": "",
        "disposition": "",
    }


@attrs.define
class _InHand:
    """The message being handled: where it is, its content hash, the counters, the log line."""

    account: AccountConfig
    mailbox: Mailbox
    key: str
    sha256: str
    raw: bytes
    counts: _Counts
    started: float
    fields: dict[str, object] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.fields = _log_fields(self.account, self.key, self.sha256)


class _StoreUnavailableError(Exception):
    """The store failed in a way that is not this message's fault: stop and retry later."""


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
        self._backoff: dict[str, Backoff] = {}

    # -- one message ------------------------------------------------------------------------

    def _handle(self, account: AccountConfig, mailbox: Mailbox, key: str, counts: _Counts) -> None:
        """Fetch, process and dispose of one message; raises only MailboxError or store outage."""
        started = time.monotonic()
        raw = mailbox.fetch(key)
        sha256 = hashlib.sha256(raw).hexdigest()
        message = _InHand(account, mailbox, key, sha256, raw, counts, started)
        if self._quarantined_before(message):
            return
        result = self._process(message, raw)
        if result is not None:
            self._dispose(message, result)

    def _quarantined_before(self, message: _InHand) -> bool:
        """Set aside again, without processing, a message the ledger says was quarantined."""
        reason = quarantine_reason(self.repository, message.account.mailbox.name, message.sha256)
        if reason is None:
            return False
        message.mailbox.quarantine(message.key, f"quarantined before: {reason}")
        message.counts.quarantined += 1
        message.fields.update(outcome="quarantined before", disposition="quarantine")
        self._log(message, logging.DEBUG)
        return True

    def _process(self, message: _InHand, raw: bytes) -> ProcessResult | None:
        """Run the rules; a failure that is the message's fault quarantines it (None returned).

        A store failure that is not (locked, read-only, full) raises _StoreUnavailableError so
        the account backs off, until the same message has failed ``max_send_attempts`` times.
        """
        try:
            return process(
                raw,
                self.repository,
                self.mailer,
                message.account.mailbox,
                self.config.system,
                self.now(),
                random_token=self.random_token,
            )
        except MessageParseError as exc:
            reason = f"cannot parse: {exc}"
            self._set_aside(message, reason, "unparseable", str(exc), logging.WARNING)
        except RepositoryError as exc:
            if not isinstance(exc, NotFoundError) and not self._store_failed(message):
                raise _StoreUnavailableError(str(exc)) from exc
            reason = f"processing failed: {exc}"
            self._set_aside(message, reason, "failed", str(exc), logging.ERROR)
        except Exception as exc:  # one bad message must never stop the others
            log.exception(
                "processing a message failed",
                extra={"account": message.account.name, "sha256": message.sha256},
            )
            reason = f"processing failed: {type(exc).__name__}: {exc}"
            self._set_aside(message, reason, "failed", reason, logging.ERROR)
        return None

    def _set_aside(
        self, message: _InHand, reason: str, outcome: str, error: str, level: int
    ) -> None:
        """Quarantine a message that could not be processed, count it and log why."""
        self._quarantine(message, reason)
        message.counts.quarantined += 1
        message.fields.update(outcome=outcome, disposition="quarantine", error=error)
        self._log(message, level)

    def _quarantine(self, message: _InHand, reason: str) -> None:
        """Remember the message in the ledger (so it is never retried) and keep a copy in the
        store's quarantine, then move it aside in the mailbox."""
        account, sha = message.account, message.sha256
        self._store_failures.pop((account.name, sha), None)
        try:
            set_aside(
                self.repository,
                account.mailbox.name,
                message.raw,
                reason,
                self.now(),
                source=account.protocol.value,
                mailbox_key=message.key,
            )
        except RepositoryError:
            log.exception(
                "could not record a quarantined message in the store",
                extra={"account": account.name, "sha256": sha},
            )
        message.mailbox.quarantine(message.key, reason)

    def _dispose(self, message: _InHand, result: ProcessResult) -> None:
        """Delete, keep (retry) or quarantine a processed message, as its result says."""
        account, counts = message.account, message.counts
        self._store_failures.pop((account.name, message.sha256), None)
        message_id = result.email.message_id or ""
        message.fields.update(
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
        noteworthy = self._note_discard_or_suppression(message, result)
        if result.disposition is Disposition.DELETE:
            message.mailbox.delete(message.key)
        elif result.disposition is Disposition.RETRY:
            counts.retried += 1
        else:
            entry = self.repository.ledger_entry(account.mailbox.name, message_id, message.sha256)
            detail = entry.last_error if entry is not None else "reply could not be sent"
            self._quarantine(message, f"reply not sent: {detail}")
            counts.quarantined += 1
        troubled = result.reply_status is ReplyStatus.FAILED or noteworthy
        troubled = troubled or result.disposition is not Disposition.DELETE
        self._log(message, logging.WARNING if troubled else logging.INFO)

    @staticmethod
    def _note_discard_or_suppression(message: _InHand, result: ProcessResult) -> bool:
        """Count a discard or a held-back reply and put its reason in the log line; True when
        there was one (the line is then a WARNING: the sender gets nothing and should not)."""
        decision = result.decision
        if decision is None:
            return False
        noteworthy = False
        if decision.outcome is Outcome.DISCARD:
            message.counts.discarded += 1
            why = [a.reason for a in decision.actions if isinstance(a, Discard)]
            message.fields["discarded"] = "; ".join([*why, *decision.reasons[-1:]])
            noteworthy = True
        if decision.reply_suppressed:
            message.counts.suppressed += 1
            message.fields["reply_suppressed"] = decision.reply_suppressed
            noteworthy = True
        return noteworthy

    def _store_failed(self, message: _InHand) -> bool:
        """Count a store failure for this message; True once it has failed too often."""
        key = (message.account.name, message.sha256)
        self._store_failures[key] = self._store_failures.get(key, 0) + 1
        return self._store_failures[key] >= self.config.system.max_send_attempts

    def _log(self, message: _InHand, level: int) -> None:
        """The one structured line per message handled (its fields: see _InHand)."""
        message.fields["elapsed_ms"] = round((time.monotonic() - message.started) * 1000, 1)
        log.log(level, "message handled", extra=message.fields)

    # -- one account ------------------------------------------------------------------------

    def poll_account(
        self,
        account: AccountConfig,
        stop: threading.Event | None = None,
        *,
        log_failure: bool = True,
    ) -> AccountReport:
        """Poll one account until its mailbox is empty (in sessions of at most
        ``max_messages_per_session``), or until ``stop`` is set; never raises.

        A mailbox that cannot be reached or signed in to ends the poll with
        ``mailbox_failed`` set in the report. The failure is logged at ERROR unless
        ``log_failure`` is False (:meth:`run` logs changes of state instead).
        """
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
                counts.mailbox_failed = isinstance(exc, MailboxError | OSError)
                if log_failure:
                    log.error(
                        "account poll failed: %s",
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
            for key in _list_keys(mailbox):
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

        The message in hand is finished before stopping. An account whose mailbox cannot be
        reached or signed in to backs off: its next attempt waits its interval, then twice
        that, and so on up to an hour (:mod:`asm_email_rules.backoff`), so a wrong password
        does not lock the account; one log line says when it starts failing, fails
        differently or persistently, and when it recovers. :attr:`persistently_failing`
        names the accounts still failing when it stops.
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
                due[account.name] = time.monotonic() + account.interval_seconds
                try:
                    report = self.poll_account(account, stop, log_failure=False)
                except Exception:  # a bug must not end the service; the account is retried
                    log.exception("account poll crashed", extra={"account": account.name})
                    continue
                log.info("account polled", extra=attrs.asdict(report))
                retry_at = self._note_mailbox_state(account, report)
                if retry_at is not None:
                    due[account.name] = retry_at
            stop.wait(max(0.0, min(due.values()) - time.monotonic()))
        log.info("polling service stopped")

    @property
    def persistently_failing(self) -> tuple[str, ...]:
        """Accounts whose mailbox has failed persistently (3 times running) and not yet
        recovered: the command line exits non-zero when the service stops with any."""
        return tuple(name for name, state in self._backoff.items() if state.persistent)

    def _note_mailbox_state(self, account: AccountConfig, report: AccountReport) -> float | None:
        """Update the account's back-off; log a change of state; the next attempt's time when
        it is backing off (None: at its interval)."""
        state = self._backoff.get(account.name) or Backoff(_policy_for(account))
        now = time.monotonic()
        if report.mailbox_failed:
            state, change = state.failure(now, report.last_error)
        else:
            state, change = state.success()
        self._backoff[account.name] = state
        fields = {
            "account": account.name,
            "failures": state.failures,
            "error": state.last_error,
        }
        if change is Change.RECOVERED:
            log.warning("account recovered: its mailbox answers again", extra=fields)
        elif change is not None:
            log.error(
                "account %s; next attempt in %ds: %s",
                change.value,
                round(state.delay),
                state.last_error,
                extra={**fields, "retry_in_s": round(state.delay)},
            )
        return state.retry_at if state.failing else None


def _policy_for(account: AccountConfig) -> BackoffPolicy:
    """An account waits its interval after the first failure, doubling up to an hour (or its
    interval, when that is longer)."""
    interval = account.interval_seconds
    return BackoffPolicy(initial=interval, cap=max(interval, 3600.0))


# --------------------------------------------------------------------------------------------
# deprecated names: the wiring moved to asm_email_rules.bootstrap
# --------------------------------------------------------------------------------------------

_MOVED_TO_BOOTSTRAP = {"make_mailer": "make_mailer", "open_mailbox": "mailbox_factory"}


def __getattr__(name: str) -> object:
    """``make_mailer`` and ``open_mailbox`` still work here, with a DeprecationWarning.

    They build adapters from the configuration, which is the composition root's job; use
    :func:`asm_email_rules.bootstrap.make_mailer` and
    :func:`asm_email_rules.bootstrap.mailbox_factory`.
    """
    target = _MOVED_TO_BOOTSTRAP.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"asm_email_rules.service.{name} is deprecated; use asm_email_rules.bootstrap.{target}",
        DeprecationWarning,
        stacklevel=2,
    )
    from asm_email_rules import bootstrap  # deferred: bootstrap imports this module

    return getattr(bootstrap, target)
