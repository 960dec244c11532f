"""Turn the time forms users type into UTC microseconds since the epoch.

Accepted forms (the same in the CLI and the REST API):

- ISO-8601 with an offset: `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.5+02:00`;
  a naive timestamp is refused, because guessing a zone silently moves the window;
- an epoch integer, its unit told by its size: seconds (10 digits today), milliseconds
  (13), microseconds (16) or nanoseconds (19); `1714564800.25` is fractional seconds;
- relative to now: `now`, `now-15m`, `now-1h30m`, `now+5s`, with units
  `us ms s m h d w`.

A text longer than MAX_TIME_CHARS is refused before it is read: no form needs that many
characters, and Python's int() raises ValueError (not a QueryError) past 4,300 digits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from k2lib.errors import QueryError

__all__ = [
    "MAX_TIME_CHARS",
    "TIME_FORMS_HELP",
    "format_micros",
    "parse_time",
    "wall_clock_micros",
]

TIME_FORMS_HELP = (
    "T is ISO-8601 with an offset (2024-05-01T12:00:00Z), an epoch integer in "
    "s, ms, us or ns (told apart by size), or relative: now, now-15m, now-1h30m "
    "(units us ms s m h d w)."
)

_UNIT_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*((?:[0-9]+\s*(?:us|ms|s|m|h|d|w)\s*)+))?$", re.ASCII)
_TERM = re.compile(r"([0-9]+)\s*(us|ms|s|m|h|d|w)", re.ASCII)
_INTEGER = re.compile(r"^-?[0-9]+$", re.ASCII)
_DECIMAL = re.compile(r"^[0-9]+\.[0-9]+$", re.ASCII)
# Digits in an epoch around now: s 10, ms 13, us 16, ns 19. Split halfway between.
_MS_FROM = 10**11
_US_FROM = 10**14
_NS_FROM = 10**17
# datetime's own range; anything outside it is a typo, not a time.
_MIN_US = -62_135_596_800_000_000
_MAX_US = 253_402_300_799_999_999
# `2024-05-01T14:00:00.123456+02:00` is 32 characters; twice that leaves room for spaced-out
# relative terms and keeps every number small enough for int() and for an error message.
MAX_TIME_CHARS = 64


def wall_clock_micros() -> int:
    """Now, in UTC microseconds (the default `now` of parse_time)."""
    return time.time_ns() // 1_000


def parse_time(text: str | int, *, now: Callable[[], int] = wall_clock_micros) -> int:
    """One of the forms in the module docstring -> UTC microseconds. Raises QueryError."""
    if isinstance(text, int):
        if abs(text) >= 10**MAX_TIME_CHARS:  # repr() of it in a message could itself raise
            raise QueryError(
                f"time of more than {MAX_TIME_CHARS} digits is outside the years 1..9999"
            )
        return _checked(_epoch_to_micros(text), text)
    raw = text.strip()
    if not raw:
        raise QueryError(f"empty time; {TIME_FORMS_HELP}")
    if len(raw) > MAX_TIME_CHARS:
        raise QueryError(
            f"time is {len(raw)} characters long, more than any form needs "
            f"(at most {MAX_TIME_CHARS}); {TIME_FORMS_HELP}"
        )
    lowered = raw.lower()
    if lowered.startswith("now"):
        return _checked(_relative(lowered, raw, now()), raw)
    if _INTEGER.match(raw):
        return _checked(_epoch_to_micros(int(raw)), raw)
    if _DECIMAL.match(raw):
        whole, frac = raw.split(".")
        return _checked(int(whole) * 1_000_000 + int(frac[:6].ljust(6, "0")), raw)
    return _checked(_iso(raw), raw)


def format_micros(us: int) -> str:
    """UTC microseconds -> `2024-05-01T12:00:00.000000Z` (what the API and CLI print)."""
    seconds, micros = divmod(int(us), 1_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{micros:06d}Z"


def _relative(lowered: str, raw: str, now_us: int) -> int:
    match = _RELATIVE.match(lowered)
    if match is None:
        raise QueryError(f"cannot read relative time {raw!r}; {TIME_FORMS_HELP}")
    sign, terms = match.groups()
    if not terms:
        return now_us
    delta = sum(int(n) * _UNIT_US[unit] for n, unit in _TERM.findall(terms))
    return now_us - delta if sign == "-" else now_us + delta


def _epoch_to_micros(value: int) -> int:
    magnitude = abs(value)
    if magnitude >= _NS_FROM:
        return value // 1_000
    if magnitude >= _US_FROM:
        return value
    if magnitude >= _MS_FROM:
        return value * 1_000
    return value * 1_000_000


def _iso(raw: str) -> int:
    try:
        dt = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise QueryError(f"cannot read time {raw!r}; {TIME_FORMS_HELP}") from None
    if dt.tzinfo is None:
        raise QueryError(
            f"time {raw!r} has no UTC offset; add one (Z or +00:00) so the window is not guessed"
        )
    try:
        delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise QueryError(f"time {raw!r} is outside the years 1..9999") from None
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _checked(us: int, raw: object) -> int:
    if not _MIN_US <= us <= _MAX_US:
        raise QueryError(f"time {raw!r} is outside the years 1..9999")
    return us
