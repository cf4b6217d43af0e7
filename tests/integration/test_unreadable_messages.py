"""One message an IMAP or POP3 server cannot read must not hold up the mailbox (real Dovecot).

DESIGN 4, "Nothing is lost": a message is never silently dropped. A message file Dovecot may
not read (mode 000 in its own Maildir: its mail user is ``nobody``, so the refusal is real)
is refused by the server, one message at a time, while the mailbox works: IMAP answers its
``UID FETCH`` with a tagged ``NO [SERVERBUG]`` (with ``imap_fetch_failure = no-after``, after
the messages of the batch it could read), POP3 its ``RETR`` with ``-ERR``. Each such message
used to count as a mailbox failure: three in a row ended the session and backed the account
off, so the good messages behind them waited for ever. Now each is logged with its key,
counted as an error, left in the mailbox, and tried again at the next poll.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters import imap
from asm_email_rules.adapters.imap import ImapMailbox
from asm_email_rules.adapters.pop3 import Pop3Mailbox
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.errors import MailboxError, MessageUnreadableError
from asm_email_rules.protocols import Mailbox
from asm_email_rules.sample import DESK_ADDRESS, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings

if TYPE_CHECKING:
    from conftest import Dovecot

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAILBOX = sample_mailbox(name="helpdesk", auto_reply=True, create_calls_anonymously=True)
MESSAGES = 8


def new_call(number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"customer{number}@corp.example"
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = f"Laminator {number} is jammed"
    msg["Message-ID"] = f"<laminator-{number}@corp.example>"
    msg.set_content(f"Laminator {number} jams on every sheet.")
    return msg.as_bytes(policy=policy.SMTP)


def laminator_calls(store: SqliteRepository) -> int:
    calls = (store.get_call(number) for number in range(1, 400))
    return sum(1 for call in calls if call is not None and "Laminator" in call.description)


def deliver(dovecot: Dovecot, user: str, unreadable: list[int]) -> list[Path]:
    """Deliver :data:`MESSAGES` calls (numbered from 1, oldest first) and make the files of
    the ``unreadable`` ones mode 000 in Dovecot's Maildir; their paths."""
    return deliver_among(dovecot, user, MESSAGES - len(unreadable), unreadable)


def message_files(dovecot: Dovecot, user: str) -> list[Path]:
    maildir = dovecot.root / "mail" / user / "Maildir"
    return [path for sub in ("new", "cur") for path in (maildir / sub).iterdir()]


def delivery_order(path: Path) -> tuple[int, int]:
    """Seconds and microseconds of a Maildir name Dovecot wrote (``1796.M4265P35.host``)."""
    seconds, micro = path.name.split(".")[:2]
    return int(seconds), int(micro[1:].partition("P")[0])


def still_there(dovecot: Dovecot, user: str, files: list[Path]) -> bool:
    """True when each of ``files`` is still in the Maildir (Dovecot moves a file from ``new``
    to ``cur`` and appends its flags to the name)."""
    names = {path.name.partition(":")[0] for path in message_files(dovecot, user)}
    return all(path.name.partition(":")[0] in names for path in files)


def poller(
    store: SqliteRepository, protocol: MailProtocol, factory: Callable[[], Mailbox]
) -> PollingService:
    return hang_up_poller(store, RecordingMailer(), factory, protocol=protocol)


@pytest.fixture
def store(tmp_path: Path) -> SqliteRepository:
    repository = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(repository)
    return repository


