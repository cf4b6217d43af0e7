"""Spec: "Logging a Call with Email" and the four person cases."""

from __future__ import annotations

from asm_email_rules.model import EntityKind, EntityRef, EntryKind, Person
from asm_email_rules.rules import ENCRYPTED_NOTICE, ENCRYPTED_REPLY_LINE
from asm_email_rules.sample import ALICE, BOB, DANA, TEMPLATE, UMA

from .conftest import Desk


def test_unrecognised_subject_logs_a_call(desk: Desk) -> None:
    """ "If the messaging service picks up an incoming email but does not recognize the email's
    subject line, ASM Core will log a call based on the details of that email." """
    decision = desk.mail("My monitor flickers", body="It flickers since Monday.")
    assert decision.rule == "LOG-6"
    call = desk.newest_call()
    assert call.number == 103
    assert call.user_id == UMA.id
    assert call.description.strip() == "It flickers since Monday."


def test_next_number_body_description_and_template_properties(desk: Desk) -> None:
    """ "The next available number is assigned to that call and the body of the email is
    automatically entered as the description." / "The call will use the call template
    specified for the mail server that picked up the incoming email." """
    desk.mail("Keyboard", body="Keys stick.")
    desk.mail("Mouse", body="Mouse is dead.")
    first, second = desk.call(103), desk.call(104)
    assert (first.description.strip(), second.description.strip()) == (
        "Keys stick.",
        "Mouse is dead.",
    )
    assert second.partition == TEMPLATE.partition
    assert second.owner_id == TEMPLATE.assigned_analyst_id
    assert second.group == TEMPLATE.assigned_group


def test_case1_unknown_sender_with_create_anonymously_creates_a_user(desk: Desk) -> None:
    """Case 1: "a new User record is created (that is, a new person record flagged as a User)
    and the call is logged with this User specified in the User field. The logging analyst is
    set to the analyst specified in the Default Logging Analyst field" """
    desk.set(create_calls_anonymously=True)
    decision = desk.mail("Help", sender="Nina New <nina@else.example>")
    assert decision.rule == "LOG-2"
    assert decision.action_kinds()[:2] == ("create_user", "log_call")
    (person,) = desk.repo.persons_by_address("nina@else.example")
    assert person.is_user
    assert not person.is_analyst
    call = desk.newest_call()
    assert call.user_id == person.id
    assert call.logging_analyst_id == DANA.id


def test_a_default_logging_analyst_id_that_names_a_customer_is_not_used(desk: Desk) -> None:
    """Case 1: "The logging analyst is set to the analyst specified in the Default Logging
    Analyst field": an id that names a User who is no analyst is not an analyst, so a customer
    never becomes the logging analyst of every call logged by email (settings built in code
    have no ``asm-email-rules check`` at start)."""
    desk.set(create_calls_anonymously=True, default_logging_analyst_id=UMA.id)
    decision = desk.mail("Help", sender="Nina New <nina@else.example>")
    assert decision.rule == "LOG-2"
    assert desk.newest_call().logging_analyst_id is None
    assert any(
        f"(person {UMA.id}) is not an analyst" in r and r.endswith("without a logging analyst")
        for r in decision.reasons
    )
    desk.set(default_logging_analyst_id=999)  # nobody
    desk.mail("Help again", sender="nina@else.example")
    assert desk.newest_call().logging_analyst_id is None
    decision = desk.mail("Server down", sender=ALICE.email)  # an analyst logs it, as with none
    assert desk.newest_call().logging_analyst_id == ALICE.id
    why = [r for r in decision.reasons if "Logging Analyst" in r]
    assert why == [
        "the Default Logging Analyst (person 999) is not an analyst in the store"
        " (`asm-email-rules check` names the fix): the sending analyst logs the call"
    ]


def test_case1_unknown_sender_without_create_anonymously_logs_nothing(desk: Desk) -> None:
    """ "If the Create New Calls Anonymously option is not selected for the incoming email
    account, a call is not created." """
    decision = desk.mail("Help", sender="nina@else.example")
    assert decision.rule == "LOG-3"
    assert desk.repo.get_call(103) is None
    assert desk.repo.persons_by_address("nina@else.example") == []
    assert desk.replies == []


def test_case2_analyst_only_default_logging_analyst(desk: Desk) -> None:
    """Case 2: "If the Use Linked Analyst option is not selected ..., the logging analyst is set
    to the analyst specified in the Default Logging Analyst field" and "the call is logged
    with this person specified in the User field" """
    decision = desk.mail("Server down", sender=ALICE.email)
    assert decision.rule == "LOG-5"
    call = desk.newest_call()
    assert (call.user_id, call.logging_analyst_id) == (ALICE.id, DANA.id)


