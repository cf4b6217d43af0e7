"""Which server refusals are one message's (the polling service goes on with the next) and
which are the session's (counted towards the mailbox failures that end it): docs/transport.md,
"One message the server will not send"."""

from __future__ import annotations

import pytest

from asm_email_rules.adapters.imap import refuses_only_the_messages


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
