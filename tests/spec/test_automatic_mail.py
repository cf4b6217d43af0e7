"""DESIGN 4 "Automatic mail", "Sender identity", "Contact address" (revised for issue 9).

Each test cites the DESIGN sentence it checks and runs real message bytes through the whole
pipeline on the sample desk.
"""

from __future__ import annotations

import json

import pytest

from asm_email_rules.model import EntityKind, EntryKind
from asm_email_rules.pipeline import explain, process
from asm_email_rules.sample import ALICE, UMA

from .conftest import NOW, Desk

ALERT = [("Auto-Submitted", "auto-generated")]


# --------------------------------------------------------------------------- auto-replies


def test_auto_reply_to_our_message_becomes_an_automatic_entry(desk: Desk) -> None:
    """ "auto-replies ... never log a call; one that answers a message of ours is added to
    that record's history as an automatic entry (no note icon, no notification, no reply)" """
    desk.set(auto_reply=True)
    desk.set_system(email_at_update_via_email_in=True)
    decision = desk.mail(
        "Automatic reply: Call 100 has been updated [CALL#100]",
        headers=[("Auto-Submitted", "auto-replied")],
        body="I am out of the office until Monday.",
    )
    assert decision.rule == "UC-3a"
    assert decision.action_kinds() == ("add_automatic_entry",)
    assert decision.reply is None
    (entry,) = [e for e in desk.entries(EntityKind.CALL, 100) if e.kind is EntryKind.HISTORY]
    assert entry.text.strip() == "I am out of the office until Monday."
    assert entry.author.endswith("(automatic reply)")
    kinds = {e.kind for e in desk.entries(EntityKind.CALL, 100)}
    assert EntryKind.NOTIFICATION not in kinds
    assert not desk.call(100).updated  # no note icon
    assert desk.replies == []


def test_auto_reply_to_a_closed_call_leaves_it_alone_without_update_closed_calls(
    desk: Desk,
) -> None:
    """ "Update Closed Calls via email must be enabled in the Incoming email server settings
    or closed calls will not be updated." An out-of-office answer to our mail about a closed
    call adds nothing to it unless the option is on; with it on, it is kept as the automatic
    entry DESIGN 4 describes (the call remains closed, no reply)."""
    desk.set(auto_reply=True)
    desk.set_system(email_at_update_via_email_in=True)
    away = [("Auto-Submitted", "auto-replied")]
    decision = desk.mail(
        "Automatic reply: Call No 101 is already closed [CALL#101]",
        headers=away,
        body="I am out of the office until Monday.",
    )
    assert decision.action_kinds() == ("discard",)
    assert decision.discard_reason == "auto-reply on a closed call without Update Closed Calls"
    assert desk.entries(EntityKind.CALL, 101) == []
    assert desk.replies == []

    desk.set(update_closed_calls=True)
    kept = desk.mail(
        "Automatic reply: Call No 101 has been updated by ASM Core. [CALL#101]",
        headers=away,
        body="I am still out of the office.",
    )
    assert kept.action_kinds() == ("add_automatic_entry",)
    (entry,) = desk.entries(EntityKind.CALL, 101)
    assert entry.text.strip() == "I am still out of the office."
    assert desk.call(101).status.value == "closed"
    assert not desk.call(101).updated  # no note icon
    assert desk.replies == []


def test_auto_reply_threaded_to_our_message_id_is_kept_too(desk: Desk) -> None:
    """The same rule when the only link is our Message-ID in In-Reply-To (Exchange OOF)."""
    desk.set(auto_reply=True)
    first = desk.mail("[CALL#100] printer", body="Still broken.")
    assert first.reply is not None
    ours = desk.replies[-1].message_id
    decision = desk.mail(
        "Automatic reply: thanks",
        headers=[("In-Reply-To", ours), ("Auto-Submitted", "auto-generated")],
        body="I am on annual leave until 10 March. For urgent matters please contact Dana.",
    )
    assert decision.rule == "UC-3a"
    assert len(desk.replies) == 1


def test_auto_reply_not_answering_us_is_discarded_with_its_reason(desk: Desk) -> None:
    """ "any other auto-reply is discarded with its reason" """
    desk.set(create_calls_anonymously=True)
    decision = desk.mail(
        "Auto: Printer", headers=[("Auto-Submitted", "auto-replied")], body="Away."
    )
    assert decision.rule == "LOG-1"
    assert decision.discard_reason == "auto-reply"
    assert decision.action_kinds() == ("discard",)
    assert desk.repo.get_call(103) is None


