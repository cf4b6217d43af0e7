"""Authentication-Results parsing and the sender verdict built on the trusted header."""

from __future__ import annotations

import time

import pytest

from asm_email_rules.addresses import normalise_address
from asm_email_rules.auth import (
    MAX_HEADER_LENGTH,
    AuthVerdict,
    authenticate_sender,
    domains_aligned,
    organizational_domain,
    parse_authentication_results,
)
from asm_email_rules.errors import ConfigError
from asm_email_rules.model import InboundEmail

OUR_ID = "mx.example.net"

GMAIL_STYLE = (
    "mx.example.net;\r\n       dkim=pass header.i=@example.com header.s=20230601 header.b=Zm9v;"
    "\r\n       spf=pass (mx.example.net: domain of a@example.com designates 192.0.2.1 as"
    " permitted sender) smtp.mailfrom=a@example.com;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com"
)

MICROSOFT_STYLE = (
    "spf=pass (sender IP is 192.0.2.7) smtp.mailfrom=contoso.com; dkim=pass (signature was"
    " verified) header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;"
    "compauth=pass reason=100"
)


def judge(*headers: str, from_domain: str = "example.com") -> tuple[AuthVerdict, str, int]:
    result = authenticate_sender(list(headers), authserv_id=OUR_ID, from_domain=from_domain)
    return result.verdict, result.reason, result.trusted_headers


# -- parser -------------------------------------------------------------------------------------


def test_parses_a_realistic_multi_method_header() -> None:
    parsed = parse_authentication_results(GMAIL_STYLE)
    assert parsed is not None
    assert parsed.authserv_id == "mx.example.net"
    assert parsed.version is None
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert parsed.results[0].get("header.i") == "@example.com"
    assert parsed.results[1].properties == (("smtp.mailfrom", "a@example.com"),)
    assert parsed.results[2].get("header.from") == "example.com"


def test_parses_version_and_properties_without_a_ptype() -> None:
    parsed = parse_authentication_results("mx.microsoft.com 1; " + MICROSOFT_STYLE)
    assert parsed is not None
    assert parsed.version == 1
    dmarc = parsed.results[2]
    assert dmarc.properties == (("action", "none"), ("header.from", "contoso.com"))
    assert parsed.results[3].get("reason") == "100"


def test_none_means_no_results() -> None:
    for value in ("mx.example.net; none", "mx.example.net 1; NONE", "mx.example.net (c); none"):
        parsed = parse_authentication_results(value)
        assert parsed is not None, value
        assert parsed.results == ()


def test_nested_comments_and_quoted_strings() -> None:
    value = (
        '"mx.example.net" (outer (inner ; dmarc=fail) still comment);'
        ' dkim=pass reason="good; signature (really)" header.d=example.com'
        ' smtp.mailfrom="john q"@example.com (trailing \\) comment)'
    )
    parsed = parse_authentication_results(value)
    assert parsed is not None
    assert parsed.authserv_id == "mx.example.net"
    assert len(parsed.results) == 1
    dkim = parsed.results[0]
    assert dkim.get("reason") == "good; signature (really)"
    assert dkim.get("header.d") == "example.com"
    assert dkim.get("smtp.mailfrom") == "john q@example.com"


def test_case_insensitive_methods_results_and_properties() -> None:
    parsed = parse_authentication_results("MX.Example.NET; DKIM/1=PASS Header.D=Example.COM")
    assert parsed is not None
    assert parsed.results[0].method == "dkim"
    assert parsed.results[0].result == "pass"
    assert parsed.results[0].get("HEADER.d") == "Example.COM"


def test_spaced_property_and_value_containing_equals() -> None:
    parsed = parse_authentication_results("mx; dkim = pass header . d = example.com header.b=ab=")
    assert parsed is not None
    assert parsed.results[0].properties == (("header.d", "example.com"), ("header.b", "ab="))


