"""Text bytes to ``str`` when the declared charset is missing or wrong, linear and never raising.

Mail declares its charset (RFC 2045 section 5.1, RFC 2046 section 4.1.2) but real mail often
declares none, or the wrong one. :func:`decode_text` reads the declaration and checks it
against the bytes, in this order:

1. **ISO-2022 escapes.** 7-bit text holding ``ESC $ B`` and friends is ISO-2022-JP (or -KR),
   whatever the (missing or ``us-ascii``) declaration says (RFC 1468, RFC 1557).
2. **UTF-8 validity.** Non-ASCII bytes that are valid UTF-8 are UTF-8, whatever legacy charset
   is declared: real text in a legacy charset is practically never valid UTF-8 by accident.
3. **The declared charset**, read as its superset the way browsers do (WHATWG Encoding
   Standard: ``iso-8859-1`` and ``us-ascii`` as windows-1252, ``gb2312``/``gbk`` as GB18030,
   ``euc-kr`` as windows-949, ``shift_jis`` as windows-31J, ``big5`` as Big5-HKSCS, ...).
4. **Hints**: the charsets the same message declares elsewhere (other parts, encoded-words in
   its header, an HTML ``<meta charset>``), checked like any candidate.
5. **Detection** among the legacy charsets mail is written in (windows-125x, ISO-8859-x,
   KOI8, Shift_JIS, EUC-JP, GB18030, Big5, EUC-KR, TIS-620), scoring how plausible each reading
   is: control or unassigned characters, letters of two scripts or an impossible case pattern
   inside one word, symbols between letters, accented Latin letters that no single language
   uses together, rare CJK characters, Han characters split by spaces (Korean read as Chinese).
   Only the start of the text is scored (``_SCORE_CHARS``), so detection is linear too.
6. windows-1252, then latin-1 (which never fails).

Every step that overrides or guesses is recorded as an
:class:`~asm_email_rules.intake_notes.IntakeNote`. ``benchmarks/charset_detection.py`` measures
the detection against the stdlib fallback and ``charset-normalizer`` (see ``docs/intake.md``).
"""

from __future__ import annotations

import codecs
import collections
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable

from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind

__all__ = ["Hints", "codec_name", "decode_text", "html_meta_charset", "iso2022_codec", "mime_name"]

#: charsets declared elsewhere in a message: a list, or a function building it when first needed
Hints = list[str] | Callable[[], list[str]]

