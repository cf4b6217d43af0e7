"""Issue 9, "Text lost or garbled": body assembly, charsets, format=flowed, Windows paths.

Every input is written here (no corpus files); each test names the kind of mail it stands for.
"""

from __future__ import annotations

import base64
import quopri

import pytest

from asm_email_rules.charsets import decode_text
from asm_email_rules.flowed import unflow
from asm_email_rules.intake import has_text, parse_message
from asm_email_rules.intake_notes import IntakeNote, IntakeNoteKind
from asm_email_rules.truncate import truncate_reply


def kinds(notes: tuple[IntakeNote, ...] | list[IntakeNote]) -> list[IntakeNoteKind]:
    return [note.kind for note in notes]


def message(content_type: str, body: bytes, *extra: str) -> bytes:
    """A message with CRLF line ends, one Content-Type and a raw body."""
    head = "\r\n".join(
        [
            "From: Ann Lee <ann@example.org>",
            "Subject: text",
            f"Content-Type: {content_type}",
            *extra,
        ]
    )
    return head.encode("ascii") + b"\r\n\r\n" + body.replace(b"\n", b"\r\n")


def multipart(boundary: str, *parts: str | bytes) -> bytes:
    out = [b"preamble\n"]
    for part in parts:
        out.append(f"--{boundary}\n".encode())
        out.append(part.encode("utf-8") if isinstance(part, str) else part)
        out.append(b"\n")
    out.append(f"--{boundary}--\n".encode())
    return b"".join(out)


PNG = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode("ascii")
IMAGE = (
    'Content-Type: image/png; name="IMG_0001.png"\nContent-Disposition: inline; '
    'filename="IMG_0001.png"\nContent-Transfer-Encoding: base64\nContent-ID: <img1@example.org>'
    f"\n\n{PNG}"
)


# --------------------------------------------------------------------------- body assembly


def test_apple_mail_text_image_text_keeps_both_texts_and_the_image() -> None:
    body = multipart(
        "apple",
        "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n"
        "Hello,\n\nthe screen shows this error:\n",
        IMAGE,
        "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n"
        "\nIt started after the update.\nAnn",
    )
    email = parse_message(message("multipart/mixed; boundary=apple", body))
    assert email.body == (
        "Hello,\n\nthe screen shows this error:\n\nIt started after the update.\nAnn"
    )
    assert email.body_source == "text/plain"
    assert [(a.filename, a.inline, a.content_id) for a in email.attachments] == [
        ("IMG_0001.png", True, "<img1@example.org>")
    ]


def test_text_parts_without_a_line_break_between_them_get_one() -> None:
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nfirst part",
        IMAGE,
        "Content-Type: text/plain\n\nsecond part",
    )
    assert parse_message(message("multipart/mixed; boundary=m", body)).body == (
        "first part\nsecond part"
    )


def test_apple_html_mail_inside_alternative_reads_each_view_once() -> None:
    # alternative [ mixed [text, image, text], mixed [html, image, html] ]
    text_view = multipart(
        "t",
        "Content-Type: text/plain\n\nBefore the image.",
        IMAGE,
        "Content-Type: text/plain\n\nAfter.",
    )
    html_view = multipart(
        "h",
        "Content-Type: text/html\n\n<p>Before the image.</p>",
        IMAGE,
        "Content-Type: text/html\n\n<p>After.</p>",
    )
    body = multipart(
        "alt",
        b"Content-Type: multipart/mixed; boundary=t\n\n" + text_view,
        b"Content-Type: multipart/mixed; boundary=h\n\n" + html_view,
    )
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert email.body == "Before the image.\nAfter."
    assert email.body_html == "<p>Before the image.</p>\n<p>After.</p>"
    assert [a.filename for a in email.attachments] == ["IMG_0001.png", "IMG_0001.png"]


def test_alternatives_are_never_joined_twice() -> None:
    body = multipart(
        "alt",
        "Content-Type: text/plain\n\nThe printer is jammed.",
        "Content-Type: text/html\n\n<p>The printer is <b>jammed</b>.</p>",
    )
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert email.body == "The printer is jammed."
    assert email.attachments == ()


