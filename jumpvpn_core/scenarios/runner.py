"""Replay scenario scripts against a client and a server session.

The runner keeps a tiny world: one client and one server session sharing the fixed test
session id and secret below, a virtual clock, and one outbox per role holding the messages
that role sent and nobody has delivered yet. Commands (see `COMMANDS` and
`specs/scenarios/README.md`) feed events to `step()`; after every step the runner calls
`jumpvpn_core.invariants.check_step` and a violation fails the script.

Output of a step, one line each: `<role>: <PHASE> v<version>`, then
`state unchanged (same object)` when `step()` returned the very same state object, then
every effect in `format_effect` form.
"""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from jumpvpn_core.effects import (
    AUDIT_RECORD_VERSION,
    Effect,
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    StateChanged,
)
from jumpvpn_core.errors import InvalidEventError, PolicyError
from jumpvpn_core.events import (
    Attach,
    Event,
    ReattachAccepted,
    ReattachRequest,
    Tick,
)
from jumpvpn_core.invariants import check_step
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.peer import challenge_received
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import POLICY_FIELD_DOCS, Policy
from jumpvpn_core.proof import PROOF_SIZE, MessageType, compute_proof
from jumpvpn_core.scenarios.eventtext import (
    EventTextError,
    format_compact,
    format_effect,
    format_value,
    parse_event,
    parse_value,
)
from jumpvpn_core.scenarios.script import Script, ScriptError, parse_script, render_script
from jumpvpn_core.scenarios.standin import RoleOutcome, RoleStandIn, StandInError
from jumpvpn_core.state import ClientSide, ServerSide, SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "COMMANDS",
    "DEFAULT_REQUEST_SIZE",
    "SCENARIO_SECRET",
    "SCENARIO_SESSION_ID",
    "ScriptResult",
    "register_command",
    "register_observer",
    "run_script",
    "run_script_file",
]

#: The session id every scenario uses (16 bytes, 00 01 .. 0f).
SCENARIO_SESSION_ID = bytes(range(16))
#: The session secret every scenario uses. A published test value, never a real secret.
SCENARIO_SECRET = b"jumpvpn scenario test secret 32b"
#: Bytes the server is told it received for a delivered reattach request (`size=`).
DEFAULT_REQUEST_SIZE = 128
#: A flood may send at most this many requests (keeps scripts and traces small).
MAX_FLOOD = 100_000
UNCHANGED = "state unchanged (same object)"

_ROLES = {"client": Role.CLIENT, "server": Role.SERVER}
_DIRECTIONS = {"client->server": Role.CLIENT, "server->client": Role.SERVER}
_FLOOD_KINDS = ("forged", "foreign", "stale", "replay", "signed")


class _CommandError(Exception):
    """A command failed; the runner turns it into a `ScriptError` at the command's line."""


@attrs.frozen
class ScriptResult:
    """What replaying one script gave."""

    name: str
    section: str
    title: str
    expect: str
    observed: str
    ok: bool
    failure: str | None
    records: tuple[dict[str, Any], ...]
    outputs: dict[int, tuple[str, ...]]


@attrs.define
class _Outgoing:
    sender: Role
    message: SendReattachRequest | SendPathChallenge | SendReattachAccept


@attrs.define
class _World:
    policy_overrides: dict[str, int] = attrs.Factory(dict)
    sessions: dict[Role, SessionState] = attrs.Factory(dict)
    now: int = 0
    outbox: dict[Role, deque[_Outgoing]] = attrs.Factory(
        lambda: {Role.CLIENT: deque(), Role.SERVER: deque()}
    )
    nat: dict[TransportDescriptor, TransportDescriptor] = attrs.Factory(dict)
    last_delivered: tuple[Role, Event] | None = None
    captures: dict[str, tuple[Role, Event]] = attrs.Factory(dict)
    records: list[dict[str, Any]] = attrs.Factory(list)
    phases: dict[Role, list[str]] = attrs.Factory(
        lambda: {Role.CLIENT: [], Role.SERVER: []}
    )
    rejections: Counter[str] = attrs.Factory(Counter)
    script_name: str = ""
    # State of command extensions (see `register_command`), by extension name.
    extensions: dict[str, Any] = attrs.Factory(dict)
    session_id: bytes = SCENARIO_SESSION_ID
    stand_in: RoleStandIn | None = None
    command: str = ""


