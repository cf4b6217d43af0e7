"""Exactly once, replies included (issue 10): pollers killed at random points, two pollers on
one account, and a long SMTP outage, on real Maildir and Dovecot folders, a SQLite store and an
aiosmtpd sink on loopback.

What must hold, from DESIGN 4 ("Nothing is lost", "Replies are an outbox", "One poller per
account"): no message lost, none acted on twice; no second reply to one message, except the
resend of a reply whose send was cut off between the server's 250 and our record of it, which
carries the same Message-ID, happens only after the dead sender's lease expired, and is
counted; two pollers on one account send 0 duplicate replies and act 0 times twice; replies
that meet a 10-minute outage are all sent once afterwards.

The pollers run in child processes (:mod:`crash_harness`) with a fake clock (real time plus an
offset), so a restart can stand after a dead poller's lease without the test waiting for it.
The kill count is the issue's (at least 30 kills, seed fixed) across 300 messages in a Maildir
and 150 in a Dovecot folder (half the issue's backlog there, to keep the suite near a minute),
the replies handed to the mailer one at a time; and once more on both, in pipelined windows to
a server offering PIPELINING and CHUNKING. The figures are printed with ``-s``.
"""

from __future__ import annotations

import collections
import imaplib
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import crash_harness
import pytest
from crash_harness import AFTER_250, Plan

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.bootstrap import bootstrap
from asm_email_rules.config import load_config

if TYPE_CHECKING:
    from conftest import Dovecot, SmtpFactory, SmtpServer

pytestmark = pytest.mark.integration

DESK = "helpdesk@desk.example"
PASSWORD = "secret"
LEASE = 120.0  # SystemSettings().lease_seconds: a restart this much later finds it expired
SEED = 20261129
BACKLOG = {"maildir": 300, "imap": 150}
"""Messages waiting when the pollers start. IMAP has half the issue's 300 to keep the suite
near a minute (every IMAP session logs in again); the kill count stays the issue's."""
KILL_EVENT_RANGE = {"maildir": (8, 110), "imap": (4, 60)}
"""Events (store, mailbox and mailer calls) before a random kill: about 7 to 10 per message.
Kept short enough that the backlog takes well over MIN_KILLS kills to finish (fewer store
calls per message mean more messages per kill). A timer kill has the top of a range three times
as long as a backstop: on a faster machine a 0.4 s timer read the whole rest of the backlog, and
the pass ended after 24 to 34 kills, around MIN_KILLS."""
MIN_KILLS = 30
EARLY_CHECKS = 5  # restarts made before the dead poller's lease expired (each a child more)
SEND_WINDOW = frozenset({AFTER_250, "before-finish_reply", "before-set_reply_status"})
"""Kill points between the server's 250 and the store's record of it (the resend window)."""

CONFIG = """\
store = "store.sqlite3"

[system]
replies_in_flight = {in_flight}

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
timeout = 10

[[accounts]]
name = "helpdesk"
{account}
max_messages_per_session = 5

[accounts.mailbox]
addresses = ["{desk}"]
create_calls_anonymously = true
auto_reply = true
"""

MAILDIR_ACCOUNT = """\
protocol = "maildir"
path = "Maildir"
"""

IMAP_ACCOUNT = """\
protocol = "imap"
host = "{host}"
port = {port}
security = "plain"
username = "{user}"
password = "{password}"
folder = "INBOX"
quarantine_folder = "Quarantine"
timeout = 10
"""


def backlog_message(number: int, now: datetime) -> bytes:
    """Message ``number`` of the backlog: its own sender, subject and Message-ID, dated now
    (mail older than max_reply_age_days gets no reply)."""
    msg = EmailMessage()
    msg["From"] = f"sender{number}@corp.example"
    msg["To"] = DESK
    msg["Subject"] = f"Backlog message {number}"
    msg["Date"] = now.strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = f"<backlog-{number}@corp.example>"
    msg.set_content(f"Backlog message number {number}.")
    return msg.as_bytes(policy=policy.SMTP)


