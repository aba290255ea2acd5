"""The wall time of a sharded quick-book build, computed from the measured rates (nothing is trained here).

``python -m emlib.book build --profile quick --shard I/N`` deals the book's runs into N shares by the
cost ``emlib grid --plan`` estimates (``emlib/grid/costs.csv``; a run without a measurement at the mean:
:func:`emlib.book.shards.run_seconds`). This script makes that very split for N = 1..``--max-shards`` and
prices every share with the rates ``bench_quick_build.py`` measured on this machine's CPU (its recorded
``results/quick_build.json``: seconds per training epoch and per test slice of each regime): a run costs
epochs x epoch_s + its test slices x slice_s (:func:`bench_quick_build.run_estimates`), the later frozen
runs of one feature store at the rates of a warm store (:func:`emlib.featurestore.store_group`). The longest
share is the wall time of the matrix of shard jobs, training and evaluation only: the jobs' install and
cache restores come on top, and so does the merge job (the chapters read the runs back but still draw
their figures and compute the latents, which neither benchmark measures for the quick profile).

    EMLIB_DATA=../shared/data python benchmarks/bench_shards.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import RESULTS, print_table, write_csv, write_json
from bench_quick_build import book_runs, run_estimates
from emlib.book.shards import run_seconds, split_shares
from emlib.featurestore import store_group

TARGET_S = 30 * 60  # issue 21: the longest shard under 30 minutes at N = 8


def shard_times(runs: list, rates: dict, shards: int, *, planned: list[float]) -> dict:
    """The split of ``runs`` into ``shards`` shares (by ``planned`` seconds) priced at the measured ``rates``."""
    seconds = run_estimates(runs, rates)  # a store's first frozen run cold, the later ones warm
    groups = [store_group(cfg) for cfg in runs]  # frozen runs of one feature store: one share
    shares = split_shares(planned, shards, groups=groups)
    loads = [sum(seconds[k] for k in share) for share in shares]
    total = sum(seconds)
    return {"shards": shards, "longest_min": max(loads) / 60, "shortest_min": min(loads) / 60,
            "ideal_min": max(total / shards, max(seconds)) / 60,
            "runs_per_shard": "/".join(str(len(s)) for s in shares)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=Path, default=RESULTS / "quick_build.json", help="bench_quick_build.py's record")
    ap.add_argument("--max-shards", type=int, default=16)
    ap.add_argument("--out", type=Path, default=RESULTS / "shards")
    args = ap.parse_args()
    record = json.loads(args.rates.read_text())
    rates = {row["regime"]: row for row in record["rows"]}
    runs = book_runs()
    planned = run_seconds(runs)
    rows = [shard_times(runs, rates, n, planned=planned) for n in range(1, args.max_shards + 1)]
    print(f"quick book: {len(runs)} runs; rates measured {record['date_utc']} on {record['cpu_count']} cores of "
          f"{record['cpu']} ({record['device']}, {record['weights']})")
    print_table(rows, ["shards", "longest_min", "shortest_min", "ideal_min", "runs_per_shard"])
    at8 = next(r for r in rows if r["shards"] == 8) if args.max_shards >= 8 else None
    enough = next((r["shards"] for r in rows if r["longest_min"] * 60 < TARGET_S), None)
    longest_run = max(run_estimates(runs, rates)) / 60
    summary = {"runs": len(runs), "longest_run_min": longest_run, "at_8_shards_longest_min": at8 and at8["longest_min"],
               "target_min": TARGET_S / 60, "fewest_shards_under_target": enough,
               "what": "training and evaluation of each shard's runs at the rates of results/quick_build.json (CPU); "
                       "job setup and the merge job's chapters not included"}
    if at8:
        print(f"N = 8: longest shard {at8['longest_min']:.0f} min (target {TARGET_S / 60:.0f} min); the longest single "
              f"run takes {longest_run:.0f} min; fewest shards under the target: {enough or f'more than {args.max_shards}'}")
    write_csv(args.out.with_suffix(".csv"), rows)
    write_json(args.out.with_suffix(".json"), {"command": "python benchmarks/bench_shards.py", "rates_from": str(args.rates.name),
                                               "rates_measured": record["date_utc"], "cpu": record["cpu"],
                                               "cpu_count": record["cpu_count"], "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
