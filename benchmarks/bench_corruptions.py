"""Corruptions: :func:`probe.corruptions.corrupt` vs the reference ``imagecorruptions`` package.

Throughput rows: one batch of RGB images (64, or 16 with ``--quick``) at 32x32 and
224x224, severity 3, ``preset="imagenet"`` (the reference's own parameters at
every size). Ours corrupts the batch in one call with torch's default number of
threads (all cores, as torch runs by default); the reference is called once per
image on uint8 HxWx3 arrays, as it must be, and runs as the package does (its
numpy/PIL/SciPy code single-threaded). Each corruption's row times both sides in
alternating rounds (:func:`benchmarks.paired_ratio`: reference, ours, reference,
ours, ...; the median round's times are shown). Each size also gets a row with the
total over the 15 ImageNet-C corruptions at severity 3 (the sum of those rows'
times) and one with the total over the 15 at every severity 1..5 (the speed
target: sum over the 75 calls of reference times / sum of ours, each call timed
twice per side, alternating). **Here ratio = reference time / our time (a
speedup, higher is better)**, as every row's ``what`` says.

Parity rows: the skimage sample photos astronaut, chelsea, coffee and rocket,
resized to 32 and 224 px, every severity 1..5. Deterministic corruptions: the
minimum PSNR (dB) of ours against the reference's output over images and
severities. Random corruptions: mean |corrupted - clean| of ours divided by the
reference's (1.0 = same amount of change), pooled over severities 1..5, with 8
draws per photo (the worst single severity is in ``value``). The table is printed.
"""
from __future__ import annotations

import sys
from typing import Dict, List, Tuple

import numpy as np
import torch

from benchmarks import Row, median_time, paired_ratio, register

DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur", "saturate")


def _photos(size: int, copies: int = 1) -> np.ndarray:
    """The four skimage sample photos resized to ``size`` px, uint8 ``[N, size, size, 3]``."""
    import skimage.data as skd
    from PIL import Image
    photos = [skd.astronaut(), skd.chelsea(), skd.coffee(), skd.rocket()]
    out = [np.asarray(Image.fromarray(p).resize((size, size), Image.BICUBIC)) for p in photos]
    return np.stack(out * copies)


