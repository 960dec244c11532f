"""The cluster profile's PostgreSQL: an unprivileged server under `K2_HOME/postgres`.

It holds the pyiceberg SqlCatalog (the warehouse stays a local folder). The binaries are
Debian's (`/usr/lib/postgresql/<version>/bin`, package `postgresql`), or those in
`K2_POSTGRES_BIN_DIR`. PostgreSQL refuses to run as root, so under root it runs as the
system user `k2pg`, created on first use. It listens on 127.0.0.1 only, with no Unix socket.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import psycopg2

from k2lib.config import K2Settings
from k2lib.errors import ServiceError
from k2lib.stack.process import ServiceProcess, as_user

__all__ = [
    "POSTGRES_USER",
    "SYSTEM_USER",
    "find_postgres_bin",
    "postgres_problem",
    "postgres_process",
]

SYSTEM_USER = "k2pg"  # the Unix user the server runs as when K2 runs as root
POSTGRES_USER = "k2"  # the database superuser that initdb creates
DATABASE = "k2"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
NEEDED = ("initdb", "postgres")
INSTALL_HINT = (
    "install Debian's `postgresql` package "
    "(`apt-get install -y --no-install-recommends postgresql` as root, or `make system-deps`), "
    "or set K2_POSTGRES_BIN_DIR to a directory holding initdb and postgres"
)


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in NEEDED)


def find_postgres_bin(settings: K2Settings) -> Path:
    """The directory with initdb and postgres: K2_POSTGRES_BIN_DIR when set, else the newest
    Debian version, else the directory of `initdb` on PATH."""
    if settings.postgres_bin_dir is not None:
        if _has_binaries(settings.postgres_bin_dir):
            return settings.postgres_bin_dir
        raise ServiceError(
            f"`k2 up --cluster` needs PostgreSQL: no initdb and postgres in "
            f"K2_POSTGRES_BIN_DIR={settings.postgres_bin_dir}; {INSTALL_HINT}"
        )
    candidates = sorted(
        (d for d in Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")) if _has_binaries(d)),
        key=lambda d: _version_key(d.parent.name),
    )
    if candidates:
        return candidates[-1]
    on_path = shutil.which("initdb")
    if on_path and _has_binaries(Path(on_path).parent):
        return Path(on_path).parent
    raise ServiceError(
        f"`k2 up --cluster` needs PostgreSQL: no initdb and postgres in {DEBIAN_BIN_GLOB} "
        f"or on PATH; {INSTALL_HINT}"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _run_as() -> str | None:
    """None when we are not root; else the unprivileged user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        done = subprocess.run(
            [*argv, SYSTEM_USER],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ServiceError(
                f"PostgreSQL refuses to run as root and the user {SYSTEM_USER!r} "
                f"could not be created: {done.stderr.strip()}"
            ) from None
    return SYSTEM_USER


def _check_reachable(path: Path, user: str) -> None:
    """Every directory above `path` must let `user` through (pytest's and home dirs are 0700)."""
    for parent in reversed(path.parents):
        if not parent.exists():  # made below by us, with the default mode
            return
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise ServiceError(
                f"PostgreSQL runs as user {user!r} (it refuses root) and cannot enter "
                f"{parent} (mode {stat.filemode(mode)}): choose a K2_HOME below directories "
                f"others may enter, or `chmod o+x {parent}`"
            )


def _init_data_dir(bin_dir: Path, data_dir: Path, user: str | None) -> None:
    """initdb once: superuser `k2`, trust on loopback (ADR 012), UTF-8, no locale."""
    if (data_dir / "PG_VERSION").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    data_dir.chmod(0o700)
    argv = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", POSTGRES_USER]
    argv += ["--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"]
    run_user, group, extra_groups = as_user(user)
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=data_dir,
        user=run_user,
        group=group,
        extra_groups=extra_groups,
    )
    if done.returncode != 0:
        raise ServiceError(f"initdb failed for {data_dir}:\n{done.stderr[-800:]}")


def postgres_process(settings: K2Settings) -> ServiceProcess:
    """The server as a recorded service; initdb runs here the first time."""
    bin_dir = find_postgres_bin(settings)
    user = _run_as()
    data_dir = settings.home / "postgres" / "data"
    if user is not None:
        _check_reachable(data_dir, user)
    _init_data_dir(bin_dir, data_dir, user)
    argv = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(settings.postgres_port)]
    # Loopback TCP only: no socket in /var/run/postgresql, which belongs to Debian's server.
    argv += ["-h", "127.0.0.1", "-c", "unix_socket_directories="]
    return ServiceProcess(
        name="postgres",
        argv=argv,
        host="127.0.0.1",
        port=settings.postgres_port,
        state_dir=settings.state_dir,
        ready=lambda: _ensure_database(settings),
        cwd=data_dir,
        user=user,
        stop_signal=signal.SIGINT,  # "fast" shutdown: pooled catalog clients do not hold it up
    )


def _connect(settings: K2Settings, dbname: str, timeout: int = 2) -> psycopg2.extensions.connection:
    return psycopg2.connect(
        host="127.0.0.1",
        port=settings.postgres_port,
        user=POSTGRES_USER,
        dbname=dbname,
        connect_timeout=timeout,
    )


def _ensure_database(settings: K2Settings) -> bool:
    """Ready when the server accepts connections and the catalog database exists."""
    try:
        conn = _connect(settings, "postgres", timeout=1)
    except psycopg2.OperationalError:
        return False
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{DATABASE}"')
        return True
    finally:
        conn.close()


def postgres_problem(settings: K2Settings) -> str:
    """Why the catalog database does not answer `SELECT 1`, or "" when it does."""
    try:
        conn = _connect(settings, DATABASE, timeout=1)
    except psycopg2.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip()}"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return ""
    finally:
        conn.close()
