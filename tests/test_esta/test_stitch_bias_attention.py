"""ESTA's stitch-biased attention overrides only the attention's bias hooks, so every
execution path of the one attention keeps its stitch biases (issue 20): packed rows (an
attention gate in eval) and hidden keys (an attention gate in training)."""
import torch

from projects.esta.layers import Stitch, StitchBiasAttention
from projects.vit import Block, TokenContext
from projects.vit.interfaces import GateDecision, TokenGate
from projects.vit.registry import VIT_LAYERS

DIM, HEADS = 16, 2


def _attention() -> StitchBiasAttention:
    torch.manual_seed(0)
    attn = StitchBiasAttention(DIM, HEADS, stitch_users=[3, 7]).eval()
    with torch.no_grad():
        attn.stitch_bias_qkv.normal_()
        attn.stitch_bias_proj.normal_()
    return attn


def _by_hand(attn: StitchBiasAttention, x: torch.Tensor, row: int,
             keys: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of one sample (N, C) written out, with the stitch biases of
    ``row`` and only the tokens ``keys`` (N,) bool attended to."""
    n, c = x.shape
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias + attn.stitch_bias_qkv[row]
    q, k, v = qkv.reshape(n, 3, HEADS, c // HEADS).permute(1, 2, 0, 3)
    logits = q @ k.transpose(-1, -2) / (c // HEADS) ** 0.5
    logits = logits.masked_fill(~keys, float('-inf'))
    out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(n, c)
    return out @ attn.proj.weight.T + attn.proj.bias + attn.stitch_bias_proj[row]


def test_packed_rows_get_the_stitch_biases():
    attn = _attention()
    ctx = TokenContext().with_state(Stitch(7))
    lengths = [3, 5]
    rows = torch.randn(sum(lengths), DIM)
    with torch.no_grad():
        got = attn.forward_packed(rows, lengths, ctx)
        parts = rows.split(lengths)
        want = torch.cat([_by_hand(attn, p, 1, torch.ones(len(p), dtype=torch.bool))
                          for p in parts])
        plain = attn.forward_packed(rows, lengths, TokenContext())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 0.1  # the biases matter at this scale


def test_hidden_keys_under_the_stitch_biases():
    attn = _attention()
    ctx = TokenContext().with_state(Stitch(3))
    x = torch.randn(2, 6, DIM)
    keys = torch.tensor([[1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        got, _ = attn(x, ctx, attend=keys)
        want = torch.stack([_by_hand(attn, x[b], 0, keys[b]) for b in range(2)])
        unmasked, _ = attn(x, ctx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - unmasked).abs().max() > 1e-3


def test_a_stitch_that_does_not_run_here_adds_no_bias():
    attn = _attention()
    x = torch.randn(1, 4, DIM)
    with torch.no_grad():
        got, _ = attn(x, TokenContext().with_state(Stitch(5)))  # 5 is no user of it
        none, _ = attn(x, TokenContext())
        attn.stitch_bias_qkv.zero_()
        attn.stitch_bias_proj.zero_()
        zeroed, _ = attn(x, TokenContext().with_state(Stitch(3)))
    assert torch.equal(got, none) and torch.equal(got, zeroed)


@VIT_LAYERS.register_module(force=True)
class _HalfGate(TokenGate):
    """An attention gate keeping the first half of the tokens of every sample."""
    slot = 'attn_gate'

    def __init__(self, dim, **kwargs):
        super().__init__()

    def forward(self, x, ctx):
        keep = torch.zeros(x.shape[:2], dtype=torch.bool)
        keep[:, :x.shape[1] // 2 + 1] = True
        if self.training:
            return GateDecision(keep.float(), hard=False), ctx
        return GateDecision(keep, hard=True), ctx


def test_gated_block_with_stitch_biases_packs_like_it_masks():
    """An attention-gated block on the stitch-biased attention: eval (packed rows) and
    training (hidden keys, straight-through scale) give the same output."""
    torch.manual_seed(0)
    block = Block(DIM, HEADS, 32, attn_cfg=dict(type='StitchBiasAttention',
                                                stitch_users=[2]),
                  attn_gate=dict(type='_HalfGate'))
    with torch.no_grad():
        block.attn.stitch_bias_qkv.normal_()
        block.attn.stitch_bias_proj.normal_()
    ctx = TokenContext().with_state(Stitch(2))
    x = torch.randn(2, 7, DIM)
    with torch.no_grad():
        packed, _ = block.eval()(x, ctx)
        masked, _ = block.train()(x, ctx)
        plain, _ = block.eval()(x, TokenContext())
    torch.testing.assert_close(packed, masked, rtol=1e-5, atol=1e-5)
    assert (packed - plain).abs().max() > 1e-3
