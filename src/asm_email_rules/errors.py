"""Typed exceptions: every error the library raises derives from :class:`AsmEmailError`."""

from __future__ import annotations

from collections.abc import Iterable


class AsmEmailError(Exception):
    """Base class of every error raised by asm_email_rules."""


class MessageParseError(AsmEmailError):
    """Raw bytes could not be turned into an :class:`~asm_email_rules.model.InboundEmail`."""

    def __init__(self, reason: str, *, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ArgumentTypeError(AsmEmailError, TypeError):
    """A public function was given a value of the wrong type (``None`` or ``bytes`` where it
    takes a ``str``, a bare ``str`` where it takes a sequence of them, a naive ``datetime``
    where it takes an aware one). The message names the argument and what it got.

    A :class:`TypeError` too, so code written against the plain ``TypeError`` these checks
    raised before still catches it. A programming error of the host, never the message's
    fault: the polling service counts it as a failure of the store (a host store that
    handed the rules a record of the wrong shape), retries the message on later passes and
    sets it aside only after ``max_send_attempts`` of them, with this error.
    """


class FactsError(AsmEmailError, ValueError):
    """:class:`~asm_email_rules.decision.Facts` that contradict themselves: a record that is
    not the one the subject command names (``[CLOSE#12]`` with the call 99), so ``decide``
    would judge one record's permissions and act on another. The message names both."""


class DerError(AsmEmailError):
    """BER/DER bytes (an S/MIME ``smime.p7m``) the bounded reader of
    :mod:`~asm_email_rules.smime` refuses: broken, of another shape than it reads, or nested
    deeper than its limit. Intake catches it, keeps the part as an attachment and notes why."""


class TnefError(AsmEmailError):
    """A ``winmail.dat`` (TNEF) the bounded reader of :mod:`~asm_email_rules.tnef` refuses:
    broken, truncated, or of a shape it does not read. Intake catches it, keeps the file as
    it came and notes why."""


class ConfigError(AsmEmailError):
    """A configuration file or value is invalid; the message names the file and key."""

    def __init__(self, message: str, *, source: str = "", key: str = "") -> None:
        self.source = source
        self.key = key
        where = ":".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RepositoryError(AsmEmailError):
    """The store refused an operation (missing record, constraint, schema mismatch)."""


class NotFoundError(RepositoryError):
    """A call, task, request or person that an action names does not exist."""


class StaleRecordError(RepositoryError):
    """A record changed between the rules' read and the write that relied on it: a call
    closed, reopened, or an approval decided by another poller first. Nothing was written;
    :func:`~asm_email_rules.pipeline.process` decides the message again on what is there.
    Raised by ``close_call``, ``reopen_call`` and ``set_task_status``
    (:class:`~asm_email_rules.protocols.Repository`)."""


class StoreUnavailableError(RepositoryError):
    """The store cannot work right now: locked by another writer past the timeout, read-only,
    disk full, an I/O error, the connection lost. Our failure, never the message's.

    The polling service answers it by backing the account off (exponential, capped) and leaves
    the message where it is: it is never counted against the message nor quarantined (DESIGN 4,
    "Nothing is lost"). The bundled SQLite and PostgreSQL stores raise it for those failures; a
    host store should raise it for its outages too (a plain :class:`RepositoryError` counts
    against the message being processed).
    """


def raised_inside(exc: BaseException, obj: object) -> bool:
    """True when ``exc`` was raised while a method of ``obj`` ran: a frame of its traceback
    has ``obj`` as its ``self`` (the method itself, its context manager's generator, or code
    it called on the way). For telling a host store's own failure (a driver's exception it
    did not wrap in :class:`RepositoryError`) from a fault of the message being processed.
    Looks at the frames between the handler and the raise only: linear in their number."""
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_locals.get("self") is obj:
            return True
        frame = frame.tb_next
    return False


class SendError(AsmEmailError):
    """Sending a reply failed; ``code`` is the SMTP reply code when there was one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(f"{code} {message}" if code is not None else message)


class PermanentSendError(SendError):
    """The server refused the reply for good (5xx, including the spec's 501/503/550/553)."""


class TransientSendError(SendError):
    """The reply may succeed later (4xx, connection failure, timeout)."""


class MailboxError(AsmEmailError):
    """A mailbox (IMAP, POP3, Maildir) could not be read or changed."""


class MessageGoneError(MailboxError):
    """The message is no longer in the mailbox: another client (a person's mail program, a
    second poller) removed it after the listing. Not a failure of the mailbox: the polling
    service logs it and goes on with the next message."""


class MessageUnreadableError(MailboxError):
    """One message cannot be read while the mailbox itself works (a Maildir file the service
    may not read, say). Not a failure of the mailbox: the polling service logs it, leaves the
    message where it is and goes on with the next one, so an unreadable message never holds up
    the messages behind it; it is tried again on the next poll."""


class MailboxBusyError(MailboxError):
    """A server turned our session away for now, not for our credentials: the POP3 maildrop
    locked by another session (``-ERR [IN-USE]``), too many connections (Dovecot's ``NO
    [LIMIT]``), throttled or unavailable. Tried again later; the polling service backs the
    account off as ``mailbox unreachable``."""


class MailboxHungUpError(MailboxError):
    """The server closed the connection on a fetch right after answering for the message
    ``key`` without it (Dovecot's default ``imap_fetch_failure = disconnect-immediately``
    for a message file it cannot read). The session is over (the connection is gone), but
    the mailbox remembers ``key`` and leaves it out of the next sessions, so the polling
    service does not count this as the mailbox failing: its next session goes on."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class TokenError(AsmEmailError):
    """No OAuth2 access token could be had: the token endpoint, command or file failed.

    The message names the source (token URL, command or file) and the reason the endpoint gave
    (``invalid_client``, ``invalid_grant``, ...); it never contains a token or a secret.
    ``retry_after``: the seconds a throttled or unavailable endpoint (HTTP 429 or 503) asked
    us to wait before the next request (its ``Retry-After``), else None.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationError(AsmEmailError):
    """A server refused to sign us in (wrong password, refused or expired OAuth2 token).

    Our credentials, not any message, are at fault. ``server`` is ``"IMAP host:port"`` (or POP3,
    SMTP), ``user`` the name we signed in as, ``mechanism`` the SASL mechanism or ``LOGIN``;
    the message names all three and never contains the password or token.
    """

    server: str = ""
    user: str = ""
    mechanism: str = ""


class MailboxAuthenticationError(AuthenticationError, MailboxError):
    """An IMAP or POP3 server refused our sign-in; a :class:`MailboxError` for the service."""

    def __init__(self, message: str, *, server: str, user: str, mechanism: str) -> None:
        super().__init__(message)
        self.server, self.user, self.mechanism = server, user, mechanism


class SendAuthenticationError(AuthenticationError, TransientSendError):
    """The SMTP server refused our sign-in; transient: the reply is sent once this is fixed."""

    def __init__(
        self, message: str, *, server: str, user: str, mechanism: str, code: int | None = None
    ) -> None:
        TransientSendError.__init__(self, message, code=code)
        self.server, self.user, self.mechanism = server, user, mechanism


def _shown(value: object) -> str:
    """How an argument's wrong value is named in a message: ``None``, else its type and,
    for a short text, the value itself."""
    if value is None:
        return "None"
    if isinstance(value, str | bytes) and len(value) <= 60:
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


def require_type(
    value: object, kind: type | tuple[type, ...], where: str, name: str, expected: str = ""
) -> None:
    """:class:`ArgumentTypeError` naming ``where``'s argument ``name`` when ``value`` is not a
    ``kind`` (``expected`` says what it must be, when the class name alone does not; an
    empty ``where`` names the argument alone)."""
    if not isinstance(value, kind):
        wanted = expected or (
            kind.__name__ if isinstance(kind, type) else "/".join(item.__name__ for item in kind)
        )
        place = f"{where}(): " if where else ""
        raise ArgumentTypeError(f"{place}{name} must be {wanted}, got {_shown(value)}")


def require_strings(value: object, where: str, name: str) -> tuple[str, ...]:
    """``value`` as a tuple of str, or :class:`ArgumentTypeError` naming the argument.

    A bare ``str`` is refused, not read as one text per character: ``("help@desk.example")``
    without its trailing comma is a str, and a sequence of its characters would silently
    match nothing (or, as separators, every line holding one of them). Linear in the items.
    """
    if type(value) is tuple and all(type(item) is str for item in value):
        return value  # the usual: a settings tuple, returned as it is
    if isinstance(value, str | bytes):
        raise ArgumentTypeError(
            f"{where}(): {name} must be a sequence of str, got {_shown(value)} "
            f"(a tuple of one needs a trailing comma: ({value!r},))"
        )
    if not isinstance(value, Iterable):
        raise ArgumentTypeError(f"{where}(): {name} must be a sequence of str, got {_shown(value)}")
    items: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ArgumentTypeError(f"{where}(): {name}[{index}] must be a str, got {_shown(item)}")
        items.append(item)
    return tuple(items)
