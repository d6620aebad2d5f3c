"""DyT's executed-FLOPs count, its controlled-rate calibration and its configs."""
import os.path as osp

import torch
from mmengine.config import Config
from torch import nn

from projects.core.engine.model_builder import build_model_from_cfg
from projects.dyt.calibrate import calibrate_rate
from projects.pyra import PYRAViT
from projects.vit.cost import executed_macs

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)


def _hooked_macs(model: PYRAViT, images: torch.Tensor) -> float:
    """Independent count of what ran: every nn.Linear call's rows x in x out, recorded by
    hooks during the real (packed) forward, plus patch embedding and attention."""
    total = [0]

    def hook(module, args, out):
        total[0] += args[0].numel() // module.in_features * module.in_features * \
            module.out_features
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    bsz, (h, w), p, d = images.shape[0], images.shape[-2:], model.patch_size, model.embed_dims
    n = (h // p) * (w // p) + 1
    patch = (h // p) * (w // p) * d * 3 * p * p
    attention = model.num_layers * 2 * n * n * d
    return total[0] / bsz + patch + attention


def test_executed_macs_count_what_the_packed_forward_ran():
    model = PYRAViT(arch=TINY, img_size=32, patch_size=8, block_cfg=dict(
        mlp_gate=dict(type='DyTDispatcher'), adapter=dict(type='DyTAdapter', bottleneck=4)))
    images = torch.randn(5, 3, 32, 32)
    calibrate_rate(model, images, 0.3)
    got = executed_macs(model, images)
    # the dispatcher's count is an upper bound by D per layer (the class token is not scored)
    assert 0 <= got - _hooked_macs(model, images) <= 3 * 32
    _, ctx = model.eval().forward_with_context(images)
    rates = [ctx.masks[f'mlp.{i}'][:, 1:].float().mean().item() for i in range(3)]
    assert all(abs(r - 0.3) <= 1 / 16 + 1e-6 for r in rates), rates  # 16 patch tokens
    assert executed_macs(model, images) == got  # eval masks are deterministic


def test_vtab_cifar_config_has_the_official_0_16m_parameters_and_recipe():
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/dyt/vtab1k/dyt-mlp-r0.5_vit-b16_1xb64-100e_vtab1k-cifar-224px.py'))
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.data_preprocessor.mean == [127.5] * 3 and cfg.data_preprocessor.std == [127.5] * 3
    assert [s.eta_min for s in cfg.param_scheduler[1:]] == [1e-5]
    assert all(s.convert_to_iter_based for s in cfg.param_scheduler)
    cfg.model.backbone.pop('init_cfg')
    model = build_model_from_cfg(cfg)
    trainable = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    # adapter d = 8 + dispatcher on 12 ViT-B blocks: the official code's count (0.16M)
    assert trainable == 165_996


def test_cifar_dispatch_variant_configs_build_with_the_same_budget_and_place_their_gate():
    """The four dispatch variants for cifar: same adapter + one Linear(D, 1) per block
    (165,996 trainable), each gate in its slot, and a forward in eval that records the
    variant's mask."""
    names = {'mlp': 'mlp', 'attn': 'attn', 'attn-mlp': 'block', 'layer': 'layer'}
    for variant, mask_name in names.items():
        folder = 'vtab1k' if variant == 'mlp' else 'variants'
        cfg = Config.fromfile(osp.join(ROOT, f'configs/dyt/{folder}/dyt-{variant}-r0.5_'
                                       'vit-b16_1xb64-100e_vtab1k-cifar-224px.py'))
        cfg.model.backbone.pop('init_cfg')
        cfg.model.backbone.arch = dict(embed_dims=768, num_layers=2, num_heads=12,
                                       feedforward_channels=3072)  # budget per block
        model = build_model_from_cfg(cfg).eval()
        trainable = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
        assert trainable == 165_996 // 12 * 2, variant
        _, ctx = model.backbone.forward_with_context(torch.randn(2, 3, 224, 224))
        assert sorted(ctx.masks) == [f'{mask_name}.0', f'{mask_name}.1'], variant
