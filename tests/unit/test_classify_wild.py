"""Robots taken for people and the reverse, on kinds of mail a desk receives (issue 9, again).

Each case is a short message written here (no corpus file, no personal data) with the kind a
person reading it would give it. "fix" cases failed before the fix they name; "guard" cases
are people's mail (or robots' mail) that the same fix must leave as it was.
"""

from __future__ import annotations

import pytest

from asm_email_rules.classify import MailKind, classify
from asm_email_rules.intake import parse_message

AUTO_REPLY, GENERATED, NORMAL = MailKind.AUTO_REPLY, MailKind.AUTO_GENERATED, MailKind.NORMAL


def kind_of(*headers: str, body: str) -> MailKind:
    raw = "\r\n".join((*headers, "To: help@desk.example")) + "\r\n\r\n" + body
    return classify(parse_message(raw.replace("\r\n", "\n").encode("utf-8"))).kind


# =========================================================================== ticket systems
# RFC 3834 5: "automatic responses ... SHOULD NOT be issued in response to" other automatic
# responses; another desk's acknowledgement answered by ours is a desk-to-desk loop. A ticket
# system's acknowledgement says it received the message *and* names the ticket it opened; the
# second was in the same phrase table as the first, so the two counted as one feature.

TICKET_ACKS = [
    pytest.param(
        ("From: Service Desk <servicedesk@partner.example>", "X-Loop: servicedesk@partner.example"),
        "[Ticket#2026030210000012] Re: Call 12 has been logged",
        "Thank you for contacting the Partner service desk.\n"
        "Your message has been received and assigned ticket number 2026030210000012.\n",
        id="fix: another desk's acknowledgement with X-Loop",
    ),
    pytest.param(
        ("From: Vendor Helpdesk <helpdesk@vendor.example>", "X-OTRS-Loop: yes"),
        "[Ticket#2026031010000051] RE: Call 12 has been logged",
        "Dear customer,\n\nyour request has been received and will be processed as soon as "
        "possible.\nYour ticket number is 2026031010000051.\n",
        id="fix: OTRS acknowledgement",
    ),
    pytest.param(
        ("From: Kundenservice <service@shop.example>", "X-Loop: service@shop.example"),
        "Ihre Anfrage ist eingegangen",
        "Vielen Dank für Ihre Nachricht. Ihre Vorgangsnummer lautet 88123.\n",
        id="fix: a German desk's acknowledgement",
    ),
]


@pytest.mark.parametrize(("headers", "subject", "body"), TICKET_ACKS)
def test_a_ticket_systems_acknowledgement_is_an_auto_reply(
    headers: tuple[str, ...], subject: str, body: str
) -> None:
    assert kind_of(*headers, f"Subject: {subject}", body=body) is AUTO_REPLY


@pytest.mark.parametrize(
    ("headers", "subject", "body"),
    [
        pytest.param(
            ("From: Ola <ola@client.example>",),
            "Re: [Ticket#2026031010000051] RE: Call 12 has been logged",
            "Thank you, we have received your message and the ticket number. Solved now.\n",
            id="guard: a person thanking for a ticket number",
        ),
        pytest.param(
            ("From: Xena <xena@client.example>",),
            "[Ticket#4471] Re: still no network in room 12",
            "Thank you for contacting me yesterday. Your ticket is still open: any news?\n",
            id="guard: a person using a ticket reference in the subject",
        ),
        pytest.param(
            ("From: Ned <ned@client.example>", "X-Loop: ned@client.example"),
            "Re: Call 77 has been updated",
            "Thanks, it works now. You can close it.\n",
            id="guard: a person whose mail filter adds X-Loop",
        ),
    ],
)
def test_a_person_writing_about_tickets_is_a_person(
    headers: tuple[str, ...], subject: str, body: str
) -> None:
    assert kind_of(*headers, f"Subject: {subject}", body=body) is NORMAL
