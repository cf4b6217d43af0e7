"""Two source trees of the library, timed in turn on the same mail: is a change faster?

    python benchmarks/paired.py TREE_A TREE_B [--count N] [--pairs K]
        [--columns maildir,maildir+smtp,imap] [--imap-rtt-ms N]

On a busy machine the same column of ``benchmarks/service.py`` moves by a tenth or more from
one run to the next, more than most changes make, so two runs at two commits say little.
This runs one column of each tree after the other, ``K`` times (the order alternating from
pair to pair), on the same ``N`` messages of the benchmark's mix (built once), each run in a
fresh process on a fresh store and a fresh copy of the Maildir, with the benchmark's own
warm-up, the replies of ``maildir+smtp`` to one SMTP sink for both trees, and ``imap``
from one Dovecot for both, its folder filled afresh before each run. A tree is a
checkout of the project (its ``src`` is put first on ``PYTHONPATH`` and its
``benchmarks/service.py`` runs the column), for instance a ``git worktree`` of the commit to
compare.

It prints each run (wall and CPU ms per message), then per column the two medians and the
ratio B / A of CPU time within each pair: the median of those ratios, and how many pairs had
B faster. A change that is real shows in most pairs whatever the machine does meanwhile;
run the same tree against itself (``paired.py . .``) to see how far apart two runs of one
tree fall here: a few pairs of a few hundred messages can differ by a fifth or more, so
compare with as many pairs and messages as that takes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import service as bench  # the benchmark next to this file: its mix and its columns

COLUMNS = ("maildir", "maildir+smtp", "imap")


def prepare(
    work: Path,
    column: str,
    samples: list[bench.Sample],
    warmup: list[bench.Sample],
    server: dict[str, Any] | None,
) -> None:
    """A fresh store, mailbox (Maildir, or the Dovecot ``server``'s folder for ``imap``) and
    warm-up folder for one run of ``column``."""
    bench._fresh(work, column)
    for folder in (work / column, work / f"{column}-warm"):
        shutil.rmtree(folder, ignore_errors=True)
    bench.fill_maildir(work / f"{column}-warm", warmup)
    if server is not None:
        bench.fill_imap(server, samples, warmup)
    else:
        bench.fill_maildir(work / column, samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts: A (before), B (after)")
    parser.add_argument("--count", type=int, default=1000, help="messages per run")
    parser.add_argument("--pairs", type=int, default=4, help="runs of each tree, in turn")
    parser.add_argument("--columns", default="maildir", help=f"some of {','.join(COLUMNS)}")
    parser.add_argument(
        "--imap-rtt-ms", type=float, default=0.0, help="round trip added in front of Dovecot"
    )
    options = parser.parse_args(argv)
    columns = [name for name in options.columns.split(",") if name]
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        parser.error(f"unknown column(s): {', '.join(sorted(unknown))}")
    trees: list[Path] = [tree.resolve() for tree in options.trees]
    for tree in trees:
        if not (tree / "src" / "asm_email_rules").is_dir():
            parser.error(f"{tree}: not a checkout of asm-email-rules (no src/asm_email_rules)")
    samples = bench.build_messages(options.count)
    warmup = bench.build_warmup()
    cpu: dict[tuple[str, int], list[float]] = {(c, t): [] for c in columns for t in (0, 1)}
    wall: dict[tuple[str, int], list[float]] = {(c, t): [] for c in columns for t in (0, 1)}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asm-paired-")))
        (work / "samples.json").write_text(json.dumps([[s.kind, s.message_id] for s in samples]))
        sink_options: dict[str, object] = {}
        if "maildir+smtp" in columns:
            sink = stack.enter_context(bench.smtp_sink())
            sink_options = {"smtp_port": sink["port"]}
        server: dict[str, Any] | None = None
        if "imap" in columns:
            server = stack.enter_context(bench.dovecot(options.imap_rtt_ms))
        for pair in range(options.pairs):
            order = (0, 1) if pair % 2 == 0 else (1, 0)
            for which in order:
                for column in columns:
                    imap = server if column == "imap" else None
                    prepare(work, column, samples, warmup, imap)
                    options_here: dict[str, object] = (
                        sink_options if column == "maildir+smtp" else {}
                    )
                    if imap is not None:
                        options_here = {"port": imap["port"], "password": imap["password"]}
                    result = bench.run_column(column, work, options_here, trees[which])
                    cpu[(column, which)].append(result.cpu_ms)
                    wall[(column, which)].append(result.ms)
                    print(
                        f"pair {pair + 1} {'AB'[which]} {column:<13} wall {result.ms:6.3f}"
                        f"  cpu {result.cpu_ms:6.3f} ms per message",
                        flush=True,
                    )
    print(f"\nA = {trees[0]}\nB = {trees[1]}\n{options.count} messages, {options.pairs} pairs")
    for column in columns:
        a_cpu, b_cpu = cpu[(column, 0)], cpu[(column, 1)]
        ratios = [b / a for a, b in zip(a_cpu, b_cpu, strict=True) if a]
        faster = sum(ratio < 1 for ratio in ratios)
        print(
            f"{column:<13} A wall {statistics.median(wall[(column, 0)]):.3f} cpu"
            f" {statistics.median(a_cpu):.3f}   B wall {statistics.median(wall[(column, 1)]):.3f}"
            f" cpu {statistics.median(b_cpu):.3f} ms per message;  B/A CPU in each pair: median"
            f" {statistics.median(ratios):.2f}x, B faster in {faster} of {len(ratios)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
