"""Reply truncation: keep the new text of an incoming reply, drop the quoted history.

Cuts, in order: our own reply marker line, operator-configured separator lines, then a
line-classifying heuristic (``>`` quote blocks, attributions in many languages, Outlook header
blocks, "Original Message" / forward separators), optionally followed by signature stripping.
Every step looks at each line a bounded number of times, so the whole pass is linear.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Sequence

import attrs

__all__ = ["Truncation", "TruncationMethod", "truncate_reply"]

_LOG = logging.getLogger(__name__)

#: Lines longer than this are never attributions, header lines or separators.
_MAX_PROBE = 300
#: Physical lines an attribution may span (a small constant keeps the pass linear).
_MAX_ATTR_LINES = 3
#: Wider window for "On <date> <name>" whose address and "wrote:" come after blank lines.
_MAX_ATTR_WINDOW = 6
#: Lines after a header label scanned for the other labels of an Outlook header block.
_HEADER_WINDOW = 8
#: Reasons listed in ``Truncation.detail`` before the rest is summarised as a count.
_MAX_REASONS = 8
#: Non-blank lines a "-- " / "____" signature or list footer may have at most.
_MAX_SIG_LINES = 15


class TruncationMethod(enum.Enum):
    """Which step decided the cut."""

    MARKER = "marker"
    SEPARATOR = "separator"
    HEURISTIC = "heuristic"
    NONE = "none"
    KEPT_WHOLE = "kept_whole"


@attrs.frozen
class Truncation:
    """Result of truncating a reply: the new text, what was cut, and why."""

    kept: str
    elided: str
    method: TruncationMethod
    detail: str


# --------------------------------------------------------------------------- vocabulary

# Words that end an attribution ("<who> wrote:"); matched as whole words near the end.
_END_WORDS_TEXT = (
    "wrote schrieb geschrieben escribió escribio escreveu scrisse schreef geschreven skrev "
    "skriver kirjoitti napisał napisała napisal napsal napsala yazdı írta scrie написал "
    "написала написав έγραψε écrit scritto viết scris"
)
_END_WORDS = frozenset(_END_WORDS_TEXT.split())
_END_CJK = ("写道", "寫道", "のメッセージ", "は書きました", "작성")
#: characters after the end word ("<name> <addr>:") an attribution may still carry
_END_TAIL_MAX = 150
_EVIDENCE_RE = re.compile(r"[@\d]")
_TIME_RE = re.compile(r"\d[:.]\d\d")
_END_SEARCH_RE = re.compile("|".join(sorted(_END_WORDS, key=len, reverse=True)))
# Words that open an attribution; used to split "reply On <date> ... wrote:" lines.
_START_WORDS = r"On|Am|Le|El|Em|Il|Op|Den|På|Vào|Dnia|Dne|W\s+dniu"
_START_PREFIXES = frozenset(
    ("On", "Am", "Le", "El", "Em", "Il", "Op", "De", "På", "Và", "Dn", "W ")
)
_START_RE = re.compile(rf"(?:{_START_WORDS})\s")
_DATE_START_RE = re.compile(r"\d{1,4}[./\-年 ]")
_MIDLINE_START_RE = re.compile(rf"(?<=[\s\-])(?:{_START_WORDS})\s")

_FROM, _DATE, _TO, _CC, _SUBJECT = "from", "date", "to", "cc", "subject"
_HEADER_LABELS: dict[str, str] = {}
for _cat, _words in (
    (
        _FROM,
        "from von de da fra från od van lähettäjä от від fram feladó kimden expéditeur "
        "remitente mittente afzender avsändare nadawca odesílatel 发件人 寄件者 差出人 送信者 "
        "从 từ",
    ),
    (
        _DATE,
        "sent date gesendet datum envoyé enviado enviada inviato verzonden sendt skickat "
        "wysłano wysłane data odesláno отправлено дата надіслано lähetetty päivämäärä "
        "发送时间 日期 日付 送信日時 gönderildi tarih dátum elküldve ngày",
    ),
    (
        _TO,
        "to an à a para per aan til till do komu кому vastaanottaja 收件人 宛先 đến kime "
        "címzett pour destinataire",
    ),
    (_CC, "cc kopie kopia копия 抄送 bcc"),
    (
        _SUBJECT,
        "subject betreff objet asunto assunto oggetto onderwerp emne ämne temat předmět тема "
        "aihe 主题 主題 件名 konu tárgy sujet",
    ),
):
    for _w in _words.split():
        _HEADER_LABELS[_w] = _cat
for _phrase, _cat in (
    ("envoyé le", _DATE),
    ("ngày gửi", _DATE),
    ("chủ đề", _SUBJECT),
    ("reply-to", _TO),
    ("répondre à", _TO),
    ("gesendet am", _DATE),
):
    _HEADER_LABELS[_phrase] = _cat
_HEADER_LABEL_RE = re.compile(
    r"[ \t]{0,8}\*{0,2}([^\W\d_][^:：*\n]{0,24}?)[ \t]*\*{0,2}[ \t]*[:：]"
)

_SEPARATOR_KEYWORDS = (
    "original message",
    "original",
    "reply message",
    "forwarded",
    "message d'origine",
    "message transféré",
    "message réexpédié",
    "nachricht",
    "weitergeleitet",
    "oprindelig",
    "videresendt",
    "opprinnelig",
    "ursprungligt",
    "vidarebefordrat",
    "mensaje",
    "mensagem",
    "messaggio",
    "bericht",
    "viesti",
    "zpráva",
    "wiadomość",
    "сообщение",
    "повідомлення",
    "原始邮件",
    "转发",
    "元のメッセージ",
    "転送",
    "thư gốc",
    "tin nhắn",
)
_FORWARD_INTROS = frozenset(
    (
        "begin forwarded message",
        "forwarded message",
        "début du message réexpédié",
        "début du message transféré",
        "message transféré",
        "anfang der weitergeleiteten nachricht",
        "weitergeleitete nachricht",
        "inicio del mensaje reenviado",
        "mensaje reenviado",
        "início da mensagem reencaminhada",
        "mensagem encaminhada",
        "messaggio inoltrato",
        "inizio messaggio inoltrato",
        "doorgestuurd bericht",
        "begin doorgestuurd bericht",
        "videresendt meddelelse",
        "videresendt melding",
        "vidarebefordrat meddelande",
        "välitetty viesti",
        "przekazana wiadomość",
        "пересылаемое сообщение",
    )
)

_DEVICE_RE = re.compile(
    r"(?:sent\s+from\s+my|sent\s+with|sent\s+from\s+(?:outlook|mail|yahoo|samsung|aol)"
    r"|get\s+outlook\s+for|envoyé\s+de\s+mon|envoyé\s+depuis\s+mon|von\s+meinem"
    r"|gesendet\s+von\s+meinem|enviado\s+desde\s+mi|enviado\s+do\s+meu|enviado\s+de\s+meu"
    r"|inviato\s+da(?:l)?\s+mio|verzonden\s+met|verzonden\s+vanaf\s+mijn|verstuurd\s+vanaf"
    r"|sendt\s+fra\s+min|skickat\s+från\s+min|wysłane\s+z\s+mojego|отправлено\s+с\s+моего"
    r"|надіслано\s+з\s+мого|odesláno\s+z\s+mého|lähetetty\s+iphonesta)\b",
    re.IGNORECASE,
)
_VALEDICTIONS = frozenset(
    (
        "regards",
        "best regards",
        "kind regards",
        "warm regards",
        "best wishes",
        "many thanks",
        "thanks",
        "thank you",
        "thanks & regards",
        "thanks and regards",
        "cheers",
        "best",
        "br",
        "sincerely",
        "yours",
        "yours truly",
        "yours sincerely",
        "mvh",
        "med venlig hilsen",
        "venlig hilsen",
        "de bedste hilsner",
        "hilsen",
        "kh",
        "kærlig hilsen",
        "med vennlig hilsen",
        "vennlig hilsen",
        "med vänlig hälsning",
        "vänliga hälsningar",
        "vänlig hälsning",
        "hälsningar",
        "pozdrawiam",
        "z poważaniem",
        "z powazaniem",
        "pozdrowienia",
        "mit freundlichen grüßen",
        "mit freundlichen grüssen",
        "freundliche grüße",
        "viele grüße",
        "beste grüße",
        "liebe grüße",
        "grüße",
        "gruß",
        "mfg",
        "lg",
        "vg",
        "cordialement",
        "bien cordialement",
        "bien à vous",
        "salutations",
        "saludos",
        "un saludo",
        "atentamente",
        "atenciosamente",
        "abraços",
        "cordiali saluti",
        "distinti saluti",
        "saluti",
        "met vriendelijke groet",
        "met vriendelijke groeten",
        "vriendelijke groet",
        "groeten",
        "groet",
        "mvg",
        "с уважением",
        "з повагою",
        "s pozdravem",
        "ystävällisin terveisin",
        "terveisin",
    )
)
_NAME_SIG_RE = re.compile(r"[-/][^\W\d_][\w.'’]*(?:[ \t]+[\w.'’-]+){0,3}")


# --------------------------------------------------------------------------- line tests


def _is_quoted(stripped_left: str) -> bool:
    """A ``>``-quoted line (leading whitespace already removed)."""
    return stripped_left.startswith(">")


def _deco_strip(text: str) -> tuple[str, bool]:
    """Strip decoration dashes/underscores from both ends; report whether there were any."""
    core = text.strip(" \t-_=*~")
    return core, len(core) + 4 <= len(text.strip())


def _end_match(text: str) -> bool:
    """True when ``text`` ends like an attribution ("... wrote:", "... a écrit :", ...).

    Either the end word is the last word, or it is followed by a colon-free "<name> <addr>"
    tail of at most ``_END_TAIL_MAX`` characters and the text ends with a colon.
    """
    low = text[-(_END_TAIL_MAX + 60) :].casefold().rstrip()
    ends_colon = low[-1:] in (":", "：")
    core = low.rstrip(" \t:：")
    cut = max(core.rfind(":"), core.rfind("："))
    seg = core[cut + 1 :][-(_END_TAIL_MAX + 30) :]  # the colon-free end of the text
    for w in _END_CJK:
        pos = seg.rfind(w)
        if pos >= 0:
            pos += len(w)
            return pos == len(seg) or (ends_colon and len(seg) - pos <= _END_TAIL_MAX)
    if seg.endswith("sent") and low.startswith("on "):
        return True
    last = None
    for m in _END_SEARCH_RE.finditer(seg):
        start = m.start()
        if start == 0 or not seg[start - 1].isalpha():
            last = m
    if last is None:
        return False
    tail = seg[last.end() :]
    if tail[:1].isalpha():
        return False  # "wroteXYZ": not a whole word
    tail = tail.strip(" \t()aа")  # "napisał(a)", "написал(а)"
    return not tail or (ends_colon and len(tail) <= _END_TAIL_MAX)


def _has_evidence(text: str) -> bool:
    """A date/time digit or an address: what separates a real attribution from prose."""
    return _EVIDENCE_RE.search(text) is not None


_COLON_ENDS = (":", "：", ": ", ":  ", ":\t", "： ")
_ATTR_LAST_CHARS = frozenset(":：>-_=*~")


def _classify_attribution(text: str) -> str | None:
    """Return "strong", "weak" or None for a (joined) candidate attribution text."""
    if len(text) > _MAX_PROBE or text[-1] not in _ATTR_LAST_CHARS:
        return None  # cheap filter: attributions end with ":", ">" or decoration dashes
    core, decorated = _deco_strip(text)
    if not core:
        return None
    ends_colon = core[-1] in ":："
    if (ends_colon or decorated) and _end_match(core):
        if "@" in core or _TIME_RE.search(core) or (_START_RE.match(core) and _has_evidence(core)):
            return "strong"
        if decorated and len(core.split()) <= 8:
            return "strong"
        return "weak"
    # Gmail-style "<date> <name> <addr>:" with no verb (Japanese, Russian, ... forms).
    if (
        "@" in core
        and (core[-1] == ">" or core.endswith((">:", ">：")))
        and _has_evidence(core.replace("@", ""))
    ):
        return "weak"
    return None


def _join_piece(acc: str, piece: str) -> str:
    """Join attribution fragments; a trailing "=" is a quoted-printable soft break."""
    if not acc:
        return piece
    if acc.endswith("="):
        return acc[:-1] + piece
    return acc + " " + piece


def _attribution_at(st: list[str], i: int) -> tuple[int, str] | None:
    """Find an attribution starting at line ``i``: (end index exclusive, strength)."""
    n = len(st)
    first = st[i]
    if len(first) > _MAX_PROBE or _is_quoted(first):
        return None
    acc = ""
    weak: tuple[int, str] | None = None
    j = i
    while j < n and j < i + _MAX_ATTR_LINES:
        piece = st[j]
        if not piece or (j > i and (_is_quoted(piece) or acc[-1] in ".!?")):
            break  # a first line ending a sentence is prose, not the start of an attribution
        acc = _join_piece(acc, piece)
        if len(acc) > _MAX_PROBE:
            break
        kind = _classify_attribution(acc)
        if kind is not None:
            if j > i and _starts_later(st, i + 1, j):
                return weak  # line i is reply text; the attribution starts below it
            if kind == "strong":
                return j + 1, kind
            weak = weak or (j + 1, kind)  # a longer join may still end with "wrote:"
        j += 1
    if weak is not None:
        return weak
    # "On <date> <name>" whose address / verb follow after blank lines (Polymail).
    if _START_RE.match(first) and _has_evidence(first):
        acc = first
        pieces = 1
        j = i + 1
        while j < n and j < i + _MAX_ATTR_WINDOW and pieces < 5:
            piece = st[j]
            j += 1
            if not piece:
                continue
            if _START_RE.match(piece):
                return None
            acc = _join_piece(acc, piece)
            pieces += 1
            if len(acc) > _MAX_PROBE:
                return None
            if _classify_attribution(acc) == "strong":
                return j, "strong"
    return None


def _starts_later(st: list[str], i: int, j: int) -> bool:
    """True when lines ``i..j`` already form an attribution without the line above them."""
    above = st[i - 1]
    plausible = bool(_START_RE.match(st[i]) or _DATE_START_RE.match(st[i]))
    if not plausible and (_has_evidence(above) or _START_RE.match(above)):
        return False
    acc = ""
    for k in range(i, j + 1):
        acc = _join_piece(acc, st[k])
    return _classify_attribution(acc) is not None


def _header_label(stripped: str) -> str | None:
    """Category of a header label line ("From:", "*Von:*", "De :", ...), else None."""
    head = stripped[:60]
    if ":" not in head and "：" not in head:
        return None
    m = _HEADER_LABEL_RE.match(head)
    if m is None:
        return None
    return _HEADER_LABELS.get(" ".join(m.group(1).split()).casefold())


def _header_block_at(st: list[str], i: int) -> int | None:
    """If an Outlook-style header block starts at ``i``, return the index after its last label."""
    if len(st[i]) > 2000 or _header_label(st[i]) is None:
        return None
    cats: set[str] = set()
    last = i
    blanks = 0
    n = len(st)
    j = i
    while j < n and j < i + _HEADER_WINDOW:
        s = st[j]
        if not s:
            blanks += 1
            if blanks >= 3:
                break
        else:
            if _is_quoted(s):
                break
            cat = _header_label(s)
            if cat is not None:
                cats.add(cat)
                last = j
        j += 1
    if len(cats) >= 2 and cats & {_FROM, _DATE}:
        return last + 1
    return None


def _is_separator(stripped: str) -> bool:
    """An "-----Original Message-----" / forward separator or intro line."""
    if len(stripped) < 5 or len(stripped) > 120:
        return False
    if stripped[0] not in "-_=*" and stripped[-1] not in "-_=*:：":
        return False
    core, decorated = _deco_strip(stripped)
    low = core.rstrip(" :：").casefold()
    framed = decorated and (stripped[0] in "-_=*" or stripped[-1] in "-_=*")
    if framed and len(low) <= 60 and any(k in low for k in _SEPARATOR_KEYWORDS):
        return True
    return stripped[-1] in ":：" and low in _FORWARD_INTROS


def _is_rule(stripped: str) -> bool:
    """A line of dashes, underscores or equals signs (at least five)."""
    return len(stripped) >= 5 and not stripped.strip("-_=")


def _is_sig_delimiter(stripped: str) -> bool:
    """ "-- " signature delimiter or an underscore rule opening a list footer."""
    return stripped == "--" or (len(stripped) >= 2 and not stripped.strip("_"))


def _is_device_line(stripped: str) -> bool:
    """ "Sent from my iPhone" and translations (short, no clause after a comma)."""
    if len(stripped) > 80 or "," in stripped:
        return False
    m = _DEVICE_RE.match(stripped)
    return m is not None and len(stripped[m.end() :].split()) <= 6


def _is_valediction(stripped: str) -> bool:
    """ "Regards," / "Mvh" / "Pozdrawiam," and the like, alone on a line."""
    if len(stripped) > 40:
        return False
    return stripped.rstrip(" ,.!:;").casefold() in _VALEDICTIONS


def _split_shared_line(line: str) -> tuple[str, str] | None:
    """Split "reply On <date>, X wrote:" into the reply and the attribution."""
    s = line.strip()
    if not s or len(s) > _MAX_PROBE or s[-1] not in ":：" or _is_quoted(s):
        return None
    if _START_RE.match(s.lstrip(" -")) or not _has_evidence(s):
        return None
    m = _MIDLINE_START_RE.search(s)
    if m is None:
        return None
    prefix = s[: m.start()].rstrip(" -\t")
    suffix = s[m.start() :]
    if not prefix or not _has_evidence(suffix) or _classify_attribution(suffix) != "strong":
        return None
    return prefix, suffix


# --------------------------------------------------------------------------- heuristic

_T, _B, _Q, _A, _H, _S = "T", "B", "Q", "A", "H", "S"
#: a single text line between two quoted lines: a wrapped link inside the quote
_SANDWICH_RE = re.compile(r"(?<=Q)T(?=Q)")
#: attribution and/or quoted lines (with blanks and wrapped lines between), then blank lines
_BLOCK_RE = re.compile(r"[AQ](?:[AQBc]*[AQ])?B*")


@attrs.frozen
class _Cut:
    """Heuristic outcome over a list of lines: which to keep and a human reason."""

    keep: list[bool]
    reasons: list[str]


def _heuristic(lines: list[str], strip_signature: bool) -> _Cut:
    """Classify lines and keep only the new reply text (see module docstring)."""
    n = len(lines)
    st = [ln.strip() for ln in lines]
    roles = [_B if not s else (_Q if s[0] == ">" else _T) for s in st]
    reasons: list[str] = []

    # 1. Find splitters: soft ones (followed by a quote block) and the first hard cut.
    #    Only candidate lines are examined: a splitter's last line ends with ":", ">" or
    #    decoration; header/separator lines have an early colon or start with decoration.
    tail_ok = [bool(s) and s[-1] in _ATTR_LAST_CHARS for s in st]
    tail_ok += [False, False, False]
    candidates = [
        k
        for k, s in enumerate(st)
        if s
        and s[0] != ">"
        and (
            tail_ok[k]
            or tail_ok[k + 1]
            or tail_ok[k + 2]
            or s[0] in "-_=*"
            or ":" in s[:60]
            or "：" in s[:60]
            or (s[:2] in _START_PREFIXES and _START_RE.match(s))
        )
    ]
    cut = n
    lead = _next_nonblank(st, 0)  # first line of the message proper (after own headers)
    resume = 0
    for i in candidates:
        if i < resume or roles[i] != _T:
            continue
        s = st[i]
        kind = ""
        end = i + 1
        strength = "strong"
        if _is_separator(s):
            kind = "separator"
            hdr = _next_nonblank(st, end)
            if hdr < n:
                hend = _header_block_at(st, hdr)
                if hend is not None:
                    end = hend
        else:
            hend = _header_block_at(st, i)
            if hend is not None:
                kind, end = "header block", hend
            else:
                att = _attribution_at(st, i)
                if att is not None:
                    kind = "attribution"
                    end, strength = att
        if not kind:
            continue
        nxt = _next_nonblank(st, end)
        if nxt < n and roles[nxt] == _Q:
            roles[i:end] = _A * (end - i)
            reasons.append(f"{kind} at line {i + 1} introduces a quote block")
            resume = end
            continue
        if kind == "attribution" and strength != "strong":
            continue
        if i == lead and kind in ("header block", "separator") and nxt < n:
            # Headers of the message itself (a forward without comment): drop them, go on.
            while end < n and st[end]:
                end += 1
            roles[i:end] = _H * (end - i)
            reasons.append(f"leading {kind} at line {i + 1} dropped")
            resume = end
            lead = _next_nonblank(st, end)
            continue
        cut = i
        if kind == "header block":
            back = i - 1
            while back >= 0 and back >= i - 4 and not st[back]:
                back -= 1
            if back >= 0 and _is_rule(st[back]):
                cut = back
        reasons.append(f"{kind} at line {cut + 1}: {st[cut][:60]!r}; history follows")
        break

    # 2. Quote blocks (attribution + quoted lines + wrapped link lines + trailing blanks),
    #    found with regexes over a one-letter-per-line role string (no backtracking blow-up).
    rs = _SANDWICH_RE.sub("c", "".join(roles[:cut]))
    last_text = rs.rfind(_T)
    ev = list(rs)
    nblocks = 0
    for m in _BLOCK_RE.finditer(rs):
        seg = m.group()
        b0, b1 = m.span()
        if _A in seg or seg.count(_Q) >= 2 or last_text < b1:
            ev[b0:b1] = "X" * (b1 - b0)
            nblocks += 1
    # Outside qualified blocks every non-blank, non-header line is reply text.
    ev = [("T" if c in "TcQA" else c) for c in ev]

    # 3. Signature / list-footer blocks ("-- ", "____") when asked to strip signatures.
    sig_blocks = 0
    if strip_signature:
        k = 0
        while k < cut:
            if ev[k] == "T" and st[k][:2] in ("--", "__") and _is_sig_delimiter(st[k]):
                j = k
                count = 0
                while j < cut and ev[j] != "X" and count <= _MAX_SIG_LINES:
                    if j > k and st[j][:2] in ("--", "__") and _is_sig_delimiter(st[j]):
                        break  # the next delimiter starts its own block
                    if st[j]:
                        count += 1
                    j += 1
                if count <= _MAX_SIG_LINES:
                    ev[k:j] = _S * (j - k)
                    if not sig_blocks:
                        reasons.append(f"signature block at line {k + 1}")
                    sig_blocks += 1
                    k = j
                    continue
            k += 1

    # 4. Text chunks vs quote blocks: interleaved (inline) replies keep the quotes between.
    evs = "".join(ev)
    first_x, last_x = evs.find("X"), evs.rfind("X")
    inline = first_x >= 0 and "T" in evs[first_x:last_x]
    if inline:
        last_t = evs.rfind("T") + 1
        keep = [c not in "HS" for c in evs[:last_t]]
        reasons.append("interleaved reply: quotes between reply lines kept")
    else:
        keep = [c in "TB" for c in evs]
        if cut < n and first_x >= 0 and evs.find("T") < first_x and evs.find("T", last_x) >= 0:
            # T X T <history>: the text after the quote belongs to the older messages.
            tail = evs.find("T", last_x)
            keep[tail:] = [False] * (len(keep) - tail)
            reasons.append(f"text at line {tail + 1} lies between quotes and history")
        if nblocks:
            reasons.append(f"{nblocks} quote block(s) removed")
    keep.extend([False] * (n - len(keep)))

    # 5. Signature mode: trim device lines, "-Name" lines and valediction blocks at the end.
    if strip_signature:
        _trim_tail(st, keep, reasons)
    return _Cut(keep=keep, reasons=reasons)


def _next_nonblank(st: list[str], i: int) -> int:
    """Index of the first non-blank line at or after ``i`` (``len(st)`` if none)."""
    n = len(st)
    while i < n and not st[i]:
        i += 1
    return i


def _trim_tail(st: list[str], keep: list[bool], reasons: list[str]) -> None:
    """Drop a closing signature from the kept text: device line, "-Name", valediction."""
    kept_idx = [k for k, flag in enumerate(keep) if flag and st[k]]
    while kept_idx:
        last = kept_idx[-1]
        s = st[last]
        if _is_device_line(s):
            keep[last] = False
            kept_idx.pop()
            reasons.append(f"device line at line {last + 1}")
            continue
        if _NAME_SIG_RE.fullmatch(s) and len(s) <= 40 and len(kept_idx) >= 2:
            prev = st[kept_idx[-2]]
            if not prev.startswith(("-", "/", "*", "•")):
                keep[last] = False
                kept_idx.pop()
                reasons.append(f"name signature at line {last + 1}")
                continue
        found = -1
        window = kept_idx[-4:]
        for pos, k in enumerate(window):
            if _is_valediction(st[k]) and all(len(st[x]) <= 40 for x in window[pos + 1 :]):
                found = len(kept_idx) - len(window) + pos
                break
        if found > 0 and found < len(kept_idx) - 0:
            tail_count = len(kept_idx) - found - 1
            if 1 <= tail_count <= 3:
                for k in kept_idx[found:]:
                    keep[k] = False
                reasons.append(f"closing valediction at line {kept_idx[found] + 1}")
                del kept_idx[found:]
                continue
        break


# --------------------------------------------------------------------------- public API


def _first_line_containing(lines: list[str], needles: Sequence[str]) -> tuple[int, str] | None:
    """First line index (and the needle) containing any of ``needles``, case-insensitive."""
    folded = [nd.casefold() for nd in needles if nd and nd.strip()]
    if not folded:
        return None
    for idx, line in enumerate(lines):
        low = line.casefold()
        for nd in folded:
            if nd in low:
                return idx, nd
    return None


def _trim_blank_ends(parts: list[str]) -> list[str]:
    """Remove blank lines at both ends of a list of lines."""
    a, b = 0, len(parts)
    while a < b and not parts[a].strip():
        a += 1
    while b > a and not parts[b - 1].strip():
        b -= 1
    return parts[a:b]


MAX_SCAN_CHARS = 256 * 1024
"""How much of a body is examined for the reply boundary (a reply is found near the top)."""


def truncate_reply(
    body: str,
    *,
    marker: str | None = None,
    separators: Sequence[str] = (),
    strip_signature: bool = False,
    max_scan_chars: int = MAX_SCAN_CHARS,
) -> Truncation:
    """Keep the new reply text of ``body`` and say what was cut and why.

    Cut order: the first line containing ``marker``, else the first line containing one of
    ``separators``, then the quote/attribution heuristic on what is left. If the cut would leave
    nothing, the whole body is kept (method ``KEPT_WHOLE``). Only the first ``max_scan_chars``
    characters are examined, so a huge body costs no more than a large one; when a boundary is
    found there, everything after the examined start counts as quoted history.
    """
    if len(body) <= max_scan_chars:
        return _truncate_all(body, marker, separators, strip_signature)
    end = body.rfind("\n", 0, max_scan_chars)
    end = max_scan_chars if end <= 0 else end
    head = _truncate_all(body[:end], marker, separators, strip_signature)
    note = f"only the first {end} of {len(body)} characters were examined"
    if head.method in (TruncationMethod.NONE, TruncationMethod.KEPT_WHOLE):
        return Truncation(body, "", head.method, f"{head.detail}; {note}")
    rest = body[end:].replace("\r\n", "\n").replace("\r", "\n")
    return Truncation(
        head.kept, head.elided + rest, head.method, f"{head.detail}; {note}, the rest elided"
    )


def _truncate_all(
    body: str, marker: str | None, separators: Sequence[str], strip_signature: bool
) -> Truncation:
    """:func:`truncate_reply` on the whole of ``body``."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    raw_lines = text.split("\n")
    # Split "reply On <date>, X wrote:" lines so the reply part can be kept.
    lines = raw_lines
    shared = [
        (k, sp)
        for k, ln in enumerate(raw_lines)
        if ln.endswith(_COLON_ENDS) and (sp := _split_shared_line(ln)) is not None
    ]
    if shared:
        lines = []
        prev = 0
        for k, (prefix, suffix) in shared:
            lines.extend(raw_lines[prev:k])
            lines.append(prefix)
            lines.append(suffix)
            prev = k + 1
        lines.extend(raw_lines[prev:])

    method = TruncationMethod.HEURISTIC
    details: list[str] = []
    elided_head: list[str] = []
    region = lines
    hit = _first_line_containing(lines, [marker] if marker else [])
    if hit is not None:
        method = TruncationMethod.MARKER
        details.append(f"reply marker {marker!r} at line {hit[0] + 1}")
    elif separators:
        hit = _first_line_containing(lines, separators)
        if hit is not None:
            method = TruncationMethod.SEPARATOR
            details.append(f"separator {hit[1]!r} at line {hit[0] + 1}")
    if hit is not None:
        region = lines[: hit[0]]
        elided_head = lines[hit[0] :]

    result = _heuristic(region, strip_signature)
    kept_lines: list[str] = []
    elided_lines: list[str] = []
    for ln, k in zip(region, result.keep, strict=True):
        (kept_lines if k else elided_lines).append(ln)
    kept_lines = _trim_blank_ends(kept_lines)
    elided_lines.extend(elided_head)
    details.extend(result.reasons[:_MAX_REASONS])
    if len(result.reasons) > _MAX_REASONS:
        details.append(f"{len(result.reasons) - _MAX_REASONS} more cuts")
    kept = "\n".join(kept_lines)
    if not kept.strip():
        _LOG.debug("truncation would leave nothing; keeping the whole body")
        reason = "; ".join(details) or "nothing recognised"
        return Truncation(
            kept="\n".join(_trim_blank_ends(text.split("\n"))),
            elided="",
            method=TruncationMethod.KEPT_WHOLE,
            detail=f"cut would leave nothing ({reason}); whole body kept",
        )
    elided = "\n".join(_trim_blank_ends(elided_lines))
    if not elided.strip() and method is TruncationMethod.HEURISTIC:
        method = TruncationMethod.NONE
        details = details or ["no quoted history found"]
    return Truncation(kept=kept, elided=elided, method=method, detail="; ".join(details))