#: Python codecs that are not MIME charsets (escape codecs and the like): read as unknown
_NOT_CHARSETS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined", "mbcs", "oem"}
)
#: codecs whose strict decoding can never give a lone surrogate: the UTF-8/16/32 decoders reject
#: them, single-byte tables and the CJK codecs map to assigned characters; others are checked
_SURROGATE_FREE = frozenset({"utf-8", "ascii", "utf-16", "utf-32", "utf-16-le", "utf-16-be"})
_SURROGATE_FREE_PREFIXES = (
    "iso8859", "cp", "mac", "koi8", "latin", "windows", "tis", "shift", "euc", "gb", "big5",
    "iso2022", "hz", "johab",
)  # fmt: skip
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: declared charset -> the superset real mail labelled with it is read as (WHATWG)
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
    "iso2022_jp": "iso2022_jp_ext",
}
#: legacy charsets detection chooses from, most common first (ties go to the earlier one)
_CANDIDATES = (
    "cp1252", "cp1251", "koi8_r", "cp1250", "iso8859-2", "cp932", "euc_jp", "gb18030",
    "big5hkscs", "cp949", "cp1253", "iso8859-7", "cp1254", "cp1255", "iso8859-8", "cp1256",
    "cp874", "cp1257", "iso8859-13", "iso8859-5", "koi8_u",
)  # fmt: skip
#: ISO-2022 designations (escape sequences) and the codec that reads them
_ISO2022 = re.compile(rb"\x1b(?:\$[@B]|\$\(D|\([BJI]|\$\)C|\$[AG]|\$\([ACDGHJKLMNOPQ]|\.[AF]|N)")
_ISO2022_CODECS = (
    (b"\x1b$)C", ("iso2022_kr",)),
    (b"\x1b(I", ("iso2022_jp_ext", "iso2022_jp_3")),
    (b"", ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3")),
)
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:()-]{1,40})""", re.IGNORECASE
)
#: bytes of the text each candidate reads, and characters of each reading scored
_SCORE_BYTES = 3000
_SCORE_CHARS = 1200
#: common non-ASCII marks of running text, never suspicious
_COMMON_MARKS = frozenset("\u00a0¡£§©«®°±·»¿×÷€™№´¨")
#: the most frequent letters of the languages each script is mailed in; a reading in which
#: they are less than ``_FREQUENT_SHARE`` of the letters comes from the wrong table
_FREQUENT_LETTERS = {
    "CYRILLIC": frozenset("оаеинтсрвлкідмуп"),
    "GREEK": frozenset("αοειτνσςηκπρμλυάέίό"),
    "HEBREW": frozenset("יוהלארתמשבנם"),
    "ARABIC": frozenset("الي\u0645ونرتبعهة"),
    "THAI": frozenset("านรอกมงเยวดท"),
}
_FREQUENT_SHARE = 0.65
#: 8-bit bytes a text needs before detection may read it as anything but windows-1252
_MIN_EVIDENCE = 4
#: a hint reading at most this implausible is taken without scoring the other candidates
_CLEAN = 0.02
_HIGH_BYTES = bytes(range(0x80, 0x100))
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_MIXED_HANDLER = "asm_email_rules.stray_cp1252"
_MIME_NAMES = {
    "cp932": "windows-31j",
    "cp949": "windows-949",
    "cp874": "windows-874",
    "big5hkscs": "big5-hkscs",
    "iso2022-jp": "iso-2022-jp",
    "iso2022-jp-ext": "iso-2022-jp (with half-width kana)",
    "iso2022-jp-2": "iso-2022-jp-2",
    "iso2022-jp-2004": "iso-2022-jp-2004",
    "iso2022-jp-3": "iso-2022-jp-3",
    "iso2022-kr": "iso-2022-kr",
}
_KANA = re.compile(r"[\u3041-\u30ff]")
_JAMO = re.compile(r"[\u3131-\u318e]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
#: a run of letters and combining marks (Thai vowels and Hebrew points are marks, not breaks)
_WORD = re.compile(r"[^\W\d_][^\W\d_\u0300-\u036f]*(?:[\u0300-\u036f\u0e31-\u0e4e][^\W\d_]*)*")
_HAN_SPLIT_BY_SPACES = re.compile(r"[\u4e00-\u9fff]{1,3} [\u4e00-\u9fff]")
_LONG_HANGUL = re.compile(r"[\uac00-\ud7a3]{12,}")
_HALFWIDTH_KANA = re.compile(r"[\uff61-\uff9f]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
#: a non-word, non-space character between two letters
_INSIDE_WORD = re.compile(r"(?<=[^\W\d_])[^\w\s](?=[^\W\d_])")
#: the accented letters each Latin-script language writes; a reading whose accented letters no
#: single language covers is a wrong reading (Czech in windows-1252 gives "Pøi", "Dìkuji")
_LATIN_LETTERS = tuple(
    frozenset(letters)
    for letters in (
        "äöüß",  # German
        "àâæçéèêëîïôœùûüÿ",  # French
        "áéíñóúü",  # Spanish
        "áâãàçéêíóôõú",  # Portuguese
        "àèéìíîòóùú",  # Italian
        "àçèéíïòóúü",  # Catalan
        "éëïóöüáèêàô",  # Dutch
        "åæøéóôàü",  # Danish, Norwegian
        "åäöéü",  # Swedish, Finnish
        "áéíóúýþðæö",  # Icelandic
        "áčďéěíňóřšťúůýž",  # Czech
        "áäčďéíĺľňóôŕšťúýž",  # Slovak
        "ąćęłńóśźż",  # Polish
        "áéíóöőúüű",  # Hungarian
        "čćđšž",  # Croatian, Bosnian, Serbian Latin, Slovene
        "ăâîșşțţ",  # Romanian
        "çğıöşüâîû",  # Turkish
        "ąčęėįšųūž",  # Lithuanian
        "āčēģīķļņšūž",  # Latvian
        "äõöüšž",  # Estonian
        "ëç",  # Albanian
    )
)


#: accented Latin letter -> the languages (indexes into ``_LATIN_LETTERS``) that write it
_LETTER_LANGUAGES: dict[str, tuple[int, ...]] = {}
for _index, _letters in enumerate(_LATIN_LETTERS):
    for _letter in _letters:
        _LETTER_LANGUAGES[_letter] = (*_LETTER_LANGUAGES.get(_letter, ()), _index)


@functools.lru_cache(maxsize=256)
def codec_name(name: str | None) -> str | None:
    """Python codec name for a MIME charset, or None when unknown or not a text charset."""
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip('"').lower())
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def mime_name(codec: str) -> str:
    """The MIME (IANA) name of a Python codec, as notes show it: ``cp1252`` -> ``windows-1252``."""
    name = codec.replace("_", "-")
    if name.startswith("iso8859-"):
        return "iso-" + name[3:]
    if name.startswith("cp125"):
        return "windows-" + name[2:]
    return _MIME_NAMES.get(name, name)


def html_meta_charset(data: bytes) -> str | None:
    """The charset an HTML document declares in a ``<meta>`` tag in its first 2 KiB, if any."""
    found = _META_CHARSET.search(data, 0, 2048)
    return found.group(1).decode("ascii") if found is not None else None


def iso2022_codec(data: bytes) -> str | None:
    """The ISO-2022 codec that reads 7-bit ``data`` with escape sequences strictly, else None."""
    if b"\x1b" not in data or _ISO2022.search(data) is None:
        return None
    for marker, names in _ISO2022_CODECS:
        if marker not in data:
            continue
        for name in names:
            try:
                data.decode(name)
            except (UnicodeDecodeError, LookupError):
                continue
            return name
    return None


def _strict(data: bytes, codec: str) -> str | None:
    """``data`` decoded strictly, or None."""
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError, ValueError):
        return None


def _without_surrogates(text: str, what: str, charset: str, notes: list[IntakeNote]) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (noted), so it encodes as UTF-8."""
    if _SURROGATE.search(text) is None:
        return text
    notes.append(
        IntakeNote(
            IntakeNoteKind.SURROGATES_REPLACED,
            f"{what}: charset {charset!r} gave lone surrogates; replaced with U+FFFD",
        )
    )
    return _SURROGATE.sub("\ufffd", text)


