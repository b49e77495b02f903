"""Checkout-only tools: they read the source tree (`specs/`, `tests/`, `pyproject.toml`) and
are not part of the installed package.

- `python -m tools.mutation`: mutation testing of the core with mutmut (docs/mutation.md).
- `python -m tools.traceability` (or `jumpvpn traceability` from a checkout): the
  requirement -> code -> tests matrix (docs/traceability.md).
- `python -m tools.spec_tables`: read the normative tables in `specs/`, check or rewrite
  `specs/state-diagram.md`; tests use it to keep `specs/` and the code in step.
"""