def test_trailing_semicolon_is_tolerated() -> None:
    parsed = parse_authentication_results("mx; spf=pass smtp.mailfrom=example.com;")
    assert parsed is not None
    assert len(parsed.results) == 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "; dkim=pass",
        "mx.example.net; dkim=pass (unclosed comment",
        'mx.example.net; dkim=pass reason="unclosed',
        "mx.example.net; dkim=pass) header.d=x",
        "mx.example.net; =pass",
        "mx.example.net; dkim=",
        "mx.example.net; dkim=pass stray header.d=example.com",
        "mx.example.net; dkim pass",
        "mx.example.net v1; dkim=pass",
        "mx.example.net 1 2; dkim=pass",
        "mx.example.net; dk!m=pass",
        'mx.example.net; "dkim"=pass',
        "mx.example.net; dkim=pass header..d=x",
    ],
)
def test_malformed_values_give_none(value: str) -> None:
    assert parse_authentication_results(value) is None


def test_oversized_value_is_not_parsed() -> None:
    value = "mx.example.net; dkim=pass header.d=example.com" + " " * MAX_HEADER_LENGTH
    assert parse_authentication_results(value) is None


def test_parser_is_linear_on_deep_nesting_and_long_input() -> None:
    nested = "mx; dkim=pass " + "(" * 30_000 + ")" * 30_000 + " header.d=example.com"
    many = "mx" + "; spf=pass smtp.mailfrom=example.com" * 1500
    spaced_key = "mx; dkim=pass header" + " ." * 30_000 + "d=example.com"
    escapes = 'mx; dkim=pass reason="' + "\\x" * 20_000 + '"'
    start = time.process_time()  # CPU time of this process: a loaded machine does not count
    assert parse_authentication_results(spaced_key) is None  # "header....d" is not a property name
    assert parse_authentication_results(escapes) is not None
    assert parse_authentication_results(nested) is not None
    parsed = parse_authentication_results(many)
    assert parsed is not None
    assert len(parsed.results) == 1500
    assert time.process_time() - start < 2.0


