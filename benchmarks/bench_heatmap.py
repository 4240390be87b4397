"""Memory of a 224-px Fourier heat map (Yin et al. 2019) on ViT-B/16.

The heat map used to build every Fourier basis image at once (a complex
``[224*224, 224, 224]`` tensor, ~20 GB); now basis images are made per forward batch
and large images are probed on a ``K x K`` frequency window. Measured as a user runs
it: ``python -m probe.robustness`` with ``timm:vit_base_patch16_224`` (random weights),
a few synthetic 224-px images, ``--heatmap-size 5``, only the heat map, in a fresh
process; its peak RSS is compared with that of the model's own forward pass on a batch
as large as the heat map's largest, also in a fresh process. Ratio: heat-map peak /
forward peak (memory, not time); the goal is an absolute peak under 4 GB.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap

from benchmarks import Row, register

MODEL = "timm:vit_base_patch16_224"
LIMIT_GB = 4.0

_HEATMAP = textwrap.dedent("""
    import json, resource, sys
    from probe import robustness
    code = robustness.main(["--model", {model!r}, "--weights", "random", "--data", "synthetic",
                            "--n", "{n}", "--n-heatmap", "{n}", "--heatmap-size", "{size}",
                            "--attacks", "none", "--corruptions", "none", "--threads", "2",
                            "--no-progress", "--out", {out!r}])
    print(json.dumps({{"code": code,
                      "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
""")

_FORWARD = textwrap.dedent("""
    import json, resource
    import torch
    from probe import zoo
    torch.set_num_threads(2)
    model = zoo.load({model!r}, weights="random")
    with torch.no_grad():
        model(torch.rand({batch}, *model.input_size))
    print(json.dumps({{"code": 0,
                      "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
""")


def _peak_gb(script: str) -> float:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["code"] != 0:
        raise RuntimeError(f"probe.robustness exited {out['code']}: {proc.stderr[-2000:]}")
    return out["peak_kb"] / 2**20


@register("heatmap-memory")
def heatmap_memory(quick: bool = False):
    from probe.heatmap import forward_batch
    n, size = 2, 5
    unique = (size * size + 1) // 2                  # k and -k share a basis image
    per = max(1, forward_batch((3, 224, 224)) // n)
    batch = min(unique, per) * n                     # the heat map's largest forward batch
    with tempfile.TemporaryDirectory() as out:
        heat = _peak_gb(_HEATMAP.format(model=MODEL, n=n, size=size, out=out))
    forward = _peak_gb(_FORWARD.format(model=MODEL, batch=batch))
    verdict = "under" if heat < LIMIT_GB else "OVER"
    return [Row(f"peak RSS of `probe.robustness` heat map only, {MODEL} (random weights), "
                f"{n} images at 224 px, --heatmap-size {size} ({unique} distinct frequencies, "
                f"forward batches of {batch}); ratio = memory, heat map / forward",
                f"the model's own forward pass on {batch} images (fresh process)",
                heat / forward, f"{heat:.2f} GB ({verdict} the {LIMIT_GB:g} GB goal; forward "
                f"alone {forward:.2f} GB)", 1)]
