"""Benchmark the nightly cycle at chosen sizes against a sandbox in its own process and a real Prefect server.

Run from the repository root:

    .venv/bin/python -m benchmarks.bench --companies 1000 10000
    .venv/bin/python -m benchmarks.bench --companies 5000 --seed 11 --output /tmp/bench
    .venv/bin/python -m benchmarks.bench --companies 10000 --flows consent-reconciliation --profile

One `prefect server start` (temporary PREFECT_HOME, analytics off) serves the whole benchmark. For each
size: ONE `consent sandbox serve` process with that many companies (clock frozen, rate limits out of the
way) and ONE fresh SQLite consent database, migrated; then the nightly cycle in order, each flow in its own
child process (`benchmarks._flow_runner`) at the sandbox's `now`:

1. connection-expiry-scan (writes the snapshot), run twice (the second run should queue no notification),
   then raw httpx paging of the same pages (`benchmarks._raw_paging`) for the scan/raw ratio;
2. setup, not timed as a flow: consents recorded in the ledger from each company's Codat `products`
   (granted at its `created`; every 10th company revokes its first product 40 days before `now`), by
   `--seed-workers` processes (`benchmarks._seed_consents`);
3. consent-reconciliation (dry_run=False: findings stored, sync settings set and pulls queued at the sandbox);
4. retention-enforcement as a dry run (plans deletion items; executes nothing, deletes nothing at Codat).

`--nights` (default 2) runs that cycle again a day later on the sandbox clock (what was queued at Codat the
night before has finished), against the same sandbox and database. Night 1 is the first after install: every
company's sync settings are set and every missing pull is queued. The nights after are the steady state a
schedule sees: the same reads, and remediation only for what changed.

`--flows` picks a subset, still run in this order; a flow that needs consents gets the seeding first, and
the seeding gets the snapshot first (an untimed scan) when the scan is not among them. Measured per flow:
wall seconds around the flow call, peak RSS of the flow process, Prefect task runs of the flow run (read
back from the server, also grouped by task to show where the time went), requests the sandbox counted;
per size the cycle total (sum of the flows' walls). `--profile` also runs each flow under cProfile (slower)
and shows the functions with the most own time.

The tables go to stdout (progress to stderr) and everything, with every detail, to
`<output>/bench-<UTC timestamp>.json`. Every child process is stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._processes import BenchError, free_port, run_json, run_quietly
from benchmarks._report import (
    CycleResult,
    FlowMeasurement,
    StepResult,
    profile_top,
    render_cycles,
    render_profiles,
    render_task_times,
    write_json,
)
from benchmarks._services import (
    BIN,
    SandboxAdmin,
    Services,
    SizeSetup,
    prefect_server,
    sandbox,
    say,
    task_runs_of,
)
from benchmarks.registry import FLOWS, SNAPSHOT_FLOW, FlowSpec

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
MAX_COMPANIES = 1_000_000  # the sandbox's own bound
FLOW_TIMEOUT = 3600.0
SEED_TIMEOUT = 7200.0
DEFAULT_SEED_WORKERS = 1
MAX_SEED_WORKERS = 16
DEFAULT_NIGHTS = 2
MAX_NIGHTS = 7
DEFAULT_TASK_PROCESSES = 2  # one per core: the configuration the README recommends for large runs
MAX_TASK_PROCESSES = 64
NIGHT = 86_400.0  # seconds between nightly cycles


# -- arguments -----------------------------------------------------------------------------------


def count_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in low..high, else a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in the range {low}..{high}")
        return value

    return parse


company_count = count_in(1, MAX_COMPANIES)
worker_count = count_in(1, MAX_SEED_WORKERS)
night_count = count_in(1, MAX_NIGHTS)
process_count = count_in(0, MAX_TASK_PROCESSES)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Benchmark the nightly cycle against a sandbox process and a real Prefect server.",
    )
    parser.add_argument(
        "--companies",
        type=company_count,
        nargs="+",
        required=True,
        metavar="N",
        help="sandbox sizes to measure, e.g. --companies 1000 10000",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the sandbox world (default: 7)")
    parser.add_argument(
        "--flows",
        nargs="+",
        choices=list(FLOWS),
        default=list(FLOWS),
        metavar="FLOW",
        help=f"flows of the cycle to run, in cycle order whatever the order given (default: all of "
        f"{', '.join(FLOWS)})",
    )
    parser.add_argument(
        "--nights",
        type=night_count,
        default=DEFAULT_NIGHTS,
        metavar="N",
        help=f"cycles per size, a day apart on the sandbox clock (default: {DEFAULT_NIGHTS}): night 1 is the "
        "first after install, when nothing was reconciled yet; the nights after are the steady state",
    )
    parser.add_argument(
        "--task-processes",
        type=process_count,
        default=DEFAULT_TASK_PROCESSES,
        metavar="N",
        help=f"CONSENT_TASK_PROCESSES of the flows (default: {DEFAULT_TASK_PROCESSES}; 0: threads, the "
        "default of a deployment): the batch tasks run in a pool of N processes",
    )
    parser.add_argument(
        "--seed-workers",
        type=worker_count,
        default=DEFAULT_SEED_WORKERS,
        metavar="N",
        help=f"processes recording the consents (default: {DEFAULT_SEED_WORKERS}; SQLite has one write lock)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run each flow under cProfile (slower) and show where its own time goes",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help="directory for the JSON results (default: benchmarks/results/)",
    )
    args = parser.parse_args(argv)
    args.flows = [name for name in FLOWS if name in set(args.flows)]  # cycle order
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output}: not a directory")
    try:  # fail now, not after minutes of measuring
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--output {args.output}: {exc.strerror or exc}")
    if not os.access(args.output, os.W_OK):
        parser.error(f"--output {args.output}: not writable")
    for tool in ("consent", "prefect"):
        if not (BIN / tool).exists():
            parser.error(f"{BIN / tool} not found: run with the project's venv, .venv/bin/python")
    return args


# -- one size: its sandbox, its database, the cycle ----------------------------------------------


class Cycle:
    """Runs the steps of one size against its sandbox (`admin`) and database, recording the results."""

    def __init__(
        self, setup: SizeSetup, services: Services, admin: SandboxAdmin, args: argparse.Namespace
    ) -> None:
        self.setup = setup
        self.services = services
        self.admin = admin
        self.args = args
        self.now = admin.now()
        self.result = CycleResult(companies=setup.companies, seed=setup.seed, now=self.now)
        self.nights = [self.result]
        self.seeded = False
        self.profiles = args.output / f"profiles-{setup.directory.name}" if args.profile else None

    @property
    def env(self) -> dict[str, str]:
        return self.setup.flow_env(self.services)

    def step(self, spec: FlowSpec) -> None:
        """One flow of the cycle (after what it needs), its rerun and raw paging when the registry asks."""
        if spec.needs_consents and not self.seeded:
            self.ensure_snapshot()
            self.seed_consents()
        say(f"{spec.name} at {self.setup.companies} companies, night {self.result.night}")
        first = self.run_flow(spec, "first", profile=self.profiles is not None)
        rerun = self.run_flow(spec, "rerun") if spec.rerun else None
        raw = self.raw_paging(spec.raw_page_size) if spec.raw_page_size else None
        self.result.steps.append(StepResult(flow=spec.name, first=first, rerun=rerun, raw_paging=raw))

    def next_night(self) -> None:
        """A day later on the sandbox clock (what Codat queued last night has finished): the next cycle."""
        self.now = self.admin.advance_clock(NIGHT)
        night = self.result.night + 1
        say(f"(setup) sandbox clock advanced a day to {self.now}: night {night}")
        self.result = CycleResult(
            companies=self.setup.companies, seed=self.setup.seed, now=self.now, night=night
        )
        self.nights.append(self.result)

    def ensure_snapshot(self) -> None:
        """The ledger refuses companies not in the snapshot: write it with an untimed scan if none ran."""
        if any(step.flow == SNAPSHOT_FLOW for step in self.result.steps):
            return
        say(f"(setup) {SNAPSHOT_FLOW} to write the snapshot, not timed as part of the cycle")
        self.result.setup_flows.append(self.run_flow(FLOWS[SNAPSHOT_FLOW], "setup-snapshot"))

    def seed_consents(self) -> None:
        workers = self.args.seed_workers
        say(f"(setup) recording consents from the companies' Codat products with {workers} worker(s)")
        self.admin.clear_requests()
        command = [
            sys.executable,
            "-m",
            "benchmarks._seed_consents",
            "--now",
            self.now,
            "--workers",
            str(workers),
        ]
        log = self.setup.directory / "seed-consents.log"
        result = run_json(command, self.env, log, SEED_TIMEOUT, "recording consents")
        result["sandbox_requests"] = self.admin.requests()["total"]
        self.result.consents = result
        self.seeded = True
        self.result.consents_after = self.result.steps[-1].flow if self.result.steps else None
        say(
            f"  {result['grants']} grants ({result['skipped']} refused), {result['revokes']} revoked, "
            f"in {result['wall_seconds']:.1f} s ({result['grants_per_second']:.0f} grants/s)"
        )

    def run_flow(self, spec: FlowSpec, label: str, *, profile: bool = False) -> FlowMeasurement:
        self.admin.clear_requests()
        command = [sys.executable, "-m", "benchmarks._flow_runner", spec.name, "--now", self.now]
        outcome = spec.rerun_outcome if label == "rerun" and spec.rerun_outcome else spec.outcome
        night = self.result.night
        stats = self.profiles / f"{spec.name}-night{night}.prof" if profile and self.profiles else None
        if stats:
            stats.parent.mkdir(parents=True, exist_ok=True)
            command += ["--profile", str(stats)]
        log = self.setup.directory / f"{spec.name}-night{night}-{label}.log"
        started, sandbox_cpu = time.monotonic(), self.admin.cpu_seconds()
        record = run_json(command, self.env, log, FLOW_TIMEOUT, f"flow {spec.name} ({label})")
        process_seconds = time.monotonic() - started
        if sandbox_cpu is not None:
            sandbox_cpu = self.admin.cpu_seconds() - sandbox_cpu  # type: ignore[operator]
        counters = self.admin.requests()
        task_runs, details = task_runs_of(self.services.prefect_api, record["flow_run_id"])
        measured = FlowMeasurement(
            flow_run_id=record["flow_run_id"],
            state=record["state"],
            state_name=record["state_name"],
            wall_seconds=record["wall_seconds"],
            cpu_seconds=record.get("cpu_seconds"),
            sandbox_cpu_seconds=sandbox_cpu,
            process_seconds=process_seconds,
            peak_rss_mb=record["peak_rss_mb"],
            worker_peak_rss_mb=record.get("worker_peak_rss_mb"),
            task_runs=task_runs,
            task_run_seconds=details,
            sandbox_requests=counters["total"],
            sandbox_requests_not_2xx=not_2xx(counters),
            sandbox_requests_by_route=counters["counts"],
            outcome=outcome(Fields(record["summary"])),
            summary=record["summary"],
            profile=profile_top(stats) if stats else None,
        )
        report(label, measured, counters)
        return measured

    def raw_paging(self, page_size: int) -> dict[str, Any]:
        self.admin.clear_requests()
        command = [sys.executable, "-m", "benchmarks._raw_paging", "--page-size", str(page_size)]
        log = self.setup.directory / f"raw-paging-night{self.result.night}.log"
        result = run_json(command, self.env, log, FLOW_TIMEOUT, "raw paging")
        result["sandbox_requests"] = self.admin.requests()["total"]
        say(f"  raw paging: {result['wall_seconds']:.2f} s for {result['requests']} requests")
        return result


class Fields(dict):
    """A flow summary read back from JSON, its keys as attributes (what the registry's outcomes read); a key
    the summary left out (e.g. ScanSummary's None fields) reads as None."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def not_2xx(counters: dict[str, Any]) -> int:
    return sum(
        count
        for statuses in counters.get("by_status", {}).values()
        for status, count in statuses.items()
        if not status.startswith("2")
    )


def report(label: str, measured: FlowMeasurement, counters: dict[str, Any]) -> None:
    say(
        f"  {label}: {measured.wall_seconds:.2f} s in the flow ({measured.process_seconds:.1f} s process, "
        f"CPU {measured.cpu_seconds or 0:.1f} s, sandbox CPU {measured.sandbox_cpu_seconds or 0:.1f} s), "
        f"{measured.task_runs} task runs, {measured.sandbox_requests} requests, state "
        f"{measured.state_name}: {measured.outcome}"
    )
    tasks = measured.time_by_task()[:3]
    say("  time by task: " + (", ".join(f"{t['task']} {t['total_seconds']:.2f} s" for t in tasks) or "-"))
    if measured.sandbox_requests_not_2xx:
        say(f"  note: {measured.sandbox_requests_not_2xx} responses not 2xx: {counters['by_status']}")


def migrate(setup: SizeSetup, services: Services) -> None:
    command = [str(BIN / "consent"), "db", "upgrade"]
    run_quietly(
        command, setup.flow_env(services), setup.directory / "migrate.log", 300.0, "consent db upgrade"
    )


def measure_size(companies: int, args: argparse.Namespace, services: Services) -> list[CycleResult]:
    """The chosen flows of the cycle, in order, against one sandbox and one fresh database; `--nights`
    times, the sandbox clock a day on each time."""
    port = free_port()
    setup = SizeSetup(
        companies=companies,
        seed=args.seed,
        base_url=f"http://127.0.0.1:{port}",
        api_key=secrets.token_urlsafe(24),
        directory=Path(tempfile.mkdtemp(prefix=f"cycle-{companies}-", dir=services.workdir)),
        task_processes=args.task_processes,
    )
    runner = f"{args.task_processes} task processes" if args.task_processes else "task threads"
    say(f"nightly cycle with {companies} companies (seed {args.seed}, {runner}), files in {setup.directory}")
    with sandbox(setup, port) as admin:
        migrate(setup, services)
        cycle = Cycle(setup, services, admin, args)
        for night in range(1, args.nights + 1):
            if night > 1:
                cycle.next_night()
            for name in args.flows:
                cycle.step(FLOWS[name])
    return cycle.nights


# -- main ----------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    started = datetime.now(UTC)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="consent-bench-") as workdir,
            prefect_server(Path(workdir)) as services,
        ):
            cycles = [night for size in args.companies for night in measure_size(size, args, services)]
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: the child processes were stopped")
        return 130
    print(render_cycles(cycles))
    print()
    print("Where each flow's time went (Prefect task runs of the first run, grouped by task):")
    print(render_task_times(cycles))
    if args.profile:
        print()
        print(render_profiles(cycles))
    arguments = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    say(f"results written to {write_json(cycles, arguments, started, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
