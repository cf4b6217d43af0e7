"""Exactly once in the setups :mod:`test_exactly_once` leaves out: a POP3 maildrop, and kills
named by the call they fall on (a session's end, the pump's record-and-claim, a quarantine).

What must hold is DESIGN 4's ("Nothing is lost", "Replies are an outbox"): no message lost,
none acted on twice, none quarantined for our own failure; no message answered by two
different replies; a reply cut off between the server's 250 and our record of it is resent
with its Message-ID. The figures are printed with ``-s``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import attrs
import crash_harness
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
    from pathlib import Path

    from conftest import Dovecot, SmtpFactory

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
    assert result.resends <= 1
    assert store_quarantined(desk) == len(BLANK)
    on_server = len(BLANK) if kind == "pop3" else 0  # POP3 keeps a quarantined message
    assert (result.left, result.quarantined) == (on_server, len(BLANK) - on_server)
