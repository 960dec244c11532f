"""Hypothesis strategies tests share."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from k2lib.testing import FaultyStreamSpec


def prices(max_value: str) -> st.SearchStrategy[Decimal]:
    """Finite positive decimals of at most 8 places (the wire's scale), up to `max_value`."""
    return st.decimals(
        min_value=Decimal("0.00000001"),
        max_value=Decimal(max_value),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    )


def faulty_specs(max_keys: int, max_length: int) -> st.SearchStrategy[FaultyStreamSpec]:
    """Streams of 1 to `max_keys` keys in 1 to 3 sessions of up to `max_length` records, with
    none, some or many drops, duplicates and swaps, and now and then reused seqs and copies
    sent late."""
    return st.builds(
        FaultyStreamSpec,
        keys=st.integers(1, max_keys),
        sessions=st.integers(1, 3),
        max_length=st.integers(1, max_length),
        drop=st.sampled_from([0.0, 0.05, 0.3]),
        duplicate=st.sampled_from([0.0, 0.05, 0.3]),
        swap=st.sampled_from([0.0, 0.1, 0.4]),
        reuse_seqs=st.booleans(),
        late_copies=st.sampled_from([0.0, 0.2]),
    )