def warned_keys(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The mailbox keys named by the service's WARNINGs."""
    return [
        str(getattr(record, "mailbox_key", ""))
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name == "asm_email_rules.service"
    ]


@pytest.mark.parametrize(
    ("unreadable", "changes"),
    [
        pytest.param([1, 2, 3], {}, id="three-oldest-one-batch"),
        pytest.param([2, 5, 6], {"batch_messages": 3}, id="in-batches-fetched-ahead"),
        pytest.param([2, 5, 6], {"batch_messages": 3, "fetch_ahead": False}, id="no-ahead"),
        pytest.param([1, 4, 7], {"batch_messages": 1}, id="one-a-fetch"),
    ],
)
def test_imap_messages_the_server_refuses_never_hold_up_the_good_ones_behind_them(
    dovecot: Dovecot,
    store: SqliteRepository,
    caplog: pytest.LogCaptureFixture,
    unreadable: list[int],
    changes: dict[str, object],
) -> None:
    caplog.set_level(logging.INFO)
    user = dovecot.new_user(fetch_failure="no-after")
    files = deliver(dovecot, user, unreadable)
    service = poller(
        store, MailProtocol.IMAP, lambda: ImapMailbox(dovecot.imap_config(user, **changes))
    )

    for _ in range(2):  # refused again at the next poll, and the good ones are done
        caplog.clear()
        report = service.poll_once()["helpdesk"]
        good = MESSAGES - len(unreadable) if _ == 0 else 0
        assert (report.processed, report.errors, report.quarantined) == (good, 3, 0)
        assert laminator_calls(store) == MESSAGES - len(unreadable)
        assert still_there(dovecot, user, files)  # left in the mailbox
        assert sorted(warned_keys(caplog), key=int) == [str(n) for n in unreadable]
    with ImapMailbox(dovecot.imap_config(user)) as box:
        assert list(box.list_keys()) == [str(n) for n in unreadable]


def test_imap_refused_batch_hands_out_what_it_brought_and_asks_nothing_twice(
    dovecot: Dovecot,
) -> None:
    """Dovecot (``no-after``) sends the messages of a batch it could read, a FETCH response
    without a body for each one it could not, and a tagged NO; it hangs up on a second FETCH
    of a message it failed to read, so those are not asked for again."""
    user = dovecot.new_user(fetch_failure="no-after")
    deliver(dovecot, user, [2, 3])
    with ImapMailbox(dovecot.imap_config(user, batch_messages=4)) as box:
        keys = list(box.list_keys())
        assert box.fetch(keys[0]) == new_call(1)
        for key in keys[1:3]:
            with pytest.raises(MessageUnreadableError, match=rf"refused UID {key}: .*SERVERBUG"):
                box.fetch(key)
        assert [box.fetch(key) for key in keys[3:]] == [new_call(n) for n in range(4, 9)]


def delivered_by_an_mda(dovecot: Dovecot, user: str) -> list[Path]:
    """Calls 1-3 appended over IMAP, 4 to MESSAGES written into ``new/`` as an MDA writes
    them (LF line ends, no size in the file name: Dovecot must read a file to give its
    ``RFC822.SIZE``), 5 and 6 of them unreadable to Dovecot; returns those two files."""
    for number in range(1, 4):
        dovecot.append(user, new_call(number))
    new = dovecot.root / "mail" / user / "Maildir" / "new"
    unreadable = []
    for number in range(4, MESSAGES + 1):
        path = new / f"1796090000.M{number}P1.mda"
        path.write_bytes(new_call(number).replace(b"\r\n", b"\n"))
        shutil.chown(path, "nobody", "nogroup")
        if number in (5, 6):
            path.chmod(0)
            unreadable.append(path)
    return unreadable


def test_imap_a_refused_message_whose_size_the_server_must_read_holds_up_nothing(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """A file another program delivered (no ``,S=``/``,W=`` size in its name: Dovecot must
    read it to answer ``RFC822.SIZE``) is refused already when the sizes are asked; fetching
    it again would make Dovecot hang up (a second FETCH of a message it failed to read)."""
    caplog.set_level(logging.INFO)
    user = dovecot.new_user(fetch_failure="no-after")
    unreadable = delivered_by_an_mda(dovecot, user)
    service = poller(store, MailProtocol.IMAP, lambda: ImapMailbox(dovecot.imap_config(user)))

    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors, report.quarantined) == (MESSAGES - 2, 2, 0)
    assert laminator_calls(store) == MESSAGES - 2
    assert still_there(dovecot, user, unreadable)
    assert sorted(warned_keys(caplog), key=int) == ["5", "6"]


def deliver_among(dovecot: Dovecot, user: str, good: int, unreadable: list[int]) -> list[Path]:
    """Deliver ``good`` calls and ``len(unreadable)`` more, numbered from 1 (oldest first);
    the files of the ``unreadable`` ones are made mode 000; their paths."""
    total = good + len(unreadable)
    for number in range(1, total + 1):
        dovecot.append(user, new_call(number))
    files = sorted(message_files(dovecot, user), key=delivery_order)
    assert len(files) == total
    refused = [files[number - 1] for number in unreadable]
    for path in refused:
        path.chmod(0)
    return refused


def hang_up_poller(
    store: SqliteRepository,
    mailer: RecordingMailer,
    factory: Callable[[], Mailbox],
    per_session: int = 100,
    protocol: MailProtocol = MailProtocol.IMAP,
) -> PollingService:
    account = AccountConfig(
        name="helpdesk",
        protocol=protocol,
        mailbox=MAILBOX,
        max_messages_per_session=per_session,
    )
    config = Config(Path("unused.sqlite3"), SystemSettings(), None, (account,))
    return PollingService(config, store, mailer, lambda _: factory(), now=lambda: NOW)


@pytest.mark.parametrize(
    ("unreadable", "changes", "per_session"),
    [
        pytest.param([3, 6, 7], {}, 100, id="one-batch"),
        pytest.param([1, 5, 11], {"batch_messages": 3}, 100, id="in-batches-fetched-ahead"),
        pytest.param([2, 5, 9], {"batch_messages": 3, "fetch_ahead": False}, 100, id="no-ahead"),
        pytest.param([1, 4, 10], {"batch_messages": 1}, 100, id="one-a-fetch"),
        pytest.param([4, 5, 9], {"batch_messages": 3}, 3, id="short-sessions"),
    ],
)
def test_imap_messages_dovecot_hangs_up_on_never_hold_up_the_good_ones_behind_them(
    dovecot: Dovecot,
    store: SqliteRepository,
    caplog: pytest.LogCaptureFixture,
    unreadable: list[int],
    changes: dict[str, object],
    per_session: int,
) -> None:
    """Dovecot's default, ``imap_fetch_failure = disconnect-immediately``: a message file it
    cannot read gets ``* n FETCH (UID n)`` and ``* BYE FETCH failed``, and the connection is
    closed. Each session used to meet the same hang-up at the same UID (the good messages
    behind it never handled, the account failing persistently); now the UID is remembered,
    left out of the next sessions, and each one is logged once a pass with its UID."""
    caplog.set_level(logging.INFO)
    user = dovecot.new_user()  # imap_fetch_failure = disconnect-immediately
    files = deliver_among(dovecot, user, 8, unreadable)
    mailer = RecordingMailer()
    service = hang_up_poller(
        store,
        mailer,
        lambda: ImapMailbox(dovecot.imap_config(user, **changes)),
        per_session,
    )

    for poll in range(3):  # the first poll meets each hang-up once; later ones ask nothing
        caplog.clear()
        report = service.poll_once()["helpdesk"]
        assert (report.processed, report.duplicates, report.errors) == (
            8 if poll == 0 else 0,
            0,
            3,
        )
        assert laminator_calls(store) == 8  # every good message, once
        assert len(mailer.sent) == 8  # one reply each, never two
        assert still_there(dovecot, user, files)  # left in the mailbox
        assert sorted(warned_keys(caplog), key=int) == [str(n) for n in unreadable]
        assert service.backoff("helpdesk").failures == 0
        assert service.persistently_failing == ()
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    with ImapMailbox(dovecot.imap_config(user)) as box:
        assert list(box.list_keys()) == [str(n) for n in unreadable]


def test_imap_a_message_dovecot_hangs_up_on_when_its_size_is_asked_holds_up_nothing(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """A file another program delivered (no size in its name) is read by Dovecot to answer
    ``RFC822.SIZE``: one it cannot read gets the hang-up already there, and is left out of
    the next sessions' size queries, batches and fetches."""
    caplog.set_level(logging.INFO)
    user = dovecot.new_user()
    unreadable = delivered_by_an_mda(dovecot, user)
    mailer = RecordingMailer()
    service = hang_up_poller(store, mailer, lambda: ImapMailbox(dovecot.imap_config(user)))

    for poll in range(2):
        caplog.clear()
        report = service.poll_once()["helpdesk"]
        assert (report.processed, report.duplicates, report.errors) == (
            MESSAGES - 2 if poll == 0 else 0,
            0,
            2,
        )
        assert laminator_calls(store) == MESSAGES - 2
        assert still_there(dovecot, user, unreadable)
        assert sorted(warned_keys(caplog), key=int) == ["5", "6"]
        assert service.backoff("helpdesk").failures == 0


def test_imap_a_message_dovecot_hung_up_on_is_handled_once_repaired_and_its_time_comes(
    dovecot: Dovecot,
    store: SqliteRepository,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message the server hung up on is not asked for again until
    ``imap.HANG_UP_RETRY_SECONDS`` have passed; then it is, so one an admin repaired is
    handled without a restart."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(imap, "HANG_UP_RETRY_SECONDS", 3600.0)
    user = dovecot.new_user()
    [broken] = deliver_among(dovecot, user, 7, [2])
    mailer = RecordingMailer()
    service = hang_up_poller(store, mailer, lambda: ImapMailbox(dovecot.imap_config(user)))

    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors) == (7, 1)
    [moved] = [  # Dovecot moved it from new to cur, and gave it flags
        path
        for path in message_files(dovecot, user)
        if path.name.partition(":")[0] == broken.name.partition(":")[0]
    ]
    moved.chmod(0o600)  # repaired, but its time has not come: not asked for
    caplog.clear()
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors) == (0, 1)
    assert warned_keys(caplog) == ["2"]
    assert any("hung up" in record.getMessage() for record in caplog.records)

    monkeypatch.setattr(imap, "HANG_UP_RETRY_SECONDS", 0.0)  # its time has come
    caplog.clear()
    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors, report.duplicates) == (1, 0, 0)
    assert laminator_calls(store) == 8
    assert len(mailer.sent) == 8
    with ImapMailbox(dovecot.imap_config(user)) as box:
        assert list(box.list_keys()) == []


