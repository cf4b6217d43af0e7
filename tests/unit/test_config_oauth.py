"""OAuth2 sign-in in the TOML configuration: each token source loads, each mistake names its key."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli.poll import refuse_misconfigured
from asm_email_rules.config import Config, load_config
from asm_email_rules.errors import ConfigError
from asm_email_rules.signin import (
    AuthMethod,
    ClientAuth,
    ClientCredentialsGrant,
    CommandTokens,
    FileTokens,
    RefreshTokenGrant,
    SaslMechanism,
)

HEAD = """\
store = "desk.sqlite3"
"""

ACCOUNT = """
[[accounts]]
name = "m365"
protocol = "{protocol}"
host = "outlook.office365.com"
username = "desk@contoso.example"
auth = "oauth2"

[accounts.mailbox]
addresses = ["desk@contoso.example"]

[accounts.oauth2]
{oauth2}
"""

M365 = """\
source = "client_credentials"
token_url = "https://login.microsoftonline.com/tenant-id/oauth2/v2.0/token"
client_id = "app-id"
client_secret_env = "TEST_ASM_CLIENT_SECRET"
scope = "https://outlook.office365.com/.default"
"""

GOOGLE = """\
source = "refresh_token"
mechanism = "oauthbearer"
token_url = "https://oauth2.googleapis.com/token"
client_id = "client.apps.googleusercontent.com"
client_secret_file = "secrets/client_secret"
refresh_token_file = "secrets/refresh_token"
"""


def load(tmp_path: Path, oauth2: str, *, protocol: str = "imap", extra: str = "") -> Config:
    text = HEAD + extra + ACCOUNT.format(protocol=protocol, oauth2=oauth2)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_ASM_CLIENT_SECRET", "m365-client-secret")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "client_secret").write_text("google-client-secret\n")
    (tmp_path / "secrets" / "refresh_token").write_text("1//refresh\n")


def test_microsoft_365_client_credentials(tmp_path: Path) -> None:
    config = load(tmp_path, M365, protocol="pop3")
    [account] = config.accounts
    assert account.auth is AuthMethod.OAUTH2
    assert account.oauth2 is not None
    assert account.oauth2.mechanism is SaslMechanism.XOAUTH2
    assert account.oauth2.source == ClientCredentialsGrant(
        token_url="https://login.microsoftonline.com/tenant-id/oauth2/v2.0/token",
        client_id="app-id",
        client_secret="m365-client-secret",
        scope="https://outlook.office365.com/.default",
    )
    assert "m365-client-secret" not in repr(config)


def test_google_refresh_token_from_files(tmp_path: Path) -> None:
    config = load(tmp_path, GOOGLE)
    [account] = config.accounts
    assert account.oauth2 is not None
    assert account.oauth2.mechanism is SaslMechanism.OAUTHBEARER
    source = account.oauth2.source
    assert isinstance(source, RefreshTokenGrant)
    assert source.client_secret == "google-client-secret"
    # the refresh token is read (and a rotated one written back) when tokens are fetched
    assert (source.refresh_token, source.refresh_token_file) == (
        "",
        tmp_path / "secrets" / "refresh_token",
    )
    assert source.client_auth is ClientAuth.POST
    assert "google-client-secret" not in repr(config)


def test_command_as_string_or_array_and_file(tmp_path: Path) -> None:
    config = load(tmp_path, 'source = "command"\ncommand = "oauth2l fetch --scope \'a b\'"')
    oauth2 = config.accounts[0].oauth2
    assert oauth2 is not None
    assert oauth2.source == CommandTokens(("oauth2l", "fetch", "--scope", "a b"))
    config = load(tmp_path, 'source = "command"\ncommand = ["helper", "--json"]\ntimeout = 5')
    oauth2 = config.accounts[0].oauth2
    assert oauth2 is not None
    assert oauth2.source == CommandTokens(("helper", "--json"), 5.0)
    config = load(tmp_path, 'source = "file"\npath = "token.txt"')
    oauth2 = config.accounts[0].oauth2
    assert oauth2 is not None
    assert oauth2.source == FileTokens(tmp_path / "token.txt")


def test_smtp_section_takes_the_same_oauth2_table(tmp_path: Path) -> None:
    smtp = (
        '[smtp]\nhost = "smtp.office365.com"\nusername = "desk@contoso.example"\n'
        'auth = "oauth2"\n[smtp.oauth2]\n' + M365
    )
    config = load(tmp_path, M365, extra=smtp)
    assert config.smtp is not None
    assert config.smtp.oauth2 is not None
    source = config.smtp.oauth2.source
    assert isinstance(source, ClientCredentialsGrant)
    assert source.client_id == "app-id"


@pytest.mark.parametrize(
    ("oauth2", "key", "problem"),
    [
        (M365.replace("client_secret_env", "# "), "oauth2.client_secret", "is required"),
        (M365.replace("https://login", "http://login"), "oauth2.token_url", "https://"),
        (M365 + 'refresh_token = "x"', "oauth2.refresh_token", "does not apply"),
        (M365 + 'client_secret = "inline"', "oauth2.client_secret", "only one of"),
        (M365 + 'mechanism = "plain"', "oauth2.mechanism", "'xoauth2', 'oauthbearer'"),
        (M365.replace("client_credentials", "password"), "oauth2.source", "must be one of"),
        (GOOGLE.replace("refresh_token_file", "# "), "oauth2.refresh_token", "is required"),
        ('source = "command"\ncommand = []', "oauth2.command", "must name a program"),
        ('source = "file"', "oauth2.path", "is required"),
        (M365 + "tokn_url = 1", "oauth2.tokn_url", "unknown key (did you mean 'token_url'?)"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, oauth2: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"accounts\[\d\]\." + key) as caught:
        load(tmp_path, oauth2)
    assert problem in str(caught.value)
    assert "m365-client-secret" not in str(caught.value)


def test_missing_client_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secrets" / "client_secret").unlink()
    with pytest.raises(ConfigError, match=r"client_secret_file: cannot read"):
        load(tmp_path, GOOGLE)


def test_client_secret_file_not_in_utf8_is_a_config_error(tmp_path: Path) -> None:
    # It was a UnicodeDecodeError traceback; the secret itself is never echoed.
    (tmp_path / "secrets" / "client_secret").write_bytes(b"zqk\xe9wvy\n")
    with pytest.raises(ConfigError, match=r"client_secret_file: .* is not UTF-8") as caught:
        load(tmp_path, GOOGLE)
    assert "zqk" not in str(caught.value)


def test_oauth2_needs_its_section_and_excludes_a_password(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    base = HEAD + ACCOUNT.format(protocol="imap", oauth2=M365)
    path.write_text(base.replace("[accounts.oauth2]\n" + M365, ""), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"oauth2: is required with auth = \"oauth2\""):
        load_config(path)
    path.write_text(base.replace('auth = "oauth2"', 'auth = "oauth2"\npassword = "x"'))
    with pytest.raises(ConfigError, match=r"password: does not apply"):
        load_config(path)
    path.write_text(base.replace('auth = "oauth2"', ""), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"oauth2: applies only with auth = \"oauth2\""):
        load_config(path)


def test_plain_http_token_url_is_allowed_on_loopback_only(tmp_path: Path) -> None:
    loopback = M365.replace(
        "https://login.microsoftonline.com/tenant-id", "http://127.0.0.1:8080/tenant"
    )
    config = load(tmp_path, loopback)
    oauth2 = config.accounts[0].oauth2
    assert oauth2 is not None
    assert isinstance(oauth2.source, ClientCredentialsGrant)
    assert oauth2.source.token_url.startswith("http://127.0.0.1")


def test_the_configurations_in_docs_oauth_md_load(tmp_path: Path) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "oauth.md"
    blocks = re.findall(r"```toml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    full = [block for block in blocks if "[[accounts]]" in block]
    assert len(full) == 2  # Microsoft 365 and Google Workspace
    for block in full:
        text = block.replace("/etc/asm-email-rules/", "").replace("/var/lib/asm-email-rules/", "")
        for name in re.findall(r'_file = "([^"]+)"', text):
            (tmp_path / name).write_text("from-a-file\n", encoding="utf-8")
        path = tmp_path / "config.toml"
        path.write_text('store = "desk.sqlite3"\n' + text, encoding="utf-8")
        config = load_config(path)
        assert config.smtp is not None
        assert config.smtp.oauth2 is not None
        assert config.accounts[0].auth is AuthMethod.OAUTH2


def test_poll_says_at_start_up_that_a_rotated_refresh_token_would_be_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check`` reports a refresh token the service cannot keep when Microsoft rotates it (a
    ``refresh_token_file`` whose folder this user cannot write); the service itself said
    nothing until the next process met ``invalid_grant`` and needed a new consent. Now its
    start-up logs what ``check`` says, and it runs on (the token works until it exits). The
    tests run as root, who may write anything: the kernel's answer for the folder is made the
    one another user gets."""
    config = load(tmp_path, GOOGLE)
    folder = tmp_path / "secrets"
    real_access = os.access

    def access(path: object, mode: int, **kwargs: bool) -> bool:
        if Path(str(path)) == folder and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    caplog.set_level(logging.WARNING, logger="asm_email_rules")
    with SqliteRepository(tmp_path / "desk.sqlite3") as repository:
        refuse_misconfigured(config, repository)  # runs on: no ConfigError

    logged = [r for r in caplog.records if "oauth2.refresh_token_file" in r.getMessage()]
    assert [r.levelno for r in logged] == [logging.ERROR]
    assert str(folder) in logged[0].getMessage()
