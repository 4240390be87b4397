"""The training recipe as data (``analyses/recipe.json``), its hash, step rule and data split.

A :class:`Recipe` wraps the JSON. Only its ``training`` section is hashed into
:attr:`Recipe.hash` (12 hex digits of the sha256 of the canonical JSON): that
section alone decides how one cell trains. The ``lr_sweep``, ``plans`` and
``checkpoint_every`` sections choose which cells exist and how often they are
saved, so editing them leaves finished cells valid.

Data: the validation split (``val_n`` images) is carved from the training set
with ``val_seed``, the same for every cell; the rest is the training pool. A
cell's ``n`` training images are the first ``n`` of a permutation of the pool
seeded by the cell's seed, so for one seed smaller subsets are nested in larger
ones, and ``n = full_n`` is the whole pool. Generated datasets (``synthetic``,
``glyph-pairs:<d>``) are drawn with fixed generator seeds: ``val_n + pool_n`` training images
and ``test_n`` test images (:func:`generated_dataset`).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from probe import data

__all__ = ["Recipe", "RECIPE_PATH", "QUICK_OVERRIDES", "load_recipe", "committed_recipe", "quick_recipe",
           "derived_seed", "DataSplit", "data_split", "train_subset", "test_sets", "to_float",
           "generated_dataset", "dataset_problem"]

RECIPE_PATH = Path(__file__).resolve().parents[1] / "recipe.json"
DATASETS = ("fashion-mnist", "synthetic", "glyph-pairs:<d>")
# generated on the fly by probe.data (fixed generator seeds): they need pool_n and test_n.
# ``glyph-pairs:<d>`` (two 4-px glyphs d px apart, same/different) has two classes; the zoo's
# 10-way head trains on labels 0/1, so every family keeps its architecture and parameters.
GLYPH_DISTANCES = range(data.GLYPH, 28 - data.GLYPH + 1)   # whole pixels, on 28-px images


def generated_dataset(name: str) -> bool:
    """Whether the recipe's dataset ``name`` is generated (``synthetic``, ``glyph-pairs:<d>``)."""
    return name == "synthetic" or str(name).startswith("glyph-pairs:")


def dataset_problem(name: object) -> Optional[str]:
    """Why ``name`` is not a dataset a recipe can train on (``None`` when it is one)."""
    if name in ("fashion-mnist", "synthetic"):
        return None
    if isinstance(name, str) and name.startswith("glyph-pairs:"):
        d = name.split(":", 1)[1]
        if d.isdigit() and int(d) in GLYPH_DISTANCES:
            return None
        return (f"glyph-pairs:<d> needs the distance d in whole pixels from {GLYPH_DISTANCES[0]} to "
                f"{GLYPH_DISTANCES[-1]} (two 4-px glyphs on 28-px images), got {name!r}")
    return f"must be one of {', '.join(DATASETS)}, got {name!r}"


AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, None: None}
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
TRAIN_SIZES = {"fashion-mnist": 60000}   # training-set sizes (the pool is this less val_n)

