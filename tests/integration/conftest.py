"""Real servers on loopback for the adapter tests: Dovecot (IMAP, POP3) and aiosmtpd (SMTP).

Dovecot runs from a configuration written into a temporary folder (never ``/etc/dovecot``),
with plaintext auth allowed on 127.0.0.1 only. Each test gets a fresh mail user, so tests
never see each other's messages while sharing one Dovecot process per session.
"""

from __future__ import annotations

import imaplib
import itertools
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from loopback import HOST, Pipelining, _missing, _wait_for_greeting, free_port
from postgres_fixtures import new_database, pg_cluster, pg_database, pg_database_name

from asm_email_rules.adapters.imap import ImapConfig
from asm_email_rules.adapters.pop3 import Pop3Config

__all__ = ["new_database", "pg_cluster", "pg_database", "pg_database_name"]  # PostgreSQL fixtures

PASSWORD = "secret"
USERS = 200  # fresh mail users available to tests (one each)
REFUSING_USERS = 20  # fresh mail users whose FETCH failures are a tagged NO (new_user)
LOCKING_USERS = 5  # fresh mail users whose POP3 sessions lock the maildrop (new_user)
PREFIXED_USERS = 5  # fresh mail users whose folders all live under "INBOX." (new_user)


# --------------------------------------------------------------------------------------------
# TLS material (self-signed, for 127.0.0.1)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and the client context that trusts it."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Certificate and key made with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        _missing("openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            str(openssl),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(cert=cert, key=key)


