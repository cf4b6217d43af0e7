"""Which server refusals are one message's (the polling service goes on with the next) and
which are the session's (counted towards the mailbox failures that end it): docs/transport.md,
"One message the server will not send"."""

from __future__ import annotations

import poplib

import pytest

from asm_email_rules.adapters.imap import refuses_only_the_messages
from asm_email_rules.adapters.pop3 import refuses_only_the_message


@pytest.mark.parametrize(
    "said",
    [
        "[SERVERBUG] Internal error occurred. Refer to server log for more information.",
        "[CORRUPTION] Message is damaged",
        "[EXPUNGEISSUED] Some messages were expunged",
        "[UNKNOWN-CTE] Cannot decode x-unknown",
        "Fetch failed",
        "",
    ],
)
def test_an_imap_fetch_refusal_of_the_messages_lets_the_session_go_on(said: str) -> None:
    # RFC 3501 6.4.5: "NO - fetch error: can't fetch that data"
    assert refuses_only_the_messages(said)


@pytest.mark.parametrize(
    "said",
    [
        "[UNAVAILABLE] Backend down, try later",
        "[limit] Too many concurrent FETCH commands",
        "[OVERQUOTA] Download quota exceeded",
        "[INUSE] Mailbox in use",
        "[THROTTLED] Slow down",
        "[ALERT] Account exceeded command or bandwidth limits. (Failure)",
        "[NONEXISTENT] Mailbox was deleted",
        "[AUTHORIZATIONFAILED] Access withdrawn",
        "Request is throttled. Suggested Backoff Time: 5000 milliseconds",
        "Server Unavailable. 21",
        "Account exceeded command or bandwidth limits",
        "Server busy, try again later",
    ],
)
def test_an_imap_fetch_refusal_of_the_session_is_not_taken_for_the_messages(said: str) -> None:
    # RFC 5530 3: UNAVAILABLE, LIMIT, OVERQUOTA, INUSE ... are about the session or account
    assert not refuses_only_the_messages(said)


@pytest.mark.parametrize(
    ("exc", "one"),
    [
        (poplib.error_proto(b"-ERR Message 2 expunged."), True),
        (poplib.error_proto(b"-ERR no such message"), True),
        (poplib.error_proto(b"-ERR [SYS/TEMP] Disk I/O error, try again"), False),
        (poplib.error_proto(b"-ERR [SYS/PERM] Internal error"), False),
        (poplib.error_proto(b"-ERR [IN-USE] Mailbox locked"), False),
        (poplib.error_proto(b"-ERR [AUTH] Session expired"), False),
        (poplib.error_proto(b"-ERR Server Unavailable. 21"), False),
        (poplib.error_proto(b"-ERR Request is throttled"), False),
        (poplib.error_proto("-ERR EOF"), False),  # the connection closed (poplib's own text)
        (poplib.error_proto("line too long"), False),
        (TimeoutError("timed out"), False),
        (ConnectionResetError(104, "Connection reset by peer"), False),
    ],
)
def test_a_pop3_retr_refusal_is_one_message_s_only_with_the_session_still_working(
    exc: Exception, one: bool
) -> None:
    # RFC 1939 5 (RETR: "-ERR no such message"); RFC 2449 8: [SYS/TEMP], [IN-USE], [AUTH] ...
    assert refuses_only_the_message(exc) is one
