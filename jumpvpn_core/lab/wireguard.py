"""The WireGuard data plane: the core as the path manager of a real `wireguard-go` tunnel.

Who decides what
----------------
* **Client: which uplink carries the tunnel.** The tunnel's outer UDP flow follows the
  route to the gateway service address; the client agent moves that route onto the uplink
  of every `BindTransport` its core executes (`client_role`). WireGuard never picks an
  uplink itself.
* **Gateway: when the peer endpoint may change.** An nftables set in the gateway's
  namespace admits outer WireGuard packets only from the host the core has bound; packets
  from any other host are dropped before `wireguard-go` sees them. On every `BindTransport`
  (a proof-backed, path-validated reattach) the gateway agent replaces that host and sets
  the peer's endpoint through the UAPI socket (`EndpointFollower`).

WireGuard's own roaming, and §2.3 / §9
--------------------------------------
WireGuard moves a peer's endpoint to the source of any packet that authenticates and
passes its replay counter: proof and freshness, as §2.3 asks, but decided by the data plane
alone. Left unrestricted that would be a hidden fallback (§9): a path the control plane
never validated would carry the session. So it is confined: WireGuard may follow a new
*port* of the bound host (the NAT rebinding of §2.2, where the control plane's own flow
rebinds on the same host and revalidates it), never a new host. A new host (an ISP switch)
is admitted only after the core's proof-backed reattach binds it. Nothing falls back
silently: if the core does not bind, the tunnel stays dark and the session's phase says so.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat

from jumpvpn_core.lab.control import Lab, until
from jumpvpn_core.lab.net import ISP, SERVICE_ADDRESS, WG_SOCKET_DIR
from jumpvpn_core.lab.world import WINDOW_S, CaseResult, World

__all__ = ["WG_PORT", "EndpointFollower", "uapi", "wireguard_case"]

WG_PORT = 51_820
CLIENT_WG_PORT = 51_821
TUNNEL = {"gw": "198.18.0.1", "client": "198.18.0.2"}  # RFC 2544 benchmark range
TCP_PORT = 5_001
RATE_MBPS = 4.0


def _keypair() -> tuple[str, str]:
    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, _no_encryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private.hex(), public.hex()


def _no_encryption() -> Any:
    from cryptography.hazmat.primitives.serialization import NoEncryption
    return NoEncryption()


def uapi(ifname: str, text: str, timeout_s: float = 3.0) -> str:
    """Send one UAPI request (`set=1` or `get=1` body) to `ifname`'s socket; the answer."""
    path = WG_SOCKET_DIR / f"{ifname}.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(text.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n\n"):
            more = sock.recv(65_536)
            if not more:
                break
            answer += more
    reply = answer.decode()
    if "errno=" in reply and "errno=0" not in reply:
        raise RuntimeError(f"UAPI {ifname}: {reply.strip()}")
    return reply


class EndpointFollower:
    """Gateway side: the WireGuard peer's endpoint follows the core's bindings only."""

    def __init__(self, ifname: str, peer_public: str) -> None:
        self.ifname = ifname
        self.peer_public = peer_public
        self.moves: list[dict[str, Any]] = []
        _nft(_GATEWAY_RULES)

    def bind(self, host: str) -> None:
        """The core bound `host`: admit only it, and point the peer there."""
        _nft(f"flush set inet jlwg allowed\nadd element inet jlwg allowed {{ {host} }}\n")
        port = self._seen_port(host)
        if port is not None:
            uapi(self.ifname, f"set=1\npublic_key={self.peer_public}\n"
                 f"update_only=true\nendpoint={host}:{port}\n")
        self.moves.append({"t": time.monotonic(), "host": host, "port": port})

    @staticmethod
    def _seen_port(host: str) -> int | None:
        out = subprocess.run(["nft", "-j", "list", "set", "inet", "jlwg", "seen"],  # noqa: S607
                             capture_output=True, text=True, timeout=5, check=False).stdout
        try:
            data = json.loads(out)
        except json.JSONDecodeError:
            return None
        for item in data.get("nftables", []):
            for elem in item.get("set", {}).get("elem", []) or []:
                value = elem.get("elem", {}).get("val", elem) if isinstance(elem, dict) else elem
                concat = value.get("concat") if isinstance(value, dict) else None
                if concat and concat[0] == host:
                    return int(concat[1])
        return None


