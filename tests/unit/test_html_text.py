"""Unit tests of html_to_text: readable text from HTML mail bodies."""

from __future__ import annotations

import pytest

from asm_email_rules.html_text import html_to_text


def test_paragraphs_and_line_breaks() -> None:
    assert html_to_text("<p>One</p><p>Two<br>Three</p>") == "One\n\nTwo\nThree"


def test_whitespace_is_collapsed_outside_pre() -> None:
    assert html_to_text("<div>  many\n   spaces\there </div>") == "many spaces here"


def test_lists_become_dash_items_and_nest() -> None:
    html = "<ul><li>a</li><li>b<ul><li>c</li></ul></li></ul><p>after</p>"
    assert html_to_text(html) == "- a\n- b\n  - c\n\nafter"


def test_blockquotes_become_quoted_lines() -> None:
    html = "<p>Reply</p><blockquote><p>old</p><blockquote>older</blockquote></blockquote><p>x</p>"
    assert html_to_text(html) == "Reply\n\n> old\n>\n> > older\n\nx"


def test_links_keep_their_url() -> None:
    html = '<a href="https://x.example/a?b=1&amp;c=2">the guide</a>'
    assert html_to_text(html) == "the guide (https://x.example/a?b=1&c=2)"


def test_link_whose_text_is_the_url_is_not_doubled() -> None:
    assert html_to_text('<a href="mailto:a@b.example">a@b.example</a>') == "a@b.example"
    assert html_to_text('<a href="https://x.example">https://x.example</a>') == "https://x.example"
    assert html_to_text('<a href="#top">top</a>') == "top"


def test_script_style_title_and_comments_are_dropped() -> None:
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head>"
        "<body><!--[if mso]>hidden<![endif]--><script>alert('x<p>')</script>Visible</body></html>"
    )
    assert html_to_text(html) == "Visible"


def test_entities_are_decoded() -> None:
    assert html_to_text("Fish &amp; chips &lt;3 &#8364;5 &eacute;") == "Fish & chips <3 €5 é"


def test_pre_keeps_its_layout() -> None:
    assert html_to_text("<pre>  a\n    b</pre>") == "  a\n    b"


def test_table_cells_are_separated() -> None:
    html = "<table><tr><td>Name</td><td>Jane</td></tr><tr><td>Id</td><td>7</td></tr></table>"
    assert html_to_text(html) == "Name | Jane\nId | 7"


# Field trial, fault 4: Outlook writes every cell as <p class=MsoNormal>; a row is one line.
def test_outlook_table_cells_of_a_row_share_a_line_whatever_blocks_they_hold() -> None:
    cell = "<td width=200 valign=top><p class=MsoNormal>{}<o:p></o:p></p></td>"
    rows = "".join(
        f"<tr>{cell.format(key)}{cell.format(value)}</tr>"
        for key, value in (("Asset", "SCN-0042"), ("Room", "3.14"))
    )
    html = (
        "<p class=MsoNormal>Details:</p><table class=MsoTableGrid border=1>"
        f"{rows}</table><p class=MsoNormal>Thanks</p>"
    )
    assert html_to_text(html) == "Details:\n\nAsset | SCN-0042\nRoom | 3.14\n\nThanks"


def test_cells_join_their_lines_lists_and_breaks_with_spaces() -> None:
    html = (
        "<table><tr><th><div>Step</div></th><th><h3>Result</h3></th></tr>"
        "<tr><td><p>1</p></td><td><p>fails</p><p>with E17<br>twice</p></td></tr>"
        "<tr><td>2</td><td><ul><li>ok</li><li>slow</li></ul></td></tr></table>"
    )
    assert html_to_text(html) == "Step | Result\n1 | fails with E17 twice\n2 | - ok - slow"


def test_a_layout_table_of_one_cell_keeps_its_paragraphs() -> None:
    # A mail wrapped whole in a table (a template, a signature block) must not become one
    # line: a row with one cell that has text keeps that cell's lines; empty spacer cells
    # do not count.
    html = (
        "<table><tr><td width=20>&nbsp;</td><td><p>Hello,</p><p>the VPN fails.</p>"
        "<table><tr><td>Error</td><td>809</td></tr></table><p>Uma</p></td></tr></table>"
    )
    assert html_to_text(html) == "Hello,\n\nthe VPN fails.\n\nError | 809\n\nUma"


