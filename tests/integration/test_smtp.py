"""SmtpMailer against a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from loopback import Pipelining, stop_listening

from asm_email_rules.adapters.smtp import Security, SmtpConfig, SmtpMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.errors import PermanentSendError, SendError, TransientSendError
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.outgoing import render_outgoing
from asm_email_rules.protocols import Mailer
from asm_email_rules.send import send_due
from asm_email_rules.settings import SystemSettings

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


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_550_is_permanent_with_its_code(
    smtp_server: SmtpFactory, stage: str, pipelining: bool
) -> None:
    server = smtp_server(
        **{f"{stage}_reply": "550 5.1.1 mailbox unavailable"}, pipelining=pipelining
    )
    with pytest.raises(PermanentSendError) as info:
        _mailer(server.port).send(REPLY)
    assert info.value.code == 550
    assert "mailbox unavailable" in str(info.value)
    assert server.envelopes == []


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_451_is_transient_with_its_code(
    smtp_server: SmtpFactory, stage: str, pipelining: bool
) -> None:
    server = smtp_server(**{f"{stage}_reply": "451 4.3.0 try later"}, pipelining=pipelining)
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


class _SessionHandler(Pipelining):
    """aiosmtpd handler that tells sessions apart and can refuse or hang up on command."""

    def __init__(
        self,
        refuse: str = "",
        second_mail: str = "",
        refuse_sender: str = "",
        pipelining: bool = False,
    ) -> None:
        self.refuse = refuse  # RCPT address answered 550
        self.refuse_sender = refuse_sender  # MAIL address answered 550
        self.second_mail = second_mail  # "421" or "hangup" on each session's second MAIL
        self.pipelining = pipelining
        self.delivered: list[tuple[int, bytes]] = []  # (session id, content)
        self._mails: dict[int, int] = {}
        self._sessions: list[Any] = []  # kept alive, so no two sessions share an id()

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if id(session) not in self._mails:
            self._sessions.append(session)
        count = self._mails[id(session)] = self._mails.get(id(session), 0) + 1
        if count == 2 and self.second_mail == "421":
            return "421 4.7.0 too many messages in this session"
        if count == 2 and self.second_mail == "hangup":
            server.transport.close()
            return "421 4.7.0 bye"
        if address == self.refuse_sender:
            return "550 5.7.1 sender refused"
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

    def start(**options: Any) -> tuple[_SessionHandler, int]:
        handler = _SessionHandler(**options)
        port = free_port()
        controller = Controller(handler, hostname=HOST, port=port)
        controller.start()
        started.append(controller)
        return handler, port

    yield start
    for controller in started:
        controller.stop()


def _subjects(messages: list[bytes]) -> list[str]:
    return [BytesParser(policy=policy.default).parsebytes(m)["Subject"] for m in messages]


def _reply(number: int, to: str = "alice@example.org") -> OutgoingEmail:
    return attrs.evolve(
        REPLY, to=to, subject=f"Call {number}", message_id=f"<asm.call-{number}.c0ffee@asm.example>"
    )


@pytest.mark.parametrize("pipelining", [False, True])
def test_one_session_carries_many_replies_each_accepted_before_send_returns(
    session_server: Callable[..., tuple[_SessionHandler, int]], pipelining: bool
) -> None:
    # Issue 14: one SMTP session per poll pass, replies in order, each sent after its own 250.
    handler, port = session_server(pipelining=pipelining)
    mailer = _mailer(port)
    for number in range(1, 6):
        mailer.send(_reply(number))
        assert len(handler.delivered) == number  # the server has it when send returns
    mailer.close()
    assert len({session for session, _ in handler.delivered}) == 1
    subjects = _subjects([content for _, content in handler.delivered])
    assert subjects == [f"Call {n}" for n in range(1, 6)]
    assert mailer.sessions == 1
    mailer.send(_reply(6))  # after close: a new session
    assert mailer.sessions == 2
    mailer.close()


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_refused_reply_keeps_the_session_for_the_next(
    session_server: Callable[..., tuple[_SessionHandler, int]], pipelining: bool
) -> None:
    handler, port = session_server(refuse="gone@example.org", pipelining=pipelining)
    mailer = _mailer(port)
    mailer.send(_reply(1))
    with pytest.raises(PermanentSendError) as refused:
        mailer.send(_reply(2, to="gone@example.org"))
    assert refused.value.code == 550
    mailer.send(_reply(3))
    mailer.close()
    assert [len(c) > 0 for _, c in handler.delivered] == [True, True]
    assert len({session for session, _ in handler.delivered}) == 1


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize("how", ["421", "hangup"])
def test_a_session_the_server_ends_is_reopened_and_the_reply_sent_once(
    session_server: Callable[..., tuple[_SessionHandler, int]], how: str, pipelining: bool
) -> None:
    handler, port = session_server(second_mail=how, pipelining=pipelining)
    mailer = _mailer(port, max_per_session=10)
    for number in (1, 2, 3):
        mailer.send(_reply(number))
    mailer.close()
    # Each session takes one message, then refuses the second MAIL: every reply went out on
    # a new session, exactly once, in order.
    subjects = _subjects([content for _, content in handler.delivered])
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


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_refused_sender_keeps_the_session_for_the_next(
    session_server: Callable[..., tuple[_SessionHandler, int]], pipelining: bool
) -> None:
    # Pipelined, RCPT and DATA were sent with the refused MAIL: their replies (503, bad
    # sequence) are read before RSET, so the next reply reads its own answers.
    handler, port = session_server(refuse_sender="nobody@asm.example", pipelining=pipelining)
    mailer = _mailer(port)
    mailer.send(_reply(1))
    with pytest.raises(PermanentSendError) as refused:
        mailer.send(attrs.evolve(_reply(2), sender="nobody@asm.example"))
    assert refused.value.code == 550
    mailer.send(_reply(3))
    mailer.close()
    subjects = _subjects([content for _, content in handler.delivered])
    assert subjects == ["Call 1", "Call 3"]
    assert mailer.sessions == 1


class _WireServer:
    """A scripted SMTP server on a raw socket, to see the commands as the wire carries them.

    After a MAIL it waits (up to ``wait`` seconds) for RCPT and DATA before answering any:
    ``groups`` holds, per transaction, the commands that had arrived when it answered MAIL (a
    client that waits for each reply sends one). RCPT is answered ``rcpt``, DATA ``data``;
    each message taken (dots undone, RFC 5321 4.5.2) is in ``messages``. With ``chunking``
    EHLO offers CHUNKING too and ``BDAT <size> LAST`` (RFC 3030) is taken: its bytes are read
    whatever happened before, and it is answered ``bdat``, or 554 when no RCPT was accepted.
    """

    def __init__(
        self,
        *,
        pipelining: bool,
        rcpt: str = "250 ok",
        data: str = "354 go",
        chunking: bool = False,
        bdat: str = "250 queued",
    ) -> None:
        import socket
        import threading

        self.pipelining, self.rcpt, self.data, self.wait = pipelining, rcpt, data, 0.5
        self.chunking, self.bdat = chunking, bdat
        self._sender = False  # this transaction's MAIL was accepted
        self._accepted = False  # and one of its RCPT
        self.mail = "250 sender ok"
        self.hang_up_after_refusal = False  # as Exim's "drop" ACL verb: the 5xx, then close
        self.hang_up_after_message = False  # the message read, no final reply
        self.refuse: dict[str, str] = {}  # RCPT address: its reply, instead of ``rcpt``
        self.idle_close = False  # the first session ends quietly after its first message
        self.ahead: list[bytes] = []  # per MAIL: what had arrived after it when it was answered
        self.slow = 0.0  # seconds to think before answering a MAIL
        self.script: dict[tuple[str, int], str] = {}  # ("MAIL" or "BDAT", nth): its reply
        self._seen: dict[str, int] = {}
        self.groups: list[list[str]] = []
        self.messages: list[bytes] = []
        self.connections = 0
        self.greeting = "220 wire.test ESMTP"
        self.ehlo: str | None = None  # set: the reply to EHLO and HELO alike
        self.starttls: str | None = None  # set: STARTTLS offered, and answered this
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening: :func:`stop_listening` (a close alone left the serving thread
        blocked in ``accept``, later serving another test's connections)."""
        stop_listening(self._listener)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, contextlib.suppress(OSError):  # the client may be gone mid-answer
                self._session(_Lines(conn))

    def _session(self, wire: _Lines) -> None:
        self._sender = self._accepted = False
        wire.send(self.greeting)
        while (line := wire.line()) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO") and self.ehlo is not None:
                wire.send(self.ehlo)
            elif verb == "STARTTLS" and self.starttls is not None:
                wire.send(self.starttls)
            elif verb == "EHLO":
                offers = ["250-wire.test", "250-SIZE 10000000"]
                offers += ["250-STARTTLS"] * (self.starttls is not None)
                offers += ["250-PIPELINING"] * self.pipelining + ["250-CHUNKING"] * self.chunking
                wire.send("\r\n".join([*offers, "250 HELP"]))
            elif verb == "MAIL":
                group = [line, *wire.more(2, self.wait)]
                self.groups.append(group)
                self.ahead.append(wire.pending())
                time.sleep(self.slow)
                # as Postfix: a MAIL inside an open transaction is "nested" (RSET ends one)
                reply = "503 5.5.1 nested MAIL command" if self._sender else self._scripted("MAIL")
                self._sender = reply.startswith("250")
                wire.send(reply)
                if not self.mail.startswith("250") and self.hang_up_after_refusal:
                    return
                for command in group[1:]:
                    if not self._answer(wire, command):
                        return
            elif not self._answer(wire, line):
                return

    def _scripted(self, verb: str) -> str:
        """The reply to this verb's next occurrence: from ``script``, else the default."""
        self._seen[verb] = self._seen.get(verb, 0) + 1
        default = self.mail if verb == "MAIL" else self.bdat
        return self.script.get((verb, self._seen[verb]), default)

    def _answer(self, wire: _Lines, command: str) -> bool:
        verb = command.split(" ", 1)[0].upper()
        if verb == "RCPT":
            address = command.partition("<")[2].partition(">")[0]
            reply = self.refuse.get(address, self.rcpt) if self._sender else "503 5.5.1 no MAIL"
            self._accepted = reply.startswith("250")
            wire.send(reply)
            if not self.rcpt.startswith("250") and self.hang_up_after_refusal:
                return False
        elif verb == "DATA":
            wire.send(self.data)
            if self.data.startswith("354"):
                message = wire.message()
                if message is None:
                    return False  # the client hung up instead of sending the message
                self.messages.append(message)
                if self.hang_up_after_message:
                    return False
                self._sender = False
                wire.send("250 queued")
        elif verb == "BDAT" and self.chunking:
            _, size, *last = command.split()
            chunk = wire.exactly(int(size))
            if chunk is None:
                return False
            if not self._accepted:
                wire.send("554 5.5.1 no valid recipients")
            elif (reply := self._scripted("BDAT")).startswith("250") and [
                word.upper() for word in last
            ] == ["LAST"]:
                self.messages.append(chunk)
                if self.hang_up_after_message:
                    return False
                self._sender = False
                wire.send(reply)
                if self.idle_close:
                    self.idle_close = False
                    return False
            else:
                wire.send(reply)
            self._accepted = False
        elif verb == "QUIT":
            wire.send("221 bye")
            return False
        else:  # RSET, NOOP
            if verb == "RSET":
                self._sender = self._accepted = False
            wire.send("250 ok")
        return True


