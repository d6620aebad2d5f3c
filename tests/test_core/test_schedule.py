"""``set_max_epochs``: the recipe's warm-up + cosine schedule follows a changed training
length, checked on the learning rates mmengine's own schedulers produce."""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS

from projects.core.engine.schedule import set_max_epochs

EPOCH_LEN = 10
RECIPE = dict(
    train_cfg=dict(by_epoch=True, max_epochs=3),
    param_scheduler=[
        dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=3,
             convert_to_iter_based=True)])


def _lrs(cfg: Config) -> list:
    """The learning rate of every iteration of the run ``cfg`` describes."""
    model = torch.nn.Linear(2, 2)
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=1.0)))
    scheds = []
    for s in cfg.param_scheduler:
        s = dict(s)
        typ = PARAM_SCHEDULERS.get(s.pop('type'))
        if s.pop('convert_to_iter_based', False):
            scheds.append(typ.build_iter_from_epoch(wrapper, **s, epoch_length=EPOCH_LEN))
        else:
            scheds.append(typ(wrapper, **s))
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs * EPOCH_LEN):
        lrs.append(wrapper.optimizer.param_groups[0]['lr'])
        for s in scheds:
            s.step()
    return lrs


@pytest.mark.parametrize('epochs', [1, 2, 3, 6])
def test_warmup_then_cosine_reaches_the_floor_exactly_at_the_new_end(epochs):
    cfg = set_max_epochs(Config(RECIPE), epochs)
    lrs = _lrs(cfg)
    assert cfg.train_cfg.max_epochs == epochs and len(lrs) == epochs * EPOCH_LEN
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    warmup = EPOCH_LEN if epochs >= 3 else int(EPOCH_LEN * epochs / 3)
    # mmengine's chained LinearLR tops out one step before its end
    assert peak in (warmup - 1, warmup) and lrs[peak] > 0.8
    assert lrs[0] == pytest.approx(1e-3)
    # rising during warm-up, then falling at every step to the very end: a schedule
    # that ended early would sit flat at eta_min, one that ended late stays high
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1:]))
    assert lrs[-2] > lrs[-1] and lrs[-1] < 0.05 * lrs[peak]


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError, match='epochs must be >= 1'):
        set_max_epochs(Config(RECIPE), 0)
    with pytest.raises(ValueError, match='trains by iterations'):
        set_max_epochs(Config(dict(train_cfg=dict(max_iters=5))), 2)
