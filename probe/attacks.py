"""Adversarial attacks with verified perturbation budgets.

Attacks come from foolbox 3 (Rauber et al. 2017/2020) - FGSM (Goodfellow et
al. 2015), L2 PGD (Madry et al. 2018), L2 DeepFool (Moosavi-Dezfooli et al.
2016), L2 Carlini-Wagner (Carlini & Wagner 2017) - and from ``pyautoattack``
(APGD-CE, Croce & Hein 2020). Linf PGD has a path of ours, ``pgd_linf``, that
runs the same algorithm as foolbox's ``LinfPGD`` (same random start draws, step,
projection and clipping) without foolbox's per-step overhead; foolbox stays
available as ``pgd-foolbox`` and is the reference the tests compare against.

Models take images in ``[0, 1]`` (normalisation is inside every zoo model), so
every attack works in the ``[0, 1]`` box. Every adversarial batch is checked to
lie inside the epsilon ball and the box before its accuracy is counted; the
prediction on it is recomputed here, never taken from the attack's success flag.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["AttackSpec", "ATTACKS", "names", "get", "run", "pgd_linf", "check_budget",
           "perturbation_norm"]

_BOX_TOL = 1e-6


@dataclass(frozen=True)
class AttackSpec:
    """One attack of the suite.

    Attributes:
        name: registry key used by the CLI (``--attacks``).
        norm: ``"linf"`` or ``"l2"``: the threat model's norm.
        minimization: True for attacks that find a minimal perturbation once and
            are then clipped to each epsilon (DeepFool, CW); False for attacks
            that run once per epsilon (FGSM, PGD, APGD).
        default_steps: iterations when ``steps`` is not given.
        description: one line for ``--help`` and tables.
        runner: ``runner(model, x, y, epsilons, steps, seed) -> list[Tensor]``, one
            adversarial batch per epsilon; ``seed`` seeds randomness the attack keeps
            apart from torch's global generator (APGD's own).
    """

    name: str
    norm: str
    minimization: bool
    default_steps: int
    description: str
    runner: Callable = field(repr=False)


ATTACKS: Dict[str, AttackSpec] = {}


def _register(name: str, *, norm: str, minimization: bool, default_steps: int, description: str):
    def wrap(fn):
        ATTACKS[name] = AttackSpec(name, norm, minimization, default_steps, description, fn)
        return fn
    return wrap


def names() -> List[str]:
    return list(ATTACKS)


def get(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``delta`` ``[B, ...] -> [B]``."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def check_budget(x: torch.Tensor, adv: torch.Tensor, epsilon: float, norm: str) -> None:
    """Raise ``RuntimeError`` unless ``adv`` is inside the epsilon ball around ``x`` and in [0, 1]."""
    if adv.shape != x.shape or not torch.isfinite(adv).all():
        raise RuntimeError("attack returned adversarial examples of the wrong shape or with NaN")
    if float(adv.min()) < -_BOX_TOL or float(adv.max()) > 1 + _BOX_TOL:
        raise RuntimeError(f"attack left the [0, 1] box (range {float(adv.min()):.4g}.."
                           f"{float(adv.max()):.4g})")
    worst = float(perturbation_norm(adv - x, norm).max()) if len(x) else 0.0
    if worst > epsilon * (1 + 1e-4) + 1e-6:
        raise RuntimeError(f"attack left the {norm} ball: perturbation {worst:.6g} > epsilon {epsilon:.6g}")


def _fmodel(model: nn.Module):
    import foolbox as fb
    return fb.PyTorchModel(model, bounds=(0, 1), device=next(model.parameters()).device)


def _pgd_stepsize(epsilon: float, steps: int) -> float:
    """Madry et al.'s rule: 2.5 * epsilon / steps."""
    return 2.5 * epsilon / max(steps, 1)


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, *, steps: int = 10,
             stepsize: Optional[float] = None, random_start: bool = True) -> torch.Tensor:
    """Linf PGD with random start (Madry et al. 2018); the algorithm of foolbox's ``LinfPGD``.

    The random start draws ``torch.rand`` exactly as foolbox does, so under the
    same global seed both give the same adversarial examples. Each step costs
    one forward and one backward pass and nothing else of note.

    Args:
        x: ``[B, C, H, W]`` images in [0, 1]; y: ``[B]`` labels.
        epsilon: Linf radius; steps: iterations; stepsize: default 2.5 * eps / steps.
    Returns:
        adversarial images ``[B, C, H, W]`` inside the ball and the box.
    """
    if epsilon == 0:
        return x.clone()
    stepsize = _pgd_stepsize(epsilon, steps) if stepsize is None else stepsize
    x0 = x.detach()
    if random_start:
        adv = x0 + (torch.rand(x0.shape, dtype=x0.dtype, device=x0.device) * (2 * epsilon) - epsilon)
        adv = adv.clamp(0, 1)
    else:
        adv = x0.clone()
    lower, upper = (x0 - epsilon).clamp_(min=0), (x0 + epsilon).clamp_(max=1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y, reduction="sum")
        grad, = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = torch.minimum(torch.maximum(adv + stepsize * grad.sign(), lower), upper)
    return adv.detach()


