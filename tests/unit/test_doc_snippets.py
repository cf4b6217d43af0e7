"""The Python snippets of the README and of ``docs/*.md`` run as written.

The README's embedding snippet runs twice (issue 11, item 8: "its embedding snippet raises on
a second run (a duplicate gives ``result.decision`` None)"). In ``docs/*.md`` every
````python`` block runs, the blocks of one page in order in one fresh interpreter (later
blocks use what earlier ones made), in an empty folder; a block that cannot run as written (a
fragment, a real server, a file of the reader's) says so on the line before it, in a comment
the rendered page does not show: ``<!-- not run: why -->``. What a page leaves to the reader
(``MyRepository``, ``my_mailer``, a ``message.eml``) is stood in for by :data:`STAND_INS`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = (
    b"From: Uma User <uma@corp.example>\r\nTo: helpdesk@example.com\r\n"
    b"Subject: Printer jammed\r\nMessage-ID: <readme@corp.example>\r\n\r\nTray 2 again.\r\n"
)
NOT_RUN = re.compile(r"<!-- not run: (?P<why>\S.*?) -->")


class Snippet(NamedTuple):
    """One fenced ``python`` block of a Markdown page."""

    line: int  # of its opening fence, 1-based
    code: str  # dedented as the page's list nesting indents it
    not_run: str  # why it does not run, from ``<!-- not run: why -->``; "" when it runs


def python_blocks(text: str) -> list[Snippet]:
    """Every ````python`` block of ``text``, in order."""
    lines = text.splitlines()
    blocks: list[Snippet] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```python":
            index += 1
            continue
        start = index
        before = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marked = NOT_RUN.search(before)
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        code = textwrap.dedent("\n".join(body)) + "\n"
        blocks.append(Snippet(start + 1, code, marked.group("why") if marked else ""))
        index += 1
    return blocks


def _run(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )


# -- README.md ------------------------------------------------------------------------------------
def embedding_snippet() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Embedding", 1)[1]
    return python_blocks(section)[0].code


def test_the_embedding_snippet_survives_a_second_run(tmp_path: Path) -> None:
    (tmp_path / "message.eml").write_bytes(MESSAGE)
    script = tmp_path / "embed.py"
    # no SMTP server here: port 25 of a loopback address nobody listens on
    script.write_text(
        embedding_snippet().replace('host="localhost", port=25', 'host="127.0.0.1", port=9'),
        encoding="utf-8",
    )
    outputs = []
    for _ in range(2):
        done = _run(script, tmp_path)
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


def test_every_install_path_in_the_docs_is_the_one_the_systemd_unit_runs() -> None:
    """An operator who follows oauth.md or the Postfix lines must get the program where
    deploy/asm-email-rules.service's ExecStart looks for it; and no page tells them to
    `pip install asm-email-rules` from PyPI, where no such distribution is published."""
    unit = (ROOT / "deploy" / "asm-email-rules.service").read_text(encoding="utf-8")
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    program = exec_start.removeprefix("ExecStart=").split()[0]
    venv = program.removesuffix("/bin/asm-email-rules")
    pages = [ROOT / "README.md", ROOT / "examples" / "config.toml", *DOCS]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for found in re.findall(r"(/\S+)/bin/(?:asm-email-rules|pip|activate)\b", text):
            assert found == venv, f"{page.name}: {found}/bin/... (the unit runs {program})"
        assert not re.search(r"pip install '?asm-email-rules", text), page.name


# -- docs/*.md ------------------------------------------------------------------------------------
DOCS = sorted((ROOT / "docs").glob("*.md"))

_HOST_PARTS = '''
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.sample import seed_sample_desk


class MyRepository(InMemoryRepository):
    """The host's repository."""

    def __init__(self, path: object = None) -> None:
        super().__init__()

    @classmethod
    def fresh_for_tests(cls) -> "MyRepository":
        return cls()


