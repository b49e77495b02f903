"""Where the test suite finds Redis and PostgreSQL, and what it does when they are absent.

`redis_url_or_skip()` / `postgres_url_or_skip()` read `JUMPVPN_REDIS_URL` /
`JUMPVPN_POSTGRES_URL` (defaults: the loopback servers), probe them once per process with
a short timeout, and return the URL. When a server cannot be reached the calling test is
skipped with the reason, or fails instead when `JUMPVPN_REQUIRE_SERVICES=1` (as in CI), so
a missing service can never turn a CI run green by skipping.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from typing import NoReturn
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_REDIS_URL",
    "POSTGRES_ENV",
    "REDIS_ENV",
    "REQUIRE_ENV",
    "postgres_url_or_skip",
    "redis_url_or_skip",
    "services_required",
]

REDIS_ENV = "JUMPVPN_REDIS_URL"
POSTGRES_ENV = "JUMPVPN_POSTGRES_URL"
REQUIRE_ENV = "JUMPVPN_REQUIRE_SERVICES"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PROBE_TIMEOUT_S = 1.0


def services_required() -> bool:
    """True when `JUMPVPN_REQUIRE_SERVICES=1`: an absent service is a failure, not a skip."""
    return os.environ.get(REQUIRE_ENV, "") == "1"


def _unavailable(reason: str) -> NoReturn:
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def _loopback_problem(url: str, env: str) -> str | None:
    """Tests talk to loopback servers only; a reason string if `url` points elsewhere."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError as exc:
        return f"{env} is not a valid URL: {exc}"
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return f"{env} host {host!r} is not a loopback address; tests only use local servers"


@functools.cache
def _redis_problem(url: str) -> str | None:
    problem = _loopback_problem(url, REDIS_ENV)
    if problem is not None:
        return problem
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=PROBE_TIMEOUT_S,
            socket_timeout=PROBE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"Redis not reachable at {REDIS_ENV}={_redact(url)}: {type(exc).__name__}: {exc}"
    return None


@functools.cache
def _postgres_problem(url: str) -> str | None:
    problem = _loopback_problem(url, POSTGRES_ENV)
    if problem is not None:
        return problem
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return (
            f"PostgreSQL not reachable at {POSTGRES_ENV}={_redact(url)}: "
            f"{type(exc).__name__}: {first_line}"
        )
    return None


def _redact(url: str) -> str:
    """`url` without its password, fit for a skip reason."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def redis_url_or_skip() -> str:
    """The test Redis URL, after a quick probe; skips (or fails, if required) otherwise."""
    url = os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL
    problem = _redis_problem(url)
    if problem is not None:
        _unavailable(problem)
    return url


def postgres_url_or_skip() -> str:
    """The test PostgreSQL URL, after a quick probe; skips (or fails, if required) otherwise."""
    url = os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL
    problem = _postgres_problem(url)
    if problem is not None:
        _unavailable(problem)
    return url
