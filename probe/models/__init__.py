"""The zoo's families, one module each; importing this package registers them, in zoo order.

Each module holds one family's architecture (where timm lacks it) and its
:func:`probe.registry.register_family` registration.
"""
from . import mixer, resmlp, gmlp, vit  # noqa: F401  (registration order = zoo order)
from .fnet import FNetBlock, FourierMixing, fourier_mixing_matrix
from .cnn import BasicBlock, SmallResNet

__all__ = ["BasicBlock", "SmallResNet", "FNetBlock", "FourierMixing", "fourier_mixing_matrix"]
