"""PYRAViT against independent references (timm, mmpretrain, mmseg ViTs) and its
merging / freezing / re-entrancy contracts."""
import pytest
import torch

from projects.pyra import PYRAViT


def build(tiny_arch, **kw):
    cfg = dict(arch=tiny_arch, img_size=32, patch_size=8)
    cfg.update(kw)
    model = PYRAViT(**cfg)
    model.init_weights()
    return model.eval()


def test_plain_matches_timm(tiny_arch):
    timm = pytest.importorskip('timm')  # a test dependency; importorskip only guards the import
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, mlp_ratio=2.0,
        qkv_bias=True, num_classes=0, global_pool='token').eval()
    ours = build(tiny_arch, out_type='raw')
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref.forward_features(x), atol=1e-5, rtol=1e-5)
        cls = build(tiny_arch, out_type='cls_token')
        cls.load_state_dict(ref.state_dict())
        torch.testing.assert_close(cls(x)[0], ref(x), atol=1e-5, rtol=1e-5)


def test_loads_mmpretrain_vit_checkpoint(tiny_arch, tmp_path):
    from mmpretrain.models import VisionTransformer
    ref = VisionTransformer(arch=tiny_arch, img_size=32, patch_size=8, out_type='raw',
                            layer_scale_init_value=0.1)
    ref.eval()  # mmpretrain's train() returns None
    for p in ref.parameters():  # make layer scale and biases non-trivial
        torch.nn.init.normal_(p, std=0.2)
    path = tmp_path / 'mmpretrain_vit.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in ref.state_dict().items()}}, path)
    ours = build(tiny_arch, out_type='raw', layer_scale=0.1,
                 init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)


def test_loads_mmseg_vit_checkpoint_with_patch_bias(tmp_path):
    from mmseg.models.backbones import VisionTransformer
    ref = VisionTransformer(img_size=32, patch_size=8, embed_dims=32, num_layers=2,
                            num_heads=2, mlp_ratio=2, patch_bias=True, final_norm=True,
                            out_indices=(0, 1), norm_cfg=dict(type='LN', eps=1e-6))
    ref.eval()  # mmseg's train() returns None
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.2)
    path = tmp_path / 'mmseg_vit.pth'
    torch.save(ref.state_dict(), path)
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
    ours = build(arch, out_type='featmap', out_indices=(0, 1),
                 init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # the patch-embedding bias really was loaded (mmseg's own default would drop it)
    torch.testing.assert_close(ours.patch_embed.proj.bias, ref.patch_embed.projection.bias)


def test_checkpoint_mismatch_is_loud(tiny_arch, tmp_path):
    ref = build(tiny_arch)
    state = ref.state_dict()
    state.pop('blocks.0.norm1.weight')
    state['blocks.0.extra'] = torch.zeros(1)
    path = tmp_path / 'bad.pth'
    torch.save(state, path)
    with pytest.raises(KeyError, match='missing in checkpoint: blocks.0.norm1.weight.*'
                                       'unexpected in checkpoint: blocks.0.extra'):
        build(tiny_arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))


def test_pos_embed_resized_on_load(tiny_arch, tmp_path):
    src = build(tiny_arch, img_size=48)
    path = tmp_path / 'big.pth'
    torch.save(src.state_dict(), path)
    ours = build(tiny_arch, img_size=32, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    assert ours.pos_embed.shape == (1, 17, 32)
    torch.testing.assert_close(ours.pos_embed[:, 0], src.pos_embed[:, 0])


def test_pyra_at_init_equals_tome(tiny_arch):
    tome = build(tiny_arch, merge_mode='tome', merge_schedule=[3, 2, 2, 1], out_type='featmap')
    pyra = build(tiny_arch, merge_mode='pyra', merge_schedule=[3, 2, 2, 1], out_type='featmap')
    missing, unexpected = pyra.load_state_dict(tome.state_dict(), strict=False)
    assert not unexpected and missing and all('pyra_' in k for k in missing)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(tome(x)[0], pyra(x)[0])
        with torch.no_grad():
            pyra.blocks[0].merger.modulation.pyra_weight_d.normal_()
        assert not torch.equal(tome(x)[0], pyra(x)[0])


def test_dense_output_unmerged_to_full_grid(tiny_arch):
    model = build(tiny_arch, img_size=64, merge_mode='tome', merge_schedule=[20, 10, 8, 4],
                  out_type='featmap', out_indices=(0, 1, 3))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 8)] * 3
    # after layers 0..3 merged 42 pairs, 65 - 42 = 23 tokens remain, 22 of them patches:
    # the 64 grid cells hold exactly 22 distinct vectors per image
    last = outs[-1].flatten(2).transpose(1, 2)
    for b in range(2):
        assert torch.unique(last[b], dim=0).shape[0] == 22


