"""The exact grammar of the API's time parameters, as one regular expression for the OpenAPI.

`k2lib.query.timeparse` reads more than this (naive-looking ISO forms it then refuses,
spaces, upper case, epochs in any year); a schema that said "a string" let a client send
values the server then refused with a 400. The API instead accepts exactly the forms below,
each of which `parse_time` always reads into a time inside the years 1..9999, so a value
that matches the pattern is never refused and a value that does not is a 422 naming it:

- ISO-8601 / RFC 3339 with an offset, years 1000-9998 (so that no offset moves it outside
  9999), real calendar days including 29 February of leap years, and 1-6 fraction digits:
  `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.5+02:00`;
- an epoch integer of 1-20 digits, its unit told by its size (s, ms, us or ns), or decimal
  seconds of up to 11 whole and 9 fraction digits: `1714564800`, `1714564800.25`;
- `now`, or `now` plus or minus 1-7 terms with units `w d h m s ms us`, each small enough
  (at most 9999w, 99999d, 999999h, 10^8-1 m, 10^9-1 s, 10^12-1 ms, 10^15-1 us: a few hundred
  years) that seven of them stay inside the years 1..9999 from today: `now-15m`, `now-1h30m`.

Every branch has its digit counts bounded, and MAX_TIME_LENGTH (the parser's own limit)
bounds the whole. Patterns are anchored and use only what ECMA-262, Python and the Rust
regex engine pydantic validates with read alike (no look-around, no `\\d`).
"""

from __future__ import annotations

from k2lib.query.timeparse import MAX_TIME_CHARS

__all__ = ["END_EXAMPLES", "MAX_TIME_LENGTH", "START_EXAMPLES", "TIME_HELP", "TIME_PATTERN"]

MAX_TIME_LENGTH = MAX_TIME_CHARS

_YEAR = r"(?:1[0-9]{3}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_LEAP_YEAR = r"(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[13579][26]|[2468][048])00)"
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"  # every month has days 1-28
    r"|(?:0[13-9]|1[0-2])-(?:29|30)"  # all but February have 29 and 30
    r"|(?:0[13578]|1[02])-31)"  # the seven long months
)
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_ISO = rf"{_DATE}T{_CLOCK}{_OFFSET}"
_EPOCH = r"(?:0|[1-9][0-9]{0,19}|[0-9]{1,11}\.[0-9]{1,9})"
_TERM = (
    r"(?:[0-9]{1,4}w|[0-9]{1,5}d|[0-9]{1,6}h|[0-9]{1,8}m|[0-9]{1,9}s"
    r"|[0-9]{1,12}ms|[0-9]{1,15}us)"
)
_RELATIVE = rf"now(?:[+-]{_TERM}{{1,7}})?"

TIME_PATTERN = rf"^(?:{_ISO}|{_EPOCH}|{_RELATIVE})$"
# Each start example is before each end example: clients (and fuzzers) pair them up.
START_EXAMPLES = ("now-15m", "2024-05-01T12:00:00Z", "1714564800", "now-1h30m")
END_EXAMPLES = ("now", "now-5m", "2099-01-01T00:00:00.5+01:00")
TIME_HELP = (
    "ISO-8601 with an offset (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00; years "
    "1000-9998), an epoch integer of up to 20 digits in s, ms, us or ns (told apart by "
    "size) or decimal seconds (1714564800.25), or now / now-15m / now+1h30m (1-7 terms, "
    "units w d h m s ms us)."
)