# -- alignment ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.eu.example.com", "example.com"),
        ("Example.COM.", "example.com"),
        ("shop.example.co.uk", "example.co.uk"),
        ("a.b.example.com.au", "example.com.au"),
        ("co.uk", "co.uk"),
        ("localhost", "localhost"),
    ],
)
def test_organizational_domain_approximation(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_alignment_rules() -> None:
    assert domains_aligned("mail.example.com", "example.com")
    assert domains_aligned("a.example.com", "b.example.com")
    assert not domains_aligned("evil.co.uk", "example.co.uk")
    assert not domains_aligned("example.com.evil.example", "example.com")
    assert not domains_aligned("mail.example.com", "example.com", strict=True)
    assert domains_aligned("EXAMPLE.com", "example.com.", strict=True)
    assert not domains_aligned("", "example.com")


# -- verdict ------------------------------------------------------------------------------------


def test_legit_dmarc_pass() -> None:
    verdict, reason, count = judge(GMAIL_STYLE)
    assert verdict is AuthVerdict.PASS
    assert reason == "dmarc=pass for example.com from authserv-id mx.example.net"
    assert count == 1


def test_dmarc_pass_for_another_domain_is_not_a_pass() -> None:
    verdict, reason, _ = judge("mx.example.net; dmarc=pass header.from=other.example")
    assert verdict is AuthVerdict.FAIL
    assert "dmarc=pass is for other.example" in reason


def test_dmarc_pass_without_header_from_counts() -> None:
    assert judge("mx.example.net; dmarc=pass")[0] is AuthVerdict.PASS


def test_aligned_dkim_pass_without_dmarc() -> None:
    verdict, reason, _ = judge("mx.example.net; spf=fail; dkim=pass header.d=example.com")
    assert verdict is AuthVerdict.PASS
    assert reason.startswith("dkim=pass for example.com (aligned signature d=example.com)")


def test_dkim_pass_aligned_by_header_i_domain() -> None:
    verdict, _, _ = judge("mx.example.net; dkim=pass header.i=alerts@mail.example.com")
    assert verdict is AuthVerdict.PASS


def test_subdomain_alignment_both_ways() -> None:
    assert judge("mx.example.net; dkim=pass header.d=mail.example.com")[0] is AuthVerdict.PASS
    sub_from = judge("mx.example.net; dkim=pass header.d=example.com", from_domain="eu.example.com")
    assert sub_from[0] is AuthVerdict.PASS


def test_strict_alignment_refuses_subdomain_signature() -> None:
    result = authenticate_sender(
        ["mx.example.net; dkim=pass header.d=mail.example.com"],
        authserv_id=OUR_ID,
        from_domain="example.com",
        strict_alignment=True,
    )
    assert result.verdict is AuthVerdict.FAIL


def test_unaligned_dkim_is_not_a_pass() -> None:
    verdict, reason, _ = judge("mx.example.net; dkim=pass header.d=evil.example")
    assert verdict is AuthVerdict.FAIL
    assert "dkim=pass for evil.example is not aligned" in reason


def test_public_suffix_neighbour_is_not_aligned() -> None:
    verdict, _, _ = judge(
        "mx.example.net; dkim=pass header.d=evil.co.uk", from_domain="example.co.uk"
    )
    assert verdict is AuthVerdict.FAIL


def test_explicit_dmarc_fail_wins_over_dkim_pass() -> None:
    verdict, reason, _ = judge(
        "mx.example.net; dkim=pass header.d=example.com; dmarc=fail header.from=example.com"
    )
    assert verdict is AuthVerdict.FAIL
    assert reason == "dmarc=fail for example.com from authserv-id mx.example.net"


def test_dkim_fail_only_is_fail() -> None:
    verdict, reason, _ = judge("mx.example.net; dkim=fail header.d=example.com")
    assert verdict is AuthVerdict.FAIL
    assert "dkim=fail for example.com" in reason


def test_foreign_authserv_id_is_ignored() -> None:
    verdict, reason, count = judge("mx.attacker.example; dmarc=pass header.from=example.com")
    assert verdict is AuthVerdict.NONE
    assert reason == "no Authentication-Results from mx.example.net"
    assert count == 0


def test_foreign_pass_does_not_rescue_our_fail() -> None:
    verdict, _, count = judge(
        "mx.attacker.example; dmarc=pass header.from=example.com",
        "mx.example.net; dmarc=fail header.from=example.com",
    )
    assert verdict is AuthVerdict.FAIL
    assert count == 1


def test_authserv_id_matches_case_insensitively() -> None:
    assert judge("MX.EXAMPLE.NET; dmarc=pass header.from=example.com")[0] is AuthVerdict.PASS


def test_forged_duplicate_below_ours_is_ignored() -> None:
    verdict, reason, count = judge(
        "mx.example.net; dmarc=fail header.from=example.com",
        "mx.example.net; dmarc=pass header.from=example.com",
    )
    assert verdict is AuthVerdict.FAIL
    assert count == 2
    assert "1 more header(s) claiming mx.example.net below it were ignored" in reason


def test_forged_pass_below_a_none_header_stays_none() -> None:
    verdict, _, _ = judge(
        "mx.example.net; none",
        "mx.example.net; dmarc=pass header.from=example.com",
    )
    assert verdict is AuthVerdict.NONE


def test_unreadable_topmost_trusted_header_is_not_skipped() -> None:
    verdict, reason, count = judge(
        "mx.example.net; dkim=pass (broken",
        "mx.example.net; dmarc=pass header.from=example.com",
    )
    assert verdict is AuthVerdict.NONE
    assert "could not be read" in reason
    assert count == 2


def test_oversized_topmost_trusted_header_is_not_skipped() -> None:
    huge = "mx.example.net; dkim=fail header.d=example.com" + " " * MAX_HEADER_LENGTH
    verdict, _, _ = judge(huge, "mx.example.net; dmarc=pass header.from=example.com")
    assert verdict is AuthVerdict.NONE


def test_no_dmarc_or_dkim_is_none() -> None:
    verdict, reason, _ = judge("mx.example.net; spf=pass smtp.mailfrom=example.com")
    assert verdict is AuthVerdict.NONE
    assert "only spf" in reason


def test_empty_from_domain_is_none() -> None:
    assert judge(GMAIL_STYLE, from_domain="")[0] is AuthVerdict.NONE


def test_from_domain_may_be_a_full_address() -> None:
    assert judge(GMAIL_STYLE, from_domain="Alice@Example.com")[0] is AuthVerdict.PASS


def test_reason_never_echoes_control_characters() -> None:
    _, reason, _ = judge('mx.example.net; dkim=pass header.d="evil\r\nBcc: x@y"')
    assert "\r" not in reason
    assert "\n" not in reason


def test_empty_trusted_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        authenticate_sender([GMAIL_STYLE], authserv_id=" ", from_domain="example.com")


def test_works_with_inbound_email_header_all() -> None:
    mail = InboundEmail(
        sender="a@example.com",
        headers=(
            ("Authentication-Results", "mx.example.net; dmarc=fail header.from=example.com"),
            ("Received", "from x"),
            ("authentication-results", "mx.example.net; dmarc=pass header.from=example.com"),
        ),
    )
    result = authenticate_sender(
        mail.header_all("Authentication-Results"), authserv_id=OUR_ID, from_domain="example.com"
    )
    assert result.verdict is AuthVerdict.FAIL
    assert result.trusted_headers == 2


@pytest.mark.parametrize(
    ("signer", "from_domain"),
    [
        ("fass.example", "faß.example"),  # IDNA 2003 maps ß to ss; IDNA 2008 keeps it
        ("σασ.example", "σας.example"),  # ...and final sigma to sigma
        ("ab.example", "a\u200db.example"),  # ...and drops a zero-width joiner
    ],
)
def test_a_signature_for_another_idn_domain_is_not_aligned(signer: str, from_domain: str) -> None:
    """docs/sender-authentication.md: "Unicode domains as A-labels". ``faß.example`` is
    ``xn--fa-hia.example`` (RFC 5891), another domain than ``fass.example``: the owner of
    fass.example must not approve as a person of faß.example by signing with their own key."""
    verdict, _, _ = judge(f"mx.example.net; dkim=pass header.d={signer}", from_domain=from_domain)
    assert verdict is AuthVerdict.FAIL


def test_a_unicode_from_domain_aligns_with_its_a_label_signature() -> None:
    verdict, _, _ = judge(
        "mx.example.net; dkim=pass header.d=xn--bcher-kva.example", from_domain="Bücher.example"
    )
    assert verdict is AuthVerdict.PASS


def _a_label(text: str) -> str:
    return "xn--" + text.encode("punycode").decode("ascii")


@pytest.mark.parametrize(
    "sent_from",
    [
        "boss@\uff42ücher.example",  # a full-width b: NFKC reads it as bücher.example
        f"boss@{_a_label('bÜcher')}.example",  # an A-label of an upper-case Ü: bücher too
    ],
)
def test_only_a_signature_of_the_identified_domain_aligns(sent_from: str) -> None:
    """docs/sender-authentication.md: close, approve and reject need the From domain
    authenticated. The sender is identified by the address's comparison form
    (``normalise_address``: NFKC, lower case, A-labels as U-labels), so ``sent_from`` is the
    person ``boss@bücher.example``. A signature for the domain as written there (another DNS
    name, whoever holds it) must not authenticate them: only ``bücher.example``'s does."""
    assert normalise_address(sent_from) == normalise_address("boss@bücher.example")
    written = sent_from.rpartition("@")[2].split(".")[0]
    own = written if written.isascii() else _a_label(written)
    for header in (f"dkim=pass header.d={own}.example", f"dmarc=pass header.from={own}.example"):
        verdict, _, _ = judge(f"mx.example.net; {header}", from_domain=sent_from)
        assert verdict is not AuthVerdict.PASS, header
    verdict, _, _ = judge(
        "mx.example.net; dkim=pass header.d=xn--bcher-kva.example", from_domain=sent_from
    )
    assert verdict is AuthVerdict.PASS