def test_a_layout_table_with_a_sidebar_keeps_the_paragraphs_and_our_marker_lines() -> None:
    """A review found a reply laid out in a two-cell table (the mail and a sidebar) turned
    into one line, our marker line with it, so truncation no longer found our history: a
    row with a cell of prose keeps each cell's lines."""
    html = (
        "<table><tr><td><p>It still fails after the update.</p><p>Uma</p>"
        "<p>##- Please type your reply above this line -##</p>"
        "<p>Call 100 has been updated.</p><p>We installed version 2.3 for you.</p></td>"
        "<td><p>Corp IT</p><p>Room 3.14</p></td></tr></table>"
    )
    lines = html_to_text(html).splitlines()
    assert "##- Please type your reply above this line -##" in lines
    assert lines[0] == "It still fails after the update."
    assert "Corp IT" in lines


def test_tables_without_closing_tags_and_inside_quotes() -> None:
    assert html_to_text("<table><tr><td>a<p>b<td>c<tr><td>d") == "a b | c\nd"
    html = "<blockquote><table><tr><td><p>a</p></td><td>b</td></tr></table></blockquote>"
    assert html_to_text(html) == "> a | b"


def test_tables_nested_past_the_limit_still_give_all_their_text() -> None:
    html = "<table><tr><td><p>x</p>" * 40 + "<td>y</td>"
    text = html_to_text(html)
    assert text.split() == ["x"] * 40 + ["y"]


def test_stray_angle_brackets_are_text() -> None:
    assert html_to_text("a < b and c > d") == "a < b and c > d"


@pytest.mark.parametrize(
    "unit",
    [
        "<a ",
        "<![",
        "</",
        "<blockquote>",
        "<a href=x>t",
        "&#",
        "<!",
        "<table><tr><td><p>x",
        "<td><p>",
    ],
)
def test_hostile_markup_is_handled_quickly(unit: str) -> None:
    # CPython 3.11's html.parser is quadratic on "<a <a ..." and raises on "<![" junk.
    text = html_to_text(unit * 20_000)
    assert isinstance(text, str)


def test_deep_quotes_are_capped() -> None:
    text = html_to_text("<blockquote>" * 100 + "deep")
    assert text == "> " * 20 + "deep"


def test_numbered_lists_keep_their_numbers() -> None:
    """A person who numbers the steps they tried ("step 2 fails") sees 1., 2., 3. on screen;
    every item used to become "- ", so the numbers they refer to were lost."""
    html = (
        "<p>Steps:</p><ol><li>Restart</li><li>Reinstall the driver"
        '<ol type="a"><li>version 4.2</li><li>version 4.3</li></ol></li>'
        "<li>Print a test page</li></ol><p>Step 2b fails.</p>"
        '<ol start="7"><li>seven</li><li value="10">ten</li><li>eleven</li></ol>'
        "<ul><li>bullet</li></ul>"
    )
    assert html_to_text(html) == (
        "Steps:\n\n1. Restart\n2. Reinstall the driver\n  a. version 4.2\n  b. version 4.3\n"
        "3. Print a test page\n\nStep 2b fails.\n\n7. seven\n10. ten\n11. eleven\n\n- bullet"
    )


def test_cells_of_a_data_row_stay_apart_and_keep_their_columns() -> None:
    """A web form or a table of serials: with cells joined by a space, "HP LaserJet 4000"
    and "Floor 3" ran together, and an empty Status cell vanished so the error code read as
    the status. Cells are joined by " | "; an empty cell before the last with text keeps
    its place."""
    html = (
        "<table><tr><td><b>Printer model</b></td><td>HP LaserJet 4000</td></tr>"
        "<tr><td><b>Location</b></td><td>Floor 3 East</td></tr></table>"
        "<table border=1><tr><th>Serial</th><th>Status</th><th>Error</th></tr>"
        "<tr><td>SN 1001</td><td></td><td>E17 paper jam</td></tr>"
        "<tr><td>&nbsp;</td><td>SN 1002</td><td>ok</td><td></td></tr></table>"
    )
    assert html_to_text(html) == (
        "Printer model | HP LaserJet 4000\nLocation | Floor 3 East\n\n"
        "Serial | Status | Error\nSN 1001 | | E17 paper jam\n| SN 1002 | ok"
    )


def test_hidden_preheaders_give_no_text_and_never_hide_what_is_shown() -> None:
    """A web form's or a newsletter template's preheader (display:none) is not on the
    screen, yet it became the first line of the call's description (and of its summary).
    Hidden elements give no text; one closed by its parent's end, or by an implied end tag,
    hides only itself; one never closed hides nothing (the rest would be lost)."""
    preheader = (
        '<span style="display:none !important; mso-hide:all; font-size:1px">Preview: your '
        "request was received</span>"
    )
    assert html_to_text(f"<html><body>{preheader}<p>The scanner is offline.</p>") == (
        "The scanner is offline."
    )
    assert html_to_text("<div hidden>x<div>y</div>z</div><p>Shown</p>") == "Shown"
    html = '<div><span style="display: NONE">x<b>y</b></div><p>Tray <span>2</span> jams</p>'
    assert html_to_text(html) == "Tray 2 jams"
    assert html_to_text('<p style="display:none">x<p>Tray 2 jams') == "Tray 2 jams"
    assert html_to_text('<div style="display:none">Tray 2 <p>jams') == "Tray 2\n\njams"


