"""The robustness run at ImageNet scale: the mCE baseline (AlexNet's published errors by default
for timm models on image folders, none, or a model of the same input size), pre-made ImageNet-C
(``--corruptions-from``) and bf16 autocast (``--amp``), on data the tests make themselves."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probe import data, mce, robustness, zoo
from probe.robustness import RunConfig

TINY = "timm:test_vit"      # timm's small test ViT (160 px); random weights, nothing downloaded


def _photos(folder: Path, classes, per_class: int, seed: int = 0) -> None:
    from PIL import Image
    rng = np.random.default_rng(seed)
    k = 0
    for cls in classes:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for _ in range(per_class):
            yy, xx = np.mgrid[0:96, 0:120]
            f = rng.uniform(0.02, 0.1, 3)
            img = np.stack([128 + 100 * np.sin(f[c] * (xx + 2 * yy) + c) for c in range(3)], -1)
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / cls / f"ILSVRC2012_val_{k:08d}.JPEG", quality=92)
            k += 1


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    _photos(root, ["cats", "dogs"], 3)
    return root


def _main(capsys, *argv):
    code = robustness.main([*argv, "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_timm_model_on_a_photo_folder_gets_alexnet_by_default(photos, tmp_path):
    """The issue's command: it exited 2 because the default baseline was the 28x28 zoo cnn."""
    proc = subprocess.run(
        [sys.executable, "-m", "probe.robustness", "--model", "timm:mixer_b16_224", "--weights",
         "random", "--data", f"imagefolder:{photos}", "--n", "4", "--attacks", "none",
         "--corruptions", "contrast", "--no-heatmap", "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.rglob("robustness.json")
    result = json.loads(path.read_text())
    assert result["baseline"] == "alexnet"
    assert result["baseline_weights"].startswith("published")
    expected, _, _ = mce.alexnet_mce(result["corruptions"], result["clean_accuracy_corrupted"])
    assert result["mce"] == pytest.approx(expected) and result["mce"] > 0
    assert len(list(tmp_path.rglob("baseline.units.json"))) == 0       # no baseline model run


def test_baseline_of_another_input_size_is_one_error_line(photos, tmp_path, capsys):
    code, lines = _main(capsys, "--model", TINY, "--weights", "random", "--data",
                        f"imagefolder:{photos}", "--n", "2", "--attacks", "none", "--corruptions",
                        "contrast", "--baseline", "cnn", "--out", str(tmp_path))
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], lines
    assert "cnn takes 1x28x28" in errors[0] and "--baseline alexnet" in errors[0]
    assert "--baseline none" in errors[0]


@pytest.mark.parametrize("argv,message", [
    (["--baseline", "alexnet", "--severities", "3"], "needs severities 1,2,3,4,5"),
    (["--corruptions-from", "/data/imagenet-c"], "--corruptions-from takes imagenet-c:PATH"),
    (["--amp-attacks"], "--amp-attacks needs --amp bf16"),
    (["--baseline", "alexnett"], "unknown model 'alexnett'"),
])
def test_option_errors_before_work(argv, message, tmp_path, capsys):
    code, lines = _main(capsys, "--model", "fnet", *argv, "--out", str(tmp_path))
    assert code == 2 and len(lines) == 1 and message in lines[0], lines


def test_default_alexnet_with_a_subset_of_severities_is_refused(photos, tmp_path, capsys):
    code, lines = _main(capsys, "--model", TINY, "--weights", "random", "--data",
                        f"imagefolder:{photos}", "--corruptions", "fog", "--severities", "1,3",
                        "--out", str(tmp_path))
    assert code == 2 and lines[-1].startswith("error: --baseline alexnet needs severities"), lines
    assert not list(tmp_path.rglob("*.json"))


def test_baseline_none_skips_mce(tmp_path):
    cfg = RunConfig(model="fnet", n=12, attacks=[], corruptions=["contrast"], severities=[2],
                    heatmap=False, baseline="none")
    result = robustness.run(cfg, out=tmp_path, progress=False)
    assert result["baseline"] == "none" and result["mce"] is None and result["corruptions"]
    assert not (tmp_path / "fashion-mnist" / "cnn").exists()


@pytest.fixture(scope="module")
def imagenet_c(tmp_path_factory):
    """A clean ``val`` folder and its ImageNet-C copy: contrast/1 holds the clean files
    themselves, the other cells changed images. Each file sits in the wnid folder of the
    model's prediction on its clean image, so clean accuracy is 1 and contrast/1 too."""
    from PIL import Image, ImageEnhance
    from timm.data import ImageNetInfo
    model = zoo.load(TINY, weights="random")
    root = tmp_path_factory.mktemp("inet")
    staging, val = root / "staging", root / "val"
    _photos(staging, ["n01440764"], 6, seed=1)
    transform = data.model_transform(model)
    wnids = ImageNetInfo().label_names()
    for f in sorted((staging / "n01440764").iterdir()):
        with Image.open(f) as im, torch.no_grad():
            pred = int(model(transform(im)[None]).argmax(1))
        (val / wnids[pred]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, val / wnids[pred] / f.name)
    changes = {("contrast", 1): None, ("contrast", 2): ("Contrast", 0.3),
               ("fog", 1): ("Brightness", 1.6), ("fog", 2): ("Color", 0.0)}
    for (corruption, severity), change in changes.items():
        for f in val.rglob("*.JPEG"):
            dest = root / "c" / corruption / str(severity) / f.parent.name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if change is None:
                shutil.copy(f, dest)
            else:
                with Image.open(f) as im:
                    getattr(ImageEnhance, change[0])(im).enhance(change[1]).save(dest, quality=80)
    return model, val, root / "c"


def _plain_accuracy(model, folder: Path) -> float:
    """Accuracy on a wnid folder with a plain loop: PIL, the model's transform, argmax."""
    from PIL import Image
    from timm.data import ImageNetInfo
    index = {w: i for i, w in enumerate(ImageNetInfo().label_names())}
    transform = data.model_transform(model)
    correct = total = 0
    for f in sorted(folder.rglob("*.JPEG")):
        with Image.open(f) as im, torch.no_grad():
            correct += int(model(transform(im)[None]).argmax(1)) == index[f.parent.name]
        total += 1
    return correct / total


def test_corruptions_from_reads_premade_imagenet_c(imagenet_c, tmp_path):
    model, val, premade = imagenet_c
    cfg = RunConfig(model=TINY, weights="random", data=f"imagenet:{val}", n=6, attacks=[],
                    corruptions=["contrast", "fog"], severities=[1, 2], heatmap=False,
                    baseline="none", corruptions_from=f"imagenet-c:{premade}")
    result = robustness.run(cfg, out=tmp_path, progress=False)
    got = {(r["corruption"], r["severity"]): r["accuracy"] for r in result["corruptions"]}
    assert got[("contrast", 1)] == 1.0                      # the clean files, clean predictions
    for (corruption, severity), accuracy in got.items():
        assert accuracy == pytest.approx(
            _plain_accuracy(model, premade / corruption / str(severity))), (corruption, severity)
    assert result["corruptions_from"] == f"imagenet-c:{premade}"


def test_corruptions_from_names_missing_cells(imagenet_c, tmp_path):
    _, val, premade = imagenet_c
    cfg = RunConfig(model=TINY, weights="random", data=f"imagenet:{val}", n=6, attacks=[],
                    corruptions=["contrast", "snow"], severities=[1, 5], heatmap=False,
                    baseline="none", corruptions_from=f"imagenet-c:{premade}")
    with pytest.raises(ValueError, match=r"lacks contrast/5, snow/1, snow/5 \(it holds contrast, "
                                         r"fog\); pass --corruptions and --severities"):
        robustness.run(cfg, out=tmp_path, progress=False)


def test_amp_bf16_is_close_to_fp32_and_leaves_attacks_alone(tmp_path):
    base = dict(model="mixer", n=60, n_attack=10, attacks=["fgsm"], epsilons=[0.0, 0.05],
                corruptions=["contrast"], severities=[3], heatmap=True, n_heatmap=4,
                heatmap_size=5, baseline="none")
    fp32 = robustness.run(RunConfig(**base), out=tmp_path / "fp32", progress=False)
    bf16 = robustness.run(RunConfig(**base, amp="bf16"), out=tmp_path / "bf16", progress=False)
    assert fp32["amp"] == "none" and bf16["amp"] == "bf16" and bf16["amp_attacks"] is False
    assert bf16["clean_accuracy"] == pytest.approx(fp32["clean_accuracy"], abs=0.03)
    assert bf16["corruptions"][0]["accuracy"] == pytest.approx(
        fp32["corruptions"][0]["accuracy"], abs=0.05)
    assert bf16["adversarial"] == fp32["adversarial"]       # attacks stay fp32 without --amp-attacks
    both = robustness.run(RunConfig(**{**base, "corruptions": [], "heatmap": False}, amp="bf16",
                                    amp_attacks=True), out=tmp_path / "both", progress=False)
    assert both["amp_attacks"] is True
    assert both["adversarial"][1]["robust_accuracy"] <= both["adversarial"][0]["robust_accuracy"]
