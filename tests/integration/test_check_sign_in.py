"""``check`` signs in to a real Dovecot (IMAP and POP3) and a real SMTP server, sending nothing.

Issue 11: "``check --config F`` ... signs in to every account and to SMTP, and says what it
found"; item 8: "errors print Python bytes (``b'[AUTHENTICATIONFAILED]...'``)".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.sample import DESK_ADDRESS, seed_sample_desk

if TYPE_CHECKING:
    from conftest import Dovecot, SmtpFactory

pytestmark = pytest.mark.integration

CONFIG = """\
store = "helpdesk.sqlite3"

[smtp]
host = "{smtp_host}"
port = {smtp_port}
security = "plain"
username = "desk"
password_env = "CHECK_SMTP_PASSWORD"
timeout = 10

[[accounts]]
name = "imap-desk"
protocol = "imap"
host = "{host}"
port = {imap_port}
security = "plain"
username = "{user}"
password_env = "CHECK_IMAP_PASSWORD"
timeout = 10

[accounts.mailbox]
addresses = ["{desk}"]
default_logging_analyst_id = 1

[[accounts]]
name = "pop-desk"
protocol = "pop3"
host = "{host}"
port = {pop3_port}
security = "plain"
username = "{user}"
password_env = "CHECK_IMAP_PASSWORD"
timeout = 10

[accounts.mailbox]
addresses = ["{desk}"]
default_logging_analyst_id = 1
"""


# the loopback SMTP server takes AUTH without TLS (aiosmtpd warns of it; nothing leaves the host)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_check_signs_in_everywhere_and_names_what_failed_in_plain_words(
    dovecot: Dovecot,
    mail_user: str,
    smtp_server: SmtpFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    smtp = smtp_server(auth=("desk", "smtp-secret"))
    with SqliteRepository(tmp_path / "helpdesk.sqlite3") as repo:
        seed_sample_desk(repo)
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            host=dovecot.host,
            imap_port=dovecot.imap_port,
            pop3_port=dovecot.pop3_port,
            user=mail_user,
            desk=DESK_ADDRESS,
        ),
        encoding="utf-8",
    )
    dovecot.append(mail_user, b"Subject: one\r\n\r\nbody\r\n")
    dovecot.append(mail_user, b"Subject: two\r\n\r\nbody\r\n")
    monkeypatch.setenv("CHECK_IMAP_PASSWORD", "secret")
    monkeypatch.setenv("CHECK_SMTP_PASSWORD", "smtp-secret")
    code = main(["check", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert f"accounts[1] (imap-desk): IMAP {dovecot.host}:{dovecot.imap_port}" in out
    assert "2 messages waiting" in out
    assert "accounts[2] (pop-desk): POP3" in out
    assert f"smtp: SMTP {smtp.host}:{smtp.port} (plain): signed in as desk" in out
    assert smtp.envelopes == []  # nothing sent
    assert len(dovecot.messages(mail_user)) == 2  # nothing read away

    monkeypatch.setenv("CHECK_IMAP_PASSWORD", "wrong")
    monkeypatch.setenv("CHECK_SMTP_PASSWORD", "wrong")
    code = main(["check", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 3
    assert "accounts[1] (imap-desk): FAILED:" in out
    assert "accounts[2] (pop-desk): FAILED:" in out
    assert "smtp: FAILED:" in out
    assert "check: not ready (0 errors, 0 warnings, 3 sign-ins failed)" in out  # counted
    assert "AUTHENTICATIONFAILED" in out  # Dovecot's own words ...
    assert "b'" not in out  # ... not Python's bytes repr
    assert "b'" not in err
    assert "wrong" not in out  # never the password
