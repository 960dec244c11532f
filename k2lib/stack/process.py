"""Start, find and stop one local service process, recorded under `K2_HOME/run`.

A record (`<name>.json`: pid, port, argv, started_at) is what lets `k2 down` stop exactly
what `k2 up` started and nothing else: a pid is only signalled while its command line
still matches the recorded one.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from k2lib.errors import PortInUseError, ServiceError

__all__ = ["ServiceProcess", "ServiceRecord", "as_user", "port_open", "recorded_process"]

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
    # PostgreSQL's "fast" shutdown is SIGINT (SIGTERM waits for every client to leave).
    stop_signal: int = signal.SIGTERM


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
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        extra_ports: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.state_dir = state_dir
        self.ready = ready
        self.cwd = cwd
        self.user = user  # run as this system user (PostgreSQL refuses to run as root)
        self.stop_signal = stop_signal
        self.extra_ports = list(extra_ports)  # also needed free (a Redis Cluster bus port)

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
        for port in [self.port, *self.extra_ports]:
            if port_open(self.host, port):
                raise PortInUseError(
                    f"port {port} on {self.host} is already in use by another process; "
                    f"stop it or choose another port for {self.name}"
                )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / f"{self.name}.log"
        user, group, extra_groups = as_user(self.user)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                start_new_session=True,  # survives the CLI that started it
                user=user,
                group=group,
                extra_groups=extra_groups,
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
            stop_signal=int(self.stop_signal),
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
            os.kill(rec.pid, rec.stop_signal)
            psutil.Process(rec.pid).wait(timeout=STOP_TIMEOUT_S)
        except psutil.TimeoutExpired:
            os.kill(rec.pid, signal.SIGKILL)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while port_open(self.host, self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True


def as_user(user: str | None) -> tuple[str | None, int | None, list[int] | None]:
    """subprocess's (user, group, extra_groups) that run a child as `user` with its own
    group and no others; all None (no change) when `user` is None."""
    if user is None:
        return None, None, None
    return user, pwd.getpwnam(user).pw_gid, []


def recorded_process(state_dir: Path, name: str) -> ServiceProcess | None:
    """A handle on what `<name>.json` records, enough to stop it, or None without a record.

    `k2 down` stops with it, so it needs no binary: a stack whose PostgreSQL was
    uninstalled since `k2 up` still stops.
    """
    path = state_dir / f"{name}.json"
    try:
        rec = ServiceRecord(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
    return ServiceProcess(
        name=name,
        argv=rec.argv,
        host=rec.host,
        port=rec.port,
        state_dir=state_dir,
        ready=lambda: False,
        stop_signal=rec.stop_signal,
    )
