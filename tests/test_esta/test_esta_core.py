"""ESTA parts on tiny random anchors: the stitching space, anchor paths, the
least-squares init, PST's parameter roles, the sampler and bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope

from projects.esta import StitchedViT, StitchSampler, StitchSpace, paired_stitching
from projects.esta.layers import LS_RCOND
from projects.pyra.backbone import PYRAViT


def anchor(dim, heads, depth=4, lora=True, **kw):
    return dict(arch=dict(embed_dims=dim, num_layers=depth, num_heads=heads,
                          feedforward_channels=2 * dim),
                img_size=28, patch_size=14, lora_cfg=dict(rank=2, alpha=2) if lora else None,
                **kw)


def build(anchors=None, **kw):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = StitchedViT(anchors or [anchor(16, 2), anchor(32, 4)], **kw)
    model.init_weights()
    return model


def randomise_peft(model, seed=1):
    """Non-zero LoRA B, stitch biases and stitching LoRA (zero at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'lora_B' in name or 'stitch_bias' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_space_matches_sn_net_counts():
    pairs, layers, n = paired_stitching(12, 2, 1)
    assert len(pairs) == 34 and n == 11 and len(set(pairs)) == 34
    # every pair lies in one window [i, i+1]; a layer serves pairs of its own window
    for (j, k), layer in zip(pairs, layers):
        assert abs(j - k) <= 1 and layer <= min(j, k) <= layer + 1
    space = StitchSpace(12, [192, 384, 768])
    assert len(space) == 3 + 2 * 34 == 71  # SN-Net's 71 configurations
    assert space.num_layers == 22


def test_pure_anchor_stitch_equals_the_anchor_alone():
    model = build().eval()
    randomise_peft(model)
    x = torch.randn(2, 3, 28, 28)
    for a, cfg in enumerate([anchor(16, 2, lora=False), anchor(32, 4, lora=False)]):
        ref = PYRAViT(**cfg).eval()
        # the plain anchor with this stitch's LoRA and biases folded in, built
        # independently from PYRAViT and loaded strictly
        state = model.folded_state_dict(a)
        ref.load_state_dict({k[len(f'anchors.{a}.'):]: v for k, v in state.items()
                             if k.startswith(f'anchors.{a}.')})
        expect = ref(x)[0]
        if a == 0:  # the smaller anchor's tap: zero-padded to the largest width at init
            expect = F.pad(expect, (0, 16))
        got = model(x, stitch=a)[0]
        assert (got - expect).abs().max() <= 1e-6
        # the stitch's own biases really enter (without them the path differs)
        plain = model.anchors[a](x)[0]
        plain = F.pad(plain, (0, 16)) if a == 0 else plain
        assert (got - plain).abs().max() > 1e-4


def test_least_squares_init_equals_numpy_and_beats_random():
    model = build().eval()
    x = torch.randn(6, 3, 28, 28)
    random_w = [(m.weight.detach().clone(), m.bias.detach().clone())
                for m in model.stitch_layers]
    model.init_stitching_layers(x)
    acts = [model.anchor_activations(a, x) for a in range(2)]
    for layer, module in enumerate(model.stitch_layers):
        ws, bs = [], []
        users = model.space.layer_users(layer)
        for sid in users:
            s = model.space.stitches[sid]
            xs = acts[s.front][s.j + 1].double().numpy()
            ys = acts[s.end][s.k].double().numpy()
            sol = np.linalg.lstsq(np.hstack([xs, np.ones((len(xs), 1))]), ys, rcond=LS_RCOND)[0]
            ws.append(sol[:-1].T)
            bs.append(sol[-1])
        np.testing.assert_allclose(module.weight.detach().numpy(), np.mean(ws, 0),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(module.bias.detach().numpy(), np.mean(bs, 0),
                                   rtol=1e-4, atol=1e-4)
        s = model.space.stitches[users[0]]
        xs, ys = acts[s.front][s.j + 1], acts[s.end][s.k]
        res_ls = (xs @ module.weight.T + module.bias - ys).norm()
        w0, b0 = random_w[layer]
        assert res_ls < (xs @ w0.T + b0 - ys).norm()
    assert bool(model.stitch_initialised)


def test_pst_trains_bias_per_stitch_and_shared_lora_always():
    model = build()
    model.train()
    head = torch.nn.Linear(32, 10)
    trainable = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    # FFN, norms, embeddings and the least-squares stitching weight are frozen
    assert not any('mlp' in n or 'norm' in n or n.endswith('stitch_layers.0.weight')
                   for n in names)
    assert any('lora_A' in n for n in names) and any('stitch_bias' in n for n in names)
    opt = torch.optim.SGD(trainable + list(head.parameters()), lr=0.1)
    x, y = torch.randn(4, 3, 28, 28), torch.randint(0, 10, (4,))
    # stitch 5 (a real stitch); its front block 0 attention bias row, and a row of
    # another stitch in the same block
    attn = model.anchors[0].blocks[0].attn
    other = next(s for s in attn.stitch_users if s not in (5, 0, 1))  # a real stitch
    lora = model.anchors[1].blocks[3].attn.qkv.lora_B['q']   # every real stitch runs it
    for stitch in [5, other, 5, other]:
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.zero_grad()
        F.cross_entropy(head(model(x, stitch=stitch)[0]), y).backward()
        opt.step()
        for sid in (5, other):
            row = attn.row(sid)
            changed = not torch.equal(attn.stitch_bias_qkv[row],
                                      before['anchors.0.blocks.0.attn.stitch_bias_qkv'][row])
            assert changed == (sid == stitch), (stitch, sid)
        assert not torch.equal(lora, before['anchors.1.blocks.3.attn.qkv.lora_B.q'])


def test_sampler_follows_normalised_scores_and_moving_average():
    flops = [1, 2, 10, 11, 12, 13]
    sampler = StitchSampler(flops, num_intervals=2, momentum=0.9, temperature=0.25, seed=3)
    assert [ids for _, ids in sampler.intervals] == [[0, 1], [2, 3, 4, 5]]
    # moving average by hand: first score sets it, then s <- 0.9 s + 0.1 q
    for q in (4.0, 2.0, 10.0):
        sampler.update(3, q)
    assert sampler.scores[3] == pytest.approx(0.9 * (0.9 * 4.0 + 0.1 * 2.0) + 0.1 * 10.0)
    sampler.scores[:] = [1.0, 1.0, 1.0, 4.0, 2.0, 8.0]
    z = np.array([1.0, 4.0, 2.0, 8.0]) / 8.0
    expect = np.exp(z / 0.25) / np.exp(z / 0.25).sum()
    np.testing.assert_allclose(sampler.probabilities(1), expect)
    draws = np.array([sampler.sample(uniform=False) for _ in range(20000)])
    in_interval = draws[draws >= 2]
    assert abs(len(in_interval) / len(draws) - 0.5) < 0.02  # intervals uniformly
    freq = np.array([(in_interval == s).mean() for s in (2, 3, 4, 5)])
    n = len(in_interval)
    assert np.all(np.abs(freq - expect) < 4 * np.sqrt(expect * (1 - expect) / n))
    best = sampler.best_per_interval()
    assert [d['stitch'] for d in best] == [0, 5]


def test_bad_input_errors():
    with pytest.raises(ValueError, match='differ in num_layers'):
        build([anchor(16, 2, depth=4), anchor(32, 4, depth=3)])
    with pytest.raises(ValueError, match='strictly increasing embed_dims'):
        build([anchor(32, 4), anchor(16, 2)])
    with pytest.raises(ValueError, match='at least 2 anchor'):
        build([anchor(16, 2)])
    with pytest.raises(ValueError, match='kernel_size'):
        build(kernel_size=5)
    with pytest.raises(ValueError, match=r"sets \['merge_mode', 'merge_schedule'\]: stitched"):
        build([anchor(16, 2), anchor(32, 4, merge_mode='tome', merge_schedule=1)])
    model = build()
    with pytest.raises(IndexError, match='out of range.*12 stitches'):
        model(torch.randn(1, 3, 28, 28), stitch=12)
    with pytest.raises(IndexError, match='out of range'):
        model.set_stitch(-1)
    missing = anchor(32, 4, init_cfg=dict(type='Pretrained', checkpoint='/nonexistent/s.pth'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = StitchedViT([anchor(16, 2), missing])
    with pytest.raises(FileNotFoundError, match=r'anchors\[1\] checkpoint /nonexistent/s.pth'):
        model.init_weights()


def test_stitch_macs_match_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode
    model = build([anchor(16, 2, lora=False), anchor(32, 4, lora=False)], pst=False).eval()
    x = torch.randn(1, 3, 28, 28)
    for stitch in range(len(model.space)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, stitch=stitch)
        # torch's counter sees every linear / conv (patch embedding, q/k/v, proj, MLP,
        # stitching layer, tap projection) but not CPU attention (SDPA): add QK^T + AV
        n = 5  # 1 class + 2x2 patch tokens
        attn = sum(2 * n * n * model.dims[a] for a, _ in model.space.blocks_used(stitch))
        assert counter.get_total_flops() / 2 + attn == model.stitch_macs(stitch), stitch


def test_joint_least_squares_equals_numpy_on_stacked_rows():
    model = build().eval()
    x = torch.randn(6, 3, 28, 28)
    model.init_stitching_layers(x, mode='joint')
    acts = [model.anchor_activations(a, x) for a in range(2)]
    for layer, module in enumerate(model.stitch_layers):
        st = [model.space.stitches[i] for i in model.space.layer_users(layer)]
        xs = torch.cat([acts[s.front][s.j + 1] for s in st]).double().numpy()
        ys = torch.cat([acts[s.end][s.k] for s in st]).double().numpy()
        sol = np.linalg.lstsq(np.hstack([xs, np.ones((len(xs), 1))]), ys, rcond=LS_RCOND)[0]
        np.testing.assert_allclose(module.weight.detach().numpy(), sol[:-1].T, rtol=1e-4,
                                   atol=1e-4)
        res = np.linalg.norm(xs @ sol[:-1] + sol[-1] - ys)
        assert res <= np.linalg.norm(ys - ys.mean(0))  # never worse than the mean map
    with pytest.raises(ValueError, match="'average' or 'joint'"):
        model.init_stitching_layers(x, mode='mean')


def test_front_at_last_block_stitches_the_unnormed_residual_stream():
    """Stitch (L-1, k): the stitching layer reads the front's last block output before
    its final norm (SN-Net; what every other stitch of the layer reads), checked
    against an independent path built from plain PYRAViTs."""
    model = build().eval()
    randomise_peft(model)
    x = torch.randn(2, 3, 28, 28)
    space, depth = model.space, model.depth
    for sid, s in enumerate(space.stitches):
        if s.is_anchor or s.j != depth - 1:
            continue
        state = model.folded_state_dict(sid)
        part = {a: {k[len(f'anchors.{a}.'):]: v for k, v in state.items()
                    if k.startswith(f'anchors.{a}.')} for a in (0, 1)}
        front = PYRAViT(**anchor(16, 2, lora=False), final_norm=False, out_type='raw').eval()
        front.load_state_dict({k: v for k, v in part[0].items() if not k.startswith('norm.')})
        end = PYRAViT(**anchor(32, 4, lora=False)).eval()
        end.load_state_dict(part[1])
        w = state[f'stitch_layers.{s.layer}.weight']
        b = state[f'stitch_layers.{s.layer}.bias']
        with torch.no_grad():
            raw = front(x)[0]  # (B, 1 + N, C) after the last block, no final norm
            _, ctx = end.embed(x)
            tokens, ctx, taps = end.forward_blocks(F.linear(raw, w, b), ctx, s.k, depth)
            want = taps[depth - 1]
            got = model(x, stitch=sid)[0]
            normed = model.anchors[0].norm(raw)
            _, _, taps_n = end.forward_blocks(F.linear(normed, w, b), end.embed(x)[1], s.k,
                                              depth)
        assert (got - want).abs().max() <= 1e-5, sid
        assert (got - taps_n[depth - 1]).abs().max() > 1e-3  # the norm would matter
    # the least-squares init reads the same tokens (no stitch biases, zero LoRA here)
    fresh = build().eval()
    front = PYRAViT(**anchor(16, 2, lora=False), final_norm=False, out_type='raw').eval()
    front.load_state_dict({k[len('anchors.0.'):]: v for k, v in fresh.folded_state_dict(0).items()
                           if k.startswith('anchors.0.') and not k.startswith('anchors.0.norm.')})
    with torch.no_grad():
        raw = front(x)[0]
    acts = fresh.anchor_activations(0, x)
    assert (acts[depth] - raw.reshape(-1, raw.shape[-1])).abs().max() <= 1e-5
    assert (acts[depth] - fresh.anchors[0].norm(acts[depth])).abs().max() > 1e-2
