"""decide() as a pure function: facts in, Decision out, no store and no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from asm_email_rules.classify import MailKind
from asm_email_rules.errors import FactsError
from asm_email_rules.model import (
    NEW_CALL,
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    InboundEmail,
    SummaryItem,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.rules import Facts, Outcome, decide, format_summary
from asm_email_rules.sample import ALICE, UMA, sample_mailbox
from asm_email_rules.sender import resolve_sender
from asm_email_rules.settings import SystemSettings
from asm_email_rules.subject import parse_subject

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PEOPLE = (ALICE, UMA)
MAILBOX = sample_mailbox(auto_reply=True)
SYSTEM = SystemSettings()
OPEN_CALL = Call(100, user_id=UMA.id, owner_id=ALICE.id)
APPROVAL = Task(500, TaskKind.APPROVAL, TaskStatus.PENDING, approver_ids=(ALICE.id,))


def facts(subject: str, sender: str = UMA.email, **extra: Any) -> Facts:
    email_fields = extra.pop("email", {})
    email = InboundEmail(sender=sender, subject=subject, body="text", **email_fields)
    return Facts(
        email=email,
        command=parse_subject(subject),
        sender=resolve_sender(sender, PEOPLE),
        now=NOW,
        **extra,
    )


def test_decide_is_pure_and_deterministic() -> None:
    given = facts("[CLOSE#100]", call=OPEN_CALL)
    assert decide(given, MAILBOX, SYSTEM) == decide(given, MAILBOX, SYSTEM)


def test_close_decision_names_row_spec_actions_and_reply() -> None:
    decision = decide(facts("[CLOSE#100]", call=OPEN_CALL), MAILBOX, SYSTEM)
    assert decision.rule == "CL-9"
    assert decision.outcome is Outcome.CLOSE_CALL
    assert decision.action_kinds() == ("add_history", "close_call")  # the body is the reason
    assert decision.reply is not None
    assert decision.reply.to == UMA.email
    assert decision.reply.subject == "Call 100 has been closed [CALL#100]"
    assert "User field of the call" in decision.spec


def test_json_has_the_documented_keys() -> None:
    decision = decide(facts("[CLOSE#100]", call=OPEN_CALL), MAILBOX, SYSTEM)
    data = json.loads(decision.to_json())
    assert {"mail_kind", "command", "person_case", "actions", "reply", "reasons"} <= set(data)
    assert data["command"] == {
        "kind": "close",
        "number": 100,
        "source": "bracket",
        "matched": "[CLOSE#100]",
        "ignored": [],
    }
    assert data["actions"] == [
        {
            "kind": "add_history",
            "ref": {"kind": "call", "number": 100},
            "text": "text",
            "author": "Uma User <uma@corp.example>",
        },
        {"kind": "close_call", "number": 100, "by": "Uma User <uma@corp.example>"},
    ]
    assert data["reply"]["subject"] == "Call 100 has been closed [CALL#100]"


def _plain(value: object) -> bool:
    """Only what any serializer takes: dicts, lists, str, int, bool, None (no enum members)."""
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return type(value) in (str, int, bool, type(None))


@pytest.mark.parametrize(
    ("subject", "sender"),
    [("[MyCalls]", ALICE.email), ("[CLOSE#100]", UMA.email), ("Printer broken", UMA.email)],
)
def test_to_dict_holds_plain_values_only(subject: str, sender: str) -> None:
    """A host may hand ``to_dict()`` to YAML or its own JSON encoder: every enum member
    (mail kind, person case, a summary's kind) arrives as its value."""
    decision = decide(facts(subject, sender, call=OPEN_CALL), MAILBOX, SYSTEM)
    assert _plain(decision.to_dict())


def test_explain_is_readable() -> None:
    text = decide(facts("[CLOSE#100]", call=OPEN_CALL), MAILBOX, SYSTEM).explain()
    assert text.splitlines()[0] == "rule CL-9: close_call"
    assert "reply to uma@corp.example: Call 100 has been closed [CALL#100]" in text
    assert "  | Call 100 has been closed." in text.splitlines()


def test_unknown_sender_reply_goes_to_the_contact_address_not_return_path() -> None:
    """DESIGN 4 "Contact address": Reply-To when present, else From (RFC 5322 3.6.2)."""
    given = facts(
        "[APPROVE#500]",
        sender="x@else.example",
        task=APPROVAL,
        email={"return_path": "bounces@else.example"},
    )
    decision = decide(given, MAILBOX, SYSTEM)
    assert decision.rule == "AP-4"
    assert decision.reply is not None
    assert decision.reply.to == "x@else.example"
    with_reply_to = facts(
        "[APPROVE#500]",
        sender="x@else.example",
        task=APPROVAL,
        email={"return_path": "bounces@else.example", "reply_to": ("desk-x@else.example",)},
    )
    reply = decide(with_reply_to, MAILBOX, SYSTEM).reply
    assert reply is not None
    assert reply.to == "desk-x@else.example"


def test_known_sender_reply_goes_to_the_stored_address_not_the_header() -> None:
    """A forged From of a known person: the result goes to the person, not the forger."""
    given = facts("[MyCalls]", sender="ALICE@desk.example", email={"reply_to": ("evil@x.example",)})
    decision = decide(given, MAILBOX, SYSTEM)
    assert decision.reply is not None
    assert decision.reply.to == ALICE.email


def test_null_return_path_gets_no_reply() -> None:
    given = facts(
        "[APPROVE#500]", sender="x@else.example", task=APPROVAL, email={"return_path": ""}
    )
    decision = decide(given, MAILBOX, SYSTEM)
    assert decision.reply is None
    assert "null" in decision.reply_suppressed


def test_reply_budget_suppresses_replies() -> None:
    budget = SYSTEM.reply_budget_per_hour
    decision = decide(
        facts("[CLOSE#100]", call=OPEN_CALL, replies_last_hour=budget), MAILBOX, SYSTEM
    )
    assert decision.reply is None
    assert decision.reply_suppressed.startswith("reply budget")
    # the action itself still happens
    assert decision.action_kinds() == ("add_history", "close_call")


def test_old_mail_gets_no_reply() -> None:
    old = NOW - timedelta(days=SYSTEM.max_reply_age_days + 1)
    decision = decide(facts("[CLOSE#100]", call=OPEN_CALL, email={"date": old}), MAILBOX, SYSTEM)
    assert decision.reply is None
    assert "days ago: no reply" in decision.reply_suppressed


@pytest.mark.parametrize(
    ("date_age", "received_age", "max_days", "replied"),
    [
        (10, 0, 7, True),  # written offline ten days ago, sent today: the writer waits
        (0, 10, 7, False),  # a backlog: arrived ten days ago, whatever its Date says
        (10, None, 7, False),  # no Received field: its Date is all there is
        (400, 400, 0, True),  # 0: no age limit
        (400, 400, 1_000_000_000, True),  # more days than timedelta holds: no OverflowError
        (0, -10, 7, False),  # a received time without a zone (read leniently): taken as UTC
    ],
)
def test_the_reply_age_guard_counts_from_when_the_mail_reached_us(
    date_age: int, received_age: int | None, max_days: int, replied: bool
) -> None:
    """docs/security.md, "Backlog storms" (beyond the spec, which promises each reply with no
    condition of age): the guard is for mail that waited in the mailbox, not for mail its
    writer's device sent late ("people who are traveling or using hand-held devices")."""
    received = None
    if received_age is not None:
        received = NOW - timedelta(days=abs(received_age))
        if received_age < 0:
            received = received.replace(tzinfo=None)
    email = {"date": NOW - timedelta(days=date_age), "received_at": received}
    system = attrs.evolve(SYSTEM, max_reply_age_days=max_days)
    decision = decide(facts("[CLOSE#100]", call=OPEN_CALL, email=email), MAILBOX, system)
    assert (decision.reply is not None) is replied, decision.reply_suppressed
    assert decision.action_kinds() == ("add_history", "close_call")


def test_no_reply_to_automatic_mail() -> None:
    given = facts("[CALL#100]", call=OPEN_CALL, mail_kind=MailKind.LIST, may_auto_reply=False)
    decision = decide(given, MAILBOX, SYSTEM)
    assert decision.rule == "UC-4"
    assert decision.reply is None
    assert "RFC 3834" in decision.reply_suppressed


def test_permanent_bounce_is_discarded_without_reply() -> None:
    given = facts(
        "Undelivered", mail_kind=MailKind.BOUNCE, bounce_permanent=True, may_auto_reply=False
    )
    decision = decide(given, MAILBOX, SYSTEM)
    assert decision.rule == "GATE-1"
    assert decision.action_kinds() == ("discard",)
    assert decision.reply is None


def test_unauthenticated_close_is_refused_with_reason() -> None:
    given = facts(
        "[CLOSE#100]",
        call=OPEN_CALL,
        authenticated=False,
        auth_reason="dmarc=fail for corp.example",
    )
    decision = decide(given, MAILBOX, SYSTEM)
    assert decision.rule == "CL-6"
    assert decision.action_kinds() == ("discard",)
    assert decision.reply is not None
    assert "dmarc=fail for corp.example" in decision.reply.body


def test_token_refusal_and_spend() -> None:
    refused = decide(
        facts(
            "[APPROVE#500]",
            sender=ALICE.email,
            task=APPROVAL,
            token_ok=False,
            token_reason="expired",
        ),
        MAILBOX,
        SYSTEM,
    )
    assert refused.rule == "AP-10"
    assert refused.action_kinds() == ("discard",)
    accepted = decide(
        facts(
            "[APPROVE#500-abc]",
            sender=ALICE.email,
            task=APPROVAL,
            token_ok=True,
            token_id="500-2-abc",
        ),
        MAILBOX,
        SYSTEM,
    )
    assert accepted.action_kinds() == ("add_history", "approve_task", "spend_token")


def test_partition_outside_mailbox_is_an_invalid_number() -> None:
    mailbox = attrs.evolve(MAILBOX, log_new_call_on_invalid_number=True)
    decision = decide(facts("[CALL#100]", call=OPEN_CALL, in_partition=False), mailbox, SYSTEM)
    assert decision.rules == ("UC-1", "LOG-6")
    assert decision.action_kinds()[0] == "log_call"


def test_closed_call_closed_state_reply_has_number() -> None:
    closed = attrs.evolve(OPEN_CALL, status=CallStatus.CLOSED)
    decision = decide(facts("[CALL#100]", call=closed), MAILBOX, SYSTEM)
    assert decision.reply is not None
    assert (
        decision.reply.subject
        == "Call No 100 is already closed and has not been updated. [CALL#100]"
    )


def test_reply_templates_are_overridable_per_mailbox() -> None:
    mailbox = attrs.evolve(MAILBOX, reply_templates={"call_closed.subject": "Fermé: appel $number"})
    decision = decide(facts("[CLOSE#100]", call=OPEN_CALL), mailbox, SYSTEM)
    assert decision.reply is not None
    assert decision.reply.subject == "Fermé: appel 100 [CALL#100]"


def test_no_user_record_for_mail_without_a_from_address() -> None:
    mailbox = attrs.evolve(MAILBOX, create_calls_anonymously=True)
    decision = decide(facts("Help", sender=""), mailbox, SYSTEM)
    assert decision.rule == "LOG-3"
    assert decision.action_kinds() == ("discard",)


def test_the_reply_is_complete_token_marker_subject_and_body() -> None:
    """DESIGN 4 "Replies we send": the spec's subject plus the bracket token; our marker line
    first in the body. decide renders all of it, so the Decision's reply is the mail."""
    decision = decide(facts("[CLOSE#100]", call=OPEN_CALL), MAILBOX, SYSTEM)
    assert decision.reply is not None
    assert decision.reply.subject == "Call 100 has been closed [CALL#100]"
    assert decision.reply.body == f"{SYSTEM.reply_marker}\n\nCall 100 has been closed.\n"
    assert not decision.reply.awaits_call_number


def test_a_new_calls_number_is_a_placeholder_shown_as_new_call() -> None:
    decision = decide(facts("Printer on fire"), MAILBOX, SYSTEM)
    reply = decision.reply
    assert reply is not None
    assert reply.ref == NEW_CALL
    assert reply.awaits_call_number
    assert reply.subject == "Call (new call) has been logged [CALL#(new call)]"
    assert "Call (new call) has been logged." in reply.body
    assert "$number" not in decision.explain()
    assert "reply to uma@corp.example: Call (new call) has been logged [CALL#(new call)]" in (
        decision.explain()
    )
    filled = reply.for_call(104)
    assert filled.subject == "Call 104 has been logged [CALL#104]"
    assert filled.body == reply.body.replace("(new call)", "104")
    assert filled.ref == EntityRef(EntityKind.CALL, 104)
    assert not filled.awaits_call_number
    assert json.loads(decision.to_json())["reply"]["subject"] == reply.subject


def test_an_operator_template_mentioning_new_call_keeps_its_words() -> None:
    """The placeholder is typed, not the text "(new call)": an override that says it is kept."""
    mailbox = attrs.evolve(
        MAILBOX, reply_templates={"call_logged.body": "Your (new call) is number $number; $$5"}
    )
    reply = decide(facts("Printer on fire"), mailbox, SYSTEM).reply
    assert reply is not None
    assert reply.for_call(7).body.endswith("Your (new call) is number 7; $5\n")


def test_reply_to_an_address_the_outgoing_mail_would_refuse_is_suppressed() -> None:
    """A reply is only decided when it can be rendered: an addr-spec whose local part is not a
    dot-atom (RFC 5322 3.4.1) gets no reply, and the decision says why."""
    given = facts("[APPROVE#500]", sender="=??b??=x@else.example", task=APPROVAL)
    decision = decide(given, MAILBOX, SYSTEM)
    assert decision.reply is None
    assert "not a deliverable ASCII address" in decision.reply_suppressed


def test_no_reply_to_an_address_holding_an_encoded_word_opener() -> None:
    # RFC 2047 5(3): no encoded-word in an addr-spec; a reader would decode "=?...?=" in our
    # To field, and the renderer refuses it. The call is still logged; the reply is suppressed.
    sender = "=??b??=uma@corp.example"
    anonymous = attrs.evolve(MAILBOX, create_calls_anonymously=True)
    decision = decide(facts("Printer broken", sender=sender), anonymous, SYSTEM)
    assert decision.reply is None
    assert "not a deliverable ASCII address" in decision.reply_suppressed
    assert decision.action_kinds()[-1] == "log_call"


def test_a_naive_now_is_refused_not_a_silent_end_of_the_reply_age_guard() -> None:
    """``max_reply_age_days``: a naive ``now`` (``datetime.now()``) could not be compared with
    the message's Date, so the guard was skipped and stale mail got replies; it is a
    TypeError now, at every entry that takes ``now``."""
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(TypeError, match="timezone-aware"):
        attrs.evolve(facts("[CLOSE#100]", call=OPEN_CALL), now=naive)


def test_the_decision_value_cites_the_spec_as_the_tables_and_explain_do() -> None:
    # A host that renders its own audit line reads decision.spec. A row beyond the spec
    # (CL-7: a closed call gets a reply) was cited there as "DESIGN 4: ...", a document the
    # host does not have, while explain(), to_dict() and docs/decision-tables.md say
    # "beyond the spec".
    closed = attrs.evolve(OPEN_CALL, status=CallStatus.CLOSED)
    decision = decide(facts("[CLOSE#100]", call=closed), MAILBOX, SYSTEM)
    assert decision.rule == "CL-7"
    assert "(beyond the spec: a closed call gets a reply, no new call)" in decision.spec
    assert "DESIGN" not in decision.spec
    assert decision.spec == decision.to_dict()["spec"]
    assert f"  spec: {decision.spec}\n" in decision.explain()


@pytest.mark.parametrize("sender", ["josé@example.com", "anna@bücher.example", "用户@例子.广告"])
def test_an_internationalized_sender_gets_the_reply(sender: str) -> None:
    """DESIGN 4b: "Call <n> has been logged" for a new call goes to the sender - an RFC 6531
    address too: a Unicode domain goes out as A-labels, a non-ASCII local part with SMTPUTF8
    (the mailer refuses and keeps the reply when its server lacks it)."""
    anonymous = attrs.evolve(MAILBOX, create_calls_anonymously=True)
    decision = decide(facts("Printer broken", sender=sender), anonymous, SYSTEM)
    assert decision.action_kinds()[-1] == "log_call"
    assert decision.reply is not None, decision.reply_suppressed
    assert decision.reply.to == sender


@pytest.mark.parametrize(
    "sender", ["jo\u202esé@example.com", "jo sé@example.com", "josé@b\u200bücher.example"]
)
def test_no_reply_to_a_non_ascii_address_that_could_not_be_sent_as_written(sender: str) -> None:
    anonymous = attrs.evolve(MAILBOX, create_calls_anonymously=True)
    decision = decide(facts("Printer broken", sender=sender), anonymous, SYSTEM)
    assert decision.reply is None
    assert "not a deliverable" in decision.reply_suppressed


def test_a_summary_time_at_the_end_of_the_calendar_is_shown_not_a_crash() -> None:
    """A host store's last update of 9999-12-31 23:59 UTC cannot be moved to +05:30; the line
    shows it in UTC instead of the whole summary failing."""
    item = SummaryItem(
        EntityRef(EntityKind.CALL, 7),
        "open",
        "Badge reader",
        datetime.max.replace(tzinfo=UTC),
        "Dana",
    )
    text = format_summary((item,), 1, timezone(timedelta(hours=5, minutes=30)))
    assert "9999-12-31 23:59 UTC" in text


def test_facts_refuse_a_record_that_is_not_the_one_the_command_names() -> None:
    """A host that builds Facts and hands over the wrong call (a look-up by another number)
    got call 99's permissions judged and call 100 closed: UMA is the User of call 99, not of
    call 100. Now the Facts are refused, naming both numbers."""
    not_hers = Call(100, user_id=ALICE.id, owner_id=ALICE.id)
    assert decide(facts("[CLOSE#100]", call=not_hers), MAILBOX, SYSTEM).outcome is not (
        Outcome.CLOSE_CALL
    )
    with pytest.raises(FactsError, match=r"Facts\.call is call 99, but .* names call 100"):
        facts("[CLOSE#100]", call=attrs.evolve(OPEN_CALL, number=99))
    with pytest.raises(FactsError, match=r"Facts\.task is task 501, but .* names task 500"):
        facts("[APPROVE#500]", sender=ALICE.email, task=attrs.evolve(APPROVAL, number=501))
    # A record of a kind the command does not name is not looked at: still accepted.
    assert facts("[MyCalls]", sender=ALICE.email, call=OPEN_CALL).call == OPEN_CALL
