"""The subject grammar: commands, references, prefixes, malformed tokens."""

from __future__ import annotations

import pytest

from asm_email_rules.model import EntityKind, EntityRef, SummaryKind
from asm_email_rules.subject import (
    CommandKind,
    MatchSource,
    bracket_token,
    parse_subject,
    strip_prefixes,
)


@pytest.mark.parametrize(
    ("subject", "kind", "number"),
    [
        ("[CLOSE#12]", CommandKind.CLOSE, 12),
        ("[APPROVE#5837]", CommandKind.APPROVE, 5837),
        ("[REJECT#5837]", CommandKind.REJECT, 5837),
        ("[MyCalls]", CommandKind.MY_CALLS, None),
        ("[MyRequests]", CommandKind.MY_REQUESTS, None),
        ("[MyTasks]", CommandKind.MY_TASKS, None),
        ("[MyApprovals]", CommandKind.MY_APPROVALS, None),
        ("[CALL#7] printer", CommandKind.UPDATE_CALL, 7),
        ("[TASK#8]", CommandKind.UPDATE_TASK, 8),
        ("[APPROVAL#9]", CommandKind.UPDATE_TASK, 9),
        ("[REQUEST#10]", CommandKind.UPDATE_REQUEST, 10),
        ("Call 12 has been updated", CommandKind.UPDATE_CALL, 12),
        ("Call No 12 has been updated by ASM Core.", CommandKind.UPDATE_CALL, 12),
        ("Task/Approval 5 has been updated", CommandKind.UPDATE_TASK, 5),
        ("Task 5 has been successfully approved", CommandKind.UPDATE_TASK, 5),
        ("Request 70 has been updated", CommandKind.UPDATE_REQUEST, 70),
    ],
)
def test_every_command_and_reference(subject: str, kind: CommandKind, number: int | None) -> None:
    parsed = parse_subject(subject)
    assert (parsed.kind, parsed.number) == (kind, number)


@pytest.mark.parametrize(
    "subject",
    [
        "Re: [CLOSE#12]",
        "RE: AW: SV: [CLOSE#12]",
        "Re[2]: [CLOSE#12]",
        "Re^3: [CLOSE#12]",
        "Antw: Odp: YNT: [CLOSE#12]",
        "R: [CLOSE#12]",
        "RV: TR: WG: Fwd: FW: [CLOSE#12]",
        "回复：[CLOSE#12]",
        "答复: 转发: [CLOSE#12]",
        "[EXT] Re: [CLOSE#12]",
        "[close # 12]",
        "[ Close#12 ]",
        "［ＣＬＯＳＥ＃１２］",
        "Please [CLOSE#12] thanks",
        "[CLOSE#0012]",
    ],
)
def test_tolerant_forms_of_close_12(subject: str) -> None:
    """Brackets required; case, spacing, prefixes in many languages and full width tolerated."""
    parsed = parse_subject(subject)
    assert parsed.kind is CommandKind.CLOSE
    assert parsed.number == 12
    assert parsed.ref == EntityRef(EntityKind.CALL, 12)


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "CLOSE#12",
        "[CLOSE#]",
        "[CLOSE#12a]",
        "[CLOSE#-12]",
        "[CLOSE#" + "1" * 40 + "]",
        "[CLOSE#12",
        "CLOSE#12]",
        "[CLOSE 12]",
        "[CLOSE#١٢]",  # Arabic-Indic digits are not reference numbers
        "[My Stuff]",
        "please call me 555 1234",
        "Re: Calling 5 people",
        # DESIGN 4: the phrases are only our replies' own ("Task/Approval n", never a bare
        # "Approval n": a person writing about an approval is asking, and gets a call)
        "Approval 500 is urgent",
        "Re: Approval 500 has been updated",
    ],
)
def test_malformed_tokens_are_not_recognised(subject: str) -> None:
    parsed = parse_subject(subject)
    assert parsed.kind is CommandKind.NONE
    assert parsed.number is None


def test_phrase_only_at_the_start() -> None:
    """A reference phrase in the middle of free text is not a reference (DESIGN 4)."""
    assert parse_subject("Urgent: Call 12 is wrong").kind is CommandKind.NONE
    assert parse_subject("Re: Call 12 has been updated").kind is CommandKind.UPDATE_CALL


def test_commands_outrank_references_and_leftmost_wins() -> None:
    parsed = parse_subject("[CALL#3] [CLOSE#4] [CLOSE#5]")
    assert (parsed.kind, parsed.number) == (CommandKind.CLOSE, 4)
    assert parsed.ignored == ("[CALL#3]", "[CLOSE#5]")
    assert parsed.ambiguous


