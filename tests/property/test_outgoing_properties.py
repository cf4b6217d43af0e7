"""Property: whatever text we are given, the rendered reply reads back with exactly our headers."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser

from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules.model import OutgoingEmail
from asm_email_rules.outgoing import (
    HeaderInjectionError,
    OutgoingMessageError,
    check_address,
    check_header_text,
    render_outgoing,
)

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
FORBIDDEN = "\r\n\x00"
ID_CHARS = string.ascii_letters + string.digits + ".-_$!#%+"

_ids = st.builds(
    lambda left, right: f"<{left}@{right}>",
    st.text(ID_CHARS, min_size=1, max_size=120),
    st.text(ID_CHARS, min_size=1, max_size=40),
)
_names = st.text(string.ascii_letters + "-", min_size=1, max_size=20).map(lambda s: "X-" + s)


def _squash(text: str) -> str:
    """The documented normalisation: runs of spaces and tabs become one space, ends trimmed."""
    return " ".join(part for part in text.replace("\t", " ").split(" ") if part)


def _reparse(raw: bytes) -> list[tuple[str, str]]:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert not msg.defects
    return [(name, str(value)) for name, value in msg.items()]


def _is_clean(text: str) -> bool:
    try:
        check_header_text("t", text)
    except HeaderInjectionError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(max_size=300),
    body=st.text(st.characters(exclude_categories=["Cs"]), max_size=400),
    in_reply_to=st.one_of(st.none(), _ids),
    references=st.lists(_ids, max_size=6, unique=True),
    extras=st.lists(st.tuples(_names, st.text(max_size=80)), max_size=3, unique_by=lambda t: t[0]),
)
def test_reparsed_headers_are_exactly_ours(
    subject: str,
    body: str,
    in_reply_to: str | None,
    references: list[str],
    extras: list[tuple[str, str]],
) -> None:
    message = OutgoingEmail(
        to="user@example.org",
        subject=subject,
        body=body,
        sender="Service Desk <desk@asm.example>",
        message_id="<asm.call-7.abc@asm.example>",
        in_reply_to=in_reply_to,
        references=tuple(references),
        extra_headers=tuple(extras),
    )
    values = [subject, *(value for _, value in extras)]
    if not all(_is_clean(value) for value in values):
        try:
            render_outgoing(message, now=NOW)
        except HeaderInjectionError:
            return
        raise AssertionError("a control character was accepted in a header")

    raw = render_outgoing(message, now=NOW)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()
    expected = [
        ("From", "Service Desk <desk@asm.example>"),
        ("To", "user@example.org"),
        ("Subject", _squash(subject)),
        ("Date", "Mon, 06 May 2024 07:08:09 +0000"),
        ("Message-ID", "<asm.call-7.abc@asm.example>"),
    ]
    if in_reply_to:
        expected.append(("In-Reply-To", in_reply_to))
    if references:
        expected.append(("References", " ".join(references)))
    expected.append(("Auto-Submitted", "auto-replied"))
    expected.extend((name, _squash(value)) for name, value in extras)
    headers = _reparse(raw)
    assert headers[: len(expected)] == expected
    assert [name for name, _ in headers[len(expected) :]] == [
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    ]
    content = BytesParser(policy=policy.default).parsebytes(raw).get_content()
    assert content.replace("\r\n", "\n") == _as_lines(body)


def _as_lines(body: str) -> str:
    """The body as the reader sees it: CR, LF and CRLF line ends as LF, ending with one."""
    lines = re.split(r"\r\n|\r|\n", body)
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(line + "\n" for line in lines) or "\n"


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(max_size=30),
    bad=st.sampled_from(FORBIDDEN),
    suffix=st.text(max_size=30),
    where=st.sampled_from(["subject", "to", "sender", "in_reply_to", "reference", "extra"]),
)
def test_cr_lf_nul_anywhere_is_refused(prefix: str, bad: str, suffix: str, where: str) -> None:
    value = prefix + bad + suffix
    fields: dict[str, object] = {
        "to": "user@example.org",
        "subject": "ok",
        "body": "ok",
        "sender": "desk@asm.example",
        "message_id": "<asm.reply.x@asm.example>",
    }
    if where == "reference":
        fields["references"] = (value,)
    elif where == "extra":
        fields["extra_headers"] = (("X-Test", value),)
    else:
        fields[where] = value
    message = OutgoingEmail(**fields)  # type: ignore[arg-type]
    try:
        raw = render_outgoing(message, now=NOW)
    except HeaderInjectionError:
        return
    except OutgoingMessageError as exc:  # pragma: no cover - would be a wrong error type
        raise AssertionError(f"wrong error type: {exc!r}") from exc
    raise AssertionError(f"rendered despite a forbidden character: {raw[:200]!r}")


# -- Message-IDs of the incoming mail that our reply echoes ----------------------------------
_ENCODED_WORD_IDS = st.builds(
    lambda charset, enc, payload, right: f"<=?{charset}?{enc}?{payload}?=@{right}>",
    st.sampled_from(["utf-8", "UTF-8", "iso-8859-1"]),
    st.sampled_from(["Q", "q", "B", "b"]),
    st.sampled_from(
        ["a=0D=0ABcc:_victim@evil.example", "=0A=0D", "x", "YQ0KQmNjOiB2QGUuZXhhbXBsZQ=="]
    ),
    st.text(ID_CHARS, min_size=1, max_size=20),
)
_ANY_IDS = st.one_of(
    _ids,
    _ENCODED_WORD_IDS,
    st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=60).map(
        lambda s: f"<{s}>"
    ),
)


@settings(max_examples=300, deadline=None)
@given(message_id=_ANY_IDS, references=st.lists(_ANY_IDS, max_size=4))
def test_echoed_message_ids_never_carry_an_encoded_word_or_a_line_break(
    message_id: str, references: list[str]
) -> None:
    """DESIGN 4, "Replies we send": "Header injection (CR/LF in any value we echo, encoded-words
    included) is impossible by construction." Whatever ids the incoming mail has, the reply we
    build from it reads back, through a reader that decodes encoded-words, with exactly our
    headers, and the ids it echoes hold no ``=?`` and no line break."""
    from asm_email_rules.applying import build_reply_email
    from asm_email_rules.decision import Reply
    from asm_email_rules.model import InboundEmail
    from asm_email_rules.sample import sample_mailbox
    from asm_email_rules.settings import SystemSettings

    inbound = InboundEmail(
        sender="uma@corp.example", message_id=message_id, references=tuple(references)
    )
    reply = Reply("uma@corp.example", ("Call 7 has been updated",), ("Thanks.",), "update")
    outgoing = build_reply_email(
        reply, inbound, sample_mailbox(), SystemSettings(), random_token="abc"
    )
    echoed = [outgoing.in_reply_to or "", *outgoing.references]
    for mid in echoed:
        assert "=?" not in mid
        assert not set(mid) & set("\r\n\x00")
    raw = render_outgoing(outgoing, now=NOW)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    names = [name.lower() for name in parsed]
    assert "bcc" not in names
    assert "cc" not in names
    for name in ("In-Reply-To", "References"):
        value = str(parsed.get(name, ""))  # decoded, as a mail client shows it
        assert "\n" not in value
        assert "\r" not in value


def test_the_issue_example_is_dropped_from_the_threading_headers() -> None:
    """The id from issue 10, ``<=?utf-8?Q?a=0D=0ABcc:...?=@x>``, is not echoed; a good one is."""
    from asm_email_rules.applying import build_reply_email
    from asm_email_rules.decision import Reply
    from asm_email_rules.model import InboundEmail
    from asm_email_rules.sample import sample_mailbox
    from asm_email_rules.settings import SystemSettings

    hostile = "<=?utf-8?Q?a=0D=0ABcc:_victim@evil.example?=@x>"
    inbound = InboundEmail(
        sender="uma@corp.example", message_id=hostile, references=("<good@corp.example>", hostile)
    )
    reply = Reply("uma@corp.example", ("Call 7 has been updated",), ("Thanks.",), "update")
    outgoing = build_reply_email(
        reply, inbound, sample_mailbox(), SystemSettings(), random_token="abc"
    )
    assert outgoing.in_reply_to is None
    assert outgoing.references == ("<good@corp.example>",)


def _stdlib_rendering(ours: bytes, body: str) -> bytes:
    """The same message built the way the stdlib builds it: our header fields set raw, then
    ``EmailMessage.set_content(body, charset="utf-8")`` and ``as_bytes`` under a 7-bit SMTP
    policy (what ``render_outgoing`` did before it wrote the MIME part itself)."""
    smtp_7bit = policy.SMTP.clone(cte_type="7bit", refold_source="none")
    head = ours.split(b"\r\nContent-Type: ", 1)[0].decode("ascii")
    reference = EmailMessage(policy=smtp_7bit)
    for field in re.split(r"\r\n(?![ \t])", head):
        name, _, value = field.partition(":")
        reference.set_raw(name, value.lstrip(" "))
    reference.set_content(body, charset="utf-8")
    return reference.as_bytes(policy=smtp_7bit)


_BODY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=600),
    st.text(string.printable, max_size=600),
    st.lists(st.text(string.ascii_letters + " ", max_size=120), max_size=30).map("\n".join),
    st.lists(st.text("aé€😀 =\t.", max_size=100), max_size=30).map("\r\n".join),
    # lines around the 78-character limit, where 7bit gives way to an encoding
    st.lists(
        st.tuples(st.integers(70, 86), st.sampled_from(["y", "é", " ", "="])).map(
            lambda n_c: "y" * n_c[0] + n_c[1]
        ),
        max_size=14,
    ).map("\n".join),
)


@settings(max_examples=400, deadline=None)
@given(body=_BODY_TEXT)
def test_the_mime_part_is_byte_for_byte_what_the_stdlib_writes(body: str) -> None:
    """The text part (Content-Type, Content-Transfer-Encoding, MIME-Version, the encoded body)
    is written without building an ``EmailMessage``, for speed; it must stay exactly what the
    stdlib's content manager chooses and writes (7bit, quoted-printable or base64, RFC 2045)."""
    ours = render_outgoing(
        OutgoingEmail(to="user@example.org", subject="Call 7", body=body, sender="desk@x.example"),
        now=NOW,
    )
    assert ours == _stdlib_rendering(ours, body)


_ATEXT_CHARS = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"


@settings(max_examples=300, deadline=None)
@given(
    local=st.lists(st.text(_ATEXT_CHARS, min_size=1, max_size=12), min_size=1, max_size=3),
    domain=st.lists(
        st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=10),
        min_size=1,
        max_size=3,
    ),
)
def test_plain_addresses_come_out_as_the_full_parser_reads_them(
    local: list[str], domain: list[str]
) -> None:
    """The fast path for a dot-atom address agrees with ``email.headerregistry.Address``."""
    text = ".".join(local) + "@" + ".".join(domain)
    assert check_address("To", text) == Address(addr_spec=text).addr_spec
