"""Reply truncation: each cut a helpdesk user would notice, one behaviour per test."""

from __future__ import annotations

import pytest

from asm_email_rules.errors import ArgumentTypeError
from asm_email_rules.truncate import Truncation, TruncationMethod, truncate_reply

MARKER = "##- Please type your reply above this line -##"


def _kept(body: str, **kwargs: object) -> str:
    return truncate_reply(body, **kwargs).kept  # type: ignore[arg-type]


# --------------------------------------------------------------------------- attributions

ATTRIBUTIONS = {
    "en": "On Mon, 3 May 2021 at 10:00, Bob Smith <bob@example.com> wrote:",
    "de": "Am Mo., 3. Mai 2021 um 10:00 Uhr schrieb Bob Smith <bob@example.com>:",
    "fr": "Le lun. 3 mai 2021 à 10:00, Bob Smith <bob@example.com> a écrit :",
    "es": "El lun, 3 may 2021 a las 10:00, Bob Smith (<bob@example.com>) escribió:",
    "pt": "Em seg., 3 de mai. de 2021 às 10:00, Bob Smith <bob@example.com> escreveu:",
    "it": "Il giorno lun 3 mag 2021 alle ore 10:00 Bob Smith <bob@example.com> ha scritto:",
    "nl": "Op ma 3 mei 2021 om 10:00 schreef Bob Smith <bob@example.com>:",
    "nl-long": "Op 3 mei 2021, om 10:00 heeft Bob Smith <bob@example.com> het volgende geschreven:",
    "da": "Den 3. maj 2021 kl. 10.00 skrev Bob Smith <bob@example.com>:",
    "sv": "mån 3 maj 2021 kl. 10:00 skrev Bob Smith <bob@example.com>:",
    "no": "På 3. mai 2021 kl. 10:00 skrev Bob Smith (bob@example.com):",
    "pl": "Dnia 3 maja 2021 10:00 Bob Smith <bob@example.com> napisał(a):",
    "pl-w-dniu": "W dniu 3 maja 2021 10:00 użytkownik Bob Smith <bob@example.com> napisał:",
    "ru": "3 мая 2021 г., в 10:00, Bob Smith <bob@example.com> написал(а):",
    "uk": "3 травня 2021 р. о 10:00 Bob Smith <bob@example.com> написав:",
    "cs": "Dne po 3. 5. 2021 10:00 uživatel Bob Smith <bob@example.com> napsal:",
    "zh": "在 2021年5月3日 10:00，Bob Smith <bob@example.com> 写道：",
    "ja": "2021年5月3日(月) 10:00 Bob Smith <bob@example.com>のメッセージ:",
    "ja-ios": "2021/05/03 10:00、Bob Smith <bob@example.com>のメール:",
    "vi": "Vào 10:00 3 tháng 5, 2021, Bob Smith <bob@example.com> đã viết:",
    "gmail-date": "2021-05-03 10:00 GMT+02:00 Bob Smith <bob@example.com>:",
}


@pytest.mark.parametrize("lang", sorted(ATTRIBUTIONS))
def test_attribution_and_quote_are_cut_in_every_language(lang: str) -> None:
    body = f"My answer.\n\n{ATTRIBUTIONS[lang]}\n> the old question\n> second line\n"
    result = truncate_reply(body)
    assert result.kept == "My answer."
    assert ATTRIBUTIONS[lang] in result.elided
    assert result.method is TruncationMethod.HEURISTIC


@pytest.mark.parametrize("lang", ["en", "de", "fr", "da", "no", "pl-w-dniu", "vi"])
def test_attribution_followed_by_unquoted_history_is_cut(lang: str) -> None:
    body = f"My answer.\n\n{ATTRIBUTIONS[lang]}\n\nThe old message, not quoted.\n"
    assert _kept(body) == "My answer."


PROSE_WITH_A_TIME = {
    "en": "Thanks.\nOn Monday at 10:00 the server said:\nDisk full on /var\nPlease clean it.",
    "de": "Danke.\nAm Montag um 10:00 Uhr sagte der Techniker:\nDer Toner ist leer.\nBitte!",
    "question": "Can you come at 10:00? My colleague wrote:\nthe room is free then.",
}


@pytest.mark.parametrize("lang", sorted(PROSE_WITH_A_TIME))
def test_persons_prose_with_a_time_over_unquoted_text_is_kept(lang: str) -> None:
    """ "On Monday at 10:00 the server said:" introduces what the person quotes; a mail
    program's attribution carries a date or an address. Only the real history goes."""
    reply = PROSE_WITH_A_TIME[lang]
    history = f"{ATTRIBUTIONS['en']}\n> {MARKER}\n> Call 100 has been updated.\n"
    result = truncate_reply(f"{reply}\n\n{history}")
    assert result.kept == reply
    assert result.elided.startswith(ATTRIBUTIONS["en"])


