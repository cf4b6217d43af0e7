"""Reply-truncation accuracy and speed on the shared corpora, ours against the peers.

Script, not a test: ``python benchmarks/truncation.py [--repeat 5]``. For every corpus it prints
exact-match accuracy (after whitespace normalisation) and the median time per case for ours,
mail-parser-reply (English only and all languages), email_reply_parser and quotequail, then the
ratio of our time to English-only mail-parser-reply. Signatures are stripped when scoring the
github, zapier and mail-parser-reply corpora and kept for talon and quotequail, as their
expectations require.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import contextlib

from asm_email_rules.truncate import truncate_reply

CORPORA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora"
#: corpus -> whether its expectations strip signatures
CORPORA: dict[str, bool] = {
    "github-email-reply-parser": True,
    "zapier-email-reply-parser": True,
    "mail-parser-reply": True,
    "talon": False,
    "quotequail": False,
}
#: the peer whose own fixtures each corpus holds (a peer is not judged on its own corpus)
OWN_CORPUS = {
    "email_reply_parser": {"github-email-reply-parser", "zapier-email-reply-parser"},
    "mpr-en": {"mail-parser-reply"},
    "mpr-all": {"mail-parser-reply"},
    "quotequail": {"quotequail"},
}

Parser = Callable[[str, bool], str]


def read_body(path: Path) -> str:
    """Body text of a case input: the raw text, or the first text/plain part of an .eml."""
    if path.suffix == ".eml":
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for part in msg.walk():
            if part.get_content_type() == "text/plain":
                return str(part.get_content())
        return ""
    return path.read_bytes().decode("utf-8")


def cases(corpus: str) -> Iterator[tuple[str, str, str]]:
    """(case id, input body, expected text) for each case of ``corpus``."""
    folder = CORPORA_DIR / corpus / "cases"
    for exp in sorted(folder.glob("*.expected.txt")):
        cid = exp.name[: -len(".expected.txt")]
        inp = next(folder.glob(f"{cid}.input.*"))
        yield cid, read_body(inp), exp.read_text("utf-8")


def normalise(text: str) -> str:
    """Strip trailing whitespace per line, collapse blank-line runs, strip both ends."""
    out: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.rstrip()
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out).strip()


def _ours(text: str, strip_sig: bool) -> str:
    return truncate_reply(text, strip_signature=strip_sig).kept


def _make_mpr(languages: list[str]) -> Parser:
    from mailparser_reply import EmailReplyParser

    parser = EmailReplyParser(languages=languages)

    def run(text: str, strip_sig: bool) -> str:
        replies = parser.read(text).replies
        if not replies:
            return ""
        # body drops the latest reply's headers and signature; content keeps the signature.
        return str(replies[0].body if strip_sig else replies[0].content)

    return run


def _erp(text: str, strip_sig: bool) -> str:
    from email_reply_parser import EmailReplyParser

    return str(EmailReplyParser.parse_reply(text))


def _quotequail(text: str, strip_sig: bool) -> str:
    import quotequail

    parts: list[str] = []
    for visible, chunk in quotequail.quote(text, quote_intro_line=True):
        if not visible:
            break
        parts.append(chunk)
    return "\n".join(parts)


def peers() -> dict[str, Parser]:
    """All parsers to compare, ours first."""
    from mailparser_reply.constants import MAIL_LANGUAGES

    return {
        "ours": _ours,
        "mpr-en": _make_mpr(["en"]),
        "mpr-all": _make_mpr(list(MAIL_LANGUAGES)),
        "email_reply_parser": _erp,
        "quotequail": _quotequail,
    }


def measure(parser: Parser, corpus: str, strip_sig: bool, repeat: int) -> tuple[int, int, float]:
    """(exact matches, cases, median seconds per case) of ``parser`` on ``corpus``."""
    good = total = 0
    times: list[float] = []
    for _cid, body, expected in cases(corpus):
        total += 1
        try:
            got = parser(body, strip_sig)
        except Exception:  # a peer crashing counts as a miss
            got = "\0"
        good += normalise(got) == normalise(expected)
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            with contextlib.suppress(Exception):
                parser(body, strip_sig)
            runs.append(time.perf_counter() - t0)
        times.append(min(runs))
    return good, total, statistics.median(times)


def main() -> None:
    """Print the accuracy/time table and our speed ratio to English-only mail-parser-reply."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per case (min is kept)")
    args = ap.parse_args()
    if not CORPORA_DIR.is_dir():
        sys.exit(f"corpora not found at {CORPORA_DIR}")
    parsers = peers()
    names = list(parsers)
    results: dict[tuple[str, str], tuple[int, int, float]] = {}
    for corpus, strip_sig in CORPORA.items():
        for name, parser in parsers.items():
            results[(corpus, name)] = measure(parser, corpus, strip_sig, args.repeat)

    width = 26
    print("accuracy (exact after normalisation) | median µs per case")
    print(f"{'corpus':<{width}}" + "".join(f"{n:>24}" for n in names))
    totals = {n: [0, 0] for n in names}
    for corpus in CORPORA:
        row = f"{corpus:<{width}}"
        for name in names:
            good, total, med = results[(corpus, name)]
            totals[name][0] += good
            totals[name][1] += total
            row += f"{f'{good}/{total} {good / total:5.1%} | {med * 1e6:7.0f}':>24}"
        print(row)
    print(
        f"{'ALL':<{width}}"
        + "".join(f"{f'{g}/{t} {g / t:5.1%}':>24}" for g, t in (totals[n] for n in names))
    )
    print("\ntime ratio ours / mpr-en (median per case; goal <= 0.5):")
    for corpus in CORPORA:
        ours = results[(corpus, "ours")][2]
        mpr = results[(corpus, "mpr-en")][2]
        print(f"  {corpus:<{width}} {ours / mpr:6.3f}")
    print("\nours vs each peer on corpora that are not the peer's own (accuracy):")
    for name in names[1:]:
        verdicts = []
        for corpus in CORPORA:
            if corpus in OWN_CORPUS.get(name, set()):
                continue
            ours_g = results[(corpus, "ours")][0]
            peer_g = results[(corpus, name)][0]
            mark = ">" if ours_g > peer_g else ("=" if ours_g == peer_g else "<")
            verdicts.append(f"{corpus.split('-')[0]} {ours_g}{mark}{peer_g}")
        print(f"  {name:<20} " + ", ".join(verdicts))


if __name__ == "__main__":
    main()