def _declared(data: bytes, codec: str, what: str, notes: list[IntakeNote]) -> str | None:
    """The text in the declared codec (read as its superset), or None when it does not fit."""
    superset = _SUPERSETS.get(codec)
    text = _strict(data, superset) if superset is not None else None
    if text is None:
        text = _strict(data, codec)
    if text is None:
        return None
    if codec in _SURROGATE_FREE or codec.startswith(_SURROGATE_FREE_PREFIXES):
        return text
    return _without_surrogates(text, what, codec, notes)


@functools.lru_cache(maxsize=256)
def _ascii_compatible(codec: str) -> bool:
    """True when the codec writes ASCII text as ASCII bytes (not UTF-16/32, UTF-7, ISO-2022)."""
    probe = "Hello, +~world\\ 1\n"
    try:
        return probe.encode(codec) == probe.encode("ascii") and not codec.startswith("iso2022")
    except (UnicodeError, LookupError):
        return False


def _mostly_utf8(data: bytes) -> bool:
    """True when at least half of the 8-bit bytes form valid UTF-8 sequences (mixed text).

    Judged on the first ``_SCORE_BYTES * 16`` bytes, so a huge body costs no more.
    """
    head = data[: _SCORE_BYTES * 16]
    high = len(head) - len(head.translate(None, _HIGH_BYTES))
    valid = sum(map(len, _UTF8_SEQUENCE.findall(head)))
    return valid > 0 and valid * 2 >= high


