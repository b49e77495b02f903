"""The core command set: a client and a server session, their messages, and an attacker.

`CORE_COMMANDS` maps each command name to its function (see `specs/scenarios/README.md`).
Deliveries turn a queued message into the event the other side receives with
`jumpvpn_core.peer.received`; hand-made requests and accepts (`forge`, `sign`, `flood`) are
built by `jumpvpn_core.peer` too.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from jumpvpn_core.effects import AUDIT_RECORD_VERSION, Rejected, SendReattachRequest
from jumpvpn_core.errors import InvalidEventError, PolicyError
from jumpvpn_core.events import Attach, Event, ReattachRequest, Tick
from jumpvpn_core.machine import next_deadline
from jumpvpn_core.peer import FORGED_PROOF, Peer, accept_pending, received
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import POLICY_FIELD_DOCS, Policy
from jumpvpn_core.scenarios.args import (
    CommandError,
    direction_arg,
    head_args,
    int_arg,
    kv_args,
    only,
    parse_arg,
    role_arg,
    transport_arg,
)
from jumpvpn_core.scenarios.eventtext import (
    EventTextError,
    format_compact,
    format_value,
    parse_event,
)
from jumpvpn_core.scenarios.world import (
    DEFAULT_REQUEST_SIZE,
    MAX_FLOOD,
    SCENARIO_SECRET,
    SCENARIO_SESSION_ID,
    UNCHANGED,
    World,
    advance,
    apply,
    create_player,
    pop,
    status,
)
from jumpvpn_core.state import ClientSide, ServerSide
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["CORE_COMMANDS", "Command"]

Command = Callable[[World, list[str]], list[str]]
"""A command: the world and the command line's arguments in, the output lines out."""

_FLOOD_KINDS = ("forged", "foreign", "stale", "replay", "signed")
# Fields of a hand-made request a script may set (`forge` / `sign client->server`).
_REQUEST_FIELDS: dict[str, type] = {
    "nonce": int, "state_version": int, "timestamp_ms": int, "size": int,
    "session_id": bytes, "challenge": bytes, "proof": bytes, "candidate": TransportDescriptor,
}


def _server_side(world: World) -> ServerSide:
    side = world.session(Role.SERVER).side
    assert isinstance(side, ServerSide)
    return side


def _client_side(world: World) -> ClientSide:
    side = world.session(Role.CLIENT).side
    assert isinstance(side, ClientSide)
    return side


def _deliver_event(world: World, role: Role, event: Event) -> list[str]:
    lines = [f"{role.value} <- {format_compact(event, session_id=world.session_id)}"]
    lines.extend(apply(world, role, event))
    world.last_delivered = (role, event)
    return lines


def _request(world: World, kv: dict[str, str], now: int, *, signed: bool,
             **changes: Any) -> ReattachRequest:
    """A hand-made request from the client's address (or `source=`): a fresh nonce at the
    server's binding version, timestamp now, fields overridden by `kv` (event field names)
    and `changes`; signed with the client's key, or carrying the chosen (by default a
    forged) proof."""
    source = transport_arg(kv, "source") or world.client_address()
    server = _server_side(world)
    fields: dict[str, Any] = {"nonce": server.replay_top + 1,
                              "state_version": server.binding_version,
                              "session_id": world.session_id, "size": DEFAULT_REQUEST_SIZE}
    for key, raw in kv.items():
        if key in ("t", "source"):
            continue
        if key not in _REQUEST_FIELDS:
            raise CommandError(f"unknown request field {key!r}; fields: "
                               f"{', '.join(_REQUEST_FIELDS)}, t, source")
        fields[key] = parse_arg(_REQUEST_FIELDS[key], raw, key)
    fields.update(changes)
    proof = fields.pop("proof", None)
    try:
        if signed:
            return Peer.of(world.session(Role.CLIENT)).request(now, source, **fields)
        return Peer(world.session_id, b"").request(
            now, source, forged_proof=FORGED_PROOF if proof is None else proof, **fields)
    except InvalidEventError as exc:
        raise CommandError(str(exc)) from None


# --- commands -----------------------------------------------------------------------------------


