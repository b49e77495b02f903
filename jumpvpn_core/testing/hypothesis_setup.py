"""What the kit registers with Hypothesis: type strategies, the `jumpvpn` settings profile,
and where Hypothesis keeps its files.

* **Type strategies.** `register_type_strategies()` registers a strategy for every event
  class, so `st.from_type(Event)` (and `st.from_type(ReattachRequest)`, `st.builds(f)` for
  a function taking an `Event`) draws valid events. Hypothesis calls it through the
  `hypothesis` entry point (`[project.entry-points.hypothesis]` in `pyproject.toml`,
  `jumpvpn_core.testing._hypothesis_entry`) when it is imported, so installing the kit is
  enough. Importing this module registers both (once).
* **The `jumpvpn` profile** (`PROFILE`): no per-example deadline (a stateful example runs
  many steps, and a shared CI machine makes wall time meaningless as a test outcome), 200
  examples, 30 steps per stateful example, the `too_slow` health check off, and the example
  database under `hypothesis_dir()`. Select it with `settings.load_profile("jumpvpn")` or
  `pytest --hypothesis-profile=jumpvpn`.
* **Hypothesis's files.** `hypothesis_dir()` is `$JUMPVPN_HYPOTHESIS_DIR`, else
  `$HYPOTHESIS_STORAGE_DIRECTORY`, else `$XDG_CACHE_HOME/jumpvpn-core/hypothesis`, else
  `~/.cache/jumpvpn-core/hypothesis`: never `.hypothesis/` in the working directory.
  `use_hypothesis_dir()` points Hypothesis there for the whole process; `jumpvpn
  conformance` (option `--hypothesis-dir`) and the pytest plugin's conformance item call it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from jumpvpn_core import events as ev
from jumpvpn_core.events import EVENT_TYPES, Event
from jumpvpn_core.proof import PROOF_SIZE, SESSION_ID_SIZE
from jumpvpn_core.transport import TransportDescriptor, TransportKind

# This module imports only Hypothesis and the core: Hypothesis imports it (through the entry
# point) while another kit module may still be half-imported.

__all__ = [
    "HYPOTHESIS_DIR_ENV",
    "PROFILE",
    "event_strategies",
    "hypothesis_dir",
    "register_profile",
    "register_type_strategies",
    "setup_hook",
    "use_hypothesis_dir",
]

#: The environment variable naming the directory for Hypothesis's files.
HYPOTHESIS_DIR_ENV = "JUMPVPN_HYPOTHESIS_DIR"
#: The name of the settings profile the kit registers.
PROFILE = "jumpvpn"
#: Timestamps drawn by the type strategies (ms).
_MAX_TIME = 10_000_000


def hypothesis_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where Hypothesis keeps its files for the kit (see the module docstring)."""
    env = os.environ if environ is None else environ
    for name in (HYPOTHESIS_DIR_ENV, "HYPOTHESIS_STORAGE_DIRECTORY"):
        if env.get(name):
            return Path(env[name])
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(cache) / "jumpvpn-core" / "hypothesis"


def use_hypothesis_dir(directory: Path | None = None) -> Path:
    """Point Hypothesis's files (example database, caches) at `directory`, by default
    `hypothesis_dir()`, for the rest of the process. Returns the directory."""
    chosen = hypothesis_dir() if directory is None else directory
    set_hypothesis_home_dir(chosen)
    return chosen


def register_profile() -> None:
    """Register the `jumpvpn` settings profile (it is not loaded: users choose it)."""
    settings.register_profile(
        PROFILE,
        max_examples=200,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=DirectoryBasedExampleDatabase(hypothesis_dir() / "examples"),
    )


_HOSTS = ("10.0.0.1", "192.0.2.7", "198.51.100.9", "2001:db8::1", "fe80::1")


def _transports() -> st.SearchStrategy[TransportDescriptor]:
    return st.builds(TransportDescriptor, st.sampled_from(tuple(TransportKind)),
                     st.sampled_from(_HOSTS), st.integers(min_value=1, max_value=65_535))


def _session_ids() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=SESSION_ID_SIZE, max_size=SESSION_ID_SIZE)


def _times() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=_MAX_TIME)


def _small() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=1_000)


def _proofs() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=PROOF_SIZE, max_size=PROOF_SIZE)


def event_strategies() -> dict[type, st.SearchStrategy[Event]]:
    """One strategy per event class: valid instances, any role, proofs arbitrary."""
    t = _times()
    only_time: tuple[type[ev.Tick | ev.Close | ev.OwnershipAmbiguous | ev.Evict
                          | ev.StoreRecordInvalid | ev.DeliveryTimeout
                          | ev.AllTransportsFailed], ...] = (
        ev.Tick, ev.Close, ev.OwnershipAmbiguous, ev.Evict, ev.StoreRecordInvalid,
        ev.DeliveryTimeout, ev.AllTransportsFailed)
    table: dict[type, st.SearchStrategy[Event]] = {cls: st.builds(cls, t) for cls in only_time}
    table.update({
        ev.Attach: st.builds(ev.Attach, t, _transports()),
        ev.InboundTraffic: st.builds(ev.InboundTraffic, t, _transports(),
                                     st.integers(min_value=0, max_value=1500)),
        ev.PacketLoss: st.builds(ev.PacketLoss, t, st.integers(min_value=1, max_value=64)),
        ev.TransportFailed: st.builds(ev.TransportFailed, t, _transports()),
        ev.RttSample: st.builds(ev.RttSample, t, _transports(),
                                st.integers(min_value=1, max_value=ev.RTT_MAX_MS)),
        ev.ProbeLost: st.builds(ev.ProbeLost, t, _transports()),
        ev.CandidateDiscovered: st.builds(ev.CandidateDiscovered, t, _transports()),
        ev.CandidateLost: st.builds(ev.CandidateLost, t, _transports()),
        ev.PathChallengeReceived: st.builds(
            ev.PathChallengeReceived, t, _transports(), st.binary(min_size=1, max_size=32),
            _transports(), _small(), _small(), t, _proofs()),
        ev.ReattachAccepted: st.builds(
            ev.ReattachAccepted, t, _transports(), _session_ids(),
            st.integers(min_value=1, max_value=1_000), _small(), t, _transports(), _proofs()),
        ev.ReattachRequest: st.builds(
            ev.ReattachRequest, t, _transports(), _session_ids(),
            st.integers(min_value=1, max_value=1_000), _small(), t, _transports(), _proofs(),
            st.binary(max_size=16), st.integers(min_value=0, max_value=1500)),
    })
    return table


def register_type_strategies() -> None:
    """Register a strategy for every event class: `st.from_type(Event)` then works."""
    table = event_strategies()
    missing = set(EVENT_TYPES) - set(table)
    if missing:  # a new event class without a strategy: fail loudly, never draw nothing
        raise RuntimeError(f"no strategy for event class(es) "
                           f"{sorted(c.__name__ for c in missing)}")
    for cls, strategy in table.items():
        st.register_type_strategy(cls, strategy)


_registered: list[bool] = []


def setup_hook() -> None:
    """Type strategies and the `jumpvpn` profile, registered once per process."""
    if not _registered:
        register_type_strategies()
        register_profile()
        _registered.append(True)


setup_hook()
