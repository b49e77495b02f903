"""`TraceWriter`: the one writer of tamper-evident JSONL audit traces (`specs/trace-format.md`).

Every tool that writes a trace (`jumpvpn scenarios --trace`, `jumpvpn simulate`,
`jumpvpn demo --trace`) hands its audit records to a `TraceWriter`, which frames them:

* a `trace_begin` line first (trace format version, writer, checkpoint interval, key id);
* every following line carries `seq` (its position in the file, `trace_begin` is 0) and
  `prev` (SHA-256 of the previous line's bytes): one hash chain over the whole file, so
  a line changed, dropped, duplicated or moved breaks the chain where it happened;
* a session record (`state_change`, `reject`) also carries `sseq`, its position in its
  stream (`stream_key`), so a dropped or duplicated record is named per stream too;
* every `checkpoint_every` lines a `checkpoint`, and at the end one `stream_end` per
  stream (its record count, final phase and version) and a `trace_end` (totals). The
  checkpoints and `trace_end` carry an HMAC-SHA256 under the writer's key when it has one:
  whoever lacks the key cannot rewrite the file and recompute a chain that verifies.

The writer does no I/O of its own: it calls `write(line)` with each line, newline
included. `load_trace_key` reads a key given as hex or as a file (the `--trace-key` and
`--key` options).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jumpvpn_core.effects import AUDIT_RECORD_VERSION

__all__ = [
    "CHECKPOINT_EVERY",
    "ENVELOPE_KEYS",
    "SESSION_RECORD_TYPES",
    "TRACE_FORMAT_VERSION",
    "TraceKeyError",
    "TraceWriter",
    "key_id",
    "key_option",
    "line_hash",
    "load_trace_key",
    "record_mac",
    "stream_key",
    "write_trace",
]

#: Version of the trace file format (1: bare audit records, one per line; 2: framed and
#: hash-chained, `specs/trace-format.md`).
TRACE_FORMAT_VERSION = 2
#: Default number of lines between two checkpoints.
CHECKPOINT_EVERY = 64
#: Keys the writer adds to every record; a record may not bring its own.
ENVELOPE_KEYS = frozenset({"seq", "prev", "sseq"})
#: The record types that belong to a session's stream.
SESSION_RECORD_TYPES = frozenset({"state_change", "reject"})
#: Shortest key accepted (bytes).
MIN_KEY_BYTES = 16

_MAC_LABEL = b"jumpvpn-trace-v2\x00"
_KEY_ID_LABEL = b"jumpvpn-trace-key-id\x00"
_HEX = frozenset(string.hexdigits)

StreamKey = tuple[str | None, str | None, str, str]


class TraceKeyError(ValueError):
    """A trace key that cannot be used. The message never contains the key."""


def stream_key(record: dict[str, Any]) -> StreamKey:
    """The stream a session record belongs to: `(script, store, session_id, role)`.

    `script` and `store` are the record's keys of those names when they are strings (the
    scenario runner tags records with their script, a gateway with its store), else None.
    """
    script = record.get("script")
    store = record.get("store")
    return (script if isinstance(script, str) else None,
            store if isinstance(store, str) else None,
            str(record.get("session_id")), str(record.get("role")))


def line_hash(line: bytes) -> str:
    """The chain value of one line: SHA-256 of its bytes (without the newline), hex."""
    return hashlib.sha256(line).hexdigest()


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def record_mac(key: bytes, record: dict[str, Any]) -> str:
    """HMAC-SHA256 of a checkpoint or `trace_end` record (all its keys but `mac`), hex."""
    return hmac.new(key, _MAC_LABEL + _canonical(record), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A public name for `key` (16 hex digits of a labelled hash): which key MACed a trace."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:16]


def _from_hex(text: str) -> bytes | None:
    if len(text) < 2 * MIN_KEY_BYTES or len(text) % 2 or not set(text) <= _HEX:
        return None
    return bytes.fromhex(text)


def load_trace_key(spec: str) -> bytes:
    """A trace key given as hex digits (at least 32), or as a file holding hex digits or at
    least 16 raw bytes. Raises `TraceKeyError` (never echoing the key) or `OSError`."""
    key = _from_hex(spec.strip())
    if key is not None:
        return key
    path = Path(spec)
    if not path.is_file():
        raise TraceKeyError("the key is neither 32+ hex digits nor a readable file")
    data = path.read_bytes()
    try:
        key = _from_hex(data.decode("ascii").strip())
    except UnicodeDecodeError:
        key = None
    if key is None:
        key = data
    if len(key) < MIN_KEY_BYTES:
        raise TraceKeyError(f"the key file {path} holds fewer than {MIN_KEY_BYTES} bytes")
    return key


def key_option(spec: str | None) -> bytes | None:
    """The key of a `--trace-key` / `--key FILE|HEX` option (None: no option given).

    Raises `TraceKeyError` saying why it cannot be used, an unreadable file included."""
    if spec is None:
        return None
    try:
        return load_trace_key(spec)
    except OSError as exc:
        raise TraceKeyError(f"cannot read the key file: {exc.strerror}") from None


class _Stream:
    __slots__ = ("count", "phase", "version")

    def __init__(self) -> None:
        self.count = 0
        self.phase: Any = None
        self.version: Any = None


class TraceWriter:
    """Frames audit records into a tamper-evident trace; `write(line)` receives each line.

    Use as a context manager or call `close()` once at the end: without `trace_end` a
    trace reads as one whose tail was cut. `key` (at least 16 bytes) MACs the checkpoints
    and the end; without one the chain is still checked but not authenticated.
    """

    def __init__(self, write: Callable[[str], object], *, writer: str,
                 key: bytes | None = None, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        if key is not None and (type(key) is not bytes or len(key) < MIN_KEY_BYTES):
            raise TraceKeyError(f"a trace key must be at least {MIN_KEY_BYTES} bytes")
        if type(checkpoint_every) is not int or checkpoint_every < 1:
            raise ValueError("checkpoint_every must be a positive int")
        self._write = write
        self._key = key
        self._every = checkpoint_every
        self._seq = 0
        self._prev = ""
        self._since_checkpoint = 0
        self._records = 0
        self._streams: dict[StreamKey, _Stream] = {}
        self._closed = False
        self._emit({"type": "trace_begin", "v": AUDIT_RECORD_VERSION,
                    "trace_format": TRACE_FORMAT_VERSION, "writer": writer,
                    "checkpoint_every": checkpoint_every,
                    "key_id": None if key is None else key_id(key)}, chained=False)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _emit(self, record: dict[str, Any], *, chained: bool = True) -> None:
        if chained:
            record["seq"] = self._seq
            record["prev"] = self._prev
        line = json.dumps(record, sort_keys=True)
        self._prev = line_hash(line.encode("utf-8"))
        self._seq += 1
        self._write(line + "\n")

    def _line(self, record: dict[str, Any]) -> None:
        # A chained line other than a checkpoint; one of those follows every `every` lines.
        self._emit(record)
        self._since_checkpoint += 1
        if self._since_checkpoint >= self._every:
            self._macd({"type": "checkpoint", "v": AUDIT_RECORD_VERSION,
                        "records": self._records})

    def _macd(self, record: dict[str, Any]) -> None:
        record["seq"] = self._seq
        record["prev"] = self._prev
        record["mac"] = None if self._key is None else record_mac(self._key, record)
        self._emit(record, chained=False)
        self._since_checkpoint = 0

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (an audit record or any other trace record type)."""
        if self._closed:
            raise ValueError("the trace is closed")
        if not ENVELOPE_KEYS.isdisjoint(record) or "mac" in record:
            raise ValueError("a record may not carry seq, sseq, prev or mac of its own")
        framed = dict(record)
        if framed.get("type") in SESSION_RECORD_TYPES:
            key = stream_key(framed)
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream()
            framed["sseq"] = stream.count
            stream.count += 1
            stream.phase = framed.get("to", framed.get("phase"))
            stream.version = framed.get("state_version")
            self._records += 1
        self._line(framed)

    def write_all(self, records: Iterable[dict[str, Any]]) -> None:
        """`write` each record in order."""
        for record in records:
            self.write(record)

    def close(self) -> None:
        """Write one `stream_end` per stream (in order of first record) and `trace_end`."""
        if self._closed:
            return
        self._closed = True
        for (script, store, session, role), stream in self._streams.items():
            end: dict[str, Any] = {"type": "stream_end", "v": AUDIT_RECORD_VERSION,
                                   "session_id": session, "role": role,
                                   "records": stream.count, "phase": stream.phase,
                                   "state_version": stream.version}
            if script is not None:
                end["script"] = script
            if store is not None:
                end["store"] = store
            self._line(end)
        self._macd({"type": "trace_end", "v": AUDIT_RECORD_VERSION, "records": self._records,
                    "streams": len(self._streams)})


def write_trace(path: Path, records: Iterable[dict[str, Any]], *, writer: str,
                key: bytes | None = None) -> int:
    """Write `records` as a complete trace file at `path`; returns the number of lines."""
    lines = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        def count(line: str) -> None:
            nonlocal lines
            lines += 1
            handle.write(line)

        with TraceWriter(count, writer=writer, key=key) as trace:
            trace.write_all(records)
    return lines