def test_attribution_split_over_three_lines() -> None:
    body = (
        "Done.\n\nOn Dec 16, 2011, at 12:47 PM, Corey Donohoe\n<reply@example.com>\nwrote:\n\n"
        "> old text\n"
    )
    assert _kept(body) == "Done."


def test_attribution_with_quoted_printable_soft_break() -> None:
    body = "Done.\n\nOn Mon, Jun 3, 2024 at 12:53 AM Cody Hart <c@example.com> w=\nrote:\n\nold\n"
    assert _kept(body) == "Done."


def test_reply_sharing_a_line_with_the_attribution_is_kept() -> None:
    result = truncate_reply("reply--- On Wed, Apr 4, 2012 at 3:59 PM, me@example.com wrote:\n> Hi")
    assert result.kept == "reply"
    assert result.elided.startswith("On Wed, Apr 4, 2012")


def test_unknown_language_attribution_costs_one_line_not_the_history() -> None:
    body = "My answer.\n\nXyzzy 3.5.2021 plugh Bob:\n> old question\n> more\n"
    result = truncate_reply(body)
    assert result.kept == "My answer.\n\nXyzzy 3.5.2021 plugh Bob:"
    assert "> old question" in result.elided


def test_sentence_mentioning_wrote_is_not_an_attribution() -> None:
    body = "Ok.\n\nOn Monday I wrote:\nthis text is still mine\n"
    assert truncate_reply(body).method is TruncationMethod.NONE
    assert _kept(body) == body.strip()


def test_prose_ending_in_wrote_with_a_date_is_not_a_hard_cut() -> None:
    body = "Ok.\n\nThe vendor wrote back on 3 May:\nWe will ship next week."
    assert _kept(body) == body


def test_line_starting_with_on_is_kept() -> None:
    body = "Blah-blah-blah\nOn blah-blah-blah"
    assert _kept(body) == body


# --------------------------------------------------------------------------- header blocks

HEADER_BLOCKS = {
    "en": "From: Bob <bob@example.com>\nSent: Monday, May 3, 2021 10:00\nTo: Support\nSubject: Hi",
    "de": "Von: Bob <bob@example.com>\nGesendet: Montag, 3. Mai 2021\nAn: Support\nBetreff: Hi",
    "fr": "De : Bob <bob@example.com>\nEnvoyé : lundi 3 mai 2021\nÀ : Support\nObjet : Hi",
    "it": "Da: Bob <bob@example.com>\nInviato: lunedì 3 maggio 2021\nA: Support\nOggetto: Hi",
    "da": "Fra: Bob <bob@example.com>\nSendt: 3. maj 2021 10:00\nTil: Support\nEmne: Hi",
    "sv": "Från: Bob <bob@example.com>\nSkickat: den 3 maj 2021\nTill: Support\nÄmne: Hi",
    "pl": "Od: Bob <bob@example.com>\nWysłano: 3 maja 2021\nDo: Support\nTemat: Hi",
    "nl": "Van: Bob <bob@example.com>\nVerzonden: 3 mei 2021\nAan: Support\nOnderwerp: Hi",
    "fi": "Lähettäjä: Bob <bob@example.com>\nLähetetty: 3. toukokuuta\nAihe: Hi",
    "ru": "От: Bob <bob@example.com>\nОтправлено: 3 мая 2021\nКому: Support\nТема: Hi",
    "bold": "*From:* Bob <bob@example.com>\n*Sent:* Monday\n*To:* Support\n*Subject:* Hi",
    "date-first": "Date: Wed, 16 May 2012 00:15:02 -0600\nTo: support@example.com",
}


@pytest.mark.parametrize("lang", sorted(HEADER_BLOCKS))
def test_outlook_header_block_cuts_the_history(lang: str) -> None:
    body = f"Please check.\n\n{HEADER_BLOCKS[lang]}\n\nThe original message.\n"
    result = truncate_reply(body)
    assert result.kept == "Please check."
    assert "The original message." in result.elided


def test_rule_line_before_a_header_block_goes_with_it() -> None:
    body = "Outlook reply\n________________________________\nFrom: A <a@x.com>\nSent: Mon\nTo: B\n"
    result = truncate_reply(body)
    assert result.kept == "Outlook reply"
    assert result.elided.startswith("____")


def test_labels_that_are_not_mail_headers_are_kept() -> None:
    body = "Invitation:\n\nDate: Wednesday 3, October 2011\nTime: 7 : 00am\nAddress: 130 Fox St\n"
    assert _kept(body) == body.strip()