def test_automated_response_from_a_no_reply_robot_is_not_answered(desk: Desk) -> None:
    """Issue 9: "Automated Response: Re: ..." from a no-reply robot was answered, the robot
    answered back, and each round logged a call."""
    desk.set(auto_reply=True, create_calls_anonymously=True)
    decision = desk.mail(
        "Automated Response: Re: Call 103 has been logged",
        sender="Vendor Support <no-reply@vendor.example>",
        body="Your request has been received.",
    )
    assert decision.mail_kind.value == "auto_reply"
    assert decision.reply is None
    assert desk.repo.get_call(103) is None
    assert desk.replies == []


# --------------------------------------------------------------------------- machine mail


def test_machine_generated_mail_logs_a_call_without_a_reply(desk: Desk) -> None:
    """ "machine-generated mail (monitoring alerts, web forms, no-reply notices): a desk that
    gets it wants calls from it, so it logs and updates calls like any mail, but never gets a
    reply" """
    desk.set(auto_reply=True, create_calls_anonymously=True)
    decision = desk.mail(
        "PROBLEM: disk /var on web-01 is CRITICAL",
        sender="Nagios <nagios@monitor.example>",
        headers=ALERT,
        body="Disk usage 97%.",
    )
    assert decision.rule == "LOG-2"
    assert desk.newest_call().number == 103
    assert decision.reply is None
    assert "no reply to auto_generated mail" in decision.reply_suppressed
    assert desk.replies == []


def test_machine_generated_mail_updates_an_open_call_but_never_closes(desk: Desk) -> None:
    """ "... it logs and updates calls like any mail, but ... never closes, reopens, approves
    or rejects" """
    desk.set(auto_reply=True)
    update = desk.mail("[CALL#100] RECOVERY", headers=ALERT, body="OK again.")
    assert update.rule == "UC-4"
    assert update.reply is None
    close = desk.mail("[CLOSE#100]", headers=ALERT)
    assert (close.rule, close.discard_reason) == ("CL-3", "automatic mail cannot close a call")
    closed = desk.mail("[CALL#101] again", headers=ALERT)
    assert closed.rule == "UC-5"
    approve = desk.mail("[APPROVE#500]", sender=ALICE.email, headers=ALERT)
    assert approve.rule == "AP-2"


def test_machine_generated_mail_notes_a_closed_call_with_update_closed_calls(desk: Desk) -> None:
    """DESIGN 4: machine-generated mail "logs and updates calls like any mail, but never gets a
    reply and never closes, reopens"; spec: "If Update Closed Calls is selected on the incoming
    email server, the call remains closed but a note is added to the call with the details of
    the email." An alert on a closed call is kept as that note (no reply, no reopen), as list
    mail's is; without the option it is discarded with its reason."""
    desk.set(auto_reply=True, update_closed_calls=True, reopen_closed_calls=True)
    desk.set_system(self_service_reopen_closed_calls=True)
    decision = desk.mail("[CALL#101] PROBLEM again", headers=ALERT, body="Disk full again.")
    assert decision.outcome.value == "note_closed_call"
    assert decision.reply is None
    assert desk.call(101).status.value == "closed"
    (note,) = desk.texts(EntityKind.CALL, 101, EntryKind.NOTE)
    assert note.strip() == "Disk full again."
    assert desk.replies == []

    desk.set(update_closed_calls=False)
    dropped = desk.mail("[CALL#101] PROBLEM still", headers=ALERT, body="Disk still full.")
    assert dropped.rule == "UC-5"
    assert dropped.discard_reason == "machine-generated mail on a closed call"


def test_a_mailbox_option_turns_calls_from_machine_mail_off(desk: Desk) -> None:
    """ "a mailbox option turns this off" """
    desk.set(calls_from_machine_mail=False)
    decision = desk.mail("Alert", headers=ALERT)
    assert decision.rule == "LOG-1"
    assert decision.discard_reason.startswith("machine-generated mail")
    assert desk.repo.get_call(103) is None


# --------------------------------------------------------------------------- people


def test_person_asking_about_out_of_office_logs_a_call_and_gets_a_reply(desk: Desk) -> None:
    """ "a subject phrase alone ("Out of Office: my calendar is broken") never makes a message
    automatic: a human asking about out-of-office settings is a human." """
    desk.set(auto_reply=True)
    decision = desk.mail(
        "Out of Office: my calendar is broken", body="My out of office setting does not stick."
    )
    assert decision.mail_kind.value == "normal"
    assert decision.rule == "LOG-6"
    assert decision.reply is not None


