#!/usr/bin/env bash
# The documentation site: Sphinx (autodoc + MyST), warnings are errors, and every public
# name exported by jumpvpn_core must be in the API reference. Needs the `docs` extra
# (.ci/run installs it with the pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf docs/_build
.venv/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
.venv/bin/python -m tools.check_api_docs docs/_build/html/objects.inv
echo "docs: built docs/_build/html with no warnings"
