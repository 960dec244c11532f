"""`k2 bench ingest --workers N`: reading the workers' logs and the partition layout."""

from __future__ import annotations

from datetime import datetime

import pytest

from k2lib.bench.workers import WorkerRun, owned_at, parse_assignments, partitions_for, scaling

pytestmark = pytest.mark.unit


def _at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


LOG = """\
2026-12-02 02:50:01,250 k2.ingest INFO assigned partitions [0, 1, 2, 3] at {}
2026-12-02 02:50:02,000 k2.ingest WARNING commit deferred: catalog locked
2026-12-02 02:50:04,500 k2.ingest INFO revoked partitions [2, 3]
2026-12-02 02:50:09,125 k2.ingest INFO revoked partitions [0, 1]
"""


def test_assignments_are_read_with_their_times_in_order() -> None:
    events = parse_assignments(LOG)
    assert [held for _, held in events] == [{0, 1, 2, 3}, {0, 1}, set()]
    assert events[0][0] == pytest.approx(_at("2026-12-02 02:50:01,250"))
    assert parse_assignments("nothing assigned here\n") == []


def test_a_snapshot_is_attributed_to_the_partitions_held_at_its_time() -> None:
    events = parse_assignments(LOG)
    assert owned_at(events, _at("2026-12-02 02:50:01,000")) == set()
    assert owned_at(events, _at("2026-12-02 02:50:03,000")) == {0, 1, 2, 3}
    assert owned_at(events, _at("2026-12-02 02:50:05,000")) == {0, 1}
    assert owned_at(events, _at("2026-12-02 02:50:10,000")) == set()


@pytest.mark.parametrize(("workers", "partitions"), [(2, 4), (3, 6), (4, 4), (5, 5), (8, 8)])
def test_every_worker_gets_the_same_number_of_partitions(workers: int, partitions: int) -> None:
    assert partitions_for(workers) == partitions
    assert partitions_for(workers) % workers == 0


def test_a_worker_rate_counts_from_its_first_assignment() -> None:
    run = WorkerRun(
        records=100_000, spawned_at=0.0, first_assigned_at=3.0, ended_at=8.0, partitions=(0,)
    )
    assert run.msg_s == 20_000.0  # the 3 s join wait is not in it
    assert scaling(20_000.0, 30_000.0) == 1.5
    assert scaling(0.0, 30_000.0) == 0.0