def test_to_and_subject_lines_without_from_or_date_are_kept() -> None:
    body = "Please forward:\nTo: IT dept\nSubject: broken printer\nThe printer is broken."
    assert _kept(body) == body


PERSONS_LABELLED_LINES = {
    "time window": "Please do the maintenance in this window:\nFrom: Saturday 22:00\n"
    "To: Sunday 02:00\nThanks, Uma",
    "leave dates": "I am on leave, please call my deputy.\nFrom: 01/12/2026\nTo: 05/12/2026",
    "error report": "Error details\nFrom: printer PRN-02\nSent: 3 jobs, all failed\n"
    "Status: offline",
}
DESK_HISTORY = (
    "From: Service Desk <helpdesk@desk.example>\nSent: Thursday, November 26, 2026 4:02 PM\n"
    "To: Uma User <uma@corp.example>\nSubject: Call 100 has been updated [CALL#100]\n\n"
    f"{MARKER}\n\nCall 100 has been updated.\n"
)


@pytest.mark.parametrize("marker", [MARKER, None], ids=["marker", "heuristic"])
@pytest.mark.parametrize("shape", sorted(PERSONS_LABELLED_LINES))
def test_persons_labelled_lines_above_a_header_block_are_kept(
    shape: str, marker: str | None
) -> None:
    """ "From: Saturday 22:00" over "To: Sunday 02:00" is the person's instruction, not the
    header block of an older message: no address, no dated Sent line. Only the real Outlook
    block under it (and our message) goes."""
    reply = PERSONS_LABELLED_LINES[shape]
    result = truncate_reply(f"{reply}\n\n{DESK_HISTORY}", marker=marker)
    assert result.kept == reply
    assert result.elided.startswith("From: Service Desk")


@pytest.mark.parametrize("shape", sorted(PERSONS_LABELLED_LINES))
def test_persons_labelled_lines_alone_are_not_a_header_block(shape: str) -> None:
    body = PERSONS_LABELLED_LINES[shape] + "\n\nThanks again."
    assert truncate_reply(body).method is TruncationMethod.NONE


@pytest.mark.parametrize("cc", ["", "Cc: Ops <ops@corp.example>\n\n"], ids=["no-cc", "cc"])
def test_header_block_with_blank_lines_between_labels_goes_whole(cc: str) -> None:
    """Outlook's HTML as text puts each label in its own paragraph: the whole block over our
    marker is history, its rule line and From line included."""
    body = (
        "Tray 2.\n\n\n\n________________________________\n\n"
        "From: Service Desk <helpdesk@desk.example>\n\n"
        "Sent: Thursday, November 26, 2026 4:02 PM\n\nTo: Uma User <uma@corp.example>\n\n"
        f"{cc}Subject: Call 100 has been updated\n\n\n{MARKER}\n\nCall 100 has been updated.\n"
    )
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == "Tray 2."
    assert result.elided.startswith("________________________________\n\nFrom: Service Desk")


def test_leading_header_block_of_the_message_itself_is_dropped() -> None:
    body = "Od: Jan <jan@example.com>\nWysłano: 1 marca 2023\nTemat: Test\n\nCześć Anno,\nJak?\n"
    assert _kept(body) == "Cześć Anno,\nJak?"


# --------------------------------------------------------------------------- separators


@pytest.mark.parametrize(
    "separator",
    [
        "-----Original Message-----",
        "----- Original Message -----",
        "-----Ursprüngliche Nachricht-----",
        "-----Oprindelig meddelelse-----",
        "-----Message d'origine-----",
        "-----Mensaje original-----",
        "---------- Forwarded message ---------",
        "-------- Message transféré --------",
        "---------- Vidarebefordrat meddelande ----------",
        "Begin forwarded message:",
        "Début du message réexpédié :",
    ],
)
def test_original_message_and_forward_separators_cut(separator: str) -> None:
    result = truncate_reply(f"Test reply\n\n{separator}\n\nolder text\n")
    assert result.kept == "Test reply"
    assert separator in result.elided


@pytest.mark.parametrize(
    "heading",
    [
        "==== Fehlerbericht ====",
        "--- Original plan ---",
        "*** Nachricht an alle ***",
        "-- forwarded to the vendor --",
        "---- Hata mesajı ----",
    ],
)
@pytest.mark.parametrize("above", ["Update:\n", ""], ids=["text-above", "at-top"])
def test_persons_framed_heading_over_their_text_is_kept(heading: str, above: str) -> None:
    """A framed heading the person typed is no "Original Message" separator: it holds other
    words than a separator's and no header block or quote follows it."""
    reply = f"{above}{heading}\nPrinter reports E42 on tray 2.\nPlease replace it."
    history = f"{ATTRIBUTIONS['en']}\n> {MARKER}\n> Call 100 has been updated.\n"
    result = truncate_reply(f"{reply}\n\n{history}")
    assert result.kept == reply
    assert result.elided.startswith(ATTRIBUTIONS["en"])


