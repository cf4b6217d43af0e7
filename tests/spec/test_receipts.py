"""Read and delivery receipts: reports about a message, never a call (DESIGN 4).

Beyond the spec: its only rule for such mail would be "If the messaging service picks up an
incoming email but does not recognize the email's subject line, ASM Core will log a call";
"Once the polling service has processed an incoming email ... This is to prevent ASM Core
from logging new calls from the same email" is about one message read twice, not receipts.
DESIGN 4 is the rule checked here: automatic mail never gets a reply; auto-replies never
log a call, and one that answers a message of ours is added to that record's history as an
automatic entry. A read receipt (RFC 8098 MDN, or Outlook's
"Read:" notice sent as text) and a delivery receipt (a DSN whose recipients were all
delivered) answer a message and ask for nothing: before this, each one logged a new call
(and the text kind got a "has been logged" reply, whose own receipt logged the next call).
"""

from __future__ import annotations

import pytest

from asm_email_rules.model import EntityKind, EntryKind
from asm_email_rules.pipeline import process

from .conftest import NOW, Desk


def _raw(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


MDN = _raw(
    "From: Uma User <uma@corp.example>",
    "To: helpdesk@desk.example",
    "Subject: Read: Printer on floor 2",
    "Message-ID: <mdn-1@corp.example>",
    "MIME-Version: 1.0",
    'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"',
    "",
    "--r",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "Your message was displayed on the recipient's screen.",
    "--r",
    "Content-Type: message/disposition-notification",
    "",
    "Reporting-UA: corp.example; Mail Client 16.0",
    "Final-Recipient: rfc822;uma@corp.example",
    "Disposition: manual-action/MDN-sent-manually; displayed",
    "--r--",
)

OUTLOOK_TEXT_RECEIPTS = {
    "english": ("Read: Printer on floor 2", "was read on Friday, 27 November 2026 10:00."),
    "french": ("Lu : Imprimante", "a été lu le vendredi 27 novembre 2026 10:00."),
    "german": ("Gelesen: Drucker", "wurde am Freitag, 27. November 2026 10:00 gelesen."),
    "spanish": ("Leído: Impresora", "fue leído el viernes, 27 de noviembre de 2026."),
}

DELIVERED_DSN = _raw(
    "Return-Path: <>",
    "From: Mail Delivery System <MAILER-DAEMON@mx.corp.example>",
    "To: helpdesk@desk.example",
    "Subject: Successful Mail Delivery Report",
    "Message-ID: <dsn-ok-1@mx.corp.example>",
    "Auto-Submitted: auto-replied",
    "MIME-Version: 1.0",
    'Content-Type: multipart/report; report-type=delivery-status; boundary="d"',
    "",
    "--d",
    "Content-Type: text/plain",
    "",
    "This is the mail system at host mx.corp.example.",
    "Your message was successfully delivered to the destination(s) listed below.",
    "--d",
    "Content-Type: message/delivery-status",
    "",
    "Reporting-MTA: dns; mx.corp.example",
    "",
    "Final-Recipient: rfc822; pat@corp.example",
    "Action: delivered",
    "Status: 2.0.0",
    "--d--",
)


def _text_receipt(subject: str, sentence: str, *extra: str) -> bytes:
    return _raw(
        "From: Uma User <uma@corp.example>",
        "To: helpdesk@desk.example",
        f"Subject: {subject}",
        "Message-ID: <read-1@corp.example>",
        *extra,
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Your message",
        "",
        "  To: Uma User",
        "  Sent: Friday, 27 November 2026 09:00",
        "",
        sentence,
    )


def test_mdn_logs_no_call_and_gets_no_reply(desk: Desk) -> None:
    """DESIGN 4: "auto-replies ... never log a call"; automatic mail gets no reply."""
    desk.set(create_calls_anonymously=True, auto_reply=True)
    result = process(MDN, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.discard_reason == "read or delivery receipt"
    assert desk.repo.get_call(103) is None
    assert desk.replies == []


@pytest.mark.parametrize("language", sorted(OUTLOOK_TEXT_RECEIPTS))
def test_outlook_text_read_receipt_logs_no_call_and_gets_no_reply(
    desk: Desk, language: str
) -> None:
    """DESIGN 4: "automatic mail never gets a reply"; a receipt is not a request."""
    desk.set(create_calls_anonymously=True, auto_reply=True)
    subject, sentence = OUTLOOK_TEXT_RECEIPTS[language]
    raw = _text_receipt(subject, sentence)
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.discard_reason == "read or delivery receipt"
    assert desk.repo.get_call(103) is None
    assert desk.replies == []


def test_read_receipt_of_our_reply_is_an_automatic_entry_not_an_update(desk: Desk) -> None:
    """DESIGN 4: "one that answers a message of ours is added to that record's history as an
    automatic entry (no note icon, no notification, no reply)". Before, the receipt of our
    "Call 100 has been updated" updated call 100 and was answered with another one."""
    desk.set(auto_reply=True)
    first = desk.mail("[CALL#100] printer", body="Still broken.")
    assert first.reply is not None
    ours = desk.replies[-1].message_id
    raw = _text_receipt(
        "Read: Call 100 has been updated [CALL#100]",
        "was read on Friday, 27 November 2026 10:00.",
        f"In-Reply-To: {ours}",
    )
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.action_kinds() == ("add_automatic_entry",)
    assert len(desk.replies) == 1
    last = [e for e in desk.entries(EntityKind.CALL, 100) if e.kind is EntryKind.HISTORY][-1]
    assert "was read on" in last.text
    assert last.author.endswith("(automatic reply)")


def test_delivered_dsn_is_a_receipt_not_a_permanent_failure(desk: Desk) -> None:
    """docs/classification.md: "a DSN whose recipients were all delivered/relayed/expanded is
    AUTO_GENERATED instead" (of BOUNCE); it was logged as "bounce: permanent delivery failure"
    with status class 5 because its subject and text read like a delivery report."""
    desk.set(create_calls_anonymously=True)
    result = process(DELIVERED_DSN, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.discard_reason == "read or delivery receipt"
    assert result.decision.status_class is None
    assert desk.repo.get_call(103) is None


def test_a_person_whose_subject_starts_with_read_is_a_person(desk: Desk) -> None:
    """DESIGN 4: a subject phrase alone never makes a message automatic."""
    desk.set(create_calls_anonymously=True, auto_reply=True)
    decision = desk.mail("Read: access to the finance share", body="I need read access.")
    assert decision.rule == "LOG-6"
    assert decision.reply is not None


@pytest.mark.parametrize(
    ("failed_fields", "discard_reason", "status_class"),
    [
        (("Action: failed (mailbox unknown)", "Status: 5.1.1"), "bounce: permanent", 5),
        (("Status: 5.1.1",), "bounce: permanent", 5),
        (("Action: Delayed", "Status: 4.4.1"), "bounce: delivery delayed", 4),
    ],
)
def test_a_dsn_with_one_recipient_delivered_and_one_failed_is_a_bounce(
    desk: Desk, failed_fields: tuple[str, ...], discard_reason: str, status_class: int
) -> None:
    """Spec: "ASM Core considers SMTP error numbers 501, 503, 550 and 553 to be permanent and
    fatal errors." DESIGN 4: a DSN carrying them, or any 5.x.x, is a bounce. A receipt is a
    DSN whose recipients were *all* delivered: one delivered recipient beside a failed one
    whose Action has a comment, or that gives only its Status, was taken for a receipt."""
    raw = DELIVERED_DSN.replace(
        b"Status: 2.0.0\r\n",
        b"Status: 2.0.0\r\n\r\nFinal-Recipient: rfc822; gone@corp.example\r\n"
        + "".join(f"{field}\r\n" for field in failed_fields).encode(),
    )
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.discard_reason.startswith(discard_reason)
    assert result.decision.status_class == status_class
    assert desk.repo.get_call(103) is None


def test_a_read_receipt_returning_our_reply_does_not_put_our_text_in_the_history(
    desk: Desk,
) -> None:
    """DESIGN 4: an automatic reply "that answers a message of ours is added to that record's
    history as an automatic entry". An MDN may return the message it reports on (RFC 8098
    section 3: a third part); with its own text part empty, that returned message, our own
    "Call 100 has been updated", was taken for the body and entered in the history as the
    customer's automatic reply."""
    desk.set(auto_reply=True)
    desk.mail("[CALL#100] printer", body="Still broken.")
    ours = desk.replies[-1]
    raw = _raw(
        "From: Uma User <uma@corp.example>",
        "To: helpdesk@desk.example",
        f"Subject: Read: {ours.subject}",
        "Message-ID: <mdn-3@corp.example>",
        f"In-Reply-To: {ours.message_id}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"',
        "",
        "--r",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "",
        "--r",
        "Content-Type: message/disposition-notification",
        "",
        "Final-Recipient: rfc822;uma@corp.example",
        f"Original-Message-ID: {ours.message_id}",
        "Disposition: manual-action/MDN-sent-manually; displayed",
        "--r",
        "Content-Type: message/rfc822",
        "",
        "From: Service Desk <helpdesk@desk.example>",
        f"Subject: {ours.subject}",
        "",
        "Call 100 has been updated.",
        "--r--",
    )
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.action_kinds() == ("add_automatic_entry",)
    last = [e for e in desk.entries(EntityKind.CALL, 100) if e.kind is EntryKind.HISTORY][-1]
    assert last.author.endswith("(automatic reply)")
    assert "Call 100 has been updated" not in last.text
