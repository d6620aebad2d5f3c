"""A few optimisation steps of the tiny FASeg config on real embedded images lower
the loss (the whole model: backbone, pixel decoder, DFPQ, HRCA, Hungarian losses)."""
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import set_random_seed

from projects.core.engine.model_builder import build_model_from_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(ROOT, 'configs', 'faseg', 'faseg_r18-tiny_1xb4-200i_embedded-seg-128x128.py')


def _batch(cfg, num: int = 4) -> dict:
    from mmseg.registry import DATASETS
    data_cfg = cfg.train_dataloader.dataset
    data_root = osp.join(ROOT, data_cfg.data_root)
    if not osp.isdir(osp.join(data_root, 'img_dir')):
        subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'data', 'make_embedded_seg.py')],
                       cwd=ROOT, check=True)
    data_cfg.data_root = data_root
    dataset = DATASETS.build(data_cfg)
    assert len(dataset) >= num
    return pseudo_collate([dataset[i] for i in range(num)])


def test_tiny_config_loss_goes_down():
    set_random_seed(0)  # random crops / photometric jitter and point sampling
    cfg = Config.fromfile(TINY)
    init_default_scope('mmseg')
    model = build_model_from_cfg(cfg)
    model.init_weights()
    model.train()
    assert model.decode_head.with_dfpq and model.decode_head.with_hrca
    batch = model.data_preprocessor(_batch(cfg, num=3), training=True)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        losses = model(**batch, mode='loss')
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        optim.zero_grad()
        loss.backward()
        optim.step()
        history.append(loss.item())
    assert all(torch.isfinite(torch.tensor(history)))
    print('losses', [round(v, 2) for v in history])
    assert sum(history[-2:]) < 0.9 * sum(history[:2]), history
