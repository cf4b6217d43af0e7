"""Loopback servers for the OAuth2 tests: a token endpoint, Dovecot with an oauth2 passdb, and an
SMTP server with an XOAUTH2 mechanism.

* :class:`TokenEndpoint` (stdlib ``http.server`` in a thread): ``POST /token`` for the
  client-credentials grant (RFC 6749 4.4) and the refresh-token grant (6, with rotation);
  ``POST /introspect`` (RFC 7662), which Dovecot's oauth2 passdb asks about every token.
* :func:`start_oauth_dovecot`: a private Dovecot 2.3 whose only passdb is ``oauth2`` with
  ``introspection_mode = post`` pointing at the endpoint (setup verified in
  ``shared/recipes/1-dovecot``; the anvil auth penalty is off so refusals do not slow the
  next test).
* :class:`XOAuth2Handler`: an aiosmtpd handler with ``auth_XOAUTH2`` (recipe 2) that checks
  tokens against the same endpoint and records what it received.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
from loopback import HOST, _wait_for_greeting


def wait_for_greeting(port: int, expected: bytes, process: subprocess.Popen[bytes]) -> str:
    """An empty string once the server on loopback ``port`` greets with ``expected``, else why
    not (:func:`loopback._wait_for_greeting`)."""
    return _wait_for_greeting(HOST, port, expected, process)


@attrs.define
class Issued:
    """An access token the endpoint issued: whose it is and until when (Unix seconds)."""

    username: str
    expires_at: float
    grant: str


@attrs.define
class TokenEndpoint:
    """The authorization server's side; tests change ``ttl`` and inspect the counters."""

    clients: dict[str, str]
    """client_id -> client_secret."""
    subjects: dict[str, str]
    """client_id -> the mailbox its client-credentials tokens may open."""
    ttl: float = 3600.0
    access: dict[str, Issued] = attrs.field(factory=dict)
    refresh: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    """refresh token -> (client_id, username)."""
    grants: list[str] = attrs.field(factory=list)
    """Every successful grant, in order (``client_credentials`` or ``refresh_token``)."""
    introspected: list[tuple[str, bool]] = attrs.field(factory=list)
    """Every token Dovecot or the SMTP server asked about, and the answer (active or not)."""
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    port: int = 0
    reuse_revokes: bool = False
    """Refresh-token reuse detection (RFC 6749 10.4; Okta, Auth0): presenting a refresh token
    that was rotated away revokes every refresh token of that client and user."""
    used: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    """Refresh tokens rotated away -> (client_id, username)."""
    delay: float = 0.0
    """Seconds each refresh grant takes (a slow endpoint, for races)."""
    public: set[str] = attrs.field(factory=set)
    """Public clients (no secret: a desktop or device sign-in, RFC 6749 2.1): they send their
    ``client_id`` only; one that presents a ``client_secret`` or HTTP Basic, even an empty
    one, is refused as Microsoft Entra does (AADSTS700025)."""
    throttle: int = 0
    """The next this many token requests are throttled: HTTP 429, ``temporarily_unavailable``
    and ``Retry-After: retry_after`` (what Microsoft Entra answers a client that asks too
    often); nothing is issued or rotated for them."""
    retry_after: int = 30
    html_page: str = ""
    """When set, ``POST /token`` answers 200 with this HTML page (what a wrong ``token_url``,
    such as the authorize URL, or a proxy's sign-in page gives)."""

    @property
    def token_url(self) -> str:
        return f"http://{HOST}:{self.port}/token"

    @property
    def introspection_url(self) -> str:
        return f"http://{HOST}:{self.port}/introspect"

    def issue_refresh_token(self, client_id: str, username: str) -> str:
        """A refresh token, as the consent flow would have given the operator once."""
        token = "rt-" + secrets.token_urlsafe(12)
        with self.lock:
            self.refresh[token] = (client_id, username)
        return token

    def issue_access_token(self, username: str, *, ttl: float | None = None, size: int = 16) -> str:
        """An access token minted directly (for the command and file sources); ``size`` random
        bytes (Microsoft's tokens are JWTs of 1500 characters and more)."""
        token = "at-" + secrets.token_urlsafe(size)
        with self.lock:
            self.access[token] = Issued(username, time.time() + (ttl or self.ttl), "direct")
        return token

    def expire(self, token: str) -> None:
        """Make ``token`` expired at the server (as if its lifetime ran out or it was revoked)."""
        with self.lock:
            self.access[token].expires_at = time.time() - 1

    def active(self, token: str) -> str | None:
        """The username of a live token, else None; recorded in :attr:`introspected`."""
        with self.lock:
            issued = self.access.get(token)
            live = issued is not None and issued.expires_at > time.time()
            self.introspected.append((token, live))
            return issued.username if live and issued is not None else None

    # -- HTTP -------------------------------------------------------------------------------

    def _grant(self, form: dict[str, str], client_id: str) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            username = self.subjects[client_id]
        elif grant == "refresh_token":
            time.sleep(self.delay)
            presented = form.get("refresh_token", "")
            owner = self.refresh.pop(presented, None)
            reused = self.used.get(presented)
            if owner is None and reused is not None and self.reuse_revokes:
                for token, family in list(self.refresh.items()):
                    if family == reused:
                        del self.refresh[token]  # the whole family, the live one too
            if owner is None or owner[0] != client_id:
                return 400, {"error": "invalid_grant", "error_description": "unknown token"}
            self.used[presented] = owner
            username = owner[1]
        else:
            return 400, {"error": "unsupported_grant_type"}
        token = "at-" + secrets.token_urlsafe(16)
        self.access[token] = Issued(username, time.time() + self.ttl, grant)
        self.grants.append(grant)
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.ttl) if self.ttl >= 1 else self.ttl,
        }
        if grant == "refresh_token":  # rotation: the old one is gone, here is the new one
            rotated = "rt-" + secrets.token_urlsafe(12)
            self.refresh[rotated] = (client_id, username)
            body["refresh_token"] = rotated
        return 200, body

    def handle(self, path: str, headers: Any, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == "/introspect":
            username = self.active(form.get("token", ""))
            if username is None:
                return 200, {"active": False}
            return 200, {"active": True, "username": username}
        if path != "/token":
            return 404, {"error": "not_found"}
        auth = headers.get("Authorization", "")
        if form.get("client_id", "") in self.public:
            with self.lock:
                if "client_secret" in form or auth:
                    return 401, {
                        "error": "invalid_client",
                        "error_description": "Client is public so neither 'client_assertion'"
                        " nor 'client_secret' should be presented.",
                    }
                return self._grant(form, form["client_id"])
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = (urllib.parse.unquote_plus(p) for p in raw.partition(":"))
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        with self.lock:
            if self.throttle > 0:
                self.throttle -= 1
                return 429, {"error": "temporarily_unavailable", "error_description": "slow down"}
            if self.clients.get(client_id) != secret or not secret:
                return 401, {"error": "invalid_client", "error_description": "bad secret"}
            return self._grant(form, client_id)


@contextmanager
def serve(endpoint: TokenEndpoint) -> Iterator[TokenEndpoint]:
    """Run ``endpoint`` on a free loopback port until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
            path = self.path.split("?")[0]
            if path == "/token" and endpoint.html_page:
                page = endpoint.html_page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            status, body = endpoint.handle(path, self.headers, form)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            if status == 429:
                self.send_header("Retry-After", str(endpoint.retry_after))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    endpoint.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------------------------
# Dovecot with an oauth2 passdb
# --------------------------------------------------------------------------------------------

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_uid = nobody
mail_gid = nogroup
mail_location = maildir:{root}/mail/%u/Maildir
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u allow_all_users=yes
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

OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {introspection_url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


@attrs.define
class OAuthDovecot:
    """A running Dovecot that signs users in only with tokens the endpoint calls active."""

    imap_port: int
    pop3_port: int
    root: Path

    def deliver(self, user: str, raw: bytes, number: int) -> None:
        """Put ``raw`` straight into ``user``'s Maildir (no sign-in needed to deliver)."""
        maildir = self.root / "mail" / user / "Maildir"
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        path = maildir / "new" / f"{time.time():.6f}.M{number}P1.test"
        path.write_bytes(raw)
        for folder in (self.root / "mail" / user, maildir, *maildir.iterdir(), path):
            shutil.chown(folder, "nobody", "nogroup")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@contextmanager
def run_oauth_dovecot(
    binary: str, endpoint: TokenEndpoint, imap_port: int, pop3_port: int
) -> Iterator[OAuthDovecot | str]:
    """Start Dovecot; yields the server, or the start-up log (a str) when it did not start."""
    root = Path(tempfile.mkdtemp(prefix="asm-dvo-"))  # short: unix socket paths are limited
    root.chmod(0o755)
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    (root / "oauth2.conf.ext").write_text(
        OAUTH2_CONF.format(introspection_url=endpoint.introspection_url), encoding="utf-8"
    )
    (root / "oauth2.conf.ext").chmod(0o644)
    conf = root / "dovecot.conf"
    conf.write_text(
        DOVECOT_CONF.format(root=root, host=HOST, imap_port=imap_port, pop3_port=pop3_port),
        encoding="utf-8",
    )
    output = (root / "stdout.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf), "-F"], stdout=output, stderr=output)
    server = OAuthDovecot(imap_port=imap_port, pop3_port=pop3_port, root=root)
    try:
        problem = wait_for_greeting(imap_port, b"* OK", process) or wait_for_greeting(
            pop3_port, b"+OK", process
        )
        if problem:
            output.flush()
            yield f"{problem}\n" + (root / "stdout.log").read_text(errors="replace") + server.log()
        else:
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


# --------------------------------------------------------------------------------------------
# SMTP with XOAUTH2 (aiosmtpd)
# --------------------------------------------------------------------------------------------


class XOAuth2Handler:
    """aiosmtpd handler: ``AUTH XOAUTH2`` checked against the token endpoint; records DATA."""

    def __init__(self, endpoint: TokenEndpoint) -> None:
        self.endpoint = endpoint
        self.received: list[tuple[str, bytes]] = []
        """(signed-in user, message bytes) per accepted message."""
        self.refusals = 0

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:  # noqa: N802 - aiosmtpd
        from aiosmtpd.smtp import AuthResult

        if len(args) == 2:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        fields = dict(
            part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01") if part
        )
        user, auth = fields.get("user", ""), fields.get("auth", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if token and self.endpoint.active(token) == user:
            return AuthResult(success=True, auth_data=user)
        self.refusals += 1
        # Gmail-style: 334 <base64 JSON>, the client answers with an empty line, then 535
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "Bearer"}))
        return AuthResult(
            success=False,
            handled=False,
            message="535 5.7.8 Username and Password not accepted (XOAUTH2)",
        )

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received.append((str(session.auth_data), bytes(envelope.original_content)))
        return "250 2.0.0 queued"
