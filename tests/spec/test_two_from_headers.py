"""Two From headers with a passing Authentication-Results (issue 10).

DESIGN 4, "Sender identity": "Two From headers: nobody is authenticated and no privileged
command (close, reopen, approve, reject) runs." Issue 10 found a message with two ``From:``
headers and a passing ``Authentication-Results`` closing a call as the first From: the DMARC
pass speaks for one of the two, and nothing says which one the reader sees.
"""

from __future__ import annotations

from asm_email_rules import (
    Facts,
    MailboxSettings,
    Outcome,
    SystemSettings,
    decide,
    parse_message,
    parse_subject,
    resolve_sender,
)
from asm_email_rules.model import Call, CallStatus, Person, TaskStatus
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


def test_hand_built_facts_with_two_from_headers_close_nothing() -> None:
    """DESIGN 4, "Sender identity": "Two From headers: nobody is authenticated and no
    privileged command (close, reopen, approve, reject) runs."

    A host using the pure core builds ``Facts`` itself (README: "build Facts yourself and call
    decide") and leaves ``authenticated`` at its default. Before, ``decide`` then closed the
    call for the first From; the rule belongs to ``decide``, not to ``gather_facts`` alone.
    """
    owner = Person(id=7, email="owner@client.example", is_analyst=True)
    raw = (
        b"From: owner@client.example\r\nFrom: mallory@evil.example\r\n"
        b"To: helpdesk@desk.example\r\nSubject: [CLOSE#12]\r\n"
        b"Message-ID: <hand-built@x.example>\r\n\r\nDone, thanks.\r\n"
    )
    email = parse_message(raw)
    facts = Facts(
        email=email,
        command=parse_subject(email.subject),
        sender=resolve_sender(email.sender, [owner]),
        now=NOW,
        call=Call(number=12, owner_id=7),
    )
    mailbox = MailboxSettings(name="helpdesk", addresses=("helpdesk@desk.example",))
    decision = decide(facts, mailbox, SystemSettings())
    assert "close_call" not in decision.action_kinds()
    assert decision.outcome is Outcome.REFUSE_UNAUTHENTICATED
    assert "sender authentication: two From headers: nobody is authenticated" in (decision.reasons)
    assert decision.reply is not None
    assert "two From headers: nobody is authenticated" in decision.reply.body
