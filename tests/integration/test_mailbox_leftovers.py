"""What a dead session leaves in a real Dovecot, and what a quarantine must never lose.

DESIGN 4, "Nothing is lost": "the decision and the message's key are recorded before the
message is deleted; a message that cannot be parsed or processed is quarantined (moved aside
with its error), never silently dropped". Issue 10 found two holes:

- IMAP: after a kill, the originals the dead session flagged ``\\Deleted`` were never expunged
  by later sessions (629 left in one run). Each session now starts by expunging the
  ``\\Deleted`` messages the ledger says are done, with ``UID EXPUNGE`` when the server has
  UIDPLUS, else with ``EXPUNGE`` only when no other message is marked (it would go too).
- POP3: a quarantined message was deleted on a later poll, against ``docs/operators.md``:
  "The message stays on the server; the ledger remembers it and the service skips it."
"""

from __future__ import annotations

import imaplib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pytest

from asm_email_rules.adapters.imap import ImapConfig, ImapMailbox
from asm_email_rules.adapters.pop3 import Pop3Mailbox
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import TransientSendError
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.protocols import Mailbox
from asm_email_rules.sample import DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings

if TYPE_CHECKING:
    from conftest import Dovecot

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAILBOX = sample_mailbox(name="helpdesk", auto_reply=True, create_calls_anonymously=True)


