"""Deterministic discrete-event simulator: many sessions, virtual time, seeded failures.

The simulator drives the real `step()`; it adds only a world around it. See `World`, and
`ShardedRun` for a world's sessions run across worker processes.
"""

from jumpvpn_core.sim.network import (
    Blackout,
    Drifting,
    DriftProfile,
    Flapping,
    GilbertElliott,
    LinkModel,
    LinkSpec,
)
from jumpvpn_core.sim.scenarios import SCENARIOS, SUITES, ScenarioError, build_scenario
from jumpvpn_core.sim.shards import RunResult, ShardedRun, SimWorkerError
from jumpvpn_core.sim.world import (
    AttackSpec,
    ClusterSpec,
    SessionOutcome,
    SimConfig,
    SimInvariantError,
    World,
    WorldStats,
)

__all__ = [
    "SCENARIOS",
    "SUITES",
    "AttackSpec",
    "Blackout",
    "ClusterSpec",
    "DriftProfile",
    "Drifting",
    "Flapping",
    "GilbertElliott",
    "LinkModel",
    "LinkSpec",
    "RunResult",
    "ScenarioError",
    "SessionOutcome",
    "ShardedRun",
    "SimConfig",
    "SimInvariantError",
    "SimWorkerError",
    "World",
    "WorldStats",
    "build_scenario",
]
