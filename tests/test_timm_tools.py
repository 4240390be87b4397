"""Every tool on the timm models researchers use, at 224 px: mixing, attribution, CLIs, uploads.

Families: MLP-Mixer (``mixer_b16_224``), ResMLP (``resmlp_12_224``), gMLP (``gmlp_s16_224``),
ViT/DeiT (``vit_base_patch16_224``, ``deit_small_patch16_224``, the distilled DeiT with its
distillation token, DINOv2 with a class token and 4 registers, and the average-pooled
ViT with 4 registers and no class token) and ResNet (``resnet18``, ``resnet50``).

Nothing is downloaded: models have random weights and reduced depth (2 blocks; ResNets one
block per stage), built with ``timm.create_model`` and wrapped in :class:`probe.zoo.ProbeModel`
as :func:`probe.zoo.load` does. Every model runs at 224 px but ``resnet18``, probed at 64 px on
all four stages (conv Jacobians of every stage at 224 px take seconds; ``resnet50`` covers
224 px on its last stage). timm zero-initialises the Mixer-style heads, so a random head
(std 0.02) replaces every classifier: the gradient checks could not fail otherwise. The CLIs
run in-process through the real ``zoo.load`` path, ``timm.create_model`` asked for 2 blocks.
"""
import io
import json
from typing import Callable, Dict, NamedTuple, Tuple

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from probe import attribution, data, hooks, mixing, perturbations, registry, zoo

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks")
SIZE = 224
BLOCKS = 2


class Spec(NamedTuple):
    """What a timm architecture looks like to the tools (known by hand, not asked of the model)."""

    family: str
    kind: str
    prefix: int                 # class + distillation + register tokens
    grid: Tuple[int, int]       # patch grid (conv: the last stage's output grid)
    heads: int
    cam_layer: str
    readout: str                # rows rollout reads: "class", "class+dist" or "patches"
    create: Dict[str, object]   # create_model options; none: build and keep BLOCKS blocks
    size: int = SIZE            # input side in pixels


_LAST = f"net.blocks.{BLOCKS - 1}"
ARCHS = {
    "mixer_b16_224": Spec("mixer", "token-mlp", 0, (14, 14), 1, _LAST, "", {}),
    "resmlp_12_224": Spec("resmlp", "token-linear", 0, (14, 14), 1, _LAST, "", {}),
    "gmlp_s16_224": Spec("gmlp", "spatial-gating", 0, (14, 14), 1, _LAST, "", {}),
    "vit_base_patch16_224": Spec("vit", "attention", 1, (14, 14), 12, f"{_LAST}.norm1", "class",
                                 {"depth": BLOCKS}),
    "deit_small_patch16_224": Spec("vit", "attention", 1, (14, 14), 6, f"{_LAST}.norm1", "class",
                                   {"depth": BLOCKS}),
    "deit_small_distilled_patch16_224": Spec("vit", "attention", 2, (14, 14), 6, f"{_LAST}.norm1",
                                             "class+dist", {"depth": BLOCKS}),
    "vit_small_patch14_reg4_dinov2": Spec("vit", "attention", 5, (16, 16), 6, f"{_LAST}.norm1",
                                          "class", {"depth": BLOCKS, "img_size": SIZE}),
    "vit_base_patch16_reg4_gap_256": Spec("vit", "attention", 4, (14, 14), 12, f"{_LAST}.norm1",
                                          "patches", {"depth": BLOCKS, "img_size": SIZE}),
    "resnet18": Spec("cnn", "conv", 0, (2, 2), 1, "net.layer4", "", {"layers": (1, 1, 1, 1)}, 64),
    "resnet50": Spec("cnn", "conv", 0, (7, 7), 1, "net.layer4", "", {"layers": (1, 1, 1, 1)}),
}
VIT = [a for a, s in ARCHS.items() if s.family == "vit"]
ONE_PER_FAMILY = ["mixer_b16_224", "resmlp_12_224", "gmlp_s16_224", "vit_small_patch14_reg4_dinov2",
                  "deit_small_distilled_patch16_224", "resnet50"]


