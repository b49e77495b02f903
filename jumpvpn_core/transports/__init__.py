"""Reference transports: a strict wire codec, a demo key agreement and asyncio UDP drivers.

This package performs I/O. The sans-IO core never imports it (an import-linter contract
checks that); it depends on the core, never the other way round.
"""

from __future__ import annotations
