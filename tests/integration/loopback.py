"""Loopback helpers shared by the integration tests and their server fixtures.

A module of its own (not ``conftest``): pytest puts every test folder on ``sys.path``, so a
``from conftest import ...`` may find another folder's conftest (a subfolder with its own
conftest shadows it), while this name is unique.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import suppress
from typing import Any, NoReturn

import pytest
from chunking_smtp import offer

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_listening(listener: socket.socket) -> None:
    """Close ``listener`` so that a thread blocked in its ``accept()`` returns (an OSError).

    ``close()`` alone does not wake that thread (Linux), and frees the descriptor number for
    the next socket, often the next test's listener: when the blocked call is restarted (after
    the process was paused: SIGSTOP and SIGCONT, a frozen container or VM) it runs again on
    that number and the old server takes the new server's connection (seen as a client that
    got answers its server never counted). ``shutdown()`` first ends the wait.
    """
    with suppress(OSError):  # not listening (never was, or shut down already)
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


def _missing(what: str) -> NoReturn:
    """Skip locally, but fail in CI, where a missing server would hide broken adapters."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed")


STARTUP_SECONDS = 60.0
"""How long a server started for the tests may take to greet: Dovecot's start (master, config,
log and auth processes) took seconds on a loaded two-core machine, where 10 s was tight."""


def _wait_for_greeting(
    host: str,
    port: int,
    expected: bytes,
    process: subprocess.Popen[bytes],
    seconds: float = STARTUP_SECONDS,
) -> str:
    """Wait until the server ``process`` greets with ``expected`` on ``port``: "" once it
    does, else why not (it exited, with its code; or no greeting in ``seconds``, with the
    last thing seen), for the fixture's failure message."""
    deadline = time.monotonic() + seconds
    last = "nothing tried"
    while True:
        code = process.poll()
        if code is not None:
            return f"the server exited with code {code} before greeting on port {port}"
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                greeting = sock.recv(64)
            if greeting.startswith(expected):
                return ""
            last = f"greeted {greeting[:40]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            return f"no greeting {expected!r} on port {port} within {seconds:g} s (last: {last})"
        time.sleep(0.05)


class Pipelining:
    """Mixin for aiosmtpd handlers: EHLO offers PIPELINING (RFC 2920) when ``pipelining``,
    and CHUNKING (RFC 3030) too when ``chunking``, as Postfix, Microsoft 365 and Gmail do
    (aiosmtpd reads pipelined commands in order but does not offer the extension itself; a
    server that offers CHUNKING must be a :class:`chunking_smtp.ChunkingSMTP`)."""

    pipelining = False
    chunking = False

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # this form of the hook must set it
        return offer(self, responses)
