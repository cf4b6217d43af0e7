"""``quarantine_retention_days``: the polling service forgets quarantined messages released or
replayed long ago, so a store kept for years does not become mostly quarantine; held ones and
the ledger's quarantine records stay (docs/operators.md, "Forgetting old entries")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.config import AccountConfig, Config, MailProtocol
from asm_email_rules.quarantine import QuarantineState
from asm_email_rules.sample import sample_mailbox, seed_sample_desk
from asm_email_rules.service import PollingService
from asm_email_rules.settings import SystemSettings

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
GARBAGE = b"\r\n\r\n"  # an empty message: quarantined as "cannot parse"


@attrs.define
class Folder:
    messages: dict[str, bytes]
    set_aside: list[str] = attrs.field(factory=list)

    def list_keys(self) -> Iterator[str]:
        return iter(sorted(self.messages))

    def fetch(self, key: str) -> bytes:
        return self.messages[key]

    def delete(self, key: str) -> None:
        del self.messages[key]

    def quarantine(self, key: str, reason: str) -> None:
        del self.messages[key]
        self.set_aside.append(reason)

    def close(self) -> None:
        pass


@attrs.define
class Clock:
    moment: datetime = T0

    def __call__(self) -> datetime:
        return self.moment


def service(
    store: InMemoryRepository, folder: Folder, clock: Clock, retention_days: int = 90
) -> PollingService:
    account = AccountConfig(
        name="helpdesk", protocol=MailProtocol.MAILDIR, mailbox=sample_mailbox(name="helpdesk")
    )
    config = Config(
        Path("unused"), SystemSettings(quarantine_retention_days=retention_days), None, (account,)
    )
    return PollingService(config, store, None, lambda _: folder, now=clock)


def old_entries(store: InMemoryRepository) -> list[int]:
    """A held entry quarantined 200 days ago, one released 100 days ago, one replayed 10 days
    ago (from another mailbox's poll: 'pop3')."""
    ids = [
        store.quarantine_message(
            "helpdesk", f"Subject: {n}\r\n\r\n".encode(), "bug", T0 - 200 * DAY, source="pop3"
        )
        for n in range(3)
    ]
    store.resolve_quarantined(ids[1], QuarantineState.RELEASED, "back", T0 - 100 * DAY)
    store.resolve_quarantined(ids[2], QuarantineState.REPLAYED, "call 9", T0 - 10 * DAY)
    return ids


def test_a_poll_forgets_entries_released_or_replayed_over_90_days_ago() -> None:
    store = InMemoryRepository()
    seed_sample_desk(store)
    held, _released, replayed = old_entries(store)
    folder = Folder({"1": GARBAGE})
    clock = Clock()
    poller = service(store, folder, clock)
    poller.poll_once()
    assert [e.id for e in store.quarantined(state=None)] == [held, replayed, 4]
    clock.moment += 100 * DAY  # the replayed one is 110 days old now, the new held one 100
    folder.messages["2"] = GARBAGE  # the same bytes again: the ledger still sets them aside
    poller.poll_once()
    assert [e.id for e in store.quarantined(state=None)] == [held, 4]
    assert folder.set_aside == [
        "cannot parse: empty message",
        "quarantined before: cannot parse: empty message",
    ]


def test_zero_keeps_every_entry_and_a_store_without_purge_still_polls() -> None:
    store = InMemoryRepository()
    seed_sample_desk(store)
    old_entries(store)
    service(store, Folder({}), Clock(), retention_days=0).poll_once()
    assert len(store.quarantined(state=None)) == 3

    class HostStore(InMemoryRepository):
        purge_quarantined = None  # type: ignore[assignment]

    host = HostStore()
    seed_sample_desk(host)
    old_entries(host)
    folder = Folder({"1": GARBAGE})
    report = service(host, folder, Clock()).poll_once()
    assert len(host.quarantined(state=None)) == 4
    assert folder.set_aside == ["cannot parse: empty message"]
    assert not any(account.errors for account in report.accounts)


def test_the_setting_is_read_from_system_and_never_negative(tmp_path: Path) -> None:
    from asm_email_rules.config import load_config
    from asm_email_rules.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text("[system]\nquarantine_retention_days = 30\n")
    assert load_config(path).system.quarantine_retention_days == 30
    path.write_text("[system]\n")
    assert load_config(path).system.quarantine_retention_days == 90
    path.write_text("[system]\nquarantine_retention_days = -1\n")
    with pytest.raises(ConfigError, match="quarantine_retention_days"):
        load_config(path)


def test_a_host_stores_unwrapped_error_in_the_purge_does_not_make_poll_once_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The daily purge is housekeeping after the poll's messages are handled, like the other
    prunes: an error a host's ``purge_quarantined`` did not wrap in RepositoryError (a driver's
    OSError) is logged with its traceback and tried again after the next poll, and the host's
    own loop around ``poll_once`` goes on."""

    class FlakyHostStore(InMemoryRepository):
        attempts = 0

        def purge_quarantined(self, before: datetime, **_: object) -> int:
            self.attempts += 1
            if self.attempts == 1:
                raise OSError("driver: connection reset by peer")
            return 0

    store = FlakyHostStore()
    seed_sample_desk(store)
    folder = Folder({"1": GARBAGE})
    poller = service(store, folder, Clock())
    with caplog.at_level("WARNING", logger="asm_email_rules.service"):
        report = poller.poll_once()
    assert [(account.account, account.quarantined) for account in report.accounts] == [
        ("helpdesk", 1)
    ]
    assert folder.set_aside == ["cannot parse: empty message"]
    assert "connection reset by peer" in caplog.text
    assert any(record.exc_info for record in caplog.records)
    poller.poll_once()  # not a day later: the failed purge is tried again
    assert store.attempts == 2


def test_a_retention_of_more_days_than_the_calendar_holds_keeps_everything() -> None:
    """An operator writing a huge number of days (for 'keep them for ever', say 1000000)
    gets what it says: nothing is that old, so nothing is forgotten. ``now - timedelta(days)``
    went below the year 1 and raised OverflowError out of ``poll_once`` at every poll."""
    store = InMemoryRepository()
    seed_sample_desk(store)
    old_entries(store)
    folder = Folder({"1": GARBAGE})
    account = AccountConfig(
        name="helpdesk", protocol=MailProtocol.MAILDIR, mailbox=sample_mailbox(name="helpdesk")
    )
    huge = 1_000_000_000  # beyond timedelta's range too
    system = SystemSettings(quarantine_retention_days=huge, ledger_retention_days=huge)
    poller = PollingService(
        Config(Path("unused"), system, None, (account,)), store, None, lambda _: folder, now=Clock()
    )
    report = poller.poll_once()
    assert [(a.account, a.quarantined, a.errors) for a in report.accounts] == [("helpdesk", 1, 0)]
    assert len(store.quarantined(state=None)) == 4


def test_the_upgrade_guide_says_the_first_poll_forgets_old_resolved_entries() -> None:
    """An operator upgrading reads 'What carries over' before the first ``poll --once``: the
    default of 90 days means that poll forgets every entry released or replayed before then
    (an INFO line says so afterwards); the guide must say it, and how to keep them."""
    guide = Path(__file__).parents[2] / "docs" / "operators.md"
    text = guide.read_text(encoding="utf-8")
    section = text.split("## Upgrading to a newer version", 1)[1].split("\n## ", 1)[0]
    section = " ".join(section.split())
    assert "quarantine_retention_days = 0" in section
    assert "released or replayed more than 90 days ago" in section
