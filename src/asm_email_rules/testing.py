"""Conformance kit: prove a host's repository behaves as the in-memory reference does.

Run :func:`check_repository` with a factory of fresh repositories, or parametrise a test over
:func:`repository_checks` so each check is its own test. Needs no pytest: a check raises
``AssertionError`` with a message that says what was expected and what came back. Every
answer a check compares must also have the shapes the protocol promises: times aware with a
UTC offset of zero, and the tuples and frozensets the model declares (a list of approvers or a
set of rights fails, naming the field).
"""

from __future__ import annotations

import functools
import hashlib
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from asm_email_rules.errors import NotFoundError, RepositoryError, StaleRecordError
from asm_email_rules.model import (
    Attachment,
    Call,
    CallStatus,
    EntityKind,
    EntityRef,
    EntryKind,
    Group,
    OutgoingEmail,
    Person,
    ReplyStatus,
    Request,
    RequestStatus,
    Right,
    SecurityRole,
    SummaryKind,
    Task,
    TaskKind,
    TaskStatus,
)
from asm_email_rules.protocols import SeedableRepository
from asm_email_rules.quarantine import (
    LISTING_HEAD_BYTES,
    QuarantinedMessage,
    QuarantineListing,
    QuarantineState,
    QuarantineStore,
)
from asm_email_rules.settings import CallTemplate

__all__ = [
    "Check",
    "check_quarantine_store",
    "check_repository",
    "quarantine_checks",
    "repository_checks",
]

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
"""The fixed clock every check starts from (aware UTC, as repositories return)."""


@attrs.frozen
class Check:
    """One conformance check: ``run`` raises ``AssertionError`` when the repository fails it."""

    name: str
    doc: str
    run: Callable[[SeedableRepository], None]


_CHECKS: list[Check] = []


def _check(run: Callable[[SeedableRepository], None]) -> Callable[[SeedableRepository], None]:
    """Register ``run`` as a check named after the function, documented by its docstring."""
    _CHECKS.append(Check(run.__name__.removeprefix("check_"), (run.__doc__ or "").strip(), run))
    return run


def repository_checks() -> list[Check]:
    """Every repository check, in a stable order."""
    return list(_CHECKS)


_QUARANTINE_CHECKS: list[Check] = []


def _quarantine_check(
    run: Callable[[SeedableRepository], None],
) -> Callable[[SeedableRepository], None]:
    """Register ``run`` as a check of the optional quarantine store (see :func:`_check`)."""
    _QUARANTINE_CHECKS.append(
        Check(run.__name__.removeprefix("check_"), (run.__doc__ or "").strip(), run)
    )
    return run


def quarantine_checks() -> list[Check]:
    """Every check of :class:`~asm_email_rules.quarantine.QuarantineStore`, in a stable order.

    For a repository that also keeps the quarantine (optional: the bundled SQLite,
    PostgreSQL and in-memory stores do); each check fails on one that does not.
    """
    return list(_QUARANTINE_CHECKS)


def check_repository(factory: Callable[[], SeedableRepository]) -> list[tuple[str, str]]:
    """Run every check on a fresh repository from ``factory``; the failures as (name, message)."""
    return _run_checks(repository_checks(), factory)


def check_quarantine_store(factory: Callable[[], SeedableRepository]) -> list[tuple[str, str]]:
    """Run every quarantine check on a fresh repository from ``factory``; the failures."""
    return _run_checks(quarantine_checks(), factory)


def _run_checks(
    checks: list[Check], factory: Callable[[], SeedableRepository]
) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    for check in checks:
        try:
            check.run(factory())
        except AssertionError as exc:
            failures.append((check.name, str(exc) or "assertion failed"))
        except Exception as exc:
            failures.append((check.name, f"raised {type(exc).__name__}: {exc}"))
    return failures


# -- helpers ----------------------------------------------------------------------------------
def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _equal(actual: object, expected: object, what: str) -> None:
    """``actual`` must equal ``expected`` and have the shapes the model declares
    (:func:`_shape_faults`): equality alone takes a ``set`` for a ``frozenset`` and a time at
    UTC+2 for the same moment in UTC."""
    faults = _shape_faults(actual, "")
    if faults:
        raise AssertionError(f"{what}: {faults[0]}")
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


_CONTAINERS = (tuple, frozenset)
"""The immutable containers the model declares (``approver_ids: tuple[int, ...]``,
``rights: frozenset[Right]``), which a store must return as declared: storage.md, "Return
aware UTC datetimes, tuples (not lists) in approver_ids ... a frozenset of rights"."""


@functools.cache
def _declared_containers(cls: type[attrs.AttrsInstance]) -> dict[str, type]:
    """The fields of the attrs class ``cls`` declared as one of :data:`_CONTAINERS`."""
    hints = typing.get_type_hints(cls)
    return {
        field.name: origin
        for field in attrs.fields(cls)
        if (origin := typing.get_origin(hints[field.name])) in _CONTAINERS
    }


def _shape_faults(value: object, path: str) -> list[str]:
    """What in ``value`` (a store's answer: a model value, or tuples and lists of them) is
    not as the protocol promises: a time that is naive or aware with an offset other than
    zero (times come back aware UTC), or a field holding another container than the one its
    class declares (a list for a tuple, a set for a frozenset). One message each."""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        here = f"{path} is {value.isoformat()}" if path else value.isoformat()
        if offset is None:
            return [f"{here}: a naive datetime; return aware UTC datetimes"]
        if offset:
            return [
                f"{here}: aware but not UTC (offset {value:%z}, where UTC is +0000); return "
                "aware UTC datetimes, with a UTC offset of zero"
            ]
        return []
    faults: list[str] = []
    cls = type(value)
    if attrs.has(cls):
        declared = _declared_containers(cls)
        for field in attrs.fields(cls):
            item = getattr(value, field.name)
            where = f"{path}.{field.name}" if path else f"{cls.__name__}.{field.name}"
            kind = declared.get(field.name)
            if kind is not None and not isinstance(item, kind):
                faults.append(
                    f"{where} is a {type(item).__name__} ({item!r}), not the {kind.__name__} "
                    f"{cls.__name__} declares; return a {kind.__name__}"
                )
            faults.extend(_shape_faults(item, where))
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            faults.extend(_shape_faults(item, f"{path}[{index}]" if path else f"item {index}"))
    return faults


def _raises(
    error: type[Exception], what: str, action: Callable[[], object], repo: SeedableRepository
) -> None:
    """``action`` (run in its own transaction) must raise ``error``."""
    try:
        with repo.transaction():
            action()
    except error:
        return
    except Exception as exc:
        raise AssertionError(
            f"{what}: expected {error.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what}: expected {error.__name__}, nothing was raised")


_Seedable = Person | Call | Task | Request | SecurityRole | Group


def _seed(repo: SeedableRepository, *records: _Seedable) -> None:
    with repo.transaction():
        for record in records:
            if isinstance(record, Person):
                repo.put_person(record)
            elif isinstance(record, Call):
                repo.put_call(record)
            elif isinstance(record, Task):
                repo.put_task(record)
            elif isinstance(record, Request):
                repo.put_request(record)
            elif isinstance(record, SecurityRole):
                repo.put_role(record)
            else:
                repo.put_group(record)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _call(number: int, **fields: Any) -> Call:
    return Call(number=number, **fields)


ANALYST = Person(id=11, email="Ann.Analyst@Example.COM", name="Ann Analyst", is_analyst=True)
OTHER = Person(id=12, email="bob@example.com", name="Bob Other", is_analyst=True)
USER = Person(id=13, email="uma@example.com", name="Uma User", is_user=True)

REPLY = OutgoingEmail(
    to="uma@example.com",
    subject="Call 7 has been logged [CALL#7]",
    body="Thank you.\nÅ line with ünïcödé.",
    sender="desk@example.com",
    message_id="<asm.call-7.abc@example.com>",
    in_reply_to="<m1@example.com>",
    references=("<m0@example.com>", "<m1@example.com>"),
    extra_headers=(("Auto-Submitted", "auto-replied"), ("X-Test", "1")),
)


# -- directory --------------------------------------------------------------------------------
@_check
def check_persons_by_address_case_insensitive(repo: SeedableRepository) -> None:
    """persons_by_address matches the whole address whatever its letter case."""
    _seed(repo, ANALYST, OTHER)
    found = [p.id for p in repo.persons_by_address("ann.analyst@example.com")]
    _equal(found, [ANALYST.id], "persons_by_address('ann.analyst@example.com')")
    found = [p.id for p in repo.persons_by_address("ANN.ANALYST@EXAMPLE.COM")]
    _equal(found, [ANALYST.id], "persons_by_address('ANN.ANALYST@EXAMPLE.COM')")
    _equal(list(repo.persons_by_address("nobody@example.com")), [], "unknown address")
    _equal(list(repo.persons_by_address("analyst@example.com")), [], "partial address")


@_check
def check_persons_by_address_lowest_id_first(repo: SeedableRepository) -> None:
    """Several persons with one address come back lowest id first."""
    _seed(
        repo,
        Person(id=30, email="Shared@example.com", name="Thirty"),
        Person(id=10, email="shared@EXAMPLE.com", name="Ten"),
        Person(id=20, email="SHARED@example.com", name="Twenty"),
        OTHER,
    )
    found = [p.id for p in repo.persons_by_address("shared@example.com")]
    _equal(found, [10, 20, 30], "ids of persons sharing an address")


@_check
def check_persons_by_address_compares_in_normalise_address_form(repo: SeedableRepository) -> None:
    """persons_by_address compares in ``addresses.normalise_address`` form: a domain's
    A-labels and its Unicode spelling are one, NFC and NFD are one, lower case is one letter
    to one (``ÖMER`` is ``ömer``), but nothing is case-folded (``straße`` is not ``strasse``,
    a final ``ς`` is not ``σ``)."""
    _seed(
        repo,
        Person(id=41, email="Anna@Bücher.example", name="IDN"),
        Person(id=42, email="ÖMER@example.com", name="Upper"),
        Person(id=43, email="jos\u00e9@example.com", name="NFC"),
        Person(id=44, email="straße@example.com", name="Sharp s"),
        Person(id=45, email="info@σας.example", name="Final sigma"),
    )
    cases = [
        ("anna@xn--bcher-kva.example", [41], "a domain written in A-labels"),
        ("ANNA@BÜCHER.EXAMPLE", [41], "a Unicode domain in upper case"),
        ("ömer@example.com", [42], "a lower-case non-ASCII local part"),
        ("jose\u0301@example.com", [43], "the NFD spelling of an NFC address"),
        ("STRAẞE@example.com", [44], "a capital sharp s"),
        ("strasse@example.com", [], "ss for ß (case folding, not lower case)"),
        ("info@σασ.example", [], "σ for a final ς (case folding, not lower case)"),
    ]
    for address, expected, what in cases:
        found = [p.id for p in repo.persons_by_address(address)]
        _equal(found, expected, f"persons_by_address({address!r}): {what}")


@_check
def check_get_unknown_is_none(repo: SeedableRepository) -> None:
    """get_person / get_call / get_task / get_request return None for unknown ids."""
    _seed(repo, ANALYST, _call(1), Task(number=1), Request(number=1))
    _equal(repo.get_person(999), None, "get_person(999)")
    _equal(repo.get_call(999), None, "get_call(999)")
    _equal(repo.get_task(999), None, "get_task(999)")
    _equal(repo.get_request(999), None, "get_request(999)")
    _equal(list(repo.entries(EntityRef(EntityKind.CALL, 999))), [], "entries of call 999")


