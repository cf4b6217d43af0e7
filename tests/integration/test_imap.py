"""ImapMailbox against a real Dovecot started on loopback."""

from __future__ import annotations

import errno
import imaplib
import os
import re
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import HOST, stop_listening

from asm_email_rules.adapters import imap
from asm_email_rules.adapters.imap import QUARANTINE_HEADER, ImapConfig, ImapMailbox, _uid_set
from asm_email_rules.errors import (
    MailboxAuthenticationError,
    MailboxBusyError,
    MailboxError,
    MessageGoneError,
)
from asm_email_rules.protocols import Mailbox

if TYPE_CHECKING:
    from conftest import Dovecot

pytestmark = pytest.mark.integration


def test_list_fetch_delete_quarantine_then_reconnect(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    sent = [make_message(n) for n in (1, 2, 3)]
    for raw in sent:
        dovecot.append(mail_user, raw)

    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        assert isinstance(box, Mailbox)
        ids = list(box.list_keys())
        assert len(ids) == 3
        assert [box.fetch(uid) for uid in ids] == sent
        box.delete(ids[0])
        box.quarantine(ids[1], "parse error: bad\r\nheader")
        assert list(box.list_keys()) == [ids[2]]

    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        remaining = list(box.list_keys())
        assert [box.fetch(uid) for uid in remaining] == [sent[2]]

    [quarantined] = dovecot.messages(mail_user, "Quarantine")
    assert quarantined.endswith(sent[1])  # the original bytes, untouched, after our header
    msg = BytesParser(policy=policy.default).parsebytes(quarantined)
    assert msg[QUARANTINE_HEADER] == "parse error: bad header"
    assert msg["Message-ID"] == "<m2@example.org>"


def test_a_connection_opened_ahead_and_closed_while_it_waited_is_replaced_once(
    dovecot: Dovecot,
    mail_user: str,
    make_message: Callable[..., bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # open() connects ahead of the session (asm_email_rules.session_start); a firewall's idle
    # timeout or the server's autologout (RFC 3501 5.4) may close it before the session's
    # first call. It has done nothing yet: a new connection replaces it, the session goes on.
    sent = [make_message(n) for n in (1, 2)]
    for raw in sent:
        dovecot.append(mail_user, raw)
    box = ImapMailbox(dovecot.imap_config(mail_user))
    box.open()
    box._signed_in().sock.shutdown(socket.SHUT_RDWR)  # closed while it waited
    with caplog.at_level("INFO", logger="asm_email_rules.adapters.imap"):
        keys = list(box.list_keys())
    assert [box.fetch(key) for key in keys] == sent
    assert "opened ahead was closed while it waited" in caplog.text
    box.close()

    # A connection the session itself made is not replaced behind its back: its failure is
    # the session's (as before opening ahead existed).
    box = ImapMailbox(dovecot.imap_config(mail_user))
    box._signed_in().sock.shutdown(socket.SHUT_RDWR)
    with pytest.raises(MailboxError, match="SELECT failed"):
        list(box.list_keys())


def test_capabilities_given_with_the_sign_in_cost_no_round_trip(
    dovecot: Dovecot, mail_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 3501 7.1: a server may list its capabilities in the OK of LOGIN (Dovecot does);
    # a session then asks for them only where it does not (6.1.1): a round trip less per
    # session, which is what a session costs most on a distant server.
    sent: list[bytes] = []
    real = imap._Imap.send

    def send(self: imaplib.IMAP4, data: bytes) -> None:
        sent.append(data.split(b" ", 2)[1].upper())
        real(self, data)

    monkeypatch.setattr(imap._Imap, "send", send)
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        list(box.list_keys())
        assert {"UIDPLUS", "MOVE"} <= box._capabilities  # the signed-in ones, not the greeting's
    assert sent[sent.index(b"LOGIN") + 1 :][:2] == [b"SELECT", b"UID"]


class _Answered:
    """An imaplib client as far as :func:`imap._capabilities_said` reads it: the untagged
    ``CAPABILITY`` data kept since the last command took its own."""

    def __init__(self, untagged: list[bytes]) -> None:
        self._untagged = untagged

    def response(self, code: str) -> tuple[str, list[bytes | None]]:
        kept, self._untagged = self._untagged, []
        return code, list(kept) or [None]


@pytest.mark.parametrize(
    ("signed_in", "untagged", "found"),
    [
        ([b"[CAPABILITY IMAP4rev1 UIDPLUS MOVE] Logged in"], [], b"IMAP4rev1 UIDPLUS MOVE"),
        (
            [b"user@example.org authenticated (Success)"],
            [b"IMAP4rev1 UIDPLUS"],
            b"IMAP4rev1 UIDPLUS",
        ),
        ([b"Logged in"], [], None),  # neither: the client asks (RFC 3501 6.1.1)
        ([b"[CAPABILITY ] Logged in"], [], None),  # an empty list is no answer
        ([b"Logged in [CAPABILITY IMAP4rev1]"], [], None),  # a code only opens the text (7.1)
    ],
)
def test_capabilities_are_read_from_the_sign_in_answer_or_asked_for(
    signed_in: list[bytes], untagged: list[bytes], found: bytes | None
) -> None:
    client = _Answered(untagged)
    assert imap._capabilities_said(client, signed_in) == found  # type: ignore[arg-type]


def test_fetch_does_not_mark_seen(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    dovecot.append(mail_user, make_message(1))
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        [uid] = box.list_keys()
        box.fetch(uid)
    [flags] = dovecot.flags(mail_user)
    assert "FLAGS" in flags
    assert "\\Seen" not in flags


def test_close_without_delete_keeps_everything(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    dovecot.append(mail_user, make_message(1))
    box = ImapMailbox(dovecot.imap_config(mail_user))
    assert len(list(box.list_keys())) == 1
    box.close()
    box.close()  # repeated close is harmless
    assert len(dovecot.messages(mail_user)) == 1


def test_quarantine_by_move_keeps_the_exact_bytes(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    raw = make_message(7)
    dovecot.append(mail_user, raw)
    config = dovecot.imap_config(
        mail_user, quarantine_annotate=False, quarantine_folder="Held aside"
    )
    with ImapMailbox(config) as box:
        [uid] = box.list_keys()
        box.quarantine(uid, "too big")
    assert dovecot.messages(mail_user) == []
    assert dovecot.messages(mail_user, "Held aside") == [raw]


def test_quarantine_by_copy_when_the_server_lacks_move(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    raw = make_message(8)
    dovecot.append(mail_user, raw)
    with ImapMailbox(dovecot.imap_config(mail_user, quarantine_annotate=False)) as box:
        [uid] = box.list_keys()
        box._capabilities = box._capabilities - {"MOVE"}
        box.quarantine(uid, "loop")
    assert dovecot.messages(mail_user) == []
    assert dovecot.messages(mail_user, "Quarantine") == [raw]


def test_append_helper_returns_the_new_uid(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        uid = box.append(make_message(1))
        assert uid is not None
        assert list(box.list_keys()) == [uid]


def test_bad_password_is_a_mailbox_error_naming_the_server(
    dovecot: Dovecot, mail_user: str
) -> None:
    box = ImapMailbox(dovecot.imap_config(mail_user, password="wrong"))
    with pytest.raises(MailboxError, match=rf"IMAP {dovecot.host}:{dovecot.imap_port}.*LOGIN"):
        list(box.list_keys())


def test_missing_folder_is_a_mailbox_error(dovecot: Dovecot, mail_user: str) -> None:
    with pytest.raises(MailboxError, match="No-Such-Folder"):
        ImapMailbox(dovecot.imap_config(mail_user, folder="No-Such-Folder")).__enter__()


def test_connection_refused_is_a_mailbox_error(unused_port: int) -> None:
    box = ImapMailbox(ImapConfig(host="127.0.0.1", port=unused_port, security="plain", timeout=2))
    with pytest.raises(MailboxError, match="cannot connect"):
        list(box.list_keys())


def test_unknown_uid_is_a_mailbox_error(dovecot: Dovecot, mail_user: str) -> None:
    with (
        ImapMailbox(dovecot.imap_config(mail_user)) as box,
        pytest.raises(MailboxError, match="999"),
    ):
        box.fetch("999")


def _deliver(
    dovecot: Dovecot, user: str, make_message: Callable[..., bytes], count: int
) -> list[bytes]:
    """Append messages 1 to ``count`` to ``user``'s INBOX, in order; their bytes."""
    sent = [make_message(n) for n in range(1, count + 1)]
    for raw in sent:
        dovecot.append(user, raw)
    return sent


def _spy(box: ImapMailbox) -> list[tuple[str, ...]]:
    """Record every UID command the mailbox sends, as the wire carries it (imaplib's and the
    fetches sent ahead alike): ``(name, set, the rest)``."""
    client = box._client()
    sent: list[tuple[str, ...]] = []
    real = client.send

    def send(data: bytes) -> None:
        words = data.rstrip(b"\r\n").decode("utf-8", "replace").split(" ", 4)
        if len(words) >= 4 and words[1].upper() == "UID":
            sent.append((words[2].upper(), *words[3:]))
        real(data)

    client.send = send  # type: ignore[method-assign, assignment]
    return sent


def test_a_limited_listing_holds_the_lowest_uids_not_skipped_nor_deleted(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # Issue 14 (memory): the polling service asks for one session's worth of keys and skips
    # those it handled earlier in the pass; the folder may hold many more.
    sent = _deliver(dovecot, mail_user, make_message, 7)
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        assert ImapMailbox.bounded_listing is True
        every = list(box.list_keys())
        assert every == sorted(every, key=int)
        assert len(every) == 7
        box.delete(every[0])  # deleted in this session: hidden at once
        assert list(box.list_keys(limit=3, skip={every[2]})) == [every[1], every[3], every[4]]
        assert [box.fetch(key) for key in box.list_keys(limit=2)] == [sent[1], sent[2]]
        assert list(box.list_keys(limit=0)) == []
        assert list(box.list_keys(limit=10, skip=set(every))) == []
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:  # the deletion took effect
        assert list(box.list_keys(limit=100)) == every[1:]


def test_a_search_line_over_the_configured_bound_is_a_mailbox_error_naming_it(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # The listing's UID SEARCH answers in one line of about 7 bytes a message; imaplib's own
    # bound (1,000,000 bytes) made a folder of some 140,000 messages impossible to list. The
    # bound is ImapConfig.max_line_bytes (16 MiB by default); over it, a clear MailboxError.
    client = dovecot._imap(mail_user)
    try:
        raw = make_message(1)
        for _ in range(200):
            status, data = client.append("INBOX", None, None, raw)
            assert status == "OK", data
    finally:
        client.logout()
    search_line = len(b"* SEARCH") + sum(len(f" {uid}") for uid in range(1, 201)) + 2
    short = dovecot.imap_config(mail_user, max_line_bytes=search_line - 1)
    with ImapMailbox(short) as box, pytest.raises(MailboxError, match="max_line_bytes"):
        list(box.list_keys())
    with ImapMailbox(dovecot.imap_config(mail_user, max_line_bytes=search_line)) as box:
        assert len(list(box.list_keys())) == 200


def test_messages_are_fetched_ahead_in_batches_bounded_in_count_and_bytes(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # Issue 14: UID FETCH of several messages at once, never more than a bounded number of
    # bytes held; every message still comes back exactly as stored, in order.
    sent = [make_message(n, size=3000) for n in range(1, 8)]
    for raw in sent:
        dovecot.append(mail_user, raw)
    size = max(len(raw) for raw in sent)
    config = dovecot.imap_config(mail_user, batch_messages=3, batch_bytes=2 * size + 10)
    with ImapMailbox(config) as box:
        commands = _spy(box)
        keys = list(box.list_keys())
        ready = []  # fetch_ready: answered from the messages fetched ahead, no round trip
        fetched = []
        for key in keys:
            ready.append(box.fetch_ready(key))
            fetched.append(box.fetch(key))
        assert fetched == sent
    bodies = [c for c in commands if c[0] == "FETCH" and "BODY.PEEK[]" in c[-1]]
    assert [len(c[1].split(",")) for c in bodies] == [2, 2, 2, 1]  # bytes bound: 2 at a time
    # the sizes that bound the batches: asked once for the listing, one round trip, not one
    # a batch
    sizes = [c for c in commands if c[0] == "FETCH" and "RFC822.SIZE" in c[-1]]
    assert [c[1] for c in sizes] == [f"{keys[0]}:{keys[-1]}"]
    assert ready == [False, True, False, True, False, True, False]
    assert box._fetched == {}  # nothing left held after the session

    with ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3)) as box:
        commands = _spy(box)
        keys = list(box.list_keys())
        assert [box.fetch(key) for key in reversed(keys)] == sent[::-1]  # out of order works


def test_a_message_expunged_by_another_client_costs_no_second_download_of_its_batch(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # The sizes are asked once, before another client expunges two listed messages: the
    # batch that asked for them brings the rest, the two are errors at once, and nothing the
    # batch brought is downloaded again. (The expunged two are in the third batch: the second
    # is asked for, ahead, when the first is read.)
    sent = [make_message(n, size=500) for n in range(1, 12)]
    for raw in sent:
        dovecot.append(mail_user, raw)
    with ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3)) as box:
        commands = _spy(box)
        keys = list(box.list_keys())
        assert box.fetch(keys[0]) == sent[0]  # sizes asked; 1, 2, 3 fetched; 4, 5, 6 asked
        other = dovecot._imap(mail_user)
        try:
            other.select("INBOX")
            for key in (keys[7], keys[8]):
                assert other.uid("STORE", key, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
            assert other.expunge()[0] == "OK"
        finally:
            other.logout()
        got: list[bytes | str] = [sent[0]]
        for key in keys[1:]:
            try:
                got.append(box.fetch(key))
            except MessageGoneError as exc:  # not a failure of the mailbox: the service goes on
                got.append(str(exc))
    assert got[:7] == sent[:7]
    assert [
        str(g).endswith(f"no message with UID {k}")
        for g, k in zip(got[7:9], keys[7:9], strict=True)
    ] == [True, True]
    assert got[9:] == sent[9:]
    bodies = [c[1] for c in commands if c[0] == "FETCH" and "BODY.PEEK[]" in c[-1]]
    assert bodies == [",".join(keys[n : n + 3]) for n in (0, 3, 6, 9)]


def test_the_next_batch_is_asked_for_before_this_one_is_handed_out(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # fetch_ahead: the server prepares and sends the next batch while this one is processed;
    # its answer waits in the socket until its first message is fetched.
    sent = _deliver(dovecot, mail_user, make_message, 7)
    for ahead, asked in ((True, 2), (False, 1)):
        with ImapMailbox(
            dovecot.imap_config(mail_user, batch_messages=3, fetch_ahead=ahead)
        ) as box:
            commands = _spy(box)
            keys = list(box.list_keys())
            assert box.fetch(keys[0]) == sent[0]
            bodies = [c[1] for c in commands if c[0] == "FETCH" and "BODY.PEEK[]" in c[-1]]
            assert bodies == [",".join(keys[n : n + 3]) for n in (0, 3)][:asked]
            assert sorted(box._fetched) == keys[1:3]  # the answer ahead is not read yet
            assert [box.fetch(key) for key in keys[1:]] == sent[1:]


def test_the_last_of_a_listing_cut_at_its_limit_is_fetched_only_when_asked_for(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # The polling service lists one key more than a session reads, to learn whether any are
    # left: that key is not downloaded with a batch, nor asked for ahead (the session's end
    # would hold it while the next session downloads it again).
    sent = _deliver(dovecot, mail_user, make_message, 7)
    with ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3)) as box:
        commands = _spy(box)
        keys = list(box.list_keys(limit=4))
        assert [box.fetch(key) for key in keys[:3]] == sent[:3]
        bodies = [c[1] for c in commands if c[0] == "FETCH" and "BODY.PEEK[]" in c[-1]]
        assert bodies == [",".join(keys[:3])]
        assert box.fetch(keys[3]) == sent[3]  # asked for: fetched alone
        bodies = [c[1] for c in commands if c[0] == "FETCH" and "BODY.PEEK[]" in c[-1]]
        assert bodies == [",".join(keys[:3]), keys[3]]


def test_a_command_while_a_batch_is_asked_ahead_reads_its_answer_first(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # Quarantine, listing, deleting and closing while the answer to a fetch sent ahead is
    # unread: each command gets its own answer, every message comes back exactly, and the
    # session's deletions are expunged.
    sent = _deliver(dovecot, mail_user, make_message, 10)
    with ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3)) as box:
        keys = list(box.list_keys())
        assert box.fetch(keys[0]) == sent[0]  # 4, 5, 6 asked ahead
        box.quarantine(keys[1], "asked while a batch was on its way")
        box.delete(keys[0])
        got = [box.fetch(key) for key in keys[2:6]]  # 7, 8, 9 asked ahead at the 4th
        assert got == sent[2:6]
        for key in keys[2:6]:
            box.delete(key)
        assert list(box.list_keys()) == keys[6:]  # a listing in the middle of it
        assert box.fetch(keys[6]) == sent[6]  # 8, 9, 10 asked ahead
        box.delete(keys[6])
    assert dovecot.messages(mail_user) == sent[7:]
    [quarantined] = dovecot.messages(mail_user, "Quarantine")
    assert quarantined.endswith(sent[1])

    with ImapMailbox(dovecot.imap_config(mail_user, batch_messages=1)) as box:
        keys = list(box.list_keys())
        assert box.fetch(keys[0]) == sent[7]  # the next one asked ahead
        box.delete(keys[0])
        client = box._client()
        read: list[int] = []
        real_read = client.read

        def read_noting(size: int) -> bytes:
            read.append(size)
            return real_read(size)

        client.read = read_noting  # type: ignore[method-assign]
        box.abort()  # nothing marked
    assert read == []  # the answer ahead (a whole message) is not downloaded to be dropped
    assert dovecot.messages(mail_user) == sent[7:]


def _sending_ahead_fails(
    dovecot: Dovecot, mail_user: str, sent: list[bytes]
) -> tuple[ImapMailbox, list[str]]:
    """A mailbox (batches of 3) whose fetches ahead cannot be sent (the connection reset),
    and its listing, once the first batch is read (the next one's send failed then)."""
    box = ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3))
    keys = list(box.list_keys())
    client = box._client()
    real = client.send

    def send(data: bytes) -> None:
        if data.startswith(b"ZA"):  # as the kernel says it (it read "failed: 104" then)
            raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
        real(data)

    client.send = send  # type: ignore[method-assign, assignment]
    assert box.fetch(keys[0]) == sent[0]
    return box, keys


def test_a_connection_lost_with_a_batch_asked_ahead_is_a_mailbox_error(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    sent = _deliver(dovecot, mail_user, make_message, 7)
    box = ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3))
    keys = list(box.list_keys())
    assert box.fetch(keys[0]) == sent[0]
    client = box._client()
    # the connection ends before the answer ahead (which may be in the socket's buffer
    # already: what is read from now on is the end of the stream)
    client.sock.shutdown(socket.SHUT_RDWR)
    client.readline = lambda: b""  # type: ignore[method-assign]
    assert [box.fetch(key) for key in keys[1:3]] == sent[1:3]  # already in hand
    with pytest.raises(MailboxError, match=f"UID FETCH {keys[3]} failed"):
        box.fetch(keys[3])
    box.abort()

    # Sending it failed: the stream may hold part of a command, so no other command follows,
    # and the session's end says so instead of marking anything.
    box, keys = _sending_ahead_fails(dovecot, mail_user, sent)
    client = box._client()
    box.delete(keys[0])
    with pytest.raises(MailboxError, match="failed sending a fetch ahead: Connection reset by"):
        box.fetch(keys[3])
    with pytest.raises(MailboxError, match="failed sending a fetch ahead"):
        box.close()
    assert dovecot.messages(mail_user) == sent  # nothing marked, nothing expunged


@settings(deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=400), max_size=60))
def test_a_uid_set_names_exactly_the_uids_given(uids: set[int]) -> None:
    # RFC 3501 9: sequence-set = (seq-number / seq-range) *("," ...); a range a:b includes
    # both ends. The sizes of a listing are asked for with one such set: no UID left out,
    # none added (a range over a gap would ask for messages not listed).
    listed = [str(uid) for uid in sorted(uids)]
    named: list[int] = []
    for part in filter(None, _uid_set(listed).split(",")):
        first, _, last = part.partition(":")
        named.extend(range(int(first), int(last or first) + 1))
    assert named == sorted(uids)
    assert _uid_set(["3", "4", "5", "9", "11", "12"]) == "3:5,9,11:12"


def test_deletes_are_flagged_in_batches_on_close_and_expunged_abort_deletes_nothing(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # Nothing is marked before close(): the service syncs its store between the two.
    sent = _deliver(dovecot, mail_user, make_message, 7)
    with ImapMailbox(dovecot.imap_config(mail_user, store_batch=3)) as box:
        keys = list(box.list_keys())
        box.delete(keys[0])
        box.abort()
    assert dovecot.messages(mail_user) == sent
    assert not any("Deleted" in flags for flags in dovecot.flags(mail_user))

    box = ImapMailbox(dovecot.imap_config(mail_user, store_batch=3))
    commands = _spy(box)
    keys = list(box.list_keys())
    for key in keys[:5]:
        box.fetch(key)
        box.delete(key)
    assert [c for c in commands if c[0] == "STORE"] == []
    assert not any("Deleted" in flags for flags in dovecot.flags(mail_user))
    assert list(box.list_keys()) == keys[5:]
    box.close()
    stores = [c[1] for c in commands if c[0] == "STORE"]
    assert stores == [",".join(keys[:3]), ",".join(keys[3:5])]  # 3 UIDs per UID STORE
    assert dovecot.messages(mail_user) == sent[5:]


def test_a_failure_asking_the_next_batch_s_sizes_does_not_fail_the_message_in_hand(
    dovecot: Dovecot,
    mail_user: str,
    make_message: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # fetch_ahead asks the sizes of the next batch (RFC 3501 6.4.8, UID FETCH RFC822.SIZE)
    # after this batch is read: its failure belongs to the next fetch that needs the server,
    # not to the message whose bytes are already in hand (the caller would count it failed
    # and leave it for the next session).
    monkeypatch.setattr(imap, "SIZES_AHEAD", 3)
    sent = _deliver(dovecot, mail_user, make_message, 7)
    with ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3)) as box:
        keys = list(box.list_keys())
        client = box._client()
        real = client.uid
        sizes_asked: list[str] = []

        def uid(command: str, *args: str) -> tuple[str, list[bytes | None]]:
            if command.upper() == "FETCH" and "RFC822.SIZE" in args[-1]:
                sizes_asked.append(args[0])
                if len(sizes_asked) == 2:  # those of the batch after the first
                    return "NO", [b"simulated: try again"]
            return real(command, *args)

        client.uid = uid  # type: ignore[method-assign]
        assert box.fetch(keys[0]) == sent[0]
        assert [box.fetch(key) for key in keys[1:]] == sent[1:]
    assert len(sizes_asked) == 3  # asked again when the next batch was needed


def test_a_read_failure_within_the_answer_ahead_ends_the_session_s_commands(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # A timeout while the answer to a fetch sent ahead is read leaves the stream at an unknown
    # point of it (RFC 3501 2.2.2: responses are read in order): imaplib would read its rest
    # as the answer to its own next command. As when sending fails, no command may follow:
    # the next ones raise MailboxError without reaching the server, and nothing is marked.
    sent = _deliver(dovecot, mail_user, make_message, 7)
    box = ImapMailbox(dovecot.imap_config(mail_user, batch_messages=3))
    commands = _spy(box)
    keys = list(box.list_keys())
    assert [box.fetch(key) for key in keys[:3]] == sent[:3]  # 4, 5, 6 asked ahead
    box.delete(keys[0])
    client = box._client()
    real = client.readline
    lines: list[bytes] = []

    def readline() -> bytes:
        if len(lines) == 2:  # the first response of the answer read; the second is late
            raise TimeoutError("timed out")
        lines.append(real())
        return lines[-1]

    client.readline = readline  # type: ignore[method-assign]
    with pytest.raises(MailboxError, match=f"UID FETCH {keys[3]} failed"):
        box.fetch(keys[3])
    client.readline = real  # type: ignore[method-assign]
    sent_before = len(commands)
    with pytest.raises(MailboxError, match="failed reading a fetch ahead"):
        box.fetch(keys[4])
    with pytest.raises(MailboxError, match="failed reading a fetch ahead"):
        box.close()
    assert commands[sent_before:] == []  # no command on the stream out of step
    assert not any("Deleted" in flags for flags in dovecot.flags(mail_user))
    assert dovecot.messages(mail_user) == sent


def test_abort_closes_the_connection_even_when_the_session_cannot_log_out(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # Sending the fetch ahead failed, so abort() sends no LOGOUT (RFC 3501 6.1.3) on a stream
    # that may hold part of a command; it must still close the socket (one per failed session
    # of a long-running poller otherwise stays open until garbage collection).
    sent = _deliver(dovecot, mail_user, make_message, 7)
    box, _ = _sending_ahead_fails(dovecot, mail_user, sent)
    client = box._client()
    box.abort()
    assert client.sock.fileno() == -1


def test_a_limited_listing_searches_a_sessions_worth_of_messages_not_the_folder(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # Issue 14 (flat with the backlog; nothing worse than linear): the listing's UID SEARCH
    # answered with every UID of the folder at every session, so a backlog of n messages took
    # n / limit searches of up to n UIDs each. The first messages by sequence number are the
    # lowest UIDs (RFC 3501 2.3.1.2): a session's worth, and the ones it skips, are searched.
    _deliver(dovecot, mail_user, make_message, 30)
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        every = list(box.list_keys())
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        commands = _spy(box)
        assert list(box.list_keys(limit=5, skip=set(every[:3]))) == every[3:8]
        box.delete(every[3])
        assert list(box.list_keys(limit=4, skip=set(every[:3]))) == every[4:8]
        assert list(box.list_keys(limit=40)) == every[:3] + every[4:]  # the folder: all of it
    assert [c for c in commands if c[0] == "SEARCH"] == [
        ("SEARCH", "1:8", "UNDELETED"),
        ("SEARCH", "1:8", "UNDELETED"),  # 4, 3 skipped, 1 deleted
        ("SEARCH", "UNDELETED"),
    ]


def _marked_by_another(dovecot: Dovecot, user: str, first: str, last: str) -> None:
    """Another client marks the messages of UIDs ``first`` to ``last`` ``\\Deleted`` (and
    does not expunge them)."""
    other = dovecot._imap(user)
    try:
        other.select("INBOX")
        status, _ = other.uid("STORE", f"{first}:{last}", "+FLAGS", "(\\Deleted)")
        assert status == "OK"
    finally:
        other.logout()


def test_a_limited_listing_past_messages_others_marked_deleted_searches_them_all(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # Messages marked \Deleted by another client (not expunged) take sequence numbers and are
    # not listed: the first messages then hold fewer than the limit, and the folder is searched.
    _deliver(dovecot, mail_user, make_message, 20)
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        every = list(box.list_keys())
    _marked_by_another(dovecot, mail_user, every[0], every[9])
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        commands = _spy(box)
        assert list(box.list_keys(limit=5, skip={every[10]})) == every[11:16]
    assert [c for c in commands if c[0] == "SEARCH"] == [
        ("SEARCH", "1:6", "UNDELETED"),
        ("SEARCH", "UNDELETED"),
    ]


def test_a_server_refusing_the_search_of_the_first_messages_is_searched_whole(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # RFC 9051 asks a server for a BAD when a sequence number is past the last message (one
    # expunged by someone else since the server said how many there are): the same listing
    # comes from the whole folder's search, on the same connection.
    _deliver(dovecot, mail_user, make_message, 12)
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        every = list(box.list_keys())
        client = box._client()
        real = client.uid
        refused: list[tuple[str, ...]] = []

        def uid(command: str, *args: str) -> tuple[str, list[object]]:
            if command == "SEARCH" and args[0].startswith("1:"):
                refused.append(args)
                raise imaplib.IMAP4.error("SEARCH command error: BAD [b'Invalid messageset']")
            return real(command, *args)

        client.uid = uid  # type: ignore[method-assign]
        assert list(box.list_keys(limit=3, skip={every[0]})) == every[1:4]
        assert refused == [("1:4", "UNDELETED")]
        assert box.fetch(every[1]) == make_message(2)


def _ranged_past(commands: list[tuple[str, ...]], left: int) -> list[tuple[str, ...]]:
    """The ranged ``UID SEARCH`` commands sent whose range passes message ``left``."""
    return [
        c for c in commands if c[0] == "SEARCH" and c[1].startswith("1:") and int(c[1][2:]) > left
    ]


def test_a_limited_listing_never_searches_past_the_messages_the_end_before_left(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # RFC 9051 asks a server for a BAD when a sequence number passes its last message. The
    # end of the session before expunges its messages on a connection of its own while the
    # next session lists, and the server may tell this connection only with the answer to
    # the listing's own search: those messages are the ones the listing skips, so the range
    # must fit in the count less them (near the end of a backlog: the whole folder).
    _deliver(dovecot, mail_user, make_message, 25)
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        every = list(box.list_keys())
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        box._client()  # selected while 25 are there
        previous = ImapMailbox(dovecot.imap_config(mail_user))  # the session before, ending
        assert list(previous.list_keys(limit=11)) == every[:11]
        for key in every[:10]:
            previous.delete(key)
        previous.close()  # UID EXPUNGE of 10, not yet told to this connection
        commands = _spy(box)
        assert list(box.list_keys(limit=11, skip=set(every[:10]))) == every[10:21]
        assert list(box.list_keys(limit=2, skip=set(every[10:12]))) == every[12:14]
    assert _ranged_past(commands, 15) == []
    assert ("SEARCH", "1:4", "UNDELETED") in commands  # where it fits, still a range


def test_a_search_line_over_the_bound_in_a_ranged_listing_names_the_bound(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes]
) -> None:
    # A line over max_line_bytes is no refusal by the server: the stream is in the middle of
    # it, so nothing more is sent, and the error names the bound (ImapConfig).
    _deliver(dovecot, mail_user, make_message, 400)
    with (  # the first 300 answer in a line of 1,102 bytes; the sign-in's are shorter
        ImapMailbox(dovecot.imap_config(mail_user, max_line_bytes=600)) as box,
        pytest.raises(MailboxError, match="max_line_bytes"),
    ):
        list(box.list_keys(limit=300, skip=set()))


@pytest.mark.parametrize("uidplus", [True, False])
def test_a_limited_listing_never_searches_past_what_the_sessions_own_expunge_left(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes], uidplus: bool
) -> None:
    # A session expunges a dead session's leftovers itself (UID EXPUNGE, or a plain EXPUNGE
    # without UIDPLUS, whose responses imaplib hands back instead of keeping) before it lists.
    _deliver(dovecot, mail_user, make_message, 12)
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        every = list(box.list_keys())
    _marked_by_another(dovecot, mail_user, every[0], every[5])
    with ImapMailbox(dovecot.imap_config(mail_user)) as box:
        box._client()
        if not uidplus:
            box._capabilities = box._capabilities - {"UIDPLUS"}
        commands = _spy(box)
        assert box.expunge(list(box.deleted_keys())) == 6
        assert list(box.list_keys(limit=3, skip=set(every[6:10]))) == every[10:12]
    assert _ranged_past(commands, 6) == []


def _turning_away(login_answer: bytes) -> tuple[int, socket.socket]:
    """A one-connection IMAP server on loopback that answers ``LOGIN`` with ``login_answer``
    (after the tag), as a busy server does; (its port, its listener)."""
    listener = socket.create_server((HOST, 0))
    port: int = listener.getsockname()[1]

    def serve() -> None:
        with suppress(OSError):
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
                for line in lines:
                    tag, _, command = line.partition(b" ")
                    verb = command.split(b" ", 1)[0].strip().upper()
                    if verb == b"CAPABILITY":
                        conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                    elif verb == b"LOGIN":
                        conn.sendall(tag + b" " + login_answer + b"\r\n")
                    elif verb == b"LOGOUT":
                        conn.sendall(b"* BYE\r\n" + tag + b" OK done\r\n")
                        return
                    else:
                        conn.sendall(tag + b" BAD unexpected\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return port, listener


@pytest.mark.parametrize(
    "answer",
    [
        # Dovecot's mail_max_userip_connections, as a real Dovecot says it
        b"NO [LIMIT] Maximum number of connections from user+IP exceeded "
        b"(mail_max_userip_connections=10)",
        b"NO [UNAVAILABLE] Server Unavailable. 15",  # RFC 5530; Microsoft's words
        b"NO [INUSE] Mailbox in use",
        b"NO [ALERT] Too many simultaneous connections. (Failure)",  # Gmail's words
    ],
)
def test_a_server_turning_the_sign_in_away_for_now_is_not_a_refused_sign_in(
    answer: bytes,
) -> None:
    port, listener = _turning_away(answer)
    box = ImapMailbox(
        ImapConfig(HOST, port, security="plain", username="desk", password="right", timeout=5)
    )
    try:
        with pytest.raises(MailboxError) as caught:
            list(box.list_keys())
    finally:
        stop_listening(listener)
    assert isinstance(caught.value, MailboxBusyError)
    assert not isinstance(caught.value, MailboxAuthenticationError)
    assert "the credentials were not refused" in str(caught.value)
    assert answer.split(b" ", 1)[1].decode() in str(caught.value)


def test_a_sign_in_refused_for_its_credentials_stays_a_refused_sign_in() -> None:
    port, listener = _turning_away(b"NO [AUTHENTICATIONFAILED] Too many failed logins")
    box = ImapMailbox(
        ImapConfig(HOST, port, security="plain", username="desk", password="wrong", timeout=5)
    )
    try:
        with pytest.raises(MailboxAuthenticationError, match="AUTHENTICATIONFAILED"):
            list(box.list_keys())
    finally:
        stop_listening(listener)


_UID_FIRST_RE = re.compile(rb"(\* \d+ FETCH \()UID (\d+) (.*\{(\d+)\}\r\n)\Z")
_ENDS_IN_LITERAL_RE = re.compile(rb"\{(\d+)\}\r\n\Z")


def _uid_last_proxy(dovecot: Dovecot) -> tuple[int, socket.socket]:
    """A loopback proxy in front of ``dovecot`` that sends each ``FETCH`` response's ``UID``
    after the message's literal (``* 1 FETCH (BODY[] {n}`` ... `` UID 7)``), as RFC 3501
    7.4.2 allows a server to; (its port, its listener)."""
    listener = socket.create_server((HOST, 0))
    port: int = listener.getsockname()[1]

    def upward(client: socket.socket, server: socket.socket) -> None:
        with suppress(OSError):
            while data := client.recv(65536):
                server.sendall(data)
        with suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def downward(server: socket.socket, client: socket.socket) -> None:
        with suppress(OSError), server.makefile("rb") as lines:
            while line := lines.readline():
                moved = _UID_FIRST_RE.match(line)
                if moved is not None:
                    client.sendall(moved.group(1) + moved.group(3))
                    client.sendall(lines.read(int(moved.group(4))))
                    client.sendall(b" UID " + moved.group(2) + lines.readline())
                    continue
                client.sendall(line)
                while (literal := _ENDS_IN_LITERAL_RE.search(line)) is not None:
                    client.sendall(lines.read(int(literal.group(1))))
                    line = lines.readline()
                    client.sendall(line)
        with suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        with suppress(OSError):
            while True:
                client, _ = listener.accept()
                server = socket.create_connection((dovecot.host, dovecot.imap_port))
                threading.Thread(target=upward, args=(client, server), daemon=True).start()
                threading.Thread(target=downward, args=(server, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return port, listener


@pytest.mark.parametrize("fetch_ahead", [True, False])
def test_a_server_sending_the_uid_after_the_message_has_every_message_read(
    dovecot: Dovecot, mail_user: str, make_message: Callable[..., bytes], fetch_ahead: bool
) -> None:
    sent = [make_message(n) for n in range(1, 6)]
    for raw in sent:
        dovecot.append(mail_user, raw)
    port, listener = _uid_last_proxy(dovecot)
    config = dovecot.imap_config(mail_user, port=port, batch_messages=2, fetch_ahead=fetch_ahead)
    try:
        with ImapMailbox(config) as box:
            keys = list(box.list_keys())
            assert [box.fetch(key) for key in keys] == sent
            box.quarantine(keys[0], "kept aside")  # a fetch of one message, with its flags
            for key in keys[1:]:
                box.delete(key)
    finally:
        stop_listening(listener)
    assert dovecot.messages(mail_user) == []
    [kept] = dovecot.messages(mail_user, "Quarantine")
    assert kept.endswith(sent[0])
    assert b"kept aside" in kept


@pytest.mark.parametrize("annotate", [True, False])
def test_quarantine_on_a_server_whose_folders_live_under_inbox_dot(
    dovecot: Dovecot, make_message: Callable[..., bytes], annotate: bool
) -> None:
    # Courier, Cyrus and cPanel's Dovecot keep every folder under the personal namespace
    # "INBOX." (RFC 2342); a CREATE of "Quarantine" is refused there ("nonexistent
    # namespace"), so each quarantine failed and the message stayed in the INBOX.
    user = dovecot.new_user(inbox_prefix=True)
    raw = make_message(4)
    dovecot.append(user, raw)
    config = dovecot.imap_config(user, quarantine_annotate=annotate)
    with ImapMailbox(config) as box:
        [uid] = box.list_keys()
        box.quarantine(uid, "looping")
    assert dovecot.messages(user) == []
    [kept] = dovecot.messages(user, "INBOX.Quarantine")
    assert kept.endswith(raw)
    raw = make_message(5)  # named with the prefix already, it is used as it is
    dovecot.append(user, raw)
    with ImapMailbox(attrs.evolve(config, quarantine_folder="inbox.Quarantine")) as box:
        [uid] = box.list_keys()
        box.quarantine(uid, "looping")
    assert len(dovecot.messages(user, "INBOX.Quarantine")) == 2
