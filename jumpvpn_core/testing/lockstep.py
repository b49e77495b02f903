"""Drive the reference and an implementation under test side by side, step by step.

`Lockstep` is the comparison engine shared by the Hypothesis `ConformanceMachine`, the
counterexample replayer and the `jumpvpn conformance` driver. After every step it compares
phase, state_version, reason codes and normalised effects, runs every invariant checker
(`jumpvpn_core.subject.violations_of`) on the reference and, when the implementation
exposes its states, on the implementation too. The first problem raises
`ConformanceFailure`, whose report names the step and carries a replayable counterexample.

Counterexamples are printed by one function, `format_counterexample`, and read back by
`parse_counterexample`; the format is the request lines of the conformance protocol
(`specs/conformance-protocol.md`) without their `v`/`seq`/`session` envelope.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Sequence
from typing import Any

import attrs

from jumpvpn_core.forms import (
    FormError,
    JsonObject,
    event_from_data,
    event_to_data,
    parse_json,
    policy_from_data,
    policy_to_data,
)
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import SessionState
from jumpvpn_core.subject import (
    Implementation,
    Outcome,
    ProtocolError,
    ReferenceImplementation,
    ReferenceSession,
    SessionUnderTest,
    violations_of,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ConformanceFailure",
    "FailureKind",
    "FailureReport",
    "Lockstep",
    "ProtocolError",
    "WireError",
    "format_counterexample",
    "parse_counterexample",
    "replay_counterexample",
]

#: Version of the conformance protocol (`specs/conformance-protocol.md`).
PROTOCOL_VERSION = 3

WireError = FormError
"""A JSON message does not have the shape the protocol requires (`jumpvpn_core.forms`)."""


class FailureKind(enum.StrEnum):
    """Why a conformance run failed."""

    MISMATCH = "mismatch"
    """The implementation's outcome differs from the reference's."""
    INVARIANT = "invariant"
    """The implementation's own states violate an invariant checker."""
    PROTOCOL = "protocol"
    """The program broke the protocol: malformed output, crash, hang."""
    CRASH = "crash"
    """An in-process implementation raised an exception."""
    REFERENCE = "reference"
    """The reference itself violated an invariant (a core bug)."""


@attrs.frozen
class FailureReport:
    """The first problem of one run: where, what, and how to reproduce it."""

    kind: FailureKind
    step: int
    """Index of the failing request in the counterexample (0 is the create request)."""
    label: str
    """`create` or the event type name of the failing step."""
    detail: str
    counterexample: str
    expected: Outcome | None = attrs.field(default=None, eq=False, repr=False)
    """The reference's outcome at the failing step, when it got that far."""
    actual: Outcome | None = attrs.field(default=None, eq=False, repr=False)
    """The implementation's outcome at the failing step, when it gave one."""

    def headline(self) -> str:
        """One line: kind, step and what went wrong."""
        return f"{self.kind.value.upper()} at step {self.step} ({self.label}): {self.detail}"

    def render(self) -> str:
        """The headline and the counterexample, ready to print."""
        return (f"{self.headline()}\ncounterexample ({self.step + 1} request(s), "
                f"replayable):\n{self.counterexample}")


class ConformanceFailure(AssertionError):  # noqa: N818 -- a test failure, like pytest's Failed
    """Raised by `Lockstep` on the first divergence; carries the `FailureReport`."""

    def __init__(self, report: FailureReport) -> None:
        super().__init__(report.render())
        self.report = report


def format_counterexample(requests: Sequence[JsonObject]) -> str:
    """The one place counterexamples are printed: one JSON request per line."""
    return "\n".join(json.dumps(r, separators=(",", ":")) for r in requests)


def parse_counterexample(text: str) -> tuple[JsonObject, list[Any]]:
    """Read `format_counterexample` output back: the create request and the events.

    Raises `WireError` on anything malformed.
    """
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise WireError("empty counterexample")
    parsed: list[JsonObject] = []
    for number, line in enumerate(lines, start=1):
        try:
            value = parse_json(line)
        except FormError as exc:
            raise WireError(f"line {number}: {exc}") from None
        if not isinstance(value, dict):
            raise WireError(f"line {number}: not a JSON object")
        parsed.append(value)
    create = parsed[0]
    if create.get("op") != "create":
        raise WireError("the first line must be a create request")
    events = []
    for number, request in enumerate(parsed[1:], start=2):
        if request.get("op") != "step":
            raise WireError(f"line {number}: expected a step request")
        events.append(event_from_data(request.get("event")))
    return create, events


def create_request(role: Role, session_id: bytes, secret: bytes, now_ms: int,
                   policy: Policy) -> JsonObject:
    """The create request (without envelope) for these session parameters."""
    return {
        "op": "create",
        "role": role.value,
        "session_id": session_id.hex(),
        "secret": secret.hex(),
        "now_ms": now_ms,
        "policy": policy_to_data(policy),
    }


