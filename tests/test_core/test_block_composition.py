"""The ViT's extension points (issue 9): config-built block parts, the per-forward
context, block ranges, module-declared parameter roles."""
import pytest
import torch
from torch import nn

from projects.vit.context import TokenContext
from projects.vit.param_roles import AddsParameters, new_parameter_names, trainable_when_frozen
from projects.vit.registry import VIT_LAYERS
from projects.vit.block import Attention, Block
from projects.vit.interfaces import Adapter, GateDecision, TokenGate
from projects.pyra import PYRAViT

TINY = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


@VIT_LAYERS.register_module(force=True)
class _ScaledAttention(Attention):
    """A new attention variant: same interface, output doubled."""

    def forward(self, x, ctx=TokenContext(), attend=None, need_metric=False):
        out, metric = super().forward(x, ctx, attend, need_metric)
        return 2 * out, metric


@VIT_LAYERS.register_module(force=True)
class _FixedMaskGate(AddsParameters, TokenGate):
    """A per-token MLP gate: a learned per-position logit, hard in eval, straight-through
    soft in training; it logs its rate and adds a loss term."""

    def __init__(self, dim, num_tokens=17, **kwargs):
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(num_tokens))

    def forward(self, x, ctx):
        logit = self.logit[:x.shape[1]].expand(x.shape[0], -1)
        if self.training:
            soft = torch.sigmoid(logit)
            mask = (soft > 0.5).float() - soft.detach() + soft
        else:
            mask = logit > 0
        rate = mask.float().mean()
        return (GateDecision(mask, hard=not self.training),
                ctx.with_aux('mlp_rate', rate).with_loss('loss_rate', (rate - 0.5) ** 2))


@VIT_LAYERS.register_module(force=True)
class _LinearAdapter(AddsParameters, Adapter):

    def __init__(self, dim, **kwargs):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, ctx):
        return self.proj(x)


def _vit(**kw):
    kw.setdefault('arch', TINY)
    kw.setdefault('img_size', 32)
    kw.setdefault('patch_size', 8)
    return PYRAViT(**kw)


def _copy(dst: nn.Module, src: nn.Module) -> None:
    dst.load_state_dict(src.state_dict(), strict=False)


# ------------------------------------------------------------------ composable blocks
def test_block_cfg_and_overrides_choose_parts_per_layer():
    model = _vit(block_overrides=[dict(layers='0:2', attn_cfg=dict(type='_ScaledAttention'))])
    kinds = [type(b.attn).__name__ for b in model.blocks]
    assert kinds == ['_ScaledAttention'] * 2 + ['Attention'] * 2
    # same type: updates the default part config (LoRA from the backbone stays)
    model = _vit(lora_cfg=dict(rank=2), block_cfg=dict(attn_cfg=dict(prop_attn=False)))
    assert all(not b.attn.prop_attn and hasattr(b.attn.qkv, 'lora_A') for b in model.blocks)
    per_layer = [dict(adapter=dict(type='_LinearAdapter')) if i % 2 else {} for i in range(4)]
    model = _vit(block_cfg=per_layer)
    assert [b.adapter is not None for b in model.blocks] == [False, True, False, True]
    model = _vit(block_cfg=lambda i: dict(mlp_gate=dict(type='_FixedMaskGate')) if i == 3 else {})
    assert [b.mlp_gate is not None for b in model.blocks] == [False, False, False, True]


def test_new_attention_variant_changes_the_output_it_should():
    plain = _vit().eval()
    scaled = _vit(block_overrides=[dict(layers=[3], attn_cfg=dict(type='_ScaledAttention'))]).eval()
    _copy(scaled, plain)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, _, _ = plain.forward_blocks(*plain.embed(x), 0, 3)
        b, _, _ = scaled.forward_blocks(*scaled.embed(x), 0, 3)
        assert torch.equal(a, b)  # layers 0-2 untouched
        blk = plain.blocks[3]
        y, _ = blk.attn(blk.norm1(a))
        want, _ = blk.forward_mlp(a + 2 * y, TokenContext())
        got, _ = scaled.blocks[3](b)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize('bad, match', [
    (dict(block_cfg=[{}] * 3), 'lists 3 layers'),
    (dict(block_cfg=dict(atn_cfg=dict(type='Attention'))), "'atn_cfg'"),
    (dict(block_overrides=[dict(layers='0:9:1', adapter=None)]), 'layers'),
    (dict(block_overrides=[dict(layers=[4], adapter=None)]), 'outside 0..3'),
    (dict(block_overrides=[dict(adapter=None)]), 'needs `layers`'),
    (dict(block_cfg=dict(adapter=dict(type='NoSuchAdapter'))), 'NoSuchAdapter'),
    (dict(block_cfg=dict(adapter='adapter')), 'must be a dict'),
])
def test_bad_block_configs_are_refused_clearly(bad, match):
    with pytest.raises((ValueError, KeyError, TypeError), match=match):
        _vit(**bad)


