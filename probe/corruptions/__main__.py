"""``python -m probe.corruptions``: PDF grid of every corruption x severity of a few images."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

from probe import cli, data, results, zoo
from probe.corruptions import NAMES, PRESETS, corrupt

__all__ = ["main", "build_parser"]

PROG = "python -m probe.corruptions"
EPILOG = ("Images are shown at their own size and channels unless --model is given: then they are "
          "resized and channel-matched to that model's input size (probe.data.fit_to_model), i.e. "
          "corrupted as that model would see them, and preset 'auto' picks its parameters for that "
          "size. No model is run, so --weights is not used (any value other than the default is "
          "refused). Without --image, --data (default fashion-mnist) supplies --n test images, a "
          "subset drawn with --seed; --seed also seeds every corruption. Writes "
          "<out>/corruptions_<image or dataset>[_<model>].pdf, one page per image.")


def build_parser() -> cli.OneLineParser:
    """The CLI's parser: the shared option block plus ``--image``, ``--preset``, ``--names``."""
    p = cli.parser(PROG, "Write a PDF grid (rows: corruption, columns: severity) of ImageNet-C style "
                         "corruptions applied to an image or to a few dataset images.",
                   epilog=EPILOG, default_models=["none, images keep their own size"],
                   n_default=4, n_help="dataset images to show",
                   weights_help="; not used here: no model is run")
    p.set_defaults(data=None)  # None: --data not given (fashion-mnist unless --image is)
    g = p.add_argument_group("corruption grid")
    g.add_argument("--image", metavar="PATH",
                   help="an image file (PNG, JPEG, ...) to corrupt instead of --data images")
    g.add_argument("--preset", choices=PRESETS, default="auto",
                   help="severity parameters (default auto: by image size)")
    g.add_argument("--names", nargs="+", default=None, metavar="NAME",
                   help=f"corruptions to show (default: all {len(NAMES)})")
    return p


def _load_image(path: str) -> torch.Tensor:
    """An image file as RGB ``[1, 3, H, W]`` float in ``[0, 1]``."""
    from PIL import Image
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image {path} not found; give the path of an image file to --image")
    try:
        img = Image.open(p).convert("RGB")
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return t.view(img.height, img.width, 3).permute(2, 0, 1)[None].float() / 255


def _figure(images: torch.Tensor, names: Sequence[str], path: Path, *, seed: int, title: str,
            preset: str) -> None:
    """One PDF page per image: the clean image, then severities 1..5, one row per corruption."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    grids = {}
    for name in names:
        grids[name] = [corrupt(images, name, sev, generator=torch.Generator().manual_seed(seed),
                               preset=preset) for sev in range(1, 6)]
    with PdfPages(path) as pdf:
        for i in range(images.shape[0]):
            fig, axes = plt.subplots(len(names), 6, figsize=(6 * 1.3, len(names) * 1.3),
                                     squeeze=False)
            for r, name in enumerate(names):
                row = [images[i]] + [g[i] for g in grids[name]]
                for col, img in enumerate(row):
                    ax = axes[r, col]
                    arr = img.permute(1, 2, 0).cpu().numpy()
                    ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r == 0:
                        ax.set_title("clean" if col == 0 else f"severity {col}", fontsize=7)
                    if col == 0:
                        ax.set_ylabel(name, fontsize=6)
            fig.suptitle(f"{title}, image {i}", fontsize=8)
            fig.tight_layout()
            pdf.savefig(fig)
            plt.close(fig)


def _model_input_size(args: argparse.Namespace) -> Optional[Tuple[int, int, int]]:
    """``(C, H, W)`` of the one ``--model``, or ``None`` without one."""
    if args.weights != cli.DEFAULT_WEIGHTS:
        raise ValueError(f"--weights is not used by {PROG} (no model is run; --model only sets "
                         f"the image size); drop --weights {args.weights}")
    if not args.model:
        return None
    if len(args.model) > 1:
        raise ValueError(f"give at most one --model (it sets the image size), got "
                         f"{len(args.model)}: {', '.join(args.model)}")
    return tuple(zoo.build(args.model[0]).input_size)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m probe.corruptions``: PDF grid of every corruption x severity."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        cli.check_common(args)
        names = args.names or NAMES
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"unknown corruption {unknown[0]!r}; use one of: {', '.join(NAMES)}")
        if args.image and args.data is not None:
            raise ValueError("give --image or --data, not both")
        input_size = _model_input_size(args)
        if args.image:
            images, title = _load_image(args.image), Path(args.image).stem
        else:
            dataset = args.data or "fashion-mnist"
            ds = data.load(dataset, "test", root=args.data_root, n=args.n, seed=args.seed,
                           input_size=input_size)
            images, title = data.as_tensors(ds)[0][:args.n], dataset
        stem = cli.safe_name(title)
        if input_size is not None:
            images = data.fit_to_model(images, input_size)
            stem += "_" + cli.safe_name(args.model[0])
            title += f" as {args.model[0]} input ({'x'.join(map(str, input_size))})"
        out = results.check_writable(args.out)
        path = out / f"corruptions_{stem}.pdf"
        _figure(images.to(args.device), names, path, seed=args.seed, title=title,
                preset=args.preset)
        print(f"wrote {path}")
        return 0

    return cli.run_main(body)


if __name__ == "__main__":
    sys.exit(main())
