"""Model zoo: twelve parameter-matched families for Fashion-MNIST, plus any timm model.

Every model returned by :func:`load` is a :class:`ProbeModel`: it takes images
in ``[0, 1]`` of shape ``[B, C, H, W]`` and applies its mean/std normalisation
inside, so attacks and corruptions never need to know about normalisation. The
architecture itself sits at ``model.net`` (module paths such as
``net.blocks.0.mlp_tokens``).

Families (28x28x1, patch 4 -> 7x7 tokens, ~0.54M parameters each, within 25% of their
median), one registration each under :mod:`probe.models` (:mod:`probe.registry`):

- ``mixer``   MLP-Mixer (Tolstikhin et al. 2021), timm ``MlpMixer``.
- ``resmlp``  ResMLP (Touvron et al. 2021), timm ``MlpMixer`` with ``ResBlock``.
- ``gmlp``    gMLP (Liu et al. 2021), timm ``MlpMixer`` with ``SpatialGatingBlock``.
- ``vit``     Vision Transformer (Dosovitskiy et al. 2021), timm ``VisionTransformer``.
- ``fnet``    FNet (Lee-Thorp et al. 2021) for images, token DFT only, :mod:`probe.models.fnet`.
- ``cnn``     a small ResNet (He et al. 2016), :mod:`probe.models.cnn`.
- ``extattn`` External Attention (Guo et al. 2021) in a ViT body, :mod:`probe.models.extattn`.
- ``ffn``     a stack of feed-forward layers (Melas-Kyriazi 2021), :mod:`probe.models.ffn`.
- ``repmlp``  RepMLP (Ding et al. 2021): conv branches merged into FC token mixing;
  ``load("repmlp", merged=True)`` gives the merged inference form, :mod:`probe.models.repmlp`.
- ``mlp``     a pure MLP on the flattened image (no patches), :mod:`probe.models.mlp`.
- ``fnet2d``  FNet as published: DFT over tokens and channels, :mod:`probe.models.fnet2d`.
- ``synth``   Synthesizer-Random token mixing in Mixer's body, :mod:`probe.models.synthesizer`.

The protocol's converged models and analyses cover the first six
(``analyses.cells.training.PROTOCOL_FAMILIES``); the others join them once swept.

``timm:<arch>`` builds any timm architecture with input size, channels and
normalisation from the model's pretrained config. Its weights: ``"pretrained"``
(the default; timm's own pretrained loading, from the local Hugging Face cache
without any network access when the file is cached), a local checkpoint PATH
(timm-format, or an original checkpoint that the architecture's
``checkpoint_filter_fn`` converts), or ``"random"``.

Every loaded model carries ``model.weights_info`` (:mod:`probe.provenance`):
shipped / pretrained / file (with sha256) / random, shown by
:func:`describe_weights` in every result, figure and the app.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from . import models as _models  # noqa: F401  (importing it registers the zoo families)
from . import cli
from .provenance import DEFAULT_WEIGHTS, describe_weights, resolve_weights, weights_info
from .registry import (_FAMILIES, TIMM_PREFIX, Family, _unknown_model, check_name, families,
                       family_of, last_child, names, register_family)
from .weights_io import WeightsFileError, load_state_dict_file, sha256_file

__all__ = [
    "Family", "ProbeModel", "register_family", "check_name", "last_child", "family_of", "WEIGHTS_DIR", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
    "names", "families", "load", "load_or_random", "weights_stamp", "build", "card", "count_params", "count_flops",
    "load_state_dict_file", "save_weights", "sha256_file", "WeightsFileError",
    "DEFAULT_WEIGHTS", "describe_weights", "resolve_weights",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)


class ProbeModel(nn.Module):
    """A classifier that takes images in ``[0, 1]`` and normalises them inside.

    Attributes:
        net: the architecture (timm or ``probe.models``), fed normalised input.
        name: how it was asked for (``"mixer"``, ``"timm:resnet50"``).
        family: architectural family (``"mixer"``, ``"vit"``, ``"cnn"``, ... or ``"timm"``).
        input_size: ``(C, H, W)`` the model expects.
        classes: class names, index = label.
        mean, std: per-channel normalisation applied inside ``forward``.
        weights_info: provenance of the weights (:mod:`probe.provenance`), set by
            :func:`build` (random) and :func:`load`.
    """

    def __init__(self, net: nn.Module, *, name: str, family: str, input_size: Tuple[int, int, int],
                 classes: Sequence[str], mean: Sequence[float], std: Sequence[float],
                 weights_info: Optional[dict] = None) -> None:
        super().__init__()
        if len(mean) != input_size[0] or len(std) != input_size[0]:
            raise ValueError(f"mean/std need {input_size[0]} channels, got {len(mean)}/{len(std)}")
        self.net = net
        self.name = name
        self.family = family
        self.input_size = tuple(int(v) for v in input_size)
        self.classes = list(classes)
        self.weights_info = weights_info
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``[B, *input_size]``."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.input_size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            c, h, w = self.input_size
            raise ValueError(f"{self.name} expects images of shape [B, {c}, {h}, {w}] with values "
                             f"in [0, 1]; got {got}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(self.normalize(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, family={self.family!r}, input_size={self.input_size}"


def build(name: str, *, seed: int = 0) -> ProbeModel:
    """A randomly initialised (seeded) model for a zoo family or ``timm:<arch>``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name.startswith(TIMM_PREFIX):
            model = _wrap_timm(name[len(TIMM_PREFIX):], _timm_net(name))
        elif name not in _FAMILIES:
            raise _unknown_model(name)
        else:
            from .data import FASHION_MNIST_CLASSES
            net = _FAMILIES[name].builder(10, 1, 28)
            model = ProbeModel(net, name=name, family=name, input_size=(1, 28, 28),
                               classes=FASHION_MNIST_CLASSES, mean=FASHION_MNIST_MEAN,
                               std=FASHION_MNIST_STD)
    model.weights_info = weights_info("random", f"seed {seed}")
    return model


