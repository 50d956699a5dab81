"""s2r-bench: measure whether refining synthetic images buys accuracy on real data."""

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "sim2real_bench"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for plugin hook implementations: ``@hookimpl def register_refiners(register): ...``."""

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
