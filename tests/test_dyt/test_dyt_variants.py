"""DyT's four dispatch variants on the one ViT block: attention, MLP, attention-MLP and
layer dispatch, each against independent references."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from projects.vit.interfaces import GateDecision
from projects.dyt.calibrate import calibrate_rate
from projects.pyra import PYRAViT
from projects.pyra.flops import executed_macs

TINY = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)
ADAPTER = dict(type='DyTAdapter', bottleneck=4)
VARIANTS = {
    'mlp': dict(mlp_gate=dict(type='DyTDispatcher')),
    'attn': dict(attn_gate=dict(type='DyTDispatcher', skips='attn')),
    'attn_mlp': dict(attn_gate=dict(type='DyTDispatcher', skips='attn_mlp')),
    'layer': dict(attn_gate=dict(type='DyTLayerDispatcher')),
}


def _vit(variant=None, **kw):
    block_cfg = None if variant is None else dict(VARIANTS[variant], adapter=ADAPTER)
    return PYRAViT(arch=TINY, img_size=32, patch_size=8, block_cfg=block_cfg,
                   aux_losses=[dict(type='TokenRateLoss', target=0.5)] if variant else (),
                   **kw)


def _gate(block):
    return block.attn_gate if block.attn_gate is not None else block.mlp_gate


def _perturb(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_all_on_equals_plain_block_plus_adapter(variant):
    plain = _vit().eval()
    dyt = _vit(variant).eval()
    dyt.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for blk in dyt.blocks:
            _gate(blk).score.weight.zero_()
            _gate(blk).score.bias.fill_(10.0)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        # zero-initialised adapter: the model is the plain ViT
        torch.testing.assert_close(dyt(x)[0], plain(x)[0], rtol=0, atol=1e-6)
        for blk in dyt.blocks:
            blk.adapter.up.weight.normal_()
        tokens, ctx = dyt.embed(x)
        blk, ref = dyt.blocks[0], plain.blocks[0]
        after_attn = tokens + ref.attn(ref.norm1(tokens))[0]
        want = after_attn + ref.mlp(ref.norm2(after_attn)) + blk.adapter(after_attn, ctx)
        got, _ = blk(tokens, ctx)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def _brute_force_block(blk, x, mask, variant):
    """One sample at a time, only the active tokens (or samples) through the plain
    sub-blocks, written out from the paper's description."""
    out = []
    for b in range(x.shape[0]):
        xb = x[b:b + 1]
        if variant == 'layer':
            x1 = xb + blk.attn(blk.norm1(xb))[0] if mask[b] else xb
            y = x1 + blk.mlp(blk.norm2(x1)) if mask[b] else x1
            out.append(y + blk.adapter(x1, None))
            continue
        x1 = xb.clone()
        idx = mask[b].nonzero().squeeze(1)
        if variant in ('attn', 'attn_mlp') and idx.numel():
            sub = xb[:, idx]
            x1[:, idx] = sub + blk.attn(blk.norm1(sub))[0]
        elif variant == 'mlp':
            x1 = xb + blk.attn(blk.norm1(xb))[0]
        y = x1.clone()
        mlp_idx = idx if variant in ('mlp', 'attn_mlp') else torch.arange(xb.shape[1])
        if mlp_idx.numel():
            y[:, mlp_idx] = x1[:, mlp_idx] + blk.mlp(blk.norm2(x1[:, mlp_idx]))
        out.append(y + blk.adapter(x1, None))
    return torch.cat(out)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_gathered_inference_equals_masked_dense_and_brute_force(variant):
    """Masks with no, all and some active tokens (samples): the gathered eval path (bool
    mask) == the dense path with the same mask as floats == a per-sample brute force."""
    model = _vit(variant).eval()
    _perturb(model)
    x = torch.randn(4, 3, 32, 32)
    gen = torch.Generator().manual_seed(1)
    if variant == 'layer':
        mask = torch.tensor([False, True, True, False])
    else:
        mask = torch.rand(4, 17, generator=gen) > 0.5
        mask[:, 0] = True   # the class token is always active
        mask[0, 1:] = False
        mask[1] = True
    blk = model.blocks[1]
    gate = _gate(blk)
    tokens, ctx = model.embed(x)
    ctx = ctx.at_layer(1)
    outs = []
    with torch.no_grad():
        for as_float in (False, True):
            handle = gate.register_forward_hook(
                lambda m, a, out, f=as_float: (GateDecision(mask.float() if f else mask,
                                                            hard=not f), out[1]))
            outs.append(blk(tokens, ctx)[0])
            handle.remove()
        want = _brute_force_block(blk, tokens, mask, variant)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(outs[0], want, rtol=0, atol=1e-5)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_training_gradient_reaches_the_dispatcher_and_rate_loss_is_hand_computed(variant):
    torch.manual_seed(0)
    model = _vit(variant, out_type='featmap').train()  # every token reaches the output
    for blk in model.blocks:
        nn.init.normal_(blk.adapter.up.weight)
    masks = []
    for blk in model.blocks:
        _gate(blk).register_forward_hook(lambda m, a, out: masks.append(out[0].keep.detach()))
    outs, losses = model.forward_with_losses(torch.randn(6, 3, 32, 32))
    if variant == 'layer':
        active = sum(m.sum() * 16 for m in masks)
        total = sum(m.numel() * 16 for m in masks)
    else:
        active = sum(m[:, 1:].sum() for m in masks)
        total = sum(m[:, 1:].numel() for m in masks)
    rate = float(active / total)
    assert math.isclose(float(losses['token_rate']), rate, rel_tol=1e-6)
    assert math.isclose(losses['loss_token'].item(), 2 * (rate - 0.5) ** 2, rel_tol=1e-5)
    # a random read-out: the sum of a LayerNorm output is constant in its input
    (outs[-1] * torch.randn_like(outs[-1])).sum().backward()
    for blk in model.blocks:  # (a fresh ViT's first class token is 0: only the bias)
        score = _gate(blk).score
        assert score.weight.grad.abs().sum() + score.bias.grad.abs().sum() > 0


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_complete_model_pass_ignores_the_dispatcher(variant):
    model = _vit(variant).eval()
    plain = _vit().eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    for blk in model.blocks:
        with torch.no_grad():
            _gate(blk).score.bias.fill_(-10.0)   # would skip everything
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out, ctx = model.forward_with_context(x, gated=False)
        torch.testing.assert_close(out[-1], plain(x)[-1], rtol=0, atol=1e-6)
    assert not ctx.masks


