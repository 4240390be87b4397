"""Tests of probe.attribution: every method on every family, IG completeness,
deletion/insertion vs random order, randomisation sanity check, localisation,
error messages, the CLI and hook hygiene."""
import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from probe import attribution, data, hooks, train, zoo

# small settings that keep every method fast
FAST = {
    "integrated_gradients": dict(n_steps=8),
    "gradient_shap": dict(n_samples=4),
    "occlusion": dict(window=7, stride=7),
}


# every per-module hook dict of torch.nn.Module (a missing one fails: the check must not go vacuous)
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
               "_backward_pre_hooks")


def _no_hooks_left(model: nn.Module) -> None:
    for name, m in model.named_modules():
        for attr in _HOOK_DICTS:
            assert not getattr(m, attr), f"{name or 'model'} keeps {attr}: {getattr(m, attr)}"


def _fused_flags(model: nn.Module) -> dict:
    return {n: m.__dict__.get("fused_attn", "unset") for n, m in hooks.attention_modules(model).items()}


def _methods_for(model: nn.Module) -> list:
    return [m for m, spec in attribution.METHODS.items() if spec.applies(model)]


def _rollout_families() -> list:
    return [name for name, fam in zoo.families().items() if fam.rollout]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    """A tiny conv net trained on ``synthetic`` in about a second, and test images with masks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = data.load("synthetic", "train", n=768)
        x, y = data.as_tensors(ds)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(),
                            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 4))
        model = zoo.ProbeModel(net, name="tiny", family="tiny", input_size=(1, 28, 28),
                               classes=data.SYNTHETIC_CLASSES, mean=(0.5,), std=(0.25,))
        train.train(model, x, y, epochs=3, lr=1e-2, weight_decay=0.0, batch_size=64, seed=0,
                    progress=False)
        test = data.load("synthetic", "test", n=64)
        xt, yt = data.as_tensors(test)
        acc = train.evaluate(model, xt, yt)
        return model.eval(), xt, yt, test.masks, acc
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- every method x family


@pytest.mark.parametrize("family", zoo.names())
def test_every_method_gives_finite_pixel_maps(family):
    model = zoo.build(family).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    fused = _fused_flags(model)
    for method in _methods_for(model):
        maps = attribution.attribute(model, x, torch.tensor([1, 3]), method, **FAST.get(method, {}))
        assert maps.shape == (2, 28, 28), method
        assert torch.isfinite(maps).all(), method
        if not attribution.METHODS[method].signed:
            assert (maps >= 0).all(), method
        _no_hooks_left(model)
        assert _fused_flags(model) == fused, method
    assert not model.training


def test_alias_and_options():
    model = zoo.build("cnn").eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    a = attribution.attribute(model, x, 0, "ig", n_steps=8)
    b = attribution.attribute(model, x, 0, "integrated_gradients", n_steps=8,
                              internal_batch_size=5)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    s = attribution.attribute(model, x, 0, "input_x_gradient", channel_reduction="abs_sum")
    assert (s >= 0).all()


def test_training_mode_restored():
    model = zoo.build("cnn").train()
    attribution.attribute(model, torch.rand(2, 1, 28, 28), None, "saliency")
    assert all(m.training for m in model.modules())


# ----------------------------------------------------------------------------- errors


def test_rollouts_follow_the_family_registry():
    rollout = _rollout_families()
    assert rollout, "no zoo family is registered with rollout=True"
    for method in ("attention_rollout", "grad_rollout"):
        assert attribution.METHODS[method].families == tuple(rollout)
    for family in zoo.names():
        model = zoo.build(family)
        assert attribution.METHODS["grad_rollout"].applies(model) == (family in rollout)
        if family in rollout:
            continue
        for method in ("attention_rollout", "grad_rollout"):
            with pytest.raises(ValueError, match=rf"applies only to the families "
                                                 rf"{', '.join(rollout)}.*'{family}'"):
                attribution.attribute(model, torch.rand(1, 1, 28, 28), 0, method)


def test_register_method_checks_requires():
    with pytest.raises(ValueError, match="boolean flag of probe.zoo.Family.*rollout"):
        attribution.register_method("x", signed=False, description="x", requires="attention")
    with pytest.raises(ValueError, match="registered twice"):
        attribution.register_method("saliency", signed=False, description="x")(lambda m, x, t: x)


def test_unknown_method_lists_valid():
    with pytest.raises(ValueError, match=r"unknown attribution method 'lime'.*saliency.*grad_cam"):
        attribution.attribute(zoo.build("cnn"), torch.rand(1, 1, 28, 28), 0, "lime")


@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_wrong_shape_raises(shape):
    with pytest.raises(ValueError, match=r"expects images of shape \[B, 1, 28, 28\]"):
        attribution.attribute(zoo.build("cnn"), torch.rand(*shape), 0, "saliency")


def test_bad_options_and_targets():
    model, x = zoo.build("cnn"), torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="no option 'steps'.*n_steps"):
        attribution.attribute(model, x, 0, "ig", steps=4)
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 9\]"):
        attribution.attribute(model, x, 10, "saliency")
    with pytest.raises(ValueError, match="one class per image"):
        attribution.attribute(model, x, [1, 2, 3], "saliency")
    with pytest.raises(ValueError, match="head_fusion"):
        attribution.attribute(zoo.build("vit"), x, 0, "attention_rollout", head_fusion="median")
    with pytest.raises(ValueError, match="maps must be"):
        attribution.deletion_curve(model, x, 0, torch.rand(2, 27, 28))


class _Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


@pytest.mark.parametrize("family", zoo.names())
def test_hooks_removed_when_forward_raises(family):
    model = zoo.build(family).eval()
    assert isinstance(getattr(model.net, "head", None), nn.Module), f"{family} has no net.head"
    model.net.head = _Boom()
    fused = _fused_flags(model)
    methods = _methods_for(model)
    assert {"grad_cam", "saliency"} <= set(methods) or (
        not zoo.families()[family].gradcam and "saliency" in methods)
    for method in methods:
        with pytest.raises(RuntimeError, match="boom"):
            attribution.attribute(model, torch.rand(1, 1, 28, 28), 0, method, **FAST.get(method, {}))
        _no_hooks_left(model)
        assert _fused_flags(model) == fused, method


def test_hook_check_sees_every_kind_of_hook():
    """_no_hooks_left must catch each hook dict, so the tests above can fail."""
    for register in (lambda m: m.register_forward_hook(lambda *a: None),
                     lambda m: m.register_forward_hook(lambda *a: None, with_kwargs=True),
                     lambda m: m.register_forward_pre_hook(lambda *a: None),
                     lambda m: m.register_forward_pre_hook(lambda *a: None, with_kwargs=True),
                     lambda m: m.register_full_backward_hook(lambda *a: None),
                     lambda m: m.register_full_backward_pre_hook(lambda *a: None)):
        model = nn.Sequential(nn.Linear(2, 2))
        handle = register(model[0])
        with pytest.raises(AssertionError, match="keeps"):
            _no_hooks_left(model)
        handle.remove()
        _no_hooks_left(model)


# ----------------------------------------------------------------------------- rollout reference


def _reference_rollout(model, x, fusion):
    """Attention probabilities recomputed by hand from each block's weights, one image at a time."""
    net = model.net
    out = []
    for img in x:
        tokens = net._pos_embed(net.patch_embed(model.normalize(img[None])))
        tokens = net.norm_pre(tokens)
        rollout = None
        for blk in net.blocks:
            attn = blk.attn
            h = blk.norm1(tokens)
            b, n, c = h.shape
            qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
            q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
            probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)[0]      # [heads, T, T]
            fused = {"mean": probs.mean(0), "max": probs.max(0).values, "min": probs.min(0).values}[fusion]
            a = 0.5 * torch.eye(n) + 0.5 * fused
            a = a / a.sum(-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
            tokens = blk(tokens)
        out.append(rollout[0, 1:].reshape(7, 7))
    return torch.nn.functional.interpolate(torch.stack(out)[:, None], size=(28, 28), mode="bilinear",
                                           align_corners=False)[:, 0]


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_attention_rollout_matches_hand_computation(fusion):
    model = zoo.build("vit").eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    ours = attribution.attribute(model, x, None, "attention_rollout", head_fusion=fusion)
    with torch.no_grad():
        ref = _reference_rollout(model, x, fusion)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def _reference_grad_rollout(model, img, target):
    """Chefer et al. 2021 by hand for one image: blocks re-run manually, dy/dA by autograd."""
    net = model.net
    tokens = net.norm_pre(net._pos_embed(net.patch_embed(model.normalize(img[None]))))
    probs_by_layer = []
    for blk in net.blocks:
        attn = blk.attn
        h = blk.norm1(tokens)
        b, n, c = h.shape
        qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = attn.q_norm(qkv[0]), attn.k_norm(qkv[1]), qkv[2]
        probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)
        probs_by_layer.append(probs)
        o = attn.proj(attn.norm((probs @ v).transpose(1, 2).reshape(b, n, c)))
        tokens = tokens + blk.ls1(o)
        tokens = tokens + blk.ls2(blk.mlp(blk.norm2(tokens)))
    logit = net.forward_head(net.norm(tokens))[0, target]
    grads = torch.autograd.grad(logit, probs_by_layer)
    rel = torch.eye(n)
    for a, g in zip(probs_by_layer, grads):
        cam = (g * a).clamp(min=0)[0].mean(0)
        rel = rel + cam @ rel
    return torch.nn.functional.interpolate(rel[0, 1:].reshape(1, 1, 7, 7), size=(28, 28),
                                           mode="bilinear", align_corners=False)[0, 0]


