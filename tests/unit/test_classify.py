"""Unit tests of classify: own mail, bounces, auto-replies, automatic and list mail."""

from __future__ import annotations

import pytest

from asm_email_rules.classify import MailKind, classify, parse_delivery_status
from asm_email_rules.intake import parse_message
from asm_email_rules.model import InboundEmail


def mail(*headers: str, body: str = "Hello\n") -> InboundEmail:
    raw = "\r\n".join(headers) + "\r\n\r\n" + body.replace("\n", "\r\n")
    return parse_message(raw.encode("utf-8"))


HUMAN = (
    "From: Jane Doe <jane@example.com>",
    "To: help@desk.example",
    "Subject: Printer broken",
    "Message-ID: <h1@example.com>",
)


def test_plain_human_mail_is_normal() -> None:
    result = classify(mail(*HUMAN))
    assert result.kind is MailKind.NORMAL
    assert not result.automatic
    assert result.may_auto_reply
    assert result.bounce is None


# --------------------------------------------------------------------------- own mail


def test_mail_from_our_own_address_is_own_mail() -> None:
    email = mail("From: Service Desk <HELP@desk.example>", "Subject: Call 12 has been logged")
    result = classify(email, own_addresses=("help@desk.example",))
    assert result.kind is MailKind.OWN_MAIL
    assert not result.may_auto_reply
    assert "HELP@desk.example is one of our own addresses" in result.reasons[0]


def test_loop_header_marks_own_mail_even_from_elsewhere() -> None:
    email = mail(*HUMAN, "X-ASM-Email-Rules-Loop: desk.example")
    result = classify(email)
    assert result.kind is MailKind.OWN_MAIL
    assert result.reasons[0] == "X-ASM-Email-Rules-Loop: desk.example (our loop header)"
    custom = mail(*HUMAN, "X-My-Loop: 1")
    assert classify(custom, loop_header="X-My-Loop").kind is MailKind.OWN_MAIL


# --------------------------------------------------------------------------- auto-replies


def test_outlook_out_of_office() -> None:
    email = mail(
        "From: Jane Doe <jane@example.com>",
        "To: help@desk.example",
        "Subject: Automatic reply: Call 12 has been logged",
        "Thread-Topic: Automatic reply: Call 12 has been logged",
        "Auto-Submitted: auto-generated",
        "X-Auto-Response-Suppress: All",
        "X-MS-Exchange-Inbox-Rules-Loop: jane@example.com",
        "Content-Type: text/plain; charset=utf-8",
        body="I am out of the office until Monday.\n",
    )
    result = classify(email)
    assert result.kind is MailKind.AUTO_REPLY
    assert not result.may_auto_reply
    assert "Subject starts with 'Automatic reply' (out-of-office subject)" in result.reasons
    assert "Auto-Submitted: auto-generated (RFC 3834)" in result.reasons
    assert "X-MS-Exchange-Inbox-Rules-Loop: jane@example.com" in result.reasons


def test_gmail_vacation_reply() -> None:
    email = mail(
        "From: Bob <bob@gmail.example>",
        "To: help@desk.example",
        "Subject: Re: Call 12 has been logged",
        "Auto-Submitted: auto-replied",
        "Precedence: bulk",
        body="Thanks, I'm travelling with limited access to email.\n",
    )
    result = classify(email)
    assert result.kind is MailKind.AUTO_REPLY
    assert "Auto-Submitted: auto-replied (RFC 3834)" in result.reasons
    assert "Precedence: bulk" in result.reasons


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("Auto-Submitted: auto-replied", MailKind.AUTO_REPLY),
        ("Auto-Submitted: auto-generated", MailKind.AUTO_GENERATED),
        ("Auto-Submitted: auto-notified", MailKind.AUTO_GENERATED),
        ("Auto-Submitted: auto-something; owner=x", MailKind.AUTO_GENERATED),
        ("Auto-Submitted: no", MailKind.NORMAL),
        ("Auto-Submitted: No", MailKind.NORMAL),
        ("X-Autoreply: yes", MailKind.AUTO_REPLY),
        ("X-Autorespond: Autoreply", MailKind.AUTO_REPLY),
        ("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent", MailKind.AUTO_GENERATED),
        ("X-MS-Exchange-Inbox-Rules-Loop: a@b.example", MailKind.AUTO_GENERATED),
    ],
)
def test_automatic_headers(header: str, kind: MailKind) -> None:
    result = classify(mail(*HUMAN, header))
    assert result.kind is kind
    if kind is not MailKind.NORMAL:
        assert any(reason.startswith(header) for reason in result.reasons)
        assert not result.may_auto_reply


def test_x_auto_response_suppress_alone_is_not_automatic() -> None:
    # Outlook and ticket systems set it on real mail: dropping such mail loses real requests.
    result = classify(mail(*HUMAN, "X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply"))
    assert result.kind is MailKind.NORMAL
    assert not result.automatic
    assert result.auto_reply_suppressed
    assert not result.may_auto_reply  # honoured as a request not to auto-reply to it
    assert "not a sign of automatic mail" in result.reasons[0]


