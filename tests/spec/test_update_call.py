"""Spec: "Updating a Call with Email" and the invalid-number rules for calls."""

from __future__ import annotations

import attrs

from asm_email_rules.model import CallStatus, EntityKind, EntityRef, EntryKind
from asm_email_rules.rules import ENCRYPTED_NOTICE
from asm_email_rules.sample import ALICE, TEMPLATE, UMA

from .conftest import Desk

QUOTED_REPLY = """Thanks, it works now.

On Thu, 26 Nov 2026 at 10:00, Helpdesk <helpdesk@desk.example> wrote:
> ##- Please type your reply above this line -##
>
> Call 100 has been updated.
"""


def test_update_adds_body_to_history_and_marks_updated(desk: Desk) -> None:
    """ "The body of the incoming email is added to the history of the specified call." and
    "a note icon is added to the specified call in the Calls Outstanding window" """
    decision = desk.mail("[CALL#100] more detail", body="It jams on A3 only.")
    assert decision.rule == "UC-4"
    assert desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY) == ["It jams on A3 only.\n"]
    assert desk.call(100).updated


def test_update_attaches_files(desk: Desk) -> None:
    """ "If there are any attachments to the email, they are attached to the call as objects" """
    desk.mail("Call 100 has been updated", attachments=[("jam.jpg", b"jpeg")])
    attached = desk.repo.attachments(EntityRef(EntityKind.CALL, 100))
    assert [a.filename for a in attached] == ["jam.jpg"]
    assert attached[0].data == b"jpeg"


def test_update_reply_only_with_auto_reply(desk: Desk) -> None:
    """ "a return email message is sent with the subject "Call <Call Number> has been updated"
    ... if auto-reply has been enabled for that incoming email server" """
    decision = desk.mail("[CALL#100]")
    assert decision.reply is None
    assert desk.replies == []
    desk.set(auto_reply=True)
    desk.mail("[CALL#100] again")
    (reply,) = desk.replies
    assert reply.subject == "Call 100 has been updated [CALL#100]"
    assert reply.to == UMA.email


def test_truncation_keeps_only_the_reply_portion(desk: Desk) -> None:
    """ "If the incoming email is a reply to an outgoing email from the system, and Truncate
    Incoming Emails is selected in System Administration, only the reply portion of the email
    is added to the history of the call." """
    desk.set_system(truncate_incoming_emails=True)
    desk.mail("Re: Call 100 has been updated", body=QUOTED_REPLY)
    (text,) = desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)
    assert text.strip() == "Thanks, it works now."


BOTTOM_POSTED_REPLY = """Service Desk wrote:
> ##- Please type your reply above this line -##
>
> Call 100 has been updated.

The fan still rattles when the lid is closed.
"""

REPLY_WITH_OWN_QUOTE = """The installer said:

> Reboot twice and it settles.

It did not settle. Please send someone.

On Thu, 26 Nov 2026 at 10:00, Helpdesk <helpdesk@desk.example> wrote:
> ##- Please type your reply above this line -##
>
> Call 100 has been updated.
"""


def test_truncation_keeps_a_reply_typed_below_our_quoted_reply(desk: Desk) -> None:
    """ "only the reply portion of the email is added to the history of the call": the reply
    portion of a bottom-posted answer is the text under our quoted reply, not the line that
    introduces the quote."""
    desk.set_system(truncate_incoming_emails=True)
    desk.mail("Re: Call 100 has been updated", body=BOTTOM_POSTED_REPLY)
    (text,) = desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)
    assert text.strip() == "The fan still rattles when the lid is closed."


def test_truncation_keeps_what_the_person_quoted_in_their_reply(desk: Desk) -> None:
    """ "only the reply portion of the email is added to the history of the call": everything
    above the line that introduces our quoted reply is the person's reply, their own quotes
    and the text after them included."""
    desk.set_system(truncate_incoming_emails=True)
    desk.mail("Re: Call 100 has been updated", body=REPLY_WITH_OWN_QUOTE)
    (text,) = desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)
    assert text.strip() == REPLY_WITH_OWN_QUOTE.split("\n\nOn Thu")[0]


