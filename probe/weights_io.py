"""Reading weights files safely: ``.safetensors`` or ``weights_only`` torch checkpoints.

Every unreadable file (missing, a directory, empty, text, random bytes, truncated,
a zip that is not a checkpoint, a pickle that would run code, no tensors) gives one
:class:`WeightsFileError` (or ``FileNotFoundError`` / ``PermissionError``) whose
message names the file, what was wrong and the accepted formats. :mod:`probe.zoo`
loads every model's weights through :func:`load_state_dict_file`.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Dict, Union

import torch

__all__ = ["sha256_file", "WeightsFileError", "load_state_dict_file"]


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_ACCEPTED = ("accepted formats: .safetensors, or a torch checkpoint readable with "
             "torch.load(weights_only=True) holding a state dict (optionally under 'state_dict' "
             "or 'model')")


class WeightsFileError(ValueError):
    """A weights file that cannot be read as a state dict; the message names the file and the fix."""


def _bad_file(path: Path, what: str) -> WeightsFileError:
    return WeightsFileError(f"cannot load weights file {path}: {what}; {_ACCEPTED}")


def _unwrap_checkpoint(obj) -> Dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else "a dict without tensors"
        raise ValueError(f"it holds {kind}, not a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _read_head(path: Path, size: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except PermissionError:
        raise PermissionError(f"cannot load weights file {path}: permission denied; make it readable "
                              f"(chmod +r) or copy it somewhere you can read") from None
    except OSError as e:
        raise _bad_file(path, f"it cannot be read ({e.strerror or e})") from None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def load_state_dict_file(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read weights from ``.safetensors`` or a torch checkpoint without unsafe unpickling.

    Torch checkpoints (``.pth``, ``.pt``, ``.bin``, ``.ckpt``, any name) go through
    ``torch.load(weights_only=True)``: a checkpoint that needs arbitrary code to
    unpickle is refused with ``ValueError`` instead of being executed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PermissionError: ``path`` cannot be read.
        WeightsFileError (a ``ValueError``): anything else that makes the file
            unreadable as a state dict (a directory, empty, text, random bytes,
            truncated, a zip that is not a checkpoint, no tensors inside). The
            message names the file, what was wrong and the accepted formats.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist; pass --weights PATH to an "
                                f"existing file ({_ACCEPTED})")
    if path.is_dir():
        raise _bad_file(path, "it is a directory, not a file")
    size = path.stat().st_size
    head = _read_head(path)
    if size == 0:
        raise _bad_file(path, "the file is empty")
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise _bad_file(path, f"it is not a readable safetensors file ({str(e).splitlines()[0]}); "
                                  f"re-download or retrain it") from None
        if not state:
            raise _bad_file(path, "the safetensors file holds no tensors")
        return state
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        printable = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        what = "it is a text file" if printable else "it is neither a safetensors file nor a torch checkpoint"
        raise _bad_file(path, what)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise WeightsFileError(
                f"refusing to load {path}: it is not a plain tensor checkpoint and unpickling it "
                f"could run code ({msg}). Convert it to safetensors in a trusted environment "
                f"first") from None
        raise _bad_file(path, f"it is corrupt or truncated ({msg})") from None
    except Exception as e:  # torch's readers raise many types (IndexError, KeyError, zip errors) on bad bytes
        first = str(e).splitlines()[0] if str(e) else ""
        kind = type(e).__name__
        if head.startswith(b"PK\x03\x04") and ("archive" in first or "zip" in first.lower()
                                                 or kind in ("KeyError", "BadZipFile")):
            what = f"it is a zip archive but not a torch checkpoint, or a truncated one ({kind}: {first})"
        else:
            what = f"it is corrupt or truncated ({kind}: {first})"
        raise _bad_file(path, what) from None
    try:
        return _unwrap_checkpoint(obj)
    except ValueError as e:
        raise _bad_file(path, str(e)) from None
