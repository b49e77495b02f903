"""Counterexamples as scenario scripts.

`counterexample_script(report)` turns the counterexample of a `FailureReport` into a
scenario script (`specs/scenarios/README.md`): a header naming the clause the divergence
concerns, `policy` and `init` with the run's own policy, session id, secret and start
time, then one `step <role> <Event> field=...` case per event, each with the reference's
output as its expected block. The script passes under the reference runner
(`jumpvpn scenarios FILE`) and, with the implementation playing the role
(`jumpvpn scenarios --impl package.module:factory FILE` or `--cmd "<program>"`), fails
at the diverging step, printing the difference.

The session secret in a counterexample is the random test secret the kit drew; it is
printed on purpose (the script must recreate the session) and is never a real secret.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jumpvpn_core.events import Event
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.scenarios.eventtext import format_event, format_value
from jumpvpn_core.scenarios.runner import run_script
from jumpvpn_core.scenarios.script import SEPARATOR, parse_script, render_script
from jumpvpn_core.testing.implementation import Outcome
from jumpvpn_core.testing.lockstep import FailureKind, FailureReport, create_params
from jumpvpn_core.testing.lockstep import parse_counterexample as _parse_requests

__all__ = ["counterexample_script", "counterexample_section"]

#: Seed section of the clause each reason code enforces (`specs/reason-codes.md`).
_REASON_SECTIONS: dict[ReasonCode, str] = {
    ReasonCode.LOSS_THRESHOLD_EXCEEDED: "2.1",
    ReasonCode.RECOVERY_WINDOW_EXCEEDED: "2.1",
    ReasonCode.DELIVERY_TIMEOUT: "2.2",
    ReasonCode.UNEXPECTED_SOURCE_ADDRESS: "2.2",
    ReasonCode.PROOF_EXPIRED: "2.3",
    ReasonCode.PROOF_FROM_FUTURE: "2.3",
    ReasonCode.AMBIGUOUS_PATH: "2.3",
    ReasonCode.CHALLENGE_MISMATCH: "2.3",
    ReasonCode.PATH_VALIDATION_IN_PROGRESS: "2.3",
    ReasonCode.AMPLIFICATION_LIMITED: "2.3",
    ReasonCode.RATE_LIMITED: "3.1",
    ReasonCode.REPLAY_DETECTED: "3.2",
    ReasonCode.NONCE_TOO_OLD: "3.2",
    ReasonCode.STALE_STATE_VERSION: "3.3",
    ReasonCode.CANDIDATE_LIMIT_REACHED: "5.2",
    ReasonCode.SESSION_EVICTED: "5.3",
    ReasonCode.TRANSPORT_COLLAPSE: "7",
    ReasonCode.NO_VIABLE_CANDIDATE: "7",
    ReasonCode.VERSION_AHEAD: "8",
    ReasonCode.PROOF_INVALID: "8",
    ReasonCode.OWNERSHIP_AMBIGUOUS: "8",
    ReasonCode.STORE_RECORD_INVALID: "8",
    ReasonCode.SESSION_LIFETIME_EXCEEDED: "8",
    ReasonCode.TRANSPORT_LOST_TTL_EXPIRED: "8",
    ReasonCode.RECOVERY_PARTIAL: "9",
    ReasonCode.CANDIDATE_AVAILABLE: "9",
    ReasonCode.RECOVERY_ROUNDS_EXCEEDED: "9",
    ReasonCode.DEGRADED_TIMEOUT: "9",
}

#: Seed section of the clause each invariant checker enforces (`jumpvpn_core.invariants`).
_INVARIANT_SECTIONS: dict[str, str] = {
    "no_bind_without_proof": "2.3",
    "amplification_capped": "2.3",
    "rejection_mutates_nothing": "3.1",
    "version_monotonic": "3.3",
    "bounded_memory": "5.1",  # §5.2 when it is the candidate set (see below)
    "fail_closed": "8",
    "bounded_recovery": "9",
    "terminated_absorbing": "9",
    "transitions_allowed": "10",
    "one_audit_record_per_transition": "10",
}

#: Effects that only a path validation or a binding produces (§2.3).
_PATH_EFFECTS = frozenset({"SendPathChallenge", "BindTransport"})
_INVARIANT_NAME = re.compile(r"(?:^|\[implementation invariants: |; )([a-z_]+): ")


def _reasons(outcome: Outcome) -> list[str]:
    return [str(e["reason"]) for e in outcome.effects if "reason" in e]


def _reason_section(code: str) -> str | None:
    try:
        return _REASON_SECTIONS.get(ReasonCode(code))
    except ValueError:
        return None


def _invariant_section(report: FailureReport) -> str | None:
    for name in _INVARIANT_NAME.findall(report.detail):
        if name == "bounded_memory" and "candidate" in report.detail:
            return "5.2"
        if name in _INVARIANT_SECTIONS:
            return _INVARIANT_SECTIONS[name]
    return None


def _reason_difference_section(expected: Outcome, actual: Outcome) -> str | None:
    want, got = _reasons(expected), _reasons(actual)
    for index in range(max(len(want), len(got))):
        ours = want[index] if index < len(want) else None
        theirs = got[index] if index < len(got) else None
        if ours == theirs:
            continue
        for code in (ours, theirs):
            section = _reason_section(code) if code is not None else None
            if section is not None:
                return section
    return None


def counterexample_section(report: FailureReport) -> str:
    """The seed section the divergence concerns, or `conformance` when it is not known.

    In order: the first reason code on which the reference and the implementation differ
    (the clause the reference enforced there); an invariant the implementation's states
    broke; a path challenge or binding only one of them emits (§2.3); a state_version
    difference alone (§3.3).
    """
    expected, actual = report.expected, report.actual
    if report.kind is FailureKind.MISMATCH and expected is not None and actual is not None:
        section = _reason_difference_section(expected, actual)
        if section is not None:
            return section
    if report.kind in (FailureKind.INVARIANT, FailureKind.MISMATCH, FailureKind.REFERENCE):
        section = _invariant_section(report)
        if section is not None:
            return section
    if expected is None or actual is None:
        return "conformance"
    kinds_expected = {str(e.get("type")) for e in expected.effects} & _PATH_EFFECTS
    kinds_actual = {str(e.get("type")) for e in actual.effects} & _PATH_EFFECTS
    if kinds_expected != kinds_actual:
        return "2.3"
    if expected.phase == actual.phase and expected.state_version != actual.state_version:
        return "3.3"
    return "conformance"


def _expect(role: Role, label: str, expected: Outcome | None) -> str:
    if expected is None:
        return f"the reference creates the {role.value} session in BIRTH"
    shown = [f"{e['type']} {e['reason']}" if "reason" in e else str(e["type"])
             for e in expected.effects]
    answer = f"{expected.phase.value} v{expected.state_version}"
    if shown:
        answer += f" ({', '.join(shown)})"
    return f"the {role.value} answers {label} with {answer}"


def _step_line(role: Role, event: Event, session_id: bytes) -> str:
    own = f"session_id={format_value(session_id)}"
    tokens = [t for t in format_event(event).split() if t != own]
    return f"step {role.value} {' '.join(tokens)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _steps_line(role: Role, count: int) -> str:
    """What the steps of the script are; a failure at creation has none."""
    if count == 0:
        return (f"# No events: the {role.value} diverges when the session is created "
                "(step 0, the init command).")
    if count == 1:
        return f"# Step 1 is the one {role.value} event of the shrunk run; it diverges."
    return (f"# Steps 1..{count} are the {role.value} events of the shrunk run; the last one "
            "diverges.")


def counterexample_script(report: FailureReport, *, implementation: str = "",
                          reproduce: Sequence[str] = ()) -> str:
    """The counterexample of `report` as a scenario script, expected blocks filled in from
    the reference. `implementation` names the implementation in the title; `reproduce`
    lists command lines shown in the leading comment (how to replay the failure).

    Raises `WireError` when the report carries no counterexample.
    """
    create, events = _parse_requests(report.counterexample)
    role, session_id, secret, start, policy = create_params(create)
    defaults = Policy().to_data()
    overrides = {k: v for k, v in policy.to_data().items() if defaults[k] != v}
    who = implementation or "the implementation"
    lines = [
        f"# Counterexample found by the conformance kit against {_one_line(who)}:",
        f"# {_one_line(report.headline())}",
        _steps_line(role, len(events)),
        "# It passes against the reference: jumpvpn scenarios FILE",
    ]
    lines.extend(f"# It fails against the implementation: {_one_line(c)}" for c in reproduce)
    lines += [
        f"section: {counterexample_section(report)}",
        f"title: {_one_line(who)} diverges from the reference at step {report.step} "
        f"({report.label})",
        f"expect: {_expect(role, report.label, report.expected)}",
        "",
    ]
    commands: list[str] = []
    if overrides:
        commands.append("policy " + " ".join(f"{k}={v}" for k, v in sorted(overrides.items())))
    commands.append(f"init t={start} id={format_value(session_id)} "
                    f"secret={format_value(secret)}")
    commands.extend(_step_line(role, event, session_id) for event in events)
    for command in commands:
        lines += [command, SEPARATOR, ""]
    skeleton = "\n".join(lines)
    script = parse_script(skeleton, "counterexample.txt")
    result = run_script(script)
    return render_script(script, result.outputs)