@_register("fgsm", norm="linf", minimization=False, default_steps=1,
           description="fast gradient sign method (foolbox LinfFastGradientAttack)")
def _fgsm(model, x, y, epsilons, steps, seed):
    import foolbox as fb
    _, clipped, _ = fb.attacks.FGSM()(_fmodel(model), x, y, epsilons=list(epsilons))
    return clipped


@_register("pgd", norm="linf", minimization=False, default_steps=10,
           description="Linf PGD, random start, step 2.5*eps/steps (ours, same algorithm as foolbox)")
def _pgd(model, x, y, epsilons, steps, seed):
    return [pgd_linf(model, x, y, eps, steps=steps) for eps in epsilons]


def _foolbox_pgd(attack_class, model, x, y, epsilons, steps):
    """One foolbox PGD run per epsilon, step 2.5 * eps / steps."""
    out = []
    for eps in epsilons:
        attack = attack_class(steps=steps, abs_stepsize=_pgd_stepsize(eps, steps))
        _, clipped, _ = attack(_fmodel(model), x, y, epsilons=eps)
        out.append(clipped)
    return out


@_register("pgd-foolbox", norm="linf", minimization=False, default_steps=10,
           description="Linf PGD via foolbox LinfPGD (reference for our pgd)")
def _pgd_foolbox(model, x, y, epsilons, steps, seed):
    import foolbox as fb
    return _foolbox_pgd(fb.attacks.LinfPGD, model, x, y, epsilons, steps)


@_register("pgd-l2", norm="l2", minimization=False, default_steps=10,
           description="L2 PGD, random start (foolbox L2PGD)")
def _pgd_l2(model, x, y, epsilons, steps, seed):
    import foolbox as fb
    return _foolbox_pgd(fb.attacks.L2PGD, model, x, y, epsilons, steps)


@_register("deepfool-l2", norm="l2", minimization=True, default_steps=50,
           description="L2 DeepFool, minimal perturbation clipped to each epsilon (foolbox)")
def _deepfool(model, x, y, epsilons, steps, seed):
    import foolbox as fb
    _, clipped, _ = fb.attacks.L2DeepFoolAttack(steps=steps)(_fmodel(model), x, y,
                                                             epsilons=list(epsilons))
    return clipped


@_register("cw-l2", norm="l2", minimization=True, default_steps=50,
           description="L2 Carlini-Wagner, 5 binary-search steps (foolbox)")
def _cw(model, x, y, epsilons, steps, seed):
    import foolbox as fb
    attack = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=5, steps=steps, stepsize=0.01,
                                              initial_const=1e-2)
    _, clipped, _ = attack(_fmodel(model), x, y, epsilons=list(epsilons))
    return clipped


@_register("apgd-ce", norm="linf", minimization=False, default_steps=20,
           description="APGD with cross-entropy loss (AutoAttack, via pyautoattack)")
def _apgd(model, x, y, epsilons, steps, seed):
    from pyautoattack.autopgd_base import APGDAttack
    out = []
    for eps in epsilons:
        if eps == 0:
            out.append(x.clone())
            continue
        attack = APGDAttack(model, n_iter=steps, norm="Linf", eps=eps, seed=seed, loss="ce",
                            device=x.device)
        out.append(attack.perturb(x, y).detach())
    return out


def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, epsilons: Sequence[float],
        *, steps: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """Attack a batch at every epsilon; return which examples stay correct.

    Args:
        model: classifier taking ``[B, C, H, W]`` in [0, 1], in eval mode.
        x: ``[B, C, H, W]`` images in [0, 1]; y: ``[B]`` labels.
        attack: a name from :func:`names`.
        epsilons: budgets (>= 0) in the attack's norm.
        steps: iterations (default: the attack's).
        seed: seeds the attack's randomness; the global RNG is left untouched.
    Returns:
        bool ``[len(epsilons), B]``: True where the prediction on the verified
        adversarial example is still ``y``.
    """
    spec = get(attack)
    epsilons = [float(e) for e in epsilons]
    if any(e < 0 for e in epsilons):
        raise ValueError(f"epsilons must be >= 0, got {epsilons}")
    steps = spec.default_steps if steps is None else int(steps)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        advs = spec.runner(model, x, y, epsilons, steps, seed)
    correct = []
    with torch.no_grad():
        for eps, adv in zip(epsilons, advs):
            adv = adv.detach().to(x.dtype)
            check_budget(x, adv, eps, spec.norm)
            correct.append(model(adv).argmax(1) == y)
    return torch.stack(correct)
