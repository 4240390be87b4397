"""Executable equivalences between MLP, convolution and token mixing.

Claims of the 2021 MLP debate, each checked numerically (every function
returns the maximum absolute difference between the two sides):

- The per-patch linear embedding of ViT/Mixer is a convolution with
  ``kernel = stride = patch`` (Tolstikhin et al. 2021, arXiv:2105.01601, Sec. 2;
  Dosovitskiy et al. 2021, arXiv:2010.11929, "Hybrid architecture"):
  :func:`patch_embedding_as_linear` compares the conv with unfold + linear.
- A convolution is a (sparse, weight-shared) token-mixing MLP: RepMLP
  (Ding et al. 2021, arXiv:2105.01883) re-parameterises a conv into the
  fully-connected weights it equals; :func:`conv_as_token_mixing` builds that
  ``[C_out, C_in, T, T]`` matrix and compares outputs.
- FNet's mixing is a fixed token-mixing matrix, the real part of the 2-D DFT
  (Lee-Thorp et al. 2021, arXiv:2105.03824): :func:`fnet_is_dft` compares the
  module with an independently built DFT matrix. That holds for the zoo's token-only
  ``fnet``. The published FNet (``fnet2d``) also transforms the channels:
  ``Re(F_s X F_h^T) = Re F_s X Re F_h^T - Im F_s X Im F_h^T`` (:func:`fnet2d_is_dft`),
  a fixed linear map of the whole token array that is NOT one token-mixing matrix
  shared by the channels: :func:`token_matrix_residual` measures how far a mixing
  module is from the nearest such matrix (0 for ``fnet``; 0.98 for ``fnet2d`` at 8 channels).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["patch_embedding_as_linear", "conv_token_mixing_matrix", "conv_as_token_mixing",
           "fnet_is_dft", "fnet2d_is_dft", "token_matrix_residual", "has_patch_embedding",
           "check_all"]

Tensor = torch.Tensor


def _find_patch_conv(module: nn.Module) -> nn.Conv2d:
    if isinstance(module, nn.Conv2d):
        return module
    for m in module.modules():
        proj = getattr(m, "proj", None)
        if isinstance(proj, nn.Conv2d) and proj.kernel_size == proj.stride:
            return proj
    raise ValueError(f"{type(module).__name__} holds no patch embedding (a Conv2d with "
                     f"kernel_size == stride, e.g. timm PatchEmbed.proj)")


def has_patch_embedding(module: nn.Module) -> bool:
    """Whether ``module`` holds a patch embedding conv (kernel == stride); the pure MLP does not."""
    try:
        _find_patch_conv(module)
    except ValueError:
        return False
    return True


def patch_embedding_as_linear(module: nn.Module, x: Tensor) -> float:
    """Patch embedding conv (kernel = stride = patch) vs unfold + one shared linear map.

    Args:
        module: a timm ``PatchEmbed``, its ``proj`` conv, or a model holding one.
        x: ``[B, C, H, W]`` input of the conv (H, W multiples of the patch).

    Returns:
        max |conv(x) - linear(unfold(x))| over all patches and channels.
    """
    conv = _find_patch_conv(module)
    p = conv.kernel_size
    if conv.stride != p or conv.padding not in ((0, 0), 0, "valid") or conv.groups != 1:
        raise ValueError(f"patch conv must have kernel == stride, no padding, groups 1; got "
                         f"kernel {p}, stride {conv.stride}, padding {conv.padding}")
    if x.ndim != 4 or x.shape[1] != conv.in_channels or x.shape[2] % p[0] or x.shape[3] % p[1]:
        raise ValueError(f"x must be [B, {conv.in_channels}, H, W] with H, W multiples of {p}; "
                         f"got {tuple(x.shape)}")
    with torch.no_grad():
        y_conv = conv(x).flatten(2)                                    # [B, D, N]
        patches = F.unfold(x, kernel_size=p, stride=p)                 # [B, C*p*p, N]
        weight = conv.weight.reshape(conv.out_channels, -1)            # [D, C*p*p]
        y_lin = weight @ patches
        if conv.bias is not None:
            y_lin = y_lin + conv.bias[:, None]
    return float((y_conv - y_lin).abs().max())


def conv_token_mixing_matrix(conv: nn.Conv2d, grid: Tuple[int, int]) -> Tensor:
    """The conv as token mixing ``M[o, i, t, s]``: ``y[o, t] = sum_{i,s} M[o,i,t,s] x[i,s] + b[o]``.

    Built as RepMLP does, by passing the identity basis through the conv
    (without bias). ``grid``: ``(h, w)`` of the input; output grid from the conv.

    Returns:
        ``[C_out, C_in, T_out, T_in]``.
    """
    h, w = grid
    c_in, t_in = conv.in_channels, h * w
    eye = torch.eye(c_in * t_in, dtype=conv.weight.dtype).reshape(c_in * t_in, c_in, h, w)
    with torch.no_grad():
        resp = F.conv2d(eye, conv.weight, None, conv.stride, conv.padding, conv.dilation,
                        conv.groups)                                   # [C_in*T_in, C_out, ho, wo]
    c_out = resp.shape[1]
    resp = resp.reshape(c_in, t_in, c_out, -1)                         # [i, s, o, t]
    return resp.permute(2, 0, 3, 1).contiguous()


def conv_as_token_mixing(conv: nn.Conv2d, x: Tensor, *, matrix: Optional[Tensor] = None) -> float:
    """Conv output vs the same conv rewritten as a token-mixing matrix (RepMLP-style).

    Args:
        conv: any ``nn.Conv2d`` (keep ``C * H * W`` small: the matrix is dense).
        x: ``[B, C_in, H, W]``.
        matrix: the conv's ``[C_out, C_in, T_out, T_in]`` matrix for inputs of ``x``'s
            size, if already built by :func:`conv_token_mixing_matrix` (reused across
            many inputs); default: built here.

    Returns:
        max |conv(x) - (M x + b)|.
    """
    if x.ndim != 4 or x.shape[1] != conv.in_channels:
        raise ValueError(f"x must be [B, {conv.in_channels}, H, W], got {tuple(x.shape)}")
    b, c, h, w = x.shape
    if matrix is None:
        if c * h * w > 8192:
            raise ValueError(f"dense token-mixing matrix of {c * h * w} inputs is too large; use a "
                             f"smaller input (C * H * W <= 8192)")
        matrix = conv_token_mixing_matrix(conv, (h, w))                # [o, i, t, s]
    elif matrix.ndim != 4 or tuple(matrix.shape[1:2]) != (c,) or matrix.shape[3] != h * w:
        raise ValueError(f"matrix {tuple(matrix.shape)} does not fit inputs {tuple(x.shape)}; "
                         f"build it with conv_token_mixing_matrix(conv, ({h}, {w}))")
    with torch.no_grad():
        y = conv(x)
        mixed = torch.einsum("oits,bis->bot", matrix, x.reshape(b, c, h * w))
        if conv.bias is not None:
            mixed = mixed + conv.bias[None, :, None]
    return float((y.reshape(b, y.shape[1], -1) - mixed).abs().max())


def _dft_matrix_numpy(grid: Tuple[int, int]) -> Tensor:
    """Re(2-D DFT) on a grid from numpy's FFT of the identity basis (independent of probe)."""
    import numpy as np
    h, w = grid
    basis = np.eye(h * w).reshape(h * w, h, w)
    spec = np.fft.fft2(basis, axes=(1, 2), norm="ortho").reshape(h * w, h * w)   # [s, t]
    return torch.from_numpy(spec.real.T.copy()).float()


