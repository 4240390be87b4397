"""Transfer cells: a class subset of the data, another input size, and initialisation from
another cell's trained weights (issue 17: pre-train + fine-tune, resolution transfer).

Three settings of a recipe's hashed ``training`` section (so a cell's key changes with each of
them, as it does with the ``synthetic`` plan's data), set by a group plan (:mod:`.groups`):

- ``training.data.classes``, e.g. ``[5, 6, 7, 8, 9]``: the validation split and the training
  pool are carved from the training set exactly as without it (``val_seed``), then both keep
  only the images of those classes; so do the test set and the test subset (the subset is drawn
  first, then filtered). Labels keep their original class ids: the 10-way head still applies,
  and accuracy is the argmax over all 10 logits (a model that predicts a class outside the
  subset is wrong). ``n_train: "full"`` is the whole pool of those classes.
- ``training.data.image_size``, e.g. ``36``: every image (pool, validation, test) is upsampled
  from 28 px with bilinear interpolation (``F.interpolate(mode="bilinear",
  align_corners=False, antialias=False)``, float images in [0, 1]); the augmentation then
  shifts the upsampled images by the recipe's ``translate_px``. The model must take that size:
  a builder variant with ``img_size`` (``analyses.common.BUILDER_VARIANTS``, e.g. ``mixer_36px``).
- ``training.init_from``: ``{"plan": P, "data": {...}, "head": "reinit" | "keep",
  "source_n_train": n, "source_recipe_hash": h}``. The cell starts from the weights of the
  *same family and seed trained by plan P* (a builder variant starts from its zoo family's
  cell), loaded before step 0; then it trains by the recipe (optimiser, schedule, steps for
  its ``n_train``) at its family's swept learning rate, the rate its source trained at. A group
  plan names only ``plan`` (``data`` only when P has several data variants) and ``head``;
  :func:`init_overrides` adds the source's size and recipe hash, so the key changes whenever
  the source model does. ``head: "reinit"`` keeps the classification head (``head.*``) of the
  cell's own seeded initialisation - the same head the from-scratch cell of that seed starts
  with - and takes every other tensor from the source; ``"keep"`` takes the head too.

Resizing (a source trained at 28 px, 7x7 tokens, loaded into a 36-px model, 9x9 tokens): a
tensor whose shape differs between the two models is resized; every other tensor is copied.

- ViT: the position embeddings of the 49 patch tokens are interpolated to 81 with timm's
  ``resample_abs_pos_embed`` (bilinear, no antialiasing, align_corners False); the class
  token's embedding is kept.
- Token-mixing weights (Mixer's token MLP ``fc1.weight [H, T]``, ``fc2.weight [T, H]``,
  ``fc2.bias [T]``; ResMLP's ``linear_tokens`` and gMLP's spatial gating ``proj``, weight
  ``[T, T]`` and bias ``[T]``): each token axis is viewed as the 7x7 grid and resized to 9x9
  by bilinear interpolation (the same call; a ``[T, T]`` matrix along both axes). The input
  (column) axis of a weight is also scaled by ``T_old / T_new`` = 49/81, so that the sum over
  input tokens, and with it the output for a smooth input, is kept.
- CNN (global pooling) and FNet (no token weights: the 2-D DFT of any grid): nothing differs.

At the same size nothing differs and the state is copied unchanged (tested).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["HEAD_PREFIX", "HEADS", "validate", "is_transfer", "select_classes", "upsample",
           "adapt_split", "adapt_test", "init_overrides", "source_family", "source_cell",
           "resize_token_axis", "resize_state", "initialise", "card_fields"]

HEAD_PREFIX = "head."             # every protocol family's classifier: ``net.head`` (Linear)
HEADS = ("reinit", "keep")
INTERPOLATION = {"mode": "bilinear", "align_corners": False, "antialias": False}


# ----------------------------------------------------------------------------- recipe fields


def validate(recipe) -> None:
    """``ValueError`` naming the field when ``training.data.classes``, ``training.data.image_size``
    or ``training.init_from`` is malformed (absent fields are fine)."""
    d, src = recipe.training["data"], recipe.source
    classes = d.get("classes")
    if classes is not None and (not isinstance(classes, list) or not classes
                                or any(isinstance(c, bool) or not isinstance(c, int) or c < 0
                                       for c in classes) or len(set(classes)) != len(classes)):
        raise ValueError(f"{src}: training.data.classes must be a non-empty list of distinct "
                         f"class ids >= 0 (or absent), got {classes!r}")
    size = d.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ValueError(f"{src}: training.data.image_size must be a positive integer (pixels) "
                         f"or absent, got {size!r}")
    init = recipe.training.get("init_from")
    if init is not None:
        if not isinstance(init, dict) or not isinstance(init.get("plan"), str) \
                or init.get("head") not in HEADS:
            raise ValueError(f"{src}: training.init_from must be {{\"plan\": <plan name>, "
                             f"\"head\": \"reinit\" or \"keep\", \"data\": {{...}} (optional)}}, "
                             f"got {init!r}")
        if "data" in init and not isinstance(init["data"], dict):
            raise ValueError(f"{src}: training.init_from.data must be a dict of training.data "
                             f"fields, got {init['data']!r}")
    from .groups import group_plans
    groups = group_plans(recipe)
    for name, spec in groups.items():
        init = spec.get("init_from")
        if init is not None and (not isinstance(init, dict) or init.get("head") not in HEADS
                                 or not (init.get("plan") == "full" or init.get("plan") in groups)
                                 or not isinstance(init.get("data", {}), dict)):
            raise ValueError(f"{src}: plans.{name}.init_from must be {{\"plan\": \"full\" or a "
                             f"group plan, \"head\": \"reinit\" or \"keep\", \"data\": {{...}} "
                             f"(optional)}}, got {init!r}")


def is_transfer(recipe) -> bool:
    """The recipe trains on a class subset, at another image size or from another cell's
    weights: its cells are never full-data models, whatever their size."""
    d = recipe.training["data"]
    return d.get("classes") is not None or d.get("image_size") is not None \
        or recipe.training.get("init_from") is not None


# ----------------------------------------------------------------------------- data


def select_classes(images: torch.Tensor, labels: torch.Tensor, classes) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of the given classes only, in their original order and ids."""
    keep = torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))
    return images[keep], labels[keep].clone()


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """``images [N, C, h, w]`` (uint8 or float in [0, 1]) as float ``[N, C, size, size]``:
    bilinear, ``align_corners=False``, no antialiasing (values stay in [0, 1])."""
    from .recipe import to_float
    x = to_float(images)
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), **INTERPOLATION)


