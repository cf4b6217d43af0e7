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


def _attribution_at(stripped: list[str], i: int) -> tuple[int, str] | None:
    """Find an attribution starting at line ``i``: (end index exclusive, strength)."""
    n = len(stripped)
    first = stripped[i]
    if len(first) > _MAX_PROBE or _is_quoted(first):
        return None
    acc = ""
    weak: tuple[int, str] | None = None
    j = i
    while j < n and j < i + _MAX_ATTR_LINES:
        piece = stripped[j]
        if not piece or (j > i and (_is_quoted(piece) or acc[-1] in ".!?")):
            break  # a first line ending a sentence is prose, not the start of an attribution
        acc = _join_piece(acc, piece)
        if len(acc) > _MAX_PROBE:
            break
        kind = _classify_attribution(acc)
        if kind is not None:
            if j > i and _starts_later(stripped, i + 1, j):
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
            piece = stripped[j]
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


def _starts_later(stripped: list[str], i: int, j: int) -> bool:
    """True when lines ``i..j`` already form an attribution without the line above them."""
    above = stripped[i - 1]
    plausible = bool(_START_RE.match(stripped[i]) or _DATE_START_RE.match(stripped[i]))
    if not plausible and (_has_evidence(above) or _START_RE.match(above)):
        return False
    acc = ""
    for k in range(i, j + 1):
        acc = _join_piece(acc, stripped[k])
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


def _header_block_at(stripped: list[str], i: int) -> int | None:
    """If an Outlook-style header block starts at ``i``, return the index after its last label."""
    if len(stripped[i]) > 2000 or _header_label(stripped[i]) is None:
        return None
    labels_seen: set[str] = set()
    last = i
    blanks = 0
    n = len(stripped)
    j = i
    while j < n and j < i + _HEADER_WINDOW:
        text = stripped[j]
        if not text:
            blanks += 1
            if blanks >= 3:
                break
        else:
            if _is_quoted(text):
                break
            label = _header_label(text)
            if label is not None:
                labels_seen.add(label)
                last = j
        j += 1
    if len(labels_seen) >= 2 and labels_seen & {_FROM, _DATE}:
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

# Line roles, one letter per line so regexes can find blocks without backtracking blow-ups:
# T reply text, B blank, Q quoted (">"), A a splitter (attribution, header block, separator)
# that introduces a quote block, H the message's own leading headers, S signature.
_T, _B, _Q, _A, _H, _S = "T", "B", "Q", "A", "H", "S"
#: verdict of a line inside a quote block that is removed
_X = "X"
#: a single text line between two quoted lines: a wrapped link inside the quote
_SANDWICH_RE = re.compile(r"(?<=Q)T(?=Q)")
#: attribution and/or quoted lines (with blanks and wrapped lines between), then blank lines
_BLOCK_RE = re.compile(r"[AQ](?:[AQBc]*[AQ])?B*")


@attrs.frozen
class _Cut:
    """Heuristic outcome over a list of lines: which to keep and a human reason."""

    keep: list[bool]
    reasons: list[str]


@attrs.frozen
class _Splitter:
    """A line that may start the quoted history: its kind, where it ends, how sure we are."""

    kind: str  # "separator", "header block" or "attribution"
    end: int  # index of the first line after it
    strength: str = "strong"


def _heuristic(lines: list[str], strip_signature: bool) -> _Cut:
    """Classify lines and keep only the new reply text (see module docstring).

    Steps: find the splitters and the first hard cut; find the quote blocks above the cut;
    mark signature blocks (when asked); decide which lines stay (interleaved replies keep
    their quotes); then, when asked, trim a closing signature.
    """
    stripped = [line.strip() for line in lines]
    roles = [_B if not text else (_Q if text[0] == ">" else _T) for text in stripped]
    reasons: list[str] = []
    cut = _mark_splitters(stripped, roles, reasons)
    verdicts, quote_blocks = _mark_quote_blocks(roles, cut)
    if strip_signature:
        _mark_signature_blocks(stripped, verdicts, cut, reasons)
    keep = _keep_flags(verdicts, cut, len(lines), quote_blocks, reasons)
    keep.extend([False] * (len(lines) - len(keep)))
    if strip_signature:
        _trim_tail(stripped, keep, reasons)
    return _Cut(keep=keep, reasons=reasons)


