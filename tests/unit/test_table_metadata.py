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
