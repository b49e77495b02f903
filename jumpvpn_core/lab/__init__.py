"""The real-kernel-networking lab: namespaces, NAT, loss, dead uplinks, an attacker, and a
WireGuard data plane driven by the core (`jumpvpn lab`, `docs/lab.md`).

An adapter: it runs the reference drivers inside Linux network namespaces and needs root.
The core never imports it (the import-linter contract forbids it).
"""

from __future__ import annotations

from jumpvpn_core.lab.run import CASE_NAMES, run_cases
from jumpvpn_core.lab.world import CaseResult

__all__ = ["CASE_NAMES", "CaseResult", "run_cases"]
