"""Load for `benchmarks.api_bench`: closed-loop clients against the Consent API, costing the server little CPU.

- `single_checks`: `wrk` (C, epoll; Debian's package, installed with apt-get when missing and possible)
  with a Lua script that POSTs random bodies from a fixed list and counts answers; percentiles from wrk's
  latency histogram. Without wrk, a Python fallback (one process, one thread per client, `http.client`
  keep-alive), with a warning: it costs the server's machine far more CPU per request.
- `batches` and `grant_revoke`: `http.client` threads in this process: few, large or slow requests, where
  the client's CPU is small beside the server's.

Each returns a plain dict for the JSON, the generator's own CPU seconds included.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

WRK_SCRIPT = """
local bodies = {%(bodies)s}
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(id * 7919)
  ok, permitted, refused, other = 0, 0, 0, 0
end

function request()
  return wrk.format("POST", "%(path)s", headers, bodies[math.random(#bodies)])
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    if string.find(body, '"permitted":true', 1, true) then permitted = permitted + 1 else refused = refused + 1 end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local ok_, permitted_, refused_, other_ = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    ok_ = ok_ + t:get("ok"); permitted_ = permitted_ + t:get("permitted")
    refused_ = refused_ + t:get("refused"); other_ = other_ + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"ok":%%d,"permitted":%%d,"refused":%%d,"not_200":%%d,' ..
    '"socket_errors":%%d,"p50_us":%%d,"p90_us":%%d,"p95_us":%%d,"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, ok_, permitted_, refused_, other_,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_wrk() -> str | None:
    """`wrk`'s path; installs Debian's package when missing and apt-get can (root); None otherwise."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    say("wrk is missing: apt-get install -y wrk")
    result = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        say(f"apt-get install wrk failed ({result.returncode}): {result.stderr.strip()[-300:]}")
    return shutil.which("wrk")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def single_checks(
    base_url: str, key: str, bodies: Sequence[dict[str, Any]], *, clients: int, seconds: float, workdir: Path,
    path: str = "/v1/access/check",
) -> dict[str, Any]:
    """`clients` closed-loop connections POSTing random `bodies` to `path` for `seconds`."""
    wrk = find_wrk()
    if wrk is None:
        say("WARNING: wrk is not available: the Python load generator is used; it takes CPU from the server")
        return python_single_checks(base_url, key, bodies, clients=clients, seconds=seconds, path=path)
    encoded = ",\n".join("[[" + json.dumps(body, separators=(",", ":")) + "]]" for body in bodies)
    script = workdir / "single_checks.lua"
    script.write_text(WRK_SCRIPT % {"bodies": encoded, "key": key, "path": path})
    command = [wrk, "-t", "2", "-c", str(clients), "-d", f"{seconds:.0f}s", "--timeout", "10s", "--latency",
               "-s", str(script), base_url]
    cpu_before = children_cpu()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = children_cpu() - cpu_before
    lines = [line for line in result.stdout.splitlines() if line.startswith("WRKJSON ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout[-500:]} {result.stderr[-500:]}")
    found = json.loads(lines[-1].removeprefix("WRKJSON "))
    wall = found["duration_us"] / 1e6
    return {
        "generator": "wrk", "clients": clients, "wall_seconds": wall, "requests": found["requests"],
        "per_second": found["ok"] / wall, "ok": found["ok"], "permitted": found["permitted"],
        "refused": found["refused"], "not_200": found["not_200"], "socket_errors": found["socket_errors"],
        "latency_ms": {q: found[f"{q}_us"] / 1000 for q in ("p50", "p90", "p95", "p99", "max", "mean")},
        "generator_cpu_seconds": cpu,
    }


class Client:
    """One keep-alive connection; `post` returns (status, body bytes), status 0 when the connection failed
    (counted, not raised: a thread that died would quietly take its share of the load with it)."""

    def __init__(self, base_url: str, key: str) -> None:
        host_port = base_url.removeprefix("http://").rstrip("/")
        host, port = host_port.split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            self.connection.request("POST", path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next request connects again
            time.sleep(0.01)
            return 0, b""


def run_threads(count: int, work: Callable[[int], None]) -> float:
    """Run `work(i)` on `count` threads; the wall seconds until all are done."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies) or [0.0]

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p90": at(0.90), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1] * 1000,
            "mean": sum(ordered) / len(ordered) * 1000}


def python_single_checks(
    base_url: str, key: str, bodies: Sequence[dict[str, Any]], *, clients: int, seconds: float, path: str
) -> dict[str, Any]:
    """The fallback: `clients` threads of this process, each a keep-alive connection in a closed loop."""
    encoded = [json.dumps(body).encode() for body in bodies]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: Counter[int] = Counter()
    permitted = Counter()
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        client, rng = Client(base_url, key), random.Random(i)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, body = client.post(path, rng.choice(encoded))
            latencies[i].append(time.perf_counter() - started)
            statuses[status] += 1
            permitted[b'"permitted":true' in body] += 1

    cpu_before = self_cpu()
    wall = run_threads(clients, work)
    ok = statuses[200]
    return {
        "generator": "python http.client threads (fallback)", "clients": clients, "wall_seconds": wall,
        "requests": sum(statuses.values()), "per_second": ok / wall, "ok": ok, "permitted": permitted[True],
        "refused": ok - permitted[True], "not_200": sum(statuses.values()) - ok, "socket_errors": 0,
        "latency_ms": percentiles([x for part in latencies for x in part]),
        "generator_cpu_seconds": self_cpu() - cpu_before,
    }


def batches(
    base_url: str, key: str, checks: Sequence[dict[str, Any]], *, size: int, requests: int, clients: int,
    path: str = "/v1/access/checks",
) -> dict[str, Any]:
    """`requests` POSTs of `size` random checks each to /v1/access/checks over `clients` connections."""
    rng = random.Random(size)
    bodies = [json.dumps({"checks": rng.sample(list(checks), size)}).encode() for _ in range(min(requests, 8))]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    answered: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        client = Client(base_url, key)
        for n in range(i, requests, clients):
            started = time.perf_counter()
            status, body = client.post(path, bodies[n % len(bodies)])
            with lock:
                latencies.append(time.perf_counter() - started)
                statuses[status] += 1
                if status == 200 and not answered:
                    answered.append(len(results_of(json.loads(body))))

    cpu_before = self_cpu()
    wall = run_threads(clients, work)
    ok = statuses[200]
    return {
        "size": size, "requests": requests, "clients": clients, "wall_seconds": wall, "ok": ok,
        "not_200": {str(s): n for s, n in statuses.items() if s != 200},
        "pairs_per_second": ok * size / wall, "answers_per_response": answered[0] if answered else None,
        "latency_ms": percentiles(latencies), "generator_cpu_seconds": self_cpu() - cpu_before,
        "generator": "python http.client threads",
    }


def results_of(body: Any) -> list[Any]:
    """The list of answers in a batch response (the list itself, or the one list a JSON object holds)."""
    if isinstance(body, list):
        return body
    lists = [value for value in body.values() if isinstance(value, list)] if isinstance(body, dict) else []
    return lists[0] if lists else []


def grant_revoke(base_url: str, key: str, companies: Sequence[str], *, product: str, clients: int) -> dict[str, Any]:
    """Each of `clients` connections grants `product` to its share of `companies`, then revokes it: two
    ledger writes per company, over distinct companies."""
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        client = Client(base_url, key)
        for company_id in companies[i::clients]:
            for action, path, body in (
                ("grant", f"/v1/companies/{company_id}/consents/{product}", b"{}"),
                ("revoke", f"/v1/companies/{company_id}/consents/{product}/revoke", b'{"reason": "bench"}'),
            ):
                started = time.perf_counter()
                status, _ = client.post(path, body)
                with lock:
                    latencies.append(time.perf_counter() - started)
                    statuses[f"{action} {status}"] += 1

    cpu_before = self_cpu()
    wall = run_threads(clients, work)
    ok = sum(n for name, n in statuses.items() if name.split()[1].startswith("2"))
    return {
        "companies": len(companies), "clients": clients, "wall_seconds": wall, "ok": ok,
        "statuses": dict(statuses), "ops_per_second": ok / wall, "latency_ms": percentiles(latencies),
        "generator_cpu_seconds": self_cpu() - cpu_before, "generator": "python http.client threads",
    }