def test_tobit_david_separator_without_brackets_cuts() -> None:
    body = (
        "New text.\n\nOriginal Message processed by david\u00ae\nFW: Printer 9. August 2026\n"
        "Von Max Muster\nAn Service Desk\n\nOlder text.\n"
    )
    result = truncate_reply(body)
    assert result.kept == "New text."
    assert "Older text." in result.elided


def test_decorated_line_without_separator_keyword_is_kept() -> None:
    body = "Please enter feedback below.\n\n------ Enter Feedback Below ------\n\nGreat service.\n"
    assert _kept(body) == body.strip()


# ------------------------------------------------ marker and operator separators


def test_marker_line_cuts_first_and_removes_the_attribution_above_it() -> None:
    body = (
        "Thanks, fixed.\n\nOn Mon, 3 May 2021 at 10:00, Helpdesk <hd@example.com> wrote:\n"
        f"> {MARKER}\n> Your call 123 was updated.\n"
    )
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == "Thanks, fixed."
    assert result.method is TruncationMethod.MARKER
    assert MARKER in result.elided
    assert "marker" in result.detail


def test_marker_beats_operator_separators() -> None:
    body = f"Answer\nCUT\nmore\n{MARKER}\nold"
    result = truncate_reply(body, marker=MARKER, separators=["CUT"])
    assert result.method is TruncationMethod.MARKER
    assert result.kept == "Answer\nCUT\nmore"


def test_operator_separator_cuts_at_the_first_line_containing_it() -> None:
    result = truncate_reply("Looks good\n=== CUT HERE ===\nold stuff\n", separators=["cut here"])
    assert result.kept == "Looks good"
    assert result.method is TruncationMethod.SEPARATOR
    assert result.elided == "=== CUT HERE ===\nold stuff"


# Field trial: replies to our own replies, whose quoted history starts with our marker line.

OUR_QUOTED_REPLY = f"> {MARKER}\n>\n> Call 100 has been updated.\n"
STILL_BROKEN = "It's still broken, and now it smells of burning."
QUOTE_INTROS = {
    "plain": "Service Desk wrote:\n",
    "horde": "Quoting Service Desk <helpdesk@desk.example>:\n\n",
    "mutt": "* Service Desk <helpdesk@desk.example> [2026-11-26 16:02]:\n",
    "gmail": "On Thu, 26 Nov 2026 at 16:02, Service Desk <helpdesk@desk.example> wrote:\n",
}


@pytest.mark.parametrize("intro", QUOTE_INTROS.values(), ids=QUOTE_INTROS.keys())
def test_reply_below_our_quoted_marker_is_kept_and_its_quote_intro_goes(intro: str) -> None:
    body = f"{intro}{OUR_QUOTED_REPLY}\n{STILL_BROKEN}\n"
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == STILL_BROKEN
    assert result.method is TruncationMethod.MARKER
    assert result.elided.startswith(intro.strip())
    assert result.elided.endswith("> Call 100 has been updated.")


@pytest.mark.parametrize("gap", ["", "\n"])
def test_a_wrapped_attribution_over_our_quoted_marker_goes_whole(gap: str) -> None:
    """Gmail wraps its plain text at about 78 characters, so a long name and address push
    "wrote:" onto a line of its own; a review found the first half of that line stored as
    the person's text."""
    intro = "On Thu, Nov 26, 2026 at 4:02 PM Service Desk <helpdesk@desk.example>\nwrote:\n"
    body = f"Yes, it works now after the reboot.\n\n{intro}{gap}{OUR_QUOTED_REPLY}"
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == "Yes, it works now after the reboot."
    assert result.elided.startswith("On Thu, Nov 26, 2026")


def test_text_above_and_below_our_quoted_marker_is_all_kept() -> None:
    intro = QUOTE_INTROS["gmail"]
    body = f"Short answer: no.\n\n{intro}{OUR_QUOTED_REPLY}\nLong answer: {STILL_BROKEN}"
    assert _kept(body, marker=MARKER) == f"Short answer: no.\n\nLong answer: {STILL_BROKEN}"


def test_answers_inside_our_quoted_message_keep_their_questions() -> None:
    body = (
        f"Service Desk wrote:\n> {MARKER}\n>\n> Which tray jams?\nTray 2.\n> Since when?\n"
        "Since Monday.\n>\n> Regards, Alice\n"
    )
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == "> Which tray jams?\nTray 2.\n> Since when?\nSince Monday."
    assert MARKER in result.elided
    assert "> Regards, Alice" in result.elided


