"""Issue 9, "History not cut": attributions, header blocks and separators of many languages.

Every input is written here after the formats Gmail, Outlook, Apple Mail, Thunderbird and
Samsung Email print in their display languages; names and addresses are made up.
"""

from __future__ import annotations

import pytest

from asm_email_rules.truncate import TruncationMethod, truncate_reply

REPLY = "Thanks, the printer works again."
OLD = "Please switch the printer off and on again."
ADDR = "Desk Agent <help@desk.example>"


def kept(body: str) -> str:
    return truncate_reply(body).kept


# --------------------------------------------------------------------------- attributions

ATTRIBUTIONS = {
    "en said": f"On Mon, 3 Mar 2025 at 10:00, {ADDR} said:",
    "en replied": f"On 3 Mar 2025, at 10:00, {ADDR} replied:",
    "en writes": f"On 03/03/2025 10:00, {ADDR} writes:",
    "en responded": f"On Monday, March 3, 2025 10:00 AM, {ADDR} responded:",
    "de": f"Am Mo., 3. März 2025 um 10:00 Uhr schrieb {ADDR}:",
    "de sagte": f"Am 03.03.2025 um 10:00 sagte {ADDR}:",
    "fr": f"Le lun. 3 mars 2025 à 10:00, {ADDR} a écrit :",
    "fr a dit": f"Le 3 mars 2025 à 10:00, {ADDR} a dit :",
    "es": "El lun, 3 mar 2025 a las 10:00, Desk Agent (<help@desk.example>) escribió:",
    "es dijo": f"El 3/3/2025 a las 10:00, {ADDR} dijo:",
    "pt": f"Em seg., 3 de mar. de 2025 às 10:00, {ADDR} escreveu:",
    "it": f"Il giorno lun 3 mar 2025 alle ore 10:00 {ADDR} ha scritto:",
    "nl": f"Op ma 3 mrt 2025 om 10:00 schreef {ADDR}:",
    "sv": f"Den mån 3 mars 2025 kl 10:00 skrev {ADDR}:",
    "da": f"Den man. 3. mar. 2025 kl. 10.00 skrev {ADDR}:",
    "nb": f"man. 3. mar. 2025 kl. 10:00 skrev {ADDR}:",
    "fi": "ma 3.3.2025 klo 10.00 Desk Agent (help@desk.example) kirjoitti:",
    "pl": f"pon., 3 mar 2025 o 10:00 {ADDR} napisał(a):",
    "cs": f"po 3. 3. 2025 v 10:00 odesílatel {ADDR} napsal:",
    "sk": f"po 3. 3. 2025 o 10:00 {ADDR} napísal(a):",
    "hu": f"{ADDR} ezt írta (időpont: 2025. márc. 3., H, 10:00):",
    "ro": f"În lun., 3 mar. 2025 la 10:00, {ADDR} a scris:",
    "tr": f"{ADDR}, 3 Mar 2025 Pzt, 10:00 tarihinde şunu yazdı:",
    "ru": f"пн, 3 мар. 2025 г. в 10:00, {ADDR}:",
    "ru Thunderbird": "03.03.2025 10:00, Desk Agent пишет:",
    "uk": f"пн, 3 бер. 2025 р. о 10:00 {ADDR} пише:",
    "bg": f"На пн, 3.03.2025 г. в 10:00 ч. {ADDR} написа:",
    "sr": f"пон, 3. мар 2025. у 10:00 {ADDR} је написао/ла:",
    "hr": f"pon, 3. ožu 2025. u 10:00 {ADDR} napisao je:",
    "el": f"Στις Δευ 3 Μαρ 2025 στις 10:00, ο/η {ADDR} έγραψε:",
    "he": "\u202bביום ב׳, 3 במרץ 2025 ב-10:00 מאת \u202aDesk Agent\u202c\u200f "
    "<\u202ahelp@desk.example\u202c\u200f>:\u202c",
    "ar": f"في الاثنين، 3 مارس 2025 في 10:00 ص، كتب {ADDR}:",
    "fa": f"در تاریخ دوشنبه ۳ مارس ۲۰۲۵ ساعت ۱۰:۰۰ {ADDR} نوشت:",
    "ja": f"2025年3月3日(月) 10:00 {ADDR}:",
    "zh": f"{ADDR} 于2025年3月3日周一 10:00写道：",
    "zh-TW": f"{ADDR} 於 2025年3月3日 週一 上午10:00 寫道：",
    "ko": f"2025년 3월 3일 (월) 오전 10:00, {ADDR}님이 작성:",
    "vi": f"Vào Th 2, 3 thg 3, 2025 vào lúc 10:00 {ADDR} đã viết:",
    "id": f"Pada tanggal Sen, 3 Mar 2025 pukul 10.00 {ADDR} menulis:",
    "th": f"เมื่อ จ. 3 มี.ค. 2025 เวลา 10:00 {ADDR} เขียนว่า:",
    "hi": f"सोम, 3 मार्च 2025 को 10:00 am बजे {ADDR} ने लिखा:",
    "ca": "El dl., 3 de març 2025 a les 10:00, Desk Agent (<help@desk.example>) va escriure:",
    "lt": f"2025-03-03, pr, 10:00 {ADDR} rašė:",
    "lv": "pirmd., 2025. g. 3. marts, plkst. 10:00 — lietotājs Desk Agent "
    "(<help@desk.example>) rakstīja:",
    "et": f"E, 3. märts 2025 kell 10:00 kirjutas {ADDR}:",
    "is": f"mán., 3. mar. 2025 kl. 10:00 skrifaði {ADDR}:",
}