@attrs.define
class Desk:
    """A configuration file, its store and mailbox, and the SMTP sink the replies go to."""

    root: Path
    smtp: SmtpServer
    imap: tuple[Dovecot, str] | None = None
    in_flight: int = (
        2  # replies_in_flight (its default): sent ahead on the pump's thread (0: between sessions)
    )

    @property
    def kind(self) -> str:
        return "maildir" if self.imap is None else "imap"

    @property
    def backlog(self) -> int:
        return BACKLOG[self.kind]

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def write(self) -> None:
        if self.imap is None:
            account = MAILDIR_ACCOUNT
        else:
            dovecot, user = self.imap
            account = IMAP_ACCOUNT.format(
                host=dovecot.host, port=dovecot.imap_port, user=user, password=PASSWORD
            )
        self.config.write_text(
            CONFIG.format(
                smtp_port=self.smtp.port, account=account, desk=DESK, in_flight=self.in_flight
            ),
            encoding="utf-8",
        )
        SqliteRepository(self.root / "store.sqlite3").close()

    def deliver(self, count: int) -> None:
        now = datetime.now(UTC)
        raws = [backlog_message(number, now) for number in range(count)]
        if self.imap is None:
            box = MaildirMailbox(self.root / "Maildir")
            for raw in raws:
                box.add(raw)
            return
        dovecot, user = self.imap
        client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
        try:
            client.login(user, PASSWORD)
            for raw in raws:
                status, data = client.append("INBOX", None, None, raw)
                assert status == "OK", data
        finally:
            client.logout()

    def waiting(self, folder: str = "INBOX") -> int:
        """Messages left in the inbox (or the quarantine), deleted-but-not-expunged excluded."""
        if self.imap is None:
            name = "Maildir" if folder == "INBOX" else "Maildir/.Quarantine"
            path = self.root / name
            return len(list(MaildirMailbox(path).list_keys())) if path.exists() else 0
        dovecot, user = self.imap
        client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
        try:
            client.login(user, PASSWORD)
            status, _ = client.select(f'"{folder}"', readonly=True)
            if status != "OK":
                return 0
            _, data = client.uid("SEARCH", "UNDELETED")
            return len(data[0].split())
        finally:
            client.logout()


@attrs.frozen
class Figures:
    """What a run did, counted from the outside: the store, the mailbox and the SMTP sink."""

    messages: int
    acted: dict[int, int]  # backlog number -> calls logged for it
    replies: dict[str, list[str]]  # incoming Message-ID -> reply Message-IDs, one per copy
    left: int
    quarantined: int

    @property
    def lost(self) -> int:
        return sum(1 for n in range(self.messages) if self.acted.get(n, 0) == 0) - self.left

    @property
    def acted_twice(self) -> int:
        return sum(1 for count in self.acted.values() if count > 1)

    @property
    def replies_missing(self) -> int:
        return sum(
            1 for n in range(self.messages) if not self.replies.get(f"<backlog-{n}@corp.example>")
        )

    @property
    def resends(self) -> int:
        """Copies beyond the first of one reply (same Message-ID)."""
        return sum(len(copies) - len(set(copies)) for copies in self.replies.values())

    @property
    def second_replies(self) -> int:
        """Messages that got two different replies (two Message-IDs): never allowed."""
        return sum(1 for copies in self.replies.values() if len(set(copies)) > 1)


def figures(desk: Desk, messages: int) -> Figures:
    raw = sqlite3.connect(desk.root / "store.sqlite3")
    try:
        descriptions = [row[0] for row in raw.execute("SELECT description FROM calls")]
    finally:
        raw.close()
    acted: collections.Counter[int] = collections.Counter()
    for description in descriptions:
        for word in description.split():
            if (
                word.endswith(".")
                and word[:-1].isdigit()
                and "Backlog message number" in (description)
            ):
                acted[int(word[:-1])] += 1
    parser = BytesParser(policy=policy.default)
    replies: dict[str, list[str]] = collections.defaultdict(list)
    for envelope in desk.smtp.envelopes:
        reply = parser.parsebytes(envelope.content)
        replies[str(reply["In-Reply-To"])].append(str(reply["Message-ID"]))
    return Figures(messages, dict(acted), dict(replies), desk.waiting(), desk.waiting("Quarantine"))


def report(title: str, figures: Figures, **extra: Any) -> None:
    """One line of figures for the closing note (shown with ``pytest -s``)."""
    counts = ", ".join(f"{key} {value}" for key, value in extra.items())
    print(
        f"\n{title}: messages {figures.messages}, lost {figures.lost}, acted twice "
        f"{figures.acted_twice}, replies missing {figures.replies_missing}, second replies "
        f"{figures.second_replies}, resends {figures.resends}, left {figures.left}, "
        f"quarantined {figures.quarantined}" + (f"; {counts}" if counts else "")
    )


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