def test_x_auto_response_suppress_for_receipts_only_allows_replies() -> None:
    result = classify(mail(*HUMAN, "X-Auto-Response-Suppress: DR, RN"))
    assert result.kind is MailKind.NORMAL
    assert result.may_auto_reply


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Printer broken",
        "Out of office",
        "Automatic reply: Call 12",
        "Abwesenheitsnotiz: Drucker",
        "Automatische Antwort: Ihre Anfrage",
        "Réponse automatique : Appel 12",
        "Absence: Printer",
        "Respuesta automática: Llamada 12",
        "Fuori sede: richiesta",
        "Afwezig: vraag",
        "Frånvaro: fråga",
        "Autosvar: spørsmål",
        "Poza biurem: zgłoszenie",
        "自动回复: 打印机",
        "[Auto-Reply] Printer",
    ],
)
def test_localised_out_of_office_subjects(subject: str) -> None:
    email = mail("From: x@y.example", f"Subject: {subject}")
    assert classify(email).kind is MailKind.AUTO_REPLY


@pytest.mark.parametrize(
    "subject",
    ["Out of office tomorrow, who covers?", "Absence of logs in report", "Reply needed: Printer"],
)
def test_human_subjects_mentioning_absence_stay_normal(subject: str) -> None:
    assert classify(mail("From: x@y.example", f"Subject: {subject}")).kind is MailKind.NORMAL


# --------------------------------------------------------------------------- lists and bulk


def test_mailman_list_mail() -> None:
    email = mail(
        "From: Alice <alice@example.org>",
        "To: users@lists.example.org",
        "Subject: [users] printer drivers",
        "List-Id: Users of the thing <users.lists.example.org>",
        "List-Unsubscribe: <https://lists.example.org/mailman/options/users>,"
        " <mailto:users-request@lists.example.org?subject=unsubscribe>",
        "List-Post: <mailto:users@lists.example.org>",
        "Precedence: list",
        "Sender: users-bounces@lists.example.org",
    )
    result = classify(email)
    assert result.kind is MailKind.LIST
    assert result.automatic
    assert not result.may_auto_reply
    assert "Precedence: list" in result.reasons
    assert any(r.startswith("List-Id: Users of the thing") for r in result.reasons)


@pytest.mark.parametrize("value", ["bulk", "junk", "list", "BULK"])
def test_precedence_values(value: str) -> None:
    assert classify(mail(*HUMAN, f"Precedence: {value}")).kind is MailKind.LIST


def test_precedence_first_class_is_normal() -> None:
    assert classify(mail(*HUMAN, "Precedence: first-class")).kind is MailKind.NORMAL


def test_any_list_header_is_list_mail() -> None:
    result = classify(mail(*HUMAN, "List-Unsubscribe-Post: List-Unsubscribe=One-Click"))
    assert result.kind is MailKind.LIST


# --------------------------------------------------------------------------- bounces

POSTFIX_DSN = """\
Return-Path: <>
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
To: help@desk.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="B3A1C2000.1700000000/mx.example.com"
Message-Id: <20250304091500.B3A1C2000@mx.example.com>

This is a MIME-encapsulated message.

--B3A1C2000.1700000000/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.com>: host mail.example.com[203.0.113.5] said: 550 5.1.1
    <nobody@example.com>: Recipient address rejected: User unknown

--B3A1C2000.1700000000/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: B3A1C2000
Arrival-Date: Tue,  4 Mar 2025 09:15:00 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.com
Original-Recipient: rfc822;nobody@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: Recipient address
    rejected: User unknown

--B3A1C2000.1700000000/mx.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: help@desk.example
To: nobody@example.com
Subject: Call 12 has been logged
Message-ID: <asm.call-12.abc@desk.example>

--B3A1C2000.1700000000/mx.example.com--
"""


def test_postfix_dsn_550_511() -> None:
    email = parse_message(POSTFIX_DSN.replace("\n", "\r\n").encode())
    result = classify(email)
    assert result.kind is MailKind.BOUNCE
    bounce = result.bounce
    assert bounce is not None
    assert bounce.action == "failed"
    assert bounce.status == "5.1.1"
    assert bounce.status_class == 5
    assert bounce.smtp_code == 550
    assert bounce.diagnostic.startswith("550 5.1.1 <nobody@example.com>: Recipient address")
    assert bounce.original_message_id == "<asm.call-12.abc@desk.example>"
    assert bounce.permanent
    assert bounce.fatal_code
    assert result.reasons[0].startswith("Content-Type: multipart/report; report-type=delivery")
    assert not result.may_auto_reply


EXCHANGE_NDR = """\
From: postmaster@contoso.example
To: help@desk.example
Subject: Undeliverable: Call 7 has been updated
Content-Type: multipart/report; report-type=delivery-status;
	boundary="_000_NDR_"
X-MS-Exchange-Message-Is-Ndr:
Auto-Submitted: auto-replied

--_000_NDR_
Content-Type: text/plain; charset="us-ascii"

Your message to jdoe@contoso.example couldn't be delivered.
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'

--_000_NDR_
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.outlook.com
Received-From-MTA: dns;desk.example
Arrival-Date: Tue, 4 Mar 2025 09:15:00 +0000

Final-Recipient: rfc822;jdoe@contoso.example
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by
 SMTP address lookup

--_000_NDR_
Content-Type: message/rfc822

From: help@desk.example
To: jdoe@contoso.example
Subject: Call 7 has been updated
Message-ID: <asm.call-7.q1@desk.example>

Call 7 has been updated.
--_000_NDR_--
"""