def _hooked_macs(model, images, monkeypatch) -> float:
    """Independent count of what ran: rows x in x out of every nn.Linear call and
    2 x Nq x Nk x head_dim x heads of every attention call, recorded during the real
    forward, plus the patch embedding."""
    total = [0.0]

    def linear_hook(module, args, out):
        total[0] += args[0].numel() // module.in_features * module.in_features * \
            module.out_features
    sdpa = F.scaled_dot_product_attention

    def counting_sdpa(q, k, v, *args, **kwargs):
        total[0] += 2 * q.shape[:-1].numel() * k.shape[-2] * q.shape[-1]
        return sdpa(q, k, v, *args, **kwargs)
    monkeypatch.setattr(F, 'scaled_dot_product_attention', counting_sdpa)
    handles = [m.register_forward_hook(linear_hook) for m in model.modules()
               if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    monkeypatch.undo()
    bsz, (h, w), p, d = images.shape[0], images.shape[-2:], model.patch_size, model.embed_dims
    return total[0] / bsz + (h // p) * (w // p) * d * 3 * p * p


@pytest.mark.parametrize('variant', list(VARIANTS))
@pytest.mark.parametrize('rate', [0.3, 0.75])
def test_calibrated_rate_and_executed_macs_count_what_ran(variant, rate, monkeypatch):
    model = _vit(variant).eval()
    _perturb(model)
    images = torch.randn(8, 3, 32, 32)
    calibrate_rate(model, images, rate)
    _, ctx = model.forward_with_context(images)
    for i in range(3):
        name = {'mlp': 'mlp', 'attn': 'attn', 'attn_mlp': 'block', 'layer': 'layer'}[variant]
        m = ctx.masks[f'{name}.{i}']
        got = (m if variant == 'layer' else m[:, 1:]).float().mean().item()
        if variant == 'layer' and i == 0:  # one class token for all images: it runs
            assert got == 1.0
            continue
        assert abs(got - rate) <= 1 / (8 if variant == 'layer' else 128) + 1e-6
    counted = executed_macs(model, images)
    hooked = _hooked_macs(model, images, monkeypatch)
    # token dispatchers count D per token they could score (an upper bound: the class
    # token is not scored); the layer dispatcher scores the class token only
    slack = 0 if variant == 'layer' else 3 * 32
    assert 0 <= counted - hooked <= slack + 1e-6, (counted, hooked)
    dense = executed_macs(_vit().eval(), images)
    assert counted < dense


def test_bad_variant_input_is_refused_clearly():
    with pytest.raises(ValueError, match="unknown variant skips='mlpp'"):
        _vit('mlp', block_overrides=[dict(layers=[0], mlp_gate=dict(
            type='DyTDispatcher', skips='mlpp'))])
    with pytest.raises(ValueError, match="belongs in the 'attn_gate' slot"):
        PYRAViT(arch=TINY, img_size=32, patch_size=8, block_cfg=dict(
            mlp_gate=dict(type='DyTDispatcher', skips='attn')))
    with pytest.raises(ValueError, match="belongs in the 'mlp_gate' slot"):
        PYRAViT(arch=TINY, img_size=32, patch_size=8, block_cfg=dict(
            attn_gate=dict(type='DyTDispatcher')))
    with pytest.raises(ValueError, match='gates the MLP too'):
        PYRAViT(arch=TINY, img_size=32, patch_size=8, block_cfg=dict(
            attn_gate=dict(type='DyTLayerDispatcher'), mlp_gate=dict(type='DyTDispatcher')))
    with pytest.raises(ValueError, match='cannot be combined with a token merger'):
        PYRAViT(arch=TINY, img_size=32, patch_size=8, merge_mode='tome',
                merge_schedule=[2, 2, 0], block_cfg=VARIANTS['attn'])
    with pytest.raises(ValueError, match='outside 0..2'):
        PYRAViT(arch=TINY, img_size=32, patch_size=8, block_overrides=[
            dict(layers=[3], attn_gate=dict(type='DyTLayerDispatcher'))])
    model = PYRAViT(arch=TINY, img_size=32, patch_size=8, with_cls_token=False,
                    out_type='avg_featmap', block_cfg=VARIANTS['layer'])
    with pytest.raises(ValueError, match='has none'):
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize('variant', ['attn', 'attn_mlp', 'layer'])
def test_activation_pictures_read_every_variant(variant):
    import importlib.util
    import os.path as osp
    tool = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'analysis', 'dyt_visualize.py')
    spec = importlib.util.spec_from_file_location('dyt_visualize_variants', tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    activation_masks = module.activation_masks
    model = _vit(variant).eval()
    _perturb(model)
    images = torch.randn(8, 3, 32, 32)
    calibrate_rate(model, images, 0.5)
    masks = activation_masks(model, images)
    _, ctx = model.forward_with_context(images)
    for i, got in enumerate(masks):
        if variant == 'layer':
            want = ctx.masks[f'layer.{i}'][:, None].expand(8, 16)
        else:
            want = ctx.masks[f'{"attn" if variant == "attn" else "block"}.{i}'][:, 1:]
        assert got.shape == (8, 16) and (got == want.numpy()).all()