def _to_tensor(u8: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, H, W]`` in [0, 1], contiguous NCHW (the layout a
    torch pipeline hands over; like the reference's uint8 arrays, prepared outside the timing)."""
    return (torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255).contiguous()


def _reference(u8: np.ndarray, name: str, severity: int) -> np.ndarray:
    import imagecorruptions
    return np.stack([imagecorruptions.corrupt(img, severity=severity, corruption_name=name)
                     for img in u8])


def parity(size: int, *, draws: int = 8) -> Dict[str, Tuple[str, float, float]]:
    """``{name: (metric, pooled value, worst severity's value)}`` at ``size`` px.

    ``metric`` is ``"psnr"`` (deterministic corruptions: PSNR of ours against the
    reference, minimum over images; "pooled" is the minimum over severities too)
    or ``"mad_ratio"`` (random ones: mean |corrupted - clean| of ours divided by
    the reference's, pooled over severities 1..5, and the severity furthest from
    1). Random corruptions use ``draws`` copies of each photo. Images the
    reference turns black through its division by zero (spatter without drops)
    are left out of both sides.
    """
    import warnings

    from probe import corruptions
    result = {}
    for name in corruptions.NAMES:
        deterministic = name in DETERMINISTIC
        u8 = _photos(size, 1 if deterministic else draws)
        x = _to_tensor(u8)
        clean = u8.astype(np.float64) / 255
        values, ours_total, ref_total = [], 0.0, 0.0
        for severity in range(1, 6):
            np.random.seed(severity)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = _reference(u8, name, severity).astype(np.float64) / 255
            ours = corruptions.corrupt(x, name, severity, preset="imagenet",
                                       generator=torch.Generator().manual_seed(severity))
            ours = ours.permute(0, 2, 3, 1).double().numpy()
            if deterministic:
                mse = ((ours - ref) ** 2).mean(axis=(1, 2, 3))
                values.append(float((10 * np.log10(1 / np.maximum(mse, 1e-12))).min()))
            else:
                keep = ~((ref.max(axis=(1, 2, 3)) == 0) & (clean.max(axis=(1, 2, 3)) > 0))
                mad_ours = np.abs(ours - clean)[keep].mean()
                mad_ref = np.abs(ref - clean)[keep].mean()
                ours_total += mad_ours
                ref_total += mad_ref
                values.append(float(mad_ours / mad_ref))
        if deterministic:
            result[name] = ("psnr", min(values), min(values))
        else:
            result[name] = ("mad_ratio", ours_total / ref_total, max(values, key=lambda v: abs(v - 1)))
    return result


@register("corruptions")
def bench(quick: bool) -> List[Row]:
    from probe import corruptions
    threads = torch.get_num_threads()  # torch's default: one per core
    n = 16 if quick else 64
    repeats = 1 if quick else 3
    rows: List[Row] = []
    for size in (32, 224):
        u8 = _photos(size, copies=n // 4)
        x = _to_tensor(u8)
        total_ours = total_ref = 0.0
        for name in corruptions.NAMES:
            ref, ours, _ = paired_ratio(lambda: corruptions.corrupt(x, name, 3, preset="imagenet"),
                                        lambda: _reference(u8, name, 3), rounds=repeats)
            if name in corruptions.COMMON:
                total_ours += ours
                total_ref += ref
            rows.append(Row(what=f"corrupt {name}, {n} RGB {size}x{size}, severity 3, ours on "
                                 f"{threads} torch threads: speedup (reference time / ours)",
                            baseline="imagecorruptions 1.1.5, per image",
                            ratio=ref / ours,
                            value=f"ours {1000 * ours:.0f} ms, reference {1000 * ref:.0f} ms",
                            repeats=repeats))
        rows.append(Row(what=f"total over the 15 ImageNet-C corruptions at severity 3 only, {n} "
                             f"RGB {size}x{size}, ours on {threads} torch threads: speedup (sum "
                             f"of reference times / sum of ours; the target is the next row's)",
                        baseline="imagecorruptions 1.1.5, per image",
                        ratio=total_ref / total_ours,
                        value=f"ours {total_ours:.2f} s, reference {total_ref:.2f} s",
                        repeats=repeats))
        # The speed target: all 15 corruptions at all 5 severities (75 calls a side). Each
        # call is timed ``passes`` times on both sides, alternately (ours, reference, ours,
        # reference: drifting load hits both alike), after one untimed call of ours.
        passes = 1 if quick else 2
        all_ours = all_ref = 0.0
        for name in corruptions.COMMON:
            for severity in range(1, 6):
                corruptions.corrupt(x, name, severity, preset="imagenet")
                for _ in range(passes):
                    all_ours += median_time(
                        lambda: corruptions.corrupt(x, name, severity, preset="imagenet"),
                        repeats=1, warmup=0) / passes
                    all_ref += median_time(lambda: _reference(u8, name, severity), repeats=1,
                                           warmup=0) / passes
        rows.append(Row(what=f"TOTAL over the 15 ImageNet-C corruptions x severities 1-5 (the "
                             f">= 10x target), {n} RGB {size}x{size}, ours on {threads} torch "
                             f"threads: speedup (sum of reference times / sum of ours)",
                        baseline="imagecorruptions 1.1.5, per image",
                        ratio=all_ref / all_ours,
                        value=f"ours {all_ours:.2f} s, reference {all_ref:.2f} s (mean of "
                              f"{passes} alternating timings per call)",
                        repeats=passes))
    print("parity with imagecorruptions (preset='imagenet', severities 1-5, skimage photos):",
          file=sys.stderr)
    print(f"  {'corruption':18s} {'metric':34s} {'32 px':>14s} {'224 px':>14s}", file=sys.stderr)
    tables = {size: parity(size, draws=2 if quick else 8) for size in (32, 224)}
    for name in corruptions.NAMES:
        kind = tables[32][name][0]
        metric = ("min PSNR (dB)" if kind == "psnr" else
                  "MAD ratio ours/ref: pooled (worst)")
        cells = [f"{t[name][1]:.2f}" if kind == "psnr" else f"{t[name][1]:.3f} ({t[name][2]:.2f})"
                 for t in (tables[32], tables[224])]
        print(f"  {name:18s} {metric:34s} {cells[0]:>14s} {cells[1]:>14s}", file=sys.stderr)
        for size in (32, 224):
            _, pooled, worst = tables[size][name]
            if kind == "psnr":
                what = (f"parity {name} {size}px: min PSNR vs reference over severities 1-5 "
                        f"(dB, in the ratio column)")
                value = "deterministic: same output"
            else:
                what = (f"parity {name} {size}px: mean abs change ours / reference, pooled over "
                        f"severities 1-5 (ratio column; 1 = same)")
                value = f"worst single severity {worst:.2f}"
            rows.append(Row(what=what, baseline="imagecorruptions 1.1.5", ratio=pooled,
                            value=value, repeats=1))
    return rows
