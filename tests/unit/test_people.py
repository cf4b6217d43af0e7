"""``people`` and ``calls``: setting up and looking at the desk without Python or SQL.

Issue 11, item 3: "No way to add people: ``init`` creates an empty store and nothing says how to
add analysts and users; an operator ends up writing Python against
``SqliteRepository.put_person``, or SQL that must compute the address key by hand."
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from asm_email_rules.adapters.sqlite import SqliteRepository
from asm_email_rules.cli import main
from asm_email_rules.model import PersonCase

PEOPLE_CSV = """\
email,name,analyst,user,roles
dana@example.org,Dana Desk,yes,no,take_over
uma@example.org,Uma User,no,yes,user_can_reopen
bob@example.org,Bob Both,yes,yes,analyst_can_reopen; user_can_reopen
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path / "config.toml"


def store(config: Path) -> SqliteRepository:
    return SqliteRepository(config.parent / "helpdesk.sqlite3")


def test_import_adds_people_the_rules_then_recognise_by_address(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(PEOPLE_CSV, encoding="utf-8")
    code, out, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 0, err
    assert "3 added, 0 updated, 0 unchanged (2 analysts among them)" in out
    with store(desk) as repo:
        # the address key is the rules' own folding: any case, surrounding spaces
        [dana] = repo.persons_by_address("  DANA@Example.ORG ")
        [bob] = repo.persons_by_address("bob@example.org")
    assert dana.id == 1
    assert dana.case is PersonCase.ANALYST_ONLY
    assert dana.can_take_over
    assert bob.case is PersonCase.ANALYST_AND_USER
    assert bob.analyst_can_reopen
    assert bob.user_can_reopen
    # the same file again changes nothing, and says so
    code, out, _ = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 0
    assert "0 added, 0 updated, 3 unchanged" in out
    # importing again updates the same people (matched by address), never duplicates them
    csv_file.write_text(PEOPLE_CSV.replace("Dana Desk", "Dana D."), encoding="utf-8")
    code, out, _ = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 0
    assert "0 added, 1 updated, 2 unchanged" in out
    code, out, _ = run(capsys, "people", "list", "--config", str(desk))
    assert code == 0
    assert "Dana D." in out
    assert len([line for line in out.splitlines() if "@example.org" in line]) == 3


def test_a_bad_line_names_file_and_line_and_changes_nothing(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(PEOPLE_CSV + "eve@example.org,Eve,maybe,no,\n", encoding="utf-8")
    code, _, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 2
    assert f"{csv_file}:5: analyst must be yes or no, got 'maybe'" in err
    with store(desk) as repo:
        assert list(repo.list_persons()) == []
    csv_file.write_text("email,team\nx@example.org,a\n", encoding="utf-8")
    code, _, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 2
    assert "unknown column 'team'" in err


@pytest.mark.parametrize(
    "raw",
    [
        # Excel "CSV UTF-8": a byte order mark and CRLF line ends
        b"\xef\xbb\xbfemail,name,analyst,user,roles\r\n"
        b'ana@example.org,"Desk, Ana",yes,no,take_over\r\n\r\nuli@example.org,Uli,no,yes,\r\n',
        # Excel where the decimal mark is a comma (most of Europe): semicolons
        b"\xef\xbb\xbfemail;name;analyst;user;roles\r\n"
        b"ana@example.org;Desk, Ana;yes;no;take_over\r\nuli@example.org;Uli;no;yes;\r\n",
        # copied cells, "Unicode text": tabs
        b"email\tname\tanalyst\tuser\troles\n"
        b"ana@example.org\tDesk, Ana\tyes\tno\ttake_over\nuli@example.org\tUli\tno\tyes\t\n",
    ],
    ids=["comma-bom-crlf", "semicolon", "tab"],
)
def test_import_reads_the_csv_files_spreadsheets_write(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, raw: bytes
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_bytes(raw)
    code, out, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 0, err
    assert "2 added, 0 updated, 0 unchanged (1 analysts among them)" in out
    with store(desk) as repo:
        [ana] = repo.persons_by_address("ana@example.org")
        [uli] = repo.persons_by_address("uli@example.org")
    assert (ana.name, ana.case, ana.can_take_over) == ("Desk, Ana", PersonCase.ANALYST_ONLY, True)
    assert uli.case is PersonCase.USER_ONLY


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # the same person twice, the second time in other case: the second line would
        # silently take the analyst flag away
        (
            "email,name,analyst,user\nana@example.org,Ana,yes,no\n\nANA@Example.org,Ana,no,yes\n",
            "people.csv:4: ANA@Example.org is on line 2 already",
        ),
        ("id,email\n7,ana@example.org\n7,uli@example.org\n", "people.csv:3: id 7 is on line 2"),
        # one line gives an id, the other does not: both may name the same person
        (
            "id,email,user\n7,ana@example.org,yes\n,ana@example.org,no\n",
            "people.csv:3: ana@example.org is on line 2",
        ),
        # an unquoted comma in a name shifts every field after it
        (
            "email,name,analyst\nana@example.org,Desk, Ana,yes\n",
            "people.csv:2: 4 fields, but the first line names 3 columns",
        ),
    ],
    ids=["address-twice", "id-twice", "id-and-address", "unquoted-comma"],
)
def test_a_file_that_names_a_person_twice_or_shifts_fields_is_refused(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, said: str
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(text, encoding="utf-8")
    code, _, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 2
    assert said in err
    with store(desk) as repo:
        assert list(repo.list_persons()) == []


def test_people_sharing_an_address_import_with_their_ids(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # DESIGN 4 lets several people share one address (the lowest id wins); a file that gives
    # each line its id, as a list of the store's people does, names two people, not one twice.
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "id,email,name,analyst\n3,desk@example.org,Desk Bot,yes\n4,DESK@example.org,Desk,no\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 0, err
    assert "2 added" in out
    with store(desk) as repo:
        assert [p.id for p in repo.persons_by_address("desk@example.org")] == [3, 4]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # a double quote left open: the rest of the file is one field
        ('email,name\nana@example.org,"Ana\n' + "uli@example.org,Uli\n" * 8_000, 2),
        # a field longer than the csv module's limit (131,072 characters)
        ('email,name\nana@example.org,"' + "x" * 200_000 + '"\n', 2),
        # a first line of 200,000 characters
        ("x" * 200_000 + ",email\nana@example.org,1\n", 1),
    ],
    ids=["open-quote", "long-field", "long-first-line"],
)
def test_a_field_too_long_for_a_csv_reader_is_refused_naming_the_line(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, line: int
) -> None:
    """The csv module refuses a field over its limit with csv.Error: a usage mistake named by
    file and line (exit 2), not a traceback."""
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(text, encoding="utf-8")
    code, _, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 2
    assert f"{csv_file}:{line}: a field longer than" in err
    assert "Traceback" not in err
    with store(desk) as repo:
        assert list(repo.list_persons()) == []


def test_a_file_in_a_windows_code_page_names_the_line_and_the_fix(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Excel's plain "CSV (Comma delimited)" is Windows-1252: refused, saying how to fix it."""
    csv_file = tmp_path / "people.csv"
    csv_file.write_bytes("email,name\nana@example.org,Ana\njo@example.org,José\n".encode("cp1252"))
    code, _, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 2
    assert f"{csv_file}:3: not UTF-8 text (byte 0xe9" in err
    assert 'save it as "CSV UTF-8"' in err
    assert "iconv -f WINDOWS-1252 -t UTF-8" in err


def test_short_lines_and_people_without_a_flag_are_imported_with_a_warning(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A line with fewer fields than the header (a user column left out) and a person with
    # neither flag were imported in silence; mail from such a person is then treated as from
    # an unknown sender. `people add` said so; `people import` now says so too.
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "email,name,analyst,user\nana@example.org,Ana,yes,no\nbo@example.org,Bo\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 0, err
    assert "2 added" in out
    assert (
        f"warning: {csv_file}:3: 2 fields, but the first line names 4 columns: analyst, user" in err
    )
    assert "warning: person 2: neither an analyst nor a User" in err
    assert "person 1" not in err


def test_internationalized_people_import_and_are_found_in_either_spelling(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """RFC 6531/6532 addresses in a UTF-8 CSV; DESIGN 4b: "Addresses match case-insensitively
    (whole address, after NFKC)". Two people whose addresses differ by more than case
    (``straße`` and ``strasse``, dotless ``ı`` and ``i``) stay two people."""
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "email,name,analyst,user\n"
        "anna@xn--bcher-kva.example,Anna Bücher,no,yes\n"
        "josé@example.com,José Núñez,no,yes\n"
        "用户@例子.广告,王,no,yes\n"
        "straße@example.de,Eins,no,yes\n"
        "strasse@example.de,Zwei,no,yes\n"
        "ılker@example.com.tr,Ilker,no,yes\n"
        "ilker@example.com.tr,İlker,no,yes\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 0, err
    assert "7 added" in out
    with store(desk) as repo:
        assert [p.name for p in repo.persons_by_address("ANNA@Bücher.example")] == ["Anna Bücher"]
        assert [p.name for p in repo.persons_by_address("jose\u0301@example.com")] == ["José Núñez"]
        assert [p.name for p in repo.persons_by_address("用户@xn--fsqu00a.xn--4rr70v")] == ["王"]
        assert [p.name for p in repo.persons_by_address("strasse@example.de")] == ["Zwei"]
        assert [p.name for p in repo.persons_by_address("ILKER@example.com.tr")] == ["İlker"]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("evil\u202e@example.com", "U+202E"),  # right-to-left override: shows backwards
        ("anna\u200b@example.com", "U+200B"),  # zero-width space: a look-alike of anna@
        ("bad@xn--zz.example", "not a valid IDNA A-label"),
        ("x@" + "a" * 64 + ".example", "longer than 63"),
        ("x@" + "ü" * 60 + ".example", "longer than 63"),  # 64 octets as an A-label
    ],
)
def test_an_address_that_cannot_be_sent_to_or_shows_falsely_is_refused(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, address: str, why: str
) -> None:
    code, _, err = run(capsys, "people", "add", address, "--user", "--config", str(desk))
    assert code == 2
    assert why in err
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(f"email,user\nok@example.org,yes\n{address},yes\n", encoding="utf-8")
    code, _, err = run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    assert code == 2
    assert "people.csv:3:" in err
    assert why in err
    with store(desk) as repo:
        assert repo.persons_by_address("ok@example.org") == []


def test_add_and_set_from_the_command_line(
    desk: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(
        capsys, "people", "add", "alice@example.org", "--name", "Alice", "--analyst",
        "--config", str(desk),
    )  # fmt: skip
    assert code == 0, err
    assert "added person 1: alice@example.org (Alice); analyst" in out
    code, out, _ = run(capsys, "people", "set", "1", "--user", "--take-over", "--config", str(desk))
    assert code == 0
    assert "analyst, user; roles take_over" in out  # as a CSV's roles column writes it
    code, _, err = run(capsys, "people", "add", "not-an-address", "--config", str(desk))
    assert code == 2
    assert "not an email address" in err
    code, _, err = run(capsys, "people", "add", "x@example.org", "--id", "1", "--config", str(desk))
    assert code == 2
    assert "exists already" in err
    code, _, err = run(capsys, "people", "add", "nobody@example.org", "--config", str(desk))
    assert code == 0
    assert "neither an analyst nor a User" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"email\nzed@example.org\n")))
    code, out, _ = run(capsys, "people", "import", "-", "--config", str(desk))
    assert code == 0
    assert "standard input: 1 added" in out
    code, out, _ = run(capsys, "people", "list", "--json", "--config", str(desk))
    assert [p["email"] for p in json.loads(out)] == [
        "alice@example.org",
        "nobody@example.org",
        "zed@example.org",
    ]


