"""Benchmark the reconciliation's entitlements and diff on ~1M pulls against a naive per-row Python loop.

Run from the repository root:

    .venv/bin/python -m benchmarks.diff_bench --rows 1000000
    .venv/bin/python -m benchmarks.diff_bench --rows 200000 --companies 10000 --profile

Synthetic frames, the shapes the reconciliation reads (seeded, so a run is repeatable): `--companies`
companies with one accounting, mostly one banking and sometimes one commerce connection; two catalog
products each, granted with their required types on the matching connections, some extended, some
disconnected from a bank, some revoked (and a few granted again); `--rows` pulls over the last 400 days,
most of a type some product reads, the rest of any type; sync settings of 12 types per company.

Timed, each the best of `--repeat` runs, on those frames (functions of `consent_lifecycle.reconcile`):
entitlement_intervals, covered (the pull-to-interval join alone), unconsented_pulls (given `covered`'s answer,
as `reconcile()` gives it), expired_since(classify) + pulls_on_expired_connections, entitlements_at(intervals)
(the entitlements now, read off the intervals, as `reconcile()` computes them; it used to replay the ledger),
missing_pulls, unconsented_sync_settings; their sum is "entitlements + diff"; `reconcile()` end to end on the
same frames is shown too. Then the naive
loop written here: for each pull, replay its company's events up to the pull's `requested` time in plain
Python and decide whether some active consent covered its (connection, data type). It runs on a sample
first; when the whole run would take longer than `--naive-budget` seconds, the whole is extrapolated
linearly from the sample (and labelled so). The loop's answers must equal `covered`'s on every row it ran.
For scale, `--replay-sample` pulls are also decided by calling the core's own `replay(events, as_of)` once
per pull (what the intervals replaced), extrapolated to every pull.

Prints a table and writes `<output>/diff-bench-<UTC timestamp>.json`. Targets (issue 8): entitlements +
diff on 1M rows <= 2 s, and >= 30x faster than the naive loop. `--profile` runs the vectorized pieces once
under cProfile and prints the functions with the most own and cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from consent_lifecycle.catalog import Catalog, load_catalog
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.expiry import INPUT_COLUMNS, classify
from consent_lifecycle.ledger.replay import events_frame, replay
from consent_lifecycle.reconcile import Observed, reconcile
from consent_lifecycle.reconcile.diff import (
    PULL_COLUMNS,
    READ_COLUMNS,
    SETTING_COLUMNS,
    expired_since,
    missing_pulls,
    pulls_on_expired_connections,
    unconsented_pulls,
    unconsented_sync_settings,
)
from consent_lifecycle.reconcile.intervals import covered, entitlement_intervals, entitlements_at

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
NOW = pd.Timestamp("2026-11-01T12:00:00Z")
DAY_NS = 86_400 * 10**9
SETTINGS_PER_COMPANY = 12
TARGET_SECONDS = 2.0
TARGET_RATIO = 30.0
PULL_KEYS = ["company_id", "connection_id", "data_type"]
#: the step computing the entitlements now (as `reconcile()` does: from the intervals)
ENTITLED = "entitlements_at(intervals)"


# -- synthetic frames ----------------------------------------------------------------------------


@dataclass
class World:
    """The frames the reconciliation reads: ledger events, the connection snapshot, pulls, sync settings."""

    events: pd.DataFrame  # EVENT_COLUMNS (events_frame)
    connections: pd.DataFrame  # expiry INPUT_COLUMNS + deleted_at, status_changed_at
    pulls: pd.DataFrame  # PULL_COLUMNS
    settings: pd.DataFrame  # SETTING_COLUMNS

    def sizes(self) -> dict[str, int]:
        return {
            "companies": int(self.connections["company_id"].nunique()),
            "connections": len(self.connections),
            "events": len(self.events),
            "consents": int(self.events["consent_id"].nunique()),
            "pulls": len(self.pulls),
            "sync_settings": len(self.settings),
        }


def _ids(rng: np.random.Generator, count: int) -> list[str]:
    """`count` random UUIDs as text (what Codat and the ledger use as ids)."""
    raw = rng.integers(0, 2**63, size=(count, 2), dtype=np.int64)
    return [str(uuid.UUID(int=(int(a) << 64) | int(b))) for a, b in raw]


def _times(rng: np.random.Generator, start: pd.Timestamp, days: float, count: int) -> np.ndarray:
    """`count` instants (int64 ns) uniformly in [start, start + days)."""
    return start.value + (rng.random(count) * days * DAY_NS).astype(np.int64)


def make_connections(rng: np.random.Generator, company_ids: list[str]) -> pd.DataFrame:
    """One accounting connection per company, a bank for 80%, a commerce platform for 30%."""
    frames = []
    for source_type, share in (("Accounting", 1.0), ("Banking", 0.8), ("Commerce", 0.3)):
        owners = [
            c for c, keep in zip(company_ids, rng.random(len(company_ids)) < share, strict=True) if keep
        ]
        frames.append(pd.DataFrame({"company_id": owners, "source_type": source_type}))
    frame = pd.concat(frames, ignore_index=True)
    count = len(frame)
    created = _times(rng, NOW - pd.Timedelta(days=500), 420, count)
    status = rng.choice(["Linked", "Deauthorized", "Unlinked"], size=count, p=[0.85, 0.10, 0.05])
    frame.insert(0, "id", _ids(rng, count))
    frame["status"] = status
    frame["jurisdiction"] = rng.choice(["uk", "eu", "us"], size=count, p=[0.5, 0.35, 0.15])
    frame["created_at"] = pd.to_datetime(created, utc=True)
    frame["last_sync_at"] = frame["created_at"] + pd.to_timedelta(rng.integers(1, 80, count), unit="D")
    frame["last_authorized_at"] = frame["created_at"]
    frame["last_reconfirmed_at"] = pd.NaT
    frame["last_reconfirmed_at"] = pd.to_datetime(frame["last_reconfirmed_at"], utc=True)
    frame["deleted_at"] = pd.to_datetime(pd.Series(pd.NaT, index=frame.index), utc=True)
    changed = frame["created_at"] + pd.to_timedelta(rng.integers(1, 300, count), unit="D")
    frame["status_changed_at"] = changed.where(frame["status"] != "Linked")
    return frame


@dataclass
class _Events:
    """Event rows being built (`event_id` assigned at the end, in time order)."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def add(
        self,
        consent: str,
        company: str,
        product: str,
        kind: str,
        types: Iterable[str],
        connections: Iterable[str],
        at: int,
    ) -> None:
        self.rows.append((consent, company, product, kind, sorted(types), sorted(connections), at))

    def frame(self) -> pd.DataFrame:
        self.rows.sort(key=lambda row: (row[6], row[0], row[3]))
        return events_frame([(number, *row) for number, row in enumerate(self.rows, start=1)])