def _timm_family(net: nn.Module) -> str:
    """The architectural family of a timm model: the family registration whose ``timm_match``
    recognises it (:func:`probe.registry.timm_family`), else ``"timm"``."""
    from .registry import timm_family
    return timm_family(net)


def _timm_net(name: str, *, pretrained: bool = False, overlay: Optional[dict] = None) -> nn.Module:
    """``timm.create_model`` for ``timm:<arch>`` (checked name; ``overlay``: pretrained_cfg_overlay)."""
    import timm
    check_name(name)
    return timm.create_model(name[len(TIMM_PREFIX):], pretrained=pretrained,
                             pretrained_cfg_overlay=overlay)


def _wrap_timm(arch: str, net: nn.Module) -> ProbeModel:
    cfg = getattr(net, "pretrained_cfg", None) or {}
    input_size = tuple(cfg.get("input_size", (3, 224, 224)))
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    if len(mean) != input_size[0]:
        mean, std = (mean[0],) * input_size[0], (std[0],) * input_size[0]
    num_classes = getattr(net, "num_classes", cfg.get("num_classes", 1000))
    if num_classes == 1000:
        from timm.data import ImageNetInfo
        classes = list(ImageNetInfo().label_descriptions())
    else:
        classes = [str(i) for i in range(num_classes)]
    return ProbeModel(net, name=TIMM_PREFIX + arch, family=_timm_family(net),
                      input_size=input_size, classes=classes, mean=mean, std=std)


def _mismatch(model: ProbeModel, state: Dict[str, torch.Tensor]) -> Optional[str]:
    """What keeps ``state`` from loading into ``model.net`` as it is, or ``None`` when it fits."""
    target = model.net.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if missing:
        parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    if wrong:
        parts.append("wrong shape " + ", ".join(
            f"{k} {tuple(state[k].shape)} (expected {tuple(target[k].shape)})" for k in wrong[:3]))
    return "; ".join(parts)


def _check_finite(state: Dict[str, torch.Tensor], source: str) -> None:
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = "NaN" if bool(torch.isnan(v).any()) else "inf"
            raise WeightsFileError(f"weights in {source}: tensor {k!r} contains {bad} values; the "
                                   f"checkpoint is broken (a diverged training?), retrain or re-export it")


def _load_into(model: ProbeModel, state: Dict[str, torch.Tensor], source: str) -> None:
    problem = _mismatch(model, state)
    if problem is not None:
        raise WeightsFileError(f"weights in {source} do not fit {model.name}: {problem}; "
                               f"pass weights saved from the same architecture")
    _check_finite(state, source)
    target = model.net.state_dict()
    state = {k: v.to(target[k].dtype) for k, v in state.items()}
    model.net.load_state_dict(state, strict=True)


# Errors timm's checkpoint filters and strict loading raise on a checkpoint of another architecture.
_FILTER_ERRORS = (RuntimeError, KeyError, ValueError, IndexError, TypeError, AttributeError)


