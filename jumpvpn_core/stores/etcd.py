"""etcd store: the recommended store for a highly available cluster (Raft, linearizable).

Talks to etcd's v3 API through its JSON gateway with `etcd3gw` (a maintained client of
that gateway; one `Etcd3Client` per endpoint, this module fails over between them).

Layout: one key per session, `<prefix><session id hex>`; its value is the record's version
in decimal, a newline, then the opaque data. Every operation is one etcd transaction:

* create: `compare create_revision == 0` then put;
* compare-and-set / delete: `compare mod_revision == R` then put / delete, where R is the
  key's mod revision when it held `expected_version`. R comes from this store object's
  last read or write of the key; when it is not known (or stale), the transaction's
  failure branch reads the key, and if it still holds `expected_version` the transaction
  is retried once on the mod revision just read. The version check and the write are one
  atomic step on the cluster leader, committed by a quorum before the reply.

Reads are linearizable (etcd's default): a member cut off from the quorum does not answer
from a stale copy, it times out, and the store tries the next endpoint.

Leases: not used for records. A lease would delete a session's record when the node that
wrote it stops refreshing it, i.e. end a live session silently because a node died: the
opposite of §4.2 (another node must be able to take over) and of §5.3 (terminations are
explicit). Idle sessions are ended by the gateway's explicit eviction instead.

Going backwards: every reply carries the cluster's revision and id. A revision lower than
one seen before the call was sent, or another cluster id, means the store is not the one
that acknowledged our commits (restored from an old snapshot, a new cluster behind the same
address): `StoreRolledBackError`, and every later call is refused.

Errors: an endpoint that cannot be reached or does not answer in `timeout_s` raises
`StoreUnavailableError` (for a write its outcome is unknown) and the next call goes to the
next endpoint; a read is retried on the other endpoints within the same call.

URL: `etcd://host:port[,host:port...][?prefix=/jumpvpn/sessions/]`, `etcds://` for TLS
(options `ca_cert`, `cert_cert`, `cert_key`).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import etcd3gw.exceptions
import requests
from etcd3gw.client import Etcd3Client

from jumpvpn_core.stores._outage import OutageLog
from jumpvpn_core.stores._url import check_timeout, query_options
from jumpvpn_core.stores.base import (
    StoreConfigError,
    StoredSession,
    StoreError,
    StoreRolledBackError,
    StoreUnavailableError,
)

__all__ = ["DEFAULT_PREFIX", "EtcdStore", "open_etcd_store"]

DEFAULT_PREFIX = "/jumpvpn/sessions/"
_SCAN_BATCH = 500
#: Mod revisions remembered per session (LRU); a miss costs one extra read, never safety.
_MOD_CACHE = 100_000
_log = logging.getLogger("jumpvpn_core.stores.etcd")
_CONNECTION_ERRORS = (
    etcd3gw.exceptions.ConnectionFailedError,
    etcd3gw.exceptions.ConnectionTimeoutError,
    etcd3gw.exceptions.Etcd3Exception,
    OSError,
    ValueError,  # a reply that is not JSON
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise StoreError("etcd reply field is not base64 text")
    return base64.b64decode(text)


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


def _reason(exc: BaseException) -> str:
    """The first non-empty message along `exc`'s chain: etcd3gw re-raises requests'
    errors (a refused certificate, a reset) as exceptions with no text of their own."""
    current: BaseException | None = exc
    for _ in range(4):
        if current is None:
            break
        if str(current).strip():
            return str(current).strip()
        current = current.__cause__ or current.__context__
    return ""


def _value(version: int, data: bytes) -> bytes:
    return str(int(version)).encode() + b"\n" + data


def _parse(session_id: bytes, raw: bytes) -> StoredSession:
    """A stored value; a damaged one comes back as a record that will not decode."""
    head, sep, data = raw.partition(b"\n")
    if not sep or not head.isdigit() or len(head) > 20:
        _log.warning("etcd record of session %s is damaged", session_id.hex())
        return StoredSession(session_id, 0, b"")
    return StoredSession(session_id, int(head), data)


class EtcdStore:
    """`SessionStore` on an etcd cluster. Thread-safe."""

    def __init__(self, clients: list[Etcd3Client], *, prefix: str = DEFAULT_PREFIX,
                 owns_clients: bool = False) -> None:
        """Use `clients` (one per endpoint of the same cluster; existing clients may be
        passed in) and key prefix. Checks that an endpoint answers, so an unreachable
        cluster fails here with `StoreUnavailableError`. `close()` closes the clients'
        sessions only when `owns_clients` (the store made them)."""
        if not clients:
            raise StoreConfigError("etcd store needs at least one endpoint")
        if not prefix:
            raise StoreConfigError("etcd key prefix must not be empty")
        self._clients = clients
        self._owns_clients = owns_clients
        self._outage = OutageLog(_log, "etcd")
        self._prefix = prefix.encode()
        self._current = 0
        self._lock = threading.Lock()
        self._mods: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        self._seen = 0
        self._cluster_id: str | None = None
        self._rolled_back = False
        self._call("status", lambda c: c.post(c.get_url("/maintenance/status"), json={}),
                   retry=True)

    @property
    def prefix(self) -> str:
        """The key prefix of this store's records."""
        return self._prefix.decode()

    @property
    def revision(self) -> int:
        """The highest cluster revision this store object has seen."""
        with self._lock:
            return self._seen

    @property
    def rolled_back(self) -> bool:
        """True once a reply showed another or an older data set (every call now fails)."""
        return self._rolled_back

    def key(self, session_id: bytes) -> bytes:
        """The etcd key holding `session_id`'s record."""
        return self._prefix + session_id.hex().encode()

    # --- transport ---------------------------------------------------------------------

    def _call(self, what: str, request: Any, *, retry: bool) -> dict[str, Any]:
        """One request to the current endpoint (all of them in turn when `retry`)."""
        if self._rolled_back:
            raise StoreRolledBackError("etcd store went backwards earlier; refusing")
        with self._lock:
            floor = self._seen
            start = self._current
        attempts = len(self._clients) if retry else 1
        failure: Exception | None = None
        for step in range(attempts):
            index = (start + step) % len(self._clients)
            try:
                reply = request(self._clients[index])
            except _CONNECTION_ERRORS as exc:
                failure = exc
                with self._lock:
                    if self._current == index:
                        self._current = (index + 1) % len(self._clients)
                continue
            if not isinstance(reply, dict):
                raise StoreError(f"etcd {what} returned an unexpected reply")
            self._observe(floor, reply.get("header"))
            self._outage.answered()
            return reply
        assert failure is not None
        self._outage.failed(what, failure)
        raise StoreUnavailableError(
            f"etcd {what} failed: {type(failure).__name__}: {_reason(failure)[:300]}"
        ) from failure

    def _observe(self, floor: int, header: Any) -> None:
        if not isinstance(header, dict):
            raise StoreError("etcd reply has no header")
        try:
            revision = int(header.get("revision", 0))
        except (TypeError, ValueError) as exc:
            raise StoreError("etcd reply has a bad revision") from exc
        cluster = str(header.get("cluster_id", ""))
        with self._lock:
            if self._cluster_id is None:
                self._cluster_id = cluster
            elif cluster != self._cluster_id:
                self._rolled_back = True
            if revision < floor:
                self._rolled_back = True
            if not self._rolled_back:
                self._seen = max(self._seen, revision)
        if self._rolled_back:
            _log.error("etcd store went backwards (revision %d after %d, cluster %s)",
                       revision, floor, cluster)
            raise StoreRolledBackError(
                "etcd answered with an older revision or another cluster id than this store "
                "had seen: restored from a snapshot or a different cluster"
            )

    def _remember(self, session_id: bytes, version: int, mod_revision: int) -> None:
        with self._lock:
            self._mods[session_id] = (version, mod_revision)
            self._mods.move_to_end(session_id)
            while len(self._mods) > _MOD_CACHE:
                self._mods.popitem(last=False)

    def _forget(self, session_id: bytes) -> None:
        with self._lock:
            self._mods.pop(session_id, None)

    def _known(self, session_id: bytes) -> tuple[int, int] | None:
        with self._lock:
            return self._mods.get(session_id)

    # --- the contract ------------------------------------------------------------------

    def _read(self, session_id: bytes) -> tuple[StoredSession, int] | None:
        key = _b64(self.key(session_id))
        reply = self._call("get", lambda c: c.post(c.get_url("/kv/range"), json={"key": key}),
                           retry=True)
        return self._kv(session_id, reply.get("kvs"))

    def _kv(self, session_id: bytes, kvs: Any) -> tuple[StoredSession, int] | None:
        if not kvs:
            self._forget(session_id)
            return None
        if not isinstance(kvs, list) or not isinstance(kvs[0], dict):
            raise StoreError("etcd range returned an unexpected reply")
        record = _parse(session_id, _unb64(kvs[0].get("value", "")))
        mod = int(kvs[0].get("mod_revision", 0))
        self._remember(session_id, record.version, mod)
        return record, mod

    def get(self, session_id: bytes) -> StoredSession | None:
        found = self._read(session_id)
        return None if found is None else found[0]

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        key = _b64(self.key(session_id))
        txn = {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(_value(version, data))}}],
        }
        reply = self._call("create", lambda c: c.transaction(txn), retry=False)
        if reply.get("succeeded"):
            self._remember(session_id, version, int(reply["header"]["revision"]))
            return True
        return False

    def _guarded(self, what: str, session_id: bytes, expected_version: int,
                 operation: dict[str, Any], new_version: int | None) -> bool:
        key = _b64(self.key(session_id))
        known = self._known(session_id)
        if known is None or known[0] != expected_version:
            found = self._read(session_id)
            if found is None or found[0].version != expected_version:
                return False
            known = (expected_version, found[1])
        for _ in range(2):
            txn = {
                "compare": [{"key": key, "target": "MOD", "result": "EQUAL",
                             "mod_revision": str(known[1])}],
                "success": [operation],
                "failure": [{"request_range": {"key": key}}],
            }
            reply = self._call(what, lambda c, txn=txn: c.transaction(txn), retry=False)
            if reply.get("succeeded"):
                if new_version is None:
                    self._forget(session_id)
                else:
                    self._remember(session_id, new_version, int(reply["header"]["revision"]))
                return True
            responses = reply.get("responses") or [{}]
            kvs = responses[0].get("response_range", {}).get("kvs")
            found = self._kv(session_id, kvs)
            if found is None or found[0].version != expected_version:
                return False
            known = (expected_version, found[1])  # our copy was stale: once more
        return False

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        key = _b64(self.key(session_id))
        put = {"request_put": {"key": key, "value": _b64(_value(new_version, data))}}
        return self._guarded("compare_and_set", session_id, expected_version, put,
                             new_version)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        key = _b64(self.key(session_id))
        return self._guarded("delete", session_id, expected_version,
                             {"request_delete_range": {"key": key}}, None)

    def scan(self) -> Iterator[StoredSession]:
        """Every record under the prefix, in key order, `_SCAN_BATCH` at a time."""
        start = self._prefix
        end = _b64(_prefix_end(self._prefix))
        while True:
            body = {"key": _b64(start), "range_end": end, "limit": _SCAN_BATCH,
                    "sort_order": "ASCEND", "sort_target": "KEY"}
            reply = self._call("scan", lambda c, body=body: c.post(c.get_url("/kv/range"),
                                                                   json=body), retry=True)
            kvs = reply.get("kvs") or []
            for kv in kvs:
                raw_key = _unb64(kv.get("key", ""))
                try:
                    session_id = bytes.fromhex(raw_key[len(self._prefix):].decode("ascii"))
                except (UnicodeDecodeError, ValueError):
                    _log.warning("skipping an etcd key under the store prefix that is not a "
                                 "session id: %r", raw_key[:80])
                    continue
                yield _parse(session_id, _unb64(kv.get("value", "")))
            if not reply.get("more") or not kvs:
                return
            start = _unb64(kvs[-1]["key"]) + b"\x00"

    def close(self) -> None:
        """Close the clients' HTTP sessions if this store made them (`owns_clients`)."""
        if not self._owns_clients:
            return
        for client in self._clients:
            client.session.close()