def make_events(seed: int, catalog: Catalog, connections: pd.DataFrame) -> pd.DataFrame:
    """Two products per company: granted; some extended, disconnected from a bank, revoked, granted again."""
    rng = random.Random(seed)  # one draw per decision: the stdlib's generator is the quicker one here
    products = sorted(catalog.products)
    pairs = [(a, b) for i, a in enumerate(products) for b in products[i + 1 :]]
    owned: dict[str, list[tuple[str, str]]] = {}
    for connection, company, source_type in zip(
        connections["id"], connections["company_id"], connections["source_type"], strict=True
    ):
        owned.setdefault(company, []).append((connection, source_type))
    events = _Events()
    for company in sorted(owned):
        for product in rng.choice(pairs):
            _consent_story(rng, events, catalog, company, product, owned[company])
    return events.frame()


def _consent_story(
    rng: random.Random,
    events: _Events,
    catalog: Catalog,
    company: str,
    product: str,
    owned: list[tuple[str, str]],
) -> None:
    """One consent's events: (connection id, source type) pairs in `owned` are the company's connections."""
    spec = catalog.products[product]
    sources = {DATA_TYPE_SOURCE[t] for t in spec.required}
    scope = [connection for connection, source_type in owned if source_type in sources]
    consent = str(uuid.UUID(int=rng.getrandbits(128)))
    at = NOW.value - int((420 - rng.random() * 60) * DAY_NS)
    events.add(consent, company, product, "granted", spec.required, scope, at)
    roll = rng.random()
    if roll < 0.10 and spec.optional:
        at += rng.randint(1, 59) * DAY_NS
        events.add(consent, company, product, "extended", rng.sample(sorted(spec.optional), 2), [], at)
    elif roll < 0.15:
        banks = [connection for connection, source_type in owned if source_type == "Banking"]
        if banks and banks[0] in scope:
            at += rng.randint(1, 59) * DAY_NS
            events.add(consent, company, product, "disconnected", [], banks[:1], at)
    if rng.random() < 0.20:
        at += rng.randint(10, 299) * DAY_NS
        events.add(consent, company, product, "revoked", [], scope, at)
        if rng.random() < 0.30:
            at += rng.randint(1, 29) * DAY_NS
            events.add(consent, company, product, "granted", spec.required, scope, at)


