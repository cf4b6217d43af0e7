"""The in-memory reference repository passes the conformance kit, and the kit catches faults."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import attrs
import pytest

from asm_email_rules.adapters.memory import InMemoryRepository, short_description
from asm_email_rules.errors import RepositoryError, StaleRecordError
from asm_email_rules.model import (
    Attachment,
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    EntryKind,
    Group,
    Lease,
    LogEntry,
    OutboxEntry,
    OutgoingEmail,
    Person,
    ReplyStatus,
    Request,
    SecurityRole,
    SummaryItem,
    SummaryKind,
    Task,
    TaskStatus,
)
from asm_email_rules.protocols import Repository, SeedableRepository
from asm_email_rules.settings import CallTemplate
from asm_email_rules.testing import Check, check_repository, repository_checks

CHECKS = repository_checks()
_K = TypeVar("_K")
_V = TypeVar("_V")


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_conformance(check: Check) -> None:
    check.run(InMemoryRepository())


def test_is_a_seedable_repository() -> None:
    repo = InMemoryRepository()
    assert isinstance(repo, SeedableRepository)
    assert isinstance(repo, Repository)


def test_check_repository_reports_no_failures_for_the_reference() -> None:
    assert check_repository(InMemoryRepository) == []


def test_checks_have_unique_names_and_docs() -> None:
    names = [c.name for c in CHECKS]
    assert len(names) == len(set(names))
    assert all(c.doc for c in CHECKS)
    assert "transaction_rollback_leaves_no_trace" in names


# -- the kit must fail repositories that misbehave ---------------------------------------------
class CaseSensitiveLookup(InMemoryRepository):
    def persons_by_address(self, address: str) -> Sequence[Person]:
        return [p for p in super().persons_by_address(address) if p.email == address]


class NfkcLowerLookup(InMemoryRepository):
    """Compares addresses the way storage.md once said: NFKC, then ``str.lower()``; a domain
    in A-labels is then another address than its Unicode spelling."""

    def persons_by_address(self, address: str) -> Sequence[Person]:
        def key(text: str) -> str:
            return unicodedata.normalize("NFKC", text).strip().lower()

        return [p for p in self.list_persons(limit=10_000) if key(p.email) == key(address)]


class CaseFoldedLookup(InMemoryRepository):
    """Compares case-folded addresses: ``straße`` and ``strasse`` become one person."""

    def persons_by_address(self, address: str) -> Sequence[Person]:
        def key(text: str) -> str:
            return unicodedata.normalize("NFKC", text.casefold()).strip()

        return [p for p in self.list_persons(limit=10_000) if key(p.email) == key(address)]


class BudgetByLowerCase(InMemoryRepository):
    """Counts replies by the address in lower case without its ``+tag``, not by
    ``addresses.mailbox_key``: a domain in A-labels has a budget of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[tuple[str, datetime]] = []

    def record_sent(self, message_id: str, ref: EntityRef | None, to: str, now: datetime) -> None:
        super().record_sent(message_id, ref, to, now)
        self.recipients.append((to, now))

    def replies_sent_since(self, address: str, since: datetime) -> int:
        def key(text: str) -> str:
            local, _, domain = text.lower().rpartition("@")
            return f"{local.partition('+')[0]}@{domain}"

        return sum(1 for to, at in self.recipients if key(to) == key(address) and at >= since)


class PrunesTokensOfUnknownExpiry(InMemoryRepository):
    """Forgets every used token at a prune, those spent by ``use_token`` too."""

    def prune_used_tokens(self, now: datetime) -> int:
        pruned = super().prune_used_tokens(now)
        unknown = list(self._tokens)
        for token in unknown:
            self._delete(self._tokens, token)
        return pruned + len(unknown)


class PrunesThreadedMessageIds(InMemoryRepository):
    """Forgets every Message-ID sent before the moment, those about a call too."""

    def prune_sent_messages(self, before: datetime) -> int:
        doomed = [key for key, sent in self._sent.items() if sent.at < before]
        for key in doomed:
            self._delete(self._sent, key)
        return len(doomed)


class NoRollback(InMemoryRepository):
    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield


