"""Pollers to kill: the polling service in child processes, with tripwires and a fake clock.

Each child is the real service (configuration file, SQLite store, Maildir or IMAP, SMTP) built
by :func:`~asm_email_rules.bootstrap.bootstrap`, with three things changed:

- *tripwires*: the store, the mailbox and the mailer count their calls as events; the child
  SIGKILLs itself at the event its :class:`Plan` names (after writing the event's name to
  ``killed-at``), or right after the SMTP server accepted its n-th reply (the server's 250
  is in, the outbox does not know yet);
- *a fake clock*: real time plus ``clock_offset`` seconds, so a restarted poller can stand
  after the lease of the one that died, without the test waiting for it;
- it polls until a pass finds nothing to do, then exits 0 (4 when told to stop as soon as
  another poller holds the account, 3 past its deadline).

Children are forked from a forkserver that has imported the library once (a fresh
interpreter takes a second or more to import it on a loaded machine), and only this module's
public names are used, so the same harness measures an older version of the library too
(whatever ``asm_email_rules`` is importable): methods an older store lacks are simply not
instrumented.
"""

from __future__ import annotations

import inspect
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(
    [
        "crash_harness",
        "asm_email_rules.bootstrap",
        "asm_email_rules.adapters.sqlite",
        "asm_email_rules.adapters.smtp",
        "asm_email_rules.adapters.imap",
        "asm_email_rules.adapters.maildir",
    ]
)

STORE_BEFORE = frozenset({"record_processed", "finish_reply", "set_reply_status", "release_lease"})
STORE_AFTER = frozenset({"record_processed", "finish_reply", "set_reply_status", "claim_reply"})
MAILBOX_BEFORE = frozenset({"fetch", "delete", "close", "quarantine"})
MAILBOX_AFTER = frozenset({"delete"})
AFTER_250 = "after-250"
"""The event right after the SMTP server accepted a reply (before the store records it)."""


@attrs.frozen
class Plan:
    """What one child does: its configuration, when it dies, and its clock."""

    config: Path
    kill_at_event: int | None = None  # die at the n-th event (1-based)
    kill_after_sent: int | None = None  # die right after the n-th 250 from the SMTP server
    clock_offset: float = 0.0  # seconds added to real time
    deadline: float = 120.0  # give up (exit 3) after this many real seconds without progress
    idle_wait: float = 0.02  # real seconds between polls while another poller holds the account
    exit_if_waiting: bool = False  # exit 4 at once when another poller holds the account
    send_many: bool = False  # the mailer's send_many is used (else each reply goes to send)
    kill_at_named: tuple[str, int] | None = None  # die at the n-th event of this name
    also_after: frozenset[str] = frozenset()  # more store/mailbox calls ticked after they run
    wrap_returned: frozenset[str] = frozenset()  # store calls whose returned function is ticked

    @property
    def killed_at(self) -> Path:
        return self.config.parent / "killed-at"