class MyMailbox:
    """The host's mailbox: one message waiting."""

    messages = {"1": open("message.eml", "rb").read()}

    def list_keys(self) -> list[str]:
        return sorted(self.messages)

    def fetch(self, key: str) -> bytes:
        return self.messages[key]

    def delete(self, key: str) -> None:
        del self.messages[key]

    def quarantine(self, key: str, reason: str) -> None:
        del self.messages[key]

    def close(self) -> None:
        pass


my_repository = MyRepository()
seed_sample_desk(my_repository)
my_mailer = RecordingMailer()
'''

_CONFIG = """\
store = "helpdesk.sqlite3"

[[accounts]]
name = "helpdesk"
protocol = "maildir"
path = "Maildir"

[accounts.mailbox]
addresses = ["helpdesk@example.org"]
"""

STAND_INS: dict[str, tuple[dict[str, bytes], str]] = {
    # page: (files in its folder, code run before its first block)
    "integrators.md": (
        {"message.eml": MESSAGE, "config.toml": _CONFIG.encode()},
        _HOST_PARTS,
    ),
}


def _script(doc: Path) -> str:
    """The page's runnable blocks after its stand-ins, each headed by where it comes from."""
    _, prelude = STAND_INS.get(doc.name, ({}, ""))
    parts = [f"# stand-ins for {doc.name} (tests/unit/test_doc_snippets.py)\n{prelude}"]
    for block in python_blocks(doc.read_text(encoding="utf-8")):
        if not block.not_run:
            parts.append(f"# docs/{doc.name}, the block at line {block.line}\n{block.code}")
    return "\n".join(parts)


RUNNABLE = [doc for doc in DOCS if any(not b.not_run for b in python_blocks(doc.read_text()))]


@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda doc: doc.name)
def test_the_python_blocks_of_a_page_run_as_written(doc: Path, tmp_path: Path) -> None:
    files, _ = STAND_INS.get(doc.name, ({}, ""))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    script = tmp_path / f"{doc.stem}_snippets.py"
    script.write_text(_script(doc), encoding="utf-8")
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]


def test_the_integrators_guide_runs_its_embedding_and_pure_core_snippets() -> None:
    """The blocks an integrator copies first may not be marked away: the three entry points,
    the pure core, the service from the host's parts, bootstrap, the actions and the kit."""
    blocks = python_blocks((ROOT / "docs" / "integrators.md").read_text(encoding="utf-8"))
    run = "\n".join(block.code for block in blocks if not block.not_run)
    for needle in (
        "process(raw, repository, mailer, mailbox, system",
        "decide(facts, mailbox, system)",
        "PollingService.from_parts(",
        "bootstrap(load_config(",
        "assert_never(action)",
        "check_repository(",
    ):
        assert needle in run, needle


def test_a_block_not_run_says_why() -> None:
    """``<!-- not run -->`` without a reason is no mark: that block is run (and fails)."""
    text = (
        "<!-- not run: needs a server -->\n```python\nx\n```\n\n"
        "<!-- not run: -->\n```python\ny\n```\n"
    )
    assert [block.not_run for block in python_blocks(text)] == ["needs a server", ""]


def test_the_snippets_type_check_with_mypy_strict(tmp_path: Path) -> None:
    """An integrator pastes the README's embedding snippet and the guides' blocks into a
    project checked with ``mypy --strict``, as this one is: they must pass it as written
    (``result.decision.rule`` after ``if result.duplicate`` did not: decision is Optional;
    the guide's pytest conformance test had no annotations)."""
    pytest.importorskip("mypy")
    scripts = [tmp_path / "readme_embedding.py"]
    scripts[0].write_text(embedding_snippet(), encoding="utf-8")
    for doc in RUNNABLE:
        scripts.append(tmp_path / f"{doc.stem}_snippets.py")
        scripts[-1].write_text(_script(doc), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *map(str, scripts)],
        cwd=tmp_path,  # no project configuration: --strict alone, as a new project has it
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
