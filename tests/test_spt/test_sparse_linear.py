"""The sparse-delta linear: same outputs and gradients as a dense reference, with the
trainable tensor sized by the selected entries."""
import pytest
import torch
from torch import nn

from projects.spt.layers import SPTLinear
from projects.spt.sparse_linear import SparseDelta


@pytest.mark.parametrize('index', [[0, 7, 13, 40, 53], [0, 7, 13, 40, 53, 2, 9]],
                         ids=['some-columns', 'all-columns'])
def test_sparse_linear_matches_dense_reference(index):
    base = nn.Linear(6, 9)
    layer = SPTLinear.from_linear(base, {'q': (0, 3), 'k': (3, 6), 'v': (6, 9)})
    layer.weight.requires_grad_(False)
    layer.add_sparse_weight(torch.tensor(index))
    layer.add_sparse_bias(torch.tensor([2, 8]))
    layer.add_structured('k', 'lora', rank=2)
    assert layer.sparse_weight.values.shape == (len(index),)
    assert layer.sparse_bias.values.shape == (2,)
    with torch.no_grad():
        layer.sparse_weight.values.normal_()
        layer.sparse_bias.values.normal_()
        layer.lora['k'].B.normal_()
    x = torch.randn(2, 4, 6, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)

    # dense reference: W + D as an ordinary differentiable tensor
    vals = layer.sparse_weight.values.detach().clone().requires_grad_(True)
    bvals = layer.sparse_bias.values.detach().clone().requires_grad_(True)
    a = layer.lora['k'].A.detach().clone().requires_grad_(True)
    b = layer.lora['k'].B.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    w = layer.weight.flatten().index_put((layer.sparse_weight.index,), vals,
                                         accumulate=True).view(9, 6)
    w = w + nn.functional.pad(b @ a, (0, 0, 3, 3))
    bias = layer.bias.index_put((layer.sparse_bias.index,), bvals, accumulate=True)
    y2 = x2 @ w.t() + bias
    y2.backward(g)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.sparse_weight.values.grad, vals.grad)
    torch.testing.assert_close(layer.sparse_bias.values.grad, bvals.grad)
    torch.testing.assert_close(layer.lora['k'].B.grad, b.grad)
    assert layer.weight.grad is None
    # the folded update is exactly the reference delta
    torch.testing.assert_close(layer.delta_weights()["weight"] + layer.weight, w.detach())


def test_sparse_delta_rejects_bad_indices():
    with pytest.raises(ValueError, match='out of range'):
        SparseDelta((3, 3), torch.tensor([9]))
    with pytest.raises(ValueError, match='unique'):
        SparseDelta((3, 3), torch.tensor([1, 1]))
    layer = SPTLinear(3, 3)
    layer.add_sparse_weight(torch.tensor([4]))
    with pytest.raises(RuntimeError, match='frozen dense weight'):
        layer(torch.randn(1, 3))  # the dense weight still requires grad
