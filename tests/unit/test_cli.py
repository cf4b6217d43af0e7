"""The command line: what a user sees from each command, and the documented exit codes."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import build_parser, demo_inbox, main
from asm_email_rules.model import ReplyStatus, TaskStatus
from asm_email_rules.sample import seed_sample_desk

INBOX = Path(__file__).resolve().parents[2] / "src" / "asm_email_rules" / "demo_inbox"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_lists_every_inbox_message_with_its_rule_and_reply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    names = [name for name, _ in demo_inbox()]
    assert len(names) >= 17
    for name in names:
        assert name in out
    for expected in (
        "LOG-2",  # unknown sender, anonymous call creation
        "LOG-6",  # user only
        "UC-4",  # update call 100
        "UC-10",  # closed call 101 gets a note
        "CL-9",  # its user closes call 100
        "AP-11",  # approve / reject
        "GATE-1",  # the 550 bounce is deleted at once
        "SU-5",  # summaries
        "Call No 101 has been updated by ASM Core.",
        "Task 500 has been successfully approved",
        "Task 501 has been successfully rejected",
        "Reason: Insufficient Permission",
        "Request 700 has been updated",
        "Task/Approval 502 has been updated",
    ):
        assert expected in out, expected
    assert "auto_reply=on" in out  # the header says which options are on


def test_demo_json_gives_each_decision(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--json")
    assert code == 0
    rows = {row["file"]: row for row in json.loads(out)}
    bounce = rows["18-bounce-550-user-unknown.eml"]
    assert bounce["replies"] == []
    assert "log_call" not in [a["kind"] for a in bounce["decision"]["actions"]]
    ooo = rows["17-out-of-office.eml"]
    assert ooo["replies"] == []
    assert ooo["decision"]["mail_kind"] == "auto_reply"


def test_demo_shows_template_properties_a_forwarded_request_and_a_notification(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 12: the demo desk shows a call logged from the template with its call screen set,
    IPK status and stream; a request Alice forwarded in her [MyRequests]; and the notification
    email to the assignee of an updated call (Email at Update via Email In)."""
    code, out, _ = run(capsys, "demo", "--json")
    assert code == 0
    rows = {row["file"]: row for row in json.loads(out)}
    logged = rows["01-unknown-sender-logs-call.eml"]["new_call"]
    assert (logged["call_screen_set"], logged["ipk_status"], logged["ipk_stream"]) == (
        "Standard",
        "Incident",
        "Service Desk",
    )
    (summary,) = rows["15-summary-my-requests.eml"]["replies"]
    assert "[REQUEST#701]" in summary["body"]  # Alice forwarded it to Tom
    (notification,) = rows["05-update-call-100.eml"]["notifications"]
    assert notification["to"] == "alice@desk.example"  # call 100's assigned analyst
    assert notification["subject"] == "Call 100 has been updated by email [CALL#100]"
    code, text, _ = run(capsys, "demo")
    assert "Calls logged, with the properties of the mailbox's call template" in text
    assert "--- 05-update-call-100.eml (notification)" in text


def test_demo_reads_another_inbox_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "only.eml").write_bytes((INBOX / "10-approve-task-500.eml").read_bytes())
    code, out, _ = run(capsys, "demo", "--inbox", str(tmp_path))
    assert code == 0
    assert "only.eml" in out
    assert "01-unknown-sender" not in out


def test_explain_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", str(INBOX / "10-approve-task-500.eml"), "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("mail_kind", "command", "person_case", "actions", "reply", "reasons"):
        assert key in data
    assert data["command"]["kind"] == "approve"
    assert data["person_case"] == "analyst_only"
    assert data["reply"]["to"] == "alice@desk.example"
    assert data["reply"]["subject"] == "Task 500 has been successfully approved [TASK#500]"
    assert data["reply"]["body"]


def test_explain_text_says_why_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "desk.sqlite3"
    with SqliteRepository(store) as repo:
        seed_sample_desk(repo)
    code, out, _ = run(
        capsys, "explain", str(INBOX / "10-approve-task-500.eml"), "--store", str(store)
    )
    assert code == 0
    assert "rule AP-11" in out
    assert "why:" in out
    with SqliteRepository(store) as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.PENDING