# --- argument helpers ---------------------------------------------------------------------------


def _kv(args: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in args:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise _CommandError(f"expected key=value, got {token!r}")
        if key in out:
            raise _CommandError(f"argument {key!r} given twice")
        out[key] = value
    return out


def _only(kv: dict[str, str], allowed: tuple[str, ...], command: str) -> None:
    unknown = sorted(set(kv) - set(allowed))
    if unknown:
        raise _CommandError(f"{command}: unknown argument(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(allowed) or 'none'}")


def _int(kv: dict[str, str], key: str, default: int | None = None) -> int:
    if key not in kv:
        if default is None:
            raise _CommandError(f"missing argument {key}=")
        return default
    value: int = _parse(int, kv[key], key)
    return value


def _parse(kind: type, text: str, name: str) -> Any:
    try:
        return parse_value(kind, text, name)
    except EventTextError as exc:
        raise _CommandError(str(exc)) from None


def _transport(kv: dict[str, str], key: str) -> TransportDescriptor | None:
    if key not in kv:
        return None
    value: TransportDescriptor = _parse(TransportDescriptor, kv[key], key)
    return value


def _role(text: str) -> Role:
    try:
        return _ROLES[text]
    except KeyError:
        raise _CommandError(f"role must be client or server, got {text!r}") from None


def _direction(text: str) -> Role:
    try:
        return _DIRECTIONS[text]
    except KeyError:
        raise _CommandError(f"direction must be client->server or server->client, got {text!r}"
                    ) from None


def _time(world: _World, kv: dict[str, str]) -> int:
    now = _int(kv, "t", world.now)
    return now


# --- the world --------------------------------------------------------------------------------


def _session(world: _World, role: Role) -> SessionState:
    if world.stand_in is not None and world.stand_in.role is role:
        raise _CommandError(
            f"command {world.command!r} needs the {role.value} session's internals, which "
            f"the implementation under test ({world.stand_in.name}) does not expose")
    state = world.sessions.get(role)
    if state is None:
        raise _CommandError("no sessions yet: run `init t=<ms>` first")
    return state


def _status(role: Role, state: SessionState) -> str:
    return f"{role.value}: {state.phase.value} v{state.state_version}"


def _apply(world: _World, role: Role, event: Event) -> list[str]:
    """Step `role` with `event`, check invariants, record audit, queue messages."""
    if world.stand_in is not None and world.stand_in.role is role:
        return _apply_stand_in(world, world.stand_in, event)
    before = _session(world, role)
    try:
        after, effects = step(before, event)
    except InvalidEventError as exc:
        raise _CommandError(f"step() refused the event: {exc}") from None
    violations = check_step(before, event, after, effects)
    if violations:
        raise _CommandError("invariant violated: " + "; ".join(str(v) for v in violations))
    world.sessions[role] = after
    world.now = max(world.now, event.now_ms)
    lines = [_status(role, after)]
    if after is before:
        lines.append(UNCHANGED)
    for effect in effects:
        _record(world, role, effect)
        lines.append(format_effect(effect, session_id=world.session_id))
    return lines


def _stand_in_lines(world: _World, role: Role, outcome: RoleOutcome) -> list[str]:
    lines = [f"{role.value}: {outcome.phase.value} v{outcome.state_version}"]
    if outcome.unchanged:
        lines.append(UNCHANGED)
    for effect in outcome.effects:
        _record(world, role, effect)
        lines.append(format_effect(effect, session_id=world.session_id))
    lines.extend(f"invariant violated: {v}" for v in outcome.violations)
    return lines


def _apply_stand_in(world: _World, stand_in: RoleStandIn, event: Event) -> list[str]:
    """Like `_apply`, for the role a stand-in plays (it checks its own invariants)."""
    if stand_in.role not in world.phases or not world.phases[stand_in.role]:
        raise _CommandError("no sessions yet: run `init t=<ms>` first")
    try:
        outcome = stand_in.step(event)
    except StandInError as exc:
        raise _CommandError(f"{stand_in.name}: {exc}") from None
    world.now = max(world.now, event.now_ms)
    return _stand_in_lines(world, stand_in.role, outcome)


def _record(world: _World, role: Role, effect: Effect) -> None:
    if isinstance(effect, StateChanged | Rejected):
        record = effect.to_record()
        record["script"] = world.script_name
        world.records.append(record)
        if isinstance(effect, StateChanged):
            world.phases[role].append(effect.to_phase.value)
        else:
            world.rejections[effect.reason.value] += 1
    elif isinstance(effect, SendReattachRequest | SendPathChallenge | SendReattachAccept):
        world.outbox[role].append(_Outgoing(role, effect))


def _quiet_apply(world: _World, role: Role, event: Event) -> tuple[SessionState,
                                                                     tuple[Effect, ...]]:
    """Like `_apply` but returns the result instead of printing it (floods)."""
    before = _session(world, role)
    after, effects = step(before, event)
    violations = check_step(before, event, after, effects)
    if violations:
        raise _CommandError("invariant violated: " + "; ".join(str(v) for v in violations))
    world.sessions[role] = after
    world.now = max(world.now, event.now_ms)
    for effect in effects:
        _record(world, role, effect)
    return after, effects


def _show_delivery(world: _World, role: Role, event: Event) -> str:
    return f"{role.value} <- {format_compact(event, session_id=world.session_id)}"


def _deliver_event(world: _World, role: Role, event: Event) -> list[str]:
    lines = [_show_delivery(world, role, event)]
    lines.extend(_apply(world, role, event))
    world.last_delivered = (role, event)
    return lines


def _control_key(world: _World) -> bytes:
    return _session(world, Role.CLIENT).ident.control_key


def _server_side(world: _World) -> ServerSide:
    side = _session(world, Role.SERVER).side
    assert isinstance(side, ServerSide)
    return side


def _client_side(world: _World) -> ClientSide:
    side = _session(world, Role.CLIENT).side
    assert isinstance(side, ClientSide)
    return side


def _client_address(world: _World) -> TransportDescriptor:
    active = _session(world, Role.CLIENT).link.active
    if active is None:
        raise _CommandError("the client has no active transport; give source= and candidate=")
    return active


def _request_fields(world: _World, kv: dict[str, str], now: int) -> dict[str, Any]:
    """Default fields of a hand-made request, overridden by `kv` (event field names)."""
    source = _transport(kv, "source") or _client_address(world)
    server = _server_side(world)
    fields: dict[str, Any] = {
        "now_ms": now,
        "source": source,
        "session_id": world.session_id,
        "nonce": server.replay_top + 1,
        "state_version": server.binding_version,
        "timestamp_ms": now,
        "candidate": source,
        "challenge": b"",
        "size": DEFAULT_REQUEST_SIZE,
    }
    types = {"nonce": int, "state_version": int, "timestamp_ms": int, "size": int,
             "session_id": bytes, "challenge": bytes, "proof": bytes,
             "candidate": TransportDescriptor}
    for key, raw in kv.items():
        if key in ("t", "source"):
            continue
        if key not in types:
            raise _CommandError(
                f"unknown request field {key!r}; fields: {', '.join(types)}, t, source")
        fields[key] = _parse(types[key], raw, key)
    return fields


def _signed_proof(world: _World, fields: dict[str, Any]) -> bytes:
    return compute_proof(_control_key(world), MessageType.REATTACH_REQUEST, fields["session_id"],
                         fields["nonce"], fields["state_version"], fields["timestamp_ms"],
                         fields["candidate"], fields["challenge"])


def _build_request(fields: dict[str, Any]) -> ReattachRequest:
    try:
        return ReattachRequest(**fields)
    except InvalidEventError as exc:
        raise _CommandError(str(exc)) from None


# --- commands -----------------------------------------------------------------------------------


def _cmd_policy(world: _World, args: list[str]) -> list[str]:
    if world.sessions:
        raise _CommandError("policy must come before init")
    kv = _kv(args)
    overrides: dict[str, int] = {}
    for key, raw in kv.items():
        if key not in POLICY_FIELD_DOCS:
            raise _CommandError(f"unknown policy field {key!r}")
        overrides[key] = _parse(int, raw, key)
    merged = {**world.policy_overrides, **overrides}
    try:
        Policy(**merged)
    except PolicyError as exc:
        raise _CommandError(str(exc)) from None
    world.policy_overrides = merged
    # The trace states the bounds its records were produced under, so `verify-trace` can
    # check this script against its own policy (specs/effects.md, "policy" records).
    world.records.append({"v": AUDIT_RECORD_VERSION, "type": "policy",
                          "script": world.script_name, "policy": Policy(**merged).to_data()})
    shown = " ".join(f"{k}={v}" for k, v in sorted(merged.items()))
    return [f"policy {shown} (others default)"]


def _cmd_init(world: _World, args: list[str]) -> list[str]:
    kv = _kv(args)
    _only(kv, ("t", "id", "secret"), "init")
    if world.sessions:
        raise _CommandError("init given twice")
    now = _int(kv, "t")
    session_id: bytes = _parse(bytes, kv["id"], "id") if "id" in kv else SCENARIO_SESSION_ID
    secret: bytes = (_parse(bytes, kv["secret"], "secret") if "secret" in kv
                     else SCENARIO_SECRET)
    policy = Policy(**world.policy_overrides)
    lines = [f"session_id={format_value(session_id)}"]
    for role in (Role.CLIENT, Role.SERVER):
        if world.stand_in is not None and world.stand_in.role is role:
            try:
                outcome = world.stand_in.create(session_id, secret, now, policy)
            except StandInError as exc:
                raise _CommandError(f"{world.stand_in.name}: {exc}") from None
            lines.extend(_stand_in_lines(world, role, outcome))
        else:
            try:
                world.sessions[role] = new_session(role, session_id, secret, now, policy)
            except InvalidEventError as exc:
                raise _CommandError(f"init: {exc}") from None
            lines.append(_status(role, world.sessions[role]))
        world.phases[role].append(Phase.BIRTH.value)
    world.session_id = session_id
    world.now = now
    return lines


def _cmd_attach(world: _World, args: list[str]) -> list[str]:
    kv = _kv(args)
    _only(kv, ("t", "via"), "attach")
    via = _transport(kv, "via")
    if via is None:
        raise _CommandError(
            "attach needs via=<transport> (the client's address, as the server sees it)")
    now = _time(world, kv)
    lines = _apply(world, Role.CLIENT, Attach(now, via))
    lines.extend(_apply(world, Role.SERVER, Attach(now, via)))
    return lines


def _cmd_step(world: _World, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise _CommandError("usage: step <client|server> <EventName> field=value ...")
    role = _role(args[0])
    try:
        event = parse_event(" ".join(args[1:]), session_id=world.session_id)
    except EventTextError as exc:
        raise _CommandError(str(exc)) from None
    return _apply(world, role, event)


def _cmd_tick(world: _World, args: list[str]) -> list[str]:
    if not args:
        raise _CommandError("usage: tick <client|server> t=<ms>")
    role = _role(args[0])
    kv = _kv(args[1:])
    _only(kv, ("t",), "tick")
    return _apply(world, role, Tick(_int(kv, "t")))


def _cmd_advance(world: _World, args: list[str]) -> list[str]:
    kv = _kv(args)
    _only(kv, ("t",), "advance")
    now = _int(kv, "t")
    lines = _apply(world, Role.CLIENT, Tick(now))
    lines.extend(_apply(world, Role.SERVER, Tick(now)))
    return lines


def _pop(world: _World, sender: Role) -> _Outgoing:
    box = world.outbox[sender]
    if not box:
        raise _CommandError(f"the {sender.value} has no undelivered message")
    return box.popleft()


def _cmd_deliver(world: _World, args: list[str]) -> list[str]:
    if not args:
        raise _CommandError("usage: deliver <client->server|server->client> [t=] ...")
    sender = _direction(args[0])
    kv = _kv(args[1:])
    if sender is Role.CLIENT:
        _only(kv, ("t", "source", "size"), "deliver client->server")
        out = _pop(world, sender)
        message = out.message
        assert isinstance(message, SendReattachRequest)
        now = _time(world, kv)
        source = _transport(kv, "source") or message.via
        world.nat[source] = message.via
        request = ReattachRequest(now, source, message.session_id, message.nonce,
                                  message.state_version, message.timestamp_ms,
                                  message.candidate, message.proof, message.challenge,
                                  _int(kv, "size", DEFAULT_REQUEST_SIZE))
        return _deliver_event(world, Role.SERVER, request)
    _only(kv, ("t", "via"), "deliver server->client")
    out = _pop(world, sender)
    message = out.message
    now = _time(world, kv)
    if isinstance(message, SendPathChallenge):
        via = _transport(kv, "via") or world.nat.get(message.to, message.to)
        event: Event = challenge_received(message, now, via)
    else:
        assert isinstance(message, SendReattachAccept)
        via = _transport(kv, "via") or world.nat.get(message.to, message.to)
        event = ReattachAccepted(now, via, message.session_id, message.nonce,
                                 message.state_version, message.timestamp_ms, message.to,
                                 message.proof)
    return _deliver_event(world, Role.CLIENT, event)


def _cmd_drop(world: _World, args: list[str]) -> list[str]:
    if len(args) != 1:
        raise _CommandError("usage: drop <client|server>")
    sender = _role(args[0])
    out = _pop(world, sender)
    return [f"dropped {format_compact(out.message, session_id=world.session_id)}"]


def _cmd_capture(world: _World, args: list[str]) -> list[str]:
    if len(args) != 1 or "=" in args[0]:
        raise _CommandError("usage: capture <name>")
    if world.last_delivered is None:
        raise _CommandError("nothing delivered yet to capture")
    world.captures[args[0]] = world.last_delivered
    role, event = world.last_delivered
    return [f"captured {args[0]}: {role.value} <- {type(event).__name__}"]


def _cmd_replay(world: _World, args: list[str]) -> list[str]:
    if not args:
        raise _CommandError("usage: replay <name> [t=] [source=]")
    name = args[0]
    if name not in world.captures:
        raise _CommandError(f"nothing captured as {name!r}")
    kv = _kv(args[1:])
    _only(kv, ("t", "source"), "replay")
    role, event = world.captures[name]
    now = _time(world, kv)
    changes: dict[str, Any] = {"now_ms": now}
    source = _transport(kv, "source")
    if source is not None:
        if not isinstance(event, ReattachRequest):
            raise _CommandError("source= only applies to a captured ReattachRequest")
        changes["source"] = source
    replayed: Event = attrs.evolve(event, **changes)
    return _deliver_event(world, role, replayed)


def _cmd_forge(world: _World, args: list[str]) -> list[str]:
    if not args:
        raise _CommandError("usage: forge client->server|server->client [field=value ...]")
    sender = _direction(args[0])
    kv = _kv(args[1:])
    now = _time(world, kv)
    if sender is Role.SERVER:
        _only(kv, ("t", "via", "nonce", "state_version", "proof"), "forge server->client")
        side = _client_side(world)
        pending = side.pending
        via = _transport(kv, "via") or (pending.via if pending else _client_address(world))
        nonce = _int(kv, "nonce", pending.nonce if pending else 1)
        accept = ReattachAccepted(
            now, via, world.session_id, nonce,
            _int(kv, "state_version", side.known_version + 1), now,
            pending.candidate if pending else via,
            _parse(bytes, kv["proof"], "proof") if "proof" in kv else bytes(PROOF_SIZE))
        return _deliver_event(world, Role.CLIENT, accept)
    fields = _request_fields(world, kv, now)
    fields.setdefault("proof", bytes(PROOF_SIZE))
    return _deliver_event(world, Role.SERVER, _build_request(fields))


def _cmd_sign(world: _World, args: list[str]) -> list[str]:
    if not args or args[0] != "client->server":
        raise _CommandError("usage: sign client->server [field=value ...]")
    kv = _kv(args[1:])
    if "proof" in kv:
        raise _CommandError("sign computes the proof; use forge to send a chosen one")
    fields = _request_fields(world, kv, _time(world, kv))
    fields["proof"] = _signed_proof(world, fields)
    return _deliver_event(world, Role.SERVER, _build_request(fields))


def _cmd_flood(world: _World, args: list[str]) -> list[str]:
    if not args or args[0] not in _FLOOD_KINDS:
        raise _CommandError(f"usage: flood <{'|'.join(_FLOOD_KINDS)}> n=<count> [t=] [every=] "
                    "[source=] [name=]")
    kind = args[0]
    kv = _kv(args[1:])
    _only(kv, ("n", "t", "every", "source", "name"), f"flood {kind}")
    count = _int(kv, "n")
    if not 1 <= count <= MAX_FLOOD:
        raise _CommandError(f"n must be in 1..{MAX_FLOOD}")
    now = _time(world, kv)
    every = _int(kv, "every", 0)
    start = _session(world, Role.SERVER)
    template: ReattachRequest | None = None
    if kind == "replay":
        if "name" in kv:
            captured = world.captures.get(kv["name"])
            if captured is None:
                raise _CommandError(f"nothing captured as {kv['name']!r}")
            template_event = captured[1]
        elif world.last_delivered is not None:
            template_event = world.last_delivered[1]
        else:
            raise _CommandError("flood replay needs a delivered or captured request")
        if not isinstance(template_event, ReattachRequest):
            raise _CommandError("flood replay needs a captured ReattachRequest")
        template = template_event
    outcomes: Counter[str] = Counter()
    accepted = 0
    for index in range(count):
        at = now + index * every
        request = _flood_request(world, kind, index, at, kv, template)
        before = _session(world, Role.SERVER)
        after, effects = _quiet_apply(world, Role.SERVER, request)
        rejects = [e for e in effects if isinstance(e, Rejected)]
        if rejects:
            outcomes[rejects[0].reason.value] += 1
        elif after is not before:
            accepted += 1
    final = _session(world, Role.SERVER)
    lines = [f"sent {count} {kind} ReattachRequest to server"]
    shown = " ".join(f"{reason}={n}" for reason, n in sorted(outcomes.items()))
    lines.append(f"rejected {sum(outcomes.values())}" + (f": {shown}" if shown else ""))
    lines.append(f"accepted {accepted}")
    lines.append(_status(Role.SERVER, final))
    if final is start:
        lines.append(UNCHANGED)
    lines.append(f"server active={format_value(final.link.active)}")
    return lines


def _flood_request(world: _World, kind: str, index: int, now: int, kv: dict[str, str],
                   template: ReattachRequest | None) -> ReattachRequest:
    if template is not None:
        source = _transport(kv, "source") or template.source
        return attrs.evolve(template, now_ms=now, source=source)
    base: dict[str, str] = {k: v for k, v in kv.items() if k == "source"}
    fields = _request_fields(world, base, now)
    if kind == "foreign":
        digest = hashlib.sha256(index.to_bytes(8, "big")).digest()
        fields["session_id"] = digest[:16]
    if kind == "stale":
        fields["state_version"] = max(fields["state_version"] - 1, 0)
        if fields["state_version"] == _server_side(world).binding_version:
            raise _CommandError("flood stale needs a server binding version above 0")
    if kind == "signed":
        fields["proof"] = _signed_proof(world, fields)
    else:
        fields["proof"] = bytes(PROOF_SIZE)
    return _build_request(fields)


def _cmd_window(world: _World, args: list[str]) -> list[str]:
    if args:
        raise _CommandError("usage: window")
    state = _session(world, Role.SERVER)
    side = _server_side(world)
    size = state.ident.policy.replay_window_bits
    marked = bin(side.replay_bits).count("1")
    return [
        f"server replay window: size={size} bits top={side.replay_top} "
        f"marked={marked} bitmap_bit_length={side.replay_bits.bit_length()} (<= {size})"
    ]


def _cmd_show(world: _World, args: list[str]) -> list[str]:
    if len(args) != 1:
        raise _CommandError("usage: show <client|server>")
    role = _role(args[0])
    state = _session(world, role)
    side = state.side
    candidates = ",".join(str(c) for c in state.roaming.candidates) or "none"
    deadline = next_deadline(state)
    lines = [
        _status(role, state),
        f"session_id={format_value(state.session_id)} "
        f"active={format_value(state.link.active)} candidates={candidates}",
    ]
    if isinstance(side, ClientSide):
        pending = (f"nonce={side.pending.nonce} via={side.pending.via}"
                   if side.pending else "none")
        lines.append(f"known_version={side.known_version} pending={pending}")
    else:
        pending = str(side.pending.address) if side.pending else "none"
        lines.append(f"binding_version={side.binding_version} validating={pending}")
    lines.append(f"next_deadline={format_value(deadline)}")
    return lines


_Command = Callable[[_World, list[str]], list[str]]

COMMANDS: dict[str, _Command] = {
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
"""Every script command, by name."""

_Observer = Callable[[_World], list[str]]
_OBSERVERS: list[_Observer] = []


def register_command(name: str, command: _Command,
                     claims: Callable[[list[str]], bool] | None = None) -> None:
    """Add a command from an extension module (e.g. `gateway_cmds`).

    Without `claims`, `name` must be new. With `claims`, `name` must exist and becomes an
    overload: `command` runs when `claims(args)` is true, the existing command otherwise,
    so every script written for the existing command reads exactly as before.
    """
    if claims is None:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} already exists")
        COMMANDS[name] = command
        return
    base = COMMANDS[name]

    def overloaded(world: _World, args: list[str]) -> list[str]:
        return command(world, args) if claims(args) else base(world, args)

    COMMANDS[name] = overloaded


def register_observer(observer: _Observer) -> None:
    """Add parts to a script's observed reaction (the `observed` column)."""
    _OBSERVERS.append(observer)


# --- running ------------------------------------------------------------------------------------


def _observed(world: _World) -> str:
    parts = []
    for role in (Role.CLIENT, Role.SERVER):
        if not world.phases[role] and world.extensions:
            continue  # a role an extension's script never created
        path: list[str] = []
        for phase in world.phases[role]:
            if not path or path[-1] != phase:
                path.append(phase)
        parts.append(f"{role.value} {'>'.join(path) or '-'}")
    for observer in _OBSERVERS:
        parts.extend(observer(world))
    if world.rejections:
        shown = ",".join(f"{r}x{n}" for r, n in sorted(world.rejections.items()))
        parts.append(f"rejected {shown}")
    return "; ".join(parts)


def _comparable(world: _World, lines: tuple[str, ...]) -> tuple[str, ...]:
    """The lines to compare: without `state unchanged` lines of a role whose stand-in
    cannot observe object identity."""
    stand_in = world.stand_in
    if stand_in is None or stand_in.observes_identity:
        return lines
    out: list[str] = []
    current: Role | None = None
    for line in lines:
        for role in Role:
            if line.startswith((f"{role.value}: ", f"{role.value} <- ")):
                current = role
        if line == UNCHANGED and current is stand_in.role:
            continue
        out.append(line)
    return tuple(out)


def run_script(script: Script, *, stand_in: RoleStandIn | None = None) -> ScriptResult:
    """Replay every case of `script`. Stops at the first failing command, invariant
    violation or mismatch; `outputs` holds the actual output of every case run.

    With `stand_in`, that stand-in plays its role instead of the reference
    (`jumpvpn_core.scenarios.standin`)."""
    world = _World(script_name=script.name, stand_in=stand_in)
    outputs: dict[int, tuple[str, ...]] = {}
    failure: str | None = None
    for case in script.cases:
        name, *args = case.command.split()
        world.command = name
        command = COMMANDS.get(name)
        try:
            if command is None:
                raise _CommandError(f"unknown command {name!r}; commands: {', '.join(COMMANDS)}")
            actual = tuple(command(world, args))
        except _CommandError as exc:
            failure = str(ScriptError(script.path, case.line, str(exc)))
            break
        outputs[case.line] = actual
        if _comparable(world, actual) != _comparable(world, case.expected) and \
                failure is None:
            diff = "\n".join(difflib.unified_diff(
                list(case.expected), list(actual), "expected", "actual", lineterm=""))
            failure = f"{script.path}:{case.line}: output of {case.command!r} differs\n{diff}"
    return ScriptResult(
        name=script.name,
        section=script.header["section"],
        title=script.header["title"],
        expect=script.header["expect"],
        observed=_observed(world),
        ok=failure is None,
        failure=failure,
        records=tuple(world.records),
        outputs=outputs,
    )


def run_script_file(path: Path, *, rewrite: bool = False,
                    stand_in: RoleStandIn | None = None) -> ScriptResult:
    """Parse and replay the script at `path`. With `rewrite`, expected blocks are replaced
    by the actual output (when every command ran) and the file is written back. With
    `stand_in`, that stand-in plays its role (never together with `rewrite`).

    Raises `ScriptError` when the file itself is malformed.
    """
    if rewrite and stand_in is not None:
        raise ValueError("rewrite takes the reference's output; it cannot use a stand-in")
    script = parse_script(path.read_text(encoding="utf-8"), str(path))
    result = run_script(script, stand_in=stand_in)
    if rewrite and len(result.outputs) == len(script.cases):
        path.write_text(render_script(script, result.outputs), encoding="utf-8")
        result = attrs.evolve(result, ok=True, failure=None)
    return result
