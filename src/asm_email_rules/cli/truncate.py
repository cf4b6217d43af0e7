"""``asm-email-rules truncate FILE.eml``: the part of a reply that truncation keeps."""

from __future__ import annotations

import argparse
import json
from typing import Any

from asm_email_rules.cli._common import EXIT_OK, read_file
from asm_email_rules.intake import parse_message
from asm_email_rules.settings import SystemSettings
from asm_email_rules.truncate import truncate_reply

NAME = "truncate"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``truncate`` and its options."""
    parser = commands.add_parser(
        NAME,
        help="print the reply text that truncation keeps",
        description="Parse FILE.eml and print the part of its body that would be kept as the "
        "reply (our marker line, then separators, then the quote heuristic).",
    )
    parser.add_argument("file", metavar="FILE.eml", help="the message (- for standard input)")
    parser.add_argument("--marker", help="reply marker line (default: the standard one)")
    parser.add_argument(
        "--separator", action="append", metavar="TEXT", help="a separator line (repeatable)"
    )
    parser.add_argument("--strip-signature", action="store_true", help="also cut the signature")
    parser.add_argument("--json", action="store_true", help="print kept, elided, method, detail")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the kept text, or ``--json`` with kept, elided, method and detail."""
    email = parse_message(read_file(args.file))
    marker = args.marker if args.marker is not None else SystemSettings().reply_marker
    cut = truncate_reply(
        email.body,
        marker=marker or None,
        separators=tuple(args.separator or ()),
        strip_signature=args.strip_signature,
    )
    if args.json:
        data = {
            "kept": cut.kept,
            "elided": cut.elided,
            "method": cut.method.value,
            "detail": cut.detail,
        }
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(cut.kept)
    return EXIT_OK