def _adapt(images: torch.Tensor, labels: torch.Tensor, d: Mapping[str, Any]
           ) -> Tuple[torch.Tensor, torch.Tensor]:
    if d.get("classes") is not None:
        images, labels = select_classes(images, labels, d["classes"])
        if not len(labels):
            raise ValueError(f"no image of classes {d['classes']} in {d['dataset']}; "
                             f"training.data.classes must name classes of the dataset")
    if d.get("image_size") is not None:
        images = upsample(images, int(d["image_size"]))
    return images, labels


def adapt_split(split, d: Mapping[str, Any]):
    """The :class:`.recipe.DataSplit` restricted to ``d["classes"]`` and upsampled to
    ``d["image_size"]`` (either may be absent: the split unchanged)."""
    if d.get("classes") is None and d.get("image_size") is None:
        return split
    pool = _adapt(split.pool_images, split.pool_labels, d)
    val = _adapt(split.val_images, split.val_labels, d)
    return type(split)(pool[0], pool[1], val[0], val[1])


def adapt_test(pair: Tuple[torch.Tensor, torch.Tensor], d: Mapping[str, Any]
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """A ``(test images, labels)`` pair restricted and upsampled like :func:`adapt_split`."""
    if d.get("classes") is None and d.get("image_size") is None:
        return pair
    return _adapt(pair[0], pair[1], d)


# ----------------------------------------------------------------------------- sources


def _plan_entries(root, plan: str) -> List[Tuple[Any, List[int]]]:
    """``[(recipe, sizes)]`` of plan ``plan`` of ``root``: ``full`` or a group plan."""
    from .groups import group_plans, group_recipes, group_sizes
    if plan == "full":
        return [(root, [root.full_n])]
    groups = group_plans(root)
    if plan not in groups:
        raise ValueError(f"{root.source}: init_from names plan {plan!r}, which is neither 'full' "
                         f"nor a group plan of the recipe ({', '.join(groups) or 'none'})")
    if groups[plan].get("init_from"):
        raise ValueError(f"{root.source}: init_from names plan {plan!r}, which starts from "
                         f"another plan itself; start from a plan trained from scratch")
    return [(r, group_sizes(r, groups[plan])) for r in group_recipes(root, groups[plan])]


def _source_entry(root, init: Mapping[str, Any]) -> Tuple[Any, int]:
    """``(source recipe, source n_train)`` named by an ``init_from`` spec."""
    entries = _plan_entries(root, init["plan"])
    want = init.get("data") or {}
    match = [(r, sizes) for r, sizes in entries
             if all(r.training["data"].get(k) == v for k, v in want.items())]
    if len(match) != 1:
        raise ValueError(f"{root.source}: init_from {dict(init)!r} matches {len(match)} of plan "
                         f"{init['plan']}'s data variants; give init_from.data fields that pick one")
    recipe, sizes = match[0]
    if len(sizes) != 1:
        raise ValueError(f"{root.source}: plan {init['plan']} trains {len(sizes)} sizes; "
                         f"init_from needs a plan with one n_train")
    return recipe, sizes[0]


def init_overrides(root, spec: Mapping[str, Any]) -> Dict[str, Any]:
    """``{"init_from": {...}}`` for the ``training`` section of a group plan's cells whose
    spec has ``init_from`` (``{}`` otherwise): the spec's ``plan``, ``head`` (and ``data``)
    with the source's ``source_n_train`` and ``source_recipe_hash``."""
    init = spec.get("init_from")
    if not init:
        return {}
    if not isinstance(init, dict) or init.get("head") not in HEADS:
        raise ValueError(f"{root.source}: a plan's init_from must be {{\"plan\": <plan name>, "
                         f"\"head\": \"reinit\" or \"keep\"}}, got {init!r}")
    recipe, n = _source_entry(root, init)
    return {"init_from": {**{k: v for k, v in init.items() if k in ("plan", "data", "head")},
                          "source_n_train": n, "source_recipe_hash": recipe.hash}}


def source_family(family: str) -> str:
    """The family a transfer cell of ``family`` starts from: itself, or a builder variant's
    zoo family (``mixer_36px`` starts from ``mixer``)."""
    from analyses.common import BUILDER_VARIANTS
    return BUILDER_VARIANTS[family][0] if family in BUILDER_VARIANTS else family


def source_cell(cell):
    """The cell whose trained weights ``cell`` starts from (``None`` without ``init_from``):
    its source family, ``n_train`` and recipe per the plan, the same seed and learning rate.

    Raises:
        ValueError: the source plan no longer trains the size or recipe the key was made for.
    """
    from .training import Cell
    init = cell.recipe.training.get("init_from")
    if init is None:
        return None
    recipe, n = _source_entry(cell.recipe.root, init)
    if (n, recipe.hash) != (init.get("source_n_train"), init.get("source_recipe_hash")):
        raise ValueError(f"cell {cell.key} starts from plan {init['plan']}'s n={init.get('source_n_train')}, "
                         f"recipe {init.get('source_recipe_hash')}, but the recipe's plan now trains "
                         f"n={n}, recipe {recipe.hash}; plan the cell again from analyses/recipe.json")
    return Cell(source_family(cell.family), n, cell.seed, cell.lr, recipe)


# ----------------------------------------------------------------------------- resizing


def _grid(tokens: int) -> Tuple[int, int]:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"{tokens} tokens are not a square grid; only square token grids resize")
    return side, side


