"""The example of ``projects/vit/README.md`` runs as written: one part per slot, built
by configuration into a ComposableViT, each doing what the README says it does."""
import os.path as osp
import re

import torch

from projects.vit import Block, ComposableViT, TokenContext
from projects.vit.registry import VIT_LAYERS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


def _example() -> dict:
    with open(osp.join(ROOT, 'projects', 'vit', 'README.md')) as f:
        code = re.search(r'```python\n(.*?)```', f.read(), re.S).group(1)
    names: dict = {}
    for cls in ('BiasedAttention', 'ReluMlp', 'DropLast', 'NormGate', 'ZeroAdapter'):
        VIT_LAYERS.module_dict.pop(cls, None)  # re-running the example re-registers
    exec(compile(code, 'projects/vit/README.md', 'exec'), names)  # noqa: S102
    return names


def test_readme_example_builds_and_each_part_does_its_job():
    names = _example()
    cfg = dict(names['backbone'], arch=TINY, img_size=32, patch_size=8)
    cfg.pop('type')
    torch.manual_seed(0)
    model = ComposableViT(**cfg).eval()
    kinds = [type(b.attn).__name__ for b in model.blocks]
    assert kinds == ['BiasedAttention'] * 3 + ['Attention']
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, ctx = model.forward_with_context(x)
        # the gate keeps the tokens above the median norm: about half, recorded per layer
        assert sorted(ctx.masks) == [f'mlp.{i}' for i in range(4)]
        assert sorted(ctx.aux_by_layer('rate')) == [0, 1, 2, 3]
        rate = torch.stack(list(ctx.aux_by_layer('rate').values()))
        assert ((rate > 0.3) & (rate < 0.7)).all()
        # the zero adapter adds nothing; the attention bias hook adds 0.1 after proj
        blk = model.blocks[0]
        tokens, ctx0 = model.embed(x)
        y, _ = blk.attn(blk.norm1(tokens), ctx0)
        plain = blk.attn.proj(torch.nn.functional.scaled_dot_product_attention(
            *blk.attn.qkv(blk.norm1(tokens)).reshape(2, 17, 3, 2, 16)
            .permute(2, 0, 3, 1, 4).unbind(0)).transpose(1, 2).reshape(2, 17, 32))
        torch.testing.assert_close(y, plain + 0.1, rtol=1e-5, atol=1e-5)
        assert torch.equal(blk.adapter(tokens, ctx0), torch.zeros_like(tokens))
    assert {n for n, p in model.named_parameters() if 'adapter' in n} == {
        f'blocks.{i}.adapter.up.{k}' for i in range(4) for k in ('weight', 'bias')}


def test_readme_mlp_and_reduction_parts():
    _example()
    torch.manual_seed(0)
    block = Block(32, 2, 64, mlp_cfg=dict(type='ReluMlp'), merger=dict(type='DropLast')).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        out, ctx = block(x, TokenContext(grid=(2, 4)))
        attn_out, _ = block.forward_attn(x, TokenContext())
        kept = attn_out[:, :-1]
        mlp = block.mlp.fc2(block.mlp.fc1(block.norm2(kept)).relu())
    assert out.shape == (2, 8, 32) and not ctx.on_grid
    torch.testing.assert_close(out, kept + mlp, rtol=1e-6, atol=1e-6)