def test_imap_a_hang_up_ends_the_session_and_the_next_one_refuses_that_uid_at_once(
    dovecot: Dovecot,
) -> None:
    """The session whose FETCH the server hung up on fails (the connection is gone: a
    MailboxError, not one message's); the next session of the same folder, on a new
    connection and a new mailbox object, refuses that UID without asking the server and
    fetches the others; another user's mailbox does not inherit it."""
    user = dovecot.new_user()
    deliver_among(dovecot, user, 3, [2])
    with ImapMailbox(dovecot.imap_config(user)) as box:
        keys = list(box.list_keys())
        with pytest.raises(MailboxError, match="hung up") as raised:
            box.fetch(keys[0])  # the batch holds 1 to 4: Dovecot hangs up at 2
        assert not isinstance(raised.value, MessageUnreadableError)
    with ImapMailbox(dovecot.imap_config(user)) as box:
        keys = list(box.list_keys())
        assert keys == ["1", "2", "3", "4"]
        assert box.fetch("1") == new_call(1)
        with pytest.raises(MessageUnreadableError, match="refused UID 2"):
            box.fetch("2")
        assert [box.fetch(key) for key in keys[2:]] == [new_call(3), new_call(4)]
    other = dovecot.new_user()
    deliver_among(dovecot, other, 3, [])
    with ImapMailbox(dovecot.imap_config(other)) as box:
        list(box.list_keys())
        assert box.fetch("2") == new_call(2)


