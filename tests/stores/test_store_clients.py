"""Redis and etcd stores, operator surface: TLS to a real server with throw-away
certificates (`rediss://`, `etcds://`), and clients passed in that the store never closes.

Each TLS test starts a private server (redis-server with `--tls-port`, an etcd member with
an https client URL) on a free loopback port; the shared servers are never touched.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests
from etcd3gw.client import Etcd3Client

from jumpvpn_core.stores import StoreConfigError, StoreUnavailableError, open_store
from jumpvpn_core.stores.etcd import EtcdStore
from jumpvpn_core.stores.redis import RedisStore
from tests.services import redis_url_or_skip
from tests.stores.etcd_server import etcd_binary
from tests.stores.redis_server import free_port, redis_server_binary
from tests.stores.tls_certs import TlsFiles, make_tls_files

pytestmark = pytest.mark.services

TIMEOUT_S = 5.0


def _q(path: Path) -> str:
    return quote(str(path), safe="/")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(10)


@pytest.fixture(scope="module")
def tls_redis(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Port of a private redis-server that speaks TLS only and wants client certificates."""
    port = free_port()
    directory = tmp_path_factory.mktemp("redis-tls")
    process = subprocess.Popen(  # noqa: S603
        [redis_server_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tls.server_cert), "--tls-key-file", str(tls.server_key),
         "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "yes",
         "--save", "", "--dir", str(directory), "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(tls.ca),
                             ssl_certfile=str(tls.client_cert),
                             ssl_keyfile=str(tls.client_key), socket_timeout=1)
        try:
            if client.ping():
                break
        except (redis.RedisError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                pytest.skip("redis-server with TLS did not start (built without TLS?)")
            time.sleep(0.05)
        finally:
            client.close()
    yield port
    _stop(process)


def _rediss(port: int, **query: str) -> str:
    tail = "&".join(f"{key}={value}" for key, value in
                    {"durability": "none", "prefix": f"tls:{uuid.uuid4().hex}:", **query}.items())
    return f"rediss://127.0.0.1:{port}/0?{tail}"


def test_rediss_with_ca_and_client_certificate_works(tls: TlsFiles, tls_redis: int) -> None:
    store = open_store(_rediss(tls_redis, ssl_ca_certs=_q(tls.ca),
                               ssl_certfile=_q(tls.client_cert),
                               ssl_keyfile=_q(tls.client_key)), timeout_s=TIMEOUT_S)
    try:
        assert store.create(b"\x01" * 16, 0, b"over tls")
        record = store.get(b"\x01" * 16)
        assert record is not None
        assert record.data == b"over tls"
    finally:
        store.close()


def test_rediss_refuses_a_server_its_ca_did_not_sign(tls: TlsFiles, tls_redis: int) -> None:
    url = _rediss(tls_redis, ssl_ca_certs=_q(tls.other_ca), ssl_certfile=_q(tls.client_cert),
                  ssl_keyfile=_q(tls.client_key))
    with pytest.raises(StoreUnavailableError, match=r"(?i)certificate"):
        open_store(url, timeout_s=TIMEOUT_S)


def test_rediss_without_the_client_certificate_is_refused_by_the_server(
    tls: TlsFiles, tls_redis: int
) -> None:
    with pytest.raises(StoreUnavailableError):
        open_store(_rediss(tls_redis, ssl_ca_certs=_q(tls.ca)), timeout_s=TIMEOUT_S)


def test_plain_redis_url_does_not_talk_to_a_tls_port(tls_redis: int) -> None:
    url = f"redis://127.0.0.1:{tls_redis}/0?durability=none"
    with pytest.raises(StoreUnavailableError):
        open_store(url, timeout_s=1.0)


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("ssl_cert_reqs=s3cret", "ssl_cert_reqs must be"),
        ("ssl_check_hostname=s3cret", "ssl_check_hostname must be"),
        ("ssl_password=s3cret", "'ssl_password'"),
    ],
)
def test_bad_rediss_option_names_the_option_never_its_value(query: str, complaint: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        open_store(f"rediss://127.0.0.1:1/0?{query}", timeout_s=1.0)
    assert complaint in str(info.value)
    assert "s3cret" not in str(info.value)


def test_tls_options_on_plain_redis_are_refused() -> None:
    with pytest.raises(StoreConfigError, match="'ssl_ca_certs'"):
        open_store("redis://127.0.0.1:1/0?ssl_ca_certs=/x", timeout_s=1.0)


def test_passed_redis_client_is_used_and_left_open() -> None:
    client = redis.Redis.from_url(redis_url_or_skip(), socket_timeout=TIMEOUT_S)
    prefix = f"jumpvpn-test:{uuid.uuid4().hex}:"
    try:
        store = RedisStore(client, prefix=prefix, durability="none")
        assert store.client is client
        assert store.create(b"\x02" * 16, 0, b"x")
        store.close()
        assert client.ping()  # still usable: the store did not close it
        assert client.exists(store.key(b"\x02" * 16)) == 1
    finally:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()


def test_store_from_url_closes_the_client_it_opened(
    redis_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(redis_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, RedisStore)
    closed: list[bool] = []
    original = store.client.close

    def close() -> None:
        closed.append(True)
        original()

    monkeypatch.setattr(store.client, "close", close)
    store.close()
    assert closed == [True]


# --- etcd -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_etcd(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Client port of a private etcd member serving https and requiring client certs."""
    binary = etcd_binary()
    directory = tmp_path_factory.mktemp("etcd-tls")
    port, peer = free_port(), free_port()
    log = (directory / "etcd.log").open("ab")
    process = subprocess.Popen(  # noqa: S603
        [binary, "--name", "tls0", "--data-dir", str(directory / "data"),
         "--listen-client-urls", f"https://127.0.0.1:{port}",
         "--advertise-client-urls", f"https://127.0.0.1:{port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"tls0=http://127.0.0.1:{peer}",
         "--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key),
         "--trusted-ca-file", str(tls.ca), "--client-cert-auth",
         "--log-level", "error"],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = requests.post(f"https://127.0.0.1:{port}/v3/maintenance/status", json={},
                                  verify=str(tls.ca), timeout=1,
                                  cert=(str(tls.client_cert), str(tls.client_key)))
            if reply.ok and reply.json().get("leader"):
                break
        except (requests.RequestException, ValueError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail("etcd with TLS did not start; see " + str(directory / "etcd.log"))
        time.sleep(0.1)
    yield port
    _stop(process)


def _etcds(port: int, **query: Path) -> str:
    tail = "&".join(f"{key}={_q(value)}" for key, value in query.items())
    return f"etcds://127.0.0.1:{port}/?prefix=/tls/{uuid.uuid4().hex}/&{tail}"


def test_etcds_with_ca_and_client_certificate_works(tls: TlsFiles, tls_etcd: int) -> None:
    store = open_store(_etcds(tls_etcd, ca_cert=tls.ca, cert_cert=tls.client_cert,
                              cert_key=tls.client_key), timeout_s=TIMEOUT_S)
    try:
        assert store.create(b"\x03" * 16, 0, b"over tls")
        assert store.compare_and_set(b"\x03" * 16, 0, 1, b"again")
        record = store.get(b"\x03" * 16)
        assert record is not None
        assert (record.version, record.data) == (1, b"again")
    finally:
        store.close()


def test_etcds_refuses_a_server_its_ca_did_not_sign(tls: TlsFiles, tls_etcd: int) -> None:
    url = _etcds(tls_etcd, ca_cert=tls.other_ca, cert_cert=tls.client_cert,
                 cert_key=tls.client_key)
    with pytest.raises(StoreUnavailableError, match=r"(?i)ssl|certificate"):
        open_store(url, timeout_s=TIMEOUT_S)


def test_etcds_without_a_client_certificate_is_refused_by_the_server(
    tls: TlsFiles, tls_etcd: int
) -> None:
    with pytest.raises(StoreUnavailableError):
        open_store(_etcds(tls_etcd, ca_cert=tls.ca), timeout_s=TIMEOUT_S)


def test_etcds_needs_cert_and_key_together(tls: TlsFiles) -> None:
    with pytest.raises(StoreConfigError, match="together"):
        open_store(_etcds(1, ca_cert=tls.ca, cert_cert=tls.client_cert), timeout_s=1.0)


def test_passed_etcd_client_is_used_and_left_open(tls: TlsFiles, tls_etcd: int) -> None:
    # A session of the caller's own; trust_env off, or requests would let an environment
    # CA bundle replace the CA file (docs/operations.md).
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca)
    session.cert = (str(tls.client_cert), str(tls.client_key))
    closed: list[bool] = []
    original = session.close

    def close() -> None:
        closed.append(True)
        original()

    session.close = close  # type: ignore[method-assign]  # records the call
    client = Etcd3Client(host="127.0.0.1", port=tls_etcd, protocol="https",
                         timeout=TIMEOUT_S, api_path="/v3/", session=session)
    store = EtcdStore([client], prefix=f"/passed/{uuid.uuid4().hex}/")
    assert store.create(b"\x04" * 16, 0, b"x")
    store.close()
    assert closed == []
    assert client.status()["header"]["revision"]
    session.close()
    assert closed == [True]