# ``--quick``: the committed recipe shrunk to seconds (512 Fashion-MNIST images, 20 steps of 32
# images; the tests train about 80 such cells, so their size sets the suite's time), in fp32: on a
# CPU without native bf16 (AVX2 only) bf16 autocast is emulated and 5-15x slower, which turned
# seconds into minutes per cell. The precision check's quick run adds bf16 back. The card's test
# accuracies use 250 test images and a 125-image subset (sizes that divide 10,000, so the card's
# 4-decimal accuracy is exact): with 1,000 + 1,000 a quick cell spent
# more time evaluating (about 2,800 forward images) than training (640 images forward and back).
QUICK_OVERRIDES: Dict[str, Any] = {
    "training": {"data": {"val_n": 256, "pool_n": 1024, "test_n": 250, "test_subset_n": 125},
                 "steps": {"min_steps": 20, "epochs": 1}, "eval_every": 10, "batch_size": 32,
                 "precision": {"train_autocast": None}},
    "lr_sweep": {"n_train": 512},
    "plans": {"full": {"seeds": [0]},
              "data-efficiency": {"sizes": {"128": [0, 1], "256": [0, 1], "512": [0]}},
              "synthetic": {"pool_n": 1024, "test_n": 256, "n_train": 512, "seeds": [0]},
              "finegrid": {"n_train": 512, "seeds": [0]}},
    "checkpoint_every": 10,
}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _merge(base: dict, overrides: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k != "sizes":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def derived_seed(*parts: object) -> int:
    """A 63-bit seed that is a function of ``parts`` only (e.g. ``("order", seed, epoch)``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


class Recipe:
    """One training recipe (the parsed ``recipe.json``), identified by :attr:`hash`.

    Args:
        spec: the recipe dict (see ``analyses/recipe.json`` for every field).
        source: where it came from, for error messages.

    Raises:
        ValueError: a field is missing or out of range (the message names it).
    """

    def __init__(self, spec: Mapping[str, Any], *, source: str = "recipe") -> None:
        self.spec: Dict[str, Any] = copy.deepcopy(dict(spec))
        self.source = source
        self._validate()
        self.hash = hashlib.sha256(_canonical(self.training).encode()).hexdigest()[:12]
        # the recipe whose plans name this one's cells: itself, or for a variant that changes
        # only the training section (a plan's data or precision), the recipe it came from
        self.root: "Recipe" = self

    # ------------------------------------------------------------------ sections
    @property
    def training(self) -> Dict[str, Any]:
        return self.spec["training"]

    @property
    def lr_sweep(self) -> Dict[str, Any]:
        return self.spec["lr_sweep"]

    @property
    def plans(self) -> Dict[str, Any]:
        return self.spec["plans"]

    @property
    def batch_size(self) -> int:
        return int(self.training["batch_size"])

    @property
    def eval_every(self) -> int:
        return int(self.training["eval_every"])

    @property
    def checkpoint_every(self) -> int:
        return int(self.spec["checkpoint_every"])

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        return AUTOCAST_DTYPES[self.training["precision"]["train_autocast"]]

    @property
    def storage_dtype(self) -> torch.dtype:
        return STORAGE_DTYPES[self.training["storage_dtype"]]

    @property
    def full_n(self) -> int:
        """Size of the training pool: the training set less the validation split (of
        ``training.data.classes`` only, when the recipe names a class subset)."""
        d = self.training["data"]
        if d.get("classes") is not None:
            return data_split(self).pool_size
        if d["pool_n"] is not None:
            return int(d["pool_n"])
        if d["dataset"] not in TRAIN_SIZES:
            raise ValueError(f"{self.source}: training.data.pool_n is needed for {d['dataset']!r}")
        return TRAIN_SIZES[d["dataset"]] - int(d["val_n"])

    def steps(self, n_train: int) -> int:
        """Optimiser steps for ``n_train`` images: ``max(min_steps, ceil(epochs * n / batch))``."""
        rule = self.training["steps"]
        return max(int(rule["min_steps"]), math.ceil(rule["epochs"] * n_train / self.batch_size))

    def variant(self, overrides: Mapping[str, Any]) -> "Recipe":
        """A new recipe with ``overrides`` merged in (nested dicts merge, anything else replaces)."""
        out = Recipe(_merge(self.spec, overrides), source=f"{self.source} + overrides")
        if set(overrides) <= {"training"}:
            out.root = self.root
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recipe) and _canonical(self.spec) == _canonical(other.spec)

    def __hash__(self) -> int:
        return hash(_canonical(self.spec))

    def __repr__(self) -> str:
        return f"Recipe({self.hash}, source={self.source!r})"

    # ------------------------------------------------------------------ checks
    def _need(self, path: str) -> Any:
        node: Any = self.spec
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ValueError(f"{self.source}: missing field {path!r}; see analyses/recipe.json "
                                 f"for the full layout")
            node = node[part]
        return node

    def _positive(self, path: str, *, kind: type = int) -> None:
        value = self._need(path)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
                or (kind is int and int(value) != value):
            raise ValueError(f"{self.source}: {path} must be a positive {kind.__name__}, got {value!r}")

    def _validate(self) -> None:
        for path in ("training.data.val_n", "training.data.val_seed", "training.batch_size",
                     "training.steps.min_steps", "training.eval_every", "training.data.test_subset_n",
                     "checkpoint_every", "lr_sweep.n_train"):
            self._positive(path)
        for path in ("training.optimizer.eps", "training.steps.epochs"):
            self._positive(path, kind=float)
        for path in ("training.data.pool_n", "training.data.test_n"):
            if self._need(path) is not None:
                self._positive(path)
        problem = dataset_problem(self._need("training.data.dataset"))
        if problem:
            raise ValueError(f"{self.source}: training.data.dataset {problem}")
        if str(self.training["data"]["dataset"]).startswith("glyph-pairs:") and \
                None in (self.training["data"]["pool_n"], self.training["data"]["test_n"]):
            raise ValueError(f"{self.source}: training.data.pool_n and test_n must be numbers for "
                             f"{self.training['data']['dataset']} (generated images: no fixed set "
                             f"to carve from)")
        if self._need("training.optimizer.name") != "AdamW":
            raise ValueError(f"{self.source}: only the AdamW optimizer is implemented, got "
                             f"{self.training['optimizer']['name']!r}")
        for path in ("training.optimizer.weight_decay", "training.label_smoothing",
                     "training.augmentation.translate_px"):
            value = self._need(path)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{self.source}: {path} must be a number >= 0, got {value!r}")
        if self.training["label_smoothing"] >= 1:
            raise ValueError(f"{self.source}: training.label_smoothing must be below 1")
        if not 0 <= self._need("training.schedule.warmup_fraction") < 1:
            raise ValueError(f"{self.source}: training.schedule.warmup_fraction must be in [0, 1)")
        clip = self._need("training.grad_clip_norm")
        if clip is not None:
            self._positive("training.grad_clip_norm", kind=float)
        if self._need("training.precision.train_autocast") not in AUTOCAST_DTYPES:
            raise ValueError(f"{self.source}: training.precision.train_autocast must be 'bfloat16' "
                             f"or null (fp32 training)")
        if self._need("training.attention_kernel") not in ("explicit", "fused"):
            raise ValueError(f"{self.source}: training.attention_kernel must be 'explicit' (timm "
                             f"attention's unfused path while training) or 'fused'")
        if self._need("training.storage_dtype") not in STORAGE_DTYPES:
            raise ValueError(f"{self.source}: training.storage_dtype must be one of "
                             f"{sorted(STORAGE_DTYPES)}")
        if self._need("training.augmentation.padding") != "zeros":
            raise ValueError(f"{self.source}: training.augmentation.padding must be 'zeros'")
        lrs = self._need("lr_sweep.lrs")
        if not lrs or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0
                          for v in lrs):
            raise ValueError(f"{self.source}: lr_sweep.lrs must be a non-empty list of positive "
                             f"learning rates, got {lrs!r}")
        extend = self.spec["lr_sweep"].get("extend")
        if extend is not None:
            ok = isinstance(extend, dict) and isinstance(extend.get("factor"), (int, float)) \
                and extend["factor"] > 1 and isinstance(extend.get("bounds"), list) \
                and len(extend["bounds"]) == 2 and 0 < extend["bounds"][0] <= min(lrs) \
                and max(lrs) <= extend["bounds"][1]
            if not ok:
                raise ValueError(f"{self.source}: lr_sweep.extend must be null or "
                                 f"{{\"factor\": >1, \"bounds\": [low, high]}} with the bounds "
                                 f"around lr_sweep.lrs, got {extend!r}")
        seeds = list(self._need("plans.full.seeds"))
        sizes = self._need("plans.data-efficiency.sizes")
        for size_seeds in sizes.values():
            seeds += list(size_seeds)
        self._need("lr_sweep.seed")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"{self.source}: plan seeds must be integers >= 0")
        if any(not str(n).isdigit() or int(n) <= 0 for n in sizes):
            raise ValueError(f"{self.source}: plans.data-efficiency.sizes keys must be positive "
                             f"integers (as strings), got {list(sizes)}")
        if "synthetic" in self.plans:
            for path in ("plans.synthetic.pool_n", "plans.synthetic.test_n",
                         "plans.synthetic.n_train"):
                self._positive(path)
            spec = self.plans["synthetic"]
            if spec["n_train"] > spec["pool_n"]:
                raise ValueError(f"{self.source}: plans.synthetic.n_train ({spec['n_train']}) must "
                                 f"be at most plans.synthetic.pool_n ({spec['pool_n']})")
            if any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                   for s in self._need("plans.synthetic.seeds")):
                raise ValueError(f"{self.source}: plans.synthetic.seeds must be integers >= 0")
        from .groups import group_plans, validate_group
        from .transfer import validate as validate_transfer
        validate_transfer(self)             # training.data.classes / image_size, training.init_from
        for name, spec in group_plans(self).items():
            validate_group(name, spec, self.source)
        if "finegrid" in self.plans:
            self._positive("plans.finegrid.n_train")
            families = self._need("plans.finegrid.families")
            fg_seeds = self._need("plans.finegrid.seeds")
            if not families or not all(isinstance(f, str) for f in families):
                raise ValueError(f"{self.source}: plans.finegrid.families must be a non-empty list "
                                 f"of variant names (analyses.common.FINEGRID), got {families!r}")
            if not fg_seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                   for s in fg_seeds):
                raise ValueError(f"{self.source}: plans.finegrid.seeds must be integers >= 0")


def load_recipe(path: Union[str, Path]) -> Recipe:
    """Read a recipe file; ``FileNotFoundError`` / ``ValueError`` name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} does not exist; pass --recipe PATH to a JSON "
                                f"file laid out like analyses/recipe.json")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"recipe file {path} is not valid JSON ({e}); fix it or copy "
                         f"analyses/recipe.json") from None
    if not isinstance(spec, dict):
        raise ValueError(f"recipe file {path} must hold a JSON object like analyses/recipe.json")
    return Recipe(spec, source=str(path))


