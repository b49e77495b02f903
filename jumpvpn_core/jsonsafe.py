"""The one JSON loader of the library: total, bounded, strict. Pure (no I/O).

Every place the package reads JSON (store records, traces, the conformance protocol, golden
vectors, configuration files) reads it through `loads`, which either returns a value or
raises `JsonDecodeError`, never anything else, and does bounded work:

* nesting deeper than `MAX_DEPTH` arrays/objects is refused before parsing (no recursion
  limit is ever reached);
* an integer of more than `MAX_INT_DIGITS` digits is refused before it is converted (no
  quadratic conversion, no dependence on the interpreter's int-digit limit); no field of any
  of our formats needs more than 20 digits;
* `NaN`, `Infinity`, `-Infinity` and numbers that overflow to infinity are refused;
* an object with a repeated key is refused (which one would win is an ambiguity);
* text with a lone surrogate (raw or as a `\\uD800` escape) is refused, so every string
  the loader returns can be encoded as UTF-8;
* bytes must be UTF-8 (no BOM, no UTF-16/32 guessing).

Messages say what was wrong and where (character offset), never what the text held.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from jumpvpn_core.errors import JsonDecodeError

__all__ = ["MAX_DEPTH", "MAX_FLOAT_CHARS", "MAX_INT_DIGITS", "loads"]

#: Deepest nesting of arrays and objects accepted (our formats need 5).
MAX_DEPTH = 64
#: Longest integer accepted, in digits (a u64 needs 20).
MAX_INT_DIGITS = 40
#: Longest number with a fraction or exponent accepted, in characters.
MAX_FLOAT_CHARS = 64

# Strings (skipped) and brackets (counted), for the depth pre-scan. Linear: the two string
# alternatives are disjoint, so the pattern never backtracks.
_DEPTH_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise JsonDecodeError(f"integer of more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_FLOAT_CHARS:
        raise JsonDecodeError(f"number of more than {MAX_FLOAT_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise JsonDecodeError("number out of range")
    return value


def _constant(_name: str) -> Any:
    raise JsonDecodeError("NaN and Infinity are not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise JsonDecodeError("object with a repeated key")
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_int=_int, parse_float=_float,
                            parse_constant=_constant)
# Performance: checking every integer in Python more than doubles the cost of a store
# record's parse. Text without a run of more than MAX_INT_DIGITS digits anywhere cannot
# hold a longer integer, so it is parsed with the C integer conversion. The run is found
# at C speed: every digit byte mapped to "0", every other byte to " ", then one substring
# search (a regular expression costs ten times more on a 2 KB record).
_FAST_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=_float,
                                 parse_constant=_constant)
_DIGIT_MAP = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * (MAX_INT_DIGITS + 1)


def _check_depth(text: str) -> None:
    # Fast path: fewer opening brackets than the bound cannot nest deeper than it.
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for match in _DEPTH_TOKEN.finditer(text):
        first = text[match.start()]  # '"' for a skipped string, else the bracket itself
        if first in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise JsonDecodeError(f"nested deeper than {MAX_DEPTH} at offset {match.start()}")
        elif first in "]}":
            depth -= 1


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates produced by `\\uD800`-style escapes (depth is bounded)."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise JsonDecodeError("string with a lone surrogate") from None
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)


def loads(data: str | bytes | bytearray) -> Any:
    """Parse one JSON document, or raise `JsonDecodeError` (see the module docstring)."""
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonDecodeError(f"not UTF-8 (byte offset {exc.start})") from None
    elif isinstance(data, str):
        text = data
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JsonDecodeError(f"lone surrogate at offset {exc.start}") from None
    else:
        raise JsonDecodeError(f"JSON text must be str or bytes, got {type(data).__name__}")
    if text.startswith("\ufeff"):
        raise JsonDecodeError("byte order mark before the JSON text")
    _check_depth(text)
    try:
        decoder = _DECODER if _LONG_RUN in raw.translate(_DIGIT_MAP) else _FAST_DECODER
        value = decoder.decode(text)
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's own phrase ("Expecting value"); it never quotes the text.
        raise JsonDecodeError(f"not JSON: {exc.msg} at offset {exc.pos}") from None
    except RecursionError:  # only if the caller's own stack was already nearly exhausted
        raise JsonDecodeError("nested too deeply for the current stack") from None
    if "\\u" in text:
        _check_strings(value)
    return value
