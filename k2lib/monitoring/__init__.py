"""Prometheus metrics: one injected registry, never a module-level global."""

from k2lib.monitoring.metrics import new_registry

__all__ = ["new_registry"]
