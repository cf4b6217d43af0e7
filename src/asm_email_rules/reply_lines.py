"""What a line of a reply is: attribution, Outlook header label, separator, signature, quote.

The multilingual vocabulary (attribution verbs and openers, header labels, separator and
forward phrases, valedictions, device signatures) and the line tests that
:mod:`~asm_email_rules.truncate` uses to find where the quoted history starts. Each test looks
at a bounded number of lines and characters, so the truncation pass stays linear.
"""

from __future__ import annotations

import itertools
import re

__all__ = [
    "ATTR_LAST_CHARS",
    "COLON_ENDS",
    "NAME_SIGNATURE_RE",
    "START_PREFIXES",
    "START_RE",
    "TOBIT_SEPARATOR",
    "attribution_at",
    "has_announcement_words",
    "header_block_at",
    "inline_answers_announced",
    "is_bare_separator",
    "is_device_line",
    "is_groupwise_header",
    "is_rule",
    "is_separator",
    "is_sig_delimiter",
    "is_valediction",
    "notes_header_start",
    "split_flattened_line",
    "split_shared_line",
]

#: Lines longer than this are never attributions, header lines or separators.
_MAX_PROBE = 300
#: Physical lines an attribution may span (a small constant keeps the pass linear).
_MAX_ATTR_LINES = 3
#: Wider window for "On <date> <name>" whose address and "wrote:" come after blank lines.
_MAX_ATTR_WINDOW = 6
#: Lines after a header label scanned for the other labels of an Outlook header block.
_HEADER_WINDOW = 8


# --------------------------------------------------------------------------- vocabulary

# Words (and a few phrases) that end an attribution ("<who> wrote:", "... said:", "... a dit :"),
# in the display languages of Gmail, Outlook, Apple Mail and Thunderbird; matched (casefolded)
# as whole words near the end of the line.
_END_WORDS_TEXT = (
    # English
    "wrote writes said says replied responded answered",
    # German, French, Spanish, Portuguese, Italian, Catalan
    "schrieb geschrieben schreibt sagte antwortete écrit écrivait répondu",
    "escribió escribio respondió respondio contestó contesto dijo escreveu respondeu disse",
    "scritto scrisse risposto escriure",
    # Dutch, Danish, Norwegian, Swedish, Finnish, Icelandic, Estonian, Latvian, Lithuanian
    "schreef geschreven antwoordde skrev skriver svarede svarte svarade kirjoitti vastasi",
    "skrifaði kirjutas rakstīja rašė parašė",
    # Polish, Czech, Slovak, Croatian, Serbian, Bosnian, Slovene, Romanian, Hungarian
    "napisał napisała napisal odpisał odpisała odpowiedział odpowiedziała pisze napsal",
    "napsala napísal napísala odpověděl odpověděla napisao scris scrie írta írt válaszolt",
    # Turkish, Russian, Ukrainian, Bulgarian, Greek
    "yazdı yanıtladı cevapladı написал написала ответил ответила пишет написав відповів",
    "відповіла пише написа отговори έγραψε απάντησε написао написала",
    # Indonesian, Malay, Vietnamese, Hebrew, Arabic, Persian, Hindi
    "menulis viết כתב כתבה كتب نوشت लिखा",
    # Swahili, Afrikaans, Albanian, Basque, Galician, Welsh, Zulu (Gmail display languages)
    "aliandika geskryf shkroi idatzi escribiu ysgrifennodd wabhala",
    # Bengali, Urdu, Marathi, Gujarati, Punjabi, Tamil, Telugu, Kannada, Malayalam
    "লিখেছেন لکھا लिहिले લખ્યું ਲਿਖਿਆ எழுதினார் రాశారు ಬರೆದಿದ್ದಾರೆ എഴുതി",
)
_END_WORDS = frozenset(" ".join(_END_WORDS_TEXT).split()) | frozenset(
    ("a dit", "a répondu", "ha detto", "ha dicho", "ha escrito", "va escriure")
)
#: end words of scripts written without spaces: matched as substrings of the line's end
_END_CJK = (
    "写道", "寫道", "のメッセージ", "のメール", "は書きました", "書きました", "書き込みました",
    "작성", "쓴 글", "เขียน",
)  # fmt: skip
#: attributions that open with their verb, the name and date after it (Apple Mail Polish:
#: "Wiadomość napisana przez <name> <addr> w dniu 26.11.2026, o godz. 16:02:")
_VERB_FIRST_OPENERS = ("wiadomość napisana przez ",)
#: characters after the end word ("<name> <addr>:") an attribution may still carry
_END_TAIL_MAX = 150
_EVIDENCE_RE = re.compile(r"[@\d]")
_TIME_RE = re.compile(r"\d[:.]\d\d")
#: a clock time standing alone ("16:02", "kl. 10.00"), not a piece of a dotted date ("26.11.2026")
_CLOCK_RE = re.compile(r"(?<![\d.])\d{1,2}[:.]\d\d(?![\d.])")
_YEAR_RE = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)|\d年")
#: a date as attributions write it: a year ("2026", "2026年") or all numbers ("26/11/26",
#: "26.11.26", "2026-11-26", Czech and Slovak "26. 11. 26")
_DATE_RE = re.compile(
    _YEAR_RE.pattern
    + r"|(?<!\d)\d{1,4}[./\-]\d{1,2}[./\-]\d{2,4}(?!\d)|(?<!\d)\d{1,2}\. \d{1,2}\. \d{2,4}(?!\d)"
)
_END_SEARCH_RE = re.compile("|".join(sorted(_END_WORDS, key=len, reverse=True)))
# Words that open an attribution; used to split "reply On <date> ... wrote:" lines.
_START_WORDS = r"On|Am|Le|El|Em|Il|Op|Den|På|Vào|Dnia|Dne|Dňa|Dana|Pada|În|Στις|W\s+dniu"
START_PREFIXES = frozenset(
    ("On", "Am", "Le", "El", "Em", "Il", "Op", "De", "På", "Và", "Dn", "Dň", "Da", "Pa", "În")
) | {"Στ", "W "}
START_RE = re.compile(rf"(?:{_START_WORDS})\s")
_DATE_START_RE = re.compile(r"\d{1,4}[./\-年 ]")
_MIDLINE_START_RE = re.compile(rf"(?<=[\s\-])(?:{_START_WORDS})\s")
#: Horde's quote intro ("Quoting Name <addr>:") in its English, German, French and Spanish
#: wording; counts only over a quote block
_QUOTING_OPENERS = ("quoting ", "zitat von ", "citation de ", "citando ")
#: a bracketed date before the final colon, as mutt writes it: "* Name <addr> [2026-11-26 16:02]:"
_BRACKETED_TAIL_RE = re.compile(r"[ \t]*[\[(][^\[\]()<>@]{1,40}[\])][ \t]*(?=[:：]\Z)")

