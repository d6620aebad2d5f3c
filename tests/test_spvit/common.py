"""Tiny SPViT models shared by the tests."""
import torch
from mmengine.registry import DefaultScope

from projects.pyra import PYRAViT
from projects.spvit import compact_overrides

TINY = dict(embed_dims=32, num_layers=4, num_heads=4, feedforward_channels=64)
IMG = (24, 40)   # 3 x 5 patch grid: non-square
SEARCH = dict(attn_cfg=dict(type='SPViTAttention'), mlp_cfg=dict(type='SPViTGatedMlp'))


def vit(block_cfg=None, block_overrides=(), aux_losses=(), **kw) -> PYRAViT:
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return PYRAViT(arch=TINY, img_size=IMG, patch_size=8, block_cfg=block_cfg,
                       block_overrides=block_overrides, aux_losses=aux_losses,
                       prop_attn=False, **kw)


def compact(arch, **kw) -> PYRAViT:
    over = compact_overrides(arch, folded=kw.pop('folded', False),
                             **({'skip_op': kw.pop('skip_op')} if 'skip_op' in kw else {}))
    return vit(block_overrides=over, **kw)


def jitter(model, scale=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model
