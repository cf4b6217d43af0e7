"""Pollers sharing one store: ``python benchmarks/scale.py [--messages 2000] [--runs 1,2,4]``.

Builds one set of messages (a service desk's mix, below) spread over 8 Maildir accounts, then,
in one run, for SQLite and for PostgreSQL and for 1, 2 and 4 poller processes: a fresh store
seeded with the same desk, a fresh copy of the same Maildirs, the pollers started together,
and the time until every account is drained. It prints messages per second, the speed-up over
one process on the same store, and the time the pollers spent waiting for the database's locks:

- PostgreSQL: sampled every 20 ms from ``pg_stat_activity`` (backends whose ``wait_event_type``
  is ``Lock``), so it is the server's own view, summed over the pollers' connections;
- SQLite: measured in each poller around ``BEGIN IMMEDIATE`` (SQLite has one write lock per
  file; a second writer waits for it in its busy handler), summed over the pollers.

Both stores are durable as the service uses them: each commit is safe from a crash of the
process at once, and the service flushes the store (``sync()``: one fsync, or one WAL flush)
once per mailbox session before the session's deletions take effect (PostgreSQL runs with
``fsync`` on), so neither gets its speed by losing mail on a power cut. The
PostgreSQL server is a throwaway cluster on loopback (:mod:`asm_email_rules.adapters.
postgres_cluster`), on the same two cores as the pollers.

Pollers split the accounts between them: poller *i* of *n* polls accounts *i*, *i+n*, ... (its
own config file). That is how a host shares work before the account leases exist, and it is
also how accounts are split across databases (docs/scaling.md).

The mix, per account: 45 % new calls from known users, 20 % updates to an open call (bracket
token), 10 % new calls from unknown senders (a person is created), 10 % out-of-office replies
(discarded), 10 % updates with a 40 KB attachment, 5 % ``[MyCalls]`` summaries from analysts.
Replies are recorded in the store's outbox (no SMTP server), so the store does all the work a
real pass does except the SMTP session.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from asm_email_rules.model import Call, Person
from asm_email_rules.protocols import SeedableRepository

ACCOUNTS = 8
USERS = 300  # person ids 100..399
ANALYSTS = 20  # person ids 10..29
CALLS = range(1000, 1500)
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

ACCOUNT_TOML = """
[[accounts]]
name = "desk{n}"
protocol = "maildir"
path = "{path}"
interval_seconds = 1
max_messages_per_session = 100

[accounts.mailbox]
addresses = ["desk{n}@desk.example"]
default_logging_analyst_id = 10
auto_reply = true
create_calls_anonymously = true
update_closed_calls = true

