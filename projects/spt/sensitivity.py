"""Parameter sensitivity (thesis Eq. 2.3, Algorithm 1): ``s = sum over C training
samples of g^2``.

Like the official code, the gradients are *batch* gradients: one forward + backward
per mini-batch of the mean loss, and ``s += g_b^2``. With ``batch_size=1`` this is
Algorithm 1 exactly (per-sample gradients). The batches are the first C samples of the
training set in file order (the official code reads them with a sequential sampler);
in a distributed run global batch ``b`` is processed by rank ``b % world_size`` and the
sums are all-reduced, so every rank ends with the same scores, equal (up to float
summation order) to a single-process run.
"""
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, get_dist_info
from torch import Tensor, nn

LossFn = Callable[[nn.Module, object], Tuple[Tensor, int]]


def sensitivity_batches(num_samples: int, batch_size: int, dataset_len: int,
                        rank: int = 0, world_size: int = 1) -> List[List[int]]:
    """Index lists of this rank's batches over the first ``num_samples`` samples."""
    if num_samples <= 0 or batch_size <= 0:
        raise ValueError('num_samples and batch_size must be positive.')
    if num_samples > dataset_len:
        raise ValueError(f'sensitivity needs {num_samples} samples but the training set '
                         f'has {dataset_len}; lower spt_cfg.sensitivity.num_samples.')
    batches = [list(range(s, min(s + batch_size, num_samples)))
               for s in range(0, num_samples, batch_size)]
    return batches[rank::world_size]


def data_loss(model: nn.Module, batch) -> Tuple[Tensor, int]:
    """Loss of an mmengine model (classifier or segmentor) on a collated batch."""
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    return loss, len(data['data_samples'])


def accumulate_sensitivity(model: nn.Module, batches: Iterable, param_names: Sequence[str],
                           loss_fn: LossFn = data_loss,
                           train_mode: bool = False) -> Tuple[Dict[str, Tensor], int]:
    """Sum of squared batch gradients of ``param_names`` over ``batches`` (one
    forward + backward per batch), all-reduced across ranks.

    Only the scored parameters require grad during the pass (the backward stops at the
    first scored layer); requires_grad flags and the train/eval mode are restored.
    Returns ``(scores, number of samples over all ranks)``.
    """
    named = dict(model.named_parameters())
    missing = [n for n in param_names if n not in named]
    if missing:
        raise KeyError(f'parameters to score not in the model: {missing[:5]}')
    flags = {n: p.requires_grad for n, p in named.items()}
    was_training = model.training
    for n, p in named.items():
        p.requires_grad_(n in param_names)
    scores = {n: torch.zeros_like(named[n], dtype=torch.float32) for n in param_names}
    seen = 0
    model.train(train_mode)
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            loss, n = loss_fn(model, batch)
            loss.backward()
            for name in param_names:
                grad = named[name].grad
                if grad is not None:
                    scores[name].addcmul_(grad.float(), grad.float())
            seen += n
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in named.items():
            p.requires_grad_(flags[n])
        model.train(was_training)
    if get_dist_info()[1] > 1:
        device = next(iter(scores.values())).device  # nccl reduces GPU tensors only
        flat = torch.cat([s.flatten() for s in scores.values()] +
                         [torch.tensor([float(seen)], device=device)])
        all_reduce(flat, op='sum')
        seen = int(round(float(flat[-1])))
        offset = 0
        for name, s in scores.items():
            s.copy_(flat[offset:offset + s.numel()].view_as(s))
            offset += s.numel()
    return scores, seen
