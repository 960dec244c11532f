"""A validated query: the one place that decides what a well-formed request is."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from k2lib.errors import QueryError
from k2lib.query.timeparse import parse_time

__all__ = ["MAX_LIMIT", "MAX_SYMBOLS", "QUERY_SOURCES", "QuerySpec", "check_name"]

QUERY_SOURCES = ("hybrid", "historical", "realtime")
MAX_SYMBOLS = 64
MAX_LIMIT = 10_000_000
# The wire format holds names as 16 ASCII bytes; anything else can match nothing.
NAME_PATTERN = r"^[!-~]{1,16}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise QueryError(f"{kind} must be 1-16 printable ASCII characters, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class QuerySpec:
    symbols: tuple[str, ...]
    exchange: str | None
    start_us: int  # inclusive
    end_us: int  # exclusive
    source: str
    limit: int | None
    allow_partial: bool

    @classmethod
    def build(
        cls,
        symbols: str | Sequence[str],
        start: int | str,
        end: int | str,
        exchange: str | None,
        source: str,
        limit: int | None,
        allow_partial: bool,
        now: Callable[[], int],
    ) -> QuerySpec:
        """Validate and normalise; every problem is a QueryError naming the argument."""
        names = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        if not names:
            raise QueryError("at least one symbol is required")
        if len(names) > MAX_SYMBOLS:
            raise QueryError(f"at most {MAX_SYMBOLS} symbols per query, got {len(names)}")
        for name in names:
            check_name("symbol", name)
        if exchange is not None:
            check_name("exchange", exchange)
        if source not in QUERY_SOURCES:
            raise QueryError(f"source must be one of {', '.join(QUERY_SOURCES)}, got {source!r}")
        if limit is not None and (isinstance(limit, bool) or not 1 <= int(limit) <= MAX_LIMIT):
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
        # One reading of "now" for both ends, so `now-15m`..`now` is exactly 15 minutes.
        now_us = now()
        start_us = parse_time(start, now=lambda: now_us)
        end_us = parse_time(end, now=lambda: now_us)
        if start_us >= end_us:
            raise QueryError(f"start ({start!r}) must be before end ({end!r})")
        return cls(
            symbols=tuple(sorted(set(names))),
            exchange=exchange,
            start_us=start_us,
            end_us=end_us,
            source=source,
            limit=int(limit) if limit is not None else None,
            allow_partial=allow_partial,
        )
