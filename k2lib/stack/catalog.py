"""The Iceberg catalog: the local SqlCatalog on SQLite, or whatever pyiceberg config names."""

from __future__ import annotations

from pyiceberg.catalog import Catalog, load_catalog

from k2lib.config import K2Settings

__all__ = ["load_k2_catalog"]


def load_k2_catalog(settings: K2Settings) -> Catalog:
    """`load_catalog(settings.catalog_name)` with the local defaults unless configured."""
    props = settings.catalog_properties()
    if props:
        settings.warehouse.mkdir(parents=True, exist_ok=True)
    return load_catalog(settings.catalog_name, **props)