def _wrap(net: nn.Module, arch: str, size: int = SIZE) -> zoo.ProbeModel:
    cfg = net.pretrained_cfg
    return zoo.ProbeModel(net, name=f"timm:{arch}", family=registry.timm_family(net),
                          input_size=(3, size, size), classes=[str(i) for i in range(1000)],
                          mean=cfg["mean"], std=cfg["std"]).eval()


def _build(arch: str) -> zoo.ProbeModel:
    spec = ARCHS[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = timm.create_model(arch, pretrained=False, num_classes=1000, **spec.create)
        if not spec.create:
            net.blocks = net.blocks[:BLOCKS]
        heads = net.get_classifier()
        for head in heads if isinstance(heads, tuple) else (heads,):
            nn.init.normal_(head.weight, std=0.02)
    return _wrap(net, arch, spec.size)


@pytest.fixture(scope="module")
def built() -> Callable[[str], zoo.ProbeModel]:
    """``built(arch)``: the reduced model, built once per module."""
    cache: Dict[str, zoo.ProbeModel] = {}

    def get(arch: str) -> zoo.ProbeModel:
        if arch not in cache:
            cache[arch] = _build(arch)
        return cache[arch]

    return get


def _images(arch: str, n: int = 2) -> torch.Tensor:
    size = ARCHS[arch].size
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _fused_flags(model: nn.Module) -> dict:
    modules = hooks.attention_modules(model)
    return {n: m.__dict__.get("fused_attn", "unset") for n, m in modules.items()}


def _no_hooks_left(model: nn.Module) -> None:
    for name, m in model.named_modules():
        for attr in _HOOK_DICTS:
            assert not getattr(m, attr), f"{name or 'model'} keeps {attr}: {getattr(m, attr)}"


# ----------------------------------------------------------------------------- families


@pytest.mark.parametrize("arch", ARCHS)
def test_family_is_recognised_with_its_grad_cam_layer(arch, built):
    spec, model = ARCHS[arch], built(arch)
    assert registry.timm_family(model.net) == spec.family == model.family
    assert zoo.family_of(model).mixing_kind == spec.kind
    assert attribution.grad_cam_layer(model) == spec.cam_layer
    assert attribution.METHODS["attention_rollout"].applies(model) == (spec.family == "vit")
    assert int(getattr(model.net, "num_prefix_tokens", 0)) == spec.prefix


def test_other_timm_architectures_get_the_generic_paths():
    """An attention model that is no timm ViT is not "vit" (rollout would read wrong tokens)."""
    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, depths=(1, 1, 1, 1))
    assert registry.timm_family(swin) == "timm"
    assert registry.timm_family(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())) == "cnn"
    assert registry.timm_family(nn.Linear(3, 4)) == "timm"


# ----------------------------------------------------------------------------- mixing


@pytest.mark.parametrize("arch", ARCHS)
def test_extract_kind_grid_and_prefix_tokens(arch, built):
    spec, model, x = ARCHS[arch], built(arch), _images(arch)
    found = mixing.layers(model)
    assert {f.kind for f in found} == {spec.kind}
    assert len(found) == (4 if spec.kind == "conv" else BLOCKS)
    fused = _fused_flags(model)
    last_only = spec.kind == "conv" and spec.size == SIZE       # conv Jacobians at 224 px: slow
    maps = mixing.extract(model, x, layers=[-1] if last_only else None)
    _no_hooks_left(model)
    assert _fused_flags(model) == fused
    modules = dict(model.named_modules())
    assert [m.layer for m in maps] == [f.layer for f in found][-len(maps):]
    last = maps[-1]
    assert last.grid == spec.grid and last.prefix_tokens == spec.prefix
    t = spec.prefix + spec.grid[0] * spec.grid[1]
    for m in maps:
        assert m.kind == spec.kind and m.layer in modules and m.image_size == (spec.size,) * 2
        assert torch.isfinite(m.matrix).all() and m.matrix.abs().sum() > 0
        if spec.kind != "conv":
            assert m.grid == spec.grid and m.prefix_tokens == spec.prefix
            b = 1 if m.static else len(x)
            assert tuple(m.matrix.shape) == (b, spec.heads, t, t), arch
        if spec.kind == "attention":
            rows = m.matrix.sum(-1)
            torch.testing.assert_close(rows, torch.ones_like(rows))
    if spec.kind == "conv":                        # 4x4 -> 2x2 (64 px), 14x14 -> 7x7 (224 px)
        side = spec.grid[0]
        assert last.layer == "net.layer4" and last.in_grid == (2 * side, 2 * side)
        assert tuple(last.matrix.shape) == (len(x), 1, side * side, 4 * side * side)
    if not last_only and spec.kind == "conv":
        assert [m.grid for m in maps] == [(16, 16), (8, 8), (4, 4), (2, 2)]
        assert [m.in_grid for m in maps] == [(16, 16), (16, 16), (8, 8), (4, 4)]


