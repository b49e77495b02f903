"""Session stores: where a gateway commits session states, with atomic compare-and-set.

One contract (`SessionStore`), four adapters: `memory` (simulators and tests), `sqlite`
(the embedded default, durable), `redis` and `postgres` (shared by a cluster). The core
never imports this package.
"""

from jumpvpn_core.stores.base import (
    SessionStore,
    StoreConfigError,
    StoredSession,
    StoreError,
    StoreRolledBackError,
    StoreSchemaError,
    StoreUnavailableError,
)
from jumpvpn_core.stores.factory import open_store

__all__ = [
    "SessionStore",
    "StoreConfigError",
    "StoreError",
    "StoreRolledBackError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "StoredSession",
    "open_store",
]
