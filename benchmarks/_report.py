"""What `benchmarks.bench` prints and writes: the cycle table, where each flow's time went, and the JSON.

The measurements themselves are the dataclasses here (`FlowMeasurement`, `StepResult`, `CycleResult`), so
the table and the JSON read one shape.
"""

from __future__ import annotations

import json
import os
import platform
import pstats
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._services import SANDBOX_NOW

PROFILE_TOP = 12
PROJECT_PACKAGES = ("consent_lifecycle", "tasks", "flows")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FlowMeasurement:
    flow_run_id: str
    state: str
    state_name: str
    wall_seconds: float
    cpu_seconds: float | None  # CPU of the flow process during the call (all its threads)
    sandbox_cpu_seconds: float | None  # CPU the sandbox process used meanwhile
    process_seconds: float  # the whole child process: interpreter, imports, the call, exit
    peak_rss_mb: float
    worker_peak_rss_mb: float | None  # the largest ended child of the flow process (a pool's worker)
    task_runs: int
    task_run_seconds: list[dict[str, Any]]  # name, task, final state, seconds from start to end
    sandbox_requests: int
    sandbox_requests_not_2xx: int
    sandbox_requests_by_route: dict[str, Any]
    outcome: str
    summary: dict[str, Any]
    profile: dict[str, Any] | None = None  # top functions and the stats file, with --profile

    def time_by_task(self) -> list[dict[str, Any]]:
        """Task runs grouped by task: runs, total and longest seconds, longest total first."""
        grouped: dict[str, list[float]] = defaultdict(list)
        for run in self.task_run_seconds:
            if run["seconds"] is not None:
                grouped[run["task"]].append(run["seconds"])
        rows = [
            {"task": task, "runs": len(times), "total_seconds": sum(times), "max_seconds": max(times)}
            for task, times in grouped.items()
        ]
        return sorted(rows, key=lambda row: -row["total_seconds"])


@dataclass
class StepResult:
    """One flow of the cycle at one size: the measured run, the rerun (when asked) and raw paging."""

    flow: str
    first: FlowMeasurement
    rerun: FlowMeasurement | None = None
    raw_paging: dict[str, Any] | None = None

    @property
    def raw_seconds(self) -> float | None:
        return self.raw_paging["wall_seconds"] if self.raw_paging else None

    @property
    def ratio(self) -> float | None:
        """Flow wall over raw paging wall: how much the flow costs beyond fetching the same pages."""
        return self.first.wall_seconds / self.raw_seconds if self.raw_seconds else None


@dataclass
class CycleResult:
    """The cycle at one size: one sandbox, one database, the flows in order and the ledger seeding."""

    companies: int
    seed: int
    now: str
    night: int = 1  # 1: the first cycle after install (nothing reconciled yet); 2, ...: the nights after
    steps: list[StepResult] = field(default_factory=list)
    consents: dict[str, Any] | None = None  # benchmarks._seed_consents' result, with sandbox_requests
    consents_after: str | None = None  # the step the ledger was seeded after
    setup_flows: list[FlowMeasurement] = field(default_factory=list)  # untimed prerequisites

    @property
    def flow_seconds(self) -> float:
        """The cycle's wall: the first run of each flow, around the flow call (setup not included)."""
        return sum(step.first.wall_seconds for step in self.steps)

    @property
    def process_seconds(self) -> float:
        return sum(step.first.process_seconds for step in self.steps)


# -- the cycle table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of the cycle table (a flow, the ledger seeding, or the size's total)."""

    companies: int
    night: int
    step: str
    wall: float | None
    rerun: float | None = None
    raw: float | None = None
    ratio: float | None = None
    rss: float | None = None
    worker_rss: float | None = None
    cpu: float | None = None
    sandbox_cpu: float | None = None
    task_runs: int | None = None
    requests: int | None = None
    outcome: str = ""


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits else str(value)


