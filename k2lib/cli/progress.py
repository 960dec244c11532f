"""Progress bars on stderr, so stdout keeps only the JSON summary."""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["bar"]


def bar(desc: str, total: int | None = None, unit: str = "msg") -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        file=sys.stderr,
        disable=None,
        mininterval=0.5,
        dynamic_ncols=True,
    )
