"""Are MLP, convolution, attention and Fourier mixing the same operations? Checked numerically.

Every check compares two ways of computing the same thing and records the
maximum absolute difference, on the shipped zoo models (their real weights)
and on small seeded random modules, for several seeds of random inputs:

- patch embedding (conv, kernel = stride = 4) == unfold + one shared linear map
  (Tolstikhin et al. 2021, Sec. 2), every token model;
- every convolution of the CNN == a token-mixing matrix (RepMLP, Ding et al. 2021),
  on small random inputs (C_in * H * W <= 1024, at least 3x3; a conv is translation
  equivariant, so its weights are checked whatever the input size);
- attention == an input-dependent token-mixing matrix (its softmax probabilities)
  applied to the values (Synthesizer view, Tay et al. 2021), every ViT block;
- FNet's Fourier mixing == the real 2-D DFT matrix (Lee-Thorp et al. 2021), every
  block, and the whole FNet == a Mixer-style model whose token mixing is a
  linear layer holding that matrix (logits compared). This is the zoo's token-only
  ``fnet``. The published FNet (``fnet2d``, DFT over tokens AND channels) satisfies
  ``Re(F_s X F_h^T) == Re F_s X Re F_h^T - Im F_s X Im F_h^T`` (every block), which
  is two token-mixing matrices, each after its own fixed channel mixing, not one
  token-mixing matrix: "FNet is a Mixer with a fixed token matrix" holds for ``fnet``
  only. How far each mixing is from the nearest single token matrix shared by the
  channels is recorded beside the checks (``token_matrix_residual``: relative
  Frobenius residual, 0 for ``fnet``, 0.98 for ``fnet2d``), a fact, not a check.

These identities hold by construction: only a bug could break them. They are
therefore reported as **checks** (``results["checks"]``: id, what, max abs error over
every seed and place, tolerance, holds), never as evidence for a claim of the debate
(``claims()`` returns none). They need no trained model of the one recipe: the shipped
zoo weights (listed under ``"zoo_weights"``) and seeded random modules suffice, so
``"models"`` is empty.

    python -m analyses.equivalences            # full scale (see --help)
    python -m analyses.equivalences --quick    # seconds, into runs/analyses_quick/

Built on :mod:`probe.equivalences`.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn

from analyses import common
from analyses.common import Check, Claim

NAME = "equivalences"
SCALES = {
    "full": {"seeds": [0, 1, 2, 3, 4], "images": 16, "tolerance": 1e-4},
    "quick": {"seeds": [0, 1], "images": 2, "tolerance": 1e-4},
}
EPS32 = float(torch.finfo(torch.float32).eps)
DENSE_INPUTS = 1024       # C_in * H * W of the conv checks (cost grows with its square)
# identity -> (group, label); the group (MLP/conv/attention or FNet) only colours the figure
CHECKS = {
    "patch_embedding_as_linear": ("mlp_conv_attention", "patch embed = unfold + linear"),
    "conv_as_token_mixing": ("mlp_conv_attention", "conv = token matrix"),
    "attention_as_token_mixing": ("mlp_conv_attention", "attention = P @ V"),
    "fnet_is_dft": ("fnet", "FNet mixing = Re(DFT)"),
    "fnet_as_token_linear": ("fnet", "FNet = Mixer w/ DFT (logits)"),
    "fnet2d_is_dft": ("fnet", "FNet2d = Re Fs X Re Fh' - Im Fs X Im Fh'"),
}
# probe.equivalences.check_all (small seeded random modules) -> (identity, where)
WHAT = {
    "patch_embedding_as_linear": "the patch embedding (conv, kernel = stride = 4) equals unfold + "
                                 "one shared linear map (Tolstikhin et al. 2021, Sec. 2), every "
                                 "token model of the shipped zoo and a random PatchEmbed",
    "conv_as_token_mixing": "every convolution of the CNN equals a token-mixing matrix applied to "
                            "the flattened input (RepMLP, Ding et al. 2021), and a random Conv2d",
    "attention_as_token_mixing": "every ViT attention layer equals proj(P @ V): its softmax "
                                 "probabilities used as an input-dependent token-mixing matrix "
                                 "(Synthesizer view, Tay et al. 2021)",
    "fnet_is_dft": "FNet's Fourier mixing equals the real 2-D DFT matrix applied to the tokens "
                   "(Lee-Thorp et al. 2021), every block and a random FourierMixing",
    "fnet_as_token_linear": "the whole FNet equals a Mixer-style network whose token mixing is a "
                            "linear layer holding the DFT matrix (logits compared)",
    "fnet2d_is_dft": "the published FNet's mixing (DFT over tokens and channels, fnet2d) equals "
                     "Re F_s X Re F_h^T - Im F_s X Im F_h^T with numpy-built DFT matrices, every "
                     "block and a random module: two token matrices (Re F_s, Im F_s), each after "
                     "its own channel mixing, not one token-mixing matrix (see "
                     "token_matrix_residual)",
}
RANDOM_MODULES = {"patch_embedding_as_linear": ("patch_embedding_as_linear", "random PatchEmbed"),
                  "conv_as_token_mixing": ("conv_as_token_mixing", "random Conv2d 3->5"),
                  "fnet_is_dft": ("fnet_is_dft", "random FourierMixing 7x7"),
                  "fnet2d_is_dft": ("fnet2d_is_dft", "random TokenChannelFourierMixing 7x7")}


# ----------------------------------------------------------------------------- checks


class TokenLinear(nn.Module):
    """Token mixing by a fixed matrix (a ResMLP/Mixer token layer): ``y[b, t] = sum_s W[t, s] x[b, s]``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ts,bsc->btc", self.weight.to(x.dtype), x)


