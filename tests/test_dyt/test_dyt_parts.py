"""DyT's parts on the one ViT: dispatcher, adapters, rate loss, distillation pass."""
import math

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from projects.vit.interfaces import GateDecision
from projects.dyt import DyTAdapter, DyTMoEAdapter, TokenRateLoss, gumbel_sigmoid
from projects.pyra import PYRAViT

TINY = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)
DYT = dict(mlp_gate=dict(type='DyTDispatcher'), adapter=dict(type='DyTAdapter', bottleneck=4))


def _vit(block_cfg=None, **kw):
    return PYRAViT(arch=TINY, img_size=32, patch_size=8, block_cfg=block_cfg,
                   aux_losses=[dict(type='TokenRateLoss', target=0.5)] if block_cfg else (),
                   **kw)


def _force(model, logit: float) -> None:
    with torch.no_grad():
        for blk in model.blocks:
            blk.mlp_gate.score.weight.zero_()
            blk.mlp_gate.score.bias.fill_(logit)


def test_all_on_with_zero_adapter_equals_plain_vit_and_adapter_adds_in_parallel():
    plain = _vit().eval()
    dyt = _vit(DYT).eval()
    dyt.load_state_dict(plain.state_dict(), strict=False)
    _force(dyt, 10.0)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dyt(x)[0], plain(x)[0])  # adapter up-projection starts at 0
        for blk in dyt.blocks:
            blk.adapter.up.weight.normal_()
        tokens, ctx = dyt.embed(x)
        blk = dyt.blocks[0]
        after_attn, _ = blk.forward_attn(tokens, ctx)
        want = after_attn + blk.mlp_branch(after_attn) + blk.adapter(after_attn)
        got, _ = blk(tokens, ctx)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize('adapter', ['DyTAdapter', 'DyTMoEAdapter'])
def test_gathered_inference_equals_masked_dense_computation(adapter):
    """Per-sample masks with none, all and some tokens active: the packed MLP (eval,
    bool mask) equals the dense MLP multiplied by the same mask."""
    model = _vit(dict(DYT, adapter=dict(type=adapter, bottleneck=4))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(0)

    def fixed_masks(dense: bool):
        def hook(module, args, out):
            decision, ctx = out
            mask = torch.rand(decision.keep.shape, generator=gen) > 0.5
            mask[:, 0] = True
            mask[0, 1:] = False  # no active patch token
            mask[1] = True       # every token active
            # soft (dense, masked) or hard (packed) execution of the same decision
            return GateDecision(mask.float() if dense else mask, hard=not dense), ctx
        return hook

    x = torch.randn(4, 3, 32, 32)
    outs = []
    for dense in (False, True):
        gen.manual_seed(0)
        handles = [b.mlp_gate.register_forward_hook(fixed_masks(dense)) for b in model.blocks]
        with torch.no_grad():
            outs.append(model(x)[0])
        for h in handles:
            h.remove()
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)


def test_gumbel_sigmoid_forward_is_bernoulli_sigma_and_gradient_reaches_logits():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, -0.5, 0.0, 0.7, 2.5]).repeat(20000, 1).requires_grad_()
    mask = gumbel_sigmoid(logits, tau=5.0, training=True)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    freq = mask.detach().mean(0)
    p = torch.sigmoid(logits[0].detach())
    # 20,000 draws per logit: 5 standard errors
    assert ((freq - p).abs() < 5 * (p * (1 - p) / 20000).sqrt()).all(), (freq, p)
    mask.sum().backward()
    assert (logits.grad.abs() > 0).all()
    hard = gumbel_sigmoid(logits[0], tau=5.0, training=False)
    assert hard.dtype == torch.bool and hard.tolist() == [False, False, False, True, True]


