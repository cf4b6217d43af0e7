"""DESIGN section 1, as a test: the core never imports the adapters or the wiring.

Every module under ``src/asm_email_rules`` is read with :mod:`ast` (imports inside functions
and ``TYPE_CHECKING`` blocks count too). A module is *pure* unless it is named in
:data:`IMPURE`, so a new core module is covered the day it is added. Pure modules never import
``adapters``, ``service``, ``cli``, ``config`` or ``bootstrap``; the impure ones have their own,
narrower, rules below.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "asm_email_rules"
ROOT = Path(__file__).resolve().parents[2] / "src" / PACKAGE

WIRING = frozenset({"adapters", "service", "cli", "config", "bootstrap"})
"""The layers the pure core must never import."""

IMPURE: dict[str, frozenset[str]] = {
    # module (or package) -> the layers it must not import
    "adapters": frozenset({"service", "cli", "config", "bootstrap"}),  # know no configuration
    "config": frozenset({"adapters", "service", "cli", "bootstrap"}),  # values, no adapters
    "service": frozenset({"adapters", "cli", "bootstrap"}),  # gets its mailboxes injected
    "bootstrap": frozenset({"cli"}),  # the composition root: builds adapters from config
    "cli": frozenset(),  # the entry point: may use everything
    "__main__": frozenset(),  # python -m asm_email_rules: runs the cli
    # The conformance kit (asm_email_rules.testing) runs a host's store against our in-memory
    # reference and records mail with our RecordingMailer: it needs those two adapters.
    "testing": frozenset({"service", "cli", "config", "bootstrap"}),
}

ALLOWED_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset(
    {
        # service.make_mailer / service.open_mailbox: deprecated names kept for hosts; the
        # import is deferred (inside __getattr__) so there is no import cycle.
        ("service", "bootstrap"),
    }
)


def module_name(path: Path) -> str:
    """``asm_email_rules.adapters.imap`` for ``src/asm_email_rules/adapters/imap.py``."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module an import statement anywhere in ``tree`` names (absolute form).

    ``from asm_email_rules import bootstrap`` yields both ``asm_email_rules`` and
    ``asm_email_rules.bootstrap``, since the name may be a sub-module.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"


def layer_of(module: str) -> str | None:
    """The first component inside the package (``adapters`` for ``asm_email_rules.adapters.x``)."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def forbidden_for(layer: str) -> frozenset[str]:
    return IMPURE.get(layer, WIRING)


def violations(path: Path) -> list[str]:
    module = module_name(path)
    own_layer = layer_of(module) or ""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for target in imported_modules(tree, module, path.name == "__init__.py"):
        layer = layer_of(target)
        if layer is None or layer == own_layer:
            continue
        if layer in forbidden_for(own_layer) and (own_layer, layer) not in ALLOWED_EXCEPTIONS:
            found.append(f"{module} imports {target} ({own_layer or 'package'} -> {layer})")
    return sorted(set(found))


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_it_must_not(path: Path) -> None:
    assert violations(path) == []


def test_new_modules_are_pure_unless_listed() -> None:
    pure = {
        layer_of(module_name(path)) for path in SOURCES if layer_of(module_name(path)) not in IMPURE
    }
    # the core the issue names is classified pure by the rule, not by a list
    assert {"rules", "pipeline", "intake", "classify", "protocols", "model"} <= pure
    assert {"connection", "logs", "sample", "settings"} <= pure
    assert not pure & WIRING


def test_the_checker_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    source = (
        "from __future__ import annotations\n"
        "def helper():\n"
        "    from asm_email_rules.adapters.sqlite import SqliteRepository\n"
        "    return SqliteRepository\n"
        "from . import bootstrap\n"
        "from asm_email_rules import config\n"
    )
    tree = ast.parse(source)
    layers = {layer_of(m) for m in imported_modules(tree, "asm_email_rules.rules", False)}
    assert {"adapters", "bootstrap", "config"} <= layers