class _Lines:
    """Line reading on a socket, with a look ahead bounded in time (for :class:`_WireServer`)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._buffer = b""

    def send(self, text: str) -> None:
        self._conn.sendall(text.encode() + b"\r\n")

    def _fill(self, timeout: float | None) -> bool:
        import select

        if timeout is not None and not select.select([self._conn], [], [], timeout)[0]:
            return False
        chunk = self._conn.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def raw_line(self, timeout: float | None = None) -> bytes | None:
        while b"\r\n" not in self._buffer:
            if not self._fill(timeout):
                return None
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def exactly(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            if not self._fill(None):
                return None
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        return chunk

    def pending(self) -> bytes:
        """What has arrived and not been read yet (after a short wait for more)."""
        self.more(0, 0.2)
        while self._fill(0.05):
            pass
        return self._buffer

    def line(self) -> str | None:
        raw = self.raw_line()
        return None if raw is None else raw.decode()

    def more(self, count: int, wait: float) -> list[str]:
        lines: list[str] = []
        while len(lines) < count and (raw := self.raw_line(wait)) is not None:
            lines.append(raw.decode())
        return lines

    def message(self) -> bytes | None:
        lines: list[bytes] = []
        while (raw := self.raw_line()) is not None:
            if raw == b".":
                return b"".join(
                    line[1:] if line.startswith(b".") else line
                    for line in (chunk + b"\r\n" for chunk in lines)
                )
            lines.append(raw)
        return None


@pytest.fixture
def wire_server() -> Iterator[Callable[..., _WireServer]]:
    servers: list[_WireServer] = []

    def start(**options: Any) -> _WireServer:
        servers.append(_WireServer(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_closed_wire_server_leaves_no_thread_waiting_for_connections(
    wire_server: Callable[..., _WireServer],
) -> None:
    # A thread left in accept() on a closed listener served the next test's connections
    # once the process had been paused (SIGSTOP/SIGCONT): that test's server counted one
    # connection where its client had opened two.
    server = wire_server(pipelining=True)
    mailer = _mailer(server.port)
    mailer.send(REPLY)
    mailer.close()
    server.close()
    server._thread.join(10)
    assert not server._thread.is_alive()


DOTTED = attrs.evolve(REPLY, body=".a line that starts with a dot\n..and one with two\n.\nend\n")


def test_with_pipelining_mail_rcpt_and_data_go_out_in_one_group(
    wire_server: Callable[..., _WireServer],
) -> None:
    # RFC 2920 3.1: the client may send MAIL, RCPT and DATA without waiting; DATA ends it.
    server = wire_server(pipelining=True)
    mailer = _mailer(server.port)
    mailer.send(DOTTED, now=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    mailer.send(_reply(2))
    mailer.close()
    assert [[command.split(":")[0] for command in group] for group in server.groups] == [
        ["MAIL FROM", "RCPT TO", "DATA"],
        ["MAIL FROM", "RCPT TO", "DATA"],
    ]
    assert server.groups[0][0].startswith("MAIL FROM:<desk@asm.example> SIZE=")
    assert server.groups[0][1] == "RCPT TO:<alice@example.org>"
    # Transparency (RFC 5321 4.5.2): the server, undoing the dots, gets the message as rendered.
    sent = render_outgoing(DOTTED, now=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    assert server.messages[0] == sent + b"\r\n" * (not sent.endswith(b"\r\n"))
    assert len(server.messages) == 2


def test_without_pipelining_each_command_waits_for_its_reply(
    wire_server: Callable[..., _WireServer],
) -> None:
    server = wire_server(pipelining=False)
    _mailer(server.port).send(DOTTED)
    assert server.groups == [[server.groups[0][0]]]  # MAIL alone: RCPT came after its reply
    assert len(server.messages) == 1


def test_a_354_to_a_pipelined_data_after_a_refused_rcpt_sends_nothing(
    wire_server: Callable[..., _WireServer],
) -> None:
    # RFC 2920 3.1 warns that a server may answer 354 to a pipelined DATA although no RCPT
    # was accepted, and has the client send a lone dot then; we send nothing (a dot could
    # deliver an empty message): the session is dropped, and the next reply opens a new one.
    server = wire_server(pipelining=True, rcpt="550 5.1.1 no such user", data="354 go")
    mailer = _mailer(server.port)  # a 5 s timeout
    started = time.monotonic()
    with pytest.raises(PermanentSendError) as refused:
        mailer.send(REPLY)
    assert time.monotonic() - started < 2.5  # dropped at once, not after waiting for a reply
    assert refused.value.code == 550
    assert server.messages == []
    server.rcpt = "250 ok"
    mailer.send(REPLY)
    mailer.close()
    assert len(server.messages) == 1
    assert mailer.sessions == 2


@pytest.mark.parametrize("reused", [False, True])
@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize("stage", ["mail", "rcpt"])
def test_a_refusal_then_a_hang_up_is_the_refusal(
    wire_server: Callable[..., _WireServer], stage: str, pipelining: bool, reused: bool
) -> None:
    # Exim's "drop" ACL verb answers 550 and closes: the reply failed permanently, and is
    # not sent again on a new session (the server refused it; it did not go stale).
    server = wire_server(pipelining=pipelining)
    mailer = _mailer(server.port)
    if reused:
        mailer.send(_reply(1))
    setattr(server, stage, "550 5.7.1 go away")
    server.hang_up_after_refusal = True
    with pytest.raises(PermanentSendError) as refused:
        mailer.send(REPLY)
    assert refused.value.code == 550
    assert server.connections == 1
    assert len(server.messages) == int(reused)


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_hang_up_after_the_message_is_not_retried(
    wire_server: Callable[..., _WireServer], pipelining: bool
) -> None:
    # The server may have the message: never sent twice by the mailer (send.py's invariant).
    server = wire_server(pipelining=pipelining)
    mailer = _mailer(server.port)
    mailer.send(_reply(1))
    server.hang_up_after_message = True
    with pytest.raises(TransientSendError):
        mailer.send(_reply(2))
    assert len(server.messages) == 2
    assert server.connections == 1


def test_after_a_354_to_a_refused_transaction_the_next_reply_is_prompt(
    wire_server: Callable[..., _WireServer],
) -> None:
    server = wire_server(pipelining=True, rcpt="550 5.1.1 no such user", data="354 go")
    mailer = _mailer(server.port)
    with pytest.raises(PermanentSendError):
        mailer.send(REPLY)
    server.rcpt = "250 ok"
    started = time.monotonic()
    mailer.send(REPLY)
    assert time.monotonic() - started < 2.5  # a new session at once, not after a timeout
    assert server.connections == 2


def test_with_chunking_the_message_goes_out_with_its_commands_in_one_write(
    wire_server: Callable[..., _WireServer],
) -> None:
    # RFC 3030 with RFC 2920: MAIL, RCPT and "BDAT <size> LAST" with the message itself,
    # pipelined: one round trip a reply, the bytes as rendered (BDAT has no dot-stuffing).
    server = wire_server(pipelining=True, chunking=True)
    mailer = _mailer(server.port)
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    mailer.send(DOTTED, now=when)
    mailer.send(_reply(2), now=when)
    mailer.close()
    sent = render_outgoing(DOTTED, now=when)
    assert server.groups[0][1:] == ["RCPT TO:<alice@example.org>", f"BDAT {len(sent)} LAST"]
    assert server.messages == [sent, render_outgoing(_reply(2), now=when)]
    assert mailer.sessions == 1


def test_chunking_without_pipelining_sends_data(wire_server: Callable[..., _WireServer]) -> None:
    server = wire_server(pipelining=False, chunking=True)
    _mailer(server.port).send(DOTTED)
    assert server.groups == [[server.groups[0][0]]]  # MAIL alone, then RCPT, then DATA
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"rcpt": "550 5.1.1 no such user"}, 550),  # BDAT then answered 554: RCPT's refusal
        ({"mail": "553 5.1.8 sender refused"}, 553),
        ({"bdat": "552 5.3.4 message too big"}, 552),
    ],
)
def test_a_chunked_reply_refused_keeps_the_session_and_reports_the_first_refusal(
    wire_server: Callable[..., _WireServer], changes: dict[str, str], code: int
) -> None:
    server = wire_server(pipelining=True, chunking=True)
    mailer = _mailer(server.port)
    for name, value in changes.items():
        setattr(server, name, value)
    with pytest.raises(PermanentSendError) as refused:
        mailer.send(REPLY)
    assert refused.value.code == code
    assert server.messages == []
    for name in changes:
        setattr(server, name, "250 ok" if name != "bdat" else "250 queued")
    mailer.send(_reply(2))
    mailer.close()
    assert len(server.messages) == 1
    assert server.connections == 1  # the same session carried the next reply


def test_a_window_of_replies_goes_out_in_one_write_each_accepted_by_its_own_250(
    wire_server: Callable[..., _WireServer],
) -> None:
    # RFC 2920 with RFC 3030: BDAT ends no group, so the next transaction may follow at once
    # (after an RSET); the replies are read in order and each message has its own outcome.
    server = wire_server(pipelining=True, chunking=True)
    mailer = _mailer(server.port)
    assert mailer.send_many([_reply(1), _reply(2), _reply(3)]) == [None, None, None]
    mailer.close()
    assert _subjects(server.messages) == ["Call 1", "Call 2", "Call 3"]
    assert b"MAIL FROM" in server.ahead[0]  # the second transaction was there before the first
    assert mailer.sessions == 1


@pytest.mark.parametrize(
    ("refusal", "kind", "code"),
    [
        ("550 5.1.1 no such user", PermanentSendError, 550),
        ("451 4.7.1 greylisted, try later", TransientSendError, 451),
    ],
)
def test_a_refused_reply_in_a_window_leaves_the_others_alone(
    wire_server: Callable[..., _WireServer], refusal: str, kind: type[SendError], code: int
) -> None:
    server = wire_server(pipelining=True, chunking=True)
    server.refuse = {"gone@example.org": refusal}
    mailer = _mailer(server.port)
    first, second, third = mailer.send_many(
        [_reply(1), _reply(2, to="gone@example.org"), _reply(3)]
    )
    assert first is None
    assert third is None
    assert isinstance(second, kind)
    assert second.code == code
    assert _subjects(server.messages) == ["Call 1", "Call 3"]
    assert server.connections == 1


def test_a_server_gone_in_the_middle_of_a_window_fails_the_rest_for_later(
    wire_server: Callable[..., _WireServer],
) -> None:
    server = wire_server(pipelining=True, chunking=True)
    server.idle_close = True  # ends the session after the first message's 250
    outcomes = _mailer(server.port).send_many([_reply(1), _reply(2), _reply(3)])
    assert outcomes[0] is None
    assert [type(o) for o in outcomes[1:]] == [TransientSendError, TransientSendError]
    assert _subjects(server.messages) == ["Call 1"]  # the others wait for the outbox's retry


def test_a_window_on_a_session_closed_while_idle_goes_out_once_on_a_new_one(
    wire_server: Callable[..., _WireServer],
) -> None:
    server = wire_server(pipelining=True, chunking=True)
    server.idle_close = True
    mailer = _mailer(server.port)
    mailer.send(_reply(1))  # the server ends this session quietly after its 250
    assert mailer.send_many([_reply(2), _reply(3)]) == [None, None]
    mailer.close()
    assert _subjects(server.messages) == ["Call 1", "Call 2", "Call 3"]
    assert server.connections == 2


def test_without_chunking_a_temporary_failure_stops_the_rest(
    wire_server: Callable[..., _WireServer],
) -> None:
    # One transaction after the other: after a 4xx the server is likely down, so the replies
    # behind it are not tried (the list of outcomes ends there).
    server = wire_server(pipelining=True)
    server.refuse = {"later@example.org": "451 4.3.0 try later"}
    mailer = _mailer(server.port)
    outcomes = mailer.send_many([_reply(1), _reply(2, to="later@example.org"), _reply(3)])
    assert len(outcomes) == 2
    assert outcomes[0] is None
    assert isinstance(outcomes[1], TransientSendError)
    assert _subjects(server.messages) == ["Call 1"]


def test_a_window_keeps_to_max_per_session(wire_server: Callable[..., _WireServer]) -> None:
    server = wire_server(pipelining=True, chunking=True)
    mailer = _mailer(server.port, max_per_session=2)
    assert mailer.send_many([_reply(n) for n in (1, 2, 3)]) == [None, None, None]
    mailer.close()
    assert mailer.sessions == 2
    assert _subjects(server.messages) == ["Call 1", "Call 2", "Call 3"]


def test_a_slow_answer_on_a_reused_session_is_not_taken_for_a_closed_one(
    wire_server: Callable[..., _WireServer],
) -> None:
    # Review: a timeout is no hang-up. The server may be taking the whole window before it
    # answers (Postfix holds pipelined replies while input is pending); sending the window
    # again on a new session would deliver it twice.
    server = wire_server(pipelining=True, chunking=True)
    mailer = _mailer(server.port, timeout=1)
    mailer.send(_reply(1))
    server.slow = 3.0  # longer than the window's budget of 2 s (two replies, 1 s timeout)
    outcomes = mailer.send_many([_reply(2), _reply(3)])
    assert [type(outcome) for outcome in outcomes] == [TransientSendError, TransientSendError]
    time.sleep(3.5)  # let the slow server finish whatever it does with the window
    subjects = _subjects(server.messages)
    assert all(subjects.count(f"Call {n}") <= 1 for n in (2, 3)), subjects
    assert server.connections == 1


def test_a_server_gone_while_a_window_is_written_keeps_the_answers_it_gave(
    wire_server: Callable[..., _WireServer],
) -> None:
    # Review: the server answers the first reply (250), then ends the session while the
    # rest is still being written (too large for the socket buffers): the first counts as
    # sent, the others are left for later, and none is written again here.
    server = wire_server(pipelining=True, chunking=True)
    server.idle_close = True  # the first session ends after its first message's 250
    large = "".join(f"line {n} of a long reply\n" for n in range(120_000))  # 3 MB
    window = [attrs.evolve(_reply(n), body=large) for n in range(1, 11)]  # more than buffers
    outcomes = _mailer(server.port).send_many(window)
    assert outcomes[0] is None
    assert [type(outcome) for outcome in outcomes[1:]] == [TransientSendError] * 9
    assert _subjects(server.messages) == ["Call 1"]
    assert server.connections == 1


def test_a_garbled_reply_in_a_window_ends_the_session_rather_than_misread_the_rest(
    wire_server: Callable[..., _WireServer],
) -> None:
    # Review: smtplib stops inside a garbled multi-line reply (code -1), leaving its rest
    # unread; read on, every later answer would belong to the command before.
    server = wire_server(pipelining=True, chunking=True)
    server.script = {
        ("MAIL", 1): "250-sender ok\r\nnot a reply line\r\n250 sender ok",
        ("BDAT", 2): "554 5.7.1 refused",
    }
    outcomes = _mailer(server.port).send_many([_reply(1), _reply(2), _reply(3)])
    time.sleep(0.2)  # the server finishes what was written
    taken = _subjects(server.messages)
    for number, outcome in zip((1, 2, 3), outcomes, strict=True):
        if outcome is None:  # reported sent: the server took that very message
            assert f"Call {number}" in taken, (number, outcomes, taken)
        elif isinstance(outcome, PermanentSendError):  # refused for good: it did not
            assert f"Call {number}" not in taken, (number, outcomes, taken)
    assert outcomes[0] is not None
    assert "unexpected reply code" in str(outcomes[0])


def test_a_window_waits_for_a_server_that_answers_once_it_has_taken_them_all(
    wire_server: Callable[..., _WireServer],
) -> None:
    # Each read of a window may wait as long as the whole window takes the server: a 1 s
    # timeout, a window of two, 1.5 s of thinking before each answer to MAIL.
    server = wire_server(pipelining=True, chunking=True)
    server.slow = 1.5
    mailer = _mailer(server.port, timeout=1)
    assert mailer.send_many([_reply(1), _reply(2)]) == [None, None]
    assert _subjects(server.messages) == ["Call 1", "Call 2"]
    with pytest.raises(TransientSendError, match="timed out"):  # one reply: 1 s again
        mailer.send(_reply(3))


def test_send_many_answers_between_transactions_and_stops_when_told(
    wire_server: Callable[..., _WireServer],
) -> None:
    # Without CHUNKING each reply is its own transaction: ``answered`` hears each outcome
    # before the next is written (the reply pump journals it there), and False ends the list.
    server = wire_server(pipelining=True, chunking=False)
    seen: list[list[object]] = []

    def answered(so_far: Sequence[object]) -> bool:
        seen.append(list(so_far))
        return len(so_far) < 2

    outcomes = _mailer(server.port).send_many([_reply(n) for n in (1, 2, 3)], answered=answered)
    assert outcomes == [None, None]
    assert seen == [[None], [None, None]]
    assert _subjects(server.messages) == ["Call 1", "Call 2"]


def test_send_many_answers_after_each_window_not_after_the_last(
    wire_server: Callable[..., _WireServer],
) -> None:
    server = wire_server(pipelining=True, chunking=True)
    seen: list[int] = []

    def answered(so_far: Sequence[object]) -> bool:
        seen.append(len(so_far))
        return True

    mailer = _mailer(server.port, max_per_session=2)  # windows of two, then one
    assert mailer.send_many([_reply(n) for n in (1, 2, 3)], answered=answered) == [None] * 3
    assert seen == [2]
    assert _subjects(server.messages) == ["Call 1", "Call 2", "Call 3"]


def test_a_reply_sent_from_the_outbox_logs_one_info_line(
    smtp_server: SmtpFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # docs/operators.md: "Each reply sent from the outbox gives one line from asm_email_rules,
    # with its reply_message_id and to". The SMTP adapter's own line for the 250 is DEBUG (a
    # poll logs at INFO: it printed "reply sent" twice for every reply).
    server = smtp_server()
    mailer = _mailer(server.port)
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    with SqliteRepository(":memory:") as store:
        store.record_processed("box", "<question-1@example.org>", "s1", "{}", REPLY, now)
        with caplog.at_level("DEBUG", logger="asm_email_rules"):
            report = send_due(
                store, mailer, SystemSettings(), owner="poller-1", clock=lambda: now + timedelta(1)
            )
    mailer.close()
    assert [outcome.result.value for outcome in report.outcomes] == ["sent"]
    info = [r for r in caplog.records if r.levelname == "INFO" and "reply" in r.getMessage()]
    assert [(r.name, r.getMessage()) for r in info] == [("asm_email_rules", "reply sent")]
    assert info[0].__dict__["reply_message_id"] == REPLY.message_id
    adapter = [r for r in caplog.records if r.name == "asm_email_rules.adapters.smtp"]
    assert [(r.levelname, r.getMessage()) for r in adapter] == [("DEBUG", "reply sent")]


@pytest.mark.parametrize("refusal", ["greeting", "ehlo and helo", "starttls"])
def test_a_server_that_refuses_us_a_session_defers_the_reply_and_sends_it_later(
    wire_server: Callable[..., _WireServer], refusal: str
) -> None:
    """A 5xx to the connection itself (the greeting, RFC 5321 3.1: "554 No SMTP service
    here"; EHLO and HELO both refused; STARTTLS refused) says nothing of the reply: the server
    will not serve us right now (our address blocked, the relay misconfigured). The reply must
    stay pending and go out once the server serves us again, not be failed for good as a
    reply the server refused would be, with the desk's every reply lost the same way."""
    server = wire_server(pipelining=True, chunking=True)
    security = "plain"
    if refusal == "greeting":
        server.greeting = "554 5.7.1 no SMTP service here for you"
    elif refusal == "ehlo and helo":
        server.ehlo = "550 5.7.1 go away"
    else:
        server.starttls = "554 5.7.3 TLS not available"
        security = "starttls"
    mailer = _mailer(server.port, security=security)
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    with SqliteRepository(":memory:") as store:
        store.record_processed("box", "<question-1@example.org>", "s1", "{}", REPLY, now)
        report = send_due(store, mailer, SystemSettings(), owner="p", clock=lambda: now)
        assert [outcome.result.value for outcome in report.outcomes] == ["deferred"]
        assert server.messages == []
        server.greeting, server.ehlo = "220 wire.test ESMTP", None
        if refusal == "starttls":
            mailer = _mailer(server.port)  # the operator switched TLS off on the way
        later = now + timedelta(hours=1)
        report = send_due(store, mailer, SystemSettings(), owner="p", clock=lambda: later)
        assert [outcome.result.value for outcome in report.outcomes] == ["sent"]
    mailer.close()
    assert len(server.messages) == 1


def test_a_reply_to_an_idn_domain_goes_out_in_punycode_without_smtputf8(
    smtp_server: SmtpFactory,
) -> None:
    """RFC 5891 4.2 / RFC 5890 2.3.2.1: a Unicode domain is sent as its A-labels, which any
    server takes; a reply to ``anna@Bücher.example`` is not refused for want of SMTPUTF8."""
    server = smtp_server()
    mailer = _mailer(server.port)
    mailer.send(attrs.evolve(REPLY, to="anna@Bücher.example"))
    mailer.send(attrs.evolve(REPLY, to="wang@例子。广告"))
    assert [e.rcpt_tos for e in server.envelopes] == [
        ("anna@xn--bcher-kva.example",),
        ("wang@xn--fsqu00a.xn--4rr70v",),
    ]
    msg = BytesParser(policy=policy.default).parsebytes(server.envelopes[0].content)
    assert msg["To"] == "anna@xn--bcher-kva.example"


@pytest.mark.parametrize("to", ["anna@b\u202eücher.example", "anna@" + "ü" * 64 + ".example"])
def test_a_domain_that_cannot_be_punycode_is_refused_without_network(to: str) -> None:
    with pytest.raises(PermanentSendError, match="domain label"):
        _mailer(1).send(attrs.evolve(REPLY, to=to))


@pytest.mark.parametrize("chunking", [False, True])
def test_a_reply_to_a_non_ascii_mailbox_goes_out_with_smtputf8(
    smtp_server: SmtpFactory, chunking: bool
) -> None:
    """RFC 6531 3.4: ``MAIL FROM:<...> SMTPUTF8`` and the mailbox as written in RCPT TO;
    RFC 6532 3.2: the To field in UTF-8 (no encoded-word can carry an addr-spec)."""
    server = smtp_server(smtputf8=True, chunking=chunking)
    mailer = _mailer(server.port)
    mailer.send(attrs.evolve(REPLY, to="josé@Bücher.example"))
    mailer.send(REPLY)  # an ASCII reply after it, on the same session: as before
    [utf8, plain] = server.envelopes
    assert utf8.rcpt_tos == ("josé@xn--bcher-kva.example",)
    assert "SMTPUTF8" in utf8.mail_options
    msg = BytesParser(policy=policy.default).parsebytes(utf8.content)
    assert msg["To"] == "josé@xn--bcher-kva.example"
    assert msg["Subject"] == REPLY.subject
    assert plain.rcpt_tos == ("alice@example.org",)
    assert "SMTPUTF8" not in plain.mail_options
    assert plain.content.isascii()


def test_without_smtputf8_a_non_ascii_mailbox_is_refused_kept_and_others_still_go(
    smtp_server: SmtpFactory,
) -> None:
    """RFC 6531 3.4: no SMTPUTF8 offered, no non-ASCII mailbox sent (never a mangled address).
    DESIGN 4 "Nothing is lost": the reply is kept as FAILED with the reason (re-sendable by
    command), not retried for ever, and the replies after it are sent."""
    server = smtp_server(pipelining=True, chunking=True)
    mailer = _mailer(server.port)
    jose = attrs.evolve(REPLY, to="josé@example.com", message_id="<asm.call-1.a@asm.example>")
    outcomes = mailer.send_many([jose, REPLY])
    assert isinstance(outcomes[0], PermanentSendError)
    assert "SMTPUTF8" in str(outcomes[0])
    assert outcomes[1] is None
    assert [e.rcpt_tos for e in server.envelopes] == [("alice@example.org",)]
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with SqliteRepository(":memory:") as store:
        store.record_processed("box", "<question-9@example.org>", "s9", "{}", jose, now)
        report = send_due(store, mailer, SystemSettings(), owner="p", clock=lambda: now)
        assert [outcome.result.value for outcome in report.outcomes] == ["refused"]
        entry = store.outbox_entry(jose.message_id)
        assert entry is not None
        assert entry.status.value == "failed"
        assert "SMTPUTF8" in entry.last_error
    mailer.close()
    assert len(server.envelopes) == 1