def make_pulls(
    rng: np.random.Generator, catalog: Catalog, connections: pd.DataFrame, rows: int
) -> pd.DataFrame:
    """`rows` pulls on random connections over the last 400 days: 70% of a type some product reads."""
    pick = rng.integers(0, len(connections), size=rows)
    chosen = connections.iloc[pick]
    read = set().union(*(p.required | p.optional for p in catalog.products.values()))
    data_type = np.empty(rows, dtype=object)
    popular = rng.random(rows) < 0.7
    for source_type in ("Accounting", "Banking", "Commerce"):
        every = sorted(t for t, s in DATA_TYPE_SOURCE.items() if s == source_type)
        common = sorted(t for t in every if t in read) or every
        here = (chosen["source_type"] == source_type).to_numpy()
        for mask, pool in ((here & popular, common), (here & ~popular, every)):
            data_type[mask] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), int(mask.sum()))]
    requested = pd.to_datetime(_times(rng, NOW - pd.Timedelta(days=400), 400, rows), utc=True)
    status = rng.choice(
        ["Complete", "FetchError", "AuthError", "RateLimitError", "Queued", "NotSupported"],
        size=rows,
        p=[0.85, 0.05, 0.03, 0.03, 0.02, 0.02],
    )
    completed = pd.Series(requested + pd.to_timedelta(rng.integers(20, 900, rows), unit="s"))
    return pd.DataFrame(
        {
            "id": _ids(rng, rows),
            "company_id": chosen["company_id"].to_numpy(),
            "connection_id": chosen["id"].to_numpy(),
            "data_type": data_type,
            "status": status,
            "requested": requested,
            "completed": completed.where(status != "Queued").to_numpy(),
        }
    )[PULL_COLUMNS]


def make_settings(rng: np.random.Generator, company_ids: list[str]) -> pd.DataFrame:
    """`SETTINGS_PER_COMPANY` scheduled data types per company, drawn from every Codat type."""
    every = np.asarray(sorted(DATA_TYPE_SOURCE), dtype=object)
    picks = np.argsort(rng.random((len(company_ids), len(every))), axis=1)[:, :SETTINGS_PER_COMPANY]
    return pd.DataFrame(
        {
            "company_id": np.repeat(np.asarray(company_ids, dtype=object), SETTINGS_PER_COMPANY),
            "data_type": every[picks.ravel()],
            "fetch_on_first_link": True,
            "sync_schedule": 24,
            "sync_order": np.tile(np.arange(SETTINGS_PER_COMPANY), len(company_ids)),
        }
    )[SETTING_COLUMNS]


def make_world(companies: int, rows: int, seed: int, catalog: Catalog) -> World:
    rng = np.random.default_rng(seed)
    company_ids = _ids(rng, companies)
    connections = make_connections(rng, company_ids)
    return World(
        events=make_events(seed, catalog, connections),
        connections=connections,
        pulls=make_pulls(rng, catalog, connections, rows),
        settings=make_settings(rng, company_ids),
    )


# -- the vectorized path -------------------------------------------------------------------------