def _nft(text: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True,  # noqa: S607
                          text=True, timeout=5, check=False)
    if done.returncode:
        raise RuntimeError(f"nft: {done.stderr.strip()[:200]}")


_GATEWAY_RULES = f"""
table inet jlwg {{
  set allowed {{ type ipv4_addr; }}
  set seen {{ type ipv4_addr . inet_service; flags dynamic,timeout; timeout 10s; }}
  chain input {{
    type filter hook input priority -5; policy accept;
    udp dport {WG_PORT} update @seen {{ ip saddr . udp sport }}
    udp dport {WG_PORT} ip saddr != @allowed counter drop
  }}
}}
"""


async def _start_device(lab: Lab, where: str, ifname: str) -> None:
    log = (lab.dir / f"wg-{where}.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", lab.topo.ns(where), "wireguard-go", "-f", ifname,
        stdout=log, stderr=log)

    async def stop() -> None:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        (WG_SOCKET_DIR / f"{ifname}.sock").unlink(missing_ok=True)

    lab.cleanups.append(stop)
    sock = WG_SOCKET_DIR / f"{ifname}.sock"
    for _ in range(100):
        if sock.exists():
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"wireguard-go {ifname} did not open its UAPI socket")


async def build_tunnel(lab: Lab) -> dict[str, str]:
    """Start both wireguard-go devices (unique names per run) and configure them by UAPI."""
    names = {"client": f"jl{lab.run_id}c", "gw": f"jl{lab.run_id}g"}
    keys = {side: _keypair() for side in names}
    for side, where in (("client", "cli"), ("gw", "gw1")):
        await _start_device(lab, where, names[side])
    uapi(names["gw"], f"set=1\nprivate_key={keys['gw'][0]}\nlisten_port={WG_PORT}\n"
         f"public_key={keys['client'][1]}\nallowed_ip={TUNNEL['client']}/32\n")
    uapi(names["client"], f"set=1\nprivate_key={keys['client'][0]}\n"
         f"listen_port={CLIENT_WG_PORT}\npublic_key={keys['gw'][1]}\n"
         f"endpoint={SERVICE_ADDRESS}:{WG_PORT}\nallowed_ip={TUNNEL['gw']}/32\n"
         "persistent_keepalive_interval=1\n")
    for side, where, peer in (("client", "cli", "gw"), ("gw", "gw1", "client")):
        dev = names[side]
        lab.topo.sh(where, "ip", "addr", "add", f"{TUNNEL[side]}/32", "dev", dev)
        lab.topo.sh(where, "ip", "link", "set", dev, "up")
        lab.topo.sh(where, "ip", "route", "add", f"{TUNNEL[peer]}/32", "dev", dev)
    return {"client_if": names["client"], "gw_if": names["gw"], "client_pub": keys["client"][1],
            "gw_pub": keys["gw"][1]}


async def _tcp(lab: Lab, where: str, *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", lab.topo.ns(where), sys.executable, "-m",
        "jumpvpn_core.lab.tcpx", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)

    async def stop() -> None:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    lab.cleanups.append(stop)
    return proc


async def _json_line(proc: asyncio.subprocess.Process, timeout_s: float) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    data: dict[str, Any] = json.loads(line or b"{}")
    return data


