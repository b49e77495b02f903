"""The conformance kit: fuzz any implementation of the session core against the reference.

* `strategies`        Hypothesis strategies: policies, transports, events (both roles),
                      network chaos and attacks.
* `Implementation`    what an implementation under test offers; `ReferenceImplementation`
                      is the reference as one instance.
* `ConformanceMachine` / `conformance_machine` / `run_conformance`
                      the stateful fuzzer that drives the reference and the implementation
                      side by side and compares them after every step.
* `StdioImplementation` an implementation in any language, spoken to over JSONL
                      (`specs/conformance-protocol.md`); `jumpvpn conformance --cmd` uses it.
* `counterexample_script` a failure's counterexample as a scenario script that replays it
                      (`jumpvpn scenarios --impl/--cmd ... FILE`).
* `broken`            deliberately broken implementations that the kit must catch.

The sans-IO core never imports this package (import-linter contract). Needs `hypothesis`
(the `testing` extra). Usage: `docs/conformance.md`.
"""

from jumpvpn_core.testing.counterexample import counterexample_script, counterexample_section
from jumpvpn_core.testing.implementation import (
    Implementation,
    Outcome,
    ReferenceImplementation,
    SessionUnderTest,
    load_implementation,
)
from jumpvpn_core.testing.lockstep import (
    PROTOCOL_VERSION,
    ConformanceFailure,
    FailureKind,
    FailureReport,
    Lockstep,
    ProtocolError,
    format_counterexample,
    parse_counterexample,
    replay_counterexample,
)
from jumpvpn_core.testing.stateful import (
    ConformanceMachine,
    ConformanceResult,
    conformance_machine,
    run_conformance,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ConformanceFailure",
    "ConformanceMachine",
    "ConformanceResult",
    "FailureKind",
    "FailureReport",
    "Implementation",
    "Lockstep",
    "Outcome",
    "ProtocolError",
    "ReferenceImplementation",
    "SessionUnderTest",
    "conformance_machine",
    "counterexample_script",
    "counterexample_section",
    "format_counterexample",
    "load_implementation",
    "parse_counterexample",
    "replay_counterexample",
    "run_conformance",
]
