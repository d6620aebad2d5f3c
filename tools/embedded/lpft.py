"""LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features"):
fine-tuning starts from the converged linear probe of the model's own initial features
instead of a random head.

Why here: with 3 epochs on 2 CPU cores a randomly initialised head is still far from
converged when training stops (the job's recipe on frozen cls features reaches ~60 %, a
converged probe ~80 %), so the PEFT rows would mostly measure head convergence. The
probe is fitted on the training split of the run (train800, or train800val200 for the
test protocol) and its L2 strength is chosen on val200 only; the test split is never read.
"""
import copy
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch import Tensor

from .probe import L2_GRID, choose_l2, extract, fit_logistic

Features = Tuple[Tensor, Tensor]


def split_loader(cfg, split: str, batch_size: int = 100):
    """A deterministic loader of one VTAB-1k split with the config's test pipeline."""
    dl = copy.deepcopy(cfg.test_dataloader)
    dl.dataset.split = split
    dl.batch_size = batch_size
    dl.sampler = dict(type='DefaultSampler', shuffle=False)
    return Runner.build_dataloader(dl, seed=0)


def probe_head(model, cfg, protocol: str, progress=None,
               cache: Optional[Dict[str, Features]] = None,
               grid: Sequence[float] = L2_GRID) -> Dict[str, object]:
    """Fit the converged probe on ``model``'s features: L2 chosen on val200 with train800,
    then fitted on train800 (``protocol='val'``) or train800val200 (``'test'``).
    ``cache`` holds and receives the features per split."""
    cache = {} if cache is None else cache
    for split in ('train', 'val'):
        if split not in cache:
            cache[split] = extract(model, split_loader(cfg, split), progress=progress)
    num_classes = int(model.head.fc.out_features)
    l2, scores = choose_l2(cache['train'], cache['val'], num_classes, grid)
    if protocol == 'val':
        x, y = cache['train']
    else:
        x = torch.cat([cache['train'][0], cache['val'][0]])
        y = torch.cat([cache['train'][1], cache['val'][1]])
    weight, bias = fit_logistic(x, y, num_classes, l2)
    return dict(weight=weight, bias=bias, l2=l2, val_scores=scores)


class LinearProbeInitHook(Hook):
    """Before training, set ``model.head.fc`` to the converged linear probe of the
    model's initial features (skipped when training resumes: the head is then in the
    checkpoint)."""
    priority = 'VERY_LOW'  # after hooks that build structure before training

    def __init__(self, cfg, protocol: str, progress=None,
                 cache: Optional[Dict[str, Features]] = None,
                 grid: Sequence[float] = L2_GRID) -> None:
        self.cfg, self.protocol, self.progress, self.cache = cfg, protocol, progress, cache
        self.grid = grid
        self.fitted: Optional[Dict[str, object]] = None

    def before_train(self, runner) -> None:
        if runner.iter > 0:
            return
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        self.fitted = probe_head(model, self.cfg, self.protocol, self.progress, self.cache,
                                 self.grid)
        with torch.no_grad():
            model.head.fc.weight.copy_(self.fitted['weight'])
            model.head.fc.bias.copy_(self.fitted['bias'])
        runner.logger.info(f'LP-FT: head set to the linear probe (l2={self.fitted["l2"]}, '
                           f'val200 accuracy per l2: {self.fitted["val_scores"]})')
