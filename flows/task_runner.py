"""The task runner the flows fan their batch tasks out on, from configuration.

Threads by default (`CONSENT_TASK_THREADS` at once, 4 unless set): the batch tasks wait on Codat and the
database, not the CPU. With `CONSENT_TASK_PROCESSES=2` the reconciliation's fetches and remediations run in
two processes instead (its client CPU per request then has a core of its own while the flow diffs and
stores). With `CONSENT_DASK_ADDRESS=tcp://scheduler:8786` they go to that Dask cluster's
workers instead (prefect-dask), for more than one machine's worth of batches. The workers need the same
CONSENT_* settings and PREFECT_API_URL as the flow run. Read when a flow module is imported, i.e. once per
flow run process (a worker or `make serve` starts one per run).
"""

from __future__ import annotations

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from consent_lifecycle.settings import get_settings


def task_runner(*, processes: bool = False) -> TaskRunner:
    """Dask when configured; else, for a flow whose submitted tasks write nothing to the database
    (`processes=True`: the reconciliation's fetches and remediations), a pool of CONSENT_TASK_PROCESSES
    processes when set; else threads. (The scan's batch tasks each write the snapshot: in processes they
    would queue on SQLite's one write lock and pay a process start for nothing.)"""
    settings = get_settings()
    if settings.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=settings.dask_address)
    if processes and settings.task_processes:
        return ProcessPoolTaskRunner(max_workers=settings.task_processes)
    return ThreadPoolTaskRunner(max_workers=settings.task_threads)
