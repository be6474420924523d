"""Prefect tasks: each wraps one I/O step (a Codat read, a database transaction) around the core."""
