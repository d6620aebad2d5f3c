"""Tiny real mmengine runs for the SPViT search tests (in-memory data)."""
import copy
import inspect

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

from .common import IMG, SEARCH, TINY

# a wider FFN than the unit tests' model: the FFN units then carry most MACs, so the
# searched FLOPs move in small steps (an MSA -> conv switch is ~3 % of the model)
TINY_SEARCH = dict(TINY, feedforward_channels=256)


class TinyImages(Dataset):
    """Two classes told apart by brightness, so the loss can fall."""

    def __init__(self, n: int = 32, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 2, (n,), generator=gen)
        self.x = torch.rand(n, 3, *IMG, generator=gen) * 127 + 128 * self.y[:, None, None, None]
        self.metainfo = dict(classes=('dark', 'bright'))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=self.x[i], data_samples=DataSample().set_gt_label(int(self.y[i])))


def backbone(block_cfg=None, aux_losses=(), pretrained=None) -> dict:
    cfg = dict(type='PYRAViT', arch=TINY_SEARCH, img_size=IMG, patch_size=8, prop_attn=False,
               block_cfg=block_cfg, aux_losses=list(aux_losses))
    if pretrained:
        cfg['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained)
    return cfg


def model_cfg(**backbone_kw) -> dict:
    return dict(type='AuxLossImageClassifier', backbone=backbone(**backbone_kw), neck=None,
                head=dict(type='LinearClsHead', num_classes=2, in_channels=TINY['embed_dims']),
                data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=2,
                                       mean=[128.0] * 3, std=[64.0] * 3))


SPREAD = dict(attn_cfg=dict(type='SPViTAttention', theta_init_std=1.0),
              mlp_cfg=dict(type='SPViTGatedMlp', theta_init_std=1.0))


def search_cfg(work_dir: str, epochs: int, target: float, weight: float = 50.0,
               gate_lr: float = 0.05, pretrained=None, interval: int = 1,
               block_cfg=SPREAD, ckpt_interval: int = 1) -> Config:
    return Config(dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['projects'], allow_failed_imports=False),
        work_dir=work_dir,
        model=model_cfg(block_cfg=block_cfg, pretrained=pretrained, aux_losses=[
            dict(type='SPViTFlopsLoss', target=target, weight=weight, unit=1e6)]),
        optim_wrapper=dict(constructor='SPViTOptimWrapperConstructor',
                           optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                           paramwise_cfg=dict(gate_lr=gate_lr)),
        param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs,
                              eta_min=0.0, convert_to_iter_based=True)],
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=ckpt_interval),
                           logger=dict(type='LoggerHook', interval=4)),
        custom_hooks=[dict(type='SPViTSearchHook', interval=interval, log_interval=4),
                      dict(type='RNGStateHook')],
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='WARNING',
    ))


def runner(cfg: Config, data_seed: int = 0, with_test: bool = False) -> Runner:
    cfg = copy.deepcopy(cfg)
    loader = dict(batch_size=8, num_workers=0, dataset=TinyImages(32, data_seed),
                  sampler=dict(type='DefaultSampler', shuffle=True),
                  collate_fn=dict(type='pseudo_collate'))
    cfg.train_dataloader = loader
    if with_test:
        cfg.test_dataloader = dict(loader, sampler=dict(type='DefaultSampler', shuffle=False))
        cfg.test_evaluator = dict(type='Accuracy', topk=(1,))
        cfg.test_cfg = dict()
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    known = set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}
    return Runner(**{k: v for k, v in cfg.items() if k in known})