def test_imap_a_folder_renumbered_after_a_hang_up_does_not_inherit_it(dovecot: Dovecot) -> None:
    """The UIDs remembered are those of one UIDVALIDITY: a folder made anew (its UIDs
    numbered again from 1) has its UID 1 fetched."""
    user = dovecot.new_user()
    client = dovecot._imap(user)
    try:
        assert client.create("Desk")[0] == "OK"
    finally:
        client.logout()
    for number in (1, 2):
        dovecot.append(user, new_call(number), folder="Desk")
    maildir = dovecot.root / "mail" / user / "Maildir" / ".Desk"
    files = sorted(
        (path for sub in ("new", "cur") for path in (maildir / sub).iterdir()),
        key=delivery_order,
    )
    files[0].chmod(0)
    with ImapMailbox(dovecot.imap_config(user, folder="Desk")) as box:
        list(box.list_keys())
        with pytest.raises(MailboxError, match="hung up"):
            box.fetch("1")
    client = dovecot._imap(user)
    try:
        assert client.delete("Desk")[0] == "OK"
        assert client.create("Desk")[0] == "OK"
    finally:
        client.logout()
    dovecot.append(user, new_call(3), folder="Desk")
    with ImapMailbox(dovecot.imap_config(user, folder="Desk")) as box:
        assert list(box.list_keys()) == ["1"]
        assert box.fetch("1") == new_call(3)


