"""Issue 12, the public API a host drives: names exported, protocols complete, and a polling
service and a configuration that need no store path when the host brings its own parts."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import asm_email_rules
from asm_email_rules import (
    EntryKind,
    LogEntry,
    MailboxSettings,
    ReplyStatus,
    RequestStatus,
    SystemSettings,
    render_outgoing,
)
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.bootstrap import bootstrap
from asm_email_rules.config import load_config
from asm_email_rules.errors import ConfigError
from asm_email_rules.model import Attachment, EntityRef
from asm_email_rules.protocols import Directory, Mailbox, Repository, SeedableRepository
from asm_email_rules.sample import DESK_ADDRESS, UMA, sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "integrators.md"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def test_the_types_public_return_values_use_are_exported() -> None:
    """RequestStatus, EntryKind, LogEntry, ReplyStatus and render_outgoing come back from or
    go into public calls; a host imports them from the package itself."""
    for name in ("RequestStatus", "EntryKind", "LogEntry", "ReplyStatus", "render_outgoing"):
        assert name in asm_email_rules.__all__
    assert RequestStatus.OPEN.value == "open"
    assert EntryKind.HISTORY.value == "history"
    assert LogEntry.__name__ == "LogEntry"
    assert ReplyStatus.SENT.value == "sent"
    assert callable(render_outgoing)
    for name in asm_email_rules.__all__:
        assert getattr(asm_email_rules, name) is not None, name


class _NoAttachments(InMemoryRepository):
    attachments = None  # type: ignore[assignment]


def test_attachments_is_part_of_the_repository_protocol() -> None:
    """attachments(ref) is in the protocol: a repository without it does not conform."""
    repo = InMemoryRepository()
    assert isinstance(repo, Repository)
    assert "attachments" in dir(Repository)
    repo.put_call(asm_email_rules.Call(1))
    ref = EntityRef(asm_email_rules.EntityKind.CALL, 1)
    repo.attach(ref, Attachment("a.txt", "text/plain", b"x"), "Unspecified", NOW)
    assert list(repo.attachments(ref)) == [Attachment("a.txt", "text/plain", b"x")]
    assert not isinstance(_NoAttachments(), Repository)


def test_listing_calls_and_persons_is_on_seedable_repository_only() -> None:
    """Admin views list calls and persons through SeedableRepository; the minimal Repository
    a host implements for the rules does not need them."""
    for name in ("list_calls", "list_persons", "put_role", "put_group"):
        assert name in dir(SeedableRepository)
        assert name not in dir(Repository)
    for name in ("get_role", "get_group"):
        assert name in dir(Directory)
    repo = InMemoryRepository()
    seed_sample_desk(repo)
    assert [person.id for person in repo.list_persons()] == [1, 2, 3, 4, 5]
    assert [call.number for call in repo.list_calls(status=asm_email_rules.CallStatus.OPEN)] == [
        100,
        102,
    ]


# -- a polling service from the host's parts ----------------------------------------------------
class ListMailbox:
    """The smallest Mailbox a host might write: messages in a dict."""

    def __init__(self, messages: dict[str, bytes]) -> None:
        self.messages = messages
        self.quarantined: dict[str, str] = {}
        self.closed = 0

    def list_keys(self) -> Iterator[str]:
        return iter(sorted(self.messages))

    def fetch(self, key: str) -> bytes:
        return self.messages[key]

    def delete(self, key: str) -> None:
        del self.messages[key]

    def quarantine(self, key: str, reason: str) -> None:
        self.quarantined[key] = reason
        del self.messages[key]

    def close(self) -> None:
        self.closed += 1


class KeysInAList:
    """A host mailbox whose ``list_keys`` returns a ``list``: the protocol takes any iterable
    of keys (mypy --strict on this file checks that it is a Mailbox)."""

    def __init__(self, messages: dict[str, bytes]) -> None:
        self.messages = messages

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


def _raw(subject: str, message_id: str) -> bytes:
    return (
        f"From: {UMA.email}\r\nTo: {DESK_ADDRESS}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nDate: Fri, 27 Nov 2026 11:00:00 +0000\r\n\r\n"
        "The printer is jammed.\r\n"
    ).encode()


def test_a_polling_service_from_parts_deletes_what_it_processed() -> None:
    """ "Once the polling service has processed an incoming email, the email is deleted from
    the mailbox." A host with its own repository, mailer and mailbox shows it without any
    Config or store path: PollingService.from_parts."""
    repo = InMemoryRepository()
    seed_sample_desk(repo)
    mailbox = ListMailbox({"1": _raw("[CALL#100] more", "<a@corp.example>")})
    mailer = RecordingMailer()
    settings = sample_mailbox(auto_reply=True)
    service = PollingService.from_parts(repo, mailer, [(settings, lambda: mailbox)])
    report = service.poll_once()
    assert report["helpdesk"].processed == 1
    assert mailbox.messages == {}  # deleted once processed
    assert mailbox.closed == 1
    assert [mail.subject for mail in mailer.sent] == ["Call 100 has been updated [CALL#100]"]
    assert service.config.store is None


def test_a_mailbox_may_list_its_keys_in_a_list() -> None:
    """``Mailbox.list_keys`` is typed ``Iterable[str]``: the service reads it once, so a host
    mailbox returning a list is a Mailbox to mypy as it is at run time."""
    repo = InMemoryRepository()
    seed_sample_desk(repo)
    mailbox: Mailbox = KeysInAList(
        {"1": _raw("[CALL#100] more", "<a@corp.example>"), "2": _raw("toner", "<b@corp.example>")}
    )

    def opened() -> Mailbox:
        return mailbox

    service = PollingService.from_parts(repo, None, [(sample_mailbox(), opened)])
    assert isinstance(mailbox, Mailbox)
    assert service.poll_once()["helpdesk"].processed == 2
    assert isinstance(mailbox, KeysInAList)
    assert mailbox.messages == {}


def test_from_parts_refuses_two_mailboxes_with_one_name() -> None:
    settings = MailboxSettings(name="same", addresses=(DESK_ADDRESS,))
    with pytest.raises(ValueError, match="two mailboxes are named 'same'"):
        PollingService.from_parts(
            InMemoryRepository(),
            None,
            [(settings, lambda: ListMailbox({})), (settings, lambda: ListMailbox({}))],
            SystemSettings(),
        )


def test_a_configuration_without_store_needs_the_host_repository(tmp_path: Path) -> None:
    """load_config accepts a file without ``store``; bootstrap then needs the host's repository
    and says so, naming the key, when none is passed."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[[accounts]]\nname = "helpdesk"\nprotocol = "maildir"\npath = "Maildir"\n'
        '[accounts.mailbox]\naddresses = ["helpdesk@desk.example"]\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.store is None
    with pytest.raises(ConfigError, match=r":store: no store configured"):
        bootstrap(config)
    repo = InMemoryRepository()
    with bootstrap(config, repository=repo, mailer=None) as wiring:
        assert wiring.repository is repo