OUTLOOK_INLINE_ANSWERS = """Hi Alice, see my answers inline below.

From: Alice Analyst <helpdesk@desk.example>
Sent: Thursday, November 26, 2026 4:02 PM
To: Uma User <uma@corp.example>
Subject: Call 100 [CALL#100]

##- Please type your reply above this line -##

Which tray jams?
[Uma] Tray 2, only with A3 paper.
"""


def test_truncation_keeps_answers_announced_inside_our_reply(desk: Desk) -> None:
    """ "only the reply portion of the email is added to the history of the call": answers
    typed into our unquoted reply are part of the reply portion; when the reply says they are
    there, the whole body is added and the decision says why."""
    desk.set_system(truncate_incoming_emails=True)
    decision = desk.mail("Re: Call 100 has been updated", body=OUTLOOK_INLINE_ANSWERS)
    (text,) = desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)
    assert "[Uma] Tray 2, only with A3 paper." in text
    assert any("announces answers" in reason for reason in decision.reasons)


def test_no_truncation_when_the_option_is_off(desk: Desk) -> None:
    """Truncation applies only when "Truncate Incoming Emails is selected"."""
    desk.mail("Re: Call 100 has been updated", body=QUOTED_REPLY)
    (text,) = desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)
    assert "Call 100 has been updated." in text


def test_no_truncation_when_not_a_reply_to_us(desk: Desk) -> None:
    """Truncation applies only "If the incoming email is a reply to an outgoing email from the
    system": a fresh mail quoting someone else keeps everything."""
    desk.set_system(truncate_incoming_emails=True)
    body = "See below.\n\nOn Mon, Bob wrote:\n> the switch is dead\n"
    desk.mail("[CALL#100] forwarded note", body=body)
    (text,) = desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)
    assert "the switch is dead" in text


def test_notification_with_email_at_update_via_email_in(desk: Desk) -> None:
    """ "To have email notifications sent to the assigned analyst or group when a call is
    updated by incoming email, ensure that the Email at Update via Email In option is
    selected" """
    desk.mail("[CALL#100] one")
    assert desk.texts(EntityKind.CALL, 100, EntryKind.NOTIFICATION) == []
    desk.set_system(email_at_update_via_email_in=True)
    decision = desk.mail("[CALL#100] two")
    assert "notify_assignee" in decision.action_kinds()
    assert len(desk.texts(EntityKind.CALL, 100, EntryKind.NOTIFICATION)) == 1


def test_invalid_call_number_logs_a_call_with_the_option(desk: Desk) -> None:
    """ "it logs a new call if the incoming email account has the Log New Call on Invalid Number
    option" """
    desk.set(log_new_call_on_invalid_number=True)
    decision = desk.mail("[CALL#999] where is my call", body="Lost call")
    assert decision.rules == ("UC-1", "LOG-6")
    assert desk.newest_call().description.strip() == "Lost call"


def test_invalid_call_number_discarded_silently_without_the_option(desk: Desk) -> None:
    """ "if Log New Call on Invalid Number is not selected, ASM Core ignores the email and the
    person who sent the incoming email is not notified." """
    desk.set(auto_reply=True)
    decision = desk.mail("[CALL#999] where is my call")
    assert decision.rule == "UC-2"
    assert desk.repo.get_call(103) is None
    assert desk.replies == []


def test_unknown_sender_update_ignored(desk: Desk) -> None:
    """ "but it does not recognize the sender's email address, it ignores the email." """
    desk.set(auto_reply=True)
    decision = desk.mail("[CALL#100]", sender="stranger@else.example", body="spam")
    assert decision.rule == "UC-3"
    assert desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY) == []
    assert desk.replies == []


def test_unknown_sender_update_with_update_anonymously(desk: Desk) -> None:
    """ "However, if the Update Calls Anonymously option is selected for the incoming email
    account, the call is updated." (DESIGN 4b: no person record; author "anonymous (...)")"""
    desk.set(update_calls_anonymously=True)
    decision = desk.mail("[CALL#100]", sender="stranger@else.example", body="extra info")
    assert decision.rule == "UC-4"
    (entry,) = [e for e in desk.entries(EntityKind.CALL, 100) if e.kind is EntryKind.HISTORY]
    assert entry.author == "anonymous (stranger@else.example)"
    assert desk.repo.persons_by_address("stranger@else.example") == []


