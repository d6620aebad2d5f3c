"""Sensitivity: batch-gradient accumulation equals a brute-force per-sample loop."""
import pytest
import torch
from torch import nn

from projects.spt.sensitivity import accumulate_sensitivity, sensitivity_batches


class Toy(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 3)
        self.frozen = nn.Linear(3, 3)

    def forward(self, x):
        return self.frozen(self.fc2(torch.tanh(self.fc1(x))))


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y), len(y)


def _per_sample_grads(model, xs, ys, names):
    out = []
    for x, y in zip(xs, ys):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        out.append({n: p.grad.clone() for n, p in model.named_parameters() if n in names})
    return out


@pytest.mark.parametrize('batch_size', [1, 4])
def test_sensitivity_equals_brute_force(batch_size):
    model = Toy()
    xs, ys = torch.randn(10, 5), torch.randint(0, 3, (10,))
    names = ['fc1.weight', 'fc1.bias', 'fc2.weight']
    batches = [(xs[i], ys[i]) for i in sensitivity_batches(10, batch_size, 10)]
    scores, seen = accumulate_sensitivity(model, batches, names, loss_fn=_loss)
    assert seen == 10 and set(scores) == set(names)
    # flags and mode restored, no gradient left behind
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())

    grads = _per_sample_grads(model, xs, ys, names)
    for name in names:
        # reference: Algorithm 1 with per-sample gradients; with batches, the square of
        # each batch's mean gradient (the official code's batch gradients)
        want = torch.zeros_like(scores[name])
        for idx in sensitivity_batches(10, batch_size, 10):
            g = torch.stack([grads[i][name] for i in idx]).mean(0)
            want += g * g
        torch.testing.assert_close(scores[name], want, rtol=1e-5, atol=1e-8)
        assert scores[name].abs().sum() > 0


def test_batch_and_sample_scores_differ():
    """Guards the reference above against a vacuous pass."""
    model = Toy()
    xs, ys = torch.randn(8, 5), torch.randint(0, 3, (8,))
    s1, _ = accumulate_sensitivity(
        model, [(xs[i], ys[i]) for i in sensitivity_batches(8, 1, 8)], ['fc1.weight'],
        loss_fn=_loss)
    s4, _ = accumulate_sensitivity(
        model, [(xs[i], ys[i]) for i in sensitivity_batches(8, 4, 8)], ['fc1.weight'],
        loss_fn=_loss)
    assert not torch.allclose(s1['fc1.weight'], s4['fc1.weight'])


def test_batches_split_over_ranks():
    every = sensitivity_batches(10, 3, 12)
    assert every == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    parts = [sensitivity_batches(10, 3, 12, r, 2) for r in (0, 1)]
    assert parts == [[[0, 1, 2], [6, 7, 8]], [[3, 4, 5], [9]]]
    with pytest.raises(ValueError, match='training set has 5'):
        sensitivity_batches(10, 3, 5)
