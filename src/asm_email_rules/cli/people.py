"""``asm-email-rules people add|list|import|set``: the desk's analysts and users, in the store.

The rules know a sender by their address: a person record with the analyst flag, the User
flag or both (the spec's person cases), and the rights of their roles (Take Over, reopen a
closed call). These commands write those records into the store (SQLite or PostgreSQL), with
the address key the store looks addresses up by (the rules' own folding: NFKC, trimmed,
case-insensitive), so nobody has to write SQL or Python to set up a desk.

``import FILE.csv`` reads a header row and one person per line; columns (any order, only
``email`` required): ``id``, ``email``, ``name``, ``analyst``, ``user``, ``roles``. Flags are
``yes``/``no`` (also ``true``/``false``, ``1``/``0``, ``x``, empty for no); ``roles`` lists
``take_over``, ``analyst_can_reopen`` and ``user_can_reopen``, separated by spaces or ``;``.
Fields are separated by commas, semicolons (Excel in most of Europe) or tabs; the file is
UTF-8, with or without Excel's byte order mark. A line with an ``id`` replaces that person;
without one, the person with that address is updated, or a new one is added. The whole file is
checked first: one bad line (an address on two lines among them) changes nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from asm_email_rules.adapters._sql import SqlRepository
from asm_email_rules.addresses import address_problem, normalise_address
from asm_email_rules.cli._common import (
    EXIT_OK,
    UsageError,
    every_person,
    print_table,
    read_file,
    store_for,
)
from asm_email_rules.model import Person

NAME = "people"

ROLES: tuple[str, ...] = ("can_take_over", "analyst_can_reopen", "user_can_reopen")
"""The role rights a person record carries, as ``Person`` names them."""

_ROLE_NAMES: Mapping[str, str] = {
    "take_over": "can_take_over",
    "can_take_over": "can_take_over",
    "analyst_can_reopen": "analyst_can_reopen",
    "user_can_reopen": "user_can_reopen",
}
_TRUE = frozenset({"yes", "y", "true", "1", "x", "on"})
_FALSE = frozenset({"no", "n", "false", "0", "", "off"})
_COLUMNS = frozenset({"id", "email", "name", "analyst", "user", "roles"})


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Declare ``people`` and its four actions."""
    parser = commands.add_parser(
        NAME,
        help="add, list, import or change the desk's analysts and users",
        description="Person records of the store: analyst and User flags, role rights "
        "(take over, reopen) and the address the rules know them by.",
    )
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add one person", description="Add one person.")
    add.add_argument("email", metavar="ADDRESS", help="their email address")
    add.add_argument("--id", type=int, help="the person id to use (default: the next free one)")
    _flag_options(add, default=False)

    show = actions.add_parser("list", help="list every person", description="List every person.")
    show.add_argument("--json", action="store_true", help="print JSON")

    load = actions.add_parser(
        "import",
        help="add or update people from a CSV file",
        description="Add or update people from FILE.csv (header row; columns id, email, name, "
        "analyst, user, roles; only email is required). Nothing changes if a line is wrong.",
    )
    load.add_argument("file", metavar="FILE.csv", help="the CSV file (- for standard input)")

    change = actions.add_parser(
        "set", help="change one person", description="Change the given fields of person ID."
    )
    change.add_argument("id", metavar="ID", type=int, help="the person's id (see `people list`)")
    change.add_argument("--email", metavar="ADDRESS", help="a new address")
    _flag_options(change, default=None)

    for sub in (add, show, load, change):
        _store_options(sub)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="F", help="configuration file (its store)")
    parser.add_argument("--store", metavar="DB", help="the SQLite store (instead of --config)")


def _flag_options(parser: argparse.ArgumentParser, *, default: bool | None) -> None:
    parser.add_argument("--name", help="their name")
    kind = argparse.BooleanOptionalAction
    parser.add_argument("--analyst", action=kind, default=default, help="the analyst flag")
    parser.add_argument("--user", action=kind, default=default, help="the User flag")
    parser.add_argument(
        "--take-over", dest="can_take_over", action=kind, default=default, help="Take Over right"
    )
    parser.add_argument(
        "--analyst-can-reopen",
        action=kind,
        default=default,
        help="as an analyst, may reopen a closed call",
    )
    parser.add_argument(
        "--user-can-reopen", action=kind, default=default, help="as a User, may reopen a call"
    )