def settled_envelopes(desk: Desk) -> int:
    """How many messages the SMTP server took, once it has stopped taking more: a poller
    killed mid-write may have left a whole message in the server's socket, which the server
    still accepts after the kill (a cut-off reply like any other)."""
    count = len(desk.smtp.envelopes)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = len(desk.smtp.envelopes)
        if now == count:
            break
        count = now
    return count


def unrecorded(desk: Desk) -> set[str]:
    """Message-IDs of the replies the SMTP server accepted that the store does not record as
    sent and no sent journal holds: what a restart sends again once their claims expire."""
    settled_envelopes(desk)
    parser = BytesParser(policy=policy.default)
    accepted = {
        _bare(str(parser.parsebytes(envelope.content, headersonly=True)["Message-ID"]))
        for envelope in list(desk.smtp.envelopes)
    }
    raw = sqlite3.connect(desk.root / "store.sqlite3")
    try:
        rows = raw.execute("SELECT reply_message_id FROM ledger WHERE reply_status = 'sent'")
        recorded = {_bare(row[0]) for row in rows}
    finally:
        raw.close()
    journaled: set[str] = set()
    for path in (desk.root / "store.sqlite3.sent").glob("*.sent"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) == 3:  # sent_at, owner, Message-ID (a line cut short is not)
                journaled.add(_bare(fields[2]))
    return accepted - recorded - journaled


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """Where the store (and the Maildir) live: memory-backed when the machine has /dev/shm.

    These tests are about what a killed process leaves behind, which a tmpfs keeps exactly as
    a disk does (the kernel, not the process, holds the written pages); they are not about
    power loss. On a disk every commit waits for an fsync, which makes them minutes long.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="asm-once-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def maildir_desk(root: Path, smtp_server: SmtpFactory) -> Desk:
    desk = Desk(root, smtp_server())
    desk.write()
    return desk


@pytest.fixture
def imap_desk(root: Path, smtp_server: SmtpFactory, dovecot: Dovecot) -> Desk:
    desk = Desk(root, smtp_server(), (dovecot, dovecot.new_user()))
    desk.write()
    return desk


@pytest.fixture(params=["maildir", "imap"])
def chunking_desk(request: pytest.FixtureRequest, root: Path, smtp_server: SmtpFactory) -> Desk:
    """A desk whose SMTP server offers PIPELINING and CHUNKING, as real ones do."""
    imap = None
    if request.param == "imap":
        dovecot: Dovecot = request.getfixturevalue("dovecot")
        imap = (dovecot, dovecot.new_user())
    desk = Desk(root, smtp_server(chunking=True), imap)
    desk.write()
    return desk


@pytest.fixture(params=["maildir", "imap"])
def desk(request: pytest.FixtureRequest) -> Desk:
    chosen: Desk = request.getfixturevalue(f"{request.param}_desk")
    return chosen


# --------------------------------------------------------------------------------------------
# SIGKILL at random points, and right after the server's 250
# --------------------------------------------------------------------------------------------


def _kill_points(desk: Desk) -> list[str]:
    """The points the children killed themselves at, oldest first (a timer kill writes none)."""
    path = crash_harness.Plan(desk.config).killed_at
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@attrs.frozen
class KillRun:
    """What :func:`kill_until_done` saw: the figures, the kills by kind, and the counts the
    assertions need."""

    result: Figures
    kills: collections.Counter[str]
    cut_off: int  # kills right after a 250: before the journal (or, at 0, the store) has it
    early_resends: int  # replies sent again by a restart before the dead poller's lease ended
    most_cut_off: int  # the most replies one kill left accepted, unrecorded and unjournaled

    @property
    def total(self) -> int:
        return sum(self.kills.values())


def kill_until_done(desk: Desk, *, send_many: bool = False) -> KillRun:
    """Deliver the backlog, then run pollers that die at random points (an event, right after
    the n-th 250, a timer), each restarted after the dead one's leases, until one finishes;
    after the first kills in the send window, a restart before the lease expired too. After
    each kill, what it cut off is counted: the replies the server accepted during the dead
    poller's run that neither the store records as sent nor a journal holds.
    ``send_many``: the pollers hand their replies to the mailer's ``send_many``."""
    desk.write()
    desk.deliver(desk.backlog)
    rng = random.Random(SEED)
    low, high = KILL_EVENT_RANGE[desk.kind]
    kills: collections.Counter[str] = collections.Counter()
    offset = 0.0
    early_resends = 0
    cut_off = 0
    most_cut_off = 0
    exposed: set[str] = set()  # cut off by earlier kills and not yet sent again and recorded
    for _ in range(400):
        mode = rng.choices(["event", "after_250", "timer"], weights=[6, 3, 1])[0]
        plan = Plan(desk.config, clock_offset=offset, send_many=send_many)
        kill_after = None
        if mode == "event":
            plan = attrs.evolve(plan, kill_at_event=rng.randint(low, high))
        elif mode == "after_250":
            plan = attrs.evolve(plan, kill_after_sent=rng.randint(1, 5))
        else:
            kill_after = rng.uniform(0.05, 0.4)
            # a backstop: on a fast machine 0.4 s could read the whole rest of the backlog
            # (the test then ended with as few as 30 kills, MIN_KILLS); what is left for the
            # timer is the time before this many events
            plan = attrs.evolve(plan, kill_at_event=rng.randint(high, 3 * high))
        points = len(_kill_points(desk))
        code = crash_harness.run_to_end(plan, kill_after=kill_after)
        if code == 0:
            break
        assert code == -9, f"poller exited {code}"
        now_exposed = unrecorded(desk)
        most_cut_off = max(most_cut_off, len(now_exposed - exposed))
        exposed = now_exposed
        killed_itself = _kill_points(desk)[points:]
        point = killed_itself[-1] if killed_itself else "timer"
        mode = "event" if mode == "timer" and killed_itself else mode
        kills["in send window" if point in SEND_WINDOW else mode] += 1
        cut_off += point == AFTER_250
        if point in SEND_WINDOW and kills["in send window"] <= EARLY_CHECKS:
            # A restart before the dead sender's lease expired must not resend its reply.
            before = len(desk.smtp.envelopes)
            early = attrs.evolve(
                Plan(desk.config, clock_offset=offset + LEASE / 2, send_many=send_many),
                exit_if_waiting=True,
            )
            crash_harness.run_to_end(early)
            early_resends += len(desk.smtp.envelopes) - before
        offset += LEASE + 1  # the next poller stands after the dead one's leases
    else:
        pytest.fail("the backlog was never finished")
    assert not unrecorded(desk), "a reply the server accepted is not recorded as sent"
    return KillRun(figures(desk, desk.backlog), kills, cut_off, early_resends, most_cut_off)


