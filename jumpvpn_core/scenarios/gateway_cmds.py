"""The gateway command set: nodes, stores and telemetry sinks (§3.1 .. §6.2).

`GATEWAY_COMMANDS` maps each command name to its function; every name differs from the
core commands' (`jumpvpn_core.scenarios.core_cmds`), and the runner refuses a table where
two commands share a name. Commands (full table in `specs/scenarios/README.md`): `store`,
`sink`, `gateway`, `open`, `deliver-gateway <gw>[,<gw>...]` (several nodes sharing a store:
each reads the store before any commits, a race), `step-gateway <gw> ...`,
`flood-gateway ... gateway=<gw>`, `evict-expired`, `show-gateway`, `show-store`, `compare`.

A node's outcome prints as `<gw>: accepted|rejected <REASON> store_version=<v|none>
phase=<PHASE|none>`, then `no commit confirmed, no effects executed` or each effect (executed only
after its commit), then each telemetry record the node emitted that is not one of those
effects (`<gw> telemetry <type> key=value ...`). Every telemetry record also goes to the
script's audit trace, whatever the scenario sink does with it.

Stores are `jumpvpn_core.stores.faulty.FaultyStore`s over a `MemoryStore` (one per named
store, switched `up`/`down`/`lose-replies`), and each node reaches its store through a
`FaultyStore` of its own, which holds the reads of a race.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from jumpvpn_core.codec import state_to_data
from jumpvpn_core.effects import Effect, SendPathChallenge, SendReattachAccept, StateChanged
from jumpvpn_core.errors import InvalidEventError, PolicyError
from jumpvpn_core.events import Attach, Event
from jumpvpn_core.gateway import (
    Gateway,
    GatewayPolicy,
    GatewayResult,
    OwnershipMode,
    decode_record,
    owner_of,
)
from jumpvpn_core.peer import FORGED_PROOF, Peer, request_received
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.scenarios import eventtext
from jumpvpn_core.scenarios.args import (
    CommandError,
    head_args,
    int_arg,
    kv_args,
    only,
    parse_arg,
    transport_arg,
)
from jumpvpn_core.scenarios.core_cmds import Command
from jumpvpn_core.scenarios.sinks import SINK_WAIT_S, QueuedSink, RaisingSink, Tee
from jumpvpn_core.scenarios.world import (
    DEFAULT_REQUEST_SIZE,
    MAX_FLOOD,
    SCENARIO_SECRET,
    SCENARIO_SESSION_ID,
    Node,
    World,
    apply,
    create_player,
    pop,
)
from jumpvpn_core.state import ServerSide, SessionState
from jumpvpn_core.stores.base import StoreUnavailableError
from jumpvpn_core.stores.faulty import FaultyStore, StoreFault
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["GATEWAY_COMMANDS", "observed"]

_STORE_MODES = tuple(fault.value for fault in StoreFault)
_SINK_KINDS = ("healthy", "raising", "blocking", "lossy")
_FLOOD_KINDS = ("forged", "foreign")


# --- the gateway world ------------------------------------------------------------------------


def _node(world: World, name: str) -> Node:
    node = world.gateway_world().nodes.get(name)
    if node is None:
        raise CommandError(f"no gateway {name!r}; create it with `gateway {name} store=...`")
    return node


def _node_names(world: World, text: str) -> list[str]:
    names = text.split(",")
    if len(set(names)) != len(names):
        raise CommandError(f"gateway named twice in {text!r}")
    for name in names:
        _node(world, name)
    return names


def _name(text: str, what: str) -> str:
    if not text or "=" in text or "," in text or ":" in text:
        raise CommandError(f"bad {what} name {text!r}")
    return text


# --- output -----------------------------------------------------------------------------------


def _sid_text(sid: bytes) -> str:
    return eventtext.format_value(sid)


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


def _telemetry(world: World, shown: list[dict[str, Any]]) -> list[str]:
    """Lines for telemetry emitted since the last call, except records in `shown`."""
    ext = world.gateway_world()
    lines = []
    remaining = list(shown)
    for node, record in ext.fresh:
        if record in remaining:
            remaining.remove(record)
            continue
        lines.append(_telemetry_line(node, record))
    ext.fresh.clear()
    return lines


def _outcome(world: World, name: str, result: GatewayResult) -> list[str]:
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
        lines.append(eventtext.format_effect(effect, session_id=SCENARIO_SESSION_ID))
        _keep(world, node, result.session_id, effect, shown)
    if not result.accepted and result.reason is not None:
        world.rejections[result.reason.value] += 1
    return lines + _telemetry(world, shown)


def _keep(world: World, node: Node, sid: bytes, effect: Effect,
          shown: list[dict[str, Any]]) -> None:
    if isinstance(effect, StateChanged):
        shown.append(effect.to_record())
        if sid == SCENARIO_SESSION_ID:
            if not node.phases:
                node.phases.append(effect.from_phase.value)
            node.phases.append(effect.to_phase.value)
    elif isinstance(effect, SendPathChallenge | SendReattachAccept):
        world.outbox[Role.SERVER].append(effect)


def observed(world: World) -> list[str]:
    """The nodes' phase paths, for the script's observed reaction."""
    if world.gateways is None:
        return []
    parts = []
    for name, node in world.gateways.nodes.items():
        path: list[str] = []
        for phase in node.phases:
            if not path or path[-1] != phase:
                path.append(phase)
        parts.append(f"{name} {'>'.join(path) or '-'}")
    return parts


# --- commands ---------------------------------------------------------------------------------


def _cmd_store(world: World, args: list[str]) -> list[str]:
    if not 1 <= len(args) <= 2:
        raise CommandError(f"usage: store <name> [{'|'.join(_STORE_MODES)}]")
    name = _name(args[0], "store")
    ext = world.gateway_world()
    store = ext.stores.get(name)
    created = store is None
    if store is None:
        store = ext.stores[name] = FaultyStore(MemoryStore())
    if len(args) == 2:
        if args[1] not in _STORE_MODES:
            raise CommandError(f"store mode must be one of {', '.join(_STORE_MODES)}")
        store.fault = StoreFault(args[1])
    word = "created" if created else "now"
    return [f"store {name} {word} {store.fault.value}"]


def _cmd_sink(world: World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise CommandError(f"usage: sink <name> <{'|'.join(_SINK_KINDS)}|close> "
                            "[capacity=] [every=]")
    name = _name(args[0], "sink")
    ext = world.gateway_world()
    if args[1] == "close":
        sink = ext.sinks.get(name)
        if sink is None:
            raise CommandError(f"no sink {name!r}")
        sink.close()
        if isinstance(sink, QueuedSink) and sink.queue.dropped + sink.delivered < sink.offered:
            raise CommandError(f"sink {name} did not drain within {SINK_WAIT_S} s")
        return [f"sink {name} closed: {sink.summary()}"]
    if name in ext.sinks:
        raise CommandError(f"sink {name!r} exists")
    kind = args[1]
    if kind not in _SINK_KINDS:
        raise CommandError(f"sink kind must be one of {', '.join(_SINK_KINDS)}")
    kv = kv_args(args[2:])
    only(kv, ("capacity", "every"), f"sink {kind}")
    capacity = int_arg(kv, "capacity", 1000)
    every = int_arg(kv, "every", 2)
    if capacity < 1 or every < 1:
        raise CommandError("capacity and every must be positive")
    if kind == "raising":
        ext.sinks[name] = RaisingSink()
        return [f"sink {name}: raising (emit raises)"]
    try:
        ext.sinks[name] = QueuedSink(kind, capacity, every)
    except TimeoutError as exc:
        raise CommandError(str(exc)) from None
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


def _cmd_gateway(world: World, args: list[str]) -> list[str]:
    if not args:
        raise CommandError("usage: gateway <name> store=<store> [mode=sticky|shared] "
                            "[nodes=a,b] [sink=] " + " ".join(f"[{k}=]" for k in _GATEWAY_ARGS))
    name = _name(args[0], "gateway")
    ext = world.gateway_world()
    if name in ext.nodes:
        raise CommandError(f"gateway {name!r} exists")
    kv = kv_args(args[1:])
    only(kv, ("store", "mode", "nodes", "sink", *_GATEWAY_ARGS), "gateway")
    store_name = kv.get("store")
    if store_name is None or store_name not in ext.stores:
        raise CommandError("gateway needs store=<name> of a store created with `store`")
    sink_name = kv.get("sink")
    sink = None
    if sink_name is not None:
        sink = ext.sinks.get(sink_name)
        if sink is None:
            raise CommandError(f"no sink {sink_name!r}")
    values: dict[str, Any] = {field: int_arg(kv, key) for key, field in _GATEWAY_ARGS.items()
                              if key in kv}
    try:
        values["ownership"] = OwnershipMode(kv.get("mode", "sticky"))
    except ValueError:
        raise CommandError("mode must be sticky or shared") from None
    values["node_ids"] = tuple(kv.get("nodes", name).split(","))
    try:
        policy = GatewayPolicy(**values)
        view = FaultyStore(ext.stores[store_name])
        gateway = Gateway(view, policy, node_id=name,
                          session_policy=world.policy)
    except PolicyError as exc:
        raise CommandError(f"invalid gateway policy: {exc}") from None
    ext.nodes[name] = Node(gateway, view, store_name, sink_name)
    gateway.telemetry = Tee(name, store_name, world.script_name, ext.fresh, world.records,
                            sink)
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


def _attach_client(world: World, now: int, via: TransportDescriptor) -> list[str]:
    client = world.players.get(Role.CLIENT)
    if client is None:
        client = create_player(world, Role.CLIENT, SCENARIO_SESSION_ID, SCENARIO_SECRET, now,
                               world.policy)
        world.phases[Role.CLIENT].append(Phase.BIRTH.value)
    if client.last.phase is not Phase.BIRTH:
        return []
    return apply(world, Role.CLIENT, Attach(now, via))


def _cmd_open(world: World, args: list[str]) -> list[str]:
    head, kv = head_args(args, "usage: open <gateway>[,<gateway>...] [t=] via=<transport> "
                         "[sid=]", ("t", "via", "sid"), "open")
    names = _node_names(world, head)
    via = transport_arg(kv, "via")
    if via is None:
        raise CommandError("open needs via=<transport> (the client's address)")
    now = int_arg(kv, "t", world.now)
    sid: bytes = parse_arg(bytes, kv["sid"], "sid") if "sid" in kv else SCENARIO_SESSION_ID
    if len(sid) != len(SCENARIO_SESSION_ID):
        raise CommandError(f"sid must be {len(SCENARIO_SESSION_ID)} bytes")
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


def _race(world: World, names: list[str], sid: bytes) -> list[str]:
    """Where nodes in `names` share a store, let each node's first read of `sid` see the
    record as it is now: every node reads before any of them commits."""
    stores = [_node(world, name).store_name for name in names]
    if len(set(stores)) == len(stores):
        return []  # no two of them share a store: nothing to race on
    for name in names:
        _node(world, name).view.hold_reads([sid])
    return [f"race: {', '.join(names)} handle it concurrently; every store read comes "
            "before any commit"]


def _end_race(world: World, names: list[str]) -> None:
    for name in names:
        _node(world, name).view.release_reads()


def _cmd_deliver(world: World, args: list[str]) -> list[str]:
    head, kv = head_args(args, "usage: deliver-gateway <gw>[,<gw>...] [t=] [source=] [size=]",
                         ("t", "source", "size"), "deliver-gateway")
    names = _node_names(world, head)
    message = pop(world, Role.CLIENT)
    if isinstance(message, SendPathChallenge | SendReattachAccept):
        raise CommandError("the client's oldest message is not a reattach request")
    now = int_arg(kv, "t", world.now)
    source = transport_arg(kv, "source") or message.via
    world.nat[source] = message.via
    request = request_received(message, now, source, int_arg(kv, "size", DEFAULT_REQUEST_SIZE))
    world.now = max(world.now, now)
    lines = _race(world, names, request.session_id)
    try:
        shown = eventtext.format_compact(request, session_id=SCENARIO_SESSION_ID)
        for name in names:
            lines.append(f"{name} <- {shown}")
            result = _node(world, name).gateway.handle_reattach(request)
            lines.extend(_outcome(world, name, result))
    finally:
        _end_race(world, names)
    return lines


def _cmd_step(world: World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise CommandError("usage: step-gateway <name> <EventName> field=value ...")
    name = args[0]
    node = _node(world, name)
    try:
        event: Event = eventtext.parse_event(" ".join(args[1:]), session_id=SCENARIO_SESSION_ID)
    except eventtext.EventTextError as exc:
        raise CommandError(str(exc)) from None
    world.now = max(world.now, event.now_ms)
    lines = [f"{name} <- {eventtext.format_compact(event, session_id=SCENARIO_SESSION_ID)}"]
    result = node.gateway.handle(SCENARIO_SESSION_ID, event)
    return lines + _outcome(world, name, result)


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
        raise CommandError("sources= needs a source= with an IP address host") from None
    return TransportDescriptor(base.kind, host, base.port)


def _cmd_flood(world: World, args: list[str]) -> list[str]:
    if not args or args[0] not in _FLOOD_KINDS:
        raise CommandError(f"usage: flood-gateway <{'|'.join(_FLOOD_KINDS)}> n=<count> "
                           "gateway=<name> "
                            "[t=] [every=] [source=] [sources=]")
    kind = args[0]
    kv = kv_args(args[1:])
    only(kv, ("n", "gateway", "t", "every", "source", "sources"), f"flood-gateway {kind}")
    if "gateway" not in kv:
        raise CommandError("flood-gateway needs gateway=<name>")
    name = kv["gateway"]
    node = _node(world, name)
    store = world.gateway_world().stores[node.store_name]
    count = int_arg(kv, "n")
    spread = int_arg(kv, "sources", 1)
    if not 1 <= count <= MAX_FLOOD or not 1 <= spread <= count:
        raise CommandError(f"need 1 <= sources <= n <= {MAX_FLOOD}")
    now = int_arg(kv, "t", world.now)
    every = int_arg(kv, "every", 0)
    base = transport_arg(kv, "source")
    if base is None:
        client = world.players.get(Role.CLIENT)
        base = None if client is None or client.state is None else client.state.link.active
    if base is None:
        raise CommandError("flood needs source= (the client has no active transport)")
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
            # A forger knows no key: every request carries the forged proof.
            request = Peer(sid, b"").request(at, source, nonce=nonce, state_version=version,
                                             size=DEFAULT_REQUEST_SIZE,
                                             forged_proof=FORGED_PROOF)
        except InvalidEventError as exc:
            raise CommandError(str(exc)) from None
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


def _cmd_evict_expired(world: World, args: list[str]) -> list[str]:
    if len(args) != 2:
        raise CommandError("usage: evict-expired <gateway> t=<ms>")
    name = args[0]
    node = _node(world, name)
    kv = kv_args(args[1:])
    only(kv, ("t",), "evict-expired")
    now = int_arg(kv, "t")
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
            f"active={eventtext.format_value(state.link.active)}{binding}")


def _cmd_show_store(world: World, args: list[str]) -> list[str]:
    if len(args) != 1:
        raise CommandError("usage: show-store <name>")
    store = world.gateway_world().stores.get(args[0])
    if store is None:
        raise CommandError(f"no store {args[0]!r}")
    records = sorted(store.inner.scan(), key=lambda r: r.session_id)
    lines = [f"store {args[0]}: {store.fault.value} records={len(records)} "
             f"reads={store.reads} writes={store.writes}"]
    for record in records:
        state = decode_record(record)
        lines.append(f"session {_sid_text(record.session_id)}: "
                     f"store_version={record.version} {_state_line(state)}")
    return lines


def _cmd_show_gateway(world: World, args: list[str]) -> list[str]:
    if len(args) != 1:
        raise CommandError("usage: show-gateway <name>")
    gateway = _node(world, args[0]).gateway
    totals = gateway.rejection_totals
    lines = [
        f"gateway {args[0]}: table={len(gateway)}/{gateway.policy.max_sessions} "
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


def _cmd_compare(world: World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise CommandError("usage: compare <gateway> <gateway> ...")
    seen: set[tuple[int, str]] = set()
    lines = []
    for name in args:
        node = _node(world, name)
        record = world.gateway_world().stores[node.store_name].peek(SCENARIO_SESSION_ID)
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


# Every name differs from the core's (the runner refuses a name defined twice); the forms
# that take a gateway where a core command takes a role say so in their name.
GATEWAY_COMMANDS: dict[str, Command] = {
    "store": _cmd_store, "sink": _cmd_sink, "gateway": _cmd_gateway, "open": _cmd_open,
    "deliver-gateway": _cmd_deliver, "step-gateway": _cmd_step, "flood-gateway": _cmd_flood,
    "evict-expired": _cmd_evict_expired, "show-gateway": _cmd_show_gateway,
    "show-store": _cmd_show_store, "compare": _cmd_compare,
}
"""The gateway commands, by name."""
