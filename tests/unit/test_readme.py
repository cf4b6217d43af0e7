"""The README's embedding snippet runs as written, twice (issue 11, item 8: "its embedding
snippet raises on a second run (a duplicate gives ``result.decision`` None)")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = (
    b"From: Uma User <uma@corp.example>\r\nTo: helpdesk@example.com\r\n"
    b"Subject: Printer jammed\r\nMessage-ID: <readme@corp.example>\r\n\r\nTray 2 again.\r\n"
)


def embedding_snippet() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Embedding", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_embedding_snippet_survives_a_second_run(tmp_path: Path) -> None:
    (tmp_path / "message.eml").write_bytes(MESSAGE)
    script = tmp_path / "embed.py"
    # no SMTP server here: port 25 of a loopback address nobody listens on
    script.write_text(
        embedding_snippet().replace('host="localhost", port=25', 'host="127.0.0.1", port=9'),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "rule LOG-" in outputs[0]
    assert "already processed" in outputs[1]


def test_the_readme_installs_into_a_virtual_environment() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("##", 1)[0]
    assert "python3 -m venv" in install
    assert "venv/bin/pip install" in install
    assert "python3 -m pip install ." not in readme  # refused by a stock Debian Python
