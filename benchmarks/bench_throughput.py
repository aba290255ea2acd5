"""Backbone forward throughput (images/s) under ``torch.inference_mode``.

For each backbone and input size and each batch size: build the backbone with random weights
(``create_backbone(name, pretrained=False)``; timing only), run ``--warmup`` untimed forward
passes, then time forward passes one by one: per round at least ``--min-iters`` and at most
``--iters``, stopping once ``--max-seconds`` have passed. ``--rounds`` sweeps over all cases
repeat this (warm-up only before the first), so that the slow phases of a shared machine are
spread over the cases instead of hitting one. Reported per case: the median over all timed
passes of ``batch / seconds`` (images/s), min and max, seconds per image, process CPU
seconds per image, and on the CPU ``cpu_util`` = CPU seconds / (threads x wall seconds) of each
pass: near 1 when the process had its cores, well below when other jobs took them. The
``clean`` median keeps only passes with ``cpu_util >= --clean-util`` (0.9). On CUDA each pass is
synchronised.

Default cases: DINOv2 ViT-S/14, ViT-B/14 and ViT-L/14 at 224x224, and ViT-S/14 at the
protocol's whole-slice size 1022x756 (W x H; a Lucchi++ slice resized to a 1022-pixel long side,
sides floored to multiples of 14), each at batch 1 and 8. About 3-4 minutes on 2 idle CPU cores (more on a busy machine)::

    python benchmarks/bench_throughput.py
    python benchmarks/bench_throughput.py --device cuda --warmup 5 --iters 50 --min-iters 10   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from _common import RESULTS, finish, machine_info, median, print_header, print_table, write_csv, write_json
from emlib.models.backbones import create_backbone
from emlib.train import resolve_device

DEFAULT_CASES = (
    "dinov2_vits14@224x224",
    "dinov2_vitb14@224x224",
    "dinov2_vitl14@224x224",
    "dinov2_vits14@1022x756",
)


def parse_case(text: str) -> tuple[str, int, int]:
    """``name@WxH`` -> (name, height, width)."""
    try:
        name, size = text.split("@")
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"case {text!r} must look like dinov2_vits14@224x224 (name@WIDTHxHEIGHT)") from None
    return name, height, width


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cases", nargs="+", type=parse_case, default=None, metavar="NAME@WxH",
                   help=f"backbone@WIDTHxHEIGHT; None means {' '.join(DEFAULT_CASES)}")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--rounds", type=int, default=3, help="passes over all cases (spreads a shared machine's slow phases)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per case and batch size, before its first round")
    p.add_argument("--iters", type=int, default=10, help="at most this many timed passes per round")
    p.add_argument("--min-iters", type=int, default=1, help="at least this many timed passes per round")
    p.add_argument("--max-seconds", type=float, default=5.0, help="per round: stop timing after this once --min-iters are done")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", action="store_true", help="CUDA only: autocast to float16 (as training does)")
    p.add_argument("--clean-util", type=float, default=0.9,
                   help="CPU only: a pass is 'clean' when process CPU seconds >= this x threads x wall seconds")
    p.add_argument("--out", default=str(RESULTS / "throughput"), help="prefix of the .csv and .json")
    args = p.parse_args(argv)
    if args.cases is None:
        args.cases = [parse_case(c) for c in DEFAULT_CASES]
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_passes(backbone: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace, device: torch.device, warmup: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of timed forward passes (after ``warmup`` untimed ones)."""
    amp = torch.autocast("cuda", dtype=torch.float16, enabled=args.amp and device.type == "cuda")
    walls: list[float] = []
    cpus: list[float] = []
    with torch.inference_mode(), amp:
        for _ in range(warmup):
            backbone(x)
        _sync(device)
        start = time.perf_counter()
        while len(walls) < args.iters and (len(walls) < args.min_iters or time.perf_counter() - start < args.max_seconds):
            c0, t0 = time.process_time(), time.perf_counter()
            backbone(x)
            _sync(device)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return walls, cpus


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info(device)
    print_header("bench_throughput: backbone forward, inference_mode", info)
    print(f"# {args.rounds} round(s) over all cases; warm-up {args.warmup} pass(es) per case and batch (first round only); "
          f"per round {args.min_iters}..{args.iters} timed passes (stop after {args.max_seconds:g}s); "
          f"median over all timed passes" + (", autocast fp16" if args.amp and device.type == "cuda" else ", float32"), flush=True)

    backbones: dict[str, torch.nn.Module] = {}
    passes: dict[tuple, dict[str, list]] = {}
    for rnd in range(args.rounds):
        for name, height, width in args.cases:
            if name not in backbones:
                torch.manual_seed(0)
                backbones[name] = create_backbone(name, pretrained=False).eval().to(device)
            for batch in args.batch_sizes:
                key = (name, height, width, batch)
                x = torch.randn(batch, 3, height, width, device=device)
                walls, cpus = time_passes(backbones[name], x, args, device, args.warmup if rnd == 0 else 0)
                rec = passes.setdefault(key, {"wall": [], "cpu": [], "round": [], "loadavg": []})
                rec["wall"] += walls
                rec["cpu"] += cpus
                rec["round"] += [rnd + 1] * len(walls)
                rec["loadavg"].append(_load1())
                print(f"round {rnd + 1}/{args.rounds} {name} {width}x{height} batch {batch}: "
                      + " ".join(f"{batch / w:.3g}" for w in walls) + f" img/s  (load1 {rec['loadavg'][-1]})", flush=True)

    threads = torch.get_num_threads()
    rows = []
    for (name, height, width, batch), rec in passes.items():
        ips = [batch / w for w in rec["wall"]]
        # share of the threads' time this process got; < 1 means other processes took the cores
        util = [c / (w * threads) for w, c in zip(rec["wall"], rec["cpu"])]
        clean = [x for x, u in zip(ips, util) if device.type == "cpu" and u >= args.clean_util]
        patch = backbones[name].patch_size
        rows.append({
            "backbone": name, "weights": backbones[name].weights_label, "size_WxH": f"{width}x{height}",
            "tokens": (height // patch) * (width // patch), "batch": batch,
            "images_per_s": round(median(ips), 4), "n_passes": len(ips),
            "clean_images_per_s": round(median(clean), 4), "n_clean": len(clean), "rounds": args.rounds,
            "min_images_per_s": round(min(ips), 4), "max_images_per_s": round(max(ips), 4),
            "s_per_image": round(median(rec["wall"]) / batch, 4), "cpu_s_per_image": round(median(rec["cpu"]) / batch, 4),
            "cpu_util": round(median(util), 3), "device": str(device), "threads": threads,
        })

    print()
    print_table(rows, ["backbone", "weights", "size_WxH", "batch", "images_per_s", "n_passes", "clean_images_per_s",
                       "n_clean", "min_images_per_s", "max_images_per_s", "cpu_util"])
    if device.type == "cpu":
        print(f"clean = median over passes with cpu_util >= {args.clean_util:g} (process CPU s / (threads x wall s)); "
              "cpu_util well below 1 means other processes shared the cores")
    csv_path, json_path = Path(args.out + ".csv"), Path(args.out + ".json")
    write_csv(csv_path, rows)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "cases")}
    config["cases"] = [f"{n}@{w}x{h}" for n, h, w in args.cases]
    raw = [
        {"backbone": k[0], "size_WxH": f"{k[2]}x{k[1]}", "batch": k[3], "round": r, "wall_s": round(w, 5), "cpu_s": round(c, 5),
         "cpu_util": round(c / (w * threads), 3)}
        for k, rec in passes.items() for r, w, c in zip(rec["round"], rec["wall"], rec["cpu"])
    ]
    write_json(json_path, {"machine": finish(info), "config": config, "results": rows, "passes": raw})
    print(f"wrote {csv_path} and {json_path}")
    return rows


def _load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


if __name__ == "__main__":
    main()