@pytest.mark.parametrize("tag", ["[RESOLVED]", "[Resolved]", "[FIRING]"])
def test_a_persons_status_tag_in_the_subject_is_not_a_monitoring_subject(
    desk: Desk, tag: str
) -> None:
    """Spec: "If the messaging service picks up an incoming email but does not recognize the
    email's subject line, ASM Core will log a call based on the details of that email."
    People tag their own subjects "[RESOLVED]": counted as Alertmanager's subject, it joined
    a leave note in the signature, so the mail was discarded as an auto-reply (no call, no
    reply); "[CLOSE#n]" with it was refused as automatic mail."""
    desk.set(auto_reply=True)
    body = (
        "Hi,\n\nThe printer on floor 3 jams again.\n\n"
        "Note: I am out of the office from 1 December until 5 December.\n\nUma"
    )
    decision = desk.mail(f"{tag} printer on floor 3", body=body)
    assert decision.mail_kind.value == "normal"
    assert decision.rule == "LOG-6"
    assert decision.reply is not None
    decision = desk.mail(
        f"{tag} [CLOSE#100]", body="Works now.\n\nThis email was sent automatically from my phone."
    )
    assert decision.action_kinds() == ("add_history", "close_call")
    assert decision.reply is not None


def test_mail_forwarded_by_the_persons_inbox_rule_is_the_persons(desk: Desk) -> None:
    """ "X-MS-Exchange-Inbox-Rules-Loop marks mail a person's inbox rule forwarded: the person
    wrote it." """
    decision = desk.mail(
        "FW: VPN down", headers=[("X-MS-Exchange-Inbox-Rules-Loop", UMA.email)], body="Help."
    )
    assert decision.mail_kind.value == "normal"
    assert decision.rule == "LOG-6"


# --------------------------------------------------------------------------- contact address


def test_acknowledgement_goes_to_reply_to(desk: Desk) -> None:
    """ "Contact address (where acknowledgements go ...): Reply-To when present (RFC 5322
    3.6.2), else From." """
    desk.set(auto_reply=True)
    decision = desk.mail("Printer", headers=[("Reply-To", "uma.team@corp.example")])
    assert decision.rule == "LOG-6"
    assert decision.reply is not None
    assert decision.reply.to == "uma.team@corp.example"
    assert desk.newest_call().user_id == UMA.id  # Reply-To never identifies the actor


def test_web_form_mailbox_makes_the_reply_to_person_the_user(desk: Desk) -> None:
    """ "A mailbox fed by a web form (From is a no-reply robot, the customer is in Reply-To)
    can set contact_from_reply_to so the created User is the Reply-To person." """
    desk.set(auto_reply=True, create_calls_anonymously=True, contact_from_reply_to=True)
    decision = desk.mail(
        "Contact form: laptop broken",
        sender="Web Form <forms@web.example>",
        headers=[("Reply-To", "Carla Customer <carla@customer.example>")],
        body="Name: Carla\nMessage: my laptop does not start",
    )
    assert decision.rule == "LOG-2"
    (person,) = desk.repo.persons_by_address("carla@customer.example")
    assert desk.newest_call().user_id == person.id
    assert desk.repo.persons_by_address("forms@web.example") == []
    assert decision.reply is not None
    assert decision.reply.to == "carla@customer.example"


def test_privileged_results_go_to_the_stored_address_only(desk: Desk) -> None:
    """ "Results of privileged commands go to the identified person's stored address only." """
    desk.set(auto_reply=True)
    decision = desk.mail("[CLOSE#100]", headers=[("Reply-To", "thief@evil.example")])
    assert decision.rule == "CL-9"
    assert decision.reply is not None
    assert decision.reply.to == UMA.email


# --------------------------------------------------------------------------- sender identity


