"""Resolve the sender's address into the spec's person case."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from asm_email_rules.addresses import normalise_address
from asm_email_rules.model import Person, PersonCase

__all__ = ["SenderResolution", "normalise_address", "resolve_sender"]


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
        """True when several person records share the address (the lowest id was chosen)."""
        return self.matches > 1

    @property
    def known(self) -> bool:
        """True when the address belongs to a person record flagged analyst or User."""
        return self.case.is_known


def resolve_sender(address: str, persons: Iterable[Person]) -> SenderResolution:
    """Find the person records whose email is ``address``; the lowest id wins.

    A record with neither the analyst nor the User flag does not identify anyone: the spec
    only knows Users and analysts, so such an address is case 1 (unknown); the record comes
    back as ``contact`` so that a call it logs can flag it as a User (DESIGN 4b).
    """
    wanted = normalise_address(address)
    if not wanted:
        return SenderResolution(address=address, case=PersonCase.UNKNOWN)
    same = sorted(
        (person for person in persons if normalise_address(person.email) == wanted),
        key=lambda person: person.id,
    )
    matching = [person for person in same if person.case.is_known]
    if not matching:
        contact = same[0] if same else None
        return SenderResolution(address=address, case=PersonCase.UNKNOWN, contact=contact)
    chosen = matching[0]
    return SenderResolution(address=address, case=chosen.case, person=chosen, matches=len(matching))