def test_other_input_size_follows_documented_rule(tiny_arch):
    model = build(tiny_arch, img_size=32, merge_mode='pyra', merge_schedule=[4, 3, 2, 2],
                  out_type='featmap')
    assert model.runtime_schedule(16) == [4, 3, 2, 2]
    # tokens per layer at build size: 17, 13, 10, 8; at 64 patches each layer merges the
    # same fraction of its incoming tokens: round(4*65/17)=15, round(3*50/13)=12,
    # round(2*38/10)=8, round(2*30/8)=8
    assert model.runtime_schedule(64) == [15, 12, 8, 8]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))[0]
    assert out.shape == (1, 32, 8, 8) and torch.isfinite(out).all()


def test_clear_errors(tiny_arch):
    with pytest.raises(ValueError, match='layer 2 asks to merge r=9'):
        PYRAViT(arch=tiny_arch, img_size=32, patch_size=8, merge_mode='tome',
                merge_schedule=[4, 3, 9, 0])
    with pytest.raises(ValueError, match='not divisible by patch_size 8'):
        PYRAViT(arch=tiny_arch, img_size=36, patch_size=8)
    model = build(tiny_arch)
    with pytest.raises(ValueError, match='image size 30 is not divisible'):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="merge_mode='none'"):
        PYRAViT(arch=tiny_arch, img_size=32, patch_size=8, merge_schedule='low')


def test_frozen_trainable_set_and_gradients(tiny_arch):
    model = build(tiny_arch, merge_mode='pyra', merge_schedule=[3, 2, 0, 1], frozen=True,
                  lora_cfg=dict(rank=2, alpha=2, targets=('q', 'v')), out_type='featmap')
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = set()
    for i in range(4):
        expected |= {f'blocks.{i}.attn.qkv.lora_A.q', f'blocks.{i}.attn.qkv.lora_A.v',
                     f'blocks.{i}.attn.qkv.lora_B.q', f'blocks.{i}.attn.qkv.lora_B.v'}
    for i in (0, 1, 3):
        expected |= {f'blocks.{i}.merger.modulation.{n}' for n in (
            'pyra_weight_r', 'pyra_weight_d', 'pyra_norm.weight', 'pyra_norm.bias')}
    assert trainable == expected
    model.train()
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    with torch.no_grad():  # non-zero B and W_D so every adapter gets a gradient
        for n, p in model.named_parameters():
            if 'lora_B' in n or 'pyra_weight_d' in n:
                p.normal_(std=0.1)
    model(torch.randn(2, 3, 32, 32))[0].pow(2).sum().backward()
    for n, p in model.named_parameters():
        if n in expected:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_activation_checkpointing_and_interleaved_forwards(tiny_arch):
    kw = dict(merge_mode='pyra', merge_schedule=[3, 2, 2, 1], out_type='featmap',
              drop_path_rate=0.0)
    plain = build(tiny_arch, **kw).train()
    cp = build(tiny_arch, with_cp=True, **kw).train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    plain(x)[0].sum().backward()
    cp(x)[0].sum().backward()
    for (n, a), (_, b) in zip(plain.named_parameters(), cp.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5, msg=n)
    # two inputs of different sizes interleaved give the same as run alone
    plain.eval()
    small, big = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a1 = plain(small)[0]
        plain(big)
        a2 = plain(small)[0]
    assert torch.equal(a1, a2)


