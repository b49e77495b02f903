"""The state decoder (`jumpvpn_core.codec.state_from_data`) refuses every malformed or
inconsistent record with the exact message naming the field, and shares equal objects.

Fast on purpose: it is in the mutation-testing selection (docs/mutation.md)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from jumpvpn_core.codec import STATE_FORMAT_VERSION, state_from_data, state_to_data
from jumpvpn_core.errors import StateDecodeError
from jumpvpn_core.events import DeliveryTimeout, InboundTraffic, PacketLoss
from jumpvpn_core.phases import Phase
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import ServerSide, SessionState
from jumpvpn_core.transport import TransportDescriptor
from tests.harness import LOCALS, Simulation

_NEW = TransportDescriptor.udp("192.0.2.99", 4444)


def _states() -> dict[str, SessionState]:
    """A server with a stored accept and a pending path validation; a client with a
    pending request; a terminated client."""
    sim = Simulation.create(Policy(loss_threshold=1), now=1_000)
    sim.to_client(PacketLoss(sim.now, 1))  # RECOVERING, a request in flight
    client_pending = sim.client
    sim.advance(10)
    sim.run_until_quiet()  # the server accepts: last_accept set
    sim.advance(10)
    sim.to_server(InboundTraffic(sim.now, _NEW, 100))  # a path validation opens
    server = sim.server
    ended = sim.client
    for _ in range(200):
        if ended.phase is Phase.TERMINATED:
            break
        sim.advance(5_000)
        sim.to_client(DeliveryTimeout(sim.now))
        ended = sim.client
    assert server.side.pending is not None
    assert server.side.last_accept is not None  # type: ignore[union-attr]  # a ServerSide
    assert client_pending.side.pending is not None
    assert ended.phase is Phase.TERMINATED
    return {"server": server, "client": client_pending, "ended": ended}


STATES = _states()


def _data(name: str) -> dict[str, Any]:
    return copy.deepcopy(state_to_data(STATES[name], include_secrets=True))


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is _MISSING:
        del target[last]
    else:
        target[last] = value


_MISSING = object()


def test_the_states_round_trip_and_equal_objects_are_shared() -> None:
    for name, state in STATES.items():
        assert state_from_data(_data(name)) == state, name
    decoded = state_from_data(_data("server"))
    side = decoded.side
    assert isinstance(side, ServerSide)
    last = side.last_accept
    assert last is not None
    # The stored accept repeats the binding: the decoder shares those objects.
    assert last.accept.to is decoded.link.active
    assert last.accept.state_version == side.binding_version
    assert last.accept.nonce == last.nonce
    # ... but never an object of another type that merely compares equal.
    data = _data("server")
    data["side"]["last_accept"]["accept"]["to"] = "udp:10.9.9.9:1"
    other_side = state_from_data(data).side
    assert isinstance(other_side, ServerSide)
    other = other_side.last_accept
    assert other is not None
    assert other.accept.to == TransportDescriptor.udp("10.9.9.9", 1)
    assert other.accept.to is not decoded.link.active


@pytest.mark.parametrize(("name", "path", "value", "message"), [
    ("client", "format", 4, "format is 4, this decoder reads 1, 2, 3"),
    ("client", "format", "2", "format must be an int in 0..18446744073709551615, got a "
                              "string of length 1"),
    ("client", "role", "boss", "role must be a Role value"),
    ("client", "role", 1, "role must be a string, got 1"),
    ("client", "phase", "DONE", "phase must be a Phase value"),
    ("client", "end_reason", "CLOSED", "end_reason must be set exactly when the phase is "
                                       "TERMINATED"),
    ("ended", "end_reason", None, "end_reason must be set exactly when the phase is "
                                  "TERMINATED"),
    ("ended", "end_reason", "REATTACHED", "end_reason must be a reason that ends a session"),
    ("client", "control_key", "ab", "control_key must be 32 bytes of lower-case hex, got a "
                                    "string of length 2"),
    ("client", "session_id", "AB" * 16, "session_id must be 16 bytes of lower-case hex, got "
                                        "a string of length 32"),
    ("client", "state_version", -1, "state_version must be an int in "
                                    "0..9223372036854775807, got -1"),
    ("client", "link", [], "link must be an object, got a list of 0 items"),
    ("client", "link.active", None, "link.active must be set exactly in ATTACHED, RECOVERING "
                                    "and DEGRADED (and may be either once TERMINATED)"),
    ("client", "link.active", "udp:nowhere", "link.active is not a transport: "),
    ("client", "link.active_failed", 0, "link.active_failed must be a bool, got 0"),
    ("client", "link.clock_ms", _MISSING, "missing field link.clock_ms"),
    ("client", "roaming.candidates", "x", "roaming.candidates must be a list of at most 4 "
                                          "transports, got a string of length 1"),
    ("client", "roaming.candidates", ["udp:10.0.0.1:1"] * 5,
     "roaming.candidates must be a list of at most 4 transports, got a list of 5 items"),
    ("client", "roaming.candidates", ["udp:10.0.0.1:1", "udp:10.0.0.1:1"],
     "roaming.candidates must not repeat a transport"),
    ("client", "roaming.candidates", ["udp:10.0.0.1:1", 7],
     "roaming.candidates[1] is not a transport: "),
    ("client", "roaming.switch_times", [1] * 7, "roaming.switch_times must be a list of at "
                                                "most 6 ints in 0..18446744073709551615, got "
                                                "a list of 7 items"),
    ("client", "side.next_nonce", 0, "side.next_nonce must be an int in 1.."),
    ("client", "side.pending.request.proof", "00", "side.pending.request.proof must be 32 "
                                                   "bytes of lower-case hex, got a string of "
                                                   "length 2"),
    ("client", "side.pending.request.challenge", "00" * 256,
     "side.pending.request.challenge must be at most 255 bytes of lower-case hex, got a "
     "string of length 512"),
    ("server", "side.replay_bits", "0f", "side.replay_bits must be the bitmap in lower-case "
                                         "hex without leading zeros, no wider than the "
                                         "replay window"),
    ("server", "side.replay_bits", "F", "side.replay_bits must be the bitmap in lower-case "
                                        "hex without leading zeros, no wider than the "
                                        "replay window"),
    ("server", "side.replay_bits", "1" + "0" * 256, "side.replay_bits must be the bitmap in "
                                                    "lower-case hex without leading zeros, no "
                                                    "wider than the replay window"),
    ("server", "side.replay_bits", "f" * 256, None),  # exactly the window's width: fine
    ("server", "side.pending.address", 5, "side.pending.address is not a transport: "),
    ("server", "side.pending.challenge", "00" * 256,
     "side.pending.challenge must be at most 255 bytes of lower-case hex, got a string of "
     "length 512"),
    ("server", "side.binding_version", 10**6, "side.binding_version must be an int in 0.."),
    ("server", "side.challenge_counter", 2**63, "side.challenge_counter must be an int in "
                                                "0..9223372036854775807, got 9223372036854775808"),
    ("server", "side.last_accept.request_proof", "00" * 31,
     "side.last_accept.request_proof must be 32 bytes of lower-case hex, got a string of "
     "length 62"),
    ("server", "side.last_accept.accept.proof", "00" * 33,
     "side.last_accept.accept.proof must be 32 bytes of lower-case hex, got a string of "
     "length 66"),
    ("client", "side.next_nonce", 2**63, "side.next_nonce must be an int in "
                                         "1..9223372036854775807, got 9223372036854775808"),
    ("client", "side.pending.request.nonce", 0, "side.pending.request.nonce must be an int "
                                                "in 1.."),
    ("client", "side.pending.request.challenge", "00" * 255, None),  # the bound itself
    ("client", "roaming.switch_times", [0, 2**64 - 1], None),  # both ends of the range
    ("client", "roaming.switch_times", ["1"], "roaming.switch_times must be a list of at "
                                              "most 6 ints in 0..18446744073709551615, got a "
                                              "list of 1 items"),
    ("client", "roaming.switch_times", [2**64], "roaming.switch_times must be a list of at "
                                                "most 6 ints in 0..18446744073709551615, got "
                                                "a list of 1 items"),
    ("server", "side.last_accept.nonce", 0, "side.last_accept.nonce must be an int in 1.."),
    ("server", "side.last_accept.accept.nonce", 0, "side.last_accept.accept.nonce must be an "
                                                   "int in 1.."),
    ("server", "side.verified_times", [1] * 5, "side.verified_times must be a list of at "
                                               "most 4 ints in 0..18446744073709551615, got a "
                                               "list of 5 items"),
])
def test_each_refusal_names_the_field(name: str, path: str, value: Any,
                                      message: str | None) -> None:
    data = _data(name)
    _set(data, path, value)
    if message is None:
        state_from_data(data)
        return
    with pytest.raises(StateDecodeError) as caught:
        state_from_data(data)
    assert str(caught.value).startswith(message)
    if not message.endswith((": ", "..")):
        assert str(caught.value) == message


def test_state_rules_across_fields() -> None:
    birth = _data("client")
    birth.update(phase="BIRTH", state_version=1)
    with pytest.raises(StateDecodeError, match=r"^state_version must be 0 in BIRTH$"):
        state_from_data(birth)
    ended = _data("ended")
    ended["side"]["pending"] = _data("client")["side"]["pending"]
    with pytest.raises(StateDecodeError, match=r"^side.pending must be null once TERMINATED$"):
        state_from_data(ended)
    # A terminated session may keep its active path or not.
    ended = _data("ended")
    ended["link"]["active"] = None
    assert state_from_data(ended).link.active is None
    bad_policy = _data("client")
    bad_policy["policy"]["loss_threshold"] = 0
    with pytest.raises(StateDecodeError, match=r"^policy: invalid policy: "):
        state_from_data(bad_policy)
    with pytest.raises(StateDecodeError, match=r"^state must be an object, got a list"):
        state_from_data([])


def test_the_control_key_comes_from_the_data_or_the_caller() -> None:
    state = STATES["client"]
    without = state_to_data(state)
    assert "control_key" not in without
    assert state_from_data(without, control_key=state.ident.control_key) == state
    with pytest.raises(StateDecodeError) as missing:
        state_from_data(without)
    assert str(missing.value) == ("no control key: pass control_key= or include_secrets=True "
                                  "data")
    for bad, described in ((b"short", "bytes of length 5"),
                           (state.ident.control_key.hex(), "a string of length 64"),
                           (bytearray(32), "bytearray of length 32")):
        with pytest.raises(StateDecodeError) as caught:
            state_from_data(without, control_key=bad)  # type: ignore[arg-type]  # on purpose
        assert str(caught.value) == f"control_key= must be 32 bytes, got {described}"
    assert STATE_FORMAT_VERSION == 3


def test_format_1_pending_validation_reads_as_opened_by_traffic() -> None:
    data = _data("server")
    data["format"] = 1
    del data["side"]["pending"]["request_nonce"]
    for name in ("quality_max_age_ms", "quality_loss_penalty_ms", "migration_margin_ms",
                 "migration_dwell_ms"):
        del data["policy"][name]
    decoded = state_from_data(data)
    assert decoded.side.pending is not None
    assert decoded.side.pending.request_nonce == 0  # type: ignore[union-attr]  # PendingPath
    assert LOCALS  # the harness's transports back the states above


def test_a_pending_request_nonce_must_be_below_the_next_nonce() -> None:
    data = _data("client")
    next_nonce = data["side"]["next_nonce"]
    data["side"]["pending"]["request"]["nonce"] = next_nonce
    with pytest.raises(StateDecodeError) as caught:
        state_from_data(data)
    assert str(caught.value) == (f"side.pending.request.nonce must be an int in "
                                 f"1..{next_nonce - 1}, got {next_nonce}")
    data["side"]["pending"]["request"]["nonce"] = next_nonce - 1
    assert state_from_data(data).side.pending is not None
