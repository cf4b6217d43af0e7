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

__all__ = ["unflow"]

_SIGNATURE = "-- "


def unflow(text: str, delsp: bool = False) -> str:
    """The fixed text of a ``format=flowed`` body (``\\n`` line ends in and out).

    Linear in ``len(text)``: each line is read once and each paragraph joined once.
    """
    end = "\n" if text.endswith("\n") else ""
    out: list[str] = []
    pieces: list[str] = []
    depth_open = -1  # quote depth of the paragraph being joined, -1 when none
    for line in (text[:-1] if end else text).split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        if pieces and depth != depth_open:
            out.append(_paragraph(pieces, depth_open))
            pieces = []
        flowed = content.endswith(" ") and content != _SIGNATURE
        if flowed:
            pieces.append(content[:-1] if delsp else content)
            depth_open = depth
            continue
        pieces.append(content)
        out.append(_paragraph(pieces, depth))
        pieces = []
        depth_open = -1
    if pieces:
        out.append(_paragraph(pieces, depth_open))
    return "\n".join(out) + end


def _paragraph(pieces: list[str], depth: int) -> str:
    """One logical line from its flowed pieces, with its quote marks."""
    line = "".join(pieces)
    if depth <= 0:
        return line
    return ">" * depth + (" " + line if line else "")
