"""Spec: "Closing a Call with Email" and "Reopening a Closed Call with Email"."""

from __future__ import annotations

import attrs

from asm_email_rules.model import Call, CallStatus, EntityKind, EntryKind
from asm_email_rules.sample import ALICE, BOB, TOM, UMA
from asm_email_rules.settings import ReopenAssignment

from .conftest import Desk


def test_user_only_closes_own_call_and_gets_confirmation(desk: Desk) -> None:
    """ "If the sender is flagged as a User only, the call will only be closed if the same User
    is specified in the User field of the call." / "The call you specified will be closed and a
    return email will be sent to you to confirm the closure." """
    decision = desk.mail("[CLOSE#100]", sender=UMA.email)
    assert decision.rule == "CL-9"
    assert desk.call(100).status is CallStatus.CLOSED
    (reply,) = desk.replies
    assert reply.subject == "Call 100 has been closed [CALL#100]"
    assert reply.to == UMA.email


def test_user_only_cannot_close_someone_elses_call(desk: Desk) -> None:
    """Same sentence: a User who is not the call's User does not close it (and is told why)."""
    decision = desk.mail("[CLOSE#102]", sender=UMA.email)
    assert decision.rule == "CL-12"
    assert desk.call(102).status is CallStatus.OPEN
    (reply,) = desk.replies
    assert "Reason: Insufficient Permission" in reply.body


def test_analyst_owner_closes(desk: Desk) -> None:
    """ "If the sender is a ASM Core analyst, the call will be closed if they own the call" """
    assert desk.mail("[CLOSE#100]", sender=ALICE.email).rule == "CL-10"
    assert desk.call(100).status is CallStatus.CLOSED


def test_analyst_with_take_over_closes(desk: Desk) -> None:
    """ "... or have Take Over rights as part of their IPK Management security role." """
    assert desk.mail("[CLOSE#100]", sender=TOM.email).rule == "CL-11"
    assert desk.call(100).status is CallStatus.CLOSED


def test_analyst_without_rights_gets_insufficient_permission(desk: Desk) -> None:
    """ "Otherwise, a return email with the following message will be sent: "Reason:
    Insufficient Permission"." """
    decision = desk.mail("[CLOSE#102]", sender=ALICE.email)
    assert decision.rule == "CL-12"
    assert desk.call(102).status is CallStatus.OPEN
    (reply,) = desk.replies
    assert reply.body.strip().endswith("Reason: Insufficient Permission")
    assert reply.to == ALICE.email


def test_person_with_both_flags_closes_as_the_calls_user(desk: Desk) -> None:
    """DESIGN 4b: a person with both flags holds both rights; Bob is call 102's User and owner."""
    assert desk.mail("[CLOSE#102]", sender=BOB.email).rule == "CL-9"


def test_unknown_sender_cannot_close_without_close_anonymously(desk: Desk) -> None:
    """ "If the Close Calls Anonymously option is not selected in the incoming email account, a
    call cannot be closed by an email sent from an unrecognized address" """
    decision = desk.mail("[CLOSE#100]", sender="stranger@else.example")
    assert decision.rule == "CL-5"
    assert desk.call(100).status is CallStatus.OPEN
    assert desk.replies == []


def test_unknown_sender_closes_with_close_anonymously(desk: Desk) -> None:
    """The converse: with Close Calls Anonymously selected the unrecognised sender closes it."""
    desk.set(close_calls_anonymously=True)
    assert desk.mail("[CLOSE#100]", sender="stranger@else.example").rule == "CL-8"
    assert desk.call(100).status is CallStatus.CLOSED


def test_close_already_closed_call(desk: Desk) -> None:
    """ "It must be a valid open call number." A closed call: a reply, no new call (DESIGN 4)."""
    decision = desk.mail("[CLOSE#101]", sender=ALICE.email)
    assert decision.rule == "CL-7"
    assert desk.repo.get_call(103) is None
    (reply,) = desk.replies
    assert "already closed" in reply.body


def test_close_unknown_call_follows_the_invalid_number_option(desk: Desk) -> None:
    """ "A call will also be logged if the email matches a recognized subject line but has an
    invalid call number and the Log New Call on Invalid Number option is selected" """
    assert desk.mail("[CLOSE#999]", sender=ALICE.email).rule == "CL-2"
    assert desk.repo.get_call(103) is None
    desk.set(log_new_call_on_invalid_number=True)
    assert desk.mail("[CLOSE#998]", sender=ALICE.email).rules == ("CL-1", "LOG-5")
    assert desk.repo.get_call(103) is not None


