"""OAuth2 sign-in for the IMAP, POP3 and SMTP adapters: tokens and SASL responses.

* Token sources (:mod:`asm_email_rules.signin` describes them): a command, a file, the
  client-credentials grant and the refresh-token grant. The two grants use ``authlib`` (the
  optional extra ``asm-email-rules[oauth]``), imported only when a grant is used.
* :class:`TokenProvider` caches the access token and fetches a new one before it expires
  (five minutes before, or halfway through a shorter lifetime).
* :func:`initial_response` builds the SASL ``XOAUTH2`` and ``OAUTHBEARER`` (RFC 7628) client
  responses; :func:`sign_in` tries a token, and after a refusal drops it from the cache and
  tries once more with a fresh one (a token revoked or expired early costs one refusal, not an
  outage).

Tokens and secrets never reach a log line, an exception message or a ``repr``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import attrs

from asm_email_rules.errors import TokenError
from asm_email_rules.signin import (
    ClientCredentialsGrant,
    CommandTokens,
    FileTokens,
    OAuth2Settings,
    RefreshTokenGrant,
    SaslMechanism,
    TokenSourceSpec,
)

fcntl: ModuleType | None
try:  # POSIX: refreshes of one refresh_token_file are serialised across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: each process refreshes on its own
    fcntl = None

__all__ = [
    "OAUTHBEARER_ABORT",
    "REFUSED_WHAT_TO_DO",
    "AccessToken",
    "OAuth2Login",
    "TokenProvider",
    "TokenSource",
    "error_detail",
    "error_reply",
    "initial_response",
    "make_source",
    "oauthbearer_response",
    "sign_in",
    "xoauth2_response",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time``); injected in tests."""

REFRESH_MARGIN = 300.0
"""Seconds before expiry at which a cached token is replaced (at most half its lifetime)."""

RETRY_AFTER_MAX = 900.0
"""The longest a token endpoint's ``Retry-After`` holds its next request back (15 minutes, the
polling service's longest backoff): a server asking for a day must not silence a desk."""

REFUSED_WHAT_TO_DO = (
    " (what to do: the server refused the access token it was given; the grant itself works."
    " Microsoft 365: the app's IMAP/POP/SMTP permissions and admin consent, its service"
    " principal in Exchange Online and its mailbox permission for this address (up to an hour"
    " to apply), SMTP AUTH enabled for the mailbox; Google: the scope https://mail.google.com/"
    " and IMAP/POP enabled for the mailbox; see docs/oauth.md)"
)
"""Appended to an OAuth2 sign-in that the mail server refused (never to a password's)."""

OAUTHBEARER_ABORT = b"\x01"
"""The client's answer to an OAUTHBEARER error challenge (RFC 7628 3.2.3: a lone ``%x01``)."""

# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_DELAY_SECONDS_RE = re.compile(r"[0-9]{1,12}")
_MAX_OUTPUT = 1_000_000


@attrs.frozen
class AccessToken:
    """A bearer token and when it stops working (Unix seconds; None when unknown).

    A token whose expiry is unknown is not cached: its source is asked again at every sign-in.
    """

    value: str = attrs.field(repr=False)
    expires_at: float | None = None


class TokenSource(Protocol):
    """Fetches a fresh access token; raises :class:`~asm_email_rules.errors.TokenError`."""

    def fetch(self) -> AccessToken:
        """A new token from the source (never a cached one)."""
        ...

    def describe(self) -> str:
        """Where tokens come from, for error messages (no secrets)."""
        ...


def _checked(value: str, where: str) -> str:
    """``value`` when it has the shape of a bearer token (RFC 6750 2.1); else TokenError."""
    token = value.strip()
    if not token:
        raise TokenError(f"{where}: gave an empty access token")
    if not _B64TOKEN_RE.fullmatch(token):
        raise TokenError(f"{where}: gave something that is not a bearer token (RFC 6750 2.1)")
    return token


