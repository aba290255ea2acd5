"""IoU_fg of the smoke profile's frozen runs: one code tree's scheme against another's, same seeds.

Run it once per code tree (``PYTHONPATH`` chooses which emlib is imported) and compare the CSVs; the
feature store's comparison (benchmarks/README.md, "Feature store") ran it on the commit before the
store and on the store's branch::

    EMLIB_DATA=/work/shared/data PYTHONPATH=<tree> python benchmarks/compare_store_iou.py --label store --out results/store_iou_store.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import emlib
from emlib.config import grid_configs
from emlib.evaluation import evaluate_both, scored_rows
from emlib.train import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="what this code tree is (a column of the CSV)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--train-sets", nargs="+", default=["lucchi_pp", "vnc", "paired"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for cfg in grid_configs("smoke", regimes=["frozen"], train_sets=args.train_sets, seeds=args.seeds):
        t0 = time.perf_counter()
        trained = fit(cfg, progress=False)
        table = scored_rows(evaluate_both(trained)[0])
        seconds = time.perf_counter() - t0
        for row in table.itertuples():
            rows.append({"label": args.label, "emlib": str(Path(emlib.__file__).parent), "train_set": cfg.train_set,
                         "seed": cfg.seed, "test_set": row.test_set, "iou_fg": row.iou_fg, "run_s": round(seconds, 2),
                         "weights": row.weights_label})
        print(cfg.run_id, [round(r.iou_fg, 4) for r in table.itertuples()], f"{seconds:.1f}s", flush=True)
    import pandas as pd

    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