# --------------------------------------------------------------------------------------------
# SMTP: aiosmtpd
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Envelope:
    """What the SMTP server received."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    mail_options: tuple[str, ...] = ()


class RecordingHandler(Pipelining):
    """aiosmtpd handler that records envelopes, or answers RCPT/DATA with a fixed reply."""

    def __init__(
        self,
        rcpt_reply: str | None,
        data_reply: str | None,
        pipelining: bool = False,
        chunking: bool = False,
    ) -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.pipelining = pipelining or chunking
        self.chunking = chunking
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append(
            Envelope(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=bytes(envelope.original_content or envelope.content),
                mail_options=tuple(envelope.mail_options),
            )
        )
        return "250 2.0.0 queued"


@attrs.define
class SmtpServer:
    """A running aiosmtpd controller and what it recorded."""

    host: str
    port: int
    handler: RecordingHandler

    @property
    def envelopes(self) -> list[Envelope]:
        return self.handler.envelopes


SmtpFactory = Callable[..., SmtpServer]


@pytest.fixture
def smtp_server() -> Iterator[SmtpFactory]:
    """Factory: ``smtp_server(rcpt_reply=..., data_reply=..., tls=..., auth=...,
    pipelining=..., chunking=..., smtputf8=...)`` (``smtputf8``: EHLO offers SMTPUTF8).

    ``tls`` is ``None``, ``("starttls", context)`` or ``("tls", context)``; ``auth`` is a
    ``(user, password)`` pair the server accepts (over plain connections too, on loopback).
    ``chunking``: EHLO offers PIPELINING and CHUNKING and the server takes BDAT, as Postfix,
    Microsoft 365 and Gmail do (:class:`chunking_smtp.ChunkingSMTP`).
    """
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
    from chunking_smtp import ChunkingSMTP

    class _ChunkingController(Controller):
        def factory(self) -> Any:
            return ChunkingSMTP(self.handler, **self.SMTP_kwargs)

    controllers: list[Any] = []

    def start(
        *,
        rcpt_reply: str | None = None,
        data_reply: str | None = None,
        tls: tuple[str, ssl.SSLContext] | None = None,
        auth: tuple[str, str] | None = None,
        pipelining: bool = False,
        chunking: bool = False,
        smtputf8: bool = False,
    ) -> SmtpServer:
        handler = RecordingHandler(rcpt_reply, data_reply, pipelining, chunking)
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if tls is not None and tls[0] == "starttls":
            kwargs.update(tls_context=tls[1], require_starttls=True)
        elif tls is not None:
            kwargs.update(ssl_context=tls[1])
        if auth is not None:

            def authenticator(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> Any:
                ok = (
                    isinstance(data, LoginPassword)
                    and (
                        data.login.decode(),
                        data.password.decode(),
                    )
                    == auth
                )
                return AuthResult(success=ok, handled=False)

            kwargs.update(
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=False,  # loopback only
            )
        port = free_port()
        kind = _ChunkingController if chunking else Controller
        controller = kind(handler, hostname=HOST, port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return SmtpServer(HOST, port, handler)

    yield start
    for controller in controllers:
        controller.stop()


# --------------------------------------------------------------------------------------------
# IMAP and POP3: Dovecot
# --------------------------------------------------------------------------------------------

_DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_uid = {mail_user}
mail_gid = {mail_group}
mail_location = maildir:{root}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {host}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


@attrs.define
class Dovecot:
    """A running Dovecot with helpers that talk to it directly (not through our adapters)."""

    host: str
    imap_port: int
    pop3_port: int
    root: Path
    _counter: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    _refusing: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    _locking: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    _prefixed: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))

    def imap_config(self, user: str, **changes: Any) -> ImapConfig:
        """Our IMAP adapter's settings for ``user`` here (plain text on loopback, a 5 s
        timeout), with ``changes`` (``batch_messages=1``, ...)."""
        base = ImapConfig(
            host=self.host,
            port=self.imap_port,
            security="plain",
            username=user,
            password=PASSWORD,
            timeout=5,
        )
        return attrs.evolve(base, **changes)

    def pop3_config(self, user: str, **changes: Any) -> Pop3Config:
        """Our POP3 adapter's settings for ``user`` here, as :meth:`imap_config`'s."""
        base = Pop3Config(
            host=self.host,
            port=self.pop3_port,
            security="plain",
            username=user,
            password=PASSWORD,
            timeout=5,
        )
        return attrs.evolve(base, **changes)

    def new_user(
        self,
        *,
        fetch_failure: str = "disconnect-immediately",
        pop3_lock: bool = False,
        inbox_prefix: bool = False,
    ) -> str:
        """A fresh mail user (password :data:`PASSWORD`) with an empty mailbox.

        ``fetch_failure``: what Dovecot answers to a FETCH of a message it cannot read
        (``imap_fetch_failure``): by default a ``BYE`` and the connection closed;
        ``"no-after"``: the messages it could read and a tagged ``NO [SERVERBUG]``.
        ``pop3_lock``: a POP3 session locks the maildrop (``pop3_lock_session``), so a second
        one is refused with ``-ERR [IN-USE]`` (RFC 2449 8.1.1) while it lasts.
        ``inbox_prefix``: the personal namespace is ``INBOX.`` with ``.`` as the delimiter
        (RFC 2342; Courier, Cyrus, cPanel's Dovecot): every folder is ``INBOX.name``."""
        if inbox_prefix:
            number = next(self._prefixed)
            assert number <= PREFIXED_USERS, "raise PREFIXED_USERS in conftest.py"
            return f"prefixed{number}"
        if pop3_lock:
            number = next(self._locking)
            assert number <= LOCKING_USERS, "raise LOCKING_USERS in conftest.py"
            return f"locking{number}"
        if fetch_failure == "no-after":
            number = next(self._refusing)
            assert number <= REFUSING_USERS, "raise REFUSING_USERS in conftest.py"
            return f"refusing{number}"
        assert fetch_failure == "disconnect-immediately", fetch_failure
        number = next(self._counter)
        assert number <= USERS, "raise USERS in conftest.py"
        return f"user{number}"

    def _imap(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=5)
        client.login(user, PASSWORD)
        return client

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver ``raw`` into ``folder`` with IMAP APPEND."""
        client = self._imap(user)
        try:
            status, data = client.append(folder, None, None, raw)
            assert status == "OK", data
        finally:
            client.logout()

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """The raw bytes of every message in ``folder``, oldest first (without setting \\Seen)."""
        client = self._imap(user)
        try:
            status, _ = client.select(f'"{folder}"', readonly=True)
            if status != "OK":
                return []
            _, data = client.uid("SEARCH", "ALL")
            found: list[bytes] = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                found.extend(part[1] for part in parts if isinstance(part, tuple))
            return found
        finally:
            client.logout()

    def flags(self, user: str, folder: str = "INBOX") -> list[str]:
        """The flags of every message in ``folder``, oldest first, as IMAP writes them."""
        client = self._imap(user)
        try:
            client.select(f'"{folder}"', readonly=True)
            _, data = client.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if isinstance(d, bytes)]
        finally:
            client.logout()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of our own on loopback (IMAP and POP3, plaintext auth, Maildir storage)."""
    binary = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if Path(p).exists()), None
    )
    if binary is None:
        _missing("the dovecot binary")
    # Short path: Dovecot's unix sockets live under base_dir and have a length limit.
    root = Path(tempfile.mkdtemp(prefix="asm-dv-"))
    root.chmod(0o755)  # the auth process (user dovecot) reads the passwd file
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    mail_user, mail_group = "nobody", "nogroup"  # Dovecot refuses to run mail as root
    shutil.chown(root / "mail", mail_user, mail_group)
    # Every user exists from the start: Dovecot re-reads a changed passwd file only lazily.
    users = ["test", *(f"user{n}" for n in range(1, USERS + 1))]
    lines = [f"{user}:{{PLAIN}}{PASSWORD}\n" for user in users]
    # Users whose IMAP FETCH of a message Dovecot cannot read answers a tagged NO (and the
    # messages it could read) instead of Dovecot's default BYE (imap_fetch_failure).
    lines += [
        f"{user}:{{PLAIN}}{PASSWORD}::::::userdb_imap_fetch_failure=no-after\n"
        for user in (f"refusing{n}" for n in range(1, REFUSING_USERS + 1))
    ]
    # Users whose POP3 session locks the maildrop: a second one gets -ERR [IN-USE].
    lines += [
        f"{user}:{{PLAIN}}{PASSWORD}::::::userdb_pop3_lock_session=yes\n"
        for user in (f"locking{n}" for n in range(1, LOCKING_USERS + 1))
    ]
    # Users whose folders all live under "INBOX." (Courier-like namespace).
    lines += [
        f"{user}:{{PLAIN}}{PASSWORD}::::::"
        "userdb_namespace/inbox/prefix=INBOX. userdb_namespace/inbox/separator=.\n"
        for user in (f"prefixed{n}" for n in range(1, PREFIXED_USERS + 1))
    ]
    (root / "passwd").write_text("".join(lines), encoding="utf-8")
    (root / "passwd").chmod(0o644)
    imap_port, pop3_port = free_port(), free_port()
    conf = root / "dovecot.conf"
    conf.write_text(
        _DOVECOT_CONF.format(
            root=root,
            host=HOST,
            imap_port=imap_port,
            pop3_port=pop3_port,
            mail_user=mail_user,
            mail_group=mail_group,
        ),
        encoding="utf-8",
    )
    output = (root / "stdout.log").open("wb")
    process = subprocess.Popen([str(binary), "-c", str(conf), "-F"], stdout=output, stderr=output)
    server = Dovecot(host=HOST, imap_port=imap_port, pop3_port=pop3_port, root=root)
    try:
        problem = _wait_for_greeting(HOST, imap_port, b"* OK", process) or _wait_for_greeting(
            HOST, pop3_port, b"+OK", process
        )
        if problem:
            output.flush()
            details = (root / "stdout.log").read_text(errors="replace") + server.log()
            pytest.fail(f"dovecot did not start: {problem}\n{details}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def unused_port() -> int:
    """A loopback port nobody listens on."""
    return free_port()


@pytest.fixture
def make_message() -> Callable[..., bytes]:
    """The :func:`sample_message` builder, for tests (which cannot import conftest)."""
    return sample_message


@pytest.fixture
def mail_user(dovecot: Dovecot) -> str:
    """A fresh Dovecot user with an empty INBOX."""
    return dovecot.new_user()


def sample_message(number: int, *, size: int = 0) -> bytes:
    """A small CRLF message numbered ``number`` (``size`` pads the body)."""
    body = f"Body of message {number}.\r\n" + ("x" * 70 + "\r\n") * (size // 72)
    return (
        f"From: sender{number}@example.org\r\n"
        f"To: desk@asm.example\r\n"
        f"Subject: Message {number}\r\n"
        f"Message-ID: <m{number}@example.org>\r\n"
        f"Date: Mon, 6 May 2024 07:08:0{number % 10} +0000\r\n"
        f"\r\n{body}"
    ).encode()