@functools.lru_cache(maxsize=1)
def committed_recipe() -> Recipe:
    """The committed recipe, ``analyses/recipe.json``."""
    return load_recipe(RECIPE_PATH)


def quick_recipe(base: Optional[Recipe] = None) -> Recipe:
    """``base`` (default: the committed recipe) shrunk by :data:`QUICK_OVERRIDES` (smoke runs)."""
    from .groups import group_plans, quick_group
    base = base or committed_recipe()
    groups = {name: quick_group(spec, QUICK_OVERRIDES["lr_sweep"]["n_train"])
              for name, spec in group_plans(base).items() if name not in QUICK_OVERRIDES["plans"]}
    return base.variant(_merge(QUICK_OVERRIDES, {"plans": groups}))


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSplit:
    """The validation split and the training pool of a recipe.

    Attributes:
        pool_images: ``[P, C, H, W]`` (uint8 for Fashion-MNIST, float in [0, 1] otherwise).
        pool_labels: ``[P]`` long.
        val_images: ``[V, C, H, W]`` float in [0, 1].
        val_labels: ``[V]`` long.
    """

    pool_images: torch.Tensor
    pool_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor

    @property
    def pool_size(self) -> int:
        return len(self.pool_labels)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Images as float in [0, 1] (uint8 is divided by 255, the same op as ``probe.data``)."""
    return images.float().div(255.0) if images.dtype == torch.uint8 else images.float()


@functools.lru_cache(maxsize=4)
def _split(data_json: str) -> DataSplit:
    d = json.loads(data_json)
    if generated_dataset(d["dataset"]):
        if d["pool_n"] is None:
            raise ValueError(f"a {d['dataset']} recipe needs training.data.pool_n (the images are "
                             f"generated, there is no fixed training set to carve from)")
        ds = data.load(d["dataset"], "train", n=d["val_n"] + d["pool_n"], seed=0)
    else:
        ds = data.load(d["dataset"], "train")
    images, labels = ds.images, ds.labels
    if d["pool_n"] is None and len(labels) != TRAIN_SIZES[d["dataset"]]:
        raise ValueError(f"{d['dataset']} train holds {len(labels)} images, expected "
                         f"{TRAIN_SIZES[d['dataset']]}; get the dataset again")
    pool_n = len(labels) - d["val_n"] if d["pool_n"] is None else d["pool_n"]
    if d["val_n"] + pool_n > len(labels):
        raise ValueError(f"the recipe asks for {d['val_n']} validation + {pool_n} pool images but "
                         f"{d['dataset']} train has {len(labels)}; lower val_n or pool_n")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(d["val_seed"]))
    val = order[:d["val_n"]].sort().values
    pool = order[d["val_n"]:d["val_n"] + pool_n].sort().values
    split = DataSplit(images[pool], labels[pool], to_float(images[val]), labels[val].clone())
    from .transfer import adapt_split       # training.data.classes / image_size, if any
    return adapt_split(split, d)


def data_split(recipe: Recipe) -> DataSplit:
    """The recipe's validation split and training pool (cached per process)."""
    return _split(_canonical({k: v for k, v in recipe.training["data"].items()
                              if k in ("dataset", "val_n", "val_seed", "pool_n", "classes",
                                       "image_size")}))


