"""The results of a run: `bench/results/<timestamp>.json`, the Markdown table, and BENCHMARKS.md.

BENCHMARKS.md is partly written by hand (what the figures mean, the profile's analysis); `make
bench` replaces only what lies between the `<!-- bench:results -->` markers, or writes the
whole file when they are missing.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.scenarios import Row
from crm_gateway.config import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "BENCHMARKS.md"
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = _output(["node", "--version"])
    autocannon = _output([str(PROJECT_ROOT / "node_modules/.bin/autocannon"), "--version"])
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "memory_gib": round(_memory_bytes() / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "node": node,
        "autocannon": autocannon.splitlines()[0] if autocannon else "",
        "load_average_at_start": [round(x, 2) for x in load],
        "commit": _output(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"]),
        "dirty": bool(_output(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain"])),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value:.2f}x"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| scenario | measured | result | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        baseline = (
            f"{row.baseline}: {_number(row.baseline_value, row.unit)}" if row.baseline else "—"
        )
        met = {True: "**met**", False: "**missed**", None: "reported"}[row.met]
        lines.append(
            f"| {row.scenario} | {row.measured} | {_number(row.value, row.unit)} | {baseline} | "
            f"{_number(row.ratio, 'ratio')} | {row.target or '—'} | {met} |"
        )
    return "\n".join(lines)


def notes(rows: Sequence[Row]) -> str:
    noted = [f"- {row.scenario}, {row.measured}: {row.note}" for row in rows if row.note]
    return "\n".join(noted)


def markdown(
    rows: Sequence[Row], info: dict[str, Any], profile: dict[str, Any] | None, runtime: float
) -> str:
    """The generated part of BENCHMARKS.md."""
    load = ", ".join(f"{x:g}" for x in info["load_average_at_start"])
    parts = [
        f"Run of {info['date']} on commit `{info['commit']}`"
        + (" (with uncommitted changes)" if info["dirty"] else "")
        + f", `make bench` took {runtime / 60:.1f} min.",
        "",
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, "
        f"{info['os']}; load average {load} when the run started (a shared machine: absolute "
        f"figures drift, ratios to a baseline of the same run less). Python {info['python']}, "
        f"Node {info['node']}, {info['autocannon']}.",
        "",
        table(rows),
        "",
    ]
    extra = notes(rows)
    if extra:
        parts += ["Notes on this run:", "", extra, ""]
    if profile:
        parts += [
            "Profile of the consent check under the same load (py-spy, GIL-holding samples, "
            f"{profile['request_samples']} of {profile['samples']} outside the background "
            "threads). Time by layer, and the gateway's own functions by inclusive share:",
            "",
            "| layer | self | | own function | inclusive |",
            "|---|---|---|---|---|",
        ]
        layers = profile["layers"][:8]
        own = profile["own"][:8]
        for index in range(max(len(layers), len(own))):
            left = (
                f"{layers[index]['name']} | {layers[index]['self'] * 100:.0f}%"
                if index < len(layers)
                else " | "
            )
            right = (
                f"`{own[index]['name']}` | {own[index]['inclusive'] * 100:.0f}%"
                if index < len(own)
                else " | "
            )
            parts.append(f"| {left} | | {right} |")
        parts.append("")
    return "\n".join(parts)


def write(
    rows: Sequence[Row],
    info: dict[str, Any],
    profile: dict[str, Any] | None,
    runtime: float,
    details: dict[str, Any],
) -> tuple[Path, str]:
    """Write the JSON results and BENCHMARKS.md; return the JSON's path and the Markdown."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "machine": info,
                "runtime_seconds": round(runtime, 1),
                "rows": [asdict(row) for row in rows],
                "profile": profile,
                "details": details,
                "argv": sys.argv,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    generated = markdown(rows, info, profile, runtime)
    block = f"{START}\n{generated}\n{END}"
    if BENCHMARKS.exists() and START in BENCHMARKS.read_text() and END in BENCHMARKS.read_text():
        text = BENCHMARKS.read_text()
        text = re.sub(
            re.escape(START) + r".*?" + re.escape(END), lambda _m: block, text, flags=re.S
        )
    else:
        text = f"# Benchmarks\n\nMeasured by `make bench` (see README).\n\n{block}\n"
    BENCHMARKS.write_text(text)
    return path, generated
