"""Every option of the spec as a typed setting: per mailbox and system-wide.

Defaults are the spec's "not selected" state, except where DESIGN.md chose otherwise.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping
from email.utils import formataddr

import attrs

from asm_email_rules.addresses import normalise_address
from asm_email_rules.replies import override_key_problem

FATAL_SMTP_CODES: tuple[int, ...] = (501, 503, 550, 553)
"""The SMTP codes the spec calls "permanent and fatal"."""


def _conforms(value: object, hint: object) -> bool:
    """Whether ``value`` is of the declared type ``hint`` (the few shapes settings use)."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType or origin is typing.Union:
        return any(_conforms(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_conforms(item, args[0]) for item in value)
    if origin is Mapping:
        return isinstance(value, Mapping) and all(
            _conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items()
        )
    return isinstance(value, hint) if isinstance(hint, type) else True


_DECLARED: dict[type, dict[str, object]] = {}
"""Each settings class's declared field types, resolved once."""


def _declared(cls: type) -> dict[str, object]:
    hints = _DECLARED.get(cls)
    if hints is None:
        hints = _DECLARED[cls] = typing.get_type_hints(cls)
    return hints


def _check_types(settings: object) -> None:
    """Refuse a field whose value is not of its declared type, naming it: a TypeError.

    The configuration file's loader checks its keys itself; this guards settings built in
    code, where a slip is silent: ``addresses=("help@desk.example")`` (no trailing comma) is
    a str, read as one address per character, so the desk's own address is no longer
    recognised and its mail loops back as new calls.
    """
    cls = type(settings)
    for name, hint in _declared(cls).items():
        value = getattr(settings, name)
        if _conforms(value, hint):
            continue
        shown = getattr(hint, "__name__", None) if isinstance(hint, type) else None
        message = f"{cls.__name__}.{name} must be {shown or hint}, got {value!r}"
        if isinstance(value, str) and typing.get_origin(hint) is tuple:
            message += f" (a tuple of one needs a trailing comma: ({value!r},))"
        raise TypeError(message)


_Range = tuple[float | None, float | None, bool]
"""(lowest, highest, lowest excluded) of a number setting; None: no bound that side."""

_AT_LEAST_ONE: _Range = (1, None, False)
_NOT_NEGATIVE: _Range = (0, None, False)
_POSITIVE: _Range = (0, None, True)


def _check_ranges(settings: object, ranges: Mapping[str, _Range]) -> None:
    """Refuse a number field outside its range, naming it: a ValueError. The same bounds as
    the configuration file's keys (docs/operators.md), so settings built in code cannot hold
    what a config file may not: ``summary_limit=0`` would answer "You have no open items."
    to an analyst who has some. A None value (an optional id) is not checked."""
    for name, (low, high, low_excluded) in ranges.items():
        value = getattr(settings, name)
        if value is None:
            continue
        too_low = low is not None and (value <= low if low_excluded else value < low)
        if too_low or (high is not None and value > high):
            if low_excluded:
                span = f"greater than {low:g}"
            elif high is None:
                span = f">= {low:g}"
            else:
                span = f"between {low:g} and {high:g}"
            raise ValueError(f"{type(settings).__name__}.{name} must be {span}, got {value!r}")


@attrs.frozen
class CallTemplate:
    """The call template of a mailbox: the properties every logged call starts with."""

    name: str = "Default"
    partition: str = ""
    call_screen_set: str = ""
    ipk_status: str = ""
    ipk_stream: str = ""
    assigned_analyst_id: int | None = None
    assigned_group: str = ""

    def __attrs_post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self, {"assigned_analyst_id": _AT_LEAST_ONE})


class ReopenAssignment(enum.Enum):
    """Who a reopened call goes to ("depends on the setting chosen in the Email Settings")."""

    KEEP = "keep"  # the analyst and group it had when it closed
    GROUP = "group"  # its group, with no analyst
    TEMPLATE = "template"  # the mailbox call template's analyst and group


@attrs.frozen
class Limits:
    """Intake caps against huge or hostile mail; over a cap is a recorded violation."""

    max_total_size: int = 25 * 1024 * 1024
    max_header_count: int = 1000
    max_header_bytes: int = 256 * 1024
    max_line_length: int = 100_000
    max_mime_depth: int = 20
    max_part_count: int = 500
    max_attachment_size: int = 15 * 1024 * 1024
    max_subject_length: int = 2000
    max_body_bytes: int = 1024 * 1024

    def __attrs_post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self, dict.fromkeys(_declared(type(self)), _AT_LEAST_ONE))

    @property
    def max_read_size(self) -> int:
        """The most bytes of one message that are read and kept, in bytes:
        :data:`READ_FACTOR` times ``max_total_size``. A message over ``max_total_size`` keeps
        only its header (intake.md, "Limits"), so what lies past this is never needed: the
        mailboxes, ``deliver`` and the commands read no further
        (:func:`~asm_email_rules.ledger_key.cut_over`)."""
        return READ_FACTOR * self.max_total_size