class ReusesCallNumbers(InMemoryRepository):
    def create_call(
        self,
        *,
        template: CallTemplate,
        user_id: int | None,
        logging_analyst_id: int | None,
        description: str,
        now: datetime,
    ) -> Call:
        call = Call(number=1, description=description, last_update=now)
        self.put_call(call)
        return call


class OldestFirstSummary(InMemoryRepository):
    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        items, total = super().summary(kind, person_id, 10_000)
        return list(reversed(items))[:limit], total


class ForgetsAttachmentBytes(InMemoryRepository):
    def attachments(self, ref: EntityRef) -> Sequence:  # type: ignore[type-arg]
        return []


class DropsTemplateProperties(InMemoryRepository):
    """Logs a call without the template's call screen set, IPK status and stream."""

    def create_call(
        self,
        *,
        template: CallTemplate,
        user_id: int | None,
        logging_analyst_id: int | None,
        description: str,
        now: datetime,
    ) -> Call:
        plain = attrs.evolve(template, call_screen_set="", ipk_status="", ipk_stream="")
        return super().create_call(
            template=plain,
            user_id=user_id,
            logging_analyst_id=logging_analyst_id,
            description=description,
            now=now,
        )


class ForgetsCallProperties(InMemoryRepository):
    """Stores a put call without its IPK stream and subject (columns the host never added)."""

    def put_call(self, call: Call) -> None:
        super().put_call(attrs.evolve(call, ipk_stream="", subject=""))


class ForgetsWhoForwarded(InMemoryRepository):
    """Keeps whom a request or task was forwarded to, not who forwarded it."""

    def put_request(self, request: Request) -> None:
        super().put_request(attrs.evolve(request, forwarded_by_ids=()))

    def put_task(self, task: Task) -> None:
        super().put_task(attrs.evolve(task, forwarded_by_ids=()))


class SummaryIgnoresForwarders(InMemoryRepository):
    """Keeps who forwarded, but leaves those records out of that person's summary."""

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        items, _ = super().summary(kind, person_id, 10_000)
        kept = []
        for item in items:
            record: Request | Task | None
            record = self.get_request(item.ref.number) if kind == "requests" else None
            record = self.get_task(item.ref.number) if kind == "tasks" else record
            only_forwarder = (
                record is not None
                and person_id in record.forwarded_by_ids
                and record.owner_id != person_id
                and person_id not in record.forwarded_ids
            )
            if not only_forwarder:
                kept.append(item)
        return kept[:limit], len(kept)


class RoleWithoutRights(InMemoryRepository):
    """Stores the role's name and drops its rights."""

    def put_role(self, role: SecurityRole) -> None:
        super().put_role(SecurityRole(role.name))


class ForgetsPersonRoles(InMemoryRepository):
    """Stores a person without the names of their analyst role and user role."""

    def put_person(self, person: Person) -> None:
        super().put_person(attrs.evolve(person, analyst_role=None, user_role=None))


class ForgetsGroupAddress(InMemoryRepository):
    """Stores a group without its notification address."""

    def put_group(self, group: Group) -> None:
        super().put_group(Group(group.name))


class ListCallsIgnoresStatus(InMemoryRepository):
    """Lists every call whatever status was asked for."""

    def list_calls(
        self, *, status: CallStatus | None = None, after: int = 0, limit: int = 100
    ) -> Sequence[Call]:
        return super().list_calls(after=after, limit=limit)


class FirstLineSummary(InMemoryRepository):
    """Summary lines show the first non-blank line ("Hi,") and no subject."""

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        items, total = super().summary(kind, person_id, limit)
        records = {
            "calls": self.get_call,
            "requests": self.get_request,
            "tasks": self.get_task,
        }
        fixed = []
        for item in items:
            record = records[str(kind)](item.ref.number)
            text = record.description if record is not None else ""
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            fixed.append(attrs.evolve(item, description=first[:80]))
        return fixed, total


class ClaimIgnoresOtherSenders(InMemoryRepository):
    """Hands a reply to whoever asks: two pollers would both send it."""

    def claim_reply(
        self, reply_message_id: str, owner: str, now: datetime, until: datetime
    ) -> OutboxEntry | None:
        entry = self.outbox_entry(reply_message_id)
        if entry is None or entry.status is not ReplyStatus.PENDING:
            return None
        entry = attrs.evolve(entry, claimed_by=owner, claimed_until=until)
        self._set_outbox(entry)
        return entry