@_check
def check_put_get_round_trip(repo: SeedableRepository) -> None:
    """put_* then get_* gives back exactly the record put, every field included."""
    person = Person(
        id=5,
        email="p@example.com",
        name="Pat Ünïcode",
        is_analyst=True,
        is_user=True,
        can_take_over=True,
        analyst_can_reopen=True,
        user_can_reopen=True,
        analyst_role="Analysts",
        user_role="Self Service Users",
    )
    call = Call(
        number=42,
        status=CallStatus.CLOSED,
        user_id=13,
        owner_id=11,
        group="Service Desk",
        partition="EU",
        description="Printer\nsecond line",
        logging_analyst_id=12,
        updated=True,
        last_update=_at(5),
        call_screen_set="Standard",
        ipk_status="Incident",
        ipk_stream="Service Desk",
        subject="Printer",
    )
    task = Task(
        number=77,
        kind=TaskKind.USER_APPROVAL,
        status=TaskStatus.PENDING,
        request_number=9,
        owner_id=11,
        approver_ids=(13, 12),
        forwarded_ids=(12, 11),
        group="Approvers",
        partition="EU",
        description="Approve laptop",
        updated=True,
        last_update=_at(6),
        forwarded_by_ids=(13,),
    )
    request = Request(
        number=9,
        status=RequestStatus.OPEN,
        owner_id=11,
        forwarded_ids=(13, 12),
        group="Requests",
        partition="EU",
        description="New starter",
        updated=False,
        last_update=None,
        forwarded_by_ids=(11, 12),
    )
    _seed(repo, person, call, task, request)
    _equal(repo.get_person(5), person, "get_person after put_person")
    _equal(repo.get_call(42), call, "get_call after put_call")
    _equal(repo.get_task(77), task, "get_task after put_task")
    _equal(repo.get_request(9), request, "get_request after put_request")
    changed = attrs.evolve(task, approver_ids=(11,), forwarded_ids=(), status=TaskStatus.OPEN)
    _seed(repo, changed, attrs.evolve(person, name="Renamed"))
    _equal(repo.get_task(77), changed, "get_task after replacing the task")
    _equal(repo.get_person(5), attrs.evolve(person, name="Renamed"), "person after replacing")


# -- persons ----------------------------------------------------------------------------------
@_check
def check_create_person(repo: SeedableRepository) -> None:
    """create_person gives new unique ids (not clashing with seeded ones) and the User flag."""
    _seed(repo, ANALYST, OTHER)
    with repo.transaction():
        first = repo.create_person("new.one@example.com", "New One", is_user=True)
        second = repo.create_person("new.two@example.com", "New Two", is_user=False)
    ids = {first.id, second.id}
    _expect(len(ids) == 2, f"create_person gave the same id twice: {first.id}")
    _expect(not ids & {ANALYST.id, OTHER.id}, f"create_person reused a seeded id: {sorted(ids)}")
    _equal(
        (first.email, first.name, first.is_user), ("new.one@example.com", "New One", True), "first"
    )
    _equal(second.is_user, False, "is_user of a person created with is_user=False")
    _equal(first.is_analyst, False, "is_analyst of a created person")
    _equal(repo.get_person(first.id), first, "get_person of the created person")
    _equal(repo.get_person(second.id), second, "get_person of the second created person")
    found = [p.id for p in repo.persons_by_address("NEW.ONE@example.com")]
    _equal(found, [first.id], "persons_by_address finds the created person")


@_check
def check_set_user_flag(repo: SeedableRepository) -> None:
    """set_user_flag selects the User flag and leaves the other fields alone."""
    _seed(repo, ANALYST)
    with repo.transaction():
        repo.set_user_flag(ANALYST.id)
    _equal(repo.get_person(ANALYST.id), attrs.evolve(ANALYST, is_user=True), "person after flag")
    _raises(NotFoundError, "set_user_flag(999)", lambda: repo.set_user_flag(999), repo)


# -- calls ------------------------------------------------------------------------------------
@_check
def check_create_call(repo: SeedableRepository) -> None:
    """create_call: next number above every existing one, template fields, open, user, logger."""
    _seed(repo, ANALYST, USER, _call(500, description="old"))
    template = CallTemplate(
        name="Mail", partition="EU", assigned_analyst_id=ANALYST.id, assigned_group="Service Desk"
    )
    with repo.transaction():
        call = repo.create_call(
            template=template,
            user_id=USER.id,
            logging_analyst_id=OTHER.id,
            description="Printer jammed\nDetails",
            now=_at(1),
        )
    _expect(call.number > 500, f"new call number {call.number} is not above existing call 500")
    expected = Call(
        number=call.number,
        status=CallStatus.OPEN,
        user_id=USER.id,
        owner_id=ANALYST.id,
        group="Service Desk",
        partition="EU",
        description="Printer jammed\nDetails",
        logging_analyst_id=OTHER.id,
        updated=False,
        last_update=_at(1),
    )
    _equal(call, expected, "call returned by create_call")
    _equal(repo.get_call(call.number), expected, "get_call of the created call")
    with repo.transaction():
        second = repo.create_call(
            template=CallTemplate(),
            user_id=None,
            logging_analyst_id=None,
            description="",
            now=_at(2),
        )
    _expect(second.number > call.number, f"second call {second.number} not above {call.number}")
    _equal((second.owner_id, second.group), (None, ""), "owner and group from an empty template")
    _seed(repo, _call(900))
    with repo.transaction():
        third = repo.create_call(
            template=CallTemplate(),
            user_id=None,
            logging_analyst_id=None,
            description="",
            now=_at(3),
        )
    _expect(third.number > 900, f"call {third.number} created after call 900 was put")


@_check
def check_create_call_takes_the_template_properties(repo: SeedableRepository) -> None:
    """create_call stores the template's call screen set, IPK status and IPK stream on the call
    ("The call template will determine the call properties such as the partition, call screen
    set, IPK status and stream, assigned analyst and group"), and leaves the subject blank."""
    template = CallTemplate(
        name="Mail",
        partition="EU",
        call_screen_set="Hardware Incident",
        ipk_status="Incident",
        ipk_stream="Desktop Support",
        assigned_group="Second Line",
    )
    with repo.transaction():
        call = repo.create_call(
            template=template, user_id=None, logging_analyst_id=None, description="d", now=_at(1)
        )
    for where, found in (
        ("returned by create_call", call),
        ("read back", repo.get_call(call.number)),
    ):
        _equal(
            found and (found.call_screen_set, found.ipk_status, found.ipk_stream),
            ("Hardware Incident", "Incident", "Desktop Support"),
            f"call screen set, IPK status and IPK stream of the call {where}",
        )
        _equal(found and (found.partition, found.group), ("EU", "Second Line"), f"call {where}")
        _equal(found and found.subject, "", f"subject of the call {where}")


@_check
def check_call_properties_round_trip(repo: SeedableRepository) -> None:
    """put_call keeps the call screen set, IPK status, IPK stream and subject; a later put_call
    replaces them, and reopen or close leaves them alone."""
    call = _call(
        31,
        call_screen_set="Standard",
        ipk_status="Problem",
        ipk_stream="Network",
        subject="VPN drops ünïcödé",
    )
    _seed(repo, call)
    _equal(repo.get_call(31), call, "get_call after put_call with template properties")
    with repo.transaction():
        repo.close_call(31, "x", _at(1))
        repo.reopen_call(31, None, "Desk", _at(2))
    after = repo.get_call(31)
    _equal(
        after and (after.call_screen_set, after.ipk_status, after.ipk_stream, after.subject),
        ("Standard", "Problem", "Network", "VPN drops ünïcödé"),
        "template properties after close and reopen",
    )
    changed = attrs.evolve(call, ipk_status="Known Error", subject="")
    _seed(repo, changed)
    _equal(repo.get_call(31), changed, "get_call after replacing the properties")


@_check
def check_forwarded_by(repo: SeedableRepository) -> None:
    """Who forwarded a request or task is kept, and it is in their summary ("a summary of all
    the requests they are working on, have forwarded, or have been forwarded")."""
    request = Request(
        number=40, owner_id=OTHER.id, forwarded_ids=(USER.id,), forwarded_by_ids=(ANALYST.id,)
    )
    task = Task(number=41, owner_id=OTHER.id, forwarded_by_ids=(ANALYST.id, USER.id))
    _seed(
        repo,
        ANALYST,
        OTHER,
        USER,
        request,
        task,
        Request(number=42, owner_id=OTHER.id, last_update=_at(1)),
        Task(number=43, owner_id=OTHER.id, last_update=_at(1)),
        Request(
            number=44,
            status=RequestStatus.CLOSED,
            forwarded_by_ids=(ANALYST.id,),
            last_update=_at(2),
        ),
    )
    _equal(repo.get_request(40), request, "get_request keeps forwarded_by_ids")
    _equal(repo.get_task(41), task, "get_task keeps forwarded_by_ids")
    items, total = repo.summary(SummaryKind.REQUESTS, ANALYST.id, 50)
    _equal(([i.ref.number for i in items], total), ([40], 1), "requests the analyst forwarded")
    items, total = repo.summary(SummaryKind.TASKS, ANALYST.id, 50)
    _equal(([i.ref.number for i in items], total), ([41], 1), "tasks the analyst forwarded")
    items, _ = repo.summary(SummaryKind.REQUESTS, USER.id, 50)
    _equal([i.ref.number for i in items], [40], "requests forwarded to the user")
    _seed(repo, attrs.evolve(task, forwarded_by_ids=()))
    items, total = repo.summary(SummaryKind.TASKS, ANALYST.id, 50)
    _equal((items, total), ([], 0), "tasks after forwarded_by_ids was cleared")


@_check
def check_security_roles(repo: SeedableRepository) -> None:
    """put_role / get_role keep a role's rights exactly; a person keeps the names of their
    analyst role and user role; an unknown role is None; a created person has no role."""
    analysts = SecurityRole("Analysts", frozenset({Right.REOPEN_CLOSED_CALLS, Right.TAKE_OVER}))
    users = SecurityRole("Self Service Users", frozenset({Right.REOPEN_CLOSED_CALLS}))
    nothing = SecurityRole("Read Only")
    person = attrs.evolve(
        ANALYST, is_user=True, analyst_role="Analysts", user_role="Self Service Users"
    )
    _seed(repo, analysts, users, nothing, person)
    _equal(repo.get_role("Analysts"), analysts, "get_role('Analysts')")
    _equal(repo.get_role("Self Service Users"), users, "get_role('Self Service Users')")
    _equal(repo.get_role("Read Only"), nothing, "a role without rights")
    _equal(repo.get_role("analysts"), None, "role names match exactly")
    _equal(repo.get_role("Nobody"), None, "an unknown role")
    _equal(repo.get_person(person.id), person, "person with an analyst and a user role")
    found = repo.persons_by_address(person.email)
    _equal(
        found and (found[0].analyst_role, found[0].user_role),
        ("Analysts", "Self Service Users"),
        "roles by address",
    )
    _seed(repo, SecurityRole("Analysts", frozenset({Right.TAKE_OVER})))
    _equal(
        repo.get_role("Analysts"),
        SecurityRole("Analysts", frozenset({Right.TAKE_OVER})),
        "a role replaced with fewer rights",
    )
    with repo.transaction():
        created = repo.create_person("new@example.com", "New", is_user=True)
    _equal((created.analyst_role, created.user_role), (None, None), "roles of a created person")
    with repo.transaction():
        repo.set_user_flag(person.id)
    _equal(repo.get_person(person.id), person, "set_user_flag keeps the roles")