def _splitter_candidates(stripped: list[str]) -> list[int]:
    """Indexes of the lines worth examining as splitters.

    A splitter's last line ends with ":", ">" or decoration; header and separator lines have an
    early colon or start with decoration; attributions may start with an opening word.
    """
    tail_ok = [bool(text) and text[-1] in _ATTR_LAST_CHARS for text in stripped]
    tail_ok += [False, False, False]
    return [
        k
        for k, text in enumerate(stripped)
        if text
        and text[0] != ">"
        and (
            tail_ok[k]
            or tail_ok[k + 1]
            or tail_ok[k + 2]
            or text[0] in "-_=*"
            or ":" in text[:60]
            or "：" in text[:60]
            or (text[:2] in _START_PREFIXES and _START_RE.match(text))
        )
    ]


def _splitter_at(stripped: list[str], i: int) -> _Splitter | None:
    """The separator (with the header block after it), header block or attribution at ``i``."""
    if _is_separator(stripped[i]):
        end = i + 1
        header_line = _next_nonblank(stripped, end)
        if header_line < len(stripped):
            header_end = _header_block_at(stripped, header_line)
            if header_end is not None:
                end = header_end
        return _Splitter("separator", end)
    header_end = _header_block_at(stripped, i)
    if header_end is not None:
        return _Splitter("header block", header_end)
    attribution = _attribution_at(stripped, i)
    if attribution is not None:
        end, strength = attribution
        return _Splitter("attribution", end, strength)
    return None


def _mark_splitters(stripped: list[str], roles: list[str], reasons: list[str]) -> int:
    """Step 1: mark soft splitters (followed by a quote block) and return the first hard cut.

    A splitter followed by quoted lines becomes role A; a leading header block or separator
    (a forward without comment) becomes role H and is dropped; any other strong splitter is
    the cut: everything from it on is history. Returns ``len(stripped)`` when there is none.
    """
    n = len(stripped)
    lead = _next_nonblank(stripped, 0)  # first line of the message proper (after own headers)
    resume = 0
    for i in _splitter_candidates(stripped):
        if i < resume or roles[i] != _T:
            continue
        splitter = _splitter_at(stripped, i)
        if splitter is None:
            continue
        kind, end = splitter.kind, splitter.end
        next_line = _next_nonblank(stripped, end)
        if next_line < n and roles[next_line] == _Q:
            roles[i:end] = _A * (end - i)
            reasons.append(f"{kind} at line {i + 1} introduces a quote block")
            resume = end
            continue
        if kind == "attribution" and splitter.strength != "strong":
            continue
        if i == lead and kind in ("header block", "separator") and next_line < n:
            # Headers of the message itself (a forward without comment): drop them, go on.
            while end < n and stripped[end]:
                end += 1
            roles[i:end] = _H * (end - i)
            reasons.append(f"leading {kind} at line {i + 1} dropped")
            resume = end
            lead = _next_nonblank(stripped, end)
            continue
        cut = _rule_above(stripped, i) if kind == "header block" else i
        reasons.append(f"{kind} at line {cut + 1}: {stripped[cut][:60]!r}; history follows")
        return cut
    return n


def _rule_above(stripped: list[str], i: int) -> int:
    """The line of a horizontal rule just above a header block at ``i`` (blanks between), or i."""
    back = i - 1
    while back >= 0 and back >= i - 4 and not stripped[back]:
        back -= 1
    if back >= 0 and _is_rule(stripped[back]):
        return back
    return i


