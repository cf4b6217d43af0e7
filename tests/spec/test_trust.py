"""Trust and hostile mail (issue 5): each attack fails, and legitimate mail still works."""

from __future__ import annotations

from datetime import timedelta

from asm_email_rules.model import CallStatus, EntityKind, EntryKind, TaskStatus
from asm_email_rules.outgoing import render_outgoing
from asm_email_rules.pipeline import process
from asm_email_rules.sample import ALICE, BOB, UMA
from asm_email_rules.tokens import make_approval_token

from .conftest import NOW, Desk

MX = "mx.desk.example"
SECRET = "s3cret-for-tests"


def _auth(result: str, domain: str = "desk.example", authserv: str = MX) -> tuple[str, str]:
    return ("Authentication-Results", f"{authserv}; dmarc={result} header.from={domain}")


# -- forged From ---------------------------------------------------------------------------


def test_forged_from_cannot_approve_when_authentication_is_required(desk: Desk) -> None:
    desk.set(trusted_authserv_id=MX)
    decision = desk.mail("[APPROVE#500]", sender=ALICE.email, headers=[_auth("fail")])
    assert decision.rule == "AP-9"
    assert desk.task(500).status is TaskStatus.PENDING
    (reply,) = desk.replies
    assert reply.to == ALICE.email  # the real approver learns of the attempt, not the forger
    assert "could not be authenticated" in reply.body


def test_authenticated_approver_still_approves(desk: Desk) -> None:
    desk.set(trusted_authserv_id=MX)
    assert desk.mail("[APPROVE#500]", sender=ALICE.email, headers=[_auth("pass")]).rule == "AP-11"
    assert desk.task(500).status is TaskStatus.APPROVED


def test_foreign_authserv_id_is_ignored(desk: Desk) -> None:
    """A header the sender wrote with another id (or none at all) proves nothing."""
    desk.set(trusted_authserv_id=MX)
    decision = desk.mail(
        "[CLOSE#100]", sender=UMA.email, headers=[_auth("pass", authserv="mx.evil.example")]
    )
    assert decision.rule == "CL-6"
    assert desk.call(100).status is CallStatus.OPEN


def test_forged_pass_below_our_fail_is_ignored(desk: Desk) -> None:
    """Our MTA prepends its header on top; a 'pass' the forger added below does not count."""
    desk.set(trusted_authserv_id=MX)
    decision = desk.mail("[CLOSE#100]", sender=UMA.email, headers=[_auth("fail"), _auth("pass")])
    assert decision.rule == "CL-6"


def test_authentication_gates_reopen_but_not_updates(desk: Desk) -> None:
    desk.set(trusted_authserv_id=MX, reopen_closed_calls=True)
    desk.set_system(self_service_reopen_closed_calls=True)
    bob_call_user = desk.repo.get_person(UMA.id)
    assert bob_call_user is not None
    import attrs

    desk.repo.put_person(attrs.evolve(bob_call_user, user_can_reopen=True))
    decision = desk.mail("[CALL#101] back again", sender=UMA.email, headers=[_auth("fail")])
    assert decision.rule == "UC-8"
    assert desk.call(101).status is CallStatus.CLOSED
    assert desk.mail("[CALL#100] info", sender=UMA.email).rule == "UC-4"  # updates unaffected


# -- approval tokens -------------------------------------------------------------------------


def _token(task: int, approver: int, nonce: str = "0a1b2c3d") -> str:
    issued = make_approval_token(
        SECRET,
        task_number=task,
        approver_id=approver,
        expires_at=NOW + timedelta(days=3),
        nonce=nonce,
    )
    return issued.token


def _require_tokens(desk: Desk) -> None:
    desk.set(require_approval_token=True)
    desk.set_system(approval_token_secret=SECRET)


def test_valid_token_approves_once_and_replay_does_nothing(desk: Desk) -> None:
    _require_tokens(desk)
    token = _token(500, ALICE.id)
    assert desk.mail(f"[APPROVE#500-{token}]", sender=ALICE.email).rule == "AP-11"
    assert desk.task(500).status is TaskStatus.APPROVED
    # Replay on a fresh pending approval with the same token (same task id reused by a host).
    import attrs

    desk.repo.put_task(attrs.evolve(desk.task(500), status=TaskStatus.PENDING))
    replay = desk.mail(f"Re: [APPROVE#500-{token}] again", sender=ALICE.email)
    assert replay.rule == "AP-10"
    assert "already used" in desk.replies[-1].body
    assert desk.task(500).status is TaskStatus.PENDING


def test_missing_or_foreign_token_does_nothing(desk: Desk) -> None:
    _require_tokens(desk)
    assert desk.mail("[APPROVE#500]", sender=ALICE.email).rule == "AP-10"
    bobs = _token(500, BOB.id)
    assert desk.mail(f"[APPROVE#500-{bobs}]", sender=ALICE.email).rule == "AP-10"
    other_task = _token(501, ALICE.id)
    assert desk.mail(f"[REJECT#500-{other_task}]", sender=ALICE.email).rule == "AP-10"
    assert desk.task(500).status is TaskStatus.PENDING


