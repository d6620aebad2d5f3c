"""LoRA: folded == unfolded, the export loads into the plain backbone."""
import pytest
import torch

from projects.core.peft.lora import LoRAQKVLinear, fold_lora_state_dict
from projects.pyra import PYRAViT


def test_delta_weight_matches_per_target_formula():
    layer = LoRAQKVLinear(6, 18, rank=2, alpha=4, targets=('q', 'v'))
    with torch.no_grad():
        for p in layer.lora_B.values():
            p.normal_()
    delta = layer.delta_weight()
    want = torch.zeros(18, 6)
    want[0:6] = layer.lora_B['q'] @ layer.lora_A['q'] * 2
    want[12:18] = layer.lora_B['v'] @ layer.lora_A['v'] * 2
    torch.testing.assert_close(delta, want)
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), x @ (layer.weight + want).t() + layer.bias)
    layer.merge()
    torch.testing.assert_close(layer(x), x @ (layer.weight).t() + layer.bias)
    layer.unmerge()
    assert not layer.merged


def test_bad_lora_config():
    with pytest.raises(ValueError, match='subset'):
        LoRAQKVLinear(4, 12, targets=('x',))
    with pytest.raises(ValueError, match='no LoRA layer'):
        fold_lora_state_dict(torch.nn.Linear(2, 2))


@pytest.mark.parametrize('merge_mode', ['none', 'pyra'])
def test_folded_export_loads_into_plain_backbone(tiny_arch, merge_mode):
    kw = dict(arch=tiny_arch, img_size=32, patch_size=8, out_type='featmap',
              merge_mode=merge_mode, merge_schedule=[3, 2, 2, 1] if merge_mode != 'none' else None)
    model = PYRAViT(lora_cfg=dict(rank=2, alpha=2, dropout=0.1), **kw).eval()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        at_init = model(x)[0]
        for n, p in model.named_parameters():
            if 'lora_B' in n:
                p.normal_(std=0.5)
        adapted = model(x)[0]
    assert not torch.allclose(at_init, adapted, atol=1e-4)  # B != 0 changes the output
    folded = model.folded_state_dict()
    assert not any('lora' in k for k in folded)
    plain = PYRAViT(**kw).eval()
    plain.load_state_dict(folded)  # strict: identical key set
    assert not torch.equal(folded['blocks.0.attn.qkv.weight'], base['blocks.0.attn.qkv.weight'])
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], adapted, atol=1e-5, rtol=1e-5)
        assert model.merge_lora() == 4
        torch.testing.assert_close(model(x)[0], adapted, atol=1e-5, rtol=1e-5)
