"""Gateway commands for scenario scripts: nodes, stores and telemetry sinks (§3.1 .. §6.2).

An extension of `jumpvpn_core.scenarios.runner`: `register()` adds the commands below to
the runner's command table (the package `__init__` calls it). Commands that share a name
with a runner command (`deliver`, `step`, `flood`, `show`) are overloads: they take over
only when their first argument names a gateway, store or sink, so every other script reads
exactly as before.

Commands (full table in `specs/scenarios/README.md`): `store`, `sink`, `gateway`, `open`,
`deliver client->gateway:<gw>[,<gw>...]` (several nodes: each reads the store before any
commits, a race), `step gateway:<gw> ...`, `flood ... gateway=<gw>`, `evict-expired`,
`show gateway|store`, `compare`.

A node's outcome prints as `<gw>: accepted|rejected <REASON> store_version=<v|none>
phase=<PHASE|none>`, then `no commit confirmed, no effects executed` or each effect (executed only
after its commit), then each telemetry record the node emitted that is not one of those
effects (`<gw> telemetry <type> key=value ...`). Every telemetry record also goes to the
script's audit trace, whatever the scenario sink does with it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from jumpvpn_core.codec import state_to_data
from jumpvpn_core.effects import (
    Effect,
    SendPathChallenge,
    SendReattachAccept,
    StateChanged,
)
from jumpvpn_core.errors import InvalidEventError, PolicyError
from jumpvpn_core.events import Attach, Event, ReattachRequest
from jumpvpn_core.gateway import (
    Gateway,
    GatewayPolicy,
    GatewayResult,
    OwnershipMode,
    decode_record,
    owner_of,
)
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import PROOF_SIZE
from jumpvpn_core.scenarios.eventtext import (
    EventTextError,
    format_compact,
    format_effect,
    format_value,
    parse_event,
)
from jumpvpn_core.scenarios.runner import (
    DEFAULT_REQUEST_SIZE,
    MAX_FLOOD,
    SCENARIO_SECRET,
    SCENARIO_SESSION_ID,
    _apply,
    _CommandError,
    _int,
    _kv,
    _only,
    _Outgoing,
    _parse,
    _pop,
    _transport,
    _World,
    register_command,
    register_observer,
)
from jumpvpn_core.state import ServerSide, SessionState, new_session
from jumpvpn_core.stores.base import StoredSession, StoreUnavailableError
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import DROP_RECORD_TYPE, QueueSink
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["register"]

_EXT = "gateway"
_TO_GATEWAY = "client->gateway:"
_STORE_MODES = ("up", "down", "lose-replies")
_SINK_KINDS = ("healthy", "raising", "blocking", "lossy")
_FLOOD_KINDS = ("forged", "foreign")
#: Bound on waiting for a sink's drain thread (start, close); a script fails past it.
_SINK_WAIT_S = 5.0
#: A blocking backend gives up after this long even if nobody releases it.
_BLOCK_BOUND_S = 10.0
_PROBE_TYPE = "scenario_probe"


# --- stores ---------------------------------------------------------------------------------


class _ScenarioStore:
    """A `MemoryStore` that counts its calls and can be taken `down` (every call raises
    `StoreUnavailableError`) or `lose-replies` (every write is carried out, then its reply
    is lost: the caller sees `StoreUnavailableError` and cannot know the write landed)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.mode = "up"
        self.reads = 0
        self.writes = 0

    def _reach(self) -> None:
        if self.mode == "down":
            raise StoreUnavailableError("store is down")

    def _reply(self) -> None:
        if self.mode == "lose-replies":
            raise StoreUnavailableError("the store's reply was lost")

    def peek(self, session_id: bytes) -> StoredSession | None:
        """The record as it is, without counting a read (the runner's own look)."""
        return self.inner.get(session_id)

    def get(self, session_id: bytes) -> StoredSession | None:
        self._reach()
        self.reads += 1
        return self.inner.get(session_id)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        self._reach()
        self.writes += 1
        created = self.inner.create(session_id, version, data)
        self._reply()
        return created

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        self._reach()
        self.writes += 1
        done = self.inner.compare_and_set(session_id, expected_version, new_version, data)
        self._reply()
        return done

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        self._reach()
        self.writes += 1
        done = self.inner.delete(session_id, expected_version)
        self._reply()
        return done

    def scan(self) -> Iterator[StoredSession]:
        self._reach()
        return self.inner.scan()

    def close(self) -> None:
        return None


