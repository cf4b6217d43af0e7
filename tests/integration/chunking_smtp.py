"""An aiosmtpd server that speaks CHUNKING (RFC 3030) and answers pipelined commands together.

Postfix, Microsoft 365 and Gmail offer PIPELINING (RFC 2920) and CHUNKING, so a client that
uses both writes a reply's MAIL, RCPT and ``BDAT <size> LAST`` with the message in one go.
aiosmtpd reads pipelined commands in order but has no BDAT; :class:`ChunkingSMTP` adds it. The
integration tests' SMTP fixture (``smtp_server(chunking=True)``) and the benchmarks' sink
(``benchmarks/_sink.py``) both serve with it. No pytest here: the sink imports this module in a
process of its own.

Its handler says what to offer: ``pipelining`` (the answers to a group of pipelined commands
go out in one write) and ``chunking`` (EHLO offers CHUNKING, :func:`offer` adds the lines).
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import SMTP

__all__ = ["ChunkingSMTP", "offer"]


def offer(handler: Any, responses: list[str]) -> list[str]:
    """The EHLO ``responses`` with PIPELINING, and CHUNKING after it, before the last line,
    as ``handler.pipelining`` and ``handler.chunking`` say (CHUNKING only with PIPELINING)."""
    if getattr(handler, "pipelining", False):
        responses.insert(len(responses) - 1, "250-PIPELINING")
        if getattr(handler, "chunking", False):
            responses.insert(len(responses) - 1, "250-CHUNKING")
    return responses


class ChunkingSMTP(SMTP):
    """aiosmtpd's server with ``BDAT <size> [LAST]`` (RFC 3030 section 2): each chunk is read
    whole (its bytes are consumed even when no recipient was accepted, then 554), and LAST
    hands the message to the handler's ``handle_DATA``."""

    _held = b""

    async def push(self, status: Any) -> None:
        """Answer; with PIPELINING the answer is held until this session's task would wait
        (for input, or for the socket), so a group of pipelined commands is answered in one
        write (RFC 2920 section 3.2; Postfix flushes its output before a read that would
        block). An answer after which aiosmtpd closes the connection (221, 421, its 502
        goodbye) is written at once, with what is held before it."""
        line = status.encode("ascii") if isinstance(status, str) else status
        if not getattr(self.event_handler, "pipelining", False):
            self._writer.write(line + b"\r\n")
            await self._writer.drain()
            return
        if not self._held:
            self.loop.call_soon(self._flush)  # runs once the task waits: no command is left
        self._held += line + b"\r\n"
        if line[:3] in (b"221", b"421") or line.endswith(b"goodbye."):
            self._flush()

    def _flush(self) -> None:
        held, self._held = self._held, b""
        if held:
            self._writer.write(held)

    async def smtp_BDAT(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command naming
        words = arg.split()
        if not words or not words[0].isdigit():
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        chunk = await self._reader.readexactly(int(words[0]))
        envelope = self.envelope
        if envelope is None or not envelope.rcpt_tos:
            await self.push("554 5.5.1 no valid recipients")
            return
        before = envelope.content
        envelope.content = (before if isinstance(before, bytes) else b"") + chunk
        if [word.upper() for word in words[1:]] != ["LAST"]:
            await self.push(f"250 2.0.0 {len(chunk)} octets received")
            return
        status = await self.event_handler.handle_DATA(self, self.session, envelope)
        self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's, untyped
        await self.push(status)
