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

# Words that end an attribution ("<who> wrote:"), Latin-script ones need a word boundary.
_END_WORDS_LATIN = (
    r"wrote|schrieb|geschrieben|a\s+écrit|escribió|escribio|escreveu|ha\s+scritto|scrisse"
    r"|schreef|geschreven|skrev|skriver|kirjoitti|napisał\(a\)|napisała|napisał|napisal"
    r"|napsal\(a\)|napsala|napsal|yazdı|írta|đã\s+viết|scrie|a\s+scris"
    r"|написал\(а\)|написала|написал|написав\(ла\)|написав|έγραψε"
)
_END_WORDS_CJK = r"写道|寫道|のメッセージ|は書きました|님이\s*작성|작성"
# "<end word>:" or "<end word> <name> <addr>:" (the tail form must end with a colon).
_END_TAIL = r"(?:\s*[:：]?|\s+[^:：]{1,150}[:：])\s*$"
_END_LATIN_RE = re.compile(rf"(?<![^\W\d_])(?:{_END_WORDS_LATIN}){_END_TAIL}", re.IGNORECASE)
_END_CJK_RE = re.compile(rf"(?:{_END_WORDS_CJK}){_END_TAIL}")
_ON_SENT_RE = re.compile(r"^On\s.{0,250}\bsent\s*:\s*$", re.IGNORECASE)
# Words that open an attribution; used to split "reply On <date> ... wrote:" lines.
_START_WORDS = r"On|Am|Le|El|Em|Il|Op|Den|På|Vào|Dnia|Dne|W\s+dniu"
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
    """True when ``text`` ends like an attribution ("... wrote:", "... a écrit :", ...)."""
    tail = text[-220:]
    return bool(_END_LATIN_RE.search(tail) or _END_CJK_RE.search(tail) or _ON_SENT_RE.match(text))


def _has_evidence(text: str) -> bool:
    """A date/time digit or an address: what separates a real attribution from prose."""
    return "@" in text or any(ch.isdigit() for ch in text)


def _classify_attribution(text: str) -> str | None:
    """Return "strong", "weak" or None for a (joined) candidate attribution text."""
    if len(text) > _MAX_PROBE:
        return None
    core, decorated = _deco_strip(text)
    if not core:
        return None
    if _end_match(core):
        ends_colon = core[-1] in ":："
        if _has_evidence(core) and (ends_colon or decorated):
            return "strong"
        if decorated and len(core.split()) <= 8:
            return "strong"
        return "weak"
    # Gmail-style "<date> <name> <addr>:" with no verb (also the Japanese form).
    if core[0].isdigit() and "@" in core and core[-1] in ":：>":
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
    j = i
    while j < n and j < i + _MAX_ATTR_LINES:
        piece = st[j]
        if not piece or (j > i and _is_quoted(piece)):
            break
        acc = _join_piece(acc, piece)
        if len(acc) > _MAX_PROBE:
            return None
        kind = _classify_attribution(acc)
        if kind is not None:
            if j > i and _starts_later(st, i + 1, j):
                return None  # line i is reply text; the attribution starts below it
            return j + 1, kind
        j += 1
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
    m = _HEADER_LABEL_RE.match(stripped[:60])
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
    if len(cats) >= 2 and cats & {_FROM, _DATE, _SUBJECT}:
        return last + 1
    return None


def _is_separator(stripped: str) -> bool:
    """An "-----Original Message-----" / forward separator or intro line."""
    if len(stripped) < 5 or len(stripped) > 120:
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
    if _START_RE.match(s.lstrip(" -")) or not _end_match(s):
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


@attrs.frozen
class _Cut:
    """Heuristic outcome over a list of lines: which to keep and a human reason."""

    keep: list[bool]
    reasons: list[str]