# Outlook's (and Gmail's forward) header labels in each display language, by kind. A header
# block needs two kinds, one of them From or Sent/Date; "other" labels (Organization, Importance,
# Attachments) stay inside a block but do not count as a kind. Sources: Outlook/Gmail display
# languages, and the label tables of mail-parser-reply (da, de, es, ko, pl, zh: Kopi, Dato,
# Vedhæftet, DW, 보낸 사람, 组织, Organisation).
_FROM, _DATE, _TO, _CC, _SUBJECT, _OTHER = "from", "date", "to", "cc", "subject", "other"
_LABEL_WORDS = (
    (
        _FROM,
        "from|von|de|da|fra|från|od|van|lähettäjä|от|від|fram|feladó|kimden|expéditeur|remitente|"
        "mittente|afzender|avsändare|nadawca|odesílatel|发件人|寄件者|寄件人|差出人|送信者|从|"
        "từ|보낸 사람|보낸사람|šalje|pošiljatelj|pošiljalac|pošiljatelj|frá|saatja|nuo|no|dari|"
        "daripada|από|מאת|من|จาก|प्रेषक|از|de la|nork|odosielateľ|шаље|од|кімнен",
    ),
    (
        _DATE,
        "sent|date|gesendet|gesendet am|datum|envoyé|envoyé le|enviado|enviado el|enviada|"
        "enviada em|enviat|enviat el|inviato|verzonden|sendt|skickat|wysłano|wysłane|data|"
        "odesláno|отправлено|дата|надіслано|lähetetty|päivämäärä|发送时间|發送時間|日期|日付|"
        "送信日時|gönderildi|gönderme tarihi|tarih|dátum|elküldve|ngày|ngày gửi|đã gửi|"
        "보낸 날짜|보낸날짜|날짜|寄件日期|poslano|poslato|odoslané|trimis|dată|изпратено|"
        "αποστολή|ημερομηνία|נשלח|תאריך|تم الإرسال|التاريخ|ส่ง|วันที่|भेजा गया|dikirim|"
        "tanggal|dihantar|tarikh|išsiųsta|nosūtīts|saadetud|kuupäev|dagsetning|noiz|fecha|"
        "ارسال شده|послато|испратено|жіберілді",
    ),
    (
        _TO,
        "to|an|à|a|para|per|aan|til|till|do|komu|кому|vastaanottaja|收件人|收件者|宛先|đến|"
        "kime|címzett|pour|destinatario|destinataire|받는 사람|받는사람|prima|za|către|до|προς|"
        "אל|إلى|ถึง|प्रति|kepada|kam|adressaat|per a|nori|reply-to|répondre à|antwort an|"
        "responder a|rispondi a|komu/to|به|прима|кімге",
    ),
    (
        _CC,
        "cc|kopie|kopia|копия|копія|抄送|副本|bcc|dw|kopi|kopio|másolatot kap|másolat|bilgi|"
        "kópia|kopija|κοιν.|κοιν|עותק|نسخة|สำเนา|प्रतिलिपि|tembusan|sk|koopia|afrit|a/c|"
        "cco|ccn|참조|숨은 참조|копие",
    ),
    (
        _SUBJECT,
        "subject|betreff|objet|asunto|assunto|oggetto|onderwerp|emne|ämne|temat|předmět|тема|"
        "aihe|主题|主題|主旨|件名|konu|tárgy|sujet|제목|predmet|subiect|θέμα|נושא|الموضوع|เรื่อง|"
        "विषय|perihal|subjek|tēma|teema|efni|assumpte|gaia|tema|chủ đề|zadeva|относно|موضوع|"
        "тақырып",
    ),
    (
        _OTHER,
        "organization|organisation|organización|organizzazione|组织|組織|importance|wichtigkeit|"
        "priorität|importancia|priorité|attachments|anhänge|anlagen|pièces jointes|adjuntos|"
        "anexos|allegati|bijlagen|vedhæftet|vedlegg|bifogade filer|załączniki|přílohy|"
        "添付ファイル|附件|첨부",
    ),
)
_HEADER_LABELS: dict[str, str] = {
    label: kind for kind, words in _LABEL_WORDS for label in words.split("|")
}
#: labels looked for inside a flattened line (one-letter labels such as "A" are too common)
_INLINE_LABELS = {
    label: kind for label, kind in _HEADER_LABELS.items() if len(label) > 1 and kind != _OTHER
}
_INLINE_LABEL_WORDS = max(len(label.split()) for label in _INLINE_LABELS)
#: a separator ("-------- Original message --------") inside a longer line
# Each run of marks is taken whole from its start (lookbehind, possessive): a long run of
# dashes is not tried again from each of its dashes, each try giving the run back one by one.
_INLINE_SEPARATOR_RE = re.compile(
    r"(?:(?<!-)-{2,}+|(?<!_)_{2,}+|(?<!=)={2,}+|(?<!\*)\*{2,}+)[ \t]*[^\-_=*\n]{3,60}?[ \t]*"
    r"(?:-{2,}|_{2,}|={2,}|\*{2,})"
)
#: longest line examined for a flattened header block
_MAX_FLATTENED = 2000
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
    # more display languages: "original / forwarded message" in Outlook, Gmail and phones
    "üzenet",
    "mesaj",
    "ileti",
    "μήνυμα",
    "메시지",
    "הודעה",
    "الرسالة",
    "ข้อความ",
    "pesan",
    "mesej",
    "správa",
    "poruka",
    "sporočilo",
    "съобщение",
    "laiškas",
    "ziņa",
    "sõnum",
    "संदेश",
    "پیغام",
    "郵件",
    "轉寄",
    "inoltrato",
    "reenviado",
    "encaminhada",
    "doorgestuurd",
    "przekazana",
    "přeposlaná",
    "továbbított",
    "iletilen",
    "пересылаемое",
    "переслане",
    "προωθημένο",
)
#: words of the separator phrases ("original", "forwarded", "message" in the display
#: languages); a framed line of other words is a separator only over a header block or quote
_SEPARATOR_WORDS = frozenset(
    " ".join(
        (
            " ".join(_SEPARATOR_KEYWORDS),
            "message messages original originale originál origine d'origine reply antwort",
            "ursprüngliche ursprüngliches weitergeleitete oprindelig opprinnelig ursprungligt",
            "alkuperäinen eredeti özgün αρχικό 원본 původní pôvodná izvorna оригинално",
            "оригинальное исходное оригінальне asli oorspronkelijk oryginalna forward fwd",
            "transféré réexpédié doorgestuurde meddelelse melding meddelande välitetty",
            "proslijeđena diteruskan 전달된 mail e-mail email the of de du del da la le el il",
        )
    ).split()
)
_SEPARATOR_MAX_WORDS = 4
#: Tobit David's separator line, "Original Message processed by david®" (or in brackets)
TOBIT_SEPARATOR = "original message processed by"
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
        "vidarebefordrat brev",
        "videresendt besked",
        "начало переадресованного сообщения",
        "początek przekazanej wiadomości",
        "转发的邮件",
        "転送されたメッセージ",
        "전달된 메시지",
    )
)