def test_case2_analyst_only_linked_analyst(desk: Desk) -> None:
    """Case 2: "If the Use Linked Analyst option is selected for the incoming email account,
    the logging analyst is set to the person who sent the email." """
    desk.set(use_linked_analyst=True)
    desk.mail("Server down", sender=ALICE.email)
    call = desk.newest_call()
    assert (call.user_id, call.logging_analyst_id) == (ALICE.id, ALICE.id)


def test_case2_analyst_gets_user_flag(desk: Desk) -> None:
    """ "If an analyst logs a call by incoming email and he is not already a User, the User flag
    will be selected on the analyst's person record" """
    decision = desk.mail("Server down", sender=ALICE.email)
    assert "set_user_flag" in decision.action_kinds()
    person = desk.repo.get_person(ALICE.id)
    assert person is not None
    assert person.is_user
    assert person.is_analyst


def test_case3_user_only_always_default_logging_analyst(desk: Desk) -> None:
    """Case 3 (missing from the spec; DESIGN 4): the logging analyst is always the Default
    Logging Analyst, whatever Use Linked Analyst says."""
    desk.set(use_linked_analyst=True)
    decision = desk.mail("Printer", sender=UMA.email)
    assert decision.rule == "LOG-6"
    call = desk.newest_call()
    assert (call.user_id, call.logging_analyst_id) == (UMA.id, DANA.id)
    assert "set_user_flag" not in decision.action_kinds()


def test_case4_analyst_and_user_default_and_linked(desk: Desk) -> None:
    """Case 4: the person is the User; the logging analyst is the Default Logging Analyst
    without Use Linked Analyst and the sender with it."""
    decision = desk.mail("Laptop", sender=BOB.email)
    assert decision.rule == "LOG-8"
    assert desk.newest_call().logging_analyst_id == DANA.id
    desk.set(use_linked_analyst=True)
    decision = desk.mail("Laptop again", sender=BOB.email)
    assert decision.rule == "LOG-7"
    assert desk.newest_call().logging_analyst_id == BOB.id
    assert "set_user_flag" not in decision.action_kinds()


def test_attachments_use_the_unspecified_profile(desk: Desk) -> None:
    """ "Any objects attached to an incoming email will use the Unspecified security profile when
    added as an object on the logged call. The history entry that is recorded about attaching
    this object will also use the Unspecified security profile." """
    desk.mail("Screenshot", attachments=[("error.png", b"\x89PNG-data")])
    entries = desk.entries(EntityKind.CALL, desk.newest_call().number)
    attached = [item for item in entries if item.kind is EntryKind.ATTACHMENT]
    assert [item.security_profile for item in attached] == ["Unspecified"]
    assert "error.png" in attached[0].text


def test_renamed_unspecified_profile_is_used(desk: Desk) -> None:
    """ "If you have renamed the Unspecified profile, that name will be reflected instead." """
    desk.set_system(unspecified_profile_name="Public")
    desk.mail("Screenshot", attachments=[("error.png", b"data")])
    entries = desk.entries(EntityKind.CALL, desk.newest_call().number)
    assert {item.security_profile for item in entries if item.kind is EntryKind.ATTACHMENT} == {
        "Public"
    }


def test_logged_call_acknowledged_only_with_auto_reply(desk: Desk) -> None:
    """DESIGN 4b: "Call <n> has been logged" is a routine acknowledgement under the auto-reply
    switch, and carries [CALL#n] so follow-ups thread."""
    desk.mail("No reply please")
    assert desk.replies == []
    desk.set(auto_reply=True)
    desk.mail("Reply please")
    (reply,) = desk.replies
    assert reply.subject == "Call 104 has been logged [CALL#104]"
    assert reply.to == UMA.email


def test_a_contact_sharing_an_analysts_address_is_recorded_as_ambiguous(desk: Desk) -> None:
    """Case 2: "If an email is sent from an address which corresponds to an existing analyst
    ... the call is logged with this person specified in the User field." DESIGN 4: "Several
    persons with one address: the lowest id wins, and the decision records the ambiguity." A
    contact record (neither flag) with a lower id identifies nobody, but it shares the address
    all the same: the decision says so, and which record acted."""
    desk.repo.put_person(Person(40, "shared@corp.example", "Old Contact"))
    desk.repo.put_person(Person(41, "Shared@Corp.example", "Sam Analyst", is_analyst=True))
    decision = desk.mail("Docking station dead", sender="shared@corp.example")
    assert decision.rule == "LOG-5"
    assert desk.newest_call().user_id == 41
    (line,) = [reason for reason in decision.reasons if "share" in reason]
    assert line.startswith("2 person records share shared@corp.example;")
    assert "(41)" in line


