"""The `jumpvpn` command (click). Each verb lives in its own module of this package.

Adding a verb:

1. Write `jumpvpn_core/cli/<name>.py` with one module-level `command`, made with the
   `verb` decorator from `jumpvpn_core.cli._common` (or a `click.Group` of such verbs):

       from jumpvpn_core.cli._common import CliError, emit_json, json_option, verb

       @verb("sessions", "List the sessions of a store.")
       @click.option("--store", required=True)
       @json_option
       def command(store: str, as_json: bool) -> int:
           if not store.startswith(("sqlite:", "redis:", "postgresql:")):
               raise CliError(f"--store {store!r} is not a store URL")
           ...
           return 0

2. Add `"<verb>": "<name>"` to `VERB_MODULES` below (the order `jumpvpn --help` lists
   them in). A verb's module is imported only when that verb runs (or for `--help`), so
   `jumpvpn --version` and every other verb stay quick to start.

The verb's callback returns its exit status (None means 0). Errors the user can fix are
raised as `CliError` (printed as one line `jumpvpn <verb>: error: ...`, exit 2); do not
print errors yourself and do not call `sys.exit`. Exit statuses: 0 ok, 1 a check failed,
2 usage or input error, 70 internal error, 130 interrupted (Ctrl-C). A verb that reports
takes `--json`; a verb that needs the source tree calls `needs_checkout` first.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from jumpvpn_core import __version__
from jumpvpn_core.cli._common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, error_line

__all__ = ["VERB_MODULES", "cli", "main"]

#: Verb name -> its module in this package, in the order `jumpvpn --help` lists them.
VERB_MODULES: dict[str, str] = {
    "scenarios": "scenarios",
    "simulate": "simulate",
    "vectors": "vectors",
    "verify-trace": "verify_trace",
    "explore": "explore",
    "diagram": "diagram",
    "conformance": "conformance",
    "demo": "demo",
    "traceability": "traceability",
    "lab": "lab",
    "sessions": "sessions",
}


class _Verbs(click.Group):
    """Imports a verb's module when the verb is asked for; lists them in table order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERB_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = VERB_MODULES.get(cmd_name)
        if module is None:
            return None
        command = importlib.import_module(f"jumpvpn_core.cli.{module}").command
        if not isinstance(command, click.Command):
            raise TypeError(f"jumpvpn_core.cli.{module}.command is not a click command")
        return command


@click.group(cls=_Verbs, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="jumpvpn",
                      message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> int:
    """jumpvpn-core: the session is the anchor, the transport is volatile.

    Exit status: 0 ok, 1 a check failed, 2 usage or input error, 70 internal error,
    130 interrupted.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help(), err=True)
        return EXIT_USAGE
    return EXIT_OK


# click >= 8.2 raises this for a group given no subcommand; older versions exit directly.
_NO_ARGS: type[click.UsageError] | None = getattr(click.exceptions, "NoArgsIsHelpError", None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jumpvpn` console script. Returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        status = cli.main(args=args, prog_name="jumpvpn", standalone_mode=False)
    except click.UsageError as exc:
        if _NO_ARGS is not None and isinstance(exc, _NO_ARGS) and exc.ctx is not None:
            # A group named without its action (`jumpvpn vectors`): its help, as for `jumpvpn`.
            click.echo(exc.ctx.get_help(), err=True)
            return EXIT_USAGE
        where = exc.ctx.command_path if exc.ctx is not None else "jumpvpn"
        error_line(where, f"{exc.format_message()} (see {where} --help)")
        return EXIT_USAGE
    except click.ClickException as exc:
        error_line("jumpvpn", exc.format_message())
        return EXIT_USAGE
    except (click.Abort, KeyboardInterrupt):
        click.echo("jumpvpn: interrupted", err=True)
        return EXIT_INTERRUPTED
    return status if isinstance(status, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