def assert_nothing_lost_nor_done_twice(run: KillRun) -> None:
    """DESIGN 4: every message acted on once, each answered, never by two different replies;
    no resend before the dead sender's lease expired."""
    result = run.result
    assert run.total >= MIN_KILLS
    assert (result.lost, result.left, result.quarantined) == (0, 0, 0)
    assert result.acted_twice == 0
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert run.early_resends == 0


@pytest.mark.parametrize("in_flight", [0, 2])
def test_killed_pollers_lose_nothing_act_once_and_resend_only_cut_off_replies(
    desk: Desk, in_flight: int
) -> None:
    """``replies_in_flight = 0``: a reply is resent only after a kill between the server's 250
    and our record of it (one reply at most per kill). With replies sent ahead on the pump's
    thread (2, the default), the worker writes each accepted reply to the store's sent
    journal before it sends the next (here each reply goes to the mailer's ``send``; for
    ``send_many``'s pipelined windows see the next test), and the restarted poller records
    what the journal holds before it claims anything: a kill can cut off only the reply the
    server accepted and the journal does not have yet, resent with its Message-ID, and
    never before the dead poller's claim expired."""
    desk.in_flight = in_flight
    run = kill_until_done(desk)
    result, kills = run.result, run.kills
    report(
        f"kill test ({desk.kind}, replies_in_flight {in_flight})",
        result,
        kills=run.total,
        **{k.replace(" ", "_"): v for k, v in kills.items()},
        most_cut_off_by_a_kill=run.most_cut_off,
    )
    assert_nothing_lost_nor_done_twice(run)
    # one reply at a time: the store (at 0) or the journal (ahead) has each before the next
    assert run.most_cut_off <= 1
    if in_flight == 0:  # sent and recorded on the poller's thread, one after the other
        # each kill between a 250 and its record is resent once (same Message-ID); a timer
        # kill may be too
        assert kills["in send window"] <= result.resends
        assert result.resends <= kills["in send window"] + kills["timer"]
    else:  # replies in flight on the pump's thread: up to in_flight per kill, wherever it fell
        # a kill right after a 250 is resent (same Message-ID); one before the store's record
        # is not: the journal has it (written after each reply here: each goes on its own)
        assert run.cut_off <= result.resends
        assert result.resends <= run.total  # one a kill at most: the journal has the rest


