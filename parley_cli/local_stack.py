"""Starting Parley's processes on this machine: each service as its own process, stopped cleanly afterwards.

Used by ``parley demo``, the end-to-end tests and the benchmarks, so all three start things the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVICE_PORTS = {"engine": 8700, "ingest": 8701, "job-watcher": 8702, "insight-fetcher": 8703, "provider-double": 8790}


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class LocalStack:
    """Starts services with ``python -m parley_cli run NAME`` and the given environment."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(
        self,
        name: str,
        *,
        service: str | None = None,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
        ready_path: str = "/healthz",
        timeout: float = 60.0,
    ) -> ServiceProcess:
        """Run ``service`` (by default ``name``) as the process called ``name``: replicas of one service each have
        their own name, such as ``job-watcher-2``."""
        service = service or name
        port = port or SERVICE_PORTS[service]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = {**os.environ, **self.env, **(extra_env or {})}
        env_port_names = {
            "engine": "PARLEY_HTTP_PORT",
            "ingest": "PARLEY_HTTP_PORT",
            "job-watcher": "PARLEY_HTTP_PORT",
            "insight-fetcher": "PARLEY_HTTP_PORT",
            "provider-double": "PARLEY_DOUBLE_PORT",
        }
        env[env_port_names.get(service, "PARLEY_HTTP_PORT")] = str(port)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "parley_cli", "run", service, *(args or [])],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        started = ServiceProcess(name, port, process, log_path)
        self.processes[name] = started
        self._wait_ready(started, ready_path, timeout)
        return started

    def _wait_ready(self, service: ServiceProcess, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
            try:
                if httpx.get(service.url + path, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{service.name} not ready within {timeout:.0f}s:\n{service.log_tail()}")

    def stop(self, name: str, *, kill: bool = False, timeout: float = 20.0) -> None:
        service = self.processes.pop(name, None)
        if service is None or service.process.poll() is not None:
            return
        service.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait(5)

    def stop_all(self) -> None:
        # Upstream first, so nothing new flows into a service that is already stopping.
        for name in ["ingest", "job-watcher", "insight-fetcher", *list(self.processes)]:
            self.stop(name)