def test_html_only_mail_with_an_image_between_two_html_parts() -> None:
    body = multipart(
        "m",
        "Content-Type: text/html\n\n<p>Look at this:</p>",
        IMAGE,
        "Content-Type: text/html\n\n<p>Odd, isn't it?</p>",
    )
    email = parse_message(message("multipart/mixed; boundary=m", body))
    assert email.body_source == "text/html"
    assert "Look at this:" in email.body
    assert "Odd, isn't it?" in email.body
    assert email.body.index("Look") < email.body.index("Odd")
    assert [a.filename for a in email.attachments] == ["IMG_0001.png"]


def test_text_attachments_stay_attachments() -> None:
    body = multipart(
        "m",
        "Content-Type: text/plain\n\nSee the log.",
        'Content-Type: text/plain\nContent-Disposition: attachment; filename="app.log"\n\nERR 42',
        'Content-Type: text/plain; name="notes.txt"\n\nnamed, so a file',
    )
    email = parse_message(message("multipart/mixed; boundary=m", body))
    assert email.body == "See the log."
    assert [a.filename for a in email.attachments] == ["app.log", "notes.txt"]


# Field trial, fault 1: a part with no text is not "plain text" (intake.md: "the first with
# plain text, else the first with HTML").
VPN_HTML = (
    "Content-Type: text/html; charset=utf-8\n\n<p>VPN fails with error 809 since this morning.</p>"
)
VPN_TEXT = "VPN fails with error 809 since this morning."


@pytest.mark.parametrize(
    "empty",
    [
        "Content-Type: text/plain; charset=utf-8\n\n \n\n\n",
        "Content-Type: text/plain; charset=utf-8\n\n",
        "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nIA0KwqANCg==",
        "Content-Type: text/plain; charset=utf-8\n\n\u200b\n",
        "Content-Type: text/plain\n\n[image: Contoso logo]\n\n[cid:image001.png@01D9A1B2.C3D4E5F0]",
        "Content-Type: text/plain\n\nThis is an HTML message. Please use an HTML capable client.",
        "Content-Type: text/plain\n\nYour email client does not support HTML messages.\n",
        "Content-Type: text/plain\n\nThis message is in HTML format.",
    ],
    ids=[
        "blank",
        "empty",
        "base64-blank",
        "zero-width",
        "placeholders",
        "notice",
        "client",
        "format",
    ],
)
def test_an_alternative_without_text_gives_way_to_the_html_with_text(empty: str) -> None:
    body = multipart("alt", empty, VPN_HTML)
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert (email.body, email.body_source) == (VPN_TEXT, "text/html")
    assert email.attachments == ()  # the passed-over alternative is not a file
    assert kinds(email.notes) == [IntakeNoteKind.TEXT_PART_WITHOUT_TEXT]


def test_html_with_text_before_an_empty_plain_alternative_is_read() -> None:
    body = multipart("alt", VPN_HTML, "Content-Type: text/plain\n\n\n")
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert (email.body, email.body_source) == (VPN_TEXT, "text/html")


def test_an_empty_html_skeleton_gives_way_to_the_plain_text() -> None:
    skeleton = (
        "Content-Type: text/html\n\n<html><head><style>p{}</style></head><body><br></body></html>"
    )
    body = multipart("alt", skeleton, f"Content-Type: text/plain\n\n{VPN_TEXT}")
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert (email.body, email.body_source) == (VPN_TEXT, "text/plain")
    assert email.attachments == ()


def test_an_empty_plain_part_in_mixed_adds_nothing_before_the_real_one() -> None:
    body = multipart(
        "m", "Content-Type: text/plain\n\n \n", f"Content-Type: text/plain\n\n{VPN_TEXT}"
    )
    email = parse_message(message("multipart/mixed; boundary=m", body))
    assert (email.body, email.body_source) == (VPN_TEXT, "text/plain")
    assert email.notes == ()


