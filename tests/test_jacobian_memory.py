"""Conv-stage Jacobians (effective mixing of ResNets) in chunks under a memory budget: the
chunked result equals the unchunked one, a layer over budget is a clear error, and an
out-of-memory error is never swallowed."""
import pytest
import torch

from probe import mixing, zoo
from probe.mixing import jacobian


@pytest.fixture(scope="module")
def cnn():
    return zoo.load("cnn")


def test_chunked_equals_unchunked(cnn, one_thread):
    stage = cnn.net.stages[1]                                   # stride 2: 14x14 -> 7x7
    z = torch.randn(2, 48, 14, 14, generator=torch.Generator().manual_seed(0))
    need = jacobian.conv_memory(stage, z)
    whole = jacobian.conv_effective(stage, z, chunk=need.colours)
    assert need.colours == 36 and whole.shape == (2, 49, 196) and whole.abs().sum() > 0
    for chunk in (1, 10):
        got = jacobian.conv_effective(stage, z, chunk=chunk)
        torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-7)
    budget = need.need(3)                                       # room for 3 cotangents at a time
    assert need.chunk(budget) == 3
    torch.testing.assert_close(jacobian.conv_effective(stage, z, memory_budget=budget), whole,
                               rtol=1e-5, atol=1e-7)


def test_layer_over_budget_says_what_and_how():
    resnet = zoo.build("timm:resnet18").eval()
    z = torch.randn(4, 64, 56, 56)
    need = jacobian.conv_memory(resnet.net.layer1, z)
    assert need.need(1) > 2**20 and need.colours > 1
    with pytest.raises(ValueError) as err:
        jacobian.conv_effective(resnet.net.layer1, z, memory_budget=2**20, layer="net.layer1")
    message = str(err.value)
    for part in ("net.layer1", "(4, 64, 56, 56)", "GiB", "budget of 0.00 GiB",
                 "smaller input or fewer images", "larger memory_budget"):
        assert part in message, (part, message)


def test_extract_and_effective_pass_the_budget(cnn, one_thread):
    x = torch.rand(1, 1, 28, 28)
    with pytest.raises(ValueError, match="effective mixing of net.stages.0 .* memory budget"):
        mixing.extract(cnn, x, layers=["net.stages.0"], memory_budget=2**16)
    with pytest.raises(ValueError, match="effective mixing of net.stages.2"):
        mixing.effective(cnn, x, "net.stages.2", memory_budget=2**10)
    (m,) = mixing.extract(cnn, x, layers=["net.stages.2"], memory_budget=2**24)
    assert m.kind == "conv" and m.matrix.shape == (1, 1, 49, 49)


def test_out_of_memory_is_not_swallowed(cnn, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(torch.autograd, "grad", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        jacobian.conv_effective(cnn.net.stages[2], torch.randn(1, 96, 7, 7))