async def _one_transfer(lab: Lab, world: World, megabytes: int, seed: int) -> dict[str, Any]:
    total = megabytes * 1_000_000
    sink = await _tcp(lab, "gw1", "sink", TUNNEL["gw"], str(TCP_PORT), str(total), str(seed))
    await _json_line(sink, 10)
    source = await _tcp(lab, "cli", "source", TUNNEL["gw"], str(TCP_PORT), str(total),
                        str(seed), str(RATE_MBPS))
    expect_s = total / (RATE_MBPS * 1e6)
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()
    status = await world.client_status()
    current = str(status["uplink"])
    other = "B" if current == "A" else "A"
    # 1. NAT rebinding on the current uplink.
    await asyncio.sleep(1.0)
    lab.topo.flush_conntrack(current)
    events.append({"what": "nat-rebinding", "uplink": current,
                   "t": round(time.monotonic() - t0, 2)})
    # 2. The current uplink dies: the core moves the session (and the tunnel) to the other.
    await asyncio.sleep(1.5)
    lab.topo.set_loss(current, 100)

    async def moved() -> bool:
        return bool((await world.client_status())["uplink"] == other
                    and await world.bound_host() == ISP[other]["nat_wan"])

    took = await until(moved, WINDOW_S + 1, 0.1)
    events.append({"what": "isp-switch", "to": other, "t": round(time.monotonic() - t0, 2),
                   "bound_s": None if took is None else round(took, 3)})
    lab.topo.set_loss(current, 0)
    # 3. A blackout shorter than the recovery window on every uplink.
    await asyncio.sleep(1.5)
    for isp in ("A", "B"):
        lab.topo.set_loss(isp, 100)
    events.append({"what": "blackout", "dark_s": WINDOW_S / 4,
                   "t": round(time.monotonic() - t0, 2)})
    await asyncio.sleep(WINDOW_S / 4)
    for isp in ("A", "B"):
        lab.topo.set_loss(isp, 0)
    sent = await _json_line(source, expect_s + 45)
    got = await _json_line(sink, 15)
    await until(world.flowing, WINDOW_S)  # settle before the next run
    final = await world.client_status()
    gaps = got.get("gaps", [])
    return {
        "bytes": got.get("bytes"), "sent": sent.get("bytes"),
        "corrupted": got.get("corrupted"),
        "sha256_match": bool(got.get("sha256")) and got.get("sha256") == sent.get("sha256"),
        "error": sent.get("error") or got.get("error"),
        "max_stall_s": max(gaps, default=0.0), "stall_total_s": round(sum(gaps), 3),
        "session_id_unchanged": final["session_id"] == world.session_id,
        "phase": final["phase"], "seconds": got.get("seconds"), "events": events,
        "expected_s": round(expect_s, 1),
        "client_changes": [(round(c["t"] / 1000 - t0, 2), c["to"], c["reason"])
                           for c in final["changes"] if c["t"] / 1000 >= t0 - 1],
    }


async def wireguard_case(lab: Lab, r: CaseResult, *, runs: int, megabytes: int) -> None:
    """`runs` transfers of `megabytes` MB through the tunnel, each disrupted three times."""
    tunnel = await build_tunnel(lab)
    world = await World.start(lab, auto_switch=True,
                              tunnel={"tunnel_if": tunnel["client_if"],
                                      "tunnel_peer": tunnel["gw_pub"]})
    await world.gw1.call("wg_follow", ifname=tunnel["gw_if"], peer=tunnel["client_pub"],
                         sid=world.session_id)
    results = []
    for i in range(runs):
        result = await _one_transfer(lab, world, megabytes, seed=1000 + i)
        results.append(result)
        ok = (result["error"] is None and result["bytes"] == megabytes * 1_000_000
              and result["corrupted"] == 0 and result["sha256_match"]
              and result["session_id_unchanged"])
        if not r.check(ok, f"run {i + 1}: {_short(result)}"):
            break
    stalls = sorted(x["max_stall_s"] for x in results)
    follower = await world.gw1.call("status", sid=world.session_id)
    r.figures.update(
        runs=len(results), megabytes_per_run=megabytes,
        corrupted_bytes=sum(x["corrupted"] or 0 for x in results),
        stall_p50_s=stalls[len(stalls) // 2] if stalls else None,
        stall_max_s=stalls[-1] if stalls else None,
        isp_switch_bind_s=[e["bound_s"] for x in results for e in x["events"]
                           if e["what"] == "isp-switch"],
        endpoint_moves=len(follower.get("wg_moves", [])),
        transfers=results)
    r.passed = not r.detail and len(results) == runs


def _short(result: dict[str, Any]) -> str:
    return (f"bytes={result['bytes']} corrupted={result['corrupted']} "
            f"sha_ok={result['sha256_match']} sid_ok={result['session_id_unchanged']} "
            f"error={result['error']}")


def describe_socket_dir() -> Path:
    """Where every wireguard-go keeps its UAPI socket (shared by all namespaces)."""
    return WG_SOCKET_DIR