def test_persons_own_quote_above_our_history_is_part_of_the_reply() -> None:
    reply = (
        "Here is what the vendor told me:\n\n> Please update the firmware to 2.3.\n"
        "> That fixes E-204.\n\nI did that and it still fails. Can you send a technician?"
    )
    body = f"{reply}\n\n{QUOTE_INTROS['gmail']}{OUR_QUOTED_REPLY}"
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == reply
    assert result.elided.startswith("On Thu, 26 Nov 2026")


def test_pasted_interpreter_session_above_our_history_is_part_of_the_reply() -> None:
    reply = (
        "The script stops here:\n\n>>> import printerlib\n>>> printerlib.feed(tray=2)\n"
        "Traceback (most recent call last):\n"
        '  File "<stdin>", line 1, in <module>\n'
        "printerlib.PaperJam: tray 2\n\nAny idea?"
    )
    body = f"{reply}\n\n{QUOTE_INTROS['gmail']}{OUR_QUOTED_REPLY}"
    assert _kept(body, marker=MARKER) == reply


def test_unrecognised_line_over_our_quoted_marker_stays() -> None:
    """Without a recognised quote intro right above our history nothing more than before goes."""
    body = f"Thanks, fixed.\n{OUR_QUOTED_REPLY}"
    assert _kept(body, marker=MARKER) == "Thanks, fixed."


NOTES_HEADERS = {
    "name-over-address": (
        "  Service Desk\n"
        "  <helpdesk@desk.example>                                   To\n"
        "                                         Uma User <uma@corp.example>\n"
        "  26/11/2026 16:02                                          cc\n"
        "\n"
        "                                                        Subject\n"
        "                                         Call 100 has been updated [CALL#100]\n"
    ),
    "name-beside-to": (
        "  Service Desk/IT/ACME@ACME                    To\n"
        "                                               Uma User/Sales/ACME@ACME\n"
        "  26.11.2026 16:02                             cc\n"
        "                                               Subject\n"
        "                                               Call 100 [CALL#100]\n"
    ),
    "german": (
        "  Service Desk <helpdesk@desk.example>         An\n"
        "                                               Uma User <uma@corp.example>\n"
        "  26.11.2026 16:02                             Kopie\n"
        "                                               Thema\n"
        "                                               Call 100 [CALL#100]\n"
    ),
}


@pytest.mark.parametrize("header", NOTES_HEADERS.values(), ids=NOTES_HEADERS.keys())
def test_lotus_notes_column_header_over_our_marker_goes_with_the_history(header: str) -> None:
    body = f"Still jammed, please come today.\n\n\n\n{header}\n\n\n{MARKER}\n\nCall 100 ...\n"
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == "Still jammed, please come today."
    assert result.elided.lstrip().startswith("Service Desk")
    assert result.method is TruncationMethod.MARKER


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        (  # labels at column ends, but no address: not a header
            "Steps I tried:\n  1. switch off\n  2. wait      To\n  3. switch on      Subject",
            None,
        ),
        (  # To and Subject, but the address is in the reply above the columns
            "Sent to helpdesk@desk.example:\n\n  Printer 4      To\n  Room 12  Subject",
            None,
        ),
        (  # To and cc at column ends, an address, but no Subject label ending the block
            "Uma User <uma@corp.example>      To\n  Sales team        cc\n  Ends here.",
            None,
        ),
        (  # an unindented line over the first label is not the sender's column
            "Please change it.\nService Desk\n  <helpdesk@desk.example>    To\n  x    Subject",
            "Please change it.\nService Desk",
        ),
    ],
    ids=["no-address", "address-outside-the-columns", "no-subject", "unindented-sender"],
)
def test_text_that_only_looks_like_a_notes_header_is_kept(reply: str, kept: str | None) -> None:
    body = f"{reply}\n\n{MARKER}\nOld.\n"
    assert _kept(body, marker=MARKER) == (reply if kept is None else kept)


def test_reply_below_the_marker_keeps_the_whole_body() -> None:
    body = f"{MARKER}\nmy reply typed below the marker"
    result = truncate_reply(body, marker=MARKER)
    assert result.method is TruncationMethod.KEPT_WHOLE
    assert result.kept == body
    assert result.elided == ""


# ------------------------------------------------------ announced inline answers

