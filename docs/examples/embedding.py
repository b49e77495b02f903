"""A minimal driver: it owns the clock and the sockets; the core decides everything else."""

import jumpvpn_core as jv

wifi = jv.TransportDescriptor.parse("udp:192.168.1.20:51820")
# The session id and secret come from your authenticated handshake.
state = jv.new_session(jv.Role.CLIENT, bytes(16), b"secret from your handshake 32 b!", 0)
inputs = [jv.Attach(0, wifi), jv.PacketLoss(1_000, count=5)]  # what your sockets report

for _ in range(100):  # a real driver loops for the life of the session
    if not inputs:
        break
    state, effects = jv.step(state, inputs.pop(0))
    for effect in effects:  # execute effects in order
        if isinstance(effect, jv.StateChanged | jv.Rejected):
            print("audit", effect.to_record())
        elif isinstance(effect, jv.SendReattachRequest):
            print("send reattach request via", effect.via)  # put it on the wire
        elif isinstance(effect, jv.BindTransport):
            print("route session traffic through", effect.transport)
        elif isinstance(effect, jv.SessionEnded):
            print("session ended:", effect.reason)
    deadline = jv.next_deadline(state)
    if not inputs and deadline is not None:
        inputs.append(jv.Tick(deadline))  # a real driver sleeps until the deadline
