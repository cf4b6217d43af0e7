"""The TOML configuration: a valid file loads into typed settings, every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from asm_email_rules.config import MailProtocol, load_config
from asm_email_rules.errors import ConfigError
from asm_email_rules.settings import (
    CallTemplate,
    Limits,
    MailboxSettings,
    ReopenAssignment,
    SystemSettings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.toml"

VALID = """\
store = "data/helpdesk.sqlite3"

[system]
truncate_incoming_emails = true
reopen_assignment = "group"
max_send_attempts = 3
fatal_smtp_codes = [550, 553]

[system.limits]
max_part_count = 50

[smtp]
host = "smtp.example.org"
security = "tls"
username = "desk"
password = "s3cret"

[[accounts]]
name = "helpdesk"
protocol = "imap"
host = "imap.example.org"
username = "desk"
password_env = "TEST_ASM_IMAP_PASSWORD"
quarantine_folder = "Junk/Quarantine"
interval_seconds = 15
max_messages_per_session = 7

[accounts.mailbox]
addresses = ["helpdesk@example.org", "support@example.org"]
default_logging_analyst_id = 1
create_calls_anonymously = true
update_closed_calls = true
partition = "Default"
separators = ["-----Original Message-----"]

[accounts.mailbox.call_template]
name = "Email call"
assigned_analyst_id = 2
assigned_group = "Service Desk"

[accounts.mailbox.reply_templates]
"call_updated.subject" = "Your call $number was updated"

[[accounts]]
name = "local"
protocol = "maildir"
path = "Maildir"
active = false