def test_images_are_shown_by_their_alt_text() -> None:
    """A pasted screenshot or an image button says what it is in its alt text; it was
    dropped, so "see the error in the screenshot" pointed at nothing and a linked image
    left a bare URL. It is written as Gmail's plain text writes an image."""
    html = (
        '<p>The error:<br><img src="cid:image001.png@01D0" alt="Screenshot of &quot;E17&quot;'
        '  dialog"></p><p><a href="https://portal.example/t?id=5&amp;v=2"><img src="b.png"'
        ' alt="Open ticket"></a><img src="pixel.gif" alt="" width=1 height=1></p>'
    )
    assert html_to_text(html) == (
        'The error:\n[image: Screenshot of "E17" dialog]\n\n'
        "[image: Open ticket] (https://portal.example/t?id=5&v=2)"
    )


def test_a_link_never_closed_keeps_its_url() -> None:
    """A link whose </a> is missing (a hand-made form, a cut mail) lost the URL the person
    pasted: it is written at the end of the document, where the link ends."""
    html = '<p>See <a href="https://kb.example/42?x=1&amp;y=2">the article'
    assert html_to_text(html) == "See the article (https://kb.example/42?x=1&y=2)"
    html = '<table><tr><td>Link</td><td><a href="https://kb.example/7">KB 7'
    assert html_to_text(html) == "Link | KB 7 (https://kb.example/7)"


def _word_item(css_class: str, level: int, list_id: int, marker: str, font: str, text: str) -> str:
    """One list paragraph as desktop Outlook (2016-365, Word HTML) writes it."""
    return (
        f"<p class={css_class} style='margin-left:{36 * level}.0pt;mso-add-space:auto;"
        f"text-indent:-18.0pt;mso-list:l{list_id} level{level} lfo{list_id + 1}'>"
        f"<![if !supportLists]><span style='{font}'><span style='mso-list:Ignore'>{marker}"
        "<span style='font:7.0pt \"Times New Roman\"'>&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;&nbsp; "
        f"</span></span></span><![endif]>{text}<o:p></o:p></p>\r\n"
    )


def test_outlook_word_lists_read_like_html_lists() -> None:
    """Desktop Outlook writes each list item as a paragraph with its bullet or number in an
    ``mso-list:Ignore`` span: items came out a blank line apart, nested levels lost their
    indent, and bullets came through as Symbol, Courier and Wingdings glyphs (``·``, ``o``,
    ``§``, ``Ø``). Now they read as ``<ul>``/``<ol>`` do; numbers as written ("step 2")."""
    symbol, courier = "font-family:Symbol", 'font-family:"Courier New"'
    wingdings, plain = "font-family:Wingdings", "mso-fareast-font-family:Calibri"
    html = (
        "<div class=WordSection1><p class=MsoNormal>Hello,<o:p></o:p></p>\r\n"
        "<p class=MsoNormal>what I tried:<o:p></o:p></p>\r\n"
        + _word_item("MsoListParagraphCxSpFirst", 1, 0, "1.", plain, "Restart the PC")
        + _word_item("MsoListParagraphCxSpMiddle", 2, 0, "a.", plain, "in safe mode")
        + _word_item("MsoListParagraphCxSpMiddle", 3, 0, "i.", plain, "with <b>network</b>")
        + _word_item("MsoListParagraphCxSpMiddle", 2, 0, "b.", plain, "normally")
        + _word_item("MsoListParagraphCxSpLast", 1, 0, "2.", plain, "Reinstall the driver")
        + "<p class=MsoNormal>Step 2 fails.<o:p></o:p></p>\r\n"
        + _word_item("MsoListParagraphCxSpFirst", 1, 1, "&middot;", symbol, "Printer 4000")
        + _word_item("MsoListParagraphCxSpMiddle", 2, 1, "o", courier, "Tray 2")
        + _word_item("MsoListParagraphCxSpMiddle", 3, 1, "&sect;", wingdings, "jams")
        + _word_item("MsoListParagraphCxSpLast", 1, 1, "&Oslash;", wingdings, "Scanner")
        + _word_item("MsoListParagraph", 1, 2, "(3)", plain, "one item")
        + "<p class=MsoNormal><o:p>&nbsp;</o:p></p>\r\n<p class=MsoNormal>Uma<o:p></o:p></p>"
        "</div>"
    )
    assert html_to_text(html) == (
        "Hello,\n\nwhat I tried:\n\n1. Restart the PC\n  a. in safe mode\n"
        "    i. with network\n  b. normally\n2. Reinstall the driver\n\nStep 2 fails.\n\n"
        "- Printer 4000\n  - Tray 2\n    - jams\n- Scanner\n\n(3) one item\n\nUma"
    )