_DEVICES = r"(?:iphone|ipad|android|samsung|galaxy|huawei|xiaomi|outlook|yahoo|mobile)"
_DEVICE_RE = re.compile(
    r"(?:sent\s+from\s+my|sent\s+with|sent\s+from\s+(?:outlook|mail|yahoo|samsung|aol)"
    r"|get\s+outlook\s+for|envoyé\s+de\s+mon|envoyé\s+depuis\s+mon|von\s+meinem"
    r"|gesendet\s+von\s+meinem|enviado\s+desde\s+mi|enviado\s+do\s+meu|enviado\s+de\s+meu"
    r"|inviato\s+da(?:l)?\s+mio|verzonden\s+met|verzonden\s+vanaf\s+mijn|verstuurd\s+vanaf"
    r"|sendt\s+fra\s+min|skickat\s+från\s+min|wysłane\s+z\s+mojego|отправлено\s+с\s+моего"
    r"|надіслано\s+з\s+мого|odesláno\s+z\s+mého|lähetetty\s+iphonesta"
    # the forms without "my" that iOS and Android mail apps write in their languages
    rf"|inviato\s+da\s+{_DEVICES}|отправлено\s+с\s+{_DEVICES}|gesendet\s+von\s+{_DEVICES}"
    rf"|envoyé\s+de\s+(?:l'|mon\s+)?{_DEVICES}|enviado\s+desde\s+{_DEVICES}"
    rf"|wysłane\s+z\s+{_DEVICES}|надіслано\s+з\s+{_DEVICES})\b",
    re.IGNORECASE,
)
#: a device line of a language that puts the verb last ("iPhoneから送信", "从我的iPhone发送",
#: "나의 iPhone에서 보냄", "iPhone'umdan gönderildi"): a device name and one of these endings
_DEVICE_LAST_VERBS = ("から送信", "发送", "發送", "傳送", "에서 보냄", "gönderildi")
_DEVICE_NAME_RE = re.compile(_DEVICES, re.IGNORECASE)
#: all that comes before the device name in such a line: nothing, "from", "(from) my"
_DEVICE_LAST_OPENERS = frozenset(("", "从", "從", "我的", "从我的", "從我的", "나의", "내", "私の"))
#: all that comes between the device name and the ending: a model ("iPhone 15"), a Turkish
#: suffix ("'umdan "); a person's sentence ("Android手机的邮件不能发送") has more
_DEVICE_LAST_MIDDLE_RE = re.compile(r"[A-Za-z0-9' çğıöşüÇĞİÖŞÜ]{0,12}")
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
# Phrases that announce answers typed into the quoted history ("see my answers inline below").
# An announcement names the answers: a noun (plural, or singular after a possessive: "my
# answer", not "the answer" or "no response") or a verb of answering, with the place. "inline"
# places name the history itself (inline, in red, in your text); "below" places only say where,
# so the caller counts those only at the very end of the kept text. Either ends its clause: a
# report about another mail goes on ("I replied in your email yesterday but ...", "The answers
# in your message did not help").
_PLURAL_NOUNS_TEXT = (
    "answers replies responses comments notes remarks antworten anmerkungen kommentare",
    "bemerkungen réponses commentaires remarques respuestas comentarios notas risposte commenti",
    "antwoorden opmerkingen reacties respostas comentários",
)
_SINGULAR_NOUNS_TEXT = (
    "answer reply response comment antwort anmerkung réponse commentaire respuesta comentario",
    "risposta commento antwoord opmerking resposta comentário",
)
_POSSESSIVES_TEXT = (
    "my our meine unsere ma mes mon notre nos mi mis nuestra nuestras nuestros mia mie miei mio",
    "nostre nostri mijn onze minha minhas meu meus nossa nossas",
)
_ANSWER_VERBS_TEXT = (
    "answered replied responded commented geantwortet beantwortet kommentiert répondu commenté",
    "respondido contestado comentado risposto commentato geantwoord beantwoord gereageerd",
    "respondi comentei",
)
_NEGATIONS_TEXT = (
    "no not never without nothing kein keine keinen nicht nichts ohne aucun aucune pas sans",
    "ningún ninguna sin nessun nessuna senza geen zonder nenhum nenhuma sem",
)


def _words(texts: tuple[str, ...]) -> frozenset[str]:
    return frozenset(" ".join(texts).split())


def _alternation(words: frozenset[str]) -> str:
    return "(?:" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + ")"


