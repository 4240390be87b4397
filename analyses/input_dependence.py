"""Is Mixer's token mixing a fixed attention matrix, and does generated attention adapt better?

Measures how much each family's token-mixing matrices vary across input images
(``probe.mixing.input_dependence``: the share of the maps' energy not explained
by one input-independent map) layer by layer, and trains a Synthesizer-Random
variant (the zoo Mixer with each token-mixing MLP replaced by a trainable
``softmax(R)`` matrix, ``probe.models.synthesizer``) to compare with Mixer
(fixed mixing without softmax) and ViT (attention generated from the input).

    python -m analyses.input_dependence            # full scale (see --help)
    python -m analyses.input_dependence --quick    # seconds, into runs/analyses_quick/
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import numpy as np
import torch

from analyses import common
from analyses.common import COLORS, LABELS, Claim

NAME = "input_dependence"
MODELS = list(common.FAMILIES) + ["synth"]
SCALES = {
    # the data-efficiency models on the largest subset, plus Synthesizer-Random trained the same way
    "full": {"models": MODELS, "seeds": [0, 1, 2], "n_train": 30000, "epochs": 1, "test_n": None,
             "n_images": 64},
    "quick": {"models": MODELS, "seeds": [0, 1], "n_train": 200, "epochs": 1, "test_n": 200,
              "n_images": 8},
}


def _centre_row(m, image: int = 0, head: int = 0) -> List[List[float]]:
    """The centre output token's mixing weights over the input grid, ``[h][w]``."""
    h, w = m.grid
    t = m.prefix_tokens + (h // 2) * w + w // 2
    row = m.matrix[image, head, t, m.prefix_tokens:].reshape(*m.in_grid)
    return [[round(float(v), 6) for v in r] for r in row]


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from probe import mixing
    x, _ = common.test_set(scale["n_images"])
    rows, examples = [], {}
    jobs = [(s, name) for s in scale["seeds"] for name in scale["models"]]
    for seed, name in tqdm(jobs, desc="input dependence", unit="model", disable=not progress):
        model, rec = common.trained(name, n_train=scale["n_train"], seed=seed, epochs=scale["epochs"],
                                    test_n=scale["test_n"], cache=paths.cache)
        with torch.no_grad():
            maps = mixing.extract(model, x)
        summary = mixing.summarize(maps)
        rows.append({"name": name, "seed": seed, "test_accuracy": rec["test_accuracy"],
                     "params": rec["params"],
                     "layers": [{"depth": r["depth"], "kind": r["kind"],
                                 "input_dependence": r["input_dependence"]} for r in summary]})
        if seed == scale["seeds"][0] and name in ("mixer", "synth", "vit"):
            first = maps[0]
            examples[name] = {"kind": first.kind,
                              "image_0": _centre_row(first, 0),
                              "image_1": _centre_row(first, min(1, first.matrix.shape[0] - 1))}
    return {"rows": rows, "examples": examples}


def _per_seed(results: dict, name: str, key: str) -> List[float]:
    rows = sorted((r for r in results["rows"] if r["name"] == name), key=lambda r: r["seed"])
    if key == "input_dependence":
        return [float(np.mean([l["input_dependence"] for l in r["layers"]])) for r in rows]
    return [float(r[key]) for r in rows]


def claims(results: dict) -> List[Claim]:
    n_seeds = len({r["seed"] for r in results["rows"]})
    dep = {n: _per_seed(results, n, "input_dependence") for n in ("mixer", "vit", "synth")}
    acc = {n: _per_seed(results, n, "test_accuracy") for n in ("mixer", "vit", "synth")}
    est, lo, hi = common.mean_ci(dep["mixer"])
    mix_vs_syn = [a - b for a, b in zip(acc["mixer"], acc["synth"])]
    vit_vs_syn = [a - b for a, b in zip(acc["vit"], acc["synth"])]
    vit_vs_mix = [a - b for a, b in zip(acc["vit"], acc["mixer"])]
    e2, l2, h2 = common.mean_ci(mix_vs_syn)
    e3, l3, h3 = common.mean_ci(vit_vs_syn)
    detail = {"input_dependence_mean_over_layers": {n: common.mean_ci(v) for n, v in dep.items()},
              "test_accuracy": {n: common.mean_ci(v) for n, v in acc.items()},
              "vit_minus_mixer_accuracy": common.mean_ci(vit_vs_mix)}
    return [
        Claim(key="mixer_mixing_is_fixed",
              claim="Mixer's token-mixing MLP acts as a fixed, input-independent attention matrix",
              who="Tolstikhin et al. (MLP-Mixer) and commentators of the debate (Mixer as a "
                  "'static attention'); Tay et al.'s Synthesizer-Random is the attention analogue",
              experiment=f"input dependence of the channel-averaged token-mixing Jacobian of "
                         f"Mixer, mean over its layers, {n_seeds} seeds "
                         f"(ViT attention for comparison in the details)",
              figure="input_dependence.pdf",
              effect="Mixer's input dependence (share of map energy varying across images; 0 = "
                     "one fixed matrix): the claim holds if it is negligible",
              estimate=est, low=lo, high=hi, margin=0.05, test="equivalence",
              rule=common.EQUIVALENCE_RULE + " (margin 0.05)", details=detail),
        Claim(key="mixer_is_synthesizer_random",
              claim="Mixer's token mixing is Synthesizer-Random without the softmax: the two "
                    "perform alike",
              who="Debate commentary comparing MLP-Mixer with Tay et al.'s Synthesizer (2021)",
              experiment="test accuracy of the zoo Mixer and the same body with softmax(R) token "
                         f"mixing, same data/budget/seeds ({n_seeds})",
              figure="input_dependence.pdf",
              effect="Mixer accuracy minus Synthesizer-Random accuracy, paired by seed",
              estimate=e2, low=l2, high=h2, margin=0.01, test="equivalence",
              rule=common.EQUIVALENCE_RULE + " (margin 1 point)", details=detail),
        Claim(key="generated_attention_adapts_better",
              claim="Attention generated from the input adapts better than fixed (random "
                    "synthesizer) attention",
              who="Vaswani et al.'s dot-product attention vs Tay et al. (Synthesizer, 2021), "
                  "revisited in the MLP debate",
              experiment=f"test accuracy of ViT vs Synthesizer-Random at matched size, "
                         f"{n_seeds} seeds",
              figure="input_dependence.pdf",
              effect="ViT accuracy minus Synthesizer-Random accuracy, paired by seed",
              estimate=e3, low=l3, high=h3, margin=0.005, rule=common.RULE + " (margin 0.5 point)",
              details=detail),
    ]


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    names = [n for n in MODELS if any(r["name"] == n for r in results["rows"])]
    fig = plt.figure(figsize=(10, 6))
    gs = fig.add_gridspec(2, 4)
    ax = fig.add_subplot(gs[0, :2])
    for n in names:
        rows = [r for r in results["rows"] if r["name"] == n]
        depth = [l["depth"] for l in rows[0]["layers"]]
        vals = np.array([[l["input_dependence"] for l in r["layers"]] for r in rows])
        m = vals.mean(0)
        ax.errorbar(np.array(depth) + 0.04 * names.index(n), m, yerr=vals.std(0), marker="o",
                    ms=3, capsize=2, color=COLORS[n], label=LABELS[n])
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("token-mixing layer (depth)")
    ax.set_ylabel("input dependence (0 = fixed map; symlog)")
    ax.set_title("How much token mixing varies across images")
    ax.legend(fontsize=7, ncol=2)
    ax2 = fig.add_subplot(gs[0, 2:])
    for i, n in enumerate(names):
        acc = _per_seed(results, n, "test_accuracy")
        m, lo, hi = common.mean_ci(acc)
        ax2.bar(i, m, color=COLORS[n], yerr=[[m - lo], [hi - m]], capsize=3)
        ax2.plot([i] * len(acc), acc, "k.", ms=3)
    ax2.set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=30, fontsize=8)
    accs = [r["test_accuracy"] for r in results["rows"]]
    ax2.set_ylim(max(0.0, min(accs) - 0.05), min(1.0, max(accs) + 0.03))
    ax2.set_ylabel("test accuracy (mean, 95% CI, seeds)")
    ax2.set_title("Fixed vs generated mixing: accuracy")
    panels = [(n, k) for n in ("mixer", "synth", "vit") if n in results["examples"]
              for k in ("image_0", "image_1")][:4]
    if "vit" in results["examples"]:
        panels = [("mixer", "image_0"), ("synth", "image_0"), ("vit", "image_0"), ("vit", "image_1")]
        panels = [p for p in panels if p[0] in results["examples"]]
    for i, (n, k) in enumerate(panels):
        a = fig.add_subplot(gs[1, i])
        mat = np.array(results["examples"][n][k])
        lim = np.abs(mat).max() or 1.0
        im = (a.imshow(mat, cmap="viridis", vmin=0, vmax=lim) if mat.min() >= 0
              else a.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim))
        a.plot(mat.shape[1] // 2, mat.shape[0] // 2, "k+", ms=8)
        a.set_title(f"{LABELS[n]} layer 0, image {k[-1]}", fontsize=8)
        a.set_xticks([])
        a.set_yticks([])
        a.grid(False)
        fig.colorbar(im, ax=a, fraction=0.046)
    fig.suptitle("Centre token's mixing weights over the 7x7 token grid (+ = the token)", y=0.02,
                 fontsize=8)
    fig.tight_layout()
    return [common.savefig(fig, paths, "input_dependence")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv)


if __name__ == "__main__":
    sys.exit(main())
