"""Sphinx configuration: the guides (Markdown, through MyST), the normative specs (included
from specs/, the one copy) and the API reference generated from the docstrings (autodoc).

Build: `python -m sphinx -W --keep-going -b html docs docs/_build/html` (`.ci/docs.sh`).
"""

from __future__ import annotations

import jumpvpn_core

project = "jumpvpn-core"
author = "jumpvpn-core maintainers"
copyright = "jumpvpn-core maintainers, Apache-2.0"
release = jumpvpn_core.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "examples", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": False}

html_theme = "alabaster"
html_title = f"jumpvpn-core {release}"
html_static_path: list[str] = []


def setup(app: object) -> None:
    """Mermaid blocks (specs/state-diagram.md) are shown as text; docs/specs/state-diagram.md
    puts the drawn picture beside them."""
    from pygments.lexers.special import TextLexer
    from sphinx.highlighting import lexers

    lexers["mermaid"] = TextLexer()
