"""Spec (issue 12): call template properties, "have forwarded", Email at Update via Email In,
contacts, security roles, the words of command mails, summary lines that say something."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import attrs
import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.applying import notification_key
from asm_email_rules.ledger_key import ledger_key
from asm_email_rules.model import (
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    EntryKind,
    Group,
    Person,
    ReplyStatus,
    Right,
    SecurityRole,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.outgoing import render_outgoing
from asm_email_rules.pipeline import process
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.sample import (
    ALICE,
    BOB,
    DESK_ADDRESS,
    TOM,
    UMA,
    sample_mailbox,
    seed_sample_desk,
)
from asm_email_rules.send import Disposition
from asm_email_rules.settings import SystemSettings

from .conftest import NOW, Desk, make_raw


# -- the call template --------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeedableRepository]:
    """Both shipped repositories, seeded with the sample desk."""
    repository: SeedableRepository
    if request.param == "memory":
        repository = InMemoryRepository()
    else:
        repository = SqliteRepository(tmp_path / "desk.sqlite3")
    seed_sample_desk(repository)
    yield repository
    if isinstance(repository, SqliteRepository):
        repository.close()


def test_a_logged_call_has_the_template_properties(store: SeedableRepository) -> None:
    """ "The call will use the call template specified for the mail server that picked up the
    incoming email. The call template will determine the call properties such as the
    partition, call screen set, IPK status and stream, assigned analyst and group" """
    mailbox = sample_mailbox()
    raw = make_raw("Projector is dead", sender=UMA.email, body="Room 4 projector is dead.")
    result = process(raw, store, None, mailbox, SystemSettings(), NOW)
    assert result.new_call_number is not None
    call = store.get_call(result.new_call_number)
    assert call is not None
    template = mailbox.call_template
    assert (
        (call.partition, call.call_screen_set, call.ipk_status, call.ipk_stream)
        == (
            template.partition,
            template.call_screen_set,
            template.ipk_status,
            template.ipk_stream,
        )
        == ("Default", "Standard", "Incident", "Service Desk")
    )
    assert (call.owner_id, call.group) == (ALICE.id, "Service Desk")
    assert call.subject == ""  # "The other fields are left blank"


# -- have forwarded -----------------------------------------------------------------------------
def test_my_requests_lists_a_request_the_analyst_forwarded(desk: Desk) -> None:
    """ "A return email is sent to that support analyst with a summary of all the requests they
    are working on, have forwarded, or have been forwarded." Request 701 is Tom's; Alice
    forwarded it to him: both see it."""
    desk.mail("[MyRequests]", sender=ALICE.email)
    desk.mail("[MyRequests]", sender=TOM.email)
    alices, toms = desk.replies
    assert "[REQUEST#700]" in alices.body  # working on
    assert "[REQUEST#701]" in alices.body  # have forwarded
    assert "[REQUEST#701]" in toms.body  # have been forwarded


def test_my_tasks_lists_a_task_the_analyst_forwarded(desk: Desk) -> None:
    """ "A return email is sent to that support analyst with a summary of all the tasks and
    approvals they are working on, have forwarded, or have been forwarded." """
    desk.repo.put_task(
        Task(
            510,
            TaskKind.TASK,
            TaskStatus.OPEN,
            owner_id=BOB.id,
            forwarded_ids=(BOB.id,),
            forwarded_by_ids=(TOM.id,),
            description="Cable the new desk",
        )
    )
    desk.mail("[MyTasks]", sender=TOM.email)
    (reply,) = desk.replies
    assert "[TASK#510]  open  Cable the new desk" in reply.body


# -- Email at Update via Email In ---------------------------------------------------------------
def test_an_update_emails_the_assigned_analyst(desk: Desk) -> None:
    """ "To have email notifications sent to the assigned analyst or group when a call is
    updated by incoming email, ensure that the Email at Update via Email In option is
    selected": the email goes to call 100's analyst, from the reply catalogue, from our
    address, with our loop header (so it can never come back in as a new message)."""
    desk.set_system(email_at_update_via_email_in=True)
    decision = desk.mail("[CALL#100] more", body="Still jamming on tray 2.")
    (notification,) = desk.replies  # auto-reply is off: no reply to Uma, only the notification
    assert notification.to == ALICE.email
    assert notification.subject == "Call 100 has been updated by email [CALL#100]"
    assert "Uma User <uma@corp.example> has updated call 100 (open) by email" in notification.body
    assert "Still jamming on tray 2." in notification.body
    assert notification.sender == DESK_ADDRESS
    assert notification.message_id.startswith("<asm.call-100.")
    assert (desk.system.loop_header, desk.mailbox.name) in notification.extra_headers
    wire = message_from_bytes(render_outgoing(notification, now=NOW), policy=default_policy)
    assert wire[desk.system.loop_header] == desk.mailbox.name
    assert wire["In-Reply-To"] is None  # Alice never saw Uma's mail
    assert decision.notifications[0].to == ALICE.email
    (entry,) = desk.texts(EntityKind.CALL, 100, EntryKind.NOTIFICATION)
    assert entry == (
        "Call 100 was updated by email: email to the analyst Alice Analyst <alice@desk.example>"
    )


