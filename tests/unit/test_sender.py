"""Resolving the sender into the four person cases."""

from __future__ import annotations

import pytest

from asm_email_rules.classify import MailKind, classify
from asm_email_rules.model import InboundEmail, Person, PersonCase
from asm_email_rules.sender import normalise_address, resolve_sender
from asm_email_rules.settings import MailboxSettings

ANALYST = Person(1, "a@x.example", is_analyst=True)
USER = Person(2, "u@x.example", is_user=True)
BOTH = Person(3, "b@x.example", is_analyst=True, is_user=True)
NEITHER = Person(4, "n@x.example")


def test_four_cases() -> None:
    people = [ANALYST, USER, BOTH, NEITHER]
    assert resolve_sender("zz@x.example", people).case is PersonCase.UNKNOWN
    assert resolve_sender("a@x.example", people).case is PersonCase.ANALYST_ONLY
    assert resolve_sender("u@x.example", people).case is PersonCase.USER_ONLY
    assert resolve_sender("b@x.example", people).case is PersonCase.ANALYST_AND_USER


def test_a_record_with_no_flag_identifies_nobody() -> None:
    assert resolve_sender("n@x.example", [NEITHER]).case is PersonCase.UNKNOWN


def test_case_insensitive_and_nfkc() -> None:
    found = resolve_sender("Ａ@X.EXAMPLE", [ANALYST])
    assert found.person == ANALYST


def test_plus_addresses_are_different_addresses() -> None:
    assert resolve_sender("a+tag@x.example", [ANALYST]).case is PersonCase.UNKNOWN


def test_several_matches_lowest_id_wins_and_is_recorded() -> None:
    late = Person(9, "A@x.example", is_user=True)
    found = resolve_sender("a@x.example", [late, ANALYST])
    assert found.person == ANALYST
    assert found.matches == 2
    assert found.ambiguous


def test_a_contact_sharing_the_address_counts_in_the_ambiguity() -> None:
    """DESIGN 4: "Several persons with one address: the lowest id wins, and the decision
    records the ambiguity" - a contact (neither flag) shares the address too."""
    contact = Person(2, "a@x.example")
    analyst = Person(5, "A@X.example", is_analyst=True)
    found = resolve_sender("a@x.example", [analyst, contact])
    assert (found.person, found.matches, found.ambiguous) == (analyst, 2, True)
    other = Person(7, "A@x.example")
    only_contacts = resolve_sender("a@x.example", [other, contact])
    assert (only_contacts.contact, only_contacts.matches) == (contact, 2)
    assert only_contacts.ambiguous


def test_empty_address_is_unknown() -> None:
    assert resolve_sender("", [ANALYST]).case is PersonCase.UNKNOWN


def test_addresses_are_folded_one_way_everywhere() -> None:
    """DESIGN 4b: "Addresses match case-insensitively (whole address, after NFKC; no
    plus-address folding)" - sender lookup, own-address checks and classification agree."""
    variant = " Ｄｅｓｋ@Example.COM "  # full-width letters, upper case, padding
    assert normalise_address(variant) == "desk@example.com"
    desk = Person(9, "desk@example.com", is_analyst=True)
    assert resolve_sender(variant, [desk]).person == desk
    mailbox = MailboxSettings(addresses=("desk@example.com",))
    assert mailbox.is_own_address(variant)
    own = classify(InboundEmail(sender=variant), own_addresses=mailbox.addresses)
    assert own.kind is MailKind.OWN_MAIL
    # no plus-address folding: a sub-address is another address
    assert not mailbox.is_own_address("desk+x@example.com")
    assert resolve_sender("desk+x@example.com", [desk]).case is PersonCase.UNKNOWN


def test_an_idn_domain_is_one_address_in_punycode_and_in_unicode() -> None:
    """DESIGN 4b: addresses match as one whole address; RFC 5890 2.3.2.1: the A-label
    ``xn--bcher-kva`` and the U-label ``bücher`` are one domain, written two ways."""
    anna = Person(5, "anna@xn--bcher-kva.example", is_user=True)
    assert resolve_sender("Anna@BÜCHER.example", [anna]).person == anna
    wang = Person(6, "用户@例子.广告", is_user=True)
    assert resolve_sender("用户@xn--fsqu00a.XN--4rr70v", [wang]).person == wang
    assert resolve_sender("用户@例子。广告", [wang]).person == wang  # ideographic full stop
    # an invalid A-label is kept as written: it matches nothing else
    assert normalise_address("a@xn--zz.example") == "a@xn--zz.example"


def test_unicode_case_and_normal_forms_match_but_lossy_folds_do_not() -> None:
    """DESIGN 4b: "Addresses match case-insensitively (whole address, after NFKC)": a case
    difference or an NFD spelling is the same person; a fold that changes the letters is not."""
    omer = Person(7, "ÖMER@Firma.example", is_user=True)
    assert resolve_sender("ömer@firma.example", [omer]).person == omer
    jose = Person(8, "josé@example.com", is_user=True)  # é as one code point
    assert resolve_sender("JOSE\u0301@example.com", [jose]).person == jose  # E + U+0301
    strasse = Person(9, "straße@example.com", is_user=True)
    assert resolve_sender("STRAẞE@example.com", [strasse]).person == strasse
    assert resolve_sender("strasse@example.com", [strasse]).case is PersonCase.UNKNOWN
    dotless = Person(10, "ılker@example.com", is_user=True)
    assert resolve_sender("ilker@example.com", [dotless]).case is PersonCase.UNKNOWN
    assert resolve_sender("jose@example.com", [jose]).case is PersonCase.UNKNOWN


def test_a_look_alike_in_another_script_is_another_person() -> None:
    """docs/security.md: a Cyrillic ``а`` (U+0430) in place of the Latin ``a`` is an unknown
    sender, so it cannot approve for the person it imitates; NFKC does not map scripts."""
    anna = Person(11, "anna@example.com", is_analyst=True)
    assert resolve_sender("\u0430nna@example.com", [anna]).case is PersonCase.UNKNOWN
    assert resolve_sender("anna@ex\u0430mple.com", [anna]).case is PersonCase.UNKNOWN


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ("boss@σασ.example", "boss@σας.example"),  # two IDNA 2008 domains (RFC 5892 2.6: ς)
        ("boss@σας.example", "boss@σασ.example"),
        ("σοφοσ@example.gr", "σοφος@example.gr"),
        ("\u043eleg@example.ru", "\u1c82leg@example.ru"),  # о and the narrow о, U+1C82
    ],
)
def test_a_fold_that_is_not_a_case_change_does_not_merge_two_addresses(
    stored: str, sent: str
) -> None:
    """DESIGN 4b: "Addresses match case-insensitively": only a change of case. Case
    *folding* also maps a lower-case letter onto another one (the final ``ς`` onto ``σ``,
    the old Cyrillic letter forms onto plain ones); ``σας.example`` and ``σασ.example`` are
    two domains with two owners, so the owner of one must not act as a person of the other."""
    person = Person(12, stored, is_analyst=True)
    assert resolve_sender(sent, [person]).case is PersonCase.UNKNOWN
    assert resolve_sender(stored, [person]).person == person
