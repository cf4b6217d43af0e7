"""Property tests for reply truncation: total, never blank, nothing silently lost."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules.truncate import TruncationMethod, truncate_reply

# Lines that exercise every classifier: quotes, attributions, headers, separators, signatures.
TRICKY_LINES = [
    "",
    "   ",
    "Hello there",
    "Thanks, fixed it.",
    "> quoted",
    ">",
    ">> nested",
    "On Mon, 3 May 2021 at 10:00, Bob <bob@example.com> wrote:",
    "On Mon, 3 May 2021 at 10:00, Bob",
    "<bob@example.com>",
    "wrote:",
    "reply On Wed, Apr 4, 2012 at 3:59 PM, bob@example.com wrote:",
    "Am 3. Mai 2021 schrieb Bob <bob@example.com>:",
    "2021-05-03 10:00 GMT+02:00 Bob <bob@example.com>:",
    "From: Bob <bob@example.com>",
    "Sent: Monday",
    "To: Support",
    "Subject: Hi",
    "*From:* Bob",
    "-----Original Message-----",
    "---------- Forwarded message ---------",
    "Begin forwarded message:",
    "________________________________",
    "------------------------------",
    "-- ",
    "--",
    "Sent from my iPhone",
    "Regards,",
    "Bob",
    "-Bob",
    "- a list item",
    "##- Please type your reply above this line -##",
    # issue 9: other verbs and languages, flattened blocks, bidi marks, one-line Q&A
    "On Mon, 3 May 2021 at 10:00, Bob <bob@example.com> said:",
    "Bob <bob@example.com> ezt írta (időpont: 2021. máj. 3., H, 10:00):",
    "\u202bביום ב׳, 3 במאי 2021 ב-10:00 מאת \u202aBob\u202c <bob@example.com>:\u202c",
    "-------- Original message --------From: Bob <bob@example.com> Date: 03/05/2021 10:00 "
    "To: a@example.com Subject: Re: hi",
    "Thanks -------- Original message --------Von: Bob <bob@example.com> Datum: 3.5.21",
    "From: Bob <bob@example.com> Sent: Monday To: Support Subject: Hi",
    "보낸 사람: Bob <bob@example.com>",
    "보낸 날짜: 2021년 5월 3일",
    "> Which floor?",
    "The third.",
    # field trial: our quoted marker, Horde's and mutt's quote intros
    "> ##- Please type your reply above this line -##",
    "Quoting Bob <bob@example.com>:",
    "* Bob <bob@example.com> [2021-05-03 10:00]:",
    "Hi Bob, see my answers inline below.",
    "Answers below.",
    "  Service Desk <bob@example.com>          To",
    "                                     Subject",
]

line = st.one_of(
    st.sampled_from(TRICKY_LINES), st.text(max_size=40).map(lambda s: s.replace("\r", ""))
)
bodies = st.lists(line, max_size=25).map("\n".join)
options = st.fixed_dictionaries(
    {
        "marker": st.sampled_from([None, "##- Please type your reply above this line -##"]),
        "separators": st.sampled_from([(), ("Original Message",), ("zz",)]),
        "strip_signature": st.booleans(),
    }
)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


@settings(max_examples=200, deadline=None)
@given(body=bodies, opts=options)
def test_never_raises_and_returns_consistent_method(body: str, opts: dict[str, object]) -> None:
    result = truncate_reply(body, **opts)  # type: ignore[arg-type]
    assert isinstance(result.method, TruncationMethod)
    if result.method is TruncationMethod.KEPT_WHOLE:
        assert result.elided == ""
    if result.method is TruncationMethod.NONE:
        assert not result.elided.strip()


@settings(max_examples=200, deadline=None)
@given(body=bodies, opts=options)
def test_kept_is_never_blank_when_input_has_an_unquoted_line(
    body: str, opts: dict[str, object]
) -> None:
    result = truncate_reply(body, **opts)  # type: ignore[arg-type]
    if any(s and not s.startswith(">") for s in _lines(body)):
        assert result.kept.strip()


@settings(max_examples=200, deadline=None)
@given(body=bodies, opts=options)
def test_every_nonblank_line_is_kept_or_elided(body: str, opts: dict[str, object]) -> None:
    result = truncate_reply(body, **opts)  # type: ignore[arg-type]
    pool = {s for s in _lines(result.kept) + _lines(result.elided) if s}
    kept, elided = "".join(result.kept.split()), "".join(result.elided.split())
    for s in _lines(body):
        if not s or s in pool:
            continue
        # A reply sharing its line with an attribution is split into the two parts (its start
        # kept, the attribution elided, even when a separator above it went to the elided
        # part first); a header block flattened onto one line is split into its fields:
        # nothing of it is dropped.
        text = "".join(s.split())
        assert (
            any(text[:cut] in kept and text[cut:] in elided for cut in range(len(text) + 1))
            or text in kept + elided
        ), f"line {s!r} lost"


@settings(max_examples=100, deadline=None)
@given(reply=st.lists(st.sampled_from(["Fine.", "See the log", "Ok then"]), min_size=1, max_size=4))
def test_reply_above_an_attributed_quote_is_exactly_what_is_kept(reply: list[str]) -> None:
    text = "\n".join(reply)
    body = f"{text}\n\nOn Mon, 3 May 2021 at 10:00, Bob <bob@example.com> wrote:\n> old\n> older"
    result = truncate_reply(body)
    assert result.kept == text
    assert result.elided.endswith("> older")


@settings(max_examples=100, deadline=None)
@given(
    questions=st.lists(
        st.sampled_from(["Which floor?", "Is it red?", "Since when?", "Who else has it."]),
        min_size=2,
        max_size=5,
    )
)
def test_interleaved_answers_always_keep_their_questions(questions: list[str]) -> None:
    body = "On Mon, 3 May 2021 at 10:00, Bob <bob@example.com> wrote:\n" + "".join(
        f"> {q}\nAnswer {k}.\n" for k, q in enumerate(questions)
    )
    kept = truncate_reply(body).kept
    for k, q in enumerate(questions):
        assert f"> {q}\nAnswer {k}." in kept
