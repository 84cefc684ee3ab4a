"""The HTTP load generator: autocannon (pinned in package.json), a separate process on loopback.

Closed loop: `connections` connections each send a request as soon as the previous answer
arrived, for `seconds`. Its `--json` summary gives requests/s and the latency distribution.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from crm_gateway.config import PROJECT_ROOT

AUTOCANNON = PROJECT_ROOT / "node_modules" / ".bin" / "autocannon"


@dataclass(frozen=True)
class Load:
    """One autocannon run's summary."""

    url: str
    connections: int
    seconds: float
    requests: int
    rps: float  # requests per second, mean over the run
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    errors: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def run(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: str | None = None,
    id_replacement: bool = False,
    rate: int | None = None,
    warmup_seconds: float = 0,
) -> Load:
    """Load `url` and return autocannon's summary (after an unrecorded warm-up run, if asked)."""
    if not AUTOCANNON.exists():
        raise RuntimeError(f"{AUTOCANNON} is missing: run `make deps` (npm ci installs it)")
    command = [str(AUTOCANNON), "--json", "-c", str(connections), "-m", method]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}={value}"]
    if body is not None:
        command += ["-H", "content-type=application/json", "-b", body]
    if id_replacement:
        command.append("--idReplacement")
    if rate is not None:
        command += ["--overallRate", str(rate)]
    if warmup_seconds:
        _autocannon([*command, "-d", f"{warmup_seconds:g}", url])
    result = _autocannon([*command, "-d", f"{seconds:g}", url])
    latency = result["latency"]
    return Load(
        url=url.split("?")[0],
        connections=connections,
        seconds=seconds,
        requests=int(result["requests"]["total"]),
        rps=float(result["requests"]["average"]),
        p50_ms=float(latency["p50"]),
        p90_ms=float(latency["p90"]),
        p99_ms=float(latency["p99"]),
        max_ms=float(latency["max"]),
        non_2xx=int(result.get("non2xx", 0)),
        errors=int(result.get("errors", 0)) + int(result.get("timeouts", 0)),
    )


def _autocannon(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"autocannon failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
