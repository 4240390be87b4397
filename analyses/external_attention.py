"""Is External Attention a variant of attention? The formula as a check, the behaviour as a claim.

External Attention (Guo et al. 2021, arXiv:2105.02358; the zoo family ``extattn``,
``probe/models/extattn.py``) replaces self-attention's keys and values, computed from the
tokens, by two learned memories ``M_k``, ``M_v`` of ``S`` units shared by every input.

- Check (by construction, not evidence): each ``extattn`` block's token path is attention
  with queries ``Q = x W_q`` and the input-independent keys ``K = M_k`` and values
  ``V = M_v``, normalised twice: ``A = L1_over_memory(softmax_over_tokens(Q K^T))``,
  ``y = proj(A V)`` per head (:func:`double_normalised_attention`, :func:`as_attention`),
  measured as the max abs error between the block's output and that formula on test
  images, every trained seed and its initialisation. The same K and V under ordinary
  attention's normalisation (softmax over the keys) are reported beside it: how far the
  double normalisation takes EA from attention with those keys and values.
- Claim ``external-attention``: does EA behave like attention or like a fixed mixing matrix?
  Measured on the converged full-data models (one recipe, seeds ``plans.full``) of
  ``extattn``, ViT (attention: input-dependent) and Synthesizer-Random ``synth``
  (``softmax(R)``: one fixed matrix, input dependence exactly 0): test accuracy and input
  dependence (the metric of :mod:`analyses.input_dependence`: per layer the median over a
  layer's units - heads for EA and ViT, channels for ``synth`` - of the share of the mixing
  map's energy that varies across images, mean over layers), each beside the same seed at
  initialisation. EA's map is its token-to-token map through the memory ``A P^T``
  (``probe/models/extattn.py``).

The claim's effect, fixed before any result: EA's position on the line from the fixed
matrix to attention, ``p = (D_EA - D_synth) / (D_ViT - D_synth)`` with ``D`` the input
dependence (0: as fixed as Synthesizer-Random, 1: as input dependent as ViT), per seed
(paired by seed), minus 1/2: > 0 means EA is closer to attention than to a fixed matrix.
The input dependence is an energy share, so the line is linear: a map whose varying share is
a tenth of attention's is 90% of the way to a fixed matrix. The accuracies of EA minus ViT
and EA minus ``synth`` stand beside it (details), with the position per layer.

Cells: ``extattn`` has its own learning-rate sweep (``python -m analyses.cells run --plan
sweep --family extattn``), then ``python -m analyses.cells run --plan full --family extattn
synth`` (``synth`` trains at Mixer's swept learning rate, the same body).

    python -m analyses.external_attention            # full scale (see --help)
    python -m analyses.external_attention --quick    # seconds, the quick recipe's models
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np
import torch

from analyses import common, converged, evaluation, input_dependence
from analyses.common import COLORS, LABELS, Check, Claim
from analyses.verdicts import margin_of

NAME = "external_attention"
CLAIM = "external-attention"
EA, ATTENTION, FIXED = "extattn", "vit", "synth"
MODELS = (EA, ATTENTION, FIXED)
NAMES = {EA: LABELS[EA], ATTENTION: LABELS[ATTENTION], FIXED: "Synthesizer-Random"}
TOLERANCE = 1e-6        # float64 round-off is ~1e-13
# The L1 normalisation's denominator is eps + the row sum, as in the authors' code and the zoo block:
# a token that no memory unit selects (its row of the softmax over tokens ~ 0) keeps a small row.
L1_EPS = 1e-9
SCALES = {
    "full": {"quick": False, "models": list(MODELS), "n_images": 64, "check_images": 256},
    "quick": {"quick": True, "models": list(MODELS), "n_images": 8, "check_images": 16},
}

Tensor = torch.Tensor
Formula = Callable[[Tensor, Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------- the check


def double_normalised_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of queries ``q`` ``[B, H, T, d]`` over ``S`` keys ``k`` ``[S, d]`` with values
    ``v`` ``[S, d]``, External Attention's double normalisation written out: logits
    ``q k^T`` ``[B, H, T, S]``, a softmax over the TOKENS (dim -2), then each token's row
    divided by its sum over the keys (L1, with the authors' :data:`L1_EPS` in the
    denominator), times ``v``. Returns ``[B, H, T, d]``."""
    p = (q @ k.transpose(-2, -1)).softmax(dim=-2)
    return (p / (L1_EPS + p.sum(dim=-1, keepdim=True))) @ v


