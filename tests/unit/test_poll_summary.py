"""Discards and held-back replies are counted and logged at WARNING (issue 11, item 6:
"Replies held back by the reply budget are silent (only ``reply_status=none``; the reason sits
in the ledger JSON)", and item 4: the starter desk deleted every message "with INFO lines only").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.cli import main


def mail(number: int, sender: str = "uma@example.org") -> bytes:
    return (
        f"From: {sender}\r\nTo: helpdesk@example.org\r\nSubject: Problem {number}\r\n"
        f"Message-ID: <p{number}@example.org>\r\nDate: Fri, 27 Nov 2026 09:05:00 +0000\r\n\r\n"
        f"Problem number {number}.\r\n"
    ).encode()


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path / "config.toml"


def test_a_discard_is_a_warning_with_its_reason_and_is_counted(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    MaildirMailbox(desk.parent / "Maildir").add(mail(1, "stranger@example.net"))
    code = main(["poll", "--once", "--config", str(desk)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "processed 1, duplicates 0, retried 0, quarantined 0, errors 0" in out
    assert "  1 discarded: " in out
    [line] = [line for line in err.splitlines() if "message handled" in line]
    assert " WARNING " in line
    assert "outcome=discard" in line
    assert "discard_reason=" in line
    assert "LOG-3" in line
    assert "Create New Calls Anonymously" in line  # says why


def test_a_reply_held_back_by_the_budget_is_a_warning_and_is_counted(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = desk.read_text().replace("[system]\n", "[system]\nreply_budget_per_hour = 1\n")
    desk.write_text(
        text.replace("# default_logging_analyst_id = 1", "default_logging_analyst_id = 1")
    )
    main(["people", "add", "dana@example.org", "--analyst", "--config", str(desk)])
    main(["people", "add", "uma@example.org", "--user", "--config", str(desk)])
    box = MaildirMailbox(desk.parent / "Maildir")
    box.add(mail(1))
    box.add(mail(2))
    capsys.readouterr()
    code = main(["poll", "--once", "--config", str(desk)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "processed 2" in out
    assert "  1 replies held back" in out
    [held] = [line for line in err.splitlines() if "reply_suppressed=" in line]
    assert " WARNING " in held
    assert "budget" in held


def test_log_json_and_verbose_work_after_the_command_too(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 11, item 8: "``poll --log-json`` is refused (must precede the subcommand)".
    code = main(["poll", "--once", "--config", str(desk), "--log-json"])
    _, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    assert {line["level"] for line in lines} <= {"INFO", "WARNING"}
    assert any("every message will be discarded" in line["message"] for line in lines)
    code = main(["--log-json", "poll", "--once", "--config", str(desk)])
    _, err = capsys.readouterr()
    assert code == 0
    assert all(line.startswith("{") for line in err.splitlines())
    code = main(["people", "list", "--config", str(desk), "-v"])
    assert code == 0


def test_the_summary_names_what_the_account_backs_off_from_not_only_the_last_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The mailbox failed, then a reply met a 451: the line read "(last: reply to ...: 451)
    # ...; backing off 15 s: our side failed", and the operator blamed SMTP.
    from asm_email_rules.cli.poll import _print_report
    from asm_email_rules.service import AccountReport, PollReport

    report = AccountReport(
        "helpdesk",
        errors=2,
        last_error="reply to u5@example.org: 451 try later",
        backoff_seconds=15.0,
        backoff_cause="imap.example.org: mailbox unreachable: Connection reset by peer",
        gone=2,
    )
    _print_report(PollReport((report,)))
    out = capsys.readouterr().out
    assert "(last: reply to u5@example.org: 451 try later)" in out
    assert "backing off 15 s: our side failed (imap.example.org: mailbox unreachable" in out
    assert "  2 message(s) gone before they were read (another client)" in out
