"""SPViT's unified layer, conv paths, compact model and FLOPs against independent
references (the plain block, F.conv2d, mmengine's FlopAnalyzer)."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer

from projects.spvit import (SPViTArch, arch_macs, compact_state_dict, derive_arch,
                            fold_state_dict, supernet_macs)
from projects.spvit.arch import OPS, load_arch
from projects.spvit.bconv import conv3x3_weights, gather_conv3x3
from projects.spvit.gates import ordered_attention_gates, sample_gates

from .common import IMG, SEARCH, TINY, compact, jitter, vit


def _set_theta(model, attn_logits, ffn_logits=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, blk in enumerate(model.blocks):
            blk.attn.theta.copy_(torch.tensor(attn_logits[i], dtype=torch.float))
            if ffn_logits is None:
                blk.mlp.theta.copy_(torch.randn(blk.mlp.theta.shape, generator=gen))
            else:
                blk.mlp.theta.fill_(ffn_logits)


def test_all_gates_on_equals_plain_block():
    plain = jitter(vit()).eval()
    search = vit(SEARCH)
    missing, unexpected = search.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.endswith(('.z', '.theta')) or '.bn' in k for k in missing)
    _set_theta(search, [[20.0] * 3] * 4, 20.0)
    x = torch.randn(2, 3, *IMG)
    with torch.no_grad():
        want = plain(x)[0]
        torch.testing.assert_close(search.eval()(x)[0], want, rtol=0, atol=1e-6)
        # training samples every gate on (logit 20): the mixture is the plain block too
        torch.testing.assert_close(search.train()(x)[0], want, rtol=0, atol=1e-6)


def test_gather_conv3x3_equals_conv2d_on_non_square_grid():
    gen = torch.Generator().manual_seed(1)
    v, c = torch.randn(9, 5, 12, generator=gen), torch.randn(9, 5, generator=gen)
    maps = torch.randn(2, 12, 3, 7, generator=gen)
    kernel, bias, _ = conv3x3_weights(v, c, torch.randn(9, 12, 5))
    want = F.conv2d(maps, kernel, bias, padding=1)
    torch.testing.assert_close(gather_conv3x3(maps, v, c), want, rtol=0, atol=1e-5)
    # position p sits at (row p % 3, col p // 3): brute force at one output pixel
    i, j = 1, 0
    manual = c.sum(0).clone()
    for p in range(9):
        r, s = i + p % 3 - 1, j + p // 3 - 1
        if 0 <= r < 3 and 0 <= s < 7:
            manual += v[p] @ maps[0, :, r, s]
    torch.testing.assert_close(want[0, :, i, j], manual, rtol=0, atol=1e-5)


# ops per layer: theta logits giving skip / conv1x1 / conv3x3 / msa
LOGITS = {'skip': [-3, 3, 3], 'conv1x1': [3, -3, 3], 'conv3x3': [3, 3, -3], 'msa': [3, 3, 3]}


@pytest.mark.parametrize('skip_op', [None, 'zero', 'ln'])
def test_hard_supernet_equals_compact_model_from_its_arch(skip_op):
    """None: both sides at their default skip op, which must be the same op, so the
    compact model is the network the search scored (issue 22)."""
    ops = ['conv3x3', 'skip', 'conv1x1', 'msa']
    op = {} if skip_op is None else dict(skip_op=skip_op)
    search = jitter(vit(dict(attn_cfg=dict(type='SPViTAttention', **op),
                             mlp_cfg=SEARCH['mlp_cfg'])), seed=2)
    _set_theta(search, [LOGITS[o] for o in ops])
    with torch.no_grad():     # z away from uniform, BN statistics not the defaults
        for blk in search.blocks:
            blk.attn.z.normal_(0, 0.02)
            for bn in (blk.attn.bn1x1, blk.attn.bn3x3):
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2)
    search.eval()
    arch = derive_arch(search)
    assert arch.ops == ops
    assert 0 < sum(arch.keep_count(i) for i in range(4)) < 4 * 64
    state = compact_state_dict(arch, search.state_dict(), TINY['num_heads'], supernet=True)
    small = compact(arch, **op).eval()
    small.load_state_dict(state, strict=True)
    folded = compact(arch, folded=True, **op).eval()
    folded.load_state_dict(fold_state_dict(arch, state, TINY['num_heads']), strict=True)
    x = torch.randn(2, 3, *IMG)
    with torch.no_grad():
        want = search(x)[0]
        torch.testing.assert_close(small(x)[0], want, rtol=0, atol=1e-5)
        torch.testing.assert_close(folded(x)[0], want, rtol=0, atol=1e-5)
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in vit().parameters())


def _counted_macs(model, x) -> int:
    """mmengine's trace count of the model (matmuls, convs, linears; attention's two
    batched matmuls added by shape), norms left out as in the analytic count."""
    def sdpa(inputs, outputs):
        q, k = (inputs[i].type().sizes() for i in (0, 1))
        return 2 * math.prod(q) * k[-2]
    flops = FlopAnalyzer(model, (x,))
    flops.set_op_handle('aten::scaled_dot_product_attention', sdpa)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    return flops.total() - by_op.get('layer_norm', 0) - by_op.get('batch_norm', 0)


@pytest.mark.parametrize('ops,keep', [
    (['msa'] * 4, [64, 64, 64, 64]),
    (['conv1x1', 'conv3x3', 'skip', 'msa'], [10, 0, 64, 33]),
    (['skip', 'skip', 'conv3x3', 'conv3x3'], [1, 2, 3, 4]),
    (['conv3x3', 'msa', 'conv1x1', 'skip'], [64, 7, 20, 50]),
])
def test_flops_function_matches_count_of_compact_model(ops, keep):
    arch = SPViTArch(ops=ops, ffn=[list(range(k)) for k in keep], embed_dims=32,
                     num_heads=4, mlp_hidden=64)
    model = compact(arch, folded=True).eval()
    counted = _counted_macs(model, torch.randn(1, 3, *IMG))
    grid = (IMG[0] // 8, IMG[1] // 8)
    analytic = arch_macs(arch, 32, 4, grid, 8)
    assert abs(analytic - counted) / counted < 0.02
    # the gate function with hard gates of the same architecture gives the same number
    search = vit(SEARCH)
    with torch.no_grad():
        for blk, op, k in zip(search.blocks, ops, keep):
            blk.attn.theta.copy_(torch.tensor(LOGITS[op], dtype=torch.float))
            blk.mlp.theta.fill_(-1.0)[:k] = 1.0
    assert float(supernet_macs(search, grid)) == pytest.approx(analytic, rel=1e-6)


def test_gumbel_sigmoid_frequency_and_gradient():
    theta = torch.tensor([-2.0, -0.5, 0.0, 0.7, 2.5], requires_grad=True)
    n = 20000
    draws = sample_gates(theta.expand(n, -1), 1.0, True)   # n independent draws
    freq = draws.detach().mean(0)
    p = torch.sigmoid(theta.detach())
    assert torch.all((freq - p).abs() < 4 * torch.sqrt(p * (1 - p) / n))
    assert set(draws.detach().unique().tolist()) <= {0.0, 1.0}   # hard forward
    draws.sum().backward()
    assert theta.grad is not None and torch.all(theta.grad > 0)
    hard = sample_gates(theta, 1.0, False)
    assert hard.tolist() == [0, 0, 0, 1, 1]
    # ordered gates: the cumulative product, and theta of every gate gets a gradient
    logits = torch.zeros(3, requires_grad=True)
    g = ordered_attention_gates(logits, 1.0, True, damp=False)
    assert torch.all(g[1:] <= g[:-1])
    g.sum().backward()
    assert logits.grad is not None


def test_flops_loss_reaches_gates_and_depends_on_input_grid():
    model = vit(SEARCH, aux_losses=[dict(type='SPViTFlopsLoss', target=0.1, unit=1e6)])
    model.train()
    _, small = model.forward_with_losses(torch.randn(1, 3, 16, 16))
    _, big = model.forward_with_losses(torch.randn(1, 3, *IMG))
    assert float(small['flops']) < float(big['flops'])
    big['loss_flops'].backward()
    assert model.blocks[0].attn.theta.grad.abs().sum() > 0
    assert model.blocks[0].mlp.theta.grad.abs().sum() > 0


@pytest.mark.parametrize('name,dim,heads,published', [
    ('t', 192, 3, 1.0), ('s', 384, 6, 3.3), ('b', 768, 12, 8.3)])
def test_official_architecture_files_match_published_flops(name, dim, heads, published):
    """The official searched architectures, counted by our FLOPs function at 224 px with
    the 1000-class head, against the GMACs the official README reports (rounded to 0.1
    there; norms counted there, not here)."""
    import os.path as osp
    from projects.spvit import load_arch
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    arch = load_arch(osp.join(root, 'configs', 'spvit', 'archs',
                              f'spvit_deit-{name}_official.json'))
    arch.validate(num_layers=12, mlp_hidden=4 * dim, embed_dims=dim)
    gmacs = arch_macs(arch, dim, heads, (14, 14), 16, extra_macs=dim * 1000) / 1e9
    assert abs(gmacs - published) <= 0.12


def test_export_takes_the_search_skip_op_by_default():
    from mmengine.config import Config
    from projects.spvit.export import search_skip_op
    attn = dict(type='SPViTAttention', skip_op='ln')
    assert search_skip_op(Config(dict(model=dict(backbone=dict(
        block_cfg=dict(attn_cfg=attn)))))) == 'ln'
    assert search_skip_op(Config(dict(model=dict(backbone=dict())))) == 'zero'
    from projects.spvit.embedded import SEARCH_CFG
    assert search_skip_op(Config.fromfile(SEARCH_CFG)) == 'zero'


def test_official_deit_b_compact_keeps_its_flops_ratio():
    """README / issue 22: the official DeiT-B architecture, compact, has 2.09x fewer
    MACs than DeiT-B (one cost model, 224 px, 1000-class head)."""
    from projects.spvit.embedded import ROOT
    arch = load_arch(f'{ROOT}/configs/spvit/archs/spvit_deit-b_official.json')
    dense = SPViTArch(ops=['msa'] * 12, ffn=[3072] * 12)
    macs = [arch_macs(a, 768, 12, (14, 14), 16, extra_macs=768 * 1000) for a in (dense, arch)]
    assert round(macs[0] / macs[1], 2) == 2.09, macs


def test_plot_writes_the_architecture_png(tmp_path):
    """The one drawing code (tool and embedded pipeline) writes a PNG and returns it."""
    from projects.spvit.plot import plot
    arch = load_arch(dict(format='spvit-arch/1', layers=[
        dict(op=o, ffn=k) for o, k in zip(OPS, (8, 16, 32, 64))]))
    out = plot(arch, str(tmp_path / 'a.png'), 'tiny')
    assert out == str(tmp_path / 'a.png')
    assert open(out, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