@_check
def check_groups(repo: SeedableRepository) -> None:
    """put_group / get_group keep an assignment group's notification address."""
    _seed(repo, Group("Service Desk", "desk-team@example.com"), Group("Network"))
    _equal(
        repo.get_group("Service Desk"),
        Group("Service Desk", "desk-team@example.com"),
        "get_group('Service Desk')",
    )
    _equal(repo.get_group("Network"), Group("Network", ""), "a group without an address")
    _equal(repo.get_group("Nobody"), None, "an unknown group")
    _seed(repo, Group("Network", "noc@example.com"))
    _equal(repo.get_group("Network"), Group("Network", "noc@example.com"), "replaced group")


@_check
def check_list_persons_and_calls(repo: SeedableRepository) -> None:
    """list_persons / list_calls page in id / number order, after the last one seen, with the
    status filter on calls, and give the records exactly as get_person / get_call do."""
    _seed(
        repo,
        OTHER,
        ANALYST,
        USER,
        _call(9, status=CallStatus.CLOSED),
        _call(3, subject="three"),
        _call(5, ipk_stream="Network"),
    )
    _equal(list(repo.list_persons()), [ANALYST, OTHER, USER], "list_persons()")
    _equal(list(repo.list_persons(limit=2)), [ANALYST, OTHER], "list_persons(limit=2)")
    _equal(list(repo.list_persons(after=OTHER.id)), [USER], "list_persons(after=12)")
    _equal(list(repo.list_persons(limit=0)), [], "list_persons(limit=0)")
    numbers = [c.number for c in repo.list_calls()]
    _equal(numbers, [3, 5, 9], "list_calls()")
    _equal(list(repo.list_calls(limit=1)), [repo.get_call(3)], "list_calls(limit=1)")
    _equal([c.number for c in repo.list_calls(after=3)], [5, 9], "list_calls(after=3)")
    open_calls = [c.number for c in repo.list_calls(status=CallStatus.OPEN)]
    _equal(open_calls, [3, 5], "list_calls(status=OPEN)")
    closed = [c.number for c in repo.list_calls(status=CallStatus.CLOSED, after=5)]
    _equal(closed, [9], "list_calls(status=CLOSED, after=5)")


@_check
def check_attachments_kept_exactly(repo: SeedableRepository) -> None:
    """attachments(ref) gives every attached file back, bytes and all, oldest first, per record."""
    ref, other = EntityRef(EntityKind.CALL, 3), EntityRef(EntityKind.TASK, 3)
    first = Attachment("log.txt", "text/plain", b"\x00\x01binary\xff")
    second = Attachment("ünï.png", "image/png", bytes(range(256)), inline=True, content_id="<c1>")
    _seed(repo, _call(3), Task(number=3))
    with repo.transaction():
        repo.attach(ref, first, "Unspecified", _at(1))
        repo.attach(ref, second, "Unspecified", _at(2))
        repo.attach(other, first, "Unspecified", _at(3))
    _equal(list(repo.attachments(ref)), [first, second], "attachments of call 3")
    _equal(list(repo.attachments(other)), [first], "attachments of task 3")
    _equal(list(repo.attachments(EntityRef(EntityKind.CALL, 99))), [], "attachments of call 99")


@_check
def check_summary_lines_say_something(repo: SeedableRepository) -> None:
    """A summary line shows the first line of the description that says something (not
    "Hi," nor a blank line), after the call's subject when the call has one."""
    _seed(
        repo,
        ANALYST,
        _call(
            1,
            owner_id=ANALYST.id,
            description="Hi,\n\nThe printer on floor 2 jams.\nThanks",
            last_update=_at(2),
        ),
        _call(
            2,
            owner_id=ANALYST.id,
            subject="Printer jam",
            description="Hello team,\nIt jams again.",
            last_update=_at(1),
        ),
        Request(number=3, owner_id=ANALYST.id, description="Dear Service Desk,\n\nNew starter"),
    )
    items, _ = repo.summary(SummaryKind.CALLS, ANALYST.id, 50)
    _equal(
        [i.description for i in items],
        ["The printer on floor 2 jams.", "Printer jam - It jams again."],
        "call summary descriptions",
    )
    items, _ = repo.summary(SummaryKind.REQUESTS, ANALYST.id, 50)
    _equal([i.description for i in items], ["New starter"], "request summary description")


@_check
def check_log_entries_in_order(repo: SeedableRepository) -> None:
    """History, notes, attachments and notifications appear through entries(), oldest first."""
    ref = EntityRef(EntityKind.CALL, 3)
    other = EntityRef(EntityKind.CALL, 4)
    _seed(repo, _call(3, owner_id=ANALYST.id), _call(4))
    attachment = Attachment("log.txt", "text/plain", b"\x00\x01binary\xff")
    with repo.transaction():
        repo.add_history(ref, "First update", "uma@example.com", _at(1))
        repo.add_note(ref, "A note", "Ann Analyst", _at(2))
        repo.attach(ref, attachment, "Unspecified", _at(3))
        repo.record_notification(ref, "Call 3 was updated by email", _at(4))
        repo.add_history(other, "Elsewhere", "x", _at(5))
    entries = list(repo.entries(ref))
    _equal([e.kind for e in entries][:2], [EntryKind.HISTORY, EntryKind.NOTE], "first kinds")
    _equal(entries[0].text, "First update", "history text")
    _equal(entries[0].author, "uma@example.com", "history author")
    _equal(entries[0].at, _at(1), "history time")
    _equal(entries[0].ref, ref, "entry ref")
    _equal((entries[1].text, entries[1].author), ("A note", "Ann Analyst"), "note")
    attached = [e for e in entries if e.kind is EntryKind.ATTACHMENT]
    _expect(len(attached) == 1, f"expected one ATTACHMENT entry, got {entries!r}")
    _expect("log.txt" in attached[0].text, f"attachment entry does not name the file: {attached}")
    _equal(attached[0].security_profile, "Unspecified", "attachment security profile")
    _equal(entries[-1].kind, EntryKind.NOTIFICATION, "last entry kind")
    _equal(entries[-1].text, "Call 3 was updated by email", "notification text")
    kinds = [e.kind for e in entries]
    _expect(
        kinds.index(EntryKind.NOTE) < kinds.index(EntryKind.ATTACHMENT),
        f"entries out of order: {kinds}",
    )
    _equal([e.text for e in repo.entries(other)], ["Elsewhere"], "entries of another call")
    _equal(list(repo.attachments(ref)), [attachment], "attachments(ref)")


@_check
def check_entries_on_tasks_and_requests(repo: SeedableRepository) -> None:
    """add_history works on tasks and requests too, each record keeping its own log."""
    _seed(repo, _call(5), Task(number=5), Request(number=5))
    task, request = EntityRef(EntityKind.TASK, 5), EntityRef(EntityKind.REQUEST, 5)
    with repo.transaction():
        repo.add_history(task, "task text", "a", _at(1))
        repo.add_history(request, "request text", "b", _at(2))
    _equal([e.text for e in repo.entries(task)], ["task text"], "task log")
    _equal([e.text for e in repo.entries(request)], ["request text"], "request log")
    _equal(list(repo.entries(EntityRef(EntityKind.CALL, 5))), [], "call 5 log")


@_check
def check_mark_updated(repo: SeedableRepository) -> None:
    """mark_updated sets the updated flag on calls, tasks and requests."""
    _seed(repo, _call(1), Task(number=2), Request(number=3))
    with repo.transaction():
        repo.mark_updated(EntityRef(EntityKind.CALL, 1))
        repo.mark_updated(EntityRef(EntityKind.TASK, 2))
        repo.mark_updated(EntityRef(EntityKind.REQUEST, 3))
    call, task, request = repo.get_call(1), repo.get_task(2), repo.get_request(3)
    _expect(call is not None and call.updated, f"call not marked updated: {call}")
    _expect(task is not None and task.updated, f"task not marked updated: {task}")
    _expect(request is not None and request.updated, f"request not marked updated: {request}")


@_check
def check_close_and_reopen_call(repo: SeedableRepository) -> None:
    """close_call closes; reopen_call opens again and assigns the given owner and group."""
    _seed(repo, ANALYST, OTHER, _call(8, owner_id=ANALYST.id, group="Desk", description="d"))
    with repo.transaction():
        repo.close_call(8, "Ann Analyst", _at(1))
    call = repo.get_call(8)
    _expect(call is not None and call.status is CallStatus.CLOSED, f"not closed: {call}")
    with repo.transaction():
        repo.reopen_call(8, OTHER.id, "Second Line", _at(2))
    call = repo.get_call(8)
    _expect(call is not None, "call 8 vanished after reopen")
    assert call is not None
    _equal(call.status, CallStatus.OPEN, "status after reopen")
    _equal((call.owner_id, call.group), (OTHER.id, "Second Line"), "owner and group after reopen")
    _equal(call.description, "d", "description after reopen")
    with repo.transaction():
        repo.close_call(8, "x", _at(3))
        repo.reopen_call(8, None, "Desk", _at(4))
    call = repo.get_call(8)
    _equal(call and (call.owner_id, call.group), (None, "Desk"), "reopen with no analyst")


@_check
def check_close_and_reopen_refuse_wrong_state(repo: SeedableRepository) -> None:
    """Closing a closed call or reopening an open one raises RepositoryError, changing nothing."""
    _seed(repo, _call(1, status=CallStatus.CLOSED), _call(2, owner_id=11, group="Desk"))
    _raises(
        RepositoryError, "close_call on a closed call", lambda: repo.close_call(1, "x", T0), repo
    )
    _raises(
        RepositoryError,
        "reopen_call on an open call",
        lambda: repo.reopen_call(2, None, "Other", T0),
        repo,
    )
    _equal(repo.get_call(2), _call(2, owner_id=11, group="Desk"), "open call after refused reopen")


@_check
def check_set_task_status(repo: SeedableRepository) -> None:
    """set_task_status changes a task's status and nothing else about it."""
    task = Task(number=4, kind=TaskKind.APPROVAL, status=TaskStatus.PENDING, approver_ids=(11,))
    _seed(repo, task, Task(number=5, kind=TaskKind.APPROVAL, status=TaskStatus.PENDING))
    with repo.transaction():
        repo.set_task_status(4, TaskStatus.APPROVED, "Ann Analyst", _at(1))
        repo.set_task_status(5, TaskStatus.REJECTED, "Ann Analyst", _at(1))
    after = repo.get_task(4)
    _expect(after is not None, "task 4 vanished")
    assert after is not None
    _equal(after.status, TaskStatus.APPROVED, "status of approved task")
    _equal((after.kind, after.approver_ids), (task.kind, task.approver_ids), "other task fields")
    rejected = repo.get_task(5)
    _equal(rejected and rejected.status, TaskStatus.REJECTED, "status of rejected task")


@_check
def check_set_task_status_decides_an_approval_once(repo: SeedableRepository) -> None:
    """Approving or rejecting a task no longer PENDING raises StaleRecordError (a
    RepositoryError), changing nothing: of two pollers that both read an approval as pending,
    only the first decides it (DESIGN 4b: an approval no longer pending is not changed again),
    and ``process`` decides the other's message again at once on what it sees, which it does
    for StaleRecordError only (a plain RepositoryError is raised to the caller)."""
    approved = Task(number=4, kind=TaskKind.APPROVAL, status=TaskStatus.APPROVED)
    _seed(repo, approved, Task(number=5, kind=TaskKind.APPROVAL, status=TaskStatus.REJECTED))
    _raises(
        StaleRecordError,
        "rejecting an approved task",
        lambda: repo.set_task_status(4, TaskStatus.REJECTED, "x", T0),
        repo,
    )
    _raises(
        StaleRecordError,
        "approving a rejected task",
        lambda: repo.set_task_status(5, TaskStatus.APPROVED, "x", T0),
        repo,
    )
    _equal(repo.get_task(4), approved, "approved task after a refused reject")
    _equal(list(repo.entries(EntityRef(EntityKind.TASK, 4))), [], "log of the refused reject")


