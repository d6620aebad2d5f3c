"""LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features"):
fine-tuning starts from the converged linear probe of the model's own initial features
instead of a random head.

Why: on a short budget (the embedded recipe trains 3 epochs on 2 CPU cores) a randomly
initialised head is still far from converged when training stops (that recipe on frozen
cls features reaches ~60 %, a converged probe ~80 %), so a PEFT result would mostly
measure head convergence. As a hook in the config, ``tools/train.py`` and
``tools/run_embedded_default.py`` start from the same head.

The L2 strength is chosen by fitting on ``select_splits[0]`` and scoring
``select_splits[1]`` (VTAB-1k: train800 -> val200); the probe is then fitted on
``fit_splits`` (train800val200 when the test split reports, train800 when val200
reports). The test split is never read.
"""
import copy
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from torch import Tensor

from ..ddp import unwrap_model
from ..linear_probe import L2_GRID, choose_l2, extract, fit_logistic

Features = Tuple[Tensor, Tensor]


def split_loader(cfg, split: str, batch_size: int = 100):
    """A deterministic loader of one split of the config's dataset, with the test
    pipeline (no augmentation: the probe sees the features the model starts from)."""
    dl = copy.deepcopy(cfg.test_dataloader)
    dl.dataset.split = split
    dl.batch_size = batch_size
    dl.sampler = dict(type='DefaultSampler', shuffle=False)
    return Runner.build_dataloader(dl, seed=0)


def head_fc(model) -> torch.nn.Linear:
    """The linear layer of an mmpretrain ``LinearClsHead`` (what the probe replaces)."""
    fc = getattr(getattr(model, 'head', None), 'fc', None)
    if not isinstance(fc, torch.nn.Linear):
        raise TypeError(f'LinearProbeInitHook: {type(model).__name__} has no linear head '
                        '`model.head.fc` (an mmpretrain LinearClsHead); remove the hook '
                        'from custom_hooks or use a LinearClsHead.')
    return fc


def probe_head(model, cfg, select_splits: Sequence[str] = ('train', 'val'),
               fit_splits: Sequence[str] = ('train', 'val'),
               progress: Optional[Callable[[int], None]] = None,
               cache: Optional[Dict[str, Features]] = None,
               grid: Sequence[float] = L2_GRID,
               criterion: str = 'accuracy') -> Dict[str, object]:
    """The converged probe of ``model``'s features: L2 chosen on ``select_splits`` by
    ``criterion`` (see ``choose_l2``), then fitted on the concatenation of
    ``fit_splits``. ``cache`` holds and receives the features per split (the main job
    shares them between rows with the same backbone)."""
    if len(select_splits) != 2:
        raise ValueError(f'select_splits must be (fit split, scoring split), got '
                         f'{select_splits!r}; e.g. ("train", "val").')
    cache = {} if cache is None else cache
    for split in (*select_splits, *fit_splits):
        if split not in cache:
            cache[split] = extract(model, split_loader(cfg, split), progress=progress)
    num_classes = int(head_fc(model).out_features)
    l2, scores = choose_l2(cache[select_splits[0]], cache[select_splits[1]], num_classes,
                           grid, criterion)
    x = torch.cat([cache[s][0] for s in fit_splits])
    y = torch.cat([cache[s][1] for s in fit_splits])
    weight, bias = fit_logistic(x, y, num_classes, l2)
    return dict(weight=weight, bias=bias, l2=l2, val_scores=scores)


@HOOKS.register_module()
class LinearProbeInitHook(Hook):
    """Before training, set ``model.head.fc`` to the converged linear probe of the
    model's initial features. Skipped when training resumes (the head is then in the
    checkpoint). Every rank fits the same deterministic probe on the same features.

    Args:
        select_splits: (fit, score) splits that choose the L2 strength.
        fit_splits: splits the final probe is fitted on: those the runner trains on.
        l2_grid: L2 strengths to choose from.
        select_by: 'loss' (default: the calibrated head with the lowest validation
            cross-entropy, a safe start for fine-tuning) or 'accuracy'.
    """
    priority = 'VERY_LOW'  # after hooks that build structure before training (SPT)

    def __init__(self, select_splits: Sequence[str] = ('train', 'val'),
                 fit_splits: Sequence[str] = ('train', 'val'),
                 l2_grid: Sequence[float] = L2_GRID, select_by: str = 'loss') -> None:
        self.select_splits = tuple(select_splits)
        self.fit_splits = tuple(fit_splits)
        self.l2_grid = tuple(l2_grid)
        self.select_by = select_by
        # set by a caller that already has the features / wants progress
        self.features: Dict[str, Features] = {}
        self.progress: Optional[Callable[[int], None]] = None
        self.fitted: Optional[Dict[str, object]] = None

    def before_train(self, runner) -> None:
        if runner.iter > 0:
            return
        model = unwrap_model(runner.model)
        self.fitted = probe_head(model, runner.cfg, self.select_splits, self.fit_splits,
                                 self.progress, self.features, self.l2_grid,
                                 self.select_by)
        fc = head_fc(model)
        with torch.no_grad():
            fc.weight.copy_(self.fitted['weight'])
            fc.bias.copy_(self.fitted['bias'])
        runner.logger.info(
            f'LP-FT: head set to the linear probe fitted on {"+".join(self.fit_splits)} '
            f'(l2={self.fitted["l2"]} chosen on {self.select_splits[1]}; '
            f'{self.select_by} per l2: '
            f'{self.fitted["val_scores"]})')
