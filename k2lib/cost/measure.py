"""Measured inputs for the cost model: the wire record, the stored table and `k2 bench`.

`default_inputs()` is deterministic: the wire record size comes from the codec (code, not
machine state) and everything else keeps its stated assumption. The committed cost doc is
rendered from it. `measured_inputs()` replaces assumptions with what this machine's table
and benchmark actually show, and says so on every value it replaces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2lib.cost.workload import Input, MeasuredInputs
from k2lib.errors import CostModelError

if TYPE_CHECKING:
    from pyiceberg.table import Table

__all__ = [
    "DEFAULT_BENCH_PATH",
    "default_inputs",
    "from_bench",
    "from_table",
    "measured_inputs",
    "wire_bytes_per_message",
]

DEFAULT_BENCH_PATH = Path("bench/results.json")


def wire_bytes_per_message() -> Input:
    """The fixed size of K2's wire record, or an assumed 96 B while the codec is missing."""
    try:
        from k2lib.wire.codec import RECORD_SIZE
    except ImportError:
        return MeasuredInputs().wire_bytes_per_message
    return Input(
        value=float(RECORD_SIZE),
        unit="bytes",
        status="measured",
        source="k2lib.wire.codec.RECORD_SIZE (fixed-width binary record)",
    )


def default_inputs() -> MeasuredInputs:
    """Deterministic inputs: the codec's record size and the recorded per-worker rate
    (`PER_WORKER_MSG_S`, dated); every other value assumed."""
    return MeasuredInputs(wire_bytes_per_message=wire_bytes_per_message())


def from_table(table: Table, base: MeasuredInputs | None = None) -> MeasuredInputs:
    """Parquet bytes per row and data files per commit, from the table's current snapshot."""
    base = base or default_inputs()
    ident = ".".join(table.name())
    files = table.inspect.files()
    if files.num_rows == 0:
        raise CostModelError(f"table {ident} has no data files to measure")
    size = sum(files.column("file_size_in_bytes").to_pylist())
    rows = sum(files.column("record_count").to_pylist())
    if rows <= 0:
        raise CostModelError(f"table {ident} has data files but no rows")
    added = [
        int(str(s.summary.get("added-data-files")))
        for s in table.snapshots()
        if s.summary is not None and s.summary.get("added-data-files")
    ]
    where = f"table {ident}, {files.num_rows} data files, {rows:,} rows"
    changes: dict[str, Input] = {
        "parquet_bytes_per_message": Input(
            value=size / rows, unit="bytes/row", status="measured", source=where
        )
    }
    if added:
        changes["files_per_commit"] = Input(
            value=sum(added) / len(added),
            unit="data files per consumer commit",
            status="measured",
            source=f"mean added-data-files over {len(added)} snapshots of {where}",
        )
    return base.with_(**changes)


def _per_worker(entry: dict[str, Any], path: Path) -> tuple[float, str] | None:
    """msg/s of one `k2 ingest` process, and where it comes from, from one bench result."""
    when = f" ({entry['measured_at']})" if entry.get("measured_at") else ""
    if entry.get("name") == "ingest_workers" and entry.get("per_worker_msg_s"):
        return float(entry["per_worker_msg_s"]), (
            f"{path}: k2 bench ingest --workers {entry.get('workers', '?')}{when}, one k2 "
            f"ingest process (full stages) alone in its group; load average "
            f"{entry.get('load_average_before', ['?'])[0]}"
        )
    if entry.get("name") != "ingest":
        return None
    if entry.get("unit") not in (None, "msg/s"):
        raise CostModelError(f"{path}: ingest result in {entry.get('unit')!r}, want msg/s")
    # One process is one worker on one core (Python), so its rate is the per-worker rate;
    # the catch-up runs the full stages `k2 ingest` runs, the headline value only storage.
    if entry.get("catch_up_msg_s"):
        source = f"{path}: k2 bench ingest{when}, full-stages catch-up"
        return float(entry["catch_up_msg_s"]), source
    return float(entry["value"]), f"{path}: k2 bench ingest{when}, one process"


def from_bench(
    path: Path = DEFAULT_BENCH_PATH, base: MeasuredInputs | None = None
) -> MeasuredInputs:
    """Ingest msg/s per worker from `k2 bench` results; unchanged if the file is absent.

    A `k2 bench ingest --workers N` result (`ingest_workers`) is preferred over the
    single-process `ingest` one."""
    base = base or default_inputs()
    if not path.exists():
        return base
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CostModelError(f"cannot read bench results {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]  # the `k2 bench all --write` file
    entries = [e for e in (data if isinstance(data, list) else [data]) if isinstance(e, dict)]
    entries.sort(key=lambda e: e.get("name") != "ingest_workers")
    for entry in entries:
        found = _per_worker(entry, path)
        if found is None:
            continue
        value, source = found
        return base.with_(
            ingest_messages_per_core=Input(
                value=value,
                unit="msg/s per worker (one k2 ingest process, one core)",
                status="measured",
                source=source,
            )
        )
    return base


def measured_inputs(
    table: Table | None = None, bench_path: Path = DEFAULT_BENCH_PATH
) -> MeasuredInputs:
    """Everything this machine can measure: the table (if given) and the bench results."""
    inputs = from_bench(bench_path, default_inputs())
    return from_table(table, inputs) if table is not None else inputs