def _stray_bytes_as_cp1252(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each byte that is not UTF-8 read as windows-1252 (else U+FFFD)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    stray = error.object[error.start : error.end]
    return stray.decode("cp1252", "replace"), error.end


codecs.register_error(_MIXED_HANDLER, _stray_bytes_as_cp1252)


def decode_text(
    data: bytes,
    charset: str | None,
    what: str,
    notes: list[IntakeNote],
    hints: Hints | None = None,
    *,
    detect: bool = True,
) -> str:
    """Decode text bytes, checking the declared ``charset`` against them (module docstring).

    ``what`` names the part or field in notes. ``hints`` are charsets the message declares
    elsewhere (or a function giving them, called only when needed); a charset detected here is
    put first in that list, so the next part of the same message tries it first.
    ``detect=False`` (header fields: short, their charset declared per word) skips hints and
    scoring. Never raises; the result never holds lone surrogates.
    """
    codec = codec_name(charset)
    if codec is not None and codec.startswith(("utf-16", "utf-32")) and b"\x00" not in data:
        codec = None  # text in UTF-16/32 has NUL bytes; these bytes were labelled wrongly
    if data.isascii():
        if b"\x1b" in data and (codec is None or codec == "ascii"):
            found = iso2022_codec(data)
            if found is not None:
                declared = "us-ascii declared" if codec else "no charset"
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.CHARSET_DETECTED,
                        f"{what}: {declared} but ISO-2022 escape sequences; "
                        f"decoded as {mime_name(found)}",
                    )
                )
                return data.decode(found)
        if codec is None or _ascii_compatible(codec):
            if codec is None and charset:
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.UNKNOWN_CHARSET,
                        f"{what}: charset {charset!r} unknown; decoded as ascii",
                    )
                )
            return data.decode("ascii")
    elif codec is None or not codec.startswith(("utf-16", "utf-32")):
        text = _strict(data, "utf-8")
        if text is not None:
            if codec not in (None, "utf-8"):
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.CHARSET_DETECTED,
                        f"{what}: {charset!r} declared but the text is valid utf-8; "
                        "decoded as utf-8",
                    )
                )
            elif codec is None and charset:
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.UNKNOWN_CHARSET,
                        f"{what}: charset {charset!r} unknown; decoded as utf-8",
                    )
                )
            return text
    if codec is not None and codec != "utf-8":
        text = _declared(data, codec, what, notes)
        if text is not None:
            return text
    if codec is not None:
        kind = IntakeNoteKind.UNDECODABLE_BYTES
        problem = f"{what}: bytes invalid in declared charset {charset!r}"
    elif charset:
        kind = IntakeNoteKind.UNKNOWN_CHARSET
        problem = f"{what}: charset {charset!r} unknown"
    else:
        kind = IntakeNoteKind.UNDECLARED_8BIT_TEXT
        problem = f"{what}: no charset and not utf-8"
    if codec in (None, "utf-8") and _mostly_utf8(data):
        notes.append(IntakeNote(kind, f"{problem}; decoded as utf-8, stray bytes as windows-1252"))
        return data.decode("utf-8", _MIXED_HANDLER)
    if detect:
        names = (hints() if callable(hints) else hints) if hints is not None else []
        found_text = _detect(data, names, codec)
        if found_text is not None:
            used, text, source = found_text
            notes.append(IntakeNote(kind, f"{problem}; decoded as {mime_name(used)} ({source})"))
            if not names or names[0] != used:
                names.insert(0, used)
            return text
    text = _strict(data, "cp1252")
    used = "windows-1252"
    if text is None:
        text, used = data.decode("latin-1"), "latin-1"
    notes.append(IntakeNote(kind, f"{problem}; decoded as {used}"))
    return text