[accounts.mailbox.call_template]
name = "Email call"
assigned_analyst_id = 11
assigned_group = "Service Desk"
"""


# --------------------------------------------------------------------------------------------
# the desk and the messages
# --------------------------------------------------------------------------------------------


def seed(repo: SeedableRepository) -> None:
    """The same desk in every store: analysts, users and 500 open calls."""
    now = datetime.now(UTC)
    with repo.transaction():
        for pid in range(10, 10 + ANALYSTS):
            repo.put_person(
                Person(pid, f"analyst{pid}@desk.example", f"Analyst {pid}", is_analyst=True)
            )
        for pid in range(100, 100 + USERS):
            repo.put_person(Person(pid, f"user{pid}@corp.example", f"User {pid}", is_user=True))
        for number in CALLS:
            repo.put_call(
                Call(
                    number,
                    user_id=100 + number % USERS,
                    owner_id=10 + number % ANALYSTS,
                    group="Service Desk",
                    description=f"Seeded call {number}",
                    last_update=now,
                )
            )


def _mail(
    sender: str, to: str, subject: str, body: str, serial: int, **headers: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = f"<bench-{serial}@corp.example>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def make_messages(count: int, seed_value: int = 13) -> list[list[bytes]]:
    """``count`` messages, dealt round-robin to the accounts; the same for every run."""
    rnd = random.Random(seed_value)
    boxes: list[list[bytes]] = [[] for _ in range(ACCOUNTS)]
    paragraph = (
        "The printer on the third floor shows error 50.4 again after the restart this "
        "morning; the queue holds twelve jobs and nobody can print.\n"
    )
    for serial in range(count):
        n = serial % ACCOUNTS
        to = f"desk{n}@desk.example"
        user = f"user{100 + rnd.randrange(USERS)}@corp.example"
        roll = rnd.random()
        if roll < 0.45:
            msg = _mail(user, to, f"Problem report {serial}", paragraph * 4, serial)
        elif roll < 0.65:
            call = rnd.choice(CALLS)
            msg = _mail(user, to, f"Re: [CALL#{call}] still broken", paragraph * 2, serial)
        elif roll < 0.75:
            stranger = f"new{serial}@elsewhere.example"
            msg = _mail(stranger, to, f"Help needed {serial}", paragraph * 3, serial)
        elif roll < 0.85:
            msg = _mail(
                user,
                to,
                "Automatic reply: out of office",
                "I am away until Monday.\n",
                serial,
                Auto_Submitted="auto-replied",
            )
        elif roll < 0.95:
            call = rnd.choice(CALLS)
            msg = _mail(user, to, f"[CALL#{call}] log attached", paragraph, serial)
            msg.add_attachment(
                bytes(rnd.getrandbits(8) for _ in range(40_000)),
                maintype="application",
                subtype="octet-stream",
                filename=f"log-{serial}.bin",
            )
        else:
            analyst = f"analyst{10 + rnd.randrange(ANALYSTS)}@desk.example"
            msg = _mail(analyst, to, "[MyCalls]", "Please send my calls.\n", serial)
        boxes[n].append(msg.as_bytes(policy=SMTP))
    return boxes


def deliver(boxes: list[list[bytes]], root: Path) -> None:
    """Write the messages into ``root/desk<n>/new`` with names in delivery order."""
    for n, messages in enumerate(boxes):
        folder = root / f"desk{n}"
        for sub in ("new", "cur", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i, raw in enumerate(messages):
            (folder / "new" / f"{1_700_000_000 + i}.M{i:06d}P1.bench").write_bytes(raw)


def remaining(root: Path) -> int:
    return sum(
        len(os.listdir(root / f"desk{n}" / sub)) for n in range(ACCOUNTS) for sub in ("new", "cur")
    )


# --------------------------------------------------------------------------------------------
# one poller (a child process)
# --------------------------------------------------------------------------------------------


def worker(config_path: str) -> None:
    """Poll the accounts of ``config_path`` until they are empty; print a JSON summary."""
    from asm_email_rules.adapters.sqlite import SqliteRepository
    from asm_email_rules.bootstrap import bootstrap, open_store
    from asm_email_rules.config import load_config

    config = load_config(config_path)
    waited = [0.0]

    class TimedSqlite(SqliteRepository):
        """Counts the seconds spent getting SQLite's write lock (``BEGIN IMMEDIATE``)."""

        def _execute(self, sql: str, params: Any = ()) -> Any:
            if sql != "BEGIN IMMEDIATE":
                return super()._execute(sql, params)
            started = time.perf_counter()
            try:
                return super()._execute(sql, params)
            finally:
                waited[0] += time.perf_counter() - started

    if isinstance(config.store, Path):
        repository: Any = TimedSqlite(config.store, timeout=60.0)
    elif config.store is None:
        raise SystemExit(f"{config_path}: the configuration names no store")
    else:
        repository = open_store(config.store)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # "go"
    started = time.perf_counter()
    processed = errors = 0
    with bootstrap(config, repository=repository, mailer=None) as wiring:
        while True:
            report = wiring.service.poll_once()
            done = sum(a.processed + a.duplicates + a.quarantined for a in report.accounts)
            processed += sum(a.processed for a in report.accounts)
            errors += sum(a.errors for a in report.accounts)
            if done == 0:
                left = sum(
                    len(os.listdir(Path(str(a.path)) / sub))
                    for a in config.accounts
                    for sub in ("new", "cur")
                )
                if left == 0:
                    break
                time.sleep(0.05)  # another poller holds the accounts with mail left
    repository.close()
    elapsed = time.perf_counter() - started
    print(json.dumps({"processed": processed, "errors": errors, "elapsed": elapsed,
                      "lock_wait": waited[0]}))  # fmt: skip


# --------------------------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------------------------


class LockSampler(threading.Thread):
    """Sums, every ``interval`` s, the pollers' PostgreSQL backends waiting for a lock."""

    def __init__(self, conninfo: str, password: str, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.conn = psycopg.connect(conninfo, password=password, autocommit=True)
        self.interval = interval
        self.waited = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        query = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'asm-email-rules' AND wait_event_type = 'Lock'"
        )
        last = time.perf_counter()
        while not self.stop.is_set():
            time.sleep(self.interval)
            now = time.perf_counter()
            row = self.conn.execute(query).fetchone()
            waiting = row[0] if row is not None else 0
            self.waited += waiting * (now - last)
            last = now
        self.conn.close()