def _writes_on(
    repo: SeedableRepository, ref: EntityRef, attachment: Attachment
) -> list[tuple[str, Callable[[], object]]]:
    """Every write that names a record, aimed at ``ref``, with a label."""
    return [
        (f"add_history({ref})", lambda: repo.add_history(ref, "t", "a", T0)),
        (f"add_note({ref})", lambda: repo.add_note(ref, "t", "a", T0)),
        (f"attach({ref})", lambda: repo.attach(ref, attachment, "Unspecified", T0)),
        (f"mark_updated({ref})", lambda: repo.mark_updated(ref)),
        (f"record_notification({ref})", lambda: repo.record_notification(ref, "t", T0)),
    ]


@_check
def check_unknown_numbers_raise_not_found(repo: SeedableRepository) -> None:
    """Every write that names a missing call, task, request or person raises NotFoundError."""
    _seed(repo, _call(1), Task(number=1), Request(number=1))
    attachment = Attachment("a.txt", "text/plain", b"a")
    for kind in EntityKind:
        for what, action in _writes_on(repo, EntityRef(kind, 404), attachment):
            _raises(NotFoundError, what, action, repo)
    _raises(NotFoundError, "close_call(404)", lambda: repo.close_call(404, "x", T0), repo)
    _raises(NotFoundError, "reopen_call(404)", lambda: repo.reopen_call(404, None, "", T0), repo)
    _raises(
        NotFoundError,
        "set_task_status(404)",
        lambda: repo.set_task_status(404, TaskStatus.APPROVED, "x", T0),
        repo,
    )
    _raises(NotFoundError, "set_user_flag(404)", lambda: repo.set_user_flag(404), repo)
    _raises(
        NotFoundError,
        "set_reply_status of a missing ledger entry",
        lambda: repo.set_reply_status("box", "<m@x>", "00", ReplyStatus.SENT, attempts=1),
        repo,
    )
    _equal(repo.get_call(404), None, "call 404 after failed writes")


# -- summaries ---------------------------------------------------------------------------------
@_check
def check_summary_calls(repo: SeedableRepository) -> None:
    """summary('calls') lists the open calls the person owns, newest first, limited, with total."""
    _seed(
        repo,
        ANALYST,
        OTHER,
        _call(1, owner_id=ANALYST.id, last_update=_at(10), description="One\nmore text"),
        _call(2, owner_id=ANALYST.id, last_update=_at(30), description="Two"),
        _call(3, owner_id=ANALYST.id, last_update=None, description="Three"),
        _call(4, owner_id=ANALYST.id, last_update=_at(20), description="x" * 200),
        _call(5, owner_id=ANALYST.id, status=CallStatus.CLOSED, last_update=_at(40)),
        _call(6, owner_id=OTHER.id, last_update=_at(50)),
        _call(7, owner_id=None, group="Desk", last_update=_at(60)),
        _call(8, owner_id=ANALYST.id, last_update=_at(10), description="Eight"),
    )
    items, total = repo.summary(SummaryKind.CALLS, ANALYST.id, 50)
    _equal(total, 5, "total of open calls owned by the analyst")
    _equal([i.ref.number for i in items], [2, 4, 8, 1, 3], "order (newest first, ties by number)")
    _equal({i.ref.kind for i in items}, {EntityKind.CALL}, "kinds of summary refs")
    first = items[0]
    _equal((first.state, first.description, first.last_update), ("open", "Two", _at(30)), "item")
    _equal(first.assignee, "Ann Analyst", "assignee of an owned call (the owner's name)")
    by_number = {i.ref.number: i for i in items}
    _equal(by_number[1].description, "One", "description is the first line only")
    long = by_number[4].description
    _expect(len(long) <= 80, f"description longer than 80 characters: {len(long)}")
    _expect(long.startswith("x" * 70), f"long description lost its start: {long!r}")
    _equal(by_number[3].last_update, None, "last_update of a never-updated call")
    items, total = repo.summary(SummaryKind.CALLS, ANALYST.id, 2)
    _equal(([i.ref.number for i in items], total), ([2, 4], 5), "limited to 2, total still 5")
    items, total = repo.summary(SummaryKind.CALLS, 999, 10)
    _equal((items, total), ([], 0), "summary for a person owning nothing")


@_check
def check_summary_requests(repo: SeedableRepository) -> None:
    """summary('requests') has requests owned by, or forwarded to, the person; not closed ones."""
    _seed(
        repo,
        ANALYST,
        OTHER,
        Request(number=1, owner_id=ANALYST.id, last_update=_at(1), description="Mine"),
        Request(number=2, owner_id=OTHER.id, forwarded_ids=(ANALYST.id,), last_update=_at(3)),
        Request(
            number=3, owner_id=None, group="Desk", forwarded_ids=(ANALYST.id,), last_update=_at(2)
        ),
        Request(number=4, owner_id=ANALYST.id, status=RequestStatus.CLOSED, last_update=_at(9)),
        Request(number=5, owner_id=OTHER.id, last_update=_at(8)),
    )
    items, total = repo.summary(SummaryKind.REQUESTS, ANALYST.id, 50)
    _equal([i.ref for i in items], [EntityRef(EntityKind.REQUEST, n) for n in (2, 3, 1)], "refs")
    _equal(total, 3, "total requests")
    assignees = {i.ref.number: i.assignee for i in items}
    _equal(assignees, {2: "Bob Other", 3: "Desk", 1: "Ann Analyst"}, "assignee (owner, else group)")
    _equal(items[0].state, "open", "state of a request")
    items, total = repo.summary(SummaryKind.REQUESTS, OTHER.id, 1)
    _equal(([i.ref.number for i in items], total), ([5], 2), "other person's requests, limit 1")


@_check
def check_summary_tasks(repo: SeedableRepository) -> None:
    """summary('tasks') has tasks and approvals owned, to approve or forwarded; not finished."""
    _seed(
        repo,
        ANALYST,
        OTHER,
        Task(number=1, owner_id=ANALYST.id, last_update=_at(1)),
        Task(
            number=2,
            kind=TaskKind.APPROVAL,
            status=TaskStatus.PENDING,
            approver_ids=(OTHER.id, ANALYST.id),
            owner_id=OTHER.id,
            last_update=_at(5),
        ),
        Task(number=3, owner_id=OTHER.id, forwarded_ids=(ANALYST.id,), last_update=_at(3)),
        Task(number=4, owner_id=ANALYST.id, status=TaskStatus.COMPLETED, last_update=_at(9)),
        Task(
            number=5,
            kind=TaskKind.APPROVAL,
            status=TaskStatus.APPROVED,
            approver_ids=(ANALYST.id,),
            last_update=_at(9),
        ),
        Task(
            number=6,
            kind=TaskKind.USER_APPROVAL,
            status=TaskStatus.REJECTED,
            approver_ids=(ANALYST.id,),
            last_update=_at(9),
        ),
        Task(number=7, owner_id=OTHER.id, last_update=_at(9)),
        Task(number=8, owner_id=ANALYST.id, group="Desk", last_update=None),
    )
    items, total = repo.summary(SummaryKind.TASKS, ANALYST.id, 50)
    _equal([i.ref.number for i in items], [2, 3, 1, 8], "tasks in the analyst's summary")
    _equal(total, 4, "total tasks")
    _equal({i.ref.kind for i in items}, {EntityKind.TASK}, "kinds of task summary refs")
    _equal(items[0].state, "pending", "state of a pending approval")
    _equal(items[0].assignee, "Bob Other", "assignee of a task owned by someone else")
    items, total = repo.summary(SummaryKind.TASKS, ANALYST.id, 0)
    _equal((items, total), ([], 4), "limit 0 gives no items but the total")


# -- transactions ------------------------------------------------------------------------------
class _AbandonError(Exception):
    """Raised inside a transaction to abandon it."""


def _write_everything(repo: SeedableRepository) -> tuple[int, int]:
    """One write of every kind; the new call number and person id."""
    ref = EntityRef(EntityKind.CALL, 1)
    person = repo.create_person("new@example.com", "New", is_user=True)
    repo.put_person(Person(id=99, email="put@example.com"))
    repo.set_user_flag(ANALYST.id)
    call = repo.create_call(
        template=CallTemplate(assigned_group="Desk"),
        user_id=person.id,
        logging_analyst_id=None,
        description="new",
        now=_at(1),
    )
    repo.put_call(_call(77))
    repo.put_task(Task(number=78))
    repo.put_request(Request(number=79))
    repo.put_role(SecurityRole("Rolled Back", frozenset({Right.TAKE_OVER})))
    repo.put_group(Group("Rolled Back", "rb@example.com"))
    repo.add_history(ref, "h", "a", _at(1))
    repo.add_note(ref, "n", "a", _at(1))
    repo.attach(ref, Attachment("f.bin", "application/octet-stream", b"123"), "Unspecified", _at(1))
    repo.record_notification(ref, "note", _at(1))
    repo.mark_updated(ref)
    repo.close_call(1, "a", _at(2))
    repo.set_task_status(2, TaskStatus.APPROVED, "a", _at(2))
    repo.mark_updated(EntityRef(EntityKind.REQUEST, 3))
    repo.record_processed("box", "<m@x>", "ab", "{}", REPLY, _at(2))
    repo.record_sent("<sent@x>", ref, "uma@example.com", _at(2))
    repo.use_token("tok-1", _at(2))
    repo.acquire_lease("account:box", "poller-a", _at(2), _at(9))
    return call.number, person.id


def _seed_for_rollback(repo: SeedableRepository) -> tuple[Call, Task, Request]:
    call = _call(1, owner_id=ANALYST.id, last_update=T0)
    task = Task(number=2, kind=TaskKind.APPROVAL, status=TaskStatus.PENDING, last_update=T0)
    request = Request(number=3, last_update=T0)
    _seed(repo, ANALYST, call, task, request)
    return call, task, request