class _NodeView:
    """One node's connection to a store. In a race, the node's first read of a session
    returns the record as it was when the race began (every node read before any wrote)."""

    def __init__(self, store: _ScenarioStore) -> None:
        self.store = store
        self.stale: dict[bytes, StoredSession | None] = {}

    def get(self, session_id: bytes) -> StoredSession | None:
        record = self.store.get(session_id)
        if session_id in self.stale:
            return self.stale.pop(session_id)
        return record

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        return self.store.create(session_id, version, data)

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        return self.store.compare_and_set(session_id, expected_version, new_version, data)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        return self.store.delete(session_id, expected_version)

    def scan(self) -> Iterator[StoredSession]:
        return self.store.scan()

    def close(self) -> None:
        return None


# --- sinks ----------------------------------------------------------------------------------


class _RaisingSink:
    """A badly written sink: `emit` itself raises (the gateway must shrug it off)."""

    kind = "raising"

    def __init__(self) -> None:
        self.offered = 0

    def emit(self, record: Mapping[str, Any]) -> None:
        self.offered += 1
        raise RuntimeError("audit backend unreachable")

    def close(self) -> None:
        return None

    def summary(self) -> str:
        return f"offered={self.offered} delivered=0 dropped={self.offered} (emit raised)"


class _QueuedSink:
    """A real `QueueSink` in front of a backend that works, hangs or fails every n-th record.

    Only gateway records count as offered / delivered; the start-up probe of a blocking
    backend and the sink's own drop reports are counted apart.
    """

    def __init__(self, kind: str, capacity: int, every: int) -> None:
        self.kind = kind
        self.every = every
        self.offered = 0
        self.delivered = 0
        self.reported = 0
        self._handed = 0
        self._entered = threading.Event()
        self._release = threading.Event()
        if kind != "blocking":
            self._release.set()
        self.queue = QueueSink(self._backend, capacity=capacity, report_interval_s=3600.0,
                               name=f"scenario-sink-{kind}")
        if kind == "blocking":
            # Park the drain thread inside the backend before the script goes on, so what
            # fits in the queue (and what is dropped) does not depend on thread timing.
            self.queue.emit({"type": _PROBE_TYPE})
            if not self._entered.wait(_SINK_WAIT_S):
                self._release.set()
                raise _CommandError("the blocking sink's drain thread did not start")

    def _backend(self, record: Mapping[str, Any]) -> None:
        self._entered.set()
        if not self._release.wait(_BLOCK_BOUND_S):
            raise TimeoutError("backend hung")
        self._handed += 1
        if self.kind == "lossy" and self._handed % self.every == 0:
            raise ConnectionError("record lost on the way to the backend")
        if record.get("type") == DROP_RECORD_TYPE:
            self.reported += int(record["dropped"])
        elif record.get("type") != _PROBE_TYPE:
            self.delivered += 1

    def emit(self, record: Mapping[str, Any]) -> None:
        self.offered += 1
        self.queue.emit(record)

    def close(self) -> None:
        self._release.set()
        self.queue.close(_SINK_WAIT_S)

    def summary(self) -> str:
        return (f"offered={self.offered} delivered={self.delivered} "
                f"dropped={self.queue.dropped} reported_dropped={self.reported}")


_Sink = _RaisingSink | _QueuedSink


class _Tee:
    """A gateway's telemetry: every record to the script trace, then to the scenario sink."""

    def __init__(self, ext: _GatewayWorld, world: _World, node: str, store: str,
                 sink: _Sink | None) -> None:
        self.ext = ext
        self.world = world
        self.node = node
        self.store = store
        self.sink = sink

    def emit(self, record: Mapping[str, Any]) -> None:
        self.ext.fresh.append((self.node, dict(record)))
        traced = dict(record)
        traced["node"] = self.node
        # A session's one chain of states lives in its store: nodes sharing a store write
        # one stream, nodes with stores of their own write separate ones.
        traced["store"] = self.store
        traced["script"] = self.world.script_name
        self.world.records.append(traced)
        if self.sink is not None:
            self.sink.emit(record)

    def close(self) -> None:
        return None


# --- the extension's world --------------------------------------------------------------------


