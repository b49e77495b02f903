"""Flood limits (risk model §3.1): integer token buckets with time passed in.

Nothing here reads a clock: every call takes `now_ms`. A bucket holds at most `limit`
tokens and gains `limit` tokens every `interval_ms` (integer arithmetic only; partial
intervals are kept, never rounded away). Time that goes backwards refills nothing.

`SourceLimiter` keeps one bucket per source host in a table bounded by `max_sources`; when
it is full the least recently seen source is forgotten (it comes back with a full bucket,
which is the price of bounded memory; the global bucket still caps the total).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["SourceLimiter", "TokenBucket"]


class TokenBucket:
    """`limit` requests per `interval_ms`, refilled continuously in integer steps."""

    __slots__ = ("_credit", "interval_ms", "last_ms", "limit", "tokens")

    def __init__(self, limit: int, interval_ms: int, now_ms: int) -> None:
        if limit < 1 or interval_ms < 1:
            raise ValueError("limit and interval_ms must be positive")
        self.limit = limit
        self.interval_ms = interval_ms
        self.tokens = limit
        self.last_ms = now_ms
        # Refill is limit/interval tokens per ms; `_credit` carries the remainder
        # (in units of 1/interval_ms tokens) so no fraction is ever lost.
        self._credit = 0

    def _refill(self, now_ms: int) -> None:
        elapsed = now_ms - self.last_ms
        if elapsed <= 0:
            return
        self.last_ms = now_ms
        if self.tokens >= self.limit:
            self._credit = 0
            return
        credit = self._credit + elapsed * self.limit
        gained, self._credit = divmod(credit, self.interval_ms)
        self.tokens += gained
        if self.tokens >= self.limit:
            self.tokens = self.limit
            self._credit = 0

    def try_take(self, now_ms: int) -> bool:
        """Spend one token if there is one. True when the request is admitted."""
        self._refill(now_ms)
        if self.tokens > 0:
            self.tokens -= 1
            return True
        return False


class SourceLimiter:
    """One `TokenBucket` per source key, at most `max_sources` of them (LRU eviction)."""

    __slots__ = ("_buckets", "evicted", "interval_ms", "limit", "max_sources")

    def __init__(self, limit: int, interval_ms: int, max_sources: int) -> None:
        if max_sources < 1:
            raise ValueError("max_sources must be positive")
        self.limit = limit
        self.interval_ms = interval_ms
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        #: How many sources were forgotten to keep the table bounded.
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def try_take(self, source: str, now_ms: int) -> bool:
        """Spend one of `source`'s tokens. True when the request is admitted."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
                self.evicted += 1
            bucket = TokenBucket(self.limit, self.interval_ms, now_ms)
            self._buckets[source] = bucket
        else:
            self._buckets.move_to_end(source)
        return bucket.try_take(now_ms)
