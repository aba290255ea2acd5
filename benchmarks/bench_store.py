"""Wall time of a whole frozen run (training and evaluation) with the feature store vs without it.

Through the real code path (``emlib.train.fit`` then ``emlib.evaluation.evaluate_both``), each repeat times
three frozen runs of one profile's configuration, pretrained weights read from a local hub
(:func:`emlib.testing.write_local_hub`: random values in the upstream formats, so timings only):

* **none** -- ``cache='none'``: the backbone runs on every training item of every epoch and on every
  test window;
* **cold** -- the store empty (``emlib.cache.clear_feature_stores``): the first frozen run of the
  backbone, which computes every tile and test window once and stores it;
* **warm** -- a second frozen run of the same backbone on the same data (the next seed: with pretrained
  weights the tokens do not depend on it), read from the store the cold run filled.

The printed ratios are median(none) / median(warm) (what a later frozen run of a backbone costs with the
store, against today's) and median(cold) / median(none) (the first run's cost). Repeats alternate the
order of ``none`` and the (cold, warm) pair, so that slow phases of a shared machine hit both. The
images through the backbone are counted for each run. A first untimed run reads the data and hashes it.

Example (about 3 minutes on 2 CPU cores)::

    EMLIB_DATA=/work/shared/data python benchmarks/bench_store.py --profile smoke --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import RESULTS, finish, machine_info, median, print_header, print_table, write_csv, write_json
from emlib.cache import clear_feature_stores
from emlib.config import RunConfig, get_profile, grid_configs
from emlib.evaluation import evaluate_both
from emlib.models.backbones import Backbone
from emlib.testing import write_local_hub
from emlib.train import fit

_IMAGES = [0]  # images through any backbone so far


def _counting(forward):
    def counted(self, x):
        _IMAGES[0] += x.shape[0]
        return forward(self, x)

    return counted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default="smoke", help="the profile whose frozen run is timed")
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--train-set", default="lucchi_pp", choices=("lucchi_pp", "vnc", "paired"))
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the profile's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=None, help="data root (default: $EMLIB_DATA)")
    p.add_argument("--out", default=str(RESULTS / "store"), help="prefix of the .csv (per run) and .json (summary)")
    return p.parse_args(argv)


def timed_run(cfg: RunConfig, root: str | None) -> dict:
    """Seconds of training and of evaluating one run, and the images its backbone computed in each."""
    start = _IMAGES[0]
    t0 = time.perf_counter()
    trained = fit(cfg, root=root, progress=False)
    train_s, trained_images = time.perf_counter() - t0, _IMAGES[0] - start
    t1 = time.perf_counter()
    table, _ = evaluate_both(trained, root=root)
    eval_s = time.perf_counter() - t1
    correct = table[(table.test_labels == "correct") & (table.test_set != "mixed")]
    return {"train_s": round(train_s, 3), "eval_s": round(eval_s, 3), "run_s": round(train_s + eval_s, 3),
            "train_images": trained_images, "eval_images": _IMAGES[0] - start - trained_images,
            "iou_fg": ";".join(f"{t}={v:.4f}" for t, v in zip(correct.test_set, correct.iou_fg)),
            "weights": str(table["weights_label"].iloc[0])}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info(torch.device(args.device))
    overrides = {"pretrained": True, "device": args.device, "epochs": args.epochs}
    base = grid_configs(args.profile, backbone=args.backbone, regimes=["frozen"], train_sets=[args.train_set],
                        seeds=[0], **overrides)[0]
    print_header(f"bench_store: a frozen {args.profile} run, feature store vs none (local hub, random values)", info)
    Backbone.forward = _counting(Backbone.forward)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        hub = write_local_hub(Path(tmp) / "hub", backbones=(args.backbone,))
        with hub.activate():
            timed_run(base.replace(cache="none", epochs=1), args.data_root)  # untimed: reads and hashes the data
            for rep in range(args.repeats):
                pair = [("cold", base.replace(seed=2 * rep)), ("warm", base.replace(seed=2 * rep + 1))]
                order = [("none", base.replace(cache="none", seed=2 * rep)), *pair] if rep % 2 == 0 else \
                    [*pair, ("none", base.replace(cache="none", seed=2 * rep))]
                for phase, cfg in order:
                    if phase == "cold":
                        clear_feature_stores()
                    row = {"repeat": rep + 1, "phase": phase, "seed": cfg.seed, **timed_run(cfg, args.data_root)}
                    rows.append(row)
                    print(f"repeat {rep + 1}/{args.repeats} {phase:5s} train {row['train_s']:.1f}s eval {row['eval_s']:.1f}s "
                          f"backbone images {row['train_images']}+{row['eval_images']}", flush=True)
    weights = rows[0]["weights"]

    def col(phase: str, name: str) -> list[float]:
        return [r[name] for r in rows if r["phase"] == phase]

    table = [{"phase": p, "run_s": median(col(p, "run_s")), "train_s": median(col(p, "train_s")),
              "eval_s": median(col(p, "eval_s")), "n": len(col(p, "run_s")), "min_run_s": min(col(p, "run_s")),
              "max_run_s": max(col(p, "run_s")), "backbone_images": median(col(p, "train_images")) + median(col(p, "eval_images"))}
             for p in ("none", "cold", "warm")]
    summary = {
        "run_s": {r["phase"]: r["run_s"] for r in table},
        "speedup_none_over_warm": median(col("none", "run_s")) / median(col("warm", "run_s")),
        "cold_over_none": median(col("cold", "run_s")) / median(col("none", "run_s")),
        "train_speedup_none_over_warm": median(col("none", "train_s")) / median(col("warm", "train_s")),
        "eval_speedup_none_over_warm": median(col("none", "eval_s")) / median(col("warm", "eval_s")),
        "weights": weights,
    }
    print()
    print(f"{base.run_id[:-9]} ({args.profile} profile, {weights}: timings only), {base.epochs} epochs")
    print_table(table, ["phase", "run_s", "train_s", "eval_s", "n", "min_run_s", "max_run_s", "backbone_images"])
    print(f"speedup none/warm = {summary['speedup_none_over_warm']:.2f}x (a whole frozen run; training "
          f"{summary['train_speedup_none_over_warm']:.2f}x, evaluation {summary['eval_speedup_none_over_warm']:.2f}x)   "
          f"cold/none = {summary['cold_over_none']:.2f}")
    csv_path, json_path = Path(args.out + ".csv"), Path(args.out + ".json")
    write_csv(csv_path, rows)
    write_json(json_path, {"machine": finish(info), "config": {k: v for k, v in vars(args).items() if k != "out"},
                           "run_config": base.to_dict(), "summary": summary})
    print(f"wrote {csv_path} and {json_path}")
    return summary


if __name__ == "__main__":
    main()