def test_exchange_ndr() -> None:
    result = classify(parse_message(EXCHANGE_NDR.replace("\n", "\r\n").encode()))
    assert result.kind is MailKind.BOUNCE
    assert result.bounce is not None
    assert (result.bounce.status, result.bounce.smtp_code) == ("5.1.10", 550)
    assert result.bounce.original_message_id == "<asm.call-7.q1@desk.example>"
    assert result.bounce.fatal_code


def test_delayed_dsn_is_a_bounce_but_not_permanent() -> None:
    dsn = POSTFIX_DSN.replace("Action: failed", "Action: delayed").replace(
        "Status: 5.1.1", "Status: 4.4.7"
    )
    dsn = dsn.replace("smtp; 550 5.1.1", "smtp; 451 4.4.7")
    result = classify(parse_message(dsn.replace("\n", "\r\n").encode()))
    assert result.kind is MailKind.BOUNCE
    assert result.bounce is not None
    assert (result.bounce.action, result.bounce.status_class) == ("delayed", 4)
    assert not result.bounce.permanent
    assert not result.bounce.fatal_code


def test_permanent_but_not_fatal_code_and_custom_fatal_set() -> None:
    dsn = POSTFIX_DSN.replace("smtp; 550 5.1.1", "smtp; 552 5.2.2").replace(
        "Status: 5.1.1", "Status: 5.2.2"
    )
    email = parse_message(dsn.replace("\n", "\r\n").encode())
    bounce = classify(email).bounce
    assert bounce is not None
    assert bounce.permanent
    assert not bounce.fatal_code
    custom = classify(email, fatal_codes=(552,)).bounce
    assert custom is not None
    assert custom.fatal_code


def test_qmail_style_text_bounce_from_mailer_daemon() -> None:
    email = mail(
        "From: MAILER-DAEMON@mail.example.net",
        "To: help@desk.example",
        "Subject: failure notice",
        body=(
            "Hi. This is the qmail-send program at mail.example.net.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
            "<ghost@example.net>:\n"
            "Remote host said: 550 5.1.1 No such user\n\n"
            "--- Below this line is a copy of the message.\n\n"
            "Message-ID: <asm.call-3.zz@desk.example>\n"
            "Subject: Call 3 has been logged\n"
        ),
    )
    result = classify(email)
    assert result.kind is MailKind.BOUNCE
    bounce = result.bounce
    assert bounce is not None
    assert (bounce.smtp_code, bounce.status, bounce.permanent) == (550, "5.1.1", True)
    assert bounce.diagnostic == "Remote host said: 550 5.1.1 No such user"
    assert bounce.original_message_id == "<asm.call-3.zz@desk.example>"
    assert "From: MAILER-DAEMON@mail.example.net (mailer daemon / postmaster)" in result.reasons


def test_postmaster_notice_without_failure_is_auto_generated() -> None:
    email = mail(
        "From: postmaster@example.net", "Subject: Mailbox quota report", body="You use 80%."
    )
    result = classify(email)
    assert result.kind is MailKind.AUTO_GENERATED
    assert result.bounce is None


def test_null_return_path_without_report_is_auto_generated() -> None:
    result = classify(mail("Return-Path: <>", *HUMAN))
    assert result.kind is MailKind.AUTO_GENERATED
    assert "Return-Path: <> (null return path)" in result.reasons


def test_human_mail_quoting_an_smtp_code_is_not_a_bounce() -> None:
    email = mail(*HUMAN, body="Our server said 550 5.1.1 when I mailed Bob. Please check.\n")
    assert classify(email).kind is MailKind.NORMAL


def test_read_receipt_is_auto_generated() -> None:
    email = mail(
        *HUMAN,
        "Content-Type: multipart/report; report-type=disposition-notification; boundary=x",
        body="--x\nContent-Type: text/plain\n\nRead.\n--x--\n",
    )
    assert classify(email).kind is MailKind.AUTO_GENERATED


def test_parse_delivery_status_picks_the_failed_recipient() -> None:
    text = (
        "Reporting-MTA: dns; mx\n\n"
        "Final-Recipient: rfc822; ok@x\nAction: delivered\nStatus: 2.0.0\n\n"
        "Final-Recipient: rfc822; bad@x\nAction: failed\nStatus: 5.7.1\n"
        "Diagnostic-Code: smtp; 553 5.7.1 relaying denied\n"
    )
    assert parse_delivery_status(text) == ("failed", "5.7.1", 553, "553 5.7.1 relaying denied")


def test_classify_never_raises_on_odd_values() -> None:
    email = InboundEmail(sender="@@", headers=(("Content-Type", "multipart/report; report-type="),))
    assert classify(email).kind is MailKind.NORMAL
