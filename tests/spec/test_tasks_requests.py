"""Spec: approving, rejecting and updating tasks, and updating requests."""

from __future__ import annotations

import pytest

from asm_email_rules.model import EntityKind, EntryKind, TaskStatus
from asm_email_rules.sample import ALICE, BOB, UMA

from .conftest import Desk


def test_approve_standard_approval(desk: Desk) -> None:
    """ "If a task has been successfully approved through incoming email, a return email with
    the subject "Task <Task Number> has been successfully approved" is sent" """
    decision = desk.mail("[APPROVE#500]", sender=ALICE.email)
    assert decision.rule == "AP-11"
    assert desk.task(500).status is TaskStatus.APPROVED
    (reply,) = desk.replies
    assert reply.subject == "Task 500 has been successfully approved [TASK#500]"


def test_approve_user_approval_task(desk: Desk) -> None:
    """ "This includes standard Approval Tasks as well as User Approval Tasks." """
    assert desk.mail("Re: [APPROVE#501]", sender=UMA.email).rule == "AP-11"
    assert desk.task(501).status is TaskStatus.APPROVED


def test_reject_approval(desk: Desk) -> None:
    """ "If an Approval task has been successfully rejected through incoming email, a return
    email with the subject "Task <Approval Task Number> has been successfully rejected" is
    sent." """
    desk.mail("[REJECT#500]", sender=ALICE.email)
    assert desk.task(500).status is TaskStatus.REJECTED
    assert desk.replies[0].subject == "Task 500 has been successfully rejected [TASK#500]"


def test_unknown_sender_cannot_approve_and_is_told(desk: Desk) -> None:
    """ "If the email address is not recognized, the Approval Task is not approved and a return
    email is sent, stating that the sender has not been identified." """
    decision = desk.mail("[APPROVE#500]", sender="stranger@else.example")
    assert decision.rule == "AP-4"
    assert desk.task(500).status is TaskStatus.PENDING
    (reply,) = desk.replies
    assert "sender of this email has not been identified" in reply.body
    assert reply.to == "stranger@else.example"


def test_unknown_sender_reject_also_told(desk: Desk) -> None:
    """DESIGN 4b: unknown senders get the same reply for reject as for approve."""
    assert desk.mail("[REJECT#500]", sender="stranger@else.example").rule == "AP-4"
    assert "has not been rejected" in desk.replies[0].subject


@pytest.mark.parametrize("subject", ["[APPROVE#999]", "[REJECT#999]"])
def test_an_unknown_sender_with_an_invalid_approval_number_logs_a_call(
    desk: Desk, subject: str
) -> None:
    """Spec, Logging a Call: "If the email matches a recognized subject line but has an
    invalid request or task number, a call is always logged". "The Approval Task is not
    approved ... the sender has not been identified" is about an Approval Task that exists;
    task 999 does not, so the stranger's mail logs a call (Case 1, with Create New Calls
    Anonymously), as [TASK#999] and [REQUEST#999] from them do."""
    desk.set(create_calls_anonymously=True)
    decision = desk.mail(subject, sender="carol@outside.example")
    assert decision.rules[0] == "AP-1"
    assert decision.action_kinds()[:2] == ("create_user", "log_call"), decision.explain()
    assert all("not been identified" not in reply.body for reply in desk.replies)


def test_non_approver_gets_insufficient_permission(desk: Desk) -> None:
    """DESIGN 4b: only an approver of that task may act."""
    decision = desk.mail("[APPROVE#500]", sender=BOB.email)
    assert decision.rule == "AP-7"
    assert desk.task(500).status is TaskStatus.PENDING
    assert "Reason: Insufficient Permission" in desk.replies[0].body


def test_plain_task_is_not_approved(desk: Desk) -> None:
    """DESIGN 4b: a task that exists but is not an approval gets a reply; nothing changes."""
    assert desk.mail("[APPROVE#502]", sender=ALICE.email).rule == "AP-6"
    assert desk.task(502).status is TaskStatus.OPEN
    assert "not an approval task" in desk.replies[0].body


