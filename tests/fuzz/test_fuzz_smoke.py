"""CI smoke budget of the decoder fuzzing (`docs/fuzzing.md` has the long run).

Three checks, seconds in all: every committed corpus file goes through its target (the
corpus is a regression suite: inputs that once found a bug stay found); a few hundred
seeded random mutations of each seed go through each target in-process; and, where atheris
is installed, a short coverage-guided run of every target at once in a subprocess. Each
fails on any exception a decoder's own typed family does not account for.
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

pytestmark = pytest.mark.requirement("RM-10")

CORPUS = Path(__file__).parent / "corpus"
ROOT = Path(__file__).resolve().parents[2]
MUTATIONS_PER_SEED = 40
ATHERIS_RUNS = 4_000


def _seeds(name: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((CORPUS / name).iterdir())]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One libFuzzer-like mutation: flip, insert, delete, duplicate or splice bytes."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if choice == 0 and buf:
            buf[at % len(buf)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            buf[at:at] = bytes([rng.choice(b'0123456789{}[]":,-.eE\\u\x00\xff ')])
        elif choice == 2 and buf:
            del buf[at:at + rng.randint(1, 8)]
        elif choice == 3:
            buf[at:at] = buf[at:at + rng.randint(1, 16)] * rng.randint(1, 64)
        elif choice == 4:
            buf[at:at] = rng.choice([b"9" * 5000, b"[" * 200, b"\\ud800", b"NaN", b"1e999",
                                     b"%\xc3\xa9", b"0x10", b"FF", b"null", b"-1"])
        else:
            buf = buf[:at]
    return bytes(buf)


def test_every_target_has_a_seed_corpus() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(TARGETS)
    assert all(_seeds(name) for name in TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_committed_corpus_replays_through_its_decoder(name: str) -> None:
    for seed in _seeds(name):
        TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_random_mutations_of_the_corpus_raise_only_typed_errors(name: str) -> None:
    rng = random.Random(f"fuzz-smoke-{name}")
    for seed in _seeds(name):
        for _ in range(MUTATIONS_PER_SEED):
            TARGETS[name](_mutate(rng, seed))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install -e '.[test]' on Linux has it)")
def test_a_short_coverage_guided_run_of_every_decoder_finds_nothing(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for index, name in enumerate(TARGETS):
        for number, seed in enumerate(_seeds(name)):
            (seeds / f"{name}-{number}").write_bytes(bytes([index]) + seed)
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(  # noqa: S603 -- our own module, fixed arguments
        [sys.executable, "-m", "tests.fuzz.run", "all", f"-runs={ATHERIS_RUNS}",
         "-timeout=20", "-seed=1", f"-artifact_prefix={tmp_path}/", str(work), str(seeds)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Done {ATHERIS_RUNS} runs" in run.stderr
