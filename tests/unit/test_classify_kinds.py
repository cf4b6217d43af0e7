"""Issue 9, "Robots taken for people" and "People taken for robots": one test per kind.

Every input is written here (no corpus file, no personal data); each is a kind the issue names,
shaped like the mail of that kind, so the test checks the kind and not one sample of it.
"""

from __future__ import annotations

import base64

import pytest

from asm_email_rules.classify import MailKind, classify
from asm_email_rules.intake import parse_message
from asm_email_rules.model import InboundEmail


def mail(*headers: str, body: str = "Hello\n") -> InboundEmail:
    raw = "\r\n".join(headers) + "\r\n\r\n" + body.replace("\n", "\r\n")
    return parse_message(raw.encode("utf-8"))


def kind_of(*headers: str, body: str = "Hello\n") -> MailKind:
    return classify(mail(*headers, body=body)).kind


# =========================================================================== robots

ARF = """\
--arf
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.7.

--arf
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <help@desk.example>
Source-IP: 192.0.2.7

--arf
Content-Type: text/rfc822-headers

From: help@desk.example
Subject: Call 12 has been logged

--arf--
"""


def test_feedback_report_is_machine_mail() -> None:
    result = classify(
        mail(
            "From: fbl@isp.example",
            "To: abuse@desk.example",
            "Subject: FW: Call 12 has been logged",
            "MIME-Version: 1.0",
            'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"',
            body=ARF,
        )
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert result.reasons[0] == "feedback report (RFC 5965 ARF: abuse/complaint report)"


def test_feedback_report_part_without_report_type() -> None:
    # Some reporters send multipart/mixed with the message/feedback-report part only.
    assert (
        kind_of(
            "From: Complaints <complaints@isp.example>",
            "Subject: Abuse report",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="arf"',
            body=ARF,
        )
        is MailKind.AUTO_GENERATED
    )


def test_hotmail_style_complaint_without_feedback_report() -> None:
    body = (
        "--jmrp\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n"
        "X-HmXmrOriginalRecipient: someone@mail.example\n"
        "From: Service Desk <help@desk.example>\nSubject: Call 3 has been updated\n\n"
        "Call 3 has been updated.\n--jmrp--\n"
    )
    result = classify(
        mail(
            "From: staff@webmail.example",
            "Subject: complaint about message from 192.0.2.44",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="jmrp"',
            body=body,
        )
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert any("X-HmXmrOriginalRecipient" in reason for reason in result.reasons)


def test_dmarc_aggregate_report() -> None:
    archive = base64.encodebytes(b"PK\x03\x04 not really a zip").decode("ascii")
    name = "mx.example.net!desk.example!1735689600!1735775999.zip"
    result = classify(
        mail(
            "From: noreply-dmarc-support via Desk <reports@desk.example>",
            "Subject: Report domain: desk.example Submitter: mx.example.net Report-ID: 1234567890",
            "MIME-Version: 1.0",
            f'Content-Type: application/zip; name="{name}"',
            f'Content-Disposition: attachment; filename="{name}"',
            "Content-Transfer-Encoding: base64",
            body=archive,
        )
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert any("DMARC aggregate report" in reason for reason in result.reasons)


@pytest.mark.parametrize(
    ("sender", "subject", "footer"),
    [
        (
            "Cloud Alerts <no-reply@notifications.cloud.example>",
            "AWS Notification Message",
            "Please do not reply directly to this email.",
        ),
        (
            "CRM <donotreply@crm.example>",
            "New lead assigned to you",
            "This is an automated message. Replies to this email are not monitored.",
        ),
        (
            "Monitoring <alerts@monitor.example>",
            "[CRITICAL] disk full on web-01",
            "This notification was sent by the monitoring system.",
        ),
        (
            "Survey <surveys-noreply@survey.example>",
            "How did we do?",
            "This email was sent automatically, please do not reply.",
        ),
        (
            "Benachrichtigung <benachrichtigung@bank.example>",
            "Ihre Überweisung",
            "Dies ist eine automatisch erstellte Nachricht. Bitte antworten Sie nicht.",
        ),
        (
            "Notificaciones <notificaciones@banco.example>",
            "Transferencia recibida",
            "Este correo fue generado automáticamente, por favor no responda.",
        ),
    ],
)
def test_no_reply_notices(sender: str, subject: str, footer: str) -> None:
    # A robot's address (weak) and a notice footer (weak): machine mail.
    result = classify(
        mail(f"From: {sender}", f"Subject: {subject}", body=f"Details follow.\n\n{footer}\n")
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert any(reason.startswith("body reads like a machine notice") for reason in result.reasons)


def test_no_reply_address_alone_is_not_enough() -> None:
    result = classify(mail("From: no-reply@shop.example", "Subject: Your question", body="Hi.\n"))
    assert result.kind is MailKind.NORMAL


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        # Lotus Notes / HCL Domino
        (
            "AUTO: Jane Roe is out of the office (returning 10/03/2025)",
            "I am out of the office until 10/03/2025.\n\nI will respond to your message when"
            " I return.",
        ),
        # challenge-response
        (
            "Please confirm your message",
            "Hello, I protect my mailbox with a spam protection system. To have your message"
            " delivered, please click the link below to verify that you are a human.",
        ),
        # a challenge-response system answering a reply to us, in its own words
        (
            "Re: Call 100 has been updated [Please verify your email]",
            "Please verify that you are a human by clicking the link below. Your message"
            " will be delivered once you do.",
        ),
        # a ticket system's own acknowledgement
        (
            "[Ticket#2025030410000021] AutoReply: Printer broken",
            "Thank you for contacting us. Your ticket number is 2025030410000021; we will get"
            " back to you as soon as we can.",
        ),
        (
            "Automated Response: Re: Call 12 has been logged",
            "We have received your message. This is an automated response.",
        ),
    ],
)
def test_auto_replies_without_rfc3834_header(subject: str, body: str) -> None:
    result = classify(
        mail("From: Jane Roe <jane.roe@example.com>", f"Subject: {subject}", body=body + "\n")
    )
    assert result.kind is MailKind.AUTO_REPLY


def test_automated_response_from_a_no_reply_robot_is_an_auto_reply() -> None:
    # Issue 9: answering it made the robot answer back, and each round logged a call.
    result = classify(
        mail(
            "From: Support <no-reply@vendor.example>",
            "Subject: Automated Response: Re: Call 12 has been logged",
            body="Your request has been received.\n",
        )
    )
    assert result.kind is MailKind.AUTO_REPLY
    assert not result.may_auto_reply


# --------------------------------------------------------------------------- text bounces


@pytest.mark.parametrize(
    ("headers", "body", "status_class"),
    [
        (  # a carrier's SMS gateway: post_master, a "Re:" subject, no DSN
            ("From: post_master@sms.carrier.example", "Subject: Re:Call 12 has been logged"),
            "Error: Invalid user address\n\nError message below:\n"
            "550 - Requested action not taken: no such user here\n",
            5,
        ),
        (  # "Mail.Delivery.System@" and a multipart/report with no delivery-status part
            (
                "From: Mail Delivery System <Mail.Delivery.System@mx.example.net>",
                "Subject: Delivery status notification",
            ),
            "Delivery to the following recipients failed permanently:\n\n"
            "SMTP:RCPT host 192.0.2.8: 553 5.3.0 <ghost@example.net>... No such user here\n",
            5,
        ),
        (  # an antivirus gateway (a report's null reverse-path, RFC 5321 4.5.5)
            (
                "Return-Path: <>",
                "From: antivirus@gateway.example.net",
                "Subject: Virus found in message",
            ),
            "The message you sent to ghost@example.net was not delivered because it"
            " contained a virus.\n",
            5,
        ),
        (  # a delay advisory (no code at all)
            ("From: postmaster@mx.example.net", "Subject: Delivery delayed: Call 12"),
            "Your message has not yet been delivered. The server will continue to retry"
            " for 4 days.\n",
            4,
        ),
        (  # a report whose text starts with blank lines
            ("From: MAILER-DAEMON@mx.example.net", "Subject: Returned mail"),
            "\n\n\n   ----- The following addresses had permanent fatal errors -----\n"
            "<ghost@example.net>\n    (reason: 550 5.1.1 User unknown)\n",
            5,
        ),
        (  # Japanese carrier NDR from a no-reply address
            ("From: no-reply@mail.carrier.example", "Subject: メールエラー通知"),
            "送信先のメールボックスが一杯のため、送信できませんでした。\n",
            5,
        ),
        (  # German gateway (a report's null reverse-path, RFC 5321 4.5.5)
            (
                "Return-Path: <>",
                "From: Mailsystem <mailsystem@example.de>",
                "Subject: Unzustellbar: Anfrage",
            ),
            "Ihre Nachricht konnte nicht zugestellt werden.\nEmpfänger unbekannt.\n",
            5,
        ),
    ],
)
def test_plain_text_delivery_failures(
    headers: tuple[str, ...], body: str, status_class: int
) -> None:
    result = classify(mail(*headers, body=body))
    assert result.kind is MailKind.BOUNCE
    assert result.bounce is not None
    assert result.bounce.status_class == status_class
    assert result.bounce.permanent is (status_class == 5)


def test_exim_delay_warning_with_auto_replied_is_a_delay_bounce() -> None:
    result = classify(
        mail(
            "Return-Path: <>",
            "Auto-Submitted: auto-replied",
            "From: Mail Delivery System <Mailer-Daemon@mx.example.net>",
            "Subject: Warning: message 1tHxyz-000abc-7Q delayed 24 hours",
            body=(
                "This message was created automatically by mail delivery software.\n"
                "A message that you sent has not yet been delivered to one or more of its\n"
                "recipients after more than 24 hours on the queue on mx.example.net.\n\n"
                "  ghost@example.net\n    host mail.example.net [192.0.2.9]\n"
                "    SMTP error from remote mail server after RCPT TO:<ghost@example.net>:\n"
                "    451 Temporary local problem - please try later\n\n"
                "No action is required on your part. Delivery attempts will continue for\n"
                "some time, and this warning may be repeated at intervals.\n"
            ),
        )
    )
    assert result.kind is MailKind.BOUNCE
    assert result.bounce is not None
    assert (result.bounce.status_class, result.bounce.smtp_code) == (4, 451)
    assert not result.bounce.permanent


def test_dsn_status_class_follows_status_over_action() -> None:
    # A soft bounce: Action says failed, Status says 4.x.x (RFC 3463 class 4: persistent
    # transient failure).
    body = (
        "--r\nContent-Type: text/plain\n\nDelivery failed.\n"
        "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; full@example.net\nAction: failed\nStatus: 4.2.2\n"
        "--r--\n"
    )
    result = classify(
        mail(
            "From: MAILER-DAEMON@mx.example.net",
            "Subject: Undelivered Mail Returned to Sender",
            'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
            body=body,
        )
    )
    assert result.bounce is not None
    assert (result.bounce.action, result.bounce.status_class) == ("failed", 4)


def test_success_dsn_is_not_a_bounce() -> None:
    body = (
        "--r\nContent-Type: text/plain\n\nYour message was delivered.\n"
        "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; bob@example.net\nAction: delivered\nStatus: 2.0.0\n"
        "--r--\n"
    )
    result = classify(
        mail(
            "From: MAILER-DAEMON@mx.example.net",
            "Subject: Successful Mail Delivery Report",
            'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
            body=body,
        )
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert result.bounce is None


# --------------------------------------------------------------------------- lists


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (("From: Alice <alice@example.org>", "Mailing-List: contact help@groups.example"), "Hi"),
        (
            (
                "From: Alice <alice@example.org>",
                "Sender: owner-users@lists.example.org",
                "Subject: Re: kernel panic",
            ),
            "Hi",
        ),
        (
            (
                "From: Alice <alice@example.org>",
                "Sender: Discussion list <USERS-L@LISTSERV.EXAMPLE.EDU>",
            ),
            "Hi",
        ),
        (
            (
                "From: users-request@lists.example.org",
                "Subject: Users Digest, Vol 12, Issue 3",
                "X-Mailer: Mailman",
            ),
            "Send Users mailing list submissions to\n\tusers@lists.example.org\n",
        ),
        (("From: Alice <alice@example.org>", "Precedence: bulk"), "Hi"),
    ],
)
def test_list_mail_by_each_marker(headers: tuple[str, ...], body: str) -> None:
    assert kind_of(*headers, body=body + "\n") is MailKind.LIST


@pytest.mark.parametrize(
    "headers",
    [
        (  # a list manager's loop alert to the list's admin address
            "From: staff-admin@lists.example.org",
            "To: staff-admin@lists.example.org",
            "Subject: Loop Alert: Duplicated Message-ID (staff ML)",
            "X-MLServer: fml [fml 4.0.3 release]",
        ),
        (  # a moderation request to the list's owners
            "From: staff-bounces@lists.example.org",
            "To: staff-owner@lists.example.org",
            "Subject: Staff post from someone@example.com requires approval",
            "X-Mailman-Version: 2.1.39",
        ),
        (  # Mailman marks its notices so
            "From: staff-bounces@lists.example.org",
            "To: someone@example.com",
            "Subject: Your message to Staff awaits moderator approval",
            "X-List-Administrivia: yes",
        ),
    ],
)
def test_a_list_software_s_own_notice_is_machine_mail_not_a_post(headers: tuple[str, ...]) -> None:
    """classification.md: list mail is a post distributed to members; a notice the list
    software writes to the list's owner or to a sender (X-List-Administrivia, or a
    list-manager header on mail to an owner address) is machine-generated mail."""
    assert kind_of(*headers, body="Notice body\n") is MailKind.AUTO_GENERATED


def test_a_post_to_a_list_with_a_list_manager_header_stays_list_mail() -> None:
    posted = kind_of(
        "From: Alice <alice@example.org>",
        "To: staff@lists.example.org",
        "Subject: Printer on floor 3",
        "X-MLServer: fml [fml 4.0.3 release]",
        body="Is anyone else seeing this?\n",
    )
    assert posted is MailKind.LIST


# =========================================================================== people


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: my calendar shows the wrong hours",
        "Absence: how do I record my parental leave?",
        "Automatic reply: how do I turn it off in Outlook?",
    ],
)
def test_person_asking_about_out_of_office_settings(subject: str) -> None:
    result = classify(
        mail(
            "From: Jane Roe <jane.roe@example.com>",
            "To: help@desk.example",
            f"Subject: {subject}",
            body="Hello,\n\nsince the update the setting does not stick. Can you help?\n\nJane\n",
        )
    )
    assert result.kind is MailKind.NORMAL
    assert result.may_auto_reply