_ANSWER_WORDS = _words(_PLURAL_NOUNS_TEXT + _SINGULAR_NOUNS_TEXT + _ANSWER_VERBS_TEXT)
_SEE_WORDS_TEXT = "see siehe voir ver véase vea vedi zie veja"
_SEE_WORD_SET = frozenset(_SEE_WORDS_TEXT.split())
_SEE_WORDS = _alternation(_SEE_WORD_SET)
_ANSWER_NOUNS = (
    rf"(?:(?:{_alternation(_words(_POSSESSIVES_TEXT))}\s+)?{_alternation(_words(_PLURAL_NOUNS_TEXT))}"
    rf"|{_alternation(_words(_POSSESSIVES_TEXT))}\s+{_alternation(_words(_SINGULAR_NOUNS_TEXT))})"
)
_ANSWER_VERBS = _alternation(_words(_ANSWER_VERBS_TEXT))
_INLINE_PLACES = (
    r"(?:inline|in-line|interleaved|interspersed|between the lines"
    r"|in (?:red|blue|green|bold|colou?r|caps)|in your (?:text|mail|e-?mail|message)"
    r"|im text|in (?:rot|blau|grün)|in (?:ihrer|deiner) (?:mail|nachricht)"
    r"|dans (?:le|votre|ton) (?:texte|message|mail|courriel)|en (?:rouge|bleu|vert)"
    r"|entre (?:líneas|lignes)|en (?:el|su|tu) (?:texto|correo|mensaje)|en (?:rojo|azul|verde)"
    r"|nel (?:testo|messaggio)|in (?:rosso|blu)|in (?:de tekst|het rood|rood|blauw)"
    r"|em (?:vermelho|azul|verde)|no (?:texto|e-?mail))"
)
_BELOW_PLACES = (
    r"(?:below|underneath|unten|ci-dessous|en dessous|plus bas|abajo|a continuación|sotto"
    r"|di seguito|hieronder|abaixo)"
)
#: what may follow the place before its clause ends: more places, a few set phrases
_CLAUSE_END = re.compile(
    rf"(?:\s*(?:{_INLINE_PLACES}|{_BELOW_PLACES}|as (?:usual|always|promised|requested)"
    r"|please|thanks|thank you|again|too|also|now|here|bitte|danke|wie (?:immer|gewohnt)"
    r"|merci|comme (?:d'habitude|convenu)|gracias|como siempre|grazie|come sempre|bedankt"
    r"|zoals altijd|obrigad[oa]|como sempre))*"
    r"\s*(?:[.!,;:)(\-–—…]|$)"
)
#: a negation just before an announcement ("no answers inline yet", "not answered below")
_NEGATED = re.compile(rf"(?:\b{_alternation(_words(_NEGATIONS_TEXT))}|n't)(?:\s+\w+)?\s*$")
_GREETING = (
    r"(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|thanks|thank you|hallo|liebe[rs]?"
    r"|guten (?:morgen|tag)|moin|servus|danke|bonjour|bonsoir|salut|cher|chère|merci|hola"
    r"|buenos días|buenas(?: tardes)?|estimad[oa]|gracias|ciao|salve|buongiorno|buonasera"
    r"|gentile|car[oa]|grazie|hoi|beste|goedemorgen|goedemiddag|bedankt|olá|ola|oi|bom dia"
    r"|boa tarde|prezad[oa]|obrigad[oa])"
)
#: every announcement holds one of these words (maybe with punctuation on it), as a word of
#: the line split at whitespace: a cheap test before the patterns
_ANNOUNCEMENT_WORDS = frozenset(
    f"{before}{word}{after}"
    for word in _ANSWER_WORDS | _SEE_WORD_SET | {"inline"}
    for before, after in itertools.product(("", "(", '"'), ("", ":", ",", ".", ";", "!", "?", ")"))
)
_INLINE_ANSWER_RES = (
    ("inline", re.compile(rf"\b{_ANSWER_NOUNS}\b[^.!?,;\n]{{0,30}}?\b{_INLINE_PLACES}\b")),
    ("inline", re.compile(rf"\b{_ANSWER_VERBS}\b[^.!?,;\n]{{0,30}}?\b{_INLINE_PLACES}\b")),
    ("inline", re.compile(rf"\b{_INLINE_PLACES}\b[^.!?,;\n]{{0,30}}?\b{_ANSWER_VERBS}\b")),
    ("inline", re.compile(rf"\b(?:{_SEE_WORDS}\s+inline|inline\s+{_ANSWER_NOUNS})\b")),
    ("below", re.compile(rf"\b{_ANSWER_NOUNS}\b[^.!?,;\n]{{0,30}}?\b{_BELOW_PLACES}\b")),
    ("below", re.compile(rf"\b{_ANSWER_VERBS}\b[^.!?,;\n]{{0,30}}?\b{_BELOW_PLACES}\b")),
    ("below", re.compile(rf"\b{_BELOW_PLACES}\b[^.!?,;\n]{{0,30}}?\b{_ANSWER_VERBS}\b")),
)
#: a bare "see below" that is its whole sentence (after a greeting, "please" at most): "Hi
#: Alice, please see below." yes, "Here is the log, see below." no
_SEE_BELOW = re.compile(rf"\b{_SEE_WORDS}\s+{_BELOW_PLACES}\b")
_SEE_BELOW_SENTENCE = re.compile(
    rf"(?:{_GREETING}\b[^,.!?;:\n]{{0,40}}[,!]\s*)?"
    r"(?:(?:please|pls|kindly|bitte|merci de|por favor|per favore|graag)\s+)?"
    rf"{_SEE_BELOW.pattern}\s*[.!]*"
)
#: characters of a line examined for an announcement
_MAX_ANNOUNCEMENT = 300

NAME_SIGNATURE_RE = re.compile(r"[-/][^\W\d_][\w.'’]*(?:[ \t]+[\w.'’-]+){0,3}")


