"""The log formatters hosts use: the extra= fields of the library's records become visible."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asm_email_rules.logs import (
    JsonFormatter,
    KeyValueFormatter,
    SyslogPrefixFormatter,
    install_handler,
    remove_handler,
    writes_to_journal,
)


def record(**extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord(
        {"name": "asm_email_rules.service", "levelname": "INFO", "levelno": logging.INFO}
    )
    rec.msg = "message handled"
    rec.created = 1_795_780_800.0  # 2026-11-27T12:00:00Z
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_key_value_lines_quote_only_what_would_be_ambiguous() -> None:
    line = KeyValueFormatter().format(
        record(account="helpdesk", rule="AP-11", error='bad "x"=1', empty="")
    )
    assert line == (
        "2026-11-27T12:00:00Z INFO asm_email_rules.service: message handled "
        'account=helpdesk rule=AP-11 error="bad \\"x\\"=1" empty=""'
    )


def test_json_lines_carry_every_extra_field() -> None:
    data = json.loads(JsonFormatter().format(record(account="helpdesk", elapsed_ms=1.5)))
    assert data == {
        "time": "2026-11-27T12:00:00+00:00",
        "level": "INFO",
        "logger": "asm_email_rules.service",
        "message": "message handled",
        "account": "helpdesk",
        "elapsed_ms": 1.5,
    }


def test_install_handler_sends_library_records_to_the_stream_once() -> None:
    stream = io.StringIO()
    handler = install_handler(stream, logging.INFO, as_json=True)
    try:
        logging.getLogger("asm_email_rules.service").info("hello", extra={"account": "a"})
        logging.getLogger("asm_email_rules.service").debug("below the level")
    finally:
        remove_handler(handler)
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["account"] == "a"
    assert logging.getLogger("asm_email_rules").propagate


def test_under_journald_each_line_carries_its_priority(tmp_path: Path) -> None:
    # Run by systemd, the service's stderr goes to journald, which filed every line at "info":
    # `journalctl -u asm-email-rules -p warning` showed none of the warnings and errors (an
    # account failing persistently, a reply refused). systemd says the stream is the journal
    # with JOURNAL_STREAM=dev:inode; the lines then start with sd-daemon's <N> prefix.
    (tmp_path / "desk").mkdir()
    assert (
        subprocess.run(
            [sys.executable, "-m", "asm_email_rules", "init", str(tmp_path / "desk")],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    config = tmp_path / "desk" / "config.toml"

    def poll_once(journal: bool) -> list[str]:
        log = tmp_path / f"stderr-{journal}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "JOURNAL_STREAM")}
        with log.open("wb") as stderr:
            if journal:
                info = os.fstat(stderr.fileno())
                env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "asm_email_rules",
                    "poll",
                    "--once",
                    "--config",
                    str(config),
                ],
                stderr=stderr,
                stdout=subprocess.DEVNULL,
                env=env,
                check=False,
            )
        return log.read_text(encoding="utf-8").splitlines()

    lines = poll_once(journal=True)
    warnings = [line for line in lines if " WARNING " in line]
    infos = [line for line in lines if " INFO " in line]
    assert warnings  # the init desk discards every message: said at WARNING
    assert all(line.startswith("<4>") for line in warnings)
    assert all(line.startswith("<6>") for line in infos)
    assert not any(line.startswith("<") for line in poll_once(journal=False))


def test_a_journal_stream_inherited_by_a_program_writing_elsewhere_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    with (tmp_path / "other.log").open("w", encoding="utf-8") as stream:
        assert not writes_to_journal(stream)
        handler = install_handler(stream, logging.WARNING)
        try:
            logging.getLogger("asm_email_rules.service").warning("elsewhere")
        finally:
            remove_handler(handler)
    assert (tmp_path / "other.log").read_text(encoding="utf-8").startswith("20")
    line = SyslogPrefixFormatter(KeyValueFormatter()).format(record())
    assert line.startswith("<6>2026-11-27T12:00:00Z INFO ")
