"""Scenario scripts: the risk model told as datadriven stories that a runner replays.

A tool built on the core, never imported by it (an import-linter contract enforces this).
Modules: `script` (the file format), `world` (the runner's state and how a role is
stepped), `core_cmds` and `gateway_cmds` (the two command sets, explicit tables with
distinct names), `sinks` (telemetry sinks for the gateway scripts), `standin` (a subject
playing one role), `runner` (the loop). The scripts themselves are in `specs/scenarios/`.
"""

from jumpvpn_core.scenarios.eventtext import (
    EventTextError,
    format_effect,
    format_event,
    parse_event,
)
from jumpvpn_core.scenarios.runner import (
    COMMANDS,
    SCENARIO_SECRET,
    SCENARIO_SESSION_ID,
    ScriptResult,
    run_script,
    run_script_file,
)
from jumpvpn_core.scenarios.script import Script, ScriptError, parse_script
from jumpvpn_core.scenarios.standin import RoleStandIn

__all__ = [
    "COMMANDS",
    "SCENARIO_SECRET",
    "SCENARIO_SESSION_ID",
    "EventTextError",
    "RoleStandIn",
    "Script",
    "ScriptError",
    "ScriptResult",
    "format_effect",
    "format_event",
    "parse_event",
    "parse_script",
    "run_script",
    "run_script_file",
]