@dataclass
class Vectorized:
    """Best seconds per step over the repeats, and what the steps produced (from the last repeat)."""

    seconds: dict[str, float]
    covered: pd.Series  # per pull: some consent covered it at `requested`
    counts: dict[str, int]

    @property
    def total(self) -> float:
        """Entitlements + diff: every step but the end-to-end `reconcile()`."""
        return sum(seconds for step, seconds in self.seconds.items() if step != "reconcile() end to end")

    @property
    def like_for_like(self) -> float:
        """What answers the naive loop's question: intervals, then the pull-to-interval join."""
        return self.seconds["entitlement_intervals"] + self.seconds["covered"]


def vectorized_steps(world: World, catalog: Catalog) -> list[tuple[str, Callable[[dict[str, Any]], Any]]]:
    """The steps in order; each reads what earlier ones left in the shared dict and stores its result."""
    now = NOW.to_pydatetime()
    pulls, events, connections = world.pulls, world.events, world.connections

    def expired(_: dict[str, Any]) -> pd.DataFrame:
        classified = classify(connections[INPUT_COLUMNS], catalog, now).merge(
            connections[["id", "status_changed_at"]], on="id"
        )
        return expired_since(classified)

    def consented(out: dict[str, Any]) -> pd.DataFrame:
        return pulls[out["covered"]]

    return [
        ("entitlement_intervals", lambda out: entitlement_intervals(events, connections)),
        (
            "covered",
            lambda out: covered(
                pulls, out["entitlement_intervals"], at="requested", on=PULL_KEYS, fact_id="id"
            ),
        ),
        (
            "unconsented_pulls",
            lambda out: unconsented_pulls(pulls, out["entitlement_intervals"], out["covered"]),
        ),
        ("expired_since(classify)", expired),
        (
            "pulls_on_expired_connections",
            lambda out: pulls_on_expired_connections(pulls, out["expired_since(classify)"]),
        ),
        (
            ENTITLED,
            lambda out: entitlements_at(out["entitlement_intervals"], connections, catalog, now),
        ),
        (
            "missing_pulls",
            lambda out: missing_pulls(out[ENTITLED], consented(out), catalog, now),
        ),
        (
            "unconsented_sync_settings",
            lambda out: unconsented_sync_settings(world.settings, out[ENTITLED], now),
        ),
        ("reconcile() end to end", lambda out: reconcile(_observed(world), catalog, now)),
    ]


def _observed(world: World) -> Observed:
    return Observed(
        company_ids=sorted(world.connections["company_id"].unique()),
        settings=world.settings,
        pulls=world.pulls,
        reads=pd.DataFrame(
            {c: pd.Series(dtype="datetime64[ns, UTC]" if c == "at" else object) for c in READ_COLUMNS}
        ),
        events=world.events,
        connections=world.connections,
    )


def run_vectorized(world: World, catalog: Catalog, repeat: int) -> Vectorized:
    best: dict[str, float] = {}
    out: dict[str, Any] = {}
    for _ in range(repeat):
        out = {}
        for name, step in vectorized_steps(world, catalog):
            started = time.perf_counter()
            out[name] = step(out)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    counts = {
        "intervals": len(out["entitlement_intervals"]),
        "covered_pulls": int(out["covered"].sum()),
        "unconsented_pulls": len(out["unconsented_pulls"]),
        "pulls_on_expired_connections": len(out["pulls_on_expired_connections"]),
        "entitlements": len(out[ENTITLED]),
        "missing_pulls": len(out["missing_pulls"]),
        "unconsented_sync_settings": len(out["unconsented_sync_settings"]),
        "reconcile_findings": len(out["reconcile() end to end"].findings),
    }
    return Vectorized(seconds=best, covered=out["covered"], counts=counts)


def profile_vectorized(world: World, catalog: Catalog, path: Path, top: int = 20) -> str:
    """Run the entitlements + diff steps once under cProfile (stats written to `path`); as text, the core's
    functions with the most cumulative time, then any functions with the most own time."""
    profiler = cProfile.Profile()
    out: dict[str, Any] = {}
    profiler.enable()
    for name, step in vectorized_steps(world, catalog)[:-1]:  # not the end-to-end reconcile()
        out[name] = step(out)
    profiler.disable()
    profiler.dump_stats(path)
    sections = []
    for order, restriction, title in (
        ("cumulative", "consent_lifecycle", "core functions, most cumulative time"),
        ("tottime", None, "any function, most own time"),
    ):
        buffer = io.StringIO()
        stats = pstats.Stats(str(path), stream=buffer).sort_stats(order)
        stats.print_stats(*(arg for arg in (restriction, top) if arg is not None))
        body = buffer.getvalue()
        sections += [f"-- {title} --", body[max(0, body.find("   ncalls")) :].rstrip()]
    return "\n".join(sections)


