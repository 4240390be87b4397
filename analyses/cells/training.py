"""One training cell: (family, n_train, seed, lr) under a recipe, resumable and bit-reproducible.

:func:`train_cell` trains a zoo family from its seeded initialisation with the
recipe's AdamW + warm-up/cosine schedule, bf16 autocast for the forward pass
(fp32 master weights and optimizer state) and fp32 evaluation. Every
``checkpoint_every`` steps it atomically writes model, optimizer, scheduler,
step, validation curve and the random generator states to
``<runs>/<key>/checkpoint.pt``; a rerun continues from there and ends with the
same weights, bit for bit, as an uninterrupted run on the same machine and
thread count, because:

- the data order of epoch ``e`` is a permutation seeded by ``(seed, e)`` only,
  and batch ``s`` is the slice ``[s * B, (s + 1) * B)`` of those epochs in
  sequence (:func:`batch_indices`);
- the augmentation generator and torch's global generator are saved and restored;
- ``torch.use_deterministic_algorithms(True)`` while a cell trains.

With the recipe's ``attention_kernel: explicit``, timm attention trains on its
unfused path (:func:`probe.hooks.unfused_attention`): the same function, and at
these 50-token sequences much faster on CPU than the fused kernel's backward.

A finished cell has fp16 safetensors weights and a JSON card beside them
(:class:`Store` says where); the card's presence, with the cell's recipe hash
and learning rate, is what "finished" means.

A cell can also train an analysis variant (``analyses.common.VARIANTS``, built by
``analyses.common.build``): the Synthesizer ladder's rungs (``probe/models/synth_ladder.py``),
the earlier ``synth`` and the finer-grid ``<family>_p2`` (patch 2, 14x14 tokens). It trains
under the SAME recipe (hash, data, steps, schedule, precision) at the learning rate its
body's family chose in the sweep (:data:`VARIANT_LR_FAMILY`; no sweep of its own), keyed like
any other cell (``synth_random_n55000_s0_lr<Mixer's lr>_<hash>``); no zoo family's key changes.
"""
from __future__ import annotations

import contextlib
import fcntl
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from probe import zoo
from probe.hooks import unfused_attention
from probe.results import atomic_write_json, read_json
from probe.train import augment

from .families import (PROTOCOL_FAMILIES, VARIANT_LR_FAMILY, build_model, cell_families,  # noqa: F401
                       load_model, lr_family)
from . import transfer
from .groups import membership, nearest_group
from .recipe import (Recipe, committed_recipe, data_split, derived_seed, test_sets, to_float,
                     train_subset)

__all__ = ["Cell", "Store", "CellBusy", "default_store", "train_cell", "training_step", "accuracy",
           "lr_factor", "make_optimizer", "batch_indices", "is_locked", "default_command", "ROOT",
           "VARIANT_LR_FAMILY", "PROTOCOL_FAMILIES", "cell_families", "lr_family", "build_model", "load_model",
           "plan_of"]

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_FORMAT = 1

# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True, eq=False)
class Cell:
    """One model to train: a zoo family (or an analysis variant, :func:`cell_families`) on
    ``n_train`` images with ``seed`` and peak ``lr``.

    Two cells are the same cell when their :attr:`key` (family, n, seed, lr,
    recipe hash) is the same.
    """

    family: str
    n_train: int
    seed: int
    lr: float
    recipe: Recipe = field(default_factory=committed_recipe, repr=False)

    def __post_init__(self) -> None:
        if self.family not in cell_families():
            raise ValueError(f"unknown family {self.family!r}; cells train the zoo families and "
                             f"the analysis variants: {', '.join(cell_families())}")
        if isinstance(self.n_train, bool) or not isinstance(self.n_train, int) \
                or not 0 < self.n_train <= self.recipe.full_n:
            raise ValueError(f"n_train must be an integer in 1..{self.recipe.full_n} (the training "
                             f"pool of recipe {self.recipe.hash}), got {self.n_train!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")

    @property
    def key(self) -> str:
        """``<family>_n<n>_s<seed>_lr<lr>_<recipe hash>``: the cell's folder name and identity."""
        return f"{self.family}_n{self.n_train}_s{self.seed}_lr{self.lr:g}_{self.recipe.hash}"

    @property
    def steps(self) -> int:
        return self.recipe.steps(self.n_train)

    @property
    def is_full(self) -> bool:
        """Trained on the whole training pool (these weights are committed); never a cell of a
        class subset, another image size or another cell's weights (:mod:`.transfer`)."""
        return self.n_train == self.recipe.full_n and not transfer.is_transfer(self.recipe)

    @property
    def in_synthetic_plan(self) -> bool:
        """A cell of the recipe's ``plans.synthetic`` (its data section and size)."""
        spec, d = self.recipe.plans.get("synthetic"), self.recipe.training["data"]
        return spec is not None and d["dataset"] == "synthetic" and self.n_train == spec["n_train"] \
            and [d["pool_n"], d["test_n"]] == [spec["pool_n"], spec["test_n"]]

    @property
    def group_plan(self) -> Optional[str]:
        """The group plan (:mod:`.groups`: a ``plans`` entry with its own ``families``) whose
        cells include this one, or ``None``."""
        return membership(self.family, self.n_train, self.seed, self.recipe)

    @property
    def commits_weights(self) -> bool:
        """Its weights are committed under the store's models folder: full-data cells, the
        ``synthetic`` plan's cells, whose weights an analysis needs (attributions), and the
        cells of a group plan with ``commit_weights``."""
        if self.is_full or self.in_synthetic_plan:
            return True
        group = self.group_plan
        return group is not None and bool(self.recipe.root.plans[group].get("commit_weights"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


class CellBusy(RuntimeError):
    """Another process holds the cell's lock (it is training that cell right now)."""


@dataclass(frozen=True)
class Store:
    """Where cells live.

    Attributes:
        runs: one folder per cell key: ``checkpoint.pt``, ``progress.json``, ``log.txt``,
            ``lock`` and, for cells that are not full-data, ``model.safetensors``.
        models: full-data weights and cards, ``<family>_n<n>_s<seed>.safetensors`` / ``.json``;
            the weights and cards of the ``synthetic``-dataset cells (an analysis needs their
            weights), ``synthetic/<key>.safetensors`` / ``.json``; the cards of every other
            finished cell, ``cells/<key>.json`` (committed, so a finished sweep or
            data-efficiency cell is never retrained; their weights stay under ``runs``); and
            the learning-rate sweep's choice, ``lr_sweep.json``.
    """

    runs: Path
    models: Path

    def cell_dir(self, cell: Cell) -> Path:
        return Path(self.runs) / cell.key

    def weights_path(self, cell: Cell) -> Path:
        if cell.in_synthetic_plan:       # their own folder, named by key (another recipe hash)
            return Path(self.models) / "synthetic" / f"{cell.key}.safetensors"
        if cell.is_full:
            return Path(self.models) / f"{cell.family}_n{cell.n_train}_s{cell.seed}.safetensors"
        if cell.commits_weights:        # a group plan's (commit_weights): its own folder, by key
            return Path(self.models) / str(cell.group_plan) / f"{cell.key}.safetensors"
        return self.cell_dir(cell) / "model.safetensors"

    def card_path(self, cell: Cell) -> Path:
        if cell.commits_weights:
            return self.weights_path(cell).with_suffix(".json")
        return Path(self.models) / "cells" / f"{cell.key}.json"

    def checkpoint_path(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "checkpoint.pt"

    def progress_path(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "progress.json"

    def log_path(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "log.txt"

    def lock_path(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "lock"

    @property
    def sweep_path(self) -> Path:
        return Path(self.models) / "lr_sweep.json"

    def card(self, cell: Cell, *, need_weights: bool = True) -> Optional[dict]:
        """The finished cell's card, or ``None`` (missing, other recipe or lr, or - with
        ``need_weights`` - its committed weights missing). Without ``need_weights`` (the sweep
        and the accuracy tables read numbers only) a card that an earlier layout kept under
        ``<models>/cells/`` counts too."""
        card = read_json(self.card_path(cell))
        if not isinstance(card, dict) and not need_weights and cell.commits_weights:
            card = read_json(Path(self.models) / "cells" / f"{cell.key}.json")
        elif isinstance(card, dict) and cell.commits_weights and need_weights \
                and not self.weights_path(cell).is_file():
            return None
        if not isinstance(card, dict):
            return None
        if card.get("recipe_hash") != cell.recipe.hash or card.get("lr") != cell.lr \
                or card.get("seed") != cell.seed or card.get("n_train") != cell.n_train:
            return None
        return card

    def is_done(self, cell: Cell, *, need_weights: bool = True) -> bool:
        return self.card(cell, need_weights=need_weights) is not None


def default_store(recipe: Recipe, *, quick: bool = False) -> Store:
    """``runs/cells`` + ``analyses/models`` for the committed recipe; ``runs/cells_quick`` for
    ``--quick``; full-data weights of any other recipe under ``runs/cells/models_<hash>``."""
    if quick:
        return Store(ROOT / "runs" / "cells_quick", ROOT / "runs" / "cells_quick" / "models")
    if recipe.hash == committed_recipe().hash:
        return Store(ROOT / "runs" / "cells", ROOT / "analyses" / "models")
    return Store(ROOT / "runs" / "cells", ROOT / "runs" / "cells" / f"models_{recipe.hash}")


# ----------------------------------------------------------------------------- recipe pieces


def lr_factor(step: int, *, total: int, warmup: int) -> float:
    """Multiplier of the peak lr for update ``step`` (0-based): linear warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float, total_steps: int
                   ) -> Tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (weight decay on 2+-dimensional parameters unless the recipe says all) + schedule."""
    opt = recipe.training["optimizer"]
    params = [p for p in model.parameters() if p.requires_grad]
    if opt["decay_1d_params"]:
        groups = [{"params": params, "weight_decay": opt["weight_decay"]}]
    else:
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": opt["weight_decay"]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(opt["betas"]), eps=opt["eps"])
    warmup = max(1, round(recipe.training["schedule"]["warmup_fraction"] * total_steps))

    def factor(step: int) -> float:
        return lr_factor(step, total=total_steps, warmup=warmup)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  labels: torch.Tensor, *, recipe: Recipe) -> torch.Tensor:
    """One optimiser step: forward (and so backward) under the recipe's autocast, fp32 loss,
    gradient clipping, AdamW update on the fp32 weights. Returns the detached loss."""
    model.train()
    dtype = recipe.autocast_dtype
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = model(images)
    loss = F.cross_entropy(logits.float(), labels,
                           label_smoothing=float(recipe.training["label_smoothing"]))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip = recipe.training["grad_clip_norm"]
    if clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), float(clip))
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int = 128) -> float:
    """Top-1 accuracy in fp32 (autocast off, eval mode; the training mode is restored)."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.autocast("cpu", enabled=False):
            for i in range(0, len(labels), batch_size):
                logits = model(to_float(images[i:i + batch_size]))
                correct += int((logits.argmax(1) == labels[i:i + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(len(labels), 1)


class _EpochOrders:
    """Permutation of ``n`` indices for epoch ``e``, seeded by ``(seed, e)`` only (two cached)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._cache: Dict[int, torch.Tensor] = {}

    def __call__(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed(derived_seed("order", self.seed, epoch))
            self._cache[epoch] = torch.randperm(self.n, generator=g)
        return self._cache[epoch]


def batch_indices(step: int, *, n: int, batch_size: int, seed: int,
                  orders: Optional[_EpochOrders] = None) -> torch.Tensor:
    """Indices of batch ``step``: the slice ``[step * B, (step + 1) * B)`` of the epochs'
    permutations laid end to end (a batch may straddle two epochs)."""
    orders = orders or _EpochOrders(n, seed)
    start, end = step * batch_size, (step + 1) * batch_size
    parts: List[torch.Tensor] = []
    k = start
    while k < end:
        epoch, pos = divmod(k, n)
        take = min(end - k, n - pos)
        parts.append(orders(epoch)[pos:pos + take])
        k += take
    return torch.cat(parts)


# ----------------------------------------------------------------------------- files


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CellBusy(f"cell {path.parent.name} is being trained by another process "
                           f"(lock {path}); wait for it or stop that process") from None
        yield
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether some process holds the lock file ``path`` (a cell being trained now)."""
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def _load_checkpoint(path: Path, cell: Cell) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's readers raise many types on bad bytes
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); delete it "
                         f"to restart the cell from step 0") from None
    if not isinstance(state, dict) or state.get("key") != cell.key \
            or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} does not belong to cell {cell.key} (or has an old "
                         f"format); delete it to restart the cell from step 0")
    return state


class _Log:
    """Appends time-stamped lines to a cell's ``log.txt``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


@contextlib.contextmanager
def _torch_settings(threads: Optional[int]) -> Iterator[None]:
    """Deterministic algorithms and ``threads`` for the block; the previous settings restored."""
    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    if threads is not None:
        if threads <= 0:
            raise ValueError(f"threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(old_deterministic)
        torch.set_num_threads(old_threads)


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def plan_of(cell: Cell) -> str:
    """The plan (``analyses.cells.plan.PLANS``) that trains ``cell``."""
    sweep = cell.recipe.lr_sweep
    if cell.in_synthetic_plan:
        return "synthetic"                      # a cell of plan.synthetic_cells
    if cell.is_full:
        return "full"
    group = cell.group_plan or nearest_group(cell.family, cell.n_train, cell.recipe)
    if group is not None:
        return group                            # a cell of a group plan (finegrid, ...)
    if lr_family(cell.family) == cell.family and cell.n_train == sweep["n_train"] \
            and cell.seed == sweep["seed"]:
        return "sweep"
    return "data-efficiency"


def default_command(cell: Cell, threads: int) -> str:
    """The command line that (re)trains ``cell`` with the committed recipe."""
    return (f"python -m analyses.cells run --plan {plan_of(cell)} --family {cell.family} "
            f"--seed {cell.seed} --workers 1 --threads {threads}")


# ----------------------------------------------------------------------------- training


def _cpu() -> dict:
    """The CPU a cell trained on: bf16 kernels differ between CPUs, so the same cell trained
    on two machines can differ in its last digits (token models; the CNN has matched)."""
    model = next((line.split(":", 1)[1].strip() for line in
                  (Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else [])
                  if line.startswith("model name")), platform.processor() or "unknown")
    return {"model": model, "capability": torch.backends.cpu.get_cpu_capability()}


def train_cell(cell: Cell, *, store: Optional[Store] = None, threads: Optional[int] = None,
               progress: bool = False, checkpoint_every: Optional[int] = None,
               on_step: Optional[Callable[[int], None]] = None,
               command: Optional[str] = None) -> dict:
    """Train ``cell`` (or continue it from its checkpoint) and return its card.

    A finished cell (see :meth:`Store.card`) is not trained again: its card is returned.

    Args:
        cell: what to train.
        store: where files go (default :func:`default_store` of the cell's recipe).
        threads: torch intra-op threads while training (default: unchanged).
        progress: show a tqdm bar over the steps.
        checkpoint_every: steps between checkpoints (default: the recipe's).
        on_step: called with the number of finished steps after each step (and after the
            checkpoint of that step); an exception raised there stops the cell, which
            resumes from its last checkpoint on the next call.
        command: the command recorded in the card (default :func:`default_command`).

    Raises:
        CellBusy: another process is training this cell.
        FloatingPointError: the loss stopped being finite (the cell's log says at which step).
    """
    from tqdm import tqdm
    store = store or default_store(cell.recipe)
    card = store.card(cell)
    if card is not None:
        return card
    recipe = cell.recipe
    every = checkpoint_every or recipe.checkpoint_every
    if every <= 0:
        raise ValueError(f"checkpoint_every must be positive, got {every}")
    with _locked(store.lock_path(cell)), _torch_settings(threads), contextlib.ExitStack() as scope:
        card = store.card(cell)          # finished by another process while we waited?
        if card is not None:
            return card
        log = _Log(store.log_path(cell))
        x, y = train_subset(recipe, cell.n_train, cell.seed)
        split = data_split(recipe)
        total, batch = cell.steps, recipe.batch_size
        model = build_model(cell.family, seed=cell.seed).train()
        if recipe.training["attention_kernel"] == "explicit":
            scope.enter_context(unfused_attention(model))
        optimizer, scheduler = make_optimizer(model, recipe, cell.lr, total)
        aug = recipe.training["augmentation"]
        aug_gen = torch.Generator().manual_seed(derived_seed("augment", cell.seed))
        torch.manual_seed(derived_seed("global", cell.seed))
        step, curve, prior_s, step_s, resumes = 0, [], 0.0, 0.0, 0
        state = _load_checkpoint(store.checkpoint_path(cell), cell)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            aug_gen.set_state(state["augment_rng"])
            torch.set_rng_state(state["torch_rng"])
            step, curve = int(state["step"]), [list(p) for p in state["val_curve"]]
            prior_s, step_s = float(state["train_time_s"]), float(state["step_time_s"])
            resumes = int(state["resumes"]) + 1
            log(f"resumed at step {step}/{total} from {store.checkpoint_path(cell).name}")
        else:
            log(f"start {cell.key}: {cell.family}, n={cell.n_train}, seed {cell.seed}, lr {cell.lr:g}, "
                f"{total} steps of {batch}, recipe {recipe.hash}, {torch.get_num_threads()} threads")
            transfer.initialise(model, cell, store, log=log)       # training.init_from, if any
        orders = _EpochOrders(cell.n_train, cell.seed)
        start = time.perf_counter()
        bar = tqdm(total=total, initial=step, desc=cell.key, unit="step", disable=not progress,
                   leave=False, mininterval=1 if sys.stderr.isatty() else 60)
        loss_sum, loss_n, window_s = 0.0, 0, 0.0
        try:
            while step < total:
                t0 = time.perf_counter()
                idx = batch_indices(step, n=cell.n_train, batch_size=batch, seed=cell.seed,
                                    orders=orders)
                xb = to_float(x[idx])
                if aug["translate_px"] or aug["horizontal_flip"]:
                    xb = augment(xb, aug_gen, pad=int(aug["translate_px"]),
                                 flip=bool(aug["horizontal_flip"]))
                loss = float(training_step(model, optimizer, xb, y[idx], recipe=recipe))
                scheduler.step()
                step += 1
                step_s += time.perf_counter() - t0
                window_s += time.perf_counter() - t0
                if not math.isfinite(loss):
                    log(f"loss {loss} at step {step}: stopped")
                    raise FloatingPointError(f"cell {cell.key}: loss became {loss} at step {step}; "
                                             f"the learning rate {cell.lr:g} is too high for this recipe")
                loss_sum, loss_n = loss_sum + loss, loss_n + 1
                if step % recipe.eval_every == 0 or step == total:
                    acc = round(accuracy(model, split.val_images, split.val_labels), 4)
                    curve.append([step, acc])
                    log(f"step {step}/{total}: train loss {loss_sum / loss_n:.4f}, val accuracy "
                        f"{acc:.4f}, {loss_n * batch / max(window_s, 1e-9):.0f} img/s (cumulative "
                        f"{step * batch / max(step_s, 1e-9):.0f})")
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}", val=f"{acc:.3f}")
                    loss_sum, loss_n, window_s = 0.0, 0, 0.0
                if step % every == 0 and step < total:
                    elapsed = prior_s + time.perf_counter() - start
                    _save_checkpoint(store.checkpoint_path(cell), {
                        "format": CHECKPOINT_FORMAT, "key": cell.key, "step": step,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "augment_rng": aug_gen.get_state(),
                        "torch_rng": torch.get_rng_state(), "val_curve": curve,
                        "train_time_s": elapsed, "step_time_s": step_s, "resumes": resumes})
                    atomic_write_json(store.progress_path(cell), {
                        "key": cell.key, "step": step, "steps": total, "val_curve": curve,
                        "train_time_s": round(elapsed, 1)})
                bar.update(1)
                if on_step is not None:
                    on_step(step)
        except BaseException as e:
            log(f"stopped at step {step}/{total} ({type(e).__name__}); the next run resumes from "
                f"the last checkpoint")
            raise
        finally:
            bar.close()
        train_time = prior_s + time.perf_counter() - start
        card = _finish(cell, model, store=store, curve=curve, train_time=train_time, step_s=step_s,
                       resumes=resumes, command=command or default_command(cell, torch.get_num_threads()))
        log(f"done: val {card['val_accuracy']:.4f}, test {card['test_accuracy']:.4f}, "
            f"{card['train_time_s']:.0f} s, {card['img_per_s']:.0f} img/s -> {card['weights']}")
        for path in (store.checkpoint_path(cell), store.progress_path(cell)):
            path.unlink(missing_ok=True)
        return card


def _finish(cell: Cell, model: zoo.ProbeModel, *, store: Store, curve: list, train_time: float,
            step_s: float, resumes: int, command: str) -> dict:
    """Write the weights and the card; accuracies are measured on the weights as stored (fp32)."""
    import timm
    recipe = cell.recipe
    weights = store.weights_path(cell)
    digest = zoo.save_weights(model, weights, dtype=recipe.storage_dtype)
    stored = load_model(cell.family, weights)
    split = data_split(recipe)
    (test_x, test_y), (sub_x, sub_y) = test_sets(recipe)
    d = recipe.training["data"]
    card = {
        "schema_version": 1,
        "key": cell.key,
        "family": cell.family,
        "n_train": cell.n_train,
        "seed": cell.seed,
        "lr": cell.lr,
        "steps": cell.steps,
        "batch_size": recipe.batch_size,
        "params": zoo.count_params(stored),
        "recipe_hash": recipe.hash,
        "recipe": recipe.spec,
        "dataset": d["dataset"],
        "val_n": len(split.val_labels),
        "val_accuracy": round(accuracy(stored, split.val_images, split.val_labels), 4),
        "val_curve": curve,
        "test_n": len(test_y),
        "test_accuracy": round(accuracy(stored, test_x, test_y), 4),
        "test_subset": {"n": len(sub_y), "seed": d["test_subset_seed"],
                        "accuracy": round(accuracy(stored, sub_x, sub_y), 4)},
        "train_time_s": round(train_time, 1),
        "img_per_s": round(cell.steps * recipe.batch_size / max(step_s, 1e-9), 1),
        "resumes": resumes,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "timm": timm.__version__,
                     "python": platform.python_version()},
        "cpu": _cpu(),
        "storage_dtype": recipe.training["storage_dtype"],
        "weights": _relative(weights),
        "sha256": digest,
        "command": command,
        **transfer.card_fields(cell, store),          # "init_from": the source cell, if any
    }
    atomic_write_json(store.card_path(cell), card)
    return card
