"""The time forms of `k2 query` and the API: each form, and a clear error for bad input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2lib.errors import QueryError
from k2lib.query.timeparse import MAX_TIME_CHARS, format_micros, parse_time

pytestmark = [pytest.mark.unit, pytest.mark.hybrid, pytest.mark.phase2]

NOW = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z


def now() -> int:
    return NOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", NOW),
        ("2024-05-01T12:00:00.5Z", NOW + 500_000),
        ("2024-05-01T14:00:00+02:00", NOW),
        ("2024-05-01T12:00:00.000001+00:00", NOW + 1),
        ("1714564800", NOW),
        ("1714564800000", NOW),
        ("1714564800000000", NOW),
        ("1714564800000000000", NOW),
        ("1714564800.25", NOW + 250_000),
        ("now", NOW),
        ("NOW", NOW),
        ("now-15m", NOW - 15 * 60_000_000),
        ("now-1h30m", NOW - 90 * 60_000_000),
        ("now - 2d", NOW - 2 * 86_400_000_000),
        ("now+5s", NOW + 5_000_000),
        ("now-250ms", NOW - 250_000),
        ("now-1w", NOW - 7 * 86_400_000_000),
    ],
)
def test_forms(text: str, expected: int) -> None:
    assert parse_time(text, now=now) == expected


def test_integers_are_epochs_by_magnitude() -> None:
    assert parse_time(1_714_564_800, now=now) == NOW
    assert parse_time(1_714_564_800_000_000_000, now=now) == NOW


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("yesterday", "cannot read time"),
        ("2024-05-01T12:00:00", "no UTC offset"),
        ("2024-05-01", "no UTC offset"),
        ("now-", "relative"),
        ("now-15x", "relative"),
        ("now*2", "relative"),
        ("1e9", "cannot read"),
        ("0001-01-01T00:00:00+01:00", "outside"),
        ("now-99999999999999w", "outside"),
        ("99999999999999999999999", "outside"),
        ("٣٤٥", "cannot read"),
    ],
)
def test_bad_input_is_a_clear_query_error(text: str, fragment: str) -> None:
    with pytest.raises(QueryError, match=fragment):
        parse_time(text, now=now)


@pytest.mark.parametrize(
    "text",
    [
        "1" * 4_301,  # past Python's int-string limit: int() would raise ValueError
        "1" * 10_000 + ".5",
        "now-" + "9" * 5_000 + "m",
        "-" + "9" * 5_000,
        "2024-05-01T12:00:00Z" + "0" * 100,
        "x" * (MAX_TIME_CHARS + 1),
    ],
    ids=["4301-digits", "decimal", "relative", "negative", "iso-tail", "65-chars"],
)
def test_absurdly_long_input_is_a_clear_query_error(text: str) -> None:
    with pytest.raises(QueryError, match=f"characters long.*at most {MAX_TIME_CHARS}") as info:
        parse_time(text, now=now)
    assert len(str(info.value)) < 400  # the input is not echoed back


def test_the_longest_accepted_text_still_parses() -> None:
    longest = "now-" + "1h" * 30
    assert len(longest) == MAX_TIME_CHARS
    assert parse_time(longest, now=now) == NOW - 30 * 3_600_000_000
    assert parse_time("  " + "0" * 54 + "1714564800  ", now=now) == NOW  # strip, then count
    with pytest.raises(QueryError, match="outside"):
        parse_time("9" * MAX_TIME_CHARS, now=now)
    with pytest.raises(QueryError, match="outside"):
        parse_time("now-" + "9" * (MAX_TIME_CHARS - 5) + "w", now=now)


@pytest.mark.parametrize(
    "value", [10**4_400, -(10**4_400), 10**64, 10**30], ids=["1e4400", "-1e4400", "1e64", "1e30"]
)
def test_a_huge_integer_is_a_clear_query_error(value: int) -> None:
    with pytest.raises(QueryError, match="outside the years") as info:
        parse_time(value, now=now)
    assert len(str(info.value)) < 200


def test_format_round_trips() -> None:
    assert format_micros(NOW + 7) == "2024-05-01T12:00:00.000007Z"
    assert parse_time(format_micros(NOW + 7)) == NOW + 7


@given(st.text(max_size=40))
def test_never_raises_anything_but_query_error(text: str) -> None:
    with contextlib.suppress(QueryError):
        parse_time(text, now=now)


DIGITS = "0123456789"


@given(
    st.one_of(
        st.text(alphabet=DIGITS, min_size=1, max_size=6_000),
        st.builds(lambda d: "now-" + d + "s", st.text(alphabet=DIGITS, max_size=6_000)),
        st.builds(
            lambda a, b: a + "." + b,
            st.text(alphabet=DIGITS, min_size=1, max_size=5_000),
            st.text(alphabet=DIGITS, min_size=1, max_size=5_000),
        ),
    )
)
def test_numbers_of_any_length_raise_only_query_error(text: str) -> None:
    with contextlib.suppress(QueryError):
        parse_time(text, now=now)


@given(st.integers(min_value=-(10**5_000), max_value=10**5_000))
def test_integers_of_any_size_raise_only_query_error(value: int) -> None:
    with contextlib.suppress(QueryError):
        parse_time(value, now=now)


@given(st.integers(min_value=-(10**12), max_value=253_402_300_799_000_000))
def test_iso_output_parses_back(us: int) -> None:
    assert parse_time(format_micros(us)) == us
