"""A real Postfix on loopback pipes mail to ``asm-email-rules deliver`` (issue 11).

"Tested end to end with a real Postfix started by the tests on loopback, whose transport pipes
mail to ``deliver``: mail sent to Postfix by SMTP becomes a call; a locked store makes Postfix
defer and later deliver."

The Postfix instance is private (``postfix -c DIR``, everything under a temporary folder, no
system configuration touched): SMTP on a free loopback port, every recipient of ``desk.test``
piped as user ``nobody`` to a two-line script that runs ``python -m asm_email_rules deliver``.
The retry is forced with ``postqueue -f`` instead of waiting for Postfix's back-off. Needs
root (Postfix starts as root and the pipe runs as ``nobody``).
"""

from __future__ import annotations

import importlib
import os
import pwd
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import attrs
import pytest
from loopback import HOST, free_port
from loopback import _missing as missing

if TYPE_CHECKING:
    from conftest import SmtpFactory

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.sample import seed_sample_desk

pytestmark = pytest.mark.integration

_T = TypeVar("_T")


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = mail.desk.test
mydomain = desk.test
myorigin = desk.test
mydestination = desk.test
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_transport = asmdesk
local_recipient_maps =
alias_maps =
alias_database =
asmdesk_destination_recipient_limit = 1
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
disable_dns_lookups = yes
smtp_host_lookup = native
relayhost =
biff = no
"""

MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
asmdesk   unix  - n n - - pipe
  flags=Rq user=nobody argv={d}/deliver.sh
"""

DELIVER_SH = """\
#!/bin/sh
# Postfix runs this as nobody with the message on standard input.
PYTHONPATH={lib} exec {python} -m asm_email_rules deliver --config {config}
"""

PACKAGES = ("asm_email_rules", "attr", "attrs", "dateutil", "mailparser_reply")
"""What ``deliver`` imports beyond the standard library: copied next to the instance, since
the test's own interpreter and virtual environment may sit where ``nobody`` cannot read."""

CONFIG = """\
store = "desk/helpdesk.sqlite3"

[[accounts]]
name = "helpdesk"
protocol = "maildir"
path = "desk/Maildir"

[accounts.mailbox]
addresses = ["helpdesk@desk.test"]
default_logging_analyst_id = 1
auto_reply = true
"""


def _postfix_missing() -> None:
    if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
        missing("Postfix (apt-get install postfix)")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the Postfix test needs root (CI runs as root)")
        pytest.skip("the Postfix test needs root (Postfix starts as root)")


def _wait_for(
    probe: Callable[[], _T], seconds: float, what: str, log: Callable[[], str] = str
) -> _T:
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}\n{log()}")
        time.sleep(0.2)


