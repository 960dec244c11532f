"""Data-file compaction on a real pyiceberg SqlCatalog (SQLite in tmp_path).

"Concurrent" writers are second handles on the same catalog, committing from inside the
compaction's progress callback: after the small files were read and rewritten, before
the compaction commits, which is exactly the window a live writer can land in.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from k2lib.errors import CommitFencedError
from k2lib.storage.changes import current_sequence_number, rows_added_since
from k2lib.storage.compaction import (
    CompactionConfig,
    compact,
    k2_properties,
    small_files,
)
from k2lib.storage.maintenance import MaintenanceConfig, expire_snapshots, run_maintenance
from k2lib.storage.table import ensure_table, latest_offsets, offsets_of, stored_keys
from k2lib.storage.writer import IcebergWriter
from k2lib.testing import next_seq, synthetic_trades
from k2lib.wire.schema import TradeBatch

pytestmark = [pytest.mark.unit]

TOPIC = "t.trades"
TABLE = "t.trades"
DAY0_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
DAY_US = 86_400_000_000
DAY0 = dt.date(2025, 1, 1)
CONFIG = CompactionConfig(min_files=4)


def open_table(tmp: Path) -> Table:
    """A new handle on the shared catalog: what another process would hold."""
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp}/catalog.db", warehouse=f"file://{tmp}/wh")
    return ensure_table(catalog, TABLE)


class Feed:
    """Gap-free synthetic trades, one small batch per call, and the offsets they reach."""

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}
        self.offset = 0
        self.calls = 0

    def batch(self, rows: int = 300, day: int = 0) -> TradeBatch:
        self.calls += 1
        start = DAY0_US + day * DAY_US + self.calls * 60_000_000
        out = synthetic_trades(
            rows, start_us=start, span_us=60_000_000, first_seq=self.seqs, seed=self.calls
        )
        self.seqs = next_seq(out, self.seqs)
        self.offset += rows
        return out


def micro_commits(writer: IcebergWriter, feed: Feed, n: int, *, day: int = 0) -> None:
    for _ in range(n):
        batch = feed.batch(day=day)
        writer.commit(batch, dict.fromkeys(writer.partitions, feed.offset))


def files_of(table: Table) -> list[str]:
    table.refresh()
    return [t.file.file_path for t in table.scan().plan_files()]


def test_compaction_keeps_rows_keys_and_offsets_and_drops_the_file_count(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    writer = IcebergWriter(table, TOPIC, partitions=[0, 1])
    feed = Feed()
    micro_commits(writer, feed, 12)
    keys = Counter(stored_keys(table))
    rows = (
        table.scan()
        .to_arrow()
        .sort_by([("exchange", "ascending"), ("symbol", "ascending"), ("seq", "ascending")])
    )
    before = latest_offsets(table)
    assert len(files_of(table)) == 12

    result = compact(table, CONFIG)

    summary = result.summary()
    assert summary["files_before"] == 12 and summary["files_after"] == 1
    assert summary["rows"] == len(keys) == 12 * 300
    assert Counter(stored_keys(table)) == keys
    after_rows = (
        table.scan()
        .to_arrow()
        .sort_by([("exchange", "ascending"), ("symbol", "ascending"), ("seq", "ascending")])
    )
    assert after_rows.equals(rows)  # every column of every row, not only the keys
    assert len(files_of(table)) == 1
    after = latest_offsets(table)
    # The compaction snapshot itself records the position: the same offsets, versions,
    # commit number and commit id as the append it was based on.
    assert after.snapshot_id == table.current_snapshot().snapshot_id != before.snapshot_id
    assert (after.topic, after.offsets, after.versions) == (
        before.topic,
        before.offsets,
        before.versions,
    )
    assert (after.commit_number, after.commit_id) == (before.commit_number, before.commit_id)
    # One transaction, two snapshots: the overwrite (deleting exactly the files read) and
    # an empty append whose manifest list leaves out the manifest of deleted entries.
    current = table.current_snapshot()
    rewrite = table.snapshot_by_id(current.parent_snapshot_id)
    assert rewrite.summary.operation.value == "overwrite"
    assert rewrite.summary["deleted-data-files"] == "12"
    assert rewrite.summary["added-data-files"] == "1"
    assert rewrite.parent_snapshot_id == before.snapshot_id
    assert current.summary.operation.value == "append"
    assert "added-data-files" not in current.summary.additional_properties
    assert current.summary["total-data-files"] == "1"
    assert latest_offsets(table).offsets == offsets_of(rewrite).offsets
    assert [m.deleted_files_count for m in current.manifests(table.io)] == [0]


def test_the_rewritten_file_is_sorted_by_the_table_sort_order(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    micro_commits(IcebergWriter(table, TOPIC, partitions=[0]), Feed(), 6)
    compact(table, CONFIG)
    (task,) = table.scan().plan_files()
    import pyarrow.parquet as pq

    with table.io.new_input(task.file.file_path).open() as f:
        data = pq.read_table(f, columns=["exchange", "symbol", "exch_ts", "seq"])
    assert data.equals(
        data.sort_by(
            [
                ("exchange", "ascending"),
                ("symbol", "ascending"),
                ("exch_ts", "ascending"),
                ("seq", "ascending"),
            ]
        )
    )


def test_a_day_below_min_files_is_left_alone(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    micro_commits(IcebergWriter(table, TOPIC, partitions=[0]), Feed(), 3)
    snapshot = table.current_snapshot().snapshot_id
    result = compact(table, CONFIG)
    assert result.days == () and table.current_snapshot().snapshot_id == snapshot


def test_only_the_requested_day_is_rewritten(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    writer = IcebergWriter(table, TOPIC, partitions=[0])
    feed = Feed()
    micro_commits(writer, feed, 5, day=0)
    micro_commits(writer, feed, 5, day=1)
    assert {d: len(t) for d, t in small_files(table, CONFIG).items()} == {
        DAY0: 5,
        DAY0 + dt.timedelta(days=1): 5,
    }
    result = compact(table, CONFIG, day=DAY0 + dt.timedelta(days=1))
    assert [d.day for d in result.days] == [DAY0 + dt.timedelta(days=1)]
    assert {d: len(t) for d, t in small_files(table, CONFIG).items()} == {
        DAY0: 5,
        DAY0 + dt.timedelta(days=1): 1,
    }
    assert len(stored_keys(table)) == 10 * 300


def during_commit(hook: Callable[[], None]) -> Callable[[str], None]:
    """A progress callback that runs `hook` once, after the last bin was written."""
    fired: list[bool] = []

    def progress(message: str) -> None:
        if "written" in message and not fired:
            fired.append(True)
            hook()

    return progress


def test_an_append_between_read_and_commit_is_kept_and_the_compaction_retries(
    tmp_path: Path,
) -> None:
    table = open_table(tmp_path)
    feed = Feed()
    micro_commits(IcebergWriter(table, TOPIC, partitions=[0, 1]), feed, 8)
    other = IcebergWriter(open_table(tmp_path), TOPIC, partitions=[0, 1])  # another process
    late = feed.batch()

    def writer_commits() -> None:
        other.commit(late, {0: feed.offset, 1: feed.offset})

    result = compact(table, CONFIG, progress=during_commit(writer_commits))

    (day,) = result.days
    assert day.outcome == "compacted" and day.attempts == 2 and day.files_before == 8
    keys = stored_keys(table)
    assert len(keys) == len(set(keys)) == 9 * 300  # the late append is in, nothing twice
    assert len(files_of(table)) == 2  # the rewritten file and the late one
    # The compaction snapshot carries the late commit's record, not the one it began on.
    recorded = latest_offsets(table)
    assert recorded.snapshot_id == table.current_snapshot().snapshot_id
    assert recorded.offsets == {0: feed.offset, 1: feed.offset}
    assert recorded.commit_number == 9
    assert recorded.commit_id == latest_offsets(other.table).commit_id


def test_a_compaction_that_lost_its_files_to_another_gives_up_cleanly(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    micro_commits(IcebergWriter(table, TOPIC, partitions=[0]), Feed(), 6)
    keys = Counter(stored_keys(table))
    rival = open_table(tmp_path)

    def rival_compacts() -> None:  # our own rewrite is already on disk here
        compact(rival, CONFIG)

    result = compact(table, CONFIG, progress=during_commit(rival_compacts))

    (day,) = result.days
    assert day.outcome == "superseded"
    assert result.summary()["files_written"] == 0
    assert Counter(stored_keys(table)) == keys
    live = files_of(table)
    assert len(live) == 1 and live == files_of(rival)
    # Our rewritten file was deleted: only files some snapshot references remain.
    on_disk = {str(p) for p in (tmp_path / "wh").rglob("*.parquet")}
    assert {p.removeprefix("file://") for p in live} <= on_disk
    assert len(on_disk) == 6 + 1


def test_a_writer_after_compaction_is_not_fenced_and_its_offsets_merge(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    feed = Feed()
    w0 = IcebergWriter(table, TOPIC, partitions=[0])
    w1 = IcebergWriter(open_table(tmp_path), TOPIC, partitions=[1])
    for _ in range(4):
        w0.commit(feed.batch(), {0: feed.offset})
        w1.rebase()
        w1.commit(feed.batch(), {1: feed.offset + 5})
        w0.rebase()
    before = latest_offsets(w1.table)
    compact(open_table(tmp_path), CONFIG)

    # w0 last synced before the compaction: its base is the pre-compaction snapshot.
    result = w0.commit(feed.batch(), {0: feed.offset})

    assert result.offsets.offsets == {0: feed.offset, 1: before.offsets[1]}
    assert result.offsets.commit_number == before.commit_number + 1
    assert result.offsets.versions == {0: before.commit_number + 1, 1: before.versions[1]}
    keys = stored_keys(table)
    assert len(keys) == len(set(keys)) == 9 * 300


def test_a_stale_writer_is_still_fenced_after_compaction(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    feed = Feed()
    micro_commits(IcebergWriter(table, TOPIC, partitions=[0]), feed, 5)
    zombie = IcebergWriter(open_table(tmp_path), TOPIC, partitions=[0])
    successor = IcebergWriter(open_table(tmp_path), TOPIC, partitions=[0])
    successor.commit(feed.batch(), {0: feed.offset})
    compact(table, CONFIG)
    with pytest.raises(CommitFencedError):
        zombie.commit(feed.batch(), {0: feed.offset})
    assert len(stored_keys(table)) == 6 * 300


def test_k2_properties_copy_every_k2_key_of_the_recorded_snapshot(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    writer = IcebergWriter(table, TOPIC, partitions=[0], topic_id="abc")
    feed = Feed()
    for _ in range(4):
        writer.commit(feed.batch(), {0: feed.offset}, extra_properties={"k2.spill.tokens": '["x"]'})
    wanted = k2_properties(table)
    compact(table, CONFIG)
    props = table.current_snapshot().summary.additional_properties
    assert {k: v for k, v in props.items() if k.startswith("k2.")} == wanted
    assert wanted["k2.spill.tokens"] == '["x"]' and wanted["k2.kafka.topic_id"] == "abc"


def test_state_sync_replays_rewritten_rows_and_misses_none(tmp_path: Path) -> None:
    """Rewritten files get the compaction's sequence number: rows_added_since a mark from
    before the compaction returns them again (replayed, harmless), never fewer."""
    table = open_table(tmp_path)
    writer = IcebergWriter(table, TOPIC, partitions=[0])
    feed = Feed()
    micro_commits(writer, feed, 5)
    mark = current_sequence_number(table)
    compact(table, CONFIG)
    assert rows_added_since(table, mark).num_rows == 5 * 300
    micro_commits(writer, feed, 1)
    assert rows_added_since(table, current_sequence_number(table) - 1).num_rows == 300


def test_maintenance_compacts_when_due_and_not_when_optional_work_is_skipped(
    tmp_path: Path,
) -> None:
    table = open_table(tmp_path)
    micro_commits(IcebergWriter(table, TOPIC, partitions=[0]), Feed(), 6)
    config = MaintenanceConfig(every_commits=0, compact_every_commits=3, compaction=CONFIG)

    assert run_maintenance(table, config, commits=6, skip_optional_work=True).compaction is None
    assert run_maintenance(table, config, commits=5, skip_optional_work=False).compaction is None
    assert len(files_of(table)) == 6

    done = run_maintenance(table, config, commits=6, skip_optional_work=False)
    assert done.compaction is not None and done.compaction.summary()["files_after"] == 1
    assert len(files_of(table)) == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="min_files"):
        CompactionConfig(min_files=1)
    with pytest.raises(ValueError, match="target_bytes"):
        CompactionConfig(target_bytes=0)


def test_offsets_survive_expiry_after_many_compaction_snapshots(tmp_path: Path) -> None:
    """One compaction snapshot per day: more of them in a row than expiry keeps must not
    cut the table off from its recorded position."""
    table = open_table(tmp_path)
    writer = IcebergWriter(table, TOPIC, partitions=[0])
    feed = Feed()
    for day in range(12):
        micro_commits(writer, feed, 2, day=day)
    before = latest_offsets(table)
    result = compact(table, CompactionConfig(min_files=2))
    assert len(result.days) == 12
    expire_snapshots(table, keep=10)
    after = latest_offsets(table)
    assert (after.offsets, after.versions, after.commit_number) == (
        before.offsets,
        before.versions,
        before.commit_number,
    )
    writer.commit(feed.batch(), {0: feed.offset})  # not fenced, numbered on
    assert latest_offsets(table).commit_number == before.commit_number + 1
