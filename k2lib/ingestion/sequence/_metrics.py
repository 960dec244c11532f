"""The tracker's Prometheus counters, on the registry its owner passes in. No labels: the
per-key detail lives in the open-gap listing, not in metric cardinality."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from k2lib.ingestion.sequence import BatchClassification

__all__ = ["SequenceMetrics"]


class SequenceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=registry)

        self.gaps = counter("k2_sequence_gaps_total", "Holes found and not filled in-batch")
        self.gap_messages = counter("k2_sequence_gap_messages_total", "Seqs inside new gaps")
        self.late_fills = counter("k2_sequence_late_fills_total", "Records filling a recorded gap")
        self.resets = counter("k2_sequence_resets_total", "Session resets detected")
        self.duplicates = counter("k2_sequence_duplicates_total", "Records seen before")
        self.out_of_order = counter("k2_sequence_out_of_order_total", "Local swaps in a batch")
        self.abandoned = counter(
            "k2_sequence_abandoned_gap_messages_total", "Open seqs dropped by a session reset"
        )

    def observe(self, result: BatchClassification) -> None:
        s = result.summary()
        self.gaps.inc(s["gaps"])
        self.gap_messages.inc(s["gap_messages"])
        self.late_fills.inc(s["late_fill"])
        self.resets.inc(s["reset"])
        self.duplicates.inc(s["duplicate"])
        self.out_of_order.inc(s["out_of_order"])
        self.abandoned.inc(s["abandoned_gap_messages"])
