"""prefect.yaml's deployments as Python objects: their entries, their flows, and each as a deployment
`prefect.serve` runs (schedules, parameters, tags, concurrency limit, triggers), as `prefect deploy`
reads them."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # Prefect is imported only once PREFECT_API_URL is settled: it reads settings at import
    from prefect.deployments.runner import RunnerDeployment

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of prefect.yaml."""
    return yaml.safe_load(path.read_text())["deployments"]


def load_flow(entrypoint: str) -> Any:
    """The flow object of an entrypoint `flows/file.py:function` (imported as a module of this repo)."""
    path, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def schedule(entry: Mapping[str, Any]) -> Any:
    """A prefect.yaml schedule entry (`cron`/`interval`/`rrule`, `timezone`, `active`, `parameters`, ...) as
    a `prefect.schedules.Schedule`; an unknown key fails here rather than being dropped."""
    from prefect.schedules import Schedule

    fields = dict(entry)
    if isinstance(fields.get("interval"), int | float):
        fields["interval"] = timedelta(seconds=fields["interval"])
    return Schedule(**fields)


def concurrency_limit(value: int | Mapping[str, Any] | None) -> Any:
    """`concurrency_limit` of prefect.yaml: an int, or `{limit, collision_strategy}` (ENQUEUE/CANCEL_NEW)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(**value) if isinstance(value, Mapping) else value


def triggers(name: str, entries: list[Mapping[str, Any]]) -> list[Any]:
    """prefect.yaml `triggers:` of deployment `name`, validated and named as `prefect deploy` does (the
    automations they become are replaced, not duplicated, when the deployment is applied again)."""
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(DeploymentTriggerTypes)
    return [
        adapter.validate_python({"name": f"{name}__automation_{i}", **entry})
        for i, entry in enumerate(entries, start=1)
    ]


def build_deployment(spec: Mapping[str, Any]) -> RunnerDeployment:
    """One prefect.yaml entry as a deployment `prefect.serve` can run (its work pool is not used)."""
    return load_flow(spec["entrypoint"]).to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags") or [],
        parameters=spec.get("parameters") or {},
        schedules=[schedule(entry) for entry in spec.get("schedules") or []],
        concurrency_limit=concurrency_limit(spec.get("concurrency_limit")),
        triggers=triggers(spec["name"], spec.get("triggers") or []),
    )