def test_no_email_without_the_option(desk: Desk) -> None:
    """Same sentence: without Email at Update via Email In nobody is notified."""
    desk.mail("[CALL#100] more")
    assert desk.replies == []
    assert desk.texts(EntityKind.CALL, 100, EntryKind.NOTIFICATION) == []


def test_a_call_with_only_a_group_emails_the_groups_address(desk: Desk) -> None:
    """Same sentence, "or group": a call assigned to a group only goes to the group's address
    as the store has it."""
    desk.set_system(email_at_update_via_email_in=True)
    desk.repo.put_call(Call(120, user_id=UMA.id, group="Network", description="Switch"))
    desk.mail("[CALL#120] still down")
    (notification,) = desk.replies
    assert notification.to == "network-team@desk.example"


def test_a_group_without_an_address_is_recorded_not_emailed(desk: Desk) -> None:
    """A group the store has no address for cannot be emailed: the notification is recorded
    on the call and the decision says why."""
    desk.set_system(email_at_update_via_email_in=True)
    desk.repo.put_group(Group("Network"))
    desk.repo.put_call(Call(120, user_id=UMA.id, group="Network", description="Switch"))
    decision = desk.mail("[CALL#120] still down")
    assert desk.replies == []
    assert "the group 'Network' has no address in the store" in decision.reasons
    (entry,) = desk.texts(EntityKind.CALL, 120, EntryKind.NOTIFICATION)
    assert "no email to the group Network" in entry


def test_an_owner_who_is_no_analyst_is_not_emailed_the_notification(desk: Desk) -> None:
    """Same sentence, "the assigned analyst": a call whose owner id names a customer (a call
    template's assigned analyst set to one in settings built in code) does not mail that
    customer what an analyst wrote on it."""
    desk.set_system(email_at_update_via_email_in=True)
    desk.repo.put_call(Call(121, user_id=BOB.id, owner_id=UMA.id, description="Printer"))
    desk.mail("[CALL#121] I replaced the toner", sender=BOB.email)
    assert UMA.email not in [mail.to for mail in desk.replies]


def test_the_analyst_who_sent_the_update_is_not_notified(desk: Desk) -> None:
    """Telling Alice about her own mail helps nobody."""
    desk.set_system(email_at_update_via_email_in=True)
    decision = desk.mail("[CALL#100] I replaced the roller", sender=ALICE.email)
    assert desk.replies == []
    assert "the assigned analyst sent this update: no notification" in decision.reasons


def test_a_group_that_sent_the_update_is_not_emailed_its_own_words(desk: Desk) -> None:
    """ "To have email notifications sent to the assigned analyst or group when a call is
    updated by incoming email": the update came from the group's own address (a team's shared
    mailbox answering on the call), so emailing that address its own words helps nobody; the
    notification is recorded on the call and the decision says why (docs/operators.md:
    "nobody is emailed about their own update")."""
    desk.set(update_calls_anonymously=True)
    desk.set_system(email_at_update_via_email_in=True)
    desk.repo.put_call(Call(120, user_id=UMA.id, group="Network", description="Switch"))
    decision = desk.mail("[CALL#120] port replaced", sender="Network-Team@desk.example")
    assert decision.rule == "UC-4"
    assert desk.replies == []
    assert any("sent this update" in reason for reason in decision.reasons)
    (entry,) = desk.texts(EntityKind.CALL, 120, EntryKind.NOTIFICATION)
    assert "no email to the group Network" in entry