@pytest.mark.parametrize("attribution", ATTRIBUTIONS.values(), ids=ATTRIBUTIONS.keys())
def test_attribution_over_unquoted_history_is_cut(attribution: str) -> None:
    result = truncate_reply(f"{REPLY}\n\n{attribution}\n{OLD}\n")
    assert result.kept == REPLY
    assert OLD in result.elided
    assert result.method is TruncationMethod.HEURISTIC


@pytest.mark.parametrize("attribution", ATTRIBUTIONS.values(), ids=ATTRIBUTIONS.keys())
def test_attribution_over_a_quote_goes_with_it(attribution: str) -> None:
    result = truncate_reply(f"{REPLY}\n\n{attribution}\n> {OLD}\n")
    assert result.kept == REPLY


def test_prose_ending_with_an_attribution_verb_is_kept() -> None:
    body = "The vendor said:\nthe update comes next week.\n\nRegards, Ann"
    assert kept(body) == body


# --------------------------------------------------------------------------- header blocks

#: (From, Sent/Date, To, Cc, Subject) labels as Outlook prints them in its display languages
OUTLOOK_LABELS = {
    "en": ("From", "Sent", "To", "Cc", "Subject"),
    "en-mac": ("From", "Date", "To", "Cc", "Subject"),
    "de": ("Von", "Gesendet", "An", "Cc", "Betreff"),
    "fr": ("De", "Envoyé", "À", "Cc", "Objet"),
    "es": ("De", "Enviado el", "Para", "CC", "Asunto"),
    "pt-BR": ("De", "Enviada em", "Para", "Cc", "Assunto"),
    "pt-PT": ("De", "Enviado", "Para", "Cc", "Assunto"),
    "it": ("Da", "Inviato", "A", "Cc", "Oggetto"),
    "nl": ("Van", "Verzonden", "Aan", "CC", "Onderwerp"),
    "da": ("Fra", "Sendt", "Til", "Cc", "Emne"),
    "nb": ("Fra", "Sendt", "Til", "Kopi", "Emne"),
    "sv": ("Från", "Skickat", "Till", "Kopia", "Ämne"),
    "fi": ("Lähettäjä", "Lähetetty", "Vastaanottaja", "Kopio", "Aihe"),
    "is": ("Frá", "Sent", "Til", "Afrit", "Efni"),
    "pl": ("Od", "Wysłano", "Do", "DW", "Temat"),
    "cs": ("Od", "Odesláno", "Komu", "Kopie", "Předmět"),
    "sk": ("Od", "Odoslané", "Komu", "Kópia", "Predmet"),
    "hu": ("Feladó", "Elküldve", "Címzett", "Másolatot kap", "Tárgy"),
    "ro": ("De la", "Trimis", "Către", "Cc", "Subiect"),
    "hr": ("Šalje", "Poslano", "Prima", "Kopija", "Predmet"),
    "sl": ("Od", "Poslano", "Za", "Kp", "Zadeva"),
    "sr": ("Od", "Poslato", "Za", "Cc", "Tema"),
    "bg": ("От", "Изпратено", "До", "Копие", "Тема"),
    "ru": ("От", "Отправлено", "Кому", "Копия", "Тема"),
    "uk": ("Від", "Надіслано", "Кому", "Копія", "Тема"),
    "el": ("Από", "Αποστολή", "Προς", "Κοιν.", "Θέμα"),
    "tr": ("Kimden", "Gönderildi", "Kime", "Bilgi", "Konu"),
    "lt": ("Nuo", "Išsiųsta", "Kam", "Kopija", "Tema"),
    "lv": ("No", "Nosūtīts", "Kam", "Kopija", "Tēma"),
    "et": ("Saatja", "Saadetud", "Adressaat", "Koopia", "Teema"),
    "ca": ("De", "Enviat el", "Per a", "A/c", "Assumpte"),
    "eu": ("Nork", "Noiz", "Nori", "Cc", "Gaia"),
    "he": ("מאת", "נשלח", "אל", "עותק", "נושא"),
    "ar": ("من", "تم الإرسال", "إلى", "نسخة", "الموضوع"),
    "ja": ("差出人", "送信日時", "宛先", "CC", "件名"),
    "zh-CN": ("发件人", "发送时间", "收件人", "抄送", "主题"),
    "zh-TW": ("寄件者", "寄件日期", "收件者", "副本", "主旨"),
    "ko": ("보낸 사람", "보낸 날짜", "받는 사람", "참조", "제목"),
    "th": ("จาก", "ส่ง", "ถึง", "สำเนา", "เรื่อง"),
    "vi": ("Từ", "Đã gửi", "Đến", "Cc", "Chủ đề"),
    "id": ("Dari", "Dikirim", "Kepada", "Tembusan", "Perihal"),
    "ms": ("Daripada", "Dihantar", "Kepada", "Sk", "Subjek"),
    "hi": ("प्रेषक", "भेजा गया", "प्रति", "प्रतिलिपि", "विषय"),
}


