"""The `hypothesis` entry point (`[project.entry-points.hypothesis]` in `pyproject.toml`).

Hypothesis calls `setup_hook()` at the end of its own import. This module imports nothing
at load time: the hook imports `jumpvpn_core.testing.hypothesis_setup`, which registers the
event type strategies and the `jumpvpn` profile as it is imported. When that module is the
one importing Hypothesis right now, it is left alone: it registers at the end of its own
import.
"""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["setup_hook"]

_SETUP = "jumpvpn_core.testing.hypothesis_setup"


def setup_hook() -> None:
    """Register the kit's type strategies and settings profile with Hypothesis."""
    if _SETUP in sys.modules:
        return  # imported already, or being imported: it registers itself
    try:
        importlib.import_module(_SETUP)
    except Exception as exc:
        sys.modules.pop(_SETUP, None)
        warnings.warn(f"jumpvpn-core could not register its Hypothesis strategies and "
                      f"profile: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
