"""OAuth2 sign-in against real servers on loopback: Dovecot with an oauth2 passdb (IMAP, POP3),
aiosmtpd with XOAUTH2, and a token endpoint for both grants that Dovecot introspects.

What a desk at Microsoft 365 or Google Workspace needs: a token from the client-credentials or
refresh-token grant opens the mailbox; an expired or wrong token is refused with an error that
names server, user and mechanism (never the token); a cached token revoked early costs one
refusal and a fresh token, not a failed poll; a token that expires between two polls of a
long-running service is replaced before the second poll signs in.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from loopback import HOST, free_port, stop_listening
from loopback import _missing as missing
from oauth_servers import (
    OAuthDovecot,
    TokenEndpoint,
    XOAuth2Handler,
    run_oauth_dovecot,
    serve,
)

from asm_email_rules.adapters.imap import ImapConfig, ImapMailbox
from asm_email_rules.adapters.oauth import OAuth2Login, TokenProvider, make_source
from asm_email_rules.adapters.pop3 import Pop3Config, Pop3Mailbox
from asm_email_rules.adapters.smtp import SmtpConfig, SmtpMailer
from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.bootstrap import bootstrap
from asm_email_rules.config import load_config
from asm_email_rules.errors import (
    AuthenticationError,
    MailboxAuthenticationError,
    SendAuthenticationError,
    TokenError,
    TransientSendError,
)
from asm_email_rules.model import OutgoingEmail
from asm_email_rules.sample import DESK_ADDRESS, seed_sample_desk
from asm_email_rules.signin import (
    ClientAuth,
    ClientCredentialsGrant,
    FileTokens,
    RefreshTokenGrant,
    SaslMechanism,
    TokenSourceSpec,
)

pytestmark = [
    pytest.mark.integration,
    # aiosmtpd warns that AUTH without TLS is unsafe: these servers listen on loopback only
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

MECHANISMS = [SaslMechanism.XOAUTH2, SaslMechanism.OAUTHBEARER]
_users = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def endpoint() -> Iterator[TokenEndpoint]:
    with serve(TokenEndpoint(clients={}, subjects={})) as running:
        yield running


@pytest.fixture(autouse=True)
def _default_ttl(endpoint: TokenEndpoint) -> None:
    endpoint.ttl = 3600.0


@pytest.fixture(scope="module")
def oauth_dovecot(endpoint: TokenEndpoint) -> Iterator[OAuthDovecot]:
    binary = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if Path(p).exists()), None
    )
    if binary is None:
        missing("the dovecot binary")
    with run_oauth_dovecot(binary, endpoint, free_port(), free_port()) as server:
        if isinstance(server, str):
            pytest.fail(f"dovecot with the oauth2 passdb did not start:\n{server}")
        yield server


@pytest.fixture
def user() -> str:
    """A fresh mailbox address (Dovecot creates the mailbox on first sign-in or delivery)."""
    return f"desk{next(_users)}@example.test"


def register_app(endpoint: TokenEndpoint, user: str) -> tuple[str, str]:
    """A client id and secret whose client-credentials tokens open ``user``'s mailbox."""
    client_id, secret = f"app-for-{user}", f"secret-of-{user}"
    endpoint.clients[client_id] = secret
    endpoint.subjects[client_id] = user
    return client_id, secret


def client_credentials(endpoint: TokenEndpoint, user: str) -> ClientCredentialsGrant:
    client_id, secret = register_app(endpoint, user)
    return ClientCredentialsGrant(
        endpoint.token_url, client_id, secret, scope="https://outlook.office365.com/.default"
    )


def refresh_grant(endpoint: TokenEndpoint, user: str) -> RefreshTokenGrant:
    client_id, secret = register_app(endpoint, user)
    return RefreshTokenGrant(
        endpoint.token_url,
        client_id,
        secret,
        refresh_token=endpoint.issue_refresh_token(client_id, user),
    )


def file_grant(
    endpoint: TokenEndpoint, user: str, folder: Path
) -> tuple[RefreshTokenGrant, Path, str]:
    """A refresh-token grant whose token is in the file ``folder/refresh_token``: the grant,
    the file and the token first written there."""
    grant = refresh_grant(endpoint, user)
    path = folder / "refresh_token"
    path.write_text(grant.refresh_token + "\n", encoding="utf-8")
    spec = RefreshTokenGrant(
        grant.token_url, grant.client_id, grant.client_secret, refresh_token_file=path
    )
    return spec, path, grant.refresh_token


def login(spec: TokenSourceSpec, mechanism: SaslMechanism = SaslMechanism.XOAUTH2) -> OAuth2Login:
    return OAuth2Login(TokenProvider.from_spec(spec), mechanism)


