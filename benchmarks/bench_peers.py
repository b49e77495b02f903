"""The full session lifecycle: `step()` beside `transitions` and python-statemachine.

See `benchmarks/peers/` for what each implementation does. A fourth row times only the five
proof operations of one lifecycle (three `compute_proof`, two `verify_proof`): the floor
that every implementation pays, since they share the cryptography.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.harness import BenchResult, Prepared, measure_interleaved
from benchmarks.peers.models import KEY
from benchmarks.peers.ours import Ours
from benchmarks.peers.script import CLIENT_LOCAL, SERVER_SEEN, SESSION_ID, T_LOSS_1
from benchmarks.peers.statemachine_peer import StatemachinePeer
from benchmarks.peers.transitions_peer import TransitionsPeer
from jumpvpn_core import Phase
from jumpvpn_core.proof import MessageType, compute_proof, verify_proof

__all__ = ["run"]

OURS = "lifecycle: ours (step, client + server)"
TRANSITIONS = "lifecycle: transitions.Machine"
STATEMACHINE = "lifecycle: python-statemachine"
CRYPTO = "lifecycle: the 5 proof operations alone"


def _ours(n: int) -> Prepared:
    impl = Ours()
    rounds = range(n)

    def body() -> None:
        for _ in rounds:
            impl.lifecycle()

    def checked() -> None:
        impl.check()
        for _ in rounds:
            outcome = impl.lifecycle()
            assert outcome.client.phase is Phase.TERMINATED
            assert outcome.server.phase is Phase.TERMINATED

    return Prepared(n, body, checked)


def _peer(factory: Callable[[], TransitionsPeer | StatemachinePeer]) -> Callable[[int], Prepared]:
    def make(n: int) -> Prepared:
        impl = factory()
        rounds = range(n)

        def body() -> None:
            for _ in rounds:
                impl.lifecycle()

        def checked() -> None:
            impl.check()
            for _ in rounds:
                assert impl.lifecycle() == ("terminated", "terminated")

        return Prepared(n, body, checked)

    return make


def _crypto_only(n: int) -> Prepared:
    rounds = range(n)
    request = compute_proof(KEY, MessageType.REATTACH_REQUEST, SESSION_ID, 1, 1, T_LOSS_1,
                            CLIENT_LOCAL)
    accept = compute_proof(KEY, MessageType.REATTACH_ACCEPT, SESSION_ID, 1, 2, T_LOSS_1,
                           SERVER_SEEN)

    def once() -> bool:
        compute_proof(KEY, MessageType.REATTACH_REQUEST, SESSION_ID, 1, 1, T_LOSS_1,
                      CLIENT_LOCAL)
        ok = verify_proof(KEY, request, MessageType.REATTACH_REQUEST, SESSION_ID, 1, 1,
                          T_LOSS_1, CLIENT_LOCAL)
        compute_proof(KEY, MessageType.REATTACH_ACCEPT, SESSION_ID, 1, 2, T_LOSS_1,
                      SERVER_SEEN)
        ok = ok and verify_proof(KEY, accept, MessageType.REATTACH_ACCEPT, SESSION_ID, 1, 2,
                                 T_LOSS_1, SERVER_SEEN)
        compute_proof(KEY, MessageType.REATTACH_REQUEST, SESSION_ID, 2, 2, T_LOSS_1,
                      CLIENT_LOCAL)
        return ok

    def body() -> None:
        for _ in rounds:
            once()

    def checked() -> None:
        for _ in rounds:
            assert once()

    return Prepared(n, body, checked)


def run(smoke: bool) -> list[BenchResult]:
    """Check every implementation's path; in a full run, time them and give ratios."""
    makers: dict[str, tuple[Callable[[int], Prepared], int]] = {
        OURS: (_ours, 200),
        TRANSITIONS: (_peer(TransitionsPeer), 200),
        STATEMACHINE: (_peer(StatemachinePeer), 20),
        CRYPTO: (_crypto_only, 500),
    }
    for make, _ in makers.values():
        prepared = make(2)
        prepared.checked()
        if smoke:
            prepared.body()
    if smoke:
        return [BenchResult(name, 0.0, notes="smoke: path checked, not timed")
                for name in makers]
    timings = {name: timing.median_ns
               for name, timing in measure_interleaved(makers, repeats=15).items()}
    ours = timings[OURS]
    speedup_vs_transitions = timings[TRANSITIONS] / ours
    return [
        BenchResult(OURS, ours, "ns", TRANSITIONS, ours / timings[TRANSITIONS],
                    ">= 10x faster than transitions", speedup_vs_transitions >= 10,
                    f"{speedup_vs_transitions:.2f}x faster than transitions, "
                    f"{timings[STATEMACHINE] / ours:.2f}x faster than python-statemachine; "
                    "10 steps and 5 proof operations per lifecycle"),
        BenchResult(f"{OURS} vs python-statemachine", ours, "ns", STATEMACHINE,
                    ours / timings[STATEMACHINE]),
        BenchResult(TRANSITIONS, timings[TRANSITIONS], "ns"),
        BenchResult(STATEMACHINE, timings[STATEMACHINE], "ns"),
        BenchResult(CRYPTO, timings[CRYPTO], "ns", OURS, timings[CRYPTO] / ours,
                    notes="shared floor: all three implementations pay it"),
    ]
