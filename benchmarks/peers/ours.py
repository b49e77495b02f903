"""The lifecycle driven through `jumpvpn_core.step()` (client and server states).

Per lifecycle: 7 client steps (Attach, PacketLoss, ReattachAccepted, PacketLoss,
InboundTraffic, Tick, Close) and 3 server steps (Attach, ReattachRequest, Close). The
driver turns the client's `SendReattachRequest` effect into the server's `ReattachRequest`
event and the server's `SendReattachAccept` into the client's `ReattachAccepted` (both are
validated attrs events: that construction is inside the timed lifecycle). Deadlines are the
core's own: every step checks `next_deadline`. The client's reattach-retry timer would fire
every `reattach_timeout_ms` while RECOVERING; the script delivers one `Tick` at the end of
the recovery window instead (a late Tick is legal: the most important due deadline, the
recovery window, fires and the pending retry is dropped), which matches what the peers are
told (one "recovery timeout").

Start states are immutable, so every lifecycle starts from the same two BIRTH objects.
"""

from __future__ import annotations

import attrs

from benchmarks.peers.script import (
    CLIENT_LOCAL,
    LOSS_BURST,
    POLICY,
    SECRET,
    SERVER_SEEN,
    SESSION_ID,
    T_ACCEPT,
    T_ATTACH,
    T_CLOSE,
    T_DEGRADE,
    T_LOSS_1,
    T_LOSS_2,
    T_TRAFFIC,
)
from jumpvpn_core import (
    Attach,
    Close,
    InboundTraffic,
    PacketLoss,
    Phase,
    ReattachAccepted,
    ReattachRequest,
    Rejected,
    Role,
    SendReattachAccept,
    SendReattachRequest,
    SessionState,
    Tick,
    new_session,
    next_deadline,
    step,
)

__all__ = ["Ours", "Outcome"]


@attrs.frozen
class Outcome:
    """Final phases of one lifecycle, and the phases seen by the client on the way."""

    client: SessionState
    server: SessionState


class Ours:
    """Holds the BIRTH states and the fixed events; `lifecycle()` runs the script once."""

    def __init__(self) -> None:
        self.client0 = new_session(Role.CLIENT, SESSION_ID, SECRET, T_ATTACH, POLICY)
        self.server0 = new_session(Role.SERVER, SESSION_ID, SECRET, T_ATTACH, POLICY)
        self.c_attach = Attach(T_ATTACH, CLIENT_LOCAL)
        self.s_attach = Attach(T_ATTACH, SERVER_SEEN)
        self.loss_1 = PacketLoss(T_LOSS_1, LOSS_BURST)
        self.loss_2 = PacketLoss(T_LOSS_2, LOSS_BURST)
        self.traffic = InboundTraffic(T_TRAFFIC, CLIENT_LOCAL, 1200)
        self.tick = Tick(T_DEGRADE)
        self.close = Close(T_CLOSE)

    def lifecycle(self) -> Outcome:
        """Run the whole script once; returns the final states."""
        client, _ = step(self.client0, self.c_attach)
        server, _ = step(self.server0, self.s_attach)
        client, effects = step(client, self.loss_1)
        send = effects[-1]
        assert isinstance(send, SendReattachRequest)
        # The server sees the request arrive from the client's public address.
        request = ReattachRequest(T_LOSS_1, SERVER_SEEN, send.session_id, send.nonce,
                                  send.state_version, send.timestamp_ms, send.candidate,
                                  send.proof, send.challenge, 120)
        server, effects = step(server, request)
        accept = effects[-1]
        assert isinstance(accept, SendReattachAccept)
        client, _ = step(client, ReattachAccepted(T_ACCEPT, send.via, accept.session_id,
                                                  accept.nonce, accept.state_version,
                                                  accept.timestamp_ms, accept.to,
                                                  accept.proof))
        client, _ = step(client, self.loss_2)
        client, _ = step(client, self.traffic)
        # A driver asks for the next deadline after each step; the peers are simply told.
        deadline = next_deadline(client)
        assert deadline is not None
        assert deadline <= T_DEGRADE
        client, _ = step(client, self.tick)
        client, _ = step(client, self.close)
        server, _ = step(server, self.close)
        return Outcome(client, server)

    def check(self) -> None:
        """Assert the final phases, the path on the way, and that bad inputs are refused."""
        outcome = self.lifecycle()
        assert outcome.client.phase is Phase.TERMINATED
        assert outcome.server.phase is Phase.TERMINATED
        # Walk it again with assertions on every intermediate phase.
        client, _ = step(self.client0, self.c_attach)
        server, _ = step(self.server0, self.s_attach)
        client, effects = step(client, self.loss_1)
        assert client.phase is Phase.RECOVERING
        send = effects[-1]
        assert isinstance(send, SendReattachRequest)
        request = ReattachRequest(T_LOSS_1, SERVER_SEEN, send.session_id, send.nonce,
                                  send.state_version, send.timestamp_ms, send.candidate,
                                  send.proof, send.challenge, 120)
        accepted_server, effects = step(server, request)
        assert accepted_server.state_version == server.state_version + 1
        # The checks really run: replay, stale version and a forged proof are refused.
        for bad in (
            request,
            attrs.evolve(request, nonce=send.nonce + 1, state_version=0),
            attrs.evolve(request, nonce=send.nonce + 1, proof=bytes(32)),
        ):
            refused, why = step(accepted_server, bad)
            assert refused is accepted_server, why
            assert isinstance(why[0], Rejected), why
        accept = effects[-1]
        assert isinstance(accept, SendReattachAccept)
        event = ReattachAccepted(T_ACCEPT, send.via, accept.session_id, accept.nonce,
                                 accept.state_version, accept.timestamp_ms, accept.to,
                                 accept.proof)
        forged, why = step(client, attrs.evolve(event, proof=bytes(32)))
        assert forged is client
        assert isinstance(why[0], Rejected)
        client, _ = step(client, event)
        assert client.phase is Phase.ATTACHED
        client, _ = step(client, self.loss_2)
        assert client.phase is Phase.RECOVERING
        client, _ = step(client, self.traffic)
        client, _ = step(client, self.tick)
        assert client.phase is Phase.DEGRADED
