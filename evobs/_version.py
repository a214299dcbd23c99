"""The distribution's version: the one place it is written (``pyproject.toml`` reads it).

A literal, not ``importlib.metadata.version("evobs")``: that scans every installed
distribution's metadata, a cost every cold start would pay for one string.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