def server_cpu(cluster: Any) -> float:
    """CPU seconds the PostgreSQL server used so far: the postmaster, its live children, and
    (through the postmaster's ``cutime``/``cstime``) the backends that have exited."""
    if cluster is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])

    def fields(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()

    total = sum(int(v) for v in fields(postmaster)[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(postmaster):
            try:
                stat = fields(int(entry))
            except OSError:
                continue
            if int(stat[1]) == postmaster:  # ppid
                total += int(stat[11]) + int(stat[12])
    return total / tick


def run_pollers(
    store_lines: str,
    pollers: int,
    maildirs: Path,
    folder: Path,
    sampler: LockSampler | None,
    cluster: Any = None,
    *,
    share: bool = False,
) -> dict[str, float]:
    """Start ``pollers`` processes on a split of the accounts; wall time, CPU, lock waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server_cpu(cluster)
    processes = []
    for index in range(pollers):
        accounts = "".join(
            ACCOUNT_TOML.format(n=n, path=maildirs / f"desk{n}")
            for n in range(ACCOUNTS)
            if share or n % pollers == index
        )
        config = folder / f"poller{index}.toml"
        config.write_text(f"{store_lines}\n[system]\n{accounts}", encoding="utf-8")
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"poller did not start: {line!r}")
    if sampler is not None:
        sampler.start()
    started = time.perf_counter()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=1800)
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
    time.sleep(0.2)  # let the server reap the pollers' backends
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    poller_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    left = remaining(maildirs)
    if left:
        raise RuntimeError(f"{left} messages were not processed")
    return {
        "wall": wall,
        "processed": sum(r["processed"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "lock_wait": sampler.waited
        if sampler is not None
        else sum(r["lock_wait"] for r in results),
        "poller_cpu": poller_cpu,
        "server_cpu": server_cpu(cluster) - server_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", default="1,2,4", help="poller counts, comma-separated")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument(
        "--share",
        action="store_true",
        help="every poller gets every account and the store's account leases share them out "
        "(PostgreSQL only; default: each poller its own accounts)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return

    from asm_email_rules.adapters.postgres import PostgresRepository
    from asm_email_rules.adapters.postgres_cluster import TemporaryCluster
    from asm_email_rules.adapters.sqlite import SqliteRepository

    counts = [int(c) for c in args.runs.split(",")]
    stores = args.stores.split(",")
    boxes = make_messages(args.messages)
    total = sum(len(b) for b in boxes)
    print(f"{total} messages over {ACCOUNTS} Maildir accounts; {os.cpu_count()} CPUs")
    cluster = TemporaryCluster.start(settings=DURABLE) if "postgresql" in stores else None
    rows: list[tuple[str, int, dict[str, float]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="asm-scale-") as tmp:
            root = Path(tmp)
            for store in stores:
                for pollers in counts:
                    run_dir = root / f"{store}-{pollers}"
                    maildirs = run_dir / "mail"
                    deliver(boxes, maildirs)
                    sampler = None
                    if store == "sqlite":
                        path = run_dir / "desk.sqlite3"
                        with SqliteRepository(path) as repo:
                            seed(repo)
                        lines = f'store = "{path}"'
                    else:
                        assert cluster is not None
                        database = cluster.create_database(f"scale_{pollers}")
                        conninfo = cluster.conninfo(database)
                        with PostgresRepository(conninfo, password=cluster.password) as repo:
                            seed(repo)
                        os.environ["ASM_SCALE_DB_PASSWORD"] = cluster.password
                        lines = (
                            f'store = "{conninfo}"\nstore_password_env = "ASM_SCALE_DB_PASSWORD"'
                        )
                        sampler = LockSampler(conninfo, cluster.password)
                    share = args.share and store == "postgresql"
                    result = run_pollers(
                        lines, pollers, maildirs, run_dir, sampler, cluster, share=share
                    )
                    rows.append((store, pollers, result))
                    print(
                        f"  {store:10} {pollers} poller(s): {result['processed']:.0f} processed"
                        f" in {result['wall']:.1f} s",
                        flush=True,
                    )
                    shutil.rmtree(maildirs, ignore_errors=True)
    finally:
        if cluster is not None:
            cluster.stop()
    print()
    print(
        f"{'store':10} {'pollers':>7} {'msg/s':>8} {'speed-up':>9} {'lock wait s':>12}"
        f" {'poller CPU ms/msg':>18} {'server CPU ms/msg':>18}"
    )
    base: dict[str, float] = {}
    for store, pollers, result in rows:
        rate = result["processed"] / result["wall"]
        base.setdefault(store, rate if pollers == 1 else 0.0)
        speedup = rate / base[store] if base[store] else float("nan")
        per = 1000 / max(result["processed"], 1)
        server = f"{result['server_cpu'] * per:>18.2f}" if store == "postgresql" else f"{'-':>18}"
        print(
            f"{store:10} {pollers:>7} {rate:>8.1f} {speedup:>8.2f}x {result['lock_wait']:>12.2f}"
            f" {result['poller_cpu'] * per:>18.2f} {server}"
        )
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
