"""Time series for the charts: a background sampler of counters, and a Prometheus scraper.

`Sampler` calls a function every `interval_s` and keeps `(t, values)` rows. `scrape()` reads
a `/metrics` endpoint over HTTP and parses the exposition text with prometheus_client's own
parser, so the notebook charts exactly what Prometheus would store.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from k2lib.clock import Clock

__all__ = ["MetricsScraper", "Sampler", "scrape"]

DEFAULT_INTERVAL_S = 0.1
SCRAPE_TIMEOUT_S = 2.0


class Sampler:
    """`with Sampler(fn):` samples `fn() -> {name: number}` in a daemon thread."""

    def __init__(
        self,
        sample: Callable[[], Mapping[str, float]],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self.sample = sample
        self.interval_s = interval_s
        self.clock = clock
        self.rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = clock()

    @property
    def started_at(self) -> float:
        """The clock reading that `t` counts from."""
        return self._t0

    def take(self) -> None:
        """One sample now (also called at start and stop, so short runs still get points)."""
        t = round(self.clock() - self._t0, 3)
        try:
            values = self.sample()
        except Exception:  # a sample is a picture, never the reason a run fails
            return
        self.rows.append({"t": t, **values})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.take()

    def start(self) -> Sampler:
        self._t0 = self.clock()
        self.take()
        self._thread = threading.Thread(target=self._loop, name="k2-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> pd.DataFrame:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.take()
        return self.frame()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def scrape(
    url: str, names: Iterable[str] | None = None, timeout: float = SCRAPE_TIMEOUT_S
) -> dict[str, float]:
    """`{series: value}` from a Prometheus endpoint; labels folded into the series name
    (`k2_shed_records_total{tier="3"}`). `names` keeps only those metric families."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback /metrics
        text = response.read().decode()
    wanted = set(names) if names is not None else None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if wanted is not None and family.name not in wanted:
            continue
        for s in family.samples:
            if s.name.endswith(("_created", "_bucket")):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out


class MetricsScraper(Sampler):
    """A Sampler over a `/metrics` URL: one column per series."""

    def __init__(
        self,
        url: str,
        names: Iterable[str] | None = None,
        *,
        interval_s: float = 0.25,
        clock: Clock = time.monotonic,
    ) -> None:
        self.url = url
        keep = list(names) if names is not None else None
        super().__init__(lambda: scrape(url, keep), interval_s=interval_s, clock=clock)