def fnet_is_dft(module: nn.Module, x: Optional[Tensor] = None, *, seed: int = 0) -> float:
    """FNet's Fourier mixing vs the real part of the 2-D DFT matrix applied to the tokens.

    Args:
        module: a :class:`probe.models.fnet.FourierMixing`, an ``FNetBlock`` or a
            model holding one (the first is used).
        x: ``[B, T, C]`` tokens (default: seeded random ``[2, T, 8]``).

    Returns:
        max of |mixing(x) - Re(F) x| and |fourier_mixing_matrix - Re(F)|.
    """
    from .models.fnet import FourierMixing, fourier_mixing_matrix
    mix = next((m for m in module.modules() if isinstance(m, FourierMixing)), None)
    if mix is None:
        raise ValueError(f"{type(module).__name__} holds no FourierMixing (FNet) module")
    grid = tuple(mix.grid)
    t = grid[0] * grid[1]
    if x is None:
        x = torch.randn(2, t, 8, generator=torch.Generator().manual_seed(seed))
    if x.ndim != 3 or x.shape[1] != t:
        raise ValueError(f"x must be [B, {t}, C] tokens, got {tuple(x.shape)}")
    ref = _dft_matrix_numpy(grid)
    with torch.no_grad():
        err_out = (mix(x) - ref @ x).abs().max()
    err_matrix = (fourier_mixing_matrix(grid) - ref).abs().max()
    return float(max(err_out, err_matrix))


