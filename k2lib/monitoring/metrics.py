"""Registry creation. Components receive a `CollectorRegistry` and define their own metrics on it.

Re-running a notebook cell builds a new registry, so "Duplicated timeseries" cannot happen.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

__all__ = ["new_registry"]


def new_registry() -> CollectorRegistry:
    """A fresh registry, without the default process/platform collectors' globals."""
    return CollectorRegistry(auto_describe=True)
