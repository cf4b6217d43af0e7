"""The log formatters hosts use: the extra= fields of the library's records become visible."""

from __future__ import annotations

import io
import json
import logging

from asm_email_rules.logs import JsonFormatter, KeyValueFormatter, install_handler, remove_handler


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
