"""The ImageNet path on data and weights the tests make themselves: WordNet-id folders,
timm's eval transform, streaming subsets, ImageNet-C cells, pretrained / file / random weights
and their provenance in results and figures."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probe import cli, data, plots_robustness, robustness, zoo

ARCH = "timm:test_vit"              # timm's small test ViT: 160 px, crop_pct 0.95, bicubic
TAG = "test_vit.r160_in1k"          # its default pretrained tag
HUB_REPO = "models--timm--" + TAG
CLI_ARCH, CLI_TAG = "timm:vit_tiny_patch16_224", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
# tench (index 0), goldfish (1) and toilet tissue (999, the last class)
WNIDS = {"n01440764": 0, "n01443537": 1, "n15075141": 999}
SIZES = [(300, 240), (180, 320), (256, 256), (500, 200), (230, 230), (260, 390)]
ROOT = Path(__file__).resolve().parents[1]


def _photo(rng: np.random.Generator, size) -> "object":
    """A JPEG-able RGB image with smooth structure and noise (sizes and aspect ratios vary)."""
    from PIL import Image
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    freq = rng.uniform(0.01, 0.08, 3)
    base = np.stack([128 + 100 * np.sin(freq[c] * (xx + 2 * yy) + c) for c in range(3)], -1)
    arr = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _write_classes(folder: Path, rng: np.random.Generator, *, per_class: int = 2) -> None:
    k = 0
    for wnid in WNIDS:
        (folder / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _photo(rng, SIZES[k % len(SIZES)]).save(folder / wnid / f"ILSVRC2012_val_{k:08d}.JPEG",
                                                    quality=90)
            k += 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet") / "val"
    _write_classes(root, np.random.default_rng(0))
    (root / "n01440764" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def vit():
    return zoo.load(ARCH, weights="random", seed=0)


@pytest.fixture(scope="module")
def checkpoint(vit, tmp_path_factory) -> Path:
    """The random ViT's state dict as a float32 safetensors file."""
    from safetensors.torch import save_file
    path = tmp_path_factory.mktemp("ckpt") / "test_vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.net.state_dict().items()}, str(path))
    return path


# ----------------------------------------------------------------------------- data


def test_wnid_folders_get_imagenet_indices(folder):
    ds = data.load(f"imagenet:{folder}", "test")
    assert isinstance(ds, data.FolderDataset) and len(ds) == 6
    assert ds.labels.tolist() == [0, 0, 1, 1, 999, 999]
    assert len(ds.classes) == 1000 and ds.classes[0].startswith("tench")
    assert ds.classes[999].startswith("toilet tissue")
    assert ds.input_size == (3, 224, 224)                  # timm's default eval transform
    # the test split of imagenet:<root> is <root>/val
    assert data.load(f"imagenet:{folder.parent}", "test").files == ds.files


def test_unknown_class_folder_is_a_one_line_error(tmp_path):
    _write_classes(tmp_path, np.random.default_rng(1), per_class=1)
    (tmp_path / "cats").mkdir()
    _photo(np.random.default_rng(2), (64, 64)).save(tmp_path / "cats" / "a.jpg")
    with pytest.raises(ValueError, match=r"class folder 'cats' is not an ImageNet-1k WordNet id.*"
                                         r"like n01440764") as err:
        data.load(f"imagenet:{tmp_path}", "test")
    assert "\n" not in str(err.value)
    ds = data.load(f"imagefolder:{tmp_path}", "test")        # any names as imagefolder
    assert ds.classes == ["cats", *WNIDS] and ds.labels.tolist() == [0, 1, 2, 3]


