"""SmtpMailer against a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

import attrs
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


def _mailer(port: int, *, max_per_session: int = 100, **changes: object) -> SmtpMailer:
    fields: dict[str, object] = {"host": HOST, "port": port, "security": "plain", "timeout": 5}
    fields.update(changes)
    return SmtpMailer(SmtpConfig(**fields), max_per_session=max_per_session)  # type: ignore[arg-type]


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


class _SessionHandler:
    """aiosmtpd handler that tells sessions apart and can refuse or hang up on command."""

    def __init__(self, refuse: str = "", second_mail: str = "") -> None:
        self.refuse = refuse  # RCPT address answered 550
        self.second_mail = second_mail  # "421" or "hangup" on each session's second MAIL
        self.delivered: list[tuple[int, bytes]] = []  # (session id, content)
        self._mails: dict[int, int] = {}

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        count = self._mails[id(session)] = self._mails.get(id(session), 0) + 1
        if count == 2 and self.second_mail == "421":
            return "421 4.7.0 too many messages in this session"
        if count == 2 and self.second_mail == "hangup":
            server.transport.close()
            return "421 4.7.0 bye"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.delivered.append((id(session), bytes(envelope.original_content)))
        return "250 2.0.0 queued"


@pytest.fixture
def session_server() -> Iterator[Callable[..., tuple[_SessionHandler, int]]]:
    from aiosmtpd.controller import Controller
    from loopback import free_port

    started: list[Any] = []

    def start(**options: str) -> tuple[_SessionHandler, int]:
        handler = _SessionHandler(**options)
        port = free_port()
        controller = Controller(handler, hostname=HOST, port=port)
        controller.start()
        started.append(controller)
        return handler, port

    yield start
    for controller in started:
        controller.stop()


def _reply(number: int, to: str = "alice@example.org") -> OutgoingEmail:
    return attrs.evolve(
        REPLY, to=to, subject=f"Call {number}", message_id=f"<asm.call-{number}.c0ffee@asm.example>"
    )


def test_one_session_carries_many_replies_each_accepted_before_send_returns(
    session_server: Callable[..., tuple[_SessionHandler, int]],
) -> None:
    # Issue 14: one SMTP session per poll pass, replies in order, each sent after its own 250.
    handler, port = session_server()
    mailer = _mailer(port)
    for number in range(1, 6):
        mailer.send(_reply(number))
        assert len(handler.delivered) == number  # the server has it when send returns
    mailer.close()
    assert len({session for session, _ in handler.delivered}) == 1
    subjects = [
        BytesParser(policy=policy.default).parsebytes(c)["Subject"] for _, c in handler.delivered
    ]
    assert subjects == [f"Call {n}" for n in range(1, 6)]
    assert mailer.sessions == 1
    mailer.send(_reply(6))  # after close: a new session
    assert mailer.sessions == 2
    mailer.close()


def test_a_refused_reply_keeps_the_session_for_the_next(
    session_server: Callable[..., tuple[_SessionHandler, int]],
) -> None:
    handler, port = session_server(refuse="gone@example.org")
    mailer = _mailer(port)
    mailer.send(_reply(1))
    with pytest.raises(PermanentSendError) as refused:
        mailer.send(_reply(2, to="gone@example.org"))
    assert refused.value.code == 550
    mailer.send(_reply(3))
    mailer.close()
    assert [len(c) > 0 for _, c in handler.delivered] == [True, True]
    assert len({session for session, _ in handler.delivered}) == 1


@pytest.mark.parametrize("how", ["421", "hangup"])
def test_a_session_the_server_ends_is_reopened_and_the_reply_sent_once(
    session_server: Callable[..., tuple[_SessionHandler, int]], how: str
) -> None:
    handler, port = session_server(second_mail=how)
    mailer = _mailer(port, max_per_session=10)
    for number in (1, 2, 3):
        mailer.send(_reply(number))
    mailer.close()
    # Each session takes one message, then refuses the second MAIL: every reply went out on
    # a new session, exactly once, in order.
    subjects = [
        BytesParser(policy=policy.default).parsebytes(c)["Subject"] for _, c in handler.delivered
    ]
    assert subjects == ["Call 1", "Call 2", "Call 3"]
    assert len({session for session, _ in handler.delivered}) == 3


def test_sessions_are_renewed_after_max_per_session_replies(
    session_server: Callable[..., tuple[_SessionHandler, int]],
) -> None:
    handler, port = session_server()
    mailer = SmtpMailer(
        SmtpConfig(host=HOST, port=port, security=Security.PLAIN, timeout=5), max_per_session=2
    )
    for number in range(1, 6):
        mailer.send(_reply(number))
    mailer.close()
    assert mailer.sessions == 3
    assert len(handler.delivered) == 5
