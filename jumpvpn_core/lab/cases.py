"""The lab's cases over the reference UDP drivers, each tied to risk-model clauses.

Every case builds a fresh world (`World.start`), disturbs real kernel networking (conntrack,
nftables drop rules, routes, a killed process, packets from the attacker), measures, and
decides pass or fail from what the agents report; nothing is assumed. Each case is bounded
by `CASE_TIMEOUT_S`. The WireGuard case lives in `jumpvpn_core.lab.wireguard`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from jumpvpn_core.lab.control import until
from jumpvpn_core.lab.world import WINDOW_S, CaseResult, World, now, wan

__all__ = ["UDP_CASES", "CaseFn"]

CaseFn = Callable[[World, CaseResult], Awaitable[None]]


async def nat_rebinding(w: World, r: CaseResult) -> None:
    """§2.2: ISP-A's NAT forgets its mappings three times; the session keeps its id."""
    times = []
    for _ in range(3):
        before = (await w.gw_status())["route"]
        w.lab.topo.flush_conntrack("A")
        took = await until(functools.partial(_route_moved, w, before), 5)
        if not r.check(took is not None, "the gateway never bound the NAT's new port"):
            return
        assert took is not None
        times.append(took)
        await asyncio.sleep(0.5)
    ok = await w.flowing()
    status = await w.client_status()
    r.figures.update(rebinds=len(times), rebind_s_max=round(max(times), 3),
                     rebind_s_p50=round(sorted(times)[len(times) // 2], 3),
                     session_id_unchanged=status["session_id"] == w.session_id)
    r.passed = r.check(ok, "payload stopped after the rebinding") and r.check(
        status["session_id"] == w.session_id, "session id changed")


async def _route_moved(w: World, before: str) -> bool:
    status = await w.gw_status()
    return bool(status["route"] not in (None, before) and status["phase"] == "ATTACHED"
                and await w.attached())


async def loss_spike(w: World, r: CaseResult) -> None:
    """§2.1: 50% then 100% loss on ISP-A for 1.5 s; the session recovers on the same path."""
    for percent in (50, 100):
        w.lab.topo.set_loss("A", percent)
        await asyncio.sleep(1.5)
        w.lab.topo.set_loss("A", 0)
        took = await until(w.flowing, WINDOW_S)
        r.figures[f"recover_after_{percent}pct_s"] = None if took is None else round(took, 3)
        if not r.check(took is not None, f"no recovery after the {percent}% spike"):
            return
    status = await w.client_status()
    recoveries = [c for c in status["changes"] if c["to"] == "RECOVERING"]
    r.figures.update(recovering_entered=len(recoveries), uplink=status["uplink"],
                     declared_lost=status["declared_lost"])
    r.passed = (r.check(len(recoveries) >= 1, "a 100% spike was never detected")
                and r.check(status["session_id"] == w.session_id, "session id changed"))


async def isp_a_dies(w: World, r: CaseResult) -> None:
    """§2.1/§7/§9: ISP-A drops everything for good; the session moves to ISP-B."""
    start = now()
    w.lab.topo.set_loss("A", 100)
    took = await until(lambda: _on_uplink(w, "B"), WINDOW_S + 1)
    r.figures["switch_s"] = None if took is None else round(took, 3)
    if not r.check(took is not None, "the session never moved to ISP-B"):
        return
    status = await w.client_status()
    r.figures.update(bound=await w.bound_host(), reasons=[c["reason"] for c in
                                                          status["changes"]][-4:])
    r.figures["total_s"] = round(now() - start, 3)
    r.passed = r.check(await w.bound_host() == wan("B"), "gateway not bound to ISP-B")


async def _on_uplink(w: World, isp: str) -> bool:
    status = await w.client_status()
    return bool(status["uplink"] == isp and await w.flowing(window_s=0.2)
                and await w.bound_host() == wan(isp))


async def blackout_short(w: World, r: CaseResult) -> None:
    """§7: both uplinks dark for half the recovery window; the session comes back."""
    dark = WINDOW_S / 2
    for isp in ("A", "B"):
        w.lab.topo.set_loss(isp, 100)
    await asyncio.sleep(dark)
    for isp in ("A", "B"):
        w.lab.topo.set_loss(isp, 0)
    took = await until(w.flowing, WINDOW_S)
    status = await w.client_status()
    r.figures.update(dark_s=dark, recover_after_light_s=None if took is None
                     else round(took, 3), uplink=status["uplink"], phase=status["phase"])
    r.passed = r.check(took is not None, f"not recovered: {status['phase']} "
                       f"{status['end_reason']}") and r.check(
        status["session_id"] == w.session_id, "session id changed")


async def blackout_long(w: World, r: CaseResult) -> None:
    """§7: both uplinks dark past the recovery window; the session ends, explicitly, once."""
    start = now()
    for isp in ("A", "B"):
        w.lab.topo.set_loss(isp, 100)

    async def ended() -> bool:
        return bool((await w.client_status())["phase"] == "TERMINATED")

    took = await until(ended, WINDOW_S + 3)
    status = await w.client_status()
    r.figures.update(window_s=WINDOW_S, ended_after_s=None if took is None else round(took, 3),
                     end_reason=status["end_reason"])
    elapsed = now() - start
    r.passed = (r.check(took is not None, f"still {status['phase']} after {elapsed:.1f} s")
                and r.check(status["end_reason"] in ("RECOVERY_WINDOW_EXCEEDED",
                                                     "RECOVERY_ROUNDS_EXCEEDED"),
                            f"ended for {status['end_reason']}"))


async def asymmetric_return(w: World, r: CaseResult) -> None:
    """§2.3: ISP-A carries the client's packets out but nothing back; the binding moves to
    ISP-B only through a proof-backed, validated reattach."""
    w.lab.topo.set_loss("A", 100, direction="down")
    took = await until(lambda: _on_uplink(w, "B"), WINDOW_S + 1)
    r.figures["switch_s"] = None if took is None else round(took, 3)
    if not r.check(took is not None, "the session never moved to ISP-B"):
        return
    gw = await w.gw_status()
    binds = [b for b in gw["binds"] if b["sid"] == w.session_id]
    reasons = [c["reason"] for c in gw["changes"] if c["sid"] == w.session_id]
    r.figures.update(gateway_binds=len(binds), gateway_reasons=reasons[-4:],
                     proof_rejects=gw["rejects"].get("PROOF_INVALID", 0))
    r.passed = r.check(bool(binds) and binds[-1]["to"].startswith(f"udp:{wan('B')}:"),
                       "binding did not move to ISP-B") and r.check(
        "REATTACHED" in reasons, "the binding moved without a REATTACHED transition")


async def _attack_during_rebind(w: World, r: CaseResult, **send: object) -> None:
    """Send attack traffic for 3 s and flush ISP-A's NAT in the middle of it."""
    assert w.attacker is not None
    await w.client.call("rebind")  # a port jump, so a signed reattach request is captured
    await until(w.flowing, 3)
    captured = await w.attacker.call("captured")
    before = await w.gw_status()
    task = asyncio.ensure_future(w.attacker.call("send", timeout_s=10, seconds=3.0, **send))
    await asyncio.sleep(1.0)
    route_before = (await w.gw_status())["route"]
    w.lab.topo.flush_conntrack("A")
    took = await until(functools.partial(_route_moved, w, route_before), WINDOW_S)
    sent = await task
    alive = await until(w.flowing, WINDOW_S)
    after = await w.gw_status()
    hosts = {b["to"].rsplit(":", 1)[0] for b in after["binds"]}
    r.figures.update(captured=captured["kinds"], sent=sent["sent"],
                     rate=round(sent["rate"]), rebind_during_attack_s=None if took is None
                     else round(took, 3), gateway_rejects=after["rejects"],
                     gateway_drops={k: v for k, v in after["drops"].items() if v},
                     bound_hosts=sorted(hosts))
    r.passed = (
        r.check(sent["sent"] > 0 and sent["pool"] > 0, "nothing captured to send")
        and r.check(all(h.endswith(wan("A")) for h in hosts),
                    f"a binding went to an attacker address: {sorted(hosts)}")
        and r.check(took is not None, "the NAT rebinding during the attack did not bind "
                    f"(gateway rejects {after['rejects']})")
        and r.check(alive is not None, "the session did not survive the attack")
        and r.check(after["state_version"] is not None
                    and after["state_version"] >= before["state_version"],
                    "state version went backwards"))


async def replay(w: World, r: CaseResult) -> None:
    """§3.2/§3.1: captured requests, data and heartbeats replayed from the attacker's own
    address at 50/s while the client's NAT rebinds; 0 sessions lost."""
    await _attack_during_rebind(w, r, mode="replay", rate=50, source="own",
                                kinds=["REATTACH_REQUEST", "DATA", "HEARTBEAT"])


async def spoofing(w: World, r: CaseResult) -> None:
    """§3.1/§3.2: forged requests (fresh nonce, random proof) and replayed data with a
    spoofed source address at 200/s while the client's NAT rebinds; 0 sessions lost."""
    await _attack_during_rebind(w, r, mode="forge", rate=200, source="spoof",
                                spoof_src="203.0.113.77", kinds=["REATTACH_REQUEST"])


async def flood(w: World, r: CaseResult) -> None:
    """§3.1: forged reattach requests from spoofed sources at rising rates. Reports the
    highest rate at which the session survived and that no forged packet changed state."""
    assert w.attacker is not None
    await w.client.call("rebind")
    await until(w.flowing, 3)
    survived = 0.0
    steps = []
    for rate in (500, 2_000, 8_000, 20_000):
        before, cbefore = await w.gw_status(), await w.client_status()
        sent = await w.attacker.call("send", timeout_s=10, mode="forge", rate=rate,
                                     seconds=2.0, source="spoof", spoof_net="203.0.113.0/24",
                                     kinds=["REATTACH_REQUEST"])
        alive = await until(w.flowing, WINDOW_S)
        after, cafter = await w.gw_status(), await w.client_status()
        # Nothing forged changed state: every binding stayed on the client's own NAT, and
        # every reattach the gateway accepted was one the real client completed.
        new_binds = after["binds"][len(before["binds"]):]
        gw_reattached = after["reattached"] - before["reattached"]
        cl_reattached = cafter["reattached"] - cbefore["reattached"]
        unchanged = (after["bound"] == before["bound"]
                     and all(b["to"].startswith(f"udp:{wan('A')}:") for b in new_binds)
                     and gw_reattached <= cl_reattached)
        steps.append({"asked": rate, "achieved": round(sent["rate"]), "alive": alive is not None,
                      "forged_changed_nothing": unchanged,
                      "client_reattaches": cl_reattached})
        if not r.check(unchanged, f"a forged request changed state at {rate}/s"):
            break
        if alive is None:
            break
        survived = max(survived, sent["rate"])
    gw = await w.gw_status()
    r.figures.update(steps=steps, highest_surviving_rate=round(survived),
                     gateway_rejects=gw["rejects"])
    r.passed = r.check(survived > 0, "the session did not survive the lowest rate") and all(
        s["forged_changed_nothing"] for s in steps)


async def gateway_failover(w: World, r: CaseResult) -> None:
    """§4.1: gw1 dies (SIGKILL); the service address moves to gw2, which takes the session
    over from the shared store with its id, version and replay window."""
    before = await w.gw_status()
    start = now()
    w.gw1.kill()
    w.lab.topo.route_service_to("gw2")
    took = await until(lambda: w.flowing(w.gw2), WINDOW_S + 1)
    r.figures["takeover_s"] = None if took is None else round(now() - start, 3)
    if not r.check(took is not None, "gw2 never carried the session"):
        return
    after = await w.gw_status(w.gw2)
    r.figures.update(store_version_before=before["store_version"],
                     store_version_after=after["store_version"],
                     gw2_reasons=[c["reason"] for c in after["changes"]][-3:])
    r.passed = (r.check(after["store_version"] > before["store_version"],
                        "gw2 committed nothing") and r.check(await w.attached(),
                                                              "client not attached"))


async def store_partition(w: World, r: CaseResult) -> None:
    """§4.2: traffic is routed to gw2, which is cut off from the store: it refuses the
    reattach (nothing accepted without its commit); routed back to gw1, the session lives."""
    await w.gw2.call("store_cut", on=True)
    w.lab.topo.route_service_to("gw2")
    await asyncio.sleep(0.3)  # datagrams already on their way to gw1 land
    before = await w.gw_status()
    await asyncio.sleep(WINDOW_S / 2)
    cut = await w.gw2.call("status", sid=w.session_id)
    during = await w.client_status()
    mid = await w.gw_status()
    w.lab.topo.route_service_to("gw1")
    took = await until(w.flowing, WINDOW_S)
    r.figures.update(gw2_rejects=cut["rejects"], gw2_store_refused=cut["store_refused"],
                     client_phase_during_cut=during["phase"],
                     store_version_unchanged_during_cut=mid["store_version"]
                     == before["store_version"],
                     recover_after_route_back_s=None if took is None else round(took, 3))
    r.passed = (
        r.check(cut["rejects"].get("STORE_UNAVAILABLE", 0) >= 1,
                "gw2 never refused for lack of its store")
        and r.check(during["phase"] != "ATTACHED", "the client attached through a node "
                    "without its store")
        and r.check(mid["store_version"] == before["store_version"],
                    "the store changed during the cut")
        and r.check(took is not None, "not recovered through gw1"))


#: name -> (clauses, case, world options)
UDP_CASES: dict[str, tuple[str, CaseFn, dict[str, Any]]] = {
    "nat-rebinding": ("§2.2", nat_rebinding, {}),
    "loss-spike": ("§2.1", loss_spike, {}),
    "isp-a-dies": ("§2.1 §7 §9", isp_a_dies, {"auto_switch": True}),
    "blackout-short": ("§7", blackout_short, {"auto_switch": True}),
    "blackout-long": ("§7 §9", blackout_long, {"auto_switch": True}),
    "asymmetric-return": ("§2.3", asymmetric_return, {"auto_switch": True}),
    "replay": ("§3.2 §3.1", replay, {"attacker": True}),
    "spoofing": ("§3.1 §3.2", spoofing, {"attacker": True}),
    "flood": ("§3.1", flood, {"attacker": True}),
    "gateway-failover": ("§4.1", gateway_failover, {}),
    "store-partition": ("§4.2", store_partition, {}),
}