def _assert_untouched(
    repo: SeedableRepository, seeded: tuple[Call, Task, Request], numbers: tuple[int, int]
) -> None:
    """Nothing written by :func:`_write_everything` shows, through any read: the records'
    own getters, and every read a store may serve from data of its own (a file, an index, a
    queue) that could be left out of the transaction."""
    call, task, request = seeded
    call_number, person_id = numbers
    ref = EntityRef(EntityKind.CALL, 1)
    _equal(repo.get_call(call_number), None, "call created in the rolled-back transaction")
    _equal(repo.get_call(77), None, "call put in the rolled-back transaction")
    _equal(repo.get_task(78), None, "task put in the rolled-back transaction")
    _equal(repo.get_request(79), None, "request put in the rolled-back transaction")
    _equal(repo.get_person(person_id), None, "person created in the rolled-back transaction")
    _equal(repo.get_person(99), None, "person put in the rolled-back transaction")
    _equal(list(repo.persons_by_address("new@example.com")), [], "created person by address")
    _equal(repo.get_person(ANALYST.id), ANALYST, "person whose User flag was set")
    _equal(repo.get_call(1), call, "call changed in the rolled-back transaction")
    _equal(repo.get_task(2), task, "task changed in the rolled-back transaction")
    _equal(repo.get_request(3), request, "request changed in the rolled-back transaction")
    _equal(list(repo.entries(ref)), [], "log entries written in the rolled-back transaction")
    _equal(
        list(repo.attachments(ref)),
        [],
        "attachments (their bytes) attached in the rolled-back transaction",
    )
    _equal(
        list(repo.entries(EntityRef(EntityKind.TASK, 2))),
        [],
        "log entries of the task whose status was set in the rolled-back transaction",
    )
    listed = [p for p in repo.list_persons() if p.id in {ANALYST.id, person_id, 99}]
    _equal(listed, [ANALYST], "list_persons after the rolled-back transaction")
    calls = [c for c in repo.list_calls() if c.number in {1, 77, call_number}]
    _equal(calls, [call], "list_calls after the rolled-back transaction")
    items, total = repo.summary(SummaryKind.CALLS, ANALYST.id, 10)
    _equal(
        ([item.ref for item in items], total),
        ([ref], 1),
        "summary of the owner of the call closed in the rolled-back transaction",
    )
    _equal(repo.ledger_entry("box", "<m@x>", "ab"), None, "ledger entry")
    _equal(repo.entity_for_message_id("<sent@x>"), None, "sent Message-ID")
    _equal(repo.replies_sent_since("uma@example.com", T0), 0, "replies counted")
    _equal(repo.is_token_used("tok-1"), False, "token spent in the rolled-back transaction")
    _equal(repo.get_role("Rolled Back"), None, "role put in the rolled-back transaction")
    _equal(repo.get_group("Rolled Back"), None, "group put in the rolled-back transaction")
    _equal(repo.outbox_entry(REPLY.message_id), None, "reply queued in the rolled-back transaction")
    _equal(list(repo.list_replies()), [], "list_replies after a reply was queued and rolled back")
    _equal(
        list(repo.due_replies(_at(60))), [], "due_replies after a reply was queued and rolled back"
    )
    lease = repo.acquire_lease("account:box", "poller-b", _at(3), _at(4))
    _equal(lease.owner, "poller-b", "lease taken in the rolled-back transaction")


def _write_everything_and_abandon(repo: SeedableRepository) -> tuple[int, int]:
    """:func:`_write_everything` in a transaction() whose block then raises; the numbers it
    made (checked to be gone by the caller). The exception must come out of the block."""
    numbers = (0, 0)
    try:
        with repo.transaction():
            numbers = _write_everything(repo)
            raise _AbandonError
    except _AbandonError:
        return numbers
    raise AssertionError("transaction() swallowed the exception raised inside it")


@_check
def check_transaction_rollback_leaves_no_trace(repo: SeedableRepository) -> None:
    """An exception inside transaction() undoes every write made in it, of every kind, as
    every read shows it (attached files, lists, summaries and the outbox included)."""
    seeded = _seed_for_rollback(repo)
    _assert_untouched(repo, seeded, _write_everything_and_abandon(repo))


@_check
def check_nested_transaction_joins_outer(repo: SeedableRepository) -> None:
    """A nested transaction() is part of the outer one: the outer failure undoes it too."""
    seeded = _seed_for_rollback(repo)
    numbers = (0, 0)
    try:
        with repo.transaction():
            with repo.transaction():
                numbers = _write_everything(repo)
            raise _AbandonError
    except _AbandonError:
        pass
    _assert_untouched(repo, seeded, numbers)


@_check
def check_nested_transaction_that_raises_undoes_only_its_own_writes(
    repo: SeedableRepository,
) -> None:
    """With ``nested_rollback`` (the polling service then records several messages in one
    commit): a nested transaction() whose block raises undoes every write made in it, of every
    kind, and nothing of the outer unit, which goes on and commits. A store without it joins
    nested units to the outer one (checked above) and is skipped here."""
    if not getattr(repo, "nested_rollback", False):
        return
    seeded = _seed_for_rollback(repo)
    with repo.transaction():
        before = repo.create_person("before@example.com", "Before", is_user=False)
        numbers = _write_everything_and_abandon(repo)
        _assert_untouched(repo, seeded, numbers)  # as the outer unit sees it
        after = repo.create_person("after@example.com", "After", is_user=False)
    for person, what in ((before, "before"), (after, "after")):
        kept = repo.get_person(person.id)
        _equal(kept and kept.email, person.email, f"outer write {what} the inner one")


@_check
def check_transaction_commit_keeps_writes(repo: SeedableRepository) -> None:
    """A transaction that ends normally keeps every write made in it."""
    _seed_for_rollback(repo)
    with repo.transaction():
        call_number, person_id = _write_everything(repo)
    _expect(repo.get_call(call_number) is not None, "created call lost after commit")
    _expect(repo.get_person(person_id) is not None, "created person lost after commit")
    call = repo.get_call(1)
    _equal(call and (call.status, call.updated), (CallStatus.CLOSED, True), "call 1 after commit")
    _equal(len(repo.entries(EntityRef(EntityKind.CALL, 1))) >= 4, True, "entries after commit")
    _expect(repo.ledger_entry("box", "<m@x>", "ab") is not None, "ledger entry lost after commit")
    _equal(repo.is_token_used("tok-1"), True, "token after commit")


# -- ledger, sent messages, tokens ----------------------------------------------------------------
@_check
def check_ledger_round_trip(repo: SeedableRepository) -> None:
    """ledger_entry is None before record_processed, then holds the decision and the reply."""
    _equal(repo.ledger_entry("box", "<m@x>", "ab"), None, "ledger entry before recording")
    decision = '{"rule": "R1", "text": "ünïcödé"}'
    with repo.transaction():
        repo.record_processed("box", "<m@x>", "ab", decision, REPLY, _at(3))
        repo.record_processed("box", "<quiet@x>", "cd", "{}", None, _at(4))
    entry = repo.ledger_entry("box", "<m@x>", "ab")
    _expect(entry is not None, "ledger entry missing after record_processed")
    assert entry is not None
    _equal(entry.reply, REPLY, "reply stored in the ledger")
    _equal(entry.reply_status, ReplyStatus.PENDING, "reply status of a new entry with a reply")
    _equal(entry.decision_json, decision, "decision_json")
    _equal((entry.attempts, entry.last_error), (0, ""), "attempts and error of a new entry")
    _equal(entry.processed_at, _at(3), "processed_at")
    _equal((entry.mailbox, entry.message_id, entry.sha256), ("box", "<m@x>", "ab"), "key")
    quiet = repo.ledger_entry("box", "<quiet@x>", "cd")
    _equal(quiet and (quiet.reply, quiet.reply_status), (None, ReplyStatus.NONE), "no reply")
    _equal(repo.ledger_entry("box", "<m@x>", "other"), None, "same Message-ID, other content")
    _equal(repo.ledger_entry("other", "<m@x>", "ab"), None, "same message, other mailbox")


@_check
def check_record_processed_twice_is_refused(repo: SeedableRepository) -> None:
    """A second record_processed for the same message raises RepositoryError (no double acting)."""
    with repo.transaction():
        repo.record_processed("box", "<m@x>", "ab", "{}", None, T0)
    _raises(
        RepositoryError,
        "record_processed twice",
        lambda: repo.record_processed("box", "<m@x>", "ab", "{}", REPLY, _at(1)),
        repo,
    )
    entry = repo.ledger_entry("box", "<m@x>", "ab")
    _equal(entry and entry.reply_status, ReplyStatus.NONE, "first ledger entry kept")


@_check
def check_set_reply_status(repo: SeedableRepository) -> None:
    """set_reply_status updates status, attempts and error, keeping the reply."""
    with repo.transaction():
        repo.record_processed("box", "<m@x>", "ab", "{}", REPLY, T0)
        repo.set_reply_status(
            "box", "<m@x>", "ab", ReplyStatus.PENDING, attempts=1, error="451 try later"
        )
    entry = repo.ledger_entry("box", "<m@x>", "ab")
    _equal(
        entry and (entry.reply_status, entry.attempts, entry.last_error),
        (ReplyStatus.PENDING, 1, "451 try later"),
        "after a transient failure",
    )
    with repo.transaction():
        repo.set_reply_status("box", "<m@x>", "ab", ReplyStatus.SENT, attempts=2)
    entry = repo.ledger_entry("box", "<m@x>", "ab")
    _equal(
        entry and (entry.reply_status, entry.attempts, entry.last_error, entry.reply),
        (ReplyStatus.SENT, 2, "", REPLY),
        "after sending",
    )


@_check
def check_sent_messages(repo: SeedableRepository) -> None:
    """record_sent feeds entity_for_message_id and replies_sent_since (window respected;
    ``+tag`` sub-addresses count as their mailbox)."""
    call = EntityRef(EntityKind.CALL, 7)
    task = EntityRef(EntityKind.TASK, 8)
    with repo.transaction():
        repo.record_sent("<asm.call-7.a@example.com>", call, "Uma@Example.com", _at(0))
        repo.record_sent("<asm.task-8.b@example.com>", task, "uma@example.com", _at(30))
        repo.record_sent("<asm.none.c@example.com>", None, "uma@example.com", _at(60))
        repo.record_sent("<asm.call-7.d@example.com>", call, "bob@example.com", _at(60))
        repo.record_sent("<asm.none.e@example.com>", None, "Bob+Desk@example.com", _at(60))
    _equal(repo.entity_for_message_id("<asm.call-7.a@example.com>"), call, "call Message-ID")
    _equal(repo.entity_for_message_id("<asm.task-8.b@example.com>"), task, "task Message-ID")
    _equal(repo.entity_for_message_id("<asm.none.c@example.com>"), None, "Message-ID without ref")
    _equal(repo.entity_for_message_id("<unknown@example.com>"), None, "unknown Message-ID")
    _equal(repo.replies_sent_since("uma@example.com", _at(-1)), 3, "all replies to uma")
    _equal(repo.replies_sent_since("UMA@example.com", _at(30)), 2, "since 30 minutes (inclusive)")
    _equal(repo.replies_sent_since("uma@example.com", _at(31)), 1, "since 31 minutes")
    _equal(repo.replies_sent_since("uma@example.com", _at(61)), 0, "since after the last one")
    _equal(repo.replies_sent_since("bob@example.com", _at(0)), 2, "replies to bob, +tag too")
    _equal(repo.replies_sent_since("bob+x@example.com", _at(0)), 2, "a +tag: bob's mailbox")
    _equal(repo.replies_sent_since("nobody@example.com", _at(-1)), 0, "replies to nobody")


@_check
def check_tokens(repo: SeedableRepository) -> None:
    """use_token spends a token once for all; others stay unused."""
    _equal(repo.is_token_used("tok-1"), False, "token before use")
    with repo.transaction():
        repo.use_token("tok-1", T0)
    _equal(repo.is_token_used("tok-1"), True, "token after use")
    _equal(repo.is_token_used("tok-2"), False, "another token")
    with repo.transaction():
        repo.use_token("tok-1", _at(1))  # a replay must not fail
    _equal(repo.is_token_used("tok-1"), True, "token after a replayed use")


@_check
def check_reply_budget_compares_addresses_like_persons_by_address(
    repo: SeedableRepository,
) -> None:
    """replies_sent_since counts by ``addresses.mailbox_key``: the address in
    ``normalise_address`` form (a domain's A-labels and Unicode spelling are one) without a
    ``+tag``, so a sender who writes their domain either way has one reply budget."""
    with repo.transaction():
        repo.record_sent("<asm.none.f@example.com>", None, "Anna@Bücher.example", _at(0))
        repo.record_sent("<asm.none.g@example.com>", None, "anna+x@xn--bcher-kva.example", _at(1))
        repo.record_sent("<asm.none.h@example.com>", None, "anna@bucher.example", _at(2))
    _equal(
        repo.replies_sent_since("anna@xn--bcher-kva.example", _at(-1)),
        2,
        "replies to anna@Bücher.example, counted for its A-label spelling (+tag too)",
    )
    _equal(repo.replies_sent_since("ANNA@BÜCHER.EXAMPLE", _at(-1)), 2, "in upper case")


