"""`jumpvpn demo` runs a real loopback session and exits 0 only if the outcomes happened."""

from __future__ import annotations

import re

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.testing.attacker import RawUdpPeer


@pytest.mark.requirement("RM-2.2", "RM-3.2")
def test_demo_survives_port_jump_and_rejects_replay(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out
    summary = out.split("== summary ==", 1)[1]
    for name in ("session id", "loss burst", "port jump", "replay attack", "payload"):
        assert re.search(rf"^  OK   {name}\b", summary, flags=re.MULTILINE), summary
    assert "result: PASS" in summary
    # The timeline shows the story as it happened, with reasons.
    timeline = out.split("== summary ==", 1)[0]
    assert "ATTACHED -> RECOVERING  LOSS_THRESHOLD_EXCEEDED" in timeline
    assert "CHALLENGE -> udp:127.0.0.1:" in timeline
    assert "REJECT REPLAY_DETECTED  [SECURITY_EVENT]" in timeline
    jump = re.search(r"OK   port jump +udp:127\.0\.0\.1:(\d+) -> udp:127\.0\.0\.1:(\d+)", summary)
    assert jump is not None
    assert jump.group(1) != jump.group(2)
    session = re.search(r"OK   session id +([0-9a-f]{32})", summary)
    assert session is not None
    assert f"session {session.group(1)}" in timeline


def test_demo_exits_nonzero_when_the_replay_is_never_rejected(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The attacker's datagrams vanish, so no rejection can be observed: the demo must fail.
    monkeypatch.setattr(RawUdpPeer, "send", lambda self, datagram, to: None)
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 1
    assert re.search(r"^  FAIL replay attack", out, flags=re.MULTILINE), out
    assert "result: FAIL" in out
