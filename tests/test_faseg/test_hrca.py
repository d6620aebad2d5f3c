"""HRCA token selection and its equivalence to full cross-attention."""
import pytest
import torch
from mmengine.config import ConfigDict

from projects.faseg import WeightedCrossAttention, gather_tokens, num_windows, select_hr_indices


def _attention(c=16):
    attn = WeightedCrossAttention(**ConfigDict(embed_dims=c, num_heads=2, batch_first=True,
                                               dropout_layer=None))
    return attn.eval()


@pytest.mark.parametrize('selection', ['window', 'bilinear'])
def test_hrca_equals_full_attention_when_k_covers_everything(selection):
    torch.manual_seed(0)
    b, q, c, lr, hr = 2, 5, 16, (4, 6), (32, 48)
    attn = _attention(c)
    query, query_pos = torch.randn(b, q, c), torch.randn(b, q, c)
    tokens, pos = torch.randn(b, hr[0] * hr[1], c), torch.randn(b, hr[0] * hr[1], c)
    scores = torch.rand(b, lr[0] * lr[1])
    index = select_hr_indices(scores, lr, hr, omega=1, selection=selection)
    assert torch.equal(index.sort(1).values, torch.arange(hr[0] * hr[1]).expand(b, -1))
    full, w_full = attn(query, tokens, tokens, query_pos, pos, need_weights=True)
    sub = gather_tokens(tokens, index)
    part, w_part = attn(query, sub, sub, query_pos, gather_tokens(pos, index),
                        need_weights=True)
    torch.testing.assert_close(part, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_part.sum(-1), torch.ones(b, q))
    # non-vacuity: with the default k (omega=32 -> 1 window here) the result differs
    index = select_hr_indices(scores, lr, hr, omega=32, selection=selection)
    assert index.shape[1] == 8 * 8
    sub = gather_tokens(tokens, index)
    small, _ = attn(query, sub, sub, query_pos, gather_tokens(pos, index))
    assert (small - full).abs().max() > 1e-3


def test_windows_follow_the_top_scores():
    scores = torch.zeros(1, 16 * 16)
    scores[0, 3 * 16 + 5] = 2.0   # low-res pixel (3, 5)
    scores[0, 15 * 16 + 0] = 1.0  # (15, 0)
    index = select_hr_indices(scores, (16, 16), (128, 128), omega=128)  # k = 2
    assert num_windows((16, 16), 128) == 2
    rows, cols = index[0] // 128, index[0] % 128
    first, second = slice(0, 64), slice(64, 128)
    assert set(rows[first].tolist()) == set(range(24, 32))
    assert set(cols[first].tolist()) == set(range(40, 48))
    assert set(rows[second].tolist()) == set(range(120, 128))
    assert set(cols[second].tolist()) == set(range(0, 8))
    assert num_windows((16, 16), 32) == 8  # thesis: k = floor(HW / 32) at 512^2


@pytest.mark.parametrize('lr,hr', [((3, 5), (13, 19)), ((4, 4), (25, 25)), ((1, 1), (7, 3)),
                                   ((2, 3), (16, 24)), ((4, 3), (13, 10)), ((7, 9), (25, 33))])
@pytest.mark.parametrize('selection', ['window', 'bilinear'])
@pytest.mark.parametrize('omega', [1, 2, 32])
def test_indices_in_bounds_at_odd_sizes(lr, hr, selection, omega):
    torch.manual_seed(0)
    scores = torch.rand(3, lr[0] * lr[1])
    index = select_hr_indices(scores, lr, hr, omega=omega, selection=selection)
    assert index.dtype == torch.long
    assert index.min() >= 0 and index.max() < hr[0] * hr[1]
    k = num_windows(lr, omega)
    sh, sw = -(-hr[0] // lr[0]), -(-hr[1] // lr[1])
    if selection == 'window':  # overlapping windows at odd sizes may repeat tokens
        assert index.shape == (3, k * sh * sw)
    else:
        assert index.shape == (3, min(k * sh * sw, hr[0] * hr[1]))
    if selection == 'window':  # no token twice inside one window
        for window in index.view(3, k, sh * sw).flatten(0, 1):
            assert window.unique().numel() == sh * sw
    tokens = torch.randn(3, hr[0] * hr[1], 4)
    assert gather_tokens(tokens, index).shape == (3, index.shape[1], 4)


def test_bad_selection_rejected():
    with pytest.raises(ValueError):
        select_hr_indices(torch.rand(1, 4), (2, 2), (8, 8), selection='nearest')