def test_files_inside_an_outlook_winmail_dat_are_attached_to_the_call(desk: Desk) -> None:
    """ "If there are any attachments to the email, they are added as objects attached to the
    call." Outlook's Rich Text mail carries its attachments inside one winmail.dat (TNEF) that
    nobody at the desk can open: the files inside are attached beside it."""
    pdf = b"%PDF-1.4\n% a made-up report\n"
    tnef = b"\x78\x9f\x3e\x22\x00\x00"
    for level, name, data in (
        (2, 0x00069002, b"\0" * 14),
        (2, 0x00018010, b"report.pdf\0"),
        (2, 0x0006800F, pdf),
    ):
        tnef += bytes([level]) + name.to_bytes(4, "little") + len(data).to_bytes(4, "little")
        tnef += data + (sum(data) % 65536).to_bytes(2, "little")
    desk.mail("Figures", body="See attached.", attachments=[("winmail.dat", tnef)])
    call = desk.newest_call()
    files = desk.repo.attachments(EntityRef(EntityKind.CALL, call.number))
    assert [(a.filename, a.data) for a in files] == [("winmail.dat", tnef), ("report.pdf", pdf)]


def test_a_forwarded_mail_attached_to_an_empty_mail_is_the_description(desk: Desk) -> None:
    """ "the body of the email is automatically entered as the description": a mail whose
    only content is a forwarded message attached (Outlook's "Forward as Attachment") has that
    message's text as its body, not an empty description."""
    forwarded = (
        b"From: Robin Sample <robin@example.net>\r\nSubject: Laptop will not boot\r\n\r\n"
        b"My laptop shows a black screen after the logo.\r\n"
    )
    desk.mail("FW: Laptop will not boot", body="", attachments=[("Laptop.eml", forwarded)])
    description = desk.newest_call().description
    assert "My laptop shows a black screen after the logo." in description
    assert "From: Robin Sample <robin@example.net>" in description


def test_an_encrypted_mail_logs_a_call_whose_description_says_so(desk: Desk) -> None:
    """ "the body of the email is automatically entered as the description": the body of an
    encrypted mail cannot be read here, and the description says so instead of giving the
    subject alone (or ciphertext) without a word; the "Call <n> has been logged"
    acknowledgement (DESIGN 4b) tells the sender."""
    armored = "-----BEGIN PGP MESSAGE-----\n\nhQEMA0made0up\n-----END PGP MESSAGE-----"
    desk.set(auto_reply=True)
    desk.mail("Password reset", body=armored)
    description = desk.newest_call().description
    assert ENCRYPTED_NOTICE.format(what="PGP") in description
    # the sender is told too: the acknowledgement does not let them think it was read
    (reply,) = desk.replies
    assert reply.body.rstrip().endswith(ENCRYPTED_REPLY_LINE)


def test_the_encrypted_mail_line_is_worded_by_the_mailbox(desk: Desk) -> None:
    """A desk that answers in its own language words every reply text itself
    (``reply_templates``): the line an acknowledgement of encrypted mail ends with is one of
    them, not an English sentence fixed in the code."""
    armored = "-----BEGIN PGP MESSAGE-----\n\nhQEMA0made0up\n-----END PGP MESSAGE-----"
    own = "Ihre Nachricht war verschlüsselt und konnte nicht gelesen werden."
    desk.set(auto_reply=True, reply_templates={"encrypted_unread.body": own})
    desk.mail("Passwort", body=armored)
    (reply,) = desk.replies
    assert reply.body.rstrip().endswith(own)
    assert ENCRYPTED_REPLY_LINE not in reply.body


def test_a_mail_that_only_names_or_quotes_pgp_armor_is_not_said_to_be_encrypted(
    desk: Desk,
) -> None:
    """ "the body of the email is automatically entered as the description": a person asking
    about the armor line they see, or quoting an encrypted mail below their own text, wrote
    in plain text. They were told their message "was encrypted and could not be read here",
    and the description said so under the text it had just shown."""
    desk.set(auto_reply=True)
    asked = "Every mail from the bank starts with '-----BEGIN PGP MESSAGE-----'. Why?"
    quoted = "Please decrypt this for me.\n\n> -----BEGIN PGP MESSAGE-----\n> hQEMA0made0up\n"
    for subject, body in (("Strange mail", asked), ("Decrypt", quoted)):
        desk.mail(subject, body=body)
        description = desk.newest_call().description
        assert description.rstrip() == body.rstrip()
        assert ENCRYPTED_REPLY_LINE not in desk.replies[-1].body
