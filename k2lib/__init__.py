"""K2: a teaching-grade market-data platform."""

__version__ = "0.2.0"
