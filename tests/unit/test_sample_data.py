"""The real trade sample shipped in `data/`: it parses, and its counts are the README's."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

import k2lib
from k2lib.demo import context
from k2lib.feeds import open_source
from k2lib.feeds.binance import BinanceCapture, venue_of

pytestmark = [pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
SIZE_BUDGET = 5 * 1024 * 1024


def _readme_table() -> dict[str, dict[str, str]]:
    """`file -> {column: cell}` from the Contents table of data/README.md."""
    lines = [ln for ln in (DATA / "README.md").read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].endswith(".gz"):
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def _count(cell: str) -> int:
    return int(re.sub(r"[^\d]", "", cell))


def test_the_sample_is_small_licensed_and_described() -> None:
    files = sorted(p.name for p in DATA.glob("*.gz"))
    assert files == sorted(_readme_table())
    assert len(files) == 4
    assert sum((DATA / f).stat().st_size for f in files) < SIZE_BUDGET
    licence = (DATA / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    assert "nkaz001" in licence
    assert "nkaz001/hftbacktest" in (DATA / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(_readme_table()))
def test_each_file_parses_to_the_readme_counts(name: str) -> None:
    row = _readme_table()[name]
    capture = BinanceCapture(DATA / name)
    batches = list(capture.batches())
    seq = np.concatenate([np.asarray(b.seq) for b in batches])
    assert capture.report.malformed == 0
    assert capture.report.records == len(seq) == _count(row["trades"])
    assert venue_of(DATA / name) == row["venue"]
    assert {str(s) for b in batches for s in b.to_arrow().column("symbol").to_pylist()} == {
        row["symbol"]
    }
    assert int(seq[0]) == _count(row["first trade id"])
    assert int(seq[-1]) == _count(row["last trade id"])
    # real feeds' trade ids are contiguous per venue and symbol: no hole, no repeat
    assert np.array_equal(seq, np.arange(seq[0], seq[-1] + 1))


def test_only_trade_lines_were_kept() -> None:
    for path in DATA.glob("*.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        assert lines and all('@trade"' in ln and '"e":"trade"' in ln for ln in lines), path


def test_the_total_is_the_readme_total() -> None:
    rows = _readme_table()
    readme = (DATA / "README.md").read_text().splitlines()
    total_line = next(ln for ln in readme if "**total**" in ln)
    total = _count(total_line.split("|")[4])
    assert total == sum(_count(r["trades"]) for r in rows.values())
    feed = open_source(str(DATA))  # what `k2 replay data/` opens: the folder, every file
    assert sum(len(b) for b in feed.batches()) == total


def test_a_clone_without_shared_captures_finds_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkout whose parent holds no shared/data: the repo's own data/ is what is found.
    clone = tmp_path / "clone"
    (clone / "k2lib").mkdir(parents=True)
    (clone / "notebooks").mkdir()
    (clone / "data").symlink_to(DATA, target_is_directory=True)
    monkeypatch.setattr(k2lib, "__file__", str(clone / "k2lib" / "__init__.py"))
    monkeypatch.chdir(clone / "notebooks")
    found = context.find_captures({})
    assert found == clone / "data"
    ctx = context.DemoContext(settings=None, started={}, captures=found, log=context.LogBuffer())  # type: ignore[arg-type]
    assert ctx.captures_line() == (
        "real Binance captures: 4 files found in data/ (the trades sample shipped with K2)"
    )
