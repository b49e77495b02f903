"""A gateway node that serves Prometheus metrics on /metrics (needs the `metrics` extra).

    python docs/examples/metrics_server.py --store sqlite:////var/lib/jumpvpn/s.db --port 9464

`serve()` builds the pieces a real node wires together: a store wrapped so its calls are
timed, a gateway whose telemetry includes the transition counter, its counters watched,
and prometheus_client's HTTP server on its own thread, all on one private registry. Your
driver then feeds the gateway (`open_session`, `handle_reattach`, `tick`) from its sockets
and timers as usual; scraping never touches the gateway's path.
"""

from __future__ import annotations

import argparse
import time
from wsgiref.simple_server import WSGIServer

import attrs
from prometheus_client import CollectorRegistry, start_http_server

from jumpvpn_core.gateway import Gateway, GatewayPolicy
from jumpvpn_core.stores import open_store
from jumpvpn_core.telemetry.prometheus import GatewayMetrics


@attrs.define
class MetricsNode:
    """A gateway with its metrics and the HTTP server exposing them."""

    gateway: Gateway
    metrics: GatewayMetrics
    server: WSGIServer

    @property
    def port(self) -> int:
        """The port /metrics is served on (the one the OS chose when asked for 0)."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving, then close the gateway and its store."""
        self.server.shutdown()
        self.server.server_close()
        self.gateway.close()
        self.gateway.store.close()


def serve(store_url: str, *, port: int = 9464, addr: str = "127.0.0.1",
          policy: GatewayPolicy | None = None) -> MetricsNode:
    """Open the store, build the gateway and serve its metrics on `addr:port` (0: any free
    port; see `MetricsNode.port`)."""
    metrics = GatewayMetrics(CollectorRegistry())
    store = metrics.instrument(open_store(store_url))
    gateway = Gateway(store, policy, telemetry=[metrics.sink])
    metrics.watch(gateway)
    server, _thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return MetricsNode(gateway, metrics, server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///jumpvpn-sessions.db")
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--addr", default="127.0.0.1")
    args = parser.parse_args()
    node = serve(args.store, port=args.port, addr=args.addr)
    node.gateway.resume(int(time.time() * 1000))
    print(f"serving http://{args.addr}:{node.port}/metrics (Ctrl-C stops)")
    try:
        while True:  # a real node runs its driver here and calls node.gateway.tick()
            time.sleep(1.0)
            node.gateway.tick(int(time.time() * 1000))
    except KeyboardInterrupt:
        pass
    finally:
        node.close()


if __name__ == "__main__":
    main()
