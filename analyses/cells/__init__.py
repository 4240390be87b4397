"""Training cells: one recipe for every family, converged models, resumable (issue 15).

A *cell* is one model: a zoo family trained on ``n_train`` Fashion-MNIST images (or
``synthetic`` ones: the ``synthetic`` plan)
with a seed and a peak learning rate, under the committed recipe
(``analyses/recipe.json``, identified by its hash). Cells are trained by
``python -m analyses.cells run --plan sweep|full|data-efficiency|synthetic|finegrid`` (or
``make cells-sweep`` / ``cells-full`` / ``cells-data-efficiency`` / ``cells-synthetic`` /
``cells-finegrid``), resume
after any interruption, and leave fp16 safetensors weights with a JSON card:
full-data models under ``analyses/models/<family>_n<n>_s<seed>.safetensors``
(committed, loadable with ``probe.zoo.load(family, weights=PATH)``), the others
under ``runs/cells/<key>/``.

    from analyses.cells import Cell, plan, train_cell
    cells = plan("sweep")                  # 6 families x 3 learning rates at n = 10k
    card = train_cell(cells[0], threads=1, progress=True)

Modules: :mod:`.recipe` (the recipe, its hash, step rule, data split),
:mod:`.training` (:class:`Cell`, :func:`train_cell`, checkpoints, cards),
:mod:`.plan` (plans, the learning-rate sweep's choice, status), :mod:`.runner`
(worker processes), ``__main__`` (the command line).
"""
from .plan import (PLANS, plan_names, CellStatus, cell_status, chosen_lrs, plan, select_lr, sweep_grid,
                   sweep_results, synthetic_cells, synthetic_recipe, write_sweep, finegrid_cells)
from .recipe import (QUICK_OVERRIDES, RECIPE_PATH, DataSplit, Recipe, committed_recipe, data_split,
                     derived_seed, load_recipe, quick_recipe, test_sets, train_subset)
from .runner import RunReport, run_cells, summary
from .training import (Cell, CellBusy, Store, accuracy, batch_indices, default_store, lr_factor,
                       make_optimizer, train_cell, training_step)

__all__ = [
    "Cell", "CellBusy", "Store", "default_store", "train_cell", "training_step", "accuracy",
    "lr_factor", "make_optimizer", "batch_indices",
    "Recipe", "RECIPE_PATH", "QUICK_OVERRIDES", "load_recipe", "committed_recipe", "quick_recipe",
    "DataSplit", "data_split", "train_subset", "test_sets", "derived_seed",
    "PLANS", "plan_names", "plan", "select_lr", "sweep_grid", "sweep_results", "chosen_lrs", "write_sweep", "CellStatus",
    "synthetic_recipe", "synthetic_cells", "finegrid_cells",
    "cell_status", "RunReport", "run_cells", "summary",
]