def _optional(repo: SeedableRepository, *names: str) -> bool:
    """Whether ``repo`` has every optional method ``names`` (a check of them passes without)."""
    return all(callable(getattr(repo, name, None)) for name in names)


@_check
def check_used_tokens_with_an_expiry_are_pruned(repo: SeedableRepository) -> None:
    """Optional ``use_token_until(token_id, now, expires_at)`` and ``prune_used_tokens(now)``
    (a store without them passes): a token spent with its expiry is used at once and forgotten
    by a prune at or after that expiry; a replay keeps the first expiry; a token spent with
    ``use_token`` (expiry unknown) is never pruned; the count of tokens forgotten is returned."""
    if not _optional(repo, "use_token_until", "prune_used_tokens"):
        return
    store: Any = repo
    with repo.transaction():
        store.use_token_until("tok-a", T0, _at(10))
        store.use_token_until("tok-a", _at(1), _at(500))  # a replay keeps the first expiry
        store.use_token_until("tok-b", T0, _at(20))
        repo.use_token("tok-c", T0)
    _equal(repo.is_token_used("tok-a"), True, "a token spent with its expiry")
    _equal(int(store.prune_used_tokens(_at(9))), 0, "tokens pruned before any expiry")
    _equal(int(store.prune_used_tokens(_at(10))), 1, "tokens pruned at the first expiry")
    _equal(
        [repo.is_token_used(t) for t in ("tok-a", "tok-b", "tok-c")],
        [False, True, True],
        "tokens used after a prune at the first expiry (a, b, c of unknown expiry)",
    )
    _equal(int(store.prune_used_tokens(_at(10_000))), 1, "tokens pruned long after")
    _equal(repo.is_token_used("tok-c"), True, "a token of unknown expiry after every prune")


@_check
def check_sent_messages_about_no_record_are_pruned(repo: SeedableRepository) -> None:
    """Optional ``prune_sent_messages(before)`` (a store without it passes): forgets our
    Message-IDs about no record sent before ``before`` (the reply budget no longer counts
    them) and returns how many; a Message-ID about a record is kept for threading."""
    if not _optional(repo, "prune_sent_messages"):
        return
    store: Any = repo
    call = EntityRef(EntityKind.CALL, 7)
    with repo.transaction():
        repo.record_sent("<asm.none.p@example.com>", None, "uma@example.com", _at(0))
        repo.record_sent("<asm.call-7.q@example.com>", call, "uma@example.com", _at(0))
        repo.record_sent("<asm.none.r@example.com>", None, "uma@example.com", _at(60))
    _equal(int(store.prune_sent_messages(_at(60))), 1, "Message-IDs pruned before minute 60")
    _equal(repo.replies_sent_since("uma@example.com", _at(-1)), 2, "replies counted after")
    _equal(
        repo.entity_for_message_id("<asm.call-7.q@example.com>"),
        call,
        "a Message-ID about a call after a prune",
    )
    _equal(int(store.prune_sent_messages(_at(60))), 0, "a second prune")


# -- reply outbox and leases (DESIGN 4: "Replies are an outbox", "One poller per account") -----
def _reply(number: int, minute: int = 0) -> OutgoingEmail:
    """A distinct reply (its own Message-ID) for message ``number``."""
    return attrs.evolve(
        REPLY,
        subject=f"Call {number} has been logged [CALL#{number}]",
        message_id=f"<asm.call-{number}.r{minute:04d}@example.com>",
    )


def _queue(
    repo: SeedableRepository, number: int, minute: int, mailbox: str = "box"
) -> OutgoingEmail:
    """Record message ``number`` at ``_at(minute)`` with a reply; the reply."""
    reply = _reply(number, minute)
    with repo.transaction():
        repo.record_processed(
            mailbox, f"<in-{number}@x>", f"sha-{number}", "{}", reply, _at(minute)
        )
    return reply


def _ids(entries: object) -> list[str]:
    return [e.reply.message_id for e in entries]  # type: ignore[attr-defined]


@_check
def check_outbox_holds_the_reply_recorded_with_the_decision(repo: SeedableRepository) -> None:
    """record_processed puts the reply in the outbox: PENDING, queued and due at once,
    unclaimed, named by its Message-ID (with or without angle brackets)."""
    _equal(repo.outbox_entry(REPLY.message_id), None, "outbox entry before recording")
    with repo.transaction():
        repo.record_processed("box", "<m@x>", "ab", "{}", REPLY, _at(3))
        repo.record_processed("box", "<quiet@x>", "cd", "{}", None, _at(3))
    entry = repo.outbox_entry(REPLY.message_id)
    _expect(entry is not None, "the reply recorded with the decision is not in the outbox")
    assert entry is not None
    _equal(entry.reply, REPLY, "reply in the outbox")
    _equal((entry.mailbox, entry.message_id, entry.sha256), ("box", "<m@x>", "ab"), "ledger key")
    _equal(entry.status, ReplyStatus.PENDING, "status of a new outbox entry")
    _equal((entry.queued_at, entry.next_attempt_at), (_at(3), _at(3)), "queued and due at")
    _equal((entry.attempts, entry.last_error), (0, ""), "attempts and error of a new entry")
    _equal((entry.claimed_by, entry.claimed_until, entry.sent_at), ("", None, None), "claim")
    bare = REPLY.message_id.strip("<>")
    _equal(repo.outbox_entry(bare), entry, "outbox entry looked up without angle brackets")
    _equal(repo.outbox_entry("<unknown@example.com>"), None, "unknown reply Message-ID")
    _equal(_ids(repo.list_replies()), [REPLY.message_id], "a message without reply queues none")


@_check
def check_due_replies(repo: SeedableRepository) -> None:
    """due_replies lists PENDING replies due at a time, longest due first, by mailbox, limited,
    leaving out replies a live sender has claimed."""
    first = _queue(repo, 1, 0)
    second = _queue(repo, 2, 5)
    other_box = _queue(repo, 3, 1, mailbox="other")
    _equal(_ids(repo.due_replies(_at(-1))), [], "due before anything was queued")
    _equal(_ids(repo.due_replies(_at(1))), [first.message_id, other_box.message_id], "due at 1")
    due = _ids(repo.due_replies(_at(5)))
    _equal(due, [first.message_id, other_box.message_id, second.message_id], "due at 5")
    _equal(
        _ids(repo.due_replies(_at(9), mailbox="box")), [first.message_id, second.message_id], "box"
    )
    _equal(_ids(repo.due_replies(_at(9), limit=1)), [first.message_id], "limit 1")
    claimed = repo.claim_reply(first.message_id, "poller-a", _at(6), _at(8))
    _expect(claimed is not None, "claim_reply of a due, unclaimed reply failed")
    due = _ids(repo.due_replies(_at(7)))
    _equal(due, [other_box.message_id, second.message_id], "due while one is claimed")
    due = _ids(repo.due_replies(_at(8)))
    _equal(due[0], first.message_id, "a reply whose claim expired is due again, first")
    _expect(
        repo.claim_reply(other_box.message_id, "a", _at(8), _at(9)) is not None,
        "claim_reply of a due, unclaimed reply failed",
    )
    repo.finish_reply(other_box.message_id, "a", ReplyStatus.SENT, _at(8))
    _equal(_ids(repo.due_replies(_at(9))), [first.message_id, second.message_id], "sent is not due")


@_check
def check_claim_reply_keeps_other_senders_out(repo: SeedableRepository) -> None:
    """claim_reply: one sender at a time until the claim expires; not before the reply is
    due; never a sent reply; the holder may claim again (renew), or until now (let go)."""
    reply = _queue(repo, 1, 0)
    later = _reply(2, 0)
    with repo.transaction():
        repo.record_processed("box", "<in-2@x>", "sha-2", "{}", later, _at(0))
    _equal(repo.claim_reply("<unknown@x>", "a", _at(1), _at(5)), None, "claim of an unknown id")
    entry = repo.claim_reply(reply.message_id, "poller-a", _at(1), _at(5))
    _expect(entry is not None, "claim_reply of a due, unclaimed reply failed")
    assert entry is not None
    _equal((entry.claimed_by, entry.claimed_until), ("poller-a", _at(5)), "the claim returned")
    _equal(entry.reply, reply, "the claimed entry carries the reply")
    _equal(
        repo.claim_reply(reply.message_id, "poller-b", _at(4), _at(9)),
        None,
        "a second sender's claim while the first one's is live",
    )
    again = repo.claim_reply(reply.message_id, "poller-a", _at(4), _at(7))
    _equal(again and again.claimed_until, _at(7), "the holder renewing its claim")
    taken = repo.claim_reply(reply.message_id, "poller-b", _at(7), _at(12))
    _equal(taken and taken.claimed_by, "poller-b", "a claim taken over once the first expired")
    ended = repo.claim_reply(reply.message_id, "poller-b", _at(8), _at(8))
    _equal(ended and ended.claimed_until, _at(8), "the holder ending its claim now")
    freed = repo.claim_reply(reply.message_id, "poller-c", _at(8), _at(12))
    _equal(freed and freed.claimed_by, "poller-c", "a claim its holder ended, taken at once")
    _expect(
        repo.finish_reply(
            later.message_id, "x", ReplyStatus.PENDING, _at(1), next_attempt_at=_at(30)
        )
        is False,
        "finish_reply without a claim reported success",
    )
    entry = repo.claim_reply(later.message_id, "x", _at(1), _at(2))
    _expect(entry is not None, "claim of the second reply failed")
    repo.finish_reply(later.message_id, "x", ReplyStatus.PENDING, _at(1), next_attempt_at=_at(30))
    _equal(repo.claim_reply(later.message_id, "x", _at(29), _at(31)), None, "claim before due")
    _expect(repo.claim_reply(later.message_id, "x", _at(30), _at(31)) is not None, "claim when due")
    repo.finish_reply(later.message_id, "x", ReplyStatus.SENT, _at(30))
    _equal(repo.claim_reply(later.message_id, "y", _at(90), _at(91)), None, "claim of a sent reply")