def outlook_block(labels: tuple[str, str, str, str, str], colon: str = ":") -> str:
    frm, sent, to, cc, subject = labels
    return (
        f"{frm}{colon} {ADDR}\n{sent}{colon} 3.3.2025 10:00\n{to}{colon} Ann Lee "
        f"<ann@example.org>\n{cc}{colon} it@example.org\n{subject}{colon} Printer\n"
    )


@pytest.mark.parametrize("labels", OUTLOOK_LABELS.values(), ids=OUTLOOK_LABELS.keys())
def test_outlook_header_block_is_cut_in_every_display_language(
    labels: tuple[str, str, str, str, str],
) -> None:
    rule = "_" * 32
    result = truncate_reply(f"{REPLY}\n\n{rule}\n{outlook_block(labels)}\n{OLD}\n")
    assert result.kept == REPLY
    assert OLD in result.elided


@pytest.mark.parametrize("language", ["fr", "ja", "zh-CN"])
def test_header_labels_with_spaced_or_full_width_colons(language: str) -> None:
    colon = " :" if language == "fr" else "："
    body = f"{REPLY}\n\n{outlook_block(OUTLOOK_LABELS[language], colon)}\n{OLD}\n"
    assert kept(body) == REPLY


def test_bold_labels_and_an_organization_line_stay_one_block() -> None:
    body = (
        f"{REPLY}\n\n*From:* {ADDR}\n*Organization:* Example Ltd\n*Sent:* Monday, 3 March 2025"
        f" 10:00\n*To:* ann@example.org\n*Subject:* Printer\n\n{OLD}\n"
    )
    assert kept(body) == REPLY


def test_two_labels_in_prose_are_not_a_header_block() -> None:
    body = "Subject: the new laptop\nTo: whoever handles orders\n\nPlease order two more."
    assert kept(body) == body


# --------------------------------------------------------------------------- flattened blocks

SAMSUNG = {
    "en": "-------- Original message --------From: {a} Date: 03/03/2025 10:00 (GMT+01:00) "
    "To: ann@example.org Subject: Re: [CALL#12] Printer ",
    "de": "-------- Ursprüngliche Nachricht --------Von: {a} Datum: 03.03.25 10:00 (GMT+01:00) "
    "An: ann@example.org Betreff: Drucker ",
    "fr": "-------- Message d'origine --------De : {a} Date : 03/03/2025 10:00 (GMT+01:00) "
    "À : ann@example.org Objet : Imprimante ",
    "es": "-------- Mensaje original --------De: {a} Fecha: 3/3/25 10:00 (GMT+01:00) "
    "Para: ann@example.org Asunto: Impresora ",
    "it": "-------- Messaggio originale --------Da: {a} Data: 03/03/25 10:00 (GMT+01:00) "
    "A: ann@example.org Oggetto: Stampante ",
    "nl": "-------- Oorspronkelijk bericht --------Van: {a} Datum: 03-03-2025 10:00 (GMT+01:00) "
    "Aan: ann@example.org Onderwerp: Printer ",
    "pl": "-------- Oryginalna wiadomość --------Od: {a} Data: 03.03.2025 10:00 (GMT+01:00) "
    "Do: ann@example.org Temat: Drukarka ",
    "ko": "-------- 원본 메시지 --------보낸 사람: {a} 날짜: 25/3/3 10:00 (GMT+09:00) "
    "받는 사람: ann@example.org 제목: 프린터 ",
}


