"""Do a mailbox's settings fit the people in the store? Findings before the first message.

Issue 11, item 4: "``default_logging_analyst_id = 1`` on an empty store made the first customer
person 1, so that customer became the logging analyst of every call; ``assigned_analyst_id =
2`` pointed at nobody. Nothing checks that configured ids exist and are analysts." And the
``init`` configuration on an empty store discarded every message with INFO lines only.

:func:`check_mailbox` reads the person records the settings name and says, as typed findings,
what is wrong (an ERROR: the service and ``deliver`` refuse to start) or what will surprise
(a WARNING). ``asm-email-rules check`` prints them; ``poll`` and ``deliver`` refuse on errors.
Pure: it reads through the :class:`~asm_email_rules.protocols.Directory` protocol only.
"""

from __future__ import annotations

import enum

import attrs

from asm_email_rules.model import Person
from asm_email_rules.protocols import Directory
from asm_email_rules.settings import MailboxSettings

__all__ = ["Finding", "Level", "check_mailbox"]


class Level(enum.Enum):
    """How bad a finding is: ERROR stops the service; WARNING is said and allowed."""

    ERROR = "error"
    WARNING = "warning"


@attrs.frozen
class Finding:
    """One thing wrong or surprising: ``where`` is the account and the setting's key."""

    level: Level
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.value}: {self.where}: {self.message}"


def _person_check(
    directory: Directory, person_id: int | None, where: str, role: str
) -> list[Finding]:
    """The id must name a person flagged analyst (the spec's fields name analysts)."""
    if person_id is None:
        return []
    person: Person | None = directory.get_person(person_id)
    if person is None:
        return [
            Finding(
                Level.ERROR,
                where,
                f"person {person_id} does not exist; the {role} must be an analyst in the "
                "store (add one with `asm-email-rules people add ADDRESS --analyst`, then use "
                "its id)",
            )
        ]
    if not person.is_analyst:
        return [
            Finding(
                Level.ERROR,
                where,
                f"person {person_id} ({person.email}) is not an analyst; the {role} must be "
                f"one (`asm-email-rules people set {person_id} --analyst`, or name another id)",
            )
        ]
    return []


def check_mailbox(
    label: str, mailbox: MailboxSettings, directory: Directory, *, known_senders: int | None
) -> list[Finding]:
    """Findings for one account's mailbox settings against the store's people.

    ``label`` names the account in the findings (``accounts[1] (helpdesk)``);
    ``known_senders`` is how many person records are flagged analyst or User (0 means the
    rules know nobody; None: not known, and that warning is skipped). ERRORs: a configured
    id (``default_logging_analyst_id``, ``call_template.assigned_analyst_id``) names nobody,
    or someone who is not an analyst.
    WARNINGs: the settings discard every message, or calls get no logging analyst.
    """
    findings = _person_check(
        directory,
        mailbox.default_logging_analyst_id,
        f"{label}: mailbox.default_logging_analyst_id",
        "Default Logging Analyst",
    )
    findings += _person_check(
        directory,
        mailbox.call_template.assigned_analyst_id,
        f"{label}: mailbox.call_template.assigned_analyst_id",
        "call template's assigned analyst",
    )
    if known_senders == 0 and not mailbox.create_calls_anonymously:
        findings.append(
            Finding(
                Level.WARNING,
                f"{label}: mailbox.create_calls_anonymously",
                "every message will be discarded: nobody in the store is an analyst or a "
                "User, and unknown senders may not log calls (add people with `asm-email-rules "
                "people add` or `people import`, or set create_calls_anonymously = true)",
            )
        )
    if mailbox.default_logging_analyst_id is None and not mailbox.use_linked_analyst:
        findings.append(
            Finding(
                Level.WARNING,
                f"{label}: mailbox.default_logging_analyst_id",
                "not set: calls logged by email get no logging analyst (the spec sets the "
                "Default Logging Analyst)",
            )
        )
    return findings
