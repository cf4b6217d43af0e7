"""A small sample helpdesk: the people, calls, tasks and requests the demo and tests use."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import attrs

from asm_email_rules.model import (
    Call,
    CallStatus,
    Person,
    Request,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.settings import CallTemplate, MailboxSettings, SystemSettings

DESK_ADDRESS = "helpdesk@desk.example"

DANA = Person(1, "dana@desk.example", "Dana Default", is_analyst=True)
ALICE = Person(2, "alice@desk.example", "Alice Analyst", is_analyst=True)
UMA = Person(3, "uma@corp.example", "Uma User", is_user=True)
BOB = Person(4, "bob@desk.example", "Bob Both", is_analyst=True, is_user=True)
TOM = Person(5, "tom@desk.example", "Tom Takeover", is_analyst=True, can_take_over=True)
PEOPLE = (DANA, ALICE, UMA, BOB, TOM)

_WHEN = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

CALLS = (
    Call(
        100,
        user_id=UMA.id,
        owner_id=ALICE.id,
        group="Service Desk",
        description="Printer on floor 2 jams",
        last_update=_WHEN,
    ),
    Call(
        101,
        CallStatus.CLOSED,
        user_id=UMA.id,
        owner_id=ALICE.id,
        group="Service Desk",
        description="VPN drops every hour",
        last_update=_WHEN,
    ),
    Call(
        102,
        user_id=BOB.id,
        owner_id=BOB.id,
        group="Network",
        description="Switch port 14 dead",
        last_update=_WHEN,
    ),
)
TASKS = (
    Task(
        500,
        TaskKind.APPROVAL,
        TaskStatus.PENDING,
        request_number=700,
        approver_ids=(ALICE.id,),
        description="Approve laptop purchase",
        last_update=_WHEN,
    ),
    Task(
        501,
        TaskKind.USER_APPROVAL,
        TaskStatus.PENDING,
        request_number=700,
        approver_ids=(UMA.id,),
        description="Confirm delivery address",
        last_update=_WHEN,
    ),
    Task(
        502,
        TaskKind.TASK,
        TaskStatus.OPEN,
        request_number=700,
        owner_id=ALICE.id,
        description="Image the laptop",
        last_update=_WHEN,
    ),
    Task(
        503,
        TaskKind.APPROVAL,
        TaskStatus.APPROVED,
        request_number=700,
        approver_ids=(ALICE.id,),
        description="Approve budget",
        last_update=_WHEN,
    ),
)
REQUESTS = (Request(700, owner_id=ALICE.id, description="New starter: laptop", last_update=_WHEN),)

TEMPLATE = CallTemplate(
    name="Email call",
    partition="Default",
    call_screen_set="Standard",
    ipk_status="Incident",
    ipk_stream="Service Desk",
    assigned_analyst_id=ALICE.id,
    assigned_group="Service Desk",
)


def sample_mailbox(**options: Any) -> MailboxSettings:
    """The sample mailbox: our address, the template and Dana as Default Logging Analyst."""
    base = MailboxSettings(
        name="helpdesk",
        addresses=(DESK_ADDRESS,),
        call_template=TEMPLATE,
        default_logging_analyst_id=DANA.id,
    )
    return attrs.evolve(base, **options)


def seed_sample_desk(repository: SeedableRepository) -> None:
    """Put the sample people, calls, tasks and requests into ``repository``."""
    for person in PEOPLE:
        repository.put_person(person)
    for call in CALLS:
        repository.put_call(call)
    for task in TASKS:
        repository.put_task(task)
    for request in REQUESTS:
        repository.put_request(request)


DEMO_MAILBOX_OPTIONS: dict[str, bool] = {
    "auto_reply": True,
    "create_calls_anonymously": True,
    "update_closed_calls": True,
    "log_new_call_on_invalid_number": True,
}
"""The sample mailbox options the demo (and ``explain`` without a config) switch on."""

DEMO_SYSTEM = SystemSettings(truncate_incoming_emails=True)
DEMO_NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
"""The demo's fixed clock: the sample desk's mail is dated that morning."""


def demo_inbox() -> list[tuple[str, bytes]]:
    """The demo messages shipped inside the package, by file name."""
    folder = resources.files("asm_email_rules").joinpath("demo_inbox")
    found = [
        (item.name, item.read_bytes()) for item in folder.iterdir() if item.name.endswith(".eml")
    ]
    return sorted(found)
