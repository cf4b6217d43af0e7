"""Rendering of our replies: threading headers, RFC 3834 marker, and refusal of injection."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from asm_email_rules.addresses import normalise_address
from asm_email_rules.errors import AsmEmailError
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.outgoing import (
    HeaderInjectionError,
    OutgoingMessageError,
    format_header_field,
    make_message_id,
    normalize_msg_id,
    render_outgoing,
    render_reply,
    sanitize_header_text,
)

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def _reply(**changes: object) -> OutgoingEmail:
    fields: dict[str, object] = {
        "to": "alice@example.org",
        "subject": "Call 42 has been logged [CALL#42]",
        "body": "##- Please type your reply above this line -##\nThanks.\n",
        "sender": "Service Desk <desk@asm.example>",
        "message_id": "<asm.call-42.f00d@asm.example>",
        "in_reply_to": "<orig-1@mail.example>",
        "references": ("<orig-0@mail.example>", "<orig-1@mail.example>"),
    }
    fields.update(changes)
    return OutgoingEmail(**fields)  # type: ignore[arg-type]


def _parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def test_make_message_id_with_and_without_a_record() -> None:
    assert make_message_id("call", 42, "asm.example", "f00d") == "<asm.call-42.f00d@asm.example>"
    assert make_message_id("reply", None, "asm.example", "beef") == "<asm.reply.beef@asm.example>"


@pytest.mark.parametrize(
    ("kind", "number", "host", "token"),
    [
        ("Call", 1, "h.example", "t"),
        ("call", -1, "h.example", "t"),
        ("call", 1, "bad host", "t"),
        ("call", 1, "h.example>\r\nBcc: x", "t"),
        ("call", 1, "h.example", "a@b"),
        ("call", 1, "h.example", ""),
    ],
)
def test_make_message_id_refuses_parts_that_break_the_id(
    kind: str, number: int, host: str, token: str
) -> None:
    with pytest.raises(OutgoingMessageError):
        make_message_id(kind, number, host, token)


def test_render_sets_the_design_headers() -> None:
    msg = _parse(render_outgoing(_reply(), now=NOW))
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] == "<asm.call-42.f00d@asm.example>"
    assert msg["In-Reply-To"] == "<orig-1@mail.example>"
    assert msg["References"] == "<orig-0@mail.example> <orig-1@mail.example>"
    assert msg["To"] == "alice@example.org"
    assert msg["From"].addresses[0].addr_spec == "desk@asm.example"
    assert msg["From"].addresses[0].display_name == "Service Desk"
    assert msg["Subject"] == "Call 42 has been logged [CALL#42]"
    assert msg["Date"].datetime == NOW
    assert msg.get_content().startswith("##- Please type your reply above this line -##")


def test_render_is_seven_bit_with_crlf_and_utf8_text() -> None:
    raw = render_outgoing(_reply(subject="Appel 42 mis à jour 👍", body="Réponse ✓\n"), now=NOW)
    assert raw.isascii()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = _parse(raw)
    assert msg["Subject"] == "Appel 42 mis à jour 👍"
    assert msg.get_content() == "Réponse ✓\r\n"


def test_text_that_looks_like_an_encoded_word_stays_literal() -> None:
    # Decoding it would smuggle a CRLF and a Bcc into the header block.
    sneaky = "=?utf-8?q?hi=0D=0ABcc:_victim@example.org?="
    raw = render_outgoing(_reply(subject=sneaky), now=NOW)
    msg = _parse(raw)
    assert msg["Subject"] == sneaky
    assert msg["Bcc"] is None
    assert b"\r\nBcc" not in raw


def test_missing_message_id_gets_a_reply_id_on_the_sender_domain() -> None:
    raw = render_outgoing(_reply(message_id=""), now=NOW, random_token="abc123")
    assert _parse(raw)["Message-ID"] == "<asm.reply.abc123@asm.example>"


def test_default_sender_is_used_when_the_message_has_none() -> None:
    raw = render_outgoing(_reply(sender=""), now=NOW, default_sender="helpdesk@asm.example")
    assert _parse(raw)["From"] == "helpdesk@asm.example"


def test_no_sender_at_all_is_refused() -> None:
    with pytest.raises(OutgoingMessageError, match="From"):
        render_outgoing(_reply(sender=""), now=NOW)


@pytest.mark.parametrize("to", ["", "<>", "not an address", "nobody@", "bjørn@example.org"])
def test_bad_recipients_are_refused(to: str) -> None:
    with pytest.raises(OutgoingMessageError):
        render_outgoing(_reply(to=to), now=NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Call 1\r\nBcc: victim@example.org"},
        {"subject": "Call 1\nX-Evil: 1"},
        {"subject": "Call 1\x00"},
        {"subject": "Call 1\u2028Bcc: victim@example.org"},
        {"to": "alice@example.org\r\nBcc: victim@example.org"},
        {"sender": "Desk <desk@asm.example>\nBcc: victim@example.org"},
        {"in_reply_to": "<a@b>\r\nBcc: victim@example.org"},
        {"references": ("<a@b>\rBcc: victim@example.org",)},
        {"extra_headers": (("X-Ok", "v\r\nBcc: victim@example.org"),)},
        {"extra_headers": (("X-Bad\r\nBcc", "v"),)},
        {"extra_headers": (("X Bad", "v"),)},
        {"extra_headers": (("Bcc", "victim@example.org"),)},
        {"extra_headers": (("auto-submitted", "no"),)},
    ],
)
def test_header_injection_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(HeaderInjectionError) as info:
        render_outgoing(_reply(**changes), now=NOW)
    assert isinstance(info.value, AsmEmailError)


def test_malformed_references_are_dropped_and_bare_ids_bracketed() -> None:
    raw = render_outgoing(
        _reply(in_reply_to="orig@x.example", references=("two words@x", "<ok@x>", "<ok@x>")),
        now=NOW,
    )
    msg = _parse(raw)
    assert msg["In-Reply-To"] == "<orig@x.example>"
    assert msg["References"] == "<ok@x>"


def test_long_references_fold_between_ids_and_are_never_encoded() -> None:
    refs = tuple(f"<{'r' * 90}.{n}@mail.example>" for n in range(30))
    raw = render_outgoing(_reply(references=refs), now=NOW)
    assert b"=?" not in raw.split(b"\r\n\r\n")[0]
    assert _parse(raw)["References"] == " ".join(refs)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(OutgoingMessageError, match="timezone"):
        render_outgoing(_reply(), now=datetime(2024, 1, 1))


def test_format_header_field_folds_long_ascii_at_spaces() -> None:
    field = format_header_field("Subject", " ".join(["word"] * 40))
    lines = field.split("\r\n")
    assert len(lines) > 1
    assert all(len(line) <= 78 for line in lines)


def test_normalize_msg_id() -> None:
    assert normalize_msg_id(" <a@b> ") == "<a@b>"
    assert normalize_msg_id("a@b") == "<a@b>"
    assert normalize_msg_id("no-at-sign") is None
    with pytest.raises(HeaderInjectionError):
        normalize_msg_id("<a@b>\n")


def test_sanitize_header_text_flattens_controls_for_our_own_text() -> None:
    assert sanitize_header_text("boom:\r\n  Traceback\x00 here\t!") == "boom: Traceback here !"
    assert len(sanitize_header_text("x" * 5000, max_length=100)) == 100


def _a_label(text: str) -> str:
    return "xn--" + text.encode("punycode").decode("ascii")


@pytest.mark.parametrize(
    ("stored", "domain"),
    [
        ("boss@ΣΑΣ.example", "σασ"),  # str.lower() gives the final sigma: σας, another domain
        ("boss@ΣＡΣ.example", "σaσ"),  # a full-width A, as the person is identified
        ("boss@σας.example", "σας"),  # a final sigma written as such stays one
    ],
)
def test_a_reply_goes_to_the_domain_its_person_is_identified_by(stored: str, domain: str) -> None:
    """DESIGN 4, "Replies we send": one recipient, the identified person's stored address.
    A Unicode domain goes out as A-labels of the domain that person is identified by
    (``normalise_address``), never of another DNS name with its own owner."""
    assert normalise_address(stored) == f"boss@{domain}.example"
    rendered = render_reply(_reply(to=stored), now=NOW)
    assert rendered.recipient == f"boss@{_a_label(domain)}.example"