def test_moe_with_one_expert_is_the_plain_adapter_and_mixes_per_image():
    plain = DyTAdapter(16, bottleneck=4, dropout=0.0)
    moe = DyTMoEAdapter(16, bottleneck=4, num_experts=1, dropout=0.0)
    with torch.no_grad():
        plain.up.weight.normal_()
        moe.down_weight[0].copy_(plain.down.weight)
        moe.down_bias[0].copy_(plain.down.bias)
        moe.up_weight[0].copy_(plain.up.weight)
        moe.up_bias[0].copy_(plain.up.bias)
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(moe(x), plain(x), rtol=0, atol=1e-6)

    moe = DyTMoEAdapter(16, bottleneck=4, num_experts=3, dropout=0.0)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_()
    alpha = moe.routing(x)
    assert not torch.allclose(alpha[0], alpha[1])  # routing differs per image
    for b in range(3):  # image b = one adapter with its own mixed weights
        ref = DyTAdapter(16, bottleneck=4, dropout=0.0)
        with torch.no_grad():
            ref.down.weight.copy_(torch.einsum('e,ekc->kc', alpha[b], moe.down_weight))
            ref.down.bias.copy_(alpha[b] @ moe.down_bias)
            ref.up.weight.copy_(torch.einsum('e,eck->ck', alpha[b], moe.up_weight))
            ref.up.bias.copy_(alpha[b] @ moe.up_bias)
        torch.testing.assert_close(moe(x)[b], ref(x[b:b + 1])[0], rtol=1e-5, atol=1e-5)


def test_rate_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    model = _vit(DYT, merge_mode='tome', merge_schedule=[3, 2, 0]).train()
    masks = []
    for blk in model.blocks:
        blk.mlp_gate.register_forward_hook(lambda m, a, out: masks.append(out[0].keep.detach()))
    _, losses = model.forward_with_losses(torch.randn(2, 3, 32, 32))
    patch = [m[:, 1:] for m in masks]  # the class token is not counted
    assert [m.shape[1] for m in patch] == [16 - 3, 16 - 5, 16 - 5]  # after each merge
    rate = sum(m.sum() for m in patch) / sum(m.numel() for m in patch)
    assert math.isclose(float(losses['token_rate']), float(rate), rel_tol=1e-6)
    assert math.isclose(float(losses['loss_token']), 2.0 * (float(rate) - 0.5) ** 2,
                        rel_tol=1e-5)


def test_distillation_pass_runs_the_complete_model():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='DyTImageClassifier', backbone=dict(
                type='PYRAViT', arch=TINY, img_size=32, patch_size=8, block_cfg=DYT,
                aux_losses=[dict(type='TokenRateLoss')], frozen=True),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=32))).train()
    _force(model.backbone, -10.0)  # the dynamic pass skips every patch token's MLP
    rows = []
    model.backbone.blocks[1].mlp.register_forward_hook(lambda m, a, out: rows.append(a[0].shape))
    samples = [DataSample().set_gt_label(i) for i in (0, 1)]
    losses = model.loss(torch.randn(2, 3, 32, 32), samples)
    assert sorted(losses) == ['loss', 'loss_complete', 'loss_kl', 'loss_token', 'token_rate']
    assert float(losses['token_rate']) == 0.0 and float(losses['loss_kl']) > 0
    # both passes ran the MLP densely in training (masked), the complete one unmasked
    assert len(rows) == 2
    model.distill = False
    assert 'loss_kl' not in model.loss(torch.randn(2, 3, 32, 32), samples)


@pytest.mark.parametrize('bad, match', [
    (lambda: TokenRateLoss(target=0.0), r'\(0, 1\]'),
    (lambda: TokenRateLoss(target=1.5), r'\(0, 1\]'),
    (lambda: _vit(dict(mlp_gate=dict(type='DyTDispatcher', tau=0))), 'tau'),
    (lambda: PYRAViT(arch=TINY, img_size=32, patch_size=8, block_overrides=[
        dict(layers=[5], mlp_gate=dict(type='DyTDispatcher'))]), 'outside 0..2'),
    (lambda: _vit(dict(mlp_gate=dict(type='DyTDispatchr'))), 'DyTDispatchr'),
])
def test_bad_dyt_input_is_refused_clearly(bad, match):
    with pytest.raises((ValueError, KeyError), match=match):
        bad()