def test_an_empty_plain_part_in_mixed_gives_way_to_an_html_part() -> None:
    body = multipart("m", "Content-Type: text/plain\n\n\n", IMAGE, VPN_HTML)
    email = parse_message(message("multipart/mixed; boundary=m", body))
    assert (email.body, email.body_source) == (VPN_TEXT, "text/html")
    assert [a.filename for a in email.attachments] == ["IMG_0001.png"]
    assert kinds(email.notes) == [IntakeNoteKind.TEXT_PART_WITHOUT_TEXT]


def test_nested_alternative_with_an_empty_plain_part_reads_the_html_view() -> None:
    # alternative [ text/plain (blank), related [ html, image ] ]: Outlook with an inline logo
    related = multipart("rel", VPN_HTML, IMAGE)
    body = multipart(
        "alt",
        "Content-Type: text/plain\n\n\n",
        b"Content-Type: multipart/related; boundary=rel\n\n" + related,
    )
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert (email.body, email.body_source) == (VPN_TEXT, "text/html")
    assert [a.filename for a in email.attachments] == ["IMG_0001.png"]


@pytest.mark.parametrize(
    "short",
    [
        "ok",
        "See attached.",
        "[image: logo]\nThe scanner on floor 2 is offline.",
        "My HTML signature shows as code.",
        "The HTML report from the monitoring tool is attached; see the browser console.",
    ],
)
def test_short_plain_text_is_text_and_wins_over_html(short: str) -> None:
    body = multipart("alt", f"Content-Type: text/plain\n\n{short}", VPN_HTML)
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert email.body_source == "text/plain"
    assert email.body == short
    assert email.notes == ()


def test_with_no_text_anywhere_the_old_rule_holds() -> None:
    notice = "Content-Type: text/plain\n\nThis is an HTML message."
    body = multipart("alt", notice, "Content-Type: text/html\n\n<p></p>")
    email = parse_message(message("multipart/alternative; boundary=alt", body))
    assert (email.body, email.body_source) == ("This is an HTML message.", "text/plain")
    email = parse_message(message("text/plain", b" \n"))
    assert (email.body, email.body_source) == (" \n", "text/plain")
    assert email.notes == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", False),
        (" \n\t\xa0\u200b\ufeff", False),
        ("[image: a] [IMAGE] [cid:image001.png@01D9]\n", False),
        ("This is an HTML-formatted message!", False),
        ("This is an HTML message. To view it, use a browser or an HTML compatible viewer.", False),
        ("This e-mail was sent as HTML", False),
        ("ok", True),
        ("-- \nAnn Lee", True),
        ("[image: logo] ok", True),
        ("HTML", True),
        ("The HTML export fails.", True),
        ("This is an HTML message. The printer is broken.", True),
        ("Your email client does not support HTML. " * 10, True),  # too long to be a notice
    ],
)
def test_what_counts_as_text(text: str, expected: bool) -> None:
    assert has_text(text) is expected


# --------------------------------------------------------------------------- charsets


def test_iso_2022_jp_without_charset_is_decoded() -> None:
    text = "お疲れ様です。プリンターが動きません。\n"
    raw = message("text/plain", text.encode("iso2022_jp"))
    email = parse_message(raw)
    assert email.body == text
    assert kinds(email.notes) == [IntakeNoteKind.CHARSET_DETECTED]
    assert "ISO-2022 escape sequences" in str(email.notes[0])


def test_iso_2022_jp_labelled_us_ascii_is_decoded() -> None:
    text = "会議室のプロジェクター\n"
    email = parse_message(message("text/plain; charset=us-ascii", text.encode("iso2022_jp")))
    assert email.body == text


def test_iso_2022_jp_half_width_katakana() -> None:
    text = "ｶﾀｶﾅ です\n"
    email = parse_message(message("text/plain", text.encode("iso2022_jp_ext")))
    assert email.body == text


@pytest.mark.parametrize("declared", ["iso-8859-1", "windows-1251", "us-ascii", "gb2312"])
def test_utf8_text_under_a_wrong_label_is_read_as_utf8(declared: str) -> None:
    text = "Grüße aus Zürich – Протокол встречи\n"
    email = parse_message(message(f"text/plain; charset={declared}", text.encode("utf-8")))
    assert email.body == text
    assert kinds(email.notes) == [IntakeNoteKind.CHARSET_DETECTED]