# ----------------------------------------------------------------------------- attribution


@pytest.mark.parametrize("arch", ARCHS)
def test_grad_cam_at_input_size(arch, built):
    model, x = built(arch), _images(arch)
    target = torch.tensor([1, 2])
    maps = attribution.attribute(model, x, target, "grad_cam")
    _no_hooks_left(model)
    assert maps.shape == (2, *x.shape[-2:]) and torch.isfinite(maps).all() and (maps >= 0).all()
    signed = attribution.attribute(model, x, target, "grad_cam", relu=False)
    assert (signed.abs().amax(dim=(1, 2)) > 0).all(), "the Grad-CAM layer gets no gradient"
    _no_hooks_left(model)


@pytest.mark.parametrize("arch", VIT)
def test_grad_cam_drops_every_prefix_token(arch, built):
    """Grad-CAM by hand on the spec's layer: the spec's prefix count dropped, rest on the grid."""
    spec, model, x = ARCHS[arch], built(arch), _images(arch, 1)
    target = torch.tensor([3])
    module = dict(model.named_modules())[spec.cam_layer]
    store = {}
    handle = module.register_forward_hook(lambda mod, args, out: store.setdefault("act", out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    act = store["act"]
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), act)
    act, grad = (v[:, spec.prefix:].reshape(1, *spec.grid, -1).detach() for v in (act, grad))
    cam = (act * grad.mean(dim=(1, 2), keepdim=True)).sum(-1).clamp(min=0)
    expected = F.interpolate(cam[:, None], size=(SIZE, SIZE), mode="bilinear",
                             align_corners=False)[:, 0]
    got = attribution.attribute(model, x, target, "grad_cam")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("arch", VIT)
def test_rollouts_read_the_classifier_tokens(arch, built):
    """attention_rollout by hand: 0.5 I + 0.5 mean-head attention, renormalised, multiplied
    over layers; the rows of the tokens the head reads (class, class + distillation, or the
    patch tokens of an average-pooled model); every prefix column dropped. grad_rollout:
    a non-negative map at the input size."""
    spec, model, x = ARCHS[arch], built(arch), _images(arch)
    fused = _fused_flags(model)
    with hooks.capture_attention(model) as probs, torch.no_grad():
        model(x)
    rollout = None
    for name in hooks.attention_modules(model):
        a = probs[name].mean(1)
        a = 0.5 * torch.eye(a.shape[-1]) + 0.5 * a
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    rows = {"class": slice(0, 1), "class+dist": slice(0, 2), "patches": slice(spec.prefix, None)}
    row = rollout[:, rows[spec.readout]].mean(1)[:, spec.prefix:].reshape(2, *spec.grid)
    expected = F.interpolate(row[:, None], size=(SIZE, SIZE), mode="bilinear",
                             align_corners=False)[:, 0]
    got = attribution.attribute(model, x, None, "attention_rollout")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    _no_hooks_left(model)
    maps = attribution.attribute(model, x, torch.tensor([1, 2]), "grad_rollout")
    assert maps.shape == (2, SIZE, SIZE)
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.amax() > 0
    _no_hooks_left(model)
    assert _fused_flags(model) == fused


