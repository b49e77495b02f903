"""The lifecycle on python-statemachine: guards as `cond`/`unless`, actions as `on`.

The models from `models.py` are passed as the machine's model, so their methods are found
as guards and actions by name. One machine per role is built once; every lifecycle resets
the model's fields and sets `current_state_value` back to BIRTH. Events whose guards all
fail leave the state unchanged (`allow_event_without_transition = True`, so that is a quiet
no-op as in the other implementations, not an exception).
"""

from __future__ import annotations

from typing import Any

from statemachine import State, StateMachine

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

__all__ = ["ClientMachine", "ServerMachine", "StatemachinePeer"]

#: Cheap checks first, HMAC last, as in `step()`.
_SERVER_CHECKS = ["session_ok", "rate_ok", "nonce_fresh", "version_ok", "timestamp_ok",
                  "on_active_path", "proof_ok"]


class ClientMachine(StateMachine):
    """Client lifecycle: guards and actions live on `ClientModel`."""

    allow_event_without_transition = True
    validate_trap_states = False

    birth = State(initial=True)
    attached = State()
    recovering = State()
    degraded = State()
    # Not `final=True`: a final state stops the engine for good, and the benchmark reuses one
    # machine for many lifecycles. No transition leaves it, so it is absorbing all the same
    # (hence `validate_trap_states = False`).
    terminated = State()

    attach = birth.to(attached, on="on_attach")
    loss = (attached.to(recovering, cond="loss_crosses", on="start_reattach")
            | attached.to(attached, internal=True, unless="loss_crosses", on="count_loss"))
    accepted = (recovering.to(attached, on="on_accepted",
                              cond=["accept_session_ok", "accept_nonce_ok",
                                    "accept_version_ok", "accept_proof_ok"])
                | degraded.to(attached, on="on_accepted",
                              cond=["accept_session_ok", "accept_nonce_ok",
                                    "accept_version_ok", "accept_proof_ok"]))
    traffic = (attached.to(attached, internal=True, on="on_traffic")
               | recovering.to(recovering, internal=True, on="on_traffic")
               | degraded.to(degraded, internal=True, on="on_traffic"))
    recovery_timeout = (recovering.to(degraded, cond=["recovery_over", "heard"],
                                      on="on_degrade")
                        | recovering.to(terminated, cond="recovery_over", on="on_end"))
    close = (birth.to(terminated, on="on_end") | attached.to(terminated, on="on_end")
             | recovering.to(terminated, on="on_end") | degraded.to(terminated, on="on_end"))


class ServerMachine(StateMachine):
    """Server lifecycle: guards and actions live on `ServerModel`."""

    allow_event_without_transition = True
    validate_trap_states = False

    # The lifecycle's server never leaves ATTACHED except to end; the library refuses
    # states that no transition reaches, so the server machine has only these three.
    birth = State(initial=True)
    attached = State()
    # Not `final=True`: a final state stops the engine for good, and the benchmark reuses one
    # machine for many lifecycles. No transition leaves it, so it is absorbing all the same
    # (hence `validate_trap_states = False`).
    terminated = State()

    attach = birth.to(attached, on="on_attach")
    reattach = attached.to(attached, cond=_SERVER_CHECKS, on="on_reattached")
    close = birth.to(terminated, on="on_end") | attached.to(terminated, on="on_end")


class StatemachinePeer:
    """A client and a server model, each driven by its own python-statemachine machine."""

    def __init__(self) -> None:
        self.client = ClientModel()
        self.server = ServerModel()
        self.client_sm: Any = ClientMachine(self.client)
        self.server_sm: Any = ServerMachine(self.server)

    def reset(self) -> None:
        """Both sessions back to BIRTH."""
        self.client.reset(T_ATTACH)
        self.server.reset(T_ATTACH)
        self.client_sm.current_state_value = "birth"
        self.server_sm.current_state_value = "birth"

    def states(self) -> tuple[str, str]:
        """Current (client, server) state ids."""
        return self.client_sm.current_state_value, self.server_sm.current_state_value

    def lifecycle(self) -> tuple[str, str]:
        """Run the whole script once; returns the final (client, server) states."""
        self.reset()
        client, server = self.client_sm, self.server_sm
        client.attach(now=T_ATTACH, transport=CLIENT_LOCAL)
        server.attach(now=T_ATTACH, transport=SERVER_SEEN)
        client.loss(now=T_LOSS_1, count=LOSS_BURST)
        server.reattach(now=T_LOSS_1, msg=self.client.outbox, observed=SERVER_SEEN)
        client.accepted(now=T_ACCEPT, msg=self.server.outbox)
        client.loss(now=T_LOSS_2, count=LOSS_BURST)
        client.traffic(now=T_TRAFFIC)
        client.recovery_timeout(now=T_DEGRADE)
        client.close(now=T_CLOSE)
        server.close(now=T_CLOSE)
        return self.states()

    def check(self) -> None:
        """Assert the final states, the path, and that the checks refuse bad inputs."""
        assert self.lifecycle() == ("terminated", "terminated"), self.states()
        self.reset()
        client, server = self.client_sm, self.server_sm
        client.attach(now=T_ATTACH, transport=CLIENT_LOCAL)
        server.attach(now=T_ATTACH, transport=SERVER_SEEN)
        client.loss(now=T_LOSS_1, count=LOSS_BURST)
        assert self.states()[0] == "recovering"
        request = self.client.outbox
        assert request is not None
        forged = Message(request.session_id, request.nonce, request.state_version,
                         request.timestamp_ms, request.transport, bytes(32))
        stale = Message(request.session_id, request.nonce, 0, request.timestamp_ms,
                        request.transport, request.proof)
        server.reattach(now=T_LOSS_1, msg=forged, observed=SERVER_SEEN)
        server.reattach(now=T_LOSS_1, msg=stale, observed=SERVER_SEEN)
        assert self.server.version == 1
        assert self.server.outbox is None
        server.reattach(now=T_LOSS_1, msg=request, observed=SERVER_SEEN)
        assert self.server.version == 2
        server.reattach(now=T_LOSS_1, msg=request, observed=SERVER_SEEN)
        assert self.server.version == 2, "replay must be refused"
        accept = self.server.outbox
        assert accept is not None
        bad_accept = Message(accept.session_id, accept.nonce, accept.state_version,
                             accept.timestamp_ms, accept.transport, bytes(32))
        client.accepted(now=T_ACCEPT, msg=bad_accept)
        assert self.states()[0] == "recovering"
        client.accepted(now=T_ACCEPT, msg=accept)
        assert self.states()[0] == "attached"
        assert self.client.known_version == 2
        client.loss(now=T_LOSS_2, count=LOSS_BURST)
        assert self.states()[0] == "recovering"
        client.traffic(now=T_TRAFFIC)
        client.recovery_timeout(now=T_DEGRADE)
        assert self.states()[0] == "degraded"