# Lotus Notes' column header: the sender's name, address and date in a left column, the labels
# To, cc, Subject at the ends of the lines on the right, no "From:" label. English, German and
# French labels, by kind.
_NOTES_LABELS = {
    "to": _TO, "an": _TO, "à": _TO,
    "cc": _CC, "bcc": _CC, "kopie": _CC, "blindkopie": _CC, "copie": _CC,
    "subject": _SUBJECT, "thema": _SUBJECT, "betreff": _SUBJECT, "objet": _SUBJECT,
}  # fmt: skip
#: lines a Notes header may span, and the blank run that ends it
_NOTES_WINDOW, _NOTES_BLANK_RUN = 15, 3
#: lines of the (wrapped) subject under the Subject label, which ends the header
_NOTES_SUBJECT_LINES = 3
#: indented lines of the sender's column (name, address) above the first label line
_NOTES_SENDER_LINES = 3


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
    if core.endswith(")"):  # "X ezt írta (időpont: 2025. márc. 3., H, 10:00):" (Hungarian)
        opening = core.rfind("(", max(0, len(core) - 80))
        if opening > 0 and "@" not in core[opening:]:
            core = core[:opening].rstrip()
    cut = len(core)
    while True:  # the last colon that is not inside a time ("10:00")
        cut = max(core.rfind(":", 0, cut), core.rfind("：", 0, cut))
        if cut <= 0 or cut + 1 >= len(core):
            break
        if not (core[cut - 1].isdigit() and core[cut + 1].isdigit()):
            break
    seg = core[cut + 1 :][-(_END_TAIL_MAX + 30) :]  # the end of the text after any label
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


COLON_ENDS = (":", "：", ": ", ":  ", ":\t", "： ")
ATTR_LAST_CHARS = frozenset(":：>-_=*~")


def _classify_attribution(text: str, one_line: bool = False) -> str | None:
    """Return "strong", "weak" or None for a (joined) candidate attribution text.

    ``one_line``: the text is one physical line, so Gmail's verb-less form (a year, a time,
    an address) may be strong; joined lines may still go on to a verb ("> wrote:").
    """
    if len(text) > _MAX_PROBE or text[-1] not in ATTR_LAST_CHARS:
        return None  # cheap filter: attributions end with ":", ">" or decoration dashes
    core, decorated = _deco_strip(text)
    if not core:
        return None
    ends_colon = core[-1] in ":："
    if (ends_colon or decorated) and _end_match(core):
        # Mail programs write an address or a date with its time; a date alone ("On
        # 25/11/2026 the technician wrote:") is how a person reports what someone said.
        if "@" in core or (
            _DATE_RE.search(core) and _CLOCK_RE.search(core) and not _reported(core)
        ):
            return "strong"
        if decorated and len(core.split()) <= 8:
            return "strong"
        return "weak"
    # Gmail-style "<date> <name> <addr>:" with no verb (Japanese, Russian, ... forms), and
    # mutt's "* <name> <addr> [<date>]:": strong with a year and a time, as both always write
    # them; else only over a quote.
    bare = _without_bracketed_date(core)
    if (
        "@" in core
        and (bare[-1] == ">" or bare.endswith((">:", ">：")))
        and _has_evidence(core.replace("@", ""))
    ):
        if one_line and _TIME_RE.search(core) and _YEAR_RE.search(core):
            return "strong"
        return "weak"
    # Tutanota's "26. Nov. 2026, 16:02 von <addr>:" / "Nov 26, 2026, 16:02 by <addr>:": a bare
    # address ends it, one word ("von", "by") after the time (and its "PM"); only as one line
    # with a year ("write to a@b:", "at 16:02 write to a@b:" are prose)
    if one_line and ends_colon and "@" in core[-80:] and _YEAR_RE.search(core):
        words = core.rstrip(" \t:：").rsplit(None, 4)[1:]
        if words[-1:] and _is_address(words[-1]) and _clock_before_address(words):
            return "strong"
    if ends_colon and core.casefold().startswith(_QUOTING_OPENERS):
        return "weak"  # Horde: "Quoting Name <addr>:"
    if ends_colon and core.casefold().startswith(_VERB_FIRST_OPENERS):
        if "@" in core or (_DATE_RE.search(core) and _CLOCK_RE.search(core)):
            return "strong"
        return "weak"
    return None


def _clock_before_address(words: list[str]) -> bool:
    """The last words of a line end "<time> <word> <address>" or "<time> AM <word> <address>"."""
    if len(words) >= 3 and _CLOCK_RE.fullmatch(words[-3]):
        return True
    return (
        len(words) >= 4
        and _CLOCK_RE.fullmatch(words[-4]) is not None
        and words[-3].casefold().strip(".") in ("am", "pm")
    )


#: a speaker named with a lowercase possessive or "the" before the verb ("my manager wrote:",
#: "mon chef a écrit :"), or an article or possessive after it ("schrieb der Techniker:"), is
#: the person reporting, not a mail program's display name
_REPORTING_BEFORE = _words(
    (
        "my our the his her their your mein meine unser unsere mon ma notre votre mi nuestro",
        "nuestra mio mia mijn onze min mitt vår",
    )
)
_REPORTING_AFTER = _REPORTING_BEFORE | _words(("der die das ein eine le la un une",))
#: a verb's auxiliary before it ("a écrit", "ha scritto") that the speaker comes before
_AUXILIARIES = frozenset(("a", "ha", "va", "heeft", "hat"))


def _reported(core: str) -> bool:
    """True when the speaker next to the attribution verb is named as in prose ("On 26 Nov
    2026 at 10:00, my manager wrote:"). Only the last 20 words are read."""
    words = [word.strip(",;:()") for word in core.split()[-20:]]
    for k in range(len(words) - 1, -1, -1):
        if words[k].casefold() in _END_WORDS:
            before = k - 1 if k and words[k - 1] in _AUXILIARIES else k
            return (before >= 2 and words[before - 2] in _REPORTING_BEFORE) or (
                k + 1 < len(words) and words[k + 1] in _REPORTING_AFTER
            )
    return False


def _is_address(word: str) -> bool:
    """A bare e-mail address ("helpdesk@desk.example"), maybe in parentheses."""
    local, at, domain = word.strip("()").partition("@")
    return bool(at and local and "." in domain and "@" not in domain and "<" not in word)


def _without_bracketed_date(core: str) -> str:
    """``core`` without a bracketed date before its final colon ("<addr> [2026-11-26]:")."""
    if core[-2:-1] not in ("]", ")"):
        return core
    found = _BRACKETED_TAIL_RE.search(core, max(0, len(core) - 50))
    return core if found is None else core[: found.start()] + core[found.end() :]


def _join_piece(acc: str, piece: str) -> str:
    """Join attribution fragments; a trailing "=" is a quoted-printable soft break."""
    if not acc:
        return piece
    if acc.endswith("="):
        return acc[:-1] + piece
    return acc + " " + piece


