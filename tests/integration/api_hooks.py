"""schemathesis hooks for the K2 API: the one rule the OpenAPI cannot state.

OpenAPI describes each query parameter on its own, so it cannot say that `start` must be
before `end`; the server answers such a pair with a documented 400. Without this hook the
fuzzer would send `start=now&end=now-1h` as "schema-valid" and report the 400 as a valid
request rejected. Positive cases whose window is empty are dropped; negative cases keep
them (a 400 is a rejection, which is what a negative case expects).

Loaded by `schemathesis.toml` (`hooks = ...`), so `schemathesis run --checks all <url>`
from the repository root applies it, and by tests/integration/test_api.py.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import GenerationMode

from k2lib.errors import K2Error
from k2lib.query.timeparse import parse_time, wall_clock_micros

DEFAULTS = {"start": "now-15m", "end": "now"}  # as the server defaults them


@schemathesis.hook
def filter_case(ctx: Any, case: schemathesis.Case) -> bool:
    if case.operation.path != "/v1/trades" or not _positive(case):
        return True
    return window_is_open(case.query or {})


def _positive(case: schemathesis.Case) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode is GenerationMode.POSITIVE


def window_is_open(query: dict[str, Any]) -> bool:
    """False only for a start and end that are both times and not start < end."""
    now = wall_clock_micros()  # one instant for both, as the server reads them
    try:
        start = parse_time(str(query.get("start", DEFAULTS["start"])), now=lambda: now)
        end = parse_time(str(query.get("end", DEFAULTS["end"])), now=lambda: now)
    except K2Error:
        return True  # not a time: a negative case, and the server's 422 is its answer
    return start < end


__all__ = ["filter_case", "window_is_open"]
