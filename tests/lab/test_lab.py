"""The namespace lab: its pieces without root, and its cases on real kernel networking.

Cases need root, network namespaces and nftables (and wireguard-go for the tunnel). Without
them the tests skip with the reason, or fail instead when `JUMPVPN_REQUIRE_LAB=1` (as in
CI). Each case is bounded by the lab itself (`CASE_TIMEOUT_S`); the full matrix runs from
`jumpvpn lab --all` (docs/lab.md), so only representative cases run here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.lab import CASE_NAMES, CaseResult
from jumpvpn_core.lab.attacker_role import ipv4_udp_packet
from jumpvpn_core.lab.control import Lab
from jumpvpn_core.lab.net import cleanup, lab_available, run, wireguard_available
from jumpvpn_core.lab.run import format_table, run_case
from jumpvpn_core.lab.tcpx import expected_chunk

REQUIRE_ENV = "JUMPVPN_REQUIRE_LAB"


def _need(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get(REQUIRE_ENV, "") == "1":
        pytest.fail(f"{problem} ({REQUIRE_ENV}=1, so this is a failure)", pytrace=False)
    pytest.skip(problem)


def _case(name: str, **options: int) -> CaseResult:
    _need(lab_available())
    result = asyncio.run(run_case(name, **options))
    assert result.passed, f"{name}: {result.detail} {result.figures}"
    return result


# --- without root ------------------------------------------------------------------------


def test_spoofed_packet_has_a_valid_ipv4_header_and_the_forged_source() -> None:
    packet = ipv4_udp_packet("203.0.113.7", 4000, "192.0.2.100", 4433, b"xyz")
    header = packet[:20]
    words = struct.unpack("!10H", header)
    assert (sum(words) + (sum(words) >> 16)) & 0xFFFF == 0xFFFF  # checksum verifies
    assert socket.inet_ntoa(header[12:16]) == "203.0.113.7"
    assert struct.unpack("!HHH", packet[20:26]) == (4000, 4433, 11)
    assert packet[28:] == b"xyz"


def test_transfer_stream_stamps_every_mebibyte_so_reordering_is_corruption() -> None:
    block = bytes(range(256)) * 4096
    whole = expected_chunk(block, 0, 3 << 20)
    assert whole[(1 << 20):(1 << 20) + 8] == (1).to_bytes(8, "big")
    assert whole[(2 << 20):(2 << 20) + 8] == (2).to_bytes(8, "big")
    assert expected_chunk(block, (1 << 20) - 3, 10) == whole[(1 << 20) - 3:(1 << 20) + 7]
    assert whole[: 1 << 20] != whole[1 << 20: 2 << 20]


def test_results_table_shows_verdict_time_and_reason() -> None:
    ok = CaseResult("nat-rebinding", "§2.2", True, 3.2, {"rebind_s_max": 0.1})
    bad = CaseResult("replay", "§3.2", False, 9.0, {}, "the rebinding did not bind")
    table = format_table([ok, bad])
    assert "PASS" in table
    assert "FAIL" in table
    assert "rebind_s_max=0.1" in table
    assert "the rebinding did not bind" in table
    assert table.endswith("1/2 passed")


def test_lab_verb_lists_cases_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert main(["lab", "--list"]) == 0
    assert capsys.readouterr().out.split() == list(CASE_NAMES)
    if lab_available() is None:
        assert main(["lab", "--case", "no-such-case"]) == 2
        assert "unknown case" in capsys.readouterr().err


# --- teardown --------------------------------------------------------------------------


def test_a_failing_run_leaves_no_namespace_behind() -> None:
    _need(lab_available())

    async def crash() -> str:
        async with Lab() as lab:
            await lab.agent("client", "cli")
            assert lab.topo.ns("cli") in run(["ip", "netns", "list"])
            raise RuntimeError(lab.run_id)

    with pytest.raises(RuntimeError) as failed:
        asyncio.run(crash())
    assert f"jl{failed.value}-" not in run(["ip", "netns", "list"])


def test_cleanup_removes_leftovers_of_a_killed_run() -> None:
    _need(lab_available())
    leftover = "jlfeed-cli"
    run(["ip", "netns", "add", leftover])
    assert leftover in cleanup()
    assert leftover not in run(["ip", "netns", "list"])


# --- cases -----------------------------------------------------------------------------


@pytest.mark.requirement("RM-2.2")
def test_nat_rebinding_keeps_the_session_id_and_the_payload_flowing() -> None:
    result = _case("nat-rebinding")
    assert result.figures["rebinds"] == 3
    assert result.figures["session_id_unchanged"] is True


@pytest.mark.requirement("RM-2.1", "RM-7", "RM-9")
def test_isp_a_dying_moves_the_session_to_isp_b() -> None:
    result = _case("isp-a-dies")
    assert result.figures["bound"] == "203.0.113.2"


@pytest.mark.requirement("RM-3.1", "RM-3.2")
def test_spoofed_forged_requests_never_bind_and_the_rebinding_still_does() -> None:
    result = _case("spoofing")
    assert result.figures["bound_hosts"] == ["udp:198.51.100.2"]
    assert result.figures["rebind_during_attack_s"] is not None


@pytest.mark.requirement("RM-4.1")
def test_gateway_failover_takes_the_session_over_from_the_shared_store() -> None:
    result = _case("gateway-failover")
    assert result.figures["store_version_after"] > result.figures["store_version_before"]


@pytest.mark.requirement("RM-2.2", "RM-2.3", "RM-7", "RM-9")
def test_wireguard_transfer_survives_rebinding_isp_switch_and_blackout_uncorrupted() -> None:
    _need(wireguard_available())
    result = _case("wireguard", wg_runs=1, wg_megabytes=30)
    assert result.figures["corrupted_bytes"] == 0
    assert result.figures["transfers"][0]["session_id_unchanged"] is True
