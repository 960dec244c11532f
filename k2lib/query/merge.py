"""The seam and the merge, as pure functions over Arrow tables: no services, so every rule
here is unit- and property-tested.

- `seam_offsets` / `behind_partitions`: where the Kafka tail starts, and whether the broker
  still has the offsets a snapshot recorded.
- `filter_rows`, `tag_source`: both sides are cut by the same symbol and time predicate.
- `drop_ingested`: the time-overlap cutoff, one per `(exchange, symbol)`.
- `merge_sides`: union, dedup on `(exchange, symbol, seq, exch_ts)` (Iceberg wins), sort by
  `exch_ts` then `seq`, keep the newest `limit` rows. The time is part of the key because a
  sequence reset reuses seqs (a new session, later) while a repeated record is a copy; the
  Kafka tail cannot know the session the tracker will give its records.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from k2lib.wire.schema import (
    ARROW_SCHEMA,
    DECIMAL_PLACES,
    TS_TYPE,
    TradeBatch,
    conform,
    decimal_units,
)

__all__ = [
    "RESULT_SCHEMA",
    "SOURCES",
    "MergeOutcome",
    "behind_partitions",
    "drop_ingested",
    "empty_result",
    "filter_batch",
    "filter_rows",
    "merge_sides",
    "seam_offsets",
    "tag_source",
    "to_records",
]

ICEBERG, SPILL, KAFKA = "iceberg", "spill", "kafka"
# Also the dedup's preference: the committed copy, then the shed copy, then the tail's.
SOURCES = (ICEBERG, SPILL, KAFKA)
# A partition the snapshot never recorded has never been ingested: read it from the start.
OFFSET_BEGINNING = -2
RESULT_SCHEMA = ARROW_SCHEMA.append(pa.field("source", pa.string(), nullable=False))


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    rows: pa.Table  # RESULT_SCHEMA, oldest first
    duplicates_removed: int
    truncated: int  # rows dropped by `limit` (the oldest ones)


def seam_offsets(recorded: Mapping[int, int], partitions: Iterable[int]) -> dict[int, int]:
    """First offset of the tail per partition: the snapshot's next offset, or the start."""
    return {p: int(recorded.get(p, OFFSET_BEGINNING)) for p in partitions}


def behind_partitions(
    start: Mapping[int, int], high_watermarks: Mapping[int, int]
) -> dict[int, tuple[int, int]]:
    """Partitions whose high watermark is below the seam: `{p: (seam, hw)}`.

    A broker can only be behind a snapshot if it lost data (an in-memory broker restarted,
    or a topic recreated). Then offsets past the hw are not the records the snapshot saw.
    """
    return {
        p: (off, high_watermarks[p])
        for p, off in start.items()
        if off >= 0 and p in high_watermarks and high_watermarks[p] < off
    }


def filter_batch(
    batch: TradeBatch,
    symbols: Collection[str],
    exchange: str | None,
    start_us: int,
    end_us: int,
) -> np.ndarray:
    """Boolean mask: symbol in `symbols`, venue `exchange` (any if None), start <= ts < end."""
    mask = (batch.exch_ts >= start_us) & (batch.exch_ts < end_us)
    mask &= np.isin(batch.symbol, np.array([s.encode() for s in symbols], batch.symbol.dtype))
    if exchange is not None:
        mask &= batch.exchange == exchange.encode()
    return mask


def filter_rows(
    table: pa.Table,
    symbols: Collection[str],
    exchange: str | None,
    start_us: int,
    end_us: int,
) -> pa.Table:
    """`filter_batch` for an Arrow table in ARROW_SCHEMA (or RESULT_SCHEMA)."""
    ts = table.column("exch_ts")
    mask = pc.and_(
        pc.greater_equal(ts, pa.scalar(start_us, TS_TYPE)),
        pc.less(ts, pa.scalar(end_us, TS_TYPE)),
    )
    mask = pc.and_(mask, pc.is_in(table.column("symbol"), pa.array(sorted(symbols), pa.string())))
    if exchange is not None:
        mask = pc.and_(mask, pc.equal(table.column("exchange"), exchange))
    return table.filter(mask)


def tag_source(table: pa.Table, source: str) -> pa.Table:
    """ARROW_SCHEMA rows (any string widths, any UTC zone spelling) -> RESULT_SCHEMA rows."""
    # The cast is what makes both sides one type: pyiceberg may hand back `string` and
    # `timestamp[us, tz=+00:00]`, Kafka gives `large_string` and `tz=UTC`.
    table = conform(table)
    tags = pa.repeat(pa.scalar(source, pa.string()), table.num_rows)
    return table.append_column(RESULT_SCHEMA.field("source"), tags)


