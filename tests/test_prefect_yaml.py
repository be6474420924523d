"""prefect.yaml: every deployment's entrypoint imports a flow, and every parameter it sets exists on it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_and_parameters(deployment):
    path, _, name = deployment["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    accepted = inspect.signature(flow.fn).parameters
    assert set(deployment.get("parameters") or {}) <= set(accepted), deployment["name"]
    for trigger in deployment.get("triggers") or []:
        assert set(trigger["parameters"]) <= set(accepted), deployment["name"]
    assert deployment["work_pool"]["name"] == "consent-process"
    for schedule in deployment.get("schedules") or []:
        assert schedule["timezone"] and len(schedule["cron"].split()) == 5


def test_the_three_flows_are_deployed_under_their_own_names():
    names = {d["name"]: d for d in DEPLOYMENTS}
    assert {"connection-expiry-scan", "consent-reconciliation", "retention-enforcement"} <= set(names)
    assert names["retention-enforcement"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    # the backfill's --via-deployment targets this name
    from consent_lifecycle.cli.run import DEPLOYMENT

    flow_name, _, deployment_name = DEPLOYMENT.partition("/")
    assert deployment_name in names and flow_name == "consent-reconciliation"


def test_a_revocation_or_disconnection_event_plans_that_companys_deletions_only():
    from deployments.specs import triggers
    from tasks.events import EVENT_PREFIX, company_resource

    spec = {d["name"]: d for d in DEPLOYMENTS}["retention-enforcement"]
    (trigger,) = triggers(spec["name"], spec["triggers"])
    assert trigger.expect == {EVENT_PREFIX + "revoked", EVENT_PREFIX + "disconnected"}
    assert trigger.parameters["dry_run"] is True  # plan mode: nothing is deleted by the automation
    (pattern,) = [trigger.match.root["prefect.resource.id"]]
    assert pattern.endswith("*") and company_resource("c-1")["prefect.resource.id"].startswith(pattern[:-1])
    assert "consent.company-id" in trigger.parameters["company_ids"]