def attribution_at(stripped: list[str], i: int) -> tuple[int, str] | None:
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
        # one line, or one a mail program wrapped inside its "<address>" ("... Name <" over
        # "helpdesk@desk.example>:"): Gmail's verb-less form may be strong
        kind = _classify_attribution(
            acc, one_line=j == i or (j == i + 1 and stripped[i].endswith("<"))
        )
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
    if START_RE.match(first) and _has_evidence(first):
        acc = first
        pieces = 1
        j = i + 1
        while j < n and j < i + _MAX_ATTR_WINDOW and pieces < 5:
            piece = stripped[j]
            j += 1
            if not piece:
                continue
            if START_RE.match(piece):
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
    plausible = bool(START_RE.match(stripped[i]) or _DATE_START_RE.match(stripped[i]))
    if not plausible and (_has_evidence(above) or START_RE.match(above)):
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


def header_block_at(stripped: list[str], i: int) -> int | None:
    """If an Outlook-style header block starts at ``i``, return the index after its last label.

    Two label kinds within ``_HEADER_WINDOW`` lines, one of them From or Sent/Date, and what
    every mail program writes in such a block: an address, or a Sent/Date value with a year or
    a time next to a From or Subject label. A From label after another From label or after
    a line that is no label starts another block, and a
    block opening with a To, Cc or other label has a label on its next line, and a lone
    label line whose kind comes again after a blank line is not the block's start. So a
    person's own labelled lines ("From: Saturday 22:00" over "To: Sunday 02:00", "Sent: 3
    jobs") are never a block, also right above a real one.
    """
    if len(stripped[i]) > 2000:
        return None
    first = _header_label(stripped[i])
    if first is None:
        return None
    if first not in (_FROM, _DATE, _SUBJECT) and (
        i + 1 >= len(stripped) or _header_label(stripped[i + 1]) is None
    ):
        return None  # a block opens with From, Sent/Date or Subject, or is all labels
    labels_seen: set[str] = set()
    dated = prose = False
    lone = i + 1 < len(stripped) and not stripped[i + 1]  # a blank line under the first label
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
            if label == _FROM and (_FROM in labels_seen or prose):
                break  # the next message's header block
            if label == first and j > i and lone:
                # "Date: 26/11/2026 it started." over a blank line and a block with its own
                # Sent/Date: the lone label line is the person's, the block starts below it
                return None
            prose = prose or label is None
            if label is not None:
                labels_seen.add(label)
                last = j
                if label == _DATE:
                    dated = dated or _dated_value(text)
        j += 1
    if len(labels_seen) < 2 or not labels_seen & {_FROM, _DATE}:
        return None
    addressed = any("@" in stripped[k][:_MAX_FLATTENED] for k in range(i, last + 1))
    if _introduced_list(stripped, i) and not (addressed and _ends_text(stripped, last + 1)):
        return None  # "The bounce said:" over the headers the person pasted
    if addressed:
        return last + 1
    if dated and labels_seen & {_FROM, _SUBJECT}:
        return last + 1
    return None


def _ends_text(stripped: list[str], end: int) -> bool:
    """True when only blank lines (at most :data:`_HEADER_WINDOW`) follow ``end``: a block
    with an address that nothing of the person's follows, over our marker, is our history's
    header under an intro line we do not know ("Vidarebefordrat mejl:"), not headers the
    person pasted to say something about them."""
    return len(stripped) - end <= _HEADER_WINDOW and not any(stripped[end:])


def _introduced_list(stripped: list[str], i: int) -> bool:
    """True when the line right above the label lines at ``i`` (no blank between) is the
    person's own intro ending with a colon ("Details:" over "From: building A", "To: building
    B", "Date: ..."); a separator or forward intro ("Begin forwarded message:") is not one."""
    top = i  # the first of the label lines right above and including ``i``
    while top > 0 and top > i - _HEADER_WINDOW and _header_label(stripped[top - 1]) is not None:
        top -= 1
    if top == 0 or not stripped[top - 1]:
        return False
    above = stripped[top - 1]
    return above[-1] in ":：" and not _is_quoted(above) and not is_separator(above)


def _dated_value(text: str) -> bool:
    """True when a Sent/Date label line holds a year or a time ("2026", "16:02", "2026年")."""
    head = text[:_MAX_PROBE]
    # the label's colon is the first one, ASCII or full-width ("发送时间： 2026-11-26 16:02")
    colons = [at for at in (head.find(":", 0, 60), head.find("：", 0, 60)) if at >= 0]
    value = head[min(colons) + 1 :] if colons else head
    return _YEAR_RE.search(value) is not None or _TIME_RE.search(value) is not None


def _notes_label(line: str) -> str | None:
    """Kind of the Notes column label ending ``line`` ("...   To", a lone "Subject"), else None.

    The label is the last word, alone on the line or after a gap of two or more spaces.
    """
    text = line.rstrip()
    if not text or len(text) > _MAX_PROBE:
        return None
    word = text.rsplit(None, 1)[-1]
    before = text[: len(text) - len(word)]
    if before.strip() and not before.endswith(("  ", "\t")):
        return None
    return _NOTES_LABELS.get(word.casefold())


def notes_header_start(lines: list[str], last: int) -> int | None:
    """First line of a Lotus Notes column header whose last line is ``last``, else None.

    Notes prints the sender's column on the left and the To / cc / Subject labels at the line
    ends on the right::

          Service Desk
          <helpdesk@desk.example>                      To
                                          Uma User <uma@corp.example>
          26/11/2026 16:02                             cc
                                                  Subject
                                          Call 100 has been updated

    Lines are read upward from ``last`` (at most 15, never across a ``>`` line or three blank
    lines). It is a header when a Subject label sits at most three lines above ``last`` (the
    subject under it ends the header), a To label above that, and an address in the block; the
    block starts at the first label line, or at up to three indented non-blank lines right
    above it (the sender's name and address). ``lines`` keep their indentation.
    """
    kinds: set[str] = set()
    first_label = subject = -1
    blanks = 0
    k = last
    while k >= 0 and k > last - _NOTES_WINDOW and blanks < _NOTES_BLANK_RUN:
        text = lines[k].strip()
        if _is_quoted(text):
            break
        blanks = 0 if text else blanks + 1
        kind = _notes_label(lines[k])
        if kind is not None:
            kinds.add(kind)
            first_label = k
            subject = max(subject, k) if kind == _SUBJECT else subject
        k -= 1
    if subject < 0 or subject < last - _NOTES_SUBJECT_LINES or _TO not in kinds:
        return None
    start = first_label
    while (
        start > 0
        and first_label - start < _NOTES_SENDER_LINES
        and lines[start - 1].strip()
        and lines[start - 1][:1] in (" ", "\t")
    ):
        start -= 1
    if not any("@" in lines[j] for j in range(start, last + 1)):
        return None
    return start