def test_mail_forwarded_by_the_senders_inbox_rule_is_a_person() -> None:
    result = classify(
        mail(
            "From: Jane Roe <jane.roe@example.com>",
            "To: help@desk.example",
            "Subject: FW: VPN does not connect",
            "X-MS-Exchange-Inbox-Rules-Loop: jane.roe@example.com",
            "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
            body="The VPN client says 'server unreachable' since this morning.\n",
        )
    )
    assert result.kind is MailKind.NORMAL
    assert any("inbox rule" in reason for reason in result.reasons)


def test_person_writing_from_a_postmaster_address() -> None:
    result = classify(
        mail(
            "From: Bob Admin <postmaster@example.com>",
            "Subject: Please enjoy this long link",
            body="Hi team, here is the link we talked about.\n",
        )
    )
    assert result.kind is MailKind.NORMAL


def test_person_forwarding_a_bounce_is_a_person() -> None:
    result = classify(
        mail(
            "From: Jane Roe <jane.roe@example.com>",
            "Subject: Fwd: Undeliverable: Quarterly report",
            body=(
                "Why does this keep bouncing?\n\n"
                "---------- Forwarded message ---------\n"
                "From: postmaster@example.net\n"
                "Delivery has failed to these recipients or groups:\n"
                "550 5.1.1 User unknown\n"
            ),
        )
    )
    assert result.kind is MailKind.NORMAL


