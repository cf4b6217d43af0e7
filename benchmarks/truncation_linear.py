"""Linearity check for reply truncation on adversarial inputs (script, not a test).

Each input family doubles in size up to ``--max-mb`` megabytes; the ratio between successive
timings should stay near 2. Peers run in a subprocess with a time budget and are marked
"skipped" past it (they are super-linear on some of these shapes).
Run: ``python benchmarks/truncation_linear.py [--max-mb 10] [--peer-budget 5]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from asm_email_rules.truncate import truncate_reply

Family = Callable[[int], str]
MARKER = "##- Please type your reply above this line -##"

FAMILIES: dict[str, Family] = {
    "On + n letters": lambda n: "On " + "a" * n,
    "n blank lines": lambda n: "\n" * n,
    "line of n '>'": lambda n: ">" * n,
    "n lines '> '": lambda n: "> \n" * (n // 3),
    "line of n dashes": lambda n: "-" * n,
    "near-miss attribution": lambda n: "On Monday, 3 May 2021 Bob said:\nhello\n" * (n // 38),
    "n Original Message": lambda n: "-----Original Message-----\n" * (n // 27),
    "text/quote alternation": lambda n: "reply\n> quote\n" * (n // 14),
    "header labels": lambda n: "From: a@b.c\nhello\n" * (n // 19),
    "sig delimiters": lambda n: "--\n\n\n\n" * (n // 6),
    "On + spaces + wrote": lambda n: "On " + " " * n + "wrote:",
    "long attribution lines": lambda n: ("On 1 May 2020, " + "x" * 400 + " wrote:\n") * (n // 422),
    # issue 9: flattened header blocks, inline separators, colon-rich lines, bidi marks,
    # parenthesised attribution tails, one-line questions and answers
    "flattened header lines": lambda n: "From: a@b.c Sent: Mon To: d Subject: e f\n" * (n // 42),
    "colon-rich lines": lambda n: ("a: " * 600 + "\n") * (n // 1801),
    "inline separators": lambda n: ("x -- Original message --" * 80 + "\n") * (n // 1921),
    "bidi-marked lines": lambda n: ("\u202b" + "x" * 50 + "\u202c\n") * (n // 53),
    "parenthesised tails": lambda n: ("X ezt írta (" + "a" * 70 + "):\n") * (n // 85),
    "one-line Q&A": lambda n: "> question?\nanswer.\n" * (n // 20),
    # field trial: our marker locates the history (quote block scans, intro search, text below)
    "quotes around our marker": lambda n: "> q\n" * (n // 8) + f"> {MARKER}\n" + "> q\n" * (n // 8),
    "blank lines over our marker": lambda n: "x wrote:" + "\n" * n + MARKER,
    "answers below our marker": lambda n: f"x wrote:\n> {MARKER}\n" + "a\n> q\n" * (n // 6),
    "Notes labels over our marker": lambda n: "  a@b      To\n      Subject\n" * (n // 28) + MARKER,
    "announcements over a header block": lambda n: (
        "Answers below.\n" * (n // 30)
        + "From: a@b.c\nSent: Mon\nTo: d\nSubject: e\n"
        + "answer\n" * (n // 14)
    ),
    # review: a bare "see below" looks for a question in the first lines of the history
    "see below over blank history": lambda n: (
        "Hi, see below.\n\nFrom: a@b.c\nSent: Mon\nTo: d\nSubject: e\n" + "\n" * n + "q?\n"
    ),
}


def _time_ours(text: str) -> float:
    t0 = time.perf_counter()
    truncate_reply(text, marker=MARKER, strip_signature=True)
    return time.perf_counter() - t0


def _peer_worker(name: str, text: str, out: mp.Queue[float]) -> None:
    # Imports happen before the clock starts: only the parse is timed.
    import quotequail
    from email_reply_parser import EmailReplyParser as Erp
    from mailparser_reply import EmailReplyParser

    if name == "mpr-en":
        parser = EmailReplyParser(languages=["en"])
        t0 = time.perf_counter()
        parser.parse_reply(text)
    elif name == "email_reply_parser":
        t0 = time.perf_counter()
        Erp.parse_reply(text)
    else:
        t0 = time.perf_counter()
        quotequail.quote(text)  # note: quotequail only looks at the first 1000 lines
    out.put(time.perf_counter() - t0)


def _time_peer(name: str, text: str, budget: float) -> float | None:
    queue: mp.Queue[float] = mp.Queue()
    proc = mp.Process(target=_peer_worker, args=(name, text, queue))
    proc.start()
    proc.join(budget)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return None
    return queue.get() if not queue.empty() else None


def main() -> None:
    """Print per-family timings per size with doubling ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-mb", type=float, default=10.0)
    ap.add_argument("--start-kb", type=float, default=16.0)
    ap.add_argument("--peer-budget", type=float, default=5.0, help="seconds per peer run")
    ap.add_argument("--peer-max-kb", type=float, default=1024.0, help="largest input for peers")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    peers = [] if args.no_peers else ["mpr-en", "email_reply_parser", "quotequail"]
    sizes: list[int] = []
    size = int(args.start_kb * 1024)
    while size <= args.max_mb * 1024 * 1024:
        sizes.append(size)
        size *= 2
    for fam, make in FAMILIES.items():
        print(f"\n== {fam}")
        print(f"{'bytes':>10} {'ours s':>9} {'ratio':>6}  " + "  ".join(f"{p:>20}" for p in peers))
        prev: float | None = None
        skipped = dict.fromkeys(peers, False)
        for n in sizes:
            text = make(n)
            ours = min(_time_ours(text) for _ in range(2 if n < 2**20 else 1))
            ratio = f"{ours / prev:6.2f}" if prev and prev > 1e-4 else "     -"
            prev = ours
            cells = []
            for p in peers:
                if skipped[p] or n > args.peer_max_kb * 1024:
                    cells.append(f"{'skipped':>20}")
                    continue
                t = _time_peer(p, text, args.peer_budget)
                if t is None:
                    skipped[p] = True
                    cells.append(f"{'>' + str(args.peer_budget) + 's (skip)':>20}")
                else:
                    cells.append(f"{t:20.4f}")
            print(f"{len(text):>10} {ours:9.4f} {ratio}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
