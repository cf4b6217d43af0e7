"""``deliver``, ``process -`` and ``explain -``: mail handed over on standard input.

Issue 11: "``asm-email-rules deliver --config F [--account NAME]`` reads one message on standard
input and runs it through the same ``process``; exit 0 when handled (acted, discarded with a
reason, or quarantined into the store's quarantine), 75 (EX_TEMPFAIL) when our side is not
ready (store locked or down) so the mail server retries, never a traceback."
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import sqlite3
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.config import Config
from asm_email_rules.delivery import Verdict, deliver_message
from asm_email_rules.errors import NotFoundError
from asm_email_rules.model import OutgoingEmail, ReplyStatus, TaskStatus
from asm_email_rules.pipeline import explain, process
from asm_email_rules.protocols import Mailbox, Repository
from asm_email_rules.quarantine import QuarantineState
from asm_email_rules.sample import DEMO_NOW, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings

INBOX = Path(__file__).resolve().parents[2] / "src" / "asm_email_rules" / "demo_inbox"
APPROVE = (INBOX / "10-approve-task-500.eml").read_bytes()


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: bytes,
    *argv: str,
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """``init`` output with the sample desk's people and mailbox address; returns config.toml."""
    assert main(["init", str(tmp_path)]) == 0
    config = tmp_path / "config.toml"
    text = config.read_text().replace(
        'addresses = ["helpdesk@example.org"]', 'addresses = ["helpdesk@desk.example"]'
    )
    config.write_text(text)
    with SqliteRepository(tmp_path / "helpdesk.sqlite3") as repo:
        seed_sample_desk(repo)
    capsys.readouterr()
    return config


