"""Exactly once in the setups :mod:`test_exactly_once` leaves out: a POP3 maildrop, kills named
by the call they fall on (a session's end, the pump's record-and-claim, a quarantine),
SIGTERM (graceful) to ``asm-email-rules poll``, and ``deliver`` killed mid-message and retried
as the mail server retries.

What must hold is DESIGN 4's ("Nothing is lost", "Replies are an outbox"): no message lost,
none acted on twice, none quarantined for our own failure; no message answered by two
different replies; a reply cut off between the server's 250 and our record of it is resent
with its Message-ID. The figures are printed with ``-s``.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import crash_harness
import psycopg
import pytest
import test_exactly_once as once
from crash_harness import Plan
from test_exactly_once import (  # noqa: F401 - fixtures
    LEASE,
    PASSWORD,
    Desk,
    figures,
    imap_desk,
    maildir_desk,
    report,
    unrecorded,
)

from asm_email_rules.adapters.maildir import MaildirMailbox

if TYPE_CHECKING:
    from conftest import Dovecot, SmtpFactory
    from postgres_fixtures import PgDatabase

pytestmark = pytest.mark.integration

POP3_ACCOUNT = """\
protocol = "pop3"
host = "{host}"
port = {port}
security = "plain"
username = "{user}"
password = "{password}"
timeout = 10
"""


@attrs.define
class Pop3Desk(Desk):
    """A :class:`~test_exactly_once.Desk` read by POP3 (its messages are delivered and
    counted by IMAP, the same Dovecot maildrop)."""

    @property
    def kind(self) -> str:
        return "pop3"

    def write(self) -> None:
        super().write()
        assert self.imap is not None
        dovecot, user = self.imap
        text = self.config.read_text(encoding="utf-8")
        imap_part = once.IMAP_ACCOUNT.format(
            host=dovecot.host, port=dovecot.imap_port, user=user, password=PASSWORD
        )
        pop3_part = POP3_ACCOUNT.format(
            host=dovecot.host, port=dovecot.pop3_port, user=user, password=PASSWORD
        )
        self.config.write_text(text.replace(imap_part, pop3_part), encoding="utf-8")


def misaddressed(desk: Desk) -> list[tuple[str, list[str]]]:
    """Replies at the sink not addressed to exactly the sender of the message they answer
    (backlog message N comes from ``senderN@corp.example``): In-Reply-To and recipients."""
    parser = BytesParser(policy=policy.default)
    wrong = []
    for envelope in list(desk.smtp.envelopes):
        answered = str(parser.parsebytes(envelope.content, headersonly=True)["In-Reply-To"])
        number = answered.removeprefix("<backlog-").removesuffix("@corp.example>")
        if [r.lower() for r in envelope.rcpt_tos] != [f"sender{number}@corp.example"]:
            wrong.append((answered, list(envelope.rcpt_tos)))
    return wrong


def store_quarantined(desk: Desk) -> int:
    """Copies the store's quarantine holds."""
    raw = sqlite3.connect(desk.root / "store.sqlite3")
    try:
        return int(raw.execute("SELECT count(*) FROM quarantine").fetchone()[0])
    finally:
        raw.close()


@pytest.fixture
def pop3_desk(root: Path, smtp_server: SmtpFactory, dovecot: Dovecot) -> Pop3Desk:
    desk = Pop3Desk(root, smtp_server(), (dovecot, dovecot.new_user()))
    desk.write()
    return desk


root = once.root


# --------------------------------------------------------------------------------------------
# POP3: SIGKILL at random events
# --------------------------------------------------------------------------------------------

POP3_BACKLOG = 40