@pytest.mark.parametrize(
    ("sender", "body"),
    [
        ("Monitoring <nagios@monitor.example>", "PROBLEM: disk /var on web-01 is CRITICAL\n"),
        ("Web form <www-data@web.example>", "Name: Jane Roe\nMessage: my laptop is broken\n"),
    ],
)
def test_auto_generated_alerts_and_forms_are_machine_mail(sender: str, body: str) -> None:
    # Classified as machine mail; DESIGN 4: such mail still logs calls (decide), no replies.
    result = classify(
        mail(f"From: {sender}", "Subject: Alert", "Auto-Submitted: auto-generated", body=body)
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert not result.may_auto_reply


def test_evidence_is_returned_with_weights() -> None:
    result = classify(
        mail("From: no-reply@cloud.example", "Subject: Notice", body="Please do not reply.\n")
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert result.score == 2
    assert sorted((s.source, s.weight) for s in result.evidence) == [("body", 1), ("sender", 1)]


PEOPLE_WRITING_ABOUT_BOUNCES = [
    (
        "Subject: Returned mail",
        "Hi, I got returned mail from the supplier saying the message"
        " could not be delivered. Why?\n",
    ),
    (
        "Subject: Undeliverable: lunch",
        "Why is my mail to Bob undeliverable? It says 550 user unknown\n",
    ),
    (
        "Subject: Mail delivery failed",
        "Every mail I send to the Leeds office comes back with"
        " 'delivery has failed'. Can you look?\n",
    ),
    (
        "Subject: Unzustellbar",
        "Meine Nachricht an die Buchhaltung konnte nicht zugestellt werden. Empfänger unbekannt?\n",
    ),
]


@pytest.mark.parametrize(("subject", "body"), PEOPLE_WRITING_ABOUT_BOUNCES)
def test_a_person_writing_about_a_bounce_in_subject_and_body_is_a_person(
    subject: str, body: str
) -> None:
    # The subject and the body are both the writer's words: one clue, not two. Taken for a
    # bounce, the message was deleted with no call and no reply (GATE-1).
    result = classify(mail("From: Uma User <uma@example.org>", subject, body=body))
    assert result.kind is MailKind.NORMAL
    assert any("weak evidence only (1 of 2" in reason for reason in result.reasons)


PEOPLE_WITH_A_RELAY_CLUE_WRITING_ABOUT_DELIVERY = {
    "team-mailbox-parcel": (
        ("From: Sam Admin <sysadmin@corp.example>", "Subject: toner order"),
        "Hi, the toner we ordered on Monday was not delivered yet. Can you chase it?\n",
    ),
    "forwarder-loop-header-gmail-error": (
        ("From: Uma User <uma@corp.example>", "X-Loop: fwd@corp.example", "Subject: finance"),
        "My mail to finance comes back with 'Message not delivered'. Can you check?\n",
    ),
    "forwarder-loop-header-temporary-problem": (
        ("From: Uma User <uma@corp.example>", "X-Loop: fwd@corp.example", "Subject: finance"),
        "Gmail says there was a temporary problem delivering my message. Why?\n",
    ),
    "team-mailbox-parcel-ja": (
        ("From: Sam Admin <sysadmin@corp.example>", "Subject: トナー"),
        "トナーの配送が遅延しています。確認してください。\n",
    ),
    "web-form-customer-text": (
        ("From: www-data@shop.example", "Subject: Contact form"),
        "Message: my order 7781 was not delivered, please help\n",
    ),
}


@pytest.mark.parametrize(
    ("headers", "body"),
    PEOPLE_WITH_A_RELAY_CLUE_WRITING_ABOUT_DELIVERY.values(),
    ids=PEOPLE_WITH_A_RELAY_CLUE_WRITING_ABOUT_DELIVERY.keys(),
)
def test_delivery_talk_with_only_a_relay_or_team_clue_is_no_bounce(
    headers: tuple[str, ...], body: str
) -> None:
    # DESIGN 4: a bounce is deleted at once, "no call, no reply"; the person's words about a
    # delivery, with a team mailbox's From or a forwarder's X-Loop (no null Return-Path, no
    # mailer-daemon, no Auto-Submitted, no report), were taken for one and the request lost.
    result = classify(mail(*headers, body=body))
    assert result.kind is not MailKind.BOUNCE
    assert result.bounce is None
    assert any("unconfirmed" in reason for reason in result.reasons)


def test_delivery_talk_from_a_team_mailbox_with_a_null_return_path_is_a_bounce() -> None:
    # the mail system's own clue (Return-Path: <>) confirms the words: still a bounce
    result = classify(
        mail(
            "Return-Path: <>",
            "From: Mail System <system@mx.example.net>",
            "Subject: Delivery delayed",
            body="Your message was not delivered yet; we will keep trying for 2 days.\n",
        )
    )
    assert result.kind is MailKind.BOUNCE


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (  # a bounce subject and a body that quotes a robot's address
            "Subject: Undeliverable mail",
            "Every mail I send to Leeds comes back from a noreply address. Why?\n",
        ),
        (  # a bounce subject and a body that reads like an auto-reply
            "Subject: Undeliverable",
            "I am out of the office next week and will return on Monday; my mails to Bob"
            " bounce. Please fix before I leave.\n",
        ),
        (  # an out-of-office subject and a bounce sentence in the body
            "Subject: Out of office reply not delivered",
            "My automatic reply could not be delivered to Bob: user unknown.\n",
        ),
    ],
)
def test_whatever_else_the_writer_says_about_a_bounce_is_the_same_one_clue(
    subject: str, body: str
) -> None:
    result = classify(mail("From: Uma User <uma@example.org>", subject, body=body))
    assert result.kind is MailKind.NORMAL, result.reasons


