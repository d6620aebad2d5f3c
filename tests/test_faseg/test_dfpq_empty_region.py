"""First-block DFPQ when a query's pooling region is empty: it pools the whole map
uniformly (projects/faseg/dfpq.py, ``DFPQ.from_mask``), in isolation and inside full
training steps of the tiny FASeg config on the two label maps that lead there: an
ignore-only map and an image with no foreground class."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from projects.core.engine.model_builder import build_model_from_cfg
from projects.faseg import DFPQ

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(ROOT, 'configs', 'faseg', 'faseg_r18-tiny_1xb4-200i_embedded-seg-128x128.py')
IGNORE = 255


@pytest.mark.parametrize('pool, logit', [
    ('background', 5.0),     # the query covers the whole map: no background
    ('foreground', -5.0),    # the query predicts nothing: no foreground
    ('soft', -200.0),        # sigmoid underflows to 0 everywhere
])
def test_empty_region_pools_the_whole_map(pool, logit):
    dfpq = DFPQ(4, init_pool=pool)
    dfpq.mlp = nn.Identity()  # look at what goes into the MLP
    logits = torch.full((1, 2, 2, 2), logit)
    logits[0, 1, 0, 0] = -logit  # query 1 keeps a one-pixel region: pixel 0
    pos = torch.randn(1, 4, 4)
    out = dfpq.from_mask(logits, pos, torch.zeros(1, 2, 4))
    torch.testing.assert_close(out[0, 0], pos[0].mean(0), rtol=1e-5, atol=1e-5)
    if pool != 'soft':  # the other query still pools its own one-pixel region
        torch.testing.assert_close(out[0, 1], pos[0, 0], rtol=1e-5, atol=1e-5)


def _samples(label: int, size: int = 128, batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        sample = SegDataSample(gt_sem_seg=PixelData(
            data=torch.full((1, size, size), label, dtype=torch.long)))
        shape = (size, size)
        sample.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=shape))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _constant_first_masks(head, logit: float) -> None:
    """Every mask prediction = ``logit`` everywhere: mask features 1, mask embedding a
    constant vector summing to ``logit`` (what the head learns on such images)."""
    conv = head.pixel_decoder.mask_feature
    nn.init.zeros_(conv.weight)
    nn.init.ones_(conv.bias)
    last = head.mask_embed[-1]
    nn.init.zeros_(last.weight)
    nn.init.constant_(last.bias, logit / last.bias.numel())


@pytest.mark.parametrize('case, label, pool, logit', [
    # ignore-only map: no target, every query is pushed to "no object" and predicts an
    # empty mask -> the foreground pooling region is empty
    ('ignore-only', IGNORE, 'foreground', -1.0),
    # a single background class: the query matched to it covers the whole image -> the
    # (official-code default) background pooling region is empty
    ('no-foreground-class', 0, 'background', 1.0),
])
def test_training_step_with_empty_dfpq_region(case, label, pool, logit, monkeypatch):
    torch.manual_seed(0)
    cfg = Config.fromfile(TINY)
    cfg.model.decode_head.dfpq_init_pool = pool
    init_default_scope('mmseg')
    model = build_model_from_cfg(cfg)
    model.init_weights()
    model.train()
    head = model.decode_head
    _constant_first_masks(head, logit)

    seen = []
    from_mask = head.dfpq.from_mask

    def spy(mask_logits, key_pos, query_embed):
        out = from_mask(mask_logits, key_pos, query_embed)
        with torch.no_grad():  # the expected value, before the step changes the MLP
            whole_map = head.dfpq.mlp(key_pos.mean(1, keepdim=True) + query_embed)
        seen.append((mask_logits.detach(), out.detach(), whole_map))
        return out

    monkeypatch.setattr(head.dfpq, 'from_mask', spy)
    batch = model.data_preprocessor(_samples(label), training=True)
    losses = model(**batch, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optim.zero_grad()
    loss.backward()
    optim.step()

    assert all(torch.isfinite(v).all() for k, v in losses.items() if 'loss' in k), losses
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    (mask_logits, query_pos, whole_map), = seen
    prob = mask_logits.sigmoid()
    assert ((prob >= 0.5) if pool == 'background' else (prob < 0.5)).all()  # region empty
    torch.testing.assert_close(query_pos, whole_map, rtol=1e-5, atol=1e-5)
