"""Corruptions: :func:`probe.corruptions.corrupt` vs the reference ``imagecorruptions`` package.

**Here ratio = reference time / our time (a speedup, higher is better)**, as every
row's ``what`` says. Ours corrupts a batch in one call on torch's default number
of threads (one per core); the reference is called once per image on uint8 HxWx3
arrays, as it must be (its numpy/PIL/SciPy code is single-threaded).

Equal-core rows (the speed target, 224 px only): the reference as a user runs it
on the same cores, one worker process per torch thread
(``multiprocessing.Pool(threads)`` mapping ``imagecorruptions.corrupt`` over the
images, results stacked with ``np.stack``; the pool is created and warmed up
outside the timing), against ours on ``threads`` torch threads, 64 RGB 224-px
images (16 with ``--quick``), ``preset="imagenet"``. Each corruption is timed over
its 5 severities, in alternating rounds (reference, ours, reference, ours, ...);
a row gives the median round's ratio and the spread of the rounds. The total row
is the sum over the 15 ImageNet-C corruptions x 5 severities per round (the
>= 10x target); the per-corruption table is printed too. On a machine that other
processes load, torch's OpenMP threads spin at every barrier while a sibling
waits for a core, and our times swing by 10x or more; rows name
``OMP_WAIT_POLICY`` when the environment sets it (``PASSIVE`` avoids the spinning).

Single-process rows: one batch of RGB images (64, or 16 with ``--quick``) at 32x32
and 224x224, severity 3, against the reference in this one process. Each
corruption's row times both sides in alternating rounds
(:func:`benchmarks.paired_ratio`; the median round's times are shown). Each size
also gets a row with the total over the 15 ImageNet-C corruptions at severity 3
(the sum of those rows' times) and one with the total over the 15 at every
severity 1..5 (the sum over the 75 calls of reference times / sum of ours, each
call timed twice per side, alternating).

Parity rows: the skimage sample photos astronaut, chelsea, coffee and rocket,
resized to 32 and 224 px, every severity 1..5. Deterministic corruptions: the
minimum PSNR (dB) of ours against the reference's output over images and
severities (JPEG's is capped at 120 dB: the same bytes). Random corruptions: mean
|corrupted - clean| of ours divided by the reference's (1.0 = same amount of
change), pooled over severities 1..5, with 8 draws per photo (the worst single
severity is in ``value``). The table is printed.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import time
import warnings
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


def _threads(threads: int) -> str:
    """``"N torch threads"``, with OpenMP's wait policy when the environment sets one (under
    load, ``PASSIVE`` keeps torch's threads from spinning on the cores the others need)."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    return f"{threads} torch threads" + (f" (OMP_WAIT_POLICY={policy})" if policy else "")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def equal_cores(n: int, *, rounds: int, workers: int) -> Dict[str, List[Tuple[float, float, float]]]:
    """``{name: [(reference s, ours s, ours into a reused buffer s) per round]}`` for every
    corruption at 224 px.

    The reference runs in a ``multiprocessing.Pool(workers)`` (one ``imagecorruptions.corrupt``
    call per image, results stacked), ours on the current torch threads; each round times
    the reference's 5 severities, then ours (a fresh output per call), then ours writing into
    one reused output buffer, back to back.
    """
    import imagecorruptions

    from probe import corruptions
    u8 = _photos(224, copies=n // 4)
    x = _to_tensor(u8)
    buffer = torch.empty_like(x)
    images = list(u8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in corruptions.NAMES:  # loads textures, compiles glass blur's kernel: inherited
            _reference(u8[:1], name, 1)
    result: Dict[str, List[Tuple[float, float]]] = {}
    quiet = {"initializer": warnings.simplefilter, "initargs": ("ignore",)}
    with multiprocessing.Pool(workers, **quiet) as pool:
        for name in corruptions.NAMES:
            calls = [functools.partial(imagecorruptions.corrupt, severity=severity,
                                       corruption_name=name) for severity in range(1, 6)]

            def reference() -> None:
                for call in calls:
                    np.stack(pool.map(call, images))

            def ours() -> None:
                for severity in range(1, 6):
                    corruptions.corrupt(x, name, severity, preset="imagenet")

            def ours_into_buffer() -> None:  # as the robustness CLI runs them: one reused output
                for severity in range(1, 6):
                    corruptions.corrupt(x, name, severity, preset="imagenet", out=buffer)

            reference()
            ours()
            ours_into_buffer()
            result[name] = [(_time(reference), _time(ours), _time(ours_into_buffer)) for _ in range(rounds)]
    return result


def _equal_core_rows(times: Dict[str, List[Tuple[float, float, float]]], n: int, threads: int) -> List[Row]:
    """Rows (and a printed table) of :func:`equal_cores`' timings."""
    from probe import corruptions
    setup = (f"{n} RGB 224x224, severities 1-5, ours on {_threads(threads)} vs the reference on "
             f"{threads} worker processes")
    baseline = f"imagecorruptions 1.1.5, multiprocessing.Pool({threads}), per image"
    rounds = len(next(iter(times.values())))
    rows = []
    print(f"equal cores ({setup}): speedup reference time / ours, median round (range over "
          f"{rounds} rounds)", file=sys.stderr)
    for name in corruptions.NAMES:
        pairs = sorted((p[:2] for p in times[name]), key=lambda p: p[0] / p[1])
        ref, ours = pairs[len(pairs) // 2]
        lo, hi = pairs[0][0] / pairs[0][1], pairs[-1][0] / pairs[-1][1]
        print(f"  {name:18s} {ref / ours:7.2f}  ({lo:.2f}-{hi:.2f})", file=sys.stderr)
        rows.append(Row(what=f"EQUAL CORES: corrupt {name}, {setup}: speedup (reference time / ours)",
                        baseline=baseline, ratio=ref / ours,
                        value=f"ours {1000 * ours:.0f} ms, reference {1000 * ref:.0f} ms (5 calls); "
                              f"rounds {lo:.2f}-{hi:.2f}",
                        repeats=rounds))
    for column, how in ((1, "a fresh output tensor per call (the API default)"),
                        (2, "one output buffer reused across calls (corrupt(..., out=buf), as the "
                            "robustness CLI runs them)")):
        totals = sorted(((sum(times[name][r][0] for name in corruptions.COMMON),
                          sum(times[name][r][column] for name in corruptions.COMMON)) for r in range(rounds)),
                        key=lambda p: p[0] / p[1])
        ref, ours = totals[len(totals) // 2]
        lo, hi = totals[0][0] / totals[0][1], totals[-1][0] / totals[-1][1]
        print(f"  {'TOTAL (15 x 5)':18s} {ref / ours:7.2f}  ({lo:.2f}-{hi:.2f}), ours with {how}",
              file=sys.stderr)
        rows.append(Row(what=f"EQUAL CORES: TOTAL over the 15 ImageNet-C corruptions x severities 1-5 "
                             f"(the >= 10x target), {setup}, ours with {how}: speedup (sum of "
                             f"reference times / sum of ours)",
                        baseline=baseline, ratio=ref / ours,
                        value=f"ours {ours:.2f} s, reference {ref:.2f} s (median round); rounds "
                              f"{lo:.2f}-{hi:.2f}",
                        repeats=rounds))
    return rows


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
    rows = _equal_core_rows(equal_cores(n, rounds=repeats, workers=threads), n, threads)
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
            rows.append(Row(what=f"single process: corrupt {name}, {n} RGB {size}x{size}, severity "
                                 f"3, ours on {_threads(threads)}: speedup (reference time / ours)",
                            baseline="imagecorruptions 1.1.5, per image, in this one process",
                            ratio=ref / ours,
                            value=f"ours {1000 * ours:.0f} ms, reference {1000 * ref:.0f} ms",
                            repeats=repeats))
        rows.append(Row(what=f"single process: total over the 15 ImageNet-C corruptions at severity "
                             f"3 only, {n} RGB {size}x{size}, ours on {_threads(threads)}: "
                             f"speedup (sum of reference times / sum of ours)",
                        baseline="imagecorruptions 1.1.5, per image, in this one process",
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
        rows.append(Row(what=f"single process: total over the 15 ImageNet-C corruptions x "
                             f"severities 1-5, {n} RGB {size}x{size}, ours on {_threads(threads)}: "
                             f"speedup (sum of reference times / sum of ours; the target is the "
                             f"equal-core total)",
                        baseline="imagecorruptions 1.1.5, per image, in this one process",
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
