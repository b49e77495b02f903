"""The reference key agreement: both sides agree, nothing secret leaks into repr."""

from __future__ import annotations

import pytest

from jumpvpn_core.proof import derive_control_key
from jumpvpn_core.transports.errors import HandshakeError
from jumpvpn_core.transports.handshake import Initiator, derive_data_key, respond


def test_both_sides_derive_the_same_session_id_and_secret() -> None:
    client = Initiator()
    server_public, server_keys = respond(client.public)
    client_keys = client.finish(server_public, server_keys.session_id)
    assert client_keys == server_keys
    assert len(client_keys.session_id) == 16
    assert len(client_keys.secret) == 32


def test_two_handshakes_give_unrelated_sessions() -> None:
    a = respond(Initiator().public)[1]
    b = respond(Initiator().public)[1]
    assert a.session_id != b.session_id
    assert a.secret != b.secret


def test_secret_never_appears_in_repr() -> None:
    keys = respond(Initiator().public)[1]
    assert keys.secret.hex() not in repr(keys)
    assert repr(keys.secret) not in repr(keys)


def test_a_mismatched_session_id_is_refused() -> None:
    client = Initiator()
    server_public, keys = respond(client.public)
    with pytest.raises(HandshakeError):
        client.finish(server_public, bytes(16) if keys.session_id != bytes(16) else b"\1" * 16)


def test_a_low_order_key_share_is_refused() -> None:
    with pytest.raises(HandshakeError):
        respond(bytes(32))


def test_data_key_is_separate_from_the_control_key() -> None:
    keys = respond(Initiator().public)[1]
    control_key = derive_control_key(keys.secret, keys.session_id)
    assert derive_data_key(control_key, keys.session_id) != control_key
