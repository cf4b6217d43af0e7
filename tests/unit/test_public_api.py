"""Issue 12, the public API a host drives: names exported, protocols complete, and a polling
service and a configuration that need no store path when the host brings its own parts."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

import asm_email_rules
from asm_email_rules import (
    Action,
    CallTemplate,
    EntryKind,
    LogEntry,
    MailboxSettings,
    ReplyStatus,
    RequestStatus,
    SystemSettings,
    process,
    render_outgoing,
)
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.bootstrap import bootstrap
from asm_email_rules.config import load_config
from asm_email_rules.desk_check import check_mailbox
from asm_email_rules.errors import ConfigError
from asm_email_rules.model import Attachment, EntityRef
from asm_email_rules.protocols import (
    Directory,
    Mailbox,
    Repository,
    RuleReader,
    SeedableRepository,
)
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
PROTOCOLS = (Directory, RuleReader, Repository, SeedableRepository)


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


OPTIONAL_STORE_METHODS = (
    "touch_ledger",
    "prune_ledger",
    "use_token_until",
    "prune_used_tokens",
    "prune_sent_messages",
    "count_quarantined",
    "quarantine_listing",
    "quarantine_outline",
    "purge_quarantined",
)
"""The methods the library looks up by name on a store (``getattr``), outside the protocols."""


@pytest.mark.parametrize("name", OPTIONAL_STORE_METHODS)
def test_integrators_guide_gives_every_optional_store_method_with_its_signature(
    name: str,
) -> None:
    """A host writing its store from docs/integrators.md finds each optional method the
    library calls, with the parameters the reference store has (names in order), in the
    guide's table of optional methods (they were only in storage.md's prose, or nowhere)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("#### Optional methods\n", 1)[-1].split("\n### ", 1)[0]
    match = re.search(rf"`{name}\(([^`]*)\)", section)
    assert match is not None, f"{name} is missing from integrators.md, Optional methods"
    parameters = [
        p for p in inspect.signature(getattr(InMemoryRepository, name)).parameters if p != "self"
    ]
    documented = [
        part.split(":")[0].split("=")[0].strip().lstrip("*")
        for part in re.sub(r"\[[^]]*\]", "", match.group(1)).split(",")
        if part.strip() and part.strip() != "*"
    ]
    assert documented == parameters, f"{name}: documented {documented}, code {parameters}"