def imap(server: OAuthDovecot, user: str, oauth2: OAuth2Login) -> ImapMailbox:
    return ImapMailbox(
        ImapConfig(
            host=HOST,
            port=server.imap_port,
            security="plain",
            username=user,
            timeout=5,
            oauth2=oauth2,
        )
    )


def pop3(server: OAuthDovecot, user: str, oauth2: OAuth2Login) -> Pop3Mailbox:
    return Pop3Mailbox(
        Pop3Config(
            host=HOST,
            port=server.pop3_port,
            security="plain",
            username=user,
            timeout=5,
            oauth2=oauth2,
        )
    )


def message(number: int, sender: str = "uma@corp.example") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = f"Printer {number} is out of toner"
    msg["Date"] = "Fri, 27 Nov 2026 11:00:00 +0000"
    msg["Message-ID"] = f"<oauth-{number}@corp.example>"
    msg.set_content(f"Printer {number} needs toner.")
    return msg.as_bytes(policy=policy.SMTP)


# --------------------------------------------------------------------------------------------
# IMAP and POP3: a valid token signs in
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS, ids=lambda m: m.value)
def test_imap_client_credentials_token_opens_the_mailbox(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str, mechanism: SaslMechanism
) -> None:
    raw = message(1)
    oauth_dovecot.deliver(user, raw, 1)
    with imap(oauth_dovecot, user, login(client_credentials(endpoint, user), mechanism)) as box:
        [key] = box.list_keys()
        assert box.fetch(key) == raw
    assert endpoint.grants[-1] == "client_credentials"


@pytest.mark.parametrize("mechanism", MECHANISMS, ids=lambda m: m.value)
def test_pop3_refresh_token_opens_the_maildrop(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str, mechanism: SaslMechanism
) -> None:
    raw = message(2)
    oauth_dovecot.deliver(user, raw, 2)
    with pop3(oauth_dovecot, user, login(refresh_grant(endpoint, user), mechanism)) as box:
        [key] = box.list_keys()
        assert box.fetch(key) == raw
    assert endpoint.grants[-1] == "refresh_token"


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_token_as_long_as_microsofts_signs_in(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str, tmp_path: Path, protocol: str
) -> None:
    # POP3 (RFC 5034 4): an AUTH line with the initial response may not pass 255 octets, so a
    # long token is sent after the server's "+"; IMAP sends it as a continuation line.
    token = endpoint.issue_access_token(user, size=1500)
    assert len(token) > 2000
    path = tmp_path / "token"
    path.write_text(token, encoding="utf-8")
    opener = imap if protocol == "imap" else pop3
    with opener(oauth_dovecot, user, login(FileTokens(path))) as box:
        assert list(box.list_keys()) == []
    assert endpoint.introspected[-1] == (token, True)


# --------------------------------------------------------------------------------------------
# refused tokens: a clear error, never the token
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
@pytest.mark.parametrize("mechanism", MECHANISMS, ids=lambda m: m.value)
def test_expired_token_is_refused_with_server_user_and_mechanism(
    endpoint: TokenEndpoint,
    oauth_dovecot: OAuthDovecot,
    user: str,
    tmp_path: Path,
    protocol: str,
    mechanism: SaslMechanism,
) -> None:
    token = endpoint.issue_access_token(user)
    endpoint.expire(token)
    path = tmp_path / "token"
    path.write_text(token + "\n", encoding="utf-8")
    opener = imap if protocol == "imap" else pop3
    box = opener(oauth_dovecot, user, login(FileTokens(path), mechanism))
    with pytest.raises(MailboxAuthenticationError) as caught:
        box.list_keys()
    error = caught.value
    port = oauth_dovecot.imap_port if protocol == "imap" else oauth_dovecot.pop3_port
    assert error.server == f"{protocol.upper()} {HOST}:{port}"
    assert (error.user, error.mechanism) == (user, mechanism.sasl_name)
    text = str(error)
    assert f"{protocol.upper()} {HOST}:{port}" in text
    assert user in text
    assert mechanism.sasl_name in text
    assert "refused" in text
    assert "b'" not in text  # the server's words, not Python bytes
    assert token not in text
    # a refusal is retried once with a fresh token: the file is read again, still expired
    assert [live for t, live in endpoint.introspected if t == token] == [False, False]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_wrong_token_is_refused(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str, tmp_path: Path, protocol: str
) -> None:
    path = tmp_path / "token"
    path.write_text("not-a-token-anyone-issued", encoding="utf-8")
    opener = imap if protocol == "imap" else pop3
    with pytest.raises(AuthenticationError, match=r"sign-in as .* with XOAUTH2 failed: refused"):
        opener(oauth_dovecot, user, login(FileTokens(path))).list_keys()


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_token_of_another_mailbox_is_refused(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str, protocol: str
) -> None:
    # Dovecot compares the SASL user with the token's username (as Exchange does with the
    # mailbox permission): an app allowed into one mailbox cannot open another. The error
    # said only the server's "Authentication failed.": now also where to look (the token
    # was issued, so the grant works; the mailbox's permission for the app does not).
    spec = client_credentials(endpoint, "someone-else@example.test")
    opener = imap if protocol == "imap" else pop3
    with pytest.raises(MailboxAuthenticationError, match="refused") as caught:
        opener(oauth_dovecot, user, login(spec)).list_keys()
    assert "what to do:" in str(caught.value)
    assert "mailbox permission" in str(caught.value)
    assert "https://mail.google.com/" in str(caught.value)


