"""A counting SMTP sink for the benchmarks: ``python benchmarks/_sink.py PORT``.

aiosmtpd on 127.0.0.1:PORT in a process of its own (so it does not share the benchmark's
interpreter lock), answering 250 to everything. Its EHLO offers PIPELINING (RFC 2920) and
CHUNKING (RFC 3030), as the servers replies go to in practice do (Postfix, Microsoft 365,
Gmail); aiosmtpd reads pipelined commands in order but offers neither, and has no BDAT, which
the integration tests' ``chunking_smtp.ChunkingSMTP`` adds. ``--no-pipelining`` leaves both
out, ``--no-chunking`` the second. ``--rtt-ms N`` puts a relay in front of it that holds every
chunk of bytes N/2 ms in each direction, as a server N ms away would (loopback itself answers
in microseconds). It prints ``ready`` once listening and, on SIGTERM or a closed standard
input, the number of messages and SMTP sessions it saw and the CPU time it used since it was
ready (microseconds).
"""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from chunking_smtp import ChunkingSMTP, offer  # type: ignore[import-not-found, unused-ignore]


class Counter:
    """Counts messages (DATA) and sessions (connections)."""

    def __init__(self, pipelining: bool, chunking: bool) -> None:
        self.messages = 0
        self.sessions = 0
        self.pipelining = pipelining
        self.chunking = chunking

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # this form of the hook must set it
        offered: list[str] = offer(self, responses)
        return offered

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        return "250 2.0.0 queued"


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it came, in order."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def deliver() -> None:
        while (item := await queue.get()) is not None:
            due, chunk = item
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(chunk)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, chunk))
    except ConnectionError:
        pass
    queue.put_nowait(None)
    await delivering


def _relay(port: int, target: int, rtt: float, listening: threading.Event) -> None:
    """Accept on ``port`` and carry each connection to and from ``target`` ``rtt / 2`` late."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        upstream_writer.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            _carry(reader, upstream_writer, rtt / 2), _carry(upstream_reader, writer, rtt / 2)
        )

    async def serve() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", port)
        listening.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def main() -> None:
    port = int(sys.argv[1])
    options = sys.argv[2:]
    counter = Counter(
        pipelining="--no-pipelining" not in options, chunking="--no-chunking" not in options
    )
    rtt = float(options[options.index("--rtt-ms") + 1]) / 1000 if "--rtt-ms" in options else 0.0
    if rtt:  # the relay takes the port; the server listens on another one behind it
        listening = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port, relay_port = int(probe.getsockname()[1]), port
        threading.Thread(
            target=_relay, args=(relay_port, port, rtt, listening), daemon=True
        ).start()
        listening.wait(10)

    class CountingController(Controller):
        def factory(self) -> Any:
            counter.sessions += 1
            return ChunkingSMTP(self.handler, **self.SMTP_kwargs)

    controller = CountingController(counter, hostname="127.0.0.1", port=port)
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    started = _cpu_us()  # its start (imports, the server's thread) is not the messages'
    print("ready", flush=True)

    def end_with_stdin() -> None:  # the parent closed our standard input: stop
        sys.stdin.read()
        done.set()

    threading.Thread(target=end_with_stdin, daemon=True).start()
    done.wait()
    controller.stop()
    print(f"{counter.messages} {counter.sessions} {_cpu_us() - started}", flush=True)


def _cpu_us() -> int:
    """The CPU time this process has used so far, in microseconds (user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round((usage.ru_utime + usage.ru_stime) * 1e6)


if __name__ == "__main__":
    main()
