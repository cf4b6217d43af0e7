"""The loopback helper the server fixtures wait with: a server that does not start says why
(it exited, or it did not greet in time), so a red fixture in CI can be told from a slow one."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from loopback import HOST, _wait_for_greeting, free_port


def _sleeping() -> subprocess.Popen[bytes]:
    """A process that stays alive: the server the helper checks on."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_server_that_exits_before_greeting_is_reported_with_its_exit_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    process.wait(timeout=60)
    port = free_port()
    problem = _wait_for_greeting(HOST, port, b"* OK", process)
    assert problem == f"the server exited with code 7 before greeting on port {port}"


def test_a_server_that_never_greets_is_reported_after_the_wait_with_what_it_saw() -> None:
    process = _sleeping()
    try:
        with socket.create_server((HOST, 0)) as silent:  # connects, then says nothing
            port = silent.getsockname()[1]
            problem = _wait_for_greeting(HOST, port, b"* OK", process, seconds=0.5)
    finally:
        process.kill()
        process.wait()
    assert problem.startswith(f"no greeting b'* OK' on port {port} within 0.5 s (last: ")
    assert "timed out" in problem


def test_a_server_that_greets_is_ready() -> None:
    process = _sleeping()
    try:
        with socket.create_server((HOST, 0)) as listener:

            def greet() -> None:
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(b"* OK ready\r\n")

            threading.Thread(target=greet, daemon=True).start()
            assert _wait_for_greeting(HOST, listener.getsockname()[1], b"* OK", process) == ""
    finally:
        process.kill()
        process.wait()
