"""DFPQ (Eq. 5.2) and the first block's mask pooling."""
import pytest
import torch

from projects.faseg import DFPQ


def test_dfpq_is_mlp_of_attention_weighted_positions_plus_embedding():
    torch.manual_seed(0)
    dfpq = DFPQ(8)
    attn = torch.softmax(torch.randn(2, 3, 10), -1)
    pos, embed = torch.randn(2, 10, 8), torch.randn(2, 3, 8)
    expected = dfpq.mlp(torch.einsum('bqk,bkc->bqc', attn, pos) + embed)
    torch.testing.assert_close(dfpq(attn, pos, embed), expected)
    assert [type(m).__name__ for m in dfpq.mlp] == ['Linear', 'ReLU', 'Linear']


@pytest.mark.parametrize('pool', ['background', 'foreground', 'soft'])
def test_first_block_pools_the_predicted_mask(pool):
    dfpq = DFPQ(4, init_pool=pool)
    dfpq.mlp = torch.nn.Identity()  # look at what goes into the MLP
    logits = torch.full((1, 1, 2, 2), -5.0)
    logits[0, 0, 0, 0] = 5.0  # one foreground pixel
    pos = torch.arange(16.).view(1, 4, 4)
    out = dfpq.from_mask(logits, pos, torch.zeros(1, 1, 4))
    fg, bg = pos[0, 0], pos[0, 1:].mean(0)
    expected = {'foreground': fg, 'background': bg}.get(pool)
    if expected is None:  # soft: sigmoid-weighted mean, dominated by the foreground
        w = logits.flatten().sigmoid()
        expected = (w[:, None] * pos[0]).sum(0) / w.sum()
    torch.testing.assert_close(out[0, 0], expected, rtol=1e-4, atol=1e-4)


def test_bad_pool_rejected():
    with pytest.raises(ValueError):
        DFPQ(4, init_pool='center')
