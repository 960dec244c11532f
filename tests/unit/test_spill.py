"""The spill module: append/drain/ack/release, quarantine of corrupt files, the read-only
reader the hybrid query uses, and the per-topic-and-table directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pytest

from k2lib.config import K2Settings
from k2lib.errors import ValidationError
from k2lib.monitoring.metrics import new_registry
from k2lib.query.deferred import read_deferred
from k2lib.resilience import DeferredSpill, read_spill, spill_directory
from k2lib.resilience.spill import QUARANTINE
from k2lib.testing import synthetic_trades

pytestmark = [pytest.mark.unit, pytest.mark.resilience, pytest.mark.phase2]

T0 = 1_700_000_000_000_000
QUARANTINED = "k2_spill_quarantined_files_total"


def trades(start: int, n: int) -> pa.Table:
    """`n` BTCUSDT trades with seq start .. start + n - 1, in the trade schema."""
    batch = synthetic_trades(
        n, start_us=T0 + start, span_us=max(n, 1), symbols=["BTCUSDT"], first_seq={"BTCUSDT": start}
    )
    return batch.to_arrow()


def seqs(tables: list[pa.Table]) -> list[int]:
    return [s for t in tables for s in t.column("seq").to_pylist()]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# -- append / drain / ack / release ---------------------------------------------------------


def test_append_drain_ack_release(tmp_path: Path) -> None:
    spill = DeferredSpill(tmp_path / "spill")
    tokens = [spill.append(trades(0, 3)), spill.append(trades(3, 4)), spill.append(trades(7, 5))]
    assert spill.append(trades(0, 0)) is None
    assert spill.pending_rows() == 12 and spill.pending_files() == 3
    drained = list(spill.drain(max_rows=5))  # 3 + 4 >= 5: two files
    assert [t for t, _ in drained] == tokens[:2]
    assert seqs([t for _, t in drained]) == list(range(7))
    assert [t for t, _ in spill.drain(max_rows=100)] == [tokens[2]]  # in-flight: skipped
    assert list(spill.drain(max_rows=100)) == []
    for token, _ in drained:
        spill.ack(token)
    spill.ack(drained[0][0])  # twice is harmless
    assert spill.pending_rows() == 5
    assert sorted(p.name for p in (tmp_path / "spill").iterdir()) == [tokens[2]]
    spill.release(tokens[2])  # commit failed: hand it out again
    assert [t for t, _ in spill.drain(max_rows=1)] == [tokens[2]]


def test_drain_gives_at_least_one_file_bigger_than_max_rows(tmp_path: Path) -> None:
    spill = DeferredSpill(tmp_path)
    spill.append(trades(0, 10))
    assert sum(t.num_rows for _, t in spill.drain(max_rows=1)) == 10


def test_a_restart_sees_every_file_and_drops_torn_writes(tmp_path: Path) -> None:
    first = DeferredSpill(tmp_path)
    a = first.append(trades(0, 2))
    first.append(trades(2, 3))
    (tmp_path / "000000000099-7.arrows.tmp").write_bytes(b"half a file")  # crashed append
    del first
    second = DeferredSpill(tmp_path)
    assert second.pending_rows() == 5
    assert not list(tmp_path.glob("*.tmp"))
    assert a is not None
    second.ack(a)
    c = second.append(trades(5, 1))
    assert c is not None and c > a  # sequence continues after the restart
    assert seqs([t for _, t in second.drain(max_rows=100)]) == [2, 3, 4, 5]


def test_append_refuses_a_table_that_drain_would_quarantine(tmp_path: Path) -> None:
    spill = DeferredSpill(tmp_path)
    with pytest.raises(ValidationError, match="trade schema"):
        spill.append(pa.table({"seq": [1, 2]}))
    assert spill.pending_files() == 0 and not list(tmp_path.iterdir())


# -- quarantine -----------------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot an arrow stream at all" * 40)


def _other_schema(path: Path) -> None:
    other = pa.table({"seq": list(range(4))})
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, other.schema) as w:
        w.write_table(other)


def _fewer_rows(path: Path) -> None:
    # A stream that ends at a message boundary reads without an error, only shorter.
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, trades(0, 1).schema) as w:
        w.write_table(trades(3, 1))


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (truncate, "unreadable"),
        (_garbage, "unreadable"),
        (_other_schema, "schema"),
        (_fewer_rows, "its name says 4"),
    ],
)
def test_drain_quarantines_a_corrupt_file_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, corrupt: object, reason: str
) -> None:
    registry = new_registry()
    spill = DeferredSpill(tmp_path, registry=registry)
    good_before = spill.append(trades(0, 2))
    bad = spill.append(trades(2, 4))
    good_after = spill.append(trades(6, 3))
    assert bad is not None
    corrupt(tmp_path / bad)  # type: ignore[operator]
    kept = (tmp_path / bad).read_bytes()
    with caplog.at_level(logging.WARNING, logger="k2lib.resilience.spill"):
        drained = list(spill.drain(max_rows=100))
    assert [t for t, _ in drained] == [good_before, good_after]
    assert seqs([t for _, t in drained]) == [0, 1, 6, 7, 8]
    # Moved, byte for byte, out of the pending files and out of the pending count.
    assert not (tmp_path / bad).exists()
    assert (tmp_path / QUARANTINE / bad).read_bytes() == kept
    assert spill.pending_files() == 2 and spill.pending_rows() == 5
    assert registry.get_sample_value(QUARANTINED) == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = warning.getMessage()
    assert str(tmp_path / bad) in text and str(tmp_path / QUARANTINE / bad) in text
    assert reason in text
    assert DeferredSpill(tmp_path).pending_rows() == 5  # a restart does not bring it back


def test_a_new_file_never_takes_a_quarantined_name(tmp_path: Path) -> None:
    spill = DeferredSpill(tmp_path)
    bad = spill.append(trades(0, 2))
    assert bad is not None
    _garbage(tmp_path / bad)
    assert list(spill.drain(max_rows=100)) == []
    restarted = DeferredSpill(tmp_path)  # no pending file left to continue the sequence from
    assert restarted.pending_files() == 0
    assert restarted.append(trades(0, 2)) != bad


def test_a_quarantined_file_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    spill = DeferredSpill(tmp_path)
    token = spill.append(trades(0, 2))
    assert token is not None
    (tmp_path / QUARANTINE).mkdir()
    (tmp_path / QUARANTINE / token).write_bytes(b"kept from before")
    _garbage(tmp_path / token)
    assert list(spill.drain(max_rows=100)) == []
    assert (tmp_path / QUARANTINE / token).read_bytes() == b"kept from before"
    assert (tmp_path / QUARANTINE / f"{token}.1").exists()


def test_the_counter_is_shared_by_spills_on_one_registry(tmp_path: Path) -> None:
    registry = new_registry()
    for name in ("a", "b"):
        spill = DeferredSpill(tmp_path / name, registry=registry)
        token = spill.append(trades(0, 1))
        assert token is not None
        _garbage(tmp_path / name / token)
        assert list(spill.drain(max_rows=10)) == []
    assert registry.get_sample_value(QUARANTINED) == 2


# -- the read-only reader --------------------------------------------------------------------


def test_reader_skips_a_corrupt_file_warns_and_moves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spill = DeferredSpill(tmp_path)
    good = spill.append(trades(0, 3))
    bad = spill.append(trades(3, 2))
    assert good is not None and bad is not None
    truncate(tmp_path / bad)
    (tmp_path / "notes.arrows").write_bytes(b"not a spill name: ignored by both sides")
    with caplog.at_level(logging.WARNING, logger="k2lib.resilience.spill"):
        first = list(read_spill(tmp_path))
        second = list(read_spill(tmp_path))  # a query reads twice; one warning is enough
    assert [t for t, _ in first] == [t for t, _ in second] == [good]
    assert seqs([t for _, t in first]) == [0, 1, 2]
    assert (tmp_path / bad).exists() and not (tmp_path / QUARANTINE).exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(tmp_path / bad) in warnings[0]
    assert spill.pending_rows() == 5  # the reader changed nothing the owner sees


def test_reader_skips_what_it_is_told_and_a_missing_directory(tmp_path: Path) -> None:
    spill = DeferredSpill(tmp_path)
    first, second = spill.append(trades(0, 1)), spill.append(trades(1, 1))
    assert first is not None
    assert [t for t, _ in read_spill(tmp_path, skip={first})] == [second]
    assert list(read_spill(tmp_path / "absent")) == []


def test_deferred_rows_of_a_spill_with_a_corrupt_file(tmp_path: Path) -> None:
    spill = DeferredSpill(tmp_path)
    good = spill.append(trades(0, 3))
    bad = spill.append(trades(3, 2))
    assert bad is not None
    _garbage(tmp_path / bad)
    got = read_deferred(tmp_path, ["BTCUSDT"], None, T0, T0 + 10**9)
    assert got.files == frozenset({good})
    assert got.rows.column("seq").to_pylist() == [0, 1, 2]
    assert set(got.rows.column("source").to_pylist()) == {"spill"}


# -- the directory --------------------------------------------------------------------------


def test_the_spill_is_per_topic_and_table(tmp_path: Path) -> None:
    base = K2Settings(home=tmp_path, topic="market.trades", table="market.trades")
    other_table = base.with_(table="market.trades_v2")
    other_topic = base.with_(topic="market.other")
    assert spill_directory(base) == tmp_path / "spill" / "market.trades" / "market.trades"
    dirs = {spill_directory(s) for s in (base, other_table, other_topic)}
    assert len(dirs) == 3
    DeferredSpill(spill_directory(base)).append(trades(0, 4))
    assert DeferredSpill(spill_directory(other_table)).pending_rows() == 0
    assert list(read_spill(spill_directory(other_table))) == []
    assert DeferredSpill(spill_directory(base)).pending_rows() == 4


def test_names_become_one_folder_each(tmp_path: Path) -> None:
    base = K2Settings(home=tmp_path, topic="t", table="ns.x")
    odd = [base.with_(table=t) for t in ("ns.a/b", "ns.a_b", "ns.a%2Fb", "ns.a b")]
    dirs = [spill_directory(s) for s in odd]
    assert len(set(dirs)) == len(dirs)
    for d in dirs:
        assert d.parent == tmp_path / "spill" / "t"  # nothing escapes the topic's folder
    assert spill_directory(base.with_(topic="..")).parent.parent == tmp_path / "spill"


def test_files_of_the_old_per_topic_layout_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = K2Settings(home=tmp_path, topic="market.trades", table="market.trades")
    old = DeferredSpill(tmp_path / "spill" / "market.trades")  # where earlier versions wrote
    old.append(trades(0, 6))
    with caplog.at_level(logging.WARNING, logger="k2lib.resilience.spill"):
        spill = DeferredSpill(spill_directory(settings))
    assert spill.pending_rows() == 0  # another table's records are never backfilled here
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "6 rows" in warning and str(tmp_path / "spill" / "market.trades") in warning