READ_FACTOR = 4
""":attr:`Limits.max_read_size` over ``max_total_size``."""


def partition_problem(mailbox_partition: str | None, template_partition: str) -> str | None:
    """Why a mailbox limited to ``mailbox_partition`` cannot log calls from a template in
    ``template_partition``; None when it can (no limit, no template partition, or the same).

    Every call such a mailbox logged would be outside its partition, an invalid number to it,
    so each answer to our "Call n has been logged" would log another call.
    """
    if mailbox_partition is None or template_partition in ("", mailbox_partition):
        return None
    return (
        f"{template_partition!r} is outside the mailbox's partition {mailbox_partition!r}: "
        "every call it logs would be an invalid number to this mailbox (each answer would "
        "log another call); use the same partition, or leave the template's unset"
    )


@attrs.frozen
class MailboxSettings:
    """Options of one incoming email account (the spec's "incoming email server").

    Beyond the spec's options: ``calls_from_machine_mail`` (default on) lets
    machine-generated mail log and update calls, never with a reply or a command; off, it is
    discarded with its reason. ``contact_from_reply_to`` (web-form mailboxes) makes the User of
    a new call the Reply-To person instead of the From robot.

    ``from_name`` is the display name of our replies' From (``Service Desk
    <helpdesk@example.org>``). ``reply_subject`` places the record's bracket token (``[CALL#12]``)
    in a reply's subject: ``$subject`` is the reply's subject text, ``$token`` the token; the
    token is what lets an answer that lost its In-Reply-To still find its call.

    ``reply_templates`` overrides reply and notification texts for this mailbox (another
    language, the desk's own wording): keys ``"<id>.subject"`` or ``"<id>.body"`` with an id of
    :data:`~asm_email_rules.replies.CATALOGUE`, values ``string.Template`` text (``$number``
    and the other placeholders of that id). A key the catalogue lacks is a ValueError naming
    the nearest valid key: it would never be read.
    """

    name: str = "default"
    addresses: tuple[str, ...] = ()
    call_template: CallTemplate = CallTemplate()
    default_logging_analyst_id: int | None = None
    create_calls_anonymously: bool = False
    update_calls_anonymously: bool = False
    close_calls_anonymously: bool = False
    log_new_call_on_invalid_number: bool = False
    update_closed_calls: bool = False
    reopen_closed_calls: bool = False
    use_linked_analyst: bool = False
    auto_reply: bool = False
    partition: str | None = None
    reply_templates: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    separators: tuple[str, ...] = ()
    trusted_authserv_id: str | None = None
    require_approval_token: bool = False
    calls_from_machine_mail: bool = True
    contact_from_reply_to: bool = False
    from_name: str = ""
    reply_subject: str = "$subject $token"

    def __attrs_post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self, {"default_logging_analyst_id": _AT_LEAST_ONE})
        for key in self.reply_templates:
            problem = override_key_problem(key)
            if problem is not None:
                raise ValueError(f"MailboxSettings.reply_templates: {key!r}: {problem}")
        problem = partition_problem(self.partition, self.call_template.partition)
        if problem is not None:
            raise ValueError(f"MailboxSettings.call_template.partition: {problem}")

    @property
    def template_for_new_calls(self) -> CallTemplate:
        """The call template a call logged through this mailbox is created from: the
        mailbox's ``partition`` when the template names none, so that a call it logs is a
        valid number to it (DESIGN 4: a record outside the mailbox's partition is an invalid
        number, and every answer to such a call would log another one)."""
        if self.partition is None or self.call_template.partition:
            return self.call_template
        return attrs.evolve(self.call_template, partition=self.partition)

    @property
    def reply_from(self) -> str:
        """The From of our replies: ``from_name <first address>``, or the bare address when
        ``from_name`` is empty (empty when the mailbox has no address)."""
        if not self.addresses:
            return ""
        if not self.from_name:
            return self.addresses[0]
        return formataddr((self.from_name, self.addresses[0]))

    def is_own_address(self, address: str) -> bool:
        """True when ``address`` is one of this mailbox's own addresses.

        Compared in :func:`~asm_email_rules.addresses.normalise_address` form (DESIGN 4b:
        whole address, after NFKC, case-insensitive; no plus-address folding).
        """
        wanted = normalise_address(address)
        return any(wanted == normalise_address(own) for own in self.addresses)


