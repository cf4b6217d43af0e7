"""Text bytes to ``str`` when the declared charset is missing or wrong, linear and never raising.

Mail declares its charset (RFC 2045 section 5.1, RFC 2046 section 4.1.2) but real mail often
declares none, or the wrong one. :func:`decode_text` reads the declaration and checks it
against the bytes, in this order:

1. **ISO-2022 escapes.** 7-bit text holding ``ESC $ B`` and friends is ISO-2022-JP (or -KR),
   whatever the (missing or ``us-ascii``) declaration says (RFC 1468, RFC 1557).
2. **UTF-8 validity.** Non-ASCII bytes that are valid UTF-8 are UTF-8, whatever legacy charset
   is declared: real text in a legacy charset is practically never valid UTF-8 by accident.
3. **The declared charset**, its label read as the WHATWG Encoding Standard reads it
   (:data:`WHATWG_ENCODINGS`: ``x-mac-roman``, ``windows-874``, ``csshiftjis``, ...) and the
   charset read as its superset the way browsers do (``iso-8859-1`` and ``us-ascii`` as
   windows-1252, ``gb2312``/``gbk`` as GB18030, ``euc-kr`` as windows-949, ``shift_jis`` as
   windows-31J, ``big5`` as Big5-HKSCS, ...). A single-byte charset reads every byte: a byte it
   leaves undefined is U+FFFD. The declaration is **kept**, each byte sequence it cannot read
   U+FFFD, unless another reading of every byte is more plausible (scored as in step 6; with
   too little to detect on, windows-1252 is that rival), while it reads no fewer 8-bit bytes
   than it fails on (:func:`_declared_lead`): with few unreadable sequences (at most one per
   ``_BYTES_PER_UNREADABLE`` 8-bit bytes, always one) ahead by ``_DECLARED_LEAD``; with more,
   a single-byte charset with no lead, losing a tie. Otherwise the bytes are plainly in
   another charset: read on. Declared UTF-8 has its own rule (step 4).
4. **UTF-8 with stray bytes.** Text declared UTF-8 (or not declared) whose 8-bit bytes are at
   least half valid UTF-8 keeps its UTF-8 and reads each stray byte as windows-1252 (a legacy
   signature in UTF-8 text comes through whole).
5. **Hints**: the charsets the same message declares elsewhere (other parts, encoded-words in
   its header, an HTML ``<meta charset>``), checked like any candidate.
6. **Detection** among the legacy charsets mail is written in (windows-125x, ISO-8859-x,
   KOI8, Shift_JIS, EUC-JP, GB18030, Big5, EUC-KR, TIS-620), scoring how plausible each reading
   is: control or unassigned characters, letters of two scripts or an impossible case pattern
   inside one word, symbols between letters, accented Latin letters that no single language
   uses together, rare CJK characters, Han characters split by spaces (Korean read as Chinese).
   Only the start of the text is scored (``_SCORE_CHARS``), so detection is linear too.
7. windows-1252, then latin-1 (which never fails).

Every step that overrides, repairs or guesses is recorded as an
:class:`~asm_email_rules.intake_notes.IntakeNote`. ``benchmarks/charset_detection.py`` measures
the detection against the stdlib fallback and ``charset-normalizer`` (see ``docs/intake.md``).
"""

from __future__ import annotations

import codecs
import collections
import functools
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable

from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind

__all__ = [
    "WHATWG_ENCODINGS",
    "Hints",
    "code_page_codec",
    "codec_name",
    "decode_text",
    "hinted_reading",
    "html_meta_charset",
    "iso2022_codec",
    "mime_name",
]

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
#: The WHATWG Encoding Standard's names and labels (https://encoding.spec.whatwg.org/, section
#: 4.2): every label of every encoding, with the Python codec that reads the encoding as that
#: standard does (``_SUPERSETS`` applied: a ``gb2312`` label is read as GB18030 there too).
#: :func:`codec_name` reads a label with this table where Python does not know it
#: (``x-mac-roman``, ``windows-874``, ``csshiftjis``) or knows it as another charset. Where mail
#: is not the web: the labels of the "replacement" encoding that name mail charsets Python reads
#: (ISO-2022-KR, RFC 1557; HZ, RFC 1843) are read with them, not as one U+FFFD; UTF-16 without
#: a byte order mark is read in the machine's order (little-endian on every machine we run);
#: ``x-user-defined`` (in mail: "the sender's own code page", not the private-use characters a
#: browser gives), ISO-2022-CN and ``replacement`` have no codec and are read as unknown
#: charsets, so detection reads the bytes.
WHATWG_ENCODINGS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("UTF-8", "utf-8", (
        "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8",
        "x-unicode20utf8",
    )),
    ("IBM866", "cp866", ("866", "cp866", "csibm866", "ibm866")),
    ("ISO-8859-2", "iso8859-2", (
        "csisolatin2", "iso-8859-2", "iso-ir-101", "iso8859-2", "iso88592", "iso_8859-2",
        "iso_8859-2:1987", "l2", "latin2",
    )),
    ("ISO-8859-3", "iso8859-3", (
        "csisolatin3", "iso-8859-3", "iso-ir-109", "iso8859-3", "iso88593", "iso_8859-3",
        "iso_8859-3:1988", "l3", "latin3",
    )),
    ("ISO-8859-4", "iso8859-4", (
        "csisolatin4", "iso-8859-4", "iso-ir-110", "iso8859-4", "iso88594", "iso_8859-4",
        "iso_8859-4:1988", "l4", "latin4",
    )),
    ("ISO-8859-5", "iso8859-5", (
        "csisolatincyrillic", "cyrillic", "iso-8859-5", "iso-ir-144", "iso8859-5", "iso88595",
        "iso_8859-5", "iso_8859-5:1988",
    )),
    ("ISO-8859-6", "iso8859-6", (
        "arabic", "asmo-708", "csiso88596e", "csiso88596i", "csisolatinarabic", "ecma-114",
        "iso-8859-6", "iso-8859-6-e", "iso-8859-6-i", "iso-ir-127", "iso8859-6", "iso88596",
        "iso_8859-6", "iso_8859-6:1987",
    )),
    ("ISO-8859-7", "iso8859-7", (
        "csisolatingreek", "ecma-118", "elot_928", "greek", "greek8", "iso-8859-7",
        "iso-ir-126", "iso8859-7", "iso88597", "iso_8859-7", "iso_8859-7:1987", "sun_eu_greek",
    )),
    ("ISO-8859-8", "iso8859-8", (
        "csiso88598e", "csisolatinhebrew", "hebrew", "iso-8859-8", "iso-8859-8-e", "iso-ir-138",
        "iso8859-8", "iso88598", "iso_8859-8", "iso_8859-8:1988", "visual",
    )),
    ("ISO-8859-8-I", "iso8859-8", ("csiso88598i", "iso-8859-8-i", "logical")),
    ("ISO-8859-10", "iso8859-10", (
        "csisolatin6", "iso-8859-10", "iso-ir-157", "iso8859-10", "iso885910", "l6", "latin6",
    )),
    ("ISO-8859-13", "iso8859-13", ("iso-8859-13", "iso8859-13", "iso885913")),
    ("ISO-8859-14", "iso8859-14", ("iso-8859-14", "iso8859-14", "iso885914")),
    ("ISO-8859-15", "iso8859-15", (
        "csisolatin9", "iso-8859-15", "iso8859-15", "iso885915", "iso_8859-15", "l9",
    )),
    ("ISO-8859-16", "iso8859-16", ("iso-8859-16",)),
    ("KOI8-R", "koi8-r", ("cskoi8r", "koi", "koi8", "koi8-r", "koi8_r")),
    ("KOI8-U", "koi8-u", ("koi8-ru", "koi8-u")),
    ("macintosh", "mac-roman", ("csmacintosh", "mac", "macintosh", "x-mac-roman")),
    ("windows-874", "cp874", (
        "dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874",
    )),
    ("windows-1250", "cp1250", ("cp1250", "windows-1250", "x-cp1250")),
    ("windows-1251", "cp1251", ("cp1251", "windows-1251", "x-cp1251")),
    ("windows-1252", "cp1252", (
        "ansi_x3.4-1968", "ascii", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1",
        "iso-ir-100", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1",
        "us-ascii", "windows-1252", "x-cp1252",
    )),
    ("windows-1253", "cp1253", ("cp1253", "windows-1253", "x-cp1253")),
    ("windows-1254", "cp1254", (
        "cp1254", "csisolatin5", "iso-8859-9", "iso-ir-148", "iso8859-9", "iso88599",
        "iso_8859-9", "iso_8859-9:1989", "l5", "latin5", "windows-1254", "x-cp1254",
    )),
    ("windows-1255", "cp1255", ("cp1255", "windows-1255", "x-cp1255")),
    ("windows-1256", "cp1256", ("cp1256", "windows-1256", "x-cp1256")),
    ("windows-1257", "cp1257", ("cp1257", "windows-1257", "x-cp1257")),
    ("windows-1258", "cp1258", ("cp1258", "windows-1258", "x-cp1258")),
    ("x-mac-cyrillic", "mac-cyrillic", ("x-mac-cyrillic", "x-mac-ukrainian")),
    ("GBK", "gb18030", (
        "chinese", "csgb2312", "csiso58gb231280", "gb2312", "gb_2312", "gb_2312-80", "gbk",
        "iso-ir-58", "x-gbk",
    )),
    ("gb18030", "gb18030", ("gb18030",)),
    ("Big5", "big5hkscs", ("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5")),
    ("EUC-JP", "euc_jp", ("cseucpkdfmtjapanese", "euc-jp", "x-euc-jp")),
    ("ISO-2022-JP", "iso2022_jp_ext", ("csiso2022jp", "iso-2022-jp")),
    ("Shift_JIS", "cp932", (
        "csshiftjis", "ms932", "ms_kanji", "shift-jis", "shift_jis", "sjis", "windows-31j",
        "x-sjis",
    )),
    ("EUC-KR", "cp949", (
        "cseuckr", "csksc56011987", "euc-kr", "iso-ir-149", "korean", "ks_c_5601-1987",
        "ks_c_5601-1989", "ksc5601", "ksc_5601", "windows-949",
    )),
    ("replacement: ISO-2022-KR", "iso2022_kr", ("csiso2022kr", "iso-2022-kr")),
    ("replacement: HZ-GB-2312", "hz", ("hz-gb-2312",)),
    ("replacement", None, ("iso-2022-cn", "iso-2022-cn-ext", "replacement")),
    ("UTF-16BE", "utf-16-be", ("unicodefffe", "utf-16be")),
    ("UTF-16LE", "utf-16", (
        "csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff", "utf-16", "utf-16le",
    )),
    ("x-user-defined", None, ("x-user-defined",)),
)  # fmt: skip
#: WHATWG label -> the codec that reads it (``None``: read as an unknown charset)
_WHATWG_LABELS = {label: codec for _, codec, labels in WHATWG_ENCODINGS for label in labels}
#: where a WHATWG single-byte index differs from Python's table at a byte Python defines or
#: leaves undefined (the rest of each index is Python's): KOI8-U is KOI8-RU there (Belarusian
#: short u), and windows-1255 has HEBREW POINT HOLAM HASER FOR VAV
_WHATWG_INDEX_CHANGES = {"koi8-u": {0xAE: "\u045e", 0xBE: "\u040e"}, "cp1255": {0xCA: "\u05ba"}}
#: a declared charset is kept while the byte sequences it cannot read are at most one per this
#: many 8-bit bytes (and always one): text with more is plainly in another charset
_BYTES_PER_UNREADABLE = 16
#: the lead the declared charset's reading has over other readings when it cannot read a few
#: bytes: another reading must be this much more plausible (penalty per character) to win;
#: the lead a hint has, too (with 0.1, 6 more of the benchmark's wrong labels are kept)
_DECLARED_LEAD = 0.05
#: hints a raw 8-bit header is read with, at most (a message declares one to three charsets):
#: with windows-1252, at most 8 readings of a header are scored
_HEADER_HINTS = 7
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
#: codec error handler marking each byte sequence a codec cannot read with a lone surrogate
_MARK_HANDLER = "asm_email_rules.mark_unreadable"
_UNREADABLE_MARK = "\udc80"
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
    """Python codec name for a MIME charset, or None when unknown or not a text charset.

    A WHATWG label (:data:`WHATWG_ENCODINGS`) gives the codec that standard reads it with,
    unless Python knows the label as a charset read the same way (``gb2312``, read as GB18030
    through ``_SUPERSETS``, stays ``gb2312`` for notes); any other name is Python's.
    """
    if not name:
        return None
    label = name.strip().strip('"').lower()
    whatwg = _WHATWG_LABELS.get(label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return whatwg
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return whatwg
    if whatwg is not None and _SUPERSETS.get(info.name, info.name) != whatwg:
        return whatwg
    return info.name


_CODE_PAGES = {
    1200: "utf-16-le",
    1201: "utf-16-be",
    10000: "mac-roman",
    10006: "mac-greek",
    10007: "mac-cyrillic",
    10029: "mac-latin2",
    10079: "mac-iceland",
    10081: "mac-turkish",
    20127: "ascii",
    20866: "koi8-r",
    21866: "koi8-u",
    **{28590 + n: f"iso8859-{n}" for n in range(1, 10)},
    28603: "iso8859-13",
    28605: "iso8859-15",
    50220: "iso2022-jp",
    50221: "iso2022-jp",
    50222: "iso2022-jp",
    51932: "euc-jp",
    51936: "gb2312",
    51949: "euc-kr",
    52936: "hz",
    54936: "gb18030",
    65000: "utf-7",
    65001: "utf-8",
}
"""Windows code page numbers Python does not know as ``cpNNNN`` ([MS-UCODEREF] names)."""


def code_page_codec(number: int, default: str) -> str:
    """The Python codec of the Windows code page ``number`` (a TNEF ``attOemCodepage`` or
    ``PR_INTERNET_CPID``, an RTF ``\\ansicpg``), or ``default`` when Python has none for it.

    Python knows most code pages as ``cpNNNN`` (1252, 932, 437) but not the ISO, Mac, EUC and
    ISO-2022 ones Outlook writes as numbers (28591, 10000, 51932, 50220): those come from a
    table. The codec is looked up, so a number read from hostile data never names a codec
    that fails later (``b"".decode`` does not look the codec up)."""
    name = _CODE_PAGES.get(number, f"cp{number}")
    try:
        info = codecs.lookup(name)
    except LookupError:
        return default
    return name if getattr(info, "_is_text_encoding", True) else default


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


#: ISO-2022-JP designations the WHATWG decoder knows: ASCII, JIS X 0201 Roman and Katakana,
#: JIS X 0208 (1978 and 1983); ``split`` keeps each one between the text it separates
_ISO2022_JP_DESIGNATION = re.compile(rb"\x1b(\(B|\(J|\(I|\$@|\$B)")
_JIS_NEWLINE = re.compile(rb"[\r\n]")
_JIS_BYTES = bytes(range(0x21, 0x7F))
_JIS_TO_EUC = bytes.maketrans(_JIS_BYTES, bytes(range(0xA1, 0xFF)))
_KATAKANA_BYTES = bytes(range(0x21, 0x60))


def _jis_as_shift_jis(pairs: bytes) -> bytes:
    """JIS X 0208 byte pairs (rows 0x21-0x7E) as the Shift_JIS pairs of the same characters."""
    out = bytearray()
    for index in range(0, len(pairs), 2):
        row, cell = pairs[index] - 0x21, pairs[index + 1]
        lead = 0x81 + row // 2
        if lead > 0x9F:
            lead += 0x40
        trail = cell + 0x7E if row % 2 else cell + 0x1F + (cell >= 0x60)
        out += bytes((lead, trail))
    return bytes(out)


def _jis0208(pairs: bytes) -> tuple[str, int] | None:
    """Two-byte JIS text: the standard table (EUC-JP, as Python's ISO-2022-JP reads it), else
    the Windows one (CP932: NEC row 13 and the IBM kanji as Microsoft writes them in
    ISO-2022-JP), each pair neither reads one U+FFFD; None for bytes that are not JIS pairs."""
    if len(pairs) % 2 or pairs.translate(None, _JIS_BYTES):
        return None
    text = _strict(pairs.translate(_JIS_TO_EUC), "euc_jp")
    if text is not None:
        return text, 0
    shift_jis = _jis_as_shift_jis(pairs)
    text = _strict(shift_jis, "cp932")
    if text is not None:
        return text, 0
    chars = [_strict(shift_jis[index : index + 2], "cp932") for index in range(0, len(pairs), 2)]
    return "".join("\ufffd" if ch is None else ch for ch in chars), chars.count(None)


def iso2022_jp_windows(data: bytes) -> tuple[str, int] | None:
    """ISO-2022-JP as Windows mailers write it, read as the WHATWG Encoding Standard reads it
    (its JIS X 0208 index is Windows-31J's): Outlook and other Windows mailers send circled
    numbers, ``㈱`` and IBM kanji of names (``髙``, ``﨑``) in NEC row 13 and rows 89-92, which
    Python's ISO-2022-JP codecs refuse as a whole. Returns the text and the number of pairs no
    table reads (each one U+FFFD), or None for bytes that are not ISO-2022-JP of this kind (other
    designations, 8-bit bytes). A line break ends two-byte text, as in that standard. Linear.
    """
    out: list[str] = []
    unreadable = 0
    state = b"(B"
    for index, piece in enumerate(_ISO2022_JP_DESIGNATION.split(data)):
        if index % 2:
            state = piece
            continue
        if state in (b"$@", b"$B"):
            newline = _JIS_NEWLINE.search(piece)
            cut = len(piece) if newline is None else newline.start()
            read = _jis0208(piece[:cut])
            if read is None:
                return None
            out.append(read[0])
            unreadable += read[1]
            piece, state = piece[cut:], b"(B"
        if b"\x1b" in piece or not piece.isascii():
            return None
        if state == b"(I":
            if piece.translate(None, _KATAKANA_BYTES + b"\r\n"):
                return None
            out.append("".join(chr(b + 0xFF40) if b > 0x20 else chr(b) for b in piece))
        elif state == b"(J":
            out.append(piece.decode("ascii").replace("\\", "\u00a5").replace("~", "\u203e"))
        else:
            out.append(piece.decode("ascii"))
    return "".join(out), unreadable


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


@functools.lru_cache(maxsize=64)
def _single_byte_table(codec: str) -> tuple[str, bytes] | None:
    """``(table, holes)`` of a single-byte charset as the WHATWG Encoding Standard reads it.

    ``table`` holds the character of each byte value, U+FFFD where Python's table has none
    (the standard gives the C1 control at such a byte in 0x80-0x9F and an error elsewhere;
    both are bytes that are not text in this charset, and intake reads a byte it cannot read
    as U+FFFD), with ``_WHATWG_INDEX_CHANGES`` applied; ``holes`` are those bytes. None for a
    codec that is not single-byte: one whose bytes do not each decode on their own to the
    character they give inside text (Shift_JIS pairs them), or that leaves most 8-bit bytes
    undefined (UTF-8, ASCII, UTF-7).
    """
    singles = [_strict(bytes((byte,)), codec) for byte in range(256)]
    if any(ch is not None and len(ch) != 1 for ch in singles):
        return None
    if sum(ch is not None for ch in singles[128:]) < 64:
        return None
    try:
        whole = bytes(range(256)).decode(codec, _MARK_HANDLER)
    except (UnicodeError, LookupError, ValueError):
        return None
    if whole != "".join(_UNREADABLE_MARK if ch is None else ch for ch in singles):
        return None
    chars = ["\ufffd" if ch is None else ch for ch in singles]
    for byte, ch in _WHATWG_INDEX_CHANGES.get(codec, {}).items():
        chars[byte] = ch
    holes = bytes(byte for byte, ch in enumerate(chars) if ch == "\ufffd")
    return "".join(chars), holes


_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_ORDER_SAMPLE = 4096
"""Bytes of a UTF-16/32 text whose NUL bytes tell its byte order."""
#: label endings that name the little-endian order themselves (``utf-16le``, ``UTF-32_LE``,
#: WHATWG's ``unicodefeff``): read in that order, whatever the bytes look like
_LITTLE_ENDIAN_LABELS = ("le", "feff")


def _big_endian_without_bom(data: bytes, codec: str) -> bool:
    """True when ``data``, declared ``utf-16`` or ``utf-32`` without a byte-order mark, is
    big-endian by its NUL bytes: in text of mostly Latin, Cyrillic or Greek letters each
    character's high byte is NUL, first in big-endian order.

    RFC 2781 section 4.3 says text without a mark SHOULD be read big-endian; Windows mail
    programs write little-endian without one, which is why the bytes decide, and little-endian
    (Python's, and the common case) stays the reading when they do not. NUL bytes alone do not
    decide: little-endian Chinese or Japanese text has few ASCII characters and NUL low bytes in
    common ideographs (``一`` is U+4E00, the ideographic space U+3000), so the big-endian
    reading of the sample must also be the more plausible one. Bounded by ``_ORDER_SAMPLE``.
    """
    if data.startswith(_BOMS):
        return False
    width = 2 if codec == "utf-16" else 4
    sample = data[: _ORDER_SAMPLE - _ORDER_SAMPLE % width]
    first = sample[::width].count(0)  # the high byte of a big-endian unit
    last = sample[width - 1 :: width].count(0)  # the high byte of a little-endian unit
    if first <= 2 * last:
        return False
    big = sample.decode(f"{codec}-be", "replace")
    little = sample.decode(f"{codec}-le", "replace")
    return _implausibility(big, f"{codec}-be") < _implausibility(little, f"{codec}-le")


def _declared(
    data: bytes, codec: str, what: str, notes: list[IntakeNote]
) -> tuple[str, int] | None:
    """The text in the declared codec read as its superset, and the number of byte sequences
    it could not read, each one U+FFFD; None when the codec fails on these bytes altogether.

    A single-byte charset reads every byte (:func:`_single_byte_table`); any other codec reads
    strictly, else with each sequence it cannot read marked (one lone surrogate a sequence,
    counted and replaced). Lone surrogates a codec gives itself (utf-7) become U+FFFD, noted.
    """
    superset = _SUPERSETS.get(codec, codec)
    table = _single_byte_table(superset)
    if table is not None:
        chars, holes = table
        unreadable = len(data) - len(data.translate(None, holes)) if holes else 0
        return codecs.charmap_decode(data, "strict", chars)[0], unreadable
    text = _strict(data, superset)
    if text is None and superset != codec:
        text = _strict(data, codec)
    if text is None and codec.startswith("iso2022_jp"):
        windows = iso2022_jp_windows(data)
        if windows is not None:
            return windows
    if text is not None:
        if codec in _SURROGATE_FREE or codec.startswith(_SURROGATE_FREE_PREFIXES):
            return text, 0
        return _without_surrogates(text, what, codec, notes), 0
    try:
        marked = data.decode(superset, _MARK_HANDLER)
    except Exception:  # defensive: a codec that fails in another way reads nothing here
        return None
    return _SURROGATE.subn("\ufffd", marked)


def _declared_lead(data: bytes, codec: str, unreadable: int) -> float | None:
    """The lead the declared charset's reading has over the other readings of ``data`` when
    it cannot read ``unreadable`` byte sequences; None when it is dropped without comparing.

    Never more unreadable sequences than 8-bit bytes it reads (a charset that reads none of
    them has no evidence). Few of them (at most one per ``_BYTES_PER_UNREADABLE`` 8-bit bytes,
    always one): ``_DECLARED_LEAD``. More, in a single-byte charset: no lead, a tie lost; its
    reading of every other byte must be more plausible than any reading of every byte (German
    windows-1252 with three stray 0x81 is not GB18030's ``B黵o l鋟ft``, while KOI8-R labelled
    ISO-8859-7 still loses to KOI8-R). More in a multi-byte charset: dropped.
    """
    high = len(data) - len(data.translate(None, _HIGH_BYTES))
    if unreadable * 2 > high:
        return None
    if unreadable <= 1 or unreadable * _BYTES_PER_UNREADABLE <= high:
        return _DECLARED_LEAD
    return 0.0 if _single_byte_table(_SUPERSETS.get(codec, codec)) is not None else None


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


def _mark_unreadable(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each byte sequence the codec cannot read becomes one lone
    surrogate, a mark :func:`_declared` counts and replaces (no codec it is used with gives
    lone surrogates of its own without them being unreadable too)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return _UNREADABLE_MARK, error.end


codecs.register_error(_MIXED_HANDLER, _stray_bytes_as_cp1252)
codecs.register_error(_MARK_HANDLER, _mark_unreadable)


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
    scoring: a declared charset that cannot read a few bytes is then kept without comparing.
    Never raises; the result never holds lone surrogates.
    """
    codec = codec_name(charset)
    if codec is not None and codec.startswith(("utf-16", "utf-32")) and b"\x00" not in data:
        codec = None  # text in UTF-16/32 has NUL bytes; these bytes were labelled wrongly
    elif (
        codec in ("utf-16", "utf-32")
        and not (charset or "").strip().lower().endswith(_LITTLE_ENDIAN_LABELS)
        and _big_endian_without_bom(data, codec)
    ):
        notes.append(
            IntakeNote(
                IntakeNoteKind.CHARSET_DETECTED,
                f"{what}: {charset!r} without a byte-order mark, its NUL bytes big-endian; "
                f"decoded as {codec}-be",
            )
        )
        codec = f"{codec}-be"
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
            windows = iso2022_jp_windows(data)
            if windows is not None and not windows[1]:
                declared = "us-ascii declared" if codec else "no charset"
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.CHARSET_DETECTED,
                        f"{what}: {declared} but ISO-2022 escape sequences; decoded as "
                        "iso-2022-jp (with the Windows characters)",
                    )
                )
                return windows[0]
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
    names: list[str] | None = None  # the hints, built when first needed
    if codec is not None and codec != "utf-8":
        reading = _declared(data, codec, what, notes)
        if reading is not None and reading[1] == 0:
            return reading[0]
        if reading is not None and codec.startswith("iso2022") and data.isascii():
            # 7-bit text with escape sequences: no charset but an ISO-2022 one reads it. One
            # that reads it whole (ISO-2022-KR or ISO-2022-JP-2 labelled iso-2022-jp) is its
            # charset; else the declared one is kept, however few bytes it cannot read
            found = iso2022_codec(data)
            if found is not None:
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.UNDECODABLE_BYTES,
                        f"{what}: bytes invalid in declared charset {charset!r}; "
                        f"decoded as {mime_name(found)} (its escape sequences)",
                    )
                )
                return data.decode(found)
            notes.append(
                IntakeNote(
                    IntakeNoteKind.UNDECODABLE_BYTES,
                    f"{what}: {reading[1]} byte sequence(s) invalid in declared charset "
                    f"{charset!r} read as U+FFFD; the declared charset kept",
                )
            )
            return reading[0]
        lead = None if reading is None else _declared_lead(data, codec, reading[1])
        if reading is not None and lead is not None:
            text, unreadable = reading
            names = _hint_names(hints) if detect else []
            rival = _detect(data, names, codec, text, candidates=detect, lead=lead)
            if rival is None or rival[2] == "declared":
                notes.append(
                    IntakeNote(
                        IntakeNoteKind.UNDECODABLE_BYTES,
                        f"{what}: {unreadable} byte sequence(s) invalid in declared charset "
                        f"{charset!r} read as U+FFFD; the declared charset kept",
                    )
                )
                return text
            used, text, source = rival
            how = "" if source == "fallback" else f" ({source})"
            notes.append(
                IntakeNote(
                    IntakeNoteKind.UNDECODABLE_BYTES,
                    f"{what}: bytes invalid in declared charset {charset!r}; "
                    f"decoded as {mime_name(used)}{how}",
                )
            )
            if source != "fallback" and (not names or names[0] != used):
                names.insert(0, used)
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
        if names is None:
            names = _hint_names(hints)
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


def _hint_names(hints: Hints | None) -> list[str]:
    """The hint list (built now if ``hints`` is a function); a new empty list for none."""
    if hints is None:
        return []
    return hints() if callable(hints) else hints


def hinted_reading(data: bytes, hints: Hints) -> tuple[str, str] | None:
    """``(codec, text)`` of the most plausible reading of ``data`` by a charset the message
    declares elsewhere (``hints``, each read strictly and scored as in detection), when it is
    at least as plausible as the windows-1252 reading; else None (read as windows-1252).

    For raw 8-bit header bytes that are not UTF-8 (intake reads them like body text, but they
    are too short to score the legacy candidates on). A hint is only a charset the message
    names somewhere, maybe an attachment's: a German subject in windows-1252 read with an
    attached log's windows-1251 gives ``Bьro``, so windows-1252 (what such a header was read
    as before hints) is scored too and the hint wins only at a score no worse than its. The
    first ``_HEADER_HINTS`` hints only: with windows-1252, at most 8 strict decodings and
    bounded scorings per header, whatever the number of charsets a hostile message declares.
    """
    head = _score_head(data)
    ranked: list[tuple[float, int, str, bool]] = []  # (score, order, codec, a hint's)
    seen: set[str] = set()
    named = [(name, True) for name in _hint_names(hints)[:_HEADER_HINTS]]
    for name, hinted in (*named, ("cp1252", False)):
        codec = codec_name(name)
        if codec is None or codec in ("ascii", "utf-8", "iso8859-1"):
            continue
        codec = _SUPERSETS.get(codec, codec)
        if codec in seen:
            continue
        seen.add(codec)
        text = _strict(head, codec)
        if text is not None and _SURROGATE.search(text) is None:
            ranked.append((_implausibility(text, codec), len(ranked), codec, hinted))
    for _, _, codec, hinted in sorted(ranked):  # a tie goes to the earlier: a hint
        if not hinted:
            return None
        text = _strict(data, codec) if head is not data else _strict(head, codec)
        if text is not None:
            return codec, text
    return None


def _score_head(data: bytes) -> bytes:
    """The start of ``data`` a reading is scored on: ``_SCORE_BYTES`` at most, cut at a line
    end (so no multibyte character is split) when there is one."""
    if len(data) <= _SCORE_BYTES:
        return data
    cut = data.rfind(b"\n", 0, _SCORE_BYTES)
    return data[: cut if cut > 0 else _SCORE_BYTES]


def _detect(
    data: bytes,
    hints: Iterable[str],
    declared: str | None,
    kept: str | None = None,
    *,
    candidates: bool = True,
    lead: float = _DECLARED_LEAD,
) -> tuple[str, str, str] | None:
    """``(codec, text, how)`` of the most plausible reading of non-UTF-8 ``data``, or None.

    Readings are scored on the first ``_SCORE_BYTES`` (cut at a line end, so no multibyte
    character is split); the best-scoring codec that also reads the whole of ``data`` wins.
    A hint whose reading is clean wins at once, so the parts of one message cost one scoring.
    ``kept`` is the declared charset's reading with a few unreadable sequences as U+FFFD: it
    is ranked too (those aside), ``lead`` ahead (with none, losing a tie), and wins as
    ``"declared"``; with
    too little to judge by the candidates, windows-1252 (the fallback, what the text becomes
    when the declaration is dropped) is its rival, winning as ``"fallback"``.
    ``candidates=False`` scores the hints only (and the fallback, against ``kept``).
    """
    head = _score_head(data)
    ranked: list[tuple[float, int, str, str]] = []
    seen: set[str] = set()
    if declared is not None:
        seen = {declared, _SUPERSETS.get(declared, declared)}
        if kept is not None:
            sample = kept[: _SCORE_CHARS * 2].replace("\ufffd", "")
            score = _implausibility(sample, _SUPERSETS.get(declared, declared))
            # ahead by ``lead``; with none it loses a tie (ranked after every other reading)
            ranked.append((score - lead, 0 if lead else sys.maxsize, declared, "declared"))
    evidence = len(head) - len(head.translate(None, _HIGH_BYTES))
    sources = [("as elsewhere in the message", hints)]
    if candidates and evidence >= _MIN_EVIDENCE and b"\x00" not in head:  # enough to judge
        sources.append(("detected", _CANDIDATES))
    elif kept is not None and b"\x00" not in head:
        sources.append(("fallback", ("cp1252",)))
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
            if source == "as elsewhere in the message":
                if score <= _CLEAN and (kept is None or score < ranked[0][0]):
                    ranked = [(score, 0, codec, source)]
                    break
                score -= 0.05  # the message's own word breaks a near tie
            ranked.append((score, len(ranked), codec, source))
        else:
            continue
        break
    for _, _, codec, source in sorted(ranked):
        if source == "declared" and kept is not None:
            return codec, kept, source
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
