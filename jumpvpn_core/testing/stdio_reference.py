"""The program side of the conformance protocol, serving the reference (or any Python
`Implementation`) over stdin/stdout:

    python -m jumpvpn_core.testing.stdio_reference [--impl package.module:factory]

It is the example implementation of `specs/conformance-protocol.md`: read one JSON request
per line, answer one JSON response per line, flush after each. A malformed request gets an
`ok: false` response; the program never exits on one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from jumpvpn_core.forms import JsonObject, event_from_data, parse_json
from jumpvpn_core.subject import (
    Implementation,
    Outcome,
    ReferenceImplementation,
    SessionUnderTest,
)
from jumpvpn_core.testing.implementation import load_implementation
from jumpvpn_core.testing.lockstep import PROTOCOL_VERSION, WireError, create_params

__all__ = ["main", "serve"]


def _outcome(seq: object, outcome: Outcome, effects: bool) -> JsonObject:
    out: JsonObject = {"v": PROTOCOL_VERSION, "seq": seq, "ok": True,
                       "phase": outcome.phase.value, "state_version": outcome.state_version}
    if effects:
        out["effects"] = list(outcome.effects)
    return out


def _handle(impl: Implementation, sessions: dict[str, SessionUnderTest],
            request: Any) -> JsonObject | None:
    if not isinstance(request, dict):
        raise WireError("a request must be a JSON object")
    if request.get("v") != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {request.get('v')!r}")
    seq = request.get("seq")
    op = request.get("op")
    if op == "hello":
        return {"v": PROTOCOL_VERSION, "seq": seq, "ok": True, "protocol": PROTOCOL_VERSION,
                "name": impl.name}
    if op == "bye":
        return None
    handle = request.get("session")
    if not isinstance(handle, str):
        raise WireError("field 'session' must be a string")
    if op == "create":
        session, outcome = impl.create_session(*create_params(request))
        sessions.clear()  # one live session at a time keeps memory bounded
        sessions[handle] = session
        return _outcome(seq, outcome, effects=False)
    if op == "step":
        if handle not in sessions:
            raise WireError(f"unknown session {handle!r}")
        return _outcome(seq, sessions[handle].step(event_from_data(request.get("event"))),
                        effects=True)
    raise WireError(f"unknown op {op!r}")


def serve(impl: Implementation, stdin: Iterable[str], stdout: IO[str]) -> int:
    """Answer requests until `bye` or end of input. Returns the exit status (0)."""
    sessions: dict[str, SessionUnderTest] = {}
    for line in stdin:
        if not line.strip():
            continue
        seq: object = None
        try:
            request = parse_json(line)
            seq = request.get("seq") if isinstance(request, dict) else None
            response = _handle(impl, sessions, request)
        except ValueError as exc:  # WireError (a bad request) or the implementation refusing
            response = {"v": PROTOCOL_VERSION, "seq": seq, "ok": False, "error": str(exc)}
        if response is None:
            break
        stdout.write(json.dumps(response, separators=(",", ":")) + "\n")
        stdout.flush()
    impl.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m jumpvpn_core.testing.stdio_reference`."""
    parser = argparse.ArgumentParser(prog="python -m jumpvpn_core.testing.stdio_reference",
                                     description="Serve an implementation over the "
                                                 "conformance protocol (JSONL on stdio).")
    parser.add_argument("--impl", default=None, metavar="package.module:factory",
                        help="serve this implementation instead of the reference")
    args = parser.parse_args(argv)
    impl: Implementation = ReferenceImplementation()
    if args.impl is not None:
        try:
            impl = load_implementation(args.impl)
        except ValueError as exc:
            print(f"stdio_reference: {exc}", file=sys.stderr)
            return 2
    return serve(impl, sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
