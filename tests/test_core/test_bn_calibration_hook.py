"""FreshBNCalibrationHook: a compact SPViT model's fresh conv batch norms get the
training data's statistics before anything reads the model in eval mode."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from projects.core.engine.hooks import FreshBNCalibrationHook
from projects.core.engine.hooks.bn_calibration_hook import (calibrate_batch_norms,
                                                            fresh_batch_norms)
from projects.spvit import SPViTArch

from ..test_spvit.common import IMG, compact, jitter


class Wrapper(nn.Module):
    """What the hook needs of a classifier: a data preprocessor and extract_feat."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.drop = nn.Dropout(0.5)

    def data_preprocessor(self, data, training):
        return dict(inputs=data)

    def extract_feat(self, x):
        return self.drop(self.backbone(x)[-1])


def tiny_compact() -> Wrapper:
    torch.manual_seed(0)
    arch = SPViTArch(ops=['conv3x3', 'msa', 'conv1x1', 'skip'], ffn=[64, 32, 64, 16],
                     embed_dims=32, num_heads=4, mlp_hidden=64)
    return Wrapper(jitter(compact(arch, out_type='featmap')))


def test_calibrated_eval_equals_training_mode_on_the_calibration_batch():
    model = tiny_compact()
    norms = fresh_batch_norms(model)
    assert len(norms) == 2   # the two conv ops' BN; the ViT's layer norms are not BN
    x = torch.randn(16, 3, *IMG) * 2 + 1
    model.eval()
    with torch.no_grad():
        fresh_eval = model.extract_feat(x)
        for m in norms:
            m.train()
        train_mode = model.extract_feat(x)   # what a training step normalises with
    assert not torch.allclose(fresh_eval, train_mode, atol=1e-2)  # the bug this fixes
    rng = torch.get_rng_state()
    seen = calibrate_batch_norms(model, norms, [x], max_images=16)
    assert seen == 16 and torch.equal(torch.get_rng_state(), rng)
    assert all(m.momentum == 0.1 and not m.training for m in norms) and not model.training
    # one batch: running mean = its mean, running var = its unbiased variance; training
    # normalises with the biased one, (n - 1) / n of it (n = images x positions)
    n = 16 * (IMG[0] // 8) * (IMG[1] // 8)
    with torch.no_grad():
        for m in norms:
            m.running_var.mul_((n - 1) / n)
        calibrated = model.extract_feat(x)
    torch.testing.assert_close(calibrated, train_mode, rtol=1e-4, atol=1e-4)
    assert fresh_batch_norms(model) == []


def test_running_statistics_are_the_average_of_the_batch_statistics():
    model = tiny_compact()
    norms = fresh_batch_norms(model)
    batches = [torch.randn(4, 3, *IMG) * s for s in (1.0, 3.0, 0.5)]
    inputs = []   # what the first fresh BN reads, batch by batch, in training mode
    handle = norms[0].register_forward_hook(lambda m, a, o: inputs.append(a[0].detach()))
    calibrate_batch_norms(model, norms, batches, max_images=8)   # stops after 2 batches
    handle.remove()
    assert len(inputs) == 2
    means = torch.stack([t.mean((0, 2, 3)) for t in inputs])
    var = torch.stack([t.transpose(0, 1).flatten(1).var(1, unbiased=True) for t in inputs])
    torch.testing.assert_close(norms[0].running_mean, means.mean(0))
    torch.testing.assert_close(norms[0].running_var, var.mean(0))
    assert int(norms[0].num_batches_tracked) == 2


def test_hook_skips_resumed_runs_and_models_without_fresh_norms(monkeypatch):
    model = tiny_compact()
    loader = [torch.randn(4, 3, *IMG)]
    monkeypatch.setattr('projects.core.engine.hooks.bn_calibration_hook.split_loader',
                        lambda cfg, split, batch_size: loader)
    logs = []
    runner = SimpleNamespace(iter=5, model=model, cfg=None,
                             logger=SimpleNamespace(info=logs.append))
    FreshBNCalibrationHook().before_train(runner)   # resumed: nothing
    assert len(fresh_batch_norms(model)) == 2 and logs == []
    runner.iter = 0
    FreshBNCalibrationHook().before_train(runner)
    assert fresh_batch_norms(model) == [] and 'of 2 fresh batch norms from 4' in logs[0]
    FreshBNCalibrationHook().before_train(runner)   # nothing fresh left: no second pass
    assert len(logs) == 1
    with pytest.raises(ValueError, match='max_images'):
        FreshBNCalibrationHook(max_images=0)