@attrs.define
class _Node:
    gateway: Gateway
    view: _NodeView
    store_name: str
    sink_name: str | None
    phases: list[str] = attrs.Factory(list)


@attrs.define
class _GatewayWorld:
    stores: dict[str, _ScenarioStore] = attrs.Factory(dict)
    sinks: dict[str, _Sink] = attrs.Factory(dict)
    nodes: dict[str, _Node] = attrs.Factory(dict)
    # Telemetry records emitted and not yet printed: (node, record).
    fresh: list[tuple[str, dict[str, Any]]] = attrs.Factory(list)


def _ext(world: _World) -> _GatewayWorld:
    ext = world.extensions.get(_EXT)
    if ext is None:
        ext = world.extensions[_EXT] = _GatewayWorld()
    assert isinstance(ext, _GatewayWorld)
    return ext


def _node(world: _World, name: str) -> _Node:
    node = _ext(world).nodes.get(name)
    if node is None:
        raise _CommandError(f"no gateway {name!r}; create it with `gateway {name} store=...`")
    return node


def _node_names(world: _World, text: str) -> list[str]:
    names = text.split(",")
    if len(set(names)) != len(names):
        raise _CommandError(f"gateway named twice in {text!r}")
    for name in names:
        _node(world, name)
    return names


def _name(text: str, what: str) -> str:
    if not text or "=" in text or "," in text or ":" in text:
        raise _CommandError(f"bad {what} name {text!r}")
    return text


# --- output -----------------------------------------------------------------------------------


def _sid_text(sid: bytes) -> str:
    return format_value(sid)


def _telemetry_line(node: str, record: Mapping[str, Any]) -> str:
    parts = [f"{node} telemetry {record.get('type')}"]
    for key in sorted(record):
        if key in ("v", "type"):
            continue
        value = record[key]
        if isinstance(value, dict):
            value = ",".join(f"{k}:{v}" for k, v in sorted(value.items())) or "none"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _telemetry(world: _World, shown: list[dict[str, Any]]) -> list[str]:
    """Lines for telemetry emitted since the last call, except records in `shown`."""
    ext = _ext(world)
    lines = []
    remaining = list(shown)
    for node, record in ext.fresh:
        if record in remaining:
            remaining.remove(record)
            continue
        lines.append(_telemetry_line(node, record))
    ext.fresh.clear()
    return lines


def _outcome(world: _World, name: str, result: GatewayResult) -> list[str]:
    """Print one node result; queue its sends for the client; keep the bookkeeping."""
    node = _node(world, name)
    verdict = "accepted" if result.accepted else f"rejected {result.reason}"
    version = "none" if result.store_version is None else str(result.store_version)
    phase = "none" if result.phase is None else result.phase.value
    head = f"{name}: {verdict} store_version={version} phase={phase}"
    if result.session_id != SCENARIO_SESSION_ID:
        head += f" session={_sid_text(result.session_id)}"
    lines = [head]
    if result.store_version is None and not result.effects:
        lines.append("no commit confirmed, no effects executed")
    shown: list[dict[str, Any]] = []
    for effect in result.effects:
        lines.append(format_effect(effect, session_id=SCENARIO_SESSION_ID))
        _keep(world, node, result.session_id, effect, shown)
    if not result.accepted and result.reason is not None:
        world.rejections[result.reason.value] += 1
    return lines + _telemetry(world, shown)


def _keep(world: _World, node: _Node, sid: bytes, effect: Effect,
          shown: list[dict[str, Any]]) -> None:
    if isinstance(effect, StateChanged):
        shown.append(effect.to_record())
        if sid == SCENARIO_SESSION_ID:
            if not node.phases:
                node.phases.append(effect.from_phase.value)
            node.phases.append(effect.to_phase.value)
    elif isinstance(effect, SendPathChallenge | SendReattachAccept):
        world.outbox[Role.SERVER].append(_Outgoing(Role.SERVER, effect))


def _observe(world: _World) -> list[str]:
    ext = world.extensions.get(_EXT)
    if not isinstance(ext, _GatewayWorld):
        return []
    parts = []
    for name, node in ext.nodes.items():
        path: list[str] = []
        for phase in node.phases:
            if not path or path[-1] != phase:
                path.append(phase)
        parts.append(f"{name} {'>'.join(path) or '-'}")
    return parts


# --- commands ---------------------------------------------------------------------------------


