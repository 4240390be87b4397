"""Every unreadable weights file gives one clear error (zoo.load) and one line + exit 2 (CLI)."""
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from probe import zoo

ACCEPTED = "accepted formats: .safetensors"


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _mixer_state():
    return {k: v.clone() for k, v in zoo.build("mixer").net.state_dict().items()}


def _make(kind: str, tmp: Path) -> Path:
    """Write one kind of bad weights file under tmp and return its path."""
    rng = torch.Generator().manual_seed(0)
    random_bytes = bytes(torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).tolist())
    if kind == "text":
        p = tmp / "passwd"
        p.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin\n")
    elif kind == "empty":
        p = tmp / "empty.pth"
        p.write_bytes(b"")
    elif kind.startswith("random"):
        ext = kind.split("-", 1)[1] if "-" in kind else ""
        p = tmp / (f"noise.{ext}" if ext else "noise")
        p.write_bytes(random_bytes)
    elif kind == "truncated-torch":
        full = tmp / "full.pth"
        torch.save(_mixer_state(), full)
        raw = full.read_bytes()
        p = tmp / "half.pth"
        p.write_bytes(raw[: len(raw) // 2])
    elif kind == "truncated-legacy-torch":
        buf = io.BytesIO()
        torch.save(_mixer_state(), buf, _use_new_zipfile_serialization=False)
        p = tmp / "half_legacy.pt"
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "truncated-safetensors":
        full = tmp / "full.safetensors"
        zoo.save_weights(zoo.build("mixer"), full)
        raw = full.read_bytes()
        p = tmp / "half.safetensors"
        p.write_bytes(raw[: len(raw) // 2])
    elif kind == "zip":
        p = tmp / "archive.pth"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "not a checkpoint")
    elif kind == "directory":
        p = tmp / "weights_dir"
        p.mkdir()
    elif kind == "missing":
        p = tmp / "absent.safetensors"
    elif kind == "unreadable":
        p = tmp / "secret.safetensors"
        zoo.save_weights(zoo.build("mixer"), p)
        p.chmod(0)
    elif kind == "wrong-shapes":
        state = _mixer_state()
        key = "stem.proj.weight"
        state[key] = torch.zeros(3, 3)
        p = tmp / "shapes.pth"
        torch.save(state, p)
    elif kind in ("nan", "inf"):
        state = _mixer_state()
        state["head.weight"][0, 0] = float("nan") if kind == "nan" else float("inf")
        p = tmp / f"{kind}.safetensors"
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(p))
    elif kind == "not-tensors":
        p = tmp / "list.pt"
        torch.save([1, 2, 3], p)
    elif kind == "code":
        p = tmp / "evil.pth"
        with open(p, "wb") as f:
            pickle.dump({"state_dict": _mixer_state(), "payload": _Payload(tmp / "code-ran")}, f)
    else:
        raise AssertionError(kind)
    return p


# kind -> (exception type, words the message must contain besides the file name)
CASES = {
    "text": (ValueError, ["text file", ACCEPTED]),
    "empty": (ValueError, ["empty", ACCEPTED]),
    "random-pt": (ValueError, ["neither a safetensors file nor a torch checkpoint", ACCEPTED]),
    "random-pth": (ValueError, ["neither", ACCEPTED]),
    "random-bin": (ValueError, ["neither", ACCEPTED]),
    "random": (ValueError, ["neither", ACCEPTED]),
    "truncated-torch": (ValueError, ["zip archive but not a torch checkpoint, or a truncated one", ACCEPTED]),
    "truncated-legacy-torch": (ValueError, ["corrupt or truncated", ACCEPTED]),
    "truncated-safetensors": (ValueError, ["not a readable safetensors file", ACCEPTED]),
    "zip": (ValueError, ["zip archive but not a torch checkpoint", ACCEPTED]),
    "directory": (ValueError, ["is a directory", ACCEPTED]),
    "missing": (FileNotFoundError, ["does not exist", "--weights PATH"]),
    "unreadable": (PermissionError, ["permission denied"]),
    "wrong-shapes": (ValueError, ["do not fit mixer", "stem.proj.weight (3, 3)", "expected (128, 1, 4, 4)"]),
    "nan": (ValueError, ["'head.weight' contains NaN"]),
    "inf": (ValueError, ["'head.weight' contains inf"]),
    "not-tensors": (ValueError, ["holds list, not a state dict", ACCEPTED]),
    "code": (ValueError, ["refusing to load", "could run code"]),
}


@pytest.fixture
def unreadable_as_root(monkeypatch):
    """chmod 0 does not stop root: make ``open`` of mode-0 files fail as it would for a user."""
    if os.geteuid() == 0:
        import builtins
        real_open = builtins.open

        def guarded(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, Path)) and os.path.exists(file) and os.stat(file).st_mode & 0o777 == 0:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded)


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_weights_file_gives_one_clear_error(kind, tmp_path, unreadable_as_root):
    path = _make(kind, tmp_path)
    exc, words = CASES[kind]
    with pytest.raises(exc) as info:
        zoo.load("mixer", weights=path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    for w in words:
        assert w in msg, (w, msg)
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("kind", list(CASES))
def test_cli_bad_weights_is_one_line_exit_2(kind, tmp_path, capsys, unreadable_as_root):
    from probe import robustness
    path = _make(kind, tmp_path)
    rc = robustness.main(["--model", "mixer", "--weights", str(path), "--n", "4",
                          "--out", str(tmp_path / "runs"), "--data", "synthetic"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and str(path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "code-ran").exists()


def test_valid_weights_files_still_load(tmp_path):
    """safetensors, weights_only torch files, and state dicts nested under state_dict / model."""
    model = zoo.build("mixer", seed=3).eval()
    x = torch.rand(2, 1, 28, 28)
    expected = model(x)
    st = tmp_path / "w.safetensors"
    zoo.save_weights(model, st, dtype=torch.float32)
    state = model.net.state_dict()
    flat, nested_sd, nested_model, legacy = (tmp_path / n for n in ("flat.pt", "sd.pth", "m.bin", "legacy"))
    torch.save(state, flat)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, nested_sd)
    torch.save({"model": state}, nested_model)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    for p in (st, flat, nested_sd, nested_model, legacy):
        assert torch.allclose(zoo.load("mixer", weights=p)(x), expected, atol=1e-6), p
    assert torch.equal(zoo.load("mixer")(x), zoo.load("mixer", weights=zoo.WEIGHTS_DIR / "mixer.safetensors")(x))
