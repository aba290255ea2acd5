"""Shared helpers of the benchmark scripts: machine description, medians, result files.

Not part of the ``emlib`` package; imported by the scripts next to it (their folder is on
``sys.path`` when they are run as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS_NOTE = "random weights (no pretrained checkpoint): timings only, no accuracy meaning"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on (stored with every result file)."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
        "weights": WEIGHTS_NOTE,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """Add the load average at the end (a noisy, shared machine shows up here)."""
    info["loadavg_end"] = _loadavg()
    return info


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def print_header(title: str, info: dict[str, Any]) -> None:
    print(f"# {title}")
    print(f"# {info['weights']}")
    print(
        f"# {info['date_utc']} UTC | {info['device']} | {info['cpu']} | cpu_count={info['cpu_count']} | "
        f"torch {info['torch']} threads={info['torch_threads']} interop={info['torch_interop_threads']}"
        + (f" | {info['gpu']}" if "gpu" in info else "")
        + f" | loadavg={info['loadavg_start']}"
    )
    print(f"# command: {info['command']}")
    load = info.get("loadavg_start")
    if load and load[0] >= 1.0:
        print(
            f"# WARNING: 1-minute load average {load[0]} on {info['cpu_count']} cores before this run started: "
            "other processes compete for the CPU, so times are inflated and noisy"
        )
