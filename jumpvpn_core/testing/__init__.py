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

import importlib
from typing import TYPE_CHECKING, Any

# Names resolve on first use (PEP 562), so that `jumpvpn_core.testing.attacker`, which needs
# no Hypothesis, can be imported by `jumpvpn demo` on a base install.
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
    from jumpvpn_core.testing.wire import PROTOCOL_VERSION

_LAZY: dict[str, str] = {
    "ConformanceFailure": "jumpvpn_core.testing.lockstep",
    "ConformanceMachine": "jumpvpn_core.testing.stateful",
    "ConformanceResult": "jumpvpn_core.testing.stateful",
    "FailureKind": "jumpvpn_core.testing.lockstep",
    "FailureReport": "jumpvpn_core.testing.lockstep",
    "Implementation": "jumpvpn_core.testing.implementation",
    "Lockstep": "jumpvpn_core.testing.lockstep",
    "Outcome": "jumpvpn_core.testing.implementation",
    "PROTOCOL_VERSION": "jumpvpn_core.testing.wire",
    "ProtocolError": "jumpvpn_core.testing.lockstep",
    "ReferenceImplementation": "jumpvpn_core.testing.implementation",
    "SessionUnderTest": "jumpvpn_core.testing.implementation",
    "conformance_machine": "jumpvpn_core.testing.stateful",
    "counterexample_script": "jumpvpn_core.testing.counterexample",
    "counterexample_section": "jumpvpn_core.testing.counterexample",
    "format_counterexample": "jumpvpn_core.testing.lockstep",
    "load_implementation": "jumpvpn_core.testing.implementation",
    "parse_counterexample": "jumpvpn_core.testing.lockstep",
    "replay_counterexample": "jumpvpn_core.testing.lockstep",
    "run_conformance": "jumpvpn_core.testing.stateful",
}


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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
