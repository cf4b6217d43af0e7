"""``deploy/asm-email-rules.service``: a complete systemd unit (issue 11, item 8: "the systemd
snippet has no ``[Install]`` section and puts secrets in ``Environment=``")."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "asm-email-rules.service"
EXEC = "/opt/asm-email-rules/venv/bin/asm-email-rules"


def sections() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_unit_installs_keeps_secrets_out_and_is_sandboxed() -> None:
    unit = sections()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    service = unit["Service"]
    assert service["ExecStart"].startswith(f"{EXEC} poll --config ")
    assert service["EnvironmentFile"].endswith("secrets.env")
    assert "Environment" not in service  # no secret ever sits in the unit itself
    assert service["User"] != "root"
    for option, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "asm-email-rules",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
    }.items():
        assert service[option] == value, option


def test_systemd_analyze_verify_accepts_it(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    # verify checks that ExecStart exists: point it at a program that does, nothing else
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(EXEC, "/bin/true"), encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if str(copy) in line]
    assert done.returncode == 0, done.stderr
    assert said == []  # not even an "Unknown key ..., ignoring" warning
