"""Spec: the four summaries, and the mail that never reaches the command tables."""

from __future__ import annotations

import pytest

from asm_email_rules.model import EntityKind, EntityRef, SummaryItem
from asm_email_rules.pipeline import process
from asm_email_rules.rules import format_summary
from asm_email_rules.sample import ALICE, UMA
from asm_email_rules.summary_text import SUMMARY_DESCRIPTION_LENGTH

from .conftest import NOW, Desk, make_raw


def test_my_calls_lists_the_analysts_calls(desk: Desk) -> None:
    """ "A support analyst can check a summary of their calls by sending an email ... with the
    following subject: [MyCalls]" (DESIGN 4b: the open calls the analyst owns)"""
    decision = desk.mail("[MyCalls]", sender=ALICE.email)
    assert decision.rule == "SU-5"
    (reply,) = desk.replies
    assert "[CALL#100]" in reply.body
    assert "[CALL#101]" not in reply.body  # closed
    assert "[CALL#102]" not in reply.body  # Bob's
    assert reply.to == ALICE.email


@pytest.mark.parametrize(
    ("date", "shown"),
    [
        ("Fri, 27 Nov 2026 16:30:00 +0530", "2026-11-20 14:30 +0530"),
        ("Fri, 27 Nov 2026 07:30:00 -0330", "2026-11-20 05:30 -0330"),
        ("Fri, 27 Nov 2026 11:00:00 +0000", "2026-11-20 09:00 UTC"),
        ("Fri, 27 Nov 2026 11:00:00 -0000", "2026-11-20 09:00 UTC"),  # zone unknown
        ("Fri, 27 Nov 2026 06:00:00 EST", "2026-11-20 04:00 -0500"),
        ("Fri, 27 Nov 2026 11:00:00 +2300", "2026-11-20 09:00 UTC"),  # no place keeps it
        ("27 Nov 2026 11:00", "2026-11-20 09:00 UTC"),  # no offset at all
        ("next Friday, probably", "2026-11-20 09:00 UTC"),
    ],
)
def test_summary_times_are_in_the_readers_zone_and_say_which(
    desk: Desk, date: str, shown: str
) -> None:
    """ "A support analyst can check a summary of their calls by sending an email ... [MyCalls]"
    (DESIGN 4: each line shows the last update): in the zone of the analyst's own Date, with
    its offset, so an analyst in India or Newfoundland reads the hour right; UTC, said so,
    when the Date gives no usable offset."""
    raw = make_raw("[MyCalls]", sender=ALICE.email, date=date)
    process(raw, desk.repo, desk.mailer, desk.mailbox, desk.system, NOW)
    (reply,) = desk.replies
    line = next(line for line in reply.body.splitlines() if "[CALL#100]" in line)
    assert f"  {shown}  " in line


def test_my_requests(desk: Desk) -> None:
    """ "A return email is sent to that support analyst with a summary of all the requests they
    are working on, have forwarded, or have been forwarded." """
    desk.mail("[MyRequests]", sender=ALICE.email)
    assert "[REQUEST#700]" in desk.replies[0].body


def test_my_tasks_and_my_approvals_share_one_summary(desk: Desk) -> None:
    """ "[MyTasks] [MyApprovals] A return email is sent to that support analyst with a summary of
    all the tasks and approvals they are working on" """
    desk.mail("[MyTasks]", sender=ALICE.email)
    desk.mail("[MyApprovals]", sender=ALICE.email)
    first, second = desk.replies
    assert first.body == second.body
    assert "[TASK#500]" in first.body
    assert "[TASK#502]" in first.body


def test_summary_for_a_user_says_analysts_only(desk: Desk) -> None:
    """DESIGN 4b: a recognised non-analyst gets one line saying summaries are for analysts."""
    assert desk.mail("[MyCalls]", sender=UMA.email).rule == "SU-4"
    (reply,) = desk.replies
    assert "analysts only" in reply.body
    assert "[CALL#" not in reply.body


def test_summary_for_an_unknown_sender_sends_nothing(desk: Desk) -> None:
    """DESIGN 4b: an unknown sender gets nothing (no data, no backscatter)."""
    assert desk.mail("[MyCalls]", sender="stranger@else.example").rule == "SU-3"
    assert desk.replies == []