def test_approve_and_reject_of_one_task_conflict() -> None:
    parsed = parse_subject("[APPROVE#1] [REJECT#1]")
    assert parsed.kind is CommandKind.CONFLICT
    assert parsed.ref == EntityRef(EntityKind.TASK, 1)
    other = parse_subject("[APPROVE#1] [REJECT#2]")
    assert (other.kind, other.number) == (CommandKind.APPROVE, 1)


@pytest.mark.parametrize(
    ("prefix", "reply"),
    [
        ("회신:", True),  # Korean Outlook
        ("전달:", False),
        ("返信:", True),  # Japanese mail programs
        ("転送：", False),
        ("Antwort:", True),  # German Lotus Notes
        ("Weiterleitung:", False),
        ("Ответ:", True),
        ("Válasz:", True),  # Hungarian Outlook
        ("Továbbítás:", False),
        ("Ats:", True),  # Lithuanian Outlook
        ("Pers:", False),
        ("Pārs:", False),  # Latvian Outlook
        ("Edasta:", False),  # Estonian Outlook
        ("BLS:", True),  # Indonesian Outlook
    ],
)
def test_our_reply_phrasing_after_prefixes_of_more_languages(prefix: str, reply: bool) -> None:
    parsed = parse_subject(f"{prefix} Call 12 has been updated")
    assert (parsed.kind, parsed.number, parsed.source) == (
        CommandKind.UPDATE_CALL,
        12,
        MatchSource.PHRASE,
    )
    assert (parsed.reply, parsed.forward) == (reply, not reply)


@pytest.mark.parametrize(
    "label",
    ["[EXTERNAL]", "[Caution: External Email]", "[Extérieur]", "[外部]", "[Ext. - do not trust]"],
)
def test_a_gateways_label_before_the_prefix_is_passed_over(label: str) -> None:
    # Mail gateways put such labels in front of the subject of mail from outside; a reply
    # whose [CALL#n] token and thread headers were lost is still found by our phrase after it.
    parsed = parse_subject(f"{label} Re: Call 100 has been updated")
    assert (parsed.kind, parsed.number, parsed.reply) == (CommandKind.UPDATE_CALL, 100, True)
    assert parse_subject(f"RE: {label} Call 100 has been updated").number == 100
    assert parse_subject(f"{label} Urgent: Call 12 is wrong").kind is CommandKind.NONE


def test_call_no_with_the_number_written_against_it() -> None:
    for subject in ("Re: Call No.100 has been updated", "Re: Call No. 100", "Call no 100"):
        parsed = parse_subject(subject)
        assert (parsed.kind, parsed.number) == (CommandKind.UPDATE_CALL, 100), subject
    assert parse_subject("Re: Call No.100a").kind is CommandKind.NONE


def test_approval_token_is_captured_lowercase() -> None:
    parsed = parse_subject("Re: [APPROVE#5837-AbC234]")
    assert (parsed.kind, parsed.number, parsed.token) == (CommandKind.APPROVE, 5837, "abc234")


def test_prefix_flags_and_normalisation() -> None:
    parsed = parse_subject("Fwd: Re: [CALL#1]")
    assert parsed.reply
    assert parsed.forward
    assert parsed.source is MatchSource.BRACKET
    assert parse_subject("［MyCalls］").normalised


def test_strip_prefixes_is_linear_on_many_prefixes() -> None:
    subject = "Re: " * 100_000 + "Call 5 done"
    stripped, reply, forward = strip_prefixes(subject)
    assert stripped == "Call 5 done"
    assert reply
    assert not forward


def test_control_characters_never_reach_the_result() -> None:
    parsed = parse_subject("Call 5\r\nBcc: victim@example.com")
    assert "\n" not in parsed.stripped
    assert parsed.kind is CommandKind.UPDATE_CALL


@pytest.mark.parametrize("kind", list(EntityKind))
def test_the_bracket_token_we_format_is_the_one_we_parse(kind: EntityKind) -> None:
    """DESIGN 4: every reply we send carries the record's bracket token, and the sender's
    reply to it is recognised as an update of that record."""
    ref = EntityRef(kind, 4711)
    token = bracket_token(ref)
    assert token == f"[{kind.value.upper()}#4711]"
    assert parse_subject(f"Re: Something has been updated {token}").ref == ref


def test_summary_commands_name_their_summary_kind() -> None:
    assert CommandKind.MY_CALLS.summary_kind is SummaryKind.CALLS
    assert CommandKind.MY_REQUESTS.summary_kind is SummaryKind.REQUESTS
    assert CommandKind.MY_TASKS.summary_kind is SummaryKind.TASKS
    assert CommandKind.MY_APPROVALS.summary_kind is SummaryKind.TASKS
    assert SummaryKind.TASKS.label == "tasks and approvals"
    assert all(kind.summary_kind is None for kind in CommandKind if not kind.is_summary)
