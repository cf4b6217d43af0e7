"""MaildirMailbox on a temporary folder: deletes on close, Maildir++ quarantine with reason."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from asm_email_rules.adapters.maildir import QUARANTINE_HEADER, MaildirMailbox, annotate
from asm_email_rules.errors import MailboxError
from asm_email_rules.protocols import Mailbox

pytestmark = pytest.mark.integration


def test_list_fetch_delete_quarantine_then_reopen(
    tmp_path: Path, make_message: Callable[..., bytes]
) -> None:
    sent = [make_message(n) for n in (1, 2, 3)]
    with MaildirMailbox(tmp_path / "Maildir") as box:
        assert isinstance(box, Mailbox)
        keys = [box.add(raw) for raw in sent]
        assert list(box.list_keys()) == keys
        assert [box.fetch(key) for key in keys] == sent
        box.delete(keys[0])
        box.quarantine(keys[1], "loop detected:\nsame Message-ID")
        assert list(box.list_keys()) == [keys[2]]

    reopened = MaildirMailbox(tmp_path / "Maildir")
    assert [reopened.fetch(key) for key in reopened.list_keys()] == [sent[2]]

    folder = tmp_path / "Maildir" / ".Quarantine"
    assert (folder / "maildirfolder").exists()  # a Maildir++ sub-folder mail clients show
    held = mailbox.Maildir(folder, factory=None)
    [quarantined] = [held.get_bytes(key) for key in held.keys()]  # noqa: SIM118
    assert quarantined.endswith(sent[1])
    msg = BytesParser(policy=policy.default).parsebytes(quarantined)
    assert msg[QUARANTINE_HEADER] == "loop detected: same Message-ID"


def test_new_and_cur_are_both_listed_in_delivery_order(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "cur" / "1700000002.M1P1.host:2,S").write_bytes(b"Subject: b\n\nsecond\n")
    (root / "new" / "1700000001.M1P1.host").write_bytes(b"Subject: a\n\nfirst\n")
    (root / "tmp" / "1700000000.M1P1.host").write_bytes(b"Subject: t\n\nbeing delivered\n")
    box = MaildirMailbox(root)
    assert [box.fetch(key) for key in box.list_keys()] == [
        b"Subject: a\n\nfirst\n",
        b"Subject: b\n\nsecond\n",
    ]


def test_delete_is_idempotent_and_unknown_fetch_is_an_error(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "Maildir")
    key = box.add(b"Subject: x\n\nbody\n")
    box.delete(key)
    box.delete(key)
    with pytest.raises(MailboxError, match="no message"):
        box.fetch(key)
    with pytest.raises(MailboxError, match="no message"):
        box.quarantine(key, "gone")


def test_quarantine_keeps_lf_messages_in_lf(tmp_path: Path) -> None:
    raw = b"Subject: lf\n\nbody\n"
    assert annotate(raw, "why") == b"X-ASM-Quarantine-Reason: why\n" + raw
    assert annotate(raw.replace(b"\n", b"\r\n"), "why").startswith(
        b"X-ASM-Quarantine-Reason: why\r\nSubject"
    )


def test_unusable_path_is_a_mailbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MailboxError, match="cannot open"):
        MaildirMailbox(blocker / "Maildir")


def test_delete_hides_at_once_and_unlinks_on_close_abort_keeps_the_message(
    tmp_path: Path,
) -> None:
    # The polling service makes its store durable between the two (docs/transport.md).
    root = tmp_path / "Maildir"
    box = MaildirMailbox(root)
    kept, gone = box.add(b"Subject: kept\n\n1\n"), box.add(b"Subject: gone\n\n2\n")
    assert list(box.list_keys()) == [kept, gone]
    box.delete(gone)
    assert list(box.list_keys()) == [kept]
    assert len(list((root / "new").iterdir())) == 2  # the file is still there
    box.close()
    assert [p.read_bytes() for p in (root / "new").iterdir()] == [b"Subject: kept\n\n1\n"]

    again = MaildirMailbox(root)
    again.delete(next(again.list_keys()))
    again.abort()
    assert [MaildirMailbox(root).fetch(key) for key in MaildirMailbox(root).list_keys()] == [
        b"Subject: kept\n\n1\n"
    ]


def test_mail_delivered_in_the_same_second_is_read_in_delivery_order(tmp_path: Path) -> None:
    # Other programs write the microsecond field unpadded: M5 came before M40000, which sorts
    # after it as text. The counter (Q) decides within the same microsecond.
    root = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "new" / "1700000000.M40000P7Q1.host").write_bytes(b"Subject: 3\n\nthird\n")
    (root / "new" / "1700000000.M5P7Q3.host").write_bytes(b"Subject: 2\n\nsecond\n")
    (root / "new" / "1700000000.M5P7Q2.host").write_bytes(b"Subject: 1\n\nfirst\n")
    box = MaildirMailbox(root)
    assert [box.fetch(key).split(b"\n")[0] for key in box.list_keys()] == [
        b"Subject: 1",
        b"Subject: 2",
        b"Subject: 3",
    ]


def test_names_we_write_have_a_zero_padded_microsecond_field(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "Maildir")
    keys = [box.add(f"Subject: {n}\n\nbody\n".encode()) for n in range(30)]
    for key in keys:
        micro = key.split(".")[1]
        assert micro.startswith("M"), key
        assert len(micro.split("P")[0]) == len("M000000"), key
    assert sorted(keys) == keys  # text order is delivery order
    assert list(box.list_keys()) == keys


def test_a_maildir_with_only_new_is_completed_and_read(tmp_path: Path) -> None:
    # What a mail server or a hand-made folder often leaves: new/ and nothing else.
    root = tmp_path / "Maildir"
    (root / "new").mkdir(parents=True)
    (root / "new" / "1700000001.M1P1.host").write_bytes(b"Subject: a\n\nfirst\n")
    box = MaildirMailbox(root)
    assert [box.fetch(key) for key in box.list_keys()] == [b"Subject: a\n\nfirst\n"]
    assert (root / "cur").is_dir()
    assert (root / "tmp").is_dir()