def _expiry(data: dict[str, Any], now: float, where: str) -> float | None:
    """``expires_at`` from a token response's ``expires_in`` (RFC 6749 5.1) or ``expires_at``."""
    for key, base in (("expires_in", now), ("expires_at", 0.0)):
        raw = data.get(key)
        if raw is None:
            continue
        try:
            return base + float(raw)
        except (TypeError, ValueError):
            raise TokenError(f"{where}: {key} is not a number") from None
    return None


def _parse_output(text: str, now: float, where: str) -> AccessToken:
    """A bare token, or JSON ``{"access_token": ..., "expires_in"|"expires_at": ...}``."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise TokenError(f"{where}: output starts with '{{' but is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
            raise TokenError(f"{where}: JSON output has no access_token string")
        return AccessToken(_checked(data["access_token"], where), _expiry(data, now, where))
    first = next((line for line in stripped.splitlines() if line.strip()), "")
    return AccessToken(_checked(first, where))


class CommandTokenSource:
    """Runs :class:`~asm_email_rules.signin.CommandTokens` (no shell) and reads its output."""

    def __init__(self, spec: CommandTokens, *, clock: Clock = time.time) -> None:
        self.spec = spec
        self._clock = clock

    def describe(self) -> str:
        return f"token command {self.spec.argv[0]!r}"

    def fetch(self) -> AccessToken:
        where = self.describe()
        try:
            done = subprocess.run(
                list(self.spec.argv),
                capture_output=True,
                timeout=self.spec.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise TokenError(f"{where}: no answer within {self.spec.timeout:g} s") from None
        except OSError as exc:
            raise TokenError(f"{where}: cannot run: {exc.strerror or exc}") from None
        if done.returncode != 0:
            errors = done.stderr.decode("utf-8", "replace").strip().splitlines()
            said = f": {errors[-1][:200]}" if errors else ""
            raise TokenError(f"{where}: exited with status {done.returncode}{said}")
        return _parse_output(
            done.stdout[:_MAX_OUTPUT].decode("utf-8", "replace"), self._clock(), where
        )


class FileTokenSource:
    """Reads :class:`~asm_email_rules.signin.FileTokens`."""

    def __init__(self, spec: FileTokens, *, clock: Clock = time.time) -> None:
        self.spec = spec
        self._clock = clock

    def describe(self) -> str:
        return f"token file {str(self.spec.path)!r}"

    def fetch(self) -> AccessToken:
        where = self.describe()
        try:
            with self.spec.path.open("rb") as handle:
                text = handle.read(_MAX_OUTPUT).decode("utf-8", "replace")
        except OSError as exc:
            raise TokenError(f"{where}: cannot read: {exc.strerror or exc}") from None
        return _parse_output(text, self._clock(), where)


def _session(client_id: str, client_secret: str, auth_method: str, scope: str) -> Any:
    try:
        # authlib has no type stubs in the package (typeshed has types-Authlib): ignored here,
        # not in a host's mypy configuration; unused-ignore keeps a host with the stubs clean.
        from authlib.integrations.requests_client import (  # type: ignore[import-untyped,unused-ignore]
            OAuth2Session,
        )
    except ImportError:  # pragma: no cover - depends on the installation
        raise TokenError(
            "OAuth2 grants need the authlib package: pip install 'asm-email-rules[oauth]'"
        ) from None
    return OAuth2Session(
        client_id,
        client_secret or None,
        # A public client (no secret: a desktop or device sign-in) sends its client_id alone
        # (RFC 6749 3.2.1); an empty client_secret or Basic "id:" is refused by Microsoft.
        token_endpoint_auth_method=auth_method if client_secret else "none",
        scope=scope or None,
    )


def _grant_errors() -> tuple[type[BaseException], ...]:
    """What authlib and requests raise for a refused or failed token request."""
    from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped,unused-ignore]
    from requests import RequestException

    return (AuthlibBaseError, RequestException, ValueError, KeyError, TypeError)


def _utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(response: Any, now: float) -> float | None:
    """The seconds a 429 or 503 answer's ``Retry-After`` asks for (RFC 9110 10.2.3: seconds
    or an HTTP date), at most :data:`RETRY_AFTER_MAX`; None for another answer or none."""
    if response is None or getattr(response, "status_code", None) not in (429, 503):
        return None
    raw = str(response.headers.get("Retry-After", "")).strip()[:64]
    if _DELAY_SECONDS_RE.fullmatch(raw):
        seconds = float(raw)
    else:
        try:
            seconds = parsedate_to_datetime(raw).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _what_to_do(error: object, spec: ClientCredentialsGrant | RefreshTokenGrant) -> str:
    """What the operator does about an OAuth error code (RFC 6749 5.2) of ``spec``'s grant;
    ``""`` for an error no setting of ours can cure (the endpoint's state, the network)."""
    if error == "invalid_grant" and isinstance(spec, RefreshTokenGrant):
        where = (
            f"write it to {str(spec.refresh_token_file)!r}"
            if spec.refresh_token_file is not None
            else "put it in refresh_token (or refresh_token_env)"
        )
        return (
            "the refresh token is revoked, expired or was replaced: obtain a new refresh token "
            f"by signing in as the mailbox once more (docs/oauth.md) and {where}"
        )
    if error == "invalid_client":
        return (
            f"the endpoint does not accept client_id {spec.client_id!r} with this client secret:"
            " check both; a client secret that expired needs a new one from the provider"
            " (Microsoft Entra: the app registration's Certificates & secrets)"
        )
    if error == "unauthorized_client":
        return (
            "this client may not use this grant: check the app registration (Microsoft 365 "
            "app-only: the application permissions and the admin consent)"
        )
    if error == "invalid_scope":
        return (
            f"scope {spec.scope!r} is not allowed for this client (Microsoft 365 app-only: "
            "https://outlook.office365.com/.default; Google: https://mail.google.com/)"
        )
    return ""


def _not_json(answer: Any) -> str:
    """What to do about an answer below 500 that is not JSON (a web page: the wrong URL, or a
    proxy's page), else ``""``."""
    status = getattr(answer, "status_code", None)
    if not isinstance(status, int) or status >= 500:
        return ""
    kind = str(answer.headers.get("Content-Type", "")).split(";")[0].strip()[:80].lower()
    if kind == "application/json" or kind.endswith("+json"):
        return ""
    return (
        f"the endpoint answered with {kind or 'no content type'}, not JSON: check token_url "
        "(Microsoft 365: https://login.microsoftonline.com/<tenant-id>/oauth2/v2.0/token; "
        "Google: https://oauth2.googleapis.com/token) and any proxy in between"
    )


def _request_failed(
    where: str,
    exc: BaseException,
    answers: list[Any],
    now: float,
    spec: ClientCredentialsGrant | RefreshTokenGrant,
) -> TokenError:
    """The TokenError for a failed grant request: the endpoint's answer, what to do about it,
    and the wait the endpoint asked for."""
    message = f"{where}: {_describe_error(exc)}"
    answer = answers[-1] if answers else None
    error = getattr(exc, "error", None)  # an OAuth error code: the answer was JSON after all
    hint = _what_to_do(error, spec) if error else _not_json(answer)
    if hint:
        message += f" (what to do: {hint})"
    wait = _retry_after(answer, now)
    if wait is None:
        return TokenError(message)
    status = getattr(answer, "status_code", "?")
    return TokenError(f"{message} (HTTP {status}, Retry-After {wait:g} s)", retry_after=wait)


def _recording(session: Any) -> list[Any]:
    """The HTTP answers ``session`` receives, in order (for their status and headers)."""
    answers: list[Any] = []

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        answers.append(response)

    session.hooks["response"].append(record)
    return answers


def _describe_error(exc: BaseException) -> str:
    """The OAuth error code and description (RFC 6749 5.2), or the network failure."""
    error = getattr(exc, "error", None)
    if isinstance(error, str) and error:
        description = getattr(exc, "description", None)
        return f"{error}: {description}" if description else error
    return f"{type(exc).__name__}: {exc}"


def _token_from_response(data: Any, now: float, where: str) -> tuple[AccessToken, str | None]:
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise TokenError(f"{where}: the response has no access_token")
    token_type = str(data.get("token_type", "bearer")).lower()
    if token_type != "bearer":
        raise TokenError(f"{where}: token_type {token_type!r} is not Bearer")
    # expires_in first: authlib adds an expires_at from time.time(), not from our clock.
    refresh = data.get("refresh_token")
    return (
        AccessToken(_checked(data["access_token"], where), _expiry(data, now, where)),
        refresh if isinstance(refresh, str) and refresh else None,
    )


class _Deadline:
    """A token request on a thread of its own, waited for at most ``timeout`` seconds in all.

    ``requests`` bounds each read of the socket, not the request: a token endpoint that sends
    its answer a byte at a time held the poller for as long as it liked. The request is not cut
    off when the wait ends (a refresh token the server rotates in its answer must still be
    kept, or the desk would need a new consent): it goes on, holding what it holds (the
    refresh token file's lock), and the next call takes its answer, or waits for it, instead of
    sending a second request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: concurrent.futures.Future[AccessToken] | None = None

    def run(self, request: Callable[[], AccessToken], timeout: float, where: str) -> AccessToken:
        """``request()``'s token; TokenError when no answer came within ``timeout`` seconds
        (or what ``request`` raised)."""
        with self._lock:
            future = self._pending
            if future is None:
                future = self._pending = concurrent.futures.Future()
                worker = threading.Thread(
                    target=_settle, args=(future, request), name="token request", daemon=True
                )
                worker.start()
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TokenError(
                f"{where}: no answer within {timeout:g} s (the request goes on; a later sign-in"
                " takes its answer)"
            ) from None
        finally:
            with self._lock:
                if self._pending is future and future.done():
                    self._pending = None


def _settle(
    future: concurrent.futures.Future[AccessToken], request: Callable[[], AccessToken]
) -> None:
    try:
        future.set_result(request())
    except BaseException as exc:  # handed to the waiting caller, raised there
        future.set_exception(exc)


class ClientCredentialsSource:
    """The client-credentials grant (RFC 6749 4.4) through authlib."""

    def __init__(self, spec: ClientCredentialsGrant, *, clock: Clock = time.time) -> None:
        self.spec = spec
        self._clock = clock
        self._deadline = _Deadline()

    def describe(self) -> str:
        return f"token endpoint {self.spec.token_url} (client_credentials)"

    def fetch(self) -> AccessToken:
        """A token from the endpoint, within ``spec.timeout`` seconds in all (TokenError)."""
        return self._deadline.run(self._fetch, self.spec.timeout, self.describe())

    def _fetch(self) -> AccessToken:
        spec, where = self.spec, self.describe()
        session = _session(spec.client_id, spec.client_secret, spec.client_auth.value, spec.scope)
        answers = _recording(session)
        now = self._clock()
        try:
            with session:
                data = session.fetch_token(
                    spec.token_url,
                    grant_type="client_credentials",
                    timeout=spec.timeout,
                )
        except _grant_errors() as exc:
            raise _request_failed(where, exc, answers, now, spec) from None
        token, _ = _token_from_response(data, now, where)
        return token


_REFRESH_TOKEN_REFUSED = "invalid_grant"
"""The one OAuth error code (RFC 6749 5.2) that says the refresh token itself was refused
(revoked, expired, rotated away), so the other one known may fare better. Every other answer
(``invalid_client``, ``temporarily_unavailable`` with a 429, ``server_error``, a network
failure) is about the client or the endpoint: presenting another token then would only show a
server that detects reuse a token rotated away, and it revokes the whole grant."""


def _sync_folder(folder: Path) -> None:
    """fsync ``folder``, so a rename in it survives a power loss (best effort: not every
    platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RefreshTokenSource:
    """The refresh-token grant (RFC 6749 6) through authlib; follows refresh-token rotation.

    A ``refresh_token_file`` is shared by every process that uses the configuration (the
    service, ``check``, ``deliver``, a standby poller): when one of them is handed a new
    refresh token (rotation, RFC 6749 6 and 10.4) it writes it there, and the server may no
    longer accept the old one. So a refresh holds a lock on ``<file>.lock`` (``flock``: two
    processes never present one token at once, which a server that detects reuse answers by
    revoking them all), reads the file again, and presents the newest token it knows: the
    file's when another process changed it since this one last read or wrote it, else the
    one held here (the file may be stale: a write-back that failed). When that one is
    refused, the other is tried; the token that worked is written back to the file.
    """

    def __init__(self, spec: RefreshTokenGrant, *, clock: Clock = time.time) -> None:
        self.spec = spec
        self._clock = clock
        self._refresh_token = spec.refresh_token
        self._file_seen: str | None = None  # the file's token when this process last saw it
        self._file_warned = False
        self._deadline = _Deadline()

    def describe(self) -> str:
        return f"token endpoint {self.spec.token_url} (refresh_token)"

    def _from_file(self) -> str:
        """The token in ``refresh_token_file`` (raises TokenError: unreadable, not UTF-8,
        empty)."""
        path = self.spec.refresh_token_file
        assert path is not None
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenError(
                f"{self.describe()}: cannot read refresh token file {str(path)!r}: "
                f"{exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError as exc:
            raise TokenError(
                f"{self.describe()}: refresh token file {str(path)!r} is not UTF-8"
                f" (byte {exc.start + 1})"
            ) from None
        if not value:
            raise TokenError(f"{self.describe()}: refresh token file {str(path)!r} is empty")
        return value

    def _candidates(self) -> tuple[list[str], str | None]:
        """The refresh tokens to present, newest first, and the file's token (None: no file,
        or unreadable)."""
        held = self._refresh_token
        if self.spec.refresh_token_file is None:
            return ([held] if held else []), None
        try:
            on_file: str | None = self._from_file()
        except TokenError as exc:
            if not held:
                raise
            if not self._file_warned:  # check and deliver, which start from the file, fail
                self._file_warned = True
                log.warning(
                    "the refresh token file cannot be read; using the token held in memory",
                    extra={"error": str(exc)},
                )
            return [held], None
        self._file_warned = False
        # Another process rotated it (or first read). Seen only once a refresh has worked: the
        # file's newer token stays first after a throttled or failed request.
        changed = on_file != self._file_seen
        order = [on_file, held] if changed else [held, on_file]
        return [token for n, token in enumerate(order) if token and token not in order[:n]], on_file

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Hold ``<refresh_token_file>.lock`` exclusively meanwhile (where ``fcntl`` exists and
        the folder lets us create it; else without)."""
        path = self.spec.refresh_token_file
        if path is None or fcntl is None:
            yield
            return
        try:
            handle = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115
        except OSError:
            yield
            return
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield

    def _keep(self, new: str) -> None:
        """Remember the refresh token that works, in its file too when it came from one."""
        self._refresh_token = new
        path = self.spec.refresh_token_file
        if path is None:
            return
        temp = ""
        try:
            # A copy of its own (mode 0600), on the disk before it replaces the old file: a
            # power loss right after a rotation must not leave an empty file, as the server
            # may no longer accept the old token.
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".refresh-", text=True)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(new + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            temp = ""
            _sync_folder(path.parent)
        except OSError as exc:
            if temp:  # never leave a stray copy of a secret behind
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            log.warning(
                "cannot write the new refresh token back to its file; it is kept in memory",
                extra={"path": str(path), "error": exc.strerror or str(exc)},
            )
            return
        self._file_seen = new

    def fetch(self) -> AccessToken:
        """A token from the endpoint, within ``spec.timeout`` seconds in all (TokenError); the
        file's lock is held by the request itself, for as long as it runs."""
        return self._deadline.run(self._locked_fetch, self.spec.timeout, self.describe())

    def _locked_fetch(self) -> AccessToken:
        with self._file_lock():
            return self._fetch()

    def _fetch(self) -> AccessToken:
        spec, where = self.spec, self.describe()
        candidates, on_file = self._candidates()
        if not candidates:
            raise TokenError(f"{where}: no refresh token configured")
        for number, refresh_token in enumerate(candidates, 1):
            session = _session(
                spec.client_id, spec.client_secret, spec.client_auth.value, spec.scope
            )
            answers = _recording(session)
            now = self._clock()
            try:
                with session:
                    data = session.refresh_token(
                        spec.token_url, refresh_token=refresh_token, timeout=spec.timeout
                    )
            except _grant_errors() as exc:
                error = getattr(exc, "error", None)
                refused = error == _REFRESH_TOKEN_REFUSED
                if refused and number < len(candidates):
                    continue  # this refresh token is refused: the other one may not be
                raise _request_failed(where, exc, answers, now, spec) from None
            token, rotated = _token_from_response(data, now, where)
            if on_file is not None:
                self._file_seen = on_file
            kept = rotated if rotated is not None else refresh_token
            if kept != self._refresh_token or (on_file is not None and kept != on_file):
                self._keep(kept)
            return token
        raise AssertionError("unreachable: the last candidate returns or raises")


def make_source(spec: TokenSourceSpec, *, clock: Clock = time.time) -> TokenSource:
    """The token source a :data:`~asm_email_rules.signin.TokenSourceSpec` describes."""
    match spec:
        case CommandTokens():
            return CommandTokenSource(spec, clock=clock)
        case FileTokens():
            return FileTokenSource(spec, clock=clock)
        case ClientCredentialsGrant():
            return ClientCredentialsSource(spec, clock=clock)
        case RefreshTokenGrant():
            return RefreshTokenSource(spec, clock=clock)


class TokenProvider:
    """Hands out access tokens from one source: cached, replaced before they expire.

    A cached token is replaced :data:`REFRESH_MARGIN` seconds before its expiry, or halfway
    through its lifetime when that is shorter. Thread-safe: one provider may serve an IMAP
    account and SMTP at once.
    """

    def __init__(
        self, source: TokenSource, *, clock: Clock = time.time, margin: float = REFRESH_MARGIN
    ) -> None:
        self.source = source
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._cached: AccessToken | None = None
        self._renew_at = 0.0
        self._hold: tuple[float, str] | None = None  # Retry-After: until when, and why
        self.fetches = 0
        """How many times the source was asked (for reports and tests)."""

    def __repr__(self) -> str:
        return f"TokenProvider({self.source.describe()})"

    @classmethod
    def from_spec(cls, spec: TokenSourceSpec, *, clock: Clock = time.time) -> TokenProvider:
        """A provider for the source ``spec`` describes."""
        return cls(make_source(spec, clock=clock), clock=clock)

    def token(self) -> AccessToken:
        """A token that is not about to expire; fetched from the source when needed."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and now < self._renew_at:
                return self._cached
            if self._hold is not None and now < self._hold[0]:
                raise TokenError(self._hold[1], retry_after=self._hold[0] - now)
            try:
                token = self.source.fetch()
            except TokenError as exc:
                if exc.retry_after is None:
                    raise
                # The endpoint said when to ask again (429, 503): asking sooner, at the next
                # sign-in or for SMTP, only keeps the desk throttled.
                until = now + exc.retry_after
                why = f"{exc}; not asked again before {_utc(until)}"
                self._hold = (until, why)
                raise TokenError(why, retry_after=exc.retry_after) from None
            self._hold = None
            self.fetches += 1
            if token.expires_at is not None and token.expires_at > now:
                lifetime = token.expires_at - now
                self._cached = token
                self._renew_at = token.expires_at - min(self._margin, lifetime / 2)
            else:
                self._cached = None
            log.debug(
                "access token fetched",
                extra={"token_source": self.source.describe(), "expires_at": token.expires_at},
            )
            return token

    def invalidate(self, token: AccessToken) -> None:
        """Forget ``token`` (the server refused it) so the next :meth:`token` fetches anew."""
        with self._lock:
            if self._cached is not None and self._cached.value == token.value:
                self._cached = None


@attrs.frozen
class OAuth2Login:
    """OAuth2 sign-in for an adapter: the SASL mechanism and where tokens come from.

    Keep one per account for the life of the program: the provider's cache is what saves a
    token request per poll.
    """

    tokens: TokenProvider = attrs.field(eq=False)
    mechanism: SaslMechanism = SaslMechanism.XOAUTH2

    @classmethod
    def from_settings(cls, settings: OAuth2Settings, *, clock: Clock = time.time) -> OAuth2Login:
        """The login described by configuration ``settings``."""
        return cls(TokenProvider.from_spec(settings.source, clock=clock), settings.mechanism)


# --------------------------------------------------------------------------------------------
# SASL
# --------------------------------------------------------------------------------------------


def _sasl_safe(value: str, what: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def xoauth2_response(user: str, token: str) -> bytes:
    """``user=U^Aauth=Bearer T^A^A`` (Google's and Microsoft's XOAUTH2 initial response)."""
    user = _sasl_safe(user, "user")
    token = _sasl_safe(token, "token")
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer_response(user: str, token: str, host: str = "", port: int = 0) -> bytes:
    """The OAUTHBEARER initial client response (RFC 7628 3.1).

    ``gs2-header kvsep *kvpair kvsep``: ``n,a=<user>,`` (``=`` and ``,`` in the user escaped as
    ``=3D`` and ``=2C``, RFC 5801), then ``host=``, ``port=`` when known and ``auth=Bearer T``,
    each ended by ``%x01``, and a final ``%x01``.
    """
    user = _sasl_safe(user, "user")
    token = _sasl_safe(token, "token")
    saslname = user.replace("=", "=3D").replace(",", "=2C")
    pairs = []
    if host:
        pairs.append(f"host={_sasl_safe(host, 'host')}")
    if port:
        pairs.append(f"port={port}")
    pairs.append(f"auth=Bearer {token}")
    return (f"n,a={saslname}," + "\x01" + "".join(p + "\x01" for p in pairs) + "\x01").encode()


def initial_response(
    mechanism: SaslMechanism, user: str, token: str, host: str = "", port: int = 0
) -> bytes:
    """The client's first SASL message for ``mechanism``."""
    if mechanism is SaslMechanism.OAUTHBEARER:
        return oauthbearer_response(user, token, host, port)
    return xoauth2_response(user, token)


def error_reply(mechanism: SaslMechanism) -> bytes:
    """What the client sends after the server's error challenge: empty, or ``%x01`` (RFC 7628)."""
    return OAUTHBEARER_ABORT if mechanism is SaslMechanism.OAUTHBEARER else b""


def error_detail(challenge: bytes) -> str:
    """The ``status`` (and ``scope``) of a server's JSON error challenge, or ``""``.

    Both XOAUTH2 and OAUTHBEARER (RFC 7628 3.2.2) servers answer a bad token with a JSON object
    such as ``{"status":"invalid_token","scope":"..."}`` before refusing.
    """
    try:
        data = json.loads(challenge.decode("utf-8", "replace"))
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    parts = [f"{key} {data[key]}" for key in ("status", "scope") if isinstance(data.get(key), str)]
    return ", ".join(parts)


Attempt = Callable[[bytes], str | None]
"""Sends one initial response; returns None when signed in, else the server's refusal text."""


def sign_in(
    login: OAuth2Login, user: str, attempt: Attempt, host: str = "", port: int = 0
) -> str | None:
    """Sign in with a token; after a refusal, once more with a freshly fetched token.

    Returns None when signed in, else the server's last refusal (the caller raises its typed
    :class:`~asm_email_rules.errors.AuthenticationError`). Raises
    :class:`~asm_email_rules.errors.TokenError` when no token can be had.
    """
    refusal: str | None = None
    for _ in range(2):
        token = login.tokens.token()
        try:
            response = initial_response(login.mechanism, user, token.value, host, port)
        except ValueError as exc:
            raise TokenError(f"cannot build the SASL response: {exc}") from None
        refusal = attempt(response)
        if refusal is None:
            return None
        login.tokens.invalidate(token)
        log.info(
            "OAuth2 token refused; trying once more with a new one",
            extra={"user": user, "mechanism": login.mechanism.sasl_name},
        )
    return refusal
