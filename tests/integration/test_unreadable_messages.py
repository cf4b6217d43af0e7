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

from asm_email_rules.adapters.imap import ImapConfig, ImapMailbox
from asm_email_rules.adapters.pop3 import Pop3Config, Pop3Mailbox
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
    for number in range(1, MESSAGES + 1):
        dovecot.append(user, new_call(number))
    files = sorted(message_files(dovecot, user), key=delivery_order)
    assert len(files) == MESSAGES
    refused = [files[number - 1] for number in unreadable]
    for path in refused:
        path.chmod(0)
    return refused


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
    account = AccountConfig(name="helpdesk", protocol=protocol, mailbox=MAILBOX)
    config = Config(Path("unused.sqlite3"), SystemSettings(), None, (account,))
    return PollingService(config, store, RecordingMailer(), lambda _: factory(), now=lambda: NOW)


@pytest.fixture
def store(tmp_path: Path) -> SqliteRepository:
    repository = SqliteRepository(tmp_path / "store.sqlite3")
    seed_sample_desk(repository)
    return repository


def imap_config(dovecot: Dovecot, user: str, **changes: object) -> ImapConfig:
    fields: dict[str, object] = {
        "host": dovecot.host,
        "port": dovecot.imap_port,
        "security": "plain",
        "username": user,
        "password": "secret",
        "timeout": 5,
    }
    fields.update(changes)
    return ImapConfig(**fields)  # type: ignore[arg-type]


def pop3_config(dovecot: Dovecot, user: str) -> Pop3Config:
    return Pop3Config(
        host=dovecot.host,
        port=dovecot.pop3_port,
        security="plain",
        username=user,
        password="secret",
        timeout=5,
    )


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
        store, MailProtocol.IMAP, lambda: ImapMailbox(imap_config(dovecot, user, **changes))
    )

    for _ in range(2):  # refused again at the next poll, and the good ones are done
        caplog.clear()
        report = service.poll_once()["helpdesk"]
        good = MESSAGES - len(unreadable) if _ == 0 else 0
        assert (report.processed, report.errors, report.quarantined) == (good, 3, 0)
        assert laminator_calls(store) == MESSAGES - len(unreadable)
        assert still_there(dovecot, user, files)  # left in the mailbox
        assert sorted(warned_keys(caplog), key=int) == [str(n) for n in unreadable]
    with ImapMailbox(imap_config(dovecot, user)) as box:
        assert list(box.list_keys()) == [str(n) for n in unreadable]


def test_imap_refused_batch_hands_out_what_it_brought_and_asks_nothing_twice(
    dovecot: Dovecot,
) -> None:
    """Dovecot (``no-after``) sends the messages of a batch it could read, a FETCH response
    without a body for each one it could not, and a tagged NO; it hangs up on a second FETCH
    of a message it failed to read, so those are not asked for again."""
    user = dovecot.new_user(fetch_failure="no-after")
    deliver(dovecot, user, [2, 3])
    with ImapMailbox(imap_config(dovecot, user, batch_messages=4)) as box:
        keys = list(box.list_keys())
        assert box.fetch(keys[0]) == new_call(1)
        for key in keys[1:3]:
            with pytest.raises(MessageUnreadableError, match=rf"refused UID {key}: .*SERVERBUG"):
                box.fetch(key)
        assert [box.fetch(key) for key in keys[3:]] == [new_call(n) for n in range(4, 9)]


def test_imap_a_refused_message_whose_size_the_server_must_read_holds_up_nothing(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """A file another program delivered (no ``,S=``/``,W=`` size in its name: Dovecot must
    read it to answer ``RFC822.SIZE``) is refused already when the sizes are asked; fetching
    it again would make Dovecot hang up (a second FETCH of a message it failed to read)."""
    caplog.set_level(logging.INFO)
    user = dovecot.new_user(fetch_failure="no-after")
    for number in range(1, 4):
        dovecot.append(user, new_call(number))
    new = dovecot.root / "mail" / user / "Maildir" / "new"
    unreadable = []
    for number in range(4, MESSAGES + 1):  # as an MDA writes them: LF line ends, no size
        path = new / f"1796090000.M{number}P1.mda"
        path.write_bytes(new_call(number).replace(b"\r\n", b"\n"))
        shutil.chown(path, "nobody", "nogroup")
        if number in (5, 6):
            path.chmod(0)
            unreadable.append(path)
    service = poller(store, MailProtocol.IMAP, lambda: ImapMailbox(imap_config(dovecot, user)))

    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors, report.quarantined) == (MESSAGES - 2, 2, 0)
    assert laminator_calls(store) == MESSAGES - 2
    assert still_there(dovecot, user, unreadable)
    assert sorted(warned_keys(caplog), key=int) == ["5", "6"]


def test_imap_refusal_by_a_hang_up_is_still_a_mailbox_failure(dovecot: Dovecot) -> None:
    """Dovecot's default (``imap_fetch_failure = disconnect-immediately``) answers with BYE and
    closes the connection: the session's trouble, not one message's."""
    user = dovecot.new_user()
    deliver(dovecot, user, [1])
    with ImapMailbox(imap_config(dovecot, user)) as box:
        key = next(box.list_keys())
        with pytest.raises(MailboxError) as raised:
            box.fetch(key)
        assert not isinstance(raised.value, MessageUnreadableError)


def test_pop3_messages_the_server_refuses_never_hold_up_the_good_ones_behind_them(
    dovecot: Dovecot, store: SqliteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    user = dovecot.new_user()
    files = deliver(dovecot, user, [1, 2, 3])
    with Pop3Mailbox(pop3_config(dovecot, user)) as box:
        uidls = list(box.list_keys())
    service = poller(store, MailProtocol.POP3, lambda: Pop3Mailbox(pop3_config(dovecot, user)))

    for _ in range(2):
        caplog.clear()
        report = service.poll_once()["helpdesk"]
        good = MESSAGES - 3 if _ == 0 else 0
        assert (report.processed, report.errors, report.quarantined) == (good, 3, 0)
        assert laminator_calls(store) == MESSAGES - 3
        assert still_there(dovecot, user, files)
        assert warned_keys(caplog) == uidls[:3]
    with Pop3Mailbox(pop3_config(dovecot, user)) as box:
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
    service = poller(store, MailProtocol.IMAP, lambda: ImapMailbox(imap_config(dovecot, user)))

    report = service.poll_once()["helpdesk"]
    assert (report.processed, report.errors, report.expunged) == (MESSAGES - 1, 0, 0)
    assert laminator_calls(store) == MESSAGES - 1
    assert still_there(dovecot, user, files)  # the person's mark stays, and the message
    assert any(
        "refused UID 1" in record.getMessage() and getattr(record, "mailbox_key", "") == "1"
        for record in caplog.records
    )
