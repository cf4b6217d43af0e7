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
from typing import NoReturn

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(what: str) -> NoReturn:
    """Skip locally, but fail in CI, where a missing server would hide broken adapters."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed")


def _wait_for_greeting(
    host: str, port: int, expected: bytes, process: subprocess.Popen[bytes]
) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with suppress(OSError), socket.create_connection((host, port), timeout=1) as sock:
            if sock.recv(64).startswith(expected):
                return True
        time.sleep(0.05)
    return False