# -- loops, storms, old mail, reply-to tricks ---------------------------------------------------


def test_our_own_reply_coming_back_is_a_loop(desk: Desk) -> None:
    desk.set(auto_reply=True)
    desk.mail("[CALL#100] info")
    (ours,) = desk.replies
    bounced_back = render_outgoing(ours, now=NOW)
    result = process(bounced_back, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.rule == "GATE-3"
    assert len(desk.replies) == 1


def test_reply_storm_is_capped_per_sender_per_hour(desk: Desk) -> None:
    budget = desk.system.reply_budget_per_hour
    for index in range(budget + 5):
        desk.mail(f"[APPROVE#500] try {index}", sender="bot@else.example", body=f"n{index}")
    assert len(desk.replies) == budget
    assert "reply budget" in desk.last.decision.reply_suppressed  # type: ignore[union-attr]


def test_reply_budget_is_not_escaped_by_plus_tags_of_one_mailbox(desk: Desk) -> None:
    """Spec: "If the email address is not recognized ... a return email is sent" to whoever
    the From names. A forger writing victim+1@, victim+2@, ... must not get more than the
    budget of replies into the victim's one mailbox (sub-addresses are delivered there)."""
    budget = desk.system.reply_budget_per_hour
    for index in range(budget + 5):
        desk.mail(f"[APPROVE#500] try {index}", sender=f"victim+{index}@else.example")
    assert len(desk.replies) == budget
    assert "reply budget" in desk.last.decision.reply_suppressed  # type: ignore[union-attr]
    # another mailbox of the domain keeps its own budget
    desk.mail("[APPROVE#500] other", sender="victim2@else.example")
    assert len(desk.replies) == budget + 1


def test_old_mail_gets_no_reply_on_first_run(desk: Desk) -> None:
    desk.set(auto_reply=True)
    decision = desk.mail("[CALL#100]", headers=[("X-Test", "old")])
    assert decision.reply is not None
    old = "Mon, 02 Nov 2026 10:00:00 +0000"
    from .conftest import make_raw

    raw = make_raw("[CALL#100] old", sender=UMA.email).replace(
        b"Fri, 27 Nov 2026 11:00:00 +0000", old.encode()
    )
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.reply is None
    assert "days ago: no reply" in result.decision.reply_suppressed
    assert len(desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)) == 2  # still recorded


def test_reply_to_never_redirects_a_summary(desk: Desk) -> None:
    desk.mail("[MyCalls]", sender=ALICE.email, headers=[("Reply-To", "thief@evil.example")])
    (reply,) = desk.replies
    assert reply.to == ALICE.email


def test_guessing_numbers_gives_strangers_nothing(desk: Desk) -> None:
    for subject in ("[CLOSE#100]", "[CALL#101]", "[TASK#502]", "[MyCalls]"):
        desk.mail(subject, sender="guesser@evil.example")
    assert desk.replies == []
    assert desk.call(100).status is CallStatus.OPEN
    assert desk.entries(EntityKind.CALL, 101) == []


def test_duplicate_delivery_acts_once(desk: Desk) -> None:
    desk.mail("[CLOSE#100]", sender=UMA.email, message_id="<dup@corp.example>")
    first = desk.last
    assert first is not None
    from .conftest import make_raw

    raw = make_raw("[CLOSE#100]", sender=UMA.email, message_id="<dup@corp.example>")
    again = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert again.duplicate
    assert len(desk.replies) == 1


def test_an_unauthenticated_mail_on_a_closed_call_is_a_note_when_update_closed_is_on(
    desk: Desk,
) -> None:
    """DESIGN 4: "Both Update Closed Calls and Reopen Closed Calls on: reopen wins when all its
    conditions hold ...; else update-closed". Reopening needs authentication with a trusted
    authserv-id; a note does not, so switching Reopen on no longer loses the mail."""
    desk.set(trusted_authserv_id=MX, reopen_closed_calls=True, update_closed_calls=True)
    desk.set_system(self_service_reopen_closed_calls=True)
    person = desk.repo.get_person(UMA.id)
    assert person is not None
    import attrs

    desk.repo.put_person(attrs.evolve(person, user_can_reopen=True))
    decision = desk.mail("[CALL#101] back again", sender=UMA.email, headers=[_auth("fail")])
    assert decision.rule == "UC-8a"
    assert desk.call(101).status is CallStatus.CLOSED
    assert desk.texts(EntityKind.CALL, 101, EntryKind.NOTE) != []
    aligned = _auth("pass", domain=UMA.email.rpartition("@")[2])
    passed = desk.mail("[CALL#101] really back", sender=UMA.email, headers=[aligned])
    assert passed.rule == "UC-9"  # authenticated: reopened, as before
    assert desk.call(101).status is not CallStatus.CLOSED
