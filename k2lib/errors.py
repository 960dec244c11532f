"""Every error K2 raises, in one flat module.

The tree::

    K2Error
    ├── ConfigError            bad configuration or CLI argument
    ├── ServiceError           a dependency (broker, Redis, catalog) is unreachable
    │   └── PortInUseError     a port that `k2 up` needs is taken by someone else
    ├── ValidationError        a record that decodes but breaks a rule
    ├── SourceError            a feed file that cannot be read at all
    ├── CircuitOpenError       a call refused because its breaker is open
    ├── StorageError           an Iceberg commit or read failed
    │   ├── DiskFullError      the disk under the warehouse is full: stop, do not retry
    │   └── CommitFencedError  another writer committed these partitions first: rewind
    ├── QueryError             a query that cannot be answered as asked
    │   └── InconsistentSeamError  Kafka and Iceberg disagree about offsets
    └── CostModelError         a workload or price the cost model rejects

A poison record is never raised past the pipeline: bytes that do not decode, or a record
that breaks a rule, become a DLQ entry with the reason.
"""

from __future__ import annotations

__all__ = [
    "CircuitOpenError",
    "CommitFencedError",
    "ConfigError",
    "CostModelError",
    "DiskFullError",
    "InconsistentSeamError",
    "K2Error",
    "PortInUseError",
    "QueryError",
    "ServiceError",
    "SourceError",
    "StorageError",
    "ValidationError",
]


class K2Error(Exception):
    """Root of every error K2 raises on purpose."""


class ConfigError(K2Error):
    """A configuration value or command-line argument is invalid."""


class ServiceError(K2Error):
    """A dependency (broker, Redis, catalog) is unreachable or misbehaving."""


class PortInUseError(ServiceError):
    """A port that the local stack needs is already taken by another process."""


class ValidationError(K2Error):
    """A record that decodes but breaks a schema rule."""


class SourceError(K2Error):
    """A feed source (file, capture) that cannot be read at all."""


class CircuitOpenError(K2Error):
    """A call refused without trying because its circuit breaker is open."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"circuit '{name}' is open; retry in {retry_after_s:.1f}s")
        self.name = name
        self.retry_after_s = retry_after_s


class StorageError(K2Error):
    """An Iceberg commit or read failed."""


class DiskFullError(StorageError):
    """No space left for the warehouse: the run stops; no snapshot was written."""


class CommitFencedError(StorageError):
    """The table no longer records the offsets this writer started from: nothing was
    appended; the writer must rewind to what the table records."""


class QueryError(K2Error):
    """A query that cannot be answered as asked."""


class InconsistentSeamError(QueryError):
    """Kafka's offsets are behind the offsets recorded in the Iceberg snapshot."""


class CostModelError(K2Error):
    """A workload, region or price that the cost model rejects."""