def test_grad_rollout_matches_hand_computation():
    model = zoo.build("vit").eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    ours = attribution.attribute(model, x, torch.tensor([2, 7]), "grad_rollout")
    ref = torch.stack([_reference_grad_rollout(model, x[0], 2), _reference_grad_rollout(model, x[1], 7)])
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-4, atol=1e-6)


def test_grad_rollout_batched_and_class_specific():
    model = zoo.build("vit").eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    batched = attribution.attribute(model, x, torch.tensor([0, 1, 2]), "grad_rollout")
    single = torch.cat([attribution.attribute(model, x[i:i + 1], i, "grad_rollout") for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)
    other = attribution.attribute(model, x, torch.tensor([5, 6, 7]), "grad_rollout")
    assert not torch.allclose(batched, other)


def test_timm_vit_gets_rollouts_and_grad_cam_from_its_family():
    model = zoo.build("timm:vit_tiny_patch16_224").eval()
    family = zoo.family_of(model)
    assert family is not None and family.rollout, model.family
    x = torch.rand(1, *model.input_size, generator=torch.Generator().manual_seed(7))
    fused = _fused_flags(model)
    assert {"attention_rollout", "grad_rollout", "grad_cam"} <= set(_methods_for(model))
    for method in ("attention_rollout", "grad_rollout", "grad_cam"):
        maps = attribution.attribute(model, x, 3, method)
        assert maps.shape == (1, 224, 224), method
        assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.amax() > 0, method
        _no_hooks_left(model)
        assert _fused_flags(model) == fused, method


@pytest.mark.parametrize("family", [f for f in zoo.names() if zoo.families()[f].gradcam])
def test_grad_cam_layer_is_a_token_grid_that_reaches_the_head(family):
    """The registry's layer gives a 7x7 grid (after prefix tokens) with a non-zero gradient.

    Shipped weights: timm zero-initialises some heads, so a fresh build has no gradient at all.
    """
    model = zoo.load(family)
    layer = attribution.grad_cam_layer(model)
    assert layer == zoo.family_of(model).gradcam_layer(model)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    with hooks.capture(model, [layer], inputs=False) as cap, torch.no_grad():
        model(x)
    out = cap[layer].output
    prefix = int(getattr(model.net, "num_prefix_tokens", 0) or 0)
    assert (out.ndim == 4 and tuple(out.shape[-2:]) == (7, 7)) or \
        (out.ndim == 3 and out.shape[1] - prefix == 49), (layer, tuple(out.shape))
    signed = attribution.attribute(model, x, 0, "grad_cam", relu=False)
    assert (signed.abs().amax(dim=(1, 2)) > 0).all(), f"{layer} gets no gradient from the logits"


def test_grad_cam_layer_fallback_and_error():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 28 * 28, 10))
    plain = zoo.ProbeModel(net, name="plain", family="plain", input_size=(1, 28, 28),
                           classes=[str(i) for i in range(10)], mean=(0.5,), std=(0.25,))
    with pytest.raises(ValueError, match="no Grad-CAM layer known for 'plain'; pass layer="):
        attribution.grad_cam_layer(plain)
    for family in (f for f in zoo.names() if not zoo.families()[f].gradcam):   # the pure MLP
        with pytest.raises(ValueError, match=f"Grad-CAM does not apply to {family!r}"):
            attribution.grad_cam_layer(zoo.build(family))
    plain.net.stages = nn.Sequential(nn.Identity(), nn.Identity())
    assert attribution.grad_cam_layer(plain) == "net.stages.1"


