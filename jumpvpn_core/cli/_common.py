"""What every `jumpvpn` verb shares: the one error path, exit codes, output checks, JSON,
progress lines and tables that fit the terminal.

The error path: a verb raises `CliError` for anything the user can fix (a bad value, an
unreadable input, an output that cannot be written); `Verb.invoke` prints it as one line,
`jumpvpn <verb>: error: <message>`, on stderr and returns its status (2 unless the verb says
otherwise). Click's own usage errors are printed the same way by `jumpvpn_core.cli.main`.
Ctrl-C: a verb that has partial outputs catches `KeyboardInterrupt`, flushes them and
re-raises; `Verb.invoke` then prints `jumpvpn <verb>: interrupted` and returns 130.
Anything else is a bug: one line naming the exception, status 70, and the traceback only
when `JUMPVPN_TRACEBACK=1` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "ProgressLines",
    "Verb",
    "check_output_dir",
    "check_output_file",
    "emit_json",
    "error_line",
    "fit_table",
    "json_option",
    "needs_checkout",
    "verb",
]

#: The run did what was asked and everything checked out.
EXIT_OK = 0
#: The run finished and found a problem (a mismatch, a violation, a failed check).
EXIT_FAILED = 1
#: A usage or input error: nothing (or nothing more) was done.
EXIT_USAGE = 2
#: A bug in jumpvpn-core itself (EX_SOFTWARE).
EXIT_INTERNAL = 70
#: Interrupted by Ctrl-C (128 + SIGINT); partial outputs were flushed.
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A usage or input error, printed as `jumpvpn <verb>: error: <message>`."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


def error_line(where: str, message: str) -> None:
    """Print the one error line for `where` (e.g. `jumpvpn simulate`) on stderr."""
    one_line = " ".join(message.split())
    click.echo(f"{where}: error: {one_line}", err=True)


class Verb(click.Command):
    """A `jumpvpn` verb: its callback returns the exit status (None means 0)."""

    def invoke(self, ctx: click.Context) -> int:
        """Run the callback through the one error path; return the exit status."""
        where = ctx.command_path
        try:
            result = super().invoke(ctx)
        except CliError as exc:
            error_line(where, str(exc))
            return exc.status
        except KeyboardInterrupt:
            sys.stdout.flush()
            click.echo(f"{where}: interrupted", err=True)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # `jumpvpn ... | head`: the reader left; nothing is wrong with the run.
            _silence_stdout()
            return EXIT_OK
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("JUMPVPN_TRACEBACK") == "1":
                traceback.print_exc()
            click.echo(f"{where}: internal error: {type(exc).__name__}: {exc} (a bug; set "
                       "JUMPVPN_TRACEBACK=1 for the traceback)", err=True)
            return EXIT_INTERNAL
        return EXIT_OK if result is None else int(result)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def verb(name: str, help_text: str, **settings: Any) -> Callable[[F], Verb]:
    """Decorator: make the function a `jumpvpn` verb called `name`.

    `help_text`'s first line is the summary `jumpvpn --help` lists.
    """

    def decorate(function: F) -> Verb:
        command = click.command(name, cls=Verb, help=help_text,
                                context_settings={"max_content_width": 100}, **settings)
        return command(function)

    return decorate


def json_option(function: F) -> F:
    """`--json`: print one JSON document on stdout instead of the human report."""
    option = click.option("--json", "as_json", is_flag=True,
                          help="print one JSON document on stdout instead of the report")
    return option(function)


def emit_json(data: Any) -> None:
    """Print `data` as the verb's one JSON document (sorted keys, stable)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def check_output_file(path: Path, option: str) -> Path:
    """Check, before any work, that `path` can be written as a file; create its directory.

    Raises `CliError` naming `option` when it cannot.
    """
    if path.is_dir():
        raise CliError(f"{option} {path}: is a directory, not a file")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot create directory {parent}: "
                       f"{exc.strerror or exc}") from None
    existed = path.exists()
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot write: {exc.strerror or exc}") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """Check, before any work, that `path` is (or can be made) a writable directory."""
    if path.exists() and not path.is_dir():
        raise CliError(f"{option} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot write there: {exc.strerror or exc}") from None
    return path


def needs_checkout(verb_name: str, what: str) -> Path:
    """The source checkout's root, or `CliError`: `what` needs a source checkout."""
    from jumpvpn_core.specs import checkout_root

    root = checkout_root()
    if root is None:
        raise CliError(f"{what} needs a source checkout (git clone the project and run "
                       f"`jumpvpn {verb_name}` from it)")
    return root


class ProgressLines:
    """Progress for long runs when stderr is not a terminal: a plain line at most every
    `every_s` seconds of wall time (CI logs show that the run is alive). On a terminal it
    prints nothing; verbs may draw a live bar there instead."""

    def __init__(self, where: str, every_s: float = 5.0, *, enabled: bool | None = None) -> None:
        self.where = where
        self.every_s = every_s
        self.enabled = (not sys.stderr.isatty()) if enabled is None else enabled
        self._last = time.monotonic()

    def update(self, text: str, *, force: bool = False) -> None:
        """Print `text` if enough time has passed (or `force`)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            click.echo(f"{self.where}: {text}", err=True)


def _terminal_width() -> int:
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _clip(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…"


def fit_table(headings: Sequence[str], rows: Sequence[Sequence[str]], *,
              flexible: Sequence[int] = (), width: int | None = None) -> str:
    """A plain-text table. Columns listed in `flexible` are clipped (with `…`) so that
    the table fits `width` (default: the terminal's, 100 when there is none)."""
    limit = _terminal_width() if width is None else width
    widths = [max(len(str(row[i])) for row in [headings, *rows]) for i in range(len(headings))]
    gap = 2
    excess = sum(widths) + gap * (len(widths) - 1) - limit
    floors = {i: max(len(headings[i]), 12) for i in flexible}
    while excess > 0:
        # Water-filling: clip the widest flexible column one character at a time.
        shrinkable = [i for i in flexible if widths[i] > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_clip(str(c), w).ljust(w) for c, w in zip(cells, widths, strict=True))

    out = [line(headings), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(text.rstrip() for text in out) + "\n"
