"""Two From headers with a passing Authentication-Results (issue 10).

DESIGN 4, "Sender identity": "Two From headers: nobody is authenticated and no privileged
command (close, reopen, approve, reject) runs." Issue 10 found a message with two ``From:``
headers and a passing ``Authentication-Results`` closing a call as the first From: the DMARC
pass speaks for one of the two, and nothing says which one the reader sees.
"""

from __future__ import annotations

from asm_email_rules.model import CallStatus, TaskStatus
from asm_email_rules.pipeline import process
from asm_email_rules.sample import ALICE, UMA

from .conftest import NOW, Desk

MX = "mx.desk.example"


def two_froms(subject: str, first: str, second: str) -> bytes:
    return (
        f"Authentication-Results: {MX}; dmarc=pass header.from={first.split('@')[1]}\r\n"
        f"From: {first}\r\nFrom: {second}\r\nTo: helpdesk@desk.example\r\n"
        f"Subject: {subject}\r\nMessage-ID: <two-froms-{subject[1:6]}@x.example>\r\n\r\n"
        "Done, thanks.\r\n"
    ).encode()


def test_two_from_headers_with_a_passing_dmarc_close_nothing(desk: Desk) -> None:
    desk.set(trusted_authserv_id=MX)
    raw = two_froms("[CLOSE#100]", UMA.email, "mallory@evil.example")
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.rule == "CL-6"
    assert desk.call(100).status is CallStatus.OPEN
    assert any("two From headers" in reason for reason in result.decision.reasons)
    # The reply says why in the desk's words: no reference to our design notes.
    [reply] = desk.replies
    assert "two From headers: nobody is authenticated" in reply.body
    assert "DESIGN" not in reply.body


def test_two_from_headers_with_a_passing_dmarc_approve_nothing(desk: Desk) -> None:
    desk.set(trusted_authserv_id=MX)
    raw = two_froms("[APPROVE#500]", ALICE.email, "mallory@evil.example")
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert desk.task(500).status is TaskStatus.PENDING
    assert "approve_task" not in result.decision.action_kinds()
