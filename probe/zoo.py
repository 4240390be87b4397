"""Model zoo: six parameter-matched families for Fashion-MNIST, plus any timm model.

Every model returned by :func:`load` is a :class:`ProbeModel`: it takes images
in ``[0, 1]`` of shape ``[B, C, H, W]`` and applies its mean/std normalisation
inside, so attacks and corruptions never need to know about normalisation. The
architecture itself sits at ``model.net`` (module paths such as
``net.blocks.0.mlp_tokens``).

Families (28x28x1, patch 4 -> 7x7 tokens, ~0.5M parameters each):

- ``mixer``  MLP-Mixer (Tolstikhin et al. 2021), timm ``MlpMixer``.
- ``resmlp`` ResMLP (Touvron et al. 2021), timm ``MlpMixer`` with ``ResBlock``.
- ``gmlp``   gMLP (Liu et al. 2021), timm ``MlpMixer`` with ``SpatialGatingBlock``.
- ``vit``    Vision Transformer (Dosovitskiy et al. 2021), timm ``VisionTransformer``.
- ``fnet``   FNet (Lee-Thorp et al. 2021) for images, :mod:`probe.models.fnet`.
- ``cnn``    a small ResNet (He et al. 2016), :mod:`probe.models.cnn`.

``timm:<arch>`` builds any timm architecture (random initialisation offline;
``weights=PATH`` loads a local safetensors or timm checkpoint) with input size,
channels and normalisation from the model's pretrained config.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import pickle
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from . import models as _models  # noqa: F401  (importing it registers the zoo families)
from . import cli
from .registry import (_FAMILIES, TIMM_PREFIX, Family, _unknown_model, check_name, families,
                       family_of, last_child, names, register_family)

__all__ = [
    "Family", "ProbeModel", "register_family", "check_name", "last_child", "family_of", "WEIGHTS_DIR", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
    "names", "families", "load", "load_or_random", "weights_stamp", "build", "card", "count_params", "count_flops",
    "load_state_dict_file", "save_weights", "sha256_file", "WeightsFileError",
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
    """

    def __init__(self, net: nn.Module, *, name: str, family: str, input_size: Tuple[int, int, int],
                 classes: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != input_size[0] or len(std) != input_size[0]:
            raise ValueError(f"mean/std need {input_size[0]} channels, got {len(mean)}/{len(std)}")
        self.net = net
        self.name = name
        self.family = family
        self.input_size = tuple(int(v) for v in input_size)
        self.classes = list(classes)
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
            return _build_timm(name[len(TIMM_PREFIX):])
        if name not in _FAMILIES:
            raise _unknown_model(name)
        from .data import FASHION_MNIST_CLASSES
        net = _FAMILIES[name].builder(10, 1, 28)
        return ProbeModel(net, name=name, family=name, input_size=(1, 28, 28),
                          classes=FASHION_MNIST_CLASSES, mean=FASHION_MNIST_MEAN,
                          std=FASHION_MNIST_STD)


_TIMM_FAMILY_BY_BLOCK = {
    "MixerBlock": "mixer", "ResBlock": "resmlp", "SpatialGatingBlock": "gmlp",
}


def _timm_family(net: nn.Module) -> str:
    """The architectural family of a timm model, from its block types."""
    types = {type(m).__name__ for m in net.modules()}
    for block, family in _TIMM_FAMILY_BY_BLOCK.items():
        if block in types:
            return family
    if "Attention" in types:
        return "vit"
    if any(isinstance(m, nn.Conv2d) for m in net.modules()) and "Block" not in types:
        return "cnn"
    return "timm"


def _build_timm(arch: str) -> ProbeModel:
    import timm
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ValueError(f"unknown timm architecture {arch!r}{hint}; see timm.list_models()")
    net = timm.create_model(arch, pretrained=False)
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


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_ACCEPTED = ("accepted formats: .safetensors, or a torch checkpoint readable with "
             "torch.load(weights_only=True) holding a state dict (optionally under 'state_dict' "
             "or 'model')")


class WeightsFileError(ValueError):
    """A weights file that cannot be read as a state dict; the message names the file and the fix."""


def _bad_file(path: Path, what: str) -> WeightsFileError:
    return WeightsFileError(f"cannot load weights file {path}: {what}; {_ACCEPTED}")


def _unwrap_checkpoint(obj) -> Dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else "a dict without tensors"
        raise ValueError(f"it holds {kind}, not a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _read_head(path: Path, size: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except PermissionError:
        raise PermissionError(f"cannot load weights file {path}: permission denied; make it readable "
                              f"(chmod +r) or copy it somewhere you can read") from None
    except OSError as e:
        raise _bad_file(path, f"it cannot be read ({e.strerror or e})") from None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def load_state_dict_file(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read weights from ``.safetensors`` or a torch checkpoint without unsafe unpickling.

    Torch checkpoints (``.pth``, ``.pt``, ``.bin``, ``.ckpt``, any name) go through
    ``torch.load(weights_only=True)``: a checkpoint that needs arbitrary code to
    unpickle is refused with ``ValueError`` instead of being executed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PermissionError: ``path`` cannot be read.
        WeightsFileError (a ``ValueError``): anything else that makes the file
            unreadable as a state dict (a directory, empty, text, random bytes,
            truncated, a zip that is not a checkpoint, no tensors inside). The
            message names the file, what was wrong and the accepted formats.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist; pass --weights PATH to an "
                                f"existing file ({_ACCEPTED})")
    if path.is_dir():
        raise _bad_file(path, "it is a directory, not a file")
    size = path.stat().st_size
    head = _read_head(path)
    if size == 0:
        raise _bad_file(path, "the file is empty")
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise _bad_file(path, f"it is not a readable safetensors file ({str(e).splitlines()[0]}); "
                                  f"re-download or retrain it") from None
        if not state:
            raise _bad_file(path, "the safetensors file holds no tensors")
        return state
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        printable = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        what = "it is a text file" if printable else "it is neither a safetensors file nor a torch checkpoint"
        raise _bad_file(path, what)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise WeightsFileError(
                f"refusing to load {path}: it is not a plain tensor checkpoint and unpickling it "
                f"could run code ({msg}). Convert it to safetensors in a trusted environment "
                f"first") from None
        raise _bad_file(path, f"it is corrupt or truncated ({msg})") from None
    except Exception as e:  # torch's readers raise many types (IndexError, KeyError, zip errors) on bad bytes
        first = str(e).splitlines()[0] if str(e) else ""
        kind = type(e).__name__
        if head.startswith(b"PK\x03\x04") and ("archive" in first or "zip" in first.lower()
                                                 or kind in ("KeyError", "BadZipFile")):
            what = f"it is a zip archive but not a torch checkpoint, or a truncated one ({kind}: {first})"
        else:
            what = f"it is corrupt or truncated ({kind}: {first})"
        raise _bad_file(path, what) from None
    try:
        return _unwrap_checkpoint(obj)
    except ValueError as e:
        raise _bad_file(path, str(e)) from None


def _load_into(model: ProbeModel, state: Dict[str, torch.Tensor], source: str) -> None:
    target = model.net.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            parts.append("wrong shape " + ", ".join(
                f"{k} {tuple(state[k].shape)} (expected {tuple(target[k].shape)})" for k in wrong[:3]))
        raise WeightsFileError(f"weights in {source} do not fit {model.name}: {'; '.join(parts)}; "
                               f"pass weights saved from the same architecture")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = "NaN" if bool(torch.isnan(v).any()) else "inf"
            raise WeightsFileError(f"weights in {source}: tensor {k!r} contains {bad} values; the "
                                   f"checkpoint is broken (a diverged training?), retrain or re-export it")
    state = {k: v.to(target[k].dtype) for k, v in state.items()}
    model.net.load_state_dict(state, strict=True)


def card(name: str) -> dict:
    """The model card (JSON) of a shipped zoo model."""
    if name not in _FAMILIES:
        raise _unknown_model(name)
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no model card for {name!r} at {path}; train it with "
                                f"`python -m probe.train --model {name} --out {WEIGHTS_DIR}`")
    return json.loads(path.read_text())


def load(name: str, *, weights: Optional[Union[str, Path]] = "shipped", device: Union[str, torch.device] = "cpu",
         seed: int = 0) -> ProbeModel:
    """A model in eval mode that takes ``[B, C, H, W]`` images in ``[0, 1]``.

    Args:
        name: a zoo family (see :func:`names`) or ``timm:<arch>``.
        weights: ``"shipped"`` (the committed Fashion-MNIST weights for zoo
            families; random initialisation for ``timm:`` since nothing is
            downloaded), ``None``/``"random"`` for a seeded random init, or a
            path to a ``.safetensors`` / torch checkpoint.
        device: where to put the model.
        seed: seed of the random initialisation.
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    model = build(name, seed=seed)
    if weights == "shipped" and not name.startswith(TIMM_PREFIX):
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
    elif weights not in (None, "random", "shipped"):
        _load_into(model, load_state_dict_file(weights), str(weights))
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
        return load(name), f"{name}: RANDOM initialisation (timm weights are never downloaded)"
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
    lines = ["| model | params | MFLOPs/image | epochs | test accuracy (10k) | train time (s) | paper |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name in names():
        c = card(name)
        lines.append(f"| `{name}` | {c['params']:,} | {c['flops_per_image'] / 1e6:.1f} | {c['epochs']} | "
                     f"{c['test_accuracy']:.4f} | {c['train_time_s']:.0f} | {c['paper']} |")
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
                         card_accuracy=info.get("test_accuracy") if args.weights == "shipped" else None,
                         weights=str(args.weights), n=len(x)))
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
