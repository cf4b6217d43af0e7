"""A host with its own data model asks the rules what a message means through a RuleReader.

`explain` and `gather_facts` only read: the people, the record a subject names, summaries,
our sent Message-IDs, the reply budget and spent tokens (protocols.RuleReader). A host that
keeps its calls in its own tables implements those eleven reads, none of the writes, the
outbox or the ledger, and `mypy --strict` accepts it (this module is checked so in CI).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage

from asm_email_rules import Repository, RuleReader, explain
from asm_email_rules.actions import CloseCall
from asm_email_rules.addresses import normalise_address
from asm_email_rules.model import (
    Call,
    EntityRef,
    Group,
    Person,
    Request,
    SecurityRole,
    SummaryItem,
    SummaryKind,
    Task,
)
from asm_email_rules.sample import CALLS, GROUPS, PEOPLE, ROLES, UMA, sample_mailbox
from asm_email_rules.settings import SystemSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class HostTables:
    """The host's own records, read-only: what the rules may look at and nothing more."""

    def __init__(self) -> None:
        self.people = {person.id: person for person in PEOPLE}
        self.calls = {call.number: call for call in CALLS}

    def persons_by_address(self, address: str) -> Sequence[Person]:
        wanted = normalise_address(address)
        return [p for p in self.people.values() if normalise_address(p.email) == wanted]

    def get_person(self, person_id: int) -> Person | None:
        return self.people.get(person_id)

    def get_role(self, name: str) -> SecurityRole | None:
        return next((role for role in ROLES if role.name == name), None)

    def get_group(self, name: str) -> Group | None:
        return next((group for group in GROUPS if group.name == name), None)

    def get_call(self, number: int) -> Call | None:
        return self.calls.get(number)

    def get_task(self, number: int) -> Task | None:
        return None

    def get_request(self, number: int) -> Request | None:
        return None

    def summary(
        self, kind: SummaryKind, person_id: int, limit: int
    ) -> tuple[list[SummaryItem], int]:
        return [], 0

    def entity_for_message_id(self, message_id: str) -> EntityRef | None:
        return None

    def replies_sent_since(self, address: str, since: datetime) -> int:
        return 0

    def is_token_used(self, token_id: str) -> bool:
        return False


def _raw(subject: str, sender: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "helpdesk@desk.example"
    message["Subject"] = subject
    message["Date"] = "Fri, 27 Nov 2026 11:00:00 +0000"
    message["Message-ID"] = "<host-1@corp.example>"
    message.set_content("Fixed on my side, thanks.")
    return message.as_bytes()


def test_explain_runs_on_a_host_that_implements_only_the_reads_of_the_rules() -> None:
    tables = HostTables()
    assert isinstance(tables, RuleReader)
    assert not isinstance(tables, Repository)  # no writes, outbox or ledger

    decision = explain(
        _raw("[CLOSE#100]", UMA.email), tables, sample_mailbox(), SystemSettings(), NOW
    )

    assert [action for action in decision.actions if isinstance(action, CloseCall)] == [
        CloseCall(100, "Uma User <uma@corp.example>")
    ]
    assert decision.reply is not None
    assert "100" in decision.reply.subject