def test_a_closed_call_note_and_a_reopen_notify_too(desk: Desk) -> None:
    """Same sentence: a note on a closed call ("a note is added to the call with the details of
    the email") and a reopen are updates by incoming email; a reopen notifies whoever the
    call is assigned to afterwards."""
    desk.set_system(email_at_update_via_email_in=True)
    desk.set(update_closed_calls=True)
    desk.mail("Re: Call 101", body="VPN again")
    reply, note = desk.replies  # the spec's reply to Uma, then the notification
    assert reply.to == UMA.email
    assert (note.to, note.subject) == (ALICE.email, "Call 101 has been updated by email [CALL#101]")
    assert "(closed)" in note.body
    desk.set(reopen_closed_calls=True)
    desk.set_system(self_service_reopen_closed_calls=True)
    desk.repo.put_role(SecurityRole("Self Service Users", frozenset({Right.REOPEN_CLOSED_CALLS})))
    desk.mail("Re: Call 101", body="VPN still broken, please reopen")
    reopened = desk.replies[-1]
    assert reopened.subject == "Call 101 has been reopened by email [CALL#101]"
    assert reopened.to == ALICE.email


def test_a_reopen_notification_gives_the_status_the_call_now_has(desk: Desk) -> None:
    """ "To have email notifications sent to the assigned analyst or group when a call is
    updated by incoming email": the notification's ``$status`` (docs/integrators.md: `open`,
    `closed`) is the call's status after the update, so a reopen's says open, not closed."""
    desk.set_system(email_at_update_via_email_in=True, self_service_reopen_closed_calls=True)
    desk.set(
        reopen_closed_calls=True,
        reply_templates={"call_reopened_notification.body": "Call $number is now $status."},
    )
    desk.repo.put_role(SecurityRole("Self Service Users", frozenset({Right.REOPEN_CLOSED_CALLS})))
    desk.mail("Re: Call 101", body="VPN still broken, please reopen")
    assert desk.call(101).status is CallStatus.OPEN
    notification = desk.replies[-1]
    assert notification.to == ALICE.email
    assert "Call 101 is now open." in notification.body


def test_the_notification_goes_through_the_outbox_like_a_reply(desk: Desk) -> None:
    """DESIGN 4 "Replies are an outbox": the notification is stored with the decision, in the
    same transaction, and sent afterwards; a temporary failure keeps it in the outbox (not the
    message in the mailbox) for a retry by time, and the retry sends it once."""
    desk.set_system(email_at_update_via_email_in=True)
    desk.mailer.fail_with = 451
    raw = make_raw("[CALL#100] more", sender=UMA.email, message_id="<n1@corp.example>")
    first = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert first.notification_statuses == (ReplyStatus.PENDING,)
    assert first.disposition is Disposition.DELETE  # the outbox keeps the notification
    key = notification_key(ledger_key(first.email)[1], 0)
    stored = desk.repo.ledger_entry(desk.mailbox.name, "<n1@corp.example>", key)
    assert stored is not None
    assert stored.reply is not None
    assert stored.reply.to == ALICE.email
    assert desk.repo.outbox_entry(stored.reply.message_id) is not None  # in the outbox
    desk.mailer.fail_with = None
    later = NOW + timedelta(minutes=1)  # the first retry is due a minute after the failure
    again = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, later)
    assert again.duplicate  # the update is not applied twice ...
    assert again.notification_statuses == (ReplyStatus.SENT,)  # ... and the email goes out
    assert again.disposition is Disposition.DELETE
    assert [mail.to for mail in desk.replies] == [ALICE.email]
    assert len(desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)) == 1
    third = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, later)
    assert third.notification_statuses == (ReplyStatus.SENT,)
    assert len(desk.replies) == 1  # sent once


# -- a contact logs a call ----------------------------------------------------------------------
def test_a_contact_who_logs_a_call_becomes_its_user(desk: Desk) -> None:
    """ "If an email is sent from an address which does not correspond to any existing ASM Core
    User or analyst, and Create New Calls Anonymously is selected ..., a new User record is
    created (that is, a new person record flagged as a User)" -- DESIGN 4b: a person with
    neither flag who logs a call is that call's User; the existing record gets the User flag;
    no second person with the same address is created."""
    desk.set(create_calls_anonymously=True)
    contact = Person(40, "Carla@Supplier.example", "Carla Contact")
    desk.repo.put_person(contact)
    decision = desk.mail("Invoice portal down", sender="carla@supplier.example")
    assert decision.rule == "LOG-2a"
    assert decision.action_kinds() == ("set_user_flag", "log_call")
    assert desk.newest_call().user_id == contact.id
    assert [p.id for p in desk.repo.persons_by_address("carla@supplier.example")] == [40]
    assert desk.repo.get_person(40) == attrs.evolve(contact, is_user=True)
    again = desk.mail("And the VPN", sender="carla@supplier.example")
    assert again.rule == "LOG-6"  # now a User