def is_groupwise_header(stripped: str) -> bool:
    """GroupWise's one-line header over the unquoted original: ``>>> "Name" <addr> 26/11/2026
    16:02 >>>`` (name and/or address, a date and a time, between ``>>>`` marks).

    It starts like a quoted line but is a separator; a person's ``>>> Update 26/11/2026 >>>``
    (no time) or ``>>> http://example.com <<<`` is not one.
    """
    if len(stripped) > _MAX_PROBE or stripped[:3] != ">>>" or stripped[-3:] != ">>>":
        return False
    inner = stripped[3:-3]
    return (
        len(inner) > 8
        and inner[:1] in (" ", "\t")
        and _DATE_RE.search(inner) is not None
        and _CLOCK_RE.search(inner) is not None
    )


def is_separator(stripped: str) -> bool:
    """An "-----Original Message-----" / forward separator or intro line."""
    if stripped[:3] == ">>>" and is_groupwise_header(stripped):
        return True
    if len(stripped) < 5 or len(stripped) > 120:
        return False
    if stripped[: len(TOBIT_SEPARATOR)].casefold() == TOBIT_SEPARATOR:
        return True  # Tobit David, without its brackets
    if stripped[0] not in "-_=*[" and stripped[-1] not in "-_=*:：]":
        return False
    core, decorated = _deco_strip(stripped)
    low = core.rstrip(" :：").casefold().replace("\u0307", "")  # Turkish "İ" folds to i + dot
    framed = decorated and (stripped[0] in "-_=*" or stripped[-1] in "-_=*")
    if framed and _is_notes_forward(low):
        return True
    if framed and len(low) <= 60 and any(k in low for k in _SEPARATOR_KEYWORDS):
        return True
    if TOBIT_SEPARATOR in low:  # Tobit David: "[Original Message processed by david]"
        return True
    return stripped[-1] in ":：" and low in _FORWARD_INTROS


#: how Lotus Notes opens its forward line, "----- Forwarded by Name/Org on 26/11/2026 16:10 -----"
_NOTES_FORWARD_OPENERS = (
    "forwarded by ",
    "weitergeleitet von ",
    "réacheminé par ",
    "transféré par ",
    "inoltrato da ",
    "reenviado por ",
    "encaminhado por ",
    "doorgestuurd door ",
    "videresendt af ",
    "vidarebefordrat av ",
)


def _is_notes_forward(low: str) -> bool:
    """Casefolded framed words of Lotus Notes' forward line: an opener, a date and a time."""
    return (
        low.startswith(_NOTES_FORWARD_OPENERS)
        and _DATE_RE.search(low) is not None
        and _CLOCK_RE.search(low) is not None
    )


def is_bare_separator(stripped: str) -> bool:
    """A separator that starts the history with no header block or quote under it.

    Outlook's ``-----Original Message-----`` (dashes touching the words; also
    ``-----Ursprüngliche Nachricht-----``), a framed line of separator words only
    (``----- Original Message -----``, ``-------- Messaggio inoltrato --------``), Tobit
    David's line and a forward intro ("Begin forwarded message:"). Other framed lines
    (``--- Original plan ---``, ``==== Fehlerbericht ====``) are separators only over a
    header block or a quote: alone they are the person's own headings.
    """
    if not is_separator(stripped):
        return False
    if stripped[-1] in ":：" or stripped[:3] == ">>>" or TOBIT_SEPARATOR in stripped.casefold():
        return True
    if _is_notes_forward(_deco_strip(stripped)[0].casefold()):
        return True
    core = stripped.strip("-")
    if stripped[:3] == "---" and stripped[-3:] == "---" and core == core.strip():
        return True
    words = _deco_strip(stripped)[0].casefold().split()
    return len(words) <= _SEPARATOR_MAX_WORDS and all(map(_is_separator_word, words))


def _is_separator_word(word: str) -> bool:
    """A word of a separator phrase; a word of a script without spaces holding a keyword."""
    if word in _SEPARATOR_WORDS:
        return True
    return all(ord(ch) >= 0x2E80 for ch in word) and any(k in word for k in _SEPARATOR_KEYWORDS)


def is_rule(stripped: str) -> bool:
    """A line of dashes, underscores or equals signs (at least five), or words framed by runs
    of three or more of them ("----- Ursprüngliche Mail -----", "----- 원본 메일 -----"): over a
    header block it is the block's separator, whatever language its words are in. A person's
    emphasis is not a frame: "**URGENT**", "*** Note ***", "== Jane Roe, Finance ==" stay."""
    if len(stripped) < 5 or len(stripped) > _MAX_FRAMED:
        return False
    if not stripped.strip("-_="):
        return True
    return stripped[:3] in _FRAMES and stripped[-3:] in _FRAMES and bool(stripped.strip("-_= "))


#: longest framed separator line, and the three-character runs that open and close one (mail
#: programs frame their separators with dashes; two characters or asterisks are emphasis)
_MAX_FRAMED = 120
_FRAMES = frozenset(("---", "___", "==="))


def is_sig_delimiter(stripped: str) -> bool:
    """ "-- " signature delimiter or an underscore rule opening a list footer."""
    return stripped == "--" or (len(stripped) >= 2 and not stripped.strip("_"))