def test_declared_charset_is_read_as_its_superset() -> None:
    # gb2312 mail carrying a GBK character; iso-8859-1 mail carrying windows-1252's euro sign
    chinese = "王喆：服务器已重启。\n"
    email = parse_message(message("text/plain; charset=gb2312", chinese.encode("gbk")))
    assert email.body == chinese
    assert email.notes == ()
    email = parse_message(message("text/plain; charset=iso-8859-1", b"Price: 20 \x80\n"))
    assert email.body == "Price: 20 €\n"


def test_mostly_utf8_with_a_stray_legacy_byte() -> None:
    data = "Grüße, die Rechnung ist da.\n".encode() + b"Signature: caf\xe9\n"
    email = parse_message(message("text/plain; charset=utf-8", data))
    assert email.body == "Grüße, die Rechnung ist da.\nSignature: café\n"
    assert kinds(email.notes) == [IntakeNoteKind.UNDECODABLE_BYTES]


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("Добрый день! Принтер на третьем этаже не печатает, горит красная лампа.\n", "koi8-r"),
        ("Добрий день! Не працює принтер на третьому поверсі, прошу допомогти.\n", "cp1251"),
        ("Dzień dobry, drukarka na trzecim piętrze nie działa. Proszę o pomoc.\n", "iso-8859-2"),
        ("Guten Tag, der Drucker im dritten Stock druckt nur leere Seiten. Grüße\n", "cp1252"),
        ("Καλημέρα, ο εκτυπωτής στον τρίτο όροφο δεν λειτουργεί.\n", "iso-8859-7"),
        ("三階のプリンターが動きません。確認をお願いします。\n", "shift_jis"),
        ("三楼的打印机不能用了，请尽快派人处理。谢谢！\n", "gb2312"),
        ("三樓的印表機不能用了，請盡快派人處理。謝謝！\n", "big5"),
        ("3층 프린터가 작동하지 않습니다. 확인 부탁드립니다.\n", "euc-kr"),
    ],
)
def test_undeclared_legacy_text_is_detected(text: str, codec: str) -> None:
    email = parse_message(message("text/plain", text.encode(codec)))
    assert email.body == text
    assert kinds(email.notes) == [IntakeNoteKind.UNDECLARED_8BIT_TEXT]
    if codec != "cp1252":  # windows-1252 is also the fallback when there is little to judge
        assert "(detected)" in str(email.notes[0])


def test_undeclared_body_uses_the_charset_the_header_declares() -> None:
    raw = (
        b"From: =?koi8-r?B?8NLJztTF0g==?= <it@example.org>\r\nSubject: test\r\n"
        b"Content-Type: text/plain\r\n\r\n" + "Сервер перезагружен.\r\n".encode("koi8-r")
    )
    email = parse_message(raw)
    assert email.body == "Сервер перезагружен.\n"
    assert "as elsewhere in the message" in str(email.notes[-1])


def test_html_part_without_charset_uses_its_meta_tag() -> None:
    html = '<html><head><meta charset="koi8-r"></head><body>Привет</body></html>'
    email = parse_message(message("text/html", html.encode("koi8-r")))
    assert email.body == "Привет"
    assert email.notes == ()


def test_two_stray_bytes_are_not_enough_to_guess_a_language() -> None:
    email = parse_message(message("text/plain", b"Price: 20\xa0EUR, caf\xe9\n"))
    assert email.body == "Price: 20\xa0EUR, café\n"
    assert str(email.notes[0]).endswith("decoded as windows-1252")


@pytest.mark.parametrize("charset", ["unicode_escape", "raw-unicode-escape", "idna", "punycode"])
def test_python_codecs_that_are_not_charsets_are_unknown(charset: str) -> None:
    notes: list[IntakeNote] = []
    assert decode_text(b"C:\\new\\dir \\u0041", charset, "part", notes) == "C:\\new\\dir \\u0041"
    assert kinds(notes) == [IntakeNoteKind.UNKNOWN_CHARSET]


