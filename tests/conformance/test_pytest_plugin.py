"""`pytest --jumpvpn-impl=package.module:factory` runs the conformance machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _pytest(tmp_path: Path, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own interpreter, fixed arguments
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), str(tmp_path), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env=env,
    )


def test_plugin_passes_the_reference(tmp_path: Path) -> None:
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {**os.environ, "JUMPVPN_HYPOTHESIS_DIR": str(cache)}
    env.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    proc = _pytest(work, "--jumpvpn-impl=jumpvpn_core.testing:ReferenceImplementation",
                   "--jumpvpn-examples=5", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    # Hypothesis's files went to the kit's cache directory, not into the working directory.
    assert not (work / ".hypothesis").exists()
    assert (cache / ".gitignore").is_file()


def test_plugin_fails_a_broken_implementation_with_its_counterexample(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--jumpvpn-impl=jumpvpn_core.testing.broken:forgets_version_bump",
                   "--jumpvpn-examples=40")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "does not conform" in proc.stdout
    assert "MISMATCH at step" in proc.stdout
    assert '{"op":"create"' in proc.stdout


def test_the_plugin_loads_without_hypothesis() -> None:
    # pytest loads the entry point in every run where jumpvpn-core is installed; a project
    # without Hypothesis must still be able to run its tests.
    code = ("import sys; sys.modules['hypothesis'] = None; "
            "import jumpvpn_core.pytest_plugin as p; print(p.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: S603 - our own interpreter and a fixed script
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "jumpvpn_core.pytest_plugin"
