"""The results table: each metric beside its target, with pass/miss, as text for the terminal and markdown."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One row; ``passed`` is None for baselines and notes that have no target."""

    name: str
    value: str
    target: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return "—" if self.passed is None else ("pass" if self.passed else "MISS")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: the p99 of 200 samples is the second-worst one)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def render_table(metrics: list[Metric]) -> str:
    lines = ["| metric | measured | target | result |", "|---|---|---|---|"]
    lines += [f"| {m.name} | {m.value} | {m.target} | {m.verdict} |" for m in metrics]
    return "\n".join(lines)


def render_markdown(
    *,
    title: str,
    command: str,
    started: str,
    wall_seconds: float,
    machine: dict[str, Any],
    metrics: list[Metric],
    notes: list[str],
    sections: list[tuple[str, str]] | None = None,
) -> str:
    """A benchmark's results page: how it was run, on what, the table, any extra sections, then notes."""
    lines = [
        f"# {title}",
        "",
        f"- command: `{command}`",
        f"- date: {started}",
        f"- wall time: {wall_seconds:.0f} s",
        f"- machine: nproc {machine['nproc']}, {machine['memory_gib']} GiB memory, {machine['cpu_model']}"
        f" ({machine['os']}, Python {machine['python']})",
        "",
        "## Results",
        "",
        render_table(metrics),
        "",
    ]
    for heading, body in sections or []:
        if body:
            lines += [f"## {heading}", "", body, ""]
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def write_results(
    output_dir: Path,
    stem: str,
    *,
    title: str,
    command: str,
    started_at: datetime,
    wall_seconds: float,
    quick: bool,
    machine: dict[str, Any],
    size: Any,
    metrics: list[Metric],
    results: dict[str, Any],
    notes: list[str],
    sections: list[tuple[str, str]] | None = None,
) -> tuple[Path, Path]:
    """``<stem>.md`` for people and ``<stem>.json`` with the raw numbers of one benchmark run."""
    markdown = render_markdown(
        title=title,
        command=command,
        started=started_at.strftime("%Y-%m-%d %H:%M UTC"),
        wall_seconds=wall_seconds,
        machine=machine,
        metrics=metrics,
        notes=notes,
        sections=sections,
    )
    raw = {
        "command": command,
        "date": started_at.isoformat(),
        "wall_seconds": wall_seconds,
        "quick": quick,
        "machine": machine,
        "size": size.__dict__,
        "metrics": [{**m.__dict__, "verdict": m.verdict} for m in metrics],
        "results": results,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    page, data = output_dir / f"{stem}.md", output_dir / f"{stem}.json"
    page.write_text(markdown)
    data.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return page, data