def check_address(address: str) -> str:
    """``address`` trimmed; UsageError when it is not one email address."""
    text = address.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in text) or "<" in text:
        raise UsageError(f"{address!r} is not an email address (write it as name@domain)")
    problem = address_problem(text)
    if problem is not None:
        raise UsageError(f"{address!r} is not a usable email address: {problem}")
    return text


def roles_of(person: Person) -> str:
    """The role rights a person holds, space-separated (``-`` for none), by the names a people
    CSV's ``roles`` column takes (``take_over``, not the field's ``can_take_over``), so what
    ``people list`` shows can be written back into a file as it is."""
    held = (role for role in ROLES if getattr(person, role))
    return " ".join(role.removeprefix("can_") for role in held) or "-"


def describe(person: Person) -> str:
    """One line: id, address, name, flags and roles."""
    flags = ", ".join(
        f for f, on in (("analyst", person.is_analyst), ("user", person.is_user)) if on
    )
    name = f" ({person.name})" if person.name else ""
    return (
        f"person {person.id}: {person.email}{name}; {flags or 'no flags'}; roles {roles_of(person)}"
    )


def _warn_shared(repo: SqlRepository, person: Person) -> None:
    others = [p.id for p in repo.persons_by_address(person.email) if p.id != person.id]
    if others:
        ids = ", ".join(str(i) for i in others)
        print(
            f"warning: {person.email} is also the address of person {ids}; mail from it is "
            "taken to come from the one with the lowest id",
            file=sys.stderr,
        )
    if not (person.is_analyst or person.is_user):
        print(
            f"warning: person {person.id} is neither an analyst nor a User: the rules treat "
            "mail from them as from an unknown sender (add --analyst or --user)",
            file=sys.stderr,
        )


def _open(args: argparse.Namespace) -> SqlRepository:
    return store_for(args)


def run_add(args: argparse.Namespace) -> int:
    """Add one person; prints it."""
    email = check_address(args.email)
    with _open(args) as repo, repo.transaction():
        if args.id is not None:
            if args.id < 1:
                raise UsageError("--id must be 1 or more")
            if repo.get_person(args.id) is not None:
                raise UsageError(f"person {args.id} exists already (use `people set`)")
        person = Person(
            id=args.id if args.id is not None else repo.next_person_id(),
            email=email,
            name=args.name or "",
            is_analyst=args.analyst,
            is_user=args.user,
            can_take_over=args.can_take_over,
            analyst_can_reopen=args.analyst_can_reopen,
            user_can_reopen=args.user_can_reopen,
        )
        repo.put_person(person)
        _warn_shared(repo, person)
    print(f"added {describe(person)}")
    return EXIT_OK


