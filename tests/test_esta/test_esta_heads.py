"""A head per anchor (SN-Net): a stitch is read by the head of the anchor it ends in,
the LP-FT start fits each head on its own anchor's features, and an exported stitch
carries its end anchor's head and reproduces the supernet's output."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint

from projects.core.engine.model_builder import build_model_from_cfg
from projects.esta.deploy import export_stitches

from .common import stitch_probe

HERE = osp.dirname(osp.abspath(__file__))
CFG = osp.join(HERE, 'configs', 'esta_tiny_28px.py')


def per_anchor_cfg():
    cfg = Config.fromfile(CFG)
    cfg.model.head_per_anchor = True
    cfg.model.backbone.tap_width = 'anchor'
    return cfg


def build(cfg=None):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = build_model_from_cfg(cfg or per_anchor_cfg())
    model.init_weights()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # distinct heads and non-zero PEFT parameters
        for name, p in model.named_parameters():
            if 'lora_B' in name or 'stitch_bias' in name or 'head' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def test_stitch_uses_the_head_of_its_end_anchor():
    model = build()
    ti, s = model.anchor_heads[0], model.head
    assert ti.fc.in_features == 16 and s.fc.in_features == 32
    x = torch.randn(3, 3, 28, 28)
    real = 5  # Ti blocks -> S blocks: ends in the S
    assert model.backbone.end_anchor(0) == 0 and model.backbone.end_anchor(real) == 1
    with torch.no_grad():
        for stitch, fc in ((0, ti.fc), (1, s.fc), (real, s.fc)):
            feats = model.backbone(x, stitch=stitch)[-1]  # cls token, its anchor's width
            assert feats.shape[-1] == fc.in_features
            want = feats @ fc.weight.T + fc.bias
            model.backbone.set_stitch(stitch)
            assert torch.allclose(model(x, mode='tensor'), want, atol=1e-6)
            assert torch.allclose(model.stitch_logits(x, stitch), want, atol=1e-6)
            pred = model.predict(x)
            assert torch.allclose(torch.stack([p.pred_score for p in pred]),
                                  want.softmax(-1), atol=1e-6)
    # the Ti's losses train the Ti head only (the teacher's the S head)
    model.train()
    model.backbone.set_stitch(0)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i) for i in range(3)]
    own, teacher = model.split_losses(model.loss(x, samples))
    sum(own.values()).backward()
    assert ti.fc.weight.grad is not None and s.fc.weight.grad is None
    sum(teacher.values()).backward()
    assert s.fc.weight.grad is not None


def _per_anchor_without_anchor_taps(cfg):
    cfg.model.head_per_anchor = True


def _anchor_taps_without_per_anchor_heads(cfg):
    cfg.model.backbone.tap_width = 'anchor'


def _unknown_tap_width(cfg):
    cfg.model.backbone.tap_width = 'own'


@pytest.mark.parametrize('mutate,message', [
    (_per_anchor_without_anchor_taps, "tap_width='anchor'"),
    (_anchor_taps_without_per_anchor_heads, 'head per anchor'),
    (_unknown_tap_width, 'tap_width must be one of'),
])
def test_head_and_tap_options_must_agree(mutate, message):
    cfg = Config.fromfile(CFG)
    mutate(cfg)
    with pytest.raises(ValueError, match=message):
        build(cfg)


def test_per_anchor_head_must_read_the_largest_anchor_width():
    cfg = per_anchor_cfg()
    cfg.model.head.in_channels = 16
    with pytest.raises(ValueError, match="largest anchor's width 32"):
        build(cfg)


def test_exported_ti_stitch_has_the_ti_head_and_reproduces_the_supernet(tmp_path):
    cfg = per_anchor_cfg()
    model = build(cfg)
    x = torch.randn(2, 3, 28, 28)
    paths = export_stitches(cfg, None, [0, 5], str(tmp_path), model=model)
    for stitch, path in zip((0, 5), paths):
        dep_cfg = Config.fromfile(path)
        assert 'head_per_anchor' not in dep_cfg.model
        assert dep_cfg.model.head.in_channels == (16 if stitch == 0 else 32)
        deployed = build_model_from_cfg(dep_cfg).eval()
        load_checkpoint(deployed, path[:-3] + '.pth', map_location='cpu', strict=True)
        state = torch.load(path[:-3] + '.pth', weights_only=False)['state_dict']
        assert not any(k.startswith('anchor_heads.') for k in state)
        with torch.no_grad():
            assert torch.allclose(deployed(x, mode='tensor'), model.stitch_logits(x, stitch),
                                  atol=1e-5)
    head = (model.anchor_heads[0].fc.weight, model.head.fc.weight)
    assert torch.equal(torch.load(paths[0][:-3] + '.pth', weights_only=False)
                       ['state_dict']['head.fc.weight'], head[0])


def test_lpft_fits_each_head_on_its_own_anchor(tmp_path):
    """LinearProbeInitHook fits the largest anchor's head (the model is on that anchor),
    AnchorHeadsProbeHook the Ti head on the Ti's features, with the same settings."""
    cfg = per_anchor_cfg()
    cfg.work_dir = str(tmp_path)
    cfg.custom_hooks += [dict(type='LinearProbeInitHook', l2_grid=(1e-2,)),
                         dict(type='AnchorHeadsProbeHook')]
    cfg.train_cfg.max_iters = 1
    cfg.optim_wrapper.optimizer.lr = 0.0  # the heads keep the probes through the step
    runner = Runner.from_cfg(cfg)
    model = runner.model
    model.backbone.set_stitch(0)
    runner.train()
    # the sampling hook took Q from train_step's outputs: no parameter hooks
    from projects.esta.hooks import ESTASamplingHook
    hook = next(h for h in runner.hooks if isinstance(h, ESTASamplingHook))
    assert hook._from_outputs and hook._handles == [] and hook.sampler.counts.sum() == 1
    # at init every PEFT parameter is zero or has zero gradient (LoRA B = 0): Q = 0
    assert runner.message_hub.get_scalar('train/esta_q').current() == 0

    def probe(stitch):
        return stitch_probe(model, cfg, stitch)

    for stitch, head in ((model.backbone.teacher_stitch, model.head),
                         (0, model.anchor_heads[0])):
        weight, bias = probe(stitch)
        assert torch.allclose(head.fc.weight, weight, atol=1e-4), stitch
        assert torch.allclose(head.fc.bias, bias, atol=1e-4), stitch
    # without the ESTA hook the Ti head would start random: refused
    cfg2 = per_anchor_cfg()
    cfg2.work_dir = str(tmp_path / 'no_probe')
    cfg2.custom_hooks += [dict(type='LinearProbeInitHook', l2_grid=(1e-2,))]
    cfg2.train_cfg.max_iters = 1
    with pytest.raises(ValueError, match='AnchorHeadsProbeHook'):
        Runner.from_cfg(cfg2).train()