def test_endpoint_refusing_the_client_secret_is_a_sign_in_error(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str
) -> None:
    good = client_credentials(endpoint, user)
    bad = ClientCredentialsGrant(good.token_url, good.client_id, "wrong-secret")
    with pytest.raises(MailboxAuthenticationError) as caught:
        imap(oauth_dovecot, user, login(bad)).list_keys()
    text = str(caught.value)
    assert "no access token" in text
    assert "invalid_client" in text
    assert endpoint.token_url in text
    assert "wrong-secret" not in text


# --------------------------------------------------------------------------------------------
# cache, retry once, rotation
# --------------------------------------------------------------------------------------------


def test_cached_token_revoked_early_is_replaced_after_one_refusal(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str
) -> None:
    oauth2 = login(refresh_grant(endpoint, user))
    with imap(oauth_dovecot, user, oauth2) as box:
        assert list(box.list_keys()) == []
    first = oauth2.tokens.token().value  # still cached: no new grant
    assert oauth2.tokens.fetches == 1
    endpoint.expire(first)  # revoked at the server before its announced expiry

    with imap(oauth_dovecot, user, oauth2) as box:
        assert list(box.list_keys()) == []
    assert oauth2.tokens.fetches == 2
    second = oauth2.tokens.token().value
    assert second != first
    used = [(t, live) for t, live in endpoint.introspected if t in (first, second)]
    assert used == [(first, True), (first, False), (second, True)]


def test_rotated_refresh_token_is_written_back_to_its_file(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str, tmp_path: Path
) -> None:
    spec, path, first = file_grant(endpoint, user, tmp_path)
    with pop3(oauth_dovecot, user, login(spec)) as box:
        assert list(box.list_keys()) == []
    rotated = path.read_text(encoding="utf-8").strip()
    assert rotated != first
    assert rotated in endpoint.refresh  # the one the server will accept next time


def test_a_refresh_token_another_process_rotated_is_read_again_from_its_file(
    endpoint: TokenEndpoint, user: str, tmp_path: Path
) -> None:
    # The service held its refresh token in memory; `check` (another process on the same
    # configuration) signed in, the server rotated the token and forgot the old one, and the
    # service failed with invalid_grant until it was restarted.
    spec, path, _ = file_grant(endpoint, user, tmp_path)
    service, check = make_source(spec), make_source(spec)
    service.fetch()
    check.fetch()  # rotates again: the service's token is gone at the server
    service.fetch()
    assert path.read_text(encoding="utf-8").strip() in endpoint.refresh
    # The file holds a token the server no longer knows (a write-back that failed, a copy
    # restored from a backup): the one this process holds is tried next.
    path.write_text("stale-token\n", encoding="utf-8")
    service.fetch()
    assert path.read_text(encoding="utf-8").strip() in endpoint.refresh


