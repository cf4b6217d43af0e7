"""A hostile or broken mail server's answers, read by a scripted server on loopback.

A number no UID, size or message number has (thousands of digits) is the adapter's
MailboxError (docs/transport.md: every failure of the server or the connection is one),
never the ``ValueError`` Python raises converting a number of over 4,300 digits. A refusal or
hang-up with a megabyte of text is quoted short where it is kept or repeated per message."""

from __future__ import annotations

import imaplib
import io
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress

import pytest

from asm_email_rules.adapters import imap
from asm_email_rules.adapters.imap import ImapConfig, ImapMailbox, _untagged
from asm_email_rules.adapters.pop3 import Pop3Config, Pop3Mailbox
from asm_email_rules.errors import MailboxError, MailboxHungUpError, MessageUnreadableError

HUGE = b"9" * 5_000
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"

Answer = Callable[[bytes, bytes], bytes]
"""What the scripted server answers to a command line (tag, the rest of the line)."""


def _serve(greeting: bytes, answer: Answer) -> tuple[int, Callable[[], None]]:
    """A one-connection server on loopback that answers each line with ``answer``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run() -> None:
        with suppress(OSError):
            conn, _ = listener.accept()
            with conn, conn.makefile("rwb") as wire:
                wire.write(greeting)
                wire.flush()
                while line := wire.readline():
                    tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                    wire.write(answer(tag, rest))
                    wire.flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop() -> None:
        # shutdown() first: a close alone leaves the thread blocked in accept(), where a
        # restart after a pause of the process takes the descriptor's next owner
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)

    return listener.getsockname()[1], stop


def _imap(search: bytes, sizes: bytes, bodies: bytes) -> Answer:
    def answer(tag: bytes, rest: bytes) -> bytes:
        command = rest.upper()
        if command.startswith(b"LOGIN"):
            return tag + b" OK [CAPABILITY IMAP4rev1 UIDPLUS] signed in\r\n"
        if command.startswith(b"SELECT"):
            return b"* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n" + tag + b" OK [READ-WRITE] ok\r\n"
        if command.startswith(b"UID SEARCH"):
            return b"* SEARCH " + search + b"\r\n" + tag + b" OK done\r\n"
        if command.startswith(b"UID FETCH") and b"RFC822.SIZE" in command:
            return sizes + tag + b" OK done\r\n"
        if command.startswith(b"UID FETCH"):
            return bodies + tag + b" OK done\r\n"
        if command.startswith(b"LOGOUT"):
            return b"* BYE bye\r\n" + tag + b" OK bye\r\n"
        return tag + b" OK done\r\n"

    return answer


def _body(uid: int) -> bytes:
    return b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(MESSAGE)) + MESSAGE + b")\r\n"


_SIZES = b"* 1 FETCH (UID 1 RFC822.SIZE 20)\r\n* 2 FETCH (UID 2 RFC822.SIZE 20)\r\n"

IMAP_CASES = {
    "a UID in the SEARCH answer": _imap(b"1 " + HUGE, _SIZES, _body(1) + _body(2)),
    "an RFC822.SIZE": _imap(
        b"1 2", b"* 1 FETCH (UID 1 RFC822.SIZE " + HUGE + b")\r\n", _body(1) + _body(2)
    ),
    "a literal's size": _imap(b"1 2", _SIZES, b"* 1 FETCH (UID 1 BODY[] {" + HUGE + b"}\r\n"),
}


@pytest.fixture
def serve() -> Iterator[Callable[[bytes, Answer], int]]:
    stops: list[Callable[[], None]] = []

    def start(greeting: bytes, answer: Answer) -> int:
        port, stop = _serve(greeting, answer)
        stops.append(stop)
        return port

    yield start
    for stop in stops:
        stop()


@pytest.mark.parametrize("where", sorted(IMAP_CASES))
def test_an_imap_number_of_thousands_of_digits_is_a_mailbox_error(
    serve: Callable[[bytes, Answer], int], where: str
) -> None:
    port = serve(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n", IMAP_CASES[where])
    config = ImapConfig(
        host="127.0.0.1", port=port, security="plain", username="u", password="p", timeout=5
    )
    box = ImapMailbox(config)

    def read_all() -> None:
        for key in list(box.list_keys()):
            box.fetch(key)

    try:
        with pytest.raises(MailboxError, match=r"\d+ digits"):
            read_all()
    finally:
        box.close()


def test_an_imap_literal_of_thousands_of_digits_read_ahead_is_an_imap_error() -> None:
    # the answer to a fetch sent ahead is read by _untagged, not imaplib: imaplib's error
    # makes the reader's MailboxError (and marks the stream out of step)
    class Wire:
        error = imaplib.IMAP4.error
        abort = imaplib.IMAP4.abort

        def __init__(self, data: bytes) -> None:
            self._file = io.BytesIO(data)

        def readline(self) -> bytes:
            return self._file.readline()

        def read(self, size: int) -> bytes:
            return self._file.read(size)

    wire = Wire(b"* 1 FETCH (UID 1 BODY[] {" + HUGE + b"}\r\nabc)\r\nA1 OK done\r\n")
    with pytest.raises(imaplib.IMAP4.error, match="5000 digits"):
        _untagged(wire, wire.readline())  # type: ignore[arg-type]


def test_a_pop3_message_number_of_thousands_of_digits_is_a_mailbox_error(
    serve: Callable[[bytes, Answer], int],
) -> None:
    def pop3(command: bytes, _: bytes) -> bytes:
        # POP3 lines have no tag: _serve splits the command word off in its place
        if command.upper() == b"UIDL":
            return b"+OK\r\n" + HUGE + b" abc\r\n.\r\n"
        return b"+OK\r\n"

    port = serve(b"+OK ready\r\n", pop3)
    box = Pop3Mailbox(
        Pop3Config(
            host="127.0.0.1", port=port, security="plain", username="u", password="p", timeout=5
        )
    )
    try:
        with pytest.raises(MailboxError, match="5000 digits"):
            list(box.list_keys())
    finally:
        box.close()


LONG_TEXT = b"x" * 1_000_000


def test_a_megabyte_of_refusal_text_is_quoted_short_in_each_message_s_error(
    serve: Callable[[bytes, Answer], int],
) -> None:
    """A tagged NO with a megabyte of text, refusing a batch of messages: each message's
    MessageUnreadableError (logged once a message) quotes the server's words, not a copy of
    the megabyte each."""
    sizes = b"".join(b"* %d FETCH (UID %d RFC822.SIZE 20)\r\n" % (uid, uid) for uid in (1, 2, 3))
    bare = b"".join(b"* %d FETCH (UID %d)\r\n" % (uid, uid) for uid in (1, 2, 3))

    def answer(tag: bytes, rest: bytes) -> bytes:
        if rest.upper().startswith(b"UID FETCH") and b"RFC822.SIZE" not in rest.upper():
            return bare + tag + b" NO [SERVERBUG] " + LONG_TEXT + b"\r\n"
        return _imap(b"1 2 3", sizes, b"")(tag, rest)

    port = serve(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n", answer)
    box = ImapMailbox(
        ImapConfig(
            host="127.0.0.1", port=port, security="plain", username="u", password="p", timeout=5
        )
    )
    said: list[str] = []
    try:
        for key in list(box.list_keys()):
            with pytest.raises(MessageUnreadableError) as caught:
                box.fetch(key)
            said.append(str(caught.value))
    finally:
        box.close()
    assert len(said) == 3
    assert all("[SERVERBUG] xxx" in text and len(text) < 1_000 for text in said), [
        len(text) for text in said
    ]


def test_a_megabyte_of_hang_up_text_is_not_kept_for_the_folder(
    serve: Callable[[bytes, Answer], int],
) -> None:
    """Dovecot's hang-up on a message it cannot read (``* BYE FETCH failed``), with a megabyte
    of text: the UID is left out of the folder's sessions for an hour, with the server's
    words quoted short (a server hanging up this way every session held a megabyte each)."""

    def answer(tag: bytes, rest: bytes) -> bytes:
        if rest.upper().startswith(b"UID FETCH"):
            return b"* 1 FETCH (UID 1)\r\n* BYE FETCH failed " + LONG_TEXT + b"\r\n"
        return _imap(b"1 2", b"", b"")(tag, rest)

    port = serve(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n", answer)
    box = ImapMailbox(
        ImapConfig(
            host="127.0.0.1", port=port, security="plain", username="u", password="p", timeout=5
        )
    )
    try:
        keys = list(box.list_keys())
        with pytest.raises(MailboxHungUpError):
            box.fetch(keys[0])
        kept = imap._HUNG_UP_ON.current(("127.0.0.1", port, "u", "INBOX", "7"))
    finally:
        box.close()
    assert list(kept) == ["1"]
    assert "FETCH failed xxx" in kept["1"]
    assert len(kept["1"]) < 1_000