def drop_ingested(kafka: pa.Table, iceberg: pa.Table, buffer_us: int) -> pa.Table:
    """Time-overlap mode: drop the Kafka rows of each `(exchange, symbol)` older than that
    key's newest Iceberg row minus `buffer_us`, as taken to be ingested already.

    The cutoff is per key because ingest does not move all symbols at once: one cutoff
    from the newest symbol would drop a lagging symbol's rows that Iceberg does not have.
    A key with no Iceberg rows keeps all its Kafka rows; the merge's dedup removes the
    overlap inside the buffer.
    """
    if kafka.num_rows == 0 or iceberg.num_rows == 0:
        return kafka
    newest = iceberg.group_by(["exchange", "symbol"]).aggregate([("exch_ts", "max")])
    cutoff_of_key = pc.subtract(newest.column("exch_ts_max").cast(pa.int64()), buffer_us)
    where = pc.index_in(_key_text(kafka), value_set=_key_text(newest))
    cutoff = pc.take(cutoff_of_key, where)  # null for a key Iceberg does not hold
    keep = pc.greater_equal(kafka.column("exch_ts").cast(pa.int64()), cutoff)
    return kafka.filter(pc.fill_null(keep, True))


def _key_text(table: pa.Table) -> pa.ChunkedArray:
    # The codec admits only printable ASCII names (0x21-0x7E), so NUL cannot make two
    # different keys join to the same text.
    exchange = table.column("exchange").cast(pa.string())
    symbol = table.column("symbol").cast(pa.string())
    return pc.binary_join_element_wise(exchange, symbol, "\x00")


def empty_result() -> pa.Table:
    return RESULT_SCHEMA.empty_table()


def merge_sides(
    iceberg: pa.Table,
    kafka: pa.Table,
    limit: int | None = None,
    deferred: pa.Table | None = None,
) -> MergeOutcome:
    """Union the tagged sides, drop repeated keys, order by time, keep the newest `limit`."""
    sides = [iceberg, kafka] if deferred is None else [iceberg, deferred, kafka]
    both = pa.concat_tables(sides).combine_chunks()
    n = both.num_rows
    if n == 0:
        return MergeOutcome(rows=both, duplicates_removed=0, truncated=0)
    # Integer keys, one take: names become codes ranked like the strings they stand for,
    # so numpy's lexsort gives the same order as sorting the strings themselves.
    exchange = _ranked_codes(both.column("exchange"))
    symbol = _ranked_codes(both.column("symbol"))
    seq = both.column("seq").to_numpy()
    ts = both.column("exch_ts").cast(pa.int64()).to_numpy()
    rank = pc.index_in(both.column("source"), pa.array(SOURCES)).to_numpy(zero_copy_only=False)
    by_key = np.lexsort((rank, ts, seq, symbol, exchange))
    repeat = np.zeros(n, bool)
    repeat[1:] = True
    for column in (exchange, symbol, seq, ts):
        keyed = column[by_key]
        repeat[1:] &= keyed[1:] == keyed[:-1]
    kept = by_key[~repeat]
    # exch_ts, then seq, then venue and symbol, so that the order is total.
    ordered = kept[np.lexsort((symbol[kept], exchange[kept], seq[kept], ts[kept]))]
    truncated = max(0, ordered.size - limit) if limit is not None else 0
    rows = both.take(pa.array(ordered[truncated:]))
    return MergeOutcome(rows=rows, duplicates_removed=int(repeat.sum()), truncated=truncated)


def _ranked_codes(column: pa.ChunkedArray) -> np.ndarray:
    encoded = pc.dictionary_encode(column).combine_chunks()
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()
    rank_of = np.empty(order.size, np.int32)
    rank_of[order] = np.arange(order.size, dtype=np.int32)
    return rank_of[encoded.indices.to_numpy(zero_copy_only=False)]


def to_records(rows: pa.Table) -> list[dict[str, Any]]:
    """Rows for JSON and CSV: ISO-8601 UTC µs times and exact decimal strings."""
    out = pa.table(
        {
            "exchange": rows.column("exchange"),
            "symbol": rows.column("symbol"),
            "seq": rows.column("seq"),
            "exch_ts": _iso(rows.column("exch_ts")),
            "recv_ts": _iso(rows.column("recv_ts")),
            "price": _decimal_strings(rows.column("price")),
            "qty": _decimal_strings(rows.column("qty")),
            "side": rows.column("side"),
            "source": rows.column("source"),
            "kafka_partition": rows.column("kafka_partition"),
            "kafka_offset": rows.column("kafka_offset"),
        }
    )
    return out.to_pylist()


def _iso(column: pa.ChunkedArray) -> pa.Array:
    # Arrow's %S prints the fraction at the column's unit: microseconds here.
    text = pc.strftime(column.cast(TS_TYPE), format="%Y-%m-%dT%H:%M:%S")
    return pc.binary_join_element_wise(text, "Z", "")


def _decimal_strings(column: pa.ChunkedArray) -> pa.Array:
    # Arrow's decimal->string switches to exponents for tiny values; build it exactly.
    units = decimal_units(column)
    whole, frac = np.divmod(np.abs(units), 10**DECIMAL_PLACES)
    sign = np.where(units < 0, "-", "")
    frac_text = pc.utf8_lpad(pa.array(frac).cast(pa.string()), DECIMAL_PLACES, "0")
    return pc.binary_join_element_wise(
        pa.array(sign, pa.string()), pa.array(whole).cast(pa.string()), ".", frac_text, ""
    )