class Tripwire:
    """Counts events; SIGKILLs the process at the one the plan names."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.events = 0
        self.sent = 0
        self.named: dict[str, int] = {}
        self._lock = threading.Lock()  # the poller's thread and the reply worker both tick

    def tick(self, name: str) -> None:
        with self._lock:
            self.events += 1
            if name == AFTER_250:
                self.sent += 1
            self.named[name] = self.named.get(name, 0) + 1
            due = (
                self.events == self.plan.kill_at_event
                or (name == AFTER_250 and self.sent == self.plan.kill_after_sent)
                or (name, self.named[name]) == self.plan.kill_at_named
            )
        if due:
            with self.plan.killed_at.open("a", encoding="utf-8") as out:
                out.write(name + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.kill(os.getpid(), signal.SIGKILL)


class Wired:
    """``inner`` with the named methods counted before and/or after they run."""

    def __init__(
        self, inner: Any, tripwire: Tripwire, before: frozenset[str], after: frozenset[str]
    ) -> None:
        self._inner = inner
        self._tripwire = tripwire
        self._before = before
        self._after = after

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if callable(attr) and name in self._tripwire.plan.wrap_returned:
            return self._returning(name, attr)
        if not callable(attr) or name not in self._before | self._after:
            return attr
        tripwire, before, after = self._tripwire, name in self._before, name in self._after

        def call(*args: Any, **kwargs: Any) -> Any:
            if before:
                tripwire.tick(f"before-{name}")
            result = attr(*args, **kwargs)
            if after:
                tripwire.tick(f"after-{name}")
            return result

        return call

    def _returning(self, name: str, attr: Any) -> Any:
        """``attr`` (``detached_sync``, ``detached_upkeep``: it returns a function run later,
        on the session end's thread) with that function ticked before and after it runs, and
        once while it runs (``during-<name>``, from a thread of its own, 1 ms in)."""
        tripwire = self._tripwire

        def detach(*args: Any, **kwargs: Any) -> Any:
            work = attr(*args, **kwargs)

            def run() -> Any:
                tripwire.tick(f"before-{name}-run")
                timer = threading.Timer(0.001, tripwire.tick, args=(f"during-{name}",))
                timer.start()
                try:
                    return work()
                finally:
                    timer.join()
                    tripwire.tick(f"after-{name}-run")

            return run

        return detach


class TrippingMailer:
    """The configured SMTP mailer; a tick before sending and right after the server's 250."""

    def __init__(self, inner: Any, tripwire: Tripwire) -> None:
        self.inner = inner
        self.tripwire = tripwire

    def send(self, message: Any) -> None:
        self.tripwire.tick("before-send")
        self.inner.send(message)
        self.tripwire.tick(AFTER_250)


class TrippingBatchMailer(TrippingMailer):
    """A mailer with ``send_many`` (SmtpMailer's: pipelined windows where the server offers
    PIPELINING and CHUNKING): a tick before the batch, and one right after each 250 as the
    mailer answers for it, between its windows, before the caller's ``answered`` (the pump's
    journal) hears of it. So a kill after a 250 leaves the whole window the server accepted
    unjournaled, as a crash there would. A window that answered for two replies or more at
    once is noted in ``pipelined`` (next to the configuration): the path was taken."""

    def send_many(
        self, messages: Sequence[Any], *, answered: Callable[[Sequence[Any]], bool] | None = None
    ) -> list[Any]:
        self.tripwire.tick("before-send")
        told = 0

        def tick(so_far: Sequence[Any]) -> None:  # a 250 each for the replies not yet told
            nonlocal told
            fresh, told = so_far[told:], len(so_far)
            if sum(outcome is None for outcome in fresh) > 1:
                marks = self.tripwire.plan.config.parent / "pipelined"
                with marks.open("a", encoding="utf-8") as out:
                    out.write(f"{len(fresh)}\n")
            for outcome in fresh:
                if outcome is None:
                    self.tripwire.tick(AFTER_250)

        def heard(so_far: Sequence[Any]) -> bool:
            tick(so_far)
            return True if answered is None else bool(answered(so_far))

        if _takes_answered(self.inner.send_many):
            outcomes = list(self.inner.send_many(messages, answered=heard))
        else:  # an older library: its send_many answers for all at the end
            outcomes = list(self.inner.send_many(messages))
        tick(outcomes)  # the last window's (the caller hears of it when this returns)
        return outcomes


def _takes_answered(send_many: Any) -> bool:
    """True when ``send_many`` takes ``answered`` (an older library's does not)."""
    try:
        return "answered" in inspect.signature(send_many).parameters
    except (TypeError, ValueError):
        return False


def tripping(mailer: Any, tripwire: Tripwire) -> TrippingMailer:
    """``mailer`` with tripwires; with its ``send_many`` where the plan says so and it has one
    (else the pump hands each reply to ``send``)."""
    if tripwire.plan.send_many and callable(getattr(mailer, "send_many", None)):
        return TrippingBatchMailer(mailer, tripwire)
    return TrippingMailer(mailer, tripwire)


def _busy(report: Any) -> bool:
    """True when the pass did anything (names an older AccountReport lacks count as 0)."""
    fields = ("processed", "duplicates", "quarantined", "retried", "replies_sent", "errors")
    return any(getattr(report, name, 0) for name in fields)


def poller_main(plan: Plan) -> None:
    """The child: build the service from the configuration, poll until idle, exit 0."""
    from asm_email_rules.bootstrap import bootstrap, mailbox_factory, make_mailer, open_store
    from asm_email_rules.config import load_config

    logging.basicConfig(
        filename=plan.config.parent / "pollers.log",
        level=logging.INFO,
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    tripwire = Tripwire(plan)
    config = load_config(plan.config)
    assert config.store is not None, f"{plan.config} names no store"

    store = Wired(open_store(config.store), tripwire, STORE_BEFORE, STORE_AFTER | plan.also_after)
    mailer = make_mailer(config)
    factory = mailbox_factory()

    def mailboxes(account: Any) -> Any:
        return Wired(factory(account), tripwire, MAILBOX_BEFORE, MAILBOX_AFTER | plan.also_after)

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=plan.clock_offset)

    wiring = bootstrap(
        config,
        repository=store,
        mailer=None if mailer is None else tripping(mailer, tripwire),
        mailboxes=mailboxes,
        now=clock,
    )
    end = time.monotonic() + plan.deadline
    idle = 0
    while idle < 2:
        if time.monotonic() > end:
            os._exit(3)
        report = wiring.service.poll_once().accounts[0]
        if getattr(report, "waiting", False):
            if plan.exit_if_waiting:
                os._exit(4)
            idle = 0
            time.sleep(plan.idle_wait)
        elif _busy(report):
            idle = 0
            # the deadline is for a poller that waits (the account held by a dead one): one
            # doing work on a slow machine is not cut off before its kill event
            end = time.monotonic() + plan.deadline
        else:
            idle += 1
    os._exit(0)  # no interpreter teardown in a forked child


def deliver_main(plan: Plan, raw: bytes) -> None:
    """The child for ``asm-email-rules deliver``: hand ``raw`` to ``deliver_message`` as the
    command does (the first account, the configured store and mailer, with tripwires), then
    exit with its code (0 handled, 75 try later) as the mail server would see it."""
    from asm_email_rules.bootstrap import make_mailer, open_store
    from asm_email_rules.config import load_config
    from asm_email_rules.delivery import deliver_message

    tripwire = Tripwire(plan)
    config = load_config(plan.config)
    assert config.store is not None, f"{plan.config} names no store"
    repository = open_store(config.store, must_exist=True)
    store = Wired(repository, tripwire, STORE_BEFORE, STORE_AFTER | plan.also_after)
    mailer = make_mailer(config)
    now = datetime.now(UTC) + timedelta(seconds=plan.clock_offset)
    outcome = deliver_message(
        raw,
        store,
        None if mailer is None else tripping(mailer, tripwire),
        config.accounts[0].mailbox,
        config.system,
        now,
    )
    repository.close()
    os._exit(outcome.exit_code)


def deliver_once(plan: Plan, raw: bytes, timeout: float = 60.0) -> int:
    """Run :func:`deliver_main` in a child; its exit code (-9 when it killed itself)."""
    process = CONTEXT.Process(target=deliver_main, args=(plan, raw), daemon=True)
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"deliver did not finish in {timeout} s")
    code = process.exitcode
    assert code is not None
    return code


def start(plan: Plan) -> multiprocessing.process.BaseProcess:
    """A running child for ``plan``."""
    process = CONTEXT.Process(target=poller_main, args=(plan,), daemon=True)
    process.start()
    return process


def run_to_end(
    plan: Plan,
    *,
    kill_after: float | None = None,
    timeout: float = 120.0,
) -> int:
    """Run one child; SIGKILL it after ``kill_after`` real seconds if it still runs. Its exit
    code (-9 when killed, 0 when it finished)."""
    process = start(plan)
    if kill_after is not None:
        process.join(kill_after)
        if process.is_alive():
            process.kill()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"poller did not finish in {timeout} s")
    code = process.exitcode
    assert code is not None
    return code


def wait_all(processes: list[multiprocessing.process.BaseProcess], timeout: float) -> list[int]:
    """Join every process (killing stragglers after ``timeout``); their exit codes."""
    end = time.monotonic() + timeout
    codes = []
    for process in processes:
        process.join(max(0.0, end - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
        codes.append(process.exitcode if process.exitcode is not None else -1)
    return codes


Clock = Callable[[], datetime]
