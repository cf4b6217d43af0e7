"""A Mailer that keeps what it is given: for tests, dry runs and the demo."""

from __future__ import annotations

import attrs

from asm_email_rules.errors import PermanentSendError, TransientSendError
from asm_email_rules.model import OutgoingEmail


@attrs.define
class RecordingMailer:
    """Records every reply instead of sending it; can be told to fail with an SMTP code."""

    sent: list[OutgoingEmail] = attrs.field(factory=list)
    fail_with: int | None = None

    def send(self, message: OutgoingEmail) -> None:
        """Keep ``message``, or raise the send error ``fail_with`` stands for."""
        if self.fail_with is not None:
            if self.fail_with >= 500:
                raise PermanentSendError("refused (simulated)", code=self.fail_with)
            raise TransientSendError("deferred (simulated)", code=self.fail_with)
        self.sent.append(message)
