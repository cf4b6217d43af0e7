"""Run django-helpdesk's ``get_email`` once over a folder: ``run.py FOLDER KINDS.json``.

Started by ``benchmarks/service.py`` with DJANGO_SETTINGS_MODULE=helpdesk_peer.settings.
Migrates a fresh database, makes one queue reading ``FOLDER`` (django-helpdesk's "local"
mailbox), times ``process_email`` and prints one JSON line: seconds, ms per message by kind,
peak memory above the start (bytes) and what it stored.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from helpdesk import email as helpdesk_email
    from helpdesk.models import FollowUp, Queue, Ticket

    folder, kinds_file = sys.argv[1], sys.argv[2]
    kinds: dict[str, str] = json.loads(Path(kinds_file).read_text())
    Queue.objects.create(
        title="Service Desk",
        slug="CALL",
        email_address="helpdesk@desk.example",
        allow_email_submission=True,
        email_box_type="local",
        email_box_local_dir=folder,
        email_box_interval=0,
        logging_type="none",
    )
    times: dict[str, list[float]] = defaultdict(list)
    original = helpdesk_email.extract_email_metadata

    def timed(message: str, queue: Any, logger: Any) -> Any:
        begun = time.perf_counter()
        try:
            return original(message=message, queue=queue, logger=logger)
        finally:
            match = re.search(r"^Message-ID: (<[^>]+>)", message, re.MULTILINE)
            kind = kinds.get(match.group(1), "?") if match else "?"
            times[kind].append(1000 * (time.perf_counter() - begun))

    helpdesk_email.extract_email_metadata = timed
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    start = _status("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    helpdesk_email.process_email(quiet=True)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = max(0, _status("VmHWM") - start)
    left = len(list(Path(folder).iterdir()))
    note = (
        f"tickets {Ticket.objects.count()}, follow-ups {FollowUp.objects.count()},"
        f" left in folder {left}"
    )
    result = {"seconds": seconds, "cpu_seconds": cpu, "per_kind": times, "peak": peak}
    print(json.dumps({**result, "note": note}))


if __name__ == "__main__":
    main()