def is_device_line(stripped: str) -> bool:
    """ "Sent from my iPhone" and translations (short, no clause after a comma)."""
    if len(stripped) > 80 or "," in stripped:
        return False
    m = _DEVICE_RE.match(stripped)
    if m is not None:
        return len(stripped[m.end() :].split()) <= 6
    verb = next((v for v in _DEVICE_LAST_VERBS if stripped.endswith(v)), "")
    if len(stripped) > 40 or not verb:
        return False
    # nothing but "(from) (my) <device> <verb>": "邮件无法从Outlook发送" (mail cannot be sent
    # from Outlook) or "会議の招待をOutlookから送信" is the person's own sentence
    head = stripped[: len(stripped) - len(verb)]
    name = _DEVICE_NAME_RE.search(head)
    return (
        name is not None
        and head[: name.start()].strip() in _DEVICE_LAST_OPENERS
        and _DEVICE_LAST_MIDDLE_RE.fullmatch(head[name.end() :]) is not None
    )


def is_valediction(stripped: str) -> bool:
    """ "Regards," / "Mvh" / "Pozdrawiam," and the like, alone on a line."""
    if len(stripped) > 40:
        return False
    return stripped.rstrip(" ,.!:;").casefold() in _VALEDICTIONS


def has_announcement_words(text: str) -> bool:
    """Cheap test before :func:`inline_answers_announced`: does ``text`` hold a word that every
    announcement holds (an answer noun, a "see" word, "inline")?"""
    return not _ANNOUNCEMENT_WORDS.isdisjoint(text.casefold().split())


def inline_answers_announced(stripped: str) -> tuple[str, str] | None:
    """``(kind, phrase)`` when a line announces answers inside the quoted history, else None.

    ``kind`` is "inline" for phrases that name the history itself ("answers inline", "in red",
    "im Text", "dans le texte", "replied inline"), "below" for those that only say where
    ("answers below", "Antworten siehe unten", "voir mes réponses ci-dessous"), and "see below"
    for a bare "see below" that is the whole line (after a greeting, "please" at most: "Hi
    Alice, please see below.", "Siehe unten."). The phrase ends its clause (more places or a
    set phrase such as "as usual" may follow) and is not negated. Only the first 300
    characters are read.
    """
    head = stripped[:_MAX_ANNOUNCEMENT]
    low = head.casefold()
    if _ANNOUNCEMENT_WORDS.isdisjoint(low.split()):
        return None
    shown = head if len(head) == len(low) else low  # casefolding "ß" shifts positions
    for kind, pattern in _INLINE_ANSWER_RES:
        for found in pattern.finditer(low):
            if _CLAUSE_END.match(low, found.end()) is None:
                continue
            if _NEGATED.search(low, max(0, found.start() - 30), found.start()) is not None:
                continue
            return kind, shown[found.start() : found.end()]
    if _SEE_BELOW_SENTENCE.fullmatch(low.rstrip()) is not None:
        phrase = _SEE_BELOW.search(low)
        if phrase is not None:  # always: the sentence holds it
            return "see below", shown[phrase.start() : phrase.end()]
    return None


def split_shared_line(line: str) -> tuple[str, str] | None:
    """Split "reply On <date>, X wrote:" into the reply and the attribution."""
    s = line.strip()
    if not s or len(s) > _MAX_PROBE or s[-1] not in ":：" or _is_quoted(s):
        return None
    if START_RE.match(s.lstrip(" -")) or not _has_evidence(s):
        return None
    m = _MIDLINE_START_RE.search(s)
    if m is None:
        return None
    prefix = s[: m.start()].rstrip(" -\t")
    suffix = s[m.start() :]
    if not prefix or not _has_evidence(suffix) or _classify_attribution(suffix) != "strong":
        return None
    return prefix, suffix


def split_flattened_line(line: str) -> list[str] | None:
    """Split a header block flattened onto one line into its lines, else None.

    Samsung and some web mailers put the forward separator and the Outlook-style header
    fields on one line: ``-------- Original message --------From: A <a@x> Date: ... To: ...
    Subject: ...``; HTML-to-text conversion does the same to an Outlook block
    (``From: A Sent: ... To: ... Subject: ...``). The separator (and any reply text before it)
    becomes its own line and each label starts a line. Without a separator the line must
    start with a From or Sent/Date label and hold labels of three kinds, so prose that
    mentions "from:" and "date:" is never cut.
    """
    s = line.strip()
    if len(s) > _MAX_FLATTENED or (s.count(":") + s.count("：")) < 2:
        return None
    out: list[str] = []
    rest = s
    separator = None
    if "--" in s or "__" in s or "==" in s or "**" in s:
        for found in _INLINE_SEPARATOR_RE.finditer(s):
            if is_separator(found.group()):
                separator = found
                break
    if separator is not None:
        before = s[: separator.start()].strip()
        rest = s[separator.end() :].strip()
        if not rest:
            return None
        if before:
            out.append(before)
        out.append(separator.group())
    if separator is None and _header_label(rest) not in (_FROM, _DATE):
        return None  # a flattened block without separator starts with From or Sent/Date
    labels = _inline_labels(rest)
    if not labels or labels[0][0] != 0:
        return [*out, rest] if separator is not None else None
    kinds = {kind for _, kind in labels}
    if not kinds & {_FROM, _DATE} or len(kinds) < (2 if separator is not None else 3):
        return [*out, rest] if separator is not None else None
    starts = [start for start, _ in labels] + [len(rest)]
    out.extend(rest[a:b].strip() for a, b in itertools.pairwise(starts))
    return out


def _inline_labels(text: str) -> list[tuple[int, str]]:
    """``(start, kind)`` of each header label ("Sent:", "보낸 사람:") inside one line.

    Each colon is looked at once, with the one to three words before it: linear in the line.
    Reading stops when no label starts the line (its first 40 characters).
    """
    probe = text.replace("：", ":") if "：" in text else text  # same length, same positions
    found: list[tuple[int, str]] = []
    end = probe.find(":")
    while end >= 0 and (found or end <= 40):
        window = max(0, end - 40)
        before = probe[window:end].rstrip(" \t")
        words = before.split()
        for count in range(min(len(words), _INLINE_LABEL_WORDS), 0, -1):
            label = " ".join(words[-count:])
            kind = _INLINE_LABELS.get(label.strip("*").casefold())
            if kind is not None:
                start = window + len(before) - len(label)
                if probe.startswith(label, start) and (start == 0 or probe[start - 1].isspace()):
                    found.append((start, kind))
                break
        end = probe.find(":", end + 1)
    return found
