"""SmtpMailer against a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.smtp import Security, SmtpConfig, SmtpMailer
from asm_email_rules.errors import PermanentSendError, TransientSendError
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.protocols import Mailer

if TYPE_CHECKING:
    from conftest import SmtpFactory, TlsFiles

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"

REPLY = OutgoingEmail(
    to="alice@example.org",
    subject="Call 42 has been logged [CALL#42]",
    body="##- Please type your reply above this line -##\nYour call is 42.\n",
    sender="Service Desk <desk@asm.example>",
    message_id="<asm.call-42.c0ffee@asm.example>",
    in_reply_to="<question-1@example.org>",
    references=("<thread-0@example.org>", "<question-1@example.org>"),
)


def _mailer(port: int, **changes: object) -> SmtpMailer:
    fields: dict[str, object] = {"host": HOST, "port": port, "security": "plain", "timeout": 5}
    fields.update(changes)
    return SmtpMailer(SmtpConfig(**fields))  # type: ignore[arg-type]


def test_reply_is_delivered_with_the_design_headers(smtp_server: SmtpFactory) -> None:
    server = smtp_server()
    mailer = _mailer(server.port)
    assert isinstance(mailer, Mailer)
    mailer.send(REPLY, now=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))

    [envelope] = server.envelopes
    assert envelope.mail_from == "desk@asm.example"
    assert envelope.rcpt_tos == ("alice@example.org",)
    msg = BytesParser(policy=policy.default).parsebytes(envelope.content)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<question-1@example.org>"
    assert msg["References"] == "<thread-0@example.org> <question-1@example.org>"
    assert msg["Message-ID"] == "<asm.call-42.c0ffee@asm.example>"
    assert msg["Subject"] == "Call 42 has been logged [CALL#42]"
    assert "Your call is 42." in msg.get_content()


def test_configured_envelope_sender_and_null_path(smtp_server: SmtpFactory) -> None:
    server = smtp_server()
    _mailer(server.port, envelope_sender="bounces@asm.example").send(REPLY)
    _mailer(server.port, envelope_sender="<>").send(REPLY)
    assert [e.mail_from for e in server.envelopes] == ["bounces@asm.example", "<>"]


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_550_is_permanent_with_its_code(smtp_server: SmtpFactory, stage: str) -> None:
    server = smtp_server(**{f"{stage}_reply": "550 5.1.1 mailbox unavailable"})
    with pytest.raises(PermanentSendError) as info:
        _mailer(server.port).send(REPLY)
    assert info.value.code == 550
    assert "mailbox unavailable" in str(info.value)
    assert server.envelopes == []


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_451_is_transient_with_its_code(smtp_server: SmtpFactory, stage: str) -> None:
    server = smtp_server(**{f"{stage}_reply": "451 4.3.0 try later"})
    with pytest.raises(TransientSendError) as info:
        _mailer(server.port).send(REPLY)
    assert info.value.code == 451


@pytest.mark.parametrize("code", [501, 503, 553, 554])
def test_other_5xx_at_rcpt_are_permanent(smtp_server: SmtpFactory, code: int) -> None:
    server = smtp_server(rcpt_reply=f"{code} 5.0.0 refused")
    with pytest.raises(PermanentSendError) as info:
        _mailer(server.port).send(REPLY)
    assert info.value.code == code


def test_connection_refused_is_transient_without_code(unused_port: int) -> None:
    with pytest.raises(TransientSendError) as info:
        _mailer(unused_port).send(REPLY)
    assert info.value.code is None
    assert HOST in str(info.value)


@pytest.mark.parametrize("to", ["", "<>", "  "])
def test_empty_or_null_recipient_is_refused_without_network(to: str) -> None:
    # Port 9 (discard) is never contacted: the refusal happens before connecting.
    with pytest.raises(PermanentSendError, match="no recipient"):
        _mailer(9).send(OutgoingEmail(to=to, subject="s", body="b", sender="d@asm.example"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_auth_login_is_used_when_a_username_is_set(smtp_server: SmtpFactory) -> None:
    server = smtp_server(auth=("desk", "pa ss"))
    _mailer(server.port, username="desk", password="pa ss").send(REPLY)
    assert len(server.envelopes) == 1
    with pytest.raises(TransientSendError) as info:
        _mailer(server.port, username="desk", password="wrong").send(REPLY)
    assert info.value.code == 535


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
def test_tls_modes(smtp_server: SmtpFactory, tls_files: TlsFiles, security: Security) -> None:
    server = smtp_server(tls=(security.value, tls_files.server_context()))
    mailer = _mailer(server.port, security=security, ssl_context=tls_files.client_context())
    mailer.send(REPLY)
    assert len(server.envelopes) == 1


def test_tls_with_an_untrusted_certificate_is_transient(
    smtp_server: SmtpFactory, tls_files: TlsFiles
) -> None:
    server = smtp_server(tls=("tls", tls_files.server_context()))
    with pytest.raises(TransientSendError, match="unreachable"):
        _mailer(server.port, security="tls").send(REPLY)  # default context: cert not trusted
    assert server.envelopes == []