@attrs.frozen
class Postfix:
    """A running private Postfix instance and the desk its pipe delivers to."""

    root: Path
    port: int
    store: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    def send(self, raw: bytes, sender: str) -> None:
        with smtplib.SMTP(HOST, self.port, timeout=10) as client:
            client.sendmail(sender, ["helpdesk@desk.test"], raw)

    def queue(self) -> str:
        listing = subprocess.run(
            ["postqueue", "-c", str(self.conf), "-p"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return listing.stdout

    def flush(self) -> None:
        subprocess.run(["postqueue", "-c", str(self.conf), "-f"], check=True, timeout=30)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def calls(self) -> list[str]:
        with SqliteRepository(self.store) as repo:
            calls = repo.list_calls(limit=100)
        return [call.description for call in calls]


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    _postfix_missing()
    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="asm-postfix-"))
    root.chmod(0o755)  # the pipe runs as nobody
    port = free_port()
    for sub in ("conf", "queue", "data", "desk"):
        (root / sub).mkdir()
    shutil.chown(root / "data", "postfix", "postfix")
    desk = root / "desk"
    store = desk / "helpdesk.sqlite3"
    with SqliteRepository(store) as repo:
        seed_sample_desk(repo)  # person 1 is Dana, an analyst: the default logging analyst
    (root / "config.toml").write_text(CONFIG, encoding="utf-8")
    for path in (desk, *desk.iterdir()):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    lib = _copy_packages(root / "lib")
    python = _python_for(nobody)
    script = root / "deliver.sh"
    script.write_text(
        DELIVER_SH.format(lib=lib, python=python, config=root / "config.toml"), encoding="utf-8"
    )
    script.chmod(0o755)
    _as_nobody(nobody, [str(script)], check=False)  # imports work (reads an empty stdin)
    (root / "conf" / "main.cf").write_text(MAIN_CF.format(d=root, host=HOST), encoding="utf-8")
    (root / "conf" / "master.cf").write_text(
        MASTER_CF.format(d=root, host=HOST, port=port), encoding="utf-8"
    )
    conf = str(root / "conf")
    subprocess.run(["postfix", "-c", conf, "check"], check=True, capture_output=True, timeout=60)
    subprocess.run(["postfix", "-c", conf, "start"], check=True, capture_output=True, timeout=60)
    server = Postfix(root, port, store)
    try:
        _wait_for(lambda: _accepts(port), 30, "Postfix to listen")
        yield server
    finally:
        subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _as_nobody(
    nobody: pwd.struct_passwd, argv: list[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # through sh, as the pipe does: setpriv alone may still reach what nobody cannot
    drop = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    done = subprocess.run(
        [*drop, "sh", "-c", 'exec "$0" "$@"', *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} as nobody failed: {done.stderr}")
    if "Traceback" in done.stderr or "ModuleNotFoundError" in done.stderr:
        raise AssertionError(f"{argv} as nobody failed: {done.stderr}")
    return done


def _python_for(nobody: pwd.struct_passwd) -> str:
    """This interpreter if ``nobody`` may run it, else the system's of the same version."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if Path(candidate).exists():
            probe = _as_nobody(nobody, [candidate, "-c", "pass"], check=False)
            if probe.returncode == 0:
                return candidate
    raise AssertionError(f"no {version} that user nobody may run (for the pipe transport)")


def _copy_packages(lib: Path) -> Path:
    for name in PACKAGES:
        module = importlib.import_module(name)
        source = Path(module.__file__ or "").resolve().parent
        shutil.copytree(source, lib / name, ignore=shutil.ignore_patterns("__pycache__"))
    return lib


def _accepts(port: int) -> bool:
    try:
        with smtplib.SMTP(HOST, port, timeout=2) as client:
            client.noop()
    except OSError:
        return False
    return True


def _mail(subject: str, body: str) -> bytes:
    return (
        "From: Alice Analyst <alice@desk.example>\r\n"
        "To: helpdesk@desk.test\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@desk.example>\r\n"
        "Date: Fri, 27 Nov 2026 09:05:00 +0000\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


def test_mail_sent_to_postfix_becomes_a_call_and_a_locked_store_defers_it(
    postfix: Postfix,
) -> None:
    # 1. mail sent to Postfix by SMTP becomes a call
    postfix.send(_mail("Laptop battery swollen", "The battery bulges."), "alice@desk.example")
    descriptions = _wait_for(
        lambda: [d for d in postfix.calls() if "battery bulges" in d],
        90,
        "the first call",
        postfix.log,
    )
    assert descriptions, postfix.log()
    _wait_for(lambda: "Mail queue is empty" in postfix.queue(), 90, "an empty queue", postfix.log)
    assert "status=sent (delivered via asmdesk service" in postfix.log()

    # 2. a locked store: deliver exits 75, Postfix keeps the message and says why
    holder = sqlite3.connect(postfix.store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        postfix.send(_mail("Printer on fire", "Smoke from tray 2."), "alice@desk.example")
        queued = _wait_for(
            lambda: (lambda q: q if "helpdesk@desk.test" in q and "(" in q else "")(
                postfix.queue()
            ),
            120,
            "Postfix to defer the message",
            postfix.log,
        )
        assert "try later" in queued or "try later" in postfix.log(), queued
        # The queue can show the deferral before Postfix's log line is written: wait for it.
        assert _wait_for(
            lambda: "status=deferred" in postfix.log(), 60, "the deferral in the log", postfix.log
        )
        assert not [d for d in postfix.calls() if "Smoke" in d]
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    # 3. the store is free again: the retry (forced now) delivers it, once
    postfix.flush()
    _wait_for(
        lambda: [d for d in postfix.calls() if "Smoke" in d], 120, "the retried call", postfix.log
    )
    _wait_for(lambda: "Mail queue is empty" in postfix.queue(), 90, "an empty queue", postfix.log)
    assert len([d for d in postfix.calls() if "Smoke" in d]) == 1
    assert "Traceback" not in postfix.log()


def test_replies_go_to_postfix_pipelined_and_chunked_on_one_session(
    postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 14: one SMTP session for the pass's replies; a real server offers PIPELINING
    # (RFC 2920) and CHUNKING (RFC 3030), so each reply is one write: MAIL, RCPT, BDAT and
    # the message. Both reach the desk (as automatic replies, which it records and drops).
    from asm_email_rules.adapters.smtp import SmtpConfig, SmtpMailer
    from asm_email_rules.connection import Security
    from asm_email_rules.model import OutgoingEmail

    with smtplib.SMTP(HOST, postfix.port, timeout=10) as probe:
        probe.ehlo()
        assert probe.has_extn("pipelining")
        assert probe.has_extn("chunking")
    writes: list[bytes] = []
    send = smtplib.SMTP.send

    def spy(client: smtplib.SMTP, data: str | bytes) -> None:
        writes.append(data.encode() if isinstance(data, str) else data)
        send(client, data)

    monkeypatch.setattr(smtplib.SMTP, "send", spy)
    mailer = SmtpMailer(SmtpConfig(host=HOST, port=postfix.port, security=Security.PLAIN))
    ids = [f"<asm.reply.{n}.postfix@desk.example>" for n in (1, 2)]
    for n, message_id in enumerate(ids, 1):
        mailer.send(
            OutgoingEmail(
                to="helpdesk@desk.test",
                subject=f"Call {n} has been logged",
                body=".a line that starts with a dot\n.\nYour call is logged.\n",
                sender="Service Desk <desk@desk.example>",
                message_id=message_id,
            )
        )
    mailer.close()
    assert mailer.sessions == 1
    transactions = [w for w in writes if w.startswith(b"MAIL FROM:")]
    assert len(transactions) == 2
    for write in transactions:  # one write each: the commands, then the message itself
        commands, _, message = write.partition(b" LAST\r\n")
        assert commands.split(b"\r\n")[1:] == [
            b"RCPT TO:<helpdesk@desk.test>",
            b"BDAT %d" % len(message),
        ]
        assert b"\r\n.a line that starts with a dot\r\n.\r\n" in message  # no dot-stuffing

    def recorded() -> list[str]:
        with sqlite3.connect(postfix.store) as db:
            rows = db.execute("SELECT message_id FROM ledger").fetchall()
        return sorted(found for (found,) in rows if found in ids)

    assert _wait_for(lambda: recorded() == ids, 90, "both replies at the desk", postfix.log)
    _wait_for(lambda: "Mail queue is empty" in postfix.queue(), 90, "an empty queue", postfix.log)
    assert postfix.log().count("status=sent (delivered via asmdesk service") == 2


BURST = 30
BUDGET = 5
"""Low enough that replies are held back even when every ``deliver`` Postfix runs at once
(its default concurrency, 20) read the budget before any of them recorded its reply: the
budget is counted before the message's transaction, so parallel deliveries can overshoot it
by up to that many."""


def test_a_burst_through_postfix_acts_once_each_and_its_log_says_which_replies_were_held(
    postfix: Postfix, smtp_server: SmtpFactory
) -> None:
    """Postfix hands a burst to as many ``deliver``s at once as its concurrency allows, all
    on one SQLite store: each message is acted on once, none deferred for a lock, no reply
    sent twice, and the sender's reply budget holds replies back (DESIGN 4: "A per-sender
    reply budget stops reply storms"). Postfix logs what ``deliver`` printed, its only trace
    once it exits 0: a message whose reply the budget held back said only ``reply none``
    there, as if no rule answered it."""
    smtp = smtp_server()
    config = postfix.root / "config.toml"
    settings = (
        f"[system]\nreply_budget_per_hour = {BUDGET}\n\n"
        f'[smtp]\nhost = "{HOST}"\nport = {smtp.port}\nsecurity = "plain"\n\n[[accounts]]'
    )
    config.write_text(CONFIG.replace("[[accounts]]", settings), encoding="utf-8")
    with smtplib.SMTP(HOST, postfix.port, timeout=30) as client:
        for number in range(BURST):
            raw = _mail(f"Burst {number}", f"Burst message number {number}.")
            client.sendmail("alice@desk.example", ["helpdesk@desk.test"], raw)
    _wait_for(
        lambda: postfix.log().count("status=sent (delivered via asmdesk") == BURST,
        300,
        "the burst to be delivered",
        postfix.log,
    )
    log = postfix.log()
    assert "status=deferred" not in log, log
    acted = [d.strip() for d in postfix.calls() if d.startswith("Burst message number")]
    assert sorted(acted) == sorted(f"Burst message number {n}." for n in range(BURST))
    answered = [e.content.split(b"In-Reply-To: ")[1].split(b"\r\n")[0] for e in smtp.envelopes]
    assert len(answered) == len(set(answered)) >= BUDGET
    held = [line for line in log.splitlines() if "held back: reply budget" in line]
    assert len(held) == BURST - len(answered) > 0, log


@pytest.fixture
def postfix_time_limit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Postfix:
    """:func:`postfix` whose pipe transport has a ``time_limit`` of 6 s and whose
    ``deliver`` keeps a limit of 2 s."""
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "MAIN_CF", MAIN_CF + "asmdesk_time_limit = 6s\n")
    monkeypatch.setattr(
        module, "DELIVER_SH", DELIVER_SH.replace("--config", "--time-limit 2 --config")
    )
    server: Postfix = request.getfixturevalue("postfix")
    return server


def test_a_deliver_held_up_by_the_smtp_server_is_deferred_by_postfix_not_bounced(
    postfix_time_limit: Postfix,
) -> None:
    """Postfix kills a pipe command past its ``time_limit`` and bounces the message to its
    sender (``status=bounced (Command time limit exceeded)``), although ``deliver`` had
    logged the call: the customer heard "undeliverable". With an SMTP server for replies
    that accepts connections and never answers, ``deliver`` waited the SMTP timeout (30 s)
    for the reply. It stops at its own time limit with 75 instead: Postfix defers the
    message and keeps it."""
    postfix = postfix_time_limit
    with socket.socket() as silent:  # the kernel accepts the connection; nobody greets
        silent.bind((HOST, 0))
        silent.listen(8)
        config = postfix.root / "config.toml"
        smtp = f'[smtp]\nhost = "{HOST}"\nport = {silent.getsockname()[1]}\nsecurity = "plain"\n'
        config.write_text(CONFIG.replace("[[accounts]]", smtp + "\n[[accounts]]"), encoding="utf-8")
        postfix.send(_mail("Monitor stuck", "The monitor shows nothing."), "alice@desk.example")
        _wait_for(lambda: "status=" in postfix.log(), 120, "Postfix's verdict", postfix.log)
        log = postfix.log()
    assert "status=bounced" not in log, log
    assert "status=deferred" in log, log
    assert "time limit (2 s) passed" in log, log
    assert [d for d in postfix.calls() if "monitor shows nothing" in d], log