def new_call(number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"customer{number}@corp.example"
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = f"Scanner {number} jams"
    msg["Message-ID"] = f"<scanner-{number}@corp.example>"
    msg.set_content(f"Scanner {number} jams on every page.")
    return msg.as_bytes(policy=policy.SMTP)


def account(protocol: MailProtocol) -> AccountConfig:
    return AccountConfig(name="helpdesk", protocol=protocol, mailbox=MAILBOX)


class KilledImapMailbox(ImapMailbox):
    """A session that dies after marking its messages: the marks reach the server (``close``
    sends them, after the service synced its store), then the connection just drops (no
    EXPUNGE, no LOGOUT), as when the process is killed in between."""

    def close(self) -> None:
        self._flag_deleted()
        self._drop()


class ImapWithoutUidplus(ImapMailbox):
    """The same server, as one that does not announce UIDPLUS (RFC 4315)."""

    def _client(self) -> imaplib.IMAP4:
        client = super()._client()
        self._capabilities = self._capabilities - {"UIDPLUS"}
        return client


def service(
    store: SqliteRepository, protocol: MailProtocol, factory: Callable[[], Mailbox], **kw: object
) -> PollingService:
    system = SystemSettings(max_send_attempts=2)
    config = Config(Path("unused.sqlite3"), system, None, (account(protocol),))
    mailer = kw.pop("mailer", RecordingMailer())
    return PollingService(config, store, mailer, lambda _: factory(), now=lambda: NOW)  # type: ignore[arg-type]


def two_per_session(store: SqliteRepository, factory: Callable[[], Mailbox]) -> PollingService:
    """A poller of the IMAP account that reads two messages per session (several sessions a
    pass, each one's end running behind the next)."""
    imap = AccountConfig(
        name="helpdesk", protocol=MailProtocol.IMAP, mailbox=MAILBOX, max_messages_per_session=2
    )
    config = Config(Path("unused.sqlite3"), SystemSettings(max_send_attempts=2), None, (imap,))
    return PollingService(config, store, RecordingMailer(), lambda _: factory(), now=lambda: NOW)


def mark_deleted_by_a_person(dovecot: Dovecot, user: str, raw: bytes) -> None:
    """Another mail client marks a message ``\\Deleted`` and has not expunged yet."""
    dovecot.append(user, raw)
    client = dovecot._imap(user)
    try:
        client.select("INBOX")
        _, data = client.uid("SEARCH", "UNDELETED")
        last = data[0].split()[-1]
        client.uid("STORE", last, "+FLAGS", r"(\Deleted)")
    finally:
        client.logout()


def scanner_calls(store: SqliteRepository) -> int:
    """How many calls were logged from :func:`new_call` messages."""
    calls = (store.get_call(number) for number in range(1, 300))
    return sum(1 for call in calls if call is not None and "Scanner" in call.description)


def deleted_flags(dovecot: Dovecot, user: str) -> int:
    return sum("\\Deleted" in flags for flags in dovecot.flags(user))


@pytest.fixture
def store(tmp_path: Path) -> SqliteRepository:
    repository = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(repository)
    return repository


def kill_a_session_after_it_marked(
    dovecot: Dovecot, user: str, store: SqliteRepository, count: int
) -> None:
    for number in range(1, count + 1):
        dovecot.append(user, new_call(number))
    dying = service(store, MailProtocol.IMAP, lambda: KilledImapMailbox(dovecot.imap_config(user)))
    assert dying.poll_once()["helpdesk"].processed == count
    assert deleted_flags(dovecot, user) == count  # marked, never expunged: the leftovers


def test_next_session_expunges_what_a_killed_session_marked_and_acts_on_nothing_again(
    dovecot: Dovecot, store: SqliteRepository
) -> None:
    user = dovecot.new_user()
    kill_a_session_after_it_marked(dovecot, user, store, 4)
    person = new_call(99)
    mark_deleted_by_a_person(dovecot, user, person)  # not ours: the ledger does not know it
    calls_before = scanner_calls(store)

    later = service(store, MailProtocol.IMAP, lambda: ImapMailbox(dovecot.imap_config(user)))
    report = later.poll_once()["helpdesk"]
    assert (report.expunged, report.processed, report.duplicates) == (4, 0, 0)
    assert dovecot.messages(user) == [person]  # only the person's own mark is left
    assert deleted_flags(dovecot, user) == 1
    assert scanner_calls(store) == calls_before == 4  # each acted on once, none again
    assert later.poll_once()["helpdesk"].expunged == 0  # nothing left to do


def test_a_marked_message_a_person_expunges_during_our_look_is_no_mailbox_failure(
    dovecot: Dovecot, store: SqliteRepository
) -> None:
    # A person's mail program marked a message deleted and expunged it right after we listed
    # the marked ones: reading it failed "no message with UID", the account backed off as
    # "mailbox unreachable", and the new mail waited.
    user = dovecot.new_user()
    mark_deleted_by_a_person(dovecot, user, new_call(98))
    for number in range(1, 4):
        dovecot.append(user, new_call(number))

    class PersonExpunges(ImapMailbox):
        def fetch(self, key: str) -> bytes:
            if not getattr(self, "expunged_once", False):
                self.expunged_once = True
                other = dovecot._imap(user)
                try:
                    other.select("INBOX")
                    other.expunge()
                finally:
                    other.logout()
            return super().fetch(key)

    poller = service(store, MailProtocol.IMAP, lambda: PersonExpunges(dovecot.imap_config(user)))
    report = poller.poll_once()["helpdesk"]
    assert (report.processed, report.errors, report.backoff_seconds) == (3, 0, 0.0)
    assert dovecot.messages(user) == []


def test_without_uidplus_expunge_runs_only_when_no_other_message_is_marked(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    user = dovecot.new_user()
    kill_a_session_after_it_marked(dovecot, user, store, 3)
    person = new_call(98)
    mark_deleted_by_a_person(dovecot, user, person)
    plain = service(store, MailProtocol.IMAP, lambda: ImapWithoutUidplus(dovecot.imap_config(user)))
    with caplog.at_level(logging.WARNING, logger="asm_email_rules.adapters.imap"):
        report = plain.poll_once()["helpdesk"]
    assert report.expunged == 0  # a plain EXPUNGE would have removed the person's message too
    assert len(dovecot.messages(user)) == 4
    assert any("without UIDPLUS" in r.getMessage() for r in caplog.records)

    # once the person takes back their own mark, only ours are marked: a plain EXPUNGE is safe
    client = dovecot._imap(user)
    try:
        client.select("INBOX")
        _, data = client.uid("SEARCH", "DELETED")
        client.uid("STORE", data[0].split()[-1], "-FLAGS", r"(\Deleted)")
    finally:
        client.logout()
    report = plain.poll_once()["helpdesk"]
    assert (report.expunged, report.duplicates) == (3, 0)
    assert report.processed == 1  # the person's message, unmarked, is new mail
    assert dovecot.messages(user) == []


class CountingWithoutUidplus(ImapWithoutUidplus):
    """:class:`ImapWithoutUidplus` that counts, across sessions, how often each UID is fetched."""

    fetches: ClassVar[Counter[str]] = Counter()

    def fetch(self, key: str) -> bytes:
        type(self).fetches[key] += 1
        return super().fetch(key)


def seven_calls_after_a_persons_mark(dovecot: Dovecot) -> str:
    """A new user whose INBOX holds a message a person marked ``\\Deleted`` (the lowest UID),
    then seven new calls: the user."""
    user = dovecot.new_user()
    mark_deleted_by_a_person(dovecot, user, new_call(97))
    for number in range(1, 8):
        dovecot.append(user, new_call(number))
    return user


def test_marks_a_server_would_not_expunge_are_looked_at_once_per_pass(
    dovecot: Dovecot, store: SqliteRepository
) -> None:
    # Without UIDPLUS, while someone else's message is marked \Deleted, our own deletions
    # stay marked. The pass forgets the keys of a session that ended well (bounded listing,
    # issue 14), and the next session's look for a dead session's leftovers finds them
    # marked: the mailbox names them (left_marked), so they are not fetched again; the
    # person's marked message, which the ledger does not know, is fetched once a pass, not
    # in every session.
    user = seven_calls_after_a_persons_mark(dovecot)
    CountingWithoutUidplus.fetches = Counter()
    poller = two_per_session(store, lambda: CountingWithoutUidplus(dovecot.imap_config(user)))
    report = poller.poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.expunged) == (7, 0, 0)
    assert report.sessions == 4
    assert scanner_calls(store) == 7  # each acted on once
    person, *ours = sorted(CountingWithoutUidplus.fetches, key=int)
    assert CountingWithoutUidplus.fetches[person] == 1  # looked at once: left alone after
    assert len(ours) == 7
    assert {CountingWithoutUidplus.fetches[key] for key in ours} == {1}  # read, and only so
    assert deleted_flags(dovecot, user) == 8  # ours and the person's, all still marked


def test_a_message_whose_mark_is_taken_back_during_the_pass_is_read_in_that_pass(
    dovecot: Dovecot, store: SqliteRepository
) -> None:
    # A marked message looked at as a possible leftover is not "handled": when the person
    # takes their mark back, it is new mail, and a later session of the same pass reads it.
    user = seven_calls_after_a_persons_mark(dovecot)
    sessions = 0

    def open_session() -> Mailbox:
        nonlocal sessions
        sessions += 1
        if sessions == 2:  # between the first and the second session
            client = dovecot._imap(user)
            try:
                client.select("INBOX")
                _, data = client.uid("SEARCH", "DELETED")
                client.uid("STORE", data[0].split()[0], "-FLAGS", r"(\Deleted)")
            finally:
                client.logout()
        return ImapWithoutUidplus(dovecot.imap_config(user))

    report = two_per_session(store, open_session).poll_once()["helpdesk"]
    assert (report.processed, report.duplicates) == (8, 0)
    assert scanner_calls(store) == 8


class SlowToExpunge(ImapMailbox):
    """A session whose end is slow between marking and expunging (a slow server): the next
    session, read meanwhile, finds its messages marked ``\\Deleted`` and not yet expunged."""

    def close(self) -> None:
        if self._imap is not None:
            self._flag_deleted()
            threading.Event().wait(0.3)
        super().close()


def test_a_session_ending_behind_the_next_is_not_taken_for_a_dead_one(
    dovecot: Dovecot, store: SqliteRepository
) -> None:
    # The end of a session (sync, then mark and expunge) runs while the next session is read
    # (asm_email_rules.session_end). Its marks are not a dead session's leftovers: the next
    # session must neither fetch them again nor expunge them itself; each is acted on once.
    user = dovecot.new_user()
    for number in range(1, 8):
        dovecot.append(user, new_call(number))
    poller = two_per_session(store, lambda: SlowToExpunge(dovecot.imap_config(user)))
    report = poller.poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.expunged) == (7, 0, 0)
    assert report.sessions == 4
    assert dovecot.messages(user) == []
    assert scanner_calls(store) == 7


