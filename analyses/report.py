"""The claims report: every claim of the MLP debate, its experiment, numbers and computed verdict.

Reads the analyses' results (``analyses/results/*.json``), redraws every
analysis figure into ``figures/`` and writes ``figures/claims_report.pdf`` and
``REPORT.md``. Verdicts come from each analysis's ``claims()`` and the rules in
``analyses.common`` - nothing is typed by hand. With the default (committed)
results it also refreshes the durations table in README.md. Regenerating
everything from the committed results takes well under a minute:

    python -m analyses.report
"""
from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from analyses import common

ANALYSES = ("data_efficiency", "mixing_patterns", "input_dependence", "synthesizer_ladder",
            "equivalences", "robustness_comparison", "interpretability_comparison",
            "calibration", "equivariance", "cost_accuracy", "edge_cost", "precision_check",
            "fewer_layers", "same_model", "external_attention", "pure_mlp", "transfer",
            "resolution_transfer", "long_range")
TITLES = {
    "data_efficiency": "Data efficiency",
    "mixing_patterns": "Mixing patterns",
    "input_dependence": "Input dependence",
    "synthesizer_ladder": "The Synthesizer ladder (Mixer to attention, one change at a time)",
    "equivalences": "Equivalences",
    "robustness_comparison": "Robustness",
    "interpretability_comparison": "Interpretability",
    "calibration": "Calibration and selective prediction",
    "equivariance": "Shift equivariance",
    "cost_accuracy": "Cost vs accuracy",
    "edge_cost": "Edge cost (batch 1, one thread, int8)",
    "precision_check": "bf16 vs fp32 training (protocol check)",
    "fewer_layers": "Fewer Transformer layers vs an MLP (accuracy and latency)",
    "same_model": "Stack-of-FFN, ResMLP and Mixer: the ResMLP ladder",
    "external_attention": "External Attention: attention or a fixed matrix?",
    "pure_mlp": "Pure MLP vs Mixer: patches as inductive bias",
    "transfer": "Pre-training and fine-tuning (classes 0-4 to 5-9)",
    "resolution_transfer": "Resolution transfer (28 to 36 px)",
    "long_range": "Long-range dependencies: glyph pairs d px apart",
}
VERDICT_RULES = (
    "A claim's effect is oriented so that > 0 is what the claim says, and measured on converged "
    "models of one recipe (analyses/recipe.json) over seeds. Directional claims: **supported** if "
    "the 95% interval lies above the margin, **negligible** if it lies inside +-margin, "
    "**opposite** if it lies below 0, **inconclusive** otherwise. Equivalence claims (\"X and Y "
    "are alike\"): 90% interval (two one-sided tests, TOST); **supported** inside +-margin, "
    "**opposite** entirely outside, **inconclusive** otherwise. The two sensitivity columns give "
    "the verdict at half and at twice the margin. Claims about \"MLPs\" average Mixer, ResMLP, "
    "gMLP and FNet seed by seed and list each family's own effect beneath.")

SCALE_LIMITS = (
    "All numbers come from Fashion-MNIST (28x28 grayscale, 10 classes) and models of about 0.5M "
    "parameters (4 blocks, 4-pixel patches, 7x7 tokens; a 3-stage ResNet for the CNN) trained "
    "to convergence on CPU under one recipe for every family. The debate's claims were made at ImageNet scale with 10-600M "
    "parameter models and large pre-training; a verdict here says what holds at this scale, not "
    "at theirs. 'Inconclusive' means the interval over seeds (95% for a directional claim, 90% "
    "for an equivalence claim) is too wide to decide.")

IMAGENET = """\
Every probe measurement accepts any timm architecture (`timm:<arch>`, pretrained weights from the
local Hugging Face cache by default, or `--weights FILE`) and ImageNet-style folders, so the
measurements can be repeated at ImageNet scale on a machine with the weights and the data
(nothing is downloaded by probe's tests):

```bash
# robustness (clean, PGD, ImageNet-C corruptions with mCE against AlexNet's published errors,
# Fourier heat map) with timm's own eval transform, e.g. Mixer-B/16 vs ViT-B/16
python -m probe.robustness --model timm:mixer_b16_224 --data imagenet:/data/imagenet/val --n 5000
python -m probe.robustness --model timm:vit_base_patch16_224 --weights vit_b16.safetensors \\
    --data imagenet:/data/imagenet/val --corruptions-from imagenet-c:/data/imagenet-c --n 5000
# multi-GPU: torchrun --nproc_per_node 8 -m probe.robustness ... --device cuda --amp bf16
```

```python
# mixing patterns / input dependence with trained timm weights
from probe import zoo, mixing, data
model = zoo.load("timm:mixer_b16_224", weights="pretrained")
x, _ = data.as_tensors(data.load("imagenet:/data/imagenet/val", "test", n=64, model=model))
rows = mixing.summarize(mixing.extract(model, x))   # distance, locality, equivariance, input dependence
```

Attributions: `python -m probe.attribution --model timm:<arch> --data imagenet:...`. Data
efficiency needs training runs at each subset size under one recipe (`python -m analyses.cells`
does it for the zoo families; for timm architectures use timm's training script on ImageNet
subsets with one recipe for every family and a learning-rate sweep per family)."""


