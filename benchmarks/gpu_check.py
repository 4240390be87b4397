"""GPU check: ``benchmarks/gpu_check.sh [--small] [--out FILE] [--device DEV]``.

On one GPU, in a few minutes (the script's limit is 8), for ``timm:vit_base_patch16_224``
(random weights) on synthetic 224-px images:

- clean evaluation, img/s: :mod:`probe.robustness`'s clean unit (the model wrapper with its
  normalisation inside, chunks of 50, ``--amp bf16`` autocast) vs timm's own eval loop
  (``validate.py``: batches of 256 normalised on the device, bf16 autocast,
  ``timm.utils.accuracy``) on the same images, timed paired and interleaved;
- corruption throughput: each of the 15 ImageNet-C corruptions (severity 3) on the device vs
  one bf16 forward pass of the model on the same images;
- PGD-10 (ours, fp32 as attacks run by default) vs 10 bare forward+backward passes;
- one end-to-end ``probe.robustness.run`` on the device (clean, PGD, three corruptions, a
  5 x 5 heat map) with ``--amp bf16`` vs the same run in fp32.

Prints the rows and writes the ``GPU`` section of BENCHMARKS.md (other sections kept).
``--small`` (or ``PROBE_GPU_CHECK_SMALL=1``) runs on the CPU with ``timm:test_vit`` (160 px)
and a few images: a check that the script works (CI runs it), not a measurement of a GPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F

from benchmarks import Row, machine, median_time, paired_ratio

FULL = dict(model="timm:vit_base_patch16_224", images=2048, batch=256, corrupt=256,
            pgd_batch=64, rounds=5, run_images=64)
SMALL = dict(model="timm:test_vit", images=8, batch=4, corrupt=4, pgd_batch=2, rounds=1,
             run_images=4)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _clean_rows(model, x, y, size: dict, device: str) -> List[Row]:
    from timm.utils import accuracy
    from probe import robustness
    from probe.units import Dist
    cfg = robustness.RunConfig(model=model.name, n=len(x), amp="bf16")
    dist = Dist(device)
    kind = torch.device(device).type

    def ours():
        with robustness._autocast(cfg, "clean", device):
            robustness._run_unit("clean", {}, "clean", model, x, y, cfg, dist)
        _sync(device)

    def timm_loop():
        with torch.no_grad():
            for i in range(0, len(x), size["batch"]):
                xb = (x[i:i + size["batch"]] - model.mean) / model.std
                with torch.autocast(kind, dtype=torch.bfloat16):
                    out = model.net(xb)
                acc1, acc5 = accuracy(out, y[i:i + size["batch"]], topk=(1, 5))
                acc1.item(), acc5.item()
        _sync(device)

    t_timm, t_ours, ratio = paired_ratio(ours, timm_loop, rounds=size["rounds"])
    return [Row(f"clean evaluation, {model.name} at {x.shape[-1]} px, bf16 autocast, "
                f"{len(x)} images: probe.robustness clean unit", "timm's eval loop (validate.py), "
                f"batch {size['batch']}, same images", ratio,
                f"{len(x) / t_ours:,.0f} img/s vs {len(x) / t_timm:,.0f} img/s", size["rounds"])]


def _corruption_rows(model, x, size: dict, device: str) -> List[Row]:
    from probe import corruptions
    xc = x[:size["corrupt"]]
    kind = torch.device(device).type

    def forward():
        with torch.no_grad(), torch.autocast(kind, dtype=torch.bfloat16):
            model(xc)
        _sync(device)

    rows, total = [], 0.0
    for name in corruptions.COMMON:
        gen = torch.Generator(device=x.device).manual_seed(0)

        def corrupt(name=name, gen=gen):
            corruptions.corrupt(xc, name, 3, generator=gen)
            _sync(device)

        t_forward, t_corrupt, ratio = paired_ratio(corrupt, forward, rounds=size["rounds"])
        total += t_corrupt
        rows.append(Row(f"corrupt {name}, severity 3, {len(xc)} images at {x.shape[-1]} px on "
                        f"{device}", "one bf16 forward of the model on the same images", ratio,
                        f"{len(xc) / t_corrupt:,.0f} img/s", size["rounds"]))
    t_forward = median_time(forward, repeats=size["rounds"])
    rows.insert(0, Row(f"all 15 ImageNet-C corruptions, severity 3, {len(xc)} images at "
                       f"{x.shape[-1]} px on {device}", "15 bf16 forwards of the model on the "
                       "same images", total / (15 * t_forward),
                       f"{15 * len(xc) / total:,.0f} corrupted img/s", size["rounds"]))
    return rows


def _pgd_rows(model, x, y, size: dict, device: str) -> List[Row]:
    from probe import attacks
    xb, yb = x[:size["pgd_batch"]], y[:size["pgd_batch"]]

    def ours():
        attacks.pgd_linf(model, xb, yb, 4 / 255, steps=10)
        _sync(device)

    def bare():
        for _ in range(10):
            xi = xb.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xi), yb, reduction="sum")
            torch.autograd.grad(loss, xi)
        _sync(device)

    _, t_ours, ratio = paired_ratio(ours, bare, rounds=size["rounds"])
    return [Row(f"our PGD-10 (fp32), {model.name}, batch {len(xb)} on {device}",
                "10 bare forward+backward", ratio, f"{t_ours * 1e3:,.0f} ms", size["rounds"])]


def _run_rows(size: dict, device: str) -> List[Row]:
    from probe import robustness
    cfg = dict(model=size["model"], weights="random", data="synthetic", n=size["run_images"],
               n_attack=size["run_images"], n_heatmap=min(8, size["run_images"]),
               attacks=["pgd"], epsilons=[0.0, 1 / 255], steps=5,
               corruptions=["gaussian_noise", "glass_blur", "jpeg_compression"], severities=[3],
               heatmap_size=5, baseline="none")
    times, results = {}, {}
    with tempfile.TemporaryDirectory() as out:
        for amp in ("bf16", None):
            start = time.perf_counter()
            results[amp] = robustness.run(robustness.RunConfig(**cfg, amp=amp),
                                          out=Path(out) / str(amp), device=device,
                                          progress=False)
            times[amp] = time.perf_counter() - start
    gap = abs(results["bf16"]["clean_accuracy"] - results[None]["clean_accuracy"])
    return [Row(f"end-to-end probe.robustness.run on {device}, {size['run_images']} images: "
                f"clean, PGD-5, 3 corruptions, 5x5 heat map, --amp bf16",
                "the same run in fp32", times["bf16"] / times[None],
                f"{times['bf16']:.1f} s vs {times[None]:.1f} s; clean accuracy gap {gap:.3f}", 1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true",
                        default=os.environ.get("PROBE_GPU_CHECK_SMALL", "") not in ("", "0"),
                        help="CPU, timm:test_vit, a few images (also PROBE_GPU_CHECK_SMALL=1)")
    parser.add_argument("--device", default=None, help="default: cpu with --small, else cuda")
    parser.add_argument("--out", default="BENCHMARKS.md", help="file whose GPU section is written")
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.small else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here; run on a GPU machine, or pass --small for the small "
              "CPU check", file=sys.stderr)
        return 2
    from benchmarks.__main__ import read_sections, section_lines, write_sections
    from probe import zoo
    size = SMALL if args.small else FULL
    if args.small:
        torch.set_num_threads(1)           # small tensors; immune to a busy CI machine
    start = time.perf_counter()
    model = zoo.load(size["model"], weights="random", device=device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(size["images"], *model.input_size, generator=g).to(device)
    y = torch.randint(0, model.num_classes, (size["images"],), generator=g).to(device)
    rows = _clean_rows(model, x, y, size, device)
    rows += _corruption_rows(model, x, size, device)
    rows += _pgd_rows(model, x, y, size, device)
    rows += _run_rows(size, device)
    where = machine()
    if device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name(torch.device(device))}; host {where}"
    note = (f"`benchmarks/gpu_check.sh{' --small' if args.small else ''}` on {device}, "
            f"{time.perf_counter() - start:.0f} s"
            + (" (small CPU mode: checks the script, not a GPU)" if args.small else ""))
    for r in rows:
        print(f"{r.what}: {r.ratio:.2f}x {r.baseline} ({r.value})")
    out = Path(args.out)
    sections = read_sections(out)
    sections["GPU"] = section_lines(rows, where, note=note)
    write_sections(out, sections)
    print(f"wrote the GPU section of {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