def test_a_contact_without_anonymous_creation_logs_nothing(desk: Desk) -> None:
    """ "If the Create New Calls Anonymously option is not selected for the incoming email
    account, a call is not created." A contact is not a User, so this holds for it too."""
    desk.repo.put_person(Person(40, "carla@supplier.example", "Carla Contact"))
    decision = desk.mail("Invoice portal down", sender="carla@supplier.example")
    assert decision.rule == "LOG-3"
    assert desk.repo.get_person(40) == Person(40, "carla@supplier.example", "Carla Contact")


# -- security roles -----------------------------------------------------------------------------
def test_take_over_is_a_right_of_the_analysts_security_role(desk: Desk) -> None:
    """ "If the sender is a ASM Core analyst, the call will be closed if they own the call or
    have Take Over rights as part of their IPK Management security role." Tom's role has Take
    Over; once the role loses it, Tom is refused like anyone else."""
    assert desk.mail("[CLOSE#102]", sender=TOM.email).rule == "CL-11"
    desk.repo.put_call(Call(102, user_id=BOB.id, owner_id=BOB.id, group="Network"))
    desk.repo.put_role(SecurityRole("IPK Managers"))
    assert desk.mail("[CLOSE#102]", sender=TOM.email, body="again").rule == "CL-12"
    assert desk.call(102).status is CallStatus.OPEN


def test_take_over_in_a_user_role_gives_an_analyst_nothing(desk: Desk) -> None:
    """Same sentence: the right counts in the analyst's role, the one they act in as analyst."""
    desk.repo.put_role(SecurityRole("Self Service Users", frozenset({Right.TAKE_OVER})))
    desk.repo.put_person(attrs.evolve(ALICE, is_user=True, user_role="Self Service Users"))
    assert desk.mail("[CLOSE#102]", sender=ALICE.email).rule == "CL-12"


def test_reopen_needs_the_right_on_the_user_security_role(desk: Desk) -> None:
    """ "You must also have reopen closed calls enabled on the Analysts security role and the
    User security role." Uma acts as a User: her user role must grant it."""
    desk.set(reopen_closed_calls=True)
    desk.set_system(self_service_reopen_closed_calls=True)
    assert desk.mail("Re: Call 101", body="still broken").rule == "UC-11"
    desk.repo.put_role(SecurityRole("Self Service Users", frozenset({Right.REOPEN_CLOSED_CALLS})))
    assert desk.mail("Re: Call 101", body="still broken, please").rule == "UC-9"
    assert desk.call(101).status is CallStatus.OPEN


def test_reopen_needs_the_right_on_the_analysts_security_role(desk: Desk) -> None:
    """Same sentence, for an analyst: the Analysts role must grant it."""
    desk.set(reopen_closed_calls=True)
    desk.set_system(self_service_reopen_closed_calls=True)
    desk.repo.put_role(SecurityRole("Self Service Users", frozenset({Right.REOPEN_CLOSED_CALLS})))
    assert desk.mail("Re: Call 101", sender=ALICE.email).rule == "UC-11"  # her role: Analysts
    desk.repo.put_role(SecurityRole("Analysts", frozenset({Right.REOPEN_CLOSED_CALLS})))
    assert desk.mail("Re: Call 101", sender=ALICE.email, body="reopen it").rule == "UC-9"


def test_the_old_per_person_grants_still_work(desk: Desk) -> None:
    """Hosts that set ``can_take_over`` / ``user_can_reopen`` on the person keep working: each
    adds its right to the role the person acts in."""
    desk.repo.put_person(attrs.evolve(ALICE, can_take_over=True))
    assert desk.mail("[CLOSE#102]", sender=ALICE.email).rule == "CL-11"


# -- the words of a command mail ----------------------------------------------------------------
def test_a_rejection_keeps_its_reason(desk: Desk) -> None:
    """ "Rejecting an Approval Task with Email" -- issue 12: "[REJECT#501] Wrong cost centre."
    must leave its words on the task's history when the rejection succeeds."""
    desk.mail("[REJECT#501] Wrong cost centre.", sender=UMA.email, body="")
    assert desk.task(501).status is TaskStatus.REJECTED
    (text,) = desk.texts(EntityKind.TASK, 501, EntryKind.HISTORY)
    assert text == "Wrong cost centre."