def fnet_as_token_linear(model: nn.Module, x: torch.Tensor) -> float:
    """Logits of FNet vs the same network with every Fourier mixing replaced by :class:`TokenLinear`
    holding the real 2-D DFT matrix (built with numpy, independent of the FNet code)."""
    from probe.equivalences import _dft_matrix_numpy
    from probe.models.fnet import FourierMixing
    twin = copy.deepcopy(model).eval()
    swapped = 0
    for name, mod in list(twin.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, FourierMixing):
                setattr(mod, child_name, TokenLinear(_dft_matrix_numpy(tuple(child.grid))))
                swapped += 1
    if not swapped:
        raise ValueError(f"{type(model).__name__} holds no FourierMixing (FNet) module")
    with torch.no_grad():
        return float((model.eval()(x) - twin(x)).abs().max())


def attention_as_token_mixing(model: nn.Module, x: torch.Tensor) -> List[float]:
    """Per attention layer: the module's own output (fused attention) vs ``proj(P @ V)``.

    ``P`` are the attention probabilities from :func:`probe.mixing.extract`, used as an
    input-dependent token-mixing matrix (:meth:`probe.mixing.MixingMap.apply`).
    """
    from probe import hooks, mixing
    maps = [m for m in mixing.extract(model, x) if m.kind == "attention"]
    if not maps:
        raise ValueError("the model has no attention layer")
    modules = dict(model.named_modules())
    with hooks.evaluating(model), torch.no_grad():
        with hooks.capture(model, [m.layer for m in maps]) as recs:
            model(x)
        errors = []
        for m in maps:
            attn, rec = modules[m.layer], recs[m.layer]
            z = rec.input
            b, t, c = z.shape
            v = attn.qkv(z).reshape(b, t, 3, attn.num_heads, c // attn.num_heads)[:, :, 2]
            mixed = m.apply(v.transpose(1, 2))                          # [B, H, T, D]
            norm = getattr(attn, "norm", nn.Identity())
            y = attn.proj(norm(mixed.transpose(1, 2).reshape(b, t, c)))
            errors.append(float((y - rec.output).abs().max()))
    return errors


def _conv_side(conv: nn.Conv2d) -> int:
    """Input side for a conv's dense token-mixing matrix: ``C_in * side^2 <= DENSE_INPUTS``, >= 3.

    A convolution is translation equivariant, so a small input checks every
    weight of the kernel; the dense matrix costs ``(C_in * side^2)^2`` entries per output
    channel, hence the cap.
    """
    return int(min(28, max(3, np.floor(np.sqrt(DENSE_INPUTS / conv.in_channels)))))


def conv_matrices(model: nn.Module) -> Dict[str, tuple]:
    """``{name: (conv, side, M [C_out, C_in, T_out, T_in])}`` for every conv (built once)."""
    from probe import equivalences as eq
    out = {}
    for name, conv in model.named_modules():
        if isinstance(conv, nn.Conv2d):
            side = _conv_side(conv)
            out[name] = (conv, side, eq.conv_token_mixing_matrix(conv, (side, side)))
    return out


def load_models() -> dict:
    """The shipped zoo (eval mode) and the CNN's conv matrices."""
    from probe import zoo
    models = {fam: zoo.load(fam).eval() for fam in zoo.names()}
    return {"models": models, "convs": conv_matrices(models["cnn"]) if "cnn" in models else {}}


def run_checks(zoo_models: dict, seed: int, images: int) -> Dict[str, Dict[str, float]]:
    """``{check: {where: max abs error}}`` for one seed of random inputs."""
    from probe import equivalences as eq
    from probe.models.fnet import FourierMixing
    from probe.models.fnet2d import TokenChannelFourierMixing
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(images, 1, 28, 28, generator=g)
    out: Dict[str, Dict[str, float]] = {k: {} for k in CHECKS}
    for fam, model in zoo_models["models"].items():
        if fam != "cnn" and eq.has_patch_embedding(model):        # not the pure MLP
            out["patch_embedding_as_linear"][fam] = eq.patch_embedding_as_linear(
                model, model.normalize(x))
        if fam == "vit":
            for i, e in enumerate(attention_as_token_mixing(model, x)):
                out["attention_as_token_mixing"][f"vit.block{i}"] = e
        if fam == "fnet":
            for name, mix in model.named_modules():
                if isinstance(mix, FourierMixing):
                    t = mix.grid[0] * mix.grid[1]
                    tokens = torch.randn(images, t, 128, generator=g)
                    out["fnet_is_dft"][f"fnet.{name}"] = eq.fnet_is_dft(mix, tokens)
            out["fnet_as_token_linear"]["fnet (logits)"] = fnet_as_token_linear(model, x)
        if fam == "fnet2d":
            for name, mix in model.named_modules():
                if isinstance(mix, TokenChannelFourierMixing):
                    t = mix.grid[0] * mix.grid[1]
                    tokens = torch.randn(images, t, 128, generator=g)
                    out["fnet2d_is_dft"][f"fnet2d.{name}"] = eq.fnet2d_is_dft(mix, tokens)
    for name, (conv, side, matrix) in zoo_models["convs"].items():
        xc = torch.randn(min(images, 4), conv.in_channels, side, side, generator=g)
        out["conv_as_token_mixing"][f"cnn.{name} ({side}x{side})"] = eq.conv_as_token_mixing(
            conv, xc, matrix=matrix)
    for key, err in eq.check_all(seed=seed).items():
        check, where = RANDOM_MODULES[key]
        out[check][where] = err
    return out


def zoo_weights(models: Dict[str, nn.Module]) -> List[dict]:
    """Which shipped weights the checks ran on: ``[{"family", "weights", "sha256"}]``."""
    rows = []
    for fam, model in models.items():
        info = getattr(model, "weights_info", None) or {}
        source = Path(info.get("source", ""))
        rel = source.relative_to(common.ROOT) if source.is_relative_to(common.ROOT) else source
        rows.append({"family": fam, "weights": str(rel), "sha256": info.get("sha256")})
    return rows


def token_matrix_residuals() -> Dict[str, float]:
    """``{mixing: relative residual of the nearest single token matrix}`` (8 channels; a fact
    beside the checks: FNet's token-only mixing is one token matrix, the published one not)."""
    from probe import equivalences as eq
    from probe.models.fnet import FourierMixing
    from probe.models.fnet2d import TokenChannelFourierMixing
    return {"fnet (tokens)": eq.token_matrix_residual(FourierMixing((7, 7)), 49),
            "fnet2d (tokens and channels)": eq.token_matrix_residual(
                TokenChannelFourierMixing((7, 7)), 49)}


def compute(scale: dict, paths: common.Paths, progress: bool) -> dict:
    from tqdm import tqdm
    zoo_models = load_models()
    per_seed = []
    for seed in tqdm(scale["seeds"], desc="equivalences", unit="seed", disable=not progress):
        per_seed.append({"seed": seed, "errors": run_checks(zoo_models, seed, scale["images"])})
    return {"models": [], "zoo_weights": zoo_weights(zoo_models["models"]),
            "token_matrix_residual": token_matrix_residuals(),
            "tolerance": scale["tolerance"], "float32_eps": EPS32,
            "identities": {k: {"group": g, "label": l, "what": WHAT[k]}
                           for k, (g, l) in CHECKS.items()},
            "per_seed": per_seed}


# ----------------------------------------------------------------------------- checks


def worst(results: dict, identity: str) -> List[float]:
    """Per seed: the largest error of ``identity`` over every place it was applied."""
    return [max(s["errors"][identity].values()) for s in results["per_seed"]]


def worst_by_place(results: dict, identity: str) -> Dict[str, float]:
    """``{place: largest error over the seeds}`` of ``identity``."""
    places = results["per_seed"][0]["errors"][identity]
    return {where: float(max(s["errors"][identity][where] for s in results["per_seed"]))
            for where in places}


def checks(results: dict) -> List[Check]:
    """One :class:`Check` per identity: its largest error over every seed and place."""
    out = []
    for key, info in results["identities"].items():
        by_place = worst_by_place(results, key)
        where = max(by_place, key=by_place.get)
        out.append(Check(
            key=key, what=info["what"], max_abs_error=by_place[where],
            tolerance=results["tolerance"],
            details={"label": info["label"], "group": info["group"], "worst_place": where,
                     "places": len(by_place), "seeds": len(results["per_seed"]),
                     "max_abs_error_by_place": by_place,
                     "float32_eps": results["float32_eps"],
                     **({"token_matrix_residual": results["token_matrix_residual"]}
                        if key.startswith("fnet") and "token_matrix_residual" in results
                        else {})}))
    return out


def claims(results: dict) -> List[Claim]:
    """None: the identities hold by construction, so they are :func:`checks`, not evidence."""
    return []


# ----------------------------------------------------------------------------- figure


def _short(where: str) -> str:
    for prefix in ("cnn.net.", "fnet.net.", "fnet2d.net.", "vit."):
        if where.startswith(prefix):
            return where[len(prefix):]
    return where


def plot(results: dict, paths: common.Paths) -> List[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    colors = {"mlp_conv_attention": "#1f77b4", "fnet": "#9467bd"}
    rows = []          # (label, where, errors over seeds, group)
    for key, info in results["identities"].items():
        for where in results["per_seed"][0]["errors"][key]:
            errs = [s["errors"][key][where] for s in results["per_seed"]]
            rows.append((info["label"], where, errs, info["group"]))
    tol, eps = results["tolerance"], results["float32_eps"]
    floor = eps / 100                  # exact zeros (bitwise equal) drawn at the floor
    top = max([tol] + [max(r[2]) for r in rows]) * 30
    fig, ax = plt.subplots(figsize=(8.5, 0.2 * len(rows) + 1.5))
    ys = np.arange(len(rows))[::-1]
    for y, (_, _, errs, group) in zip(ys, rows):
        e = np.asarray(errs, dtype=float)
        worst_err = float(e.max())
        if worst_err > 0:
            ax.barh(y, worst_err - floor, left=floor, color=colors[group], alpha=0.8, height=0.7)
        else:
            ax.text(floor * 1.3, y, "0 (bitwise equal)", fontsize=5.5, va="center")
        ax.plot(np.maximum(e, floor), [y] * len(e), "k.", ms=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{label}: {_short(where)}" for label, where, _, _ in rows], fontsize=6)
    ax.set_xscale("log")
    ax.set_xlim(floor, top)
    ax.set_ylim(-0.8, len(rows) + 0.3)
    ax.axvline(eps, color="k", ls="--", lw=0.8)
    ax.axvline(tol, color="r", ls="-", lw=0.8)
    ax.text(eps, len(rows) - 0.4, " float32 eps", fontsize=7)
    ax.text(tol, len(rows) - 0.4, f" tolerance {tol:g}", fontsize=7, color="r")
    ax.set_xlabel("max abs error between the two sides\n(log scale; bar: worst seed, dots: seeds)")
    ax.set_title(f"Identities: checks that hold by construction, not evidence\n(shipped zoo and "
                 f"random modules, {len(results['per_seed'])} seeds of random inputs, float32)",
                 fontsize=9)
    ax.legend(handles=[Patch(color=colors["mlp_conv_attention"], label="MLP / conv / attention"),
                       Patch(color=colors["fnet"], label="FNet = Mixer with DFT")],
              loc="center right", fontsize=7)
    fig.tight_layout()
    return [common.savefig(fig, paths, "equivalences")]


def main(argv=None) -> int:
    return common.main(NAME, __doc__.splitlines()[0], compute, plot, SCALES, argv,
                       claims=claims, checks=checks)


if __name__ == "__main__":
    sys.exit(main())
