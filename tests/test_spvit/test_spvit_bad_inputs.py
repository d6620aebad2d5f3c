"""SPViT's clear errors for bad architecture files, options and FLOPs targets."""
import json

import pytest
import torch

from projects.spvit import SPViTFlopsLoss, compact_state_dict, load_arch

from .common import SEARCH, TINY, vit


def _arch(tmp_path, layers, **extra):
    path = tmp_path / 'arch.json'
    path.write_text(json.dumps(dict(format='spvit-arch/1', embed_dims=32, num_heads=4,
                                    mlp_hidden=64, layers=layers, **extra)))
    return str(path)


def test_wrong_layer_count(tmp_path):
    arch = load_arch(_arch(tmp_path, [dict(op='msa', ffn=64)] * 3))
    with pytest.raises(ValueError, match=r'arch\.json lists 3 layers but the model has 4'):
        arch.validate(num_layers=4)
    with pytest.raises(ValueError, match='has 3 layers but the checkpoint has 4 blocks'):
        compact_state_dict(arch, vit().state_dict(), TINY['num_heads'])


def test_out_of_range_and_repeated_kept_index(tmp_path):
    with pytest.raises(ValueError, match=r'layer 1 keeps FFN unit indices \[64\]'):
        load_arch(_arch(tmp_path, [dict(op='msa', ffn=[0]), dict(op='msa', ffn=[3, 64])]))
    with pytest.raises(ValueError, match='repeated'):
        load_arch(_arch(tmp_path, [dict(op='msa', ffn=[2, 2])]))
    with pytest.raises(ValueError, match='keeps 65 FFN units, outside 0..64'):
        load_arch(_arch(tmp_path, [dict(op='msa', ffn=65)]))


def test_unknown_op_and_malformed_files(tmp_path):
    with pytest.raises(ValueError, match=r"layer 0 has unknown op 'conv5x5'"):
        load_arch(_arch(tmp_path, [dict(op='conv5x5', ffn=64)]))
    bad = tmp_path / 'x.json'
    bad.write_text('{"layers": ')
    with pytest.raises(ValueError, match='not valid JSON'):
        load_arch(str(bad))
    bad.write_text('{"layers": []}')
    with pytest.raises(ValueError, match='not an SPViT architecture'):
        load_arch(str(bad))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_arch(str(tmp_path / 'missing.json'))


def test_flops_target_below_all_skip_minimum_fails_at_build():
    # the patch embedding alone costs 15 x 32 x 3 x 64 = 92160 MACs
    with pytest.raises(ValueError, match=r'target 0.05 is below the all-skip minimum 0.09216'):
        vit(SEARCH, aux_losses=[dict(type='SPViTFlopsLoss', target=0.05, unit=1e6)])
    model = vit(SEARCH, aux_losses=[dict(type='SPViTFlopsLoss', target=0.1, unit=1e6)])
    assert model.aux_losses[0].target == 0.1
    with pytest.raises(ValueError, match='exactly one of target'):
        SPViTFlopsLoss()


def test_bad_options():
    with pytest.raises(ValueError, match='skip_op must be one of'):
        vit(dict(attn_cfg=dict(type='SPViTAttention', skip_op='identity')))
    # merging needs a metric the conv paths cannot give: refused when the model is built
    with pytest.raises(ValueError, match='SPViTAttention provides no token-matching'):
        vit(dict(attn_cfg=dict(type='SPViTAttention')), merge_mode='tome', merge_schedule=2)


def test_gate_optimizer_needs_gate_lr_and_gates():
    from projects.spvit import SPViTOptimWrapperConstructor
    with pytest.raises(ValueError, match='set paramwise_cfg.gate_lr'):
        SPViTOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=1e-3)), {})
    build = SPViTOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=1e-3)),
                                         dict(gate_lr=0.01))
    with pytest.raises(ValueError, match='has no SPViT gate'):
        build(vit())
    groups = build(vit(SEARCH)).optimizer.param_groups
    gates = [g for g in groups if g.get('spvit_gate')]
    assert len(gates) == 8 and all(g['lr'] == 0.01 and g['weight_decay'] == 0 for g in gates)