def _load_timm_file(model: ProbeModel, path: Path, seed: int) -> ProbeModel:
    """``model`` (a ``timm:`` model) with the weights of ``path``.

    A timm-format state dict is loaded directly. Anything else (an original
    checkpoint: the authors' key names or shapes) goes through timm's own
    pretrained loading with ``pretrained_cfg_overlay=dict(file=path)``, which
    applies the architecture's ``checkpoint_filter_fn``.
    """
    state = load_state_dict_file(path)            # one clear error for any unreadable file
    _check_finite(state, str(path))
    problem = _mismatch(model, state)
    if problem is None:
        _load_into(model, state, str(path))
        return model
    del state
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _timm_net(model.name, pretrained=True,
                            overlay=dict(file=str(path), custom_load=False, source=None))
    except _FILTER_ERRORS as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsFileError(f"weights in {path} do not fit {model.name}: {problem}; timm's "
                               f"checkpoint filter for this architecture does not convert them "
                               f"either ({first}); pass weights saved from the same "
                               f"architecture") from None
    model.net.load_state_dict(net.state_dict(), strict=True)
    return model


def _pretrained_tag(cfg: dict) -> str:
    arch, tag = cfg.get("architecture") or "", cfg.get("tag") or ""
    return f"{arch}.{tag}" if tag else arch


def _cached_pretrained_file(cfg: dict) -> Optional[Path]:
    """The Hugging Face cache's copy of a timm pretrained config's weights, ``None`` if not cached."""
    hub_id = cfg.get("hf_hub_id")
    if not hub_id or cfg.get("custom_load") == "hf":        # timm's own hub loader for those
        return None
    from huggingface_hub import try_to_load_from_cache
    repo, _, revision = hub_id.partition("@")
    filenames = ([cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename")
                 else ["model.safetensors", "pytorch_model.bin"])
    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None


def _load_timm_pretrained(name: str, seed: int) -> ProbeModel:
    """A ``timm:`` model with timm's pretrained weights (cached file first: no network then).

    Raises:
        FileNotFoundError: the weights are neither cached nor downloadable (offline).
        ValueError: timm has no pretrained weights for the architecture.
    """
    from huggingface_hub.errors import LocalEntryNotFoundError
    from timm.models import get_pretrained_cfg
    check_name(name)
    found = get_pretrained_cfg(name[len(TIMM_PREFIX):])
    cfg = found.to_dict() if found is not None else {}
    tag = _pretrained_tag(cfg)
    ways_out = (f"pass --weights PATH (a local .safetensors / torch checkpoint of {name}) or "
                f"--weights random (a seeded RANDOM init, labelled as such)")
    if not any(cfg.get(k) for k in ("hf_hub_id", "url", "file")):
        raise ValueError(f"timm has no pretrained weights for {name}; {ways_out}")
    cached = _cached_pretrained_file(cfg)
    overlay = dict(file=str(cached), custom_load=False, source=None) if cached else None
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _timm_net(name, pretrained=True, overlay=overlay)
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"pretrained weights of {name} ({tag}) are not in the local Hugging Face cache and "
            f"could not be downloaded (offline?); {ways_out}") from None
    except OSError as e:                  # hub errors (gated, not found, offline mode), URL errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileNotFoundError(f"pretrained weights of {name} ({tag}) could not be loaded "
                                f"({first}); {ways_out}") from None
    cached = cached or _cached_pretrained_file(cfg)
    model = _wrap_timm(name[len(TIMM_PREFIX):], net)
    model.weights_info = weights_info("pretrained", tag, sha256_file(cached) if cached else None)
    return model


def card(name: str) -> dict:
    """The model card (JSON) of a shipped zoo model."""
    if name not in _FAMILIES:
        raise _unknown_model(name)
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no model card for {name!r} at {path}; train it with "
                                f"`python -m probe.train --model {name} --out {WEIGHTS_DIR}`")
    return json.loads(path.read_text())


