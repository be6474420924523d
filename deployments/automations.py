"""The operators' failure alert: an automation on `prefect.flow-run.Failed` of this project's flows that
POSTs `{"title", "text"}` JSON (Slack-compatible) to an alert webhook, through a notification block.

`make serve` creates both (pointing at its own `/alerts` inbox unless CONSENT_ALERT_WEBHOOK_URL is set).
Against any other Prefect server (a worker setup after `prefect deploy --all`):

    PREFECT_API_URL=http://127.0.0.1:4200/api CONSENT_ALERT_WEBHOOK_URL=https://hooks.slack.com/... \
        .venv/bin/python -m deployments.automations

Rerunning replaces them (same names), never duplicates. The other automation of the project, planning a
company's deletions when its consent is revoked or a connection disconnected, is a `triggers:` entry of the
retention-enforcement deployment in prefect.yaml, created with the deployment.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.utilities.asyncutils import run_coro_as_sync

from consent_lifecycle.settings import get_settings
from deployments.specs import deployment_specs, load_flow

ALERT_BLOCK = "consent-ops-alerts"
FAILURE_AUTOMATION = "consent-flow-run-failed"
SUBJECT = "consent-lifecycle: {{ flow.name }} run {{ flow_run.name }} failed"
BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }} ended {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}"
)


def flow_names() -> list[str]:
    """The flows prefect.yaml deploys (their names as Prefect records them)."""
    return sorted({load_flow(spec["entrypoint"]).name for spec in deployment_specs()})


def failure_automation(block_id: UUID, flows: list[str]) -> AutomationCore:
    """Every Failed run of `flows` notifies through the block `block_id`, at once, once per run."""
    return AutomationCore(
        name=FAILURE_AUTOMATION,
        description=(
            "When a consent-lifecycle flow run fails (prefect.flow-run.Failed), POST its name, the state's "
            "message and a link to the run's page to the operators' alert webhook (block consent-ops-alerts; "
            "make serve: its /alerts inbox, .consent/alerts.jsonl). Defined in deployments/automations.py."
        ),
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flows},  # type: ignore[arg-type]
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )


def alert_block(url: str) -> CustomWebhookNotificationBlock:
    return CustomWebhookNotificationBlock(
        name=ALERT_BLOCK, url=url, json_data={"title": "{{subject}}", "text": "{{subject}}\n{{body}}"}
    )


async def ensure_failure_alert(url: str) -> dict[str, Any]:
    """Save the alert block (overwriting) and replace the failure automation; returns their ids."""
    block_id = await alert_block(url).asave(ALERT_BLOCK, overwrite=True)
    flows = flow_names()
    automation = failure_automation(block_id, flows)
    async with get_client() as client:
        for existing in await client.read_automations_by_name(FAILURE_AUTOMATION):
            await client.delete_automation(existing.id)
        automation_id = await client.create_automation(automation)
    return {"block_id": block_id, "automation_id": automation_id, "flows": flows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.automations",
        description="Create (or replace) the failure alert automation on the Prefect server of PREFECT_API_URL.",
    )
    parser.add_argument("--alert-url", default=None,
                        help="where alerts are POSTed (default: CONSENT_ALERT_WEBHOOK_URL)")
    args = parser.parse_args(argv)
    url = args.alert_url or get_settings().alert_webhook_url
    if not url:
        raise SystemExit("no alert URL: pass --alert-url or set CONSENT_ALERT_WEBHOOK_URL")
    created = run_coro_as_sync(ensure_failure_alert(url))
    print(f"automation {FAILURE_AUTOMATION} ({created['automation_id']}) -> block {ALERT_BLOCK} -> {url}")


if __name__ == "__main__":
    main()
