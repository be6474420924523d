"""The flows' own cap on Codat requests (`CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE`): Codat's rate limit is
shared with the client's products, so the flows space their requests to at most `per_minute`.

A `RateLimiter` hands out send times `60 / per_minute` seconds apart. Its schedule is kept in a small file
under an exclusive `flock` (the time before which the next request may not go), so every client using the
same file shares one schedule: the threads of one process and the processes of one machine (a flow's
tasks in a process pool, two flows run side by side). Processes on other machines (Dask workers, work pool
workers elsewhere) each keep their own file: the cap is then per machine, best effort. Without `fcntl`
(Windows) the schedule is shared within the process only.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_LOCAL = threading.Lock()
_LOCAL_NEXT: dict[str, float] = {}


def default_path(base_url: str) -> Path:
    """One schedule per Codat base URL and user on this machine (the cap is the account's, not a run's)."""
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"consent-codat-rate-{uid}-{digest}"


class RateLimiter:
    """At most `per_minute` requests a minute across every holder of the same `path` (0: no cap)."""

    def __init__(self, per_minute: int, path: Path | str) -> None:
        if per_minute < 0:
            raise ValueError(f"max requests per minute must be 0 (no cap) or more, got {per_minute}")
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RateLimiter(per_minute={self.per_minute})"

    def reserve(self) -> float:
        """Take the next send slot; returns how long to wait (seconds) before sending."""
        if not self.per_minute:
            return 0.0
        # time.time, not monotonic: the schedule is compared across processes
        with _LOCAL:
            if fcntl is None:  # pragma: no cover
                send_at = max(time.time(), _LOCAL_NEXT.get(str(self.path), 0.0))
                _LOCAL_NEXT[str(self.path)] = send_at + self.interval
                return send_at - time.time()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, 8, 0)
                scheduled = struct.unpack("<d", raw)[0] if len(raw) == 8 else 0.0
                now = time.time()
                send_at = max(now, scheduled)
                os.pwrite(fd, struct.pack("<d", send_at + self.interval), 0)
                return send_at - now
            finally:
                os.close(fd)  # releases the lock
