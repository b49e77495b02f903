"""Where the packaged specification data lives: scenario scripts, golden vectors, tables.

`specs/` at the repository root is the one copy in the source tree. A built wheel carries
it as the package resource directory `jumpvpn_core/_specs` (copied at build time), read
here through `importlib.resources`; a source checkout or an editable install reads the
checkout's `specs/` directly. Callers that take a `--dir` option pass it instead.

Not part of the sans-IO core (it reads files); the CLI and tools use it.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["SpecsNotFoundError", "checkout_root", "scenarios_dir", "specs_dir", "vectors_dir"]

_PACKAGED = "_specs"


class SpecsNotFoundError(FileNotFoundError):
    """Neither the packaged specs nor a checkout's `specs/` could be found."""


def checkout_root() -> Path | None:
    """The source checkout this package runs from (holds `specs/`, `tests/`, `tools/`),
    or None when it runs from an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    if (root / "specs").is_dir() and (root / "tools").is_dir() and (root / "tests").is_dir():
        return root
    return None


def specs_dir() -> Path:
    """The specification directory: packaged data first, then the checkout's `specs/`.

    Raises `SpecsNotFoundError` when neither exists (an install from a zip, say).
    """
    packaged = importlib.resources.files("jumpvpn_core").joinpath(_PACKAGED)
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    root = checkout_root()
    if root is not None:
        return root / "specs"
    raise SpecsNotFoundError(
        "the packaged specs (jumpvpn_core/_specs) are missing and this is not a source "
        "checkout; reinstall the wheel or pass --dir"
    )


def scenarios_dir() -> Path:
    """The scenario scripts (`specs/scenarios/`)."""
    return specs_dir() / "scenarios"


def vectors_dir() -> Path:
    """The golden vectors (`specs/vectors/`)."""
    return specs_dir() / "vectors"