def _cmd_policy(world: World, args: list[str]) -> list[str]:
    if world.players:
        raise CommandError("policy must come before init")
    kv = kv_args(args)
    overrides: dict[str, int] = {}
    for key, raw in kv.items():
        if key not in POLICY_FIELD_DOCS:
            raise CommandError(f"unknown policy field {key!r}")
        overrides[key] = parse_arg(int, raw, key)
    merged = {**world.policy_overrides, **overrides}
    try:
        Policy(**merged)
    except PolicyError as exc:
        raise CommandError(str(exc)) from None
    world.policy_overrides = merged
    # The trace states the bounds its records were produced under, so `verify-trace` can
    # check this script against its own policy (specs/effects.md, "policy" records).
    world.records.append({"v": AUDIT_RECORD_VERSION, "type": "policy",
                          "script": world.script_name, "policy": world.policy.to_data()})
    shown = " ".join(f"{k}={v}" for k, v in sorted(merged.items()))
    return [f"policy {shown} (others default)"]


def _cmd_init(world: World, args: list[str]) -> list[str]:
    kv = kv_args(args)
    only(kv, ("t", "id", "secret"), "init")
    if world.players:
        raise CommandError("init given twice")
    now = int_arg(kv, "t")
    session_id: bytes = parse_arg(bytes, kv["id"], "id") if "id" in kv else SCENARIO_SESSION_ID
    secret: bytes = (parse_arg(bytes, kv["secret"], "secret") if "secret" in kv
                     else SCENARIO_SECRET)
    policy = world.policy
    lines = [f"session_id={format_value(session_id)}"]
    for role in (Role.CLIENT, Role.SERVER):
        player = create_player(world, role, session_id, secret, now, policy)
        lines.append(status(role, player.last))
        world.phases[role].append(Phase.BIRTH.value)
    world.session_id = session_id
    world.now = now
    return lines


def _cmd_attach(world: World, args: list[str]) -> list[str]:
    kv = kv_args(args)
    only(kv, ("t", "via"), "attach")
    via = transport_arg(kv, "via")
    if via is None:
        raise CommandError(
            "attach needs via=<transport> (the client's address, as the server sees it)")
    now = int_arg(kv, "t", world.now)
    lines = apply(world, Role.CLIENT, Attach(now, via))
    lines.extend(apply(world, Role.SERVER, Attach(now, via)))
    return lines