def test_deliver_acts_on_the_message_and_exits_0(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(capsys, monkeypatch, APPROVE, "deliver", "--config", str(desk))
    assert code == 0, err
    assert "rule AP-11" in out
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.APPROVED
    # the mail server handing the same message over again acts on nothing twice
    code, out, _ = run(capsys, monkeypatch, APPROVE, "deliver", "--config", str(desk))
    assert code == 0
    assert "already processed" in out


def test_deliver_and_replies_list_need_no_other_account_s_password(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mail server's pipe passes no environment: deliver into the Maildir account failed
    # with exit 75 (the message deferred until it bounced) because another account's
    # password_env was not set; `replies list`, which signs in nowhere, failed too.
    imap = (
        '\n[[accounts]]\nname = "other"\nprotocol = "imap"\nhost = "imap.example.org"\n'
        'username = "desk"\npassword_env = "ASM_UNSET_PASSWORD_FOR_TEST"\n'
        '[accounts.mailbox]\naddresses = ["other@desk.example"]\n'
    )
    desk.write_text(desk.read_text() + imap)
    monkeypatch.delenv("ASM_UNSET_PASSWORD_FOR_TEST", raising=False)
    code, out, err = run(capsys, monkeypatch, APPROVE, "deliver", "--config", str(desk))
    assert code == 0, err
    assert "rule AP-11" in out
    code, _, err = run(capsys, monkeypatch, b"", "replies", "list", "--config", str(desk))
    assert code == 0, err
    # nor the password of the account it delivers into: it uses that account's rules, and
    # signs in to no mailbox
    other = APPROVE.replace(b"Message-ID: <", b"Message-ID: <other-")
    assert other != APPROVE
    code, _, err = run(
        capsys, monkeypatch, other, "deliver", "--config", str(desk), "--account", "other"
    )
    assert code == 0, err


def test_deliver_logs_the_message_once_with_its_rule(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # deliver has no polling service around the pipeline: its "message processed" line
    # (stderr, -v for INFO) is the one line per message
    code, _, err = run(capsys, monkeypatch, APPROVE, "-v", "deliver", "--config", str(desk))
    assert code == 0, err
    [line] = [line for line in err.splitlines() if "message processed" in line]
    assert "rule=AP-11" in line
    assert "message_id=<10-approve-task-500.demo@mail.example>" in line


def test_an_unparseable_message_is_quarantined_in_the_store_and_exits_0(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(capsys, monkeypatch, b"  \r\n", "deliver", "--config", str(desk))
    assert code == 0, err
    assert "quarantined as 1" in out
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        [held] = repo.quarantined()
    assert held.raw == b"  \r\n"
    assert held.source == "deliver"
    assert held.state is QuarantineState.HELD
    assert held.reason.startswith("cannot parse")


def test_a_locked_store_exits_75_and_changes_nothing(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = desk.parent / "helpdesk.sqlite3"
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the store
    try:
        code, out, err = run(capsys, monkeypatch, APPROVE, "deliver", "--config", str(desk))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 75
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "try later" in err
    assert "locked" in err
    assert "Traceback" not in err
    with SqliteRepository(store) as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.PENDING


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (("max_send_attempts = 5", "max_send_attempts = 0"), "max_send_attempts"),
        (('store = "helpdesk.sqlite3"', 'store = "missing.sqlite3"'), "store not found"),
    ],
)
def test_a_broken_configuration_or_store_is_a_retry_not_a_bounce(
    desk: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    change: tuple[str, str],
    what: str,
) -> None:
    text = desk.read_text()
    assert change[0] in text
    desk.write_text(text.replace(*change))
    code, out, err = run(capsys, monkeypatch, APPROVE, "deliver", "--config", str(desk))
    assert code == 75
    assert out == ""
    assert what in err
    assert len(err.strip().splitlines()) == 1
    assert not (desk.parent / "missing.sqlite3").exists()


def test_process_and_explain_read_standard_input(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(capsys, monkeypatch, APPROVE, "explain", "-", "--config", str(desk))
    assert code == 0, err
    assert "dry run of standard input" in out
    assert "rule AP-11" in out
    code, out, err = run(capsys, monkeypatch, APPROVE, "process", "-", "--config", str(desk))
    assert code == 0, err
    assert "-: rule AP-11" in out


def test_explain_needs_no_password_and_no_existing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 11, item 8: "explain needs the SMTP password and an existing store although it is a
    # dry run".
    assert main(["init", str(tmp_path)]) == 0
    config = tmp_path / "config.toml"
    smtp = (
        '[smtp]\nhost = "smtp.example.org"\nusername = "desk"\npassword_env = "ASM_SMTP_PASSWORD"\n'
    )
    text = config.read_text().replace("[[accounts]]", smtp + "\n[[accounts]]", 1)
    config.write_text(text.replace('store = "helpdesk.sqlite3"', 'store = "later.sqlite3"'))
    monkeypatch.delenv("ASM_SMTP_PASSWORD", raising=False)
    code, out, err = run(capsys, monkeypatch, APPROVE, "explain", "-", "--config", str(config))
    assert code == 0, err
    assert "does not exist yet" in out
    assert not (tmp_path / "later.sqlite3").exists()
    # the real run still needs the password, and says which variable is missing
    code, _, err = run(capsys, monkeypatch, APPROVE, "process", "-", "--config", str(config))
    assert code == 2
    assert "ASM_SMTP_PASSWORD" in err


def test_the_reply_from_has_a_display_name_and_the_token_goes_where_configured(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 11, item 8: "the reply From has no display name; the [CALL#n] token appended to
    # every reply subject is undocumented and cannot be templated".
    text = desk.read_text().replace(
        'from_name = "Service Desk"',
        'from_name = "ACME IT Desk"\nreply_subject = "$token $subject"',
    )
    desk.write_text(text)
    raw = (
        b"From: Alice Analyst <alice@desk.example>\r\nTo: helpdesk@desk.example\r\n"
        b"Subject: Keyboard sticky\r\nMessage-ID: <kb@desk.example>\r\n\r\nKeys stick.\r\n"
    )
    code, out, err = run(capsys, monkeypatch, raw, "deliver", "--config", str(desk))
    assert code == 0, err
    assert "rule LOG-5" in out
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        entry = repo.ledger_entry("helpdesk", "<kb@desk.example>", hashlib.sha256(raw).hexdigest())
    assert entry is not None
    assert entry.reply is not None
    assert entry.reply.sender == "ACME IT Desk <helpdesk@desk.example>"
    assert re.fullmatch(r"\[CALL#\d+\] .+", entry.reply.subject), entry.reply.subject
    desk.write_text(text.replace('"$token $subject"', '"$subject"'))
    code, _, err = run(capsys, monkeypatch, raw, "deliver", "--config", str(desk))
    assert code == 75
    assert "reply_subject: must contain $token" in err


def test_operator_output_never_cites_the_design_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 11, item 8: "operator output cites 'DESIGN 4'" (a document operators do not have).
    for message in sorted(INBOX.glob("*.eml")):
        for extra in ((), ("--json",)):
            assert main(["explain", str(message), *extra]) == 0
            out, _ = capsys.readouterr()
            assert "DESIGN" not in out, message.name
    assert main(["explain", str(INBOX / "04-analyst-and-user-logs-call.eml")]) == 0
    assert main(["tables"]) == 0
    out, _ = capsys.readouterr()
    assert "DESIGN" not in out
    assert "beyond the spec" in out


class _FlakyStore:
    """The sample desk in memory; ``set_task_status`` raises ``error`` (once, or always)."""

    def __init__(self, error: Exception, *, times: int = 1) -> None:
        self.inner = InMemoryRepository()
        seed_sample_desk(self.inner)
        self.error, self.times = error, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def set_task_status(self, *args: Any) -> None:
        if self.times:
            self.times -= 1
            raise self.error
        self.inner.set_task_status(*args)


@pytest.mark.parametrize(
    "error",
    [
        NotFoundError("no task 500"),  # the task went between the rules' read and their write
        sqlite3.OperationalError("database is locked"),  # a host store's unwrapped driver error
    ],
    ids=["not-found", "unwrapped"],
)
def test_deliver_asks_the_mail_server_to_retry_when_the_store_fails_not_the_message(
    error: Exception,
) -> None:
    """DESIGN 4: "A failure of our own side ... is never blamed on the message": EX_TEMPFAIL,
    nothing quarantined; the mail server's retry then acts on the message."""
    store = _FlakyStore(error)
    mailbox, system = sample_mailbox(), SystemSettings()
    first = deliver_message(APPROVE, cast(Repository, store), None, mailbox, system, DEMO_NOW)
    assert (first.verdict, first.exit_code) == (Verdict.TRY_LATER, 75)
    assert str(error) in first.detail
    assert store.inner.quarantined() == []
    second = deliver_message(APPROVE, cast(Repository, store), None, mailbox, system, DEMO_NOW)
    assert second.verdict is Verdict.HANDLED, second.detail
    task = store.inner.get_task(500)
    assert task is not None
    assert task.status is TaskStatus.APPROVED


def test_a_store_that_fails_after_the_server_took_the_reply_does_not_send_it_twice(
    tmp_path: Path,
) -> None:
    """DESIGN 4, "Replies are an outbox": "The only duplicate left is a crash between the
    server's 250 and our commit". Here nothing crashed: the store was locked past its
    timeout right after the server took the reply, so ``deliver`` said 75; the mail server's
    retry, once the reply's claim had expired, sent the customer a second copy. The reply
    is kept in the sent journal, and the retry records it sent instead."""
    path = tmp_path / "desk.sqlite3"
    with SqliteRepository(path) as repo:
        seed_sample_desk(repo)
    holder = sqlite3.connect(path, isolation_level=None)
    sent: list[str] = []

    class LockedAfterTheServerAnswered:
        def send(self, message: OutgoingEmail) -> None:
            sent.append(message.message_id)
            if len(sent) == 1:  # a long writer takes the store as the server says 250
                holder.execute("BEGIN IMMEDIATE")

    mailbox, system = sample_mailbox(), SystemSettings()
    mailer = LockedAfterTheServerAnswered()
    try:
        with SqliteRepository(path, timeout=0.2) as repo:
            first = deliver_message(APPROVE, repo, mailer, mailbox, system, DEMO_NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert first.exit_code == 75, first.detail
    later = DEMO_NOW + timedelta(seconds=system.lease_seconds + 1)  # the claim has expired
    with SqliteRepository(path, timeout=0.2) as repo:
        retry = deliver_message(APPROVE, repo, mailer, mailbox, system, later)
        outbox = repo.outbox_entry(sent[0])
    assert retry.exit_code == 0, retry.detail
    assert len(sent) == 1
    assert outbox is not None
    assert outbox.status is ReplyStatus.SENT
    assert not list((tmp_path / "desk.sqlite3.sent").glob("*.sent"))  # settled, forgotten


def test_the_line_the_mail_server_logs_says_why_a_reply_was_held_back(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN 4: "A per-sender reply budget stops reply storms", and nothing is dropped in
    silence. A mail server logs what ``deliver`` printed and drops its other output after
    exit 0; the line said ``reply none`` for a call whose acknowledgement the budget held
    back, as for a rule that sends none, so an operator could not tell why the customer got
    no answer."""
    text = desk.read_text().replace("[system]\n", "[system]\nreply_budget_per_hour = 1\n")
    desk.write_text(text)
    lines = []
    for number in (1, 2):
        raw = (
            "From: Alice Analyst <alice@desk.example>\r\nTo: helpdesk@desk.example\r\n"
            f"Subject: Printer {number} jams\r\nMessage-ID: <budget{number}@desk.example>\r\n"
            "\r\nIt jams again.\r\n"
        ).encode()
        code, out, _ = run(capsys, monkeypatch, raw, "deliver", "--config", str(desk))
        assert code == 0
        lines.append(out)
    assert "reply pending" in lines[0]
    assert "held back: reply budget" in lines[1], lines[1]
    assert "(limit 1)" in lines[1]


def test_the_line_the_mail_server_logs_says_why_a_message_was_discarded(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec: "If the Create New Calls Anonymously option is not selected for the
    incoming email account, a call is not created." The line the mail server keeps says
    why, not only the rule's id."""
    raw = (
        b"From: Stranger <stranger@elsewhere.example>\r\nTo: helpdesk@desk.example\r\n"
        b"Subject: Hello\r\nMessage-ID: <stranger1@elsewhere.example>\r\n\r\nHi.\r\n"
    )
    code, out, _ = run(capsys, monkeypatch, raw, "deliver", "--config", str(desk))
    assert code == 0
    assert "discard (unknown sender without Create New Calls Anonymously)" in out, out


def test_deliver_stops_at_its_time_limit_with_75_before_the_mail_server_bounces(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mail server kills a command that runs past its limit and bounces the message
    (Postfix: ``status=bounced (Command time limit exceeded)``), though its call was logged:
    the customer hears both "Call n has been logged" and "undeliverable". An SMTP server
    that never answers held ``deliver`` for its whole SMTP timeout per reply. It now stops at
    its own limit and says 75: the mail server retries, and the retry acts on nothing again."""
    with socket.socket() as silent:  # accepts connections (the kernel does) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        text = desk.read_text().replace(
            "# [smtp]", f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "plain"\n'
        )
        desk.write_text(text)
        argv = ("deliver", "--config", str(desk), "--time-limit", "1")
        started = time.monotonic()
        code, out, err = run(capsys, monkeypatch, APPROVE, *argv)
        took = time.monotonic() - started
        assert (code, out) == (75, ""), err
        assert took < 10  # the SMTP timeout is 30 s
        assert "time limit (1 s) passed" in err
        assert "Traceback" not in err
        code, _, err = run(capsys, monkeypatch, APPROVE, *argv)  # the mail server's retry
    assert code == 75, err  # the reply is still claimed by the first run
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.APPROVED  # acted on by the first run, once


def _no_mailbox(account: object) -> Mailbox:
    raise AssertionError("no mailbox is opened")


def test_every_entry_that_takes_now_refuses_a_naive_one_before_touching_the_message(
    tmp_path: Path,
) -> None:
    """A naive ``now`` is the host's mistake: a TypeError at once, never a message processed
    without the reply-age guard, nor one quarantined for it."""
    store = InMemoryRepository()
    seed_sample_desk(store)
    mailbox, system = sample_mailbox(), SystemSettings()
    naive = DEMO_NOW.replace(tzinfo=None)
    for call in (
        lambda: process(APPROVE, store, None, mailbox, system, naive),
        lambda: explain(APPROVE, store, mailbox, system, naive),
        lambda: deliver_message(APPROVE, store, None, mailbox, system, naive),
        lambda: PollingService(
            Config(tmp_path / "s", system, None, ()),
            store,
            None,
            _no_mailbox,
            now=lambda: naive,
        ),
    ):
        with pytest.raises(TypeError, match="timezone-aware"):
            call()
    assert store.quarantined() == []
    task = store.get_task(500)
    assert task is not None
    assert task.status is TaskStatus.PENDING


class _LongMessage(io.RawIOBase):
    """``head`` then ``body`` bytes of 64-byte lines, made as they are read (never held)."""

    def __init__(self, head: bytes, body: int) -> None:
        self.head = head
        self.left = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        n = min(len(buffer), self.left) // 64 * 64 or min(len(buffer), self.left)
        buffer[:n] = (b"x" * 63 + b"\n") * (n // 64) + b"x" * (n % 64)
        self.left -= n
        return n


def test_deliver_reads_a_huge_message_in_bounded_memory_and_handles_its_header(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `deliver` read standard input whole: a 60 MiB message held 60 MiB (a mail server without
    # a size limit, or `deliver < /dev/zero`, ran the process out of memory). It keeps four
    # times max_total_size now, reads the rest to its end (the mail server's write must not
    # fail) and handles the message on its header, as intake.md's "Limits" says for any
    # message over max_total_size.
    desk.write_text(desk.read_text() + "\n[system.limits]\nmax_total_size = 4000\n")
    header = APPROVE.partition(b"\n\n")[0] + b"\n\n"
    body = 60 * 1024 * 1024
    stream = io.BufferedReader(_LongMessage(header, body))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
    tracemalloc.start()
    try:
        code = main(["deliver", "--config", str(desk)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert peak < 8 * 1024 * 1024, peak
    assert stream.read() == b""  # read to its end
    assert f"a message of {len(header) + body} bytes: its first 16000 read" in err
    assert "rule AP-11" in out  # the header's [APPROVE#500] acted
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.APPROVED


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        (("deliver",), "required: --config"),
        (("deliver", "--config", "CONFIG", "--acount", "helpdesk"), "--acount"),
        (("-v", "deliver", "--config"), "--config"),
    ],
)
def test_a_mistyped_deliver_command_line_is_a_retry_not_a_bounce(
    desk: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    what: str,
) -> None:
    """operators.md, "deliver": exit 0 or 75 "and nothing else: a broken configuration is a
    retry, never a bounce to the customer". A typo in master.cf's argv is such a mistake: exit 2
    is no sysexits code, and Postfix bounces the customer's message on it."""
    words = [str(desk) if word == "CONFIG" else word for word in argv]
    code, out, err = run(capsys, monkeypatch, APPROVE, *words)
    assert code == 75
    assert out == ""
    assert err.startswith("asm-email-rules deliver: not ready, try later: ")
    assert what in err
    assert len(err.strip().splitlines()) == 1
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.PENDING  # nothing was acted on


def test_other_commands_keep_exit_2_for_a_usage_mistake(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, monkeypatch, b"", "check")
    assert code == 2
    assert "required: --config" in err


@pytest.mark.parametrize(
    "argv",
    [
        ("deliver", "--config", "CONFIG", "--help"),
        ("deliver", "-h", "--config", "CONFIG"),
        ("--help", "deliver", "--config", "CONFIG"),
    ],
)
def test_help_in_a_deliver_command_line_fed_a_message_is_a_retry_not_a_delivery(
    desk: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
) -> None:
    # "-h" left in master.cf's argv exited 0 after printing help: the mail server took the
    # message as delivered and dropped it, though nothing had read it
    words = [str(desk) if word == "CONFIG" else word for word in argv]
    code, _, err = run(capsys, monkeypatch, APPROVE, *words)
    assert code == 75
    assert err.startswith("asm-email-rules deliver: not ready, try later: ")
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.PENDING


def test_deliver_help_at_a_terminal_exits_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    assert main(["deliver", "--help"]) == 0
    assert "usage: asm-email-rules deliver" in capsys.readouterr().out


def _call_count(desk: Path) -> int:
    with SqliteRepository(desk.parent / "helpdesk.sqlite3") as repo:
        return len(repo.list_calls(limit=1000))


def test_the_same_message_handed_over_with_another_mbox_from_line_is_acted_on_once(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # procmail and Exim's pipe transport (its default message_prefix) write an mbox
    # "From sender date" line before the message, with the time of the delivery: the retry
    # after an exit 75 (or a second copy) came with another time, was not a duplicate, and
    # logged the call twice. DESIGN 4: the key leaves out what is added on the way.
    message = (INBOX / "02-analyst-logs-call.eml").read_bytes()
    before = _call_count(desk)
    outs = []
    for when in (b"Mon Dec  1 09:07:00 2025", b"Mon Dec  1 09:17:31 2025"):
        handed = b"From alice@desk.example  " + when + b"\n" + message
        code, out, err = run(capsys, monkeypatch, handed, "deliver", "--config", str(desk))
        assert code == 0, err
        outs.append(out)
    assert "rule LOG" in outs[0]
    assert "already processed" in outs[1]
    assert _call_count(desk) == before + 1


def test_a_message_cut_for_its_length_is_the_same_duplicate_whatever_its_trace_fields(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A message over four times max_total_size is cut; the cut counted the trace fields the
    # mail server adds (Return-Path, Received), so a second copy by another relay kept other
    # content bytes, had another ledger key and logged a second call (DESIGN 4: a redelivery
    # through another relay is a duplicate).
    desk.write_text(desk.read_text() + "\n[system.limits]\nmax_total_size = 4000\n")
    message = (INBOX / "02-analyst-logs-call.eml").read_bytes() + b"long line\n" * 4000
    before = _call_count(desk)
    outs = []
    for relays in (1, 3):
        trace = b"Return-Path: <alice@desk.example>\n" + b"".join(
            b"Received: from relay%d.desk.example by mx.desk.example; id %d\n" % (n, n * 97)
            for n in range(relays)
        )
        code, out, err = run(capsys, monkeypatch, trace + message, "deliver", "--config", str(desk))
        assert code == 0, err
        assert "its first 16000 read" in err
        outs.append(out)
    assert "rule LOG" in outs[0]
    assert "already processed" in outs[1]
    assert _call_count(desk) == before + 1