# ----------------------------------------------------------------- gate and adapter
def _gated(**kw):
    return _vit(block_cfg=dict(mlp_gate=dict(type='_FixedMaskGate'),
                               adapter=dict(type='_LinearAdapter')), **kw)


def test_gate_all_on_with_zero_adapter_equals_plain_vit():
    plain = _vit().eval()
    gated = _gated().eval()
    _copy(gated, plain)
    for blk in gated.blocks:
        blk.mlp_gate.logit.data.fill_(1.0)  # every token active
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(gated(x)[0], plain(x)[0])


def test_packed_mlp_equals_masked_dense_mlp_with_empty_and_full_samples():
    block = Block(32, 2, 64, mlp_gate=dict(type='_FixedMaskGate'), layer_scale=0.5).eval()
    x = torch.randn(4, 17, 32)
    mask = torch.rand(4, 17) > 0.5
    mask[0] = False  # a sample with no active token
    mask[1] = True   # and one with all
    with torch.no_grad():
        packed, _ = block.forward_mlp(x, TokenContext(), GateDecision(mask, hard=True))
        dense = x + block.mlp_branch(x) * mask[..., None]
    torch.testing.assert_close(packed, dense, rtol=0, atol=1e-6)
    assert torch.equal(packed[0], x[0])


def test_gate_logs_aux_and_adds_a_loss_once_even_with_checkpointing():
    x = torch.randn(2, 3, 32, 32)
    losses = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = _gated(with_cp=with_cp).train()
        outs, terms = model.forward_with_losses(x)
        (outs[0].sum() + terms['loss_rate']).backward()
        assert sorted(terms) == ['loss_rate']
        losses.append((terms['loss_rate'].detach(), model.blocks[0].mlp_gate.logit.grad.clone()))
    # four layers, each rate = mean of the initial hard mask (logit 0 -> sigmoid 0.5 -> off)
    assert torch.equal(losses[0][0], torch.tensor(4 * 0.25))
    assert torch.equal(losses[0][0], losses[1][0])
    torch.testing.assert_close(losses[0][1], losses[1][1])
    assert losses[0][1].abs().sum() > 0  # the straight-through gradient reaches the gate
    _, ctx = _gated().eval().forward_with_context(x)
    assert sorted(ctx.aux_by_layer('mlp_rate')) == [0, 1, 2, 3]


# ------------------------------------------------------------------------- context
def test_context_grid_for_conv_layers_and_refusal_after_merging():
    model = _vit(img_size=(32, 48), merge_mode='tome', merge_schedule=[0, 3, 0, 0],
                 out_type='featmap')
    x, ctx = model.embed(torch.randn(2, 3, 32, 48))
    assert ctx.grid == (4, 6) and ctx.on_grid and ctx.groups is None
    assert [b.merger.num_merge for b in model.blocks] == [0, 3, 0, 0]
    prefix, grid = ctx.to_grid(x)
    assert torch.equal(grid[:, :, 1, 2], x[:, 1 + 1 * 6 + 2]) and torch.equal(prefix, x[:, :1])
    x, ctx, _ = model.forward_blocks(x, ctx, 0, 2)
    assert not ctx.on_grid and x.shape[1] == 25 - 3
    with pytest.raises(RuntimeError, match=r'layer 1\) needs the tokens on the 4x6 patch grid'):
        ctx.to_grid(x, 'a conv attention')


def test_context_is_immutable_and_keyed_by_layer():
    ctx = TokenContext().at_layer(2).with_mask('mlp', torch.ones(1, 3, dtype=torch.bool))
    ctx2 = ctx.with_aux('rate', torch.tensor(0.5)).with_loss('loss_x', torch.tensor(1.0))
    ctx3 = ctx2.with_loss('loss_x', torch.tensor(2.0))
    assert list(ctx.masks) == ['mlp.2'] and not ctx.aux and not ctx2.masks is None
    assert float(ctx3.losses['loss_x']) == 3.0 and float(ctx2.losses['loss_x']) == 1.0
    with pytest.raises(TypeError):
        ctx3.losses['loss_y'] = torch.tensor(0.0)