def _cmd_step(world: World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise CommandError("usage: step <client|server> <EventName> field=value ...")
    role = role_arg(args[0])
    try:
        event = parse_event(" ".join(args[1:]), session_id=world.session_id)
    except EventTextError as exc:
        raise CommandError(str(exc)) from None
    return apply(world, role, event)


def _cmd_tick(world: World, args: list[str]) -> list[str]:
    head, kv = head_args(args, "usage: tick <client|server> t=<ms>", ("t",), "tick")
    return apply(world, role_arg(head), Tick(int_arg(kv, "t")))


def _cmd_advance(world: World, args: list[str]) -> list[str]:
    kv = kv_args(args)
    only(kv, ("t",), "advance")
    now = int_arg(kv, "t")
    lines = apply(world, Role.CLIENT, Tick(now))
    lines.extend(apply(world, Role.SERVER, Tick(now)))
    return lines


def _cmd_deliver(world: World, args: list[str]) -> list[str]:
    head, kv = head_args(args, "usage: deliver <client->server|server->client> [t=] ...")
    sender = direction_arg(head)
    if sender is Role.CLIENT:
        only(kv, ("t", "source", "size"), "deliver client->server")
        message = pop(world, sender)
        assert isinstance(message, SendReattachRequest)
        source = transport_arg(kv, "source") or message.via
        world.nat[source] = message.via
        event = received(message, int_arg(kv, "t", world.now), source,
                         int_arg(kv, "size", DEFAULT_REQUEST_SIZE))
        return _deliver_event(world, Role.SERVER, event)
    only(kv, ("t", "via"), "deliver server->client")
    message = pop(world, sender)
    assert not isinstance(message, SendReattachRequest)  # a server sends none
    via = transport_arg(kv, "via") or world.nat.get(message.to, message.to)
    return _deliver_event(world, Role.CLIENT, received(message, int_arg(kv, "t", world.now),
                                                       via))


def _cmd_drop(world: World, args: list[str]) -> list[str]:
    if len(args) != 1:
        raise CommandError("usage: drop <client|server>")
    message = pop(world, role_arg(args[0]))
    return [f"dropped {format_compact(message, session_id=world.session_id)}"]


def _cmd_capture(world: World, args: list[str]) -> list[str]:
    if len(args) != 1 or "=" in args[0]:
        raise CommandError("usage: capture <name>")
    if world.last_delivered is None:
        raise CommandError("nothing delivered yet to capture")
    world.captures[args[0]] = world.last_delivered
    role, event = world.last_delivered
    return [f"captured {args[0]}: {role.value} <- {type(event).__name__}"]


def _cmd_replay(world: World, args: list[str]) -> list[str]:
    name, kv = head_args(args, "usage: replay <name> [t=] [source=]", ("t", "source"),
                         "replay")
    if name not in world.captures:
        raise CommandError(f"nothing captured as {name!r}")
    role, event = world.captures[name]
    changes: dict[str, Any] = {"now_ms": int_arg(kv, "t", world.now)}
    source = transport_arg(kv, "source")
    if source is not None:
        if not isinstance(event, ReattachRequest):
            raise CommandError("source= only applies to a captured ReattachRequest")
        changes["source"] = source
    replayed: Event = attrs.evolve(event, **changes)
    return _deliver_event(world, role, replayed)


def _cmd_forge(world: World, args: list[str]) -> list[str]:
    head, kv = head_args(args, "usage: forge client->server|server->client [field=value ...]")
    sender = direction_arg(head)
    now = int_arg(kv, "t", world.now)
    if sender is Role.CLIENT:
        return _deliver_event(world, Role.SERVER, _request(world, kv, now, signed=False))
    only(kv, ("t", "via", "nonce", "state_version", "proof"), "forge server->client")
    client = world.session(Role.CLIENT)
    pending = _client_side(world).pending
    via = transport_arg(kv, "via") or (pending.via if pending else world.client_address())
    accept = accept_pending(
        client, now, via=via, nonce=int_arg(kv, "nonce", pending.nonce if pending else 1),
        state_version=int_arg(kv, "state_version", _client_side(world).known_version + 1),
        forged_proof=parse_arg(bytes, kv["proof"], "proof") if "proof" in kv else FORGED_PROOF)
    return _deliver_event(world, Role.CLIENT, accept)


def _cmd_sign(world: World, args: list[str]) -> list[str]:
    if not args or args[0] != "client->server":
        raise CommandError("usage: sign client->server [field=value ...]")
    kv = kv_args(args[1:])
    if "proof" in kv:
        raise CommandError("sign computes the proof; use forge to send a chosen one")
    request = _request(world, kv, int_arg(kv, "t", world.now), signed=True)
    return _deliver_event(world, Role.SERVER, request)


def _flood_template(world: World, kv: dict[str, str]) -> ReattachRequest:
    if "name" in kv:
        captured = world.captures.get(kv["name"])
        if captured is None:
            raise CommandError(f"nothing captured as {kv['name']!r}")
        template = captured[1]
    elif world.last_delivered is not None:
        template = world.last_delivered[1]
    else:
        raise CommandError("flood replay needs a delivered or captured request")
    if not isinstance(template, ReattachRequest):
        raise CommandError("flood replay needs a captured ReattachRequest")
    return template


def _flood_request(world: World, kind: str, index: int, now: int, kv: dict[str, str],
                   template: ReattachRequest | None) -> ReattachRequest:
    if template is not None:
        source = transport_arg(kv, "source") or template.source
        return attrs.evolve(template, now_ms=now, source=source)
    base = {k: v for k, v in kv.items() if k == "source"}
    changes: dict[str, Any] = {}
    if kind == "foreign":
        changes["session_id"] = hashlib.sha256(index.to_bytes(8, "big")).digest()[:16]
    if kind == "stale":
        binding = _server_side(world).binding_version
        changes["state_version"] = max(binding - 1, 0)
        if changes["state_version"] == binding:
            raise CommandError("flood stale needs a server binding version above 0")
    return _request(world, base, now, signed=kind == "signed", **changes)


def _cmd_flood(world: World, args: list[str]) -> list[str]:
    if not args or args[0] not in _FLOOD_KINDS:
        raise CommandError(f"usage: flood <{'|'.join(_FLOOD_KINDS)}> n=<count> [t=] [every=] "
                           "[source=] [name=]")
    kind = args[0]
    kv = kv_args(args[1:])
    only(kv, ("n", "t", "every", "source", "name"), f"flood {kind}")
    count = int_arg(kv, "n")
    if not 1 <= count <= MAX_FLOOD:
        raise CommandError(f"n must be in 1..{MAX_FLOOD}")
    now = int_arg(kv, "t", world.now)
    every = int_arg(kv, "every", 0)
    start = world.session(Role.SERVER)
    template = _flood_template(world, kv) if kind == "replay" else None
    outcomes: Counter[str] = Counter()
    accepted = 0
    for index in range(count):
        request = _flood_request(world, kind, index, now + index * every, kv, template)
        stepped = advance(world, Role.SERVER, request)
        rejects = [e for e in stepped.effects if isinstance(e, Rejected)]
        if rejects:
            outcomes[rejects[0].reason.value] += 1
        elif not stepped.unchanged:
            accepted += 1
    final = world.session(Role.SERVER)
    lines = [f"sent {count} {kind} ReattachRequest to server"]
    shown = " ".join(f"{reason}={n}" for reason, n in sorted(outcomes.items()))
    lines.append(f"rejected {sum(outcomes.values())}" + (f": {shown}" if shown else ""))
    lines.append(f"accepted {accepted}")
    lines.append(status(Role.SERVER, final))
    if final is start:
        lines.append(UNCHANGED)
    lines.append(f"server active={format_value(final.link.active)}")
    return lines


def _cmd_window(world: World, args: list[str]) -> list[str]:
    if args:
        raise CommandError("usage: window")
    state = world.session(Role.SERVER)
    side = _server_side(world)
    size = state.ident.policy.replay_window_bits
    marked = bin(side.replay_bits).count("1")
    return [
        f"server replay window: size={size} bits top={side.replay_top} "
        f"marked={marked} bitmap_bit_length={side.replay_bits.bit_length()} (<= {size})"
    ]


def _cmd_show(world: World, args: list[str]) -> list[str]:
    if len(args) != 1:
        raise CommandError("usage: show <client|server>")
    role = role_arg(args[0])
    state = world.session(role)
    side = state.side
    candidates = ",".join(str(c) for c in state.roaming.candidates) or "none"
    lines = [
        status(role, state),
        f"session_id={format_value(state.session_id)} "
        f"active={format_value(state.link.active)} candidates={candidates}",
    ]
    if isinstance(side, ClientSide):
        pending = (f"nonce={side.pending.nonce} via={side.pending.via}"
                   if side.pending else "none")
        lines.append(f"known_version={side.known_version} pending={pending}")
        if side.quality or side.better is not None:
            # Path quality, shown only once something was measured (older scripts unchanged).
            scores = " ".join(f"{score.transport}:srtt={score.srtt_ms},loss_q16="
                              f"{score.loss_q16},at={score.updated_ms}"
                              for score in side.quality)
            lines.append(f"quality={scores or 'none'}")
            lines.append(f"better={format_value(side.better)} since={side.better_since_ms}")
    else:
        pending = str(side.pending.address) if side.pending else "none"
        lines.append(f"binding_version={side.binding_version} validating={pending}")
    lines.append(f"next_deadline={format_value(next_deadline(state))}")
    return lines


CORE_COMMANDS: dict[str, Command] = {
    "policy": _cmd_policy,
    "init": _cmd_init,
    "attach": _cmd_attach,
    "step": _cmd_step,
    "tick": _cmd_tick,
    "advance": _cmd_advance,
    "deliver": _cmd_deliver,
    "drop": _cmd_drop,
    "capture": _cmd_capture,
    "replay": _cmd_replay,
    "forge": _cmd_forge,
    "sign": _cmd_sign,
    "flood": _cmd_flood,
    "window": _cmd_window,
    "show": _cmd_show,
}
"""The core commands, by name."""