def collect(paths: common.Paths, *, redraw: bool = True
            ) -> Tuple[List[Tuple[str, dict, List[common.Claim], List[common.Check]]], List[str], list]:
    """``([(analysis, results, claims, checks)], [analyses without results], captured figures)``.

    Claims and checks are recomputed from each results file by the analysis's own
    ``claims()`` / ``checks()`` and the committed margins, never copied.
    """
    found, missing = [], []
    common.CAPTURE = [] if redraw else None
    try:
        for name in ANALYSES:
            path = common.result_path(paths, name)
            if not path.is_file():
                missing.append(name)
                continue
            module = importlib.import_module(f"analyses.{name}")
            results = common.load_results(paths, name)
            if "models" not in results or "claims" not in results:
                raise ValueError(f"{path} predates the converged-model protocol (no 'models' / "
                                 f"'claims' rows); rerun `python -m analyses.{name}`")
            if redraw:
                module.plot(results, paths)
            checks = module.checks(results) if hasattr(module, "checks") else []
            found.append((name, results, module.claims(results), checks))
        captured = common.CAPTURE or []
    finally:
        common.CAPTURE = None
    return found, missing, captured


def _fmt(v: float) -> str:
    return f"{v:+.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:+.2e}"


def _interval(c) -> str:
    return f"{_fmt(c.estimate)} [{_fmt(c.low)}, {_fmt(c.high)}] ({round(100 * c.confidence)}%)"


def _all_claims(found) -> List[common.Claim]:
    return [c for _, _, cs, _ in found for c in cs]


def multiplicity(claims: Sequence[common.Claim]) -> str:
    """The report's statement on how many claims it tests."""
    n = len(claims)
    directional = sum(c.test == "direction" for c in claims)
    return (f"This report tests {n} claims ({directional} directional at 95%, {n - directional} "
            f"equivalence at 90%), each on its own interval with no correction for multiplicity: "
            f"with no real effect anywhere, about {0.05 * directional + 0.10 * (n - directional):.1f} "
            f"of them would still fall outside their interval by chance. Read a single verdict "
            f"with its sensitivity columns and its per-family effects, not alone.")


