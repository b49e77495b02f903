"""Private etcd members for tests: one for the contract suite, three for the cluster race.

Each member listens on free 127.0.0.1 ports with its own data directory; `kill(i)` is
`kill -9`. Without an `etcd` binary the calling test is skipped, or fails when
`JUMPVPN_REQUIRE_SERVICES=1` (`.ci/services.sh` installs Debian's etcd-server). An
external cluster can be named with `JUMPVPN_ETCD_URL` (loopback only).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import services_required
from tests.stores.redis_server import free_port

__all__ = ["ETCD_ENV", "EtcdCluster", "etcd_binary"]

ETCD_ENV = "JUMPVPN_ETCD_URL"


def etcd_binary() -> str:
    """Path of `etcd`, or skip/fail the calling test."""
    binary = shutil.which("etcd")
    if binary is None:
        reason = "etcd is not installed (apt-get install etcd-server; see .ci/services.sh)"
        if services_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return binary


class EtcdCluster:
    """`size` etcd members forming one cluster on loopback."""

    def __init__(self, directory: Path, size: int = 1) -> None:
        self.binary = etcd_binary()
        self.directory = directory
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in range(size)]
        self.peer_ports = [free_port() for _ in range(size)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * size
        self.token = f"jv-{os.getpid()}-{self.client_ports[0]}"

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.client_ports]

    def url(self, **query: str) -> str:
        tail = "&".join(f"{k}={v}" for k, v in query.items())
        return "etcd://" + ",".join(self.endpoints) + ("/?" + tail if tail else "")

    def start(self, index: int | None = None) -> None:
        members = range(len(self.names)) if index is None else [index]
        cluster = ",".join(f"{name}=http://127.0.0.1:{port}"
                           for name, port in zip(self.names, self.peer_ports, strict=True))
        for i in members:
            data = self.directory / self.names[i]
            command = [
                self.binary, "--name", self.names[i], "--data-dir", str(data),
                "--listen-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--log-level", "error",
            ]
            log = (self.directory / f"{self.names[i]}.log").open("ab")
            self.processes[i] = subprocess.Popen(command, stdout=log,  # noqa: S603
                                                 stderr=subprocess.STDOUT)
            log.close()
        self.wait_ready()

    def status(self, index: int) -> dict[str, object] | None:
        """The member's /v3/maintenance/status, or None if it does not answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.client_ports[index]}/v3/maintenance/status",
            data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=1) as reply:  # noqa: S310
                data = json.loads(reply.read())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def leader(self) -> int | None:
        """Index of the current leader among the live members, or None."""
        for i in range(len(self.names)):
            if self.processes[i] is None:
                continue
            status = self.status(i)
            header = status.get("header") if status else None
            if (status and isinstance(header, dict) and status.get("leader")
                    and status.get("leader") == header.get("member_id")):
                return i
        return None

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.leader() is not None:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd cluster did not elect a leader in time")

    def kill(self, index: int) -> None:
        """`kill -9` one member."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        self.processes[index] = None

    def stop(self) -> None:
        for i in range(len(self.names)):
            self.kill(i)