def _reference_vit_grad_cam(model, x, target, block, relu):
    """Grad-CAM by hand on ``blocks[block].norm1``: blocks re-run manually, d logit / d tokens
    by autograd, channel weights = mean gradient over the 7x7 patch tokens (class token dropped)."""
    net = model.net
    tokens = net.norm_pre(net._pos_embed(net.patch_embed(model.normalize(x))))
    for blk in net.blocks[:block]:
        tokens = blk(tokens)
    blk = net.blocks[block]
    h = blk.norm1(tokens)
    tokens = tokens + blk.ls1(blk.attn(h))
    tokens = tokens + blk.ls2(blk.mlp(blk.norm2(tokens)))
    for blk in net.blocks[block + 1:]:
        tokens = blk(tokens)
    logits = net.forward_head(net.norm(tokens))
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), h)
    weights = grad[:, 1:].mean(1, keepdim=True)                        # [B, 1, C]
    cam = (weights * h[:, 1:]).sum(-1).reshape(-1, 7, 7)
    if relu:
        cam = cam.clamp(min=0)
    return torch.nn.functional.interpolate(cam[:, None], size=(28, 28), mode="bilinear",
                                           align_corners=False)[:, 0].detach()


def test_grad_cam_matches_hand_computation():
    model = zoo.build("vit").eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    target = torch.tensor([3, 8])
    last = len(model.net.blocks) - 1
    ours = attribution.attribute(model, x, target, "grad_cam")
    torch.testing.assert_close(ours, _reference_vit_grad_cam(model, x, target, last, relu=True),
                               rtol=1e-4, atol=1e-6)
    # another layer and no ReLU: a different map, with the negative evidence kept
    earlier = attribution.attribute(model, x, target, "grad_cam", layer="net.blocks.1.norm1",
                                    relu=False)
    torch.testing.assert_close(earlier, _reference_vit_grad_cam(model, x, target, 1, relu=False),
                               rtol=1e-4, atol=1e-6)
    assert (earlier < 0).any() and not torch.allclose(earlier.clamp(min=0), ours)


