"""``deploy/asm-email-rules.service``: a complete systemd unit (issue 11, item 8: "the systemd
snippet has no ``[Install]`` section and puts secrets in ``Environment=``")."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
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


def install_commands() -> list[str]:
    """The unit's "Install" comment as shell commands, continuation lines joined."""
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Install"))
    commands: list[str] = []
    pending = ""
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        text = line[4:].strip()
        if text.startswith("#"):
            continue
        pending += text
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        commands.append(pending)
        pending = ""
    return commands


def test_the_install_comment_leaves_a_config_that_finds_the_store(tmp_path: Path) -> None:
    # The recipe runs init in the state directory and moves its config.toml to /etc, whose
    # relative 'store = "helpdesk.sqlite3"' then named /etc/asm-email-rules/helpdesk.sqlite3:
    # the next step, 'people import', stopped with "store not found (create one with
    # `asm-email-rules init`)" although init had just made it.
    from asm_email_rules.config import load_config

    state, etc = tmp_path / "var", tmp_path / "etc"
    state.mkdir()
    etc.mkdir()
    wanted = ("$A init", "install -m 0640 -o root -g asm-desk /var", "rm ", "sed ")
    script = ["set -e", f"A='{sys.executable} -m asm_email_rules'"]
    for command in install_commands():
        command = command.removeprefix("runuser -u asm-desk -- ")
        if command.startswith(wanted):
            command = command.replace(" -o root -g asm-desk", "")
            command = command.replace("/var/lib/asm-email-rules", str(state))
            script.append(command.replace("/etc/asm-email-rules", str(etc)))
    assert any(" init " in line for line in script), script
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    config = load_config(etc / "config.toml")
    assert config.store == state / "helpdesk.sqlite3"
    assert config.accounts[0].path == state / "Maildir"


def test_the_unit_documentation_is_the_guide_in_the_clone() -> None:
    # Documentation= named a PyPI page, where the project is not published (README, "Install"):
    # 'systemctl help asm-email-rules' sent the operator to a page that is not this program's.
    documentation = sections()["Unit"]["Documentation"]
    assert "pypi.org" not in documentation
    assert documentation == "file:///opt/asm-email-rules/src/docs/operators.md"
    assert (UNIT.parents[1] / "docs" / "operators.md").is_file()
