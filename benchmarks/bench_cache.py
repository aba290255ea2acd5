"""Head-epoch time of a frozen run with the feature cache vs without it.

Trains the same frozen configuration (backbone frozen, only the segmentation head learns) twice per
repeat through :func:`emlib.train.fit`, once with ``cache='memory'`` and once with ``cache='none'``,
and reads the per-epoch seconds from the returned ``history``:

* cached run, epoch 1 -- **cold**: the backbone runs on every tile and the features are stored;
* cached run, epochs 2..k -- **warm**: every item is a cache hit, only the head runs;
* uncached run, epochs 2..k -- **none**: backbone + head every epoch (the same epochs as warm).

The printed ratio is median(none) / median(warm), i.e. how many times faster an epoch after the
first becomes with the cache. Repeats alternate the order of the two runs so that slow phases
of a shared machine hit both. Backbones have random weights (timing only).

Example (about 1-2 minutes on 2 CPU cores)::

    EMLIB_DATA=/work/shared/data python benchmarks/bench_cache.py --slices 2 --epochs 5 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import RESULTS, finish, machine_info, median, print_header, print_table, write_csv, write_json
from emlib.config import RunConfig
from emlib.train import fit, resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbone", default="dinov2_vits14")
    p.add_argument("--train-set", default="lucchi_pp", choices=("lucchi_pp", "vnc", "paired"))
    p.add_argument("--slices", type=int, default=2, help="training slices (Lucchi++: 20 tiles of 224 px per slice)")
    p.add_argument("--crop", type=int, default=224, help="tile size in pixels (multiple of the patch size)")
    p.add_argument("--head-channels", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=5, help="k: epochs per run (warm epochs are 2..k)")
    p.add_argument("--repeats", type=int, default=3, help="pairs of runs (cache, no cache), order alternating")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--data-root", default=None, help="data root (default: $EMLIB_DATA)")
    p.add_argument("--out", default=str(RESULTS / "cache"), help="prefix of the .csv (per epoch) and .json (summary)")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (epoch 1 is cold)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info(device)
    base = RunConfig(
        backbone=args.backbone, pretrained=False, regime="frozen", train_set=args.train_set, crop=args.crop,
        train_slices=args.slices, augment=False, epochs=args.epochs, batch_size=args.batch_size,
        head_channels=args.head_channels, lr=1e-3, device=args.device, cache="memory",
    )
    print_header("bench_cache: frozen head epochs, feature cache vs none", info)

    rows = []
    n_items = None
    for rep in range(args.repeats):
        order = ("memory", "none") if rep % 2 == 0 else ("none", "memory")
        for mode in order:
            cfg = base.replace(cache=mode)
            cpu_marks: list[float] = []  # process CPU time at the end of each epoch
            t0 = time.perf_counter()
            trained = fit(cfg, root=args.data_root, progress=False, on_epoch_end=lambda _epoch, _loss: cpu_marks.append(time.process_time()))
            wall = time.perf_counter() - t0
            hist = trained.history
            stats = trained.cache_stats or {}
            n_items = n_items or _n_items(trained, args)
            print(
                f"repeat {rep + 1}/{args.repeats} cache={mode:6s} epochs(s)="
                + " ".join(f"{s:.2f}" for s in hist["seconds"])
                + f"  fit wall {wall:.1f}s" + (f"  hits={stats['hits']} misses={stats['misses']}" if stats else ""),
                flush=True,
            )
            for idx, (_, h) in enumerate(hist.iterrows()):
                epoch = int(h["epoch"]) + 1
                # CPU seconds of this process in the epoch (all threads); epoch 1 has no start mark
                cpu = round(cpu_marks[idx] - cpu_marks[idx - 1], 4) if idx > 0 else None
                phase = ("cold" if epoch == 1 else "warm") if mode == "memory" else ("none-first" if epoch == 1 else "none")
                util = None if cpu is None else round(cpu / (float(h["seconds"]) * args.threads), 3)
                rows.append({
                    "repeat": rep + 1, "cache": mode, "epoch": epoch, "phase": phase,
                    "seconds": round(float(h["seconds"]), 4), "cpu_seconds": cpu, "cpu_util": util,
                    "loss": round(float(h["loss"]), 6),
                })

    def secs(phase: str) -> list[float]:
        return [r["seconds"] for r in rows if r["phase"] == phase]

    def cpu(phase: str) -> list[float]:
        return [r["cpu_seconds"] for r in rows if r["phase"] == phase and r["cpu_seconds"] is not None]

    def util(phase: str) -> list[float]:
        return [r["cpu_util"] for r in rows if r["phase"] == phase and r["cpu_util"] is not None]

    cold, warm, none, none_first = secs("cold"), secs("warm"), secs("none"), secs("none-first")
    summary = {
        "items_per_epoch": n_items,
        "cold_epoch1_s": median(cold), "n_cold": len(cold),
        "warm_epochs2k_s": median(warm), "n_warm": len(warm),
        "none_epochs2k_s": median(none), "n_none": len(none),
        "none_epoch1_s": median(none_first),
        "speedup_none_over_warm": median(none) / median(warm),
        "cold_over_none": median(cold) / median(none),
        "warm_epochs2k_cpu_s": median(cpu("warm")),
        "none_epochs2k_cpu_s": median(cpu("none")),
        "cpu_speedup_none_over_warm": median(cpu("none")) / median(cpu("warm")),
        "warm_cpu_util": median(util("warm")), "none_cpu_util": median(util("none")),
    }
    labels = {
        "cold": "cold (cache, epoch 1)",
        "warm": f"warm (cache, epochs 2..{args.epochs})",
        "none": f"none (no cache, epochs 2..{args.epochs})",
    }
    table = [
        {
            "phase": label, "median_s": median(secs(phase)), "n": len(secs(phase)), "min_s": min(secs(phase)),
            "max_s": max(secs(phase)), "median_cpu_s": median(cpu(phase)) if cpu(phase) else "n/a",
            "median_cpu_util": median(util(phase)) if util(phase) else "n/a",
        }
        for phase, label in labels.items()
    ]
    print()
    print(f"{args.backbone} ({info['weights'].split(' (')[0]}), {args.train_set} {args.slices} slice(s) -> "
          f"{n_items} tiles of {args.crop}px, batch {args.batch_size}, head_channels {args.head_channels}")
    print_table(table, ["phase", "median_s", "n", "min_s", "max_s", "median_cpu_s", "median_cpu_util"])
    print(f"speedup none/warm = {summary['speedup_none_over_warm']:.2f}x (wall-clock medians)   cold/none = {summary['cold_over_none']:.2f}")
    print(f"cross-check on process CPU seconds, epochs 2..{args.epochs}: warm {summary['warm_epochs2k_cpu_s']:.3g}s, "
          f"none {summary['none_epochs2k_cpu_s']:.3g}s -> {summary['cpu_speedup_none_over_warm']:.2f}x")
    if args.device == "cpu":
        print("cpu_util = process CPU s / (threads x wall s): near 1 when the run had its cores to itself")

    config = {k: v for k, v in vars(args).items() if k != "out"}
    csv_path, json_path = Path(args.out + ".csv"), Path(args.out + ".json")
    write_csv(csv_path, rows)
    write_json(json_path, {"machine": finish(info), "config": config, "run_config": base.to_dict(), "summary": summary})
    print(f"wrote {csv_path} and {json_path}")
    return summary


def _n_items(trained, args) -> int:
    from emlib.train import build_train_dataset

    return len(build_train_dataset(trained.config, patch_size=trained.patch_size, mean=trained.mean, std=trained.std, root=args.data_root))


if __name__ == "__main__":
    main()