def test_out_of_office_never_logs_a_call(desk: Desk) -> None:
    """DESIGN 4 / RFC 3834: auto-replies never log, close or reopen calls and get no reply."""
    desk.set(auto_reply=True, create_calls_anonymously=True)
    decision = desk.mail("Out of Office: Printer", headers=[("Auto-Submitted", "auto-replied")])
    assert decision.rule == "LOG-1"
    assert desk.repo.get_call(103) is None
    assert desk.replies == []


def test_automatic_mail_never_closes(desk: Desk) -> None:
    """DESIGN 4: automatic mail never closes a call."""
    decision = desk.mail(
        "[CLOSE#100]", sender=UMA.email, headers=[("Auto-Submitted", "auto-generated")]
    )
    assert decision.rule == "CL-3"


def test_list_mail_updates_without_reply_but_never_approves(desk: Desk) -> None:
    """DESIGN 4b: list and bulk mail may update but never approve; no auto-reply to it."""
    desk.set(auto_reply=True)
    decision = desk.mail("[CALL#100] digest", headers=[("List-Id", "<staff.corp.example>")])
    assert decision.rule == "UC-4"
    assert decision.reply is None
    decision = desk.mail("[APPROVE#500]", sender=ALICE.email, headers=[("Precedence", "bulk")])
    assert decision.rule == "AP-3"
    assert desk.replies == []


@pytest.mark.parametrize("subject", ["[APPROVE#999]", "[REJECT#999]", "[CLOSE#999]"])
def test_list_mail_with_an_invalid_number_logs_a_call_as_call_task_and_request_do(
    desk: Desk, subject: str
) -> None:
    """Spec, Logging a Call: "If the email matches a recognized subject line but has an
    invalid request or task number, a call is always logged"; DESIGN 4b: list mail "may log
    and update calls, but never closes, reopens, approves or rejects". With no such task or
    call there is nothing to approve or close, so the invalid number decides, as it does for
    [CALL#999], [TASK#999] and [REQUEST#999] from the same list."""
    desk.set(log_new_call_on_invalid_number=True, create_calls_anonymously=True)
    headers = [("List-Id", "<staff.corp.example>"), ("Precedence", "list")]
    decision = desk.mail(subject, sender=UMA.email, headers=headers)
    assert decision.rule.split(" > ")[0] in ("AP-1", "CL-1")
    assert "log_call" in decision.action_kinds(), decision.explain()
    assert decision.reply is None  # list mail never gets a reply (RFC 3834)


def test_x_auto_response_suppress_alone_is_real_mail(desk: Desk) -> None:
    """DESIGN 4: X-Auto-Response-Suppress is not a sign of automatic mail."""
    decision = desk.mail("Printer", headers=[("X-Auto-Response-Suppress", "All")])
    assert decision.rule == "LOG-6"


def test_own_mail_is_a_loop(desk: Desk) -> None:
    """DESIGN 4: mail from our own address is never acted on."""
    decision = desk.mail("Call 100 has been updated", sender="helpdesk@desk.example")
    assert decision.rule == "GATE-3"
    assert desk.repo.get_call(103) is None


def test_a_summary_item_is_one_line_whatever_a_hosts_store_hands_over() -> None:
    """DESIGN 4: "one line per item (reference, state, short description, last update,
    assignee or group)": a host's store may hand over a description of many lines, or none."""
    long = "Printer on floor 3\r\nBcc: someone@example.org\n\n" + "jammed again " * 40
    items = (
        SummaryItem(EntityRef(EntityKind.CALL, 5), "open", long, None, "Service\nDesk"),
        SummaryItem(EntityRef(EntityKind.CALL, 6), "open", "", None, ""),
    )
    first, second = format_summary(items, 2).split("\n")
    assert first.startswith("[CALL#5]  open  Printer on floor 3 Bcc: someone@example.org jammed")
    assert first.endswith("  -  Service Desk")
    assert len(first) <= len("[CALL#5]  open    -  Service Desk") + SUMMARY_DESCRIPTION_LENGTH
    assert second == "[CALL#6]  open  -  -  -"