def _heuristic(lines: list[str], strip_signature: bool) -> _Cut:
    """Classify lines and keep only the new reply text (see module docstring)."""
    n = len(lines)
    st = [ln.strip() for ln in lines]
    roles = [_B if not s else (_Q if _is_quoted(s) else _T) for s in st]
    reasons: list[str] = []

    # 1. Find splitters: soft ones (followed by a quote block) and the first hard cut.
    cut = n
    seen_text = False
    i = 0
    while i < n:
        if roles[i] != _T:
            if roles[i] == _Q:
                seen_text = True
            i += 1
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
            seen_text = True
            i += 1
            continue
        nxt = _next_nonblank(st, end)
        if nxt < n and roles[nxt] == _Q:
            for k in range(i, end):
                roles[k] = _A
            reasons.append(f"{kind} at line {i + 1} introduces a quote block")
            i = end
            continue
        if kind == "attribution" and strength != "strong":
            seen_text = True
            i += 1
            continue
        if not seen_text and kind in ("header block", "separator") and nxt < n:
            # Headers of the message itself (a forward without comment): drop them, go on.
            while end < n and st[end]:
                end += 1
            for k in range(i, end):
                roles[k] = _H
            reasons.append(f"leading {kind} at line {i + 1} dropped")
            i = end
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

    # 2. Quote blocks (attribution + quoted lines + wrapped link lines + trailing blanks).
    last_text = -1
    for k in range(cut):
        if roles[k] == _T:
            last_text = k
    blocks: list[tuple[int, int]] = []
    i = 0
    while i < cut:
        if roles[i] not in (_Q, _A):
            i += 1
            continue
        start = i
        has_attr = False
        nq = 0
        last = i
        j = i
        while j < cut:
            r = roles[j]
            if r == _A:
                has_attr = True
                last = j
            elif r == _Q:
                nq += 1
                last = j
            elif r == _T and 0 < j < n - 1 and roles[j - 1] == _Q and roles[j + 1] == _Q:
                last = j  # a link or wrapped line inside the quote
            elif r != _B:
                break
            j += 1
        end = last + 1
        while end < cut and roles[end] == _B:
            end += 1
        trailing = last_text < end  # nothing but blanks and history after it
        if has_attr or nq >= 2 or trailing:
            blocks.append((start, end))
        i = end
    in_block = [False] * n
    for b0, b1 in blocks:
        for k in range(b0, b1):
            in_block[k] = True

    # 3. Signature / list-footer blocks ("-- ", "____") when asked to strip signatures.
    is_sig = [False] * n
    if strip_signature:
        i = 0
        while i < cut:
            if not in_block[i] and roles[i] == _T and _is_sig_delimiter(st[i]):
                j = i
                count = 0
                while j < cut and not in_block[j] and count <= _MAX_SIG_LINES:
                    if st[j]:
                        count += 1
                    j += 1
                if count <= _MAX_SIG_LINES:
                    for k in range(i, j):
                        is_sig[k] = True
                    reasons.append(f"signature block at line {i + 1}")
                    i = j
                    continue
            i += 1

    # 4. Text chunks vs quote blocks: interleaved (inline) replies keep the quotes between.
    events: list[tuple[str, int, int]] = []
    for k in range(cut):
        if in_block[k]:
            ev = "Q"
        elif roles[k] == _T and not is_sig[k]:
            ev = "T"
        else:
            continue
        if events and events[-1][0] == ev:
            events[-1] = (ev, events[-1][1], k + 1)
        else:
            events.append((ev, k, k + 1))
    kinds = [e[0] for e in events]
    inline = any(
        kinds[x] == "T" and "Q" in kinds[:x] and "Q" in kinds[x + 1 :] for x in range(len(kinds))
    )
    keep = [False] * n
    if inline:
        last_t = max(e[2] for e in events if e[0] == "T")
        for k in range(last_t):
            keep[k] = roles[k] != _H and not is_sig[k]
        reasons.append("interleaved reply: quotes between reply lines kept")
    else:
        drop_tail: tuple[int, int] | None = None
        if cut < n and len(events) >= 3 and kinds[-1] == "T" and kinds[0] == "T":
            drop_tail = (events[-1][1], events[-1][2])
            reasons.append(f"text at line {drop_tail[0] + 1} lies between quotes and history")
        for k in range(cut):
            if in_block[k] or is_sig[k] or roles[k] == _H:
                continue
            if drop_tail is not None and drop_tail[0] <= k < drop_tail[1]:
                continue
            keep[k] = True
        if blocks:
            reasons.append(f"{len(blocks)} quote block(s) removed")

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


def truncate_reply(
    body: str,
    *,
    marker: str | None = None,
    separators: Sequence[str] = (),
    strip_signature: bool = False,
) -> Truncation:
    """Keep the new reply text of ``body`` and say what was cut and why.

    Cut order: the first line containing ``marker``, else the first line containing one of
    ``separators``, then the quote/attribution heuristic on what is left. If the cut would leave
    nothing, the whole body is kept (method ``KEPT_WHOLE``).
    """
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    raw_lines = text.split("\n")
    # Split "reply On <date>, X wrote:" lines so the reply part can be kept.
    lines: list[str] = []
    for line in raw_lines:
        split = _split_shared_line(line) if line.rstrip().endswith((":", "：")) else None
        if split is None:
            lines.append(line)
        else:
            lines.extend(split)

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
    kept_lines = _trim_blank_ends([ln for ln, k in zip(region, result.keep, strict=True) if k])
    elided_lines = [ln for ln, k in zip(region, result.keep, strict=True) if not k]
    elided_lines.extend(elided_head)
    details.extend(result.reasons)
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
