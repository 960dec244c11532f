"""Helpers for tests that drive the real `k2` CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2lib.config import K2Settings


def run_k2(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `k2` CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "k2lib.cli.main", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"k2 {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def last_json(stdout: str) -> dict:
    """The JSON summary a run prints as its last line of stdout."""
    return json.loads(stdout.strip().splitlines()[-1])


def stored_keys(settings) -> list[tuple[str, str, int]]:
    """Every `(exchange, symbol, seq)` in the settings' Iceberg table, duplicates included."""
    from k2lib.connect import load_k2_catalog
    from k2lib.storage.table import stored_keys as table_keys

    return table_keys(load_k2_catalog(settings).load_table(settings.table))


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MemoryBroker:
    """K2's own broker (its log in memory) on a free loopback port of its own, recorded under
    `state_dir`, not the stack's: restarting it wipes no one else's topics. `settings` are
    the stack's pointed at it; a context manager starts it and stops it."""

    def __init__(self, stack_settings: K2Settings, state_dir: Path) -> None:
        from k2lib.stack.process import ServiceProcess
        from k2lib.stack.services import broker_process

        port = free_port()
        self.settings = stack_settings.with_(kafka_bootstrap=f"127.0.0.1:{port}")
        stack_like = broker_process(self.settings)  # the stack's, but for its record
        self.process = ServiceProcess(
            name="broker",
            argv=stack_like.argv,
            host=stack_like.host,
            port=port,
            state_dir=state_dir,
            ready=stack_like.ready,
        )

    def __enter__(self) -> MemoryBroker:
        self.process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop()

    def restart(self, settings: K2Settings) -> None:
        """Stop and start it (every topic is gone), then create `settings`' topic and DLQ
        topic again, empty."""
        from k2lib.connect import create_topics

        self.process.stop()
        self.process.start()
        create_topics(settings, {settings.topic: settings.partitions, settings.dlq_topic: 1})


def after_kills(settings) -> list[str]:
    """`k2 ingest` options for the run that settles what SIGKILLed group members left. A
    killed member stays in the group until its session times out; noida-db never evicts it
    (docs/operations/brokers.md), so on an external broker the run reads alone, which the
    compare-and-set commit makes as safe."""
    return ["--alone"] if settings.kafka_external else []
