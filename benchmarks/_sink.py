"""A counting SMTP sink for the benchmarks: ``python benchmarks/_sink.py PORT``.

aiosmtpd on 127.0.0.1:PORT in a process of its own (so it does not share the benchmark's
interpreter lock), answering 250 to everything. Its EHLO offers PIPELINING (RFC 2920), as the
servers replies go to in practice do (Postfix, Microsoft 365, Gmail); aiosmtpd reads pipelined
commands in order but does not offer the extension by itself. ``--no-pipelining`` leaves it
out. It prints ``ready`` once listening and, on SIGTERM or a closed standard input, the number
of messages and SMTP sessions it saw.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Counter:
    """Counts messages (DATA) and sessions (connections)."""

    def __init__(self, pipelining: bool) -> None:
        self.messages = 0
        self.sessions = 0
        self.pipelining = pipelining

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # this form of the hook must set it
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        return "250 2.0.0 queued"


def main() -> None:
    port = int(sys.argv[1])
    counter = Counter(pipelining="--no-pipelining" not in sys.argv[2:])

    class CountingController(Controller):
        def factory(self) -> Any:
            counter.sessions += 1
            return super().factory()

    controller = CountingController(counter, hostname="127.0.0.1", port=port)
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    controller.stop()
    print(f"{counter.messages} {counter.sessions}", flush=True)


if __name__ == "__main__":
    main()
