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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The kit's names load on first use (PEP 562): a program serving the conformance protocol
# (`python -m jumpvpn_core.testing.stdio_reference`) imports only what it needs, and does
# not pay for Hypothesis or the scenario runner before it can answer `hello`.
_MODULES = {
    "counterexample": ("counterexample_script", "counterexample_section"),
    "implementation": ("Implementation", "Outcome", "ReferenceImplementation",
                       "SessionUnderTest", "load_implementation"),
    "lockstep": ("PROTOCOL_VERSION", "ConformanceFailure", "FailureKind", "FailureReport",
                 "Lockstep", "ProtocolError", "format_counterexample", "parse_counterexample",
                 "replay_counterexample"),
    "stateful": ("ConformanceMachine", "ConformanceResult", "conformance_machine",
                 "run_conformance"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