def test_after_a_failed_write_back_the_newer_token_held_in_memory_goes_first(
    endpoint: TokenEndpoint, user: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file could not be written back (a full disk): it still holds the token the server
    # rotated away. Presenting that one first would make a server that detects reuse revoke
    # every token of the grant, the live one too.
    endpoint.reuse_revokes = True
    try:
        spec, path, first = file_grant(endpoint, user, tmp_path)
        source = make_source(spec)
        with monkeypatch.context() as disk_full:
            disk_full.setattr(tempfile, "mkstemp", _disk_full)
            source.fetch()
        assert path.read_text(encoding="utf-8").strip() == first  # stale
        source.fetch()  # the token held in memory, not the stale one: nothing revoked
        source.fetch()
        assert path.read_text(encoding="utf-8").strip() in endpoint.refresh  # healed
    finally:
        endpoint.reuse_revokes = False


def test_a_throttled_refresh_never_presents_the_refresh_token_rotated_away(
    endpoint: TokenEndpoint, user: str, tmp_path: Path
) -> None:
    # `check` rotated the shared refresh token; the service, holding the old one, refreshed
    # while the endpoint throttled it (429 temporarily_unavailable). Any refused request moved
    # on to the other token, the rotated-away one, and a server that detects reuse revoked
    # every token of the grant: the desk stopped until someone consented again. Only
    # invalid_grant says a refresh token is refused; anything else is the endpoint's state.
    endpoint.reuse_revokes = True
    try:
        spec, path, _ = file_grant(endpoint, user, tmp_path)
        service, check = make_source(spec), make_source(spec)
        service.fetch()
        check.fetch()  # the file's token is now the only live one; the service holds the old
        endpoint.throttle = 1
        with pytest.raises(TokenError, match="temporarily_unavailable"):
            service.fetch()
        live = path.read_text(encoding="utf-8").strip()
        assert live in endpoint.refresh  # not revoked
        service.fetch()  # the throttling is over: the service goes on by itself
        assert path.read_text(encoding="utf-8").strip() in endpoint.refresh
    finally:
        endpoint.reuse_revokes = False
        endpoint.throttle = 0


@pytest.mark.parametrize("grant", ["client_credentials", "refresh_token"])
def test_a_token_endpoint_asking_to_wait_is_not_asked_again_before_retry_after(
    endpoint: TokenEndpoint, user: str, grant: str
) -> None:
    # Microsoft Entra answers a client that asks too often with 429 and Retry-After. The
    # poller asked again at every sign-in (IMAP, then SMTP, then at each backoff step), so it
    # stayed throttled; the error did not say how long to wait.
    spec = client_credentials(endpoint, user) if grant == "client_credentials" else None
    now = [time.time()]
    provider = TokenProvider.from_spec(spec or refresh_grant(endpoint, user), clock=lambda: now[0])
    endpoint.throttle, endpoint.retry_after = 1, 120
    requests_before = len(endpoint.grants)
    with pytest.raises(TokenError, match=r"temporarily_unavailable.*HTTP 429, Retry-After 120 s"):
        provider.token()
    with pytest.raises(TokenError, match=r"not asked again before"):
        provider.token()  # no request: the endpoint said when
    assert endpoint.throttle == 0
    assert len(endpoint.grants) == requests_before
    now[0] += 121
    assert provider.token().value in endpoint.access  # asked again, after the wait
    assert len(endpoint.grants) == requests_before + 1


@pytest.mark.parametrize("client_auth", [ClientAuth.POST, ClientAuth.BASIC])
def test_a_public_client_without_a_secret_refreshes_its_token(
    endpoint: TokenEndpoint, oauth_dovecot: OAuthDovecot, user: str, client_auth: ClientAuth
) -> None:
    # oauth.md: client_secret is optional for the refresh-token grant (a delegated sign-in by
    # a public client: Microsoft 365 "mobile and desktop" apps have no secret). The request
    # carried an empty client_secret (or HTTP Basic "id:"), which Microsoft refuses from a
    # public client; RFC 6749 3.2.1 has it send its client_id alone.
    client_id = f"public-app-for-{user}"
    endpoint.public.add(client_id)
    spec = RefreshTokenGrant(
        endpoint.token_url,
        client_id,
        refresh_token=endpoint.issue_refresh_token(client_id, user),
        client_auth=client_auth,
    )
    with imap(oauth_dovecot, user, login(spec)) as box:
        assert list(box.list_keys()) == []


def test_a_token_endpoint_answering_with_a_web_page_says_to_check_the_token_url(
    endpoint: TokenEndpoint, user: str
) -> None:
    # A token_url copied from the wrong place (the authorize URL, the tenant's sign-in page)
    # or a proxy's page answers 200 with HTML: the error said only "ValueError: Token endpoint
    # response is not a JSON object (HTTP 200)".
    provider = TokenProvider.from_spec(client_credentials(endpoint, user))
    endpoint.html_page = "<html><body>Sign in to your account</body></html>"
    try:
        with pytest.raises(TokenError) as caught:
            provider.token()
    finally:
        endpoint.html_page = ""
    said = str(caught.value)
    assert "text/html, not JSON" in said
    assert "check token_url" in said
    assert "https://login.microsoftonline.com/<tenant-id>/oauth2/v2.0/token" in said
    assert provider.token().value in endpoint.access  # the right answer again: it goes on


def test_two_processes_refreshing_at_once_both_get_a_token(
    endpoint: TokenEndpoint, user: str, tmp_path: Path
) -> None:
    # The service and `check` refreshed together: both presented the file's token, and the
    # slower one was refused (invalid_grant). The file's lock makes them take turns.
    spec, path, _ = file_grant(endpoint, user, tmp_path)
    outcomes: dict[str, str] = {}

    def refresh(name: str) -> None:
        try:
            make_source(spec).fetch()
            outcomes[name] = "ok"
        except TokenError as exc:
            outcomes[name] = str(exc)

    endpoint.delay = 0.3
    try:
        threads = [threading.Thread(target=refresh, args=(n,)) for n in ("service", "check")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        endpoint.delay = 0.0
    assert outcomes == {"service": "ok", "check": "ok"}
    assert path.read_text(encoding="utf-8").strip() in endpoint.refresh


def test_a_rotated_refresh_token_reaches_the_disk_before_it_replaces_the_old_one(
    endpoint: TokenEndpoint, user: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oauth.md: the rotated token replaces the old one in its file, "written atomically". It
    # was renamed over the old file unflushed: after a power loss the file could be empty,
    # and the server no longer takes the old token (the desk needs a new consent). A write
    # that failed also left its temporary copy of the secret token in the folder.
    spec, path, first = file_grant(endpoint, user, tmp_path)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: Path) -> None:
        events.append("replace")
        real_replace(src, dst)

    with monkeypatch.context() as spy:
        spy.setattr(os, "fsync", fsync)
        spy.setattr(os, "replace", replace)
        make_source(spec).fetch()
    assert events[:2] == ["fsync", "replace"]  # the new file's bytes first, then the rename
    assert path.read_text(encoding="utf-8").strip() in endpoint.refresh
    assert (path.stat().st_mode & 0o777) == 0o600

    spec, path, first = file_grant(endpoint, user, tmp_path)
    with monkeypatch.context() as failing:
        failing.setattr(os, "replace", _disk_full)
        make_source(spec).fetch()  # the token held in memory still signs in
    assert path.read_text(encoding="utf-8").strip() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refresh_token", "refresh_token.lock"]


def _disk_full(*args: object, **kwargs: object) -> tuple[int, str]:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --------------------------------------------------------------------------------------------
# SMTP with XOAUTH2
# --------------------------------------------------------------------------------------------


@pytest.fixture
def xoauth2_smtp(endpoint: TokenEndpoint) -> Iterator[tuple[int, XOAuth2Handler]]:
    from aiosmtpd.controller import Controller

    handler = XOAuth2Handler(endpoint)
    port = free_port()
    controller = Controller(
        handler,
        hostname=HOST,
        port=port,
        auth_require_tls=False,  # loopback only; without it AUTH is not even offered
        auth_required=True,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


REPLY = OutgoingEmail(
    to="uma@corp.example",
    subject="Call 7 has been logged [CALL#7]",
    body="Your call is 7.\n",
    sender=f"Service Desk <{DESK_ADDRESS}>",
)


def test_reply_goes_out_signed_in_with_a_token(
    endpoint: TokenEndpoint, xoauth2_smtp: tuple[int, XOAuth2Handler]
) -> None:
    port, handler = xoauth2_smtp
    spec = client_credentials(endpoint, DESK_ADDRESS)
    mailer = SmtpMailer(
        SmtpConfig(
            host=HOST,
            port=port,
            security="plain",
            username=DESK_ADDRESS,
            timeout=5,
        ),
        oauth2=login(spec),
    )
    mailer.send(REPLY)
    [(signed_in_as, raw)] = handler.received
    assert signed_in_as == DESK_ADDRESS
    assert b"Call 7 has been logged [CALL#7]" in raw


def test_smtp_refusal_is_a_transient_sign_in_error(
    endpoint: TokenEndpoint, xoauth2_smtp: tuple[int, XOAuth2Handler], tmp_path: Path
) -> None:
    port, handler = xoauth2_smtp
    path = tmp_path / "token"
    token = endpoint.issue_access_token(DESK_ADDRESS)
    endpoint.expire(token)
    path.write_text(token, encoding="utf-8")
    mailer = SmtpMailer(
        SmtpConfig(
            host=HOST,
            port=port,
            security="plain",
            username=DESK_ADDRESS,
            timeout=5,
        ),
        oauth2=login(FileTokens(path)),
    )
    with pytest.raises(SendAuthenticationError) as caught:
        mailer.send(REPLY)
    error = caught.value
    assert isinstance(error, TransientSendError)  # the reply waits; it is not the reply's fault
    assert (error.server, error.mechanism, error.code) == (f"SMTP {HOST}:{port}", "XOAUTH2", 535)
    assert DESK_ADDRESS in str(error)
    assert token not in str(error)
    assert handler.refusals == 2  # tried, refused, retried once with the file read again
    assert "what to do:" in str(error)
    assert handler.received == []


# --------------------------------------------------------------------------------------------
# the polling service from a config file: a token that expires between two polls
# --------------------------------------------------------------------------------------------

CONFIG = """\
store = "{store}"

[smtp]
host = "{host}"
port = {smtp_port}
security = "plain"
username = "{desk}"
timeout = 10
auth = "oauth2"

[smtp.oauth2]
source = "client_credentials"
token_url = "{token_url}"
client_id = "{smtp_client}"
client_secret_env = "TEST_OAUTH_SMTP_SECRET"
scope = "https://outlook.office365.com/.default"

[[accounts]]
name = "google"
protocol = "imap"
host = "{host}"
port = {imap_port}
security = "plain"
username = "{user}"
timeout = 10
auth = "oauth2"

[accounts.oauth2]
mechanism = "oauthbearer"
source = "refresh_token"
token_url = "{token_url}"
client_id = "{imap_client}"
client_secret_env = "TEST_OAUTH_IMAP_SECRET"
refresh_token_file = "refresh_token"

[accounts.mailbox]
addresses = ["{desk}"]
default_logging_analyst_id = 1
auto_reply = true
"""


def desk_config(
    folder: Path,
    *,
    smtp_port: int,
    imap_port: int,
    user: str,
    token_url: str,
    imap_client: str,
    smtp_client: str,
    replace: tuple[str, str] = ("", ""),
) -> Path:
    """The sample desk in ``folder/desk.sqlite3`` and ``folder/config.toml`` (:data:`CONFIG`
    signing in with OAuth2 at ``token_url``; ``replace``: one of its lines written another
    way); the configuration's path."""
    with SqliteRepository(folder / "desk.sqlite3") as repo:
        seed_sample_desk(repo)
    text = CONFIG.format(
        store="desk.sqlite3",
        host=HOST,
        smtp_port=smtp_port,
        imap_port=imap_port,
        desk=DESK_ADDRESS,
        user=user,
        token_url=token_url,
        imap_client=imap_client,
        smtp_client=smtp_client,
    )
    old, new = replace
    if old:
        assert old in text, f"{old!r} is not in the configuration"
        text = text.replace(old, new)
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_token_expiring_between_two_polls_is_renewed_before_the_second(
    endpoint: TokenEndpoint,
    oauth_dovecot: OAuthDovecot,
    xoauth2_smtp: tuple[int, XOAuth2Handler],
    user: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    smtp_port, handler = xoauth2_smtp
    imap_client, imap_secret = register_app(endpoint, user)
    smtp_client, smtp_secret = register_app(endpoint, DESK_ADDRESS)
    monkeypatch.setenv("TEST_OAUTH_IMAP_SECRET", imap_secret)
    monkeypatch.setenv("TEST_OAUTH_SMTP_SECRET", smtp_secret)
    (tmp_path / "refresh_token").write_text(endpoint.issue_refresh_token(imap_client, user))
    path = desk_config(
        tmp_path,
        smtp_port=smtp_port,
        imap_port=oauth_dovecot.imap_port,
        user=user,
        token_url=endpoint.token_url,
        imap_client=imap_client,
        smtp_client=smtp_client,
    )
    config = load_config(path)
    endpoint.ttl = 2.0  # every token lives two seconds
    grants_before = len(endpoint.grants)

    with bootstrap(config) as wiring:  # what `asm-email-rules poll` runs
        service = wiring.service
        oauth_dovecot.deliver(user, message(31), 31)
        first = service.poll_once()
        time.sleep(2.2)  # the first tokens have now expired at the server
        oauth_dovecot.deliver(user, message(32), 32)
        second = service.poll_once()

    assert (first.total("processed"), second.total("processed")) == (1, 1)
    assert (first.total("errors"), second.total("errors")) == (0, 0)
    # each poll fetched a new IMAP token (refresh grant) and a new SMTP token, before signing
    # in: no expired token was ever offered to the servers
    assert (
        sorted(endpoint.grants[grants_before:])
        == ["client_credentials"] * 2 + ["refresh_token"] * 2
    )
    assert all(live for _, live in endpoint.introspected[-4:])
    assert [user for user, _ in handler.received] == [DESK_ADDRESS, DESK_ADDRESS]


class _DribblingEndpoint:
    """A token endpoint that sends its answer one byte every ``pause`` seconds: each read of
    the socket gets a byte well within any read timeout, the whole answer takes seconds."""

    ANSWER = (
        b'{"access_token": "tok-late", "token_type": "Bearer", "expires_in": 3600, '
        b'"refresh_token": "rt-rotated"}'
    )

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.requests = 0
        self.done = threading.Event()
        self.listener = socket.create_server((HOST, 0))
        self.url = f"http://{HOST}:{self.listener.getsockname()[1]}/token"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.requests += 1
            with conn:
                conn.recv(65536)  # the request (small, one segment on loopback)
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(self.ANSWER)}\r\nConnection: close\r\n\r\n"
                ).encode()
                conn.sendall(head)
                for byte in self.ANSWER:
                    time.sleep(self.pause)
                    conn.sendall(bytes([byte]))
            self.done.set()


def test_a_token_endpoint_that_dribbles_its_answer_is_waited_for_timeout_seconds_in_all(
    tmp_path: Path,
) -> None:
    # `requests` bounds each read, not the request: an endpoint sending a byte a second held
    # the poller for minutes past `timeout`. The wait now ends at `timeout`; the request goes
    # on, and its answer (with the refresh token the server rotated in it) is kept and used.
    endpoint = _DribblingEndpoint(pause=0.025)  # about 2.5 s for the whole answer
    refresh_file = tmp_path / "refresh_token"
    refresh_file.write_text("rt-first\n", encoding="utf-8")
    spec = RefreshTokenGrant(
        endpoint.url, "desk", "secret", refresh_token_file=refresh_file, timeout=0.5
    )
    provider = TokenProvider.from_spec(spec)
    began = time.monotonic()
    with pytest.raises(TokenError, match=r"no answer within 0\.5 s"):
        provider.token()
    # the whole answer takes 2.6 s at least (103 bytes, 25 ms apart): waiting for it fails
    assert time.monotonic() - began < 2.0
    assert endpoint.done.wait(60)
    end = time.monotonic() + 30  # the request's thread keeps the rotated token
    while refresh_file.read_text(encoding="utf-8").strip() != "rt-rotated":
        assert time.monotonic() < end, "the rotated refresh token was not kept"
        time.sleep(0.01)
    assert provider.token().value == "tok-late"  # the late answer, not a second request
    assert endpoint.requests == 1
    assert refresh_file.read_text(encoding="utf-8").strip() == "rt-rotated"
    stop_listening(endpoint.listener)


# --------------------------------------------------------------------------------------------
# `check`: what is wrong with the OAuth2 setup, and what to do about it
# --------------------------------------------------------------------------------------------


def test_check_says_what_to_do_about_a_revoked_refresh_token_and_a_wrong_secret(
    endpoint: TokenEndpoint,
    oauth_dovecot: OAuthDovecot,
    xoauth2_smtp: tuple[int, XOAuth2Handler],
    user: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `check` said "invalid_grant: unknown token" and "invalid_client: bad secret": the
    # endpoint's words, not what the operator has to do (a new consent; a new client secret).
    from asm_email_rules.cli import main

    smtp_port, _ = xoauth2_smtp
    imap_client, imap_secret = register_app(endpoint, user)
    smtp_client, _ = register_app(endpoint, DESK_ADDRESS)
    monkeypatch.setenv("TEST_OAUTH_IMAP_SECRET", imap_secret)
    monkeypatch.setenv("TEST_OAUTH_SMTP_SECRET", "an-expired-secret")
    refresh_file = tmp_path / "refresh_token"
    refresh_file.write_text("rt-revoked-long-ago\n", encoding="utf-8")
    config = desk_config(
        tmp_path,
        smtp_port=smtp_port,
        imap_port=oauth_dovecot.imap_port,
        user=user,
        token_url=endpoint.token_url,
        imap_client=imap_client,
        smtp_client=smtp_client,
    )
    code = main(["check", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 3, out + err
    imap_line = next(line for line in out.splitlines() if line.startswith("accounts[1]"))
    smtp_line = next(line for line in out.splitlines() if line.startswith("smtp:"))
    assert "invalid_grant" in imap_line  # the endpoint's words, then what to do
    assert "obtain a new refresh token" in imap_line
    assert str(refresh_file) in imap_line
    assert "invalid_client" in smtp_line
    assert "client_id" in smtp_line
    assert "client secret" in smtp_line
    assert "an-expired-secret" not in out + err
    assert "rt-revoked-long-ago" not in out + err


def test_a_token_endpoint_that_is_down_is_logged_as_no_access_token_not_a_refusal(
    endpoint: TokenEndpoint,
    oauth_dovecot: OAuthDovecot,
    xoauth2_smtp: tuple[int, XOAuth2Handler],
    user: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The token endpoint refused the connection, and the service's one line said "sign-in
    # refused": the operator looks at the mailbox's password or permissions, not the network.
    smtp_port, _ = xoauth2_smtp
    imap_client, imap_secret = register_app(endpoint, user)
    smtp_client, smtp_secret = register_app(endpoint, DESK_ADDRESS)
    monkeypatch.setenv("TEST_OAUTH_IMAP_SECRET", imap_secret)
    monkeypatch.setenv("TEST_OAUTH_SMTP_SECRET", smtp_secret)
    (tmp_path / "refresh_token").write_text(endpoint.issue_refresh_token(imap_client, user))
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind((HOST, 0))
        down = f"http://{HOST}:{closed.getsockname()[1]}/token"
    path = desk_config(
        tmp_path,
        smtp_port=smtp_port,
        imap_port=oauth_dovecot.imap_port,
        user=user,
        token_url=down,
        imap_client=imap_client,
        smtp_client=smtp_client,
    )
    oauth_dovecot.deliver(user, message(41), 41)
    with bootstrap(load_config(path)) as wiring, caplog.at_level("WARNING"):
        report = wiring.service.poll_once()
    assert report.total("errors") == 1
    assert report.total("processed") == 0  # the message waits in the mailbox ...
    assert report.total("quarantined") == 0  # ... and is not blamed
    lines = [r.getMessage() for r in caplog.records if r.name == "asm_email_rules.service"]
    assert len(lines) == 1
    assert lines[0].startswith("account backing off: no access token: IMAP")
    assert "Connection refused" in lines[0]


def test_check_refuses_a_refresh_token_file_it_could_not_write_back_and_keeps_the_token(
    endpoint: TokenEndpoint,
    oauth_dovecot: OAuthDovecot,
    xoauth2_smtp: tuple[int, XOAuth2Handler],
    user: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The service's user could read its refresh_token_file but not write its folder (root
    # had put it there). `check` signed in, the server rotated the refresh token, the new one
    # could not be written and died with `check`: "check: ready", and the next process was
    # refused (invalid_grant) until someone consented again. The test runs as root, who may
    # write anything, so the kernel's answer for the folder is the one another user gets.
    from asm_email_rules.cli import main

    smtp_port, _ = xoauth2_smtp
    imap_client, imap_secret = register_app(endpoint, user)
    smtp_client, smtp_secret = register_app(endpoint, DESK_ADDRESS)
    monkeypatch.setenv("TEST_OAUTH_IMAP_SECRET", imap_secret)
    monkeypatch.setenv("TEST_OAUTH_SMTP_SECRET", smtp_secret)
    folder = tmp_path / "tokens"
    folder.mkdir()
    refresh_file = folder / "refresh_token"
    first = endpoint.issue_refresh_token(imap_client, user)
    refresh_file.write_text(first + "\n", encoding="utf-8")
    config = desk_config(
        tmp_path,
        smtp_port=smtp_port,
        imap_port=oauth_dovecot.imap_port,
        user=user,
        token_url=endpoint.token_url,
        imap_client=imap_client,
        smtp_client=smtp_client,
        replace=(
            'refresh_token_file = "refresh_token"',
            'refresh_token_file = "tokens/refresh_token"',
        ),
    )
    real_access = os.access

    def access(path: object, mode: int, **kwargs: bool) -> bool:
        if Path(str(path)) == folder and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as other_user:
        other_user.setattr(os, "access", access)
        code = main(["check", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert f"error: accounts[1] (google): oauth2.refresh_token_file: {folder}" in out
    assert "not writable by this user" in out
    assert "accounts[1] (google): not signed in" in out
    assert "check: not ready (1 error" in out
    assert refresh_file.read_text(encoding="utf-8").strip() == first  # still the live one
    assert first in endpoint.refresh

    code = main(["check", "--config", str(config)])  # the folder fixed: ready, token rotated
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert refresh_file.read_text(encoding="utf-8").strip() in endpoint.refresh


def test_check_warns_that_a_refresh_token_from_the_environment_is_not_kept_when_rotated(
    endpoint: TokenEndpoint,
    user: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With refresh_token_env (or refresh_token) a token the server rotates lives only in the
    # poller's memory: a restart, `check` or `deliver` present the configured one, which a
    # server that rotates may no longer accept. Nothing said so.
    from asm_email_rules.cli import main

    imap_client, imap_secret = register_app(endpoint, user)
    monkeypatch.setenv("TEST_OAUTH_IMAP_SECRET", imap_secret)
    monkeypatch.setenv("TEST_OAUTH_SMTP_SECRET", "unused")
    monkeypatch.setenv("TEST_OAUTH_RT", endpoint.issue_refresh_token(imap_client, user))
    config = desk_config(
        tmp_path,
        smtp_port=free_port(),
        imap_port=free_port(),
        user=user,
        token_url=endpoint.token_url,
        imap_client=imap_client,
        smtp_client="unused",
        replace=('refresh_token_file = "refresh_token"', 'refresh_token_env = "TEST_OAUTH_RT"'),
    )
    code = main(["check", "--no-sign-in", "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, out + err  # a warning: it works until the token is rotated
    assert "warning: accounts[1] (google): oauth2.refresh_token:" in out
    assert "use refresh_token_file" in out
    assert os.environ["TEST_OAUTH_RT"] not in out + err
