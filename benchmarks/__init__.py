"""Benchmarks of the flows against a sandbox in its own process and a real Prefect server.

Run `.venv/bin/python -m benchmarks.bench --help` from the repository root.
"""