class DeadSmtp:
    """An SMTP server that answers every reply with 451 (a temporary failure)."""

    def send(self, message: OutgoingEmail) -> None:
        raise TransientSendError("try again later", code=451)


def test_pop3_never_deletes_a_quarantined_message_over_later_polls(
    dovecot: Dovecot, store: SqliteRepository
) -> None:
    """One message cannot be parsed; another's reply keeps failing (451) until the send-attempt
    limit gives up on it. Every later poll is a new process with no memory of the sessions
    before (``poll --once`` from cron). Whatever the service quarantined stays on the server."""
    user = dovecot.new_user()
    dovecot.append(user, new_call(1))
    dovecot.append(user, b" \r\n\r\n")
    quarantined: set[str] = set()

    class WatchedPop3(Pop3Mailbox):
        def quarantine(self, key: str, reason: str) -> None:
            quarantined.add(key)
            super().quarantine(key, reason)

    for _ in range(5):
        poller = service(
            store,
            MailProtocol.POP3,
            lambda: WatchedPop3(dovecot.pop3_config(user)),
            mailer=DeadSmtp(),
        )
        report = poller.poll_once()["helpdesk"]
        assert report.errors == 0
    with Pop3Mailbox(dovecot.pop3_config(user)) as unaware:
        on_server = set(unaware.list_keys())
    assert len(quarantined) >= 1  # the unparseable one at least
    assert quarantined <= on_server  # docs/operators.md: "stays on the server ... skipped"
    assert report.processed == 0  # and nothing is acted on again


