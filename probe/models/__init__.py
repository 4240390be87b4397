"""The zoo's families, one module each; importing this package registers them, in zoo order.

Each module holds one family's architecture (where timm lacks it) and its
:func:`probe.registry.register_family` registration. The first six are the protocol's
families (``analyses.cells.training.PROTOCOL_FAMILIES``); the others joined later.
"""
from . import mixer, resmlp, gmlp, vit  # noqa: F401  (registration order = zoo order)
from .fnet import FNetBlock, FourierMixing, fourier_mixing_matrix
from .cnn import BasicBlock, SmallResNet
from . import extattn, ffn, repmlp, mlp, fnet2d, synthesizer  # noqa: F401,E402
from .extattn import ExternalAttention
from .ffn import FeedForwardBlock
from .fnet2d import FNet2dBlock, TokenChannelFourierMixing
from .mlp import FlatMLP, PixelDense
from .repmlp import RepTokenMixing, SharesetTokenLinear, reparameterize

__all__ = ["BasicBlock", "SmallResNet", "FNetBlock", "FourierMixing", "fourier_mixing_matrix",
           "ExternalAttention", "FeedForwardBlock", "FNet2dBlock", "TokenChannelFourierMixing",
           "FlatMLP", "PixelDense", "RepTokenMixing", "SharesetTokenLinear", "reparameterize"]
