"""Run one registered flow once in this process and print one JSON line; `benchmarks.bench` starts it.

    python -m benchmarks._flow_runner connection-expiry-scan --now 2026-11-01T12:00:00Z
    python -m benchmarks._flow_runner consent-reconciliation --now 2026-11-01T12:00:00Z --profile /tmp/r.prof

Settings come from the environment (CONSENT_DATABASE_URL, CONSENT_CODAT_BASE_URL, CONSENT_CODAT_API_KEY,
PREFECT_API_URL...). The line holds the flow run id, the wall seconds around the flow call alone (imports
excluded), this process's peak RSS and the flow's summary. `--profile PATH` runs the call under cProfile
(this thread only: the flow's own code and the tasks it calls inline) and writes the stats to PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.registry import FLOWS, VARIANTS
from consent_lifecycle.clock import parse_iso


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """This process's peak resident set size in MB, or with RUSAGE_CHILDREN its largest ended child's (a
    process pool's worker); ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cpu_seconds() -> float:
    """CPU used so far by every thread of this process (the flow, its tasks, Prefect's own) and by its
    children that have ended (a process pool's workers, once the flow run shut the pool down)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def call_flow(flow: Any, parameters: dict[str, Any], profile: Path | None = None) -> tuple[Any, float]:
    """The flow's final state and the wall seconds of the call (sync and async flows alike)."""
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    try:
        if inspect.iscoroutinefunction(flow.fn):
            state = asyncio.run(flow(**parameters, return_state=True))
        else:
            state = flow(**parameters, return_state=True)
    finally:
        wall = time.perf_counter() - started
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
    return state, wall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._flow_runner", description=__doc__)
    parser.add_argument("flow", choices=sorted(FLOWS | VARIANTS))
    parser.add_argument("--now", required=True, type=parse_iso, help="ISO 8601 time the flow decides at.")
    parser.add_argument("--profile", type=Path, metavar="PATH", help="write cProfile stats of the call here")
    args = parser.parse_args(argv)

    spec = (FLOWS | VARIANTS)[args.flow]
    flow = spec.load()
    cpu = cpu_seconds()
    state, wall = call_flow(flow, spec.parameters(args.now), args.profile)
    cpu = cpu_seconds() - cpu
    summary = state.result()  # raises if the flow run failed: the traceback goes to stderr
    record = {
        "flow": spec.name,
        "flow_run_id": str(state.state_details.flow_run_id),
        "state": state.type.value,
        "state_name": state.name,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_rss_mb(),
        "worker_peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN),
        # the summary dataclasses' own dict (json's default=str would make them one string)
        "summary": summary.as_dict() if hasattr(summary, "as_dict") else summary,
    }
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
