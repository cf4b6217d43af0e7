"""Log formatters that show the ``extra=`` fields the library attaches to its records.

The library logs under ``asm_email_rules`` (``.service`` one line per message handled,
``.adapters.*`` connections and quarantines) and puts the facts in ``extra=`` fields
(``account``, ``mailbox_key``, ``message_id``, ``rule``, ``disposition``, ``elapsed_ms`` ...).
The standard formatters drop those fields; these two print them. A host installs one on its
own handler::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("asm_email_rules").addHandler(handler)

The command line uses :class:`KeyValueFormatter` by default and :class:`JsonFormatter` with
``--log-json``.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = [
    "JsonFormatter",
    "KeyValueFormatter",
    "SyslogPrefixFormatter",
    "install_handler",
    "remove_handler",
    "writes_to_journal",
]

_STANDARD_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=`` (everything a bare record does not have)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS}


class KeyValueFormatter(logging.Formatter):
    """``time level logger: message key=value ...``: the ``extra=`` fields made visible.

    Time is UTC to the second (``2026-11-27T12:00:00Z``). A value that is empty or holds
    spaces, ``"`` or ``=`` is JSON-quoted, so every line splits unambiguously. A traceback is
    added (JSON-quoted, one line) only to records at ERROR or above.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{when} {record.levelname} {record.name}: {record.getMessage()}"
        for key, value in _extras(record).items():
            text = str(value)
            if not text or any(c.isspace() or c in '"=' for c in text):
                text = json.dumps(text, ensure_ascii=False)
            line += f" {key}={text}"
        if record.exc_info and record.levelno >= logging.ERROR:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra=`` field.

    ``time`` is ISO 8601 in UTC; values JSON cannot hold are written with ``str``; a
    traceback, when present, is in ``exception``.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(_extras(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class SyslogPrefixFormatter(logging.Formatter):
    """Another formatter's line behind the record's syslog priority, ``<4>`` for a WARNING
    (sd-daemon(3)): journald, reading a service's stderr, takes the prefix off and files the
    line at that priority (``SyslogLevelPrefix=yes``, its default), so ``journalctl -p
    warning`` shows the warnings and errors. Without it every line is filed at ``info``."""

    PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4))

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in self.PRIORITIES if record.levelno >= level), None)
        if priority is None:
            priority = 6 if record.levelno >= logging.INFO else 7
        return f"<{priority}>{self.inner.format(record)}"


def writes_to_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd gave this service: ``JOURNAL_STREAM``
    (``device:inode``, set by systemd for a unit whose output goes to the journal) names
    the file ``stream`` writes to. Its inherited value in a child writing elsewhere does not."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # a stream with no file (StringIO)
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def install_handler(
    stream: TextIO, level: int, *, as_json: bool = False, logger: str = "asm_email_rules"
) -> logging.Handler:
    """Send ``logger``'s records at ``level`` and above to ``stream`` in one of the formats;
    each line behind its syslog priority (:class:`SyslogPrefixFormatter`) when ``stream`` is
    the journal's (:func:`writes_to_journal`).

    The logger stops propagating to the root logger (so no line is printed twice); undo with
    :func:`remove_handler`. Returns the handler.
    """
    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter = JsonFormatter() if as_json else KeyValueFormatter()
    if writes_to_journal(stream):
        formatter = SyslogPrefixFormatter(formatter)
    handler.setFormatter(formatter)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    target.setLevel(level)
    target.propagate = False
    return handler


def remove_handler(handler: logging.Handler, *, logger: str = "asm_email_rules") -> None:
    """Undo :func:`install_handler`: detach and close ``handler``, propagate again."""
    target = logging.getLogger(logger)
    target.removeHandler(handler)
    target.propagate = True
    handler.close()
