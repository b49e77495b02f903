"""`jumpvpn sessions --store URL [list|show|count] --json` on every store kind (RM-4.2)."""

from __future__ import annotations

import json

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.cli.sessions import run
from jumpvpn_core.events import Close
from jumpvpn_core.stores import open_store
from tests.gateway.support import CLIENT, T0, make_gateway, secret_for, sid
from tests.stores.conftest import TIMEOUT_S


@pytest.mark.requirement("RM-4.2")
def test_sessions_verb_lists_shows_and_counts_without_secrets(
    store_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    store = open_store(store_url, timeout_s=TIMEOUT_S)
    gateway = make_gateway(store)
    for i in range(3):
        assert gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0).accepted
    store.create(sid(9), 1, b"\xff not a state")
    gateway.handle(sid(2), Close(T0 + 1))  # terminated and deleted
    if store_url.startswith("memory://"):
        # memory:// is private to its process: a second open sees an empty store.
        assert run(store_url, "count") == (0, {})
        store.close()
        return
    status, rows = run(store_url, "list", timeout_s=TIMEOUT_S)
    assert status == 0
    assert [r["session_id"] for r in rows] == [sid(0).hex(), sid(1).hex(), sid(9).hex()]
    assert [r["phase"] for r in rows] == ["ATTACHED", "ATTACHED", "INVALID"]
    assert run(store_url, "count", timeout_s=TIMEOUT_S) == (0, {"ATTACHED": 2, "INVALID": 1})
    status, shown = run(store_url, "show", sid(1).hex(), timeout_s=TIMEOUT_S)
    assert status == 0
    assert shown["state"]["session_id"] == sid(1).hex()
    assert run(store_url, "show", sid(5).hex(), timeout_s=TIMEOUT_S)[0] == 1
    assert main(["sessions", "--store", store_url, "--timeout", str(TIMEOUT_S), "--json",
                 "show", sid(0).hex()]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["phase"] == "ATTACHED"
    record = store.get(sid(0))
    assert record is not None
    key_hex = json.loads(record.data)["control_key"]
    assert key_hex not in printed  # never a secret
    assert "control_key" not in printed
    store.close()


def test_sessions_verb_refuses_a_bad_url_or_id() -> None:
    assert run("nosuch://x", "list")[0] == 2
    assert run("memory://", "show", "zz")[0] == 2
    assert main(["sessions", "--store", "nosuch://x", "count"]) == 2