def test_word_list_markers_never_hide_text() -> None:
    """An ``mso-list:Ignore`` span never closed, or holding more than a marker, is text."""
    item = "<p class=MsoListParagraph style='mso-list:l0 level1 lfo1'>"
    html = f"{item}<span style='mso-list:Ignore'>1.<span>&nbsp; Restart</p><p>Then call"
    assert html_to_text(html) == "1. Restart\n\nThen call"
    long_marker = "Please restart the PC first"
    html = f"{item}<span style='mso-list:Ignore'>{long_marker}</span> and call</p>"
    assert html_to_text(html) == f"- {long_marker} and call"


def test_runs_of_no_break_spaces_keep_their_width() -> None:
    """Outlook aligns values with runs of ``&nbsp;``; they collapsed to one space, so the
    columns of a pasted list ran together. A run keeps its width; white space around it and
    at either end of a line is as before, and an empty Outlook paragraph is a blank line."""
    html = (
        "<p class=MsoNormal>Asset:&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;&nbsp; SCN-0042<o:p></o:p></p>\r\n"
        "<p class=MsoNormal>Room:&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;&nbsp;&nbsp; 3.14<o:p></o:p></p>\r\n"
        "<p class=MsoNormal><o:p>&nbsp;</o:p></p>\r\n"
        "<p class=MsoNormal>&nbsp;&nbsp;Thanks,\r\n  Uma&nbsp;</p>"
    )
    assert html_to_text(html) == "Asset:       SCN-0042\n\nRoom:        3.14\n\nThanks, Uma"


def test_a_stray_end_tag_of_a_line_break_breaks_the_line() -> None:
    """Hand-written and templated mail writes ``</br>`` for ``<br>``; browsers (and the HTML
    standard's parser) break the line there, but the two lines ran together. Being a
    ``<br>``, it does not end a hidden preheader either."""
    html = "<p>Printer: HP 4000</br>Room: 3.14<br/>Floor 3</br></br>Uma</p>"
    assert html_to_text(html) == "Printer: HP 4000\nRoom: 3.14\nFloor 3\n\nUma"
    preheader = '<div style="display:none">Preview</br>text</div><p>Tray 2 jams</p>'
    assert html_to_text(preheader) == "Tray 2 jams"


def test_a_reversed_numbered_list_counts_down() -> None:
    """A countdown ("3. ... 1. now it fails") was numbered 1, 2, 3: the person's "step 1"
    pointed at the wrong line. A ``reversed`` list counts down from ``start``, else from its
    number of items (HTML's rule), nested lists and item values included."""
    html = (
        "<p>Last changes:</p><ol reversed><li>Driver 4.3<ol><li>on PC-7</li><li>on PC-9</li>"
        "</ol></li><li>Driver 4.2</li><li>First install</li></ol>"
        '<ol reversed start="10" type="i"><li>ten</li><li value="5">five</li><li>four</li></ol>'
        "<div hidden><ol reversed><li>x</li></ol></div><ol reversed><li>one<li>zero</ol>"
    )
    assert html_to_text(html) == (
        "Last changes:\n\n3. Driver 4.3\n  1. on PC-7\n  2. on PC-9\n2. Driver 4.2\n"
        "1. First install\n\nx. ten\nv. five\niv. four\n\n2. one\n1. zero"
    )


def test_a_drop_down_shows_its_chosen_option() -> None:
    """A web form's drop-down gave all its options run together ("LowNormalHigh"), so the
    priority the person chose could not be read. It gives what the form shows: the selected
    option, else the first; a list box with several selected, those."""
    html = (
        "<table><tr><td>Priority</td><td><select name=priority>\r\n"
        "<option value=1>Low</option>\r\n<option value=2 selected>High</option>\r\n"
        "<option value=3>Urgent</option></select></td></tr>"
        "<tr><td>Site</td><td><select><optgroup label=EU><option>Berlin<option>Paris"
        "</optgroup></select></td></tr></table>"
        "<p>Apps: <select multiple><option selected>Mail<option>Chat<option selected>VPN"
        "</select> fail.</p><p>Floor: <select><option>3<p>Thanks"
    )
    assert html_to_text(html) == (
        "Priority | High\nSite | Berlin\n\nApps: Mail, VPN fail.\n\nFloor: 3\n\nThanks"
    )