_SYSTEM_RANGES: dict[str, _Range] = {
    "summary_limit": _AT_LEAST_ONE,
    "reply_budget_per_hour": _NOT_NEGATIVE,
    "max_reply_age_days": _NOT_NEGATIVE,
    "max_send_attempts": _AT_LEAST_ONE,
    "reply_retry_hours": _POSITIVE,
    "lease_seconds": _POSITIVE,
    "replies_in_flight": (0, 1000, False),
    "backoff_initial_seconds": _POSITIVE,
    "backoff_max_seconds": _POSITIVE,
    "ledger_retention_days": _NOT_NEGATIVE,
    "quarantine_retention_days": _NOT_NEGATIVE,
}
"""The bounds of SystemSettings' numbers: those of its config keys (``messages_per_commit``
has attrs validators of its own)."""


@attrs.frozen
class SystemSettings:
    """System-wide options (System Administration, Messaging, Email Settings).

    Ours, for sending and polling (DESIGN 4): ``reply_retry_hours`` is how long a reply that
    meets temporary SMTP failures (4xx, no answer) is retried, with exponential backoff,
    before it is given up and recorded as failed. ``lease_seconds`` is how long a poller's
    hold on an account, and a sender's claim on a reply, last without renewal: a poller that
    died is taken over, and its reply in flight resent, once that time has passed.
    ``backoff_initial_seconds`` and ``backoff_max_seconds`` are how an
    account backs off when our side fails (the store locked, read-only or full): the first wait,
    doubled at each failure in a row up to the cap (DESIGN 4, "Nothing is lost").
    ``ledger_retention_days`` is how long the ledger remembers a message after it was last seen
    in a mailbox (0: for ever); a message still in a mailbox is never forgotten.
    ``quarantine_retention_days`` is how long the store keeps a quarantined message released
    or replayed (its bytes) after that was done (0: for ever); held ones are kept until the
    operator deals with them or runs ``quarantine purge --held``.
    ``replies_in_flight`` is how many replies a poller sends ahead on a thread of its own while
    it reads the next messages (:class:`~asm_email_rules.outbox_pump.ReplyPump`), in one write
    where the server allows, so also how many accepted replies a crash can leave unrecorded,
    each resent with its Message-ID (a store with a sent journal,
    :mod:`~asm_email_rules.sent_journal`, keeps each accepted reply before the next
    ``replies_in_flight`` go out, and lets the pump claim more ahead);
    0 sends between mailbox sessions, each reply recorded as soon as the server answered.
    ``messages_per_commit`` is how many messages a poller records in one commit of a store
    whose nested units roll back alone (SQLite, PostgreSQL, memory: ``nested_rollback``); a
    commit is due a quarter of a second after its first message or once it holds 512 KiB of
    messages, whatever the count, and comes first whenever the next message must be fetched
    from a server. Each message is still in a unit of its own (a savepoint), and none is
    deleted from its mailbox before its commit; 1 commits each message alone.
    """

    truncate_incoming_emails: bool = False
    email_at_update_via_email_in: bool = False
    unspecified_profile_name: str = "Unspecified"
    self_service_reopen_closed_calls: bool = False
    reopen_assignment: ReopenAssignment = ReopenAssignment.KEEP
    fatal_smtp_codes: tuple[int, ...] = FATAL_SMTP_CODES
    summary_limit: int = 50
    reply_marker: str = "##- Please type your reply above this line -##"
    reply_budget_per_hour: int = 20
    max_reply_age_days: int = 7
    max_send_attempts: int = 5
    reply_retry_hours: float = 24.0
    lease_seconds: float = 120.0
    replies_in_flight: int = 2
    messages_per_commit: int = attrs.field(
        default=20,
        validator=[
            attrs.validators.instance_of(int),
            attrs.validators.ge(1),
            attrs.validators.le(1000),
        ],
    )
    backoff_initial_seconds: float = 15.0
    backoff_max_seconds: float = 900.0
    ledger_retention_days: int = 90
    quarantine_retention_days: int = 90
    approval_token_secret: str | None = None
    loop_header: str = "X-ASM-Email-Rules-Loop"
    limits: Limits = Limits()

    def __attrs_post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self, _SYSTEM_RANGES)
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError(
                f"SystemSettings.backoff_max_seconds must be at least backoff_initial_seconds "
                f"({self.backoff_initial_seconds:g}), got {self.backoff_max_seconds:g}"
            )
        for code in self.fatal_smtp_codes:
            if not 500 <= code <= 599:
                raise ValueError(
                    f"SystemSettings.fatal_smtp_codes must be SMTP 5xx codes, got {code!r}"
                )
