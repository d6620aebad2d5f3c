"""SPViT searches driven by real mmengine training loops on tiny shapes: the FLOPs
target is reached, the hook's files / learning rates / stop / resume, and the whole
search -> export -> fine-tune -> test pipeline."""
import filecmp
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from projects.spvit import load_arch
from projects.spvit.flops import arch_macs
from projects.spvit.optim import GATE_FLAG

from .common import IMG
from .runs import TINY_SEARCH, backbone, model_cfg, runner, search_cfg

GRID = (IMG[0] // 8, IMG[1] // 8)


def _macs(arch) -> float:
    return arch_macs(arch, TINY_SEARCH['embed_dims'], TINY_SEARCH['num_heads'], GRID, 8) / 1e6


def _thetas(run):
    return torch.cat([p.detach().flatten() for n, p in run.model.named_parameters()
                      if n.endswith('.theta')])


def test_search_reaches_flops_target(tmp_path):
    target = 0.9   # M MACs; the dense tiny model has 1.47 M, all-skip 0.09 M
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        run = runner(search_cfg(str(tmp_path), epochs=8, target=target, gate_lr=0.1,
                                ckpt_interval=100))
        run.train()
    arch = load_arch(str(tmp_path / 'spvit_arch.json'))
    dense = _macs(load_arch(dict(format='spvit-arch/1', layers=[
        dict(op='msa', ffn=256)] * 4)))
    assert dense > 1.5 * target
    assert abs(_macs(arch) - target) / target < 0.10, (arch.ops, _macs(arch))
    # gate group: constant lr, no weight decay; weights followed the cosine schedule
    groups = run.optim_wrapper.optimizer.param_groups
    gates = [g for g in groups if g.get(GATE_FLAG)]
    assert len(gates) == 4 * 2 and all(g['lr'] == 0.1 and g['weight_decay'] == 0 for g in gates)
    assert all(g['lr'] < 1e-4 for g in groups if not g.get(GATE_FLAG))
    hook = next(h for h in run.hooks if type(h).__name__ == 'SPViTSearchHook')
    assert hook.written == [f'spvit_arch_epoch_{i}.json' for i in range(1, 9)] + \
        ['spvit_arch.json']
    # per-layer gate probabilities and the FLOPs were logged
    logged = [json.loads(line) for f in tmp_path.glob('*/vis_data/scalars.json')
              for line in open(f)]
    assert logged and all({'flops_arch', 'spvit/gmsa.3', 'spvit/ffn_keep.0', 'loss_flops'}
                          <= set(rec) for rec in logged)
    assert logged[-1]['flops_arch'] * 1e3 == pytest.approx(_macs(arch), rel=1e-6)
    # the file of the last epoch is the final architecture
    assert load_arch(str(tmp_path / 'spvit_arch_epoch_8.json')).ffn == arch.ffn


def test_resume_mid_search_gives_identical_gates_and_arch(tmp_path):
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        a = runner(search_cfg(full, epochs=4, target=0.9, gate_lr=0.1))
        a.train()
        first = search_cfg(part, epochs=4, target=0.9, gate_lr=0.1)
        first.train_cfg.max_epochs = 2           # interrupted after epoch 2
        runner(first).train()
        second = search_cfg(part, epochs=4, target=0.9, gate_lr=0.1)
        second.resume, second.load_from = True, osp.join(part, 'epoch_2.pth')
        b = runner(second)
        b.train()
    assert torch.equal(_thetas(a), _thetas(b))
    for name in ('spvit_arch.json', 'spvit_arch_epoch_3.json', 'spvit_arch_epoch_4.json'):
        assert filecmp.cmp(osp.join(full, name), osp.join(part, name), shallow=False), name
    hook = next(h for h in b.hooks if type(h).__name__ == 'SPViTSearchHook')
    assert hook.written[:2] == ['spvit_arch_epoch_1.json', 'spvit_arch_epoch_2.json']


def test_search_length_stops_training(tmp_path):
    cfg = search_cfg(str(tmp_path), epochs=5, target=0.9, ckpt_interval=100)
    cfg.custom_hooks[0]['search_length'] = 2
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        run = runner(cfg)
        run.train()
    assert run.epoch == 2
    assert json.load(open(tmp_path / 'spvit_arch.json'))['meta']['epoch'] == 2


def test_search_export_finetune_test_pipeline(tmp_path):
    """README's three commands on tiny shapes: search, export (weights gathered from
    the pretrained checkpoint, strict load), fine-tune and test the compact model."""
    from tools.model_converters.spvit_export import main as export
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS
        dense = MODELS.build(model_cfg())
        pretrained = str(tmp_path / 'dense.pth')
        torch.save({'state_dict': dense.state_dict()}, pretrained)
        base = tmp_path / 'finetune_base.py'
        ft = search_cfg(str(tmp_path / 'ft'), epochs=1, target=0.9).to_dict()
        ft['model'] = model_cfg(pretrained=pretrained)
        ft['optim_wrapper'] = dict(optimizer=dict(type='AdamW', lr=1e-3))
        ft['custom_hooks'] = [dict(type='RNGStateHook')]
        Config(ft).dump(str(base))
        search = search_cfg(str(tmp_path / 'search'), epochs=3, target=0.9, gate_lr=0.1,
                            pretrained=pretrained)
        search.spvit_finetune_base = str(base)
        search_file = str(tmp_path / 'search.py')
        search.dump(search_file)
        runner(search).train()
        paths = export([search_file, str(tmp_path / 'search' / 'epoch_3.pth'),
                        '--out-dir', str(tmp_path / 'compact')])
        arch = load_arch(paths['arch'])
        assert arch.ops == load_arch(str(tmp_path / 'search' / 'spvit_arch.json')).ops
        compact_cfg = Config.fromfile(paths['config'])
        model = MODELS.build(compact_cfg.model)
        model.init_weights()      # strict: raises on any missing / unexpected key
        keep = torch.tensor(arch.ffn[1])
        torch.testing.assert_close(model.backbone.blocks[1].mlp.fc1.weight,
                                   dense.backbone.blocks[1].mlp.fc1.weight[keep])
        compact_cfg.work_dir = str(tmp_path / 'finetune')
        run = runner(compact_cfg, with_test=True)
        run.train()
        metrics = run.test()
    assert 0 <= metrics['accuracy/top1'] <= 100
    assert sum(p.numel() for p in run.model.backbone.parameters()) < \
        sum(p.numel() for p in dense.backbone.parameters())