def models_table(found) -> List[str]:
    """Markdown rows: the trained models the analyses used, per family (from the results)."""
    rows: dict = {}
    for _, results, _, _ in found:
        for m in results.get("models", []):
            rows[(m["family"], m["n_train"], m["seed"], m["lr"])] = m
    if not rows:
        return ["No trained model was used (identity checks only)."]
    per: dict = {}
    for m in rows.values():
        per.setdefault((m["family"], m["n_train"], m["lr"]), []).append(m)
    out = ["| family | images | lr | seeds | steps | test accuracy (mean, min-max) | recipe |",
           "|---|---:|---:|---:|---:|---|---|"]
    for (fam, n, lr), ms in sorted(per.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        acc = [m["test_accuracy"] for m in ms]
        out.append(f"| {common.LABELS.get(fam, fam)} | {n} | {lr:g} | {len(ms)} | {ms[0]['steps']} | "
                   f"{sum(acc) / len(acc):.4f} ({min(acc):.4f}-{max(acc):.4f}) | "
                   f"{ms[0].get('recipe_hash', '?')} |")
    return out


def markdown(found, missing, *, figures_rel: str = "figures") -> str:
    claims = _all_claims(found)
    counts = {v: sum(c.verdict == v for c in claims) for v in common.VERDICTS}
    lines = ["# Claims report", "",
             "Generated by `python -m analyses.report` from `analyses/results/*.json`; verdicts are "
             "computed from each claim's interval and its margin in `analyses/margins.json` (fixed "
             "before the results), by the rules in `analyses/verdicts.py`, never typed by hand.", "",
             "## Scale", "", SCALE_LIMITS, "", "## How verdicts are made", "", VERDICT_RULES, "",
             multiplicity(claims), "", "## Models", ""] + models_table(found) + [
             "", "## Summary", "",
             "Verdicts: " + ", ".join(f"{counts[v]} {v}" for v in common.VERDICTS) + ". "
             f"Forest plot of every claim with each family's effect: "
             f"[claims_forest.pdf]({figures_rel}/claims_forest.pdf).", "",
             "| claim | verdict | effect [interval] | margin | at margin/2 | at 2x margin | analysis |",
             "|---|---|---|---|---|---|---|"]
    for name, _, cs, _ in found:
        for c in cs:
            lines.append(f"| {c.claim} | **{c.verdict}** | {_interval(c)} | {c.margin:g} | "
                         f"{c.sensitivity['half']} | {c.sensitivity['double']} | {TITLES[name]} |")
    checks = [(name, k) for name, _, _, ks in found for k in ks]
    if checks:
        lines += ["", "## Checks (facts true by construction and checks of the protocol: verified, not "
                  "counted as evidence)", "",
                  "| check | what | max abs error | tolerance | holds |", "|---|---|---:|---:|---|"]
        for name, k in checks:
            lines.append(f"| {k.key} | {k.what} | {k.max_abs_error:.2e} | {k.tolerance:g} | "
                         f"{'yes' if k.holds else '**no**'} |")
    if missing:
        lines += ["", "Not run yet (no results file): " + ", ".join(f"`{m}`" for m in missing)
                  + ". Each needs the converged models of `analyses/recipe.json` first (`make "
                  "cells-full`, `make cells-data-efficiency`; `python -m analyses.cells status "
                  "--plan full` shows where they stand), then its `make analyses-...` piece."]
    for name, results, cs, _ in found:
        lines += ["", f"## {TITLES[name]}", "",
                  f"`python -m analyses.{name}` - scale `{results.get('scale')}`, "
                  f"{results.get('duration_s', 0):.0f} s on {results.get('threads', '?')} CPU threads."]
        for c in cs:
            lines += ["", f"### {c.claim}", "",
                      f"- **Id**: `{c.key}` ({c.test} claim)",
                      f"- **Who**: {c.who}",
                      f"- **Experiment**: {c.experiment}",
                      f"- **Figure**: [{c.figure}]({figures_rel}/{c.figure})",
                      f"- **Effect**: {c.effect}",
                      f"- **Numbers**: {_interval(c)}",
                      f"- **Margin**: {c.margin:g} {c.unit} - {c.margin_reason}",
                      f"- **Rule**: {c.rule}",
                      f"- **Verdict**: **{c.verdict}** (at half the margin: {c.sensitivity['half']}; "
                      f"at twice: {c.sensitivity['double']})"]
            if c.per_family:
                lines += ["", "| family | effect | interval |", "|---|---:|---|"]
                for fam, f in c.per_family.items():
                    lines.append(f"| {common.LABELS.get(fam, fam)} | {_fmt(f['effect'])} | "
                                 f"[{_fmt(f['ci_low'])}, {_fmt(f['ci_high'])}] |")
    lines += ["", "## Rerunning at ImageNet scale", "", IMAGENET, ""]
    return "\n".join(lines)


README_MARKER = "<!-- analyses-durations -->"


def durations_table(found) -> str:
    """Markdown table of each analysis's scale and measured duration (from its results file)."""
    lines = ["| analysis | command | duration | CPU threads |", "|---|---|---:|---:|"]
    for name, results, _, _ in found:
        minutes = results.get("duration_s", 0) / 60
        lines.append(f"| {TITLES[name]} | `python -m analyses.{name}` | {minutes:.1f} min | "
                     f"{results.get('threads', '?')} |")
    return "\n".join(lines)


def update_readme(path: Path, table: str) -> bool:
    """Replace the block between two README markers by ``table``; False if no markers."""
    if not path.is_file():
        return False
    text = path.read_text()
    parts = text.split(README_MARKER)
    if len(parts) != 3:
        return False
    from probe.results import atomic_write_text
    atomic_write_text(path, parts[0] + README_MARKER + "\n" + table + "\n" + README_MARKER + parts[2])
    return True


def _text_page(pdf, title: str, body: List[str]) -> None:
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(8.27, 11.69))
    fig.text(0.07, 0.95, title, fontsize=15, weight="bold", va="top")
    y = 0.91
    for para in body:
        for line in textwrap.wrap(para, 105) or [""]:
            fig.text(0.07, y, line, fontsize=8, va="top", family="monospace"
                     if para.startswith("  ") else None)
            y -= 0.016
        y -= 0.008
        if y < 0.05:
            break
    pdf.savefig(fig)
    plt.close(fig)


def forest(found, paths: common.Paths):
    """``figures/claims_forest.pdf``: every claim's interval and each family's (probe.claims)."""
    from probe.claims import forest_figure
    rows = [c.as_result() for c in _all_claims(found)]
    fig = forest_figure(rows, title=f"{len(rows)} claims: effect and interval, with each family's")
    path = Path(paths.figures) / "claims_forest.pdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"CreationDate": None, "ModDate": None, "Creator": "probe analyses",
                                "Producer": None})
    return fig, path