def resize_token_axis(t: torch.Tensor, axis: int, tokens: int, *, scale: float = 1.0) -> torch.Tensor:
    """``t`` with axis ``axis`` (tokens of a square grid, row-major) resized to ``tokens`` by
    bilinear interpolation of the grid (:data:`INTERPOLATION`), times ``scale``."""
    old, new = _grid(t.shape[axis]), _grid(tokens)
    x = t.float().movedim(axis, -1)
    lead = x.shape[:-1]
    if old != new:
        x = F.interpolate(x.reshape(-1, 1, *old), size=new, **INTERPOLATION)
    x = x.reshape(*lead, tokens) * scale
    return x.movedim(-1, axis).to(t.dtype)


def resize_state(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *,
                 num_prefix_tokens: int = 0) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """``(state resized to the shapes of target, names of the resized tensors)``.

    ``state`` and ``target`` are ``net.state_dict()``s of one family at two input sizes; the
    rules are the module docstring's (``pos_embed``: timm's resampling after
    ``num_prefix_tokens``; a 1-D or 2-D tensor: each token axis on its grid, a weight's input
    axis scaled by ``T_old / T_new``).

    Raises:
        ValueError: the names differ, or a tensor differs in a way no rule covers.
    """
    if set(state) != set(target):
        extra, missing = sorted(set(state) - set(target)), sorted(set(target) - set(state))
        raise ValueError(f"the source weights are not the target architecture's (extra "
                         f"{extra[:3]}, missing {missing[:3]})")
    out, resized = {}, []
    for name, t in state.items():
        shape = tuple(target[name].shape)
        if tuple(t.shape) == shape:
            out[name] = t
            continue
        if name.split(".")[-1] == "pos_embed" and t.ndim == 3:
            from timm.layers import resample_abs_pos_embed
            out[name] = resample_abs_pos_embed(
                t, new_size=list(_grid(shape[1] - num_prefix_tokens)),
                old_size=list(_grid(t.shape[1] - num_prefix_tokens)),
                num_prefix_tokens=num_prefix_tokens, interpolation="bilinear", antialias=False)
        elif t.ndim in (1, 2) and t.ndim == len(shape):
            x = t
            for axis in range(t.ndim):
                if x.shape[axis] != shape[axis]:
                    scale = x.shape[axis] / shape[axis] if (t.ndim == 2 and axis == 1) else 1.0
                    x = resize_token_axis(x, axis, shape[axis], scale=scale)
            out[name] = x
        else:
            raise ValueError(f"{name}: shape {tuple(t.shape)} cannot be resized to {shape} (only "
                             f"position embeddings and token axes of 1-D/2-D weights resize)")
        resized.append(name)
    return out, resized