@pytest.mark.parametrize("in_flight", [0, 2])
def test_killed_pop3_pollers_lose_nothing_act_once_and_resend_only_cut_off_replies(
    pop3_desk: Pop3Desk, in_flight: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POP3 deletes only at QUIT: a kill anywhere before it leaves every message of the session
    on the server, to be read again and found in the ledger (a duplicate, not acted on)."""
    desk = pop3_desk
    desk.in_flight = in_flight
    monkeypatch.setitem(once.BACKLOG, "pop3", POP3_BACKLOG)
    monkeypatch.setitem(once.KILL_EVENT_RANGE, "pop3", (4, 60))
    run = once.kill_until_done(desk)
    result = run.result
    report(
        f"kill test (pop3, replies_in_flight {in_flight})",
        result,
        kills=run.total,
        **{k.replace(" ", "_"): v for k, v in run.kills.items()},
        most_cut_off_by_a_kill=run.most_cut_off,
    )
    assert run.total >= 5
    assert (result.lost, result.left, result.quarantined) == (0, 0, 0)
    assert store_quarantined(desk) == 0
    assert result.acted_twice == 0
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert not misaddressed(desk)
    assert run.early_resends == 0
    assert run.most_cut_off <= 1
    assert result.resends <= run.total


# --------------------------------------------------------------------------------------------
# kills at named calls: a session's end, the pump's record-and-claim, a quarantine
# --------------------------------------------------------------------------------------------

NAMED_BACKLOG = 12
BLANK = (3, 8)  # backlog numbers replaced by a whitespace-only message (quarantined)


def deliver_with_blanks(desk: Desk) -> None:
    """The backlog, with the :data:`BLANK` numbers replaced by messages that cannot be parsed."""
    desk.deliver(NAMED_BACKLOG)
    if desk.imap is None:
        box = MaildirMailbox(desk.root / "Maildir")
        for number in BLANK:
            box.add(blank(number))
        return
    dovecot, user = desk.imap
    for number in BLANK:
        dovecot.append(user, blank(number))


def blank(number: int) -> bytes:
    """A message of white space only, ``number`` spaces long (each has its own bytes)."""
    return b"\r\n" + b" " * number + b"\r\n"


NAMED_KILLS = [
    ("before-close", 1),  # a session's end: the store synced, nothing deleted yet
    ("before-close", 2),
    ("after-delete", 3),  # deletions marked, the session not ended
    ("before-quarantine", 1),  # the store has the quarantine record, the mailbox not yet
    ("after-quarantine", 1),  # moved aside, the session not ended
    ("after-claim_reply", 1),  # the pump claimed a reply, nothing sent
    ("after-record_processed", 4),  # recorded, not committed with its batch
    ("before-finish_reply", 1),
]


@pytest.mark.parametrize("kind", ["maildir", "imap", "pop3"])
@pytest.mark.parametrize(("point", "nth"), NAMED_KILLS)
def test_a_kill_at_a_named_call_then_a_restart_acts_once_and_quarantines_only_the_unreadable(
    request: pytest.FixtureRequest, kind: str, point: str, nth: int
) -> None:
    """One poller killed at the call named, then one after its leases: every message acted on
    once, answered once, and only the unreadable ones quarantined, each once (IMAP and Maildir
    file one copy each in the quarantine folder; POP3 leaves them on the server)."""
    desk: Desk = request.getfixturevalue(f"{kind}_desk")
    deliver_with_blanks(desk)
    plan = Plan(
        desk.config,
        kill_at_named=(point, nth),
        also_after=frozenset({"quarantine"}),
    )
    first = crash_harness.run_to_end(plan, timeout=60)
    killed = first == -9
    rest = crash_harness.run_to_end(Plan(desk.config, clock_offset=LEASE + 1), timeout=60)
    assert rest == 0
    assert not unrecorded(desk)
    result = figures(desk, NAMED_BACKLOG)
    report(f"named kill ({kind}, {point} #{nth}, killed {killed})", result)
    assert result.acted == dict.fromkeys(range(NAMED_BACKLOG), 1)  # none lost nor done twice
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert not misaddressed(desk)
    assert result.resends <= 1
    assert store_quarantined(desk) == len(BLANK)
    on_server = len(BLANK) if kind == "pop3" else 0  # POP3 keeps a quarantined message
    assert (result.left, result.quarantined) == (on_server, len(BLANK) - on_server)


# --------------------------------------------------------------------------------------------
# SIGTERM: the graceful stop of `asm-email-rules poll`
# --------------------------------------------------------------------------------------------

SRC = Path(__file__).resolve().parents[2] / "src"
TERM_BACKLOG = 200
TERM_AFTER = (0.0, 0.01, 0.03, 0.1)
"""Seconds between the sink's taking a reply of the running poller and its SIGTERM."""


def _wait_for_reply(desk: Desk, before: int, poller: subprocess.Popen[bytes]) -> None:
    """Until the sink holds more than ``before`` replies (the poller is at work), or 30 s."""
    end = time.monotonic() + 30
    while len(desk.smtp.envelopes) <= before and poller.poll() is None:
        assert time.monotonic() < end, "the poller sent no reply in 30 s"
        time.sleep(0.005)


def _poll_command(desk: Desk, *more: str) -> list[str]:
    return [sys.executable, "-m", "asm_email_rules", "poll", "--config", str(desk.config), *more]


def _environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.mark.parametrize("kind", ["maildir", "imap"])
def test_sigterm_stops_the_poller_cleanly_and_a_restart_at_once_finishes_the_backlog(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """SIGTERM (what systemd and Kubernetes send) finishes the message in hand and stops: exit
    0, nothing acted on twice, no reply sent twice, and the poller started right after it
    (no lease to wait out: the stopped one let go of its account and its claims) finishes
    the backlog in one ``poll --once``."""
    desk: Desk = request.getfixturevalue(f"{kind}_desk")
    text = desk.config.read_text(encoding="utf-8")
    desk.config.write_text(
        text.replace(
            "max_messages_per_session = 5", "max_messages_per_session = 5\ninterval_seconds = 1"
        ),
        encoding="utf-8",
    )
    desk.deliver(TERM_BACKLOG)
    codes = []
    answered: list[int] = []  # replies at the sink after each stop
    for delay in TERM_AFTER:
        poller = subprocess.Popen(
            _poll_command(desk),
            env=_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_for_reply(desk, len(desk.smtp.envelopes), poller)
        time.sleep(delay)
        poller.send_signal(signal.SIGTERM)
        try:
            _, err = poller.communicate(timeout=30)
        finally:
            if poller.poll() is None:
                poller.kill()
        codes.append((poller.returncode, err.decode(errors="replace")[-2000:]))
        answered.append(len(desk.smtp.envelopes))
    done = subprocess.run(
        _poll_command(desk, "--once"), env=_environment(), capture_output=True, timeout=120
    )
    result = figures(desk, TERM_BACKLOG)
    report(f"sigterm ({kind})", result, stopped=len(codes), answered_after_each_stop=answered)
    assert [code for code, _ in codes] == [0] * len(TERM_AFTER), codes
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert result.acted == dict.fromkeys(range(TERM_BACKLOG), 1)
    assert (result.left, result.quarantined) == (0, 0)
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert not misaddressed(desk)
    assert result.resends == 0
    assert answered[-1] < TERM_BACKLOG  # every stop fell in the middle of the backlog


# --------------------------------------------------------------------------------------------
# `deliver` (a Postfix pipe) killed mid-message, and retried as the mail server retries
# --------------------------------------------------------------------------------------------

DELIVERED = 3
DELIVER_KILLS = [
    ("before-record_processed", 1),
    ("after-record_processed", 1),
    ("after-claim_reply", 1),
    ("before-send", 1),
    (crash_harness.AFTER_250, 1),
    ("before-finish_reply", 1),
    ("after-finish_reply", 1),
]


@pytest.mark.parametrize(("point", "nth"), DELIVER_KILLS)
def test_deliver_killed_mid_message_and_retried_acts_once_and_answers_once(
    request: pytest.FixtureRequest, point: str, nth: int
) -> None:
    """The mail server hands each message to ``deliver`` until it exits 0 (75, or a death by
    signal, makes it keep the message and retry later): the first try of each dies at the
    call named; a retry at once must not act again nor send a second reply while the dead
    one's claim stands (it says 75: try later); one after the claim expired finishes it.
    One call per message and one reply, resent (same Message-ID) only when the kill fell
    between the server's 250 and our record of it."""
    desk: Desk = request.getfixturevalue("maildir_desk")
    now = datetime.now(UTC)
    codes: list[list[int]] = []
    for number in range(DELIVERED):
        raw = once.backlog_message(number, now)
        tries = [crash_harness.deliver_once(Plan(desk.config, kill_at_named=(point, nth)), raw)]
        tries.append(crash_harness.deliver_once(Plan(desk.config), raw))  # retried at once
        offset = 0.0
        while tries[-1] != 0 and len(tries) < 6:
            offset += LEASE + 1
            tries.append(crash_harness.deliver_once(Plan(desk.config, clock_offset=offset), raw))
        codes.append(tries)
    once.settled_envelopes(desk)
    result = figures(desk, DELIVERED)
    report(f"deliver killed ({point} #{nth})", result, exit_codes=codes)
    assert all(tries[0] == -9 for tries in codes), codes  # the kill point was reached
    assert all(set(tries[1:-1]) <= {75} and tries[-1] == 0 for tries in codes), codes
    assert result.acted == dict.fromkeys(range(DELIVERED), 1)
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert not misaddressed(desk)
    cut_off = DELIVERED if point in once.SEND_WINDOW else 0
    assert result.resends <= cut_off
    assert store_quarantined(desk) == 0
    assert not unrecorded(desk)


# --------------------------------------------------------------------------------------------
# two pollers on one IMAP account and one PostgreSQL store, killed at random
# --------------------------------------------------------------------------------------------

PG_BACKLOG = 30
PG_SEED = 20261201
PG_ROUNDS = 30


@attrs.define
class PostgresDesk(Desk):
    """A :class:`~test_exactly_once.Desk` on Dovecot IMAP whose store is a PostgreSQL schema."""

    database: PgDatabase | None = None

    def write(self) -> None:
        super().write()
        assert self.database is not None
        secret = self.root / "db-password"
        secret.write_text(self.database.password, encoding="utf-8")
        text = self.config.read_text(encoding="utf-8")
        self.config.write_text(
            text.replace(
                'store = "store.sqlite3"',
                f'store = "{self.database.conninfo}"\n'
                f'store_password_file = "{secret}"\n'
                f'store_schema = "{self.database.schema}"',
            ),
            encoding="utf-8",
        )

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        assert self.database is not None
        with psycopg.connect(self.database.conninfo, password=self.database.password) as conn:
            conn.execute(f"SET search_path TO {self.database.schema}")
            return list(conn.execute(query).fetchall())


def pg_figures(desk: PostgresDesk, messages: int) -> once.Figures:
    """:func:`~test_exactly_once.figures` with the calls read from PostgreSQL."""
    acted: collections.Counter[int] = collections.Counter()
    for (description,) in desk.rows("SELECT description FROM calls"):
        if "Backlog message number" in description:
            acted[int(description.split()[-1].rstrip("."))] += 1
    parser = BytesParser(policy=policy.default)
    replies: dict[str, list[str]] = collections.defaultdict(list)
    for envelope in desk.smtp.envelopes:
        reply = parser.parsebytes(envelope.content, headersonly=True)
        replies[str(reply["In-Reply-To"])].append(str(reply["Message-ID"]))
    return once.Figures(
        messages, dict(acted), dict(replies), desk.waiting(), desk.waiting("Quarantine")
    )


@pytest.fixture
def pg_desk(
    root: Path, smtp_server: SmtpFactory, dovecot: Dovecot, pg_database: PgDatabase
) -> PostgresDesk:
    desk = PostgresDesk(root, smtp_server(), (dovecot, dovecot.new_user()), database=pg_database)
    desk.write()
    return desk


def test_two_pollers_on_imap_and_postgres_killed_at_random_act_once_and_answer_once(
    pg_desk: PostgresDesk,
) -> None:
    """Rounds of two pollers on one account, each dying at a random event (store, mailbox or
    mailer call; seed fixed) or finishing; the next round stands after the dead ones' leases
    (a fake clock). A poller that finds the account held waits, and gives up (exit 3) after
    1.5 seconds when its holder died. Until a round where no poller died."""
    desk = pg_desk
    desk.deliver(PG_BACKLOG)
    rng = random.Random(PG_SEED)
    offset = 0.0
    kills = 0
    for _ in range(PG_ROUNDS):
        plans = [
            Plan(
                desk.config,
                kill_at_event=rng.randint(6, 120),
                clock_offset=offset,
                deadline=1.5,
                idle_wait=0.1,
            )
            for _ in range(2)
        ]
        codes = crash_harness.wait_all([crash_harness.start(plan) for plan in plans], timeout=60)
        assert set(codes) <= {0, 3, -9}, codes
        kills += codes.count(-9)
        if -9 not in codes and 0 in codes:
            break
        offset += LEASE + 1
    else:
        pytest.fail("the backlog was never finished")
    last = crash_harness.run_to_end(Plan(desk.config, clock_offset=offset + LEASE + 1))
    assert last == 0
    once.settled_envelopes(desk)
    result = pg_figures(desk, PG_BACKLOG)
    unsent = desk.rows("SELECT count(*) FROM ledger WHERE reply_status = 'pending'")[0][0]
    report("two pollers, imap + postgres, killed", result, kills=kills, pending=unsent)
    assert kills >= 5
    assert result.acted == dict.fromkeys(range(PG_BACKLOG), 1)
    assert (result.left, result.quarantined) == (0, 0)
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert not misaddressed(desk)
    # no sent journal on PostgreSQL: a kill may cut off the replies in flight (docs/operators.md)
    assert result.resends <= desk.in_flight * kills
    assert unsent == 0


# --------------------------------------------------------------------------------------------
# a session's end running behind the next session: the store's sync and WAL checkpoint
# --------------------------------------------------------------------------------------------

BEHIND_KILLS = [
    ("before-detached_sync-run", 1),
    ("during-detached_sync", 2),
    ("after-detached_sync-run", 1),
    ("before-detached_upkeep-run", 1),
    ("during-detached_upkeep", 1),
    ("after-detached_upkeep-run", 2),
]


@pytest.mark.parametrize("kind", ["maildir", "imap"])
@pytest.mark.parametrize(("point", "nth"), BEHIND_KILLS)
def test_a_kill_while_a_session_end_runs_behind_acts_once_and_answers_once(
    request: pytest.FixtureRequest, kind: str, point: str, nth: int
) -> None:
    """The SQLite store's sync of its WAL and its checkpoint (copying the WAL into the database
    file) run on the session end's thread while the next session is read; a kill before,
    during or after either, then a restart after the leases: every message acted on and
    answered once, nothing quarantined, nothing left."""
    desk: Desk = request.getfixturevalue(f"{kind}_desk")
    desk.deliver(NAMED_BACKLOG)
    plan = Plan(
        desk.config,
        kill_at_named=(point, nth),
        wrap_returned=frozenset({"detached_sync", "detached_upkeep"}),
    )
    first = crash_harness.run_to_end(plan, timeout=60)
    rest = crash_harness.run_to_end(Plan(desk.config, clock_offset=LEASE + 1), timeout=60)
    assert rest == 0
    assert not unrecorded(desk)
    result = figures(desk, NAMED_BACKLOG)
    report(f"kill behind ({kind}, {point} #{nth}, killed {first == -9})", result)
    assert first == -9  # the point was reached
    assert result.acted == dict.fromkeys(range(NAMED_BACKLOG), 1)
    assert (result.left, result.quarantined) == (0, 0)
    assert store_quarantined(desk) == 0
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert not misaddressed(desk)
    assert result.resends <= desk.in_flight


def test_two_pollers_on_imap_and_postgres_send_no_reply_twice(pg_desk: PostgresDesk) -> None:
    """No kill: two pollers share the account (one at a time) and the outbox: not one reply
    twice, not one message acted on twice."""
    desk = pg_desk
    desk.deliver(PG_BACKLOG)
    plans = [Plan(desk.config, idle_wait=0.05), Plan(desk.config, idle_wait=0.05)]
    codes = crash_harness.wait_all([crash_harness.start(plan) for plan in plans], timeout=120)
    once.settled_envelopes(desk)
    result = pg_figures(desk, PG_BACKLOG)
    report("two pollers, imap + postgres", result)
    assert codes == [0, 0]
    assert result.acted == dict.fromkeys(range(PG_BACKLOG), 1)
    assert (result.left, result.quarantined) == (0, 0)
    assert result.replies_missing == 0
    assert result.second_replies == 0
    assert not misaddressed(desk)
    assert result.resends == 0