def load(name: str, *, weights: Optional[Union[str, Path]] = DEFAULT_WEIGHTS,
         device: Union[str, torch.device] = "cpu", seed: int = 0, merged: bool = False
         ) -> ProbeModel:
    """A model in eval mode that takes ``[B, C, H, W]`` images in ``[0, 1]``.

    The model's ``weights_info`` says which weights it carries (:func:`describe_weights`).

    Args:
        name: a zoo family (see :func:`names`) or ``timm:<arch>``.
        weights: ``"default"`` (``"shipped"`` for zoo families, ``"pretrained"`` for
            ``timm:``); ``"shipped"``: the committed Fashion-MNIST weights of a zoo
            family; ``"pretrained"``: timm's pretrained weights, from the local Hugging
            Face cache (downloaded only where timm would download them; set
            ``HF_HUB_OFFLINE=1`` to never try); ``"random"`` or ``None``: a seeded random
            init; or a path to a ``.safetensors`` / torch checkpoint (for ``timm:``
            also original checkpoints that timm's ``checkpoint_filter_fn`` converts).
        device: where to put the model.
        seed: seed of the random initialisation.
        merged: the family's re-parameterised inference form (:attr:`Family.reparameterize`:
            RepMLP's conv branches merged into its FC weights), made from the loaded
            weights; the same function in eval mode, ``weights_info["form"] = "merged"``.

    Raises:
        ValueError: unknown model, weights that do not exist for this kind of model
            (``"shipped"`` for ``timm:``), a file that cannot be read or does not fit;
            ``merged=True`` for a family with one form.
        FileNotFoundError: missing weights file, or pretrained weights not available.
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    check_name(name)
    if merged:
        forms = [n for n, f in _FAMILIES.items() if f.reparameterize is not None]
        if name not in forms:
            raise ValueError(f"{name} has one form: merged=True applies to the families with a "
                             f"re-parameterised inference form ({', '.join(forms)})")
        model = load(name, weights=weights, device=device, seed=seed)
        model.net = _FAMILIES[name].reparameterize(model.net)
        model.weights_info = {**model.weights_info, "form": "merged"}
        return model.to(device).eval()
    weights = resolve_weights(name, weights)
    if weights == "pretrained":
        return _load_timm_pretrained(name, seed).to(device).eval()
    model = build(name, seed=seed)
    if weights == "shipped":
        path = WEIGHTS_DIR / f"{name}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"shipped weights for {name!r} are missing ({path}); "
                                    f"reinstall probe or train them with "
                                    f"`python -m probe.train --model {name} --out {WEIGHTS_DIR}`")
        info = card(name)
        digest = sha256_file(path)
        if digest != info.get("sha256"):
            raise ValueError(f"shipped weights for {name!r} are corrupt ({path} sha256 {digest[:12]}... "
                             f"does not match its model card); reinstall probe or retrain with "
                             f"`python -m probe.train --model {name} --out {WEIGHTS_DIR}`")
        _load_into(model, load_state_dict_file(path), str(path))
        model.weights_info = weights_info("shipped", str(path), digest)
    elif weights != "random":
        path = Path(weights)
        if name.startswith(TIMM_PREFIX):
            model = _load_timm_file(model, path, seed)
        else:
            _load_into(model, load_state_dict_file(path), str(path))
        model.weights_info = weights_info("file", str(path), sha256_file(path))
    return model.to(device).eval()


def load_or_random(name: str, *, weights: str = "shipped") -> Tuple[ProbeModel, Optional[str]]:
    """``(model, note)``: :func:`load`, or a seeded RANDOM init when shipped weights are unusable.

    ``note`` is ``None`` when the model is what was asked for. It says RANDOM (and
    the command that makes the weights) when a zoo family's shipped weights are
    missing or corrupt, and for ``timm:`` models, which are never downloaded.

    Args:
        name: a zoo family or ``timm:<arch>``.
        weights: ``"shipped"`` or ``"random"``.

    Raises:
        ValueError: an unknown model (with the valid names) or other ``weights``.
    """
    if weights not in ("shipped", "random"):
        raise ValueError(f"weights must be 'shipped' or 'random', got {weights!r}; load a weights "
                         f"file with probe.zoo.load(name, weights=path)")
    check_name(name)
    if weights == "random":
        return load(name, weights="random"), None
    if name.startswith(TIMM_PREFIX):
        return (load(name, weights="random"),
                f"{name}: RANDOM initialisation (timm weights are never downloaded)")
    try:
        return load(name), None
    except (FileNotFoundError, ValueError) as e:
        note = (f"{name}: shipped weights not usable ({str(e).split(';')[0]}); showing a RANDOM "
                f"initialisation. Make them with `python -m probe.train --model {name} "
                f"--out probe/weights`")
        return load(name, weights="random"), note


def weights_stamp(name: str) -> Optional[float]:
    """Modification time of a zoo model's shipped weights, ``None`` if missing or ``timm:`` (a cache key)."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return path.stat().st_mtime if not name.startswith(TIMM_PREFIX) and path.is_file() else None