def test_explain_unparseable_message_prints_error_json_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"   \r\n")
    code, out, _ = run(capsys, "explain", str(empty), "--json")
    assert code == 1
    assert "error" in json.loads(out)
    code, out, err = run(capsys, "explain", str(empty))
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "cannot parse" in err


def test_bad_config_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('store = "s.sqlite3"\n[system]\nmax_send_atempts = 2\n', encoding="utf-8")
    code, out, err = run(capsys, "poll", "--once", "--config", str(config))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "system.max_send_atempts" in lines[0]
    assert str(config) in lines[0]
    assert "Traceback" not in err


def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "process", "x.eml")  # --config missing
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--config" in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "command",
    [
        "demo",
        "explain",
        "process",
        "deliver",
        "poll",
        "truncate",
        "init",
        "people",
        "calls",
        "check",
        "replies",
    ],
)
def test_every_command_has_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    # at a terminal: deliver with a message piped in takes --help for a retry (test_deliver)
    monkeypatch.setattr(sys, "stdin", Terminal())
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"asm-email-rules {command}" in out


def test_init_writes_a_loadable_config_and_an_empty_store_and_refuses_to_overwrite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "desk"
    code, out, _ = run(capsys, "init", str(target))
    assert code == 0
    assert (target / "config.toml").is_file()
    assert (target / "Maildir" / "new").is_dir()  # the starter account's mailbox, ready to fill
    with SqliteRepository(target / "helpdesk.sqlite3") as repo:
        assert repo.get_call(100) is None  # empty, not seeded
    before = (target / "config.toml").read_text()
    code, _, err = run(capsys, "init", str(target))
    assert code == 2
    assert "already exists" in err
    assert (target / "config.toml").read_text() == before
    # the written config works: poll its (empty) Maildir once
    code, out, err = run(capsys, "poll", "--once", "--config", str(target / "config.toml"))
    assert code == 0, err
    assert "helpdesk: processed 0" in out


def test_process_applies_to_the_store_and_records_replies_without_smtp(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "init", str(tmp_path))
    config = tmp_path / "config.toml"
    text = config.read_text().replace(
        'addresses = ["helpdesk@example.org"]', 'addresses = ["helpdesk@desk.example"]'
    )
    config.write_text(text)
    with SqliteRepository(tmp_path / "helpdesk.sqlite3") as repo:
        seed_sample_desk(repo)
    approve = str(INBOX / "10-approve-task-500.eml")
    code, out, err = run(capsys, "process", approve, "--config", str(config))
    assert code == 0, err
    assert "rule AP-11" in out
    assert "Task 500 has been successfully approved" in out
    assert "not sent" in err
    # the file stays where it is: the line says what a mailbox would do, not "delete"
    assert out.splitlines()[0].endswith("; from a mailbox: delete")
    assert Path(approve).exists()
    with SqliteRepository(tmp_path / "helpdesk.sqlite3") as repo:
        task = repo.get_task(500)
        assert task is not None
        assert task.status is TaskStatus.APPROVED
    code, out, _ = run(capsys, "process", approve, "--config", str(config))
    assert code == 0
    assert "already processed" in out
    # nothing is sent again: the reply shown is the one the first run recorded, still pending
    assert "its recorded reply pending" in out
    assert "recorded reply pending to" in out
    code, out, _ = run(capsys, "explain", approve, "--config", str(config))
    assert code == 0
    assert "is in the ledger of mailbox" in out.splitlines()[0]
    assert "a poll or process would do nothing again" in out
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    code, _, err = run(capsys, "process", str(empty), "--config", str(config))
    assert code == 1
    assert "empty message" in err