def _detect(data: bytes, hints: Iterable[str], declared: str | None) -> tuple[str, str, str] | None:
    """``(codec, text, how)`` of the most plausible reading of non-UTF-8 ``data``, or None.

    Readings are scored on the first ``_SCORE_BYTES`` (cut at a line end, so no multibyte
    character is split); the best-scoring codec that also reads the whole of ``data`` wins.
    A hint whose reading is clean wins at once, so the parts of one message cost one scoring.
    """
    head = data
    if len(data) > _SCORE_BYTES:
        cut = data.rfind(b"\n", 0, _SCORE_BYTES)
        head = data[: cut if cut > 0 else _SCORE_BYTES]
    ranked: list[tuple[float, int, str, str]] = []
    seen: set[str] = {declared} if declared is not None else set()
    evidence = len(head) - len(head.translate(None, _HIGH_BYTES))
    sources = [("as elsewhere in the message", hints)]
    if evidence >= _MIN_EVIDENCE and b"\x00" not in head:  # too little to judge, or binary
        sources.append(("detected", _CANDIDATES))
    for source, names in sources:
        for name in names:
            codec = codec_name(name)
            if codec is None or codec in seen or codec in ("ascii", "utf-8", "iso8859-1"):
                continue
            seen.add(codec)
            codec = _SUPERSETS.get(codec, codec)
            seen.add(codec)
            text = _strict(head, codec)
            if text is None or _SURROGATE.search(text) is not None:
                continue
            bound = min((row[0] for row in ranked), default=float("inf")) + 0.05
            score = _implausibility(text, codec, bound)
            if source != "detected":
                if score <= _CLEAN:
                    ranked = [(score, 0, codec, source)]
                    break
                score -= 0.05  # the message's own word breaks a near tie
            ranked.append((score, len(ranked), codec, source))
        else:
            continue
        break
    for _, _, codec, source in sorted(ranked):
        text = _strict(data, codec) if head is not data else _strict(head, codec)
        if text is not None:
            return codec, text, source
    return None


@functools.lru_cache(maxsize=8192)
def _char_facts(ch: str) -> tuple[str, str, float]:
    """``(category, script, symbol penalty)`` of a non-ASCII character.

    ``script`` is the first word of the Unicode name, with kana and ideographs as ``CJK``
    (Japanese mixes them inside one word); the symbol penalty is 0.5 for a symbol or
    punctuation mark that is rare in running text (box drawing, ``¤``, ``¶``, ``³``, ...).
    """
    category = unicodedata.category(ch)
    try:
        script = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        script = ""
    if script.startswith(("HIRAGANA", "KATAKANA", "CJK", "IDEOGRAPHIC")):
        script = "CJK"
    symbol = 0.0
    if category[0] in "SPN" and category != "Nd" and ch not in _COMMON_MARKS:
        code = ord(ch)
        if not (0x2010 <= code <= 0x203A or 0x3000 <= code <= 0x303F or 0xFF01 <= code <= 0xFF65):
            symbol = 0.5
    return category, script, symbol


