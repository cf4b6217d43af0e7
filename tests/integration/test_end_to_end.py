"""End to end: mail in a real Dovecot INBOX, ``asm-email-rules poll --once``, replies to aiosmtpd.

The messages are appended over IMAP, the command runs with a TOML file pointing at both servers
and a SQLite store, and the test then reads the store, the SMTP server's envelopes and the
Dovecot folders.
"""

from __future__ import annotations

import imaplib
import socket
import threading
from contextlib import suppress
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from loopback import HOST, stop_listening

from asm_email_rules.adapters.maildir import QUARANTINE_HEADER
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.model import EntityKind, EntityRef, TaskStatus
from asm_email_rules.sample import DESK_ADDRESS, seed_sample_desk

if TYPE_CHECKING:
    from conftest import Dovecot, SmtpFactory

pytestmark = pytest.mark.integration

GARBAGE = b" \r\n\r\n"


def make_raw(subject: str, sender: str, body: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = "Fri, 27 Nov 2026 11:00:00 +0000"
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)


CONFIG = """\
store = "{store}"

[system]
max_send_attempts = 3

[smtp]
host = "{smtp_host}"
port = {smtp_port}
security = "plain"
timeout = 10

[[accounts]]
name = "helpdesk"
protocol = "imap"
host = "{imap_host}"
port = {imap_port}
security = "plain"
username = "{user}"
password_env = "E2E_IMAP_PASSWORD"
folder = "INBOX"
quarantine_folder = "Quarantine"
timeout = 10

[accounts.mailbox]
addresses = ["{desk}"]
default_logging_analyst_id = 1
auto_reply = true

[accounts.mailbox.call_template]
name = "Email call"
assigned_analyst_id = 2
assigned_group = "Service Desk"
"""


