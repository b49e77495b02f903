"""The datadriven script format (after etcd raft's `testdata/*.txt`).

A script is a header, then cases::

    # a comment line
    section: 2.1
    title: Loss spike with a candidate
    expect: ATTACHED -> RECOVERING, then REATTACHED on the candidate

    init t=0
    ----
    client: BIRTH v0
    server: BIRTH v0

A case is one command line, a line `----`, then the expected output block, which ends at
a blank line (or the end of the file). Outside expected blocks, lines starting with `#`
are comments and blank lines separate cases. Header directives (`key: value`) come
before the first case; `section`, `title` and `expect` are required.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from jumpvpn_core.errors import JumpVpnError

__all__ = [
    "HEADER_KEYS",
    "SEPARATOR",
    "Case",
    "Script",
    "ScriptError",
    "parse_script",
    "render_script",
]

SEPARATOR = "----"
HEADER_KEYS: tuple[str, ...] = ("section", "title", "expect")


class ScriptError(JumpVpnError, ValueError):
    """A script is malformed or a command in it failed. The message starts `file:line:`."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}")


@attrs.frozen
class Case:
    """One command, where it is, and the output the script expects from it."""

    line: int
    command: str
    expected: tuple[str, ...]


@attrs.frozen
class Script:
    """A parsed script. `segments` keeps every line so that `render_script` can rewrite
    expected blocks in place: a segment is either a raw line (str) or a `Case`."""

    path: str
    header: dict[str, str]
    cases: tuple[Case, ...]
    segments: tuple[str | Case, ...]

    @property
    def name(self) -> str:
        """The script's file name."""
        return Path(self.path).name


def parse_script(text: str, path: str) -> Script:
    """Parse script `text` (read from `path`, used in error messages)."""
    lines = text.splitlines()
    header: dict[str, str] = {}
    cases: list[Case] = []
    segments: list[str | Case] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        lineno = index + 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            segments.append(line)
            index += 1
            continue
        next_line = lines[index + 1] if index + 1 < len(lines) else None
        if next_line is None or next_line.strip() != SEPARATOR:
            key, sep, value = line.partition(":")
            if sep and not cases and key.strip().isidentifier() and " " not in key.strip():
                key = key.strip()
                if key not in HEADER_KEYS:
                    raise ScriptError(path, lineno, f"unknown header directive {key!r}; "
                                      f"known: {', '.join(HEADER_KEYS)}")
                if key in header:
                    raise ScriptError(path, lineno, f"header directive {key!r} given twice")
                if not value.strip():
                    raise ScriptError(path, lineno, f"header directive {key!r} is empty")
                header[key] = value.strip()
                segments.append(line)
                index += 1
                continue
            raise ScriptError(path, lineno, f"command {stripped!r} must be followed by a "
                              f"line {SEPARATOR!r} and its expected output")
        expected: list[str] = []
        index += 2
        while index < len(lines) and lines[index].strip():
            expected.append(lines[index].rstrip())
            index += 1
        case = Case(lineno, stripped, tuple(expected))
        cases.append(case)
        segments.append(case)
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise ScriptError(path, 1, f"missing header directive(s): {', '.join(missing)}")
    if not cases:
        raise ScriptError(path, 1, "script has no cases")
    return Script(path, header, tuple(cases), tuple(segments))


def render_script(script: Script, outputs: dict[int, tuple[str, ...]]) -> str:
    """The script text with each case's expected block replaced by `outputs[case.line]`
    (cases missing from `outputs` keep their block)."""
    out: list[str] = []
    for segment in script.segments:
        if isinstance(segment, Case):
            out.append(segment.command)
            out.append(SEPARATOR)
            out.extend(outputs.get(segment.line, segment.expected))
        else:
            out.append(segment)
    return "\n".join(out) + "\n"
