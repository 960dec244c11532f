"""Turns a batch into one `StorePlan` with NumPy: spans of bits for the keys to record,
single-bit probes for the Bloom filter's "maybe" keys, and the probes' rows to map the
store's answer back. No per-record Python: 10k records over 500 symbols become ~500 spans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from k2lib.ingestion.dedup.keys import BUCKET_BITS
from k2lib.ingestion.dedup.store import StorePlan
from k2lib.ingestion.sequence._runs import grouped

__all__ = ["DedupPlanner", "Planned"]

MAX_SPAN_GAP = 16  # zero bytes worth sending inside a span rather than starting a new one
_BIT_IN_BUCKET = (1 << BUCKET_BITS) - 1


@dataclass(frozen=True, kw_only=True)
class Planned:
    plan: StorePlan
    probe_rows: np.ndarray
    """The batch row of each probe."""


class DedupPlanner:
    @staticmethod
    def within_batch(names: np.ndarray, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (True for a record repeating an earlier one of this batch, rows by key then seq).

        A feed is mostly in order per symbol, so grouping by name (arrival order kept) leaves
        seqs ascending except in the few symbols with a late or re-sent record: only those are
        re-sorted.
        """
        order = grouped(names)
        n, s = names[order], seq[order]
        same = n[1:] == n[:-1]
        descent = same & (s[1:] < s[:-1])
        if descent.any():
            group = np.concatenate([[0], np.cumsum(~same)])
            at = np.flatnonzero(np.isin(group, group[1:][descent]))
            rows = order[at]
            # Sort within each group only (ties keep arrival order): groups stay where they are.
            order[at] = rows[np.lexsort((seq[rows], group[at]))]
            s = seq[order]
        repeat = np.zeros(order.size, bool)
        repeat[1:] = same & (s[1:] == s[:-1])
        within = np.zeros(order.size, bool)
        within[order[repeat]] = True
        return within, order

    @staticmethod
    def plan(
        names: np.ndarray,
        seq: np.ndarray,
        *,
        order: np.ndarray,
        live: np.ndarray,
        maybe: np.ndarray,
        windows: list[int],
        ttl_s: int,
    ) -> Planned:
        """Rows in `live` (by `order`): a probe where `maybe`, else a bit of a span."""
        rows = order[live[order]]
        probe = maybe[rows]
        c, s = names[rows], seq[rows]
        bucket, bit = s >> BUCKET_BITS, s & _BIT_IN_BUCKET
        # Rows are sorted by (key, seq), so each (key, bucket) bitmap is one contiguous stretch.
        new = np.ones(rows.size, bool)
        new[1:] = (c[1:] != c[:-1]) | (bucket[1:] != bucket[:-1])
        field_id = np.cumsum(new) - 1
        fields = np.stack([c[new], bucket[new].astype(np.uint64)], axis=1)
        span_field, span_bit = field_id[~probe], bit[~probe]
        byte = span_bit >> 3
        cut = np.ones(byte.size, bool)
        cut[1:] = (span_field[1:] != span_field[:-1]) | (byte[1:] - byte[:-1] > MAX_SPAN_GAP)
        starts = np.flatnonzero(cut)
        ends = np.append(starts[1:], byte.size)
        first = byte[starts]
        length = byte[ends - 1] - first + 1 if starts.size else np.zeros(0, np.int64)
        span_of = np.cumsum(cut) - 1
        at = np.cumsum(length) - length
        pos = at[span_of] + byte - first[span_of]
        weights = (0x80 >> (span_bit & 7)).astype(np.float64)
        masks = np.bincount(pos, weights=weights, minlength=int(length.sum())).astype(np.uint8)
        plan = StorePlan(
            windows=windows,
            ttl_s=ttl_s,
            fields=fields,
            spans=np.stack([span_field[starts], first, length], axis=1).astype(np.int64),
            masks=masks.tobytes(),
            probes=np.stack([field_id[probe], bit[probe]], axis=1).astype(np.int64),
        )
        return Planned(plan=plan, probe_rows=rows[probe])
