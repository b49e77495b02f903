"""The lab's topology: Linux network namespaces, veth pairs, nftables NAT and loss rules.

Every name a run creates starts with `jl` and the run's four hex digit id (`jl3f2a-cli`),
so a run never touches what it did not create, and `cleanup()` finds every leftover of an
earlier run (a crash, a SIGKILL) by that pattern. Every link lives inside a lab namespace
(veth pairs are created directly into them): nothing is added to the host's own network,
and deleting the namespaces removes every link, address, route and nftables rule.

Addresses are documentation and test ranges (RFC 5737, RFC 2544), used only inside the
lab's own namespaces:

    client --ethA 10.10.1.2 -- 10.10.1.1 lan [ispa: NAT] wan 198.51.100.2 --+
           --ethB 10.10.2.2 -- 10.10.2.1 lan [ispb: NAT] wan 203.0.113.2  --+-- [att] router
                                                                              |   (attacker)
    gateway service address 192.0.2.100 (on lo of both gateways)  <-----------+
       att 192.0.2.1 -- 192.0.2.2 gw1        att 192.0.2.5 -- 192.0.2.6 gw2
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = [
    "LabCommandError",
    "Topology",
    "cleanup",
    "lab_available",
    "run",
]

#: Names of every lab object: `jl` + four hex digits + `-` + a role.
NAME_PATTERN = re.compile(r"^jl[0-9a-f]{4}-[a-z0-9]+$")
#: wireguard-go's UAPI sockets (one directory for every namespace).
WG_SOCKET_DIR = Path("/var/run/wireguard")
_COMMAND_TIMEOUT_S = 10.0

SERVICE_ADDRESS = "192.0.2.100"
ISP = {
    "A": {"client": "10.10.1.2", "nat_lan": "10.10.1.1", "nat_wan": "198.51.100.2",
          "router": "198.51.100.1"},
    "B": {"client": "10.10.2.2", "nat_lan": "10.10.2.1", "nat_wan": "203.0.113.2",
          "router": "203.0.113.1"},
}
GATEWAY_LINKS = {"gw1": ("192.0.2.1", "192.0.2.2"), "gw2": ("192.0.2.5", "192.0.2.6")}


class LabCommandError(RuntimeError):
    """A system command of the lab failed (its argv and the first line of its stderr)."""


def run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True,
        timeout_s: float = _COMMAND_TIMEOUT_S) -> str:
    """Run one system command (never through a shell), bounded in time; its stdout."""
    try:
        done = subprocess.run(  # noqa: S603 - argv lists built by the lab, no shell
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout_s,
            check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabCommandError(f"{' '.join(argv)}: {exc}") from None
    if check and done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
        raise LabCommandError(f"{' '.join(argv)}: exit {done.returncode}: {first}")
    return done.stdout


def lab_available() -> str | None:
    """None when this machine can run the lab, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth, nftables)"
    for tool in ("ip", "nft", "conntrack"):
        if not any((Path(d) / tool).exists() for d in ("/usr/sbin", "/sbin", "/usr/bin")):
            return f"`{tool}` is not installed (apt-get install iproute2 nftables conntrack)"
    probe = f"jl{os.getpid() % 0x10000:04x}-probe"
    try:
        run(["ip", "netns", "add", probe])
        run(["ip", "netns", "del", probe])
    except LabCommandError as exc:
        return f"network namespaces are not usable here: {exc}"
    return None


def wireguard_available() -> str | None:
    """None when wireguard-go and wg are installed, else the reason."""
    for tool in ("wireguard-go", "wg"):
        if not any((Path(d) / tool).exists() for d in ("/usr/bin", "/usr/sbin", "/bin")):
            return f"`{tool}` is not installed (apt-get install wireguard-go wireguard-tools)"
    return None


def _lab_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if NAME_PATTERN.match(n)]


def _kill_namespace_processes(ns: str) -> None:
    """SIGKILL the processes inside one lab namespace (they were started by a lab run)."""
    out = run(["ip", "netns", "pids", ns], check=False)
    for token in out.split():
        if token.isdigit() and int(token) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(token), signal.SIGKILL)


def cleanup(run_id: str | None = None) -> list[str]:
    """Remove lab namespaces (of one run, or every lab run) and their processes and sockets.

    Returns the names removed. Safe to call any number of times.
    """
    removed = []
    for ns in _lab_namespaces():
        if run_id is not None and not ns.startswith(f"jl{run_id}-"):
            continue
        _kill_namespace_processes(ns)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    if WG_SOCKET_DIR.is_dir():
        for sock in WG_SOCKET_DIR.glob("jl*.sock"):
            if run_id is None or sock.name.startswith(f"jl{run_id}"):
                sock.unlink(missing_ok=True)
    return removed


