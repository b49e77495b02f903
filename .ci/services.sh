#!/usr/bin/env bash
# Services the test suite starts itself: installs what is missing (Debian packages).
# Called from .ci/run. The suite starts its own private etcd members and redis-server
# processes on free loopback ports (tests/stores/etcd_server.py, redis_server.py); this
# script only makes sure the binaries are there.
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian packages enable system services; the suite runs its own members instead.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
etcd --version | head -1