def test_subset_is_chosen_before_decoding(folder, monkeypatch):
    from PIL import Image
    opened = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(Path(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    everything = data.load(f"imagenet:{folder}", "test")
    ds = data.load(f"imagenet:{folder}", "test", n=2, seed=1)
    assert opened == []                                   # listing and subsetting decode nothing
    picked = torch.randperm(6, generator=torch.Generator().manual_seed(1))[:2].sort().values
    assert ds.files == [everything.files[i] for i in picked]
    x, y = data.as_tensors(ds)
    assert opened == ds.files and x.shape == (2, 3, 224, 224)
    assert y.tolist() == [int(everything.labels[i]) for i in picked]


def test_timm_transform_is_timms_without_normalize(vit, folder):
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config
    from torchvision import transforms
    ours = data.timm_transform(vit)
    assert not any(isinstance(t, transforms.Normalize) for t in ours.compose.transforms)
    config = resolve_model_data_config(vit.net)
    assert config["crop_pct"] == 0.95 and config["interpolation"] == "bicubic"
    theirs = create_transform(**config)
    normalize = theirs.transforms[-1]
    assert isinstance(normalize, transforms.Normalize)
    for f in sorted(folder.glob("*/*.JPEG"))[:3]:
        with Image.open(f) as im:
            x = ours(im)
            expected = theirs(im.convert("RGB"))
        assert x.shape == (3, 160, 160) and float(x.min()) >= 0 and float(x.max()) <= 1
        assert torch.allclose(normalize(x), expected, atol=1e-6)


def test_predictions_equal_a_plain_timm_loop(vit, folder):
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config
    ds = data.load(f"imagenet:{folder}", "test", model=vit)
    x, y = data.as_tensors(ds)
    assert x.shape == (6, 3, 160, 160) and 0 <= float(x.min()) and float(x.max()) <= 1
    with torch.no_grad():
        ours = vit(x)
    transform = create_transform(**resolve_model_data_config(vit.net))
    reference = []
    with torch.no_grad():
        for wnid in sorted(WNIDS):
            for f in sorted((folder / wnid).glob("*.JPEG")):
                with Image.open(f) as im:
                    reference.append(vit.net(transform(im.convert("RGB"))[None])[0])
    reference = torch.stack(reference)
    assert torch.allclose(ours, reference, atol=1e-5)
    assert torch.equal(ours.argmax(1), reference.argmax(1))
    batches = list(data.loader(ds, batch_size=4, workers=1))   # the streaming path, one worker
    assert torch.equal(torch.cat([b[0] for b in batches]), x)
    assert torch.cat([b[1] for b in batches]).tolist() == y.tolist()


def test_zoo_models_keep_their_28px_path(folder):
    ds = data.load(f"imagenet:{folder}", "test", model=zoo.load("mixer"))
    x, y = data.as_tensors(ds)
    assert x.shape == (6, 1, 28, 28) and y.tolist() == [0, 0, 1, 1, 999, 999]


def test_imagenet_c_layout(tmp_path, folder):
    rng = np.random.default_rng(3)
    cells = [("fog", 2), ("gaussian_noise", 3), ("gaussian_noise", 1)]
    for corruption, severity in cells:
        _write_classes(tmp_path / corruption / str(severity), rng)
    (tmp_path / "fog" / "README").write_text("not a severity folder")
    assert data.imagenet_c_cells(tmp_path) == [("gaussian_noise", 1), ("gaussian_noise", 3),
                                               ("fog", 2)]          # ImageNet-C order
    ds = data.imagenet_c(tmp_path, "fog", 2)
    assert ds.cell == ("fog", 2) and ds.labels.tolist() == [0, 0, 1, 1, 999, 999]
    sub = data.imagenet_c(tmp_path, "fog", 2, n=3, seed=0)
    assert len(sub) == 3 and sub.cell == ("fog", 2)
    clean = data.load(f"imagenet:{folder}", "test", n=3, seed=5)
    same = data.imagenet_c(tmp_path, "gaussian_noise", 3, like=clean)
    assert same.relative_files() == clean.relative_files()
    assert torch.equal(same.labels, clean.labels)
    with pytest.raises(FileNotFoundError, match="contrast severity 5 not found.*3 cells present"):
        data.imagenet_c(tmp_path, "contrast", 5)
    with pytest.raises(ValueError, match=r"data.imagenet_c\(path, corruption, severity\)"):
        data.load(f"imagenet-c:{tmp_path}", "test")


# ----------------------------------------------------------------------------- weights


def test_weights_path_gives_the_saved_models_outputs(vit, checkpoint):
    loaded = zoo.load(ARCH, weights=checkpoint)
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), vit(x))
    other = zoo.load(ARCH, weights="random", seed=1)
    with torch.no_grad():
        assert not torch.allclose(other(x), vit(x))
    assert loaded.weights_info == {"kind": "file", "source": str(checkpoint),
                                   "sha256": zoo.sha256_file(checkpoint)}
    assert zoo.describe_weights(loaded).startswith(
        f"file test_vit.safetensors (sha256 {zoo.sha256_file(checkpoint)[:12]}")


def _resmlp_original_keys(state: dict) -> dict:
    """timm's ResMLP state dict renamed and reshaped to the authors' (facebookresearch/deit) format."""
    out = {}
    for k, v in state.items():
        k = (k.replace("stem.", "patch_embed.").replace("linear_tokens.", "attn.")
             .replace("mlp_channels.", "mlp.").replace(".ls1", ".gamma_1").replace(".ls2", ".gamma_2"))
        out[k] = v.reshape(-1) if k.endswith((".alpha", ".beta")) else v
    return out


