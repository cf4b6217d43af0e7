"""Settings built in code refuse values of the wrong type, naming the field.

The configuration file's loader checks every key (``tests/unit/test_config.py``); an embedder
who builds :class:`MailboxSettings` in Python had no such check, and a slip was silent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from asm_email_rules import MailboxSettings, SystemSettings, explain, process
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.sample import sample_mailbox, seed_sample_desk
from asm_email_rules.settings import CallTemplate, Limits

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_an_address_without_its_trailing_comma_is_refused_with_the_fix() -> None:
    # ("helpdesk@desk.example") is a str: read as one address per character, the desk's own
    # address was no longer recognised, so its own mail logged calls (a mail loop).
    wrong: Any = "helpdesk@desk.example"  # ("helpdesk@desk.example"): no comma
    with pytest.raises(TypeError) as caught:
        MailboxSettings(name="hd", addresses=wrong)
    message = str(caught.value)
    assert message.startswith("MailboxSettings.addresses must be tuple[str, ...]")
    assert "('helpdesk@desk.example',)" in message


@pytest.mark.parametrize(
    ("settings", "field", "value"),
    [
        (MailboxSettings, "default_logging_analyst_id", "1"),
        (MailboxSettings, "auto_reply", "false"),  # a str, and truthy
        (MailboxSettings, "separators", "-----"),
        (MailboxSettings, "reply_templates", {"ack.subject": 3}),
        (MailboxSettings, "call_template", None),
        (CallTemplate, "assigned_analyst_id", True),
        (SystemSettings, "summary_limit", 2.5),
        (SystemSettings, "lease_seconds", "120"),
        (SystemSettings, "fatal_smtp_codes", [550]),
        (Limits, "max_total_size", None),
    ],
)
def test_a_value_of_the_wrong_type_names_its_field(settings: Any, field: str, value: Any) -> None:
    # Typed code has mypy for this; code that is not (a script, a host in another style) had
    # nothing, and a wrong value misbehaved somewhere later.
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(TypeError, match=rf"^{settings.__name__}\.{field} must be "):
        settings(**kwargs)


def test_values_of_the_declared_types_are_kept() -> None:
    mailbox = MailboxSettings(
        addresses=("helpdesk@desk.example",),
        default_logging_analyst_id=None,
        partition=None,
        reply_templates={"call_logged.subject": "Thanks"},
    )
    system = SystemSettings(lease_seconds=90, reply_retry_hours=1.5)  # an int is a number
    assert mailbox.addresses == ("helpdesk@desk.example",)
    assert (system.lease_seconds, system.reply_retry_hours) == (90, 1.5)


def test_with_the_comma_the_desk_knows_its_own_mail() -> None:
    # What the missing comma broke, checked end to end: our own address is own mail (GATE-3).
    repository = InMemoryRepository()
    seed_sample_desk(repository)
    mailbox = sample_mailbox()
    own = mailbox.addresses[0]
    raw = (
        f"From: {own}\r\nTo: {own}\r\nSubject: printer\r\nMessage-ID: <own-1@desk.example>\r\n"
        "\r\nhello\r\n"
    ).encode()
    result = process(raw, repository, None, mailbox, SystemSettings(), NOW)
    assert result.decision is not None
    assert result.decision.rule == "GATE-3"
    assert result.new_call_number is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SystemSettings(summary_limit=0), "SystemSettings.summary_limit must be >= 1"),
        (lambda: SystemSettings(max_send_attempts=0), "max_send_attempts must be >= 1"),
        (lambda: SystemSettings(reply_retry_hours=-5.0), "reply_retry_hours must be greater"),
        (lambda: SystemSettings(lease_seconds=0.0), "lease_seconds must be greater than 0"),
        (lambda: SystemSettings(replies_in_flight=1001), "between 0 and 1000"),
        (lambda: SystemSettings(reply_budget_per_hour=-1), "reply_budget_per_hour must be >= 0"),
        (lambda: SystemSettings(backoff_max_seconds=1.0), "at least backoff_initial_seconds"),
        (lambda: SystemSettings(fatal_smtp_codes=(450,)), "SMTP 5xx codes, got 450"),
        (lambda: Limits(max_total_size=-1), "Limits.max_total_size must be >= 1"),
        (lambda: CallTemplate(assigned_analyst_id=0), "assigned_analyst_id must be >= 1"),
        (
            lambda: MailboxSettings(name="m", default_logging_analyst_id=-3),
            "default_logging_analyst_id must be >= 1",
        ),
    ],
)
def test_settings_built_in_code_refuse_what_the_config_file_refuses(
    build: Callable[[], object], message: str
) -> None:
    """The config file's bounds (docs/operators.md) hold for settings built in code too:
    ``summary_limit=0`` made ``[MyCalls]`` answer "You have no open items." to an analyst
    with an open call."""
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("call_loged.subject", "call_logged.subject"),  # the id misspelt
        ("call_updated.subjekt", "call_updated.subject"),  # the part misspelt
        ("call_closed", "call_closed.body"),  # no part at all
    ],
)
def test_a_reply_template_key_the_catalogue_lacks_is_refused(key: str, hint: str) -> None:
    # The configuration file refused such a key, but settings built in code kept it and the
    # override was never used: the desk went on answering in the default wording, unnoticed.
    with pytest.raises(ValueError, match=r"^MailboxSettings\.reply_templates") as caught:
        MailboxSettings(reply_templates={key: "Anruf $number"})
    message = str(caught.value)
    assert repr(key) in message
    assert "<id>.subject or <id>.body" in message
    assert f"did you mean {hint!r}?" in message


RAW = b"From: uma@corp.example\r\nSubject: printer\r\nMessage-ID: <p-1@corp.example>\r\n\r\nhi\r\n"


def test_process_with_its_settings_out_of_place_names_the_argument() -> None:
    # mailer and mailbox swapped: it failed deep inside with "'RecordingMailer' object has no
    # attribute 'name'", which says nothing about the call the host wrote.
    repository = InMemoryRepository()
    mailer: Any = RecordingMailer()
    mailbox: Any = sample_mailbox()
    with pytest.raises(TypeError) as caught:
        process(RAW, repository, mailbox, mailer, SystemSettings(), NOW)
    assert str(caught.value).startswith(
        "process(): mailbox must be a MailboxSettings, got RecordingMailer"
    )
    assert repository.list_calls() == []


def test_explain_without_system_settings_names_the_argument() -> None:
    # system=None failed with "'NoneType' object has no attribute 'limits'".
    nothing: Any = None
    with pytest.raises(TypeError, match=r"^explain\(\): system must be a SystemSettings, got None"):
        explain(RAW, InMemoryRepository(), sample_mailbox(), nothing, NOW)
