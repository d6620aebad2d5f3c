"""SPT on mmpretrain's SwinTransformer (SPTSwin): unit discovery, the structure built
from an allocation, exact equality with the plain Swin at init and after folding,
strict pretrained loading, and the SPTRunner sensitivity path on real embedded data."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmpretrain.models import SwinTransformer

from projects.core.peft.deploy import deploy_config, folded_model_state
from projects.core.engine.model_builder import build_model_from_cfg
from projects.spt import SPTSwin
from projects.spt.allocation import allocate
from projects.spt.cache import load_allocation, make_key, save_allocation
from projects.spt.runner import ensure_allocation, scoring_model_cfg
from projects.spt.units import backbone_units, swin_units

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
CFG = osp.join(HERE, 'data', 'spt-lora_swin-tiny_1xb4-2e_vtab1k-fashion-mnist-56px.py')
SWIN = dict(arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 4]), img_size=56,
            window_size=7, out_indices=(1, ))


def _swin_allocation(path, budget=1500, structured='lora', seed=0):
    units = swin_units(SwinTransformer(**SWIN))
    gen = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(u.shape, generator=gen) for n, u in units.items()}
    # one clearly sensitive matrix (it becomes structured), the rest spread (sparse)
    scores['stages.1.blocks.1.attn.w_msa.v.weight'] += 1.0
    alloc = allocate(scores, units, budget, structured=structured, rank=2)
    alloc['key'], alloc['key_info'] = make_key(dict(test=str(path)))
    save_allocation(str(path), alloc)
    return alloc


def _randomise_spt(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.spt_parameters().values():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def test_units_cover_every_swin_linear_and_norm_once():
    model = SwinTransformer(**SWIN)
    units = swin_units(model)
    assert backbone_units(model) == units
    covered = {}
    for u in units.values():
        rows = u.rows or (0, dict(model.named_parameters())[u.param].shape[0])
        covered.setdefault(u.param, []).append(rows)
    for name, p in model.named_parameters():
        excluded = name.startswith('patch_embed.') or 'relative_position_bias_table' in name
        assert (name in covered) != excluded, name
        if name in covered:  # the row blocks tile the parameter exactly
            spans = sorted(covered[name])
            assert spans[0][0] == 0 and spans[-1][1] == p.shape[0]
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    qkv = [u for u in units.values() if u.param.endswith('qkv.weight')]
    assert len(qkv) == 3 * 4 and {u.op for u in qkv} == {'q', 'k', 'v'}
    assert units['stages.0.downsample.reduction.weight'].shape == (32, 64)
    assert [u.block for u in units.values() if u.op == 'fc1'] == [0, 1, 2, 3]


def test_structure_trainable_set_and_identity_at_init(tmp_path):
    alloc = _swin_allocation(tmp_path / 'a.pth')
    assert alloc['structured'] and alloc['sparse']  # both granularities exercised
    plain = SwinTransformer(**SWIN)
    plain.eval()  # mmpretrain's Swin.train()/eval() return None
    spt = SPTSwin(spt_cfg=dict(allocation=str(tmp_path / 'a.pth'),
                               structured=dict(type='lora', rank=2, dropout=0.0)),
                  **SWIN).eval()
    spt.load_plain_state_dict(plain.state_dict())
    trainable = {n for n, p in spt.named_parameters() if p.requires_grad}
    assert trainable == set(spt.spt_parameters())
    assert sum(p.numel() for p in spt.spt_parameters().values()) == alloc['cost']['total']
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(spt(x)[0], plain(x)[0], atol=0, rtol=0)
    # gradients reach exactly the allocated parameters
    spt.train()
    spt(x)[0].square().mean().backward()
    got = {n for n, p in spt.named_parameters() if p.grad is not None}
    assert got == trainable


def test_folded_state_loads_into_plain_swin(tmp_path):
    _swin_allocation(tmp_path / 'a.pth')
    spt = SPTSwin(spt_cfg=dict(allocation=str(tmp_path / 'a.pth'),
                               structured=dict(type='lora', rank=2, dropout=0.0)),
                  **SWIN).eval()
    _randomise_spt(spt)
    cfg = spt.plain_backbone_cfg(dict(type='SPTSwin', spt_cfg={}, **SWIN))
    assert cfg['type'] == 'SwinTransformer' and 'spt_cfg' not in cfg
    plain = SwinTransformer(**{k: v for k, v in cfg.items() if k != 'type'})
    plain.eval()
    plain.load_state_dict(spt.folded_state_dict(), strict=False)  # index buffers rebuilt
    assert set(spt.folded_state_dict()) == set(plain.state_dict())
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], spt(x)[0], atol=1e-5, rtol=1e-5)


def test_adapter_allocation_refuses_to_fold(tmp_path):
    _swin_allocation(tmp_path / 'a.pth', structured='adapter')
    spt = SPTSwin(spt_cfg=dict(allocation=str(tmp_path / 'a.pth'),
                               structured=dict(type='adapter', rank=2)), **SWIN)
    assert any(len(m.adapter) for m in spt.spt_layers().values() if hasattr(m, 'adapter'))
    with pytest.raises(ValueError, match='cannot be folded'):
        spt.folded_state_dict()


def test_pretrained_checkpoint_loads_strictly(tmp_path):
    _swin_allocation(tmp_path / 'a.pth')
    plain = SwinTransformer(**SWIN)
    ckpt = tmp_path / 'swin.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in plain.state_dict().items()}},
               ckpt)
    spt_cfg = dict(allocation=str(tmp_path / 'a.pth'), structured=dict(type='lora', rank=2))
    init = dict(type='Pretrained', checkpoint=str(ckpt), prefix='backbone.')
    spt = SPTSwin(spt_cfg=spt_cfg, init_cfg=init, **SWIN)
    spt.init_weights()
    for k, v in plain.state_dict().items():
        assert torch.equal(spt.state_dict()[k], v), k
    # a checkpoint of another architecture names the offending keys
    state = {f'backbone.{k}': v for k, v in plain.state_dict().items() if 'norm2' not in k}
    state['backbone.foo.weight'] = torch.zeros(1)
    torch.save({'state_dict': state}, ckpt)
    spt = SPTSwin(spt_cfg=spt_cfg, init_cfg=init, **SWIN)
    with pytest.raises(KeyError, match=r'missing .*norm2.*unexpected .*foo\.weight'):
        spt.init_weights()


def test_runner_path_scores_plain_swin_and_trains_only_allocated(tmp_path):
    """What SPTRunner does for an SPTSwin config, in process: sensitivity on the plain
    Swin over real Fashion-MNIST images, allocation file, SPTSwin built from it; one
    optimizer step changes only SPT parameters and the head."""
    cfg = Config.fromfile(CFG)
    cfg.model.backbone.spt_cfg.allocation = str(tmp_path / 'alloc.pth')
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = osp.join(REPO, cfg[loader].dataset.data_root)
    init_default_scope('mmpretrain')
    assert scoring_model_cfg(cfg.model.to_dict())['backbone']['type'] == 'SwinTransformer'
    assert ensure_allocation(cfg.model.to_dict(), cfg.train_dataloader.to_dict())
    alloc = load_allocation(cfg.model.backbone.spt_cfg.allocation)
    assert alloc['num_samples'] == 8 and 0 < alloc['cost']['total'] <= 1200
    assert not ensure_allocation(cfg.model.to_dict(), cfg.train_dataloader.to_dict())

    model = build_model_from_cfg(cfg)
    before = copy.deepcopy(model.state_dict())
    optim = OptimWrapper(torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2))
    from mmengine.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    model.train_step(pseudo_collate([dataset[i] for i in range(4)]), optim)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    spt = {f'backbone.{k}' for k in model.backbone.spt_parameters()}
    assert changed - spt == {'head.fc.weight', 'head.fc.bias'}
    assert changed & spt
    # deployment of this model (SPT-LoRA) = the plain Swin classifier
    model.eval()
    deploy = deploy_config(cfg, model.backbone)
    assert deploy.model.backbone.type == 'SwinTransformer'
    plain = build_model_from_cfg(deploy).eval()
    plain.load_state_dict(folded_model_state(model), strict=False)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(plain(x, mode='tensor'), model(x, mode='tensor'),
                                   atol=1e-5, rtol=1e-5)


def test_allocation_plot_reads_swin_and_vit_layouts(tmp_path, make_allocation):
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
    from spt_plot_allocation import main, shares
    alloc = _swin_allocation(tmp_path / 'swin.pth')
    blocks, share, structured, names = shares(alloc)
    assert blocks == [0, 1, 2, 3]  # stage 1's blocks follow stage 0's
    assert names[(3, 'v')] == 'stages.1.blocks.1.attn.w_msa.v.weight'
    assert share['v'][3] == 100.0 and names[(3, 'v')] in structured
    u = 'stages.0.blocks.1.ffn.layers.0.0.weight'
    assert share['fc1'][1] == pytest.approx(100.0 * alloc['counts'][u] / alloc['numel'][u])
    vit = make_allocation(tmp_path / 'vit.pth', dict(arch=dict(
        embed_dims=16, num_layers=3, num_heads=2, feedforward_channels=32), img_size=32,
        patch_size=8), budget=300)
    blocks, share, _, names = shares(vit)
    assert blocks == [0, 1, 2] and names[(2, 'fc2')] == 'blocks.2.mlp.fc2.weight'
    main([str(tmp_path / 'swin.pth'), '--out', str(tmp_path / 'swin.png')])
    assert osp.getsize(tmp_path / 'swin.png') > 1000


def test_benchmark_tool_on_swin_against_mmpretrain_lora(tmp_path):
    """spt_benchmark on the tiny Swin: the LoRA baseline is mmpretrain's LoRAModel on
    qkv, its size is the SPT budget, and each variant trains in its own process."""
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
    from spt_benchmark import main
    data_root = osp.join(REPO, 'data', 'vtab-1k', 'fashion_mnist')
    res = main([CFG, '--num-samples', '8', '--batch-size', '4', '--repeats', '1',
                '--steps', '1', '--lora-rank', '2', '--out', str(tmp_path / 'b.json'),
                '--cfg-options', f'train_dataloader.dataset.data_root={data_root}'])
    # rank 2 on qkv: 2 blocks of 16 -> 48 and 2 blocks of 32 -> 96
    assert res['budget'] == 2 * 2 * (16 + 48) + 2 * 2 * (32 + 96)
    assert res['memory']['lora']['backbone_trainable'] == res['budget']
    assert res['memory']['spt']['backbone_trainable'] == res['allocation_cost']['total']
    assert 0 < res['allocation_cost']['total'] <= res['budget']
    assert res['times']['sensitivity'] > 0 and res['times']['plain'] > 0
    assert osp.isfile(tmp_path / 'b.json')
