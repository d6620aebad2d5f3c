"""The linear-probe floor of the main job (and the LP-FT head start,
``hooks/linear_probe_init_hook.py``): a multinomial logistic regression on frozen
features, trained to convergence, its L2 strength chosen on the validation split only.

Why full-batch L-BFGS on pre-extracted features rather than the job's SGD recipe: a
floor must be the best a linear classifier on these features can do, not what three
epochs of AdamW happen to reach (the job's 3-epoch recipe gives ~60 % on the cls token,
a converged probe ~80 %). The problem is strictly convex for ``l2 > 0``, so "converged"
has one meaning: the gradient norm below ``tol``.
"""
from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

# Grid of L2 strengths (multiplying 0.5 * ||W||^2, loss averaged over samples); the
# validation split picks one.
L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


# Floor of a feature's std, relative to the median feature's: a near-constant feature
# (the distilled ViT-Ti/14 has some) would otherwise be scaled up by ~1/std and get a
# folded weight in the hundreds, which blows up the logits as soon as dropout or
# drop-path moves it during fine-tuning (LP-FT).
REL_STD_FLOOR = 1e-2


def standardise(train: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-feature mean and std of ``train`` (std floored at ``REL_STD_FLOOR`` x the
    median std) so one L2 grid fits every feature scale; the fitted weights are folded
    back to raw features."""
    mean = train.mean(0)
    std = train.std(0)
    floor = (REL_STD_FLOOR * std.median()).clamp_min(1e-12)
    return mean, std.clamp_min(floor)


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, l2: float,
                 max_iter: int = 300, tol: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """Weights ``(C, D)`` and bias ``(C,)`` of the logistic regression on standardised
    features ``z = (x - mean) / std`` (statistics of ``x``, std with n - 1, floored) minimising
    mean cross-entropy + ``l2 / 2 * ||w_z||^2`` (bias not penalised), folded back to raw
    features: ``x @ W.T + b`` gives the logits directly, which is what lets the probe
    initialise a ``LinearClsHead`` (LP-FT). Standardising makes the penalty scale-free
    (one grid fits every feature scale) and the problem well conditioned for L-BFGS.
    """
    if l2 <= 0:
        raise ValueError(f'l2 must be > 0 (a strictly convex problem), got {l2}.')
    x = x.double()
    mean, std = standardise(x)
    z = (x - mean) / std
    w = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, requires_grad=True)
    b = torch.zeros(num_classes, dtype=z.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn='strong_wolfe')

    def closure() -> Tensor:
        opt.zero_grad()
        loss = logistic_objective(z, y, w, b, l2)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        weight = w / std
        bias = b - weight @ mean
    return weight.float(), bias.float()


def logistic_objective(x: Tensor, y: Tensor, w: Tensor, b: Tensor, l2: float) -> Tensor:
    """Mean cross-entropy + ``l2 / 2 * ||w||^2`` on (standardised) features ``x``."""
    return F.cross_entropy(x @ w.T + b, y) + 0.5 * l2 * (w * w).sum()


def accuracy(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor) -> float:
    """Top-1 accuracy in percent (the unit of mmpretrain's ``accuracy/top1``)."""
    pred = (x.float() @ weight.T + bias).argmax(1)
    return 100.0 * (pred == y).float().mean().item()


def log_loss(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor) -> float:
    """Mean cross-entropy of the fitted probe (what fine-tuning starts from)."""
    return F.cross_entropy(x.float() @ weight.T + bias, y).item()


def choose_l2(train: Tuple[Tensor, Tensor], val: Tuple[Tensor, Tensor], num_classes: int,
              grid: Sequence[float] = L2_GRID,
              criterion: str = 'accuracy') -> Tuple[float, Dict[float, float]]:
    """The L2 strength that scores best on the validation split and every grid point's
    score. ``criterion='accuracy'`` (the floor: the best linear classifier; ties go to
    the stronger L2, the simpler model) or ``'loss'`` (validation cross-entropy, lowest
    wins: the LP-FT head start, where an over-confident head -- a weak L2 that ties on
    accuracy -- gives huge first gradients once dropout and drop-path are on)."""
    if criterion not in ('accuracy', 'loss'):
        raise ValueError(f"criterion must be 'accuracy' or 'loss', got {criterion!r}.")
    scores = {}
    for l2 in grid:
        w, b = fit_logistic(*train, num_classes, l2)
        scores[l2] = accuracy(*val, w, b) if criterion == 'accuracy' else log_loss(*val, w, b)
    if criterion == 'accuracy':
        best = max(scores.items(), key=lambda kv: (kv[1], kv[0]))[0]
    else:
        best = min(scores.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return best, scores


@torch.no_grad()
def extract(model: torch.nn.Module, loader: Iterable, preprocessor=None,
            progress: Optional[callable] = None) -> Tuple[Tensor, Tensor]:
    """Features ``model.extract_feat`` gives the head (eval mode) and the labels of
    every sample of ``loader`` (mmengine data batches)."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    preprocessor = preprocessor or model.data_preprocessor
    for data in loader:
        data = preprocessor(data, False)
        out = model.extract_feat(data['inputs'])
        feats.append((out[-1] if isinstance(out, (tuple, list)) else out).float())
        labels.append(torch.cat([s.gt_label for s in data['data_samples']]))
        if progress is not None:
            progress(len(labels[-1]))
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels).long()
