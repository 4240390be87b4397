import json
import subprocess
import sys

import pytest
import torch

from probe import train, zoo


def _run(tmp_path, name="cnn", out="a", extra=()):
    argv = ["--model", name, "--data", "synthetic", "--n-train", "96", "--epochs", "1",
            "--batch-size", "32", "--threads", "1", "--out", str(tmp_path / out), *extra]
    assert train.main(argv) == 0
    return json.loads((tmp_path / out / f"{name}.json").read_text())


def test_train_writes_weights_and_card_deterministically(tmp_path):
    card = _run(tmp_path, out="a")
    again = _run(tmp_path, out="b")
    for key in ("family", "params", "flops_per_image", "dataset", "epochs", "seed", "test_accuracy",
                "train_time_s", "sha256", "test_subset"):
        assert key in card, key
    assert card["sha256"] == again["sha256"], "same command twice must give identical weights"
    assert card["sha256"] == zoo.sha256_file(tmp_path / "a" / "cnn.safetensors")
    assert card["n_train"] == 96 and card["epochs"] == 1 and card["params"] == 548_978
    model = zoo.load("cnn", weights=tmp_path / "a" / "cnn.safetensors")
    assert model.net.stem[0].weight.dtype == torch.float32


def test_bf16_autocast_is_recorded_deterministic_and_differs_from_fp32(tmp_path):
    fp32 = _run(tmp_path, name="mlp", out="fp32")
    bf16 = _run(tmp_path, name="mlp", out="bf16", extra=["--amp", "bf16"])
    again = _run(tmp_path, name="mlp", out="bf16_again", extra=["--amp", "bf16"])
    assert fp32["precision"]["train_autocast"] is None and "--amp" not in fp32["command"]
    assert bf16["precision"] == {"train_autocast": "bfloat16", "master_weights": "float32",
                                 "eval": "float32"}
    assert bf16["command"].endswith("--amp bf16")
    assert bf16["sha256"] == again["sha256"] != fp32["sha256"]
    # weights, optimizer and evaluation stay fp32: the stored model is an fp32 model
    model = zoo.load("mlp", weights=tmp_path / "bf16" / "mlp.safetensors")
    assert model.net.pixels.fc.weight.dtype == torch.float32


def test_augment_is_seeded_and_keeps_content():
    x = torch.rand(8, 1, 28, 28)
    a = train.augment(x, torch.Generator().manual_seed(0))
    b = train.augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    no_shift = train.augment(x, torch.Generator().manual_seed(0), pad=0, flip=False)
    assert torch.equal(no_shift, x)


def test_training_learns_synthetic():
    """A few hundred steps on the synthetic set beat chance clearly (4 classes)."""
    from probe import data
    torch.manual_seed(0)
    ds = data.load("synthetic", "train", n=768, seed=0)
    x, y = data.as_tensors(ds)
    model = zoo.build("cnn")
    train.train(model, x, y, epochs=3, lr=3e-3, weight_decay=0.0, batch_size=64, seed=0,
                progress=False)
    test_x, test_y = data.as_tensors(data.load("synthetic", "test", n=256, seed=0))
    assert train.evaluate(model, test_x, test_y) > 0.5


@pytest.mark.parametrize("argv,message", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "cnn", "--epochs", "0"], "--epochs must be positive"),
])
def test_cli_errors_are_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "probe.train", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {proc.stderr.strip()[7:]}"]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "probe.train", "--model", "cnn", "--out",
                           str(blocker / "sub")], capture_output=True, text=True)
    assert proc.returncode == 2 and "not writable" in proc.stderr and "Traceback" not in proc.stderr
