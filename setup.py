"""Build hook: ship `specs/` inside the wheel as `jumpvpn_core/_specs`.

All metadata lives in pyproject.toml. `specs/` at the repository root stays the one copy
of the scenario scripts, golden vectors and normative tables; building a wheel copies it
into the package so that `jumpvpn scenarios` and `jumpvpn vectors check` work from an
installed wheel (read through `importlib.resources`, see `jumpvpn_core.specs`). Editable
installs skip the copy: there `jumpvpn_core.specs` finds the checkout's `specs/`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SPECS = Path(__file__).resolve().parent / "specs"


class BuildWithSpecs(build_py):
    """`build_py` plus a copy of `specs/` to `<build>/jumpvpn_core/_specs`."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not SPECS.is_dir():
            raise SystemExit(f"cannot build: {SPECS} is missing (is this a complete sdist?)")
        target = Path(self.build_lib) / "jumpvpn_core" / "_specs"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(SPECS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithSpecs})
