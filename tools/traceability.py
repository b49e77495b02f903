"""Traceability: requirement id -> implementing code -> tests that prove it.

* Requirements are the rows of `specs/requirements.md` (a markdown table whose first
  cell is the id, `RM-1` ... `RM-10`).
* Code is the explicit table `REQUIREMENT_CODE` below: `module:qualname` entries that must
  exist (a test imports each one).
* Tests are found by an **AST scan** of `tests/` (no import, no collection: fast and
  deterministic): every `test_*` function or method whose decorators, class decorators
  or module `pytestmark` include `pytest.mark.requirement("RM-...")`.

`render()` produces `docs/traceability.md`; `jumpvpn traceability --write
docs/traceability.md` regenerates it in one command after merging branches.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import attrs

__all__ = [
    "REQUIREMENT_CODE",
    "Report",
    "build_report",
    "missing_code",
    "parse_requirements",
    "render",
    "scan_tests",
]

#: Requirement id -> the code that implements it. Extend it when code moves or arrives
#: (a store adapter, the gateway): every entry must resolve (`missing_code()` is empty).
REQUIREMENT_CODE: dict[str, tuple[str, ...]] = {
    "RM-1": ("jumpvpn_core.phases:TRANSITION_TABLE", "jumpvpn_core.reasons:reason_class",
             "jumpvpn_core.machine:next_deadline"),
    "RM-2.1": ("jumpvpn_core._client:client_loss",
               "jumpvpn_core.machine:_recovery_window_ended",
               "jumpvpn_core.quality:ranked"),
    "RM-2.2": ("jumpvpn_core._server:server_inbound",
               "jumpvpn_core._client:client_delivery_timeout",
               "jumpvpn_core.invariants:identity_unchanged"),
    "RM-2.3": ("jumpvpn_core._server:server_request",
               "jumpvpn_core._server:open_validation",
               "jumpvpn_core.invariants:no_bind_without_proof",
               "jumpvpn_core.invariants:amplification_capped"),
    "RM-3.1": ("jumpvpn_core._server:server_request",
               "jumpvpn_core.invariants:rejection_mutates_nothing",
               "jumpvpn_core.quality:migration_due",
               "jumpvpn_core.invariants:controlled_migration"),
    "RM-3.2": ("jumpvpn_core.replay:check_nonce", "jumpvpn_core.replay:mark_nonce"),
    "RM-3.3": ("jumpvpn_core._kernel:transition",
               "jumpvpn_core.invariants:version_monotonic"),
    "RM-4.1": ("jumpvpn_core.stores.base:SessionStore.compare_and_set",
               "jumpvpn_core.stores.memory:MemoryStore.compare_and_set",
               "jumpvpn_core.events:OwnershipAmbiguous"),
    "RM-4.2": ("jumpvpn_core.stores.base:StoreUnavailableError",
               "jumpvpn_core.events:StoreRecordInvalid"),
    "RM-5.1": ("jumpvpn_core.replay:ReplayWindow", "jumpvpn_core.invariants:bounded_memory"),
    "RM-5.2": ("jumpvpn_core._client:client_candidate_discovered",
               "jumpvpn_core.invariants:check_state"),
    "RM-5.3": ("jumpvpn_core.events:Evict", "jumpvpn_core.machine:_fire_one"),
    "RM-6.1": ("jumpvpn_core.machine:step", "jumpvpn_core.effects:StateChanged.to_record"),
    "RM-6.2": ("jumpvpn_core.effects:Rejected.to_record",
               "jumpvpn_core.audit.trace:verify_lines"),
    "RM-7": ("jumpvpn_core._client:client_collapse",
             "jumpvpn_core.machine:_recovery_window_ended"),
    "RM-8": ("jumpvpn_core.machine:_fire_one", "jumpvpn_core.invariants:fail_closed"),
    "RM-9": ("jumpvpn_core.machine:_recovery_window_ended",
             "jumpvpn_core.invariants:bounded_recovery"),
    "RM-10": ("jumpvpn_core.phases:TRANSITION_TABLE", "jumpvpn_core.invariants:check_step"),
}

_ROW = re.compile(r"^\|\s*(RM-[0-9][0-9.]*)\s*\|\s*([^|]*)\|\s*([^|]*)\|")


def parse_requirements(path: Path) -> dict[str, str]:
    """Requirement id -> requirement text, in file order."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            out[match.group(1)] = match.group(3).strip()
    return out


