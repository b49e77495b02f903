"""Benchmarks for jumpvpn-core: `python -m benchmarks` (full) or `--smoke` (paths only).

Every `benchmarks/bench_*.py` module that exposes `run(smoke: bool) -> list[BenchResult]`
is discovered and run by `benchmarks.__main__`. Results are described in
`docs/performance.md`.
"""