def test_killed_pollers_sending_pipelined_windows_resend_at_most_a_window_a_kill(
    chunking_desk: Desk,
) -> None:
    """The path replies take to Postfix, Microsoft 365 and Gmail: the server offers PIPELINING
    and CHUNKING, so the pump's worker hands its replies to ``SmtpMailer.send_many`` in groups
    of ``replies_in_flight`` (2), each written at once (MAIL, RCPT, BDAT each) and journaled
    when the server has answered for all of it, before the next group goes out. A kill after
    a group's 250s and before its journal entry cuts the whole group off: each of its replies
    is resent once, with its Message-ID, after the dead poller's claim expired; no kill cuts
    off more, and nothing is lost or acted on twice (DESIGN 4)."""
    desk = chunking_desk
    run = kill_until_done(desk, send_many=True)
    result = run.result
    report(
        f"kill test ({desk.kind}, pipelined windows of {desk.in_flight})",
        result,
        kills=run.total,
        **{k.replace(" ", "_"): v for k, v in run.kills.items()},
        most_cut_off_by_a_kill=run.most_cut_off,
    )
    marks = desk.root / "pipelined"
    windows = marks.read_text(encoding="utf-8").split() if marks.exists() else []
    assert windows, "no window answered for two replies at once: the pipelined path was not taken"
    assert_nothing_lost_nor_done_twice(run)
    assert run.cut_off <= result.resends
    assert run.most_cut_off <= desk.in_flight  # a window a kill at most
    assert result.resends <= desk.in_flight * run.total


# --------------------------------------------------------------------------------------------
# two pollers on one account and one store
# --------------------------------------------------------------------------------------------


def test_two_pollers_on_one_account_send_no_reply_twice_and_act_once(desk: Desk) -> None:
    desk.deliver(desk.backlog)
    plans = [Plan(desk.config, idle_wait=0.2), Plan(desk.config, idle_wait=0.2)]
    processes = [crash_harness.start(plan) for plan in plans]
    codes = crash_harness.wait_all(processes, timeout=180)
    result = figures(desk, desk.backlog)
    report(f"two pollers ({desk.kind})", result)
    assert codes == [0, 0]
    assert (result.lost, result.left, result.quarantined) == (0, 0, 0)
    assert result.acted_twice == 0
    assert result.second_replies == 0
    assert result.resends == 0
    assert result.replies_missing == 0


# --------------------------------------------------------------------------------------------
# a 10-minute SMTP outage (fake clock)
# --------------------------------------------------------------------------------------------


@attrs.define
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_a_ten_minute_smtp_outage_sends_every_reply_once_afterwards(maildir_desk: Desk) -> None:
    """The sink answers 451 for ten (fake) minutes of polls every minute, then recovers."""
    desk = maildir_desk
    count = 48
    desk.deliver(count)
    clock = FakeClock(datetime.now(UTC))
    start = clock.now
    desk.smtp.handler.data_reply = "451 4.3.0 try again later"
    config = load_config(desk.config)
    with bootstrap(config, now=clock) as wiring:
        passes = []
        for minute in range(31):
            clock.now = start + timedelta(minutes=minute)
            if minute == 10:
                desk.smtp.handler.data_reply = None  # the server is back
            passes.append(wiring.service.poll_once().accounts[0])
            if minute == 0:
                held = desk.waiting()
    result = figures(desk, count)
    report(
        "smtp outage",
        result,
        held_after_first_poll=held,
        quarantined_during=sum(p.quarantined for p in passes),
        sent_by_minute_30=len(desk.smtp.envelopes),
    )
    assert held == 0  # the outbox keeps the replies; the mailbox is not held meanwhile
    assert (result.lost, result.left, result.quarantined) == (0, 0, 0)
    assert result.acted_twice == 0
    assert result.replies_missing == 0
    assert result.resends == 0
    assert result.second_replies == 0
    assert len(desk.smtp.envelopes) == count
    assert not any(getattr(p, "replies_failed", 0) for p in passes)


def test_harness_counts_actions_and_replies_from_the_outside(maildir_desk: Desk) -> None:
    """The counting itself: one poller, no kills, everything once."""
    desk = maildir_desk
    desk.deliver(7)
    started = time.monotonic()
    assert crash_harness.run_to_end(Plan(desk.config)) == 0
    result = figures(desk, 7)
    assert result.acted == dict.fromkeys(range(7), 1)
    assert {len(c) for c in result.replies.values()} == {1}
    assert (result.lost, result.resends, result.replies_missing) == (0, 0, 0)
    assert time.monotonic() - started < 30
