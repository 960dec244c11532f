"""AWS list prices, one `PriceBook` per region. ap-southeast-2 (Sydney) is the reference.

Every price is a dated `UnitPrice` that names the public AWS pricing page it was
transcribed from. They are on-demand list prices as recorded on `PRICED_ON`; AWS changes
them, so re-check each page before quoting a number (docs/operations/cost-model.md).
us-east-1 is here so that a change of region can be shown and tested line by line.

Sizing never reads a price: quantities depend on the workload alone, and a price only
multiplies its own lines. That is what makes "change one price, change only its lines" true.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType

from k2lib.errors import CostModelError

__all__ = [
    "PRICED_ON",
    "REFERENCE_REGION",
    "REGIONS",
    "PriceBook",
    "UnitPrice",
    "price_book",
]

REFERENCE_REGION = "ap-southeast-2"
PRICED_ON = date(2026, 11, 25)

_MSK = "https://aws.amazon.com/msk/pricing/"
_EC2 = "https://aws.amazon.com/ec2/pricing/on-demand/"
_SP = "https://aws.amazon.com/savingsplans/compute-pricing/"
_CACHE = "https://aws.amazon.com/elasticache/pricing/"
_S3 = "https://aws.amazon.com/s3/pricing/"
_GLUE = "https://aws.amazon.com/glue/pricing/"
_ATHENA = "https://aws.amazon.com/athena/pricing/"
_AMP = "https://aws.amazon.com/prometheus/pricing/"
_CW = "https://aws.amazon.com/cloudwatch/pricing/"

# name, unit, page, ap-southeast-2 USD, us-east-1 USD. One row per price, both regions side
# by side, so a reader can see at a glance what moving region changes.
_TABLE: tuple[tuple[str, str, str, float, float], ...] = (
    ("msk.kafka.m5.large", "broker-hour", _MSK, 0.252, 0.21),
    ("msk.kafka.m5.xlarge", "broker-hour", _MSK, 0.504, 0.42),
    ("msk.kafka.m5.2xlarge", "broker-hour", _MSK, 1.008, 0.84),
    ("msk.kafka.m5.4xlarge", "broker-hour", _MSK, 2.016, 1.68),
    ("msk.kafka.m5.8xlarge", "broker-hour", _MSK, 4.032, 3.36),
    ("msk.kafka.m5.12xlarge", "broker-hour", _MSK, 6.048, 5.04),
    ("msk.kafka.m5.16xlarge", "broker-hour", _MSK, 8.064, 6.72),
    ("msk.kafka.m5.24xlarge", "broker-hour", _MSK, 12.096, 10.08),
    ("msk.storage", "GB-month", _MSK, 0.12, 0.10),
    ("msk.tiered_storage", "GB-month", _MSK, 0.072, 0.06),
    ("ec2.c6i.large", "instance-hour", _EC2, 0.111, 0.085),
    ("ec2.c6i.large.savings_plan_1y", "instance-hour", _SP, 0.0799, 0.0612),
    ("ec2.transfer.inter_az", "GB", _EC2, 0.01, 0.01),
    ("ec2.transfer.internet.first_100gb", "GB", _EC2, 0.0, 0.0),
    ("ec2.transfer.internet.to_10tb", "GB", _EC2, 0.114, 0.09),
    ("ec2.transfer.internet.next_40tb", "GB", _EC2, 0.098, 0.085),
    ("ec2.transfer.internet.next_100tb", "GB", _EC2, 0.094, 0.07),
    ("ec2.transfer.internet.over_150tb", "GB", _EC2, 0.092, 0.05),
    ("elasticache.cache.r6g.large", "node-hour", _CACHE, 0.247, 0.206),
    ("elasticache.cache.r6g.xlarge", "node-hour", _CACHE, 0.494, 0.411),
    ("elasticache.cache.r6g.2xlarge", "node-hour", _CACHE, 0.985, 0.821),
    ("elasticache.cache.r6g.4xlarge", "node-hour", _CACHE, 1.970, 1.642),
    ("elasticache.cache.r6g.8xlarge", "node-hour", _CACHE, 3.941, 3.284),
    ("elasticache.cache.r6g.12xlarge", "node-hour", _CACHE, 5.911, 4.926),
    ("elasticache.cache.r6g.16xlarge", "node-hour", _CACHE, 7.882, 6.568),
    ("elasticache.cache.r6g.large.reserved_1y", "node-hour", _CACHE, 0.171, 0.143),
    ("s3.standard.first_50tb", "GB-month", _S3, 0.025, 0.023),
    ("s3.standard.next_450tb", "GB-month", _S3, 0.024, 0.022),
    ("s3.standard.over_500tb", "GB-month", _S3, 0.023, 0.021),
    ("s3.standard_ia", "GB-month", _S3, 0.0138, 0.0125),
    ("s3.glacier_ir", "GB-month", _S3, 0.005, 0.004),
    ("s3.put", "1,000 requests", _S3, 0.0055, 0.005),
    ("s3.get", "1,000 requests", _S3, 0.00044, 0.0004),
    ("s3.transition.standard_ia", "1,000 requests", _S3, 0.011, 0.01),
    ("s3.transition.glacier_ir", "1,000 requests", _S3, 0.022, 0.02),
    ("s3.retrieval.standard_ia", "GB", _S3, 0.01, 0.01),
    ("glue.requests.first_1m", "1M requests", _GLUE, 0.0, 0.0),
    ("glue.requests", "1M requests", _GLUE, 1.00, 1.00),
    ("athena.scanned", "TB scanned", _ATHENA, 5.00, 5.00),
    ("amp.ingest.first_2b", "10M samples", _AMP, 0.90, 0.90),
    ("amp.ingest.next_250b", "10M samples", _AMP, 0.35, 0.35),
    ("amp.ingest.over_252b", "10M samples", _AMP, 0.16, 0.16),
    ("cloudwatch.logs.ingest", "GB", _CW, 0.57, 0.50),
)
_COLUMN = {"ap-southeast-2": 3, "us-east-1": 4}
REGIONS: tuple[str, ...] = tuple(_COLUMN)


@dataclass(frozen=True, kw_only=True)
class UnitPrice:
    """One list price: `usd` per `unit`, transcribed from `source_url` on `priced_on`."""

    name: str
    usd: float
    unit: str
    source_url: str
    priced_on: date

    def __post_init__(self) -> None:
        if not (math.isfinite(self.usd) and self.usd >= 0):
            raise CostModelError(f"price {self.name!r} must be a finite USD >= 0, got {self.usd}")
        if not self.source_url.startswith("https://aws.amazon.com/"):
            raise CostModelError(f"price {self.name!r} needs its AWS pricing page as source")


@dataclass(frozen=True, kw_only=True)
class PriceBook:
    """The unit prices of one region, by name. Use `price_book(region)` to get one."""

    region: str
    prices: Mapping[str, UnitPrice] = field(default_factory=dict)

    def __getitem__(self, name: str) -> UnitPrice:
        try:
            return self.prices[name]
        except KeyError:
            raise CostModelError(f"no price {name!r} in the {self.region} price book") from None

    def __iter__(self) -> Iterator[UnitPrice]:
        return iter(self.prices.values())

    @property
    def priced_on(self) -> date:
        """The newest date of any price in the book (all share one date unless overridden)."""
        return max(p.priced_on for p in self.prices.values())

    def with_price(self, name: str, usd: float, *, priced_on: date | None = None) -> PriceBook:
        """A copy with one price changed: what-if analysis and the notebook's sliders."""
        old = self[name]
        new = replace(old, usd=usd, priced_on=priced_on or old.priced_on)
        return replace(self, prices=MappingProxyType({**self.prices, name: new}))


def price_book(region: str = REFERENCE_REGION) -> PriceBook:
    """The list prices of `region`; `CostModelError` for a region K2 has no prices for."""
    column = _COLUMN.get(region)
    if column is None:
        known = ", ".join(REGIONS)
        raise CostModelError(f"unknown region {region!r}; priced regions: {known}")
    prices = {
        row[0]: UnitPrice(
            name=row[0], usd=float(row[column]), unit=row[1], source_url=row[2], priced_on=PRICED_ON
        )
        for row in _TABLE
    }
    return PriceBook(region=region, prices=MappingProxyType(prices))
