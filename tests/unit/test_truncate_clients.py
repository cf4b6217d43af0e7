"""Truncate Incoming Emails across mail clients and reply shapes (round three).

Spec: "If the incoming email is a reply to an outgoing email from the system, and Truncate
Incoming Emails is selected in System Administration, only the reply portion of the email is
added to the history of the call." Each row is a reply as a mail client writes it (the client
and its format named in the id), with the exact text that must be kept: the person's own text
whole, our quoted history gone. Names and addresses are made up.
"""

from __future__ import annotations

import pytest

from asm_email_rules.truncate import truncate_reply

MARKER = "##- Please type your reply above this line -##"
DESK = "helpdesk@desk.example"
REPLY = "The printer in room 4 still jams on tray 2."
OURS = f"{MARKER}\n\nCall 100 has been updated.\nPlease reply to this message.\n"
QUOTED_OURS = "".join(f"> {line}\n" if line else ">\n" for line in OURS.splitlines())
OUTLOOK = (
    f"From: Service Desk <{DESK}>\nSent: Thursday, November 26, 2026 4:02 PM\n"
    "To: Uma User <uma@corp.example>\nSubject: Call 100 has been updated\n"
)


def _row(case_id: str, body: str, kept: str, marker: str | None = None) -> object:
    return pytest.param(body, kept, marker, id=case_id)


