"""The flows' task runner comes from configuration: threads by default, a process pool when
CONSENT_TASK_PROCESSES is set, a Dask cluster when CONSENT_DASK_ADDRESS names one; the flows end the same
either way."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.notify.outbox import list_notifications
from flows.connection_expiry_scan import connection_expiry_scan
from flows.consent_reconciliation import consent_reconciliation
from flows.task_runner import task_runner
from tests.fixtures_sandbox import SANDBOX_NOW, reset_sandbox
from tests.test_flow_expiry_scan import snapshot_rows
from tests.test_flow_faults import RECONCILE_AT, fresh_database, reconciliation_outcome, reconciliation_world

pytestmark = pytest.mark.prefect

NOW = SANDBOX_NOW + timedelta(days=60)  # some connections expiring, expired and stale
PAGES = {"page_size": 2, "pages_per_task": 1}  # 20 companies: 10 scan tasks (a page each), 1 delivery


def test_threads_by_default_and_dask_when_an_address_is_set(monkeypatch):
    monkeypatch.delenv("CONSENT_DASK_ADDRESS", raising=False)
    monkeypatch.setenv("CONSENT_TASK_THREADS", "3")
    threads = task_runner()
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3

    monkeypatch.setenv("CONSENT_TASK_PROCESSES", "2")
    processes = task_runner(processes=True)  # the reconciliation's
    assert isinstance(processes, ProcessPoolTaskRunner) and processes._max_workers == 2
    assert isinstance(task_runner(), ThreadPoolTaskRunner)  # the scan's and the sync's: they write

    monkeypatch.setenv("CONSENT_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    dask = task_runner()
    assert isinstance(dask, DaskTaskRunner) and dask.address == "tcp://10.0.0.5:8786"


def test_the_reconciliation_on_a_process_pool_ends_as_on_threads(flow_env, fresh_sandbox, sqlite_url, tmp_path):
    """Fetches and remediations in two worker processes (CONSENT_TASK_PROCESSES), the diff in the flow's:
    the same findings, pull records, cursors, deletion items, and sync settings and pulls at the sandbox."""
    from prefect.settings import PREFECT_API_URL

    batches = {"batch_size": 7}  # several batches: fetches, diffs and remediations overlap
    engine = reconciliation_world(fresh_sandbox, sqlite_url)
    on_threads = asyncio.run(consent_reconciliation(now=RECONCILE_AT, **batches))
    expected = reconciliation_outcome(fresh_sandbox, engine)
    assert on_threads.pulls_queued and on_threads.sync_settings_set, on_threads

    reset_sandbox(fresh_sandbox)
    engine = reconciliation_world(fresh_sandbox, fresh_database(flow_env, tmp_path, "processes.db"))
    # the workers are other processes: they read the same settings from the environment they start with
    flow_env.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    flow_env.setenv("CONSENT_TASK_PROCESSES", "2")
    runner = task_runner(processes=True)
    assert isinstance(runner, ProcessPoolTaskRunner)
    on_processes = asyncio.run(consent_reconciliation.with_options(task_runner=runner)(now=RECONCILE_AT, **batches))
    assert on_processes == on_threads
    assert reconciliation_outcome(fresh_sandbox, engine) == expected


def test_the_scan_on_a_two_worker_dask_cluster_ends_as_on_threads(flow_env, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream
    from prefect.settings import PREFECT_API_URL

    on_threads = asyncio.run(connection_expiry_scan(now=NOW, **PAGES))
    expected = outcome(make_engine(os.environ["CONSENT_DATABASE_URL"]))
    assert expected[1], "the threads run notified no one: nothing to compare"

    dask_url = _url(tmp_path, "dask")
    upgrade(dask_url)
    flow_env.setenv("CONSENT_DATABASE_URL", dask_url)
    flow_env.setenv("CONSENT_NOTIFY_FILE", str(tmp_path / "dask-notices.jsonl"))
    # the workers are other processes: they read the same settings from the environment they start with
    flow_env.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        flow_env.setenv("CONSENT_DASK_ADDRESS", cluster.scheduler_address)
        on_dask_flow = connection_expiry_scan.with_options(task_runner=task_runner())
        with Client(cluster) as client, get_task_stream(client) as stream:
            on_dask = asyncio.run(on_dask_flow(now=NOW, **PAGES))

    workers = {task["worker"] for task in stream.data}  # the stream is read when its block ends
    assert len(stream.data) >= 10 and len(workers) == 2  # every batch task ran on the cluster, on both
    assert on_dask == on_threads
    assert outcome(make_engine(dask_url)) == expected


def outcome(engine) -> tuple[list[dict], list[tuple]]:
    """The snapshot's rows and the notices (what each says, and that it went out)."""
    notices = sorted((n["key"], n["kind"], n["status"], n["link"]) for n in list_notifications(engine))
    return snapshot_rows(engine), notices


def _url(directory, name: str) -> str:
    return f"sqlite:///{directory / f'{name}.db'}"