def test_a_person_attaching_the_mail_that_came_back_is_a_person() -> None:
    raw = (
        b"From: Uma User <uma@example.org>\r\nSubject: Returned mail\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nThis came back, see attached. Why?\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n\r\n"
        b"550 5.1.1 user unknown\r\n--b--\r\n"
    )
    assert classify(parse_message(raw)).kind is MailKind.NORMAL


def test_a_gateway_notice_with_no_clue_but_its_words_is_now_taken_for_a_person() -> None:
    # The trade, recorded: an antivirus gateway that writes from an ordinary address with a
    # non-null reverse-path (RFC 5321 4.5.5 asks a null one of delivery reports only) gives
    # nothing but its subject and body. Taken for a person, it logs a call an analyst can
    # close (its replies bounded by the reply budget); the other way round, a person's
    # question about a bounce was deleted with no reply.
    result = classify(
        mail(
            "From: antivirus@gateway.example.net",
            "Subject: Virus found in message",
            body="The message you sent to ghost@example.net was not delivered because it"
            " contained a virus.\n",
        )
    )
    assert result.kind is MailKind.NORMAL


@pytest.mark.parametrize(("subject", "body"), PEOPLE_WRITING_ABOUT_BOUNCES)
def test_the_same_words_with_a_clue_no_writer_types_are_a_bounce(subject: str, body: str) -> None:
    for clue in ("Return-Path: <>", "From: MAILER-DAEMON@mx.example.net"):
        headers = [clue, subject]
        if not clue.startswith("From:"):
            headers.insert(0, "From: Uma User <uma@example.org>")
        assert classify(mail(*headers, body=body)).kind is MailKind.BOUNCE, (clue, subject)


