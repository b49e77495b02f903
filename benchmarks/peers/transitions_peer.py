"""The lifecycle on `transitions.Machine`: guards as `conditions`, actions as `after`.

One `Machine` per role is built once, with the model attached; every lifecycle resets the
model's fields and the machine's state to BIRTH (cheaper than building a machine each
time, which would only make this peer slower). Triggers whose conditions fail return False
and leave the state unchanged (`ignore_invalid_triggers=True` makes a trigger that is not
valid in the current state do the same instead of raising).
"""

from __future__ import annotations

from typing import Any

from transitions import Machine

from benchmarks.peers.models import ClientModel, Message, ServerModel
from benchmarks.peers.script import (
    CLIENT_LOCAL,
    LOSS_BURST,
    SERVER_SEEN,
    T_ACCEPT,
    T_ATTACH,
    T_CLOSE,
    T_DEGRADE,
    T_LOSS_1,
    T_LOSS_2,
    T_TRAFFIC,
)

__all__ = ["TransitionsPeer"]

_STATES = ["birth", "attached", "recovering", "degraded", "terminated"]
_LIVE = ["birth", "attached", "recovering", "degraded"]

_CLIENT_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "attach", "source": "birth", "dest": "attached", "after": "on_attach"},
    {"trigger": "loss", "source": "attached", "dest": "recovering",
     "conditions": "loss_crosses", "after": "start_reattach"},
    {"trigger": "loss", "source": "attached", "dest": None, "unless": "loss_crosses",
     "after": "count_loss"},
    {"trigger": "accepted", "source": ["recovering", "degraded"], "dest": "attached",
     "conditions": ["accept_session_ok", "accept_nonce_ok", "accept_version_ok",
                    "accept_proof_ok"],
     "after": "on_accepted"},
    {"trigger": "traffic", "source": ["attached", "recovering", "degraded"], "dest": None,
     "after": "on_traffic"},
    {"trigger": "recovery_timeout", "source": "recovering", "dest": "degraded",
     "conditions": ["recovery_over", "heard"], "after": "on_degrade"},
    {"trigger": "recovery_timeout", "source": "recovering", "dest": "terminated",
     "conditions": "recovery_over", "after": "on_end"},
    {"trigger": "close", "source": _LIVE, "dest": "terminated", "after": "on_end"},
]

_SERVER_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "attach", "source": "birth", "dest": "attached", "after": "on_attach"},
    {"trigger": "reattach", "source": ["attached", "recovering", "degraded"],
     "dest": "attached",
     "conditions": ["session_ok", "rate_ok", "nonce_fresh", "version_ok", "timestamp_ok",
                    "on_active_path", "proof_ok"],
     "after": "on_reattached"},
    {"trigger": "close", "source": _LIVE, "dest": "terminated", "after": "on_end"},
]


class TransitionsPeer:
    """A client and a server model, each driven by its own `transitions.Machine`."""

    def __init__(self) -> None:
        self.client: Any = ClientModel()
        self.server: Any = ServerModel()
        self.client_machine = Machine(model=self.client, states=_STATES,
                                      transitions=_CLIENT_TRANSITIONS, initial="birth",
                                      auto_transitions=False, ignore_invalid_triggers=True)
        self.server_machine = Machine(model=self.server, states=_STATES,
                                      transitions=_SERVER_TRANSITIONS, initial="birth",
                                      auto_transitions=False, ignore_invalid_triggers=True)

    def reset(self) -> None:
        """Both sessions back to BIRTH."""
        self.client.reset(T_ATTACH)
        self.server.reset(T_ATTACH)
        self.client_machine.set_state("birth")
        self.server_machine.set_state("birth")

    def lifecycle(self) -> tuple[str, str]:
        """Run the whole script once; returns the final (client, server) states."""
        self.reset()
        client, server = self.client, self.server
        client.attach(T_ATTACH, CLIENT_LOCAL)
        server.attach(T_ATTACH, SERVER_SEEN)
        client.loss(T_LOSS_1, LOSS_BURST)
        server.reattach(T_LOSS_1, client.outbox, SERVER_SEEN)
        client.accepted(T_ACCEPT, server.outbox)
        client.loss(T_LOSS_2, LOSS_BURST)
        client.traffic(T_TRAFFIC)
        client.recovery_timeout(T_DEGRADE)
        client.close(T_CLOSE)
        server.close(T_CLOSE)
        return client.state, server.state

    def check(self) -> None:
        """Assert the final states, the path, and that the checks refuse bad inputs."""
        assert self.lifecycle() == ("terminated", "terminated")
        self.reset()
        client, server = self.client, self.server
        client.attach(T_ATTACH, CLIENT_LOCAL)
        server.attach(T_ATTACH, SERVER_SEEN)
        client.loss(T_LOSS_1, LOSS_BURST)
        assert client.state == "recovering"
        request = client.outbox
        assert isinstance(request, Message)
        forged = Message(request.session_id, request.nonce, request.state_version,
                         request.timestamp_ms, request.transport, bytes(32))
        stale = Message(request.session_id, request.nonce, 0, request.timestamp_ms,
                        request.transport, request.proof)
        assert not server.reattach(T_LOSS_1, forged, SERVER_SEEN)
        assert not server.reattach(T_LOSS_1, stale, SERVER_SEEN)
        assert server.version == 1
        assert server.outbox is None
        assert server.reattach(T_LOSS_1, request, SERVER_SEEN)
        assert server.version == 2
        assert not server.reattach(T_LOSS_1, request, SERVER_SEEN), "replay must be refused"
        assert server.version == 2
        accept = server.outbox
        assert isinstance(accept, Message)
        bad_accept = Message(accept.session_id, accept.nonce, accept.state_version,
                             accept.timestamp_ms, accept.transport, bytes(32))
        assert not client.accepted(T_ACCEPT, bad_accept)
        assert client.state == "recovering"
        assert client.accepted(T_ACCEPT, accept)
        assert client.state == "attached"
        assert client.known_version == 2
        client.loss(T_LOSS_2, LOSS_BURST)
        assert client.state == "recovering"
        client.traffic(T_TRAFFIC)
        client.recovery_timeout(T_DEGRADE)
        assert client.state == "degraded"
