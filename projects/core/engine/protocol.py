"""The VTAB-1k protocol of a run, applied to a config in one place: ``'test'`` trains
on train800val200 and evaluates test; ``'val'`` trains on train800 and evaluates val200,
the split every recipe choice is made on. The main job's config rows and the
multi-stage plug-ins (SPViT's search -> fine-tune, ESTA) both call it, so a plug-in's
val200 number is never fitted with val200 in its training set."""
from typing import Tuple

from mmengine.config import Config

PROTOCOLS = ('test', 'val')


def fit_splits(protocol: str) -> Tuple[str, ...]:
    """The splits a run trains on: train800 when val200 reports, else train800val200."""
    check_protocol(protocol)
    return ('train',) if protocol == 'val' else ('train', 'val')


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol {protocol!r}: use one of {PROTOCOLS} (test: train on '
                         'train800val200, report test; val: train on train800, report val200).')


def apply_protocol(cfg: Config, protocol: str) -> Config:
    """Set ``cfg``'s training / evaluation splits and its LP-FT hook's fitting splits for
    ``protocol`` (in place; returns ``cfg``)."""
    check_protocol(protocol)
    if protocol == 'val':
        cfg.train_dataloader.dataset.split = 'train'
        cfg.test_dataloader.dataset.split = 'val'
    for hook in cfg.get('custom_hooks', []):
        if hook.get('type') == 'LinearProbeInitHook':
            hook['fit_splits'] = fit_splits(protocol)
    return cfg
