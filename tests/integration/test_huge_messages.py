"""A message of gigabytes in a mailbox costs no more memory than ``Limits.max_read_size``.

The intake keeps only the header of a message over ``max_total_size`` (intake.md, "Limits"),
so no reader needs more than four times that (``Limits.max_read_size``). Before, the Maildir
and IMAP mailboxes read every message whole: a message of some gigabytes (an export dropped
into the folder, a mail server without a size limit) was read into memory at every poll, and a
service on a small host was killed by the kernel on each pass, every later message with it.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.imap import ImapMailbox
from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.pop3 import Pop3Mailbox
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.bootstrap import bootstrap
from asm_email_rules.config import load_config
from asm_email_rules.ledger_key import MAX_HEADER_SCAN, read_bound
from asm_email_rules.sample import DESK_ADDRESS, seed_sample_desk

if TYPE_CHECKING:
    from conftest import Dovecot

pytestmark = pytest.mark.integration

MAX_TOTAL = 10_000
"""``max_total_size`` of these tests: a message is read up to four times this, plus the
trace fields the ledger key leaves out (at most ``MAX_HEADER_SCAN``)."""


def huge_message(size: int) -> bytes:
    """A message from a person with a body of about ``size`` bytes."""
    msg = EmailMessage()
    msg["From"] = "Nobody Known <stranger@corp.example>"
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = "The whole export, attached"
    msg["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = "<export-1@corp.example>"
    msg.set_content("Please look at this.\n" + "0123456789abcdef" * (size // 17) + "\n")
    return msg.as_bytes(policy=policy.SMTP)


def test_a_maildir_reads_no_more_of_a_message_than_asked(tmp_path: Path) -> None:
    raw = huge_message(200_000)
    with MaildirMailbox(tmp_path / "Maildir", max_message_size=5_000) as box:
        key = box.add(raw)
        assert list(box.list_keys()) == [key]
        assert box.fetch(key) == raw[:5_000]
        # a file moved from new to cur since the listing is found through the Maildir
        next(iter((tmp_path / "Maildir" / "new").iterdir())).rename(
            tmp_path / "Maildir" / "cur" / f"{key}:2,S"
        )
        assert box.fetch(key) == raw[:5_000]
    with MaildirMailbox(tmp_path / "Maildir") as whole:  # unbounded, as before
        assert whole.fetch(key) == raw


CONFIG = """\
store = "{store}"

[system.limits]
max_total_size = {max_total}

[[accounts]]
name = "helpdesk"
protocol = "maildir"
path = "{maildir}"

