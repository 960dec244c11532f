"""The API's time grammar against the parser behind it: every value the OpenAPI pattern
admits is read into a time, and the pattern refuses the forms the API does not offer."""

from __future__ import annotations

import re
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from k2lib.api.grammar import END_EXAMPLES, MAX_TIME_LENGTH, START_EXAMPLES, TIME_PATTERN
from k2lib.query.timeparse import parse_time

# what FastAPI validates a time parameter with (pydantic's Rust regex engine)
SERVER = TypeAdapter(
    Annotated[str, StringConstraints(pattern=TIME_PATTERN, max_length=MAX_TIME_LENGTH)]
)
NOW = 1_764_633_600_000_000  # 2025-12-02T00:00:00Z


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(st.from_regex(TIME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= MAX_TIME_LENGTH))
def test_every_value_the_pattern_admits_is_read(text: str) -> None:
    assert SERVER.validate_python(text) == text
    parse_time(text, now=lambda: NOW)


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29T00:00:00Z",
        "2000-02-29T23:59:59.123456+23:59",
        "9998-12-31T23:59:59-23:59",
        "1000-01-01T00:00:00+23:59",
        "99999999999999999999",
        "99999999999.999999999",
        "now-9999w9999w9999w9999w9999w9999w9999w",
        "now+99999d",
        *START_EXAMPLES,
        *END_EXAMPLES,
    ],
)
def test_extremes_are_admitted_and_read(text: str) -> None:
    assert SERVER.validate_python(text) == text
    parse_time(text, now=lambda: NOW)


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00Z",  # not a leap year
        "1900-02-29T00:00:00Z",  # a century that is not one either
        "2024-04-31T00:00:00Z",
        "2024-01-01T00:00:00",  # no offset
        "2024-01-01 00:00:00Z",
        "9999-12-31T23:59:59-01:00",  # past year 9999 in UTC
        "0999-01-01T00:00:00Z",
        "NOW",
        " now",
        "now\n",
        "now-",
        "now-10000w",
        "now-" + "1m" * 8,  # eight terms
        "-1",
        "123456789012345678901",
        "soon",
        "",
    ],
)
def test_forms_outside_the_grammar_are_refused(text: str) -> None:
    assert not re.fullmatch(TIME_PATTERN, text)
    with pytest.raises(ValidationError):
        SERVER.validate_python(text)