def _reopen_ready(desk: Desk) -> None:
    desk.set(reopen_closed_calls=True, update_closed_calls=True)
    desk.set_system(self_service_reopen_closed_calls=True)
    uma = desk.repo.get_person(UMA.id)
    assert uma is not None
    import attrs

    desk.repo.put_person(attrs.evolve(uma, user_can_reopen=True))


def test_reopen_when_every_condition_holds(desk: Desk) -> None:
    """ "If you send an email with the call number in the subject line, in a recognized format,
    the specified call is closed, and the Reopen Closed Calls option is selected on the incoming
    email server, this will reopen the call in ASM Core and add the details of the email as a
    note to the call." """
    _reopen_ready(desk)
    decision = desk.mail("[CALL#101] it is back", body="VPN drops again")
    assert decision.rule == "UC-9"
    call = desk.call(101)
    assert call.status is CallStatus.OPEN
    assert call.owner_id == ALICE.id
    assert desk.texts(EntityKind.CALL, 101, EntryKind.NOTE) == ["VPN drops again\n"]
    assert desk.replies[0].subject == "Call 101 has been reopened [CALL#101]"


def test_reopen_needs_the_role_right(desk: Desk) -> None:
    """ "You must also have reopen closed calls enabled on the Analysts security role and the
    User security role." Without it, Update Closed Calls applies instead."""
    _reopen_ready(desk)
    decision = desk.mail("[CALL#101]", sender=ALICE.email)
    assert decision.rule == "UC-10"
    assert desk.call(101).status is CallStatus.CLOSED


def test_reopen_needs_the_self_service_setting(desk: Desk) -> None:
    """ "The Self Service Portal must also have Reopen Closed Calls enabled in the Self Service
    Portal Administrative settings." """
    _reopen_ready(desk)
    desk.set_system(self_service_reopen_closed_calls=False)
    assert desk.mail("[CALL#101]").rule == "UC-10"
    assert desk.call(101).status is CallStatus.CLOSED


def test_reopen_needs_the_mailbox_option(desk: Desk) -> None:
    """ "... and the Reopen Closed Calls option is selected on the incoming email server" """
    _reopen_ready(desk)
    desk.set(reopen_closed_calls=False, update_closed_calls=False)
    assert desk.mail("[CALL#101]").rule == "UC-11"
    assert desk.call(101).status is CallStatus.CLOSED


def test_reopen_assignment_follows_the_email_setting(desk: Desk) -> None:
    """ "The analyst or group assigned to the call depends on the setting chosen in the Email
    Settings." """
    _reopen_ready(desk)
    desk.set_system(reopen_assignment=ReopenAssignment.GROUP)
    desk.mail("[CALL#101]")
    call = desk.call(101)
    assert (call.owner_id, call.group) == (None, "Service Desk")


def test_a_reopened_call_is_never_left_with_nobody_assigned(desk: Desk) -> None:
    """ "The analyst or group assigned to the call depends on the setting chosen in the Email
    Settings." A setting that names nobody for this call (its group, when it has none; the
    template's, when the template has neither) keeps the analyst it had, says why, and the
    notification reaches that analyst instead of nobody."""
    _reopen_ready(desk)
    desk.set_system(reopen_assignment=ReopenAssignment.GROUP, email_at_update_via_email_in=True)
    desk.repo.put_call(Call(104, CallStatus.CLOSED, user_id=UMA.id, owner_id=ALICE.id))
    decision = desk.mail("[CALL#104] it is back", body="Still broken")
    assert decision.rule == "UC-9"
    call = desk.call(104)
    assert call.status is CallStatus.OPEN
    assert (call.owner_id, call.group) == (ALICE.id, "")
    assert any("names nobody for this call" in reason for reason in decision.reasons)
    assert [n.to for n in decision.notifications] == [ALICE.email]

    empty = attrs.evolve(desk.mailbox.call_template, assigned_analyst_id=None, assigned_group="")
    desk.set(call_template=empty)
    desk.set_system(reopen_assignment=ReopenAssignment.TEMPLATE)
    desk.repo.put_call(
        Call(105, CallStatus.CLOSED, user_id=UMA.id, owner_id=BOB.id, group="Network")
    )
    desk.mail("[CALL#105] again")
    call = desk.call(105)
    assert (call.status, call.owner_id, call.group) == (CallStatus.OPEN, BOB.id, "Network")
