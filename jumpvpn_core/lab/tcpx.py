"""A checksummed TCP transfer for the WireGuard case: `python -m jumpvpn_core.lab.tcpx`.

`sink HOST PORT BYTES SEED` accepts one connection and compares every byte received with
the expected stream; `source HOST PORT BYTES SEED RATE_MBPS` connects and sends the stream,
paced. Each prints one JSON line: bytes, corrupted bytes, SHA-256, and (sink) the receive
gaps longer than 100 ms (the stalls). The stream is a seeded 1 MiB block repeated, each
MiB stamped with its index, so loss, duplication and reordering all show as corruption.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
import time

__all__ = ["expected_chunk", "main"]

_BLOCK = 1 << 20
_CHUNK = 64 * 1024
_GAP_S = 0.1


def _block(seed: int) -> bytes:
    return random.Random(seed).randbytes(_BLOCK)  # noqa: S311 - test data, not secrets


def expected_chunk(block: bytes, offset: int, size: int) -> bytes:
    """The stream's bytes [offset, offset + size)."""
    out = bytearray()
    while size > 0:
        index, within = divmod(offset, _BLOCK)
        piece = bytearray(block[within:within + min(size, _BLOCK - within)])
        if within < 8:  # the first 8 bytes of every MiB are its index
            k = min(8 - within, len(piece))
            piece[0:k] = index.to_bytes(8, "big")[within:within + k]
        out += piece
        offset += len(piece)
        size -= len(piece)
    return bytes(out)


def _sink(host: str, port: int, total: int, seed: int, deadline_s: float) -> dict[str, object]:
    block = _block(seed)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1)
    listener.settimeout(deadline_s)
    print(json.dumps({"listening": True}), flush=True)
    conn, _ = listener.accept()
    conn.settimeout(deadline_s)
    digest = hashlib.sha256()
    received = corrupted = 0
    gaps: list[float] = []
    start = last = time.monotonic()
    while received < total:
        data = conn.recv(_CHUNK)
        if not data:
            break
        t = time.monotonic()
        if t - last > _GAP_S:
            gaps.append(round(t - last, 3))
        last = t
        want = expected_chunk(block, received, len(data))
        if data != want:
            corrupted += sum(a != b for a, b in zip(data, want, strict=False))
        digest.update(data)
        received += len(data)
    conn.sendall(digest.hexdigest().encode())
    conn.close()
    listener.close()
    return {"bytes": received, "corrupted": corrupted, "sha256": digest.hexdigest(),
            "gaps": gaps, "seconds": round(time.monotonic() - start, 3)}


def _source(host: str, port: int, total: int, seed: int, rate_mbps: float,
            deadline_s: float) -> dict[str, object]:
    block = _block(seed)
    conn = socket.create_connection((host, port), timeout=deadline_s)
    digest = hashlib.sha256()
    sent = 0
    start = time.monotonic()
    while sent < total:
        size = min(_CHUNK, total - sent)
        data = expected_chunk(block, sent, size)
        conn.sendall(data)
        digest.update(data)
        sent += size
        ahead = sent / (rate_mbps * 1e6) - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    echoed = b""
    while len(echoed) < 64:
        more = conn.recv(64 - len(echoed))
        if not more:
            break
        echoed += more
    conn.close()
    return {"bytes": sent, "sha256": digest.hexdigest(), "echoed": echoed.decode(),
            "seconds": round(time.monotonic() - start, 3)}


def main(argv: list[str] | None = None) -> int:
    """`sink HOST PORT BYTES SEED` or `source HOST PORT BYTES SEED RATE_MBPS`."""
    args = list(sys.argv[1:] if argv is None else argv)
    deadline_s = 60.0
    try:
        if args[0] == "sink":
            out = _sink(args[1], int(args[2]), int(args[3]), int(args[4]), deadline_s)
        else:
            out = _source(args[1], int(args[2]), int(args[3]), int(args[4]), float(args[5]),
                          deadline_s)
    except (OSError, IndexError, ValueError) as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
