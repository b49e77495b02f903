"""`python -m jumpvpn_core`: the same as the `jumpvpn` command."""

import sys

from jumpvpn_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
