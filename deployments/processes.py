"""Child processes of `make serve` (the Prefect server, the sandbox, the webhook receiver) and of the
end-to-end test: started in their own process group, waited for over HTTP, stopped with the whole group."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 120.0  # a cold Prefect server with a fresh database takes ~15 s on 2 cores
STOP_TIMEOUT_SECONDS = 15.0


@contextmanager
def running(
    argv: list[str], log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """Run `argv` in its own process group (so Ctrl-C reaches this process first, and stopping ends the
    whole group), output to `log_path`; stop it when the block ends."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM to the process group of `process`, SIGKILL to it after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; end anything it left behind in its group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def wait_for(
    url: str, process: subprocess.Popen, log_path: Path, ready: Callable[[httpx.Response], bool],
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> None:
    """Poll GET `url` until `ready(response)`; fail early, with the log's tail, if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with {process.returncode}:\n{tail(log_path)}")
        try:
            if ready(httpx.get(url, timeout=2.0)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s; see {log_path}:\n{tail(log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def require_free(port: int, what: str, hint: str) -> None:
    with socket.socket() as sock:
        if sock.connect_ex((HOST, port)) == 0:
            raise SystemExit(f"port {port} is in use: is {what} already running? {hint}")


def executable(name: str) -> str:
    """`name` from this interpreter's bin directory (the venv), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name) or name


def healthy(response: httpx.Response) -> bool:
    """Whether a Prefect server's `/api/health` answered `true`."""
    return response.status_code == 200 and response.text.strip() == "true"
