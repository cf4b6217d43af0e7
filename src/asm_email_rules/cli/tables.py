"""``asm-email-rules tables``: the decision tables as Markdown (docs/decision-tables.md)."""

from __future__ import annotations

import argparse
from typing import Any

from asm_email_rules.cli._common import EXIT_OK
from asm_email_rules.rules import render_tables_markdown

NAME = "tables"


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``tables`` (no options)."""
    parser = commands.add_parser(
        NAME,
        help="print the decision tables as Markdown (docs/decision-tables.md)",
        description="Print every decision table: its rows, conditions, outcomes and the spec "
        "sentence each row implements.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the tables exactly as the docs page holds them."""
    print(render_tables_markdown(), end="")
    return EXIT_OK
