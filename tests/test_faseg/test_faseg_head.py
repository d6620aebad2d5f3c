"""FASegHead: loss / predict, equivalence with mmseg's Mask2FormerHead, gradients."""
import copy
import os.path as osp
import sys

import pytest
import torch
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from faseg_tiny import NUM_CLASSES, build_head, tiny_head_cfg, tiny_inputs  # noqa: E402

FIVE_LAYERS = dict(num_layers=5)  # 1/32, 1/16, 1/8, HRCA, 1/32


def _decoder(**kw):
    cfg = copy.deepcopy(tiny_head_cfg().transformer_decoder)
    cfg.update(kw)
    return cfg


VARIANTS = {
    'mask2former': dict(),
    'dfpq-conditional': dict(with_dfpq=True, key_pos_type='conditional',
                             attn_mask_threshold=0.15),
    'dfpq-sine-foreground': dict(with_dfpq=True, dfpq_init_pool='foreground'),
    'dfpq-soft': dict(with_dfpq=True, key_pos_type='conditional', dfpq_init_pool='soft'),
    'hrca-window': dict(with_hrca=True, hrca_omega=4, transformer_decoder=_decoder(**FIVE_LAYERS)),
    'hrca-bilinear': dict(with_hrca=True, hrca_selection='bilinear', hrca_omega=4,
                          transformer_decoder=_decoder(**FIVE_LAYERS)),
    'faseg': dict(with_dfpq=True, with_hrca=True, key_pos_type='conditional',
                  attn_mask_threshold=0.15, hrca_omega=4,
                  transformer_decoder=_decoder(**FIVE_LAYERS)),
}


@pytest.mark.parametrize('name', list(VARIANTS))
def test_loss_and_predict(name):
    head = build_head(**VARIANTS[name])
    feats, samples = tiny_inputs()
    losses = head.loss(feats, samples, None)
    num_outputs = head.num_transformer_decoder_layers + 1
    assert len(losses) == 3 * num_outputs
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    head.eval()
    with torch.no_grad():
        seg = head.predict(feats, [s.metainfo for s in samples], None)
    assert seg.shape == (2, NUM_CLASSES, 64, 64)
    assert torch.isfinite(seg).all()


def test_layer_plan():
    head = build_head(with_hrca=True, transformer_decoder=_decoder(num_layers=13))
    assert head.layer_levels == [0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2, -1, 0]
    thesis = build_head(with_hrca=True, hrca_layer_ids=[-1],
                        transformer_decoder=_decoder(num_layers=4))
    assert thesis.layer_levels == [0, 1, 2, -1]
    with pytest.raises(ValueError, match='earlier 1/32'):
        build_head(with_hrca=True, hrca_layer_ids=[0])
    assert head.pixel_decoder.num_outs == 4  # the 1/4 FPN map for HRCA


def _pair(**faseg_kw):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    ref = MODELS.build(tiny_head_cfg(type='Mask2FormerHead'))
    ref.init_weights()
    head = build_head(**faseg_kw)
    missing = head.load_state_dict(ref.state_dict(), strict=False)
    return ref, head, missing


def test_both_off_is_mask2former():
    ref, head, missing = _pair()
    assert not missing.missing_keys and not missing.unexpected_keys
    feats, samples = tiny_inputs()
    metas = [s.metainfo for s in samples]
    ref.eval(), head.eval()
    with torch.no_grad():
        cls_r, mask_r = ref(feats, samples)
        cls_f, mask_f = head(feats, samples)
        assert len(cls_r) == len(cls_f) == 4
        for a, b in zip(cls_r + mask_r, cls_f + mask_f):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ref.predict(feats, metas, None),
                                   head.predict(feats, metas, None), rtol=1e-5, atol=1e-6)
    torch.manual_seed(1)
    loss_r = ref.loss(feats, samples, None)
    torch.manual_seed(1)
    loss_f = head.loss(feats, samples, None)
    assert loss_r.keys() == loss_f.keys()
    for key in loss_r:
        torch.testing.assert_close(loss_r[key], loss_f[key], rtol=1e-5, atol=1e-5)


def test_switches_change_the_output():
    """Non-vacuity of the equivalence test: same weights, DFPQ on -> other outputs."""
    ref, head, _ = _pair(with_dfpq=True)
    feats, samples = tiny_inputs()
    with torch.no_grad():
        a = ref(feats, samples)[1][-1]
        b = head(feats, samples)[1][-1]
    assert (a - b).abs().max() > 1e-3


def test_gradients_reach_dfpq_mlp_and_peg():
    head = build_head(**VARIANTS['faseg'])
    feats, samples = tiny_inputs()
    sum(head.loss(feats, samples, None).values()).backward()
    for p in list(head.dfpq.mlp.parameters()) + list(head.key_pos_encoder.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert head.hr_level_embed.weight.grad.abs().sum() > 0  # HRCA keys are used


def test_odd_input_size_runs_hrca():
    head = build_head(**VARIANTS['faseg'])
    head.record_attention = True
    feats, samples = tiny_inputs(h=100, w=76, batch=1)
    head.eval()
    with torch.no_grad():
        seg = head.predict(feats, [s.metainfo for s in samples], None)
    assert seg.shape == (1, NUM_CLASSES, 100, 76)
    hr_h, hr_w = feats[0].shape[-2:]
    (_, (attn, index)), = [m for m in head.attn_maps if m[0] == -1]
    assert 0 <= index.min() and index.max() < hr_h * hr_w
    assert attn.shape == (1, 4, index.shape[1])