#: (body, exact kept text, marker passed) per client format and reply shape
CASES = [
    # ---- the person's own text: a report of what someone said, with a date but no time or
    # address (mail programs write both), stays, also over our located history
    _row(
        "person-dated-report-over-nothing",
        f"{REPLY}\nOn 26/11/2026 the technician wrote:\nthe roller is worn.\n",
        f"{REPLY}\nOn 26/11/2026 the technician wrote:\nthe roller is worn.",
    ),
    _row(
        "person-dated-report-de",
        f"{REPLY}\n\nAm 26.11.2026 schrieb der Techniker:\nDie Rolle ist abgenutzt.\n",
        f"{REPLY}\n\nAm 26.11.2026 schrieb der Techniker:\nDie Rolle ist abgenutzt.",
    ),
    _row(
        "person-dated-report-over-our-marker",
        f"Hi,\n\nOn 25/11/2026 the technician wrote:\nthe roller is worn.\n\n{OURS}",
        "Hi,\n\nOn 25/11/2026 the technician wrote:\nthe roller is worn.",
        MARKER,
    ),
    # ... while a dated attribution with a time (Thunderbird) still cuts unquoted history
    _row(
        "thunderbird-date-and-time-unquoted",
        f"{REPLY}\n\nOn 26/11/2026 16:02, Service Desk wrote:\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "thunderbird-dotted-date-and-time-de",
        f"{REPLY}\n\nAm 26.11.2026 um 16.02 schrieb Service Desk:\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    # ---- a labelled line of the person's right above an Outlook block (its own Sent/Date or
    # Subject under it) is their text, not the block's first line
    _row(
        "person-date-line-over-outlook-block-marker",
        f"{REPLY}\nDate: 26/11/2026 it started.\n\n{OUTLOOK}\n{OURS}",
        f"{REPLY}\nDate: 26/11/2026 it started.",
        MARKER,
    ),
    _row(
        "person-subject-line-over-outlook-block",
        f"{REPLY}\nSubject: tray 2, since 26/11/2026\n\n{OUTLOOK}\nCall 100 has been updated.\n",
        f"{REPLY}\nSubject: tray 2, since 26/11/2026",
    ),
    _row(
        "gmx-html-as-text-blank-lines-between-labels",
        f"{REPLY}\n\nGesendet: Donnerstag, 26. November 2026 um 16:02 Uhr\n\n"
        f'Von: "Service Desk" <{DESK}>\n\nAn: uma@corp.example\n\nBetreff: Call 100\n\n{OURS}',
        REPLY,
        MARKER,
    ),
    # ---- a framed separator line over a header block goes with it in any wording (Zimbra
    # "----- Ursprüngliche Mail -----", Daum "----- 원본 메일 -----")
    _row(
        "zimbra-de-separator-over-block",
        f'{REPLY}\n\n----- Ursprüngliche Mail -----\nVon: "Service Desk" <{DESK}>\n'
        'An: "Uma User" <uma@corp.example>\nGesendet: Donnerstag, 26. November 2026 16:02:11\n'
        "Betreff: Call 100\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "daum-ko-separator-over-block-marker",
        f"{REPLY}\n\n----- 원본 메일 -----\n보낸사람: Service Desk <{DESK}>\n"
        "받는사람: Uma <uma@corp.example>\n날짜: 2026년 11월 26일 목요일, 16시 02분 11초 +0900\n"
        f"제목: Call 100\n\n{OURS}",
        REPLY,
        MARKER,
    ),
    _row(
        "zimbra-fr-separator-over-block",
        f'{REPLY}\n\n----- Mail original -----\nDe: "Service Desk" <{DESK}>\n'
        'À: "Uma User" <uma@corp.example>\nEnvoyé: Jeudi 26 Novembre 2026 16:02:11\n'
        "Objet: Call 100\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "person-framed-heading-over-own-text",
        f"==== Fehlerbericht ====\n{REPLY}\n\n{OUTLOOK}\nCall 100 has been updated.\n",
        f"==== Fehlerbericht ====\n{REPLY}",
    ),
    # a person's emphasis right above our Outlook block (no mail program frames its separator
    # with two characters or asterisks) is their text: only the block goes
    _row(
        "person-bold-line-over-outlook-block",
        f"{REPLY}\n\n**URGENT**\n\n{OUTLOOK}\nCall 100 has been updated.\n",
        f"{REPLY}\n\n**URGENT**",
    ),
    _row(
        "person-starred-note-over-outlook-block-marker",
        f"{REPLY}\n\n*** I am on leave from Monday ***\n\n{OUTLOOK}\n{OURS}",
        f"{REPLY}\n\n*** I am on leave from Monday ***",
        MARKER,
    ),
    _row(
        "person-framed-signature-over-outlook-block",
        f"{REPLY}\n\n== Uma User, Finance ==\n\n{OUTLOOK}\nCall 100 has been updated.\n",
        f"{REPLY}\n\n== Uma User, Finance ==",
    ),
    # ---- GroupWise: a ">>> name date time >>>" line over the unquoted original is its header
    _row(
        "groupwise-header-line",
        f'{REPLY}\n\n>>> "Service Desk" <{DESK}> 26/11/2026 16:02 >>>\nCall 100 was updated.\n',
        REPLY,
    ),
    _row(
        "groupwise-header-line-us-date",
        f"{REPLY}\n\n>>> Service Desk<{DESK}> 11/26/2026 4:02 PM >>>\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "groupwise-header-line-marker",
        f"{REPLY}\n\n>>> Service Desk 26.11.2026 16:02 >>>\n{OURS}",
        REPLY,
        MARKER,
    ),
    _row(
        "person-arrow-heading-stays",
        f"{REPLY}\n>>> Update 26/11/2026 >>>\nThe tray was fixed.\n",
        f"{REPLY}\n>>> Update 26/11/2026 >>>\nThe tray was fixed.",
    ),
    # ---- Tutanota: "<date>, <time> von/by <bare address>:" with no verb
    _row(
        "tutanota-de-over-quote-marker",
        f"{REPLY}\n\n\n26. Nov. 2026, 16:02 von {DESK}:\n\n{QUOTED_OURS}",
        REPLY,
        MARKER,
    ),
    _row(
        "tutanota-en-unquoted",
        f"{REPLY}\n\n\nNov 26, 2026, 4:02 PM by {DESK}:\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "person-time-and-address-in-a-sentence-stays",
        f"{REPLY}\nOn 26/11/2026 at 16:02 write to ops@corp.example:\nthe error list\n",
        f"{REPLY}\nOn 26/11/2026 at 16:02 write to ops@corp.example:\nthe error list",
    ),
    # ---- Lotus Notes' forward line: "----- Forwarded by Name/Org on <date> <time> -----"
    _row(
        "notes-forwarded-by",
        f"{REPLY}\n\n----- Forwarded by Uma User/Corp on 26/11/2026 16:10 -----\n\n"
        "Call 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "notes-weitergeleitet-von",
        f"{REPLY}\n\n----- Weitergeleitet von Uma User/Corp am 26.11.2026 16:10 -----\n\n"
        "Call 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "person-forwarded-heading-without-time-stays",
        f"{REPLY}\n--- Forwarded by the vendor on 26/11/2026 ---\nReplace the roller.\n",
        f"{REPLY}\n--- Forwarded by the vendor on 26/11/2026 ---\nReplace the roller.",
    ),
    # ---- Foxmail / Outlook with full-width colons and no address: the Sent value's time has
    # an ASCII colon, the label a full-width one
    _row(
        "foxmail-zh-full-width-labels",
        f"{REPLY}\n\n\n发件人： Service Desk\n发送时间： 2026-11-26 16:02\n收件人： uma\n"
        "主题： Call 100\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "outlook-ja-full-width-labels-marker",
        f"{REPLY}\n\n差出人： Service Desk\n送信日時： 2026年11月26日 16:02\n宛先： Uma User\n"
        f"件名： Call 100\n\n{OURS}",
        REPLY,
        MARKER,
    ),
    # ---- the person reporting with date and time, the speaker named as in prose ("my
    # manager", "der Techniker", "mon chef"): their text, not a mail program's attribution
    _row(
        "person-reports-manager-with-time-over-our-marker",
        f"Hi,\n\nOn 26 Nov 2026 at 10:00, my manager wrote:\nplease escalate this.\n\n{OURS}",
        "Hi,\n\nOn 26 Nov 2026 at 10:00, my manager wrote:\nplease escalate this.",
        MARKER,
    ),
    _row(
        "person-reports-technician-de",
        f"{REPLY}\n\nAm 26.11.2026 um 10:00 schrieb der Techniker:\nDie Rolle ist abgenutzt.\n",
        f"{REPLY}\n\nAm 26.11.2026 um 10:00 schrieb der Techniker:\nDie Rolle ist abgenutzt.",
    ),
    _row(
        "person-reports-chef-fr",
        f"{REPLY}\n\nLe 26/11/2026 à 10:00, mon chef a écrit :\nil faut escalader.\n",
        f"{REPLY}\n\nLe 26/11/2026 à 10:00, mon chef a écrit :\nil faut escalader.",
    ),
    _row(
        "thunderbird-name-with-particles-still-cut",
        f"{REPLY}\n\nOn 26/11/2026 16:02, Dirk van der Berg wrote:\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    # ---- the person's own labelled list under their intro line (no address in it) stays
    _row(
        "person-labelled-list-under-intro",
        "Please move the printers.\nDetails:\nFrom: building A\nTo: building B\n"
        "Date: 26/11/2026 16:00\nSubject: printer move\n\n"
        f"On Thu, Nov 26, 2026 at 4:02 PM Service Desk <{DESK}> wrote:\n> Call 100.\n",
        "Please move the printers.\nDetails:\nFrom: building A\nTo: building B\n"
        "Date: 26/11/2026 16:00\nSubject: printer move",
    ),
    _row(
        "person-labelled-list-under-intro-marker",
        "Details:\nFrom: building A\nTo: building B\nDate: 26/11/2026 16:00\n"
        f"Subject: printer move\n\n{OURS}",
        "Details:\nFrom: building A\nTo: building B\nDate: 26/11/2026 16:00\nSubject: printer move",
        MARKER,
    ),
    _row(
        "person-pasted-headers-with-address-under-intro",
        "The bounce said:\nFrom: Mail Delivery System <mailer-daemon@corp.example>\n"
        "Date: 26/11/2026 16:02\nSubject: Undeliverable\n\nSo the printer cannot mail scans.\n\n"
        f"On Thu, Nov 26, 2026 at 4:02 PM Service Desk <{DESK}> wrote:\n> Call 100.\n",
        "The bounce said:\nFrom: Mail Delivery System <mailer-daemon@corp.example>\n"
        "Date: 26/11/2026 16:02\nSubject: Undeliverable\n\nSo the printer cannot mail scans.",
    ),
    # ... but our history's header block (with its address) right over our marker, under an
    # intro line we do not know (a forward intro in another language), is our history's
    _row(
        "unknown-forward-intro-sv-over-our-block-and-marker",
        f"{REPLY}\n\nVidarebefordrat mejl:\n{OUTLOOK}\n{OURS}",
        f"{REPLY}\n\nVidarebefordrat mejl:",
        MARKER,
    ),
    _row(
        "person-intro-over-our-block-and-marker",
        f"{REPLY}\n\nYour last mail:\n{OUTLOOK}\n{OURS}",
        f"{REPLY}\n\nYour last mail:",
        MARKER,
    ),
    _row(
        "person-pasted-headers-with-address-under-intro-marker",
        "The bounce said:\nFrom: Mail Delivery System <mailer-daemon@corp.example>\n"
        "Date: 26/11/2026 16:02\nSubject: Undeliverable\n\nSo the printer cannot mail scans.\n\n"
        f"{OURS}",
        "The bounce said:\nFrom: Mail Delivery System <mailer-daemon@corp.example>\n"
        "Date: 26/11/2026 16:02\nSubject: Undeliverable\n\nSo the printer cannot mail scans.",
        MARKER,
    ),
    # ---- ">" lines the person introduces with their own colon line are their reply
    _row(
        "person-quoted-commands-under-own-intro",
        "I ran:\n> ping printer4.corp.example\n> tracert printer4.corp.example\nBoth time out.\n",
        "I ran:\n> ping printer4.corp.example\n> tracert printer4.corp.example\nBoth time out.",
    ),
    _row(
        "person-quoted-commands-under-own-intro-over-our-marker",
        "I ran:\n> ping printer4.corp.example\n> tracert printer4.corp.example\nBoth time out."
        f"\n\n{OURS}",
        "I ran:\n> ping printer4.corp.example\n> tracert printer4.corp.example\nBoth time out.",
        MARKER,
    ),
    _row(
        "bottom-posted-answer-under-bare-quote-still-cut",
        "> Call 100 has been updated.\n> Please reply to this message.\n\nIt still jams.\n",
        "It still jams.",
    ),
    _row(
        "blackberry-block-under-device-line-still-cut",
        f"{REPLY}\n\nSent from my BlackBerry 10 smartphone.\nFrom: Service Desk\n"
        "Sent: Thursday, November 26, 2026 16:02\nTo: Uma User\nSubject: Call 100\n\n"
        "Call 100 has been updated.\n",
        f"{REPLY}\n\nSent from my BlackBerry 10 smartphone.",
    ),
    # ---- clients and shapes that already worked, kept as guards (format per client)
    _row(
        "outlook-ios-banner-rule-block",
        f"{REPLY}\n\nGet Outlook for iOS\n________________________________\n{OUTLOOK}\n{OURS}",
        f"{REPLY}\n\nGet Outlook for iOS",
        MARKER,
    ),
    _row(
        "new-outlook-bold-labels",
        f"{REPLY}\n\n*From:* Service Desk <{DESK}>\n*Sent:* Thursday, November 26, 2026 16:02\n"
        "*To:* Uma User <uma@corp.example>\n*Subject:* Call 100\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "outlook-mac-labels-on-own-lines-marker",
        f"{REPLY}\n\nFrom:\nService Desk <{DESK}>\nSent:\nThursday, November 26, 2026 4:02 PM\n"
        f"To:\nUma User\nSubject:\nCall 100\n\n{OURS}",
        REPLY,
        MARKER,
    ),
    _row(
        "gmail-ar-rtl",
        f"{REPLY}\n\nفي الخميس، 26 نوفمبر 2026 في 4:02 م، \u200fService Desk <{DESK}> كتب:\n"
        f"{QUOTED_OURS}",
        REPLY,
        MARKER,
    ),
    _row(
        "gmail-he-rtl-bidi-marks-unquoted",
        f"{REPLY}\n\n\u202bבתאריך יום ה׳, 26 בנוב׳ 2026 ב-16:02 מאת \u202aService Desk\u202c\u200f "
        f"<\u202a{DESK}\u202c\u200f>:\u202c\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "gmail-ko-wrapped-address",
        f"{REPLY}\n\n2026년 11월 26일 (목) 오후 4:02, Service Desk Team of Example Corporation <\n"
        f"{DESK}>님이 작성:\n\n> Call 100.\n",
        REPLY,
    ),
    _row(
        "gmail-en-attribution-over-three-lines-marker",
        f"{REPLY}\n\nOn Thursday, November 26, 2026 at 4:02:11 PM Central European\n"
        f"Standard Time, Service Desk Team of Example Corporation IT <\n{DESK}> wrote:\n\n"
        f"{QUOTED_OURS}",
        REPLY,
        MARKER,
    ),
    _row(
        "gmail-address-broken-after-at-unquoted",
        f"{REPLY}\n\nOn Thu, Nov 26, 2026 at 4:02 PM Service Desk <helpdesk@\ndesk.example> "
        "wrote:\n\nCall 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "apple-mail-de-quoted-attribution",
        f"{REPLY}\n\nVon meinem iPhone gesendet\n\n> Am 26.11.2026 um 16:02 schrieb Service Desk "
        f"<{DESK}>:\n>\n{QUOTED_OURS}",
        f"{REPLY}\n\nVon meinem iPhone gesendet",
        MARKER,
    ),
    _row(
        "yahoo-indented-attribution",
        f"{REPLY}\n\n    On Thursday, November 26, 2026, 04:02:11 PM GMT+1, Service Desk <{DESK}> "
        "wrote:  \n \n Call 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "aol-original-message",
        f"{REPLY}\n\n\n-----Original Message-----\nFrom: Service Desk <{DESK}>\n"
        "To: uma@corp.example\nSent: Thu, Nov 26, 2026 4:02 pm\nSubject: Call 100\n\nCall 100.\n",
        REPLY,
    ),
    _row(
        "gmx-sent-first",
        f"{REPLY}\n\n\nGesendet: Donnerstag, 26. November 2026 um 16:02 Uhr\n"
        f'Von: "Service Desk" <{DESK}>\nAn: uma@corp.example\nBetreff: Call 100\n\n{OURS}',
        REPLY,
        MARKER,
    ),
    _row(
        "mailru-quoted-verbless",
        f"{REPLY}\n\n\n>Четверг, 26 ноября 2026, 16:02 +03:00 от Service Desk <{DESK}>:\n"
        ">\n>Call 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "qq-original-separator-block",
        f"{REPLY}\n\n\n------------------ 原始邮件 ------------------\n"
        f'发件人: "Service Desk"<{DESK}>;\n发送时间: 2026年11月26日(星期四) 下午4:02\n'
        f'收件人: "Uma"<uma@corp.example>;\n主题: Call 100\n\n{OURS}',
        REPLY,
        MARKER,
    ),
    _row(
        "netease-unquoted",
        f'{REPLY}\n\n\n\n在 2026-11-26 16:02:11，"Service Desk" <{DESK}> 写道：\n\nCall 100.\n',
        REPLY,
    ),
    _row(
        "naver-original-message",
        f'{REPLY}\n\n-----Original Message-----\nFrom: "Service Desk"<{DESK}>\n'
        'To: "Uma"<uma@corp.example>;\nCc:\nSent: 2026-11-26 (목) 16:02:11 (GMT+09:00)\n'
        "Subject: Call 100\n\nCall 100.\n",
        REPLY,
    ),
    _row(
        "protonmail-separator-and-attribution",
        f"{REPLY}\n\n------- Original Message -------\nOn Thursday, November 26th, 2026 at 16:02, "
        f"Service Desk <{DESK}> wrote:\n\n{QUOTED_OURS}",
        REPLY,
        MARKER,
    ),
    _row(
        "samsung-separator-block",
        f"{REPLY}\n\n\nSent from my Galaxy\n\n\n-------- Original message --------\n"
        f"From: Service Desk <{DESK}>\nDate: 26/11/2026 16:02 (GMT+01:00)\n"
        "To: uma@corp.example\nSubject: Call 100\n\nCall 100.\n",
        f"{REPLY}\n\n\nSent from my Galaxy",
    ),
    _row(
        "horde-quoting-intro",
        f"{REPLY}\n\nZitat von Service Desk <{DESK}>:\n\n> Call 100 has been updated.\n",
        REPLY,
    ),
    _row(
        "bottom-posted-under-quoted-marker",
        f"On 2026-11-26 16:02, Service Desk wrote:\n{QUOTED_OURS}\nIt still jams.\n",
        "It still jams.",
        MARKER,
    ),
    _row(
        "inline-answers-between-quotes",
        "Hi,\n\nOn Thu, Nov 26, 2026 at 4:02 PM Service Desk <helpdesk@desk.example> wrote:\n"
        "> Which tray jams?\n\nTray 2.\n\n> Since when?\n\nSince Monday.\n\n> Thanks, Desk\n",
        "Hi,\n\nOn Thu, Nov 26, 2026 at 4:02 PM Service Desk <helpdesk@desk.example> wrote:\n"
        "> Which tray jams?\n\nTray 2.\n\n> Since when?\n\nSince Monday.",
    ),
    _row(
        "person-quote-with-said-kept",
        "The vendor said:\n> replace the roller\nWe did, it still jams.\n\n"
        f"On Thu, Nov 26, 2026 at 4:02 PM Service Desk <{DESK}> wrote:\n> Call 100\n",
        "The vendor said:\n> replace the roller\nWe did, it still jams.",
    ),
    _row(
        "top-posted-forward-kept-over-our-marker",
        f"{REPLY} Vendor says:\n\n---------- Forwarded message ---------\n"
        "From: Vendor <v@vendor.example>\nDate: Thu, Nov 26, 2026 at 4:02 PM\nSubject: Tray\n"
        "To: <uma@corp.example>\n\nReplace the roller.\n\n"
        f"On Thu, Nov 26, 2026 at 3:00 PM Service Desk <{DESK}> wrote:\n{QUOTED_OURS}",
        f"{REPLY} Vendor says:\n\n---------- Forwarded message ---------\n"
        "From: Vendor <v@vendor.example>\nDate: Thu, Nov 26, 2026 at 4:02 PM\nSubject: Tray\n"
        "To: <uma@corp.example>\n\nReplace the roller.",
        MARKER,
    ),
    _row(
        "signature-dash-dash-space-kept-by-default",
        f"{REPLY}\n-- \nUma User\nFloor 3\n\n"
        f"On Thu, Nov 26, 2026 at 4:02 PM Service Desk <{DESK}> wrote:\n> Call 100.\n",
        f"{REPLY}\n-- \nUma User\nFloor 3",
    ),
]


@pytest.mark.parametrize(("body", "kept", "marker"), CASES)
def test_reply_portion_is_kept_whole_and_history_goes(
    body: str, kept: str, marker: str | None
) -> None:
    assert truncate_reply(body, marker=marker).kept == kept


#: device signatures as iOS and Android mail apps write them, per display language; signature
#: mode (strip_signature=True) drops them from the end of the reply
DEVICE_LINES = {
    "en": "Sent from my iPhone",
    "de": "Von meinem iPhone gesendet",
    "fr": "Envoyé de mon iPhone",
    "it": "Inviato da iPhone",
    "ru": "Отправлено с iPhone",
    "pl": "Wysłane z iPhone'a",
    "es-android": "Enviado desde Outlook para Android",
    "ja": "iPhoneから送信",
    "zh": "从我的iPhone发送",
    "zh-TW": "從我的 iPhone 傳送",
    "ko": "나의 iPhone에서 보냄",
    "tr": "iPhone'umdan gönderildi",
    "zh-model": "从我的 iPhone 15 发送",
}


@pytest.mark.parametrize("device", DEVICE_LINES.values(), ids=DEVICE_LINES.keys())
def test_device_signature_goes_in_signature_mode(device: str) -> None:
    body = f"{REPLY}\n\n{device}\n\nOn Thu, Nov 26, 2026 at 4:02 PM Service Desk <{DESK}> wrote:\n"
    body += "> Call 100 has been updated.\n"
    assert truncate_reply(body, strip_signature=True).kept == REPLY


@pytest.mark.parametrize(
    "line",
    [
        "My Galaxy phone crashed, so I sent it from the iPad",
        "Outlook 発送 ist kaputt",
        # the person's problem, worded with a device name and a verb-last ending
        "邮件无法从Outlook发送",  # mail cannot be sent from Outlook
        "Android手机的邮件不能发送",  # the Android phone's mail cannot be sent
        "会議の招待をOutlookから送信",  # sending the meeting invitation from Outlook
        "파일을 Outlook에서 보냄",  # sending the file from Outlook
        "Rapor Outlook'tan gönderildi",  # the report was sent from Outlook
    ],
)
def test_a_sentence_about_a_device_stays_in_signature_mode(line: str) -> None:
    assert truncate_reply(f"{REPLY}\n\n{line}\n", strip_signature=True).kept == f"{REPLY}\n\n{line}"


#: attributions as Thunderbird, Apple Mail and Gmail write them in more display languages
#: (over a quote, over unquoted history, over our quoted marker: the same cut each time)
LOCALISED_ATTRIBUTIONS = {
    "thunderbird-ko": "2026-11-26 오후 4:02에 Service Desk 이(가) 쓴 글:",
    "apple-mail-pl": f"Wiadomość napisana przez Service Desk <{DESK}> w dniu 26.11.2026, "
    "o godz. 16:02:",
    "gmail-sw": f"Mnamo Alh, 26 Nov 2026 saa 16:02, Service Desk <{DESK}> aliandika:",
    "gmail-bn": f"বৃহঃ, ২৬ নভেম্বর, ২০২৬ এ ৪:০২ PM এ Service Desk <{DESK}> লিখেছেন:",
    "gmail-ur": f"جمعرات، 26 نومبر، 2026 کو 4:02 PM پر Service Desk <{DESK}> نے لکھا:",
    "apple-mail-fi": f"Service Desk <{DESK}> kirjoitti 26.11.2026 kello 16.02:",
    "apple-mail-hu": f"Service Desk <{DESK}> írta (2026. nov. 26. 16:02):",
    "apple-mail-ar": f"في ٢٦\u200f/١١\u200f/٢٠٢٦، الساعة ٤:٠٢ م، كتب Service Desk <{DESK}>:",
    "apple-mail-he": f"ב-26 בנוב׳ 2026, בשעה 16:02, \u200fService Desk <{DESK}> כתב/ה:",
    "thunderbird-tr": "26.11.2026 16:02 tarihinde Service Desk yazdı:",
    "thunderbird-el": "Στις 26/11/2026 16:02, ο/η Service Desk έγραψε:",
    "thunderbird-cs-two-digit-year": "Dne 26. 11. 26 v 16:02 Service Desk napsal(a):",
}


@pytest.mark.parametrize(
    "attribution", LOCALISED_ATTRIBUTIONS.values(), ids=LOCALISED_ATTRIBUTIONS.keys()
)
@pytest.mark.parametrize("history", ["quoted", "unquoted", "our quoted marker"])
def test_localised_attribution_starts_the_history(attribution: str, history: str) -> None:
    under = {
        "quoted": "> Call 100 has been updated.\n",
        "unquoted": "\nCall 100 has been updated.\n",
        "our quoted marker": QUOTED_OURS,
    }[history]
    marker = MARKER if history == "our quoted marker" else None
    assert truncate_reply(f"{REPLY}\n\n{attribution}\n{under}", marker=marker).kept == REPLY


#: Outlook header labels (From, Sent, To, Subject) in display languages whose labels were missing
OUTLOOK_LABELS = {
    "fa": ("از", "ارسال شده", "به", "موضوع"),
    "sr-cyrillic": ("Шаље", "Послато", "Прима", "Тема"),
    "mk": ("Од", "Испратено", "До", "Тема"),
    "kk": ("Кімнен", "Жіберілді", "Кімге", "Тақырып"),
    "sl": ("Od", "Poslano", "Za", "Zadeva"),
    "bg": ("От", "Изпратено", "До", "Относно"),
}


@pytest.mark.parametrize("labels", OUTLOOK_LABELS.values(), ids=OUTLOOK_LABELS.keys())
def test_localised_outlook_block_without_address_starts_the_history(
    labels: tuple[str, str, str, str],
) -> None:
    sender, sent, to, subject = labels
    block = (
        f"{sender}: Service Desk\n{sent}: 26.11.2026 16:02\n{to}: Uma User\n{subject}: Call 100\n"
    )
    assert truncate_reply(f"{REPLY}\n\n{block}\nCall 100 has been updated.\n").kept == REPLY


#: Gmail's verb-less attribution (date, name, address) wrapped inside its "<address>"
WRAPPED_VERBLESS = {
    "ja": f"2026年11月26日(木) 16:02 Service Desk Team of Example Corporation <\n{DESK}>:",
    "ru": f"чт, 26 нояб. 2026 г. в 16:02, Service Desk Team of Example Corporation <\n{DESK}>:",
    "he": "\u202bבתאריך יום ה׳, 26 בנוב׳ 2026 ב-16:02 מאת \u202aService Desk Team of Example "
    f"Corporation\u202c\u200f <\u202a\n{DESK}\u202c\u200f>:\u202c",
    "iso-date": f"2026-11-26 16:02 GMT+01:00 Service Desk Team of Example Corporation <\n{DESK}>:",
}


@pytest.mark.parametrize("attribution", WRAPPED_VERBLESS.values(), ids=WRAPPED_VERBLESS.keys())
def test_wrapped_verbless_attribution_cuts_unquoted_history(attribution: str) -> None:
    body = f"{REPLY}\n\n{attribution}\n\nCall 100 has been updated.\n"
    assert truncate_reply(body).kept == REPLY


def test_person_line_ending_in_an_open_angle_bracket_stays() -> None:
    body = f"{REPLY}\nThe error reads <\nmissing value>: see the log.\n"
    assert truncate_reply(body).kept == f"{REPLY}\nThe error reads <\nmissing value>: see the log."
