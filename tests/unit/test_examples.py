"""Every runnable script in examples/ runs and shows what its docstring promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_embed_example_updates_call_100_with_the_reply_portion_only() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "embed.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "rule UC-4: update_call" in done.stdout
    assert "history of call 100: history: 'The printer works again, thanks!'" in done.stdout
    assert "reply to uma@corp.example: Call 100 has been updated [CALL#100]" in done.stdout
    assert "Original Message" not in done.stdout.split("processed:")[1]