@_check
def check_finish_reply(repo: SeedableRepository) -> None:
    """finish_reply records an attempt for the claim holder only (attempts, error, next try,
    sent time), releases the claim, and the ledger entry's reply status follows."""
    reply = _queue(repo, 1, 0)
    repo.claim_reply(reply.message_id, "poller-a", _at(1), _at(5))
    _equal(
        repo.finish_reply(reply.message_id, "poller-b", ReplyStatus.SENT, _at(2)),
        False,
        "finish_reply by a sender that does not hold the claim",
    )
    entry = repo.outbox_entry(reply.message_id)
    _equal(entry and (entry.status, entry.attempts), (ReplyStatus.PENDING, 0), "after a refusal")
    done = repo.finish_reply(
        reply.message_id,
        "poller-a",
        ReplyStatus.PENDING,
        _at(2),
        error="451 4.3.0 try later",
        next_attempt_at=_at(4),
    )
    _equal(done, True, "finish_reply by the holder")
    entry = repo.outbox_entry(reply.message_id)
    assert entry is not None
    _equal(
        (entry.status, entry.attempts, entry.last_error, entry.next_attempt_at),
        (ReplyStatus.PENDING, 1, "451 4.3.0 try later", _at(4)),
        "after a temporary failure",
    )
    _equal((entry.claimed_by, entry.claimed_until), ("", None), "claim released")
    ledger = repo.ledger_entry("box", "<in-1@x>", "sha-1")
    _equal(
        ledger and (ledger.reply_status, ledger.attempts, ledger.last_error),
        (ReplyStatus.PENDING, 1, "451 4.3.0 try later"),
        "ledger entry after a temporary failure",
    )
    repo.claim_reply(reply.message_id, "poller-b", _at(4), _at(6))
    _equal(repo.finish_reply(reply.message_id, "poller-b", ReplyStatus.SENT, _at(5)), True, "sent")
    entry = repo.outbox_entry(reply.message_id)
    _equal(
        entry and (entry.status, entry.attempts, entry.last_error, entry.sent_at),
        (ReplyStatus.SENT, 2, "", _at(5)),
        "after the SMTP server accepted it",
    )
    ledger = repo.ledger_entry("box", "<in-1@x>", "sha-1")
    _equal(ledger and ledger.reply_status, ReplyStatus.SENT, "ledger entry after sending")
    _equal(
        repo.finish_reply(reply.message_id, "poller-b", ReplyStatus.FAILED, _at(6)),
        False,
        "a second finish of a sent reply",
    )
    _raises(
        ValueError,
        "finish_reply(PENDING) without next_attempt_at",
        lambda: repo.finish_reply(reply.message_id, "poller-b", ReplyStatus.PENDING, _at(6)),
        repo,
    )


@_check
def check_requeue_failed_reply(repo: SeedableRepository) -> None:
    """requeue_reply puts a FAILED reply back (PENDING, due now, new retry window, attempts
    kept); a pending or sent reply is refused, an unknown one is not found."""
    reply = _queue(repo, 1, 0)
    repo.claim_reply(reply.message_id, "a", _at(1), _at(2))
    repo.finish_reply(reply.message_id, "a", ReplyStatus.FAILED, _at(1), error="gave up")
    _raises(
        NotFoundError,
        "requeue of an unknown reply",
        lambda: repo.requeue_reply("<no@x>", _at(2)),
        repo,
    )
    entry = repo.requeue_reply(reply.message_id, _at(60))
    _equal(
        (entry.status, entry.queued_at, entry.next_attempt_at, entry.attempts, entry.last_error),
        (ReplyStatus.PENDING, _at(60), _at(60), 1, "gave up"),
        "requeued reply",
    )
    _equal(entry.reply, reply, "the requeued reply keeps its Message-ID and text")
    _equal(_ids(repo.due_replies(_at(60))), [reply.message_id], "requeued reply is due")
    ledger = repo.ledger_entry("box", "<in-1@x>", "sha-1")
    _equal(ledger and ledger.reply_status, ReplyStatus.PENDING, "ledger entry after requeue")
    _raises(
        RepositoryError,
        "requeue of a pending reply",
        lambda: repo.requeue_reply(reply.message_id, _at(61)),
        repo,
    )
    repo.claim_reply(reply.message_id, "a", _at(61), _at(62))
    repo.finish_reply(reply.message_id, "a", ReplyStatus.SENT, _at(61))
    _raises(
        RepositoryError,
        "requeue of a sent reply",
        lambda: repo.requeue_reply(reply.message_id, _at(62)),
        repo,
    )


@_check
def check_list_replies(repo: SeedableRepository) -> None:
    """list_replies filters by status and mailbox, newest queued first, at most ``limit``."""
    old = _queue(repo, 1, 0)
    failed = _queue(repo, 2, 1)
    new = _queue(repo, 3, 2, mailbox="other")
    repo.claim_reply(failed.message_id, "a", _at(3), _at(4))
    repo.finish_reply(failed.message_id, "a", ReplyStatus.FAILED, _at(3), error="550 no such user")
    everything = [new.message_id, failed.message_id, old.message_id]
    _equal(_ids(repo.list_replies()), everything, "every reply, newest first")
    _equal(_ids(repo.list_replies([ReplyStatus.FAILED])), [failed.message_id], "failed only")
    pending = [ReplyStatus.PENDING]
    _equal(_ids(repo.list_replies(pending)), [new.message_id, old.message_id], "pending only")
    _equal(_ids(repo.list_replies(pending, mailbox="box")), [old.message_id], "pending in box")
    _equal(_ids(repo.list_replies(limit=2)), everything[:2], "limit 2")
    _equal(_ids(repo.list_replies([ReplyStatus.SENT])), [], "none sent")
    [entry] = repo.list_replies([ReplyStatus.FAILED])
    _equal((entry.last_error, entry.attempts), ("550 no such user", 1), "failed entry listed")


@_check
def check_leases(repo: SeedableRepository) -> None:
    """acquire_lease: one owner at a time; renewals; take-over once expired; release lets
    the next owner in at once; leases of different names are independent."""
    lease = repo.acquire_lease("account:a", "poller-1", _at(0), _at(2))
    _equal((lease.name, lease.owner, lease.expires), ("account:a", "poller-1", _at(2)), "first")
    held = repo.acquire_lease("account:a", "poller-2", _at(1), _at(3))
    _equal((held.owner, held.expires), ("poller-1", _at(2)), "a second owner while it is held")
    renewed = repo.acquire_lease("account:a", "poller-1", _at(1), _at(4))
    _equal((renewed.owner, renewed.expires), ("poller-1", _at(4)), "renewed by its holder")
    other = repo.acquire_lease("account:b", "poller-2", _at(1), _at(3))
    _equal(other.owner, "poller-2", "a lease of another name")
    taken = repo.acquire_lease("account:a", "poller-2", _at(4), _at(6))
    _equal((taken.owner, taken.expires), ("poller-2", _at(6)), "taken over once expired")
    repo.release_lease("account:a", "poller-1")  # not the holder: nothing happens
    held = repo.acquire_lease("account:a", "poller-3", _at(5), _at(7))
    _equal(held.owner, "poller-2", "after a release by someone who does not hold it")
    repo.release_lease("account:a", "poller-2")
    mine = repo.acquire_lease("account:a", "poller-3", _at(5), _at(7))
    _equal(mine.owner, "poller-3", "taken at once after its holder released it")


_DemoRow = tuple[str, str, tuple[str, ...], tuple[tuple[str, str, str], ...]]


def _demo_run(repo: SeedableRepository) -> list[_DemoRow]:
    """Run the shipped demo inbox through the whole pipeline on ``repo``; one row per message:
    its name, the rules, the action kinds and every mail sent (recipient, subject, body)."""
    from asm_email_rules.adapters.recording import RecordingMailer
    from asm_email_rules.pipeline import process
    from asm_email_rules.sample import (
        DEMO_MAILBOX_OPTIONS,
        DEMO_NOW,
        DEMO_SYSTEM,
        demo_inbox,
        sample_mailbox,
        seed_sample_desk,
    )

    seed_sample_desk(repo)
    mailbox = sample_mailbox(**DEMO_MAILBOX_OPTIONS)
    mailer = RecordingMailer()
    counter = iter(range(1_000_000))
    rows: list[_DemoRow] = []
    for name, raw in demo_inbox():
        before = len(mailer.sent)
        result = process(
            raw,
            repo,
            mailer,
            mailbox,
            DEMO_SYSTEM,
            DEMO_NOW,
            random_token=lambda: f"{next(counter):016x}",
        )
        decision = result.decision
        _expect(decision is not None, f"{name}: processed as a duplicate on first delivery")
        assert decision is not None
        sent = tuple((mail.to, mail.subject, mail.body) for mail in mailer.sent[before:])
        rows.append((name, decision.rule, decision.action_kinds(), sent))
    return rows


@_check
def check_demo_inbox_decides_like_the_reference(repo: SeedableRepository) -> None:
    """End to end: the shipped demo inbox gives the same rules, actions, replies (summaries
    included) and notifications on this repository as on the in-memory reference."""
    from asm_email_rules.adapters.memory import InMemoryRepository

    expected = _demo_run(InMemoryRepository())
    actual = _demo_run(repo)
    for want, got in zip(expected, actual, strict=True):
        _equal(got, want, f"demo message {want[0]}")


@_check
def check_redelivery_is_a_duplicate_and_a_reused_message_id_is_not(
    repo: SeedableRepository,
) -> None:
    """End to end, the ledger key (DESIGN 4): a message delivered again with one more
    ``Received`` header is a duplicate and acts once; another message reusing its Message-ID
    acts again. The store must keep both entries (same Message-ID, other content hash)."""
    from asm_email_rules.adapters.recording import RecordingMailer
    from asm_email_rules.pipeline import process
    from asm_email_rules.sample import DEMO_NOW, DEMO_SYSTEM, sample_mailbox, seed_sample_desk

    seed_sample_desk(repo)
    mailbox = sample_mailbox(auto_reply=True)
    mailer = RecordingMailer()
    raw = (
        b"From: Uma <uma@corp.example>\r\nTo: helpdesk@desk.example\r\n"
        b"Subject: [CALL#100] toner\r\nMessage-ID: <kit-redelivery@corp.example>\r\n\r\n"
        b"The toner is empty.\r\n"
    )
    relayed = b"Received: from backup-mx.example by mx.example; Fri, 1 May 2024 09:00 +0000\r\n"
    runs = [
        process(message, repo, mailer, mailbox, DEMO_SYSTEM, DEMO_NOW)
        for message in (raw, relayed + raw, raw.replace(b"is empty", b"is leaking"))
    ]
    _equal([run.duplicate for run in runs], [False, True, False], "duplicate flags")
    texts = [e.text.strip() for e in repo.entries(EntityRef(EntityKind.CALL, 100))]
    _equal(
        [text for text in texts if "toner" in text.lower()],
        ["The toner is empty.", "The toner is leaking."],
        "history entries of call 100",
    )


@_check
def check_ledger_retention(repo: SeedableRepository) -> None:
    """Ledger retention (``LedgerRetention``, optional: a store without it passes): an entry's
    age counts from when its message was last seen; pruning forgets old entries of one mailbox
    (and their outbox entries), never one with a pending reply nor a quarantine record."""
    from asm_email_rules.protocols import LedgerRetention

    if not isinstance(repo, LedgerRetention):
        return
    day = timedelta(days=1)

    def record(message_id: str, sha: str, reply: OutgoingEmail | None, box: str = "box") -> None:
        with repo.transaction():
            repo.record_processed(box, message_id, sha, '{"rule": "X"}', reply, T0)

    record("<seen@x>", "a", None)
    record("<pending@x>", "b", _reply(2))
    record("<sent@x>", "c", _reply(3))
    repo.set_reply_status("box", "<sent@x>", "c", ReplyStatus.SENT, attempts=1)
    record("<old@x>", "e", None)
    record("<other-box@x>", "d", None, box="other")
    with repo.transaction():
        repo.record_processed("box", "", "q", '{"quarantined": "cannot parse"}', None, T0)
    fresh = repo.ledger_entry("box", "<old@x>", "e")
    _equal(fresh and fresh.seen_at, T0, "seen_at of a new entry (its processed_at)")
    repo.touch_ledger("box", "<seen@x>", "a", T0 + 50 * day)
    repo.touch_ledger("box", "<nobody@x>", "z", T0 + 50 * day)  # no such entry: nothing
    touched = repo.ledger_entry("box", "<seen@x>", "a")
    _equal(touched and touched.seen_at, T0 + 50 * day, "seen_at after touch_ledger")
    _equal(repo.prune_ledger("box", T0 + 30 * day), 2, "entries pruned (sent reply, old)")
    kept = {
        key: repo.ledger_entry("other" if key == "<other-box@x>" else "box", key, sha) is not None
        for key, sha in [
            ("<seen@x>", "a"),
            ("<pending@x>", "b"),
            ("<sent@x>", "c"),
            ("<old@x>", "e"),
            ("<other-box@x>", "d"),
            ("", "q"),
        ]
    }
    _equal(
        kept,
        {
            "<seen@x>": True,
            "<pending@x>": True,
            "<sent@x>": False,
            "<old@x>": False,
            "<other-box@x>": True,
            "": True,
        },
        "which entries a prune kept (seen lately, pending reply, other mailbox, quarantine)",
    )
    _equal(repo.outbox_entry(_reply(3).message_id), None, "outbox entry of a pruned reply")
    _expect(repo.outbox_entry(_reply(2).message_id) is not None, "pending reply lost by a prune")
    _equal(repo.prune_ledger("box", T0 + 30 * day), 0, "a second prune")