def test_replies_list_and_resend_work_the_outbox_without_smtp(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "init", str(tmp_path))
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace("helpdesk@example.org", "helpdesk@desk.example"))
    store = tmp_path / "helpdesk.sqlite3"
    with SqliteRepository(store) as repo:
        seed_sample_desk(repo)
    for name in ("10-approve-task-500.eml", "05-update-call-100.eml"):
        code, _, err = run(capsys, "process", str(INBOX / name), "--config", str(config))
        assert code == 0, err
    code, out, err = run(capsys, "replies", "list", "--config", str(config))
    assert code == 0
    assert out.count(" pending ") == 2
    assert "Task 500" not in out  # the table shows ids and recipients, not subjects
    assert err == ""  # all of them shown
    code, out, err = run(capsys, "replies", "list", "--limit", "1", "--config", str(config))
    assert out.count(" pending ") == 1
    assert "the newest 1 only: --limit N for more" in err  # a cut list says so
    code, out, err = run(capsys, "replies", "list", "--limit", "2", "--config", str(config))
    assert (out.count(" pending "), err) == (2, "")  # nothing cut: nothing said
    code, out, _ = run(capsys, "replies", "list", "--failed", "--config", str(config))
    assert (code, out.strip()) == (0, "no replies")

    with SqliteRepository(store) as repo:  # the SMTP server refused one of them for good
        [first, _] = repo.list_replies()
        now = first.queued_at
        repo.claim_reply(first.reply.message_id, "test", now, now)
        repo.finish_reply(first.reply.message_id, "test", ReplyStatus.FAILED, now, error="550 gone")
    code, out, _ = run(capsys, "replies", "list", "--failed", "--json", "--config", str(config))
    [line] = out.splitlines()
    listed = json.loads(line)
    assert (listed["message_id"], listed["status"]) == (first.reply.message_id, "failed")
    assert (listed["last_error"], listed["attempts"]) == ("550 gone", 1)
    assert listed["body"] == first.reply.body  # what was sent, readable without SQL

    code, out, _ = run(capsys, "replies", "resend", first.reply.message_id, "--config", str(config))
    assert code == 0
    assert "queued" in out
    with SqliteRepository(store) as repo:
        entry = repo.outbox_entry(first.reply.message_id)
        assert entry is not None
        assert entry.status is ReplyStatus.PENDING
    code, _, err = run(capsys, "replies", "resend", first.reply.message_id, "--config", str(config))
    assert code == 2
    assert "pending, not failed" in err
    code, _, err = run(capsys, "replies", "resend", "<nope@x>", "--config", str(config))
    assert code == 2
    assert "no such reply" in err
    code, _, err = run(capsys, "replies", "resend", "--config", str(config))
    assert code == 2
    assert "--all-failed" in err
    code, out, _ = run(capsys, "replies", "resend", "--all-failed", "--config", str(config))
    assert (code, out.strip()) == (0, "no failed replies")


def test_poll_once_exit_code_reflects_replies() -> None:
    from asm_email_rules.cli.poll import exit_code
    from asm_email_rules.service import AccountReport, PollReport

    def once(**fields: Any) -> int:
        return exit_code(PollReport((AccountReport("a"), AccountReport("b", **fields))))

    assert once() == 0
    assert once(replies_sent=3, quarantined=1) == 0
    assert once(replies_deferred=1) == 3
    assert once(errors=1) == 3
    assert once(replies_failed=1) == 4
    assert once(replies_failed=1, errors=2, replies_deferred=1) == 4


def test_truncate_prints_the_kept_reply(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "truncate", str(INBOX / "05-update-call-100.eml"))
    assert code == 0
    assert "The printer jammed again" in out
    assert "wrote:" not in out
    assert "Please type your reply" not in out


