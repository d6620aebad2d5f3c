"""Our short-budget DyT recipe and the main job's DyT columns: the dispatcher's bias
init, the rate-target annealing hook, eval calibration to the training rate (function
and hook) and ``dyt_report``, each against a brute-force reference."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import CheckpointHook
from mmengine.registry import DefaultScope
from mmengine.runner.priority import get_priority
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from projects.dyt import DyTCalibrateHook, DyTRateScheduleHook, TokenRateLoss
from projects.dyt.calibrate import calibrate, calibrate_to_training
from projects.dyt.dispatcher import TokenDispatcher
from projects.dyt.report import dyt_report
from projects.pyra import PYRAViT

TINY = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)


def _gate(bias_init=0.0):
    return dict(mlp_gate=dict(type='DyTDispatcher', bias_init=bias_init),
                adapter=dict(type='DyTAdapter', bottleneck=4))


def _vit(bias_init=0.0):
    return PYRAViT(arch=TINY, img_size=32, patch_size=8, block_cfg=_gate(bias_init),
                   aux_losses=[dict(type='TokenRateLoss', target=0.5)])


def _classifier(bias_init=0.0):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='DyTImageClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=4),
            backbone=dict(type='PYRAViT', arch=TINY, img_size=32, patch_size=8,
                          block_cfg=_gate(bias_init), frozen=True,
                          aux_losses=[dict(type='TokenRateLoss', target=0.4)]),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=32)))


def _perturb(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))


# ------------------------------------------------------------------ bias init
def test_bias_init_sets_the_training_rate_to_its_sigmoid_and_eval_to_all_on():
    gate = TokenDispatcher(16, bias_init=3.0)
    assert gate.score.bias.item() == 3.0
    with torch.no_grad():
        gate.score.weight.zero_()
    torch.manual_seed(0)
    x = torch.randn(64, 1 + 256, 16)
    ctx = _vit().embed(torch.randn(1, 3, 32, 32))[1]
    rate = gate.train()(x, ctx)[0].keep[:, 1:].mean().item()
    # Bernoulli(sigma(3)) over 16384 tokens: std 0.0017
    assert abs(rate - 1 / (1 + math.exp(-3.0))) < 0.01
    assert bool(gate.eval()(x, ctx)[0].keep.all())
    with pytest.raises(ValueError, match='bias_init'):
        TokenDispatcher(16, bias_init=float('nan'))


# ------------------------------------------------------------------ annealing hook
def _runner(model, it, max_iters):
    return SimpleNamespace(model=model, iter=it, max_iters=max_iters)


def test_rate_schedule_hook_anneals_from_start_to_r_then_holds_and_restores_r():
    model = SimpleNamespace(backbone=SimpleNamespace(aux_losses=[TokenRateLoss(0.5)]))
    hook = DyTRateScheduleHook(start=1.0, fraction=0.5)
    hook.before_train(_runner(model, 0, 100))
    term = model.backbone.aux_losses[0]
    got = []
    for it in range(100):
        hook.before_train_iter(_runner(model, it, 100), it)
        got.append(term.target)
    assert got[0] == 1.0
    assert got[25] == pytest.approx(0.75)  # half-way through the 50 annealing steps
    assert all(v == pytest.approx(0.5) for v in got[50:])
    # the brute-force cosine: r + (1 - r) (1 + cos(pi t / 50)) / 2
    for it in (5, 17, 42):
        assert got[it] == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi * it / 50)))
    assert all(a >= b for a, b in zip(got, got[1:]))
    term.target = 0.9
    hook.after_train(_runner(model, 100, 100))
    assert term.target == 0.5


def test_bias_control_shifts_every_dispatcher_to_the_next_target_in_logit_space():
    model = _classifier(bias_init=3.0)
    hook = DyTRateScheduleHook(start=1.0, fraction=0.5, control_bias=True)
    hook.before_train(_runner(model, 0, 100))
    with torch.no_grad():  # every token's logit is logit(0.9): the rate is 0.9
        for b in model.backbone.blocks:
            b.mlp_gate.score.weight.zero_()
            b.mlp_gate.score.bias.fill_(math.log(0.9 / 0.1))
    before = [b.mlp_gate.score.bias.item() for b in model.backbone.blocks]
    hook.after_train_iter(_runner(model, 24, 100), 24, outputs={'token_rate': 0.9})
    want = 0.4 + 0.3 * (1 + math.cos(math.pi * 25 / 50))  # iteration 25; r = 0.4
    shift = math.log(want / (1 - want)) - math.log(0.9 / 0.1)
    after = [b.mlp_gate.score.bias.item() for b in model.backbone.blocks]
    assert after == pytest.approx([b + shift for b in before], abs=1e-6)
    # so the expected rate sigma(g) of every token is now the target
    assert all(1 / (1 + math.exp(-b)) == pytest.approx(want) for b in after)
    with pytest.raises(KeyError, match='token_rate'):
        hook.after_train_iter(_runner(model, 25, 100), 25, outputs={'loss': 1.0})
    off = DyTRateScheduleHook()
    off.before_train(_runner(model, 0, 100))
    off.after_train_iter(_runner(model, 30, 100), 30, outputs={'token_rate': 0.9})
    assert [b.mlp_gate.score.bias.item() for b in model.backbone.blocks] == after


def test_noise_zero_trains_on_the_eval_mask_with_the_soft_gradient():
    from projects.vit.gumbel import gumbel_sigmoid
    torch.manual_seed(0)
    logits = torch.randn(4096, requires_grad=True)
    mask = gumbel_sigmoid(logits, 5.0, True, noise=0.0)
    assert torch.equal(mask.detach().bool(), gumbel_sigmoid(logits, 5.0, False))
    weights = torch.randn(4096)
    (mask * weights).sum().backward()
    soft = torch.sigmoid(logits.detach() / 5.0)  # d/dg sigma(g / tau), by hand
    assert torch.allclose(logits.grad, weights * soft * (1 - soft) / 5.0, atol=1e-7)
    # a half-scaled noise: P(g + (G1 - G2) / 2 > 0) = sigma(2 g) (logistic noise)
    g = torch.full((200000,), 0.4)
    rate = gumbel_sigmoid(g, 5.0, True, noise=0.5).mean().item()
    assert rate == pytest.approx(1 / (1 + math.exp(-0.8)), abs=0.005)
    with pytest.raises(ValueError, match='noise'):
        gumbel_sigmoid(g, 5.0, True, noise=1.5)


def test_denoise_anneals_every_dispatchers_noise_with_the_rate_target():
    model = _classifier(bias_init=3.0)
    hook = DyTRateScheduleHook(start=1.0, fraction=0.5, denoise=True)
    hook.before_train(_runner(model, 0, 100))
    gates = [b.mlp_gate for b in model.backbone.blocks]
    for it, want in ((0, 1.0), (25, 0.5), (10, 0.5 * (1 + math.cos(math.pi * 10 / 50))),
                     (50, 0.0), (99, 0.0)):
        hook.before_train_iter(_runner(model, it, 100), it)  # from the counter: resumable
        assert [g.noise for g in gates] == pytest.approx([want] * len(gates))
    hook.after_train(_runner(model, 100, 100))
    assert [g.noise for g in gates] == [1.0] * len(gates)
    plain = DyTRateScheduleHook(start=1.0, fraction=0.5)
    plain.before_train(_runner(model, 0, 100))
    plain.before_train_iter(_runner(model, 40, 100), 40)
    assert [g.noise for g in gates] == [1.0] * len(gates)


@pytest.mark.parametrize('noise', [0.0, 0.3, 1.0])
def test_exact_steering_gives_the_batch_the_target_rate_under_its_noise(noise):
    from projects.dyt.hooks import solve_shift
    gen = torch.Generator().manual_seed(1)
    logits = torch.cat([0.05 * torch.randn(3000, generator=gen) + 0.2,  # unpolarised
                        torch.randn(1000, generator=gen) - 4.0])
    shift = solve_shift(logits, 0.5, noise)
    if noise == 0:  # by hand: half of the shifted scores above 0
        assert int(((logits + shift) > 0).sum()) == 2000
    else:  # brute force: sampled masks under this noise
        g = (logits + shift).repeat(200)
        sample = (g + noise * (torch.rand(g.shape, generator=gen).logit()) > 0).float()
        assert sample.mean().item() == pytest.approx(0.5, abs=0.005)


def test_steering_with_denoise_moves_every_bias_by_the_solved_shift():
    from projects.dyt.hooks import solve_shift
    model = _classifier(bias_init=3.0)
    hook = DyTRateScheduleHook(start=1.0, fraction=0.5, control_bias=True, denoise=True)
    hook.before_train(_runner(model, 0, 100))
    model.train()
    hook.before_train_iter(_runner(model, 60, 100), 60)  # noise 0, target r = 0.4
    torch.manual_seed(0)
    images = torch.randn(6, 3, 32, 32)
    model.backbone(images)
    recorded = torch.cat(hook.logits)
    before = [b.mlp_gate.score.bias.item() for b in model.backbone.blocks]
    hook.after_train_iter(_runner(model, 60, 100), 60, outputs={})
    shift = solve_shift(recorded, 0.4, 0.0)
    after = [b.mlp_gate.score.bias.item() for b in model.backbone.blocks]
    assert after == pytest.approx([b + shift for b in before], abs=1e-5)
    # layer 0 sees the same inputs again: its scores moved by exactly the shift
    hook.before_train_iter(_runner(model, 61, 100), 61)
    assert not hook.logits
    with torch.no_grad():
        model.backbone(images)
    first = recorded[:hook.logits[0].numel()]
    assert torch.allclose(hook.logits[0], first + shift, atol=1e-5)
    hook.after_train(_runner(model, 100, 100))
    assert not hook.handles and not model.backbone.blocks[0].mlp_gate.score._forward_hooks


@pytest.mark.parametrize('bad, match', [
    (lambda: DyTRateScheduleHook(start=0.0), 'start'),
    (lambda: DyTRateScheduleHook(fraction=1.5), 'fraction'),
    (lambda: DyTRateScheduleHook().before_train(_runner(SimpleNamespace(
        backbone=SimpleNamespace(aux_losses=[])), 0, 1)), 'TokenRateLoss'),
    (lambda: DyTCalibrateHook(target='train'), 'training'),
    (lambda: DyTCalibrateHook(num_images=0), 'num_images'),
    (lambda: calibrate(_vit(), torch.randn(2, 3, 32, 32), 'mean'), 'training'),
])
def test_bad_recipe_input_is_refused_clearly(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


# ------------------------------------------------------------------ calibration
def _eval_scores_and_masks(model, images):
    """Per layer: the dispatcher's eval logits and the kept share of patch tokens."""
    logits = {}
    handles = [b.mlp_gate.score.register_forward_hook(
        lambda m, a, out, i=i: logits.__setitem__(i, out.flatten()))
        for i, b in enumerate(model.blocks)]
    with torch.no_grad():
        _, ctx = model.eval().forward_with_context(images)
    for h in handles:
        h.remove()
    kept = {i: m[:, 1:].float().mean().item() for i, m in ctx.masks_by_layer('mlp').items()}
    return logits, kept