def _requirement_ids(node: ast.expr) -> list[str]:
    """Ids in `pytest.mark.requirement("RM-1", ...)` (or `mark.requirement`), else []."""
    if not isinstance(node, ast.Call):
        return []
    func = node.func
    if not (isinstance(func, ast.Attribute) and func.attr == "requirement"):
        return []
    owner = func.value
    if not (isinstance(owner, ast.Attribute) and owner.attr == "mark") and not (
        isinstance(owner, ast.Name) and owner.id == "mark"
    ):
        return []
    return [arg.value for arg in node.args
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]


def _marks(decorators: Iterable[ast.expr]) -> list[str]:
    return [rid for d in decorators for rid in _requirement_ids(d)]


def _module_marks(tree: ast.Module) -> list[str]:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        ):
            value = stmt.value
            items = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
            return _marks(items)
    return []


def scan_tests(tests_dir: Path) -> dict[str, list[str]]:
    """Requirement id -> sorted test node ids (`tests/x.py::Class::test`), by AST."""
    found: dict[str, set[str]] = {}
    root = tests_dir.parent
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_ids = _module_marks(tree)
        rel = path.relative_to(root).as_posix()
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    stmt.name.startswith("test"):
                for rid in module_ids + _marks(stmt.decorator_list):
                    found.setdefault(rid, set()).add(f"{rel}::{stmt.name}")
            elif isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
                class_ids = module_ids + _marks(stmt.decorator_list)
                for item in stmt.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and \
                            item.name.startswith("test"):
                        for rid in class_ids + _marks(item.decorator_list):
                            found.setdefault(rid, set()).add(f"{rel}::{stmt.name}::{item.name}")
    return {rid: sorted(tests) for rid, tests in found.items()}


def _resolves(target: str) -> bool:
    module_name, _, qualname = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError:
        return False
    for part in qualname.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def missing_code(mapping: dict[str, tuple[str, ...]] = REQUIREMENT_CODE) -> list[str]:
    """Every `module:qualname` of the mapping that does not exist."""
    return sorted({t for targets in mapping.values() for t in targets if not _resolves(t)})


@attrs.frozen
class Report:
    """The traceability matrix and what is wrong with it."""

    requirements: dict[str, str]
    tests: dict[str, list[str]]
    without_tests: tuple[str, ...]
    without_code: tuple[str, ...]
    unknown_ids: tuple[str, ...]
    missing_code: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every requirement has code and tests and every reference resolves."""
        return not (self.without_tests or self.without_code or self.unknown_ids
                    or self.missing_code)


def build_report(root: Path) -> Report:
    """Scan `root/specs/requirements.md` and `root/tests/`."""
    requirements = parse_requirements(root / "specs" / "requirements.md")
    tests = scan_tests(root / "tests")
    return Report(
        requirements,
        tests,
        tuple(r for r in requirements if not tests.get(r)),
        tuple(r for r in requirements if not REQUIREMENT_CODE.get(r)),
        tuple(sorted(set(tests) - set(requirements))),
        tuple(missing_code()),
    )


def render(report: Report) -> str:
    """`docs/traceability.md`."""
    lines = [
        "# Traceability: requirement -> code -> tests",
        "",
        "Generated from `specs/requirements.md`, the code table `REQUIREMENT_CODE` in",
        "`tools/traceability.py` and an AST scan of `tests/` for",
        "`@pytest.mark.requirement(...)`. Do not edit; regenerate after merging with:",
        "",
        "    jumpvpn traceability --write docs/traceability.md",
        "",
        "| id | requirement | code | tests |",
        "|---|---|---|---|",
    ]
    for rid, text in report.requirements.items():
        code = "<br>".join(f"`{c}`" for c in REQUIREMENT_CODE.get(rid, ())) or "**none**"
        tests = report.tests.get(rid, [])
        listed = "<br>".join(f"`{t}`" for t in tests) or "**none**"
        lines.append(f"| {rid} | {text} | {code} | {listed} |")
    lines += ["", "## Summary", ""]
    total = sum(len(report.tests.get(r, [])) for r in report.requirements)
    lines.append(f"- {len(report.requirements)} requirements, {total} (requirement, test) links")
    for title, items in (("Requirements without tests", report.without_tests),
                         ("Requirements without code", report.without_code),
                         ("Marker ids not in specs/requirements.md", report.unknown_ids),
                         ("Code references that do not resolve", report.missing_code)):
        lines.append(f"- {title}: {', '.join(items) if items else 'none'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.traceability [--write FILE]`: the same as `jumpvpn traceability`."""
    from jumpvpn_core.cli import main as cli_main

    return cli_main(["traceability", "--root", str(Path(__file__).resolve().parent.parent),
                     *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
