"""A small sample helpdesk: the people, calls, tasks and requests the demo and tests use."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import attrs

from asm_email_rules.model import (
    Call,
    CallStatus,
    Group,
    Person,
    Request,
    Right,
    SecurityRole,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.settings import CallTemplate, MailboxSettings, SystemSettings

DESK_ADDRESS = "helpdesk@desk.example"

ANALYSTS = SecurityRole("Analysts")
"""The analysts' security role: no Take Over, no reopening (the spec's options off)."""
IPK_MANAGERS = SecurityRole("IPK Managers", frozenset({Right.TAKE_OVER}))
"""An analyst role with the IPK Management right Take Over."""
SELF_SERVICE = SecurityRole("Self Service Users")
"""The User security role: may not reopen closed calls until a test grants it."""
ROLES = (ANALYSTS, IPK_MANAGERS, SELF_SERVICE)

DANA = Person(1, "dana@desk.example", "Dana Default", is_analyst=True, analyst_role="Analysts")
ALICE = Person(2, "alice@desk.example", "Alice Analyst", is_analyst=True, analyst_role="Analysts")
UMA = Person(3, "uma@corp.example", "Uma User", is_user=True, user_role="Self Service Users")
BOB = Person(
    4,
    "bob@desk.example",
    "Bob Both",
    is_analyst=True,
    is_user=True,
    analyst_role="Analysts",
    user_role="Self Service Users",
)
TOM = Person(5, "tom@desk.example", "Tom Takeover", is_analyst=True, analyst_role="IPK Managers")
PEOPLE = (DANA, ALICE, UMA, BOB, TOM)

GROUPS = (
    Group("Service Desk", "service-desk@desk.example"),
    Group("Network", "network-team@desk.example"),
)
"""Assignment groups, with the address Email at Update via Email In notifies."""

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
REQUESTS = (
    Request(
        700,
        owner_id=ALICE.id,
        description="Hello team,\n\nNew starter: laptop",
        last_update=_WHEN,
    ),
    Request(
        701,
        owner_id=TOM.id,
        forwarded_ids=(TOM.id,),
        forwarded_by_ids=(ALICE.id,),
        group="Service Desk",
        description="Hi,\nNew starter: desk phone",
        last_update=_WHEN,
    ),
)

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
    """Put the sample roles, groups, people, calls, tasks and requests into ``repository``."""
    for role in ROLES:
        repository.put_role(role)
    for group in GROUPS:
        repository.put_group(group)
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

DEMO_SYSTEM = SystemSettings(truncate_incoming_emails=True, email_at_update_via_email_in=True)
DEMO_NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
"""The demo's fixed clock: the sample desk's mail is dated that morning."""


def demo_inbox() -> list[tuple[str, bytes]]:
    """The demo messages shipped inside the package, by file name."""
    folder = resources.files("asm_email_rules").joinpath("demo_inbox")
    found = [
        (item.name, item.read_bytes()) for item in folder.iterdir() if item.name.endswith(".eml")
    ]
    return sorted(found)
