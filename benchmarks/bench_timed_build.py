"""The quick book built for real and timed end to end on this machine: N shards one after another, then the merge.

``bench_quick_build.py`` estimates the quick book from measured rates; this script builds it, through the
very commands the workflow runs (``python -m emlib.book build --profile quick --shard I/N``, then
``--merge``), with ``pretrained=True`` read from a local hub (:func:`emlib.testing.write_local_hub`:
random values in the upstream file formats, hubs offline; timings only, the numbers mean nothing).
Every command is timed in its own process (wall seconds and the CPU seconds of the process and its
children). The shards train and test every run of the book; the merge copies their runs in and builds
the pages, so its seconds per chapter are what the chapters cost besides training (figures, latents,
tables). Written to ``results/timed_build.{json,csv}`` (one row per run: shard, regime, train and test
seconds; the summary: seconds per shard, per chapter, per run kind, and the estimate to compare with)::

    EMLIB_DATA=../shared/data python benchmarks/bench_timed_build.py --shards 3 --work /tmp/timed

A shard whose manifest is already in ``--work`` is not built again (its recorded seconds are kept), so a
build cut short goes on where it stopped: run the same command again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

from _common import RESULTS, cpu_model, write_csv, write_json
from bench_quick_build import book_runs, run_estimates
from emlib.book.shards import SHARD_MANIFEST
from emlib.config import get_profile
from emlib.testing import write_local_hub

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd`` in the repository with ``env``; its wall seconds and CPU seconds (user + system, children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {rc}); its output is in {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "loadavg_end": list(os.getloadavg()),
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def _eval_seconds(table: pd.DataFrame) -> float:
    """Seconds the run took to test: its two test sets once (the rows repeat them per label set, and
    ``mixed`` is their sum)."""
    first = table[table["test_labels"] == table["test_labels"].iloc[0]] if "test_labels" in table else table
    return float(first[first["test_set"].isin(["lucchi_pp", "vnc"])]["eval_seconds"].sum())


def run_rows(shard_dir: Path, shard: int, profile: str) -> list[dict]:
    """One row per run a shard trained: its regime, training seconds and test seconds (both test sets)."""
    rows = []
    for results in sorted((shard_dir / "runs" / profile).glob("*/results.csv")):
        table = pd.read_csv(results)
        metrics = json.loads((results.parent / "metrics.json").read_text())
        cfg = metrics["config"]
        rows.append({"shard": shard, "run": results.parent.name, "regime": cfg["regime"],
                     "train_s": float(table["train_seconds"].iloc[0]), "eval_s": _eval_seconds(table),
                     "epochs": int(cfg["epochs"])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--profile", default="quick", help="quick, or quick-dry to check this script in minutes")
    ap.add_argument("--work", type=Path, required=True, help="where the hub, the shards and the merged book go (kept)")
    ap.add_argument("--rates", type=Path, default=RESULTS / "quick_build.json", help="bench_quick_build.py's record")
    ap.add_argument("--out", type=Path, default=RESULTS / "timed_build")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    prof = get_profile(args.profile)
    hub = write_local_hub(work / "hub", backbones=tuple(dict.fromkeys(prof.backbones + prof.family_backbones)))
    env = {**hub.env, "OMP_NUM_THREADS": str(os.cpu_count() or 2)}
    record_path = work / "timed.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"shards": {}}
    start = {"loadavg_start": list(os.getloadavg()), "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    record.setdefault("machine", start)
    cmd = [sys.executable, "-m", "emlib.book", "build", "--profile", args.profile]
    for i in range(1, args.shards + 1):
        out = work / f"shard-{i}"
        manifest = out / "runs" / SHARD_MANIFEST.format(shard=i, shards=args.shards)
        if manifest.is_file() and str(i) in record["shards"]:
            print(f"shard {i}/{args.shards}: done before ({record['shards'][str(i)]['wall_s']:.0f} s), kept", flush=True)
            continue
        print(f"shard {i}/{args.shards} ...", flush=True)
        record["shards"][str(i)] = timed([*cmd, "--shard", f"{i}/{args.shards}", "--out", str(out)], env, work / f"shard-{i}.log")
        record_path.write_text(json.dumps(record, indent=1))
        print(f"shard {i}/{args.shards}: {record['shards'][str(i)]['wall_s']:.0f} s", flush=True)
    if "merge" not in record:
        print("merge ...", flush=True)
        record["merge"] = timed([*cmd, "--merge", *[str(work / f"shard-{i}" / "runs") for i in range(1, args.shards + 1)],
                                 "--out", str(work / "book")], env, work / "merge.log")
        record_path.write_text(json.dumps(record, indent=1))
    chapters = json.loads((work / "book" / "book" / "chapters" / "timings.json").read_text())["latest"]["chapters"]
    rows = [row for i in range(1, args.shards + 1) for row in run_rows(work / f"shard-{i}", i, prof.name)]
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: {"runs": 0, "train_s": 0.0, "eval_s": 0.0})
    for row in rows:
        kind = by_kind[row["regime"]]
        kind["runs"] += 1
        kind["train_s"] += row["train_s"]
        kind["eval_s"] += row["eval_s"]
    shards_wall = sum(s["wall_s"] for s in record["shards"].values())
    total_wall = shards_wall + record["merge"]["wall_s"]
    rates = {r["regime"]: r for r in json.loads(args.rates.read_text())["rows"]}
    runs = book_runs() if prof.name == "quick" else []  # the estimate is the quick book's
    estimate = sum(run_estimates(runs, rates))
    summary = {
        "total_wall_s": total_wall, "total_wall_h": total_wall / 3600,
        "total_cpu_s": sum(s["cpu_s"] for s in record["shards"].values()) + record["merge"]["cpu_s"],
        "shards_wall_s": {k: v["wall_s"] for k, v in record["shards"].items()}, "merge_wall_s": record["merge"]["wall_s"],
        "runs": len(rows), "by_kind": dict(by_kind),
        "chapters_s": {name: entry["seconds"] for name, entry in chapters.items()},
        "estimate_runs_s": estimate, "measured_runs_s": sum(r["train_s"] + r["eval_s"] for r in rows),
        "what": "wall seconds of the shards (training and testing every run) and of the merge build (the chapters "
                "reading the runs back: figures, latents, tables) run one after another on this machine, local hub, "
                "random weights (timings only)",
    }
    summary["estimate_error"] = estimate / summary["measured_runs_s"] - 1 if rows and runs else None
    print(f"timed quick build: {total_wall / 3600:.2f} h wall ({len(rows)} runs in {args.shards} shards "
          f"{shards_wall:.0f} s + merge {record['merge']['wall_s']:.0f} s); runs estimated {estimate:.0f} s, "
          f"measured {summary['measured_runs_s']:.0f} s")
    write_csv(args.out.with_suffix(".csv"), rows)
    write_json(args.out.with_suffix(".json"), {"command": f"python benchmarks/bench_timed_build.py --shards {args.shards}"
                                               f" --profile {prof.name}", "profile": prof.name,
                                               **record["machine"], "shards": record["shards"], "merge": record["merge"],
                                               "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