# -- the naive loop ------------------------------------------------------------------------------

Event = tuple[int, str, str, frozenset[str], frozenset[str]]  # at (ns), consent, type, data types, conns


def event_index(events: pd.DataFrame) -> dict[str, list[Event]]:
    """Each company's events in ledger order (`event_id`), as plain tuples."""
    index: dict[str, list[Event]] = {}
    ordered = events.sort_values("event_id")
    columns = ["company_id", "at", "consent_id", "event_type", "data_types", "connection_ids"]
    for company, at, consent, kind, types, conns in ordered[columns].itertuples(index=False, name=None):
        index.setdefault(company, []).append((at.value, consent, kind, frozenset(types), frozenset(conns)))
    return index


def naive_covered(
    pulls: Iterable[tuple[str, str, str, int]], index: dict[str, list[Event]], sources: dict[str, str]
) -> list[bool]:
    """For each (company, connection, data type, requested ns): replay the company's events up to then."""
    answers = []
    for company, connection, data_type, requested in pulls:
        if DATA_TYPE_SOURCE.get(data_type) != sources.get(connection):
            answers.append(False)
            continue
        consents: dict[str, list[Any]] = {}  # consent -> [active, data types, connections]
        for at, consent, kind, types, conns in index.get(company, ()):
            if at > requested:
                continue
            state = consents.get(consent)
            if kind == "granted":
                consents[consent] = [True, set(types), set(conns)]
            elif state is None:
                continue
            elif kind == "extended":
                state[1] |= types
                state[2] |= conns
            elif kind == "disconnected":
                state[2] -= conns
            elif kind == "revoked":
                state[0] = False
        answers.append(
            any(
                active and data_type in types and connection in conns
                for active, types, conns in consents.values()
            )
        )
    return answers


@dataclass
class Naive:
    rows_run: int
    index_seconds: float  # building the per-company event index (once, whatever the rows)
    loop_seconds: float  # the loop over `rows_run` pulls
    seconds: float  # for every pull: measured, or extrapolated linearly from the sample
    extrapolated: bool
    mismatches: int  # rows where the loop and `covered` disagree
    mismatch_examples: list[dict[str, Any]]


def run_naive(world: World, answers: pd.Series, sample: int, budget: float, seed: int) -> Naive:
    """The loop on a sample; on every pull too when that should take at most `budget` seconds."""
    started = time.perf_counter()
    index = event_index(world.events)
    sources = dict(zip(world.connections["id"], world.connections["source_type"], strict=True))
    index_seconds = time.perf_counter() - started
    rows = len(world.pulls)
    picked = _sample(rows, sample, seed)

    def loop(chosen: np.ndarray) -> tuple[float, pd.DataFrame]:
        return _time_loop(world.pulls.iloc[chosen], answers.iloc[chosen], naive_covered, index, sources)

    loop_seconds, mismatched = loop(picked)
    if len(picked) < rows and index_seconds + loop_seconds * rows / len(picked) <= budget:
        picked = np.arange(rows)
        loop_seconds, mismatched = loop(picked)
    return _naive_result(rows, picked, index_seconds, loop_seconds, mismatched)


def run_core_replay(world: World, answers: pd.Series, sample: int, seed: int) -> Naive:
    """The design the intervals replaced: the core's own `replay(events, as_of)` once per pull, on a sample."""
    started = time.perf_counter()
    positions = world.events.groupby("company_id").indices
    sources = dict(zip(world.connections["id"], world.connections["source_type"], strict=True))
    index_seconds = time.perf_counter() - started
    picked = _sample(len(world.pulls), sample, seed)

    def decide(rows: Iterable[tuple[str, str, str, int]], *_: Any) -> list[bool]:
        return [replay_covers(world.events, positions, sources, *row) for row in rows]

    loop_seconds, mismatched = _time_loop(world.pulls.iloc[picked], answers.iloc[picked], decide)
    return _naive_result(len(world.pulls), picked, index_seconds, loop_seconds, mismatched)


