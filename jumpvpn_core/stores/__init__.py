"""Session stores: where a gateway commits session states, with atomic compare-and-set.

One contract (`SessionStore`), five adapters: `memory` (simulators and tests), `sqlite`
(the embedded default, durable), `redis`, `postgres` and `etcd` (shared by a cluster;
etcd recommended for high availability). The core never imports this package.
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
