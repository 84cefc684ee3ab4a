"""Sample the gateway process with py-spy while a load runs, and summarise where the time goes.

py-spy attaches from outside (no change to the gateway, every thread seen: the request handlers
run in uvicorn's thread pool), samples the stacks at `rate` Hz without pausing the process, and
writes collapsed stacks. The summary is the share of samples in which a function is on the stack
(inclusive) and at the top (self), over the samples of the threads that served requests.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"

#: Frames from these files are the request path's own; anything else is a library.
OWN_CODE = ("crm_gateway/",)
#: Samples of the gateway's background threads (transaction pipeline, chain indexer) are left
#: out: the summary is about serving requests.
BACKGROUND_MARKERS = ("pipeline/worker.py", "indexer/worker.py")
#: Where a library frame belongs, for the breakdown by layer.
LAYERS = (
    ("crm_gateway/", "crm_gateway (own code)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("sqlite3/", "sqlite3"),
    ("fastapi/", "FastAPI"),
    ("starlette/", "Starlette"),
    ("anyio/", "anyio (thread pool)"),
    ("pydantic", "pydantic"),
    ("uvicorn/", "uvicorn"),
    ("httptools", "uvicorn"),
    ("uvloop", "uvloop"),
    ("asyncio/", "asyncio"),
    ("threading.py", "threading"),
    ("queue.py", "threading"),
)


@dataclass(frozen=True)
class Entry:
    name: str
    inclusive: float  # share of request samples with it on the stack
    self_share: float  # share of request samples with it at the top


@dataclass(frozen=True)
class Profile:
    samples: int  # every sample of the process's busy threads
    request_samples: int  # those of the threads serving requests
    own: list[Entry]  # the gateway's own functions, by inclusive share
    top_self: list[Entry]  # every function, by self share
    layers: list[Entry]  # self time by layer (own code, SQLAlchemy, FastAPI, ...)
    raw_file: str

    def as_json(self) -> dict[str, object]:
        def rows(entries: list[Entry]) -> list[dict[str, object]]:
            return [
                {
                    "name": e.name,
                    "inclusive": round(e.inclusive, 4),
                    "self": round(e.self_share, 4),
                }
                for e in entries
            ]

        return {
            "samples": self.samples,
            "request_samples": self.request_samples,
            "own": rows(self.own),
            "top_self": rows(self.top_self),
            "layers": rows(self.layers),
            "raw_file": self.raw_file,
        }


def available() -> bool:
    return PY_SPY.exists()


def start(
    pid: int, seconds: float, out: Path, *, rate: int = 250, gil: bool = True
) -> subprocess.Popen[bytes]:
    """Begin sampling `pid` for `seconds` (the caller runs the load meanwhile, then `finish`).

    With `gil`, only the thread holding the GIL is sampled: where the CPU time of the (single)
    Python interpreter goes, rather than where the threads waiting for it stand.
    """
    return subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            *(["--gil"] if gil else []),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes], out: Path, top: int = 12) -> Profile:
    _stdout, stderr = process.communicate(timeout=120)
    if process.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace')[-1000:]}")
    return summarise(out, top=top)


def _frame_name(frame: str) -> str:
    """`function (path/file.py:line)` -> `function (file.py)` with the package path shortened."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "crm_gateway/", "lib/python3"):
        if marker in path:
            path = path[path.index(marker) :]
            break
    return f"{name} ({path})"


def _layer(frame: str) -> str:
    path = frame.partition(" (")[2]
    for marker, layer in LAYERS:
        if marker in path:
            return layer
    return "other"


def summarise(raw: Path, *, top: int = 12, background: bool = False) -> Profile:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    layers_inclusive: Counter[str] = Counter()
    total = requests = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f]
        if not frames or (
            not background and any(m in f for f in frames for m in BACKGROUND_MARKERS)
        ):
            continue
        requests += count
        names = [_frame_name(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
        layers[_layer(frames[-1])] += count
        for layer in {_layer(f) for f in frames}:
            layers_inclusive[layer] += count
    if requests == 0:
        return Profile(total, 0, [], [], [], str(raw))

    def entries(counter: Counter[str], incl: Counter[str], n: int) -> list[Entry]:
        return [
            Entry(name, incl[name] / requests, own_count / requests)
            for name, own_count in counter.most_common(n)
        ]

    # The serving command's frames (the event loop's thread) are on every stack: left out.
    mine = Counter(
        {
            k: v
            for k, v in inclusive.items()
            if any(m in k for m in OWN_CODE) and "crm_gateway/cli/" not in k
        }
    )
    by_inclusive = [
        Entry(name, count / requests, own[name] / requests) for name, count in mine.most_common(top)
    ]
    return Profile(
        samples=total,
        request_samples=requests,
        own=by_inclusive,
        top_self=entries(own, inclusive, top),
        layers=entries(layers, layers_inclusive, len(layers)),
        raw_file=str(raw),
    )
