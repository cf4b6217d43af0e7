"""OAuth2 pieces without a server: SASL client responses, the token cache, command and file sources.

The grants (client credentials, refresh token) and the servers' side are tested against real
loopback servers in ``tests/integration/test_oauth.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asm_email_rules.adapters.oauth import (
    AccessToken,
    OAuth2Login,
    TokenProvider,
    error_detail,
    error_reply,
    initial_response,
    make_source,
    oauthbearer_response,
    sign_in,
    xoauth2_response,
)
from asm_email_rules.errors import TokenError
from asm_email_rules.signin import CommandTokens, FileTokens, RefreshTokenGrant, SaslMechanism

# --------------------------------------------------------------------------------------------
# SASL encodings
# --------------------------------------------------------------------------------------------


def test_xoauth2_initial_response_is_user_auth_and_two_ctrl_a() -> None:
    # Google's and Microsoft's XOAUTH2 format: user=U ^A auth=Bearer T ^A ^A
    assert xoauth2_response("desk@example.org", "ya29.abc") == (
        b"user=desk@example.org\x01auth=Bearer ya29.abc\x01\x01"
    )


def test_oauthbearer_initial_response_follows_rfc_7628() -> None:
    # RFC 7628 3.1: client-resp = gs2-header kvsep *kvpair kvsep; the example in 4.1 is
    # n,a=user@example.com,^Ahost=server.example.com^Aport=143^Aauth=Bearer vF9dft4qmT...^A^A
    assert oauthbearer_response(
        "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", "server.example.com", 143
    ) == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


def test_oauthbearer_escapes_comma_and_equals_in_the_authzid() -> None:
    # RFC 5801 (GS2 header, used by RFC 7628): "=" becomes "=3D" and "," becomes "=2C".
    assert oauthbearer_response("a=b,c@example.org", "t").startswith(b"n,a=a=3Db=2Cc@example.org,")


def test_oauthbearer_without_host_and_port_has_only_auth() -> None:
    assert (
        oauthbearer_response("u@example.org", "t") == b"n,a=u@example.org,\x01auth=Bearer t\x01\x01"
    )


def test_initial_response_picks_the_mechanism() -> None:
    assert initial_response(SaslMechanism.XOAUTH2, "u", "t").startswith(b"user=u\x01")
    assert initial_response(SaslMechanism.OAUTHBEARER, "u", "t", "h", 1).startswith(b"n,a=u,")


def test_reply_to_an_error_challenge() -> None:
    # RFC 7628 3.2.3: after the server's error the client sends a single %x01; XOAUTH2 clients
    # send an empty response.
    assert error_reply(SaslMechanism.OAUTHBEARER) == b"\x01"
    assert error_reply(SaslMechanism.XOAUTH2) == b""


def test_error_detail_reads_the_json_challenge() -> None:
    challenge = b'{"status":"invalid_token","scope":"https://mail.google.com/"}'
    assert error_detail(challenge) == "status invalid_token, scope https://mail.google.com/"
    assert error_detail(b"not json") == ""
    assert error_detail(b"[1]") == ""


def test_control_characters_in_user_are_refused() -> None:
    with pytest.raises(ValueError, match="control"):
        xoauth2_response("a\x01b", "t")


def _parse_oauthbearer(blob: bytes) -> tuple[str, dict[str, str]]:
    """A strict reader of RFC 7628's client-resp grammar (for the property test)."""
    text = blob.decode()
    assert text.startswith("n,a=")
    header, sep, rest = text.partition(",\x01")
    assert sep
    authzid = header[4:].replace("=2C", ",").replace("=3D", "=")
    assert rest.endswith("\x01\x01")
    pairs = rest[:-1].split("\x01")[:-1]
    fields = dict(pair.split("=", 1) for pair in pairs)
    return authzid, fields


_USER = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
_TOKEN = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,60}={0,2}", fullmatch=True)


@settings(deadline=None)
@given(user=_USER, token=_TOKEN, port=st.integers(min_value=1, max_value=65535))
def test_oauthbearer_reads_back_exactly(user: str, token: str, port: int) -> None:
    authzid, fields = _parse_oauthbearer(oauthbearer_response(user, token, "imap.example", port))
    assert authzid == user
    assert fields == {"host": "imap.example", "port": str(port), "auth": f"Bearer {token}"}


# --------------------------------------------------------------------------------------------
# the cache
# --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@attrs.define
class FakeSource:
    """Hands out numbered tokens that live ``lifetime`` seconds (None: expiry unknown)."""

    clock: Clock
    lifetime: float | None = 3600.0
    issued: int = 0

    def describe(self) -> str:
        return "fake source"

    def fetch(self) -> AccessToken:
        self.issued += 1
        expires = None if self.lifetime is None else self.clock() + self.lifetime
        return AccessToken(f"token-{self.issued}", expires)


def test_cached_token_is_reused_until_five_minutes_before_expiry() -> None:
    clock = Clock()
    source = FakeSource(clock)
    provider = TokenProvider(source, clock=clock)
    assert provider.token().value == "token-1"
    clock.now += 3600 - 301
    assert provider.token().value == "token-1"
    clock.now += 2  # now within the last five minutes
    assert provider.token().value == "token-2"
    assert source.issued == 2


