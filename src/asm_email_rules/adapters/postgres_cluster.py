"""A throwaway PostgreSQL cluster on loopback, for tests and benchmarks (not for production).

:class:`TemporaryCluster` runs ``initdb`` into a fresh temporary folder, starts ``postgres``
on ``127.0.0.1`` with a free TCP port and its own unix socket folder, makes one login role
with a password, and hands out fresh databases owned by that role. ``stop()`` shuts the
server down and removes the folder. Durability is switched off (``fsync=off``): the data is
meant to be thrown away.

PostgreSQL refuses to run as root: when the current user is root, the server binaries run
as the ``postgres`` system user (``runuser -u postgres``) and every folder the server writes
is handed to that user. The server binaries are looked up in ``$PG_BINDIR``, then in
Debian's ``/usr/lib/postgresql/<version>/bin`` (the newest), then on ``PATH``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import attrs

__all__ = ["ClusterError", "TemporaryCluster", "find_bindir"]

HOST = "127.0.0.1"
ROLE = "asm"


class ClusterError(RuntimeError):
    """The throwaway cluster could not be found, created or started (the reason is in the text)."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None`` when not installed.

    Tried in order: ``$PG_BINDIR``; the newest ``/usr/lib/postgresql/*/bin`` (Debian keeps the
    server binaries off ``PATH``); the folder of ``initdb`` on ``PATH``.
    """
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(part) if part.isdigit() else 0 for part in p.parent.name.split(".")],
    )
    candidates.extend(reversed(debian))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class TemporaryCluster:
    """A running throwaway PostgreSQL server; use :meth:`start` to make one.

    ``port`` is its TCP port on ``127.0.0.1``, ``socket_dir`` its unix socket folder,
    ``password`` the password of the login role ``role``. :meth:`create_database` gives a new
    empty database owned by that role; :meth:`conninfo` the libpq connection string for one
    (without the password, which goes separately, as the adapter expects).
    """

    bindir: Path
    root: Path
    port: int
    password: str
    role: str = ROLE
    _counter: int = 0
    _stopped: bool = False
    _server_options: str = ""

    @property
    def socket_dir(self) -> Path:
        """The folder of the server's unix socket."""
        return self.root / "sock"

    @property
    def data_dir(self) -> Path:
        """The cluster's data folder."""
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.root / "log" / "postgres.log"

    @classmethod
    def start(
        cls,
        bindir: Path | None = None,
        *,
        settings: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> TemporaryCluster:
        """initdb, start and prepare a cluster; raises :class:`ClusterError` with the reason.

        ``settings`` are extra server settings (``-c name=value``), e.g. ``max_connections``.
        """
        bindir = bindir or find_bindir()
        if bindir is None:
            raise ClusterError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        # Short path: unix socket paths are limited to about 100 bytes.
        root = Path(tempfile.mkdtemp(prefix="asm-pg-"))
        cluster = cls(bindir=bindir, root=root, port=_free_port(), password=secrets.token_hex(12))
        try:
            cluster._init_and_start(settings or {}, timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    # -- running commands as the right user ------------------------------------------------
    def _as_server_user(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ClusterError("running as root, and there is no 'postgres' user") from None
        runuser = shutil.which("runuser") or "/sbin/runuser"
        return [runuser, "-u", "postgres", "--"]

    def _run(self, args: list[str], timeout: float) -> str:
        try:
            done = subprocess.run(
                [*self._as_server_user(), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"{Path(args[0]).name} failed: {exc}") from exc
        if done.returncode != 0:
            log = ""
            if self.log_file.exists():
                log = self.log_file.read_text(errors="replace")[-2000:]
            raise ClusterError(
                f"{Path(args[0]).name} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}\n{log}"
            )
        return done.stdout

    def _init_and_start(self, settings: dict[str, str], timeout: float) -> None:
        self.root.chmod(0o755)
        for sub in ("data", "sock", "log"):
            (self.root / sub).mkdir(mode=0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text("unused-superuser-password\n", encoding="utf-8")
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            for path in (self.root / "data", self.root / "sock", self.root / "log", pwfile):
                shutil.chown(path, "postgres", "postgres")
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ],
            timeout,
        )
        options = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **settings,
        }
        self._server_options = " ".join(f"-c {name}={value}" for name, value in options.items())
        self._pg_ctl_start(timeout)
        self.psql(f"CREATE ROLE {self.role} LOGIN CREATEDB PASSWORD '{self.password}'")

    def _pg_ctl_start(self, timeout: float = 60.0) -> None:
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                self._server_options,
                "start",
            ],
            timeout + 5,
        )

    def crash_and_restart(self) -> None:
        """Stop the server as a crash would (``pg_ctl stop -m immediate``: no shutdown
        checkpoint, WAL not yet flushed is lost), then start it again (crash recovery)."""
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            60,
        )
        self._pg_ctl_start()

    # -- using it ------------------------------------------------------------------------
    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the unix socket; its output (tuples only)."""
        psql = self.bindir / "psql"
        program = str(psql) if psql.is_file() else (shutil.which("psql") or "psql")
        return self._run(
            [
                program,
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-t",
                "-A",
                "-c",
                sql,
            ],
            60,
        ).strip()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by :attr:`role` (created over a psycopg connection)."""
        import psycopg

        if name is None:
            self._counter += 1
            name = f"asm_test_{self._counter}"
        try:
            with psycopg.connect(
                self.conninfo("postgres"), password=self.password, autocommit=True
            ) as conn:
                conn.execute(
                    psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
                )
        except psycopg.Error as exc:
            raise ClusterError(f"cannot create database {name}: {exc}") from exc
        return name

    def conninfo(self, database: str) -> str:
        """The ``postgresql://`` URL of ``database`` over TCP, without the password."""
        return f"postgresql://{self.role}@{HOST}:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ],
                    60,
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TemporaryCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_until_ready(cluster: TemporaryCluster, timeout: float = 10.0) -> None:
    """Block until the cluster answers on TCP (pg_ctl -w already waits; for restarts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, cluster.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise ClusterError(f"PostgreSQL on port {cluster.port} did not answer in {timeout} s")