def test_body_is_not_read_when_nothing_else_points_at_a_machine() -> None:
    # A person pasting bounce text into a message: the body alone is one weak signal at most.
    result = classify(
        mail(
            "From: Jane Roe <jane.roe@example.com>",
            "Subject: mail to Bob fails",
            body="I get 'Delivery has failed: 550 5.1.1 user unknown'. Please check.\n",
        )
    )
    assert result.kind is MailKind.NORMAL
    assert result.evidence == ()


def test_report_saved_with_a_byte_order_mark_is_still_read() -> None:
    raw = (
        "\ufeffFrom: fbl@isp.example\r\nSubject: FW: Call 12\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"\r\n\r\n'
        + ARF.replace("\n", "\r\n")
    ).encode("utf-8")
    email = parse_message(raw)
    assert email.sender == "fbl@isp.example"
    assert [note.kind.value for note in email.notes] == ["byte_order_mark"]
    assert classify(email).kind is MailKind.AUTO_GENERATED


def test_adversarial_bodies_stay_fast() -> None:
    import time

    lines = ["-" * 5000, "From: x\nSent: y", "smtp; " * 800, "550 " * 2000, "> quoted"]
    for line in lines:
        body = (line + "\n") * (400_000 // (len(line) + 1))
        email = mail("From: no-reply@cloud.example", "Subject: Undeliverable", body=body)
        start = time.process_time()  # CPU time of this process: a loaded machine does not count
        classify(email)
        assert time.process_time() - start < 0.5, line[:20]


# ------------------------------------------- robots known by who they are, without headers

EXCHANGE_SYSTEM = (
    "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@corp.example>"
)


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Unzustellbar: Angebot", "Ihre Nachricht konnte nicht zugestellt werden.\n550 5.1.1"),
        ("Non remis : Devis", "Votre message n'a pas pu être remis.\n550 5.1.1 inconnu"),
        ("Onbestelbaar: Offerte", "Uw bericht kan niet worden bezorgd.\n550 5.1.1 onbekend"),
        ("Undeliverable: Quote", "Delivery has failed to these recipients or groups:\n"),
    ],
)
def test_exchange_system_mailbox_text_ndr_is_a_bounce(subject: str, body: str) -> None:
    """An Exchange NDR that lost its report structure on the way (plain text, the
    recipient's language) still comes from the organisation's system mailbox, which no
    person writes from: it was taken for a person, logged a call and was answered."""
    assert kind_of(f"From: {EXCHANGE_SYSTEM}", f"Subject: {subject}", body=body) is (
        MailKind.BOUNCE
    )