def test_closed_call_with_update_closed_calls_gets_a_note(desk: Desk) -> None:
    """ "If Update Closed Calls is selected on the incoming email server, the call remains
    closed but a note is added to the call with the details of the email. The sender of the
    email also receives the following message: "Call No xyz has been updated by ASM Core." """
    desk.set(update_closed_calls=True)
    decision = desk.mail("[CALL#101] still broken", body="VPN dropped again")
    assert decision.rule == "UC-10"
    assert desk.call(101).status is CallStatus.CLOSED
    assert desk.texts(EntityKind.CALL, 101, EntryKind.NOTE) == ["VPN dropped again\n"]
    (reply,) = desk.replies
    assert reply.subject.startswith("Call No 101 has been updated by ASM Core.")
    assert "Call No 101 has been updated by ASM Core." in reply.body


def test_closed_call_without_update_closed_calls_is_not_updated(desk: Desk) -> None:
    """ "If Update Closed Calls is not selected, the call remains closed and the following
    message is sent back to the sender of the email: "Call No xyz is already closed and has
    not been updated." """
    decision = desk.mail("[CALL#101] still broken")
    assert decision.rule == "UC-11"
    assert desk.call(101).status is CallStatus.CLOSED
    assert desk.entries(EntityKind.CALL, 101) == []
    (reply,) = desk.replies
    assert "Call No 101 is already closed and has not been updated." in reply.body


def test_thread_reply_updates_the_call_we_wrote_about(desk: Desk) -> None:
    """DESIGN 4: a reply whose In-Reply-To holds a Message-ID we sent updates that record, even
    when the client dropped the subject token."""
    desk.set(auto_reply=True)
    desk.mail("[CALL#100] first")
    ours = desk.replies[0].message_id
    decision = desk.mail("Re: thanks", headers=[("In-Reply-To", ours)], body="Solved.")
    assert decision.rule == "UC-4"
    assert decision.command.source.value == "thread"
    assert desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)[-1].strip() == "Solved."


def test_update_by_analyst(desk: Desk) -> None:
    """Any recognised person may update a call by email (the spec names no restriction)."""
    decision = desk.mail("Call 100 has been updated", sender=ALICE.email, body="On site now")
    assert decision.rule == "UC-4"


def test_a_mailbox_with_a_partition_updates_the_calls_it_logged(desk: Desk) -> None:
    """ "The call template will determine the call properties such as the partition" and "To
    update an existing call by email, send an email to a ASM Core incoming email account with
    a recognized subject heading and the call number." A mailbox limited to a partition whose
    call template names none logs its calls in that partition, so an answer to "Call n has
    been logged" updates call n instead of logging yet another call."""
    desk.set(
        partition="Service",
        call_template=attrs.evolve(TEMPLATE, partition=""),
        auto_reply=True,
        log_new_call_on_invalid_number=True,
    )
    desk.mail("Scanner offline", body="The scanner is offline.")
    logged = desk.newest_call()
    assert logged.partition == "Service"
    (ack,) = desk.replies
    decision = desk.mail(f"Re: {ack.subject}", body="It is back now.")
    assert decision.rule == "UC-4"
    assert desk.newest_call().number == logged.number
    assert desk.texts(EntityKind.CALL, logged.number, EntryKind.HISTORY)[-1].strip() == (
        "It is back now."
    )


def test_an_encrypted_update_says_so_in_the_history(desk: Desk) -> None:
    """ "The body of the incoming email is added to the history of the specified call.": an
    encrypted body cannot be read here, and the history entry says so."""
    armored = "-----BEGIN PGP MESSAGE-----\n\nhQEMA0made0up\n-----END PGP MESSAGE-----"
    desk.mail("[CALL#100] more detail", body=armored)
    (text,) = desk.texts(EntityKind.CALL, 100, EntryKind.HISTORY)
    assert text.endswith(ENCRYPTED_NOTICE.format(what="PGP"))
