"""Properties of the uuencode readers (field trial, fault 5): a file written into any prose
comes back whole with the prose around it; prose alone is never taken for a file; neither
reader raises; both are linear in their input."""

from __future__ import annotations

import binascii
from collections.abc import Callable
from functools import partial

from cpu_timing import assert_linear, least_cpu
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asm_email_rules.uuencode import decode_body, split_blocks

PROSE = st.lists(
    st.text(alphabet="abcdefghij XYZ.,:;-0123456789", max_size=40).map(lambda line: line + "a"),
    max_size=5,
).map(lambda lines: "".join(line + "\n" for line in lines))
"""Lines a person writes: each holds a lower-case letter, which no uuencoded line does."""
NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_. -]{0,20}[A-Za-z0-9_]", fullmatch=True)


def encode(data: bytes, name: str, mode: str = "644", end_line: str = "`") -> str:
    lines = "".join(binascii.b2a_uu(data[i : i + 45]).decode() for i in range(0, len(data), 45))
    return f"begin {mode} {name}\n{lines}{end_line}\nend\n"


@settings(max_examples=300, deadline=None)
@given(
    before=PROSE,
    after=PROSE,
    data=st.binary(max_size=300),
    name=NAMES,
    mode=st.sampled_from(["644", "600", "0755"]),
    zero_line=st.sampled_from(["`", " "]),
)
def test_a_file_in_prose_comes_back_whole_with_the_prose_around_it(
    before: str, after: str, data: bytes, name: str, mode: str, zero_line: str
) -> None:
    text, files, left = split_blocks(before + encode(data, name, mode, zero_line) + after, 10)
    assert [(file.filename, file.data) for file in files] == [(name, data)]
    assert not left
    assert text.replace("\n", "") == (before + after).replace("\n", "")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            PROSE,
            st.sampled_from(["begin 644 a.txt\n", "end\n", "`\n", " \n", "\n", "M\n", "#86)C\n"]),
            st.text(alphabet=" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ`\n"),
        ),
        max_size=12,
    ).map("".join)
)
def test_any_text_is_read_without_error_and_loses_nothing_but_whole_blocks(text: str) -> None:
    kept, files, _ = split_blocks(text, 100)
    assert len(kept) <= len(text)
    if not files:
        assert kept == text
    for file in files:
        assert file.filename
        assert text[file.start : file.end].startswith("begin ")
        assert text[file.start : file.end].rstrip("\n").endswith("end")


@settings(max_examples=300, deadline=None)
@given(PROSE)
def test_prose_alone_is_never_a_file(text: str) -> None:
    assert split_blocks(text.replace("a\n", " begin 644 a\n", 1), 100)[1] == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
@example(data=b'"')  # a length of 2 whose four zero characters (blanks) were all stripped
def test_decode_body_returns_bytes_or_none(data: bytes) -> None:
    """Never more than three bytes per four characters, counting the up to four trailing
    blanks (zeros) per line that mail in transit may have stripped and that are read back."""
    decoded = decode_body(data)
    lines = data.count(b"\n") + 1
    assert decoded is None or len(decoded) <= 3 * (len(data) + 4 * lines) // 4


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["\n", "\r\n"]))
def test_decode_body_reads_back_what_was_encoded(data: bytes, line_end: str) -> None:
    assert decode_body(encode(data, "x.bin").replace("\n", line_end).encode("ascii")) == data


HOSTILE = (
    "begin 644 x\n" + "M" + "A" * 60 + "\n",  # data lines that never end
    "begin 644 x\n",  # begin lines only
    "begin 644 x" + " " * 50 + "y\n",  # spaces inside a name
    "begin 644 " + "a " * 30 + "\n`\n",  # a zero-length line and no end
)


def _splitting(unit: str, n: int) -> Callable[[], object]:
    return partial(split_blocks, unit * n, 500)


def test_split_blocks_is_linear_on_hostile_text() -> None:
    """The time per character stays flat from 1x to 8x (a quadratic scan would take 64 times
    longer, not 8)."""
    for unit in HOSTILE:
        assert_linear(partial(_splitting, unit), 2_000, what=unit)
    one_line = "begin 644 x" + " " * 200_000 + "y"
    assert least_cpu(partial(split_blocks, one_line, 500)) < 0.5