def initialise(model, cell, store, *, log: Optional[Callable[[str], None]] = None) -> Optional[dict]:
    """Load ``cell``'s source weights (:func:`source_cell`) into ``model`` (built from the cell's
    seed), resized to its input size, the head per ``init_from.head``; returns what was loaded
    (``None`` for a cell without ``init_from``: the model is left as it is); ``log`` gets one
    line saying so.

    Raises:
        ValueError: the source cell is not trained yet (the message names the command).
    """
    from .training import load_model
    source = source_cell(cell)
    if source is None:
        return None
    init = cell.recipe.training["init_from"]
    card = store.card(source)
    if card is None:
        raise ValueError(f"cell {cell.key} starts from {source.key}, which is not trained yet; run "
                         f"`python -m analyses.cells run --plan {init['plan']} --family "
                         f"{source.family} --seed {source.seed}` first (with --quick for quick cells)")
    weights = store.weights_path(source)
    state = load_model(source.family, weights).net.state_dict()
    target = model.net.state_dict()
    new, resized = resize_state(state, target,
                                num_prefix_tokens=int(getattr(model.net, "num_prefix_tokens", 0)))
    if init["head"] == "reinit":
        heads = [k for k in target if k.startswith(HEAD_PREFIX)]
        if not heads:
            raise ValueError(f"{cell.family} has no {HEAD_PREFIX}* classifier to re-initialise")
        new.update({k: target[k] for k in heads})
    model.net.load_state_dict({k: v.to(target[k].dtype) for k, v in new.items()}, strict=True)
    if log is not None:
        log(f"initialised from {source.key} (head {init['head']}, {len(resized)} tensors resized)")
    return {"plan": init["plan"], "key": source.key, "sha256": card.get("sha256"),
            "weights": card.get("weights"), "head": init["head"], "resized": resized}


def card_fields(cell, store) -> Dict[str, Any]:
    """``{"init_from": {plan, key, sha256, weights, head}}`` for a cell's card (``{}`` without
    ``init_from``), from the source's card."""
    source = source_cell(cell)
    if source is None:
        return {}
    card = store.card(source) or {}
    init = cell.recipe.training["init_from"]
    return {"init_from": {"plan": init["plan"], "key": source.key, "sha256": card.get("sha256"),
                          "weights": card.get("weights"), "head": init["head"]}}