def _dft_numpy(n: int) -> Tensor:
    """The orthonormal complex DFT matrix ``[n, n]`` from numpy's FFT of the identity."""
    import numpy as np
    return torch.from_numpy(np.fft.fft(np.eye(n), axis=0, norm="ortho"))


def fnet2d_is_dft(module: nn.Module, x: Optional[Tensor] = None, *, seed: int = 0) -> float:
    """The published FNet's mixing vs ``Re F_s X Re F_h^T - Im F_s X Im F_h^T``.

    ``F_s`` (the token grid's 2-D DFT, ``kron(F_h', F_w')``) and ``F_h`` (the channels' DFT)
    are built with numpy, independently of the module's ``torch.fft``.

    Args:
        module: a :class:`probe.models.fnet2d.TokenChannelFourierMixing`, an ``FNet2dBlock``
            or a model holding one (the first is used).
        x: ``[B, T, C]`` tokens (default: seeded random ``[2, T, 8]``).

    Returns:
        max |mixing(x) - (Re F_s X Re F_h^T - Im F_s X Im F_h^T)|.
    """
    from .models.fnet2d import TokenChannelFourierMixing
    mix = next((m for m in module.modules() if isinstance(m, TokenChannelFourierMixing)), None)
    if mix is None:
        raise ValueError(f"{type(module).__name__} holds no TokenChannelFourierMixing (fnet2d)")
    h, w = mix.grid
    if x is None:
        x = torch.randn(2, h * w, 8, generator=torch.Generator().manual_seed(seed))
    if x.ndim != 3 or x.shape[1] != h * w:
        raise ValueError(f"x must be [B, {h * w}, C] tokens, got {tuple(x.shape)}")
    f_s = torch.kron(_dft_numpy(h), _dft_numpy(w))
    f_h = _dft_numpy(x.shape[2])
    xd = x.double()
    ref = f_s.real @ xd @ f_h.real.T - f_s.imag @ xd @ f_h.imag.T
    with torch.no_grad():
        return float((mix(x).double() - ref).abs().max())


def token_matrix_residual(module: nn.Module, tokens: int, channels: int = 8) -> float:
    """How far a token-mixing module is from ONE token-mixing matrix shared by the channels.

    The module's linear map ``L`` on ``[T, C]`` (read by feeding it the ``T * C`` unit
    arrays) is compared with the nearest ``M kron I_C`` (Frobenius; ``M[t, s]`` = mean over
    ``c`` of ``L[(t, c), (s, c)]``): returns ``|L - M kron I_C| / |L|``, 0 when one token
    matrix ``M`` acts on every channel (``fnet``, ResMLP), near 1 when not (``fnet2d``).
    Only meaningful for a linear module (no bias).
    """
    n = tokens * channels
    basis = torch.eye(n, dtype=torch.float64).reshape(n, tokens, channels)
    with torch.no_grad():
        cols = module(basis.float()).double().reshape(n, n)          # row j: L applied to unit j
    full = cols.T.reshape(tokens, channels, tokens, channels)      # [t, c, s, c']
    shared = torch.diagonal(full, dim1=1, dim2=3).mean(-1)         # [t, s]
    nearest = torch.einsum("ts,cd->tcsd", shared, torch.eye(channels, dtype=torch.float64))
    return float((full - nearest).norm() / full.norm())


def check_all(*, seed: int = 0) -> dict:
    """Run every equivalence on small seeded modules; ``{name: max abs error}``."""
    from timm.layers import PatchEmbed
    from .models.fnet import FourierMixing
    from .models.fnet2d import TokenChannelFourierMixing
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        embed = PatchEmbed(img_size=28, patch_size=4, in_chans=1, embed_dim=16)
        conv = nn.Conv2d(3, 5, 3, padding=1)
    return {
        "patch_embedding_as_linear": patch_embedding_as_linear(embed, torch.rand(2, 1, 28, 28,
                                                                                  generator=g)),
        "conv_as_token_mixing": conv_as_token_mixing(conv, torch.randn(2, 3, 8, 8, generator=g)),
        "fnet_is_dft": fnet_is_dft(FourierMixing((7, 7)), seed=seed),
        "fnet2d_is_dft": fnet2d_is_dft(TokenChannelFourierMixing((7, 7)), seed=seed),
    }