def test_short_lived_token_is_renewed_halfway() -> None:
    clock = Clock()
    source = FakeSource(clock, lifetime=100.0)
    provider = TokenProvider(source, clock=clock)
    provider.token()
    clock.now += 49
    assert provider.token().value == "token-1"
    clock.now += 2
    assert provider.token().value == "token-2"


def test_token_without_expiry_is_fetched_every_time() -> None:
    clock = Clock()
    source = FakeSource(clock, lifetime=None)
    provider = TokenProvider(source, clock=clock)
    assert [provider.token().value for _ in range(3)] == ["token-1", "token-2", "token-3"]


def test_invalidate_drops_only_the_refused_token() -> None:
    clock = Clock()
    source = FakeSource(clock)
    provider = TokenProvider(source, clock=clock)
    first = provider.token()
    provider.invalidate(AccessToken("some-older-token"))
    assert provider.token() == first
    provider.invalidate(first)
    assert provider.token().value == "token-2"


def test_token_value_never_in_repr() -> None:
    clock = Clock()
    provider = TokenProvider(FakeSource(clock), clock=clock)
    token = provider.token()
    assert "token-1" not in repr(token)
    assert "token-1" not in repr(OAuth2Login(provider))


def test_sign_in_retries_once_with_a_fresh_token_after_a_refusal() -> None:
    clock = Clock()
    source = FakeSource(clock)
    login = OAuth2Login(TokenProvider(source, clock=clock))
    sent: list[bytes] = []

    def attempt(response: bytes) -> str | None:
        sent.append(response)
        return None if b"token-2" in response else "NO [AUTHENTICATIONFAILED]"

    assert sign_in(login, "u@example.org", attempt) is None
    assert [b"token-1" in sent[0], b"token-2" in sent[1]] == [True, True]


def test_sign_in_gives_up_after_the_second_refusal() -> None:
    clock = Clock()
    source = FakeSource(clock)
    login = OAuth2Login(TokenProvider(source, clock=clock), SaslMechanism.OAUTHBEARER)
    tries: list[bytes] = []

    def attempt(response: bytes) -> str | None:
        tries.append(response)
        return f"refused #{len(tries)}"

    assert sign_in(login, "u@example.org", attempt) == "refused #2"
    assert len(tries) == 2
    assert source.issued == 2


# --------------------------------------------------------------------------------------------
# command and file sources
# --------------------------------------------------------------------------------------------


def _command(script: str) -> CommandTokens:
    return CommandTokens((sys.executable, "-c", script), timeout=10)


def test_command_printing_a_bare_token() -> None:
    token = make_source(_command("print('ya29.bare-token')")).fetch()
    assert token == AccessToken("ya29.bare-token", None)


def test_command_printing_json_with_expires_in_is_cached() -> None:
    clock = Clock()
    script = "import json; print(json.dumps({'access_token': 'at-1', 'expires_in': 3599}))"
    provider = TokenProvider.from_spec(_command(script), clock=clock)
    assert provider.token() == AccessToken("at-1", clock.now + 3599)
    assert provider.token().value == "at-1"
    assert provider.fetches == 1


def test_failing_command_names_its_status_and_last_stderr_line() -> None:
    script = "import sys; sys.stderr.write('no credentials\\n'); sys.exit(3)"
    with pytest.raises(TokenError, match=r"exited with status 3: no credentials"):
        make_source(_command(script)).fetch()


def test_missing_command() -> None:
    with pytest.raises(TokenError, match="cannot run"):
        make_source(CommandTokens(("/nonexistent/token-helper",))).fetch()


def test_command_printing_something_that_is_not_a_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(TokenError, match="not a bearer token") as caught:
        make_source(_command("print('secret value with spaces')")).fetch()
    assert "secret value" not in str(caught.value)


def test_command_with_empty_output() -> None:
    with pytest.raises(TokenError, match="empty access token"):
        make_source(_command("pass")).fetch()


def test_file_source_reads_the_file_again_at_each_fetch(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n", encoding="utf-8")
    provider = TokenProvider.from_spec(FileTokens(path))
    assert provider.token().value == "first-token"
    path.write_text(json.dumps({"access_token": "second-token", "expires_at": 4e9}))
    assert provider.token() == AccessToken("second-token", 4e9)


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match=r"token file .*cannot read"):
        make_source(FileTokens(tmp_path / "absent")).fetch()


def test_refresh_token_file_not_in_utf8_is_a_token_error(tmp_path: Path) -> None:
    # It was a UnicodeDecodeError out of the sign-in; the token itself is never echoed.
    path = tmp_path / "refresh_token"
    path.write_bytes(b"zqk\xe9wvy\n")
    spec = RefreshTokenGrant("https://token.example/token", "app", refresh_token_file=path)
    with pytest.raises(TokenError, match=r"refresh token file .* is not UTF-8") as caught:
        make_source(spec).fetch()
    assert "zqk" not in str(caught.value)


def test_json_without_access_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text('{"error": "expired"}', encoding="utf-8")
    with pytest.raises(TokenError, match="no access_token"):
        make_source(FileTokens(path)).fetch()