# ---------------------------------------------------------------------- block range
@pytest.mark.parametrize('merge_mode', ['none', 'pyra'])
def test_block_ranges_compose_to_the_whole_forward(merge_mode):
    model = _vit(out_type='featmap', out_indices=(0, 2, 3), merge_mode=merge_mode,
                 merge_schedule=[3, 2, 2, 1] if merge_mode == 'pyra' else None).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        whole = model(x)
        tokens, ctx = model.embed(x)
        tokens, ctx, first = model.forward_blocks(tokens, ctx, 0, 2)
        _, _, second = model.forward_blocks(tokens, ctx, 2, 4)
    assert sorted(first) == [0] and sorted(second) == [2, 3]
    for got, want in zip([first[0], second[2], second[3]], whole):
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match='outside'):
        model.forward_blocks(tokens, ctx, 3, 5)


# --------------------------------------------------------------- parameter roles
def test_parameter_roles_come_from_the_modules():
    model = _gated(merge_mode='pyra', merge_schedule=[3, 2, 0, 0], lora_cfg=dict(rank=2),
                   frozen=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == trainable_when_frozen(model) == new_parameter_names(model)
    kinds = {n.split('.')[2] + '.' + n.split('.')[-2 if 'lora' in n else -1] for n in trainable}
    assert {'mlp_gate.logit', 'adapter.weight', 'adapter.bias'} <= kinds
    assert any('.lora_A.' in n for n in trainable) and any('.pyra_' in n for n in trainable)
    assert not any(n.endswith('qkv.weight') or n.endswith('qkv.bias') for n in trainable)
    # merge layers 2-3 have no PYRA generator (r = 0)
    assert not any(n.startswith(('blocks.2.merger', 'blocks.3.merger')) for n in trainable)


def test_pretrained_checkpoint_loads_strictly_into_a_model_with_new_parts(tmp_path):
    plain = _vit()
    path = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': plain.state_dict()}, path)
    model = _gated(lora_cfg=dict(rank=2),
                   init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()  # strict: the gate/adapter/LoRA tensors may be missing
    assert torch.equal(model.blocks[1].mlp.fc1.weight, plain.blocks[1].mlp.fc1.weight)
    broken = dict(plain.state_dict())
    broken.pop('blocks.1.mlp.fc1.weight')
    torch.save(broken, path)
    with pytest.raises(KeyError, match='blocks.1.mlp.fc1.weight'):
        _gated(init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


# ------------------------------------------------------------- declared interfaces
def test_a_part_must_implement_its_slot_and_declare_what_the_block_needs():
    with pytest.raises(TypeError, match=r"Identity is configured as the 'adapter' part.*"
                                        r"subclass projects\.vit\.interfaces\.Adapter"):
        Block(32, 2, 64, adapter=nn.Identity())
    # a merger needs an attention that provides the matching metric; a conv op does not
    with pytest.raises(ValueError, match='SPViTConv provides no token-matching metric'):
        Block(32, 2, 64, attn_cfg=dict(type='SPViTConv', kernel=3),
              merger=dict(type='TokenMerger', num_merge=2, num_tokens=17))
    # an attention gate needs key masking and packed rows from the attention
    with pytest.raises(ValueError, match='SPViTSkip declares no such ability'):
        Block(32, 2, 64, attn_cfg=dict(type='SPViTSkip'),
              attn_gate=dict(type='DyTDispatcher', skips='attn'))
    # ... which a per-sample gate does not need (it skips whole samples)
    block = Block(32, 2, 64, attn_cfg=dict(type='SPViTSkip'),
                  attn_gate=dict(type='DyTLayerDispatcher'))
    assert block.attn_gate.per_sample and block.attn_gate.mask_name == 'layer'


def test_the_block_records_decisions_and_the_complete_pass_skips_the_gates():
    torch.manual_seed(0)
    block = Block(32, 2, 64, mlp_gate=dict(type='_FixedMaskGate')).eval()
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        _, ctx = block(x, TokenContext(layer=5))
        assert list(ctx.masks) == ['mlp.5'] and ctx.masks['mlp.5'].dtype == torch.bool
        full, ctx = block(x, TokenContext(layer=5, gated=False))
        assert not ctx.masks and not ctx.aux
        after_attn, _ = block.forward_attn(x, TokenContext())
        want = after_attn + block.mlp_branch(after_attn)  # every token through the MLP
    torch.testing.assert_close(full, want, rtol=0, atol=0)


def test_an_option_a_part_does_not_take_is_an_error():
    from projects.vit.interfaces import TokenReducer

    @VIT_LAYERS.register_module(force=True)
    class _NoOptions(TokenReducer):
        def forward(self, x, metric, ctx):
            return x, ctx

    Block(32, 2, 64, merger=dict(type='_NoOptions'))  # the block's own dims are fine
    with pytest.raises(TypeError, match=r"_NoOptions takes no options \['ratio'\]"):
        Block(32, 2, 64, merger=dict(type='_NoOptions', ratio=0.5))