[accounts.mailbox]
addresses = ["{desk}"]
create_calls_anonymously = true
"""


def test_a_message_of_many_megabytes_is_a_call_with_its_header_in_bounded_memory(
    tmp_path: Path,
) -> None:
    # 40 MB against a read bound of about 1.1 MB: before, the pass held the 40 MB file (and
    # a copy or two); now at most read_bound(4 * MAX_TOTAL) of it. A second copy that came
    # by another relay (its own Received field) is the same message: no second call.
    store = tmp_path / "desk.sqlite"
    seed_sample_desk(SqliteRepository(store))
    path = tmp_path / "config.toml"
    path.write_text(
        CONFIG.format(
            store=store, max_total=MAX_TOTAL, maildir=tmp_path / "Maildir", desk=DESK_ADDRESS
        )
    )
    size = 40_000_000
    raw = huge_message(size)
    with MaildirMailbox(tmp_path / "Maildir") as box:
        box.add(b"Received: from relay-a by mx; Mon, 1 Jan 2024 10:00:00 +0000\r\n" + raw)
    config = load_config(path)
    bound = read_bound(config.system.limits.max_read_size)
    assert bound == 4 * MAX_TOTAL + MAX_HEADER_SCAN + 1
    with bootstrap(config) as wiring:
        tracemalloc.start()
        try:
            first = wiring.service.poll_once()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        with MaildirMailbox(tmp_path / "Maildir") as box:
            box.add(b"Received: from relay-b.example by mx2; Tue, 2 Jan 2024 8:00 +0100\r\n" + raw)
        second = wiring.service.poll_once()
    assert (first.total("processed"), first.total("quarantined")) == (1, 0)
    assert (second.total("processed"), second.total("duplicates")) == (0, 1)
    assert peak < 8 * bound, f"peak {peak} bytes for a {size}-byte message"
    assert not list((tmp_path / "Maildir" / "new").iterdir())  # handled, deleted


def test_imap_fetches_the_start_of_a_message_over_the_bound_and_the_rest_whole(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # RFC 3501 6.4.5: BODY.PEEK[]<0.n> is the first n octets, or the whole of a shorter
    # message; in a batch, alone, and fetched ahead alike.
    sent = [make_message(1), make_message(2, size=300_000), make_message(3), make_message(4)]
    for raw in sent:
        dovecot.append(mail_user, raw)
    limit = 50_000
    expected = [raw[:limit] for raw in sent]
    assert expected[1] != sent[1]
    for batch_messages in (1, 3, 20):
        config = dovecot.imap_config(
            mail_user, max_message_size=limit, batch_messages=batch_messages
        )
        with ImapMailbox(config) as box:
            keys = list(box.list_keys())
            assert [box.fetch(key) for key in keys] == expected, batch_messages
            assert [box.fetch(key) for key in reversed(keys)] == expected[::-1]
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:  # unbounded, as before
        assert [box.fetch(key) for key in box.list_keys()] == sent


def test_pop3_keeps_the_start_of_a_message_over_the_bound_and_reads_the_rest_past(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # RETR sends the whole message (RFC 1939 7): past the bound its lines are read and
    # dropped, and the session goes on with the next message; dot-stuffed lines come back
    # unstuffed as before.
    dotted = make_message(3).replace(b"\r\n\r\n", b"\r\n\r\n.starts with a dot\r\n", 1)
    sent = [make_message(1), make_message(2, size=300_000), dotted]
    for raw in sent:
        dovecot.append(mail_user, raw)
    limit = 50_000
    with Pop3Mailbox(dovecot.pop3_config(mail_user, max_message_size=limit)) as box:
        assert [box.fetch(key) for key in box.list_keys()] == [raw[:limit] for raw in sent]
    with Pop3Mailbox(dovecot.pop3_config(mail_user)) as box:  # unbounded, as before
        assert [box.fetch(key) for key in box.list_keys()] == sent


def test_a_maildir_quarantines_the_whole_of_a_message_over_the_bound(tmp_path: Path) -> None:
    """intake.md, "Limits": "the mailbox keeps the whole of it until then, and so does its
    quarantine folder if it is set aside". The original file is removed when its quarantine
    copy is made, so a copy of only the bytes a fetch reads would lose the rest for good."""
    raw = huge_message(30_000_000)
    with MaildirMailbox(tmp_path / "Maildir", max_message_size=5_000) as box:
        key = box.add(raw)
        list(box.list_keys())
        assert len(box.fetch(key)) == 5_000
        tracemalloc.start()
        try:
            box.quarantine(key, "a fault of ours while processing it")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4_000_000, f"{peak} bytes held to set aside a message of {len(raw)}"
    quarantined = MaildirMailbox(tmp_path / "Maildir" / ".Quarantine")
    (copy,) = list(quarantined.list_keys())
    kept = quarantined.fetch(copy)
    assert kept.endswith(raw)
    assert kept.startswith(b"X-ASM-Quarantine-Reason:")
    assert not list(MaildirMailbox(tmp_path / "Maildir").list_keys())


def test_imap_moves_a_message_over_the_bound_to_quarantine_without_fetching_it(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # The reason header means fetching the message whole and appending it again; past
    # max_message_size the server moves it as it is (the reason is logged), so a message of
    # gigabytes is never held here, and the folder still gets all of it.
    big, small = make_message(1, size=300_000), make_message(2)
    for raw in (big, small):
        dovecot.append(mail_user, raw)
    with ImapMailbox(dovecot.imap_config(mail_user, max_message_size=50_000)) as box:
        first, second = box.list_keys()
        assert len(box.fetch(first)) == 50_000
        box.quarantine(first, "a fault of ours")
        box.fetch(second)
        box.quarantine(second, "another fault")
    folder = dovecot.imap_config(mail_user, folder="Quarantine")
    with ImapMailbox(folder) as quarantine:
        kept = sorted((quarantine.fetch(key) for key in quarantine.list_keys()), key=len)
    assert kept[0].startswith(b"X-ASM-Quarantine-Reason: another fault")  # small: annotated
    assert kept[1] == big  # over the bound: moved as it is, whole


@pytest.mark.parametrize("batch_messages", [1, 20])
def test_imap_moves_a_lone_message_over_the_bound_without_fetching_it(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes], batch_messages: int
) -> None:
    # The sizes were known only when a batch asked for them: a message over the bound that
    # is alone in the mailbox (or read one at a time, batch_messages = 1) had no size, so it
    # was fetched whole to be appended with the reason header. Its size is asked first now.
    big = make_message(1, size=300_000)
    dovecot.append(mail_user, big)
    config = dovecot.imap_config(mail_user, max_message_size=50_000, batch_messages=batch_messages)
    with ImapMailbox(config) as box:
        (key,) = box.list_keys()
        assert len(box.fetch(key)) == 50_000
        box.quarantine(key, "a fault of ours")
    with ImapMailbox(dovecot.imap_config(mail_user, folder="Quarantine")) as quarantine:
        kept = [quarantine.fetch(uid) for uid in quarantine.list_keys()]
    assert kept == [big]  # moved as it is, whole: never fetched here