OUTLOOK_HISTORY = (
    "From: Alice Analyst <helpdesk@desk.example>\nSent: Thursday, November 26, 2026 4:02 PM\n"
    "To: Uma User <uma@corp.example>\nSubject: Call 100 [CALL#100]\n\n"
)
INLINE_ANSWERS = "1. Which tray jams?\n[Uma] Tray 2.\n\n2. Since when?\n[Uma] Since Monday."
ANNOUNCEMENTS = {
    "en": "Hi Alice, see my answers inline below.",
    "en-red": "Hi Alice,\n\nmy answers are in red.\n\nThanks,\nUma",
    "en-below": "Hi Alice,\n\nanswers below.\n\nUma",
    "en-see-below": "Hi Alice, please see below.",
    "en-inline-comments": "Inline comments, as promised.",
    "en-colon": "Hi Alice,\nComments: inline.",
    "de": "Hallo Alice,\nAntworten siehe unten.",
    "de-text": "Hallo Alice, meine Antworten stehen im Text.",
    "fr": "Bonjour Alice, voir mes réponses ci-dessous.",
    "fr-rouge": "Bonjour, réponses en rouge dans votre message.",
    "es": "Hola Alice, mis respuestas van entre líneas.",
    "it": "Ciao Alice, vedi sotto.",
    "nl": "Hoi Alice, zie mijn antwoorden hieronder.",
    "pt": "Olá Alice, respostas abaixo em vermelho.",
    "en-verb": "Hi Alice, I have answered your questions inline below.",
    "en-see-below-closing": "Hi Alice,\nplease see below.\n\nThanks,\nUma User",
    "de-verb": "Hallo Alice, ich habe im Text geantwortet, wie immer.",
}


@pytest.mark.parametrize("with_marker", [True, False], ids=["marker", "heuristic"])
@pytest.mark.parametrize("announcement", ANNOUNCEMENTS.values(), ids=ANNOUNCEMENTS.keys())
def test_announced_inline_answers_keep_the_whole_body(announcement: str, with_marker: bool) -> None:
    """Answers typed into an Outlook history cannot be told from it: when the kept text says
    they are there, the whole body is kept, and the detail says why."""
    marker_line = f"{MARKER}\n\n" if with_marker else ""
    body = f"{announcement}\n\n{OUTLOOK_HISTORY}{marker_line}{INLINE_ANSWERS}\n"
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == body.strip()
    assert result.elided == ""
    assert result.method is TruncationMethod.KEPT_WHOLE
    assert "announces answers" in result.detail


@pytest.mark.parametrize(
    "reply",
    [
        "The tray below the scanner jams again.",
        "See the log below for the error.",
        "My notes below:\n- tray 2 jams\n- since Monday",
        "Comments below are from the vendor:\nReboot twice, then wait ten minutes.",
        "Hi Alice,\n\n"
        + "The printer on the third floor keeps jamming on A3 paper.\n" * 6
        + "My comments are inline, as usual, when I find the time.\n"
        + "It started after the firmware update last week, I think.\n" * 3
        + "Uma",
        # review: reports about another mail, and a log passed as the closing of "see below"
        "I replied in your email yesterday but the printer still jams.",
        "No response in your mail about the VPN yet.",
        "The answer in your message did not help, the VPN still drops every hour.",
        "Here is the log, see below.\nERR 1\nERR 2",
        "Thanks, see below.\nERR 1\nERR 2",
        "No answers inline yet, sorry.",
    ],
    ids=[
        "unrelated-below",
        "see-the-log-below",
        "notes-below-colon",
        "comments-below-text",
        "deep-in-long-text",
        "replied-in-your-email-yesterday",
        "no-response-in-your-mail",
        "the-answer-in-your-message",
        "log-lines-after-see-below",
        "log-lines-as-a-closing",
        "negated",
    ],
)
def test_ordinary_replies_mentioning_below_are_cut_as_usual(reply: str) -> None:
    body = f"{reply}\n\n{OUTLOOK_HISTORY}{INLINE_ANSWERS}\n"
    result = truncate_reply(body)
    assert result.kept == reply
    assert result.method is TruncationMethod.HEURISTIC


def test_a_bare_see_below_over_a_history_without_questions_is_cut_as_usual() -> None:
    """'see below' may point at a forwarded mail or a log: it counts only over questions."""
    body = f"Hi Alice, please see below.\n\n{OUTLOOK_HISTORY}The scanner on floor 2 is offline.\n"
    result = truncate_reply(body)
    assert result.kept == "Hi Alice, please see below."
    assert result.method is TruncationMethod.HEURISTIC


