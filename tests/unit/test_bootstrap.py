"""The composition root: what bootstrap builds from a configuration, and what it leaves alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from asm_email_rules.adapters.maildir import MaildirMailbox
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.adapters.recording import RecordingMailer
from asm_email_rules.adapters.smtp import SmtpMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.bootstrap import (
    bootstrap,
    mailbox_factory,
    make_mailer,
    open_sample_store,
    open_store,
)
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.connection import SmtpConfig
from asm_email_rules.errors import ConfigError, RepositoryError
from asm_email_rules.sample import sample_mailbox
from asm_email_rules.settings import SystemSettings


def config(tmp_path: Path, *, smtp: SmtpConfig | None = None) -> Config:
    account = AccountConfig(
        name="helpdesk",
        protocol=MailProtocol.MAILDIR,
        mailbox=sample_mailbox(),
        path=tmp_path / "Maildir",
    )
    return Config(tmp_path / "store.sqlite3", SystemSettings(), smtp, (account,))


def test_bootstrap_opens_the_configured_store_and_closes_it_on_exit(tmp_path: Path) -> None:
    with bootstrap(config(tmp_path)) as wiring:
        assert isinstance(wiring.repository, SqliteRepository)
        assert wiring.mailer is None  # no [smtp]: replies are recorded, not sent
        assert wiring.service.poll_once()["helpdesk"].processed == 0
    assert (tmp_path / "store.sqlite3").is_file()
    with pytest.raises(RepositoryError, match="closed database"):
        wiring.repository.get_call(100)


def test_bootstrap_uses_what_the_host_passes_and_leaves_its_store_open(tmp_path: Path) -> None:
    store = InMemoryRepository()
    mailer = RecordingMailer()
    with bootstrap(config(tmp_path), repository=store, mailer=mailer) as wiring:
        assert wiring.repository is store
        assert wiring.service.repository is store
        assert wiring.service.mailer is mailer
    assert not (tmp_path / "store.sqlite3").exists()  # nothing opened behind the host's back
    assert store.get_call(100) is None  # still usable


def test_make_mailer_is_the_smtp_section_or_none(tmp_path: Path) -> None:
    assert make_mailer(config(tmp_path)) is None
    mailer = make_mailer(config(tmp_path, smtp=SmtpConfig(host="smtp.example.org")))
    assert isinstance(mailer, SmtpMailer)
    assert mailer.config.host == "smtp.example.org"


def test_open_store_that_must_exist_names_the_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite3"
    with pytest.raises(ConfigError, match="store not found") as caught:
        open_store(missing, must_exist=True)
    assert str(missing) in str(caught.value)
    assert not missing.exists()


def test_a_store_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="cannot open the store"):
        open_store(junk)


def test_a_store_that_cannot_be_used_now_is_not_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read-only, full or locked when the program starts: something to wait for (exit 3, the
    # service backs off), not a configuration to fix (exit 2).
    import asm_email_rules.adapters.sqlite as sqlite_adapter
    from asm_email_rules.errors import StoreUnavailableError

    def read_only(*args: object, **kwargs: object) -> None:
        raise StoreUnavailableError("x.sqlite3: attempt to write a readonly database")

    monkeypatch.setattr(sqlite_adapter, "SqliteRepository", read_only)
    with pytest.raises(StoreUnavailableError):
        open_store(tmp_path / "x.sqlite3")


def test_a_store_in_a_folder_that_does_not_exist_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"typo does not exist or is not a folder"):
        open_store(tmp_path / "typo" / "helpdesk.sqlite3")
    assert not (tmp_path / "typo").exists()
    # a folder where the file should be: a configuration to fix, not a store to wait for
    (tmp_path / "folder.sqlite3").mkdir()
    with pytest.raises(ConfigError, match="it is not a file"):
        open_store(tmp_path / "folder.sqlite3")


def test_the_sample_store_holds_the_sample_desk(tmp_path: Path) -> None:
    in_memory = open_sample_store()
    assert in_memory.get_call(100) is not None
    on_disk = open_sample_store(tmp_path / "demo.sqlite3")
    assert isinstance(on_disk, SqliteRepository)
    assert on_disk.get_task(500) is not None
    on_disk.close()


def test_the_mailbox_factory_opens_the_account_s_maildir(tmp_path: Path) -> None:
    account = config(tmp_path).accounts[0]
    box = mailbox_factory()(account)
    assert isinstance(box, MaildirMailbox)
    assert box.path == tmp_path / "Maildir"
    assert list(box.list_keys()) == []
    box.close()


def test_a_missing_store_says_where_a_relative_store_is_looked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A config.toml moved out of the folder init wrote it in (to /etc, say) keeps its
    # relative 'store = "helpdesk.sqlite3"', which then names a file beside the moved config.
    # The error only said "create one with `asm-email-rules init`", which init had just done.
    from asm_email_rules.cli import main

    assert main(["init", str(tmp_path / "desk")]) == 0
    moved = tmp_path / "etc" / "config.toml"
    moved.parent.mkdir()
    (tmp_path / "desk" / "config.toml").rename(moved)
    capsys.readouterr()
    assert main(["people", "list", "--config", str(moved)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'etc' / 'helpdesk.sqlite3'}: store not found" in err
    assert "taken from the configuration file's folder" in err


def test_poll_says_when_it_created_the_store_the_configuration_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A typo in 'store' (helpdsk.sqlite3) made poll create a new, empty store in silence: with
    # no default_logging_analyst_id set it then discarded every sender as unknown, and with
    # one it refused "person 1 does not exist", naming the id rather than the store.
    from asm_email_rules.cli import main

    assert main(["init", str(tmp_path)]) == 0
    config = tmp_path / "config.toml"
    config.write_text(
        config.read_text().replace('store = "helpdesk.sqlite3"', 'store = "helpdsk.sqlite3"')
    )
    capsys.readouterr()
    assert main(["poll", "--once", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"store {tmp_path / 'helpdsk.sqlite3'} did not exist: created a new, empty one" in err
    assert main(["poll", "--once", "--config", str(config)]) == 0
    assert "did not exist" not in capsys.readouterr().err  # said once, when it was made