@pytest.mark.parametrize("arch", ONE_PER_FAMILY)
def test_no_hook_survives_a_failing_forward(arch, built, monkeypatch):
    """Every tool, with a forward pass that raises after all hooked modules ran."""
    model, images = built(arch), _images(arch, 1)
    fused = _fused_flags(model)

    def broken(*args, **kwargs):
        raise RuntimeError("head exploded")

    monkeypatch.setattr(model.net, "forward_head", broken)
    tools = [lambda: attribution.attribute(model, images, 0, "grad_cam"),
             lambda: attribution.attribute(model, images, 0, "saliency")]
    if ARCHS[arch].kind in mixing.STATIC_KINDS:      # read from the weights: no forward pass
        assert len(mixing.extract(model, images)) == BLOCKS
    else:
        tools.append(lambda: mixing.extract(model, images, layers=[-1]))
    if ARCHS[arch].family == "vit":
        tools += [lambda: attribution.attribute(model, images, 0, "attention_rollout"),
                  lambda: attribution.attribute(model, images, 0, "grad_rollout")]
    for tool in tools:
        with pytest.raises(RuntimeError, match="head exploded"):
            tool()
        _no_hooks_left(model)
        assert _fused_flags(model) == fused


# ----------------------------------------------------------------------------- CLIs and uploads


@pytest.fixture()
def shallow_vit(monkeypatch):
    """``timm.create_model`` building ViTs 2 blocks deep, so the CLIs' own ``zoo.load`` runs fast."""
    create = timm.create_model

    def shallow(*args, **kwargs):
        return create(*args, depth=BLOCKS, **kwargs)

    monkeypatch.setattr(timm, "create_model", shallow)


@pytest.mark.usefixtures("shallow_vit")
def test_mixing_cli_on_a_distilled_deit(tmp_path):
    name = "timm:deit_small_distilled_patch16_224"
    rc = mixing.main(["--model", name, "--weights", "random", "--n", "1", "--out", str(tmp_path)])
    assert rc == 0
    folder = tmp_path / "fashion-mnist" / "timm-deit_small_distilled_patch16_224"
    record = json.loads((folder / "mixing.json").read_text())
    assert record["model"] == name and record["family"] == "vit" and record["weights"] == "random"
    assert [(r["kind"], r["grid"], r["prefix_tokens"], r["heads"]) for r in record["layers"]] == \
        [("attention", [14, 14], 2, 6)] * BLOCKS
    assert all((folder / f).stat().st_size > 0 for f in ("mixing_templates.pdf",
                                                         "mixing_over_image.pdf"))


@pytest.mark.usefixtures("shallow_vit")
def test_attribution_cli_on_deit(tmp_path, capsys):
    name = "timm:deit_small_patch16_224"
    rc = attribution.main(["--model", name, "--weights", "random", "--n", "2", "--method",
                           "grad_cam", "--method", "attention_rollout", "--n-eval", "1",
                           "--steps", "4", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "fashion-mnist"
    record = json.loads((out / "timm-deit_small_patch16_224" / "attribution.json").read_text())
    assert record["model"] == name and record["weights"] == "random" and record["n"] == 1
    assert set(record["methods"]) == {"grad_cam", "attention_rollout"}
    assert (out / "attribution_grid.pdf").read_bytes().startswith(b"%PDF")


def test_uploaded_photo_is_fitted_at_224_px(built):
    """What the app does with an upload: read at the largest chosen input size, fitted per model."""
    from PIL import Image
    buf = io.BytesIO()
    pixels = torch.randint(0, 256, (300, 200, 3), generator=torch.Generator().manual_seed(2))
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(buf, format="PNG")
    model = built("gmlp_s16_224")
    photo = data.load_upload(buf.getvalue(), model.input_size)
    assert photo.shape == (1, 3, SIZE, SIZE) and 0 <= float(photo.min()) <= float(photo.max()) <= 1
    res = perturbations.analyse_input(model, photo)
    assert torch.equal(res.x, photo) and len(res.maps) == len(res.summary) == BLOCKS
    assert res.maps[0].grid == (14, 14) and res.summary[0]["grid"] == [14, 14]
    small = perturbations.analyse_input(zoo.load("mixer", weights="random"), photo)
    assert small.x.shape == (1, 1, 28, 28) and small.maps[0].grid == (7, 7)
