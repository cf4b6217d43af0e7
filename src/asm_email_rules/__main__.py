"""``python -m asm_email_rules``: the same command line as ``asm-email-rules``."""

from __future__ import annotations

import sys

from asm_email_rules.cli import main

sys.exit(main())
