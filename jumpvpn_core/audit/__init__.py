"""Audit tooling: golden vectors, trace verification, bounded exploration, traceability.

This is a tool layer on top of the core. The core never imports it (the import-linter
contract in `pyproject.toml` forbids it), so nothing here can change what `step()` does.
"""