def test_decode_text_never_gives_surrogates_or_raises() -> None:
    notes: list[IntakeNote] = []
    for charset in ("utf-7", "unicode_escape", "idna", "rot13", "utf-16", "x-unknown", None):
        for data in (b"+2AA-", b"\\ud800", b"\xff\xfe\x00\xd8", b"\x1b$B", b"\x00\x80"):
            decode_text(data, charset, "part", notes).encode("utf-8")


# --------------------------------------------------------------------------- format=flowed


def test_format_flowed_soft_breaks_are_joined() -> None:
    data = b"The printer has shown a paper jam since \nthis morning.\n\nThanks\n"
    email = parse_message(message("text/plain; charset=utf-8; format=flowed", data))
    assert email.body == ("The printer has shown a paper jam since this morning.\n\nThanks\n")


def test_format_flowed_delsp_yes_deletes_the_soft_break_space() -> None:
    text = "三階のプリンターが動きません。確認を \nお願いします。\n"
    email = parse_message(
        message("text/plain; charset=utf-8; format=flowed; delsp=yes", text.encode("utf-8"))
    )
    assert email.body == "三階のプリンターが動きません。確認をお願いします。\n"


def test_format_flowed_quotes_stuffing_and_signature() -> None:
    flowed = (
        "Yes, done. \nRestarted it.\n"
        ">> Is the printer \n>> back?\n"
        "> We asked \n"
        "> twice.\n"
        " From the desk, with space-stuffing\n"
        "-- \nAnn \n"
    )
    assert unflow(flowed) == (
        "Yes, done. Restarted it.\n"
        ">> Is the printer back?\n"
        "> We asked twice.\n"
        "From the desk, with space-stuffing\n"
        "-- \nAnn \n"
    )


def test_flowed_line_before_a_quote_depth_change_is_fixed() -> None:
    assert unflow("answer \n> quoted\n") == "answer \n> quoted\n"


def test_format_flowed_is_only_read_when_declared() -> None:
    data = b"a line ending in a space \ncontinues here\n"
    email = parse_message(message("text/plain; charset=utf-8", data))
    assert email.body == "a line ending in a space \ncontinues here\n"


# --------------------------------------------------------------------------- Windows paths

PATH = "C:\\Users\\joe\\Documents\\Q3 report\\n_final\\t.docx"
UNC = "\\\\fileserver\\share$\\Dept\\new folder\\"


def path_body() -> str:
    return f"Please restore {PATH}\nand the folder {UNC} from backup.\n"


@pytest.mark.parametrize("encoding", ["8bit", "quoted-printable", "base64"])
def test_windows_paths_come_through_byte_for_byte(encoding: str) -> None:
    data = path_body().encode("utf-8")
    if encoding == "quoted-printable":
        data = quopri.encodestring(data)
    elif encoding == "base64":
        data = base64.encodebytes(data)
    raw = message("text/plain; charset=utf-8", data, f"Content-Transfer-Encoding: {encoding}")
    body = parse_message(raw).body
    assert PATH in body
    assert UNC in body
    assert body == path_body()


def test_windows_paths_in_flowed_html_and_legacy_mail() -> None:
    flowed = f"Please restore \n{PATH}\n".encode()
    email = parse_message(message("text/plain; charset=utf-8; format=flowed", flowed))
    assert email.body == f"Please restore {PATH}\n"
    html = f"<p>Please restore {PATH}<br>and {UNC}</p>".encode()
    assert PATH in parse_message(message("text/html; charset=utf-8", html)).body
    japanese = f"{PATH} を復元してください\n"
    email = parse_message(message("text/plain; charset=shift_jis", japanese.encode("shift_jis")))
    assert email.body == japanese


def test_windows_path_survives_reply_truncation() -> None:
    body = f"{path_body()}\nOn Mon, 3 Mar 2025 at 10:00, Desk <help@desk.example> wrote:\n> old\n"
    assert truncate_reply(body).kept == path_body().strip()
