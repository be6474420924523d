"""Run one registered flow once in this process and print one JSON line; `benchmarks.bench` starts it.

    python -m benchmarks._flow_runner connection-expiry-scan --now 2026-11-01T12:00:00Z

Settings come from the environment (CONSENT_DATABASE_URL, CONSENT_CODAT_BASE_URL, CONSENT_CODAT_API_KEY,
PREFECT_API_URL...). The line holds the flow run id, the wall seconds around the flow call alone (imports
excluded), this process's peak RSS and the flow's summary.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.registry import FLOWS
from consent_lifecycle.clock import parse_iso


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def call_flow(flow: Any, parameters: dict[str, Any]) -> tuple[Any, float]:
    """The flow's final state and the wall seconds of the call (sync and async flows alike)."""
    started = time.perf_counter()
    if inspect.iscoroutinefunction(flow.fn):
        state = asyncio.run(flow(**parameters, return_state=True))
    else:
        state = flow(**parameters, return_state=True)
    return state, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._flow_runner", description=__doc__)
    parser.add_argument("flow", choices=sorted(FLOWS))
    parser.add_argument("--now", required=True, type=parse_iso, help="ISO 8601 time the flow decides at.")
    args = parser.parse_args(argv)

    spec = FLOWS[args.flow]
    flow = spec.load()
    state, wall = call_flow(flow, spec.parameters(args.now))
    summary = state.result()  # raises if the flow run failed: the traceback goes to stderr
    record = {
        "flow": spec.name,
        "flow_run_id": str(state.state_details.flow_run_id),
        "state": state.type.value,
        "wall_seconds": wall,
        "peak_rss_mb": peak_rss_mb(),
        "summary": summary,
    }
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