def test_integrators_guide_says_how_the_reply_budget_compares_addresses() -> None:
    """The conformance kit counts ``bob+desk@`` in ``bob@``'s reply budget: the guide's
    reference must say so, or a host comparing by ``normalise_address`` (as for persons)
    fails ``sent_messages`` with nothing in the docs to tell it why."""
    text = DOCS.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `replies_sent_since("))
    assert "addresses.mailbox_key" in row


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_integrators_guide_gives_every_read_with_its_return_type(protocol: type) -> None:
    """The Returns column of the guide's tables is the protocol's return annotation: a host
    that typed ``summary`` from the guide's ``(items, total)`` as ``tuple[Sequence[...], int]``
    (as every other read returns a Sequence) failed ``mypy --strict`` against Repository."""
    text = DOCS.read_text(encoding="utf-8")
    for name in _own_methods(protocol):
        row = re.search(rf"^\| `{name}\([^`]*\)` \| `([^`]*)` \|", text, re.MULTILINE)
        if row is None:  # a write: its table has no Returns column
            continue
        documented = row.group(1).replace("\\|", "|")
        assert documented == getattr(protocol, name).__annotations__["return"], name


def _signature_as_documented(function: Callable[..., object]) -> list[str]:
    """``function``'s parameters as the guide writes them: names, ``*`` before the keyword-only
    ones, ``=`` after a name with a default."""
    parts: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name in {"self", "cls"}:
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        has_default = parameter.default is not parameter.empty
        parts.append(parameter.name + ("=" if has_default else ""))
    return parts


@pytest.mark.parametrize(
    ("written", "function"),
    [
        ("check_mailbox", check_mailbox),
        ("PollingService.from_parts", PollingService.from_parts),
    ],
    ids=["check_mailbox", "from_parts"],
)
def test_integrators_guide_gives_functions_with_their_signature(
    written: str, function: Callable[..., object]
) -> None:
    """The functions the guide spells out with their parameters have exactly those: names in
    order, keyword-only ones after ``*``, defaults where the code has them."""
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    match = re.search(rf"`(?:[\w.]+\.)?{re.escape(written)}\(([^`]*)\)`", text)
    assert match is not None, f"{written}(...) is missing from integrators.md"
    documented = [
        re.sub(r"\s*(:[^=]*)?(=.*)?$", lambda m: "=" if m.group(2) else "", part.strip())
        for part in match.group(1).split(",")
        if part.strip()
    ]
    assert documented == _signature_as_documented(function)


def _section(title: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = text.index("\n### ", start + 1)
    return text[start:end]


def test_integrators_guide_lists_every_action_with_its_kind_and_fields() -> None:
    """docs/integrators.md, "The actions a decision holds": one row per class of
    ``actions.Action``, naming its ``kind`` and every field, so the list cannot drift from
    actions.py; and the guide's count of them is right."""
    section = _section("The actions a decision holds")
    classes = typing.get_args(Action)
    for cls in classes:
        rows = [row for row in section.splitlines() if row.startswith(f"| `{cls.__name__}` ")]
        assert len(rows) == 1, f"{cls.__name__} has {len(rows)} rows"
        assert f"(`{cls.kind}`)" in rows[0], cls.__name__
        for field in attrs.fields(cls):
            assert f"`{field.name}`" in rows[0], f"{cls.__name__}.{field.name}"
    assert f"the {len(classes)} actions a decision holds" in DOCS.read_text(encoding="utf-8")


def test_the_actions_are_exported_for_an_exhaustive_match() -> None:
    """A host maps actions with a ``match`` ending in ``assert_never``: the union and every
    class come from the package itself."""
    for cls in typing.get_args(Action):
        assert cls.__name__ in asm_email_rules.__all__
        assert getattr(asm_email_rules, cls.__name__) is cls
    for name in ("Action", "Target", "NEW_CALL"):
        assert name in asm_email_rules.__all__


def test_integrators_guide_names_every_call_template_field() -> None:
    """The call template's fields are in the guide, each with the call field it fills."""
    text = DOCS.read_text(encoding="utf-8")
    table = text[text.index("**The call template.**") :].split("\n\n")[1]
    for field in attrs.fields(CallTemplate):
        assert f"| `{field.name}` |" in table, field.name


class _CountsNotifications(InMemoryRepository):
    def __init__(self) -> None:
        super().__init__()
        self.notifications: list[str] = []

    def record_notification(self, ref: EntityRef, text: str, now: datetime) -> None:
        self.notifications.append(text)
        super().record_notification(ref, text, now)


def test_record_notification_only_logs_and_the_library_sends_the_email() -> None:
    """With Email at Update via Email In the store writes a NOTIFICATION log entry; the email
    goes out once, from the library, through the outbox. The protocol says so, so a host
    does not send it a second time."""
    repo = _CountsNotifications()
    seed_sample_desk(repo)
    mailer = RecordingMailer()
    system = SystemSettings(email_at_update_via_email_in=True)
    process(
        _raw("[CALL#100] more", "<n@corp.example>"), repo, mailer, sample_mailbox(), system, NOW
    )
    assert [mail.to for mail in mailer.sent] == ["alice@desk.example"]
    assert len(repo.notifications) == 1
    doc = inspect.getdoc(Repository.record_notification) or ""
    assert "send nothing" in doc
    assert "Queue" not in doc


def test_integrators_guide_lists_every_reply_template_id() -> None:
    """A host translating the replies reads the ids and placeholders in docs/integrators.md
    ("Reply texts in your own words"); an id added to the catalogue must be listed there."""
    from asm_email_rules.replies import CATALOGUE

    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Reply texts in your own words", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"`([a-z_]+)`", section.split("| id |", 1)[1].split("\n\n", 1)[0]))
    assert set(CATALOGUE) <= listed


def test_the_types_the_guide_names_for_hosts_are_exported() -> None:
    """``ProcessResult.sent`` is a SendOutcome (its ``result`` a SendResult), and a host's
    mailbox or store may implement the optional ExpungingMailbox and LedgerRetention that
    docs/integrators.md and docs/storage.md name: a host imports them from the package."""
    from asm_email_rules import ExpungingMailbox, LedgerRetention, SendOutcome, SendResult

    for name in ("ExpungingMailbox", "LedgerRetention", "SendOutcome", "SendResult"):
        assert name in asm_email_rules.__all__
    mailer = RecordingMailer()
    repository = InMemoryRepository()
    seed_sample_desk(repository)
    raw = (
        f"From: {UMA.email}\r\nSubject: printer\r\nMessage-ID: <exp-1@corp.example>\r\n\r\nhi\r\n"
    ).encode()
    mailbox = sample_mailbox(auto_reply=True)
    result = process(raw, repository, mailer, mailbox, SystemSettings(), NOW)
    assert isinstance(result.sent, SendOutcome)
    assert result.sent.result is SendResult.SENT
    assert isinstance(repository, LedgerRetention)
    assert not isinstance(mailer, ExpungingMailbox)


def test_integrators_guide_says_which_template_create_call_gets() -> None:
    """``apply`` passes ``MailboxSettings.template_for_new_calls`` (the mailbox's partition
    when the template names none) to ``create_call``, and MailboxSettings refuses a template
    in another partition: a host mapping LogCall to its own writes reads this in the guide."""
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "create_call(template=mailbox.template_for_new_calls" in text
    assert "create_call(template=mailbox.call_template" not in text
    assert "MailboxSettings.call_template.partition" in text
    with pytest.raises(ValueError, match=r"MailboxSettings\.call_template\.partition"):
        MailboxSettings(name="eu", partition="EU", call_template=CallTemplate(partition="US"))
    mailbox = MailboxSettings(name="eu", partition="EU", call_template=CallTemplate(name="Mail"))
    assert mailbox.template_for_new_calls == CallTemplate(name="Mail", partition="EU")


def _wrong_arguments() -> list[tuple[str, Callable[[], object], str]]:
    """Each public core function with an argument a host's own data can get wrong (a NULL
    column read as None, bytes from a driver), and the words that name it."""
    from asm_email_rules import (
        Facts,
        OutgoingEmail,
        Person,
        decide,
        parse_message,
        parse_subject,
        resolve_sender,
        truncate_reply,
    )

    email = parse_message(b"From: uma@corp.example\r\nSubject: [CLOSE#1]\r\n\r\nDone.\r\n")
    anything: Any = None
    return [
        ("parse_subject", lambda: parse_subject(anything), "parse_subject(): subject must be str"),
        ("parse_subject bytes", lambda: parse_subject(b"[CLOSE#1]"), "got bytes b'[CLOSE#1]'"),  # type: ignore[arg-type]
        ("resolve_sender", lambda: resolve_sender(anything, []), "address must be str, got None"),
        (
            "resolve_sender email",
            lambda: resolve_sender("uma@corp.example", [Person(id=3, email=anything)]),
            "person 3 has email None, not a str",
        ),
        ("truncate_reply", lambda: truncate_reply(anything), "body must be str, got None"),
        (
            "render_outgoing",
            lambda: render_outgoing(OutgoingEmail(to=anything, subject="s", body="b")),
            "render_outgoing(): message.to must be str, got None",
        ),
        (
            "parse_message limits",
            lambda: parse_message(b"From: a@b.example\r\n\r\nx", limits=anything),
            "parse_message(): limits must be Limits, got None",
        ),
        (
            "decide",
            lambda: decide(anything, MailboxSettings(name="m"), SystemSettings()),
            "decide(): facts must be Facts, got None",
        ),
        (
            "Facts now",
            lambda: Facts(
                email=email,
                command=parse_subject(email.subject),
                sender=resolve_sender(email.sender, []),
                now=anything,
            ),
            "now must be a timezone-aware datetime, got None",
        ),
    ]


@pytest.mark.parametrize(
    ("call", "says"),
    [pytest.param(call, says, id=name) for name, call, says in _wrong_arguments()],
)
def test_a_wrong_argument_is_named_by_a_typed_error_of_ours(
    call: Callable[[], object], says: str
) -> None:
    """A host feeding its own data to the core got AttributeError or a bare TypeError from
    deep inside (``'NoneType' object has no attribute 'isascii'``), and ``parse_message``
    blamed the message for a wrong ``limits`` (MessageParseError, logged as an intake
    failure). Now each raises ArgumentTypeError, an AsmEmailError and a TypeError, naming
    the argument."""
    with pytest.raises(asm_email_rules.ArgumentTypeError) as caught:
        call()
    assert says in str(caught.value)
    assert isinstance(caught.value, asm_email_rules.AsmEmailError)
    assert isinstance(caught.value, TypeError)