def test_approval_no_longer_pending_is_not_changed(desk: Desk) -> None:
    """DESIGN 4b: an approval that is no longer pending is not changed; the reply says its state."""
    assert desk.mail("[REJECT#503]", sender=ALICE.email).rule == "AP-8"
    assert desk.task(503).status is TaskStatus.APPROVED
    assert "already approved" in desk.replies[0].body


def test_invalid_task_number_always_logs_a_call(desk: Desk) -> None:
    """ "If the email matches a recognized subject line but has an invalid request or task
    number, a call is always logged (whether Log New Call on Invalid Number is selected or
    not" """
    assert desk.mail("[APPROVE#999]", sender=ALICE.email).rules == ("AP-1", "LOG-5")
    assert desk.mail("[TASK#999] hi", sender=UMA.email).rules == ("UT-1", "LOG-6")
    assert desk.mail("[REQUEST#999] hi", sender=UMA.email).rules == ("UR-1", "LOG-6")
    assert desk.repo.get_call(105) is not None


def test_conflicting_commands_do_nothing(desk: Desk) -> None:
    """DESIGN 4: [APPROVE#1] [REJECT#1] does nothing and the reply says why."""
    assert desk.mail("[APPROVE#500] [REJECT#500]", sender=ALICE.email).rule == "AP-5"
    assert desk.task(500).status is TaskStatus.PENDING
    assert "both to approve and to reject" in desk.replies[0].body


def test_update_task(desk: Desk) -> None:
    """ "The body of the incoming email is added to the history of the specified task or
    approval." / "a return email message is sent with the subject "Task/Approval
    <Task/Approval Number> has been updated" """
    decision = desk.mail(
        "[TASK#502] imaging done",
        sender=ALICE.email,
        body="Done at 3pm",
        attachments=[("log.txt", b"ok")],
    )
    assert decision.rule == "UT-3"
    assert desk.texts(EntityKind.TASK, 502, EntryKind.HISTORY) == ["Done at 3pm\n"]
    assert desk.texts(EntityKind.TASK, 502, EntryKind.ATTACHMENT) == ["log.txt"]
    assert desk.task(502).updated
    assert desk.replies[0].subject == "Task/Approval 502 has been updated [TASK#502]"


def test_update_approval_by_reply_phrase(desk: Desk) -> None:
    """Replying to our "Task/Approval <n> has been updated" mail updates that approval."""
    assert desk.mail("RE: Task/Approval 500 has been updated", sender=ALICE.email).rule == "UT-3"


def test_update_task_unknown_sender_ignored(desk: Desk) -> None:
    """DESIGN 4b: no anonymous option exists for tasks, so unknown senders are ignored."""
    assert desk.mail("[TASK#502]", sender="stranger@else.example").rule == "UT-2"
    assert desk.entries(EntityKind.TASK, 502) == []
    assert desk.replies == []


def test_update_request(desk: Desk) -> None:
    """ "The body of the incoming email is added to the history of the specified request." /
    "a return email message is sent with the subject "Request <Request Number> has been
    updated" """
    decision = desk.mail("Request 700 has been updated", sender=ALICE.email, body="Ordered")
    assert decision.rule == "UR-3"
    assert desk.texts(EntityKind.REQUEST, 700, EntryKind.HISTORY) == ["Ordered\n"]
    assert desk.replies[0].subject == "Request 700 has been updated [REQUEST#700]"


def test_update_request_truncates_replies_to_us(desk: Desk) -> None:
    """ "If the incoming email is a reply to an outgoing email from the system, and Truncate
    Incoming Emails is selected in System Administration, only the reply portion of the email
    is added to the history of the request." """
    desk.set_system(truncate_incoming_emails=True)
    body = (
        "Ordered today.\n\n-----Original Message-----\nFrom: helpdesk@desk.example\n\n"
        "Request 700 has been updated.\n"
    )
    desk.mail("RE: Request 700 has been updated", sender=ALICE.email, body=body)
    assert [t.strip() for t in desk.texts(EntityKind.REQUEST, 700, EntryKind.HISTORY)] == [
        "Ordered today."
    ]