@pytest.mark.parametrize(
    ("sender", "subject"),
    [
        ("Cron Daemon <backup@app01.corp.example>", "Cron <backup@app01> /opt/backup/run.sh"),
        ("root@app01.corp.example (Cron Daemon)", "Cron <root@app01> test -x /usr/sbin/x"),
        ("nagios@mon.corp.example", "** PROBLEM Service Alert: web01/HTTP is CRITICAL **"),
        ("icinga@mon.corp.example", "** RECOVERY Host Alert: db02 is UP **"),
        ("alertmanager@corp.example", "[FIRING:2] InstanceDown (node prod)"),
    ],
)
def test_cron_and_monitoring_mail_without_headers_is_machine_mail(
    sender: str, subject: str
) -> None:
    """Cron and Nagios/Icinga/Alertmanager send no Auto-Submitted; their robot address and
    their subject format are two clues (before: one, so each got a "has been logged" reply)."""
    assert kind_of(f"From: {sender}", f"Subject: {subject}", body="rsync: failed\n") is (
        MailKind.AUTO_GENERATED
    )


@pytest.mark.parametrize(
    "subject",
    [
        "Re: ** PROBLEM Service Alert: web01/HTTP is CRITICAL **",
        "Cron <root@app01> keeps mailing me",
        "[FIRING:1] alert in my inbox, what is it?",
    ],
)
def test_a_person_quoting_a_monitoring_subject_is_a_person(subject: str) -> None:
    """DESIGN 4: a subject alone never makes a message automatic."""
    assert kind_of("From: Pat Example <pat@corp.example>", f"Subject: {subject}") is (
        MailKind.NORMAL
    )


