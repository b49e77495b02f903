"""`jumpvpn vectors`: check (or, from a checkout, regenerate) the golden vectors.

`vectors check` replays vector files through `step()`; with no FILE it checks the packaged
canonical vectors (`specs/vectors/*.jsonl`, or `--dir`). Exit 0 all match, 1 a mismatch,
2 a missing or malformed file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jumpvpn_core import jsonsafe
from jumpvpn_core.cli._common import (
    CliError,
    check_output_dir,
    emit_json,
    json_option,
    verb,
)
from jumpvpn_core.errors import JsonDecodeError

__all__ = ["command"]


@click.group("vectors", help="Golden (state, event) -> result vectors: check or generate.")
def command() -> None:
    """`jumpvpn vectors ACTION`."""


def _vector_files(files: tuple[Path, ...], directory: Path | None) -> list[Path]:
    if files:
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise CliError(f"no such file(s): {', '.join(missing)}")
        return list(files)
    if directory is None:
        from jumpvpn_core.specs import SpecsNotFoundError, vectors_dir

        try:
            directory = vectors_dir()
        except SpecsNotFoundError as exc:
            raise CliError(str(exc)) from None
    paths = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    if not paths:
        raise CliError(f"no *.jsonl vector files in {str(directory)!r}")
    return paths


def _read(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read: {exc}") from None
    vectors = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = jsonsafe.loads(line)
        except JsonDecodeError as exc:
            raise CliError(f"{path}:{number}: {exc}") from None
        if not isinstance(data, dict):
            raise CliError(f"{path}:{number}: a vector is a JSON object")
        vectors.append((number, data))
    return vectors


@verb("check", "Replay vector files through step() (default: the packaged vectors).")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path), metavar="[FILE]...")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="directory of *.jsonl vectors (default: the packaged specs/vectors)")
@json_option
def check(files: tuple[Path, ...], directory: Path | None, as_json: bool) -> int:
    """Handler of `jumpvpn vectors check`."""
    from jumpvpn_core.audit.vectors import VectorError, replay_vector

    per_file: dict[str, dict[str, Any]] = {}
    mismatches: list[dict[str, Any]] = []
    for path in _vector_files(files, directory):
        vectors = _read(path)
        failed = 0
        for number, vector in vectors:
            try:
                problems = replay_vector(vector)
            except VectorError as exc:
                raise CliError(f"{path}:{number}: not a vector: "
                               f"{type(exc).__name__}: {exc}") from None
            if problems:
                failed += 1
                mismatches.append({"file": str(path), "line": number,
                                   "id": vector.get("id"), "problems": problems})
                if not as_json:
                    click.echo(f"{path}: {vector.get('id')}: {'; '.join(problems)}")
        per_file[str(path)] = {"vectors": len(vectors), "failed": failed}
    total = sum(f["vectors"] for f in per_file.values())
    failed_total = sum(f["failed"] for f in per_file.values())
    if as_json:
        emit_json({"files": per_file, "total": total, "matched": total - failed_total,
                   "mismatches": mismatches, "ok": failed_total == 0})
    else:
        click.echo(f"{total - failed_total}/{total} vectors match")
    return 1 if failed_total else 0


@verb("generate", "Write the vectors from the reference core (a checkout's specs/vectors).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="output directory (default: specs/vectors of the source checkout)")
@json_option
def generate(out: Path | None, as_json: bool) -> int:
    """Handler of `jumpvpn vectors generate`."""
    from jumpvpn_core.audit.vectors import write_vectors

    if out is None:
        from jumpvpn_core.specs import checkout_root

        root = checkout_root()
        if root is None:
            raise CliError("the default --out (specs/vectors) needs a source checkout; "
                           "give --out DIR")
        out = root / "specs" / "vectors"
    check_output_dir(out, "--out")
    counts = write_vectors(out)
    if as_json:
        emit_json({"out": str(out), "files": counts})
    else:
        for name, count in counts.items():
            click.echo(f"{out / name}: {count} vectors")
    return 0


command.add_command(check)
command.add_command(generate)