def test_calls_list_and_show_what_mail_did(
    desk: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(PEOPLE_CSV, encoding="utf-8")
    run(capsys, "people", "import", str(csv_file), "--config", str(desk))
    text = desk.read_text().replace(
        "# default_logging_analyst_id = 1", "default_logging_analyst_id = 1"
    )
    desk.write_text(text)
    mail = tmp_path / "m.eml"
    mail.write_bytes(
        b"From: Uma User <uma@example.org>\r\nTo: helpdesk@example.org\r\n"
        b"Subject: Monitor flickers\r\nMessage-ID: <m1@example.org>\r\n\r\n"
        b"The monitor on desk 4 flickers.\r\n"
    )
    code, out, err = run(capsys, "process", str(mail), "--config", str(desk))
    assert code == 0, err
    code, out, _ = run(capsys, "calls", "list", "--config", str(desk))
    assert code == 0
    assert "The monitor on desk 4 flickers." in out
    assert "2 Uma User" in out  # the call's User
    code, out, _ = run(capsys, "calls", "show", "1", "--config", str(desk))
    assert code == 0
    assert "call 1: open" in out
    assert "logged by: 1 Dana Desk" in out
    update = tmp_path / "u.eml"
    update.write_bytes(
        b"From: Uma User <uma@example.org>\r\nTo: helpdesk@example.org\r\n"
        b"Subject: [CALL#1] more\r\nMessage-ID: <m2@example.org>\r\n\r\n"
        b"It flickers more when cold.\r\n\r\nAnd it hums.\r\n"
    )
    assert run(capsys, "process", str(update), "--config", str(desk))[0] == 0
    code, out, _ = run(capsys, "calls", "show", "1", "--config", str(desk))
    assert code == 0
    # the history is shown whole (it showed the first line only, cut with no mark)
    assert "      It flickers more when cold.\n      \n      And it hums.\n" in out
    code, _, err = run(capsys, "calls", "show", "99", "--config", str(desk))
    assert code == 2
    assert "no call 99" in err