class FinishWithoutClaim(InMemoryRepository):
    """Records an outcome from a sender that lost its claim (its resend would be recorded twice)."""

    def finish_reply(
        self,
        reply_message_id: str,
        owner: str,
        status: ReplyStatus,
        now: datetime,
        *,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> bool:
        entry = self.outbox_entry(reply_message_id)
        if entry is not None and entry.claimed_by:
            owner = entry.claimed_by
        return super().finish_reply(
            reply_message_id, owner, status, now, error=error, next_attempt_at=next_attempt_at
        )


class DueIncludesClaimed(InMemoryRepository):
    """Lists replies another sender is sending right now as due."""

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        due = self.list_replies([ReplyStatus.PENDING], mailbox=mailbox, limit=10_000)
        found = sorted((e for e in due if e.next_attempt_at <= now), key=lambda e: e.queued_at)
        return found[:limit]


class LeaseAlwaysGranted(InMemoryRepository):
    """Gives an account's lease to every poller that asks."""

    def acquire_lease(self, name: str, owner: str, now: datetime, until: datetime) -> Lease:
        return Lease(name, owner, until)


class ForgetsTheOutbox(InMemoryRepository):
    """Keeps the ledger entry but drops the reply from the outbox (it would never be sent)."""

    def record_processed(
        self,
        mailbox: str,
        message_id: str,
        sha256: str,
        decision_json: str,
        reply: OutgoingEmail | None,
        now: datetime,
    ) -> None:
        super().record_processed(mailbox, message_id, sha256, decision_json, reply, now)
        if reply is not None:
            del self._outbox[reply.message_id.strip("<>")]


class AttachesOutsideTransaction(InMemoryRepository):
    """Writes an attachment's file outside the transaction: after a rolled-back ``attach``
    the log shows nothing, but ``attachments()`` still returns the file."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[EntityRef, list[Attachment]] = {}

    def attach(
        self, ref: EntityRef, attachment: Attachment, security_profile: str, now: datetime
    ) -> None:
        super().attach(ref, attachment, security_profile, now)
        self.files.setdefault(ref, []).append(attachment)

    def attachments(self, ref: EntityRef) -> Sequence[Attachment]:
        return list(self.files.get(ref, []))


class StatusLogOutsideTransaction(InMemoryRepository):
    """Writes a task's status change to its log outside the transaction (an audit table on
    a connection of its own): the status is undone, its log entry is not."""

    def __init__(self) -> None:
        super().__init__()
        self.status_log: dict[EntityRef, list[LogEntry]] = {}

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        super().set_task_status(number, status, by, now)
        ref = EntityRef(EntityKind.TASK, number)
        entry = LogEntry(ref, EntryKind.STATUS, status.value, author=by, at=now)
        self.status_log.setdefault(ref, []).append(entry)

    def entries(self, ref: EntityRef) -> Sequence[LogEntry]:
        kept = [e for e in super().entries(ref) if e.kind is not EntryKind.STATUS]
        return [*kept, *self.status_log.get(ref, [])]


class _CopiesOutsideTransaction(InMemoryRepository):
    """Copies every write to the persons, the calls and the outbox into tables of its own,
    outside the transaction (a search index, a cache, a queue on another connection); each
    subclass serves one read from the copies."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: dict[str, dict[Any, Any]] = {"_persons": {}, "_calls": {}, "_outbox": {}}

    def _set(self, table: dict[_K, _V], key: _K, value: _V) -> None:
        super()._set(table, key, value)
        for name, copy in self.copies.items():
            if table is getattr(self, name):
                copy[key] = value

    @contextmanager
    def _reading_copy(self, name: str) -> Iterator[None]:
        """Read ``name`` (say ``"_calls"``) from its copy while the block runs."""
        real = getattr(self, name)
        setattr(self, name, dict(self.copies[name]))
        try:
            yield
        finally:
            setattr(self, name, real)


class PersonListOutsideTransaction(_CopiesOutsideTransaction):
    """Lists persons from a copy written outside the transaction."""

    def list_persons(self, *, after: int = 0, limit: int = 100) -> Sequence[Person]:
        with self._reading_copy("_persons"):
            return super().list_persons(after=after, limit=limit)


