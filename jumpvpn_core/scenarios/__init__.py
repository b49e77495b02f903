"""Scenario scripts: the risk model told as datadriven stories that a runner replays.

A tool built on the core, never imported by it (an import-linter contract enforces this).
See `jumpvpn_core.scenarios.script` for the file format, `jumpvpn_core.scenarios.runner`
for the commands, and `specs/scenarios/` for the scripts themselves.
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

__all__ = [
    "COMMANDS",
    "SCENARIO_SECRET",
    "SCENARIO_SESSION_ID",
    "EventTextError",
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