def test_a_close_keeps_the_reply_portion_of_its_body(desk: Desk) -> None:
    """ "The call you specified will be closed" -- and its words go on the call's history; with
    Truncate Incoming Emails, "only the reply portion of the email is added to the history"."""
    desk.set_system(truncate_incoming_emails=True)
    body = (
        "the problem is solved, it was the cable\n\n"
        "On Thu, 26 Nov 2026, Service Desk <helpdesk@desk.example> wrote:\n"
        "> ##- Please type your reply above this line -##\n"
        "> Call 100 has been updated.\n"
    )
    desk.mail("AW: [CLOSE#100]", sender=UMA.email, body=body)
    assert desk.call(100).status is CallStatus.CLOSED
    entries = desk.entries(EntityKind.CALL, 100)
    history = [e.text for e in entries if e.kind is EntryKind.HISTORY]
    assert history == ["the problem is solved, it was the cable"]
    kinds = [e.kind for e in entries]
    assert kinds.index(EntryKind.HISTORY) < kinds.index(EntryKind.STATUS)  # before "closed"


def test_an_approval_keeps_its_words_and_a_refusal_writes_nothing(desk: Desk) -> None:
    """ "If a task has been successfully approved through incoming email" its words go on the
    task; a command that is refused changes nothing, history included."""
    desk.mail("[APPROVE#500] ok for Q4", sender=ALICE.email, body="Budget confirmed.")
    (text,) = desk.texts(EntityKind.TASK, 500, EntryKind.HISTORY)
    assert text == "ok for Q4\n\nBudget confirmed."
    desk.mail("[CLOSE#102] done", sender=UMA.email, body="closing")
    assert desk.entries(EntityKind.CALL, 102) == []


def test_a_close_or_approval_keeps_its_attachments(desk: Desk) -> None:
    """ "If there are any attachments to the email, they are attached to the call as objects"
    and "Any objects attached to an incoming email will use the Unspecified security profile":
    a close, approval or rejection that succeeds keeps its words on the record, so it keeps
    its files too (they were dropped without a word); a refused command attaches nothing."""
    desk.mail("[CLOSE#100] fixed", sender=UMA.email, attachments=[("cable.jpg", b"\xff\xd8")])
    assert desk.call(100).status is CallStatus.CLOSED
    (attached,) = desk.repo.attachments(EntityRef(EntityKind.CALL, 100))
    assert attached.filename == "cable.jpg"
    (entry,) = desk.texts(EntityKind.CALL, 100, EntryKind.ATTACHMENT)
    assert entry == "cable.jpg"
    assert [
        e.security_profile
        for e in desk.entries(EntityKind.CALL, 100)
        if e.kind is EntryKind.ATTACHMENT
    ] == ["Unspecified"]

    desk.mail("[REJECT#501]", sender=UMA.email, body="", attachments=[("quote.pdf", b"%PDF")])
    assert desk.task(501).status is TaskStatus.REJECTED
    assert [a.filename for a in desk.repo.attachments(EntityRef(EntityKind.TASK, 501))] == [
        "quote.pdf"
    ]

    desk.mail("[APPROVE#500]", sender=UMA.email, attachments=[("x.pdf", b"%PDF")])
    assert desk.task(500).status is TaskStatus.PENDING
    assert desk.repo.attachments(EntityRef(EntityKind.TASK, 500)) == []


# -- summary lines ------------------------------------------------------------------------------
def test_summary_lines_show_the_first_line_that_says_something(desk: Desk) -> None:
    """DESIGN 4: "one line per item (reference, state, short description, last update, assignee
    or group)" -- the short description skips greetings and blank lines, and a call's subject
    comes first when the host stores one."""
    desk.repo.put_call(
        Call(130, owner_id=ALICE.id, description="Hello,\n\nThe scanner on floor 3 is offline.")
    )
    desk.repo.put_call(
        Call(131, owner_id=ALICE.id, subject="Scanner", description="Hi team,\nStill offline.")
    )
    desk.mail("[MyCalls]", sender=ALICE.email)
    (reply,) = desk.replies
    assert "[CALL#130]  open  The scanner on floor 3 is offline." in reply.body
    assert "[CALL#131]  open  Scanner - Still offline." in reply.body
    assert "Hello," not in reply.body
