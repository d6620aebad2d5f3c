"""Training cost of PEFT / token-reduction methods: seconds per training step and the
step's peak memory, each method as its config trains it. It sits beside the other
compositions because it prepares SPT's allocation and ESTA's per-step sampling.

One step is mmengine's own ``model.train_step(data, optim_wrapper)``: the data
preprocessor, the method's real loss path (DyT's complete-model pass, SPViT's FLOPs
loss, ESTA's in-place distillation from the largest anchor, the auxiliary losses), the
backward, and the optimizer step of the optim wrapper the config builds (so only the
parameters the method trains). What the runner's hooks do per iteration is done here
too where it costs time: ESTA draws a stitch per step and accumulates its importance
through gradient hooks.

Weights are random (timing and memory do not depend on them): every ``init_cfg`` that
would load a checkpoint is dropped, and an SPT allocation is made from random
sensitivity scores with the config's budget.

* :func:`time_train_steps` times several methods in one process, interleaved (each
  repeat runs one step of every method), median seconds per step;
* :func:`train_memory` is the child-process worker of the peak-memory column (the
  process' ``VmHWM`` during the steps, :mod:`.memory`), run through :mod:`.worker`.
"""
import copy
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
from mmengine.config import Config

from ..core.analysis.loading import (collate, dataset_samples, drop_init_cfg, init_weights,
                                     load_config, quiet_init)
from ..core.analysis.memory import PeakSection
from ..core.analysis.progress import progress


class TrainMethod(NamedTuple):
    """A row of the training table: a config and the overrides that make the method."""
    name: str
    config: str
    options: dict = {}
    note: str = ''


def method_config(method: TrainMethod, batch: int) -> Config:
    """The method's config with its overrides, at ``batch`` images per step."""
    cfg = load_config(method.config, dict(method.options) or None)
    cfg.train_dataloader.batch_size = batch
    return cfg


def _random_spt_allocation(cfg: Config, folder: str, seed: int = 0) -> None:
    """Point an SPT backbone at an allocation of random scores (the config's budget and
    structured type), written into ``folder``: the trainable set has the real size."""
    backbone = cfg.model.backbone
    if 'spt_cfg' not in backbone:
        return
    from mmengine.registry import MODELS, init_default_scope

    from projects.spt.allocation import allocate
    from projects.spt.cache import make_key, save_allocation
    from projects.spt.runner import scoring_model_cfg, spt_settings
    from projects.spt.units import backbone_units
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = drop_init_cfg(cfg).model.to_dict()
    settings = spt_settings(model_cfg['backbone'])
    plain = MODELS.build(scoring_model_cfg(model_cfg))
    units = backbone_units(plain.backbone)
    gen = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(u.shape, generator=gen) for n, u in units.items()}
    alloc = allocate(scores, units, structured=settings['structured']['type'],
                     rank=settings['structured']['rank'], **settings['allocation'])
    key, info = make_key(dict(benchmark='random sensitivity scores', seed=seed))
    alloc.update(key=key, key_info=info)
    path = osp.join(folder, 'random_allocation.pth')
    save_allocation(path, alloc)
    backbone.spt_cfg.allocation = path


def _per_step_hook(model) -> Callable[[], None]:
    """What the runner's hooks do before each step of this model: ESTA samples a stitch
    (uniformly, as in its warm-up) and reads every trainable parameter's importance
    from its gradient; nothing for the others."""
    backbone = getattr(model, 'backbone', None)
    if not hasattr(backbone, 'set_stitch'):
        return lambda: None
    from projects.esta.hooks import ESTASamplingHook
    hook = ESTASamplingHook()
    hook.sampler = hook.build_sampler(backbone)
    hook.attach(backbone)

    def before_step() -> None:
        hook._q = 0.0
        backbone.set_stitch(hook.sampler.sample(uniform=True))
    return before_step


class TrainStep:
    """One method ready to train: model (random weights, train mode), its optim
    wrapper, a fixed batch of real training images."""

    def __init__(self, method: TrainMethod, batch: int, samples: Optional[List] = None,
                 seed: int = 0) -> None:
        from mmengine.optim import build_optim_wrapper

        from ..core.engine.model_builder import build_model_from_cfg
        self.method = method
        cfg = method_config(method, batch)
        self._tmp = tempfile.TemporaryDirectory()
        _random_spt_allocation(cfg, self._tmp.name, seed)
        torch.manual_seed(seed)
        self.model = init_weights(build_model_from_cfg(drop_init_cfg(cfg))).train()
        with quiet_init():  # mmengine logs every parameter's optimizer options
            self.optim_wrapper = build_optim_wrapper(self.model,
                                                     copy.deepcopy(cfg.optim_wrapper))
        self.data = collate(samples if samples is not None else
                            dataset_samples(cfg, batch, split='train'))
        self.before_step = _per_step_hook(self.model)

    def __call__(self, _=None) -> None:
        self.before_step()
        self.model.train_step(self.data, self.optim_wrapper)

    def counts(self) -> Dict[str, int]:
        params = list(self.model.parameters())
        return dict(trainable=sum(p.numel() for p in params if p.requires_grad),
                    total=sum(p.numel() for p in params))


def time_train_steps(steps: Dict[str, TrainStep], warmup: int = 1,
                     repeats: int = 3) -> Dict[str, Dict[str, float]]:
    """Seconds per training step of every method, interleaved round-robin: each repeat
    runs one step of each, so load changes on a shared CPU hit all of them alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: Dict[str, list] = {name: [] for name in steps}
    for _ in progress(range(repeats), desc='training steps', total=repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: dict(seconds_per_step=statistics.median(t), best_seconds_per_step=min(t),
                       worst_seconds_per_step=max(t)) for name, t in times.items()}


def train_memory(name: str, config: str, options: dict, batch: int, steps: int = 2,
                 seed: int = 0, threads: Optional[int] = None) -> dict:
    """Child-process worker: build one method, then its peak resident memory over
    ``steps`` training steps (the first one allocates gradients and optimizer state)."""
    if threads:
        torch.set_num_threads(threads)
    import projects  # noqa: F401  (registers every part)
    step = TrainStep(TrainMethod(name, config, options), batch, seed=seed)
    with PeakSection() as section:
        for _ in range(steps):
            step()
    return dict(name=name, **step.counts(), peak_mb=section.peak_mb,
                start_mb=section.start_mb, step_peak_mb=section.added_mb,
                steps=steps, pid=os.getpid())