[accounts.mailbox]
addresses = ["local@example.org"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ASM_IMAP_PASSWORD", "from-the-environment")


def test_valid_file_loads_into_typed_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.store == tmp_path / "data" / "helpdesk.sqlite3"
    assert config.system.truncate_incoming_emails is True
    assert config.system.reopen_assignment is ReopenAssignment.GROUP
    assert config.system.fatal_smtp_codes == (550, 553)
    assert config.system.limits.max_part_count == 50
    assert config.smtp is not None
    assert (config.smtp.port, config.smtp.security.value) == (465, "tls")
    imap, local = config.accounts
    assert imap.protocol is MailProtocol.IMAP
    assert (imap.port, imap.interval_seconds, imap.max_messages_per_session) == (993, 15.0, 7)
    assert imap.quarantine_folder == "Junk/Quarantine"
    assert imap.mailbox.name == "helpdesk"
    assert imap.mailbox.addresses == ("helpdesk@example.org", "support@example.org")
    assert imap.mailbox.create_calls_anonymously
    assert imap.mailbox.update_closed_calls
    assert not imap.mailbox.update_calls_anonymously
    assert imap.mailbox.partition == "Default"
    assert imap.mailbox.call_template.assigned_analyst_id == 2
    assert imap.mailbox.reply_templates == {"call_updated.subject": "Your call $number was updated"}
    assert local.path == tmp_path / "Maildir"
    assert local.active is False
    assert local.quarantine_folder == ".Quarantine"
    assert config.account("local") is local


def test_reply_retry_and_lease_times_load_with_their_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert (config.system.reply_retry_hours, config.system.lease_seconds) == (24.0, 120.0)
    text = VALID.replace("max_send_attempts = 3", "reply_retry_hours = 2.5\nlease_seconds = 30")
    config = load_config(write(tmp_path, text))
    assert (config.system.reply_retry_hours, config.system.lease_seconds) == (2.5, 30.0)


def test_password_comes_from_the_named_environment_variable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.accounts[0].password == "from-the-environment"
    assert "from-the-environment" not in repr(config)


def test_missing_environment_variable_names_key_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_ASM_IMAP_PASSWORD")
    path = write(tmp_path, VALID)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert "accounts[1].password_env" in message
    assert "TEST_ASM_IMAP_PASSWORD" in message


@pytest.mark.parametrize(
    ("old", "new", "key", "what"),
    [
        (
            "interval_seconds = 15",
            "interval_seconds = 0",
            "accounts[1].interval_seconds",
            "greater",
        ),
        (
            'host = "imap.example.org"',
            'host = "imap.example.org"\nport = "143"',
            "accounts[1].port",
            "integer",
        ),
        (
            'host = "imap.example.org"',
            'host = "imap.example.org"\nport = 70000',
            "accounts[1].port",
            "between 1 and 65535",
        ),
        ('protocol = "maildir"', 'protocol = "mbox"', "accounts[2].protocol", "'imap'"),
        ('security = "tls"', 'security = "ssl"', "smtp.security", "'starttls'"),
        (
            # RFC 5321 4.1.2: MAIL FROM takes one path; a line break would add a command.
            'username = "desk"',
            'username = "desk"\nenvelope_sender = "b@x.example\\r\\nRCPT TO:<y@x.example>"',
            "smtp.envelope_sender",
            "is not an address",
        ),
        (
            'reopen_assignment = "group"',
            'reopen_assignment = "nobody"',
            "system.reopen_assignment",
            "'keep'",
        ),
        ("max_part_count = 50", "max_part_count = 0", "system.limits.max_part_count", ">= 1"),
        (
            "fatal_smtp_codes = [550, 553]",
            "fatal_smtp_codes = [250]",
            "system.fatal_smtp_codes",
            "500 to 599",
        ),
        (
            "create_calls_anonymously = true",
            'create_calls_anonymously = "yes"',
            "accounts[1].mailbox.create_calls_anonymously",
            "true or false",
        ),
        (
            'addresses = ["local@example.org"]',
            "addresses = []",
            "accounts[2].mailbox.addresses",
            "at least one",
        ),
        (
            'addresses = ["local@example.org"]',
            'addresses = ["not an address"]',
            "accounts[2].mailbox.addresses",
            "not an email address",
        ),
        (
            "assigned_analyst_id = 2",
            'assigned_analyst_id = "Alice"',
            "accounts[1].mailbox.call_template.assigned_analyst_id",
            "integer",
        ),
        (
            '"call_updated.subject"',
            '"call_updatd.subject"',
            'accounts[1].mailbox.reply_templates."call_updatd.subject"',
            "call_updated.subject",
        ),
        ('name = "local"', 'name = "helpdesk"', "accounts[2].name", "duplicate"),
        ('name = "local"', 'name = "my desk"', "accounts[2].name", "letters, digits"),
        (
            'path = "Maildir"',
            'path = "Maildir"\nhost = "x"',
            "accounts[2].host",
            "only to imap and pop3",
        ),
        ('path = "Maildir"', "", "accounts[2].path", "required"),
        ('username = "desk"\npassword_env', "password_env", "accounts[1].username", "required"),
        (
            'password = "s3cret"',
            'password = "s3cret"\npassword_env = "X"',
            "smtp.password_env",
            "not both",
        ),
        ('store = "data/helpdesk.sqlite3"', 'store = ""', "store", "must name"),
        (
            "max_messages_per_session = 7",
            "max_messages_per_session = 0",
            "accounts[1].max_messages_per_session",
            ">= 1",
        ),
        (
            "max_send_attempts = 3",
            "max_send_attempts = 3\nreply_retry_hours = 0",
            "system.reply_retry_hours",
            "greater than 0",
        ),
        (
            "max_send_attempts = 3",
            'max_send_attempts = 3\nlease_seconds = "2m"',
            "system.lease_seconds",
            "a number",
        ),
        (
            "max_send_attempts = 3",
            "max_send_attempts = 3\nreplies_in_flight = -1",
            "system.replies_in_flight",
            "between 0 and 1000, got -1",
        ),
        (
            "max_send_attempts = 3",
            "max_send_attempts = 3\nreplies_in_flight = 100000",
            "system.replies_in_flight",
            "between 0 and 1000",
        ),
        (
            "max_send_attempts = 3",
            'max_send_attempts = 3\nreplies_in_flight = "2"',
            "system.replies_in_flight",
            "an integer",
        ),
        # a misspelt section or required key is named itself, not by what it leaves missing
        # a misspelt section: its keys land elsewhere, and what is missing then is not the news
        (
            '[accounts.mailbox]\naddresses = ["helpdesk',
            '[account.mailbox]\naddresses = ["helpdesk',
            "account",
            "unknown key (did you mean 'accounts'?)",
        ),
        (
            '[accounts.mailbox]\naddresses = ["helpdesk',
            '[mailbox]\naddresses = ["helpdesk',
            "mailbox",
            "unknown key (it goes under an account: [accounts.mailbox])",
        ),
        (
            "[smtp]\nhost =",
            "[smpt]\nhost =",
            "smpt",
            "unknown key (did you mean 'smtp'?)",
        ),
        # a misspelt required key: the key it leaves missing is named, and the typo with it
        (
            'host = "smtp.example.org"',
            'hots = "smtp.example.org"',
            "smtp.host",
            "is required ('hots' is written instead: a typo of 'host'?)",
        ),
        (
            'addresses = ["helpdesk@',
            'adresses = ["helpdesk@',
            "accounts[1].mailbox.addresses",
            "('adresses' is written instead: a typo of 'addresses'?)",
        ),
        (
            'path = "Maildir"',
            'paht = "Maildir"',
            "accounts[2].path",
            "is required ('paht' is written instead: a typo of 'path'?)",
        ),
    ],
)
def test_each_mistake_names_file_key_and_problem(
    tmp_path: Path, old: str, new: str, key: str, what: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{key}: "), message
    assert what in message


def test_a_call_template_outside_the_mailboxs_partition_is_refused(tmp_path: Path) -> None:
    """A mailbox limited to one partition whose call template logs into another would treat
    every call it logged as an invalid number: each answer would log another call."""
    text = VALID.replace('name = "Email call"', 'name = "Email call"\npartition = "Finance"', 1)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:accounts[1].mailbox.call_template.partition: "), message
    assert "outside the mailbox's partition 'Default'" in message
    with pytest.raises(ValueError, match=r"call_template\.partition"):
        MailboxSettings(partition="Default", call_template=CallTemplate(partition="Finance"))


def test_a_mailbox_partition_is_where_a_template_without_one_logs(tmp_path: Path) -> None:
    mailbox = load_config(write(tmp_path, VALID)).accounts[0].mailbox
    assert mailbox.call_template.partition == ""
    assert mailbox.template_for_new_calls.partition == "Default"
    assert MailboxSettings().template_for_new_calls == CallTemplate()


@pytest.mark.parametrize(
    ("old", "new", "key", "hint"),
    [
        (
            "max_send_attempts = 3",
            "max_send_atempts = 3",
            "system.max_send_atempts",
            "max_send_attempts",
        ),
        ("interval_seconds = 15", "intervall = 15", "accounts[1].intervall", "interval_seconds"),
        (
            "update_closed_calls = true",
            "update_closed_call = true",
            "accounts[1].mailbox.update_closed_call",
            "update_closed_calls",
        ),
        ('store = "data', 'stor = "x"\nstore = "data', "stor", "store"),
    ],
)
def test_typos_are_unknown_keys_with_a_suggestion(
    tmp_path: Path, old: str, new: str, key: str, hint: str
) -> None:
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{key}: unknown key"), message
    assert f"did you mean {hint!r}" in message


def test_invalid_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path, 'store = "x"\n[system\n')
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_config(bad)
    assert str(bad) in str(caught.value)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_a_file_saved_in_another_encoding_is_a_config_error_naming_the_byte(
    tmp_path: Path,
) -> None:
    # TOML is UTF-8; an editor that saved the file as Latin-1 gave a UnicodeDecodeError
    # traceback instead of the one-line error operators are promised.
    path = tmp_path / "config.toml"
    path.write_bytes(VALID.replace('name = "helpdesk"', 'name = "Général"', 1).encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 \(byte \d+ is b'\\xe9'\)") as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path))


def test_a_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    # Windows Notepad writes a UTF-8 byte order mark; tomllib called it "Invalid statement
    # (at line 1, column 1)", which names nothing an operator can see.
    marked, plain = tmp_path / "marked.toml", tmp_path / "plain.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + VALID.encode("utf-8"))
    plain.write_text(VALID, encoding="utf-8")
    assert load_config(marked).accounts == load_config(plain).accounts


def test_a_password_file_gives_smtp_and_accounts_their_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mail server's pipe runs `deliver` with no environment: password_env cannot reach it.
    (tmp_path / "smtp-password").write_text("smtp-s3cret\n", encoding="utf-8")
    (tmp_path / "imap-password").write_text("imap-s3cret\n", encoding="utf-8")
    text = VALID.replace('password = "s3cret"', 'password_file = "smtp-password"', 1).replace(
        'password_env = "TEST_ASM_IMAP_PASSWORD"', 'password_file = "imap-password"', 1
    )
    monkeypatch.delenv("TEST_ASM_IMAP_PASSWORD", raising=False)
    config = load_config(write(tmp_path, text))
    assert config.smtp is not None
    assert (config.smtp.password, config.accounts[0].password) == ("smtp-s3cret", "imap-s3cret")
    assert "s3cret" not in repr(config)
    assert load_config(write(tmp_path, text), secrets=False).accounts[0].password == ""
    both = text.replace('password_file = "smtp-password"', 'password_file = "x"\npassword = "y"')
    with pytest.raises(ConfigError, match=r"smtp\.password_file: give only one of password,"):
        load_config(write(tmp_path, both))
    (tmp_path / "imap-password").unlink()
    with pytest.raises(ConfigError, match=r"accounts\[1\]\.password_file: cannot read"):
        load_config(write(tmp_path, text))
    maildir = text.replace('path = "Maildir"', 'path = "Maildir"\npassword_file = "x"', 1)
    with pytest.raises(ConfigError, match=r"accounts\[2\]\.password_file: applies only to"):
        load_config(write(tmp_path, maildir), secrets=False)


def test_unknown_account_name_lists_the_configured_ones(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    with pytest.raises(ConfigError, match="helpdesk, local"):
        config.account("sales")


def test_examples_config_documents_every_key_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ASM_IMAP_PASSWORD", "ASM_SMTP_PASSWORD", "ASM_POP3_PASSWORD"):
        monkeypatch.setenv(name, "example")
    config = load_config(EXAMPLE)
    assert [a.name for a in config.accounts] == ["helpdesk", "field-team", "local"]
    assert [a.protocol for a in config.accounts] == list(MailProtocol)
    assert config.smtp is not None
    text = EXAMPLE.read_text(encoding="utf-8")
    # every mailbox and system option is mentioned (commented or set)
    tables = {"call_template", "limits", "reply_templates"}
    for cls in (MailboxSettings, SystemSettings, CallTemplate, Limits):
        for field in attrs.fields(cls):
            if field.name in tables or (field.name == "name" and cls is MailboxSettings):
                continue
            assert f"{field.name} =" in text, f"{cls.__name__}.{field.name} not documented"
    for table in ("[system.limits]", "[accounts.mailbox.call_template]", "[smtp]"):
        assert table in text
    assert "[accounts.mailbox.reply_templates]" in text


def test_a_configuration_without_store_loads_for_a_host_with_its_own_repository(
    tmp_path: Path,
) -> None:
    """Issue 12: load_config no longer insists on ``store``; only what needs the store says
    so, naming the file and the key."""
    path = write(tmp_path, VALID.replace('store = "data/helpdesk.sqlite3"', "", 1))
    config = load_config(path)
    assert config.store is None
    assert [account.name for account in config.accounts] == ["helpdesk", "local"]
    with pytest.raises(ConfigError) as caught:
        config.require_store()
    assert str(caught.value).startswith(f"{path}:store: no store configured")


@pytest.mark.parametrize("value", ["", "<>", "bounces@x.example", "Bounces <bounces@x.example>"])
def test_envelope_sender_takes_an_address_or_the_null_path(tmp_path: Path, value: str) -> None:
    text = VALID.replace('username = "desk"', f'username = "desk"\nenvelope_sender = "{value}"', 1)
    config = load_config(write(tmp_path, text), secrets=False)
    assert config.smtp is not None
    assert config.smtp.envelope_sender == value


def test_an_smtp_config_built_in_code_refuses_a_line_break_in_the_envelope_sender() -> None:
    from asm_email_rules.connection import SmtpConfig

    with pytest.raises(ValueError, match="envelope_sender"):
        SmtpConfig(host="smtp.example.org", envelope_sender="b@x.example\nRCPT TO:<y@x.example>")


@pytest.mark.parametrize("value", [0, -1, 1001, 2.5, "20"])
def test_settings_built_in_code_refuse_a_messages_per_commit_out_of_range(value: object) -> None:
    """An embedder's SystemSettings is checked as the configuration file is: a whole number
    from 1 to 1000 (a wrong one would fail later, inside a poll)."""
    with pytest.raises((TypeError, ValueError), match="messages_per_commit"):
        SystemSettings(messages_per_commit=value)  # type: ignore[arg-type]
