"""etcd store details beyond the shared contract: what each call sends and how often,
failover between endpoints, replies that go backwards or look wrong, damaged records,
paged scans, URL parsing and the options given to the HTTP clients.

The store is driven through `Scripted` clients: real clients of the test member that
record every request and let a test take an endpoint down or change a reply. Every test
uses its own key prefix, deleted afterwards.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from etcd3gw.client import Etcd3Client

import jumpvpn_core.stores.etcd as etcd_module
from jumpvpn_core.stores import (
    StoreConfigError,
    StoredSession,
    StoreError,
    StoreRolledBackError,
    StoreUnavailableError,
)
from jumpvpn_core.stores.etcd import DEFAULT_PREFIX, EtcdStore, _prefix_end, open_etcd_store
from tests.stores.conftest import TIMEOUT_S

pytestmark = pytest.mark.services

LOGGER = "jumpvpn_core.stores.etcd"
RANGE, TXN, STATUS = "kv/range", "kv/txn", "maintenance/status"

Edit = Callable[[str, dict[str, Any]], Any]


class Scripted(Etcd3Client):
    """A client of the test member that records its requests ("kv/txn", ...) and bodies;
    `down` makes every request raise it, `edit` rewrites replies, `before` runs first."""

    def __init__(self, endpoint: str) -> None:
        host, _, port = endpoint.rpartition(":")
        super().__init__(host=host, port=int(port), timeout=TIMEOUT_S, api_path="/v3/")
        self.calls: list[str] = []
        self.bodies: list[Any] = []
        self.down: Exception | None = None
        self.edit: Edit | None = None
        self.before: Callable[[str], None] | None = None

    def post(self, url: str, *args: Any, json: Any = None, **kwargs: Any) -> Any:
        call = url.split("/v3/", 1)[1]
        self.calls.append(call)
        self.bodies.append(json)
        if self.down is not None:
            raise self.down
        if self.before is not None:
            self.before(call)
        reply = super().post(url, *args, json=json, **kwargs)
        return reply if self.edit is None else self.edit(call, reply)

    def take_calls(self) -> list[str]:
        """The requests since the last look."""
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def endpoint(etcd_endpoints: str) -> str:
    return etcd_endpoints.split(",")[0]


@pytest.fixture
def prefix(endpoint: str) -> Iterator[str]:
    """A fresh key prefix; every key under it (and its sibling `..0` range) is deleted."""
    name = f"/jumpvpn-test/{uuid.uuid4().hex}/"
    yield name
    admin = Scripted(endpoint)
    try:
        admin.delete_prefix(name[:-1])  # the prefix itself and the sibling keys of a test
    finally:
        admin.session.close()


@pytest.fixture
def clients(endpoint: str) -> Iterator[Callable[[], Scripted]]:
    """Makes `Scripted` clients; their HTTP sessions are closed afterwards."""
    made: list[Scripted] = []

    def make() -> Scripted:
        made.append(Scripted(endpoint))
        return made[-1]

    yield make
    for client in made:
        client.session.close()


@pytest.fixture
def admin(clients: Callable[[], Scripted]) -> Scripted:
    """A client that writes raw keys, beside the store."""
    return clients()


def sid(n: int) -> bytes:
    return bytes([n % 256]) * 16


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def record(store: EtcdStore, session: bytes) -> tuple[int, bytes]:
    found = store.get(session)
    assert found is not None
    return found.version, found.data


# --- helpers ----------------------------------------------------------------------------


def test_prefix_end_is_the_first_key_after_every_key_with_the_prefix() -> None:
    assert _prefix_end(b"/a/") == b"/a0"
    assert _prefix_end(b"ab") == b"ac"
    assert _prefix_end(b"a\xffc") == b"a\xffd"
    assert _prefix_end(b"a\xff") == b"b"
    assert _prefix_end(b"a\xff\xff") == b"b"
    assert _prefix_end(b"\xff\xff") == b"\x00"  # etcd's "every key after the start"


# --- round trips: the store remembers mod revisions ----------------------------------------


def test_writes_after_the_stores_own_write_or_read_take_one_transaction(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    other = EtcdStore([clients()], prefix=prefix)
    assert client.take_calls() == [STATUS]
    a, b = sid(1), sid(2)
    assert store.create(a, 0, b"a0")
    assert store.compare_and_set(a, 0, 1, b"a1")
    assert store.compare_and_set(a, 1, 2, b"a2")
    assert client.take_calls() == [TXN, TXN, TXN]
    assert record(store, a) == (2, b"a2")
    assert store.compare_and_set(a, 2, 3, b"a3")
    assert client.take_calls() == [RANGE, TXN]
    assert store.delete(a, 3)
    assert client.take_calls() == [TXN]
    # After its own delete the store knows nothing of the key: it reads before writing.
    assert store.delete(a, 3) is False
    assert store.compare_and_set(a, 3, 4, b"ghost") is False
    assert client.take_calls() == [RANGE, RANGE]
    # A record written by another store is read once, then written directly.
    assert other.create(b, 5, b"b5")
    assert record(store, b) == (5, b"b5")
    assert store.compare_and_set(b, 5, 6, b"b6")
    assert client.take_calls() == [RANGE, TXN]
    # Gone under us: a read that finds nothing forgets the mod revision it had.
    assert other.delete(b, 6)
    assert store.get(b) is None
    assert store.compare_and_set(b, 6, 7, b"b7") is False
    assert client.take_calls() == [RANGE, RANGE]
    assert store.get(b) is None


def test_mod_revisions_are_remembered_for_the_most_recent_sessions_only(
    clients: Callable[[], Scripted], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd_module, "_MOD_CACHE", 2)
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    for n in (1, 2, 3):
        assert store.create(sid(n), 0, b"x")
    client.take_calls()
    assert store.compare_and_set(sid(3), 0, 1, b"y")
    assert store.compare_and_set(sid(2), 0, 1, b"y")
    assert client.take_calls() == [TXN, TXN]
    assert store.compare_and_set(sid(1), 0, 1, b"y")  # the oldest was evicted
    assert client.take_calls() == [RANGE, TXN]


def test_record_rewritten_at_the_same_version_by_another_node_still_takes_the_write(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    other = EtcdStore([clients()], prefix=prefix)
    session = sid(3)
    assert store.create(session, 3, b"mine")
    assert other.compare_and_set(session, 3, 3, b"theirs")  # same version, new mod rev
    client.take_calls()
    assert store.compare_and_set(session, 3, 4, b"mine again")
    assert client.take_calls() == [TXN, TXN]  # the failed compare read the key: once more
    assert record(other, session) == (4, b"mine again")
    assert other.compare_and_set(session, 4, 4, b"theirs")
    assert store.delete(session, 4)
    assert other.get(session) is None


def test_compare_and_set_retries_once_only_when_the_record_keeps_moving(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    other = EtcdStore([clients()], prefix=prefix)
    session = sid(4)
    assert store.create(session, 3, b"mine")
    rewrites: list[int] = []

    def rewrite_first_two(call: str) -> None:
        if call == TXN and len(rewrites) < 2:
            rewrites.append(1)
            assert other.compare_and_set(session, 3, 3, f"theirs {len(rewrites)}".encode())

    client.before = rewrite_first_two
    client.take_calls()
    assert store.compare_and_set(session, 3, 4, b"mine") is False
    assert client.take_calls() == [TXN, TXN]
    assert record(other, session) == (3, b"theirs 2")


def test_failed_compare_without_a_read_in_the_reply_is_a_lost_write(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    other = EtcdStore([clients()], prefix=prefix)
    session = sid(5)
    assert store.create(session, 0, b"x")
    assert other.compare_and_set(session, 0, 0, b"moved")

    def drop_responses(call: str, reply: dict[str, Any]) -> Any:
        if call == TXN and not reply.get("succeeded"):
            reply.pop("responses", None)
        return reply

    client.edit = drop_responses
    assert store.compare_and_set(session, 0, 1, b"y") is False
    assert record(other, session) == (0, b"moved")


# --- damaged records ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"123", b"x1\nabc", b"1" * 21 + b"\ndata", b""],
                         ids=["no-newline", "not-a-number", "21-digits", "empty"])
def test_damaged_record_reads_as_version_0_without_data_and_is_logged(
    clients: Callable[[], Scripted], admin: Scripted, prefix: str, raw: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = EtcdStore([clients()], prefix=prefix)
    session = sid(6)
    admin.put(store.key(session), raw)  # an empty value comes back without a "value" field
    damaged = StoredSession(session, 0, b"")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.get(session) == damaged
        assert list(store.scan()) == [damaged]
    assert messages(caplog, logging.WARNING) == \
        [f"etcd record of session {session.hex()} is damaged"] * 2


def test_versions_of_twenty_digits_round_trip(clients: Callable[[], Scripted],
                                               prefix: str) -> None:
    store = EtcdStore([clients()], prefix=prefix)
    big = 10**19  # 20 decimal digits
    assert store.create(sid(7), big, b"d")
    assert store.get(sid(7)) == StoredSession(sid(7), big, b"d")


def test_record_damaged_under_a_compare_and_set_loses_it(
    clients: Callable[[], Scripted], admin: Scripted, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = EtcdStore([clients()], prefix=prefix)
    session = sid(8)
    assert store.create(session, 3, b"x")
    admin.put(store.key(session), b"garbage")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.compare_and_set(session, 3, 4, b"y") is False
    assert messages(caplog, logging.WARNING) == [
        f"etcd record of session {session.hex()} is damaged"]


# --- replies that look wrong -------------------------------------------------------------


def _on(target: str, change: Callable[[dict[str, Any]], Any]) -> Edit:
    def edit(call: str, reply: dict[str, Any]) -> Any:
        return change(reply) if call == target else reply
    return edit


def _kvs(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    def edit(reply: dict[str, Any]) -> Any:
        change(reply["kvs"][0])
        return reply
    return edit


def test_malformed_replies_are_store_errors_naming_the_problem(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    session = sid(9)
    assert store.create(session, 1, b"x")
    cases: list[tuple[Edit, str]] = [
        (_on(RANGE, lambda r: ["not", "a", "dict"]), r"^etcd get returned an unexpected reply$"),
        (_on(RANGE, lambda r: {**r, "kvs": [5]}), r"^etcd range returned an unexpected reply$"),
        (_on(RANGE, _kvs(lambda kv: kv.update(value=5))),
         r"^etcd reply field is not base64 text$"),
        (_on(RANGE, lambda r: {k: v for k, v in r.items() if k != "header"}),
         r"^etcd reply has no header$"),
        (_on(RANGE, lambda r: {**r, "header": {**r["header"], "revision": "x"}}),
         r"^etcd reply has a bad revision$"),
    ]
    for edit, message in cases:
        client.edit = edit
        with pytest.raises(StoreError, match=message) as info:
            store.get(session)
        assert not isinstance(info.value, StoreUnavailableError)
    client.edit = None
    assert store.rolled_back is False
    assert record(store, session) == (1, b"x")


def test_range_reply_without_mod_revision_still_gives_the_record(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    session = sid(10)
    assert store.create(session, 1, b"x")
    client.edit = _on(RANGE, _kvs(lambda kv: kv.pop("mod_revision")))
    assert record(store, session) == (1, b"x")
    client.edit = None
    assert store.compare_and_set(session, 1, 2, b"y")


def test_revision_is_the_highest_the_cluster_reported(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    replies: list[dict[str, Any]] = []

    def keep(call: str, reply: dict[str, Any]) -> Any:
        replies.append(reply)
        return reply

    client.edit = keep
    store = EtcdStore([client], prefix=prefix)
    assert store.revision == int(replies[-1]["header"]["revision"]) > 0
    assert store.create(sid(11), 0, b"x")
    assert store.revision == int(replies[-1]["header"]["revision"])


def test_header_without_revision_counts_as_revision_0(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    # The JSON gateway leaves zero-valued fields out.
    client = clients()
    client.edit = lambda call, reply: {**reply, "header": {"cluster_id": "7"}}
    store = EtcdStore([client], prefix=prefix)
    assert store.revision == 0
    assert store.rolled_back is False


# --- going backwards ---------------------------------------------------------------------


def _refuses_everything(store: EtcdStore, client: Scripted) -> None:
    client.take_calls()
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: store.get(sid(1)),
        "create": lambda: store.create(sid(1), 0, b"x"),
        "scan": lambda: list(store.scan()),
    }
    for call in calls.values():
        with pytest.raises(StoreRolledBackError,
                           match=r"^etcd store went backwards earlier; refusing$"):
            call()
    assert client.take_calls() == []
    assert store.rolled_back is True


ROLLED_BACK = (r"^etcd answered with an older revision or another cluster id than this "
               r"store had seen: restored from a snapshot or a different cluster$")


def test_reply_from_another_cluster_is_a_rollback(
    clients: Callable[[], Scripted], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    assert store.rolled_back is False
    assert store.create(sid(12), 0, b"x")
    seen = store.revision

    def other_cluster(call: str, reply: dict[str, Any]) -> Any:
        reply["header"]["cluster_id"] = "12345"
        reply["header"]["revision"] = str(seen + 1000)
        return reply

    client.edit = other_cluster
    with caplog.at_level(logging.ERROR, logger=LOGGER), \
            pytest.raises(StoreRolledBackError, match=ROLLED_BACK):
        store.get(sid(12))
    assert messages(caplog, logging.ERROR) == [
        f"etcd store went backwards (revision {seen + 1000} after {seen}, cluster 12345)"]
    assert store.revision == seen
    _refuses_everything(store, client)


def test_reply_with_an_older_revision_is_a_rollback(
    clients: Callable[[], Scripted], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    assert store.create(sid(13), 0, b"x")
    seen = store.revision
    cluster: list[str] = []

    def older(call: str, reply: dict[str, Any]) -> Any:
        cluster.append(reply["header"]["cluster_id"])
        reply["header"]["revision"] = str(seen - 1)
        return reply

    client.edit = older
    with caplog.at_level(logging.ERROR, logger=LOGGER), \
            pytest.raises(StoreRolledBackError, match=ROLLED_BACK):
        store.get(sid(13))
    assert messages(caplog, logging.ERROR) == [
        f"etcd store went backwards (revision {seen - 1} after {seen}, cluster {cluster[0]})"]
    _refuses_everything(store, client)


# --- unavailable endpoints and failover ----------------------------------------------------


def test_errors_name_the_operation_and_the_cause(
    clients: Callable[[], Scripted], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    known = sid(14)
    assert store.create(known, 0, b"x")  # its mod revision is known: CAS/delete write first
    cause = OSError("member down")
    client.down = cause
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: store.get(sid(15)),
        "create": lambda: store.create(sid(15), 0, b"x"),
        "compare_and_set": lambda: store.compare_and_set(known, 0, 1, b"y"),
        "delete": lambda: store.delete(known, 0),
        "scan": lambda: list(store.scan()),
    }
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for name, call in calls.items():
            with pytest.raises(StoreUnavailableError,
                               match=rf"^etcd {name} failed: OSError: member down$") as info:
                call()
            assert info.value.__cause__ is cause
        client.down = None
        assert record(store, known) == (0, b"x")
    assert messages(caplog, logging.WARNING) == [
        "etcd store get failed (OSError: member down); further failures are logged at "
        "DEBUG until it answers again"]
    assert messages(caplog, logging.DEBUG) == [
        f"etcd store {name} failed (OSError: member down)" for name in list(calls)[1:]]
    assert messages(caplog, logging.INFO) == ["etcd store answers again"]


def _chain(depth: int, text: str) -> OSError:
    """An error whose only message is `depth` causes down its chain."""
    error = OSError(text)
    for _ in range(depth):
        outer = OSError()
        outer.__cause__ = error
        error = outer
    return error


def test_error_message_is_the_first_text_along_the_cause_chain_bounded(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    cases = [(_chain(0, ""), ""), (_chain(3, "refused"), "refused"), (_chain(4, "deep"), ""),
             (OSError("x" * 400), "x" * 300)]
    for error, reason in cases:
        client.down = error
        with pytest.raises(StoreUnavailableError) as info:
            store.get(sid(16))
        assert str(info.value) == f"etcd get failed: OSError: {reason}"


def test_reads_fail_over_within_the_call_and_stay_on_the_answering_endpoint(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    first, second, third = clients(), clients(), clients()
    store = EtcdStore([first, second, third], prefix=prefix)
    assert [first.take_calls(), second.take_calls(), third.take_calls()] == [[STATUS], [], []]
    assert store.create(sid(17), 0, b"x")
    first.take_calls()
    first.down = OSError("down")
    assert record(store, sid(17)) == (0, b"x")
    assert [first.take_calls(), second.take_calls(), third.take_calls()] == [[RANGE], [RANGE],
                                                                             []]
    assert [r.session_id for r in store.scan()] == [sid(17)]
    assert [first.take_calls(), second.take_calls(), third.take_calls()] == [[], [RANGE], []]
    second.down = OSError("down")
    assert [r.session_id for r in store.scan()] == [sid(17)]
    assert [first.take_calls(), second.take_calls(), third.take_calls()] == [[], [RANGE],
                                                                             [RANGE]]


def test_open_tries_every_endpoint_and_fails_only_when_none_answers(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    first, second = clients(), clients()
    first.down = OSError("down")
    store = EtcdStore([first, second], prefix=prefix)
    assert [first.take_calls(), second.take_calls()] == [[STATUS], [STATUS]]
    assert store.create(sid(18), 0, b"x")
    assert [first.take_calls(), second.take_calls()] == [[], [TXN]]
    second.down = OSError("down too")
    with pytest.raises(StoreUnavailableError,
                       match=r"^etcd status failed: OSError: down too$"):
        EtcdStore([first, second], prefix=prefix)


def test_writes_are_never_resent_to_another_endpoint(
    clients: Callable[[], Scripted], prefix: str
) -> None:
    first, second = clients(), clients()
    store = EtcdStore([first, second], prefix=prefix)
    assert store.create(sid(19), 0, b"x")
    first.take_calls()
    first.down = OSError("down")
    # The outcome of a write that failed is unknown: it is not sent again elsewhere.
    with pytest.raises(StoreUnavailableError, match=r"^etcd create failed"):
        store.create(sid(20), 0, b"x")
    assert [first.take_calls(), second.take_calls()] == [[TXN], []]
    assert store.create(sid(20), 0, b"x")  # the next call goes to the next endpoint
    first.down = None
    # The same for compare_and_set, on a store that starts on `second`.
    store2 = EtcdStore([second, first], prefix=prefix)
    assert store2.create(sid(21), 0, b"x")
    first.take_calls()
    second.take_calls()
    second.down = OSError("down")
    with pytest.raises(StoreUnavailableError, match=r"^etcd compare_and_set failed"):
        store2.compare_and_set(sid(21), 0, 1, b"y")
    assert [first.take_calls(), second.take_calls()] == [[], [TXN]]
    assert store2.compare_and_set(sid(21), 0, 1, b"y")
    assert first.take_calls() == [TXN]


# --- scans ---------------------------------------------------------------------------------


def test_scan_pages_in_key_order_skips_foreign_keys_and_stays_under_the_prefix(
    clients: Callable[[], Scripted], admin: Scripted, prefix: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(etcd_module, "_SCAN_BATCH", 3)
    client = clients()
    store = EtcdStore([client], prefix=prefix)
    # Pages of 3 keys: 01 02 03 | 0300 03zz 04 | ab zzz...: b"\x03\x00" follows b"\x03"
    # across a page boundary and a foreign key sits inside a page.
    ids = [b"\x01", b"\x02", b"\x03", b"\x03\x00", b"\x04", b"\xab"]
    for n, session in enumerate(ids):
        assert store.create(session, n, bytes([n]))
    foreign = [(prefix + "03zz").encode(), (prefix + "z" * 100).encode()]
    for key in foreign:
        admin.put(key, b"1\nnot a session")
    admin.put(_prefix_end(prefix.encode()) + b"beside", b"1\nnot ours")
    client.take_calls()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        scanned = list(store.scan())
    assert scanned == [StoredSession(s, n, bytes([n])) for n, s in enumerate(ids)]
    assert client.take_calls() == [RANGE] * 3  # 8 keys in pages of 3, the last one short
    assert [body["limit"] for body in client.bodies[-3:]] == [3, 3, 3]
    assert messages(caplog, logging.WARNING) == [
        "skipping an etcd key under the store prefix that is not a session id: "
        f"{key[:80]!r}" for key in foreign]


# --- URLs and client options -----------------------------------------------------------------


@pytest.mark.parametrize(("url", "message"), [
    ("redis://127.0.0.1:1/", r"^not an etcd URL: scheme 'redis'$"),
    ("etcd://127.0.0.1:1/path", r"^etcd store URL takes no path or #fragment: use \?prefix=$"),
    ("etcd://127.0.0.1:1/#frag", r"^etcd store URL takes no path or #fragment: use \?prefix=$"),
    ("etcd://user:pw@127.0.0.1:1/", r"^etcd store URL must not carry credentials$"),
    ("etcd://127.0.0.1:0/", r"^bad etcd endpoint '127\.0\.0\.1:0': use host:port$"),
    ("etcd://127.0.0.1:65536/", r"^bad etcd endpoint '127\.0\.0\.1:65536': use host:port$"),
    ("etcd://127.0.0.1:000080/", r"^bad etcd endpoint '127\.0\.0\.1:000080': use host:port$"),
    ("etcd://127.0.0.1:http/", r"^bad etcd endpoint '127\.0\.0\.1:http': use host:port$"),
    ("etcd://:2379/", r"^bad etcd endpoint ':2379': use host:port$"),
    ("etcd://a:1,,b:2/", r"^bad etcd endpoint '': use host:port$"),
    (f"etcd://{'h' * 70}:0/", rf"^bad etcd endpoint '{'h' * 60}': use host:port$"),
    ("etcd://" + ",".join(["h:1"] * 17) + "/", r"^at most 16 etcd endpoints$"),
    ("etcd://127.0.0.1:1/?ca_cert=/ca.pem", r"^unknown query key 'ca_cert' in etcd"),
    ("etcds://127.0.0.1:1/?cert_cert=/c.pem", r"^etcds: give cert_cert and cert_key together$"),
    ("etcds://127.0.0.1:1/?cert_key=/k.pem", r"^etcds: give cert_cert and cert_key together$"),
])
def test_bad_urls_are_refused_before_any_connection(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message):
        open_etcd_store(url, timeout_s=1.0)


def test_store_needs_an_endpoint_and_a_prefix(clients: Callable[[], Scripted]) -> None:
    with pytest.raises(StoreConfigError, match=r"^etcd store needs at least one endpoint$"):
        EtcdStore([])
    client = clients()
    with pytest.raises(StoreConfigError, match=r"^etcd key prefix must not be empty$"):
        EtcdStore([client], prefix="")
    assert client.calls == []


class Made:
    """Records the clients `open_etcd_store` makes; each really talks to the test member."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.kwargs: list[dict[str, Any]] = []
        self.closed: list[int] = []
        self.sessions: list[requests.Session] = []

    def __call__(self, **kwargs: Any) -> Etcd3Client:
        self.kwargs.append(kwargs)
        host, _, port = self.endpoint.rpartition(":")
        index = len(self.sessions)
        session = requests.Session()
        self.sessions.append(session)
        original = session.close

        def close() -> None:
            self.closed.append(index)
            original()

        session.close = close  # type: ignore[method-assign]  # records the call
        return Etcd3Client(host=host, port=int(port), timeout=kwargs["timeout"],
                           api_path="/v3/", session=session)


