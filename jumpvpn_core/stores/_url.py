"""URL helpers shared by the store adapters: strict query parsing and port checks.

Every mistake in a store URL becomes a `StoreConfigError` that names the offending part,
so a misconfigured gateway stops at start-up instead of failing on its first request.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import SplitResult, parse_qsl

from jumpvpn_core.stores.base import StoreConfigError

__all__ = ["check_timeout", "query_options", "url_port"]


def query_options(parts: SplitResult, allowed: Collection[str]) -> dict[str, str]:
    """The URL's query as a dict; unknown or repeated keys are a `StoreConfigError`."""
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        # The query is not echoed: it may carry a credential the operator misplaced.
        raise StoreConfigError(f"malformed query string in {parts.scheme} store URL") from exc
    options: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise StoreConfigError(
                f"unknown query key {key!r} in {parts.scheme} store URL (known: {known})"
            )
        if key in options:
            raise StoreConfigError(f"query key {key!r} given twice in store URL")
        options[key] = value
    return options


def url_port(parts: SplitResult) -> int | None:
    """The URL's port, or None; a non-numeric or out-of-range port is a `StoreConfigError`."""
    try:
        return parts.port
    except ValueError as exc:
        raise StoreConfigError(f"bad port in {parts.scheme} store URL: {exc}") from exc


def check_timeout(timeout_s: float) -> float:
    """`timeout_s` if it is a finite positive number of seconds, else a `StoreConfigError`."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise StoreConfigError(f"timeout_s must be a number of seconds, got {timeout_s!r}")
    if not 0 < timeout_s < float("inf"):
        raise StoreConfigError(f"timeout_s must be positive and finite, got {timeout_s!r}")
    return float(timeout_s)