def write_pdf(path: Path, found, missing, captured, forest_fig) -> Path:
    from matplotlib.backends.backend_pdf import PdfPages
    path.parent.mkdir(parents=True, exist_ok=True)
    claims = _all_claims(found)
    summary = [SCALE_LIMITS, "", VERDICT_RULES.replace("**", ""), "", multiplicity(claims), ""]
    for name, _, cs, _ in found:
        for c in cs:
            summary.append(f"[{c.verdict.upper()}] {c.claim} - effect {_interval(c)}, margin "
                           f"{c.margin:g} (half: {c.sensitivity['half']}, double: "
                           f"{c.sensitivity['double']}) ({TITLES[name]})")
    checks = [k for _, _, _, ks in found for k in ks]
    if checks:
        summary.append("Checks (by construction, not evidence): " + "; ".join(
            f"{k.key} {'holds' if k.holds else 'FAILS'} (max abs error {k.max_abs_error:.1e})"
            for k in checks))
    if missing:
        summary.append("Not run yet: " + ", ".join(missing))
    with PdfPages(path, metadata={"Title": "probe claims report", "CreationDate": None,
                                  "ModDate": None, "Producer": None}) as pdf:
        _text_page(pdf, "probe - claims of the MLP debate, measured", summary)
        if claims:
            pdf.savefig(forest_fig)
        images = dict(captured)
        for name, results, cs, _ in found:
            body = []
            for c in cs:
                body += [f"CLAIM: {c.claim}", f"Who: {c.who}", f"Experiment: {c.experiment}",
                         f"Effect: {c.effect}", f"Numbers: {_interval(c)}, margin {c.margin:g} "
                         f"({c.margin_reason})", f"Rule: {c.rule}",
                         f"VERDICT: {c.verdict} (half margin: {c.sensitivity['half']}, double: "
                         f"{c.sensitivity['double']})"]
                body += [f"  {common.LABELS.get(f, f):14s} {_fmt(v['effect'])} [{_fmt(v['ci_low'])}, "
                         f"{_fmt(v['ci_high'])}]" for f, v in c.per_family.items()] + [""]
            _text_page(pdf, TITLES[name], body)
            for fig_name in dict.fromkeys(c.figure.removesuffix(".pdf") for c in cs):
                for key in [k for k in images if k == fig_name or k.startswith(name)]:
                    _image_page(pdf, f"{TITLES[name]}: figures/{key}.pdf", images.pop(key))
        for key, img in images.items():     # any remaining figure of the analyses
            _image_page(pdf, f"figures/{key}.pdf", img)
    return path


def _image_page(pdf, title: str, image) -> None:
    """A landscape page showing one rendered figure."""
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(11.69, 8.27))
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.9])
    ax.imshow(image)
    ax.axis("off")
    fig.suptitle(title, fontsize=10)
    pdf.savefig(fig)
    plt.close(fig)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _Parser(prog="python -m analyses.report",
                     description="Redraw every analysis figure from the results files and write "
                                 "figures/claims_report.pdf and REPORT.md with computed verdicts.")
    parser.add_argument("--quick", action="store_true",
                        help="use the --quick results in runs/analyses_quick/")
    parser.add_argument("--results", default=None, help="results folder (default analyses/results)")
    parser.add_argument("--figures", default=None, help="figures folder (default figures/)")
    parser.add_argument("--markdown", default=None,
                        help="report file (default REPORT.md, or runs/analyses_quick/REPORT.md)")
    args = parser.parse_args(argv)
    base = common.QUICK if args.quick else None
    paths = common.Paths(
        Path(args.results) if args.results else (base / "results" if base else common.RESULTS),
        Path(args.figures) if args.figures else (base / "figures" if base else common.FIGURES),
        common.MODEL_CACHE)
    md_path = Path(args.markdown) if args.markdown else (
        base / "REPORT.md" if base else common.ROOT / "REPORT.md")
    common.style()
    try:
        found, missing, captured = collect(paths)
        if not found:
            raise FileNotFoundError(f"no analysis results in {paths.results}; run the analyses "
                                    f"first (e.g. `python -m analyses.data_efficiency --quick`)")
        forest_fig, _ = forest(found, paths)
        pdf = write_pdf(Path(paths.figures) / "claims_report.pdf", found, missing, captured,
                        forest_fig)
        try:
            rel = Path(paths.figures).resolve().relative_to(md_path.parent.resolve()).as_posix()
        except ValueError:
            rel = str(Path(paths.figures).resolve())
        from probe.results import atomic_write_text
        atomic_write_text(md_path, markdown(found, missing, figures_rel=rel))
        if not args.quick and args.results is None:
            update_readme(common.ROOT / "README.md", durations_table(found))
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = sum(len(c) for _, _, c, _ in found)
    print(f"report: {n} claims from {len(found)} analyses -> {md_path}, {pdf}"
          + (f" (not run: {', '.join(missing)})" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
