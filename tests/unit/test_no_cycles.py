"""Processing a message leaves no reference cycle: its bytes are freed when it is done.

A cycle (the intake's reader holding an object that holds the reader) keeps each message's
bytes, its decoded parts and attachments alive until Python's cyclic garbage collector runs,
not when the message is done; on a pass over a mailbox the peak memory then holds several
large messages at once. A review of the benchmark found the peak above the warm state at
3.4x to 4.5x the largest message, against 1.8x the same morning, from one such cycle (the
charset hints kept on the reader referred back to it). docs/scaling.md, "Memory": at most 3x.
"""

from __future__ import annotations

import base64
import gc
from pathlib import Path

import pytest

from asm_email_rules import parse_message
from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.pipeline import process
from asm_email_rules.sample import DEMO_NOW, DEMO_SYSTEM, sample_mailbox, seed_sample_desk

INBOX = Path(__file__).resolve().parents[2] / "src" / "asm_email_rules" / "demo_inbox"
SIGNED = (Path(__file__).resolve().parent / "smime" / "signed.der").read_bytes()


def _signed_mail() -> bytes:
    body = base64.encodebytes(SIGNED).decode("ascii")
    return (
        "From: Uma User <uma@corp.example>\r\nTo: helpdesk@desk.example\r\nSubject: signed\r\n"
        'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{body}"
    ).encode("ascii")


MESSAGES = {path.name: path.read_bytes() for path in sorted(INBOX.glob("*.eml"))}
MESSAGES["opaque-signed S/MIME"] = _signed_mail()


def _ours_or_large(item: object) -> bool:
    """An object of the library's own, or message-sized data: what a cycle must not keep.
    (The standard library's ``email.headerregistry`` makes a small class per header it
    parses, and a class is a cycle of its own: that is not the message.)"""
    if isinstance(item, bytes | bytearray | str | memoryview):
        return len(item) >= 1024
    return type(item).__module__.startswith("asm_email_rules")


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_parsing_and_processing_a_message_leave_no_cycle_holding_it(name: str) -> None:
    repository = InMemoryRepository()
    seed_sample_desk(repository)
    raw = MESSAGES[name]
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        parse_message(raw)
        process(raw, repository, None, sample_mailbox(), DEMO_SYSTEM, DEMO_NOW)
        gc.collect()
        kept = [type(item).__name__ for item in gc.garbage if _ours_or_large(item)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert kept == [], f"{name}: only the cyclic collector frees {kept}"