class CallListOutsideTransaction(_CopiesOutsideTransaction):
    """Lists calls from a copy written outside the transaction."""

    def list_calls(
        self, *, status: CallStatus | None = None, after: int = 0, limit: int = 100
    ) -> Sequence[Call]:
        with self._reading_copy("_calls"):
            return super().list_calls(status=status, after=after, limit=limit)


class SummaryOutsideTransaction(_CopiesOutsideTransaction):
    """Builds summaries from a copy of the calls written outside the transaction."""

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        with self._reading_copy("_calls"):
            return super().summary(kind, person_id, limit)


class OutboxQueueOutsideTransaction(_CopiesOutsideTransaction):
    """Lists the outbox from a queue written outside the transaction: a rolled-back reply
    stays listed, and due."""

    def list_replies(
        self,
        statuses: Collection[ReplyStatus] | None = None,
        *,
        mailbox: str | None = None,
        limit: int = 100,
    ) -> Sequence[OutboxEntry]:
        with self._reading_copy("_outbox"):
            return super().list_replies(statuses, mailbox=mailbox, limit=limit)

    def due_replies(
        self, now: datetime, *, mailbox: str | None = None, limit: int = 100
    ) -> Sequence[OutboxEntry]:
        with self._reading_copy("_outbox"):
            return super().due_replies(now, mailbox=mailbox, limit=limit)


PLUS_TWO = timezone(timedelta(hours=2))