def test_avg_featmap_is_size_weighted_mean(tiny_arch):
    plain = build(tiny_arch, out_type='raw')
    merged = build(tiny_arch, out_type='avg_featmap', merge_mode='tome',
                   merge_schedule=[3, 2, 2, 1])
    raw_merged = build(tiny_arch, out_type='raw', merge_mode='tome', merge_schedule=[3, 2, 2, 1])
    raw_merged.load_state_dict(plain.state_dict())
    merged.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = merged.fc_norm(raw_merged(x)[0][:, 1:].mean(1))  # mean over unmerged grid
        torch.testing.assert_close(merged(x)[0], want, atol=1e-5, rtol=1e-5)


def test_no_class_token_dense_merging(tiny_arch, tmp_path):
    model = build(tiny_arch, img_size=32, with_cls_token=False, out_type='featmap',
                  merge_mode='pyra', merge_schedule=[4, 3, 2, 1], out_indices=(1, 3))
    assert model.cls_token is None and model.pos_embed.shape == (1, 17, 32)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 4)] * 2
    # 16 patches - 10 merged = 6 groups, none of them protected
    assert torch.unique(outs[1][0].flatten(1).t(), dim=0).shape[0] == 6
    # a checkpoint with a class token loads; the unused token is reported, not an error
    path = tmp_path / 'with_cls.pth'
    torch.save(build(tiny_arch).state_dict(), path)
    build(tiny_arch, with_cls_token=False, out_type='featmap',
          init_cfg=dict(type='Pretrained', checkpoint=str(path)))


def test_loads_hf_dinov2_checkpoint(tmp_path):
    """HF ``Dinov2Model`` names (transformers 4.x) written out by hand from a timm model,
    q/k/v split in HF's order; loading them must reproduce timm's output."""
    timm = pytest.importorskip('timm')  # a test dependency
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
        init_values=0.5, num_classes=0).eval()
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.2)
    t = ref.state_dict()
    hf = {'embeddings.cls_token': t['cls_token'],
          'embeddings.mask_token': torch.zeros(1, 32),
          'embeddings.position_embeddings': t['pos_embed'],
          'embeddings.patch_embeddings.projection.weight': t['patch_embed.proj.weight'],
          'embeddings.patch_embeddings.projection.bias': t['patch_embed.proj.bias'],
          'layernorm.weight': t['norm.weight'], 'layernorm.bias': t['norm.bias']}
    for i in range(2):
        src, dst = f'blocks.{i}.', f'encoder.layer.{i}.'
        for kind in ('weight', 'bias'):
            q, k, v = t[src + f'attn.qkv.{kind}'].chunk(3)
            hf[dst + f'attention.attention.query.{kind}'] = q
            hf[dst + f'attention.attention.key.{kind}'] = k
            hf[dst + f'attention.attention.value.{kind}'] = v
            hf[dst + f'attention.output.dense.{kind}'] = t[src + f'attn.proj.{kind}']
            hf[dst + f'norm1.{kind}'] = t[src + f'norm1.{kind}']
            hf[dst + f'norm2.{kind}'] = t[src + f'norm2.{kind}']
            hf[dst + f'mlp.fc1.{kind}'] = t[src + f'mlp.fc1.{kind}']
            hf[dst + f'mlp.fc2.{kind}'] = t[src + f'mlp.fc2.{kind}']
        hf[dst + 'layer_scale1.lambda1'] = t[src + 'ls1.gamma']
        hf[dst + 'layer_scale2.lambda1'] = t[src + 'ls2.gamma']
    path = tmp_path / 'hf_dinov2.pth'
    torch.save({f'dinov2.{k}': v for k, v in hf.items()}, path)
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
    ours = build(arch, out_type='raw', layer_scale=0.5,
                 init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref.forward_features(x), atol=1e-5, rtol=1e-5)
