"""Commit rate of each store adapter beside the raw client doing the same round trip.

For every store the benchmark times `compare_and_set` (one committed version step per
call) and, in the same run and interleaved with it, the bare driver call the adapter
makes underneath:

* sqlite:   `UPDATE sessions SET ... WHERE session_id = ? AND version = ?` on a second
            sqlite3 connection to the same WAL file, same pragmas;
* redis:    a bare EVALSHA of the same compare-and-set script (and, for scale, a plain SET);
* postgres: a bare `UPDATE <table> SET ... WHERE session_id = %s AND version = %s` on a
            second autocommit psycopg connection.

The figure is the median over repeats of the mean time per commit in one batch; the
ratio is adapter / raw, target <= 1.3x. Run:

    python -m benchmarks.bench_stores            # full run, prints the table
    python -m benchmarks.bench_stores --smoke    # a few commits each, checks they succeeded

Redis and PostgreSQL come from JUMPVPN_REDIS_URL / JUMPVPN_POSTGRES_URL (loopback
defaults); an unreachable service is skipped with a message. Keys and tables are unique
per run and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

TARGET_RATIO = 1.3
DATA = os.urandom(600)  # about the size of an encoded session state
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

Commit = Callable[[int], bool]  # commit version n -> n + 1; True iff it won


class ServiceSkippedError(Exception):
    """A service needed by one benchmark is not reachable."""


def _time_batch(commit: Commit, start: int, count: int) -> float:
    """Mean ns per commit of `count` sequential commits from version `start`."""
    begin = time.perf_counter_ns()
    for n in range(start, start + count):
        if not commit(n):
            raise AssertionError(f"commit {n} -> {n + 1} did not win")
    return (time.perf_counter_ns() - begin) / count


def _compare(
    name: str,
    adapter: Commit,
    peers: dict[str, tuple[Commit, Callable[[], int]]],
    adapter_version: Callable[[], int],
    *,
    batch: int,
    repeats: int,
    notes: str,
) -> list[dict[str, Any]]:
    """Interleave batches of the adapter and each peer; one row per peer."""
    adapter_ns: list[float] = []
    peer_ns: dict[str, list[float]] = {p: [] for p in peers}
    for repeat in range(repeats):
        if repeat % 2 == 0:  # alternate who goes first, so neither always pays for the other
            adapter_ns.append(_time_batch(adapter, adapter_version(), batch))
        for peer, (commit, version) in peers.items():
            peer_ns[peer].append(_time_batch(commit, version(), batch))
        if repeat % 2 == 1:
            adapter_ns.append(_time_batch(adapter, adapter_version(), batch))
    median = statistics.median(adapter_ns)
    rows = []
    for peer, samples in peer_ns.items():
        raw = statistics.median(samples)
        ratio = median / raw
        checked = "SET" not in peer  # a plain SET is shown for scale, not as the target
        rows.append(
            {
                "name": name,
                "median_ns": round(median),
                "unit": "ns/commit",
                "peer": f"{peer} ({round(raw)} ns)",
                "ratio": round(ratio, 3),
                "target": f"<= {TARGET_RATIO}x raw" if checked else "(for scale only)",
                "met": ratio <= TARGET_RATIO if checked else None,
                "notes": f"{notes}; adapter {1e9 / median:,.0f} commits/s, "
                f"raw {1e9 / raw:,.0f}/s; median of {repeats} x {batch}",
            }
        )
    return rows


def bench_sqlite(batch: int, repeats: int) -> list[dict[str, Any]]:
    from jumpvpn_core.stores.sqlite import SqliteStore

    with tempfile.TemporaryDirectory(prefix="jumpvpn-bench-") as tmp:
        path = str(Path(tmp) / "bench.db")
        store = SqliteStore(path)
        raw = sqlite3.connect(path, isolation_level=None)
        try:
            raw.execute("PRAGMA synchronous = FULL")
            a, b = os.urandom(16), os.urandom(16)
            store.create(a, 0, DATA)
            store.create(b, 0, DATA)
            raw_sql = (
                "UPDATE sessions SET version = ?, data = ?,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE session_id = ? AND version = ?"
            )

            def adapter(n: int) -> bool:
                return store.compare_and_set(a, n, n + 1, DATA)

            def bare(n: int) -> bool:
                return raw.execute(raw_sql, (n + 1, DATA, b, n)).rowcount == 1

            def version_of(sid: bytes) -> Callable[[], int]:
                def current() -> int:
                    record = store.get(sid)
                    assert record is not None
                    return record.version

                return current

            return _compare(
                "stores.sqlite.compare_and_set",
                adapter,
                {"raw sqlite3 UPDATE": (bare, version_of(b))},
                version_of(a),
                batch=batch,
                repeats=repeats,
                notes="WAL, synchronous=FULL, tmp file",
            )
        finally:
            raw.close()
            store.close()


def bench_redis(batch: int, repeats: int) -> list[dict[str, Any]]:
    import redis

    from jumpvpn_core.stores import StoreError
    from jumpvpn_core.stores.redis import CAS_SCRIPT_SHA, open_redis_store

    base = os.environ.get("JUMPVPN_REDIS_URL") or DEFAULT_REDIS_URL
    prefix = f"jumpvpn-bench:{uuid.uuid4().hex}:"
    try:
        store = open_redis_store(
            urlsplit(base)._replace(
                query=urlencode({"prefix": prefix, "durability": "none"})).geturl()
        )
    except StoreError as exc:
        raise ServiceSkippedError(f"redis at {base}: {exc}") from exc
    raw = redis.Redis.from_url(base, socket_timeout=5, socket_connect_timeout=2)
    try:
        a, b = os.urandom(16), os.urandom(16)
        store.create(a, 0, DATA)
        store.create(b, 0, DATA)
        key_b = store.key(b)
        revision_key = prefix + "@revision"
        set_key = prefix + "plain-set"
        set_counter = [0]

        def adapter(n: int) -> bool:
            return store.compare_and_set(a, n, n + 1, DATA)

        def bare_evalsha(n: int) -> bool:
            reply = raw.evalsha(CAS_SCRIPT_SHA, 2, key_b, revision_key, str(n), str(n + 1), DATA)
            return bool(reply[0] == 1)

        def plain_set(n: int) -> bool:
            set_counter[0] = n + 1
            return bool(raw.set(set_key, DATA))

        def version_of(sid: bytes) -> Callable[[], int]:
            def current() -> int:
                record = store.get(sid)
                assert record is not None
                return record.version

            return current

        return _compare(
            "stores.redis.compare_and_set",
            adapter,
            {
                "raw EVALSHA (same script)": (bare_evalsha, version_of(b)),
                "raw plain SET": (plain_set, lambda: set_counter[0]),
            },
            version_of(a),
            batch=batch,
            repeats=repeats,
            notes="loopback, one connection",
        )
    finally:
        for key in raw.scan_iter(match=prefix + "*"):
            raw.delete(key)
        raw.close()
        store.close()


def bench_postgres(batch: int, repeats: int) -> list[dict[str, Any]]:
    import psycopg
    from psycopg import sql

    from jumpvpn_core.stores import StoreError
    from jumpvpn_core.stores.postgres import open_postgres_store

    base = os.environ.get("JUMPVPN_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    table = f"jumpvpn_bench_{uuid.uuid4().hex}"
    try:
        store = open_postgres_store(
            urlsplit(base)._replace(query=urlencode({"table": table})).geturl()
        )
    except StoreError as exc:
        raise ServiceSkippedError(f"postgres at {base}: {exc}") from exc
    raw = psycopg.connect(base, autocommit=True, connect_timeout=2)
    try:
        a, b = os.urandom(16), os.urandom(16)
        store.create(a, 0, DATA)
        store.create(b, 0, DATA)
        raw_sql = sql.SQL(
            "UPDATE {} SET version = %s, data = %s, updated_at = now()"
            " WHERE session_id = %s AND version = %s"
        ).format(sql.Identifier(table))

        def adapter(n: int) -> bool:
            return store.compare_and_set(a, n, n + 1, DATA)

        def bare(n: int) -> bool:
            return raw.execute(raw_sql, (n + 1, DATA, b, n)).rowcount == 1

        def version_of(sid: bytes) -> Callable[[], int]:
            def current() -> int:
                record = store.get(sid)
                assert record is not None
                return record.version

            return current

        return _compare(
            "stores.postgres.compare_and_set",
            adapter,
            {"raw psycopg UPDATE": (bare, version_of(b))},
            version_of(a),
            batch=batch,
            repeats=repeats,
            notes="loopback, autocommit, fsync as configured on the server",
        )
    finally:
        store.close()
        raw.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        raw.execute("DELETE FROM jumpvpn_schema WHERE store_table = %s", (table,))
        raw.close()


BENCHES = {"sqlite": bench_sqlite, "redis": bench_redis, "postgres": bench_postgres}


def run(smoke: bool) -> list[dict[str, Any]]:
    """Run every store benchmark; smoke mode commits a few times each and checks them."""
    batch, repeats = (5, 1) if smoke else (300, 7)
    rows: list[dict[str, Any]] = []
    for kind, bench in BENCHES.items():
        try:
            measured = bench(batch, repeats)
        except ServiceSkippedError as exc:
            print(f"bench_stores: skipping {kind}: {exc}")
            continue
        if smoke:  # the commits were checked; five of them time nothing worth a verdict
            for row in measured:
                row["met"] = None
                row["notes"] = "smoke run, not a measurement; " + row["notes"]
        rows += measured
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'name':34} {'median':>12} {'ratio':>7}  {'met':5} peer"
    print(header)
    print("-" * len(header))
    for row in rows:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        print(
            f"{row['name']:34} {row['median_ns']:>9} ns {row['ratio']:>6.3f}x  {met:5} "
            f"{row['peer']}"
        )
        print(f"{'':34} {row['notes']}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry: print the table; exit 0 (figures are reported, not gated)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_stores")
    parser.add_argument("--smoke", action="store_true", help="a few commits each, no timing")
    args = parser.parse_args(argv)
    rows = run(args.smoke)
    _print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