@pytest.fixture
def made(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Made]:
    recorder = Made(endpoint)
    monkeypatch.setattr(etcd_module, "Etcd3Client", recorder)
    yield recorder
    for session in recorder.sessions:
        session.close()


def test_endpoints_reach_the_clients_as_given(made: Made, prefix: str) -> None:
    url = ("etcd://127.0.0.1,[::1]:65535,10.0.0.1:1,Xen.example:2380,"
           + ",".join(["x:5"] * 12) + "?prefix=" + prefix)
    store = open_etcd_store(url, timeout_s=2.5)
    assert store.prefix == prefix
    hosts = [("127.0.0.1", 2379), ("::1", 65535), ("10.0.0.1", 1), ("Xen.example", 2380)]
    assert [(k["host"], k["port"]) for k in made.kwargs] == hosts + [("x", 5)] * 12
    for kwargs in made.kwargs:
        session = kwargs.pop("session")
        assert isinstance(session, requests.Session)
        assert session.trust_env is False
        assert (session.verify, session.cert) == (True, None)
        assert {k: v for k, v in kwargs.items() if k not in ("host", "port")} == {
            "protocol": "http", "timeout": 2.5, "api_path": "/v3/"}
    store.close()
    assert made.closed == list(range(16))


def test_etcds_options_reach_the_https_clients(made: Made, prefix: str) -> None:
    url = (f"etcds://127.0.0.1:2379/?prefix={prefix}&ca_cert=/tls/ca.pem"
           "&cert_cert=/tls/c.pem&cert_key=/tls/k.pem")
    store = open_etcd_store(url, timeout_s=1.5)
    (kwargs,) = made.kwargs
    session = kwargs.pop("session")
    assert (session.trust_env, session.verify, session.cert) == (
        False, "/tls/ca.pem", ("/tls/c.pem", "/tls/k.pem"))
    assert kwargs == {"host": "127.0.0.1", "port": 2379, "protocol": "https",
                      "timeout": 1.5, "api_path": "/v3/"}
    store.close()
    open_etcd_store(f"etcds://127.0.0.1:2379/?prefix={prefix}&ca_cert=/tls/ca.pem").close()
    assert made.sessions[1].cert is None
    assert made.kwargs[1]["timeout"] == 2.0  # the default bound of every request


def test_url_without_prefix_or_path_uses_the_default_prefix(endpoint: str) -> None:
    store = open_etcd_store(f"etcd://{endpoint}", timeout_s=TIMEOUT_S)  # opening only reads
    try:
        assert store.prefix == DEFAULT_PREFIX
        assert store.rolled_back is False
    finally:
        store.close()


def test_store_closes_only_the_clients_it_made(clients: Callable[[], Scripted],
                                               prefix: str) -> None:
    client = clients()
    closed: list[bool] = []
    original = client.session.close

    def close() -> None:
        closed.append(True)
        original()

    client.session.close = close  # type: ignore[method-assign]  # records the call
    EtcdStore([client], prefix=prefix).close()
    assert closed == []
    EtcdStore([client], prefix=prefix, owns_clients=True).close()
    assert closed == [True]