def run_set(args: argparse.Namespace) -> int:
    """Change the given fields of one person; prints it."""
    changes: dict[str, Any] = {}
    if args.email is not None:
        changes["email"] = check_address(args.email)
    if args.name is not None:
        changes["name"] = args.name
    for option, field in (("analyst", "is_analyst"), ("user", "is_user")):
        if getattr(args, option) is not None:
            changes[field] = getattr(args, option)
    for role in ROLES:
        if getattr(args, role) is not None:
            changes[role] = getattr(args, role)
    if not changes:
        raise UsageError("nothing to change: give --email, --name or a flag (see --help)")
    with _open(args) as repo, repo.transaction():
        person = repo.get_person(args.id)
        if person is None:
            raise UsageError(f"no person {args.id} (see `people list`)")
        person = attrs.evolve(person, **changes)
        repo.put_person(person)
        _warn_shared(repo, person)
    print(f"changed {describe(person)}")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    """Every person as a table, or JSON."""
    with _open(args) as repo:
        people = every_person(repo)
    if args.json:
        print(json.dumps([attrs.asdict(p) for p in people], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not people:
        print("no people yet: add them with `people add` or `people import FILE.csv`")
        return EXIT_OK
    rows: list[Sequence[str]] = [("id", "email", "name", "analyst", "user", "roles")]
    for p in people:
        rows.append(
            (
                str(p.id),
                p.email,
                p.name,
                "yes" if p.is_analyst else "no",
                "yes" if p.is_user else "no",
                roles_of(p),
            )
        )
    print_table(rows, sys.stdout)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


@attrs.frozen
class CsvPerson:
    """One checked CSV line: the person's fields (``id`` None: match by address or add)."""

    line: int
    id: int | None
    fields: Mapping[str, Any]


def _flag(value: str, where: str, column: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{where}: {column} must be yes or no, got {value!r}")


def _roles(value: str, where: str) -> dict[str, bool]:
    found = dict.fromkeys(ROLES, False)
    for word in value.replace(";", " ").replace(",", " ").split():
        role = _ROLE_NAMES.get(word.strip().lower())
        if role is None:
            known = ", ".join(("take_over", "analyst_can_reopen", "user_can_reopen"))
            raise UsageError(f"{where}: unknown role {word!r} (roles: {known})")
        found[role] = True
    return found


_DELIMITERS = (",", ";", "\t")
"""Field separators a spreadsheet writes: commas, semicolons (Excel where the decimal mark is a
comma: most of Europe) and tabs ("Unicode text", copied cells)."""


def _delimiter(text: str) -> str:
    """The separator whose split of the header line names an ``email`` column (default ``,``)."""
    first = text.split("\n", 1)[0]
    for delimiter in _DELIMITERS:
        try:
            names = next(csv.reader([first], delimiter=delimiter), [])
        except csv.Error:  # a field over the csv module's limit: refused when read (_rows)
            continue
        if "email" in (name.strip().lower() for name in names):
            return delimiter
    return ","


def _csv_problem(exc: csv.Error, where: str) -> UsageError:
    """The csv module's refusal of a line (a field over its ``field_size_limit``, most often
    after a double quote left open) as a usage mistake naming ``where``."""
    if "field limit" in str(exc):
        return UsageError(
            f"{where}: a field longer than {csv.field_size_limit():,} characters "
            "(a double quote left open?)"
        )
    return UsageError(f"{where}: not CSV ({exc})")


def _rows(reader: csv.DictReader[str], source: str) -> Iterator[dict[str | Any, str | Any]]:
    """The lines of ``reader``; a line the csv module refuses is a UsageError naming the line
    it starts on."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_problem(exc, f"{source}:{start}") from None
        yield row


def parse_people_csv(text: str, source: str) -> list[CsvPerson]:
    """Every line of a people CSV, checked; UsageError naming ``source:line`` otherwise.

    Fields are separated by commas, semicolons or tabs (whichever splits the header line into
    an ``email`` column). One person per line: an address (or id) on two lines is refused,
    naming both, as is a line with more fields than the header.
    """
    reader = csv.DictReader(io.StringIO(text), delimiter=_delimiter(text))
    try:
        header = [name.strip().lower() for name in reader.fieldnames or ()]
    except csv.Error as exc:
        raise _csv_problem(exc, f"{source}:1") from None
    if "email" not in header:
        raise UsageError(
            f"{source}: the first line must name the columns, with at least 'email' "
            "(separated by commas, semicolons or tabs)"
        )
    unknown = sorted(set(header) - _COLUMNS)
    if unknown:
        raise UsageError(
            f"{source}: unknown column {unknown[0]!r} (columns: id, email, name, analyst, user,"
            " roles)"
        )
    reader.fieldnames = header
    people: list[CsvPerson] = []
    ids: dict[int, int] = {}  # person id: the line that gives it
    keyed: dict[str, int] = {}  # an address's comparison form: the first line with an id
    unkeyed: dict[str, int] = {}  # an address's comparison form: the line without an id
    for row in _rows(reader, source):
        where = f"{source}:{reader.line_num}"
        extra = row.get(None)
        values = {k: (v or "") for k, v in row.items() if k is not None}
        if not any(v.strip() for v in values.values()) and not extra:
            continue
        if extra:
            raise UsageError(
                f"{where}: {len(header) + len(extra)} fields, but the first line names "
                f"{len(header)} columns (a comma inside a name? put the name in double quotes)"
            )
        short = [name for name, value in row.items() if name is not None and value is None]
        if short:  # a hand-written line may leave trailing "no"s out: said, not refused
            print(
                f"warning: {where}: {len(header) - len(short)} fields, but the first line names"
                f" {len(header)} columns: {', '.join(short)} read as empty",
                file=sys.stderr,
            )
        person = _csv_person(values, where, reader.line_num)
        # An address on two lines is one person twice, unless both lines give ids: several
        # people may share an address (the lowest id wins, DESIGN 4), and a file of the
        # store's people, ids included, must import again.
        address = normalise_address(person.fields["email"])
        if person.id is not None:
            earlier = ids.get(person.id) or unkeyed.get(address)
            what = f"id {person.id}" if person.id in ids else person.fields["email"]
        else:
            earlier = unkeyed.get(address) or keyed.get(address)
            what = person.fields["email"]
        if earlier is not None:
            raise UsageError(
                f"{where}: {what} is on line {earlier} already (one line per person: "
                "remove one of them, or give each line its person's id)"
            )
        if person.id is not None:
            ids[person.id] = reader.line_num
            keyed.setdefault(address, reader.line_num)
        else:
            unkeyed[address] = reader.line_num
        people.append(person)
    return people


def _csv_person(values: Mapping[str, str], where: str, line: int) -> CsvPerson:
    try:
        email = check_address(values.get("email", ""))
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    raw_id = values.get("id", "").strip()
    if raw_id and not (raw_id.isdigit() and int(raw_id) >= 1):
        raise UsageError(f"{where}: id must be a whole number from 1, got {raw_id!r}")
    fields: dict[str, Any] = {"email": email}
    if "name" in values:
        fields["name"] = values["name"].strip()
    if "analyst" in values:
        fields["is_analyst"] = _flag(values["analyst"], where, "analyst")
    if "user" in values:
        fields["is_user"] = _flag(values["user"], where, "user")
    if "roles" in values:
        fields.update(_roles(values["roles"], where))
    return CsvPerson(line, int(raw_id) if raw_id else None, fields)


def _import(repo: SqlRepository, people: list[CsvPerson]) -> Iterator[tuple[str, Person]]:
    """Apply the checked lines; yields ("added", "updated" or "unchanged", person) for each
    (an unchanged person is not written again)."""
    for entry in people:
        existing: Person | None
        if entry.id is not None:
            existing = repo.get_person(entry.id)
        else:
            found = repo.persons_by_address(entry.fields["email"])
            existing = found[0] if found else None
        if existing is None:
            person_id = entry.id if entry.id is not None else repo.next_person_id()
            person = Person(id=person_id, **entry.fields)
            verb = "added"
        else:
            person = attrs.evolve(existing, **entry.fields)
            verb = "updated" if person != existing else "unchanged"
        if verb != "unchanged":
            repo.put_person(person)
        yield verb, person


def run_import(args: argparse.Namespace) -> int:
    """Add or update every person of the CSV file in one transaction; prints a summary."""
    source = "standard input" if args.file == "-" else args.file
    raw = read_file(args.file if args.file == "-" else Path(args.file))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UsageError(
            f"{source}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x}, {exc.reason}): save "
            'it as "CSV UTF-8" (Excel: Save As), or convert it with '
            f"`iconv -f WINDOWS-1252 -t UTF-8 {args.file} > people-utf8.csv`"
        ) from None
    people = parse_people_csv(text, source)
    if not people:
        raise UsageError(f"{source}: no people in the file")
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    with _open(args) as repo, repo.transaction():
        done = list(_import(repo, people))
    for verb, person in done:
        counts[verb] += 1
        print(f"{verb} {describe(person)}")
    nobody = [str(p.id) for _, p in done if not (p.is_analyst or p.is_user)]
    if nobody:
        print(
            f"warning: person {', '.join(nobody)}: neither an analyst nor a User: the rules treat"
            " mail from them as from an unknown sender (set the analyst or user column)",
            file=sys.stderr,
        )
    analysts = sum(1 for _, p in done if p.is_analyst)
    print(
        f"{source}: {counts['added']} added, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged ({analysts} analysts among them)"
    )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run the action named on the command line."""
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "add": run_add,
        "list": run_list,
        "import": run_import,
        "set": run_set,
    }
    return actions[args.action](args)
