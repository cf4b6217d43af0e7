"""Who sent a message: the actor (who may act), the contact address, and the person case.

DESIGN 4 separates *who may act* from *where acknowledgements go*. The actor is the
addr-spec of From; when From names several mailboxes, ``Sender`` names the one who sent it
(RFC 5322 3.6.2). Two From headers authenticate nobody. Reply-To never identifies the actor;
it is the *contact address*: where acknowledgements go and the address of a User created for
a new call when the mailbox is fed by a web form (``contact_from_reply_to``).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from asm_email_rules.addresses import normalise_address, parse_address_list
from asm_email_rules.errors import ArgumentTypeError, require_type
from asm_email_rules.intake_notes import IntakeNoteKind
from asm_email_rules.model import InboundEmail, NamedAddress, Person, PersonCase

__all__ = [
    "SenderResolution",
    "actor_address",
    "caller_name",
    "contact_address",
    "has_two_from_headers",
    "normalise_address",
    "resolve_sender",
]


def actor_address(email: InboundEmail) -> tuple[str, str]:
    """``(address, reason)`` of who sent the mail: From's one mailbox; when From names several
    mailboxes, the one mailbox of ``Sender`` (RFC 5322 3.6.2: "the mailbox of the agent
    responsible for the actual transmission"). ``("", "")`` when there is none.
    """
    if email.sender:
        return email.sender, ""
    if not any(note.kind is IntakeNoteKind.MULTIPLE_FROM_ADDRESSES for note in email.notes):
        return "", ""
    sender = email.header("Sender")
    if sender is None:
        return "", ""
    found = parse_address_list(sender[:2000])
    if len(found) != 1:
        return "", ""
    address = found[0][1]
    return address, (
        f"From names several authors: Sender {address} is the one who sent it (RFC 5322 3.6.2)"
    )


def contact_address(email: InboundEmail) -> str:
    """Where acknowledgements go: the first Reply-To address, else the actor (DESIGN 4)."""
    if email.reply_to:
        return email.reply_to[0]
    return actor_address(email)[0]


def caller_name(email: InboundEmail, address: str) -> str:
    """The display name ``email`` gives the mailbox ``address`` ("" when none does).

    The caller of a new call may be named by From, by Sender (From with several authors) or
    by Reply-To (a web form's, or a From without an address): the User record created for
    them keeps the name written next to that address, whichever field it was in. Addresses
    compare in :func:`normalise_address` form.
    """
    wanted = normalise_address(address)
    if not wanted:
        return ""
    if email.sender and normalise_address(email.sender) == wanted:
        return email.sender_name
    mailboxes: list[NamedAddress] = []
    if email.sender_mailbox is not None:
        mailboxes.append(email.sender_mailbox)
    mailboxes += (*email.from_mailboxes, *email.reply_to_mailboxes)
    for mailbox in mailboxes:
        if mailbox.name and normalise_address(mailbox.address) == wanted:
            return mailbox.name
    return ""


def has_two_from_headers(email: InboundEmail) -> bool:
    """True when the message carries more than one From header: nobody is authenticated."""
    return len(email.header_all("From")) > 1


@attrs.frozen
class SenderResolution:
    """Who sent the mail: the person case, the person chosen and how many records matched.

    ``contact`` is the lowest-id record with the address but neither flag (a contact), when
    no analyst or User has it: it identifies nobody (case 1), but a call it logs uses that
    record as its User instead of creating a second person (DESIGN 4b).
    """

    address: str
    case: PersonCase
    person: Person | None = None
    matches: int = 0
    contact: Person | None = None

    @property
    def ambiguous(self) -> bool:
        """True when several person records share the address, contacts included (the
        lowest id flagged analyst or User was chosen, else the lowest id)."""
        return self.matches > 1

    @property
    def known(self) -> bool:
        """True when the address belongs to a person record flagged analyst or User."""
        return self.case.is_known


def _email_of(person: Person) -> str:
    """``person.email``, or ArgumentTypeError naming the record when it is not a str."""
    require_type(person, Person, "resolve_sender", "each of persons")
    if not isinstance(person.email, str):
        raise ArgumentTypeError(
            f"resolve_sender(): person {person.id} has email {person.email!r}, not a str "
            '(leave a person without an address out, or give it "")'
        )
    return person.email


def resolve_sender(address: str, persons: Iterable[Person]) -> SenderResolution:
    """Find the person records whose email is ``address``; the lowest id wins.

    A record with neither the analyst nor the User flag does not identify anyone: the spec
    only knows Users and analysts, so such an address is case 1 (unknown); the record comes
    back as ``contact`` so that a call it logs can flag it as a User (DESIGN 4b).

    ``address`` is an addr-spec (``InboundEmail.sender``; "" for none: case 1), ``persons``
    any iterable of :class:`Person` (the records your directory holds for it, or all of
    them). An ``address`` that is not a str, ``persons`` that is not an iterable of
    ``Person``, or a person whose ``email`` is not a str (a NULL column) raises
    :class:`~asm_email_rules.errors.ArgumentTypeError` naming it.
    """
    require_type(address, str, "resolve_sender", "address")
    if not isinstance(persons, list | tuple):  # the usual answers skip the slower ABC check
        require_type(persons, Iterable, "resolve_sender", "persons", "an iterable of Person")
    wanted = normalise_address(address)
    if not wanted:
        return SenderResolution(address=address, case=PersonCase.UNKNOWN)
    same = sorted(
        (person for person in persons if normalise_address(_email_of(person)) == wanted),
        key=lambda person: person.id,
    )
    matching = [person for person in same if person.case.is_known]
    if not matching:
        contact = same[0] if same else None
        return SenderResolution(
            address=address, case=PersonCase.UNKNOWN, contact=contact, matches=len(same)
        )
    chosen = matching[0]
    # every record with the address counts: a contact sharing it is an ambiguity too (DESIGN 4)
    return SenderResolution(address=address, case=chosen.case, person=chosen, matches=len(same))
