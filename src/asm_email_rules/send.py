"""Send the stored reply of a processed message, after its transaction has committed.

A failed send never undoes the actions: permanent refusals are recorded and the message is
still deleted; transient ones keep the message for a retry, bounded by a send-attempt limit.
"""

from __future__ import annotations

import enum
import logging

from asm_email_rules.errors import PermanentSendError, SendError
from asm_email_rules.model import LedgerEntry, ReplyStatus
from asm_email_rules.protocols import Mailer, Repository
from asm_email_rules.settings import SystemSettings

__all__ = ["Disposition", "send_pending"]

logger = logging.getLogger("asm_email_rules")


class Disposition(enum.Enum):
    """What the mailbox should do with the message once it has been processed."""

    DELETE = "delete"  # acted on and recorded (the spec: "the email is deleted")
    RETRY = "retry"  # keep it: the reply hit a transient failure and is retried next poll
    QUARANTINE = "quarantine"  # move it aside: unusable, failing, or out of send attempts


def send_pending(
    entry: LedgerEntry,
    repository: Repository,
    mailer: Mailer,
    system: SystemSettings,
) -> tuple[ReplyStatus, Disposition]:
    """Send the stored reply of a ledger entry, record the outcome, say what to do with the mail.

    Permanent refusals (the spec's 501/503/550/553 and other 5xx) are final and the message is
    still deleted; transient ones keep the message for a retry until
    ``system.max_send_attempts`` is reached, after which it is quarantined.
    """
    if entry.reply is None or entry.reply_status is not ReplyStatus.PENDING:
        return entry.reply_status, Disposition.DELETE
    attempts = entry.attempts + 1
    try:
        mailer.send(entry.reply)
    except PermanentSendError as exc:
        fatal = exc.code in system.fatal_smtp_codes
        logger.warning(
            "reply refused for good: %s",
            exc,
            extra={"to": entry.reply.to, "code": exc.code, "fatal_code": fatal},
        )
        status, disposition, error = ReplyStatus.FAILED, Disposition.DELETE, str(exc)
    except SendError as exc:  # TransientSendError, or a mailer raising the base class
        error = str(exc)
        if attempts >= system.max_send_attempts:
            status, disposition = ReplyStatus.FAILED, Disposition.QUARANTINE
            error = f"gave up after {attempts} attempts: {exc}"
        else:
            status, disposition = ReplyStatus.PENDING, Disposition.RETRY
        logger.info("reply deferred: %s", exc, extra={"to": entry.reply.to, "attempts": attempts})
    else:
        status, disposition, error = ReplyStatus.SENT, Disposition.DELETE, ""
    repository.set_reply_status(
        entry.mailbox, entry.message_id, entry.sha256, status, attempts=attempts, error=error
    )
    return status, disposition
