"""The engine sizes its workers by the cores it may use, not the node's: a container's CPU limit counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from parley_engine.settings import usable_cpu_count

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", AFFINITY),  # no limit
        ("150000 100000\n", min(AFFINITY, 2)),  # 1.5 CPUs: two cores, partly used
        ("50000 100000\n", 1),  # half a CPU still gets one worker
        ("6400000 100000\n", AFFINITY),  # a limit above the cores this process may run on
        ("garbage", AFFINITY),
    ],
)
def test_a_cgroup_cpu_limit_caps_the_cores(tmp_path: Path, cpu_max: str, expected: int) -> None:
    limit = tmp_path / "cpu.max"
    limit.write_text(cpu_max)
    assert usable_cpu_count(limit) == expected


def test_without_a_cgroup_file_the_affinity_is_the_limit(tmp_path: Path) -> None:
    assert usable_cpu_count(tmp_path / "missing") == AFFINITY