def test_original_checkpoint_goes_through_timms_filter(tmp_path):
    ref = zoo.load("timm:resmlp_12_224", weights="random", seed=2)
    original = _resmlp_original_keys(ref.net.state_dict())
    assert "patch_embed.proj.weight" in original and original["norm.alpha"].ndim == 1
    torch.save({"model": original}, tmp_path / "resmlp_12_no_dist.pth")
    loaded = zoo.load("timm:resmlp_12_224", weights=tmp_path / "resmlp_12_no_dist.pth")
    expected = ref.net.state_dict()               # equal weights: equal outputs (no 224-px forward)
    assert all(torch.equal(v, expected[k]) for k, v in loaded.net.state_dict().items())
    assert loaded.weights_info["kind"] == "file"
    broken = dict(list(original.items())[:-4])               # no filter can complete this one
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(zoo.WeightsFileError, match="do not fit timm:resmlp_12_224.*checkpoint "
                                                   "filter.*does not convert them") as err:
        zoo.load("timm:resmlp_12_224", weights=tmp_path / "broken.pth")
    assert "\n" not in str(err.value)


def _fake_hub_cache(hub: Path, checkpoint: Path) -> Path:
    """A Hugging Face cache holding ``checkpoint`` as timm's pretrained file of test_vit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = hub / HUB_REPO / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (hub / HUB_REPO / "refs").mkdir()
    (hub / HUB_REPO / "refs" / "main").write_text(commit)
    target = snapshot / "model.safetensors"
    target.write_bytes(checkpoint.read_bytes())
    return target


def test_pretrained_is_the_default_and_loads_offline_from_the_cache(vit, checkpoint, tmp_path,
                                                                     monkeypatch):
    from huggingface_hub import constants
    cached = _fake_hub_cache(tmp_path / "hub", checkpoint)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = zoo.load(ARCH)
    assert model.weights_info == {"kind": "pretrained", "source": TAG,
                                  "sha256": zoo.sha256_file(cached)}
    assert zoo.describe_weights(model).startswith(f"pretrained timm {TAG}")
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), vit(x))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="--weights PATH.*--weights random"):
        zoo.load(ARCH, weights="pretrained")


def test_weights_keywords_per_kind_of_model():
    with pytest.raises(ValueError, match="no shipped weights.*pretrained.*PATH.*random"):
        zoo.load(ARCH, weights="shipped")
    with pytest.raises(ValueError, match="zoo family.*shipped"):
        zoo.load("mixer", weights="pretrained")
    mixer = zoo.load("mixer")
    assert mixer.weights_info["kind"] == "shipped"
    assert zoo.describe_weights(mixer) == f"shipped (sha256 {zoo.card('mixer')['sha256'][:12]}...)"
    assert zoo.describe_weights(zoo.load("mixer", weights=None, seed=4)) == "RANDOM init (seed 4)"


def test_default_without_pretrained_weights_exits_2_with_one_line(folder, tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf),
           "HUGGINGFACE_HUB_CACHE": str(hf / "hub"), "HF_HUB_CACHE": str(hf / "hub"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "probe.robustness", "--model", CLI_ARCH, "--data", f"imagenet:{folder}",
         "--n", "2", "--attacks", "none", "--corruptions", "none", "--no-heatmap",
         "--out", str(tmp_path / "runs"), "--no-progress"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "--weights PATH" in errors[0] and "--weights random" in errors[0] and CLI_TAG in errors[0]


def test_random_weights_are_labelled_in_json_csv_and_figures(folder, tmp_path, capsys):
    cfg = robustness.RunConfig(model=ARCH, data=f"imagenet:{folder}", n=4, n_attack=2,
                               weights="random", attacks=["fgsm"], epsilons=[0.0, 0.01],
                               corruptions=["contrast"], severities=[1], heatmap=False,
                               baseline="none")
    result = robustness.run(cfg, out=tmp_path, progress=False)
    assert "weights: RANDOM init (seed 0)" in capsys.readouterr().err
    assert plots_robustness.summary_table([result]).splitlines()[1].endswith("RANDOM init")
    folder_out = tmp_path / cli.safe_name(f"imagenet:{folder}") / cli.safe_name(ARCH)
    assert folder_out.parent.parent == tmp_path                # one folder for the dataset name
    stored = json.loads((folder_out / "robustness.json").read_text())
    assert stored["weights_info"] == {"kind": "random", "source": "seed 0", "sha256": None}
    lines = (folder_out / "robustness.csv").read_text().splitlines()
    assert lines[0].split(",")[-1] == "weights"
    assert all(line.endswith("RANDOM init (seed 0)") for line in lines[1:])
    assert result["weights_info"]["kind"] == "random"
    for make in (plots_robustness.robust_accuracy_figure, plots_robustness.corruption_figure,
                 plots_robustness.heatmap_figure):
        fig = make([result])
        assert fig._suptitle.get_text().endswith("[RANDOM init]"), make.__name__
    corruption_axes = plots_robustness.corruption_figure([result]).axes[0]
    assert corruption_axes.get_title().startswith(f"{ARCH} [RANDOM init]")
    trained = {**result, "model": "mixer", "weights_info": zoo.load("mixer").weights_info}
    title = plots_robustness.robust_accuracy_figure([result, trained])._suptitle.get_text()
    assert title.endswith(f"[{ARCH}: RANDOM init, mixer: shipped]")