def _mark_quote_blocks(roles: list[str], cut: int) -> tuple[list[str], int]:
    """Step 2: per-line verdicts above the cut, quote blocks as X; and how many blocks.

    A block (splitter and/or quoted lines, with blanks and wrapped link lines between, then
    trailing blanks) is removed when it has a splitter, two quoted lines, or no reply text
    after it. Outside removed blocks every non-blank, non-header line is reply text.
    """
    role_string = _SANDWICH_RE.sub("c", "".join(roles[:cut]))
    last_text = role_string.rfind(_T)
    verdicts = list(role_string)
    quote_blocks = 0
    for match in _BLOCK_RE.finditer(role_string):
        block = match.group()
        start, end = match.span()
        if _A in block or block.count(_Q) >= 2 or last_text < end:
            verdicts[start:end] = _X * (end - start)
            quote_blocks += 1
    return [(_T if verdict in "TcQA" else verdict) for verdict in verdicts], quote_blocks


def _mark_signature_blocks(
    stripped: list[str], verdicts: list[str], cut: int, reasons: list[str]
) -> None:
    """Step 3: mark "-- " / "____" signature and list-footer blocks as S (signature mode)."""
    signature_blocks = 0
    k = 0
    while k < cut:
        if verdicts[k] == _T and _starts_signature(stripped[k]):
            end = _signature_end(stripped, verdicts, k, cut)
            if end is not None:
                verdicts[k:end] = _S * (end - k)
                if not signature_blocks:
                    reasons.append(f"signature block at line {k + 1}")
                signature_blocks += 1
                k = end
                continue
        k += 1


def _starts_signature(text: str) -> bool:
    """True for a "-- " / "____" signature delimiter line."""
    return text[:2] in ("--", "__") and _is_sig_delimiter(text)


def _signature_end(stripped: list[str], verdicts: list[str], start: int, cut: int) -> int | None:
    """End of the signature block opened at ``start``, or None when it is too long to be one.

    The block runs to the next delimiter, a removed quote block or the cut, and may hold at
    most ``_MAX_SIG_LINES`` non-blank lines.
    """
    j = start
    count = 0
    while j < cut and verdicts[j] != _X and count <= _MAX_SIG_LINES:
        if j > start and _starts_signature(stripped[j]):
            break  # the next delimiter starts its own block
        if stripped[j]:
            count += 1
        j += 1
    return j if count <= _MAX_SIG_LINES else None


def _keep_flags(
    verdicts: list[str], cut: int, n: int, quote_blocks: int, reasons: list[str]
) -> list[bool]:
    """Step 4: which lines above the cut stay, from the verdicts.

    Interleaved (inline) replies keep the quotes between reply lines; otherwise only text and
    blank lines stay, and text between the last quote block and the history goes with it.
    """
    verdict_string = "".join(verdicts)
    first_x, last_x = verdict_string.find(_X), verdict_string.rfind(_X)
    if first_x >= 0 and _T in verdict_string[first_x:last_x]:
        last_text_end = verdict_string.rfind(_T) + 1
        reasons.append("interleaved reply: quotes between reply lines kept")
        return [verdict not in "HS" for verdict in verdict_string[:last_text_end]]
    keep = [verdict in "TB" for verdict in verdict_string]
    if (
        cut < n
        and first_x >= 0
        and verdict_string.find(_T) < first_x
        and verdict_string.find(_T, last_x) >= 0
    ):
        # T X T <history>: the text after the quote belongs to the older messages.
        tail = verdict_string.find(_T, last_x)
        keep[tail:] = [False] * (len(keep) - tail)
        reasons.append(f"text at line {tail + 1} lies between quotes and history")
    if quote_blocks:
        reasons.append(f"{quote_blocks} quote block(s) removed")
    return keep


