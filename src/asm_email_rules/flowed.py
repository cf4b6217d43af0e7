"""RFC 3676 ``format=flowed`` text: soft line breaks joined back into paragraphs, in one pass.

A ``text/plain; format=flowed`` part wraps long lines with *soft* breaks: a line ending in a
space continues on the next line (RFC 3676 section 4.1). The reader:

- counts and removes the quote marks (``>``) that start a line: its quote depth (section 4.5);
- removes one space-stuffing space after them (section 4.4: "if the first character of a line
  is a space, it is logically deleted", after the quote test, before the flowed test);
- joins a flowed line to the next line of the *same* depth; a change of depth ends the
  paragraph (an "improperly flowed" line counts as fixed, section 4.5);
- never treats the signature separator ``-- `` as flowed (section 4.3);
- with ``delsp=yes`` deletes the space that marked the soft break (section 4.2), which is how
  text without spaces between words (Japanese, Chinese) is wrapped.

Quoted paragraphs come out as ``>`` times the depth, a space and the text, so the reply
truncation heuristic still sees them as quotes.
"""

from __future__ import annotations

import re

__all__ = ["unflow", "unflow_lines"]

_SIGNATURE = "-- "
#: what the fast path cannot do: quoted or space-stuffed lines, or a NUL it uses as a mark
_NEEDS_LINE_WALK = re.compile(r"\n[> ]|\x00")
#: a signature separator line ("-- " alone) followed by a line break
#: one line: its quote marks, one space-stuffing space (dropped), the content
_LINE = re.compile(r"^(>*) ?(.*)$", re.MULTILINE)
_SIGNATURE_LINE = re.compile(r"(?m)^-- (?=\n|\Z)")


def unflow(text: str, delsp: bool = False) -> str:
    """The fixed text of a ``format=flowed`` body (``\\n`` line ends in and out).

    Linear in ``len(text)``: each line is read once and each paragraph joined once.
    """
    end = "\n" if text.endswith("\n") else ""
    body = text[:-1] if end else text
    if not _NEEDS_LINE_WALK.search(body) and not body.startswith((">", " ")):
        # No quote marks, no space-stuffing, no NUL: every soft break is " \n", except after
        # the signature separator "-- ", which is protected while the breaks are joined.
        body = _SIGNATURE_LINE.sub("--\x00", body)
        last_flowed = delsp and body.endswith(" ")  # read before the joins make new ends
        body = body.replace(" \n", "" if delsp else " ")
        if last_flowed:
            body = body[:-1]  # the last line is flowed too: its soft-break space goes
        return body.replace("--\x00", _SIGNATURE) + end
    return unflow_lines(body, delsp) + end


def unflow_lines(body: str, delsp: bool = False) -> str:
    """:func:`unflow` line by line (quotes, space-stuffing); ``body`` without its final line end."""
    out: list[str] = []
    pieces: list[str] = []
    depth_open = -1  # quote depth of the paragraph being joined, -1 when none
    for marks, content in _LINE.findall(body):
        depth = len(marks)
        if pieces and depth != depth_open:
            out.append(_paragraph(pieces, depth_open))
            pieces = []
        if content[-1:] == " " and content != _SIGNATURE:  # flowed
            pieces.append(content[:-1] if delsp else content)
            depth_open = depth
            continue
        pieces.append(content)
        out.append(_paragraph(pieces, depth))
        pieces = []
        depth_open = -1
    if pieces:
        out.append(_paragraph(pieces, depth_open))
    return "\n".join(out)


def _paragraph(pieces: list[str], depth: int) -> str:
    """One logical line from its flowed pieces, with its quote marks."""
    line = "".join(pieces)
    if depth <= 0:
        return line
    return ">" * depth + (" " + line if line else "")
