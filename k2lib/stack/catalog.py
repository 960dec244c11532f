"""The Iceberg catalog, for `k2lib.stack` callers (it lives in k2lib.connect)."""

from __future__ import annotations

from k2lib.connect import load_k2_catalog

__all__ = ["load_k2_catalog"]
