"""asm_email_rules: incoming-email rules for service desks.

The four verbs of the core are ``parse_message``, ``parse_subject``, ``resolve_sender`` and
``decide``; ``process`` runs them end to end against a Repository and a Mailer.
"""

from asm_email_rules.classify import Classification, MailKind, classify
from asm_email_rules.decision import Decision, Facts, Outcome, Reply
from asm_email_rules.errors import (
    AsmEmailError,
    AuthenticationError,
    ConfigError,
    MailboxError,
    MessageParseError,
    NotFoundError,
    PermanentSendError,
    RepositoryError,
    SendError,
    StoreUnavailableError,
    TokenError,
    TransientSendError,
)
from asm_email_rules.intake import parse_message
from asm_email_rules.model import (
    Attachment,
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    InboundEmail,
    Lease,
    NamedAddress,
    OutboxEntry,
    OutgoingEmail,
    Person,
    PersonCase,
    ReplyStatus,
    Request,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.pipeline import (
    Disposition,
    ProcessResult,
    apply,
    explain,
    gather_facts,
    process,
)
from asm_email_rules.protocols import Directory, Mailbox, Mailer, Repository, SeedableRepository
from asm_email_rules.rules import decide
from asm_email_rules.sender import SenderResolution, resolve_sender
from asm_email_rules.settings import (
    CallTemplate,
    Limits,
    MailboxSettings,
    ReopenAssignment,
    SystemSettings,
)
from asm_email_rules.subject import CommandKind, SubjectCommand, parse_subject
from asm_email_rules.truncate import Truncation, TruncationMethod, truncate_reply

__all__ = [
    "AsmEmailError",
    "Attachment",
    "AuthenticationError",
    "Call",
    "CallStatus",
    "CallTemplate",
    "Classification",
    "CommandKind",
    "ConfigError",
    "Decision",
    "Directory",
    "Disposition",
    "EntityKind",
    "EntityRef",
    "Facts",
    "InboundEmail",
    "Lease",
    "Limits",
    "MailKind",
    "Mailbox",
    "MailboxError",
    "MailboxSettings",
    "Mailer",
    "MessageParseError",
    "NamedAddress",
    "NotFoundError",
    "OutboxEntry",
    "Outcome",
    "OutgoingEmail",
    "PermanentSendError",
    "Person",
    "PersonCase",
    "ProcessResult",
    "ReopenAssignment",
    "Reply",
    "ReplyStatus",
    "Repository",
    "RepositoryError",
    "Request",
    "SeedableRepository",
    "SendError",
    "SenderResolution",
    "StoreUnavailableError",
    "SubjectCommand",
    "SystemSettings",
    "Task",
    "TaskKind",
    "TaskStatus",
    "TokenError",
    "TransientSendError",
    "Truncation",
    "TruncationMethod",
    "apply",
    "classify",
    "decide",
    "explain",
    "gather_facts",
    "parse_message",
    "parse_subject",
    "process",
    "resolve_sender",
    "truncate_reply",
]