def _plus_two(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(PLUS_TWO)


class LocalTimes(InMemoryRepository):
    """Returns the right moments, aware, but at UTC+2 instead of in UTC."""

    def get_call(self, number: int) -> Call | None:
        call = super().get_call(number)
        if call is None:
            return None
        return attrs.evolve(call, last_update=_plus_two(call.last_update))

    def entries(self, ref: EntityRef) -> Sequence[LogEntry]:
        return [attrs.evolve(entry, at=_plus_two(entry.at)) for entry in super().entries(ref)]

    def outbox_entry(self, reply_message_id: str) -> OutboxEntry | None:
        entry = super().outbox_entry(reply_message_id)
        if entry is None:
            return None
        return attrs.evolve(
            entry,
            queued_at=entry.queued_at.astimezone(PLUS_TWO),
            next_attempt_at=entry.next_attempt_at.astimezone(PLUS_TWO),
        )


class RightsInASet(InMemoryRepository):
    """Returns a role's rights as a ``set``, which compares equal to the ``frozenset``."""

    def get_role(self, name: str) -> SecurityRole | None:
        role = super().get_role(name)
        if role is None:
            return None
        return attrs.evolve(role, rights=set(role.rights))  # type: ignore[arg-type]


class ApproversInAList(InMemoryRepository):
    """Returns a task's approvers as a ``list`` (as a database driver's array comes back)."""

    def get_task(self, number: int) -> Task | None:
        task = super().get_task(number)
        if task is None:
            return None
        return attrs.evolve(task, approver_ids=list(task.approver_ids))  # type: ignore[arg-type]


class DecidedApprovalPlainError(InMemoryRepository):
    """Refuses a decided approval with a plain RepositoryError: ``process`` then raises it to
    the caller instead of deciding the losing poller's message again."""

    def set_task_status(self, number: int, status: TaskStatus, by: str, now: datetime) -> None:
        try:
            super().set_task_status(number, status, by, now)
        except StaleRecordError as exc:
            raise RepositoryError(str(exc)) from None


@pytest.mark.parametrize(
    ("broken", "failing", "fault"),
    [
        (
            AttachesOutsideTransaction,
            "transaction_rollback_leaves_no_trace",
            "attachments (their bytes) attached in the rolled-back transaction: expected []",
        ),
        (
            AttachesOutsideTransaction,
            "nested_transaction_joins_outer",
            "attachments (their bytes) attached in the rolled-back transaction",
        ),
        (
            StatusLogOutsideTransaction,
            "transaction_rollback_leaves_no_trace",
            "log entries of the task whose status was set in the rolled-back transaction",
        ),
        (
            PersonListOutsideTransaction,
            "transaction_rollback_leaves_no_trace",
            "list_persons after the rolled-back transaction",
        ),
        (
            CallListOutsideTransaction,
            "transaction_rollback_leaves_no_trace",
            "list_calls after the rolled-back transaction",
        ),
        (
            SummaryOutsideTransaction,
            "transaction_rollback_leaves_no_trace",
            "summary of the owner of the call closed in the rolled-back transaction",
        ),
        (
            OutboxQueueOutsideTransaction,
            "transaction_rollback_leaves_no_trace",
            "list_replies after a reply was queued and rolled back",
        ),
        (LocalTimes, "put_get_round_trip", "aware but not UTC (offset +0200"),
        (LocalTimes, "log_entries_in_order", "history time: 2024-05-01T11:01:00+02:00: aware but"),
        (
            LocalTimes,
            "outbox_holds_the_reply_recorded_with_the_decision",
            "queued and due at: item 0 is 2024-05-01T11:03:00+02:00: aware but not UTC",
        ),
        (
            RightsInASet,
            "security_roles",
            "SecurityRole.rights is a set (",
        ),
        (
            ApproversInAList,
            "put_get_round_trip",
            "Task.approver_ids is a list ([13, 12]), not the tuple",
        ),
        (
            DecidedApprovalPlainError,
            "set_task_status_decides_an_approval_once",
            "rejecting an approved task: expected StaleRecordError, got RepositoryError",
        ),
    ],
)
def test_kit_names_the_fault_of_a_broken_repository(
    broken: type[InMemoryRepository], failing: str, fault: str
) -> None:
    """The integrators' field trial: each of these stores passed the kit. The kit must fail
    it, in the check named, with a message that says what is wrong."""
    failures = dict(check_repository(broken))
    assert failing in failures
    assert fault in failures[failing]


@pytest.mark.parametrize(
    ("broken", "failing"),
    [
        (DropsTemplateProperties, "create_call_takes_the_template_properties"),
        (ForgetsCallProperties, "call_properties_round_trip"),
        (ForgetsCallProperties, "put_get_round_trip"),
        (ForgetsWhoForwarded, "forwarded_by"),
        (SummaryIgnoresForwarders, "forwarded_by"),
        (RoleWithoutRights, "security_roles"),
        (ForgetsPersonRoles, "security_roles"),
        (ForgetsGroupAddress, "groups"),
        (ListCallsIgnoresStatus, "list_persons_and_calls"),
        (FirstLineSummary, "summary_lines_say_something"),
        (ForgetsAttachmentBytes, "attachments_kept_exactly"),
        (ClaimIgnoresOtherSenders, "claim_reply_keeps_other_senders_out"),
        (FinishWithoutClaim, "finish_reply"),
        (DueIncludesClaimed, "due_replies"),
        (LeaseAlwaysGranted, "leases"),
        (ForgetsTheOutbox, "outbox_holds_the_reply_recorded_with_the_decision"),
        (CaseSensitiveLookup, "persons_by_address_case_insensitive"),
        (NfkcLowerLookup, "persons_by_address_compares_in_normalise_address_form"),
        (CaseFoldedLookup, "persons_by_address_compares_in_normalise_address_form"),
        (BudgetByLowerCase, "reply_budget_compares_addresses_like_persons_by_address"),
        (PrunesTokensOfUnknownExpiry, "used_tokens_with_an_expiry_are_pruned"),
        (PrunesThreadedMessageIds, "sent_messages_about_no_record_are_pruned"),
        (NoRollback, "transaction_rollback_leaves_no_trace"),
        (NoRollback, "nested_transaction_joins_outer"),
        (ReusesCallNumbers, "create_call"),
        (OldestFirstSummary, "summary_calls"),
        (ForgetsAttachmentBytes, "log_entries_in_order"),
    ],
)
def test_kit_catches_a_broken_repository(broken: type[InMemoryRepository], failing: str) -> None:
    failures = dict(check_repository(broken))
    assert failing in failures
    assert failures[failing]  # a message a host developer can act on


def test_kit_reports_unexpected_exceptions_with_their_type() -> None:
    class Exploding(InMemoryRepository):
        def is_token_used(self, token_id: str) -> bool:
            raise KeyError(token_id)

    failures = dict(check_repository(Exploding))
    assert failures["tokens"].startswith("raised KeyError")


def test_testing_module_imports_without_pytest() -> None:
    code = (
        "import sys; sys.modules['pytest'] = None; "
        "import asm_email_rules.testing as t; t.repository_checks()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


# -- reference specifics ----------------------------------------------------------------------
def test_datetimes_come_back_in_utc() -> None:
    repo = InMemoryRepository()
    local = datetime(2024, 5, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    repo.put_call(Call(number=1, last_update=local))
    repo.put_call(Call(number=2, last_update=datetime(2024, 5, 1, 9, 0)))  # naive: taken as UTC
    first, second = repo.get_call(1), repo.get_call(2)
    assert first is not None
    assert first.last_update is not None
    assert first.last_update.tzinfo is UTC
    assert first.last_update == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    assert second is not None
    assert second.last_update == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def test_message_ids_match_with_or_without_angle_brackets() -> None:
    repo = InMemoryRepository()
    ref = EntityRef(EntityKind.CALL, 3)
    repo.record_sent("<asm.call-3.x@example.com>", ref, "a@example.com", datetime.now(UTC))
    assert repo.entity_for_message_id("asm.call-3.x@example.com") == ref
    assert repo.entity_for_message_id(" <asm.call-3.x@example.com> ") == ref


def test_addresses_match_after_nfkc() -> None:
    repo = InMemoryRepository()
    repo.put_person(Person(id=1, email="ann@example.com"))
    assert [p.id for p in repo.persons_by_address("ＡＮＮ@example.com")] == [1]


def test_summary_kinds_are_one_enum_and_the_plain_strings_still_work() -> None:
    """A host calling summary("calls") as before gets what SummaryKind.CALLS gets."""
    repo = InMemoryRepository()
    repo.put_person(Person(id=1, email="ann@example.com", is_analyst=True))
    repo.put_call(Call(7, owner_id=1))
    for kind in SummaryKind:
        assert repo.summary(kind.value, 1, 10) == repo.summary(kind, 1, 10)  # type: ignore[arg-type]
    assert [item.ref for item in repo.summary(SummaryKind.CALLS, 1, 10)[0]] == [
        EntityRef(EntityKind.CALL, 7)
    ]


def test_unknown_summary_kind_is_refused() -> None:
    with pytest.raises(RepositoryError, match="unknown summary kind"):
        InMemoryRepository().summary("approvals?", 1, 10)  # type: ignore[arg-type]


def test_inner_exception_caught_by_caller_undoes_the_inner_writes_alone() -> None:
    repo = InMemoryRepository()
    with repo.transaction():
        repo.put_person(Person(id=1, email="a@example.com"))

        def inner() -> None:
            with repo.transaction():
                repo.put_person(Person(id=2, email="b@example.com"))
                repo.put_person(Person(id=1, email="changed@example.com"))
                raise ValueError("inner")

        with pytest.raises(ValueError, match="inner"):
            inner()
        repo.put_person(Person(id=3, email="c@example.com"))
    assert [p.email for p in map(repo.get_person, (1, 3)) if p] == [
        "a@example.com",
        "c@example.com",
    ]
    assert repo.get_person(2) is None  # a savepoint: undone alone, the outer unit kept


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("Printer jammed\nsecond line", "Printer jammed"),
        ("\n\n  padded  \nnext", "padded"),
        ("", ""),
        ("y" * 200, "y" * 80),
        ("Hi,\n\nThe VPN drops.", "The VPN drops."),
    ],
)
def test_short_description(description: str, expected: str) -> None:
    assert short_description(description) == expected


def test_short_description_puts_the_subject_first() -> None:
    assert short_description("Hello,\nIt jams.", "Printer") == "Printer - It jams."


def test_rollback_restores_one_record_among_many() -> None:
    repo = InMemoryRepository()
    for n in range(1, 5_001):
        repo.put_call(Call(number=n))

    def failing_unit_of_work() -> None:
        with repo.transaction():
            repo.put_call(Call(number=5, description="changed"))
            repo.put_call(Call(number=5, description="changed twice"))
            repo.put_call(Call(number=6_000))
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError, match="abandon"):
        failing_unit_of_work()
    assert repo.get_call(5) == Call(number=5)
    assert repo.get_call(6_000) is None
    repo.put_call(Call(number=7, description="after"))  # no transaction left open
    assert repo.get_call(7) == Call(number=7, description="after")