def _session(options: dict[str, str]) -> requests.Session:
    """An HTTP session that takes its TLS settings from the URL only. The environment is
    not consulted: requests lets `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` override a
    session's own CA file, which would silently replace the `ca_cert` the URL names
    (proxy variables are ignored too: the URL lists the members to talk to)."""
    session = requests.Session()
    session.trust_env = False
    if "ca_cert" in options:
        session.verify = options["ca_cert"]
    if "cert_cert" in options and "cert_key" in options:
        session.cert = (options["cert_cert"], options["cert_key"])
    return session


def open_etcd_store(url: str, *, timeout_s: float = 2.0) -> EtcdStore:
    """Open `etcd://host:port[,host:port...][?prefix=...]` (`etcds://` for TLS: options
    `ca_cert`, `cert_cert`, `cert_key`); every request is bounded by `timeout_s`."""
    timeout = check_timeout(timeout_s)
    parts = urlsplit(url)
    if parts.scheme not in ("etcd", "etcds"):
        raise StoreConfigError(f"not an etcd URL: scheme {parts.scheme!r}")
    tls = parts.scheme == "etcds"
    options = query_options(
        parts, allowed=("prefix", *(("ca_cert", "cert_cert", "cert_key") if tls else ())))
    if parts.fragment or parts.path not in ("", "/"):
        raise StoreConfigError("etcd store URL takes no path or #fragment: use ?prefix=")
    if "@" in parts.netloc:
        raise StoreConfigError("etcd store URL must not carry credentials")
    endpoints: list[tuple[str, int]] = []
    for item in parts.netloc.split(","):
        host, sep, port_text = item.rpartition(":")
        if not sep:
            host, port_text = item, "2379"
        host = host.strip("[]")
        if not host or not port_text.isdigit() or len(port_text) > 5 \
                or not 0 < int(port_text) < 65536:
            raise StoreConfigError(f"bad etcd endpoint {item[:60]!r}: use host:port")
        endpoints.append((host, int(port_text)))
    if len(endpoints) > 16:
        raise StoreConfigError("at most 16 etcd endpoints")
    if (tls and "cert_cert" in options) != (tls and "cert_key" in options):
        raise StoreConfigError("etcds: give cert_cert and cert_key together")
    clients = [
        Etcd3Client(host=host, port=port, protocol="https" if tls else "http",
                    timeout=timeout, api_path="/v3/", session=_session(options))
        for host, port in endpoints
    ]
    try:
        return EtcdStore(clients, prefix=options.get("prefix", DEFAULT_PREFIX),
                         owns_clients=True)
    except BaseException:
        for client in clients:
            client.session.close()
        raise
