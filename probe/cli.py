"""The command-line vocabulary every probe CLI shares.

One parser class that reports bad arguments as a single ``error: ...`` line with
exit code 2, one block of shared options (the same names for the same things in
every CLI), one way to turn model and dataset names into folder names, and one
wrapper that turns user errors into one line and exit 2 instead of a traceback.

Shared options (:func:`add_shared`): ``--model`` (repeatable; zoo family or
``timm:<arch>``), ``--weights`` (default | shipped | pretrained | random | PATH), ``--data``,
``--data-root``, ``--n``/``--num-images``, ``--seed``, ``--device``, ``--out``,
``--threads``.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Callable, List, Optional, Sequence

import torch

from .provenance import DEFAULT_WEIGHTS, is_weights_file
from .registry import check_name, names

__all__ = ["OneLineParser", "parser", "add_shared", "safe_name", "run_main", "apply_threads",
           "USER_ERRORS", "check_common", "float_list",
           "severity_list", "name_list", "DEFAULT_WEIGHTS", "is_weights_file"]

# Errors a user can cause (bad name, missing file, unreadable weights, unwritable folder).
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``error: ...`` line and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def add_shared(p: argparse.ArgumentParser, *, default_models: Optional[Sequence[str]] = None,
               n_default: Optional[int] = 500, n_help: str = "test images",
               weights_help: str = "", data_default: str = "fashion-mnist",
               out_default: str = "runs") -> argparse.ArgumentParser:
    """Add the shared option block (same names, same meaning in every CLI) to ``p``."""
    g = p.add_argument_group("shared options (every probe CLI)")
    default = ", ".join(default_models) if default_models else "every zoo family"
    g.add_argument("--model", action="append", metavar="NAME",
                   help=f"zoo family ({', '.join(names())}) or timm:<arch>; repeatable "
                        f"(default: {default})")
    g.add_argument("--weights", default=DEFAULT_WEIGHTS, metavar="pretrained|shipped|random|PATH",
                   help="default: shipped for zoo families (the committed Fashion-MNIST weights), "
                        "pretrained for timm:<arch> (timm's own weights from the local Hugging "
                        "Face cache; HF_HUB_OFFLINE=1 never downloads); random (seeded "
                        "initialisation, labelled RANDOM in every output); or a weights file "
                        "(.safetensors / torch checkpoint, original checkpoints converted by "
                        "timm's checkpoint filter) for a single --model" + weights_help)
    g.add_argument("--data", default=data_default,
                   help=f"fashion-mnist, cifar10, imagefolder:<path>, imagenet:<path> (class "
                        f"folders named by WordNet id), synthetic (default {data_default})")
    g.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding the dataset files (default: $PROBE_DATA or the system copy)")
    g.add_argument("--n", "--num-images", dest="n", type=int, default=n_default, metavar="N",
                   help=f"{n_help} (default {n_default if n_default is not None else 'all'}; under "
                        f"torchrun write --num-images, torchrun's own parser claims --n)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the image subset and of all randomness (default 0)")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    g.add_argument("--out", default=out_default,
                   help=f"results folder (default {out_default}/)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's own choice)")
    return p


def parser(prog: str, description: str, *, epilog: Optional[str] = None,
           **shared) -> OneLineParser:
    """A :class:`OneLineParser` with the shared block (keyword arguments go to :func:`add_shared`)."""
    p = OneLineParser(prog=prog, description=description, epilog=epilog)
    return add_shared(p, **shared)


def safe_name(name: str) -> str:
    """A single folder name for a model or dataset name.

    ``timm:vit_base_patch16_224`` -> ``timm-vit_base_patch16_224``;
    ``imagefolder:/data/photos`` -> ``imagefolder-data-photos`` (never nested folders).
    """
    text = re.sub(r"[:/\\\s]+", "-", str(name)).strip("-.")
    text = re.sub(r"-{2,}", "-", text)
    if not text:
        raise ValueError(f"cannot make a folder name from {name!r}")
    return text


def apply_threads(threads: Optional[int]) -> None:
    """Set torch's CPU thread count when ``--threads`` was given (validated)."""
    if threads is None:
        return
    if threads <= 0:
        raise ValueError(f"--threads must be positive, got {threads}")
    torch.set_num_threads(threads)


def check_common(args: argparse.Namespace) -> None:
    """Validate the shared options (one clear ``ValueError`` per problem)."""
    if getattr(args, "n", None) is not None and args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    device = getattr(args, "device", "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for but no CUDA device is available; use --device cpu")
    models = getattr(args, "model", None) or []
    for m in models:
        check_name(m)
    if is_weights_file(getattr(args, "weights", DEFAULT_WEIGHTS)) and len(models) > 1:
        raise ValueError("--weights PATH applies to a single --model")
    apply_threads(getattr(args, "threads", None))


def float_list(text: str) -> List[float]:
    """argparse type: comma-separated non-negative numbers (epsilons)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(v < 0 or math.isnan(v) for v in values):
        raise argparse.ArgumentTypeError(f"epsilons must be >= 0, got {text!r}")
    return values


def severity_list(text: str) -> List[int]:
    """argparse type: comma-separated severities in 1..5."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 or v > 5 for v in values):
        raise argparse.ArgumentTypeError(f"severities must be in 1..5, got {text!r}")
    return values


def name_list(valid: Callable[[], List[str]], what: str) -> Callable[[str], List[str]]:
    """argparse type: comma-separated names from ``valid()``, or ``all`` / ``none``."""

    def parse(text: str) -> List[str]:
        if text.strip().lower() == "none":
            return []
        if text.strip().lower() == "all":
            return list(valid())
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in names if v not in valid()]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad)}; valid: "
                                             f"{', '.join(valid())}, all, none")
        return names

    return parse


def run_main(body: Callable[[], int]) -> int:
    """Run a CLI body; user errors become one ``error:`` line on stderr and exit code 2."""
    try:
        return body()
    except USER_ERRORS as e:
        message = " ".join(str(e).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command to continue",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `... status | head`): stop quietly, as Unix tools do
        import os
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