def test_pop3_mailbox_refuses_to_delete_what_it_quarantined(dovecot: Dovecot) -> None:
    user = dovecot.new_user()
    dovecot.append(user, new_call(7))
    with Pop3Mailbox(dovecot.pop3_config(user)) as box:
        [key] = box.list_keys()
        box.quarantine(key, "cannot parse")
        box.delete(key)  # a caller's mistake: the quarantine wins
    assert len(dovecot.messages(user)) == 1


class Connections:
    """The IMAP connections of a pass: how many signed in (LOGIN), on which threads, and the
    most alive at once (connected, not yet hung up or dropped)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alive = 0
        self.most = 0
        self.logins: list[str] = []


class CountedImap(ImapMailbox):
    """An :class:`ImapMailbox` that counts its connections in ``connections``."""

    def __init__(self, config: ImapConfig, connections: Connections) -> None:
        super().__init__(config)
        self.connections = connections

    def _connect(self) -> imaplib.IMAP4:
        client = super()._connect()
        counted = self.connections
        with counted.lock:
            counted.alive += 1
            counted.most = max(counted.most, counted.alive)
            counted.logins.append(threading.current_thread().name)
        return client

    def _hang_up(self, client: imaplib.IMAP4) -> None:
        super()._hang_up(client)
        with self.connections.lock:
            self.connections.alive -= 1

    def _drop(self) -> None:
        connected = self._imap is not None
        super()._drop()
        if connected:
            with self.connections.lock:
                self.connections.alive -= 1


class OneConnectionImap(CountedImap):
    """For a server that allows one connection per user: docs/integrators.md says a subclass
    with ``closes_concurrently = False``."""

    closes_concurrently: ClassVar[bool] = False


@pytest.mark.parametrize("kind", [CountedImap, OneConnectionImap], ids=["behind", "one-at-once"])
def test_a_pass_of_several_sessions_signs_in_once_a_session(
    dovecot: Dovecot, store: SqliteRepository, kind: type[CountedImap]
) -> None:
    # asm_email_rules.session_start: a session whose listing shows more than it handles
    # opens the next one's connection on a worker thread. Each session signs in once (no
    # connection opened ahead for a session that never comes, none opened twice), every
    # message is acted on once and leaves the folder, and a mailbox that may not overlap its
    # sessions (closes_concurrently = False: one connection a user) never has two at once.
    user = dovecot.new_user()
    for number in range(1, 8):
        dovecot.append(user, new_call(number))
    connections = Connections()
    poller = two_per_session(store, lambda: kind(dovecot.imap_config(user), connections))
    report = poller.poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.errors, report.sessions) == (7, 0, 0, 4)
    assert dovecot.messages(user) == []
    assert scanner_calls(store) == 7
    assert len(connections.logins) == 4
    assert connections.alive == 0
    if kind is OneConnectionImap:
        assert connections.most == 1
        assert set(connections.logins) == {"MainThread"}
    else:
        assert connections.logins.count("asm-session-start") == 3
        assert connections.most <= 3  # one opening, one read, one ending behind