def test_announced_answers_over_a_quoted_history_follow_the_quotes() -> None:
    """With >-quoted history the answers show by themselves: no whole-body keep."""
    body = (
        "See my answers inline below.\n\nOn Thu, 26 Nov 2026 at 16:02, Alice <a@desk.example> "
        "wrote:\n> Which tray jams?\n> Since when?\n"
    )
    result = truncate_reply(body)
    assert result.kept == "See my answers inline below."
    assert result.method is TruncationMethod.HEURISTIC


# --------------------------------------------------------------------------- signatures


def test_signature_kept_unless_asked() -> None:
    body = "Hello\n\n-- \nBob\nACME Ltd\n"
    assert _kept(body) == "Hello\n\n-- \nBob\nACME Ltd"
    stripped = truncate_reply(body, strip_signature=True)
    assert stripped.kept == "Hello"
    assert "ACME Ltd" in stripped.elided


@pytest.mark.parametrize(
    "device",
    [
        "Sent from my iPhone",
        "Sent from my Verizon Wireless BlackBerry",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Enviado desde mi iPhone",
        "Get Outlook for Android",
    ],
)
def test_device_line_stripped_only_in_signature_mode(device: str) -> None:
    body = f"Here is another email\n\n{device}\n"
    assert _kept(body, strip_signature=True) == "Here is another email"
    assert device in _kept(body)


def test_sent_from_sentence_is_not_a_device_line() -> None:
    body = "Here is another email\n\nSent from my desk, is much easier then my mobile phone."
    assert _kept(body, strip_signature=True) == body


def test_hyphen_lists_are_never_signatures() -> None:
    body = "Items:\n- one\n- two\n-three"
    assert _kept(body, strip_signature=True) == body


def test_dash_name_signature_and_list_footer_stripped() -> None:
    body = "Question?\n\n-Abhishek Kona\n\n\n____________\nriak-users mailing list\nhttp://x\n"
    assert _kept(body, strip_signature=True) == "Question?"


def test_closing_valediction_block_stripped_in_signature_mode() -> None:
    body = "Hej,\n\nSvar.\n\nMed venlig hilsen\nAnders Andersen\n"
    assert _kept(body, strip_signature=True) == "Hej,\n\nSvar."
    assert _kept(body) == body.strip()


def test_valediction_followed_by_more_text_is_kept() -> None:
    body = "Regards,\nthe new prices are attached and the details follow in this long paragraph."
    assert _kept(body, strip_signature=True) == body


def test_signature_delimiter_inside_a_line_is_text() -> None:
    body = "And here is a fix -- this is not a signature.\n\nkthxbai"
    assert _kept(body, strip_signature=True) == body


# --------------------------------------------------------------------------- quote blocks


def test_inline_reply_keeps_quotes_between_reply_lines() -> None:
    body = (
        "On Tue, Apr 29, 2014 at 4:22 PM, Dev <dev@example.com> wrote:\n\n> question one\n>\n\n"
        "answer one\n\n> question two\n\nanswer two\n\n> old signature\n> more\n"
    )
    result = truncate_reply(body)
    assert result.kept.endswith("answer two")
    assert "> question two" in result.kept
    assert "> old signature" in result.elided
    assert "interleaved" in result.detail


def test_bottom_post_keeps_only_the_reply() -> None:
    body = "On 04/19/2011 07:10 AM, Roman wrote:\n\n>\n> Test\nTest reply"
    assert _kept(body) == "Test reply"


def test_text_after_the_quote_is_kept_when_nothing_older_follows() -> None:
    body = "Test reply\n\nOn 04/19/2011 07:10 AM, Roman wrote:\n\n> Test\n\nRegards, Roman"
    assert _kept(body) == "Test reply\n\nRegards, Roman"


OWN_QUOTE = (
    "Here is what the vendor told me:\n\n> Please update the firmware to 2.3.\n"
    "> That fixes E-204.\n\nI did that and it still fails."
)


@pytest.mark.parametrize("quoted_history", [True, False], ids=["quoted", "unquoted"])
def test_text_after_the_persons_own_quote_is_kept_when_older_history_follows(
    quoted_history: bool,
) -> None:
    """Text, a quote, text, then history: the quote is one the person made in their reply,
    whether the history under it is quoted (an inline reply) or not (a hard cut)."""
    history = "> Call 100 has been updated." if quoted_history else "Call 100 has been updated."
    body = (
        f"{OWN_QUOTE}\n\n"
        "On Mon, 30 Nov 2026 at 08:00, Service Desk <helpdesk@desk.example> wrote:\n"
        f"{history}\n"
    )
    result = truncate_reply(body)
    assert result.kept == OWN_QUOTE
    assert result.elided.startswith("On Mon, 30 Nov 2026")
    assert result.method is TruncationMethod.HEURISTIC