def test_python_dash_m_runs_the_demo() -> None:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run(
        [sys.executable, "-m", "asm_email_rules", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "AP-11" in result.stdout
    assert "18-bounce-550-user-unknown.eml" in result.stdout


def test_tables_prints_the_generated_decision_tables(capsys: pytest.CaptureFixture[str]) -> None:
    from asm_email_rules.rules import render_tables_markdown

    assert main(["tables"]) == 0
    assert capsys.readouterr().out == render_tables_markdown()


def test_demo_piped_into_head_exits_cleanly() -> None:
    """`asm-email-rules demo | head` must not end in a BrokenPipeError traceback."""
    import subprocess
    import sys

    done = subprocess.run(
        f"{sys.executable} -m asm_email_rules demo | head -n 2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr


def _initialised(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    """``init`` a desk in ``tmp_path / "desk"``; its config.toml."""
    target = tmp_path / "desk"
    assert run(capsys, "init", str(target))[0] == 0
    return target / "config.toml"


def test_check_fails_a_maildir_the_first_poll_cannot_create(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `check` said "ready" for a Maildir under a folder that does not exist, and `poll` then
    # failed with "mailbox unreachable": the first poll creates the Maildir, not its parents.
    config = _initialised(capsys, tmp_path)
    target = config.parent
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('path = "Maildir"', 'path = "absent/Maildir"'), "utf-8")
    code, out, err = run(capsys, "check", "--config", str(config))
    assert code == 3, out + err
    assert "FAILED: Maildir" in out
    assert f"{target / 'absent'} does not exist" in out
    code, _, err = run(capsys, "poll", "--once", "--config", str(config))
    assert code == 3, err  # what check foretold
    config.write_text(text.replace('path = "Maildir"', 'path = "later"'), "utf-8")
    code, out, err = run(capsys, "check", "--config", str(config))
    assert code == 0, out + err
    assert "does not exist yet (created at the first poll)" in out
    assert run(capsys, "poll", "--once", "--config", str(config))[0] == 0
    assert (target / "later" / "new").is_dir()


def test_a_store_that_cannot_be_used_now_is_waited_for_not_a_configuration_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A store on a file system remounted read-only when the service started made `poll`
    # exit 2, "configuration error", and the service stopped instead of backing off.
    import signal
    import threading

    import asm_email_rules.bootstrap as wiring
    from asm_email_rules.errors import StoreUnavailableError

    config = _initialised(capsys, tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[system]", "[system]\nbackoff_initial_seconds = 0.05", 1))
    real, calls = wiring.open_store, []

    def read_only_twice(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise StoreUnavailableError("helpdesk.sqlite3: attempt to write a readonly database")
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return real(*args, **kwargs)

    monkeypatch.setattr(wiring, "open_store", read_only_twice)
    code, _, err = run(capsys, "poll", "--once", "--config", str(config))
    assert code == 3
    assert err.startswith("asm-email-rules: store unavailable: ")
    calls.clear()
    code, _, err = run(capsys, "poll", "--config", str(config))  # the service, until SIGTERM
    assert code == 0, err
    assert len(calls) == 3  # two waits, then it ran
    assert err.count("the store cannot be used yet") == 2
    assert "trying again in 0.05 s" in err  # then twice that: the accounts' backoff
    assert "trying again in 0.1 s" in err

    def never(*args: Any, **kwargs: Any) -> Any:
        # SIGTERM comes while the service waits for the store (its handler is set by then);
        # a timer started before `poll` could fire first and end pytest itself
        os.kill(os.getpid(), signal.SIGTERM)
        raise StoreUnavailableError("helpdesk.sqlite3: disk I/O error")

    monkeypatch.setattr(wiring, "open_store", never)
    code, _, err = run(capsys, "poll", "--config", str(config))  # stopped while waiting
    assert code == 3  # not "all is well"
    assert "stopped before the store could be used" in err


def test_a_file_far_over_the_size_limit_is_refused_unread_and_named_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `explain /dev/zero` ended in a MemoryError traceback: the whole file was read first.
    # A message over max_total_size keeps only its header, so past four times that the file
    # is not read; and `process` named a file it could not read twice.
    config = _initialised(capsys, tmp_path)
    with config.open("a", encoding="utf-8") as handle:
        handle.write("\n[system.limits]\nmax_total_size = 1000\n")
    huge = tmp_path / "huge.eml"
    huge.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 5000)
    for command in ("explain", "process"):
        code, _, err = run(capsys, command, str(huge), "--config", str(config))
        assert code in (1, 2), (command, err)
        assert f"{huge}: larger than 4000 bytes: not read" in err
        assert "Traceback" not in err
    huge.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 3000)  # over the limit, under 4x
    code, out, err = run(capsys, "explain", str(huge), "--config", str(config))
    assert code == 0, err
    assert "size limit" in out  # read, and handled as a message over max_total_size
    missing = tmp_path / "absent.eml"
    code, _, err = run(capsys, "process", str(missing), "--config", str(config))
    assert code == 1
    assert err.count(str(missing)) == 1


def test_each_command_module_declares_its_own_parser_and_runner() -> None:
    import argparse

    from asm_email_rules.cli import COMMANDS, build_parser

    names = [command.NAME for command in COMMANDS]
    assert names == [
        "init",
        "people",
        "check",
        "poll",
        "deliver",
        "process",
        "explain",
        "calls",
        "quarantine",
        "replies",
        "demo",
        "truncate",
        "tables",
    ]
    for command in COMMANDS:
        assert callable(command.add_parser)
        assert callable(command.run)
    subparsers = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    assert list(subparsers.choices) == names
    for name, command in zip(names, COMMANDS, strict=True):
        assert subparsers.choices[name].get_default("handler") is command.run


def test_no_exit_code_row_is_shadowed_by_an_earlier_base_class() -> None:
    from asm_email_rules.cli import EXIT_CODES

    kinds = [kind for kind, _, _ in EXIT_CODES]
    for index, kind in enumerate(kinds):
        for earlier in kinds[:index]:
            assert not issubclass(kind, earlier), f"{kind.__name__} is caught as {earlier}"


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        ("ConfigError", 2, "asm-email-rules: configuration error: bad"),
        ("MessageParseError", 1, "asm-email-rules: cannot parse the message: bad"),
        ("MailboxError", 3, "asm-email-rules: mailbox error: bad"),
        # operators.md, exit codes: 3 for "a store that is locked, read-only or full"
        ("StoreUnavailableError", 3, "asm-email-rules: store unavailable: bad"),
        ("RepositoryError", 1, "asm-email-rules: RepositoryError: bad"),
        ("PermanentSendError", 1, "asm-email-rules: PermanentSendError: bad"),
    ],
)
def test_a_library_error_becomes_its_exit_code_and_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: str,
    code: int,
    line: str,
) -> None:
    from asm_email_rules import errors
    from asm_email_rules.cli import tables

    def fail(args: object) -> int:
        raise getattr(errors, error)("bad")

    monkeypatch.setattr(tables, "render_tables_markdown", lambda: fail(None))
    assert main(["tables"]) == code
    assert capsys.readouterr().err.strip() == line


def test_ctrl_c_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from asm_email_rules.cli import tables

    def interrupted() -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(tables, "render_tables_markdown", interrupted)
    assert main(["tables"]) == 130
    assert capsys.readouterr().err.strip() == "asm-email-rules: interrupted"


def test_init_writes_the_packaged_starter_config_which_agrees_with_the_reference_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One starter (package data); examples/config.toml is the reference with every key."""
    import tomllib

    from asm_email_rules.cli.init import starter_config

    packaged = INBOX.parent / "data" / "config.toml"
    assert starter_config() == packaged.read_text(encoding="utf-8")
    run(capsys, "init", str(tmp_path))
    assert (tmp_path / "config.toml").read_text(encoding="utf-8") == starter_config()
    reference = tomllib.loads((INBOX.parents[2] / "examples" / "config.toml").read_text())
    starter = tomllib.loads(starter_config())

    def same_keys(start: dict[str, object], ref: dict[str, object], where: str) -> None:
        for key, value in start.items():
            assert key in ref, f"{where}{key} is in the starter but not in examples/config.toml"
            if isinstance(value, dict):
                same_keys(value, ref[key], f"{where}{key}.")  # type: ignore[arg-type]

    same_keys({k: v for k, v in starter.items() if k != "accounts"}, reference, "")
    # the starter's account is a Maildir; the reference documents every account key on its
    # first (IMAP) account and the Maildir-only "path" on its maildir one
    maildir = next(a for a in reference["accounts"] if a["protocol"] == "maildir")
    same_keys(starter["accounts"][0], {**reference["accounts"][0], "path": maildir["path"]}, "")


def test_demo_ends_by_saying_how_to_set_up_a_desk(capsys: pytest.CaptureFixture[str]) -> None:
    # The README's first command ran the demo and ended on the last reply's body: a new user
    # was left with no next step. The last lines now name init and the commands after it.
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    tail = out.rstrip("\n").splitlines()[-6:]
    assert tail[0].startswith("Next, a desk of your own")
    assert "  asm-email-rules init DIR" in tail
    assert "  asm-email-rules check --config DIR/config.toml" in tail


def test_people_list_lines_up_names_in_wide_and_combining_scripts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A name in Chinese (two terminal columns a character) pushed every later column of its
    # row to the right in 'people list' and 'calls list'; a name written with a combining
    # accent (e + U+0301) pulled it left.
    def columns(text: str) -> int:  # as a terminal shows them
        wide = sum(1 for c in text if unicodedata.east_asian_width(c) == "W")
        marks = sum(1 for c in text if unicodedata.combining(c))
        return len(text) + wide - marks

    assert main(["init", str(tmp_path)]) == 0
    config = str(tmp_path / "config.toml")
    for address, name in (
        ("li@example.cn", "李小龙"),
        ("jose@example.com", "Jose\u0301 Perez"),
        ("ann@example.org", "Ann"),
    ):
        assert main(["people", "add", address, "--name", name, "--user", "--config", config]) == 0
    capsys.readouterr()
    assert main(["people", "list", "--config", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    column = header.index("analyst")
    for line in lines[2:]:
        name_part = line[: line.index("no  ")]  # every one of them is not an analyst
        assert columns(name_part) == column, line


def test_sighup_reloads_the_configuration_and_the_service_goes_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `kill -HUP` (the usual "reload your configuration") ended the service at once: Python's
    # default for SIGHUP, exit 129, not a line in the log, and an account added to the file was
    # read only after a restart. Now the message in hand is finished, the file read again and
    # the service goes on with it; a file broken while editing leaves the running one in place.
    import signal
    import time

    config = _initialised(capsys, tmp_path)
    run(capsys, "people", "add", "dana@example.org", "--analyst", "--config", str(config))
    run(capsys, "people", "add", "uma@example.org", "--user", "--config", str(config))
    text = config.read_text(encoding="utf-8")
    text = text.replace("# default_logging_analyst_id = 1", "default_logging_analyst_id = 1")
    config.write_text(text.replace("interval_seconds = 60", "interval_seconds = 1"), "utf-8")
    log_path = tmp_path / "poll.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    with log_path.open("wb") as log_file:
        service = subprocess.Popen(
            [sys.executable, "-m", "asm_email_rules", "poll", "--config", str(config)],
            stderr=log_file,
            env=env,
        )
    try:

        def wait_for(words: str) -> str:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                logged = log_path.read_text(encoding="utf-8")
                if words in logged:
                    return logged
                assert service.poll() is None, logged
                time.sleep(0.05)
            raise AssertionError(f"{words!r} not logged: {log_path.read_text(encoding='utf-8')}")

        wait_for("account polled")
        second = config.read_text(encoding="utf-8") + (
            '\n[[accounts]]\nname = "sales"\nprotocol = "maildir"\npath = "Sales"\n'
            'interval_seconds = 1\n[accounts.mailbox]\naddresses = ["sales@example.org"]\n'
            "default_logging_analyst_id = 1\n"
        )
        config.write_text(second, "utf-8")
        service.send_signal(signal.SIGHUP)
        wait_for("configuration reloaded")
        wait_for("account polled account=sales")
        (tmp_path / "desk" / "Sales" / "new" / "1.eml").write_bytes(
            b"From: uma@example.org\r\nTo: sales@example.org\r\nSubject: Quote\r\n"
            b"Message-ID: <hup-1@client.example>\r\n\r\nA quote, please.\r\n"
        )
        wait_for("message handled account=sales")
        deadline = time.monotonic() + 30  # the old account too, at once: its lease let go
        while (
            "account polled account=helpdesk"
            not in wait_for("configuration reloaded").split("configuration reloaded", 1)[1]
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        config.write_text(second + "this is not TOML\n", "utf-8")
        service.send_signal(signal.SIGHUP)
        logged = wait_for("configuration not reloaded")
        assert service.poll() is None, logged
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    logged = log_path.read_text(encoding="utf-8")
    assert logged.count("polling service started") == 3
    assert "Traceback" not in logged
    assert "another poller" not in logged  # the leases were let go at each reload


def test_calls_next_number_refuses_a_number_no_reply_token_could_carry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A slip of the keyboard in --at-least (a few digits too many) was taken, and the
    # numbering never moves down: past 12 digits a call's [CALL#n] is not read back from the
    # customer's answer (every answer logged a new call), at 2**63 - 1 the next call could
    # not be numbered at all, and above it the command ended in a traceback.
    config = str(_initialised(capsys, tmp_path))
    for number in ("1000000000000", "9223372036854775807", "100000000000000000000"):
        code, out, err = run(
            capsys, "calls", "next-number", "--at-least", number, "--config", config
        )
        assert code == 2, (number, err)
        assert "12 digits" in err
    assert run(capsys, "calls", "next-number", "--config", config)[1] == (
        "the next call will be number 1\n"
    )
    code, out, _ = run(
        capsys, "calls", "next-number", "--at-least", "999999999999", "--config", config
    )
    assert (code, out) == (0, "the next call will be number 999999999999 (was 1)\n")


def test_a_second_sighup_while_the_first_is_read_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An operator who saved the file again and sent a second SIGHUP while the service was
    # reading it for the first one had the second forgotten: the flags were cleared after
    # the read, so the service went on with the first edit until the next reload.
    import argparse
    import signal
    import types

    from asm_email_rules.cli import poll

    ran: list[str] = []
    reads: list[str] = []

    class Service:
        persistently_failing: tuple[str, ...] = ()

        def __init__(self, name: str) -> None:
            self.name = name

        def run(self, stop: threading.Event) -> None:
            ran.append(self.name)
            if len(ran) == 1:
                os.kill(os.getpid(), signal.SIGHUP)  # the first reload
            elif not stop.is_set():
                os.kill(os.getpid(), signal.SIGTERM)  # done: stop the service

    class Wiring:
        def __init__(self, name: str) -> None:
            self.service = Service(name)

        def __enter__(self) -> Wiring:
            return self

        def __exit__(self, *_: object) -> None:
            return None

    def config(name: str) -> types.SimpleNamespace:
        account = types.SimpleNamespace(active=True)
        return types.SimpleNamespace(name=name, accounts=[account])

    def reloaded(path: str, running: types.SimpleNamespace) -> types.SimpleNamespace:
        reads.append(path)
        if len(reads) == 1:  # the operator's second SIGHUP, while the file is being read
            os.kill(os.getpid(), signal.SIGHUP)
        return config(f"edit {len(reads)}")

    monkeypatch.setattr(poll, "load_config", lambda path: config("start"))
    monkeypatch.setattr(poll, "_bootstrap_when_ready", lambda cfg, stop: Wiring(cfg.name))
    monkeypatch.setattr(poll, "_reloaded", reloaded)
    args = argparse.Namespace(config="desk.toml", once=False)
    assert poll.run(args) == 0
    assert ran == ["start", "edit 1", "edit 2"]


def test_after_restoring_a_backup_new_calls_do_not_take_numbers_customers_hold(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A store restored from a backup gave the numbers logged since the backup to new calls
    # again: Uma's answer to "[CALL#3]" (logged after the backup) was written into Ulf's new
    # call 3. `calls next-number --at-least N` moves the numbering past them (operators.md,
    # "Backing up and restoring the store").
    import sqlite3

    config = _initialised(capsys, tmp_path)
    desk = config.parent
    for who in ("dana@example.org --analyst", "uma@example.org --user", "ulf@example.org --user"):
        address, flag = who.split()
        run(capsys, "people", "add", address, flag, "--config", str(config))
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("# default_logging_analyst_id", "default_logging_analyst_id"))

    def arrives(sender: str, key: str, subject: str) -> None:
        (desk / "Maildir" / "new" / f"{key}.eml").write_bytes(
            f"From: {sender}\r\nTo: helpdesk@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{key}@client.example>\r\n\r\nAbout {subject}.\r\n".encode()
        )
        assert run(capsys, "poll", "--once", "--config", str(config))[0] == 0

    arrives("uma@example.org", "u1", "Printer")
    store = desk / "helpdesk.sqlite3"
    with sqlite3.connect(store) as live, sqlite3.connect(tmp_path / "backup.sqlite3") as copy:
        live.backup(copy)  # what `sqlite3 helpdesk.sqlite3 ".backup ..."` does
    arrives("uma@example.org", "u2", "Scanner")
    arrives("uma@example.org", "u3", "Monitor")  # call 3: Uma holds "[CALL#3]"
    for name in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
        name.unlink(missing_ok=True)
    (tmp_path / "backup.sqlite3").rename(store)  # the restore
    assert run(capsys, "calls", "next-number", "--config", str(config))[1] == (
        "the next call will be number 2\n"
    )
    code, out, _ = run(capsys, "calls", "next-number", "--at-least", "100", "--config", str(config))
    assert (code, out) == (0, "the next call will be number 100 (was 2)\n")
    code, out, _ = run(capsys, "calls", "next-number", "--at-least", "50", "--config", str(config))
    assert (code, out) == (0, "the next call will be number 100\n")  # never down
    arrives("ulf@example.org", "f1", "Keyboard")
    arrives("uma@example.org", "u4", "Re: Call 3 has been logged [CALL#3]")
    code, out, _ = run(capsys, "calls", "list", "--json", "--config", str(config))
    calls = {call["number"]: call for call in json.loads(out)}
    assert sorted(calls) == [1, 100]  # Ulf's call is 100; [CALL#3] names no call now
    code, out, _ = run(capsys, "calls", "show", "100", "--config", str(config))
    assert "Keyboard" in out
    assert "Uma" not in out


def test_vv_shows_the_debug_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # An operator chasing a problem had no way to see the library's DEBUG lines from the
    # command line: -v was INFO and nothing went further. -vv is DEBUG, before or after the
    # command; -v stays INFO.
    message = tmp_path / "quoted.eml"
    message.write_bytes(b"From: a@example.org\r\nSubject: Re: x\r\n\r\n> quoted only\r\n")
    said = "DEBUG asm_email_rules.truncate: truncation would leave nothing"
    for argv in (["truncate", "-vv", str(message)], ["-vv", "truncate", str(message)]):
        code, out, err = run(capsys, *argv)
        assert (code, said in err) == (0, True), err
        assert "> quoted only" in out
    code, _, err = run(capsys, "truncate", "-v", str(message))
    assert (code, "DEBUG" in err) == (0, False)
    # one -v before the command and one after add up: the command's own count replaced it
    code, _, err = run(capsys, "-v", "truncate", "-v", str(message))
    assert (code, said in err) == (0, True), err


@pytest.mark.parametrize(
    "argv",
    [
        ("calls", "--config", "desk/config.toml"),
        ("people", "--store", "desk/helpdesk.sqlite3", "list"),
        ("replies", "-v", "--config", "desk/config.toml", "list"),
        ("quarantine", "--json"),
    ],
)
def test_an_option_before_the_action_is_told_the_action_comes_first(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    # argparse took the option's value for the action: "invalid choice: 'desk/config.toml'"
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert f"asm-email-rules {argv[0]} ACTION {argv[1] if argv[1] != '-v' else argv[2]}" in line
    assert "the action comes first" in line
    assert "invalid choice" not in line
    assert "list" in line  # the actions it takes are named


def test_other_mistakes_with_actions_keep_argparse_s_own_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "calls", "lst", "--config", "x.toml")
    assert code == 2
    assert "invalid choice: 'lst'" in err
    code, _, err = run(capsys, "calls", "-v")
    assert code == 2
    assert "required: ACTION" in err


def test_demo_says_why_a_message_it_does_nothing_with_is_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the out-of-office and the bounce showed "(none)" and "-": no hint why nothing happened
    code, out, _ = run(capsys, "demo", "--json")
    assert code == 0
    dropped = {
        row["file"]: row["decision"]["discard_reason"]
        for row in json.loads(out)
        if row["decision"] and row["decision"]["discard_reason"]
    }
    assert len(dropped) >= 2  # the demo inbox's auto-reply and bounce at least
    code, out, _ = run(capsys, "demo")
    assert code == 0
    lines = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.endswith(".eml") or ".eml " in line
    }
    for name, reason in dropped.items():
        assert f"(none: {reason})" in lines[name], name


def test_demo_names_the_user_it_created_for_an_unknown_sender(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the calls table showed "person 6" for the User created from an unknown sender's mail
    (tmp_path / "new.eml").write_bytes(
        b"From: Olga Newcomer <olga@outside.example>\r\nTo: helpdesk@desk.example\r\n"
        b"Subject: The badge reader at gate 2 is dead\r\nMessage-ID: <n1@outside.example>\r\n"
        b"\r\nIt beeps red for everyone since 8:00.\r\n"
    )
    code, out, _ = run(capsys, "demo", "--inbox", str(tmp_path))
    assert code == 0
    [row] = [line for line in out.splitlines() if line.startswith("103 ")]
    assert row.split()[1:3] == ["Olga", "(new)"]
    assert "person " not in row


def test_every_argument_of_every_command_says_what_it_is_in_help() -> None:
    # `init --help` listed "DIR" under positional arguments with nothing after it, as did
    # the ID of `people set` and `quarantine show|release|replay` and `calls show NUMBER`
    def silent(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found: list[str] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += silent(sub, f"{path} {name}")
            elif not action.help:
                found.append(f"{path}: {action.metavar or action.option_strings or action.dest}")
        return found

    assert silent(build_parser(), "asm-email-rules") == []