def train_subset(recipe: Recipe, n_train: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)``: the ``n_train`` pool images of a cell (nested across ``n`` for one seed)."""
    split = data_split(recipe)
    if not 0 < n_train <= split.pool_size:
        raise ValueError(f"n_train must be in 1..{split.pool_size} (the training pool less the "
                         f"validation split), got {n_train}")
    perm = torch.randperm(split.pool_size, generator=torch.Generator().manual_seed(
        derived_seed("subset", seed)))
    idx = perm[:n_train].sort().values
    return split.pool_images[idx], split.pool_labels[idx]


@functools.lru_cache(maxsize=4)
def _test_sets(data_json: str) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    d = json.loads(data_json)
    full = data.as_tensors(data.load(d["dataset"], "test", n=d["test_n"], seed=0))
    if d["dataset"].startswith("glyph-pairs:"):     # the subset: a seeded part of the test set
        order = torch.randperm(len(full[1]), generator=torch.Generator().manual_seed(
            d["test_subset_seed"]))[:d["test_subset_n"]].sort().values
        return [full, (full[0][order], full[1][order])]
    subset = data.as_tensors(data.load(d["dataset"], "test", n=d["test_subset_n"],
                                       seed=d["test_subset_seed"]))
    return [full, subset]


def test_sets(recipe: Recipe) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
    """``((test images, labels), (test-subset images, labels))``, float images in [0, 1]."""
    d = recipe.training["data"]
    full, subset = _test_sets(_canonical({k: d[k] for k in ("dataset", "test_n", "test_subset_n",
                                                             "test_subset_seed")}))
    from .transfer import adapt_test        # training.data.classes / image_size, if any
    return adapt_test(full, d), adapt_test(subset, d)