_ROLES = {role.value: role for role in Role}
_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def create_params(request: JsonObject) -> tuple[Role, bytes, bytes, int, Policy]:
    """Inverse of `create_request`; raises `WireError` on anything malformed."""
    role_text = request.get("role")
    if not isinstance(role_text, str) or role_text not in _ROLES:
        raise WireError(f"create: role must be one of {sorted(_ROLES)}")
    role = _ROLES[role_text]
    hex_texts = (request.get("session_id"), request.get("secret"))
    if not all(isinstance(text, str) and _HEX.fullmatch(text) for text in hex_texts):
        raise WireError("create: session_id and secret must be lower-case hex")
    session_id, secret = (bytes.fromhex(str(text)) for text in hex_texts)
    now_ms = request.get("now_ms")
    if type(now_ms) is not int or now_ms < 0:
        raise WireError("create: now_ms must be a non-negative integer")
    return role, session_id, secret, now_ms, policy_from_data(request.get("policy"))


def _first_difference(expected: Outcome, actual: Outcome) -> str | None:
    if actual.phase != expected.phase:
        return f"phase: reference {expected.phase.value}, implementation {actual.phase}"
    if actual.state_version != expected.state_version:
        return (f"state_version: reference {expected.state_version}, "
                f"implementation {actual.state_version}")
    want = [e["reason"] for e in expected.effects if "reason" in e]
    got = [e.get("reason") for e in actual.effects if "reason" in e]
    if want != got:
        return f"reason codes: reference {want}, implementation {got}"
    for index, (e, a) in enumerate(zip(expected.effects, actual.effects, strict=False)):
        if e != a:
            return f"effect #{index}: reference {json.dumps(e)}, implementation {json.dumps(a)}"
    if len(expected.effects) != len(actual.effects):
        extra = expected.effects[len(actual.effects):] or actual.effects[len(expected.effects):]
        who = "reference" if len(expected.effects) > len(actual.effects) else "implementation"
        return (f"effects: reference has {len(expected.effects)}, implementation "
                f"{len(actual.effects)}; only the {who} emits {json.dumps(extra[0])}")
    return None


class Lockstep:
    """One session of the reference and one of the implementation, fed the same events."""

    def __init__(self, implementation: Implementation) -> None:
        self.implementation = implementation
        self.requests: list[JsonObject] = []
        self.reference: ReferenceSession | None = None
        self._sut: SessionUnderTest | None = None
        self._sut_state: SessionState | None = None

    @property
    def state(self) -> SessionState:
        """The reference's current state (the oracle the peer model reads)."""
        if self.reference is None:
            raise RuntimeError("no session yet: call create() first")
        return self.reference.state

    def _fail(self, kind: FailureKind, label: str, detail: str,
              expected: Outcome | None = None,
              actual: Outcome | None = None) -> ConformanceFailure:
        report = FailureReport(kind, len(self.requests) - 1, label, detail,
                               format_counterexample(self.requests), expected, actual)
        return ConformanceFailure(report)

    def create(self, role: Role, session_id: bytes, secret: bytes, now_ms: int,
               policy: Policy) -> None:
        """Create the session on both sides and compare the initial outcomes."""
        self.requests.append(create_request(role, session_id, secret, now_ms, policy))
        self.reference, expected = ReferenceImplementation().create_session(
            role, session_id, secret, now_ms, policy)
        try:
            self._sut, actual = self.implementation.create_session(
                role, session_id, secret, now_ms, policy)
        except ProtocolError as exc:
            raise self._fail(FailureKind.PROTOCOL, "create", str(exc)) from None
        except Exception as exc:
            raise self._fail(FailureKind.CRASH, "create",
                             f"{type(exc).__name__}: {exc}") from None
        difference = _first_difference(expected, actual)
        if difference is not None:
            raise self._fail(FailureKind.MISMATCH, "create", difference, expected, actual)
        self._sut_state = actual.state

    def apply(self, event: Any) -> Outcome:
        """Step both sides with `event`; raise `ConformanceFailure` on any difference."""
        if self.reference is None or self._sut is None:
            raise RuntimeError("no session yet: call create() first")
        label = type(event).__name__
        self.requests.append({"op": "step", "event": event_to_data(event)})
        expected = self.reference.step(event)
        broken = violations_of(None, event, expected)
        if broken:
            raise self._fail(FailureKind.REFERENCE, label, "; ".join(map(str, broken)))
        try:
            actual = self._sut.step(event)
        except ProtocolError as exc:
            raise self._fail(FailureKind.PROTOCOL, label, str(exc), expected) from None
        except Exception as exc:
            raise self._fail(FailureKind.CRASH, label, f"{type(exc).__name__}: {exc}",
                             expected) from None
        violations = [str(v) for v in violations_of(self._sut_state, event, actual)]
        self._sut_state = actual.state
        difference = _first_difference(expected, actual)
        if difference is not None:
            if violations:
                difference += f" [implementation invariants: {'; '.join(violations)}]"
            raise self._fail(FailureKind.MISMATCH, label, difference, expected, actual)
        if violations:
            raise self._fail(FailureKind.INVARIANT, label, "; ".join(violations), expected,
                             actual)
        return expected


def replay_counterexample(implementation: Implementation, text: str) -> FailureReport | None:
    """Replay a printed counterexample; return the failure it reproduces, or None.

    Raises `WireError` when `text` is not a counterexample.
    """
    create, events = parse_counterexample(text)
    lockstep = Lockstep(implementation)
    try:
        lockstep.create(*create_params(create))
        for event in events:
            lockstep.apply(event)
    except ConformanceFailure as failure:
        return failure.report
    return None