def test_calibration_to_training_keeps_each_layers_expected_training_rate():
    model = _vit()
    _perturb(model)
    images = torch.randn(8, 3, 32, 32)
    before = [b.mlp_gate.score.bias.item() for b in model.blocks]
    calibrate_to_training(model, images)
    logits, kept = _eval_scores_and_masks(model, images)
    for i, blk in enumerate(model.blocks):
        # the logits the uncalibrated dispatcher gives the same (calibrated-path) input
        shift = blk.mlp_gate.score.bias.item() - before[i]
        want = torch.sigmoid(logits[i] - shift).mean().item()
        assert abs(kept[i] - want) <= 1 / 128 + 1e-6, (i, kept[i], want)
    assert len({round(v, 2) for v in kept.values()}) > 1  # layers differ: not one rate


# ------------------------------------------------------------------ calibration hook
def test_calibrate_hook_runs_after_the_last_iteration_before_the_checkpoint():
    model = _classifier()
    _perturb(model.backbone)
    images = torch.randn(8, 3, 32, 32)
    hook = DyTCalibrateHook()
    hook.images = lambda runner: images
    runner = SimpleNamespace(model=model.train(), iter=3, max_iters=5,
                             logger=SimpleNamespace(info=lambda msg: None))
    def bias():
        return [b.mlp_gate.score.bias.item() for b in model.backbone.blocks]

    start, state = bias(), copy.deepcopy(model.backbone.state_dict())
    hook.after_train_iter(runner, 3)
    assert bias() == start  # not the last iteration
    runner.iter = 4
    hook.after_train_iter(runner, 4)
    assert bias() != start and model.training  # calibrated, training mode restored
    reference = _vit()
    reference.load_state_dict(state)
    calibrate_to_training(reference, images)
    assert bias() == [b.mlp_gate.score.bias.item() for b in reference.blocks]
    assert get_priority(hook.priority) < get_priority(CheckpointHook.priority)