def _implausibility(text: str, codec: str, bound: float = float("inf")) -> float:
    """Penalty per non-ASCII character of a reading (lower is more plausible; 0 is clean).

    Character facts are looked up once per distinct character; the sample is bounded, so a
    reading costs at most a constant. Scoring stops early once the penalty reaches ``bound``
    (the best reading so far): the result is then at least ``bound``.
    """
    sample = text[:_SCORE_CHARS]
    found = _NON_ASCII.findall(sample)
    if not found:
        return 0.0
    penalty = 0.0
    latin: dict[str, int] = {}
    scripts: dict[str, list[tuple[str, int]]] = {}
    marks: list[str] = []
    for ch, count in collections.Counter(found).items():
        category, script, symbol = _char_facts(ch)
        if category in ("Cc", "Cn", "Co", "Cs"):
            penalty += 10 * count
        elif symbol:
            penalty += symbol * count
        elif category == "Mn":
            marks.append(ch)
        elif category[0] == "L":
            if script == "LATIN":
                lower = ch.lower()
                latin[lower] = latin.get(lower, 0) + count
            elif script in _FREQUENT_LETTERS:
                scripts.setdefault(script, []).append((ch, count))
    if penalty >= bound * len(found):
        return penalty / len(found)
    for inside in _INSIDE_WORD.findall(sample):
        if not inside.isascii() and _char_facts(inside)[0][0] in "SPN":
            penalty += 1  # "zosta³o": a symbol inside a word
    if marks:
        for mark in re.finditer("[" + re.escape("".join(marks)) + "]", sample):
            base = _char_facts(sample[mark.start() - 1])[1] if mark.start() else ""
            if _char_facts(mark.group())[1] not in ("COMBINING", base):
                penalty += 1  # an Arabic vowel sign on a Latin letter
    for word in _WORD.findall(sample):
        if not word.isascii():
            penalty += _word_penalty(word)
            if latin and len(word) >= 3 and _is_latin_soup(word):
                penalty += 1  # "Çäðàâñòâóéòå": a Latin word is mostly ASCII letters
    if latin:
        covered = [0] * len(_LATIN_LETTERS)
        for ch, count in latin.items():
            for language in _LETTER_LANGUAGES.get(ch, ()):
                covered[language] += count
        penalty += sum(latin.values()) - max(covered)
    for script, letters in scripts.items():
        total = sum(count for _, count in letters)
        frequent = _FREQUENT_LETTERS[script]
        share = sum(count for ch, count in letters if ch.lower() in frequent) / total
        if share < _FREQUENT_SHARE:
            penalty += (_FREQUENT_SHARE - share) * 4 * total
    penalty += len(_HAN_SPLIT_BY_SPACES.findall(sample))
    penalty += 2 * len(_LONG_HANGUL.findall(sample))
    penalty += len(_HALFWIDTH_KANA.findall(sample)) + 0.5 * len(_JAMO.findall(sample))
    if codec in ("gb18030", "big5hkscs", "cp949"):
        penalty += 0.5 * len(_KANA.findall(sample))  # kana in a Chinese or Korean reading
    penalty += _rare_cjk(sample)
    return penalty / len(found)


@functools.lru_cache(maxsize=4096)
def _word_penalty(word: str) -> float:
    """Two scripts in one word, or an upper-case letter after a lower-case one (wrong table)."""
    penalty = 0.0
    if not (word.islower() or word.isupper() or (word[0].isupper() and word[1:].islower())):
        previous_lower = False
        for ch in word:
            category = _char_facts(ch)[0] if not ch.isascii() else ("Ll" if ch.islower() else "Lu")
            if category == "Lu" and previous_lower:
                penalty += 1
            previous_lower = category == "Ll"
    scripts = {"LATIN" if ch.isascii() else _char_facts(ch)[1] for ch in set(word) if ch.isalpha()}
    if len(scripts) > 1 and not (scripts <= {"LATIN", "CJK"} and "CJK" in scripts):
        penalty += len(word) / 2
    return penalty


def _is_latin_soup(word: str) -> bool:
    """True when most letters of a word are accented Latin letters."""
    accented = sum(1 for ch in word if not ch.isascii() and _char_facts(ch)[1] == "LATIN")
    return accented * 2 > len(word)


def _rare_cjk(sample: str) -> float:
    """Han characters outside the common sets of every CJK language, half a point each.

    Simplified Chinese keeps to GB2312, traditional Chinese mostly to Big5 level 1, Japanese
    mostly to JIS X 0208 level 1; a reading full of other characters is a wrong reading.
    """
    counts = collections.Counter(_HAN.findall(sample))
    return sum(0.5 * count for ch, count in counts.items() if not _is_common_han(ch))


@functools.lru_cache(maxsize=8192)
def _is_common_han(ch: str) -> bool:
    """True for a Han character in GB2312, Big5 level 1 or JIS X 0208 level 1."""
    for codec, limit in (("gb2312", b"\xf8"), ("big5", b"\xc6\x7f"), ("euc_jp", b"\xd0")):
        try:
            encoded = ch.encode(codec)
        except UnicodeEncodeError:
            continue
        if encoded < limit:
            return True
    return False
