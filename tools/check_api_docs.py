"""Check that the built API reference documents every public name of `jumpvpn_core`.

    python -m tools.check_api_docs docs/_build/html/objects.inv

Exit 1 (listing them) when a name in `jumpvpn_core.__all__` has no entry in the Sphinx
inventory; `.ci/docs.sh` runs it after the build.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sphinx.util.inventory import InventoryFile

import jumpvpn_core


def documented(inventory: Path) -> set[str]:
    """Every object name in a Sphinx `objects.inv`."""
    with inventory.open("rb") as handle:
        loaded = InventoryFile.load(handle, "", lambda base, uri: uri)
    return {name for entries in loaded.values() for name in entries}


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when every public name is documented."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.check_api_docs OBJECTS_INV", file=sys.stderr)
        return 2
    names = documented(Path(args[0]))
    missing = [n for n in jumpvpn_core.__all__ if f"jumpvpn_core.{n}" not in names]
    if missing:
        print(f"not in the API reference: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"API reference: all {len(jumpvpn_core.__all__)} public names of jumpvpn_core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
