"""The mutation score is computed strictly from mutmut's output."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tools.mutation import (
    MutationOutputError,
    parse_results,
    prepare_suite,
    score,
    suite_pyproject,
)

OUTPUT = """\
    jumpvpn_core.replay.x_check_nonce__mutmut_1: killed
    jumpvpn_core.replay.x_check_nonce__mutmut_2: survived
    jumpvpn_core.replay.x_mark_nonce__mutmut_3: timeout
    jumpvpn_core.machine.x_step__mutmut_1: killed
    jumpvpn_core.machine.x_step__mutmut_2: suspicious
    jumpvpn_core.codec.x_state_to_data__mutmut_1: not checked
"""


def test_score_counts_timeouts_and_suspicious_as_survivors() -> None:
    results = parse_results(OUTPUT)
    replay = score(results, ["replay"])
    assert (replay.killed, replay.total) == (1, 3)
    assert replay.survivors == ("jumpvpn_core.replay.x_check_nonce__mutmut_2",
                                "jumpvpn_core.replay.x_mark_nonce__mutmut_3")
    both = score(results, ["replay", "machine"])
    assert both.value == pytest.approx(2 / 5)


def test_unparseable_output_or_unchecked_mutants_fail_loudly() -> None:
    with pytest.raises(MutationOutputError, match="cannot parse"):
        parse_results("Generating mutants... done\n")
    with pytest.raises(MutationOutputError, match="unknown mutant status"):
        parse_results("    jumpvpn_core.replay.x_f__mutmut_1: exploded\n")
    with pytest.raises(MutationOutputError, match="not checked"):
        score(parse_results(OUTPUT), ["codec"])
    with pytest.raises(MutationOutputError, match="no mutants"):
        score(parse_results(OUTPUT), ["proof"])


PYPROJECT = """\
[project]
name = "x"

[tool.pytest.ini_options]
markers = ["requirement(*ids): ids"]

[tool.mutmut]
# the core's
source_paths = ["jumpvpn_core"]
only_mutate = ["jumpvpn_core/replay.py"]
also_copy = ["specs/"]
pytest_add_cli_args_test_selection = ["tests/test_replay_window.py"]
pytest_add_cli_args = ["-q"]

[tool.jumpvpn.mutation.gateway]
only_mutate = ["jumpvpn_core/gateway/gateway.py", "jumpvpn_core/stores/sqlite.py"]
pytest_add_cli_args_test_selection = ["tests/gateway/test_resume.py"]

[tool.jumpvpn.mutation.bad]
source_paths = ["elsewhere"]

[tool.mypy]
strict = true
"""


def test_a_suite_replaces_only_its_keys_of_the_mutmut_section() -> None:
    data = tomllib.loads(suite_pyproject(PYPROJECT, "gateway"))
    assert data["tool"]["mutmut"] == {
        "source_paths": ["jumpvpn_core"],
        "only_mutate": ["jumpvpn_core/gateway/gateway.py", "jumpvpn_core/stores/sqlite.py"],
        "also_copy": ["specs/"],
        "pytest_add_cli_args_test_selection": ["tests/gateway/test_resume.py"],
        "pytest_add_cli_args": ["-q"],
    }
    # Everything else is kept: pytest's markers, mypy's options, the suites themselves.
    assert data["tool"]["pytest"]["ini_options"]["markers"] == ["requirement(*ids): ids"]
    assert data["tool"]["mypy"] == {"strict": True}
    assert data["project"] == {"name": "x"}


def test_an_unknown_suite_or_key_or_a_missing_section_is_an_error() -> None:
    with pytest.raises(MutationOutputError, match="no suite 'nope'"):
        suite_pyproject(PYPROJECT, "nope")
    with pytest.raises(MutationOutputError, match="sets \\['source_paths'\\]"):
        suite_pyproject(PYPROJECT, "bad")
    without = PYPROJECT.replace("[tool.mutmut]", "[tool.other]")
    with pytest.raises(MutationOutputError, match="exactly one"):
        suite_pyproject(without, "gateway")


def test_prepare_suite_copies_the_project_and_keeps_earlier_results(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    for name, text in {"jumpvpn_core/gateway/gateway.py": "A = 1\n",
                       "tests/gateway/test_resume.py": "", "specs/s.md": "spec\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    work = prepare_suite(tmp_path, "gateway")
    assert work == tmp_path / ".mutation" / "gateway"
    assert (work / "jumpvpn_core/gateway/gateway.py").read_text() == "A = 1\n"
    assert (work / "specs/s.md").read_text() == "spec\n"
    assert (work / "tests/gateway/test_resume.py").exists()
    assert tomllib.loads((work / "pyproject.toml").read_text())["tool"]["mutmut"][
        "only_mutate"][0] == "jumpvpn_core/gateway/gateway.py"
    # A second preparation copies the sources afresh (a removed file is gone) and keeps
    # the suite's own mutmut results; the project's pyproject.toml is untouched.
    (work / "mutants").mkdir()
    (work / "mutants" / "kept").write_text("results")
    (tmp_path / "specs/s.md").unlink()
    prepare_suite(tmp_path, "gateway")
    assert not (work / "specs/s.md").exists()
    assert (work / "mutants" / "kept").read_text() == "results"
    assert (tmp_path / "pyproject.toml").read_text() == PYPROJECT


def test_suite_mutant_names_are_scored_by_dotted_module() -> None:
    results = parse_results(
        "    jumpvpn_core.gateway.gateway.xǁGatewayǁ_load__mutmut_1: killed\n"
        "    jumpvpn_core.gateway.gateway.xǁGatewayǁ_load__mutmut_2: survived\n"
        "    jumpvpn_core.gateway.records.x_decode_record__mutmut_1: killed\n"
        "    jumpvpn_core.stores.sqlite.xǁSqliteStoreǁget__mutmut_1: killed\n")
    gateway = score(results, ["gateway.gateway"])
    assert (gateway.killed, gateway.total) == (1, 2)
    assert score(results, ["gateway.records", "stores.sqlite"]).value == 1.0
