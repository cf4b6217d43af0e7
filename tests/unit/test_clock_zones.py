"""A host's clock in its local zone (``datetime.now(ZoneInfo("Europe/Berlin"))``): every window
counted from it is its real length across a DST change (the reply budget's hour, a reply's
retry delay), as with ``datetime.now(UTC)``.

Python adds a ``timedelta`` to a time of a DST zone on the wall clock, and compares two times
of one zone by their wall-clock readings: 03:30 CEST minus an hour on the night the clocks go
forward is 02:30, which is 03:30 again, so the hour was empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.errors import SendError
from asm_email_rules.gather import gather_facts
from asm_email_rules.intake import parse_message
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.pipeline import process
from asm_email_rules.sample import ALICE, DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.send import claim, record_attempt
from asm_email_rules.settings import SystemSettings

BERLIN = ZoneInfo("Europe/Berlin")
SPRING_FORWARD = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 CET -> 03:00 CEST
FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 03:00 CEST -> 02:00 CET


def _summary_request(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = ALICE.email
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = "[MyCalls]"
    msg["Date"] = "Sun, 29 Mar 2026 03:05:00 +0200"
    msg["Message-ID"] = f"<budget-{n}@client.example>"
    msg.set_content("My calls, please.")
    return msg.as_bytes()


def test_reply_budget_counts_the_real_hour_when_the_clocks_go_forward() -> None:
    """DESIGN 4: "A per-sender reply budget stops reply storms": one reply an hour, asked for
    twice 20 minutes apart (03:10 and 03:30 CEST, 01:10 and 01:30 UTC), gets one reply."""
    repo = InMemoryRepository()
    seed_sample_desk(repo)
    mailer = RecordingMailer()
    system = SystemSettings(reply_budget_per_hour=1)
    mailbox = sample_mailbox()
    for n, minutes in enumerate((10, 30)):
        now = (SPRING_FORWARD + timedelta(minutes=minutes)).astimezone(BERLIN)
        process(_summary_request(n), repo, mailer, mailbox, system, now)
    assert len(mailer.sent) == 1


def test_gather_facts_counts_the_real_hour_when_the_clocks_go_forward() -> None:
    """docs/integrators.md, step 3 (gather_facts, then decide): the same hour, when a host
    gathers the facts itself with its local clock."""
    repo = InMemoryRepository()
    seed_sample_desk(repo)
    sent = SPRING_FORWARD + timedelta(minutes=10)  # 03:10 CEST
    repo.record_sent("<asm.reply.1@desk.example>", None, ALICE.email, sent)
    now = (SPRING_FORWARD + timedelta(minutes=30)).astimezone(BERLIN)  # 03:30 CEST
    email = parse_message(_summary_request(1))
    facts = gather_facts(email, repo, sample_mailbox(), SystemSettings(), now)
    assert facts.replies_last_hour == 1


def test_a_retry_one_minute_later_is_one_minute_later_when_the_clocks_go_back() -> None:
    """DESIGN 4: "A temporary failure (4xx, network) retries with exponential backoff": the
    first retry a minute after 02:59:30 CEST, not at 03:00:30 CET (an hour and a minute)."""
    store = InMemoryRepository()
    reply = OutgoingEmail(
        to="alice@example.com",
        subject="Call 7 has been logged [CALL#7]",
        body="Thank you.",
        sender="desk@example.com",
        message_id="<asm.call-7.dst@example.com>",
    )
    queued = FALL_BACK - timedelta(minutes=5)
    store.record_processed("box", "<m7@example.com>", "s7", "{}", reply, queued)
    now = (FALL_BACK - timedelta(seconds=30)).astimezone(BERLIN)  # 02:59:30 CEST
    system = SystemSettings()
    entry = claim(reply.message_id, store, system, owner="poller-1", clock=lambda: now)
    assert entry is not None
    error = SendError("try again later", code=451)
    outcome = record_attempt(entry, error, store, system, owner="poller-1", clock=lambda: now)
    assert outcome.next_attempt_at is not None
    assert outcome.next_attempt_at - now == timedelta(minutes=1)
    (due,) = store.due_replies(FALL_BACK + timedelta(minutes=1), mailbox="box", limit=10)
    assert due.reply.message_id == reply.message_id