def _raw(*headers: str, body: str = "Please help.") -> bytes:
    lines = [*headers, "To: helpdesk@desk.example", f"Message-ID: <id-{len(headers)}@x.example>"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def test_from_with_several_mailboxes_uses_sender(desk: Desk) -> None:
    """ "From with several mailboxes: Sender (RFC 5322 3.6.2) names the actor." """
    raw = _raw(
        "From: Uma User <uma@corp.example>, Pat Partner <pat@corp.example>",
        "Sender: Uma User <uma@corp.example>",
        "Subject: Printer on floor 2",
    )
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.rule == "LOG-6"
    assert desk.newest_call().user_id == UMA.id
    assert any("Sender uma@corp.example" in r for r in result.decision.reasons)


def test_from_without_an_address_but_a_reply_to_logs_for_the_reply_to(desk: Desk) -> None:
    """Issue 9: "a From with a name and no address but a Reply-To" was discarded as "no usable
    address"; the contact address (DESIGN 4: Reply-To, else From) is the caller of a new call."""
    desk.set(create_calls_anonymously=True, auto_reply=True)
    raw = _raw(
        "From: Nina New",
        "Reply-To: Nina New <nina@else.example>",
        "Subject: Screen flickers",
    )
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.rule == "LOG-2"
    (person,) = desk.repo.persons_by_address("nina@else.example")
    assert desk.newest_call().user_id == person.id
    assert result.decision.reply is not None
    assert result.decision.reply.to == "nina@else.example"


@pytest.mark.parametrize(
    ("headers", "options"),
    [
        (
            ("From: Web Form <forms@web.example>", "Reply-To: Carla Caller <carla@else.example>"),
            {"contact_from_reply_to": True},
        ),
        (("From: Carla Caller", "Reply-To: Carla Caller <carla@else.example>"), {}),
        (
            (
                "From: Carla Caller <carla@else.example>, Pat Partner <pat@else.example>",
                "Sender: Carla Caller <carla@else.example>",
            ),
            {},
        ),
    ],
    ids=["web-form-reply-to", "from-without-address", "sender-of-several-authors"],
)
def test_a_user_created_for_a_new_call_keeps_the_callers_name(
    desk: Desk, headers: tuple[str, ...], options: dict[str, bool]
) -> None:
    """Case 1: "a new User record is created (that is, a new person record flagged as a User)
    and the call is logged with this User specified in the User field." The record carries
    the display name of the mailbox that named the caller (From, Sender or Reply-To), as it
    does for a plain From."""
    desk.set(create_calls_anonymously=True, **options)
    raw = _raw(*headers, "Subject: Screen flickers")
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.rule == "LOG-2"
    (person,) = desk.repo.persons_by_address("carla@else.example")
    assert (person.name, person.is_user) == ("Carla Caller", True)
    assert desk.newest_call().user_id == person.id


def test_two_from_headers_authenticate_nobody(desk: Desk) -> None:
    """ "Two From headers: nobody is authenticated and no privileged command (close, reopen,
    approve, reject) runs." """
    raw = _raw(
        "From: Uma User <uma@corp.example>",
        "From: Alice Analyst <alice@desk.example>",
        "Subject: [CLOSE#100]",
    )
    decision = explain(raw, desk.repo, desk.mailbox, desk.system, NOW)
    assert decision.rule == "CL-6"
    assert decision.action_kinds() == ("discard",)  # the call is not closed
    assert any("two From headers" in reason for reason in decision.reasons)


# --------------------------------------------------------------------------- nothing silent


def test_every_discard_says_why_in_json_and_the_ledger(desk: Desk) -> None:
    """Issue 9: "every message that is neither acted on nor answered carries its reason in the
    ledger"."""
    decision = desk.mail("Help", sender="nina@else.example")
    assert decision.rule == "LOG-3"
    assert decision.discard_reason == "unknown sender without Create New Calls Anonymously"
    assert json.loads(decision.to_json())["discard_reason"] == decision.discard_reason
    assert desk.last is not None
    email = desk.last.email
    entry = desk.repo.ledger_entry(desk.mailbox.name, email.message_id or "", email.raw_sha256)
    assert entry is not None
    assert json.loads(entry.decision_json)["discard_reason"] == decision.discard_reason


def test_bounce_status_class_is_in_the_decision(desk: Desk) -> None:
    """Issue 9: the bounce's status class (4 or 5) in the decision and in explain --json."""
    raw = _raw(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>",
        "Subject: Warning: message 1abc-00 delayed 24 hours",
        "Auto-Submitted: auto-replied",
        body="This message was created automatically by mail delivery software.\r\n"
        "A message that you sent has not yet been delivered to one or more of its recipients.",
    )
    decision = explain(raw, desk.repo, desk.mailbox, desk.system, NOW)
    assert (decision.rule, decision.status_class) == ("GATE-2", 4)
    assert json.loads(decision.to_json())["status_class"] == 4
    assert decision.discard_reason == "bounce: delivery delayed"
