"""A throwaway PostgreSQL server for whatever needs a real server database: several engine replicas, in the
engine's tests and in the replica fault run (``parley_devtools.fault_run --engines 2``).

Debian's ``postgresql`` package provides the binaries (installed with apt-get when missing and running as root).
The cluster lives in a fresh temporary directory, listens on a free loopback port only, trusts local
connections, skips fsync, and is stopped and deleted at the end (and stops by itself if its parent dies).
PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

SERVER_START_TIMEOUT_SECONDS = 60
COMMAND_TIMEOUT_SECONDS = 120
APT_TIMEOUT_SECONDS = 900
OS_USER = "postgres"
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries here and no way to install them (not root)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _install_postgresql() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    if subprocess.run(install, env=env, capture_output=True, timeout=APT_TIMEOUT_SECONDS).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=APT_TIMEOUT_SECONDS, check=True)
        subprocess.run(install, env=env, capture_output=True, timeout=APT_TIMEOUT_SECONDS, check=True)


def _postgres_binaries() -> Path:
    bin_dir = _bin_dir()
    if bin_dir is None:
        if os.geteuid() != 0:
            raise PostgresUnavailable("PostgreSQL is not installed (apt-get install postgresql) and this is not root")
        _install_postgresql()
        bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists")
    return bin_dir


def _die_with_parent() -> None:
    """Runs in the server's process before exec: SIGQUIT (PostgreSQL's immediate shutdown) if its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


@dataclass
class PostgresServer:
    """One running throwaway cluster; ``create_database()`` hands out fresh, empty databases."""

    bin_dir: Path
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def _server_user(self) -> str | None:
        return OS_USER if os.geteuid() == 0 else None

    def _run(self, *command: str | Path) -> None:
        result = subprocess.run(
            [str(part) for part in command],
            user=self._server_user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> None:
        self._run(self.bin_dir / "initdb", "-D", self.data_dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N")
        log = (self.root / "server.log").open("wb")
        # A direct child (not pg_ctl's daemon), so it stops with its parent even if the parent is killed.
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                *("-D", str(self.data_dir), "-k", str(self.root), "-p", str(self.port), "-h", "127.0.0.1"),
                *("-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"),
            ],
            user=self._server_user,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while not self._accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {output}")
            time.sleep(0.1)

    def _accepts_connections(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            capture_output=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        return result.returncode == 0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop cleanly
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy async URL (postgresql+asyncpg)."""
        name = f"parley_{uuid.uuid4().hex[:12]}"
        self._run(self.bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"


def start_postgres() -> PostgresServer:
    """Start a fresh cluster on a free loopback port (installing PostgreSQL first if needed and allowed)."""
    bin_dir = _postgres_binaries()
    root = Path(tempfile.mkdtemp(prefix="parley-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(root, OS_USER, OS_USER)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=_free_port())
    try:
        server.start()
    except BaseException:
        stop_postgres(server)
        raise
    return server


def stop_postgres(server: PostgresServer) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
