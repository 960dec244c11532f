"""The feed-source interface and the factory that picks an implementation from a name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from k2lib.errors import ValidationError
from k2lib.wire.schema import TradeBatch

__all__ = [
    "DEFAULT_CHUNK",
    "FeedSource",
    "SourceReport",
    "checked_int64",
    "checked_name",
    "shown",
]

DEFAULT_CHUNK = 50_000
MAX_REASONS_KEPT = 20
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# What the wire carries in its 16-byte name fields (codec._names_ok): checked per row here,
# because one bad name would make the whole chunk fail to become a TradeBatch.
_NAME = re.compile(r"[!-~]{1,16}", re.ASCII)
_SHOWN = 40  # characters of a bad value quoted in a reason


def checked_name(value: object, what: str) -> str:
    """A venue or symbol as the wire takes it: 1 to 16 printable ASCII characters."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            f"{what} must be 1 to 16 printable ASCII characters, got {shown(value)}"
        )
    return value


def checked_int64(value: int, what: str) -> int:
    """`value` if a TradeBatch column can hold it; one row out of range must not sink a chunk."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValidationError(f"{what} {shown(value)} is outside the int64 range")
    return value


def shown(value: object) -> str:
    """A bad value, quoted short enough for a report line."""
    if isinstance(value, int) and abs(value) >= 10**_SHOWN:
        # repr() of an integer above 4,300 digits raises, and a long one says nothing
        return f"(an integer of more than {_SHOWN} digits)"
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@dataclass
class SourceReport:
    """What a source read, and what it had to skip (counted, with a sample of reasons)."""

    records: int = 0
    malformed: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.malformed += 1
        if len(self.reasons) < MAX_REASONS_KEPT:
            self.reasons.append(f"{where}: {reason}")

    def as_dict(self) -> dict[str, object]:
        return {"records": self.records, "malformed": self.malformed, "reasons": self.reasons}


class FeedSource(Protocol):
    name: str
    report: SourceReport

    def batches(self, chunk: int = DEFAULT_CHUNK) -> Iterator[TradeBatch]: ...
