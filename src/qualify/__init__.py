"""Qualify: an open, exact lead-qualification engine (MQL, PQL) driven by a YAML model."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
