"""The same session lifecycle implemented three ways, for side-by-side timing.

* `ours`: `jumpvpn_core.step()` on a client and a server state (immutable records).
* `transitions_peer`: `transitions.Machine` with conditions and callbacks on mutable models.
* `statemachine_peer`: python-statemachine `StateMachine` classes with guards and actions.

All three run the script in `script.py` and use the same primitives for the expensive parts
(`jumpvpn_core.proof` for HMAC proofs, `jumpvpn_core.replay` for the bitmap), so the timing
difference is the state-machine machinery and the state representation, not the crypto.
"""
