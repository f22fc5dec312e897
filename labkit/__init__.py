"""labkit: the Physics-of-LMs Lab toolkit.

Everything a chapter needs beyond narrative lives here, one concept per module:
data generators (``labkit.data``), information accounting (``labkit.info``), the model
(``labkit.model``), training (``labkit.train``), measurement (``labkit.measure``), sweeps,
plots and widgets. Notebooks start with ``S = labkit.setup(chapter, profile, seed)``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Setup", "setup", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing labkit.data must not pull in plotly (dependencies flow one way, and fast).
    if name in ("setup", "Setup"):
        from labkit import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
