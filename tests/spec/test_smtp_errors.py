"""Spec: "ASM Core considers SMTP error numbers 501, 503, 550 and 553 to be permanent and fatal
errors. If ASM Core receives an incoming email with any of these errors, it will immediately
delete this message and the message cannot be recovered." """

from __future__ import annotations

from datetime import timedelta

import pytest

from asm_email_rules.model import ReplyStatus
from asm_email_rules.pipeline import Disposition, process
from asm_email_rules.sample import UMA
from asm_email_rules.send import SendResult, send_due

from .conftest import NOW, Desk


def _dsn(status: str, code: int) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.corp.example (Mail Delivery System)\r\n"
        "To: helpdesk@desk.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-" + str(code) + "@mx.corp.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.corp.example\r\n\r\n"
        "Final-Recipient: rfc822; gone@corp.example\r\nAction: failed\r\n"
        f"Status: {status}\r\nDiagnostic-Code: smtp; {code} {status} mailbox unavailable\r\n"
        "--B--\r\n"
    ).encode()


@pytest.mark.parametrize("code", [501, 503, 550, 553])
def test_fatal_codes_delete_the_bounce_without_call_or_reply(desk: Desk, code: int) -> None:
    desk.set(auto_reply=True, create_calls_anonymously=True)
    result = process(_dsn("5.1.1", code), desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.rule == "GATE-1"
    assert result.disposition is Disposition.DELETE
    assert desk.repo.get_call(103) is None
    assert desk.replies == []
    assert any(str(code) in reason for reason in result.decision.reasons)


def test_a_delay_notice_is_not_permanent_but_still_never_logs(desk: Desk) -> None:
    desk.set(create_calls_anonymously=True)
    raw = _dsn("4.4.1", 451).replace(b"Action: failed", b"Action: delayed")
    result = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    assert result.decision is not None
    assert result.decision.rule == "GATE-2"
    assert desk.repo.get_call(103) is None


def test_a_refused_reply_is_not_retried(desk: Desk) -> None:
    """Our reply refused with 550: the message is still deleted and the failure recorded."""
    desk.mailer.fail_with = 550
    desk.mail("[CLOSE#100]", sender=UMA.email)
    assert desk.last is not None
    assert desk.last.disposition is Disposition.DELETE
    assert desk.last.reply_status.value == "failed"


def test_a_deferred_reply_waits_in_the_outbox_and_is_sent_once(desk: Desk) -> None:
    """4xx is transient (RFC 5321 4.2.1): the reply is retried from the outbox, by time,
    "without holding up the mailbox" (DESIGN 4, "Replies are an outbox"): the message is
    deleted at once and never acted on twice."""
    desk.mailer.fail_with = 451
    desk.mail("[CLOSE#100]", sender=UMA.email, message_id="<retry@corp.example>")
    assert desk.last is not None
    assert desk.last.disposition is Disposition.DELETE
    assert desk.last.reply_status is ReplyStatus.PENDING
    desk.mailer.fail_with = None
    soon = NOW + timedelta(seconds=59)
    assert (
        send_due(desk.repo, desk.mailer, desk.system, owner="t", clock=lambda: soon).outcomes == []
    )
    later = NOW + timedelta(minutes=1)
    report = send_due(desk.repo, desk.mailer, desk.system, owner="t", clock=lambda: later)
    assert report.count(SendResult.SENT) == 1
    from .conftest import make_raw

    raw = make_raw("[CLOSE#100]", sender=UMA.email, message_id="<retry@corp.example>")
    again = process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, later)
    assert again.duplicate
    assert again.disposition is Disposition.DELETE
    assert [reply.subject for reply in desk.replies] == ["Call 100 has been closed [CALL#100]"]