@pytest.mark.parametrize("line", SAMSUNG.values(), ids=SAMSUNG.keys())
def test_samsung_separator_and_headers_on_one_line(line: str) -> None:
    flat = line.format(a=ADDR)
    result = truncate_reply(f"{REPLY}\n\nSent from my Galaxy\n\n{flat}\n{OLD}\n")
    assert result.kept == f"{REPLY}\n\nSent from my Galaxy"
    assert OLD in result.elided
    assert "separator" in result.detail


def test_samsung_separator_glued_to_the_reply_line() -> None:
    flat = SAMSUNG["en"].format(a=ADDR)
    assert kept(f"{REPLY} {flat}\n{OLD}\n") == REPLY


def test_outlook_block_flattened_by_html_conversion() -> None:
    flat = f"From: {ADDR} Sent: Monday, March 3, 2025 10:00 AM To: ann@example.org Subject: Printer"
    result = truncate_reply(f"{REPLY}\n\n{flat}\n{OLD}\n")
    assert result.kept == REPLY
    assert OLD in result.elided


def test_prose_with_two_colons_is_not_flattened() -> None:
    body = "From: the second floor. Date: unknown, sorry.\nThe printer is still broken."
    assert kept(body) == body


def test_tobit_david_separator() -> None:
    body = f"{REPLY}\n\n[Original Message processed by david®]\n\nVon: {ADDR}\nAn: ann\n{OLD}\n"
    assert kept(body) == REPLY


@pytest.mark.parametrize(
    "separator",
    [
        "-----Eredeti üzenet-----",
        "-------- Αρχικό μήνυμα --------",
        "-----Özgün İleti-----",
        "-------- 원본 메시지 --------",
        "-----Původní zpráva-----",
        "-----Pôvodná správa-----",
        "-----Izvorna poruka-----",
        "-----Оригинално съобщение-----",
        "-----Pesan Asli-----",
        "---------- Messaggio inoltrato ----------",
        "---------- Mensaje reenviado ----------",
    ],
)
def test_original_and_forwarded_separators_of_more_languages(separator: str) -> None:
    assert kept(f"{REPLY}\n\n{separator}\n{OLD}\n") == REPLY


# --------------------------------------------------------------------------- interleaved


def test_interleaved_answers_keep_their_one_line_questions() -> None:
    body = (
        f"On Mon, 3 Mar 2025 at 10:00, {ADDR} wrote:\n"
        "> Which floor is the printer on?\nThe third.\n"
        "> Is the light red or orange?\nRed.\n"
    )
    result = truncate_reply(body)
    assert "> Which floor is the printer on?\nThe third." in result.kept
    assert result.kept.endswith("> Is the light red or orange?\nRed.")
    assert "interleaved" in result.detail


def test_interleaved_answers_with_longer_quotes_and_a_trailing_history() -> None:
    body = (
        "Hi,\n\n> Which floor is the printer on?\n> We have three.\n\nThe third, near the"
        " kitchen.\n\n> Is the light red?\n\nYes, red.\n\nAnn\n\n"
        f"On Mon, 3 Mar 2025 at 10:00, {ADDR} wrote:\n> older message\n> more\n"
    )
    result = truncate_reply(body)
    assert result.kept == (
        "Hi,\n\n> Which floor is the printer on?\n> We have three.\n\nThe third, near the"
        " kitchen.\n\n> Is the light red?\n\nYes, red.\n\nAnn"
    )
    assert "> older message" in result.elided


def test_one_quote_and_one_answer_is_a_bottom_post() -> None:
    body = f"On Mon, 3 Mar 2025 at 10:00, {ADDR} wrote:\n> Is it fixed?\nYes, it is.\n"
    assert kept(body) == "Yes, it is."


def test_wrapped_quote_line_is_still_part_of_the_quote() -> None:
    body = (
        "Fixed.\n\nOn Mon, 3 Mar 2025 at 10:00, bob wrote:\n\n> See (http://x.example/a\n"
        "_b=3) for the\n> details\n"
    )
    assert kept(body) == "Fixed."
