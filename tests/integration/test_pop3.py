"""Pop3Mailbox against a real Dovecot: deletions commit only on QUIT, quarantine is a skip list."""

from __future__ import annotations

import poplib
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.pop3 import Pop3Config, Pop3Mailbox
from asm_email_rules.errors import MailboxAuthenticationError, MailboxBusyError, MailboxError
from asm_email_rules.protocols import Mailbox

if TYPE_CHECKING:
    from conftest import Dovecot

PASSWORD = "secret"  # conftest.PASSWORD

pytestmark = pytest.mark.integration


def test_list_fetch_delete_quarantine_then_reconnect(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    sent = [make_message(n) for n in (1, 2, 3)]
    for raw in sent:
        dovecot.append(mail_user, raw)

    box = Pop3Mailbox(dovecot.pop3_config(mail_user))
    assert isinstance(box, Mailbox)
    ids = list(box.list_keys())
    assert len(ids) == 3
    assert [box.fetch(uidl) for uidl in ids] == sent
    box.delete(ids[0])
    box.quarantine(ids[1], "cannot parse")
    assert list(box.list_keys()) == [ids[2]]
    assert box.quarantined == {ids[1]: "cannot parse"}
    box.close()

    # The quarantined one is still on the server: the caller passes the skip list back.
    assert dovecot.messages(mail_user) == sent[1:]
    with Pop3Mailbox(dovecot.pop3_config(mail_user), skip_ids=box.skip_ids) as again:
        assert list(again.list_keys()) == [ids[2]]
    with Pop3Mailbox(dovecot.pop3_config(mail_user)) as unaware:
        assert list(unaware.list_keys()) == ids[1:]


def test_an_aborted_session_deletes_nothing(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    for n in (1, 2):
        dovecot.append(mail_user, make_message(n))
    box = Pop3Mailbox(dovecot.pop3_config(mail_user))
    for uidl in list(box.list_keys()):
        box.delete(uidl)
    assert list(box.list_keys()) == []
    box.abort()  # the connection drops without QUIT
    assert len(dovecot.messages(mail_user)) == 2


def test_an_error_inside_the_with_block_still_commits_what_was_deleted(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    for n in (1, 2):
        dovecot.append(mail_user, make_message(n))

    def process_first_then_fail() -> None:
        with Pop3Mailbox(dovecot.pop3_config(mail_user)) as box:
            box.delete(next(box.list_keys()))
            raise RuntimeError("processing the second message failed")

    with pytest.raises(RuntimeError):
        process_first_then_fail()
    assert dovecot.messages(mail_user) == [make_message(2)]


def test_long_lines_and_dot_lines_come_back_exactly(dovecot: Dovecot, mail_user: str) -> None:
    raw = (
        b"From: a@example.org\r\nSubject: long\r\n\r\n"
        + b"y" * 5000
        + b"\r\n.\r\n..two dots\r\n.leading dot\r\nend\r\n"
    )
    dovecot.append(mail_user, raw)
    with Pop3Mailbox(dovecot.pop3_config(mail_user)) as box:
        [uidl] = box.list_keys()
        assert box.fetch(uidl) == raw


def test_bad_password_is_a_mailbox_error_naming_the_server(
    dovecot: Dovecot, mail_user: str
) -> None:
    box = Pop3Mailbox(dovecot.pop3_config(mail_user, password="wrong"))
    with pytest.raises(MailboxError, match=rf"POP3 {dovecot.host}:{dovecot.pop3_port}"):
        list(box.list_keys())


def test_connection_refused_is_a_mailbox_error(unused_port: int) -> None:
    box = Pop3Mailbox(Pop3Config(host="127.0.0.1", port=unused_port, security="plain", timeout=2))
    with pytest.raises(MailboxError, match="cannot connect"):
        list(box.list_keys())


def test_unknown_uidl_cannot_be_fetched_and_delete_ignores_it(
    dovecot: Dovecot, mail_user: str
) -> None:
    with Pop3Mailbox(dovecot.pop3_config(mail_user)) as box:
        box.delete("no-such-uidl")
        with pytest.raises(MailboxError, match="no-such-uidl"):
            box.fetch("no-such-uidl")


def test_a_maildrop_locked_by_another_session_is_not_called_a_refused_sign_in(
    dovecot: Dovecot,
) -> None:
    # Dovecot with pop3_lock_session answers the PASS of a session while another client's
    # holds the maildrop with "-ERR [IN-USE] Mailbox is locked by another POP3 session."
    # (RFC 2449 8.1.1): the password is right, so the operator must not be sent to check it.
    user = dovecot.new_user(pop3_lock=True)
    other = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=5)
    try:
        other.user(user)
        other.pass_(PASSWORD)
        box = Pop3Mailbox(dovecot.pop3_config(user, timeout=15))  # Dovecot waits 10 s
        with pytest.raises(MailboxError) as caught:
            list(box.list_keys())
    finally:
        other.quit()
    assert isinstance(caught.value, MailboxBusyError)
    assert not isinstance(caught.value, MailboxAuthenticationError)
    assert "[IN-USE]" in str(caught.value)
    assert "the credentials were not refused" in str(caught.value)
    with Pop3Mailbox(dovecot.pop3_config(user)) as later:  # the lock went with the session
        assert list(later.list_keys()) == []
