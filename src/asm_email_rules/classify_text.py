"""What the words of an automatic message look like: subject and body phrase tables.

The text half of :mod:`asm_email_rules.classify`. Each matcher answers one question about a
subject or a body ("does it read like a delivery failure?", "like an out-of-office reply?") and
returns the phrase that matched, so a classification can quote its evidence. The tables cover
the templates of the common mail servers and clients in many languages; peers that use the same
kind of tables: BMC's excluded-subject list, Discourse's localized out-of-office subjects,
osTicket's bounce phrases, sisimai's MTA templates (see ``shared/research``).

Text never decides alone: :mod:`classify` counts a subject match or a body match as one *weak*
signal each, and a message needs two independent signals (or one strong header) to be automatic.

Every function is linear: the body is cut to :data:`BODY_WINDOW` characters first, patterns are
literal alternations or bounded character classes (no nested quantifiers), and each is searched
once over the window.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import re
import sys
from collections.abc import Callable

import attrs

__all__ = [
    "BODY_WINDOW",
    "SUBJECT_WINDOW",
    "BodyPhrases",
    "auto_reply_features",
    "auto_reply_subject",
    "body_phrases",
    "body_region",
    "bounce_subject",
    "challenge_subject",
    "delay_phrase",
    "digest_subject",
    "dmarc_report_name",
    "dmarc_report_subject",
    "failure_phrase",
    "list_footer",
    "notice_phrase",
    "report_subject",
    "subject_may_signal",
]

BODY_WINDOW = 16384
"""Characters of the body examined (templates put their telling sentences first)."""
SUBJECT_WINDOW = 300
"""Characters of the subject examined."""


_Trie = dict[str, "_Trie"]


def _alternation(phrases: tuple[str, ...]) -> str:
    """A regex matching any of ``phrases`` (lower case), built as a character trie.

    A trie makes a failed match at a position cost one or two character tests instead of one
    test per phrase, so a table of hundreds of phrases scans a body in linear time. A space in
    a phrase matches any run of one to eight blanks (templates wrap lines anywhere).
    """
    trie: _Trie = {}
    for phrase in {p.lower() for p in phrases}:
        node = trie
        for char in phrase:
            node = node.setdefault(char, {})
        node[""] = {}
    return _trie_pattern(trie)


def _trie_pattern(node: _Trie) -> str:
    branches = []
    for char in sorted(k for k in node if k):
        atom = r"[ \t\r\n]{1,8}" if char == " " else re.escape(char)
        branches.append(atom + _trie_pattern(node[char]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return "(?:" + body + ")?" if "" in node else body


class _Lazy:
    """A regular expression compiled on first use.

    The phrase tables compile to large tries that take a noticeable part of a second; a
    process that never meets a suspicious message (or a command-line run on a person's mail)
    need not pay for all of them.
    """

    __slots__ = ("_compiled", "_flags", "_source")

    def __init__(self, source: str | Callable[[], str], flags: int = 0) -> None:
        self._source = source
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern (compiled once; a race compiles it twice, harmlessly)."""
        if self._compiled is None:
            source = self._source if isinstance(self._source, str) else self._source()
            self._compiled = re.compile(source, self._flags)
        return self._compiled

    def search(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        """``re.Pattern.search``."""
        return self.compiled.search(text, pos, endpos)

    def match(self, text: str, pos: int = 0) -> re.Match[str] | None:
        """``re.Pattern.match``."""
        return self.compiled.match(text, pos)


def _search(pattern: re.Pattern[str] | _Lazy, text: str) -> str | None:
    """The matched text (blank runs as single spaces); ``text`` is searched lower-cased."""
    low = text.lower()
    match = pattern.search(low)
    return None if match is None else _quoted(text, low, match)


def _quoted(text: str, low: str, match: re.Match[str]) -> str:
    """What ``match`` (in ``low``, ``text`` lower-cased) covers of ``text``, its blank runs as
    single spaces (the lower-cased text where lower-casing changed the length)."""
    found = text[match.start() : match.end()] if len(low) == len(text) else match.group(0)
    return " ".join(found.split())


# --------------------------------------------------------------------------- body region

_FORWARD_MARKER = _Lazy(
    r"^[ \t]*(?:-{2,}[ \t]*(?:original message|forwarded message|original-nachricht"
    r"|ursprüngliche nachricht|weitergeleitete nachricht|message d'origine|message transféré"
    r"|mensaje original|mensaje reenviado|messaggio originale|messaggio inoltrato"
    r"|oorspronkelijk bericht|doorgestuurd bericht|mensagem original|mensagem encaminhada"
    r"|ursprungligt meddelande|vidarebefordrat meddelande|oprindelig meddelelse"
    r"|videresendt meddelelse|opprinnelig melding|videresendt melding|alkuperäinen viesti"
    r"|wiadomość oryginalna|wiadomość przekazana|původní zpráva|přeposlaná zpráva"
    r"|eredeti üzenet|исходное сообщение|пересланное сообщение|orijinal ileti"
    r"|iletilen ileti|原始邮件|转发的邮件|原始郵件|轉寄的郵件|元のメッセージ|転送メッセージ"
    r"|원본 메시지|전달된 메시지)"
    r"|begin forwarded message|anfang der weitergeleiteten|début du message réexpédié"
    r"|inizio messaggio inoltrato|comienzo del mensaje reenviado)",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTED_LINE = re.compile(r"^[ \t]{0,3}>", re.MULTILINE)
# An Outlook-style header block that opens quoted or forwarded history.
_HEADER_BLOCK = _Lazy(
    r"^[ \t*]*(?:from|von|de|da|van|från|fra|od|от|差出人|发件人|寄件者)[ \t*]*:[^\n]{1,300}\n"
    r"(?:[^\n]{0,300}\n){0,2}[ \t*]*(?:sent|date|gesendet|datum|envoyé|date|enviado|fecha"
    r"|inviato|data|verzonden|skickat|sendt|wysłano|отправлено|送信日時|发送时间|寄件日期)"
    r"[ \t*]*:",
    re.IGNORECASE | re.MULTILINE,
)


def body_region(body: str) -> str:
    """The part of the body a sender wrote: the first :data:`BODY_WINDOW` characters, cut at
    the first forward marker, quoted line or Outlook header block.

    A person who forwards a bounce or an out-of-office reply wrote a message of their own; the
    forwarded text must not make theirs automatic.
    """
    window = body[:BODY_WINDOW]
    end = len(window)
    for pattern in (_FORWARD_MARKER, _QUOTED_LINE, _HEADER_BLOCK):
        match = pattern.search(window, 0, end)
        if match is not None:
            end = match.start()
    return window[:end]


# --------------------------------------------------------------------------- delivery failures

_FAILURE_PHRASES = (
    # English MTA and gateway templates
    "could not be delivered",
    "couldn't be delivered",
    "could not deliver",
    "couldn't deliver",
    "cannot be delivered",
    "can't be delivered",
    "can not be delivered",
    "was not delivered",
    "wasn't delivered",
    "were not delivered",
    "message not delivered",
    "not delivered yet",
    "temporary problem delivering",
    "not been delivered",
    "has not yet been delivered",
    "not yet been delivered",
    "was undeliverable",
    "is undeliverable",
    "message undeliverable",
    "undeliverable message",
    "delivery has failed",
    "delivery failed",
    "delivery failure",
    "delivery to the following recipient",
    "did not reach the following recipient",
    "didn't reach the following recipient",
    "did not reach some or all of the intended recipients",
    "failed permanently",
    "permanent error",
    "permanent fatal error",
    "permanent failure",
    "temporary failure",
    "unable to deliver",
    "undelivered mail",
    "returned mail",
    "mail delivery failed",
    "mail delivery failure",
    "message delivery failure",
    "delivery status notification",
    "the following addresses had",
    "following recipients was rejected",
    "following recipients were rejected",
    "following recipient was rejected",
    "recipients was rejected",
    "recipient address rejected",
    "your message was rejected",
    "message was rejected",
    "was rejected and discarded",
    "has been rejected",
    "was blocked",
    "has been blocked",
    "user unknown",
    "unknown user",
    "unknown recipient",
    "no such user",
    "no such recipient",
    "invalid recipient",
    "invalid user address",
    "invalid address",
    "recipient not found",
    "mailbox unavailable",
    "mailbox not found",
    "mailbox is full",
    "mailbox full",
    "mailbox is disabled",
    "over quota",
    "quota exceeded",
    "exceeded storage",
    "host or domain name not found",
    "domain name not found",
    "host not found",
    "not listed in the domino directory",
    "not listed in domino directory",
    "not listed in public name",
    "this is the mail system at host",
    "this is the qmail-send program",
    "i'm sorry to have to inform you",
    "i am sorry to have to inform you",
    "this message was created automatically by mail delivery software",
    "mail delivery software",
    "the original message was received at",
    "message could not be",
    "there was an error delivering your mail",
    "error delivering your mail",
    "delivery attempts will continue",
    "will continue to retry",
    "will be retried",
    "still trying",
    "message is delayed",
    "has been delayed",
    "delayed delivery",
    "not delivered to",
    "virus was found",
    "contained a virus",
    "infected with",
    "was quarantined",
    # German
    "konnte nicht zugestellt werden",
    "nicht zugestellt",
    "unzustellbar",
    "zustellung fehlgeschlagen",
    "nicht zustellbar",
    "empfänger unbekannt",
    "postfach voll",
    "postfach ist voll",
    "konnte nicht ausgeliefert werden",
    # French
    "n'a pas pu être remis",
    "n'a pas pu être distribué",
    "n'a pas été remis",
    "non remis",
    "non distribuable",
    "échec de la remise",
    "échec de remise",
    "impossible de remettre",
    "impossible de distribuer",
    "destinataire inconnu",
    "adresse inconnue",
    # Spanish
    "no se pudo entregar",
    "no se puede entregar",
    "no ha podido ser entregado",
    "no pudo ser entregado",
    "no entregado",
    "error de entrega",
    "fallo en la entrega",
    "destinatario desconocido",
    # Italian
    "non è stato possibile recapitare",
    "non è stato possibile consegnare",
    "impossibile recapitare",
    "impossibile consegnare",
    "mancato recapito",
    "non recapitabile",
    "non consegnato",
    "destinatario sconosciuto",
    # Portuguese
    "não pôde ser entregue",
    "não foi possível entregar",
    "não foi entregue",
    "não entregue",
    "falha na entrega",
    "falha de entrega",
    # Dutch
    "kon niet worden afgeleverd",
    "kon niet worden bezorgd",
    "kan niet worden bezorgd",
    "niet afgeleverd",
    "niet bezorgd",
    "onbestelbaar",
    # Nordic
    "kunde inte levereras",
    "kunne ikke leveres",
    "kunne ikke afleveres",
    "ei voitu toimittaa",
    "ei voitu perille",
    # Polish, Czech, Slovak, Hungarian, Romanian
    "nie można dostarczyć",
    "nie został dostarczony",
    "nie została dostarczona",
    "nie dostarczono",
    "niedostarczalna",
    "nelze doručit",
    "nebyla doručena",
    "nebola doručená",
    "nem kézbesíthető",
    "nem sikerült kézbesíteni",
    "nu a putut fi livrat",
    # Russian, Ukrainian, Turkish, Greek
    "не может быть доставлено",
    "не может быть доставлен",
    "не удалось доставить",
    "не доставлено",
    "недоставлен",
    "не вдалося доставити",
    "teslim edilemedi",
    "iletilemedi",
    "δεν ήταν δυνατή η παράδοση",
    # Japanese, Chinese, Korean
    "配信できませんでした",
    "送信できませんでした",
    "届きませんでした",
    "配送できませんでした",
    "配送が遅延",
    "配信が遅延",
    "送信が遅延",
    "配信に失敗",
    "送信に失敗",
    "宛先不明",
    "メールボックスが一杯",
    "无法投递",
    "投递失败",
    "无法送达",
    "未能送达",
    "发送失败",
    "退信",
    "無法傳遞",
    "無法投遞",
    "傳送失敗",
    "전달되지 못했",
    "전송되지 못했",
    "배달 실패",
    "전송 실패",
)
_FAILURE = _Lazy(lambda: _alternation(_FAILURE_PHRASES))
# A 4xx/5xx SMTP reply next to an enhanced status code, or after words a server's diagnostic
# uses ("smtp; 550", "said: 550", "remote host returned 550"); not a bare "error 500". Searched
# in lower-cased text (:func:`_search`), only where a 4xx/5xx number appears at all (both
# branches need one; a scan for it costs a tenth of the pattern's).
_FAILURE_CODE = re.compile(
    r"(?<![0-9.])[45][0-9][0-9][ -]#?[45]\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9])"
    r"|(?:smtp;?|said:|host returned|server returned|remote host|remote server|diagnostic-code:)"
    r"[ \t]{0,4}[^\n]{0,40}?(?<![0-9])[45][0-9][0-9](?![0-9])"
)
_REPLY_CODE = re.compile(r"[45][0-9][0-9]")


def failure_phrase(text: str) -> str | None:
    """A delivery-failure (or delay) sentence or a server's 4xx/5xx diagnostic in ``text``."""
    found = _search(_FAILURE, text)
    return _failure_code(text) if found is None else found


def _failure_code(text: str) -> str | None:
    """A server's 4xx/5xx diagnostic in ``text`` (what :func:`failure_phrase` looks for when
    no failure sentence is there)."""
    return _search(_FAILURE_CODE, text) if _REPLY_CODE.search(text) is not None else None


_DELAY_PHRASES = (
    "delayed",
    "delay",
    "has not yet been delivered",
    "not yet been delivered",
    "not been delivered yet",
    "not delivered yet",
    "temporary problem delivering",
    "delivery attempts will continue",
    "will continue to retry",
    "will continue trying",
    "will be retried",
    "will retry",
    "still trying",
    "still being retried",
    "is still in the queue",
    "could not send message for past",
    "temporarily deferred",
    "deferred",
    "no action is required on your part",
    "verzögert",
    "noch nicht zugestellt",
    "retardé",
    "retardée",
    "pas encore été remis",
    "retrasado",
    "todavía no se ha entregado",
    "ritardat",
    "non è ancora stato recapitato",
    "vertraagd",
    "nog niet afgeleverd",
    "atrasad",
    "försenad",
    "forsinket",
    "opóźnion",
    "zpožděn",
    "задерж",
    "遅延",
    "延迟",
    "延遲",
    "지연",
)
_DELAY = _Lazy(lambda: _alternation(_DELAY_PHRASES))


def delay_phrase(text: str) -> str | None:
    """A phrase saying delivery is only delayed and will be retried (status class 4)."""
    return _search(_DELAY, text)


_BOUNCE_SUBJECTS = (
    "undeliverable",
    "undelivered",
    "undeliverable mail",
    "undelivered mail returned to sender",
    "delivery status notification",
    "delivery notification",
    "delivery report",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "delivery problem",
    "delivery delayed",
    "delayed mail",
    "delivery delay",
    "message delayed",
    "zustellung verzögert",
    "entrega retrasada",
    "mail delivery failed",
    "mail delivery failure",
    "mail delivery system",
    "mail delivery subsystem",
    "message delivery failure",
    "non-delivery",
    "nondeliverable",
    "non deliverable",
    "returned mail",
    "returned to sender",
    "return to sender",
    "failure notice",
    "failure delivery",
    "mail system error",
    "mail error",
    "bounce notification",
    "bounced mail",
    "email bounce",
    "mail could not be delivered",
    "message could not be delivered",
    "could not be delivered",
    "not delivered",
    "warning: could not send message",
    "message not delivered",
    "virus detected",
    "virus found",
    "virus alert",
    "unzustellbar",
    "nicht zustellbar",
    "nicht zugestellt",
    "zustellungsfehler",
    "non remis",
    "non distribuable",
    "échec de remise",
    "échec de la remise",
    "no se puede entregar",
    "no se pudo entregar",
    "mensaje no entregado",
    "no entregado",
    "non recapitabile",
    "mancato recapito",
    "impossibile recapitare",
    "não entregue",
    "mensagem não entregue",
    "onbestelbaar",
    "niet afgeleverd",
    "kan niet worden bezorgd",
    "olevererbart",
    "kunde inte levereras",
    "ikke leverbar",
    "kunne ikke leveres",
    "niedostarczalna",
    "nie dostarczono",
    "nedoručitelné",
    "nedoručitelná",
    "kézbesíthetetlen",
    "недоставлен",
    "не доставлено",
    "iletilemedi",
    "teslim edilemedi",
    "メールエラー",
    "配送遅延",
    "配信遅延",
    "配信エラー",
    "送信エラー",
    "エラー通知",
    "未配達",
    "配信不能",
    "返送",
    "退信",
    "投递失败",
    "投递延迟",
    "延迟投递",
    "未送达",
    "無法傳遞",
    "반송",
)
_BOUNCE_SUBJECT = _Lazy(lambda: _alternation(_BOUNCE_SUBJECTS))


# Exim / Sendmail delay warnings: "Warning: message 1abc-00 delayed 24 hours".
_DELAY_SUBJECT = re.compile(
    r"^[ \t]*warning:[ \t]+message[ \t]+[^ \t]{1,80}[ \t]+delayed\b", re.IGNORECASE
)


def bounce_subject(subject: str) -> str | None:
    """A delivery-failure phrase anywhere in the subject ("Undeliverable:", "Returned mail"),
    or a delay warning ("Warning: message 1abc-00 delayed 24 hours")."""
    window = subject[:SUBJECT_WINDOW].lower()
    found = _search(_BOUNCE_SUBJECT, window)
    if found is None and "warning" in window:
        found = _search(_DELAY_SUBJECT, window)
    return found


# --------------------------------------------------------------------------- auto-replies

# Localised out-of-office subjects (Outlook's ~40 display languages, Gmail, Apple, Notes...).
_AUTO_REPLY_SUBJECT_PHRASES = (
    "out of office",
    "out of office autoreply",
    "out of office auto reply",
    "out of office reply",
    "out of the office",
    "ooo",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autoresponse",
    "autorespons",
    "automatic response",
    "automated response",
    "automated reply",
    "auto",
    "away",
    "on vacation",
    "vacation",
    "vacation reply",
    "absence",
    "absent",
    "abwesenheitsnotiz",
    "abwesenheit",
    "abwesend",
    "automatische antwort",
    "außer haus",
    "ausser haus",
    "réponse automatique",
    "reponse automatique",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "ausente",
    "risposta automatica",
    "fuori sede",
    "fuori ufficio",
    "resposta automática",
    "resposta automàtica",
    "ausência",
    "automatisch antwoord",
    "afwezig",
    "automatiskt svar",
    "automatisk svar",
    "autosvar",
    "frånvaro",
    "fravær",
    "automaattinen vastaus",
    "poissa",
    "automatyczna odpowiedź",
    "odpowiedź automatyczna",
    "poza biurem",
    "automatická odpověď",
    "automatická odpoveď",
    "automatikus válasz",
    "răspuns automat",
    "automatski odgovor",
    "samodejni odgovor",
    "automātiskā atbilde",
    "automatinis atsakymas",
    "automaatvastus",
    "erantzun automatikoa",
    "автоматический ответ",
    "автоответ",
    "автоматична відповідь",
    "автоматичен отговор",
    "αυτόματη απάντηση",
    "otomatik yanıt",
    "otomatik cevap",
    "תשובה אוטומטית",
    "رد تلقائي",
    "trả lời tự động",
    "ตอบกลับอัตโนมัติ",
    "balasan otomatis",
    "balasan automatik",
    "स्वचालित उत्तर",
    "自动回复",
    "自動回覆",
    "自動回复",
    "自動応答",
    "自動返信",
    "不在",
    "자동 회신",
    "자동 응답",
    "absence du bureau",
    "absent du bureau",
    "absente du bureau",
    "不在通知",
    "不在のお知らせ",
    "不在連絡",
    "부재중",
    "부재 중",
)
_AUTO_REPLY_SUBJECT = _Lazy(
    lambda: (
        r"[ \t]*(?:\[[ \t]*(?P<bracketed>"
        + _alternation(_AUTO_REPLY_SUBJECT_PHRASES)
        + r")[ \t]*\]|(?P<prefixed>"
        + _alternation(_AUTO_REPLY_SUBJECT_PHRASES)
        + r")[ \t]*(?:[:：]|$))"
    )
)
# "Jane Doe is out of the office" (Lotus Notes), anywhere in the subject.
_OUT_OF_OFFICE_ANYWHERE = re.compile(
    r"\bis (?:currently )?(?:out of (?:the )?office|on (?:vacation|holiday|leave)|away)\b"
)
_SUBJECT_TAG = re.compile(r"[ \t]*\[[^\]\n]{1,40}\][ \t]*")


def auto_reply_subject(subject: str) -> str | None:
    """An out-of-office / autoresponder subject: the phrase *starts* the subject (after bracket
    tags such as a ticket number) followed by a colon, alone, or in brackets; or a Lotus-style
    "... is out of the office". "Out of office tomorrow, who covers?" does not match.
    """
    original = subject[:SUBJECT_WINDOW]
    text = original.lower()
    if len(text) != len(original):  # a few letters lower-case to two characters
        original = text
    position = 0
    for _ in range(3):  # "[Ticket#1] [EXT] AutoReply: ..."
        tag = _SUBJECT_TAG.match(text, position)
        if tag is None:
            break
        if _AUTO_REPLY_SUBJECT.match(tag.group(0)) is not None:
            return " ".join(original[tag.start() : tag.end()].split())
        position = tag.end()
    match = _AUTO_REPLY_SUBJECT.match(text, position)
    if match is not None:
        group = "bracketed" if match.group("bracketed") is not None else "prefixed"
        return original[match.start(group) : match.end(group)].strip()
    return _search(_OUT_OF_OFFICE_ANYWHERE, original) if "is " in text else None


_CHALLENGE_SUBJECTS = (
    "please confirm your message",
    "please confirm your email",
    "please confirm your e-mail",
    "confirm your message",
    "confirm your email address",
    "verify your email",
    "verify your e-mail",
    "verify your message",
    "please verify your message",
    "sender verification",
    "address verification",
    "email verification required",
    "spam verification",
    "verification required",
    "authorization required",
    "authorisation required",
    "challenge-response",
    "challenge response",
)
_CHALLENGE_SUBJECT = _Lazy(lambda: _alternation(_CHALLENGE_SUBJECTS))


def challenge_subject(subject: str) -> str | None:
    """A challenge-response subject ("Please confirm your message")."""
    return _search(_CHALLENGE_SUBJECT, subject[:SUBJECT_WINDOW])


# Out-of-office and autoresponder bodies, by feature. A body reads like an auto-reply when at
# least two different features match ("I am out of the office" + "back on Monday").
_ABSENCE = (
    "out of the office",
    "out of office",
    "out of the country",
    "away from the office",
    "away from my desk",
    "away from my computer",
    "i am away",
    "i'm away",
    "i am currently away",
    "i'm currently away",
    "i am out",
    "i'm out",
    "i am currently out",
    "i'm currently out",
    "i am absent",
    "i will be away",
    "i will be out",
    "i'll be out",
    "i'll be away",
    "i will be traveling",
    "i will be travelling",
    "i am traveling",
    "i am travelling",
    "on annual leave",
    "on parental leave",
    "on maternity leave",
    "on paternity leave",
    "on sick leave",
    "on leave",
    "on vacation",
    "on holiday",
    "on holidays",
    "on business travel",
    "no longer with",
    "no longer employed",
    "no longer works",
    "no longer working",
    "is no longer in use",
    "no longer in use",
    "no longer monitored",
    "no longer active",
    "nicht im büro",
    "außer haus",
    "ausser haus",
    "abwesend",
    "im urlaub",
    "in urlaub",
    "nicht erreichbar",
    "absent du bureau",
    "absente du bureau",
    "je suis absent",
    "je suis absente",
    "en congé",
    "en congés",
    "en vacances",
    "fuera de la oficina",
    "estoy fuera",
    "estaré fuera",
    "estaré ausente",
    "de vacaciones",
    "fuori ufficio",
    "fuori sede",
    "sono assente",
    "sarò assente",
    "in ferie",
    "niet op kantoor",
    "afwezig",
    "met vakantie",
    "fora do escritório",
    "estarei ausente",
    "estou ausente",
    "de férias",
    "är inte på kontoret",
    "frånvarande",
    "på semester",
    "ikke på kontoret",
    "er på ferie",
    "er fraværende",
    "poissa toimistolta",
    "lomalla",
    "poza biurem",
    "na urlopie",
    "nieobecn",
    "mimo kancelář",
    "na dovolené",
    "szabadságon",
    "в отпуске",
    "вне офиса",
    "отсутствую",
    "у відпустці",
    "izindeyim",
    "ofis dışında",
    "不在にして",
    "休暇",
    "出張",
    "休假",
    "不在办公室",
    "外出",
    "出差",
    "휴가",
    "부재",
    "in elternzeit",
    "auf dienstreise",
    "auf geschäftsreise",
    "nicht im hause",
    "nicht anwesend",
    "nicht am arbeitsplatz",
    "mutterschutz",
    "en déplacement",
    "serai absent",
    "absent jusqu",
    "absente jusqu",
    "en arrêt maladie",
    "hors du bureau",
    "estoy de baja",
    "estaré de baja",
    "me encuentro de baja",
    "estoy de viaje",
    "estaré de viaje",
    "me encuentro fuera",
    "no estaré disponible",
    "estoy ausente",
    "sono in malattia",
    "sono in trasferta",
    "sarò in trasferta",
    "niet aanwezig",
    "op vakantie",
    "met verlof",
    "em viagem",
    "de licença",
    "encontro-me ausente",
    "w delegacji",
    "na zwolnieniu",
    "är ledig",
    "tjänstledig",
    "föräldraledig",
    "på tjänsteresa",
    "borta från kontoret",
    "borte fra kontoret",
    "permisjon",
    "ikke til stede",
    "på barsel",
    "olen poissa",
    "työmatkalla",
    "нет в офисе",
    "не в офисе",
    "в командировке",
    "на больничном",
    "в декрете",
    "меня не будет",
    "tatildeyim",
    "iş seyahatinde",
    "ofiste değilim",
    "不在です",
    "お休みをいただいて",
    "お休みをいただきます",
    "请假",
    "請假",
    "不在公司",
    "출장 중",
    "외근 중",
    "연차 중",
)
_RETURN = (
    "until",
    "till",
    "through",
    "return on",
    "returning on",
    "returning to the office",
    "return to the office",
    "back on",
    "back in the office",
    "back at work",
    "back in office",
    "be back",
    "upon my return",
    "on my return",
    "when i return",
    "when i get back",
    "after my return",
    "bis zum",
    "bis einschließlich",
    "zurück",
    "wieder im büro",
    "wieder erreichbar",
    "ab dem",
    "de retour",
    "jusqu'au",
    "à mon retour",
    "hasta el",
    "a mi regreso",
    "regresaré",
    "regreso",
    "fino al",
    "al mio rientro",
    "rientrerò",
    "rientro",
    "tot en met",
    "terug op",
    "ben terug",
    "até",
    "no meu regresso",
    "retorno",
    "tillbaka",
    "tilbake",
    "tilbage",
    "asti",
    "do dnia",
    "po powrocie",
    "powrócę",
    "vrátím",
    "до ",
    "вернусь",
    "kadar",
    "戻り",
    "まで",
    "回来",
    "返回",
    "복귀",
    "dès mon retour",
    "inclus",
    "à partir du",
    "cuando vuelva",
    "a mi vuelta",
    "a partir del",
    "fino a",
    "vanaf",
    "weer bereikbaar",
    "weer aanwezig",
    "retornarei",
    "regressarei",
    "till och med",
    "frem til",
    "indtil",
    "saakka",
    "palaan",
    "после возвращения",
    "döneceğim",
    "döndüğümde",
    "以降",
    "回來",
    "까지",
    "돌아오",
)
_CONTACT = (
    "urgent",
    "pressing",
    "immediate assistance",
    "immediate attention",
    "emergency",
    "please contact",
    "please reach out",
    "in my absence",
    "my colleague",
    "colleague",
    "dringend",
    "in dringenden fällen",
    "wenden sie sich",
    "kollegen",
    "kollegin",
    "vertretung",
    "urgence",
    "collègue",
    "veuillez contacter",
    "urgente",
    "compañero",
    "compañera",
    "contacte con",
    "collega",
    "contattare",
    "dringende",
    "collega's",
    "neem contact op",
    "colega",
    "kontakta",
    "kollega",
    "kontakt",
    "pilne",
    "naléhavé",
    "срочн",
    "коллег",
    "acil",
    "緊急",
    "紧急",
    "急用",
    "긴급",
    "urgenze",
    "urgencia",
    "urgência",
    "pilnych",
    "hastesak",
    "hastesag",
    "brådskande",
    "kiireellis",
    "連絡",
    "联系",
    "聯繫",
    "급한",
    "급하신",
    "연락",
)
_LIMITED = (
    "limited access",
    "intermittent access",
    "limited e-mail access",
    "limited email access",
    "no access to email",
    "no access to e-mail",
    "without access to email",
    "will respond",
    "will reply",
    "will get back to you",
    "respond to your e-mail",
    "respond to your email",
    "respond to your message",
    "reply to your message",
    "this is an automatic reply",
    "this is an automated reply",
    "this is an automatic response",
    "this is an automated response",
    "this is an automatic message",
    "this is an automated message",
    "automatic reply",
    "automated reply",
    "auto-reply",
    "autoreply",
    "eingeschränkt",
    "keinen zugriff",
    "automatische antwort",
    "accès limité",
    "réponse automatique",
    "acceso limitado",
    "respuesta automática",
    "accesso limitato",
    "risposta automatica",
    "beperkte toegang",
    "automatisch antwoord",
    "acesso limitado",
    "resposta automática",
    "begränsad tillgång",
    "automatiskt svar",
    "ograniczony dostęp",
    "automatyczna odpowiedź",
    "ограниченный доступ",
    "автоматический ответ",
    "自動返信",
    "自动回复",
    "自動回覆",
    "ne sera pas transféré",
    "ne seront pas transférés",
    "je vous répondrai",
    "responderé",
    "contestaré",
    "risponderò",
    "uw e-mail wordt niet doorgestuurd",
    "uw bericht wordt niet doorgestuurd",
    "ihre e-mail wird nicht weitergeleitet",
    "ihre nachricht wird nicht weitergeleitet",
    "responderei",
    "odpowiem",
    "läser inte min",
    "en lue",
    "не смогу ответить",
    "отвечу",
    "erişimim olmayacak",
    "erişimim sınırlı",
    "返信いたします",
    "返信が遅れます",
    "確認が遅れます",
    "无法及时回复",
    "無法及時回覆",
    "尽快回复",
    "儘快回覆",
    "메일 확인이 어렵",
    "회신드리겠",
    "답변드리겠",
)
_TICKET_ACK = (
    "we have received your",
    "we've received your",
    "we received your",
    "has been received",
    "your request has been",
    "thank you for contacting",
    "thanks for contacting",
    "thank you for your e-mail",
    "thank you for your email",
    "thank you for your message",
    "thank you for your enquiry",
    "thank you for your inquiry",
    "we will get back to you",
    "we will respond",
    "we will reply",
    "one of our",
    "vielen dank für ihre",
    "ihre anfrage",
    "merci pour votre",
    "nous avons bien reçu",
    "gracias por su",
    "hemos recibido",
    "grazie per",
    "abbiamo ricevuto",
    "bedankt voor",
    "wij hebben uw",
    "obrigado pelo",
    "recebemos",
)
# The ticket a desk opened for the message: a ticket system's acknowledgement names it along
# with saying it received the message ("We have received your request. Your ticket number is
# 4521"), two features; either alone is what a person writes too.
_TICKET_REFERENCE = (
    "your ticket",
    "ticket number",
    "ticket #",
    "ticket id",
    "ticket no",
    "case number",
    "case #",
    "reference number",
    "request number",
    "a ticket has been created",
    "a ticket has been opened",
    "a support ticket",
    "has been assigned an id",
    "has been assigned ticket",
    "has been assigned the ticket",
    "ticketnummer",
    "vorgangsnummer",
    "numéro de ticket",
    "número de ticket",
    "número de caso",
    "numero di ticket",
    "チケット番号",
    "受付番号",
)
_CHALLENGE_VERIFY = (
    "verify that you are a human",
    "verify you are a human",
    "confirm that you are a human",
    "confirm you are a human",
    "prove you are a human",
    "you are a real person",
    "you are human",
    "not a robot",
    "sender verification",
    "address verification",
    "whitelist",
    "white list",
    "spam protection",
    "anti-spam",
    "antispam",
    "spam filter",
)
_CHALLENGE_ACTION = (
    "to have your message delivered",
    "to complete delivery",
    "to complete the delivery",
    "held pending",
    "awaiting your confirmation",
    "until you confirm",
    "click the link",
    "click on the link",
    "click the following link",
    "click here",
    "clicking the link",
    "clicking on the link",
    "clicking the following link",
    "clicking here",
    "reply to this message to confirm",
    "reply to this email to confirm",
)
_AUTO_REPLY_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("absence", _ABSENCE),
    ("return", _RETURN),
    ("contact", _CONTACT),
    ("limited", _LIMITED),
    ("acknowledgement", _TICKET_ACK),
    ("ticket", _TICKET_REFERENCE),
    ("challenge", _CHALLENGE_VERIFY),
    ("confirmation", _CHALLENGE_ACTION),
)
_AUTO_REPLY_FEATURES: tuple[tuple[str, _Lazy], ...] = tuple(
    (name, _Lazy(functools.partial(_alternation, phrases))) for name, phrases in _AUTO_REPLY_TABLES
)


def auto_reply_features(text: str) -> dict[str, str]:
    """Which features of an out-of-office / autoresponder / challenge text ``text`` shows.

    Keys: ``absence`` ("I am out of the office"), ``return`` ("back on Monday"), ``contact``
    ("for urgent matters please contact"), ``limited`` ("limited access to email", "this is
    an automatic reply"), ``acknowledgement`` (a ticket system's "we have received your
    message"), ``ticket`` (the ticket it opened: "your ticket number is"), ``challenge``
    ("verify that you are a human") and ``confirmation`` ("click the link to have your message
    delivered"); values are the matched phrase.
    One feature alone is ordinary prose; an auto-reply shows two or more.
    """
    found: dict[str, str] = {}
    for name, pattern in _AUTO_REPLY_FEATURES:
        phrase = _search(pattern, text)
        if phrase is not None:
            found[name] = phrase
    return found


# --------------------------------------------------------------------------- notices

# Monitoring and system tools' own templates (Nagios, Icinga, Zabbix, Alertmanager and
# Grafana, smartd, logwatch): a person does not write these lines, but pastes them.
_TOOL_TEMPLATE_LINES = (
    "notification type: problem",
    "notification type: recovery",
    "***** nagios *****",
    "***** icinga",
    "***** host monitoring",
    "***** service monitoring",
    "original problem id:",
    "alertname =",
    "alertname:",
    "this message was generated by the",
    "processing initiated:",
)
_NOTICE_PHRASES = (
    "do not reply",
    "don't reply",
    "please do not respond",
    "do not respond to this",
    "do-not-reply",
    "no-reply",
    "noreply",
    "replies to this email",
    "replies to this e-mail",
    "replies to this message",
    "this mailbox is not monitored",
    "this inbox is not monitored",
    "this address is not monitored",
    "unmonitored",
    "this is an automated message",
    "this is an automated email",
    "this is an automated e-mail",
    "this is an automated notification",
    "this is an automatic message",
    "this is an automatic email",
    "this is an automatic notification",
    "this message was sent automatically",
    "this email was sent automatically",
    "this e-mail was sent automatically",
    "this message was automatically generated",
    "this email was automatically generated",
    "this is a system generated",
    "system-generated",
    "system generated",
    "computer generated",
    "automatically generated",
    "auto-generated",
    "generated automatically",
    "sent from an unmonitored",
    "this notification was sent",
    "you are receiving this notification",
    "you are receiving this email because",
    "you are receiving this e-mail because",
    "you received this email because",
    "you have received this email because",
    "you received this notification",
    *_TOOL_TEMPLATE_LINES,
    "bitte antworten sie nicht",
    "nicht auf diese e-mail",
    "nicht auf diese nachricht",
    "automatisch erstellt",
    "automatisch generiert",
    "automatisch versendet",
    "automatisch gegenereerd",
    "niet beantwoorden",
    "ne pas répondre",
    "ne répondez pas",
    "généré automatiquement",
    "envoyé automatiquement",
    "no responda",
    "no responder",
    "generado automáticamente",
    "enviado automáticamente",
    "non rispondere",
    "generata automaticamente",
    "generato automaticamente",
    "não responda",
    "gerado automaticamente",
    "svara inte",
    "ikke svar",
    "nie odpowiadaj",
    "wygenerowana automatycznie",
    "neodpovídejte",
    "не отвечайте",
    "сгенерировано автоматически",
    "автоматически",
    "yanıtlamayınız",
    "返信しないで",
    "返信いただけません",
    "返信できません",
    "自動送信",
    "自動配信",
    "请勿回复",
    "請勿回覆",
    "自动发送",
    "系统自动",
    "회신하지 마",
)
_NOTICE = _Lazy(lambda: _alternation(_NOTICE_PHRASES))
TOOL_TEMPLATE_LINES = frozenset(_TOOL_TEMPLATE_LINES)
"""The notice phrases that are lines of a monitoring tool's own template: a person who
pastes an alert to the desk writes them too, so they say "a machine" only of mail a tool
sent (``classify``: a tool's name in the From address)."""


def notice_phrase(text: str) -> str | None:
    """A machine notice's footer: "please do not reply", "this is an automated message"."""
    return _search(_NOTICE, text)


_LIST_FOOTER_PHRASES = (
    "mailing list submissions",
    "mailing list",
    "to unsubscribe",
    "unsubscribe from this list",
    "unsubscribe",
    "you are subscribed",
    "you are receiving this because you",
    "you received this message because you are subscribed",
    "manage your subscription",
    "no longer wish to receive",
    "no longer want to receive",
    "nicht mehr erhalten",
    "ne plus recevoir",
    "ne souhaitez plus recevoir",
    "no desea recibir",
    "ya no desea recibir",
    "non desideri più ricevere",
    "non desideri ricevere",
    "niet langer ontvangen",
    "não deseja mais receber",
    "update your preferences",
    "email preferences",
    "abbestellen",
    "abmelden",
    "newsletter",
    "se désabonner",
    "se désinscrire",
    "désinscription",
    "darse de baja",
    "darte de baja",
    "cancelar suscripción",
    "disiscriviti",
    "cancellare l'iscrizione",
    "uitschrijven",
    "afmelden",
    "descadastrar",
    "cancelar inscrição",
    "avregistrera",
    "avslutt abonnement",
    "wypisz się",
    "odhlásit",
    "отписаться",
    "配信停止",
    "退订",
    "取消订阅",
    "수신거부",
)
_LIST_FOOTER = _Lazy(lambda: _alternation(_LIST_FOOTER_PHRASES))


def list_footer(text: str) -> str | None:
    """A list or newsletter masthead/footer ("To unsubscribe", "mailing list submissions")."""
    return _search(_LIST_FOOTER, text)


# --------------------------------------------------------------------------- the body at once


class _Scanner:
    """Several phrase tables searched in one pass: each table's first match, exactly as a
    search of that table alone (:func:`_search`) finds it.

    ``re`` tries a trie's branches one after the other at every position of a text, so one
    search costs about as many tests per character as the trie has first characters, and one
    search per table pays that again for every table. Here the phrases of all the tables are
    split by their first character into one pattern each: ``re`` looks for a pattern that
    starts with a literal character by a fast scan for that character, so a pattern is tried
    only where its character is. The positions where some phrase matches are taken in text
    order (merged over the patterns by a heap), and at each one the tables still without a
    match that have a phrase starting there are matched, anchored, with their own patterns: a
    table's first match is at the first such position where it matches at all, and it is the
    match its own search finds there. A pattern's hit is some table's phrase, so at each hit
    a table still waiting gets its match, or the hit belongs to a table matched before; either
    way the tables still waiting go on from there with patterns of their own phrases only (one
    per table and character, compiled when first needed), and a table matched never stops the
    scan again. So each pattern is taken from the heap at most once: linear in the text, with
    at most one scan per character and one per table and character.
    """

    def __init__(self, tables: tuple[tuple[str, tuple[str, ...], _Lazy], ...]) -> None:
        self._tables = tables
        self._groups: list[tuple[str, re.Pattern[str], tuple[int, ...]]] | None = None
        self._own_patterns: dict[tuple[str, int], re.Pattern[str]] = {}

    def _patterns(self) -> list[tuple[str, re.Pattern[str], tuple[int, ...]]]:
        """One pattern per first character, with that character and the tables that have a
        phrase starting with it (compiled on first use, as the tables are)."""
        if self._groups is None:
            phrases: dict[str, set[str]] = {}
            owners: dict[str, set[int]] = {}
            for index, (_, table, _) in enumerate(self._tables):
                for phrase in table:
                    low = phrase.lower()
                    phrases.setdefault(low[0], set()).add(low)
                    owners.setdefault(low[0], set()).add(index)
            self._groups = [
                (
                    first,
                    re.compile(_alternation(tuple(sorted(group)))),
                    tuple(sorted(owners[first])),
                )
                for first, group in sorted(phrases.items())
            ]
        return self._groups

    def _own(self, first: str, index: int) -> re.Pattern[str]:
        """The phrases of table ``index`` that start with ``first`` (compiled on first use)."""
        pattern = self._own_patterns.get((first, index))
        if pattern is None:
            phrases = {p.lower() for p in self._tables[index][1]}
            chosen = tuple(sorted(p for p in phrases if p[0] == first))
            pattern = self._own_patterns[(first, index)] = re.compile(_alternation(chosen))
        return pattern

    def first_matches(self, text: str) -> dict[str, str]:
        """Each table's first phrase in ``text`` (quoted as :func:`_search` quotes it), by the
        table's name, in the order of the tables; a table without a match is left out."""
        low = text.lower()
        pending = set(range(len(self._tables)))
        found: dict[int, str] = {}
        # (position, order, first character, pattern, tables): each pattern's next match
        hits: list[tuple[int, int, str, re.Pattern[str], tuple[int, ...]]] = []
        order = itertools.count()

        def look(first: str, pattern: re.Pattern[str], owners: tuple[int, ...], pos: int) -> None:
            hit = pattern.search(low, pos)
            if hit is not None:
                heapq.heappush(hits, (hit.start(), next(order), first, pattern, owners))

        for first, pattern, owners in self._patterns():
            # a pattern is only searched for where its first character is: a text of
            # characters outside Latin-1 gets no fast scan for a missing one from ``re``
            # (some 40 µs a pattern at 16 KB; ``in`` takes under one)
            if first == " " or first in low:
                look(first, pattern, owners, 0)
        while hits and pending:
            start, _, first, pattern, owners = heapq.heappop(hits)
            waiting = []
            for index in owners:
                if index in pending:
                    match = self._tables[index][2].match(low, start)
                    if match is None:
                        waiting.append(index)
                    else:
                        found[index] = _quoted(text, low, match)
                        pending.discard(index)
            # the hit is a phrase of a table now matched, or matched before: those still
            # waiting go on alone, where the phrases of the tables done no longer count
            for index in waiting:
                look(first, self._own(first, index), (index,), start + 1)
        return {self._tables[index][0]: found[index] for index in sorted(found)}


_BODY = _Scanner(
    (
        ("failure", _FAILURE_PHRASES, _FAILURE),
        *(
            (name, phrases, pattern)
            for (name, phrases), (_, pattern) in zip(
                _AUTO_REPLY_TABLES, _AUTO_REPLY_FEATURES, strict=True
            )
        ),
        ("notice", _NOTICE_PHRASES, _NOTICE),
        ("footer", _LIST_FOOTER_PHRASES, _LIST_FOOTER),
    )
)


@attrs.frozen
class BodyPhrases:
    """What a body says, as :func:`body_phrases` reads it: ``failure`` as
    :func:`failure_phrase`, ``auto_reply`` as :func:`auto_reply_features`, ``notice`` as
    :func:`notice_phrase` and ``footer`` as :func:`list_footer` find them."""

    failure: str | None
    auto_reply: dict[str, str]
    notice: str | None
    footer: str | None


def body_phrases(text: str) -> BodyPhrases:
    """:func:`failure_phrase`, :func:`auto_reply_features`, :func:`notice_phrase` and
    :func:`list_footer` of ``text`` at once, with their very results, in one pass over the
    text instead of ten (:class:`_Scanner`): about a fifth of their time on prose, where
    none or few of the phrases are."""
    found = _BODY.first_matches(text)
    failure = found.pop("failure", None)
    notice = found.pop("notice", None)
    footer = found.pop("footer", None)
    return BodyPhrases(
        failure=_failure_code(text) if failure is None else failure,
        auto_reply=found,
        notice=notice,
        footer=footer,
    )


# --------------------------------------------------------------------------- report subjects

_DIGEST_SUBJECT = re.compile(
    r"\bdigest,? vol(?:ume)?\.? ?[0-9]{1,6}\b|\bdigest (?:number|no\.?) ?[0-9]{1,6}\b"
    r"|\bdigest [0-9]{1,6}(?:\.[0-9]{1,6})?\b",
    re.IGNORECASE,
)


def digest_subject(subject: str) -> str | None:
    """A list digest subject ("Users Digest, Vol 12, Issue 3"; "Ppp digest, Vol 1 #2")."""
    window = subject[:SUBJECT_WINDOW].lower()
    return _search(_DIGEST_SUBJECT, window) if "digest" in window else None


# RFC 7489 7.2.1.1: "Report Domain: <domain> Submitter: <domain> Report-ID: <id>".
_DMARC_SUBJECT = re.compile(r"report[ -]?domain:[^\n]{1,300}?submitter:", re.IGNORECASE)
# RFC 7489 7.2.1.1: "receiver "!" policy-domain "!" begin-timestamp "!" end-timestamp ...".
_DMARC_NAME = re.compile(
    r"^[A-Za-z0-9.-]{1,253}![A-Za-z0-9.-]{1,253}![0-9]{6,12}![0-9]{6,12}(?:![^.]{0,64})?"
    r"\.(?:xml|zip|gz|xml\.gz)$",
    re.IGNORECASE,
)


def dmarc_report_subject(subject: str) -> str | None:
    """The subject RFC 7489 7.2.1.1 prescribes for a DMARC aggregate report."""
    window = subject[:SUBJECT_WINDOW].lower()
    return _search(_DMARC_SUBJECT, window) if "submitter" in window else None


def dmarc_report_name(filename: str) -> bool:
    """True for a DMARC aggregate report file name (``receiver!domain!begin!end.zip``)."""
    return _DMARC_NAME.match(filename[:600]) is not None


_REPORT_SUBJECTS = (
    "abuse report",
    "complaint about message",
    "spam complaint",
    "spam report",
    "feedback report",
    "fbl report",
    "dmarc aggregate report",
    "dmarc failure report",
    "dmarc forensic report",
)
_REPORT_SUBJECT = _Lazy(lambda: _alternation(_REPORT_SUBJECTS))


def report_subject(subject: str) -> str | None:
    """A complaint / feedback-loop report subject ("complaint about message from 192.0.2.1")."""
    return _search(_REPORT_SUBJECT, subject[:SUBJECT_WINDOW])


# Read receipts that Outlook and Exchange send as text (not as an RFC 8098 MDN): the
# subject is the original one after "Read:" in the sender's display language, and the body
# says the message "was read on" a date (or was deleted without being read).
_READ_SUBJECT = re.compile(
    r"[ \t]{0,4}(read|not read|lu|non lu|gelesen|ungelesen|leído|leido|no leído|letto|"
    r"non letto|gelezen|niet gelezen|läst|inte läst|lest|læst|luettu|lido|não lido|"
    r"przeczytano|przeczytane|nieprzeczytane|přečteno|olvasott|okundu|прочитано|"
    r"не прочитано|已读|已讀|未读|開封済み|읽음)[ \t]{0,2}[:：]",
    re.IGNORECASE,
)
_READ_BODY = re.compile(
    r"was read on|was deleted without being read|a été lu le|a été lu |"
    r"a été supprimé sans avoir été lu|wurde am [^\n]{0,80}?gelesen|wurde gelesen|"
    r"wurde ungelesen gelöscht|fue leído|fue leido|se eliminó sin leer|è stato letto|"
    r"è stato eliminato senza essere letto|is gelezen op|is gelezen|lästes|blev läst|"
    r"ble lest|blev læst|luettiin|foi lida|foi lido|została przeczytana|"
    r"zostało przeczytane|byla přečtena|было прочитано|已于[^\n]{0,40}?阅读|已讀取|"
    r"開封されました|읽었습니다",
    re.IGNORECASE,
)
_RECEIPT_SCAN = 4096


def read_receipt_subject(subject: str) -> str | None:
    """The "Read:" prefix (or a translation) a text read receipt's subject starts with."""
    match = _READ_SUBJECT.match(subject[:SUBJECT_WINDOW])
    return match.group(1) if match is not None else None


def read_receipt_body(text: str) -> str | None:
    """The sentence of a text read receipt ("... was read on ...") in ``text``, or None."""
    match = _READ_BODY.search(text[:_RECEIPT_SCAN])
    return match.group(0) if match is not None else None


# Subjects that cron and monitoring systems write and people do not: cron's "Cron
# <user@host> command", Nagios/Icinga's "** PROBLEM Service Alert: web01/HTTP is CRITICAL **",
# Prometheus Alertmanager's "[FIRING:2] InstanceDown", logwatch's "Logwatch for host (Linux)"
# (at the start only). Each starts with a literal, so the search is linear. Alertmanager's
# firing subject always carries its count; a bare "[RESOLVED]" or "[Firing]" is how people tag
# their own subjects, so it is no clue.
_MACHINE_NOTICE_SUBJECT = re.compile(
    r"cron <[^\s<>@]{1,64}@[^\s<>]{1,255}>"
    r"|\*\* ?(?:problem|recovery|acknowledgement|flappingstart|flappingstop|flappingdisabled|"
    r"downtimestart|downtimeend|downtimecancelled|custom) (?:service|host) "
    r"(?:alert|notification)\b"
    r"|\[firing:[0-9]{1,6}\]"
    r"|^logwatch for ",
    re.IGNORECASE,
)


def machine_notice_subject(subject: str) -> str | None:
    """A cron job's or monitoring system's subject format in ``subject``, or None."""
    match = _MACHINE_NOTICE_SUBJECT.search(subject[:SUBJECT_WINDOW])
    return match.group(0) if match is not None else None


# Every word any subject matcher above needs, for one quick "could anything match?" test.
_SUBJECT_KEYWORDS = _Lazy(
    lambda: _alternation(
        (
            *_AUTO_REPLY_SUBJECT_PHRASES,
            *_BOUNCE_SUBJECTS,
            *_CHALLENGE_SUBJECTS,
            *_REPORT_SUBJECTS,
            *("digest", "submitter", "warning", "out of", "vacation", "leave"),
        )
    )
)


def subject_may_signal(subject: str) -> bool:
    """False when no subject matcher can match (most subjects): one trie search."""
    return _SUBJECT_KEYWORDS.search(subject[:SUBJECT_WINDOW].lower()) is not None