def replay_covers(
    events: pd.DataFrame,
    positions: dict[str, np.ndarray],
    sources: dict[str, str],
    company: str,
    connection: str,
    data_type: str,
    requested: int,
) -> bool:
    """Whether an active consent covered (connection, data type) at `requested`, by `replay` as of then."""
    if DATA_TYPE_SOURCE.get(data_type) != sources.get(connection):
        return False
    state = replay(events.iloc[positions.get(company, [])], pd.Timestamp(requested, tz="UTC"))
    active = set(state.consents.loc[state.consents["status"] == "active", "consent_id"])
    typed = set(state.data_types.loc[state.data_types["data_type"] == data_type, "consent_id"])
    linked = set(state.connections.loc[state.connections["connection_id"] == connection, "consent_id"])
    return bool(active & typed & linked)


def _sample(rows: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(rows, size=min(size, rows), replace=False))


def _naive_result(
    rows: int, picked: np.ndarray, index_seconds: float, loop_seconds: float, mismatched: pd.DataFrame
) -> Naive:
    return Naive(
        rows_run=len(picked),
        index_seconds=index_seconds,
        loop_seconds=loop_seconds,
        seconds=index_seconds + loop_seconds * rows / len(picked),
        extrapolated=len(picked) < rows,
        mismatches=len(mismatched),
        mismatch_examples=mismatched.head(5).astype(str).to_dict("records"),
    )


def _time_loop(
    pulls: pd.DataFrame, expected: pd.Series, decide: Callable[..., list[bool]], *context: Any
) -> tuple[float, pd.DataFrame]:
    """Seconds for `decide(rows, *context)` over `pulls` (their conversion to tuples included), and the rows
    whose answer differs from `expected`."""
    started = time.perf_counter()
    rows = zip(
        pulls["company_id"],
        pulls["connection_id"],
        pulls["data_type"],
        pulls["requested"].array.asi8,
        strict=True,
    )
    answers = np.asarray(decide(rows, *context), dtype=bool)
    seconds = time.perf_counter() - started
    disagree = answers != expected.to_numpy()
    return seconds, pulls[disagree].assign(naive=answers[disagree])


# -- output --------------------------------------------------------------------------------------


def render(world: World, vectorized: Vectorized, naive: Naive, replayed: Naive | None) -> str:
    """The per-step table, then rows / vectorized / naive / ratio (and the per-row replay, when run)."""
    total = vectorized.total
    steps = [
        f"  {name:<32} {seconds:8.3f} s" + ("   (not in the sum)" if name == "reconcile() end to end" else "")
        for name, seconds in vectorized.seconds.items()
    ]
    label = f"extrapolated from {naive.rows_run} rows" if naive.extrapolated else "measured on every row"
    ratio = naive.seconds / total
    like = naive.seconds / vectorized.like_for_like
    summary = [
        ("rows (pulls)", f"{len(world.pulls)}"),
        (
            "vectorized s (entitlements + diff)",
            f"{total:.3f}  {_verdict(total <= TARGET_SECONDS, f'<= {TARGET_SECONDS:.0f} s')}",
        ),
        ("vectorized s (intervals + covered)", f"{vectorized.like_for_like:.3f}"),
        ("naive s", f"{naive.seconds:.1f}  ({label}; event index {naive.index_seconds:.2f} s)"),
        (
            "ratio naive / vectorized",
            f"{ratio:.1f}x  {_verdict(ratio >= TARGET_RATIO, f'>= {TARGET_RATIO:.0f}x')}",
        ),
        ("ratio naive / intervals + covered", f"{like:.1f}x  (the same question, like for like)"),
        ("agreement", f"{naive.rows_run - naive.mismatches} of {naive.rows_run} rows agree"),
    ]
    if replayed is not None:
        summary += [
            (
                "per-row core replay() s",
                f"{replayed.seconds:.0f}  (extrapolated from {replayed.rows_run} rows, "
                + f"{replayed.rows_run - replayed.mismatches} of them agree)",
            ),
            ("ratio per-row replay() / vectorized", f"{replayed.seconds / total:.0f}x"),
        ]
    width = max(len(name) for name, _ in summary)
    sizes = ", ".join(f"{value} {key}" for key, value in world.sizes().items())
    return "\n".join(
        [f"synthetic world: {sizes}", "vectorized steps (best of the repeats):", *steps, ""]
        + [f"{name:<{width}}  {value}" for name, value in summary]
    )