def _cmd_store(world: _World, args: list[str]) -> list[str]:
    if not 1 <= len(args) <= 2:
        raise _CommandError(f"usage: store <name> [{'|'.join(_STORE_MODES)}]")
    name = _name(args[0], "store")
    ext = _ext(world)
    store = ext.stores.get(name)
    created = store is None
    if store is None:
        store = ext.stores[name] = _ScenarioStore()
    if len(args) == 2:
        if args[1] not in _STORE_MODES:
            raise _CommandError(f"store mode must be one of {', '.join(_STORE_MODES)}")
        store.mode = args[1]
    word = "created" if created else "now"
    return [f"store {name} {word} {store.mode}"]


def _cmd_sink(world: _World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise _CommandError(f"usage: sink <name> <{'|'.join(_SINK_KINDS)}|close> "
                            "[capacity=] [every=]")
    name = _name(args[0], "sink")
    ext = _ext(world)
    if args[1] == "close":
        sink = ext.sinks.get(name)
        if sink is None:
            raise _CommandError(f"no sink {name!r}")
        sink.close()
        if isinstance(sink, _QueuedSink) and sink.queue.dropped + sink.delivered < sink.offered:
            raise _CommandError(f"sink {name} did not drain within {_SINK_WAIT_S} s")
        return [f"sink {name} closed: {sink.summary()}"]
    if name in ext.sinks:
        raise _CommandError(f"sink {name!r} exists")
    kind = args[1]
    if kind not in _SINK_KINDS:
        raise _CommandError(f"sink kind must be one of {', '.join(_SINK_KINDS)}")
    kv = _kv(args[2:])
    _only(kv, ("capacity", "every"), f"sink {kind}")
    capacity = _int(kv, "capacity", 1000)
    every = _int(kv, "every", 2)
    if capacity < 1 or every < 1:
        raise _CommandError("capacity and every must be positive")
    if kind == "raising":
        ext.sinks[name] = _RaisingSink()
        return [f"sink {name}: raising (emit raises)"]
    ext.sinks[name] = _QueuedSink(kind, capacity, every)
    detail = {
        "healthy": "backend accepts every record",
        "blocking": "backend hangs",
        "lossy": f"backend fails every {every}th record",
    }[kind]
    return [f"sink {name}: {kind} queue capacity={capacity}, {detail}"]


_GATEWAY_ARGS = {
    "capacity": "max_sessions",
    "idle_ttl_ms": "session_idle_ttl_ms",
    "global_flood": "global_flood_limit",
    "source_flood": "source_flood_limit",
    "flood_interval_ms": "flood_interval_ms",
    "aggregation_ms": "aggregation_interval_ms",
}


def _cmd_gateway(world: _World, args: list[str]) -> list[str]:
    if not args:
        raise _CommandError("usage: gateway <name> store=<store> [mode=sticky|shared] "
                            "[nodes=a,b] [sink=] " + " ".join(f"[{k}=]" for k in _GATEWAY_ARGS))
    name = _name(args[0], "gateway")
    ext = _ext(world)
    if name in ext.nodes:
        raise _CommandError(f"gateway {name!r} exists")
    kv = _kv(args[1:])
    _only(kv, ("store", "mode", "nodes", "sink", *_GATEWAY_ARGS), "gateway")
    store_name = kv.get("store")
    if store_name is None or store_name not in ext.stores:
        raise _CommandError("gateway needs store=<name> of a store created with `store`")
    sink_name = kv.get("sink")
    sink = None
    if sink_name is not None:
        sink = ext.sinks.get(sink_name)
        if sink is None:
            raise _CommandError(f"no sink {sink_name!r}")
    values: dict[str, Any] = {field: _int(kv, key) for key, field in _GATEWAY_ARGS.items()
                              if key in kv}
    try:
        values["ownership"] = OwnershipMode(kv.get("mode", "sticky"))
    except ValueError:
        raise _CommandError("mode must be sticky or shared") from None
    values["node_ids"] = tuple(kv.get("nodes", name).split(","))
    try:
        policy = GatewayPolicy(**values)
        view = _NodeView(ext.stores[store_name])
        gateway = Gateway(view, policy, node_id=name,
                          session_policy=Policy(**world.policy_overrides))
    except PolicyError as exc:
        raise _CommandError(f"invalid gateway policy: {exc}") from None
    ext.nodes[name] = _Node(gateway, view, store_name, sink_name)
    gateway.telemetry = _Tee(ext, world, name, store_name, sink)
    lines = [
        f"gateway {name}: mode={policy.ownership.value} nodes={','.join(policy.node_ids)} "
        f"store={store_name} sink={sink_name or 'none'}",
        f"capacity={policy.max_sessions} idle_ttl_ms={policy.session_idle_ttl_ms} "
        f"global_flood={policy.global_flood_limit} source_flood={policy.source_flood_limit} "
        f"per {policy.flood_interval_ms}ms aggregation_ms={policy.aggregation_interval_ms}",
    ]
    if policy.ownership is OwnershipMode.STICKY:
        owner = owner_of(SCENARIO_SESSION_ID, policy.node_ids)
        lines.append(f"owner of the scenario session: {owner}")
    return lines


def _attach_client(world: _World, now: int, via: TransportDescriptor) -> list[str]:
    client = world.sessions.get(Role.CLIENT)
    if client is None:
        client = new_session(Role.CLIENT, SCENARIO_SESSION_ID, SCENARIO_SECRET, now,
                             Policy(**world.policy_overrides))
        world.sessions[Role.CLIENT] = client
        world.phases[Role.CLIENT].append(Phase.BIRTH.value)
    if client.phase is not Phase.BIRTH:
        return []
    return _apply(world, Role.CLIENT, Attach(now, via))


def _cmd_open(world: _World, args: list[str]) -> list[str]:
    if not args:
        raise _CommandError("usage: open <gateway>[,<gateway>...] [t=] via=<transport> [sid=]")
    names = _node_names(world, args[0])
    kv = _kv(args[1:])
    _only(kv, ("t", "via", "sid"), "open")
    via = _transport(kv, "via")
    if via is None:
        raise _CommandError("open needs via=<transport> (the client's address)")
    now = _int(kv, "t", world.now)
    sid: bytes = _parse(bytes, kv["sid"], "sid") if "sid" in kv else SCENARIO_SESSION_ID
    if len(sid) != len(SCENARIO_SESSION_ID):
        raise _CommandError(f"sid must be {len(SCENARIO_SESSION_ID)} bytes")
    world.now = max(world.now, now)
    lines: list[str] = []
    accepted = False
    for name in names:
        gateway = _node(world, name).gateway
        result = gateway.open_session(sid, SCENARIO_SECRET, via, now)
        accepted = accepted or result.accepted
        lines.extend(_outcome(world, name, result))
    if accepted and sid == SCENARIO_SESSION_ID:
        lines.extend(_attach_client(world, now, via))
    return lines


def _claims_deliver(args: list[str]) -> bool:
    return bool(args) and args[0].startswith(_TO_GATEWAY)


def _race(world: _World, names: list[str], sid: bytes) -> list[str]:
    """Where nodes in `names` share a store, let each node's first read of `sid` see the
    record as it is now: every node reads before any of them commits."""
    stores = [_node(world, name).store_name for name in names]
    if len(set(stores)) == len(stores):
        return []  # no two of them share a store: nothing to race on
    for name in names:
        node = _node(world, name)
        node.view.stale[sid] = _ext(world).stores[node.store_name].peek(sid)
    return [f"race: {', '.join(names)} handle it concurrently; every store read comes "
            "before any commit"]


def _end_race(world: _World, names: list[str]) -> None:
    for name in names:
        _node(world, name).view.stale.clear()


def _cmd_deliver(world: _World, args: list[str]) -> list[str]:
    names = _node_names(world, args[0][len(_TO_GATEWAY):])
    kv = _kv(args[1:])
    _only(kv, ("t", "source", "size"), "deliver client->gateway")
    out = _pop(world, Role.CLIENT)
    message = out.message
    if isinstance(message, SendPathChallenge | SendReattachAccept):
        raise _CommandError("the client's oldest message is not a reattach request")
    now = _int(kv, "t", world.now)
    source = _transport(kv, "source") or message.via
    world.nat[source] = message.via
    request = ReattachRequest(now, source, message.session_id, message.nonce,
                              message.state_version, message.timestamp_ms,
                              message.candidate, message.proof, message.challenge,
                              _int(kv, "size", DEFAULT_REQUEST_SIZE))
    world.now = max(world.now, now)
    lines = _race(world, names, request.session_id)
    try:
        for name in names:
            lines.append(f"{name} <- {format_compact(request, session_id=SCENARIO_SESSION_ID)}")
            result = _node(world, name).gateway.handle_reattach(request)
            lines.extend(_outcome(world, name, result))
    finally:
        _end_race(world, names)
    return lines


def _claims_step(args: list[str]) -> bool:
    return bool(args) and args[0].startswith("gateway:")


def _cmd_step(world: _World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise _CommandError("usage: step gateway:<name> <EventName> field=value ...")
    name = args[0][len("gateway:"):]
    node = _node(world, name)
    try:
        event: Event = parse_event(" ".join(args[1:]), session_id=SCENARIO_SESSION_ID)
    except EventTextError as exc:
        raise _CommandError(str(exc)) from None
    world.now = max(world.now, event.now_ms)
    lines = [f"{name} <- {format_compact(event, session_id=SCENARIO_SESSION_ID)}"]
    result = node.gateway.handle(SCENARIO_SESSION_ID, event)
    return lines + _outcome(world, name, result)


def _claims_flood(args: list[str]) -> bool:
    return any(arg.startswith("gateway=") for arg in args)


def _known_side(gateway: Gateway) -> ServerSide | None:
    state: SessionState | None = gateway.local_state(SCENARIO_SESSION_ID)
    if state is None:
        try:
            committed = gateway.committed(SCENARIO_SESSION_ID)
        except StoreUnavailableError:
            committed = None
        state = None if committed is None else committed[1]
    side = None if state is None else state.side
    return side if isinstance(side, ServerSide) else None


def _flood_source(base: TransportDescriptor, index: int, spread: int) -> TransportDescriptor:
    if spread == 1:
        return base
    try:
        host = str(ipaddress.ip_address(base.host) + index % spread)
    except ValueError:
        raise _CommandError("sources= needs a source= with an IP address host") from None
    return TransportDescriptor(base.kind, host, base.port)


def _cmd_flood(world: _World, args: list[str]) -> list[str]:
    if not args or args[0] not in _FLOOD_KINDS:
        raise _CommandError(f"usage: flood <{'|'.join(_FLOOD_KINDS)}> n=<count> gateway=<name> "
                            "[t=] [every=] [source=] [sources=]")
    kind = args[0]
    kv = _kv(args[1:])
    _only(kv, ("n", "gateway", "t", "every", "source", "sources"), f"flood {kind}")
    name = kv["gateway"]
    node = _node(world, name)
    store = _ext(world).stores[node.store_name]
    count = _int(kv, "n")
    spread = _int(kv, "sources", 1)
    if not 1 <= count <= MAX_FLOOD or not 1 <= spread <= count:
        raise _CommandError(f"need 1 <= sources <= n <= {MAX_FLOOD}")
    now = _int(kv, "t", world.now)
    every = _int(kv, "every", 0)
    base = _transport(kv, "source")
    if base is None:
        client = world.sessions.get(Role.CLIENT)
        base = None if client is None else client.link.active
    if base is None:
        raise _CommandError("flood needs source= (the client has no active transport)")
    side = _known_side(node.gateway)
    nonce = 1 if side is None else side.replay_top + 1
    version = 1 if side is None else side.binding_version
    reads, writes = store.reads, store.writes
    outcomes: Counter[str] = Counter()
    accepted = 0
    for index in range(count):
        at = now + index * every
        source = _flood_source(base, index, spread)
        sid = SCENARIO_SESSION_ID
        if kind == "foreign":
            sid = hashlib.sha256(index.to_bytes(8, "big")).digest()[:16]
        try:
            request = ReattachRequest(at, source, sid, nonce, version, at, source,
                                      bytes(PROOF_SIZE), b"", DEFAULT_REQUEST_SIZE)
        except InvalidEventError as exc:
            raise _CommandError(str(exc)) from None
        result = node.gateway.handle_reattach(request)
        if result.accepted:
            accepted += 1
        elif result.reason is not None:
            outcomes[result.reason.value] += 1
            world.rejections[result.reason.value] += 1
        for effect in result.effects:
            _keep(world, node, result.session_id, effect, [])
    world.now = max(world.now, now + (count - 1) * every)
    shown = " ".join(f"{reason}={n}" for reason, n in sorted(outcomes.items()))
    noun = "source" if spread == 1 else "sources"
    lines = [
        f"sent {count} {kind} ReattachRequest to {name} from {spread} {noun}",
        f"rejected {sum(outcomes.values())}" + (f": {shown}" if shown else ""),
        f"accepted {accepted}",
        f"store {node.store_name}: reads +{store.reads - reads} writes +{store.writes - writes}",
    ]
    return lines + _telemetry(world, [])


def _cmd_evict_expired(world: _World, args: list[str]) -> list[str]:
    if len(args) != 2:
        raise _CommandError("usage: evict-expired <gateway> t=<ms>")
    name = args[0]
    node = _node(world, name)
    kv = _kv(args[1:])
    _only(kv, ("t",), "evict-expired")
    now = _int(kv, "t")
    world.now = max(world.now, now)
    results = node.gateway.tick(now)
    lines = [f"{name} tick t={now}: {len(results)} session(s) stepped, table={len(node.gateway)}"]
    for result in results:
        lines.extend(_outcome(world, name, result))
    return lines + _telemetry(world, [])


def _state_line(state: SessionState) -> str:
    side = state.side
    binding = f" binding_version={side.binding_version}" if isinstance(side, ServerSide) else ""
    return (f"{state.phase.value} v{state.state_version} "
            f"active={format_value(state.link.active)}{binding}")


def _claims_show(args: list[str]) -> bool:
    return bool(args) and args[0] in ("gateway", "store")


def _cmd_show(world: _World, args: list[str]) -> list[str]:
    if len(args) != 2:
        raise _CommandError("usage: show gateway <name> | show store <name>")
    ext = _ext(world)
    if args[0] == "store":
        store = ext.stores.get(args[1])
        if store is None:
            raise _CommandError(f"no store {args[1]!r}")
        records = sorted(store.inner.scan(), key=lambda r: r.session_id)
        lines = [f"store {args[1]}: {store.mode} records={len(records)} "
                 f"reads={store.reads} writes={store.writes}"]
        for record in records:
            state = decode_record(record)
            lines.append(f"session {_sid_text(record.session_id)}: "
                         f"store_version={record.version} {_state_line(state)}")
        return lines
    node = _node(world, args[1])
    gateway = node.gateway
    totals = gateway.rejection_totals
    lines = [
        f"gateway {args[1]}: table={len(gateway)}/{gateway.policy.max_sessions} "
        f"telemetry_errors={gateway.telemetry_errors}",
        "rejected: " + (" ".join(f"{reason.value}={n}" for reason, n in sorted(totals.items()))
                        or "none"),
    ]
    for sid in sorted(gateway.session_ids()):
        local = gateway.local_state(sid)
        if local is not None:
            label = "session" if gateway.policy.ownership is OwnershipMode.STICKY else "cached"
            lines.append(f"{label} {_sid_text(sid)}: {_state_line(local)}")
    return lines


def _digest(state: SessionState) -> str:
    data = json.dumps(state_to_data(state), sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def _cmd_compare(world: _World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise _CommandError("usage: compare <gateway> <gateway> ...")
    seen: set[tuple[int, str]] = set()
    lines = []
    for name in args:
        node = _node(world, name)
        record = _ext(world).stores[node.store_name].peek(SCENARIO_SESSION_ID)
        if record is None:
            lines.append(f"{name}: no committed record")
            seen.add((0, ""))
            continue
        state = decode_record(record)
        digest = _digest(state)
        seen.add((record.version, digest))
        lines.append(f"{name}: store_version={record.version} {state.phase.value} "
                     f"v{state.state_version} state={digest}")
    lines.append("identical" if len(seen) == 1 else "DIFFERENT")
    return lines


_REGISTERED: list[bool] = []


def register() -> None:
    """Add the gateway commands to the runner (idempotent)."""
    if _REGISTERED:
        return
    _REGISTERED.append(True)
    register_command("store", _cmd_store)
    register_command("sink", _cmd_sink)
    register_command("gateway", _cmd_gateway)
    register_command("open", _cmd_open)
    register_command("evict-expired", _cmd_evict_expired)
    register_command("compare", _cmd_compare)
    register_command("deliver", _cmd_deliver, _claims_deliver)
    register_command("step", _cmd_step, _claims_step)
    register_command("flood", _cmd_flood, _claims_flood)
    register_command("show", _cmd_show, _claims_show)
    register_observer(_observe)