def softmax_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Ordinary attention's normalisation of the same logits: a softmax over the keys (no
    scale: EA's logits have none). Not EA; the comparison of the check's details."""
    return (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v


def as_attention(module: torch.nn.Module, x: Tensor,
                 formula: Formula = double_normalised_attention) -> Tensor:
    """An ``ExternalAttention`` block's output at its input ``x`` ``[B, T, C]`` rebuilt as
    attention: per head ``formula(Q, K, V)`` with ``Q = x W_q`` (``trans_dims``), ``K = M_k``
    (``memory_key.weight``, ``[S, C / H]``) and ``V = M_v`` (``memory_value.weight^T``,
    ``[S, C / H]``), the SAME for every input, then the output projection."""
    b, t, c = x.shape
    h = module.num_heads
    q = module.trans_dims(x).reshape(b, t, h, c // h).transpose(1, 2)
    keys = module.memory_key.weight
    values = module.memory_value.weight.t()
    y = formula(q, keys, values).transpose(1, 2).reshape(b, t, c)
    return module.proj(y)


def attention_form_errors(model: torch.nn.Module, x: Tensor,
                          formulas: Mapping[str, Formula]) -> Dict[str, List[float]]:
    """``{formula name: [max abs error per External Attention block]}``: each block's output
    on images ``x`` against :func:`as_attention` with that formula, both in float64 (on a copy
    of ``model``), so that round-off (about 1e-13) stays far below :data:`TOLERANCE` whatever
    the weights' scale and the kernels' order of summation.

    Raises:
        ValueError: ``model`` has no External Attention block.
    """
    from probe import hooks
    from probe.models.extattn import ExternalAttention
    names = [n for n, m in model.named_modules() if isinstance(m, ExternalAttention)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no External Attention block; the check "
                         f"needs an 'extattn' model")
    model = copy.deepcopy(model).double().eval()
    modules = dict(model.named_modules())
    with torch.no_grad(), torch.autocast("cpu", enabled=False), \
            hooks.capture(model, names) as records:
        model(x.double())
        return {key: [float((as_attention(modules[n], records[n].input, f)
                             - records[n].output).abs().max()) for n in names]
                for key, f in formulas.items()}


FORMULAS = {"double_normalised": double_normalised_attention, "softmax_over_keys": softmax_attention}


# ----------------------------------------------------------------------------- compute


def _sweep_or_raise(recipe, store) -> None:
    from analyses.cells.plan import sweep_results
    if EA not in sweep_results(recipe=recipe, store=store, families=[EA]):
        raise ValueError(f"the learning-rate sweep of {EA} is not finished; run `python -m "
                         f"analyses.cells run --plan sweep --family {EA}`, then `python -m "
                         f"analyses.cells run --plan full --family {EA} {FIXED}` first")


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    from analyses.cells import accuracy, test_sets
    quick = bool(scale["quick"])
    names = list(scale["models"])
    missing = [n for n in MODELS if n not in names]
    if missing:
        raise ValueError(f"{NAME} compares {', '.join(MODELS)}: include {', '.join(missing)}")
    recipe, store = converged.recipe_and_store(quick)
    if not quick:
        _sweep_or_raise(recipe, store)
    seeds = sorted(int(s) for s in recipe.plans["full"]["seeds"])
    loaded = converged.models(names, seeds, quick=quick, progress=progress)
    _, (sub_x, sub_y) = test_sets(recipe)
    x, _ = common.test_set(scale["n_images"])
    xc, _ = common.test_set(scale["check_images"])
    rows, checks = [], []
    for model, mrow in tqdm(loaded, desc="models", unit="model", disable=not progress):
        name, seed = mrow["family"], int(mrow["seed"])
        _, layers, init = input_dependence.dependence_beside_init(model, name, seed, x)
        rows.append({"family": name, "seed": seed, "test_accuracy": mrow["test_accuracy"],
                     "init_accuracy": round(accuracy(init, sub_x, sub_y), 4), "layers": layers,
                     **{key: float(np.mean([l[key] for l in layers]))
                        for key in ("median", "init_median", "input_dependence",
                                    "init_input_dependence")}})
        if name == EA:
            for which, net in (("trained", model), ("init", init)):
                errors = attention_form_errors(net, xc, FORMULAS)
                checks.append({"seed": seed, "model": which, **errors})
    return {"models": [r for _, r in loaded], "rows": rows, "attention_form": checks,
            "n_images": len(x), "check_images": len(xc), "recipe_hash": recipe.hash,
            "floor": input_dependence.FLOOR,
            "reference": {"fixed_map": 0.0, "chance_accuracy": 0.1,
                          "about": "input dependence: the share of a mixing map's energy that "
                                   "varies across images (0 = one fixed matrix); median over a "
                                   "layer's units, mean over layers; init_* = the same seed at "
                                   "initialisation"}}


# ----------------------------------------------------------------------------- claim


def position(value: float, fixed: float, attention: float) -> float:
    """Where ``value`` lies on the line from ``fixed`` (0) to ``attention`` (1).

    Raises:
        ValueError: ``attention`` does not exceed ``fixed`` (the line is undefined).
    """
    if not attention > fixed:
        raise ValueError(f"attention's input dependence ({attention:g}) must exceed the fixed "
                         f"matrix's ({fixed:g}) to place External Attention between them")
    return (value - fixed) / (attention - fixed)


def by_seed(results: Mapping, name: str, key: str = "median") -> Dict[int, float]:
    """``{seed: row[key]}`` of model ``name`` (``median``, ``test_accuracy``, ...)."""
    return {int(r["seed"]): float(r[key]) for r in results["rows"] if r["family"] == name}


def positions(results: Mapping, key: str = "median") -> Dict[int, float]:
    """EA's :func:`position` per seed between the same seed's ``synth`` and ViT (``key``:
    ``median`` trained, ``init_median`` at initialisation).

    Raises:
        ValueError: a model is missing, or the three models' seeds differ.
    """
    per = {n: by_seed(results, n, key) for n in MODELS}
    for n, values in per.items():
        if not values:
            raise ValueError(f"the results hold no {n!r} rows; {CLAIM} compares "
                             f"{', '.join(MODELS)}")
    if not set(per[EA]) == set(per[ATTENTION]) == set(per[FIXED]):
        seeds = {n: sorted(v) for n, v in per.items()}
        raise ValueError(f"seeds differ ({seeds}): the models are compared seed by seed")
    return {s: position(per[EA][s], per[FIXED][s], per[ATTENTION][s]) for s in sorted(per[EA])}


def layer_positions(results: Mapping) -> List[Dict[str, float]]:
    """Per layer (depth order): EA's position from that layer's medians, mean over seeds and
    its interval (empty when the models' depths differ)."""
    rows = {n: sorted((r for r in results["rows"] if r["family"] == n), key=lambda r: r["seed"])
            for n in MODELS}
    depth = {len(rs[0]["layers"]) for rs in rows.values()}
    if len(depth) != 1:
        return []
    out = []
    for d in range(depth.pop()):
        vals = [position(e["layers"][d]["median"], f["layers"][d]["median"],
                         a["layers"][d]["median"])
                for e, a, f in zip(rows[EA], rows[ATTENTION], rows[FIXED])]
        m, lo, hi = common.mean_ci(vals)
        out.append({"depth": d, "effect": m, "ci_low": lo, "ci_high": hi, "n": len(vals)})
    return out


def _interval(values: Sequence[float], confidence: float) -> dict:
    m, lo, hi = common.mean_ci(values, confidence=confidence)
    return {"effect": m, "ci_low": lo, "ci_high": hi, "n": len(values)}


def claims(results: Mapping) -> List[Claim]:
    conf = common.CONFIDENCE[margin_of(CLAIM)["test"]]
    p = positions(results)
    try:
        p0 = positions(results, "init_median")
    except ValueError:          # at initialisation ViT may be no more input dependent than synth
        p0 = {}
    centred = [v - 0.5 for v in p.values()]
    e, lo, hi = common.mean_ci(centred, confidence=conf)
    floor = float(results.get("floor", input_dependence.FLOOR))
    level = {n: input_dependence.level(list(by_seed(results, n).values()), confidence=conf,
                                       floor=floor) for n in MODELS}
    init_level = {n: input_dependence.level(list(by_seed(results, n, "init_median").values()),
                                            confidence=conf, floor=floor) for n in MODELS}
    acc = {n: _interval(list(by_seed(results, n, "test_accuracy").values()), 0.95) for n in MODELS}
    acc0 = {n: _interval(list(by_seed(results, n, "init_accuracy").values()), 0.95) for n in MODELS}
    gaps = evaluation.paired_by_seed(results["rows"], lambda r: r["test_accuracy"], EA, sign=-1.0)
    accuracy_gaps = {f"{EA} - {other}": _interval(gaps[other], 0.95) for other in (ATTENTION, FIXED)}
    ratio = None
    ea, vit = by_seed(results, EA), by_seed(results, ATTENTION)
    if all(v > 0 for v in list(ea.values()) + list(vit.values())):
        r, rlo, rhi = common.ratio_ci(list(ea.values()), list(vit.values()), confidence=conf)
        ratio = {"effect": r, "ci_low": rlo, "ci_high": rhi}
    n_seeds = len(p)
    return [Claim(
        key=CLAIM,
        claim="External Attention is a variant of attention: its token mixing behaves like "
              "attention, not like a fixed matrix",
        who="the MLP-Mixer debate (External Attention, Guo et al. 2021, read as 'attention "
            "in disguise': attention with learned, input-independent keys and values)",
        experiment=f"input dependence of the token mixing (median over units, mean over layers; "
                   f"{results.get('n_images', '?')} test images) and test accuracy of External "
                   f"Attention, ViT and Synthesizer-Random (softmax(R), a fixed matrix), "
                   f"converged full-data models of one recipe, {n_seeds} seeds, each beside the "
                   f"same seed at initialisation; the formula itself is a check",
        figure=f"{NAME}.pdf",
        effect="EA's position between the fixed matrix and attention, p = (D_EA - D_synth) / "
               "(D_ViT - D_synth) with D the input dependence (0: as fixed as "
               "Synthesizer-Random, 1: as input dependent as ViT), per seed, minus 1/2 (> 0: "
               "closer to attention than to a fixed matrix); mean over seeds",
        estimate=e, low=lo, high=hi,
        per_family={EA: {"effect": e, "ci_low": lo, "ci_high": hi, "n": n_seeds}},
        reference={"input_dependence": level, "input_dependence_initialisation": init_level,
                   "position_initialisation": p0, "fixed_map": 0.0, "attention_position": 1.0,
                   "test_accuracy": acc, "initialisation_accuracy": acc0,
                   "chance_accuracy": 0.1},
        details={"position_per_seed": p, "position_per_layer": layer_positions(results),
                 "accuracy_differences": accuracy_gaps, "input_dependence_ratio_ea_over_vit": ratio,
                 "line": "linear in the input dependence (an energy share): 1/2 = as far from "
                         "the fixed matrix as from attention"})]


def checks(results: Mapping) -> List[Check]:
    """EA's block = attention with K = M_k, V = M_v and the double normalisation (by
    construction), with the ordinary softmax-over-keys version beside it."""
    rows = results.get("attention_form", [])
    if not rows:
        return []
    worst = max(rows, key=lambda r: max(r["double_normalised"]))
    error = max(worst["double_normalised"])
    other = min(min(r["softmax_over_keys"]) for r in rows)
    return [Check(
        key="external_attention_is_attention_with_learned_keys_values",
        what="every External Attention block's output equals proj(A M_v) with A = "
             "L1_over_memory(softmax_over_tokens((x W_q) M_k^T)) per head (L1 denominator + 1e-9): "
             "attention with the input-independent keys K = M_k and values V = M_v and a double "
             f"normalisation (trained and initialised models, {results.get('check_images', '?')} "
             f"test images, float64)",
        max_abs_error=error, tolerance=TOLERANCE,
        details={"worst": {"seed": worst["seed"], "model": worst["model"]},
                 "per_model": rows,
                 "softmax_over_keys_min_error": other,
                 "about": "softmax_over_keys: the same K and V with ordinary attention's "
                          "normalisation; its error is how far the double normalisation moves "
                          "EA from that attention"})]


# ----------------------------------------------------------------------------- figure


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    floor = float(results.get("floor", input_dependence.FLOOR))
    claim = next((c for c in results.get("claims", []) if c["id"] == CLAIM), None)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))

    ax = axes[0]
    for n in MODELS:
        rs = sorted((r for r in results["rows"] if r["family"] == n), key=lambda r: r["seed"])
        depth = np.arange(len(rs[0]["layers"])) + 0.05 * MODELS.index(n)
        for key, ls, label in (("median", "-", NAMES[n]), ("init_median", ":", None)):
            vals = np.maximum(np.array([[l[key] for l in r["layers"]] for r in rs]), floor)
            ax.plot(depth, np.exp(np.log(vals).mean(0)), ls, marker="o" if ls == "-" else None,
                    ms=4, color=COLORS[n], label=label)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set(xlabel="token-mixing layer (depth)",
           ylabel=f"input dependence, median over units\n(log; {floor:g} = fixed matrix)",
           title="Input dependence by depth (solid: trained,\ndotted: same seed at initialisation)")
    ax.legend(fontsize=8)

    ax = axes[1]
    for i, n in enumerate(MODELS):
        acc = list(by_seed(results, n, "test_accuracy").values())
        m, lo, hi = common.mean_ci(acc)
        ax.bar(i, m, color=COLORS[n], yerr=[[m - lo], [hi - m]], capsize=3)
        ax.plot([i] * len(acc), acc, "k.", ms=4)
        ax.plot(i, np.mean(list(by_seed(results, n, "init_accuracy").values())), "kx", ms=7)
    ax.plot([], [], "kx", label="initialisation")
    ax.axhline(0.1, color="k", ls=":", lw=0.8, label="chance")
    ax.set_xticks(range(len(MODELS)), [NAMES[n] for n in MODELS])
    ax.set(ylim=(0, 1), ylabel="test accuracy (mean, 95% CI over seeds; dots: seeds)",
           title="Test accuracy")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[2]
    if claim is not None:
        margin = claim["margin"]
        rows = [("overall", claim["effect"] + 0.5, claim["ci_low"] + 0.5, claim["ci_high"] + 0.5)]
        rows += [(f"layer {r['depth']}", r["effect"], r["ci_low"], r["ci_high"])
                 for r in claim["details"]["position_per_layer"]]
        for i, (label, e, lo, hi) in enumerate(rows):
            ax.errorbar(e, i, xerr=[[e - lo], [hi - e]], fmt="o" if i == 0 else "s",
                        color=COLORS[EA], capsize=3, ms=7 if i == 0 else 4)
        for s, v in claim["details"]["position_per_seed"].items():
            ax.plot(v, 0, "k.", ms=4)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.invert_yaxis()
        ax.axvline(0, color=COLORS[FIXED], lw=1.5, label=f"{NAMES[FIXED]} (fixed matrix)")
        ax.axvline(1, color=COLORS[ATTENTION], lw=1.5, label=f"{NAMES[ATTENTION]} (attention)")
        ax.axvspan(0.5 - margin, 0.5 + margin, color="0.88", lw=0, label=f"1/2 +- margin {margin:g}")
        ax.set(xlabel="position of EA: (D_EA - D_synth) / (D_ViT - D_synth)",
               title=f"{NAMES[EA]} between a fixed matrix and attention\n(claim "
                     f"{CLAIM}: {claim['verdict']}; {round(100 * claim['confidence'])}% CI)")
        ax.legend(fontsize=7, loc="best")
    else:
        ax.set_axis_off()
    fig.suptitle("External Attention vs attention (ViT) and a fixed matrix (Synthesizer-Random), "
                 f"converged full-data models ({len(by_seed(results, EA))} seed(s))", fontsize=10)
    fig.tight_layout()
    return [common.savefig(fig, paths, NAME)]


def main(argv: Sequence[str] = None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv, claims=claims,
                       checks=checks)


if __name__ == "__main__":
    sys.exit(main())