# ----------------------------------------------------------------------------- IG completeness


def test_ig_completeness_small_error(tiny):
    model, xt, yt, _, _ = tiny
    maps, comp = attribution.integrated_gradients(model, xt[:8], yt[:8], n_steps=64,
                                                  return_convergence=True)
    assert maps.shape == (8, 28, 28)
    assert float(comp.relative_error.max()) < 0.05, comp.relative_error
    coarse = attribution.ig_completeness(model, xt[:8], yt[:8], n_steps=2,
                                         integration="riemann_left")
    assert float(coarse.relative_error.mean()) > float(comp.relative_error.mean())


def test_ig_equals_captum(tiny):
    from captum.attr import IntegratedGradients
    model, xt, yt, _, _ = tiny
    ours = attribution.attribute(model, xt[:4], yt[:4], "ig", n_steps=16)
    ref = IntegratedGradients(model).attribute(xt[:4].clone().requires_grad_(True),
                                               baselines=torch.zeros_like(xt[:4]),
                                               target=yt[:4], n_steps=16).sum(1)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- deletion / insertion


def test_curves_endpoints_and_shapes(tiny):
    model, xt, yt, _, _ = tiny
    maps = attribution.attribute(model, xt[:6], yt[:6], "saliency")
    dele = attribution.deletion_curve(model, xt[:6], yt[:6], maps, steps=7, batch_size=10)
    ins = attribution.insertion_curve(model, xt[:6], yt[:6], maps, steps=7, baseline="mean")
    assert dele.scores.shape == dele.random_scores.shape == (6, 8)
    assert dele.fractions[0] == 0 and dele.fractions[-1] == 1
    with torch.no_grad():
        p_full = model(xt[:6]).softmax(-1).gather(1, yt[:6, None])[:, 0]
        p_black = model(torch.zeros_like(xt[:6])).softmax(-1).gather(1, yt[:6, None])[:, 0]
        p_mean = model(torch.full_like(xt[:6], 0.5)).softmax(-1).gather(1, yt[:6, None])[:, 0]
    for curve in (dele.scores, dele.random_scores):
        torch.testing.assert_close(curve[:, 0], p_full)
        torch.testing.assert_close(curve[:, -1], p_black)
    torch.testing.assert_close(ins.scores[:, 0], p_mean)
    torch.testing.assert_close(ins.scores[:, -1], p_full)
    s = dele.summary()
    assert s["better"] == "lower" and 0 <= s["auc"] <= 1 and s["n"] == 6
    again = attribution.deletion_curve(model, xt[:6], yt[:6], maps, steps=7)
    torch.testing.assert_close(again.random_scores, dele.random_scores)


