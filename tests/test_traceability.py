"""Traceability: every requirement has code and tests; the committed matrix is current."""

from __future__ import annotations

from pathlib import Path

from tools.traceability import (
    REQUIREMENT_CODE,
    build_report,
    missing_code,
    parse_requirements,
    render,
    scan_tests,
)

ROOT = Path(__file__).resolve().parent.parent


def test_requirement_ids_are_read_from_the_spec_table() -> None:
    ids = list(parse_requirements(ROOT / "specs" / "requirements.md"))
    assert ids[0] == "RM-1"
    assert ids[-1] == "RM-10"
    assert "RM-3.2" in ids
    assert len(ids) == len(set(ids))


def test_every_mapped_function_exists() -> None:
    assert missing_code() == []
    assert missing_code({"RM-X": ("jumpvpn_core.machine:no_such_function",)}) == [
        "jumpvpn_core.machine:no_such_function"]


def test_every_requirement_has_code_and_at_least_one_test() -> None:
    report = build_report(ROOT)
    assert set(REQUIREMENT_CODE) == set(report.requirements)
    assert report.without_tests == ()
    assert report.without_code == ()
    assert report.unknown_ids == ()


def test_committed_traceability_doc_matches_a_fresh_generation() -> None:
    committed = (ROOT / "docs" / "traceability.md").read_text(encoding="utf-8")
    assert committed == render(build_report(ROOT)), (
        "docs/traceability.md is stale: run `jumpvpn traceability --write docs/traceability.md`")


def test_ast_scan_finds_function_class_and_module_markers(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_text(
        "import pytest\n"
        "from pytest import mark\n"
        "pytestmark = [pytest.mark.requirement('RM-9')]\n"
        "@pytest.mark.requirement('RM-1', 'RM-2.1')\n"
        "def test_f(): pass\n"
        "@mark.requirement('RM-3.2')\n"
        "class TestC:\n"
        "    @pytest.mark.requirement('RM-7')\n"
        "    def test_m(self): pass\n"
        "def helper(): pass\n",
        encoding="utf-8")
    found = scan_tests(tests)
    assert found == {
        "RM-1": ["tests/test_a.py::test_f"],
        "RM-2.1": ["tests/test_a.py::test_f"],
        "RM-3.2": ["tests/test_a.py::TestC::test_m"],
        "RM-7": ["tests/test_a.py::TestC::test_m"],
        "RM-9": ["tests/test_a.py::TestC::test_m", "tests/test_a.py::test_f"],
    }