def test_pop3_messages_the_server_refuses_never_hold_up_the_good_ones_behind_them(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    user = dovecot.new_user()
    files = deliver(dovecot, user, [1, 2, 3])
    with Pop3Mailbox(dovecot.pop3_config(user)) as box:
        uidls = list(box.list_keys())
    service = poller(store, MailProtocol.POP3, lambda: Pop3Mailbox(dovecot.pop3_config(user)))

    for _ in range(2):
        caplog.clear()
        report = service.poll_once()["helpdesk"]
        good = MESSAGES - 3 if _ == 0 else 0
        assert (report.processed, report.errors, report.quarantined) == (good, 3, 0)
        assert laminator_calls(store) == MESSAGES - 3
        assert still_there(dovecot, user, files)
        assert warned_keys(caplog) == uidls[:3]
    with Pop3Mailbox(dovecot.pop3_config(user)) as box:
        assert list(box.list_keys()) == uidls[:3]


def test_imap_a_refused_message_a_person_marked_deleted_holds_up_no_session(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Each session first looks at the messages marked ``\\Deleted`` (a dead session's
    leftovers, or a person's marks): one the server refuses to send is left alone, as one
    the ledger does not know, and the session goes on with the mail."""
    caplog.set_level(logging.INFO)
    user = dovecot.new_user(fetch_failure="no-after")
    files = deliver(dovecot, user, [1])
    client = dovecot._imap(user)
    try:
        client.select("INBOX")
        client.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    finally:
        client.logout()
    service = poller(store, MailProtocol.IMAP, lambda: ImapMailbox(dovecot.imap_config(user)))

    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors, report.expunged) == (MESSAGES - 1, 0, 0)
    assert laminator_calls(store) == MESSAGES - 1
    assert still_there(dovecot, user, files)  # the person's mark stays, and the message
    assert any(
        "refused UID 1" in record.getMessage() and getattr(record, "mailbox_key", "") == "1"
        for record in caplog.records
    )


def test_imap_a_message_marked_deleted_dovecot_hangs_up_on_holds_up_no_session(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Each session first fetches the messages marked ``\\Deleted``: one Dovecot hangs up on
    (its default ``imap_fetch_failure``) ends that session only; the next leaves it out and
    goes on with the mail."""
    caplog.set_level(logging.INFO)
    user = dovecot.new_user()
    files = deliver(dovecot, user, [1])
    client = dovecot._imap(user)
    try:
        client.select("INBOX")
        client.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    finally:
        client.logout()
    mailer = RecordingMailer()
    service = hang_up_poller(store, mailer, lambda: ImapMailbox(dovecot.imap_config(user)))

    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.duplicates, report.expunged) == (MESSAGES - 1, 0, 0)
    assert laminator_calls(store) == MESSAGES - 1
    assert still_there(dovecot, user, files)  # the person's mark stays, and the message
    assert service.backoff("helpdesk").failures == 0
    assert "1" in warned_keys(caplog)