@pytest.mark.parametrize(
    ("header", "sender", "subject"),
    [
        (
            "X-GitHub-Reason: subscribed",
            "Octo Bot <notifications@github.example>",
            "Re: [org/app] Login fails (#42)",
        ),
        ("X-GitLab-Project: app", "GitLab <gitlab@git.example>", "app | Pipeline failed for main"),
        (
            "X-Bugzilla-Reason: AssignedTo",
            "bugzilla-daemon@bugs.example",
            "[Bug 1234] Crash on save",
        ),
        (
            "X-JIRA-FingerPrint: 8f1c2d",
            "Jira <jira@corp.example>",
            "[JIRA] (OPS-7) Disk almost full",
        ),
        (
            "X-ServiceNow-Source: Notification",
            "ServiceNow <instance@service-now.example>",
            "Incident INC0012345 has been assigned to your group",
        ),
        (
            "X-Zendesk-From-Account-Id: 1a2b3c",
            "Vendor Support <support@vendor.example>",
            "[Vendor] Re: Printer driver",
        ),
    ],
)
def test_notifications_of_ticket_issue_and_alert_systems_are_machine_mail(
    header: str, sender: str, subject: str
) -> None:
    # Such notifications often carry no Auto-Submitted or Precedence: with one weak clue at
    # most they were taken for a person's mail, logged as a call and answered ("has been
    # logged"), which another desk's notification system answers in turn.
    result = classify(
        mail(f"From: {sender}", f"Subject: {subject}", header, body="A comment was added.\n")
    )
    assert result.kind is MailKind.AUTO_GENERATED
    assert not result.may_auto_reply


def test_a_notification_a_person_forwards_is_the_person_s() -> None:
    # the system's header is in the attached copy, not at the top of the person's mail
    inner = "X-ServiceNow-Source: Notification\nFrom: instance@service-now.example\n\nAssigned."
    raw = mail(
        "From: Uma User <uma@corp.example>",
        "Subject: Fwd: Incident INC0012345 has been assigned to your group",
        'Content-Type: multipart/mixed; boundary="b"',
        body=f"--b\nContent-Type: text/plain\n\nWhy did this come to me?\n--b\n"
        f"Content-Type: message/rfc822\n\n{inner}\n--b--\n",
    )
    assert classify(raw).kind is MailKind.NORMAL
