"""DESIGN 4 "Replies we send": the Decision's reply is exactly the mail that goes out."""

from __future__ import annotations

import attrs
import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.applying import apply
from asm_email_rules.model import CallStatus, EntityKind, EntityRef, InboundEmail
from asm_email_rules.pipeline import explain, process
from asm_email_rules.sample import (
    DEMO_NOW,
    DEMO_SYSTEM,
    demo_inbox,
    sample_mailbox,
    seed_sample_desk,
)

from .conftest import NOW, Desk, make_raw


def test_explain_shows_exactly_the_mail_that_is_sent() -> None:
    """ "the spec's subjects exactly, plus the entity's bracket token" and our marker line:
    for every message of the demo inbox, the reply and the notifications ``explain`` prints
    are the mails sent (recipient, subject, body), apart from a new call's number, which
    exists only once the call is logged and which explain shows as "(new call)"."""
    repo = InMemoryRepository()
    seed_sample_desk(repo)
    mailbox, mailer = sample_mailbox(auto_reply=True), RecordingMailer()
    compared = new_calls = notifications = 0
    for name, raw in demo_inbox():
        dry = explain(raw, repo, mailbox, DEMO_SYSTEM, DEMO_NOW)
        sent_before = len(mailer.sent)
        result = process(raw, repo, mailer, mailbox, DEMO_SYSTEM, DEMO_NOW)
        assert result.decision == dry, name
        sent = mailer.sent[sent_before:]
        expected = [*([dry.reply] if dry.reply is not None else []), *dry.notifications]
        assert len(sent) == len(expected), name
        for mail, want in zip(sent, expected, strict=True):
            if want.awaits_call_number:
                assert "(new call)" in want.subject
                assert result.new_call_number is not None
                want = want.for_call(result.new_call_number)
                new_calls += 1
                assert f"[CALL#{result.new_call_number}]" in mail.subject
            assert (mail.to, mail.subject, mail.body) == (want.to, want.subject, want.body)
            assert mail.body.startswith(DEMO_SYSTEM.reply_marker)
            compared += 1
        notifications += len(dry.notifications)
    assert compared >= 5, "the demo inbox should exercise several kinds of reply"
    assert new_calls >= 1, "and at least one new call's acknowledgement"
    assert notifications >= 1, "and a notification to an assignee (Email at Update via Email In)"


def test_a_new_call_acknowledgement_names_the_logged_call(desk: Desk) -> None:
    """DESIGN 4b: "Call <n> has been logged" carries [CALL#n], filled in once n exists."""
    desk.set(auto_reply=True)
    decision = desk.mail("Projector is dead")
    assert decision.reply is not None
    assert decision.reply.subject == "Call (new call) has been logged [CALL#(new call)]"
    (sent,) = desk.replies
    number = desk.newest_call().number
    assert sent.subject == f"Call {number} has been logged [CALL#{number}]"
    assert sent.message_id.startswith(f"<asm.call-{number}.")
    assert desk.repo.entity_for_message_id(sent.message_id) == EntityRef(EntityKind.CALL, number)


@attrs.frozen
class _Unheard:
    """An action no version of apply knows."""

    kind = "unheard_of"


def test_apply_refuses_an_action_it_does_not_know_and_writes_nothing(desk: Desk) -> None:
    """An unknown action is never silently ignored: apply fails and its transaction (every
    write of the decision, and the ledger entry) is rolled back."""
    raw = make_raw("[CLOSE#100]", sender="uma@corp.example", message_id="<x@y>")
    decision = explain(raw, desk.repo, desk.mailbox, desk.system, NOW)
    assert decision.action_kinds() == ("add_history", "close_call")
    bogus = attrs.evolve(decision, actions=(*decision.actions, _Unheard()))  # type: ignore[arg-type]
    email = InboundEmail(sender="uma@corp.example", subject="[CLOSE#100]", message_id="<x@y>")
    with pytest.raises(AssertionError):
        apply(bogus, email, desk.repo, desk.mailbox, desk.system, NOW)
    assert desk.call(100).status is CallStatus.OPEN
    assert desk.entries(EntityKind.CALL, 100) == []  # the history entry is rolled back too
    assert desk.repo.ledger_entry(desk.mailbox.name, "<x@y>", "") is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # RFC 5322 3.6.4: no References, a single In-Reply-To id: it comes first.
        ([("In-Reply-To", "<parent@x.example>")], ("<parent@x.example>", "<own@c.example>")),
        (
            [("In-Reply-To", "<parent@x.example>"), ("References", "<a@x> <parent@x.example>")],
            ("<a@x>", "<parent@x.example>", "<own@c.example>"),
        ),
        # two ids in In-Reply-To: which one is the parent's parent is unknown, so neither
        ([("In-Reply-To", "<p1@x> <p2@x>")], ("<own@c.example>",)),
        ([], ("<own@c.example>",)),
    ],
)
def test_our_reply_references_the_thread_as_rfc_5322_says(
    desk: Desk, headers: list[tuple[str, str]], expected: tuple[str, ...]
) -> None:
    """RFC 5322 3.6.4: References holds the parent's References (or, without them, its single
    In-Reply-To id), then the parent's Message-ID; In-Reply-To holds the parent's id."""
    desk.set(auto_reply=True)
    desk.mail("Printer broken", headers=headers, message_id="<own@c.example>")
    [reply] = desk.replies
    assert reply.in_reply_to == "<own@c.example>"
    assert reply.references == expected
