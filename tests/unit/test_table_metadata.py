"""`ensure_table` loads before it creates: restarts leave no orphan metadata files.

Every `*.metadata.json` in the table's metadata folder must be the current metadata or an
entry of its metadata log; creating first (and catching "already exists") wrote one orphan
file per process start.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from k2lib.storage.table import TABLE_PROPERTIES, ensure_table
from k2lib.storage.writer import IcebergWriter
from k2lib.wire.schema import TradeBatch

pytestmark = [pytest.mark.unit]

T0 = 1_750_000_000_000_000


def catalog(tmp: Path) -> SqlCatalog:
    return SqlCatalog("t", uri=f"sqlite:///{tmp}/catalog.db", warehouse=f"file://{tmp}/wh")


def metadata_files(table) -> tuple[set[str], set[str]]:
    folder = Path(urlparse(table.metadata_location).path).parent
    on_disk = {p.name for p in folder.glob("*.metadata.json")}
    logged = {Path(urlparse(e.metadata_file).path).name for e in table.metadata.metadata_log}
    logged.add(Path(urlparse(table.metadata_location).path).name)
    return on_disk, logged


def test_twenty_process_starts_leave_no_orphan_metadata_file(tmp_path: Path) -> None:
    for start in range(20):
        table = ensure_table(catalog(tmp_path), "t.trades")  # a new process each time
        if start % 5 == 0:
            IcebergWriter(table, "t", partitions=[0]).commit(TradeBatch.empty(), {0: start})
    table = ensure_table(catalog(tmp_path), "t.trades")
    on_disk, logged = metadata_files(table)
    assert on_disk == logged, f"orphans: {sorted(on_disk - logged)}"
    assert len(on_disk) == 1 + 4  # created, then four commits


def test_a_table_made_before_a_property_existed_gets_it_once(tmp_path: Path) -> None:
    cat = catalog(tmp_path)
    cat.create_namespace("t")
    old = {k: v for k, v in TABLE_PROPERTIES.items() if k != "commit.retry.num-retries"}
    from k2lib.storage.table import PARTITION_SPEC, SORT_ORDER, TRADES_SCHEMA

    cat.create_table(
        "t.trades",
        schema=TRADES_SCHEMA,
        partition_spec=PARTITION_SPEC,
        sort_order=SORT_ORDER,
        properties=old,
    )
    first = ensure_table(catalog(tmp_path), "t.trades")
    assert first.properties["commit.retry.num-retries"] == "0"
    again = ensure_table(catalog(tmp_path), "t.trades")
    assert again.metadata_location == first.metadata_location  # nothing written the 2nd time


def test_a_table_made_before_the_session_column_gets_it_and_its_rows_read_as_session_zero(
    tmp_path: Path,
) -> None:
    import numpy as np
    import pyarrow as pa
    from pyiceberg.schema import Schema

    from k2lib.storage.changes import rows_added_since
    from k2lib.storage.table import (
        PARTITION_SPEC,
        SESSION,
        SORT_ORDER,
        TRADES_SCHEMA,
        held_mask,
        stored_keys,
    )
    from k2lib.testing import synthetic_trades

    cat = catalog(tmp_path)
    cat.create_namespace("t")
    before = [f for f in TRADES_SCHEMA.fields if f.name != SESSION]
    table = cat.create_table(
        "t.trades",
        schema=Schema(*before, identifier_field_ids=[1, 2, 3]),
        partition_spec=PARTITION_SPEC,
        sort_order=SORT_ORDER,
    )
    old = synthetic_trades(5, start_us=T0, span_us=1_000, seed=1).with_kafka(
        np.zeros(5), np.arange(5)
    )
    old_symbols = {s.decode() for s in old.symbol.tolist()}
    table.append(old.to_arrow().drop_columns([SESSION]).cast(table.schema().as_arrow()))
    table = ensure_table(catalog(tmp_path), "t.trades")
    assert SESSION in table.schema().column_names
    new = synthetic_trades(
        5, start_us=T0, span_us=1_000, seed=2, first_seq=dict.fromkeys(old_symbols, 100)
    ).with_kafka(np.zeros(5), np.arange(5, 10))
    IcebergWriter(table, "t", partitions=[0]).commit(new.with_session(np.full(5, 7)), {0: 10})
    assert sorted(k[2] for k in stored_keys(table)) == [0] * 5 + [7] * 5
    replayed = rows_added_since(table, 0)
    assert replayed.column(SESSION).fill_null(0).to_pylist() == [0] * 5 + [7] * 5
    exchange = [e.decode() for e in old.exchange.tolist()]
    symbol = [s.decode() for s in old.symbol.tolist()]
    assert held_mask(table, exchange, symbol, old.seq.tolist()).all()
    assert pa.types.is_int64(table.scan().to_arrow().schema.field(SESSION).type)