COLUMNS: list[tuple[str, Callable[[Line], str]]] = [
    ("companies", lambda line: _number(line.companies)),
    ("night", lambda line: _number(line.night)),
    ("step", lambda line: line.step),
    ("wall s", lambda line: _number(line.wall, 2)),
    ("rerun s", lambda line: _number(line.rerun, 2)),
    ("raw paging s", lambda line: _number(line.raw, 2)),
    ("flow/raw", lambda line: _number(line.ratio, 1)),
    ("peak RSS MB", lambda line: _number(line.rss, 1)),
    ("worker RSS MB", lambda line: _number(line.worker_rss, 1)),
    ("CPU s", lambda line: _number(line.cpu, 1)),
    ("sandbox CPU s", lambda line: _number(line.sandbox_cpu, 1)),
    ("task runs", lambda line: _number(line.task_runs)),
    ("requests", lambda line: _number(line.requests)),
    ("outcome", lambda line: line.outcome),
]
LEFT_ALIGNED = {"step", "outcome"}


def _step_line(cycle: CycleResult, step: StepResult) -> Line:
    first = step.first
    rerun = f"; {step.rerun.outcome}" if step.rerun else ""
    return Line(
        companies=cycle.companies,
        night=cycle.night,
        step=step.flow,
        wall=first.wall_seconds,
        rerun=step.rerun.wall_seconds if step.rerun else None,
        raw=step.raw_seconds,
        ratio=step.ratio,
        rss=first.peak_rss_mb,
        worker_rss=first.worker_peak_rss_mb or None,
        cpu=first.cpu_seconds,
        sandbox_cpu=first.sandbox_cpu_seconds,
        task_runs=first.task_runs,
        requests=first.sandbox_requests,
        outcome=first.outcome + rerun,
    )


def _total(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def _consents_line(cycle: CycleResult) -> Line:
    seeded = cycle.consents or {}
    return Line(
        companies=cycle.companies,
        night=cycle.night,
        step="(setup) record consents",
        wall=seeded.get("wall_seconds"),
        rss=seeded.get("peak_rss_mb"),
        requests=seeded.get("sandbox_requests"),
        outcome=(
            f"{seeded.get('grants')} grants, {seeded.get('revokes')} revoked, {seeded.get('skipped')} refused, "
            f"workers={seeded.get('workers')}; not in the total"
        ),
    )


def _total_line(cycle: CycleResult) -> Line:
    firsts = [step.first for step in cycle.steps]
    return Line(
        companies=cycle.companies,
        night=cycle.night,
        step="cycle total",
        wall=cycle.flow_seconds,
        rss=max((m.peak_rss_mb for m in firsts), default=None),
        worker_rss=max((m.worker_peak_rss_mb or 0 for m in firsts), default=0) or None,
        cpu=_total(m.cpu_seconds for m in firsts),
        sandbox_cpu=_total(m.sandbox_cpu_seconds for m in firsts),
        task_runs=sum(m.task_runs for m in firsts),
        requests=sum(m.sandbox_requests for m in firsts),
        outcome=f"{len(firsts)} flows; {cycle.process_seconds:.1f} s with process start-up",
    )


def _setup_flow_line(cycle: CycleResult, measured: FlowMeasurement) -> Line:
    return Line(
        companies=cycle.companies,
        night=cycle.night,
        step="(setup) snapshot by the scan",
        wall=measured.wall_seconds,
        rss=measured.peak_rss_mb,
        task_runs=measured.task_runs,
        requests=measured.sandbox_requests,
        outcome=f"{measured.outcome}; not in the total",
    )


def cycle_lines(cycle: CycleResult) -> list[Line]:
    """The size's setup flows, its flows in order with the seeding where it happened, and the total."""
    lines = [_setup_flow_line(cycle, measured) for measured in cycle.setup_flows]
    if cycle.consents is not None and not cycle.consents_after:
        lines.append(_consents_line(cycle))
    for step in cycle.steps:
        lines.append(_step_line(cycle, step))
        if cycle.consents is not None and cycle.consents_after == step.flow:
            lines.append(_consents_line(cycle))
    return [*lines, _total_line(cycle)]


def render(headers: Sequence[str], cells: Sequence[Sequence[str]], left: set[str]) -> str:
    """A plain text table: `left` columns aligned left, the others right."""
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]

    def line(values: Sequence[str]) -> str:
        aligned = [
            v.ljust(w) if h in left else v.rjust(w) for h, v, w in zip(headers, values, widths, strict=True)
        ]
        return "  ".join(aligned).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def render_cycles(cycles: Sequence[CycleResult]) -> str:
    lines = [line for cycle in cycles for line in cycle_lines(cycle)]
    cells = [[show(line) for _, show in COLUMNS] for line in lines]
    return render([name for name, _ in COLUMNS], cells, LEFT_ALIGNED)


