"""Start, find and stop one local service process, recorded under `K2_HOME/run`.

A record (`<name>.json`: pid, port, argv, started_at) is what lets `k2 down` stop exactly
what `k2 up` started and nothing else: a pid is only signalled while its command line
still matches the recorded one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from k2lib.errors import PortInUseError, ServiceError

__all__ = ["ServiceProcess", "ServiceRecord", "port_open"]

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    name: str
    pid: int
    host: str
    port: int
    argv: list[str]
    started_at: float
    create_time: float
    log: str


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ServiceProcess:
    """One long-running service that K2 owns (the broker or Redis)."""

    # The child is reaped by whoever polls it; `k2 up` exits and leaves it to init.

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        host: str,
        port: int,
        state_dir: Path,
        ready: Callable[[], bool],
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.state_dir = state_dir
        self.ready = ready
        self.cwd = cwd

    @property
    def record_path(self) -> Path:
        return self.state_dir / f"{self.name}.json"

    def record(self) -> ServiceRecord | None:
        try:
            return ServiceRecord(**json.loads(self.record_path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def running(self) -> ServiceRecord | None:
        """The record, if its process is alive and is still the one we started."""
        rec = self.record()
        if rec is None:
            return None
        try:
            proc = psutil.Process(rec.pid)
            # A recycled pid has another creation time (services may rewrite their argv).
            if proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() != rec.create_time:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return rec

    def start(self) -> tuple[ServiceRecord, bool]:
        """Start unless already running. Returns (record, started_now)."""
        rec = self.running()
        if rec is not None:
            return rec, False
        if port_open(self.host, self.port):
            raise PortInUseError(
                f"port {self.port} on {self.host} is already in use by another process; "
                f"stop it or choose another port for {self.name}"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / f"{self.name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                start_new_session=True,  # survives the CLI that started it
            )
        rec = ServiceRecord(
            name=self.name,
            pid=proc.pid,
            host=self.host,
            port=self.port,
            argv=self.argv,
            started_at=time.time(),
            create_time=psutil.Process(proc.pid).create_time(),
            log=str(log_path),
        )
        self.record_path.write_text(json.dumps(asdict(rec)))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.record_path.unlink(missing_ok=True)
                tail = log_path.read_text(errors="replace")[-800:]
                raise ServiceError(f"{self.name} exited with code {proc.returncode}:\n{tail}")
            if self.ready():
                return rec, True
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"{self.name} did not become ready on {self.host}:{self.port}")

    def stop(self) -> bool:
        """Stop our process (SIGTERM, then SIGKILL). False when nothing of ours ran."""
        rec = self.running()
        self.record_path.unlink(missing_ok=True)
        if rec is None:
            return False
        try:
            os.kill(rec.pid, signal.SIGTERM)
            psutil.Process(rec.pid).wait(timeout=STOP_TIMEOUT_S)
        except psutil.TimeoutExpired:
            os.kill(rec.pid, signal.SIGKILL)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while port_open(self.host, self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True