# -- a host's own mypy -----------------------------------------------------------------------------
HOST_CODE = """\
from asm_email_rules.adapters.oauth import OAuth2Login
from asm_email_rules.bootstrap import bootstrap
from asm_email_rules.service import PollingService

print(PollingService, OAuth2Login, bootstrap)
"""


def test_host_code_type_checks_without_the_projects_mypy_configuration(tmp_path: Path) -> None:
    """A host runs ``mypy --strict`` on its own code with the library's source on MYPYPATH,
    and with its own configuration, not ours (no ``ignore_missing_imports`` for authlib):
    the library's modules it imports must type-check there too."""
    pytest.importorskip("mypy")
    (tmp_path / "host.py").write_text(HOST_CODE, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            os.devnull,
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "host.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- docs/integrators.md is a complete reference --------------------------------------------------
PROTOCOLS = (Directory, Repository, SeedableRepository)


def _own_methods(protocol: type) -> list[str]:
    return [
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_integrators_guide_gives_every_method_with_its_signature(protocol: type) -> None:
    """Every method of the storage protocols appears in docs/integrators.md with its exact
    parameter list (the names, in order), so the reference cannot drift from the code."""
    text = DOCS.read_text(encoding="utf-8")
    for name in _own_methods(protocol):
        parameters = [
            p for p in inspect.signature(getattr(protocol, name)).parameters if p != "self"
        ]
        match = re.search(rf"`{name}\(([^`]*)\)", text)
        assert match is not None, f"{protocol.__name__}.{name} is missing from integrators.md"
        documented = [
            part.split(":")[0].split("=")[0].strip().lstrip("*")
            for part in match.group(1).split(",")
            if part.strip() and part.strip() != "*"
        ]
        assert documented == parameters, f"{name}: documented {documented}, code {parameters}"