@pytest.mark.parametrize("name", zoo.names())
def test_ig_deletion_beats_random_on_shipped(name):
    model = zoo.load(name)
    x, _ = data.as_tensors(data.load("fashion-mnist", "test", n=32))
    maps = attribution.attribute(model, x, None, "ig", n_steps=8, internal_batch_size=256)
    dele = attribution.deletion_curve(model, x, None, maps, steps=10)
    assert float(dele.auc.mean()) < float(dele.random_auc.mean()) - 0.05, dele.summary()


# ----------------------------------------------------------------------------- sanity check, localisation


def test_randomization_lowers_rank_correlation(tiny):
    model, xt, yt, _, acc = tiny
    before = copy.deepcopy(model.state_dict())
    result = attribution.randomization_check(model, xt[:16], yt[:16], "saliency", seed=0)
    assert result.layers == ["net.6", "net.2", "net.0"]
    assert result.correlations.shape == (3, 16)
    means = result.mean()
    assert means[-1] < means[0] and means[-1] < 0.8, means
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"randomization_check modified {k}"
    again = attribution.randomization_check(model, xt[:16], yt[:16], "saliency", seed=0)
    torch.testing.assert_close(again.correlations, result.correlations, equal_nan=True)


@pytest.mark.parametrize("family", zoo.names())
def test_cascading_layers_top_first(family):
    model = zoo.build(family)
    layers = attribution.cascading_layers(model)
    order = [name for name, _ in model.named_modules()]
    own = [name for name in layers if name == "net"]
    inner = [name for name in layers if name != "net"]
    assert inner[0] == "net.head"
    assert [order.index(n) for n in inner] == sorted((order.index(n) for n in inner), reverse=True)
    assert own == (["net"] if any(True for _ in model.net.parameters(recurse=False)) else [])
    assert layers[-1] == (own or inner)[-1]
    covered = {n for n, _ in model.named_parameters()}
    listed = {f"{layer}.{p}" for layer in inner
              for p, _ in dict(model.named_modules())[layer].named_parameters()}
    listed |= {f"net.{p}" for p, _ in model.net.named_parameters(recurse=False)}
    assert listed == covered, sorted(covered - listed)


def test_localization_above_chance(tiny):
    model, xt, yt, masks, acc = tiny
    assert acc > 0.8, f"the tiny model did not learn synthetic (accuracy {acc:.2f})"
    for method in ("integrated_gradients", "input_x_gradient"):
        maps = attribution.attribute(model, xt, yt, method, **FAST.get(method, {}))
        loc = attribution.localization(maps, masks)
        s = loc.summary()
        assert s["mass_inside"] > 2 * s["chance"], (method, s)
        assert s["pointing_accuracy"] > 0.5, (method, s)


