"""Token-merging core against brute-force references and invariants."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from projects.pyra.pyra_modulation import PYRAModulation
from projects.pyra.token_merge import (bipartite_soft_matching, max_merge, merge_weighted,
                                       unmerge)


def brute_force_merge(x, size, metric, r, class_token):
    """Loop-based ToMe matching + size-weighted merge for one sample; returns the list
    of groups (original token indices) and the merged value of each group."""
    n = x.shape[0]
    r = min(r, max_merge(n, class_token))
    a_pos = list(range(0, n, 2))
    b_pos = list(range(1, n, 2))
    m = metric / metric.norm(dim=-1, keepdim=True)
    best = []
    for ia, pa in enumerate(a_pos):
        if class_token and pa == 0:
            best.append((-float('inf'), ia, 0))
            continue
        sims = torch.stack([m[pa] @ m[pb] for pb in b_pos])
        best.append((sims.max().item(), ia, int(sims.argmax())))
    # stable descending order like argsort(descending=True) on distinct values
    order = sorted(best, key=lambda t: -t[0])
    merged_a = {ia: jb for _, ia, jb in order[:r]}
    groups = {('b', jb): [b_pos[jb]] for jb in range(len(b_pos))}
    for ia, jb in merged_a.items():
        groups[('b', jb)].append(a_pos[ia])
    for ia, pa in enumerate(a_pos):
        if ia not in merged_a:
            groups[('a', ia)] = [pa]
    values = {}
    for key, members in groups.items():
        w = size[members]
        values[key] = ((x[members] * w).sum(0) / w.sum(), w.sum())
    return groups, values


def test_matches_brute_force():
    torch.manual_seed(1)
    n, c, r = 15, 6, 4
    x = torch.randn(1, n, c)
    metric = torch.randn(1, n, 5)
    size = torch.randint(1, 4, (1, n, 1)).float()
    matching = bipartite_soft_matching(metric, r, class_token=True)
    y, new_size = merge_weighted(matching, x, size)
    assign = matching.compose(None)[0]
    groups, values = brute_force_merge(x[0], size[0], metric[0], r, True)
    assert y.shape == (1, n - r, c)
    got_groups = {tuple(sorted((assign == j).nonzero().flatten().tolist())) for j in range(n - r)}
    want_groups = {tuple(sorted(g)) for g in groups.values()}
    assert got_groups == want_groups
    for key, members in groups.items():
        j = int(assign[members[0]])
        want_x, want_size = values[key]
        torch.testing.assert_close(y[0, j], want_x, atol=1e-6, rtol=1e-6)
        assert new_size[0, j, 0] == want_size


def test_class_token_never_merged_and_first():
    x = torch.randn(3, 21, 8)
    # make the class token the most similar to everything: still never merged
    metric = torch.ones(3, 21, 4) + 0.01 * torch.randn(3, 21, 4)
    matching = bipartite_soft_matching(metric, 10, class_token=True)
    y, size = merge_weighted(matching, x, None)
    assign = matching.compose(None)
    assert (assign[:, 0] == 0).all()
    assert ((assign[:, 1:] == 0).sum(1) == 0).all()
    torch.testing.assert_close(y[:, 0], x[:, 0])
    assert (size[:, 0, 0] == 1).all()


def test_r_capped_and_zero():
    metric = torch.randn(2, 9, 4)
    assert bipartite_soft_matching(metric, 0) is None
    matching = bipartite_soft_matching(metric, 100, class_token=True)
    assert matching.r == max_merge(9, True) == 4


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), r=st.integers(0, 25), bsz=st.integers(1, 3),
       cls=st.booleans(), layers=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_properties_over_random_shapes(n, r, bsz, cls, layers, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(bsz, n, 5, generator=g)
    x, size, assign = x0, None, None
    for _ in range(layers):
        matching = bipartite_soft_matching(torch.randn(bsz, x.shape[1], 3, generator=g), r, cls)
        if matching is None:
            continue
        x, size = merge_weighted(matching, x, size)
        assign = matching.compose(assign)
    if size is None:
        return
    # sizes always sum to the number of original tokens
    assert torch.equal(size.sum(1).squeeze(-1), torch.full((bsz,), float(n)))
    # every merged token is the plain mean of the original tokens assigned to it
    counts = torch.zeros(bsz, x.shape[1]).scatter_add_(1, assign, torch.ones(bsz, n))
    assert torch.equal(counts, size[..., 0])
    sums = torch.zeros_like(x).scatter_add_(1, assign[..., None].expand(-1, -1, 5), x0)
    torch.testing.assert_close(sums / counts[..., None], x, atol=1e-5, rtol=1e-5)
    # unmerge returns the full sequence and each token gets its group's value
    full = unmerge(x, assign)
    assert full.shape == x0.shape
    for b in range(bsz):
        for i in range(n):
            assert torch.equal(full[b, i], x[b, assign[b, i]])
    if cls:
        assert (assign[:, 0] == 0).all() and (size[:, 0, 0] == 1).all()


def test_pyra_at_init_equals_tome_exactly():
    x = torch.randn(2, 17, 8)
    size = torch.randint(1, 3, (2, 17, 1)).float()
    matching = bipartite_soft_matching(torch.randn(2, 17, 4), 6, True)
    tome = merge_weighted(matching, x, size)
    pyra = merge_weighted(matching, x, size, PYRAModulation(8, 6))
    assert torch.equal(tome[0], pyra[0]) and torch.equal(tome[1], pyra[1])


def test_pyra_formula_against_paper():
    torch.manual_seed(3)
    mod = PYRAModulation(8, 5)
    with torch.no_grad():
        mod.pyra_weight_d.normal_()
    src, dst = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    ones = torch.ones(2, 5, 1)
    out = mod(src, dst, ones, ones)
    for b in range(2):
        info = mod.pyra_norm(src[b] + dst[b]).t()                    # D x r (paper layout)
        delta_d = info @ mod.pyra_weight_r                          # D x 1
        delta_r = mod.pyra_weight_d @ info                          # 1 x r
        ms = src[b].t()
        ms_hat = 2 * torch.sigmoid(delta_d) * ms                     # Eq. 6
        want = ms + (2 * torch.sigmoid(delta_r) - 1) * ms_hat       # Eq. 7
        torch.testing.assert_close(out[b], want.t(), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out, src)


def test_pyra_weight_r_resampled_for_other_r():
    mod = PYRAModulation(4, 6)
    assert mod.weight_r(6) is mod.pyra_weight_r
    w = mod.weight_r(11)
    assert w.shape == (11, 1)
    torch.testing.assert_close(w[0], mod.pyra_weight_r[0])
    torch.testing.assert_close(w[-1], mod.pyra_weight_r[-1])


def tome_wavg_reference(matching, x, size, modulate=None):
    """ToMe's own formulation of the weighted merge: multiply every token by its size,
    sum each (modulated) source into its destination, divide every token by its new
    size. ``merge_weighted`` computes the same thing touching only the merged pairs."""
    c = x.shape[-1]
    size = torch.ones_like(x[..., :1]) if size is None else size
    xs = x * size
    a, b = xs[:, ::2], xs[:, 1::2]
    sa, sb = size[:, ::2], size[:, 1::2]
    src = a.gather(1, matching.src_idx.expand(-1, -1, c))
    if modulate is not None:
        src = modulate(src, b.gather(1, matching.dst_idx.expand(-1, -1, c)),
                       sa.gather(1, matching.src_idx), sb.gather(1, matching.dst_idx))
    b = b.scatter_reduce(1, matching.dst_idx.expand(-1, -1, c), src, reduce='sum')
    sb = sb.scatter_reduce(1, matching.dst_idx, sa.gather(1, matching.src_idx), reduce='sum')
    unm = a.gather(1, matching.unm_idx.expand(-1, -1, c))
    new_size = torch.cat([sa.gather(1, matching.unm_idx), sb], 1)
    return torch.cat([unm, b], 1) / new_size, new_size


@settings(max_examples=25, deadline=None)
@given(n=st.integers(5, 40), r=st.integers(1, 25), bsz=st.integers(1, 3),
       cls=st.booleans(), pyra=st.booleans(), sized=st.booleans(), seed=st.integers(0, 999))
def test_merge_equals_tomes_formulation_with_gradients(n, r, bsz, cls, pyra, sized, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, n, 8, generator=gen, requires_grad=True)
    size = torch.randint(1, 5, (bsz, n, 1), generator=gen).float() if sized else None
    matching = bipartite_soft_matching(torch.randn(bsz, n, 4, generator=gen), r, cls)
    if matching is None:
        return
    modulate = None
    if pyra:
        modulate = PYRAModulation(8, matching.r)
        with torch.no_grad():
            modulate.pyra_weight_d.normal_(generator=gen)
    got = merge_weighted(matching, x, size, modulate)
    want = tome_wavg_reference(matching, x, size, modulate)
    torch.testing.assert_close(got[0], want[0], atol=1e-6, rtol=1e-6)
    assert torch.equal(got[1], want[1])
    weights = torch.randn(got[0].shape, generator=gen)
    params = [x] + (list(modulate.parameters()) if pyra else [])
    grads = torch.autograd.grad((got[0] * weights).sum(), params)
    want_grads = torch.autograd.grad((want[0] * weights).sum(), params)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
