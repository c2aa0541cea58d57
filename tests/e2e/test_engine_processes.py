"""An engine killed with SIGKILL leaves no worker process behind (its speech and analysis workers die with it)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from parley_cli.local_stack import LocalStack
from tests.support.engine import TEXT_MESSAGES
from tests.support.pipeline_stack import free_port

pytestmark = pytest.mark.e2e


def test_sigkill_of_the_engine_takes_its_workers_with_it(tmp_path: Path) -> None:
    stack = LocalStack(log_dir=tmp_path)
    try:
        engine = stack.start(
            "engine", port=free_port(), timeout=120, extra_env={"PARLEY_ENGINE_DATA_DIR": str(tmp_path / "data")}
        )
        # One Async job makes the job workers start (the live-stream workers start with the engine).
        token = httpx.post(
            f"{engine.url}/oauth2/token:generate",
            json={"type": "application", "appId": "parley-dev", "appSecret": "parley-dev-secret"},
        ).json()["accessToken"]
        headers = {"x-api-key": token}
        job = httpx.post(f"{engine.url}/v1/process/text", json={"messages": TEXT_MESSAGES}, headers=headers).json()
        deadline = time.monotonic() + 60
        while httpx.get(f"{engine.url}/v1/job/{job['jobId']}", headers=headers).json()["status"] != "completed":
            assert time.monotonic() < deadline, "the job did not complete"
            time.sleep(0.2)
        parent = psutil.Process(engine.process.pid)
        workers = parent.children(recursive=True)
        assert workers, "the engine runs its work in worker processes"

        engine.process.send_signal(signal.SIGKILL)
        engine.process.wait(10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], [(p.pid, p.cmdline()[:3]) for p in alive]
        assert len(gone) == len(workers)
    finally:
        stack.stop_all()
