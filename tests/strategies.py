"""Hypothesis strategies tests share."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st


def prices(max_value: str) -> st.SearchStrategy[Decimal]:
    """Finite positive decimals of at most 8 places (the wire's scale), up to `max_value`."""
    return st.decimals(
        min_value=Decimal("0.00000001"),
        max_value=Decimal(max_value),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    )