def save_weights(model: ProbeModel, path: Union[str, Path], *, dtype: torch.dtype = torch.float16) -> str:
    """Write ``model.net``'s weights as safetensors (floats cast to ``dtype``); return sha256."""
    from safetensors.torch import save_file
    state = {}
    for k, v in model.net.state_dict().items():
        v = v.detach().cpu()
        state[k] = (v.to(dtype) if v.is_floating_point() else v).contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))  # no metadata: its key order is not stable, the bytes must be
    return sha256_file(path)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fft_flop(input_shape, dim, *args, out_shape=None, **kwargs) -> int:
    numel = math.prod(input_shape)
    return int(sum(5 * numel * math.log2(max(input_shape[d], 2)) for d in dim))


def count_flops(model: ProbeModel) -> int:
    """Floating-point operations for one image (multiply-add = 2), via torch's FlopCounterMode.

    FFTs are counted as ``5 N log2 n`` per transformed dimension.
    """
    from torch.utils.flop_counter import FlopCounterMode
    aten = torch.ops.aten
    mapping = {aten._fft_c2c: _fft_flop, aten._fft_r2c: _fft_flop}
    x = torch.zeros(1, *model.input_size, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(x)
    return int(counter.get_total_flops())


def cards_table() -> str:
    """Markdown table of the shipped models, built from their model cards (used in the README)."""
    lines = ["| model | params | MFLOPs/image | epochs | lr | precision | test accuracy (10k) | "
             "train time (s) | paper |",
             "|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for name in names():
        c = card(name)
        autocast = (c.get("precision") or {}).get("train_autocast")     # cards before: fp32
        precision = {None: "fp32", "bfloat16": "bf16 autocast"}.get(autocast, autocast)
        lines.append(f"| `{name}` | {c['params']:,} | {c['flops_per_image'] / 1e6:.1f} | {c['epochs']} | "
                     f"{c['lr']:g} | {precision} | {c['test_accuracy']:.4f} | {c['train_time_s']:.0f} | "
                     f"{c['paper']} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _evaluate_zoo(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from . import data
    from .results import atomic_write_json, binomial_ci

    models = args.model or names()
    for m in models:
        if m not in _FAMILIES:
            raise _unknown_model(m)
    if args.n is not None and args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    ds = data.load(args.data, split="test", root=args.data_root, n=args.n, seed=args.seed,
                   download=args.download)
    x, y = data.as_tensors(ds)
    torch.manual_seed(args.seed)
    rows = []
    for name in models:
        model = load(name, weights=args.weights, device=args.device, seed=args.seed)
        correct = 0
        with torch.no_grad():
            for i in tqdm(range(0, len(x), args.batch_size), desc=f"eval {name}", leave=False,
                          unit="batch"):
                xb = x[i:i + args.batch_size].to(args.device)
                correct += int((model(xb).argmax(1).cpu() == y[i:i + args.batch_size]).sum())
        acc = correct / len(x)
        lo, hi = binomial_ci(correct, len(x))
        info = card(name)
        rows.append(dict(model=name, params=count_params(model), flops=count_flops(model),
                         accuracy=acc, ci_low=lo, ci_high=hi,
                         card_accuracy=(info.get("test_accuracy")
                                        if model.weights_info["kind"] == "shipped" else None),
                         weights=str(args.weights), weights_info=model.weights_info, n=len(x)))
    from .cli import safe_name
    out = Path(args.out) / safe_name(args.data)
    payload = dict(schema_version=1, data=args.data, n=len(x), seed=args.seed, models=rows)
    atomic_write_json(out / "zoo.json", payload)
    print(f"\nShipped zoo on {args.data} test ({len(x)} images):")
    print(f"{'model':8s} {'params':>9s} {'MFLOPs':>8s} {'accuracy':>9s} {'95% CI':>15s} {'card':>6s}")
    for r in rows:
        card_acc = f"{r['card_accuracy']:.4f}" if r["card_accuracy"] is not None else "-"
        print(f"{r['model']:8s} {r['params']:9,d} {r['flops'] / 1e6:8.1f} {r['accuracy']:9.4f} "
              f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}] {card_acc:>6s}")
    print(f"\nresults written to {out / 'zoo.json'}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.parser(
        "python -m probe.zoo",
        "Evaluate the shipped model zoo: clean accuracy (with 95%% CI), parameters "
        "and FLOPs per image.", n_default=None, n_help="test images")
    parser.add_argument("--download", action="store_true",
                        help="download the dataset with torchvision if it is not found")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--cards", action="store_true",
                        help="print the model-card table (markdown) of the shipped zoo and exit")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.cards:
            print(cards_table())
            return 0
        cli.check_common(args)
        from .results import check_writable
        check_writable(args.out)
        return _evaluate_zoo(args)

    return cli.run_main(body)


if __name__ == "__main__":
    sys.exit(main())
