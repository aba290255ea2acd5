"""Cost table of the paper grid: images/s and peak memory per backbone x regime x batch size at whole slices.

Two regimes are measured, each case in its own process (so that peak memory is that case's only):

``frozen``  feature extraction: the backbone's forward pass under ``torch.inference_mode``
            (what a frozen run computes per image; its head epochs on cached features are cheaper).
``lora``    one LoRA training step: forward through backbone (with LoRA, r=16) and the deconv head
            (512 channels, the paper's), cross-entropy, backward, Adam step.

Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU and the process's peak RSS on the CPU.
Backbones have random weights (timing only). The rows go to ``emlib/grid/costs.csv`` (what
``emlib grid --plan`` reads) unless ``--out`` says otherwise; ``--append`` keeps the rows already
there for other devices. For example::

    python benchmarks/bench_costs.py --device cpu --backbones dinov2_vitl14 --batch-sizes 1 --reps 1
    python benchmarks/bench_costs.py --device cuda --batch-sizes 1 2 4 --reps 10 --append   # on a GPU
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import cpu_model
from emlib.config import LoraSettings
from emlib.models.backbones import create_backbone
from emlib.models.heads import SegmentationModel, create_head
from emlib.models.lora import apply_lora

COSTS = Path(__file__).resolve().parents[1] / "emlib" / "grid" / "costs.csv"
COLUMNS = ["backbone", "regime", "batch_size", "input_size", "device", "images_per_s", "peak_memory_mb",
           "measured_on", "date"]
PAPER_BACKBONES = ("dinov2_vitl14", "dinov3_vitl16", "openclip_vitl14")


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(backbone: str, regime: str, batch: int, width: int, height: int, device: str, warmup: int, reps: int) -> dict:
    """One case in this process: images/s (median over ``reps`` timed steps) and peak memory."""
    dev = torch.device(device)
    torch.manual_seed(0)
    bb = create_backbone(backbone, pretrained=False)
    p = bb.patch_size
    h, w = height // p * p, width // p * p  # sides floored to patch multiples, as the transforms do
    x = torch.randn(batch, 3, h, w, device=dev)
    if regime == "frozen":
        model = bb.to(dev).eval().requires_grad_(False)

        def step() -> None:
            with torch.inference_mode():
                model(x)
    else:
        apply_lora(bb, LoraSettings())
        model = SegmentationModel(bb, create_head("deconv", bb.embed_dim, base_ch=512)).to(dev).train()
        opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=5e-5)
        y = torch.randint(0, 2, (batch, h, w), device=dev)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"images_per_s": round(batch / median, 4), "peak_memory_mb": round(_peak_mb(dev), 1), "input_size": f"{w}x{h}"}


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", nargs="+", default=list(PAPER_BACKBONES))
    ap.add_argument("--regimes", nargs="+", choices=("frozen", "lora"), default=["frozen", "lora"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--size", default="1022x756", help="WIDTHxHEIGHT (a Lucchi++ slice at the paper's 1022-px long side)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=COSTS)
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out (other devices)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one case, print JSON
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.one:
        backbone, regime, batch = args.one.split(",")
        print(json.dumps(measure(backbone, regime, int(batch), width, height, args.device, args.warmup, args.reps)))
        return 0
    rows = []
    if args.append and args.out.is_file():
        with args.out.open() as fh:
            rows = list(csv.DictReader(fh))
    date = dt.date.today().isoformat()
    for backbone in args.backbones:
        for regime in args.regimes:
            for batch in args.batch_sizes:
                cmd = [sys.executable, __file__, "--one", f"{backbone},{regime},{batch}", "--size", args.size,
                       "--device", args.device, "--warmup", str(args.warmup), "--reps", str(args.reps)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:  # e.g. out of memory: the case is left out, the others go on
                    print(f"{backbone} {regime} batch {batch}: failed ({done.stderr.strip().splitlines()[-1:]})")
                    continue
                row = {"backbone": backbone, "regime": regime, "batch_size": batch, "device": args.device.split(":")[0],
                       **json.loads(done.stdout.strip().splitlines()[-1]), "measured_on": machine(args.device), "date": date}
                row = {c: row[c] for c in COLUMNS}
                print(",".join(str(row[c]) for c in COLUMNS), flush=True)
                rows = [r for r in rows if (r["backbone"], r["regime"], str(r["batch_size"]), r["device"], r["input_size"])
                        != (backbone, regime, str(batch), row["device"], row["input_size"])] + [row]
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("w", newline="") as fh:  # after every case: a stopped run keeps what it measured
                    writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                    writer.writeheader()
                    writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
