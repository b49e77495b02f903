"""Arguments of scenario commands: `key=value` pairs, roles, directions, values in
event-text form (`jumpvpn_core.scenarios.eventtext`), and the error a command fails with."""

from __future__ import annotations

from typing import Any

from jumpvpn_core.phases import Role
from jumpvpn_core.scenarios.eventtext import EventTextError, parse_value
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "CommandError",
    "direction_arg",
    "head_args",
    "int_arg",
    "kv_args",
    "only",
    "parse_arg",
    "role_arg",
    "transport_arg",
]

_ROLES = {"client": Role.CLIENT, "server": Role.SERVER}
_DIRECTIONS = {"client->server": Role.CLIENT, "server->client": Role.SERVER}


class CommandError(Exception):
    """A command failed; the runner turns it into a `ScriptError` at the command's line."""


def kv_args(args: list[str]) -> dict[str, str]:
    """`key=value` arguments, each key once."""
    out: dict[str, str] = {}
    for token in args:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise CommandError(f"expected key=value, got {token!r}")
        if key in out:
            raise CommandError(f"argument {key!r} given twice")
        out[key] = value
    return out


def only(kv: dict[str, str], allowed: tuple[str, ...], command: str) -> None:
    """Refuse arguments outside `allowed`."""
    unknown = sorted(set(kv) - set(allowed))
    if unknown:
        raise CommandError(f"{command}: unknown argument(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(allowed) or 'none'}")


def head_args(args: list[str], usage: str, allowed: tuple[str, ...] | None = None,
              command: str = "") -> tuple[str, dict[str, str]]:
    """A command's first argument and the `key=value` arguments after it (only `allowed`
    ones, when given); `usage` is the error when there is no first argument."""
    if not args:
        raise CommandError(usage)
    kv = kv_args(args[1:])
    if allowed is not None:
        only(kv, allowed, command)
    return args[0], kv


def parse_arg(kind: type, text: str, name: str) -> Any:
    """One argument value in event-text form."""
    try:
        return parse_value(kind, text, name)
    except EventTextError as exc:
        raise CommandError(str(exc)) from None


def int_arg(kv: dict[str, str], key: str, default: int | None = None) -> int:
    """An integer argument (required when there is no default)."""
    if key not in kv:
        if default is None:
            raise CommandError(f"missing argument {key}=")
        return default
    value: int = parse_arg(int, kv[key], key)
    return value


def transport_arg(kv: dict[str, str], key: str) -> TransportDescriptor | None:
    """A transport argument, or None when absent."""
    if key not in kv:
        return None
    value: TransportDescriptor = parse_arg(TransportDescriptor, kv[key], key)
    return value


def role_arg(text: str) -> Role:
    """`client` or `server`."""
    try:
        return _ROLES[text]
    except KeyError:
        raise CommandError(f"role must be client or server, got {text!r}") from None


def direction_arg(text: str) -> Role:
    """`client->server` or `server->client`: the sending role."""
    try:
        return _DIRECTIONS[text]
    except KeyError:
        raise CommandError(
            f"direction must be client->server or server->client, got {text!r}") from None
