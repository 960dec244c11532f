"""Feed sources: where trades come from before they reach Kafka.

Every source yields `TradeBatch` chunks and keeps a `SourceReport` of what it could not
read. `open_source("synthetic" | path)` picks one by its name, as pyiceberg's
`load_catalog` picks a catalog.
"""

from __future__ import annotations

from k2lib.feeds.base import FeedSource, SourceReport
from k2lib.feeds.faults import FaultInjector, FaultSpec, FaultTruth
from k2lib.feeds.sources import open_source

__all__ = [
    "FaultInjector",
    "FaultSpec",
    "FaultTruth",
    "FeedSource",
    "SourceReport",
    "open_source",
]