def test_localization_by_hand():
    maps = torch.zeros(2, 4, 4)
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    masks[:, 0, :2, :2] = True
    maps[0, 0, 0], maps[0, 3, 3], maps[0, 3, 2] = 3.0, 1.0, -4.0
    maps[1, 3, 3] = 2.0
    loc = attribution.localization(maps, masks)
    torch.testing.assert_close(loc.mass_inside, torch.tensor([0.75, 0.0]))
    assert loc.pointing_hit.tolist() == [True, False]
    torch.testing.assert_close(loc.mask_fraction, torch.tensor([0.25, 0.25]))
    absolute = attribution.localization(maps, masks, mass="absolute")
    torch.testing.assert_close(absolute.mass_inside, torch.tensor([3 / 8, 0.0]))


# ----------------------------------------------------------------------------- CLI


def _one_error_line(capsys, argv):
    rc = attribution.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_cli_errors(capsys, tmp_path):
    out = str(tmp_path)
    assert "lime" in _one_error_line(capsys, ["--method", "lime", "--out", out])
    assert "valid" in _one_error_line(capsys, ["--model", "resnet", "--weights", "random", "--out", out])
    assert "vit" in _one_error_line(capsys, ["--model", "mixer", "--method", "attention_rollout",
                                             "--weights", "random", "--out", out])
    assert "--n" in _one_error_line(capsys, ["--n", "0", "--out", out])
    _one_error_line(capsys, ["--bogus"])
    _one_error_line(capsys, ["--n", "many"])
    assert "does not exist" in _one_error_line(capsys, ["--weights", str(tmp_path / "no.safetensors"),
                                                        "--out", out])


def test_cli_help(capsys):
    assert attribution.main(["--help"]) == 0
    printed = capsys.readouterr().out
    assert "--method" in printed and "--threads" in printed and "timm:<arch>" in printed


def test_cli_module_help_is_clean():
    """``python -m probe.attribution --help`` prints usage and nothing on stderr (no runpy warning)."""
    run = subprocess.run([sys.executable, "-m", "probe.attribution", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "usage: python -m probe.attribution" in run.stdout
    assert run.stderr == "", run.stderr


@pytest.mark.parametrize("name,words", [("nosuch", "unknown model 'nosuch'"),
                                        ("timm:not_an_arch", "unknown timm architecture")])
def test_cli_bad_model_name(capsys, tmp_path, name, words):
    line = _one_error_line(capsys, ["--model", name, "--out", str(tmp_path)])
    assert words in line
    assert not any(tmp_path.iterdir()), "nothing is written for a bad model name"


def test_cli_timm_vit(capsys, tmp_path):
    rc = attribution.main(["--model", "timm:vit_tiny_patch16_224", "--weights", "random", "--n", "2",
                           "--steps", "1", "--method", "saliency", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    metrics = tmp_path / "fashion-mnist" / "timm-vit_tiny_patch16_224" / "attribution.json"
    rec = json.loads(metrics.read_text())
    assert rec["model"] == "timm:vit_tiny_patch16_224" and rec["weights"] == "random"
    assert rec["methods"]["saliency"]["deletion"]["n"] == 2
    assert (tmp_path / "fashion-mnist" / "attribution_grid.pdf").is_file()


def test_cli_writes_pdf_and_json(capsys, tmp_path):
    rc = attribution.main(["--model", "vit", "--method", "saliency", "--method", "attention_rollout",
                           "--n", "2", "--steps", "4", "--weights", "random", "--out", str(tmp_path)])
    assert rc == 0
    pdf = tmp_path / "fashion-mnist" / "attribution_grid.pdf"
    metrics = tmp_path / "fashion-mnist" / "vit" / "attribution.json"
    assert pdf.is_file() and pdf.stat().st_size > 1000
    rec = json.loads(metrics.read_text())
    assert set(rec["methods"]) == {"saliency", "attention_rollout"}
    for s in rec["methods"].values():
        assert {"auc", "random_auc"} <= set(s["deletion"]) and s["insertion"]["n"] == 2
    printed = capsys.readouterr().out
    assert str(pdf) in printed and str(metrics) in printed
