"""Child processes of the benchmark: each in its own process group, always stopped, failures explained.

A child started here is a session leader (`start_new_session`), so Ctrl-C in the terminal reaches only the
benchmark, which then stops every child group it started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 25


class BenchError(RuntimeError):
    """A child process failed or did not become ready; the message says which and shows its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text) or "    (empty log)"


def stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the child's process group, SIGKILL it if it has not exited after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):  # the whole group has already gone
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def background(
    command: Sequence[str], env: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in the background (output to `log_path`) until the block ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_group(process)


def wait_until_ready(
    ready: Callable[[], bool], process: subprocess.Popen[Any], what: str, log_path: Path, timeout: float
) -> float:
    """Poll `ready()` until true; return the seconds waited. BenchError if `process` exits or time is up."""
    started = time.monotonic()
    while not ready():
        if process.poll() is not None:
            raise BenchError(f"{what} exited with code {process.returncode}; its log:\n{log_tail(log_path)}")
        if time.monotonic() - started > timeout:
            raise BenchError(f"{what} was not ready within {timeout:.0f} s; its log:\n{log_tail(log_path)}")
        time.sleep(0.1)
    return time.monotonic() - started


def run_quietly(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, timeout: float, what: str
) -> float:
    """Run `command` to completion (output to `log_path`); return its wall seconds. BenchError on failure."""
    started = time.monotonic()
    with background(command, env, log_path) as process:
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what} did not finish within {timeout:.0f} s:\n{log_tail(log_path)}") from None
    if code != 0:
        raise BenchError(f"{what} exited with code {code}; its log:\n{log_tail(log_path)}")
    return time.monotonic() - started


def run_json(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, timeout: float, what: str
) -> dict[str, Any]:
    """Run `command` to completion and return the JSON object on the last `{` line of its stdout.

    stderr goes to `log_path`; a failure, a timeout or no JSON line is a BenchError showing that log.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what} did not finish within {timeout:.0f} s:\n{log_tail(log_path)}") from None
        finally:
            stop_group(process)
    if process.returncode != 0:
        raise BenchError(f"{what} exited with code {process.returncode}; its log:\n{log_tail(log_path)}")
    lines = [line for line in stdout.decode(errors="replace").splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"{what} printed no JSON line; its log:\n{log_tail(log_path)}")
    return json.loads(lines[-1])
