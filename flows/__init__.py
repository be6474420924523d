"""Prefect flows: thin orchestration over tasks/."""
