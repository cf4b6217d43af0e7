"""Review of the reply pump without a worker (``depth=0``: ``send_due``, and the polling service
with ``replies_in_flight = 0``): Ctrl-C while the mailer waits for the SMTP server must stop
the program, not leave ``close()`` waiting forever for an attempt that will never be recorded.

The pump's own contract: "Methods raise only what the repository raises; the pump must be
closed (it is a context manager)", and ``close()`` waits only for what the worker was given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from asm_email_rules.adapters.memory import InMemoryRepository
from asm_email_rules.model import OutgoingEmail, ReplyStatus
from asm_email_rules.outbox_pump import ReplyPump
from asm_email_rules.send import send_due
from asm_email_rules.settings import SystemSettings

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)


def _store() -> InMemoryRepository:
    store = InMemoryRepository()
    for number in (1, 2):
        reply = OutgoingEmail(
            to=f"user{number}@example.com",
            subject=f"Call {number} has been logged [CALL#{number}]",
            body="Thank you.",
            sender="desk@example.com",
            message_id=f"<asm.call-{number}.ctrlc{number}@example.com>",
        )
        store.record_processed("box", f"<m{number}@example.com>", f"s{number}", "{}", reply, T0)
    return store


class CtrlCWhileSending:
    """A mailer interrupted by Ctrl-C while it waits for the server's answer (the
    KeyboardInterrupt comes out of the socket read, on the caller's thread with depth=0)."""

    def send(self, message: OutgoingEmail) -> None:
        raise KeyboardInterrupt


def _send_due(store: InMemoryRepository) -> None:
    send_due(store, CtrlCWhileSending(), SystemSettings(), owner="poller-1", clock=lambda: NOW)


def _pump_step(store: InMemoryRepository) -> None:
    with ReplyPump(
        store, CtrlCWhileSending(), SystemSettings(), owner="poller-1", clock=lambda: NOW, depth=0
    ) as pump:
        pump.offer(store.due_replies(NOW))
        pump.step()


@pytest.mark.parametrize("run", [_send_due, _pump_step], ids=["send_due", "step depth=0"])
def test_ctrl_c_while_a_reply_is_sent_stops_at_once(
    run: Callable[[InMemoryRepository], None],
) -> None:
    """The KeyboardInterrupt comes out within seconds; the reply it interrupted is still
    pending (claimed until the lease expires, then resent with its Message-ID)."""
    store = _store()
    raised: list[BaseException] = []

    def target() -> None:
        try:
            run(store)
        except BaseException as exc:  # what came out is the point
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "Ctrl-C while sending a reply left close() waiting forever"
    assert [type(exc) for exc in raised] == [KeyboardInterrupt]
    assert [entry.status for entry in store.list_replies()] == [ReplyStatus.PENDING] * 2