# -- the quarantine (optional: asm_email_rules.quarantine.QuarantineStore) ---------------------
def _quarantine(repo: SeedableRepository) -> QuarantineStore:
    _expect(isinstance(repo, QuarantineStore), f"{type(repo).__name__} is no QuarantineStore")
    assert isinstance(repo, QuarantineStore)
    return repo


_RAW = b"From: a@corp.example\r\nSubject: broken\r\n\r\n\x00\xff\xfe not UTF-8\r\n"
"""A message's bytes as a mailbox may hold them: a NUL and bytes that are not UTF-8."""


@_quarantine_check
def check_quarantine_keeps_the_exact_bytes(repo: SeedableRepository) -> None:
    """A quarantined message comes back byte for byte, with its SHA-256, reason, account,
    source, mailbox key and UTC time; ids count 1, 2, ...; an unknown id is None."""
    store = _quarantine(repo)
    first = store.quarantine_message(
        "desk", _RAW, "cannot parse", T0, source="maildir", mailbox_key="1700.M1P1.host"
    )
    second = store.quarantine_message("desk", b"x", "reply failed", _at(1), source="deliver")
    _equal((first, second), (1, 2), "ids of the first two entries")
    _equal(
        store.quarantined_message(first),
        QuarantinedMessage(
            id=1,
            account="desk",
            source="maildir",
            sha256=hashlib.sha256(_RAW).hexdigest(),
            reason="cannot parse",
            raw=_RAW,
            quarantined_at=T0,
            mailbox_key="1700.M1P1.host",
        ),
        "the first entry",
    )
    again = store.quarantined_message(second)
    _equal(again and (again.mailbox_key, again.state), ("", QuarantineState.HELD), "defaults")
    _equal(store.quarantined_message(99), None, "an unknown id")


@_quarantine_check
def check_quarantined_lists_by_state_and_account(repo: SeedableRepository) -> None:
    """``quarantined()`` lists HELD entries oldest first; ``state=None`` lists every state;
    ``account`` narrows to one account."""
    store = _quarantine(repo)
    ids = [
        store.quarantine_message(account, b"m", "why", _at(n), source="imap")
        for n, account in enumerate(["a", "b", "a"])
    ]
    store.resolve_quarantined(ids[0], QuarantineState.RELEASED, "back in INBOX", _at(5))
    _equal([e.id for e in store.quarantined()], ids[1:], "held entries")
    _equal([e.id for e in store.quarantined(state=None)], ids, "every entry")
    _equal([e.id for e in store.quarantined(account="a")], [ids[2]], "held entries of a")
    _equal(
        [e.id for e in store.quarantined(state=QuarantineState.RELEASED, account="a")],
        [ids[0]],
        "released entries of a",
    )


@_quarantine_check
def check_resolve_quarantined(repo: SeedableRepository) -> None:
    """Resolving records the state, what was done and when; an entry can be held again; an
    unknown id raises NotFoundError."""
    store = _quarantine(repo)
    entry_id = store.quarantine_message("desk", b"m", "why", T0, source="pop3")
    store.resolve_quarantined(entry_id, QuarantineState.REPLAYED, "processed again", _at(3))
    entry = store.quarantined_message(entry_id)
    _equal(
        entry and (entry.state, entry.resolution, entry.resolved_at),
        (QuarantineState.REPLAYED, "processed again", _at(3)),
        "a replayed entry",
    )
    store.resolve_quarantined(entry_id, QuarantineState.HELD, "still broken", _at(4))
    _equal([e.id for e in store.quarantined()], [entry_id], "held again")
    try:
        store.resolve_quarantined(99, QuarantineState.RELEASED, "", _at(5))
    except NotFoundError:
        pass
    else:
        raise AssertionError("resolving an unknown entry: expected NotFoundError")


@_quarantine_check
def check_quarantine_rolls_back_with_its_transaction(repo: SeedableRepository) -> None:
    """An entry written in a transaction that rolls back is gone; one committed stays."""
    store = _quarantine(repo)
    try:
        with repo.transaction():
            store.quarantine_message("desk", b"m", "why", T0, source="imap")
            raise _AbandonError
    except _AbandonError:
        pass
    _equal(store.quarantined(state=None), [], "entries after a rollback")
    with repo.transaction():
        kept = store.quarantine_message("desk", b"m", "why", T0, source="imap")
    _equal([e.id for e in store.quarantined()], [kept], "entries after a commit")


@_quarantine_check
def check_forget_quarantine_record(repo: SeedableRepository) -> None:
    """``forget_quarantine_record`` drops only the ledger's ``{"quarantined": ...}`` record of
    those bytes in that mailbox (not another mailbox's, not another decision)."""
    store = _quarantine(repo)
    with repo.transaction():
        repo.record_processed("box", "", "q", '{"quarantined": "cannot parse"}', None, T0)
        repo.record_processed("other", "", "q", '{"quarantined": "cannot parse"}', None, T0)
        repo.record_processed("box", "", "n", '{"action": "none"}', None, T0)
    store.forget_quarantine_record("box", "q")
    store.forget_quarantine_record("box", "n")
    store.forget_quarantine_record("box", "absent")
    _equal(repo.ledger_entry("box", "", "q"), None, "the forgotten quarantine record")
    _expect(repo.ledger_entry("other", "", "q") is not None, "another mailbox's record was lost")
    _expect(repo.ledger_entry("box", "", "n") is not None, "a record of another decision was lost")


@_quarantine_check
def check_quarantine_count_and_listing_agree_with_quarantined(repo: SeedableRepository) -> None:
    """Optional ``count_quarantined`` and ``quarantine_listing`` (a store without them passes:
    the library reads ``quarantined()`` instead): for every state and account filter, the
    count is ``len(quarantined(...))`` and the listing is ``QuarantineListing.of`` each entry,
    only the first 64 KiB of the bytes with the whole message's size (an empty message too:
    SQLite's ``substr`` of an empty blob is NULL, and ``quarantine list`` crashed on it)."""
    store = _quarantine(repo)
    counter = getattr(store, "count_quarantined", None)
    lister = getattr(store, "quarantine_listing", None)
    if not callable(counter) and not callable(lister):
        return
    big = b"Subject: big\r\n\r\n" + b"x" * (LISTING_HEAD_BYTES + 10)
    ids = [
        store.quarantine_message(account, raw, "why", _at(n), source="imap", mailbox_key=str(n))
        for n, (account, raw) in enumerate([("a", big), ("b", _RAW), ("a", b"m"), ("b", b"")])
    ]
    store.resolve_quarantined(ids[2], QuarantineState.RELEASED, "back in INBOX", _at(5))
    filters: list[tuple[QuarantineState | None, str | None]] = [
        (QuarantineState.HELD, None),
        (None, None),
        (QuarantineState.HELD, "a"),
        (QuarantineState.RELEASED, "a"),
        (None, "b"),
        (QuarantineState.REPLAYED, None),
    ]
    for state, account in filters:
        whole = store.quarantined(state=state, account=account)
        what = f"state={state}, account={account!r}"
        if callable(counter):
            _equal(int(counter(state=state, account=account)), len(whole), f"count ({what})")
        if callable(lister):
            listed = list(lister(state=state, account=account))
            _equal(listed, [QuarantineListing.of(e) for e in whole], f"listing ({what})")
    if callable(counter):
        _equal(int(counter()), 3, "count_quarantined() (held entries by default)")


@_quarantine_check
def check_purge_quarantined(repo: SeedableRepository) -> None:
    """``purge_quarantined(before)`` (optional) forgets the released and replayed entries last
    changed before ``before``; held ones only when asked (``states``); ``account`` narrows;
    the ledger's quarantine record stays; a purged entry's id is never given again.
    ``quarantine_outline`` (optional) says which entries a purge would forget."""
    store = _quarantine(repo)
    purge = getattr(store, "purge_quarantined", None)
    if not callable(purge):
        return  # optional: `quarantine purge` says the store cannot purge
    day = timedelta(days=1)
    ids = [
        store.quarantine_message(account, b"m", "why", T0, source="imap")
        for account in ("a", "a", "b", "a", "a", "a")
    ]
    held_old, released_old, replayed_old_b, released_new, held_again, released_old_2 = ids
    store.resolve_quarantined(released_old, QuarantineState.RELEASED, "back", T0 + day)
    store.resolve_quarantined(replayed_old_b, QuarantineState.REPLAYED, "done", T0 + day)
    store.resolve_quarantined(released_new, QuarantineState.RELEASED, "back", T0 + 20 * day)
    store.resolve_quarantined(held_again, QuarantineState.HELD, "failed again", T0 + 20 * day)
    store.resolve_quarantined(released_old_2, QuarantineState.RELEASED, "back", T0 + day)
    with repo.transaction():
        repo.record_processed("a", "", "q", '{"quarantined": "cannot parse"}', None, T0)
    before = T0 + 10 * day
    outline = getattr(store, "quarantine_outline", None)
    if callable(outline):  # optional too: what a purge would forget, without the messages
        _equal(
            sorted((e.id, e.state, e.changed, e.size) for e in outline(before)),
            [
                (released_old, QuarantineState.RELEASED, T0 + day, 1),
                (replayed_old_b, QuarantineState.REPLAYED, T0 + day, 1),
                (released_old_2, QuarantineState.RELEASED, T0 + day, 1),
            ],
            "the outline of a purge",
        )
        _equal(
            [e.id for e in outline(before, states=frozenset({QuarantineState.HELD}))],
            [held_old],
            "the outline of a purge of held entries",
        )
    _equal(purge(before, account="b"), 1, "resolved entries of b purged")
    _equal(purge(before), 2, "resolved entries purged (the old ones)")
    _equal(
        [e.id for e in store.quarantined(state=None)],
        [held_old, released_new, held_again],
        "entries kept (held ones, one resolved lately)",
    )
    _equal(purge(before, states=frozenset({QuarantineState.HELD})), 1, "old held entries")
    _equal(
        [e.id for e in store.quarantined(state=None)],
        [released_new, held_again],
        "entries kept (one held again lately: its last change is new)",
    )
    _expect(repo.ledger_entry("a", "", "q") is not None, "a purge lost a quarantine record")
    _equal(purge(T0 + 30 * day, states=frozenset(QuarantineState)), 2, "every entry purged")
    _equal(purge(T0 + 30 * day, states=frozenset(QuarantineState)), 0, "a second purge")
    newest = store.quarantine_message("a", b"m", "why", T0, source="imap")
    _expect(newest > max(ids), f"a purged entry's id given again: {newest}")