def render_task_times(cycles: Sequence[CycleResult]) -> str:
    """Where each flow's time went: Prefect task runs grouped by task (first run of each flow)."""
    headers = ["companies", "night", "flow", "task", "runs", "total s", "max s", "share of flow"]
    cells = [
        [
            str(cycle.companies),
            str(cycle.night),
            step.flow,
            row["task"],
            str(row["runs"]),
            f"{row['total_seconds']:.2f}",
            f"{row['max_seconds']:.2f}",
            f"{100 * row['total_seconds'] / step.first.wall_seconds:.0f}%",
        ]
        for cycle in cycles
        for step in cycle.steps
        for row in step.first.time_by_task()
    ]
    return render(headers, cells, {"flow", "task"})


# -- profiles ------------------------------------------------------------------------------------


def profile_top(path: Path, top: int = PROFILE_TOP) -> dict[str, Any]:
    """From a cProfile stats file: the functions with the most own time, the most cumulative time, and the
    project's own functions (consent_lifecycle, tasks, flows) with the most cumulative time."""
    stats = pstats.Stats(str(path))
    everything = stats.stats.items()  # type: ignore[attr-defined]
    roots = tuple(str(ROOT / package) + os.sep for package in PROJECT_PACKAGES)
    project = [item for item in everything if item[0][0].startswith(roots)]

    def rows(key: int, items: Any = everything) -> list[dict[str, Any]]:
        entries = sorted(items, key=lambda item: -item[1][key])[:top]
        return [
            {
                "function": f"{_short(file)}:{line}({name})",
                "calls": calls,
                "own_seconds": round(own, 3),
                "cumulative_seconds": round(cumulative, 3),
            }
            for (file, line, name), (_, calls, own, cumulative, _) in entries
        ]

    return {
        "file": str(path),
        "by_own_time": rows(2),
        "by_cumulative_time": rows(3),
        "project_by_cumulative_time": rows(3, project),
    }


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def render_profiles(cycles: Sequence[CycleResult]) -> str:
    """Per profiled flow: the project's functions by cumulative time, then all functions by own time."""
    blocks = []
    for cycle in cycles:
        for step in cycle.steps:
            profile = step.first.profile
            if not profile:
                continue
            where = f"{step.flow} at {cycle.companies} companies, night {cycle.night}"
            blocks.append(f"{where}, under cProfile ({profile['file']}):")
            for title, key in (
                ("project function, most cumulative time", "project_by_cumulative_time"),
                ("any function, most own time", "by_own_time"),
            ):
                cells = [
                    [
                        f"{r['cumulative_seconds']:.2f}",
                        f"{r['own_seconds']:.2f}",
                        str(r["calls"]),
                        r["function"],
                    ]
                    for r in profile[key]
                ]
                blocks.append(render(["cum s", "own s", "calls", title], cells, {title}))
    return "\n\n".join(blocks)


# -- JSON ----------------------------------------------------------------------------------------


def write_json(
    cycles: Sequence[CycleResult], arguments: Mapping[str, Any], started: datetime, output: Path
) -> Path:
    path = output / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    document = {
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "command": " ".join(sys.orig_argv),
        "arguments": dict(arguments),
        "sandbox_now": SANDBOX_NOW,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "table": [
            {name: show(line) for name, show in COLUMNS} for cycle in cycles for line in cycle_lines(cycle)
        ],
        "cycles": [
            asdict(cycle)
            | {
                "cycle_flow_seconds": cycle.flow_seconds,
                "cycle_process_seconds": cycle.process_seconds,
                "time_by_task": {step.flow: step.first.time_by_task() for step in cycle.steps},
                "scan_over_raw_paging": {step.flow: step.ratio for step in cycle.steps if step.ratio},
            }
            for cycle in cycles
        ],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