# ------------------------------------------------------------------ report
def _loader(n=12, batch=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        imgs = [torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8)
                for _ in range(batch)]
        labels = torch.randint(0, 4, (batch,), generator=gen)
        out.append(dict(inputs=imgs,
                        data_samples=[DataSample().set_gt_label(int(y)) for y in labels]))
    return out


def _accuracy(model, loader):
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            labels = torch.cat([s.gt_label for s in data['data_samples']])
            correct += int((model(data['inputs'], mode='tensor').argmax(-1) == labels).sum())
            total += len(labels)
    return 100.0 * correct / total


def test_dyt_report_counts_what_ran_and_scores_the_complete_model():
    model = _classifier()
    _perturb(model)
    loader = _loader()
    got = dyt_report(model, loader)
    # brute force: the eval masks of every batch, pooled over layers and images
    kept = seen = 0
    with torch.no_grad():
        for batch in loader:
            x = model.data_preprocessor(batch, False)['inputs']
            _, ctx = model.eval().backbone.forward_with_context(x)
            for m in ctx.masks_by_layer('mlp').values():
                kept += int(m[:, 1:].sum())
                seen += m[:, 1:].numel()
    assert got['eval_mlp_keep_rate'] == kept / seen
    assert 0 < got['eval_mlp_keep_rate'] < 1
    assert got['train_rate_target'] == 0.4
    assert got['top1'] == _accuracy(model, loader)
    # the complete model == the same model with every dispatcher forced all-on
    forced = _classifier()
    forced.load_state_dict(model.state_dict())
    with torch.no_grad():
        for b in forced.backbone.blocks:
            b.mlp_gate.score.weight.zero_()
            b.mlp_gate.score.bias.fill_(2.0)
    assert got['complete_top1'] == _accuracy(forced, loader)
    forced_report = dyt_report(forced, loader)
    assert forced_report['eval_mlp_keep_rate'] == 1.0
    assert forced_report['train_rate_expected'] == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert forced_report['top1'] == forced_report['complete_top1']
    images = model.data_preprocessor(loader[0], False)['inputs']
    only_images = dyt_report(model, images)
    assert 'top1' not in only_images and 0 <= only_images['eval_mlp_keep_rate'] <= 1


def test_dyt_report_refuses_a_model_without_mlp_dispatch():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        plain = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='PYRAViT', arch=TINY, img_size=32,
                                                  patch_size=8),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=32)))
    with pytest.raises(ValueError, match='DyTDispatcher'):
        dyt_report(plain, torch.randn(2, 3, 32, 32))
