"""The services' health as the stages see it: guarded calls, probes, signals and status.

Every call to Redis or the broker goes through that service's circuit breaker (`guarded`):
refused or failed, it gives `FAILED` instead of raising, so the stages defer records rather
than stop. `SignalReader` gathers each poll's `Signals` for the degradation manager, probes
the services meanwhile (idle polls make no calls of their own) and publishes the status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from k2lib.errors import CircuitOpenError, ServiceError
from k2lib.resilience import CircuitBreaker, ProcessMemory, Signals, breaker_states

__all__ = ["FAILED", "SignalReader", "guarded"]

log = logging.getLogger("k2.ingest")

STATUS_EVERY_S = 1.0
PROBE_EVERY_S = 0.25
FAILED = object()


def guarded(breakers: Mapping[str, CircuitBreaker], name: str, call: Callable[[], Any]) -> Any:
    """`call` through the `name` breaker; `FAILED` when refused or failed."""
    breaker = breakers.get(name)
    if breaker is None:
        return call()
    try:
        return breaker.call(call)
    except CircuitOpenError:
        return FAILED
    except (ServiceError, RedisError, ConnectionError, TimeoutError, OSError) as exc:
        log.warning("%s call failed: %s", name, exc)
        return FAILED


class SignalReader:
    def __init__(
        self,
        *,
        breakers: Mapping[str, CircuitBreaker],
        status_sink: Callable[[dict[str, Any]], None] | None = None,
        redis_probe: Callable[[], Any] | None = None,
        broker_probe: Callable[[], Any] | None = None,
        memory: ProcessMemory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.breakers = breakers
        self.status_sink = status_sink
        self.probes = {"redis": redis_probe, "broker": broker_probe}
        self.memory = memory or ProcessMemory()
        self.clock = clock
        self._latency: float | None = None
        self._last_status = 0.0
        self._last_probe = 0.0

    def read(self, lag: int, consumed: int) -> Signals:
        """This poll's signals (the last batch's latency counts once), probing when due."""
        signals = Signals(
            lag_messages=lag,
            consumed_messages=consumed,
            batch_latency_s=self._latency,
            rss_bytes=self.memory.rss_bytes(),
            breakers=breaker_states(self.breakers.values()),
        )
        self._latency = None
        now = self.clock()
        if now - self._last_probe >= PROBE_EVERY_S:
            # Idle polls make no Redis calls, and the consumer's fetches fail silently (a
            # frozen broker just answers nothing): without probes an outage, or a recovery,
            # would go unseen by the breakers, and the level could never move.
            self._last_probe = now
            for name, probe in self.probes.items():
                if probe is not None:
                    guarded(self.breakers, name, probe)
        return signals

    def batch_took(self, seconds: float) -> None:
        if seconds > 0:
            self._latency = seconds

    def publish(self, status: Callable[[], dict[str, Any]], signals: Signals) -> None:
        """Publish `status()` with `signals`, at most once per `STATUS_EVERY_S`."""
        now = self.clock()
        if self.status_sink is None or now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        try:
            published = {"signals": signals.as_dict(), "published_at": time.time()}
            self.status_sink({**status(), **published})
        except Exception as exc:  # status is best effort; never stop ingest over it
            log.debug("status publish failed: %s", exc)