def _next_nonblank(stripped: list[str], i: int) -> int:
    """Index of the first non-blank line at or after ``i`` (``len(stripped)`` if none)."""
    n = len(stripped)
    while i < n and not stripped[i]:
        i += 1
    return i


def _trim_tail(stripped: list[str], keep: list[bool], reasons: list[str]) -> None:
    """Step 5: drop a closing signature from the kept text: device line, "-Name", valediction."""
    kept = [k for k, flag in enumerate(keep) if flag and stripped[k]]
    while kept:
        last = kept[-1]
        text = stripped[last]
        if _is_device_line(text):
            keep[last] = False
            kept.pop()
            reasons.append(f"device line at line {last + 1}")
            continue
        if _NAME_SIG_RE.fullmatch(text) and len(text) <= 40 and len(kept) >= 2:
            previous = stripped[kept[-2]]
            if not previous.startswith(("-", "/", "*", "•")):
                keep[last] = False
                kept.pop()
                reasons.append(f"name signature at line {last + 1}")
                continue
        found = _closing_valediction(stripped, kept)
        if found > 0:
            for k in kept[found:]:
                keep[k] = False
            reasons.append(f"closing valediction at line {kept[found] + 1}")
            del kept[found:]
            continue
        break


def _closing_valediction(stripped: list[str], kept: list[int]) -> int:
    """Position in ``kept`` of a valediction followed by 1-3 short lines (a name), else -1.

    Only the last four kept lines are looked at; a valediction at position 0 is the whole
    reply and is never removed.
    """
    window = kept[-4:]
    for pos, k in enumerate(window):
        if _is_valediction(stripped[k]) and all(len(stripped[x]) <= 40 for x in window[pos + 1 :]):
            found = len(kept) - len(window) + pos
            tail_count = len(kept) - found - 1
            return found if 1 <= tail_count <= 3 else -1
    return -1


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


def _split_shared_lines(raw_lines: list[str]) -> list[str]:
    """Split each "reply On <date>, X wrote:" line in two so the reply part can be kept."""
    shared = [
        (k, split)
        for k, line in enumerate(raw_lines)
        if line.endswith(_COLON_ENDS) and (split := _split_shared_line(line)) is not None
    ]
    if not shared:
        return raw_lines
    lines: list[str] = []
    previous = 0
    for k, (prefix, suffix) in shared:
        lines.extend(raw_lines[previous:k])
        lines.append(prefix)
        lines.append(suffix)
        previous = k + 1
    lines.extend(raw_lines[previous:])
    return lines


def _configured_boundary(
    lines: list[str], marker: str | None, separators: Sequence[str]
) -> tuple[TruncationMethod, list[str], int]:
    """The method, details and line index of the first reply marker, else separator line.

    Without either the method is HEURISTIC and the boundary is ``len(lines)`` (all examined).
    """
    hit = _first_line_containing(lines, [marker] if marker else [])
    if hit is not None:
        return TruncationMethod.MARKER, [f"reply marker {marker!r} at line {hit[0] + 1}"], hit[0]
    if separators:
        hit = _first_line_containing(lines, separators)
        if hit is not None:
            detail = f"separator {hit[1]!r} at line {hit[0] + 1}"
            return TruncationMethod.SEPARATOR, [detail], hit[0]
    return TruncationMethod.HEURISTIC, [], len(lines)


def _truncate_all(
    body: str, marker: str | None, separators: Sequence[str], strip_signature: bool
) -> Truncation:
    """:func:`truncate_reply` on the whole of ``body``."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    lines = _split_shared_lines(text.split("\n"))
    method, details, boundary = _configured_boundary(lines, marker, separators)
    region, elided_head = lines[:boundary], lines[boundary:]
    result = _heuristic(region, strip_signature)
    kept_lines: list[str] = []
    elided_lines: list[str] = []
    for line, keep in zip(region, result.keep, strict=True):
        (kept_lines if keep else elided_lines).append(line)
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
