"""The mutation score is computed strictly from mutmut's output."""

from __future__ import annotations

import pytest

from tools.mutation import MutationOutputError, parse_results, score

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
