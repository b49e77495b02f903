"""`jumpvpn diagram`: draw the transition table as mermaid and as SVG or PNG.

Drawn from `jumpvpn_core.phases.TRANSITION_TABLE` (see `jumpvpn_core.audit.diagram`); the
mermaid text needs nothing else, the picture needs matplotlib (the `sim` extra).
"""

from __future__ import annotations

from pathlib import Path

import click

from jumpvpn_core.cli._common import CliError, check_output_file, emit_json, json_option, verb

__all__ = ["command"]

_FORMATS = (".svg", ".png")


@verb("diagram", "Draw the transition table: mermaid text and an SVG or PNG picture.\n\n"
      "Without options prints the mermaid diagram. --out FILE.svg|FILE.png draws the "
      "picture, --mermaid FILE writes the mermaid text (FILE.md: as specs/state-diagram.md).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="write the picture here (.svg or .png)")
@click.option("--mermaid", "mermaid_out", type=click.Path(path_type=Path), default=None,
              help="write the mermaid text here (a .md file gets the specs/ page around it)")
@json_option
def command(out: Path | None, mermaid_out: Path | None, as_json: bool) -> int:
    """Handler of `jumpvpn diagram`."""
    from jumpvpn_core.audit.diagram import (
        render_mermaid,
        state_diagram_markdown,
        transition_rows,
    )

    if out is not None and out.suffix.lower() not in _FORMATS:
        raise CliError(f"--out {out}: give a .svg or .png file name")
    for path, option in ((out, "--out"), (mermaid_out, "--mermaid")):
        if path is not None:
            check_output_file(path, option)
    if out is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError("drawing needs matplotlib; run: pip install "
                           "'jumpvpn-core[sim]' (the mermaid text does not)") from None
    rows = transition_rows()
    mermaid = render_mermaid(rows)
    written = []
    if mermaid_out is not None:
        text = state_diagram_markdown(rows) if mermaid_out.suffix == ".md" else mermaid
        mermaid_out.write_text(text, encoding="utf-8")
        written.append(str(mermaid_out))
    if out is not None:
        from jumpvpn_core.audit.diagram import draw_diagram

        draw_diagram(rows, out)
        written.append(str(out))
    if as_json:
        emit_json({"mermaid": mermaid, "written": written, "transitions": len(rows)})
    elif written:
        for path_text in written:
            click.echo(f"wrote {path_text}")
    else:
        click.echo(mermaid, nl=False)
    return 0
