"""The whole pipeline under hostile input: parse, classify, decide, apply on real SQLite, reply.

The only outcomes allowed are a recorded decision or MessageParseError (which the service
turns into quarantine). Every reply we would send renders with exactly our own headers.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.errors import MessageParseError
from asm_email_rules.outgoing import render_reply
from asm_email_rules.pipeline import process
from asm_email_rules.sample import sample_mailbox, seed_sample_desk
from asm_email_rules.settings import SystemSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAILBOX = sample_mailbox(
    auto_reply=True,
    create_calls_anonymously=True,
    update_calls_anonymously=True,
    update_closed_calls=True,
    log_new_call_on_invalid_number=True,
)
SYSTEM = SystemSettings(truncate_incoming_emails=True)
OUR_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "auto-submitted",
    SYSTEM.loop_header.lower(),
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}

PLAIN = (
    b"From: Uma User <uma@corp.example>\r\nTo: helpdesk@desk.example\r\n"
    b"Subject: Re: [CALL#100] printer\r\nMessage-ID: <p1@corp.example>\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nIt jams again.\r\n\r\n"
    b"On Thu, Helpdesk wrote:\r\n> Call 100 has been updated.\r\n"
)
MULTIPART = (
    b"From: alice@desk.example\r\nTo: helpdesk@desk.example\r\nSubject: [APPROVE#500]\r\n"
    b"Message-ID: <m1@desk.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n--XYZ\r\n'
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\nApproved =E9 ok=\r\n now\r\n--XYZ\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Hi<br>there</p><blockquote>old</blockquote>\r\n--XYZ\r\n"
    b'Content-Type: application/pdf; name="q.pdf"\r\nContent-Disposition: attachment; '
    b'filename="q.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    + base64.b64encode(b"%PDF-1.4 hello")
    + b"\r\n--XYZ--\r\n"
)
ENCODED = (
    b"From: =?utf-8?b?w4Fsdm8=?= <nobody@else.example>\r\nTo: helpdesk@desk.example\r\n"
    b"Subject: =?utf-8?q?=5BCLOSE#100=5D_=0D=0ABcc:_x@y?=\r\nMessage-ID: <e1@else.example>\r\n"
    b"Content-Type: text/plain; charset=x-unknown\r\n\r\n\xff\xfe body\r\n"
)
BASES = (PLAIN, MULTIPART, ENCODED)


def _mutate(base: bytes, cut: int, insert_at: int, insert: bytes, drop: int) -> bytes:
    raw = base[: max(1, len(base) - cut)]
    position = insert_at % (len(raw) + 1)
    raw = raw[:position] + insert + raw[position:]
    if drop:
        raw = raw.replace(b"XYZ", b"XY", drop)
    return raw


def _run(raw: bytes) -> None:
    repository = SqliteRepository()
    seed_sample_desk(repository)
    mailer = RecordingMailer()
    try:
        result = process(raw, repository, mailer, MAILBOX, SYSTEM, NOW)
    except MessageParseError:
        return
    # Processed means recorded: a second delivery of the same bytes is a duplicate.
    again = process(raw, repository, mailer, MAILBOX, SYSTEM, NOW)
    assert again.duplicate
    assert result.decision is not None
    sent = len(mailer.sent)
    assert sent <= 1
    for reply in mailer.sent:
        # a reply to a non-ASCII mailbox (RFC 6531) renders for a server offering SMTPUTF8
        rendered = render_reply(reply, now=NOW, smtputf8=True)
        assert rendered.smtputf8 == (not reply.to.rpartition("@")[0].isascii())
        wire = rendered.raw
        parsed = BytesParser(policy=policy.default).parsebytes(wire)
        names = [name.lower() for name in parsed]
        assert set(names) <= OUR_HEADERS, names
        assert len(names) == len(set(names)), "a header appears twice"
    repository.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(BASES),
    st.integers(0, 400),
    st.integers(0, 10_000),
    st.binary(max_size=64)
    | st.sampled_from(
        [b"\x00", b"\r\n\r\n", b"--XYZ\r\n", b"=?utf-8?b?!!!?=", b"\r\nBcc: x@y\r\n", b"=\r\n"]
    ),
    st.integers(0, 2),
)
def test_mutated_messages_decide_or_raise_parse_error(
    base: bytes, cut: int, insert_at: int, insert: bytes, drop: int
) -> None:
    _run(_mutate(base, cut, insert_at, insert, drop))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_decide_or_raise_parse_error(raw: bytes) -> None:
    _run(raw)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=60))
def test_echoed_subject_and_names_cannot_add_headers(subject: str, name: str) -> None:
    """Whatever the subject and display name hold, a reply has exactly our headers."""
    from email.headerregistry import Address
    from email.message import EmailMessage

    msg = EmailMessage(policy=policy.default.clone(linesep="\r\n"))
    try:
        msg["From"] = Address(display_name=name, addr_spec="nobody@else.example")
        msg["Subject"] = subject
    except (ValueError, TypeError):
        return  # the stdlib refuses to even build such a message
    msg["To"] = "helpdesk@desk.example"
    msg["Message-ID"] = "<inj@else.example>"
    msg.set_content("body")
    try:
        raw = msg.as_bytes()
    except (ValueError, TypeError, UnicodeError):
        return
    _run(raw)
