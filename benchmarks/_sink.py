"""A counting SMTP sink for the benchmarks: ``python benchmarks/_sink.py PORT``.

aiosmtpd on 127.0.0.1:PORT in a process of its own (so it does not share the benchmark's
interpreter lock), answering 250 to everything. It prints ``ready`` once listening and, on
SIGTERM or a closed standard input, the number of messages and SMTP sessions it saw.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Counter:
    """Counts messages (DATA) and sessions (connections)."""

    def __init__(self) -> None:
        self.messages = 0
        self.sessions = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        return "250 2.0.0 queued"


def main() -> None:
    port = int(sys.argv[1])
    counter = Counter()

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
