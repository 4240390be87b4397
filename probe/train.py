"""Reproducible training of zoo models: ``python -m probe.train --model mixer``.

Deterministic on CPU: every random choice (initialisation, shuffling,
augmentation) comes from generators seeded by ``--seed`` and torch's
deterministic algorithms are switched on, so the same command on the same
machine and thread count writes byte-identical weights.

Writes ``<out>/<model>.safetensors`` and a model card ``<out>/<model>.json``
(family, params, FLOPs/image, dataset, epochs, seed, test accuracy, train
time, precision, sha256 of the weights). The shipped weights in ``probe/weights/`` were
made with ``--out probe/weights`` and the family defaults; the first six families in
fp32, the later ones with ``--amp bf16`` (bf16 autocast for the forward pass, fp32
weights, optimizer state, loss and evaluation; about 3x faster on a CPU with bf16
instructions), as each card's ``precision`` and ``command`` say.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cli, data, zoo
from .results import atomic_write_json, check_writable

__all__ = ["train", "evaluate", "augment", "main", "SUBSET_N", "SUBSET_SEED"]

SUBSET_N = 1000   # the fixed test subset the card records (and the tests check)
SUBSET_SEED = 0


def augment(x: torch.Tensor, generator: torch.Generator, *, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero padding) and horizontal flips, batched."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, :, None]          # [B, H, 1]
    cols = (left[:, None] + torch.arange(w))[:, None, :]         # [B, 1, W]
    out = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols]  # [B, H, W, C]
    out = out.permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
             device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on images ``x`` (in [0, 1]) with labels ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


def train(model: zoo.ProbeModel, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
          weight_decay: float, batch_size: int, seed: int, device: str = "cpu",
          warmup_epochs: float = 0.3, augmentation: bool = False, progress: bool = True,
          autocast: Optional[torch.dtype] = None) -> dict:
    """Train ``model`` in place with AdamW and a warmup + cosine schedule.

    ``autocast``: a dtype (``torch.bfloat16``) for the forward pass under ``torch.autocast``
    (weights, optimizer state and the loss stay fp32); ``None``: fp32 throughout.

    Returns a dict with ``train_time_s``, ``train_img_per_s`` and final ``train_loss``.
    """
    from tqdm import tqdm
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * steps_per_epoch
    warmup = max(1, int(warmup_epochs * steps_per_epoch))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    step, seen, loss_val = 0, 0, float("nan")
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not progress, leave=False)
        run_loss, run_correct, run_n = 0.0, 0, 0
        for i in bar:
            idx = order[i * batch_size:(i + 1) * batch_size]
            xb = (augment(x[idx], gen) if augmentation else x[idx]).to(device)
            yb = y[idx].to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            with torch.autocast(torch.device(device).type, dtype=autocast or torch.bfloat16,
                                enabled=autocast is not None):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            run_loss += float(loss.detach()) * len(idx)
            run_correct += int((logits.argmax(1) == yb).sum())
            run_n += len(idx)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{run_loss / run_n:.3f}", acc=f"{run_correct / run_n:.3f}")
        loss_val = run_loss / max(run_n, 1)
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: train loss {loss_val:.4f}, "
                  f"train acc {run_correct / max(run_n, 1):.4f}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    model.eval()
    return {"train_time_s": round(elapsed, 1), "train_img_per_s": round(seen / max(elapsed, 1e-9), 1),
            "train_loss": round(loss_val, 5)}


def run(args: argparse.Namespace) -> dict:
    import timm
    family = zoo.families()[args.model]
    epochs = args.epochs if args.epochs is not None else family.epochs
    lr = args.lr if args.lr is not None else family.lr
    batch_size = args.batch_size or family.batch_size
    augmentation = family.augment if args.augment is None else args.augment
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)

    train_ds = data.load(args.data, "train", root=args.data_root, n=args.n_train, seed=args.seed,
                         download=args.download)
    test_ds = data.load(args.data, "test", root=args.data_root, download=args.download)
    x_train, y_train = data.as_tensors(train_ds)
    x_test, y_test = data.as_tensors(test_ds)
    model = zoo.build(args.model, seed=args.seed)
    print(f"training {args.model} ({zoo.count_params(model):,} params) on {len(x_train)} "
          f"{args.data} images for {epochs} epochs, seed {args.seed}", file=sys.stderr)
    autocast = {"none": None, "bf16": torch.bfloat16}[args.amp]
    stats = train(model, x_train, y_train, epochs=epochs, lr=lr, weight_decay=family.weight_decay,
                  batch_size=batch_size, seed=args.seed, device=args.device,
                  augmentation=augmentation, autocast=autocast)

    out = Path(args.out)
    weights_path = out / f"{args.model}.safetensors"
    dtype = {"float16": torch.float16, "float32": torch.float32}[args.storage_dtype]
    digest = zoo.save_weights(model.cpu(), weights_path, dtype=dtype)
    # Accuracy is measured on the weights as stored (after the fp16 round trip).
    stored = zoo.build(args.model, seed=args.seed)
    zoo._load_into(stored, zoo.load_state_dict_file(weights_path), str(weights_path))
    stored.to(args.device).eval()
    test_acc = evaluate(stored, x_test, y_test, device=args.device)
    sub = data.load(args.data, "test", root=args.data_root, n=SUBSET_N, seed=SUBSET_SEED)
    sub_acc = evaluate(stored, *data.as_tensors(sub), device=args.device)
    card = {
        "schema_version": 1,
        "name": args.model,
        "family": family.name,
        "description": family.description,
        "paper": family.paper,
        "params": zoo.count_params(stored),
        "flops_per_image": zoo.count_flops(stored.cpu()),
        "input_size": list(stored.input_size),
        "dataset": args.data,
        "n_train": len(x_train),
        "epochs": epochs,
        "seed": args.seed,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": family.weight_decay,
        "optimizer": "AdamW, 0.3-epoch linear warmup + cosine",
        "augmentation": "random translation <=2 px, horizontal flip" if augmentation else "none",
        "precision": {"train_autocast": "bfloat16" if autocast is not None else None,
                      "master_weights": "float32", "eval": "float32"},
        "test_accuracy": round(test_acc, 4),
        "test_n": len(x_test),
        "test_subset": {"n": SUBSET_N, "seed": SUBSET_SEED, "accuracy": round(sub_acc, 4)},
        **stats,
        "threads": torch.get_num_threads(),
        "device": str(args.device),
        "storage_dtype": args.storage_dtype,
        "weights_file": weights_path.name,
        "sha256": digest,
        "versions": {"torch": torch.__version__, "timm": timm.__version__,
                     "python": platform.python_version()},
        "command": " ".join(["python -m probe.train", f"--model {args.model}",
                             f"--epochs {epochs}", f"--seed {args.seed}",
                             f"--threads {torch.get_num_threads()}"]
                            + ([f"--n-train {args.n_train}"] if args.n_train else [])
                            + ([f"--lr {lr:g}"] if args.lr is not None else [])
                            + ([f"--amp {args.amp}"] if autocast is not None else [])
                            + (["--augment"] if augmentation else [])),
    }
    atomic_write_json(out / f"{args.model}.json", card)
    print(f"{args.model}: test accuracy {test_acc:.4f} ({len(x_test)} images), "
          f"{stats['train_time_s']:.0f} s; wrote {weights_path} and {out / (args.model + '.json')}")
    return card


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.OneLineParser(
        prog="python -m probe.train",
        description="Train a zoo model deterministically and write safetensors weights plus a "
                    "model card JSON.")
    parser.add_argument("--model", required=True, help=f"zoo family: {', '.join(zoo.names())}")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the family's)")
    parser.add_argument("--seed", type=int, default=0, help="seed for init, order, augmentation")
    parser.add_argument("--n-train", type=int, default=None,
                        help="train on a seeded subset of this many images (default: all)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist (default) or synthetic")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files")
    parser.add_argument("--download", action="store_true", help="download the dataset if missing")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="random 2-px translations + horizontal flips (default: the family's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--amp", choices=["none", "bf16"], default="none",
                        help="bf16 autocast for the forward pass (fp32 weights, optimizer, loss "
                             "and evaluation); default none (fp32)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--storage-dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--out", default="runs/weights", help="output folder (default runs/weights)")
    args = parser.parse_args(argv)
    return cli.run_main(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    if args.model not in zoo.names():
        raise ValueError(f"unknown model {args.model!r}; trainable zoo families: "
                         f"{', '.join(zoo.names())}")
    for opt in ("epochs", "n_train", "batch_size", "threads"):
        value = getattr(args, opt)
        if value is not None and value <= 0:
            raise ValueError(f"--{opt.replace('_', '-')} must be positive, got {value}")
    check_writable(args.out)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