def test_poll_once_applies_replies_deletes_and_quarantines(
    dovecot: Dovecot,
    mail_user: str,
    smtp_server: SmtpFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    smtp = smtp_server()
    store = tmp_path / "helpdesk.sqlite3"
    with SqliteRepository(store) as repo:
        seed_sample_desk(repo)
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(
            store=store.name,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            imap_host=dovecot.host,
            imap_port=dovecot.imap_port,
            user=mail_user,
            desk=DESK_ADDRESS,
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("E2E_IMAP_PASSWORD", "secret")

    new_call = make_raw(
        "Scanner offline", "uma@corp.example", "The scanner on floor 3 is offline.", "<n1@corp>"
    )
    update = make_raw("[CALL#100] still jams", "uma@corp.example", "Jammed twice today.", "<u1@c>")
    approve = make_raw("[APPROVE#500]", "alice@desk.example", "Approved.", "<a1@desk.example>")
    for raw in (new_call, update, approve, GARBAGE):
        dovecot.append(mail_user, raw)

    code = main(["poll", "--once", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "helpdesk: processed 3" in out
    assert "quarantined 1" in out

    # the store: a call logged, history added to call 100, task 500 approved
    with SqliteRepository(store) as repo:
        call = repo.get_call(103)
        assert call is not None
        assert "scanner on floor 3" in call.description
        assert call.user_id == 3  # Uma
        history = [entry.text for entry in repo.entries(EntityRef(EntityKind.CALL, 100))]
        assert any("Jammed twice today." in text for text in history)
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.APPROVED

    # the replies the SMTP server received
    parser = BytesParser(policy=policy.default)
    replies = {}
    for envelope in smtp.envelopes:
        msg = parser.parsebytes(envelope.content)
        replies[str(msg["Subject"])] = (envelope, msg)
    assert set(replies) == {
        "Call 103 has been logged [CALL#103]",
        "Call 100 has been updated [CALL#100]",
        "Task 500 has been successfully approved [TASK#500]",
    }
    envelope, msg = replies["Task 500 has been successfully approved [TASK#500]"]
    assert envelope.rcpt_tos == ("alice@desk.example",)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<a1@desk.example>"
    assert str(msg["Message-ID"]).startswith("<asm.task-500.")
    for _, reply in replies.values():
        assert reply["Auto-Submitted"] == "auto-replied"
        assert reply["From"].addresses[0].addr_spec == DESK_ADDRESS
    _, logged = replies["Call 103 has been logged [CALL#103]"]
    assert logged["In-Reply-To"] == "<n1@corp>"
    assert logged["To"].addresses[0].addr_spec == "uma@corp.example"

    # the mailbox: INBOX empty, the garbage set aside with its reason
    assert dovecot.messages(mail_user) == []
    [kept] = dovecot.messages(mail_user, "Quarantine")
    assert kept.endswith(GARBAGE)
    assert QUARANTINE_HEADER.encode() in kept
    assert b"cannot parse" in kept

    # a second poll finds nothing to do and acts on nothing again
    code = main(["poll", "--once", "--config", str(config)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "helpdesk: processed 0, duplicates 0" in out
    assert len(smtp.envelopes) == 3


def _connection_limit(dovecot: Dovecot, limit: int) -> tuple[int, socket.socket]:
    """A loopback proxy in front of ``dovecot``'s IMAP that lets ``limit`` connections at a
    time through and answers the others' ``LOGIN`` as Dovecot does over its
    ``mail_max_userip_connections``; (its port, its listener)."""
    listener = socket.create_server((HOST, 0))
    port: int = listener.getsockname()[1]
    lock = threading.Lock()
    open_now = [0]

    def pipe(source: socket.socket, target: socket.socket, last: bool) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)
        if last:
            with lock:
                open_now[0] -= 1

    def turn_away(client: socket.socket) -> None:
        with suppress(OSError), client, client.makefile("rb") as lines:
            client.sendall(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
            for line in lines:
                tag, _, command = line.partition(b" ")
                verb = command.split(b" ", 1)[0].strip().upper()
                if verb == b"CAPABILITY":
                    client.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                elif verb == b"LOGIN":
                    client.sendall(
                        tag + b" NO [LIMIT] Maximum number of connections from user+IP "
                        b"exceeded (mail_max_userip_connections=%d)\r\n" % limit
                    )
                else:
                    client.sendall(b"* BYE\r\n" + tag + b" OK done\r\n")
                    return

    def serve() -> None:
        with suppress(OSError):
            while True:
                client, _ = listener.accept()
                with lock:
                    through = open_now[0] < limit
                    open_now[0] += through
                if not through:
                    threading.Thread(target=turn_away, args=(client,), daemon=True).start()
                    continue
                server = socket.create_connection((dovecot.host, dovecot.imap_port))
                threading.Thread(target=pipe, args=(client, server, False), daemon=True).start()
                threading.Thread(target=pipe, args=(server, client, True), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return port, listener


def test_a_server_allowing_one_connection_more_than_a_person_uses_has_its_backlog_drained(
    dovecot: Dovecot,
    mail_user: str,
    smtp_server: SmtpFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A host that allows two IMAP connections per user, one of them held by a person's mail
    # client: the connection the service opened ahead for its next session was turned away
    # (NO [LIMIT]) and the whole poll failed and backed off after one session's messages.
    smtp = smtp_server()
    store = tmp_path / "helpdesk.sqlite3"
    with SqliteRepository(store) as repo:
        seed_sample_desk(repo)
    for n in range(7):
        body = f"Printer {n} on floor 2 is broken."
        dovecot.append(mail_user, make_raw(f"Printer {n}", f"p{n}@corp.example", body, f"<p{n}@c>"))
    port, listener = _connection_limit(dovecot, 2)
    config = tmp_path / "config.toml"
    text = CONFIG.format(
        store=store.name,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        imap_host=dovecot.host,
        imap_port=port,
        user=mail_user,
        desk=DESK_ADDRESS,
    )
    config.write_text(
        text.replace(
            "timeout = 10\n\n[accounts", "timeout = 10\nmax_messages_per_session = 2\n\n[accounts"
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("E2E_IMAP_PASSWORD", "secret")
    person = imaplib.IMAP4(HOST, port, timeout=5)
    try:
        person.login(mail_user, "secret")
        person.select("INBOX")
        code = main(["poll", "--once", "--config", str(config)])
        person.logout()
    finally:
        stop_listening(listener)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "helpdesk: processed 7" in out
    assert "the connection opened ahead for the next session failed" in out + err
    assert dovecot.messages(mail_user) == []