def _verdict(met: bool, target: str) -> str:
    return f"(target {target}: {'met' if met else 'MISSED'})"


def write_json(
    args: argparse.Namespace,
    world: World,
    vectorized: Vectorized,
    naive: Naive,
    replayed: Naive | None,
    started: datetime,
) -> Path:
    path = args.output / f"diff-bench-{started:%Y%m%dT%H%M%SZ}.json"
    document = {
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "command": " ".join(sys.orig_argv),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "pandas": pd.__version__,
            "numpy": np.__version__,
        },
        "world": world.sizes(),
        "vectorized": {
            "seconds_by_step": vectorized.seconds,
            "entitlements_plus_diff_seconds": vectorized.total,
            "intervals_plus_covered_seconds": vectorized.like_for_like,
            "counts": vectorized.counts,
        },
        "naive": asdict(naive),
        "per_row_core_replay": asdict(replayed) if replayed else None,
        "ratio": naive.seconds / vectorized.total,
        "ratio_like_for_like": naive.seconds / vectorized.like_for_like,
        "targets": {
            "seconds": TARGET_SECONDS,
            "seconds_met": vectorized.total <= TARGET_SECONDS,
            "ratio": TARGET_RATIO,
            "ratio_met": naive.seconds / vectorized.total >= TARGET_RATIO,
        },
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.diff_bench",
        description="Time the reconciliation's entitlements + diff on synthetic frames against a naive loop.",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="pulls (default: 1000000)")
    parser.add_argument("--companies", type=int, default=50_000, help="companies (default: 50000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic frames (default: 7)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the vectorized path, best kept (3)")
    parser.add_argument("--sample", type=int, default=20_000, help="pulls the naive loop runs first (20000)")
    parser.add_argument(
        "--naive-budget",
        type=float,
        default=60.0,
        help="run the naive loop on every pull when that should take at most this many seconds (60)",
    )
    parser.add_argument(
        "--replay-sample",
        type=int,
        default=300,
        help="pulls to decide with the core's replay() once per pull, extrapolated (default: 300; 0: skip)",
    )
    parser.add_argument("--profile", action="store_true", help="also profile the vectorized steps once")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help="directory for the JSON results (default: benchmarks/results/)",
    )
    args = parser.parse_args(argv)
    for name in ("rows", "companies", "repeat", "sample"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    args.output.mkdir(parents=True, exist_ok=True)
    return args


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    catalog = load_catalog()
    clock = time.perf_counter()
    world = make_world(args.companies, args.rows, args.seed, catalog)
    say(f"synthetic frames built in {time.perf_counter() - clock:.1f} s: {world.sizes()}")
    vectorized = run_vectorized(world, catalog, args.repeat)
    say(f"vectorized: {vectorized.total:.3f} s (best of {args.repeat}); counts {vectorized.counts}")
    naive = run_naive(world, vectorized.covered, args.sample, args.naive_budget, args.seed)
    say(f"naive: {naive.seconds:.1f} s ({'extrapolated' if naive.extrapolated else 'measured'})")
    replayed = None
    if args.replay_sample:
        replayed = run_core_replay(world, vectorized.covered, args.replay_sample, args.seed)
        say(f"per-row core replay(): {replayed.seconds:.0f} s extrapolated from {replayed.rows_run} rows")
    print(render(world, vectorized, naive, replayed))
    if args.profile:
        path = args.output / f"diff-bench-{started:%Y%m%dT%H%M%SZ}.prof"
        print(f"\nprofile of one run of the vectorized steps ({path}):")
        print(profile_vectorized(world, catalog, path))
    say(f"results written to {write_json(args, world, vectorized, naive, replayed, started)}")
    return 1 if naive.mismatches or (replayed and replayed.mismatches) else 0


if __name__ == "__main__":
    sys.exit(main())