def test_text_after_a_quote_is_kept_above_our_history_found_past_a_banner() -> None:
    """A banner between the header block and our marker hides the quote intro of our history:
    the heuristic decides above it, and keeps the text after the person's quote."""
    body = (
        "The vendor's notes:\n> reboot twice\n> then wait\n\nDid both, no change.\n\n"
        "From: Service Desk <helpdesk@desk.example>\nSent: Thursday, November 26, 2026 4:02 PM\n"
        f"To: Uma User\nSubject: Call 100\n\nCAUTION: external sender.\n\n{MARKER}\nOld.\n"
    )
    result = truncate_reply(body, marker=MARKER)
    assert result.kept == "The vendor's notes:\n> reboot twice\n> then wait\n\nDid both, no change."
    assert result.method is TruncationMethod.MARKER


def test_quote_without_attribution_goes() -> None:
    assert _kept("Hello\n\n> Subject: Test\n> From: bob@example.com\n>\n> Hi") == "Hello"


def test_single_quoted_looking_line_inside_text_is_kept() -> None:
    body = "Visit us now...\n>>> >>>  http://www.domain.com <<<\nVisit our site above"
    assert _kept(body) == body


def test_wrapped_link_line_inside_a_quote_does_not_make_an_inline_reply() -> None:
    body = "Blah\n\nOn Mon, 24 Sep 2012 at 3:46 PM, bob wrote:\n\n> View (http://x/a\n_b=3)\n>\n"
    assert _kept(body) == "Blah"


# --------------------------------------------------------------------------- whole-body cases


def test_only_quoted_text_keeps_the_whole_body() -> None:
    body = "> only quoted\n> text"
    result = truncate_reply(body)
    assert result.method is TruncationMethod.KEPT_WHOLE
    assert result.kept == body
    assert "whole body kept" in result.detail


def test_plain_message_is_untouched() -> None:
    result = truncate_reply("Just a question about my laptop.\n")
    assert result == Truncation(
        kept="Just a question about my laptop.",
        elided="",
        method=TruncationMethod.NONE,
        detail="no quoted history found",
    )


def test_crlf_is_normalised() -> None:
    result = truncate_reply("Hi\r\n\r\nOn Mon, 3 May 2021, Bob <b@example.com> wrote:\r\n> hi\r\n")
    assert result.kept == "Hi"
    assert "\r" not in result.elided


def test_method_values_are_lowercase_strings() -> None:
    assert {m.value for m in TruncationMethod} == {
        "marker",
        "separator",
        "heuristic",
        "none",
        "kept_whole",
    }


def test_huge_bodies_are_examined_from_the_start_only() -> None:
    """A reply boundary near the top is found in a body of megabytes; the rest is history."""
    history = "> old line\n" * 200_000
    body = "New answer.\n\nOn Mon, 2 Nov 2026, Bob <bob@x.example> wrote:\n" + history
    cut = truncate_reply(body, max_scan_chars=4096)
    assert cut.kept == "New answer."
    assert cut.elided.endswith("> old line\n")
    assert "only the first" in cut.detail
    assert len(cut.kept) + len(cut.elided) >= len(body) - 10


def test_huge_body_without_a_boundary_is_kept_whole() -> None:
    body = "word\n" * 100_000
    cut = truncate_reply(body, max_scan_chars=4096)
    assert cut.kept == body
    assert cut.method in (TruncationMethod.NONE, TruncationMethod.KEPT_WHOLE)


def test_separators_given_as_one_str_are_refused_not_read_per_character() -> None:
    """``separators="-----Original Message-----"`` (a str is a Sequence[str], so mypy lets it
    through) was read one character at a time: every line holding a hyphen was a separator,
    and "the well-known fix" cut the customer's reply there. Now it is refused, saying how."""
    body = "Thanks,\nthe well-known fix worked.\n\n-----Original Message-----\nold text"
    with pytest.raises(ArgumentTypeError, match=r"separators must be a sequence of str.*comma"):
        truncate_reply(body, separators="-----Original Message-----")
    kept = truncate_reply(body, separators=("-----Original Message-----",))
    assert kept.kept == "Thanks,\nthe well-known fix worked."
    assert kept.method is TruncationMethod.SEPARATOR


@pytest.mark.parametrize("scan", [0, -1])
def test_a_scan_of_no_characters_is_refused(scan: int) -> None:
    """``max_scan_chars=0`` examined nothing and kept every reply whole ("cut would leave
    nothing"); -1 examined all but the last line. A bound under 1 is the caller's slip."""
    with pytest.raises(ValueError, match="max_scan_chars must be 1 or more"):
        truncate_reply("Fixed, thanks.\n\nOn Mon, Bob wrote:\n> hi\n", max_scan_chars=scan)