@attrs.define
class Topology:
    """The namespaces of one run and the operations cases perform on them."""

    run_id: str
    built: bool = False

    def ns(self, role: str) -> str:
        """Namespace name of a role (`cli`, `ispa`, `ispb`, `att`, `gw1`, `gw2`)."""
        return f"jl{self.run_id}-{role}"

    def sh(self, role: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        """Run a command inside a role's namespace."""
        return run(["ip", "netns", "exec", self.ns(role), *argv], stdin=stdin, check=check)

    def _veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
        run(["ip", "link", "add", a_if, "netns", self.ns(a_ns), "type", "veth",
             "peer", "name", b_if, "netns", self.ns(b_ns)])
        for ns, ifname in ((a_ns, a_if), (b_ns, b_if)):
            run(["ip", "-n", self.ns(ns), "link", "set", ifname, "up"])

    def _addr(self, role: str, cidr: str, dev: str) -> None:
        run(["ip", "-n", self.ns(role), "addr", "add", cidr, "dev", dev])

    def _route(self, role: str, *spec: str) -> None:
        run(["ip", "-n", self.ns(role), "route", "replace", *spec])

    def build(self) -> None:
        """Create every namespace, link, address, route and NAT rule."""
        self.built = True
        for role in ("cli", "ispa", "ispb", "att", "gw1", "gw2"):
            run(["ip", "netns", "add", self.ns(role)])
            run(["ip", "-n", self.ns(role), "link", "set", "lo", "up"])
        for role in ("ispa", "ispb", "att", "gw1", "gw2"):
            self.sh(role, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for role in ("cli", "ispa", "ispb", "att", "gw1", "gw2"):
            self.sh(role, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
            self.sh(role, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
        for isp, nat in (("A", "ispa"), ("B", "ispb")):
            a = ISP[isp]
            dev = f"eth{isp}"
            self._veth("cli", dev, nat, "lan")
            self._addr("cli", f"{a['client']}/24", dev)
            self._addr(nat, f"{a['nat_lan']}/24", "lan")
            self._veth(nat, "wan", "att", f"to{nat}")
            self._addr(nat, f"{a['nat_wan']}/24", "wan")
            self._addr("att", f"{a['router']}/24", f"to{nat}")
            self._route(nat, "default", "via", a["router"])
            table = "101" if isp == "A" else "102"
            # Source-based routing: a socket bound to an uplink's address leaves by it.
            run(["ip", "-n", self.ns("cli"), "rule", "add", "from", a["client"],
                 "table", table])
            self._route("cli", "default", "via", a["nat_lan"], "dev", dev, "table", table)
            self.sh(nat, "nft", "-f", "-", stdin=_NAT_RULES)
        self._route("cli", "default", "via", ISP["A"]["nat_lan"], "dev", "ethA")
        for gw, (router, own) in GATEWAY_LINKS.items():
            self._veth("att", f"to{gw}", gw, "up0")
            self._addr("att", f"{router}/30", f"to{gw}")
            self._addr(gw, f"{own}/30", "up0")
            self._addr(gw, f"{SERVICE_ADDRESS}/32", "lo")
            self._route(gw, "default", "via", router)
        self.route_service_to("gw1")

    def route_service_to(self, gw: str) -> None:
        """Send traffic for the gateway service address to `gw1` or `gw2` (the failover)."""
        self._route("att", f"{SERVICE_ADDRESS}/32", "via", GATEWAY_LINKS[gw][1])

    def teardown(self) -> list[str]:
        """Remove everything this run created."""
        self.built = False
        return cleanup(self.run_id)

    # --- faults -------------------------------------------------------------------------

    def set_loss(self, isp: str, percent: int, *, direction: str = "both") -> None:
        """Drop `percent`% of forwarded UDP through an ISP's NAT (nftables `numgen random`).

        `direction`: `up` (client to internet), `down` (internet to client) or `both`.
        `percent` 0 removes the rule.
        """
        nat = "ispa" if isp == "A" else "ispb"
        self.sh(nat, "nft", "flush", "chain", "ip", "jlab", "loss")
        if percent <= 0:
            return
        matches = {"up": ["iifname", "lan"], "down": ["iifname", "wan"], "both": []}[direction]
        rule = [*matches, "meta", "l4proto", "udp"]
        if percent < 100:
            rule += ["numgen", "random", "mod", "100", "<", str(percent)]
        self.sh(nat, "nft", "add", "rule", "ip", "jlab", "loss", *rule, "drop")

    def flush_conntrack(self, isp: str) -> None:
        """Forget every NAT mapping of an ISP: the next packet gets a new (random) port."""
        self.sh("ispa" if isp == "A" else "ispb", "conntrack", "-F", check=False)


# One table per NAT namespace: masquerade with random ports (a rebinding NAT picks a new
# port for a flow it forgot), and an empty `loss` chain that cases fill and flush.
_NAT_RULES = """
table ip jlab {
  chain post { type nat hook postrouting priority 100; oifname "wan" masquerade random; }
  chain loss { type filter hook forward priority -10; policy accept; }
}
"""
