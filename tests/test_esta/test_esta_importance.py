"""ESTA's importance score: Q is SNIP of the sampled stitch's own loss (the teacher's
backward kept apart, checked against autograd of the stitch's loss alone, with and
without gradient accumulation), the bias-corrected, level-normalised moving average
(brute force), the hook reading Q from train_step's outputs, and the 'val' selection
(brute-force accuracy per stitch, argmax per FLOPs interval)."""
import json
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from projects.core.engine.model_builder import build_model_from_cfg
from projects.esta.classifier import Q_KEY
from projects.esta.hooks import DEPLOY_FILE, ESTASamplingHook, stitch_accuracies
from projects.esta.sampler import StitchSampler

HERE = osp.dirname(osp.abspath(__file__))
CFG = osp.join(HERE, 'configs', 'esta_tiny_28px.py')


def tiny_model(**model_options):
    cfg = Config.fromfile(CFG)
    cfg.model.update(model_options)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = build_model_from_cfg(cfg)
    model.init_weights()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero LoRA B, stitch biases: SNIP reads theta * grad
        for name, p in model.named_parameters():
            if 'lora_B' in name or 'stitch_bias' in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()  # no dropout: the hand computation sees the same forward


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, 28, 28), generator=g, dtype=torch.uint8)
              for _ in range(n)]
    labels = torch.randint(0, 10, (n,), generator=g)
    return dict(inputs=images, data_samples=[DataSample().set_gt_label(int(y)) for y in labels])


def own_snip(model, data, stitch):
    """Q by hand: autograd of the stitch's own loss (no teacher term) alone."""
    model.backbone.set_stitch(stitch)
    data = model.data_preprocessor(data, True)
    own, _ = model.split_losses(model.loss(data['inputs'], data['data_samples']))
    loss = sum(v for k, v in own.items() if 'loss' in k)
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return sum(float((p.detach() * g).abs().sum()) for p, g in zip(params, grads)
               if g is not None), \
        params, grads


def total_loss_grads(model, data, stitch, params):
    model.backbone.set_stitch(stitch)
    data = model.data_preprocessor(data, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    return torch.autograd.grad(loss, params, allow_unused=True)


def wrapper(model, lr=0.0, accumulative_counts=1):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    return OptimWrapper(opt, accumulative_counts=accumulative_counts)


def test_stitch_q_is_its_own_snip_and_ignores_the_teacher():
    model = tiny_model()
    stitch = 5  # a real stitch (front anchor 0, end anchor 1)
    data = batch()
    want, params, own_grads = own_snip(model, data, stitch)
    model.zero_grad(set_to_none=True)
    model.backbone.set_stitch(stitch)
    ow = wrapper(model)
    out = model.train_step(batch(), ow)
    assert ow._inner_count == 1  # two backward passes, one counted iteration
    assert float(out[Q_KEY]) == pytest.approx(want, rel=1e-6)
    assert any(k.endswith('_teacher') for k in out)
    # the teacher's loss scaled by 10: the same Q, exactly (its backward comes later)
    loss = model.loss

    def louder_teacher(*args, **kwargs):
        return {k: v * 10 if k.endswith('_teacher') else v
                for k, v in loss(*args, **kwargs).items()}

    model.loss = louder_teacher
    model.backbone.set_stitch(stitch)
    again = model.train_step(batch(), wrapper(model))
    assert float(again[Q_KEY]) == float(out[Q_KEY])
    del model.loss
    # before the fix Q was read from one backward of the whole loss: different
    whole = total_loss_grads(model, data, stitch, params)
    old = sum(float((p.detach() * g).abs().sum()) for p, g in zip(params, whole)
              if g is not None)
    assert abs(old - want) > 1e-3 * want
    # parameters the stitch does not run get no gradient from its loss
    used = {id(p) for p, g in zip(params, own_grads) if g is not None}
    unused_anchor0_block = model.backbone.anchors[0].blocks[3].attn.qkv.lora_B['q']
    assert id(unused_anchor0_block) not in used  # stitch 5 leaves Ti block 3 out


def test_q_with_gradient_accumulation_subtracts_earlier_gradients():
    model = tiny_model()
    ow = wrapper(model, accumulative_counts=2)
    first, second = batch(seed=1), batch(seed=2)
    want1, params, _ = own_snip(model, first, 5)
    want2, _, _ = own_snip(model, second, 9)
    g1 = total_loss_grads(model, first, 5, params)
    model.zero_grad(set_to_none=True)
    model.backbone.set_stitch(5)
    out1 = model.train_step(first, ow)
    assert float(out1[Q_KEY]) == pytest.approx(want1, rel=1e-6)  # accumulation undone
    # no step yet: the grads are the whole first loss's, scaled by 1 / 2
    for p, g in zip(params, g1):
        if g is not None:
            assert torch.allclose(p.grad, g / 2, atol=1e-7)
    model.backbone.set_stitch(9)
    out2 = model.train_step(second, ow)
    assert float(out2[Q_KEY]) == pytest.approx(want2, rel=1e-5)
    assert ow._inner_count == 2
    assert all(p.grad is None for p in params)  # stepped and cleared after 2


def test_teacher_sampled_is_one_loss():
    model = tiny_model()
    teacher = model.backbone.teacher_stitch
    want, _, _ = own_snip(model, batch(), teacher)
    model.zero_grad(set_to_none=True)
    model.backbone.set_stitch(teacher)
    out = model.train_step(batch(), wrapper(model))
    assert not any(k.endswith('_teacher') or k == 'loss_distill' for k in out)
    assert float(out[Q_KEY]) == pytest.approx(want, rel=1e-6)


def brute_force_scores(readings, num, m, lm):
    """Scores by the explicit weighted sums: q_t / level_t with level_t the weighted
    mean of all readings so far (weights lm^(t-i)), then per stitch the weighted mean
    of its normalised readings (weights m^(n-1-r))."""
    normed = []
    for t, (_, q) in enumerate(readings):
        w = [lm ** (t - i) for i in range(t + 1)]
        level = sum(wi * readings[i][1] for i, wi in enumerate(w)) / sum(w)
        normed.append(q / level)
    scores = np.zeros(num)
    for s in range(num):
        mine = [v for (st, _), v in zip(readings, normed) if st == s]
        if mine:
            n = len(mine)
            w = [m ** (n - 1 - r) for r in range(n)]
            scores[s] = sum(wi * v for wi, v in zip(w, mine)) / sum(w)
    return scores


def test_bias_corrected_normalised_score_equals_brute_force():
    rng = np.random.default_rng(0)
    readings = [(int(rng.integers(4)), float(rng.uniform(0.1, 1) * (1 + t)))
                for t in range(30)]  # Q grows with time, as LoRA B does
    sampler = StitchSampler([1, 2, 3, 4], num_intervals=2, momentum=0.9,
                            bias_correction=True, normalise='running_mean',
                            level_momentum=0.8)
    for s, q in readings:
        sampler.update(s, q)
    np.testing.assert_allclose(sampler.scores, brute_force_scores(readings, 4, 0.9, 0.8),
                               rtol=1e-12)
    # bias correction alone: Adam's EMA_n / (1 - m^n) from a zero start
    plain = StitchSampler([1, 2], momentum=0.9, bias_correction=True)
    ema = 0.0
    for n, q in enumerate([5.0, 1.0, 2.0], start=1):
        plain.update(0, q)
        ema = 0.9 * ema + 0.1 * q
        assert plain.scores[0] == pytest.approx(ema / (1 - 0.9 ** n), rel=1e-12)
    # the first of 7 readings keeps 10 % of the weight, not 53 % (thesis' update rule)
    assert 0.9 ** 6 / sum(0.9 ** i for i in range(7)) == pytest.approx(0.1016, abs=1e-3)
    # the state round-trips
    copy = StitchSampler([1, 2, 3, 4], num_intervals=2, bias_correction=True,
                         normalise='running_mean', level_momentum=0.8)
    copy.load_state_dict(sampler.state_dict())
    sampler.update(2, 3.0)
    copy.update(2, 3.0)
    assert copy.scores.tolist() == sampler.scores.tolist()
    # readings while the level is 0 (Q = 0 at init) are counted, not scored
    early = StitchSampler([1, 2], bias_correction=True, normalise='running_mean')
    assert early.update(0, 0.0) is None and early.counts[0] == 1 and early.scores[0] == 0
    assert early.update(1, 2.0) == 1.0 and early.scores[1] == 1.0
    # the level after 2, 1 (the leading 0 skipped): (0.9 * 2 + 1) / (0.9 + 1)
    assert early.update(0, 1.0) == pytest.approx(1.9 / 2.8)
    assert early.update(1, float('inf')) is None and early.scores[1] == 1.0  # AMP overflow
    with pytest.raises(ValueError, match='normalise must be one of'):
        StitchSampler([1, 2], normalise='max')


def _hook_with_sampler(**kwargs):
    hook = ESTASamplingHook(**kwargs)
    hook.sampler = StitchSampler([1.0, 2.0, 3.0], num_intervals=2, bias_correction=True)
    hook._from_outputs = True
    hook.current = 1
    return hook


def test_hook_reads_q_from_train_step_outputs():
    hub = SimpleNamespace(update_scalar=lambda *a: None)
    runner = SimpleNamespace(message_hub=hub)
    hook = _hook_with_sampler(normalise=None)
    hook.after_train_iter(runner, 0, None, {Q_KEY: torch.tensor(2.5), 'loss': torch.tensor(1.)})
    assert hook.sampler.scores[1] == 2.5 and hook.sampler.counts[1] == 1
    with pytest.raises(RuntimeError, match="no 'esta_q'.*ESTADistributedDataParallel"):
        hook.after_train_iter(runner, 1, None, {'loss': torch.tensor(1.0)})
    with pytest.raises(ValueError, match="select must be 'score'"):
        ESTASamplingHook(select='accuracy')


def test_val_selection_picks_the_most_accurate_stitch_per_interval(tmp_path):
    model = tiny_model()
    loader = [batch(5, seed=10), batch(5, seed=11), batch(5, seed=12)]
    cap = 12  # the third batch is cut at 2 images
    acc = stitch_accuracies(model, loader, range(model.backbone.num_stitches), cap)
    # brute force: every image on its own, the first 12 of them
    images, labels = [], []
    for b in loader:
        images += b['inputs']
        labels += [int(d.gt_label) for d in b['data_samples']]
    brute = []
    for s in range(model.backbone.num_stitches):
        right = 0
        for img, y in zip(images[:cap], labels[:cap]):
            x = model.data_preprocessor(dict(inputs=[img], data_samples=None), False)['inputs']
            with torch.no_grad():
                right += int(model.stitch_logits(x, s).argmax(-1).item() == y)
        brute.append(100.0 * right / cap)
    assert acc == brute
    hook = ESTASamplingHook(select='val', val_images=cap, num_intervals=3, val_split=None)
    hook.sampler = hook.build_sampler(model.backbone)
    runner = SimpleNamespace(model=model, val_dataloader=loader, work_dir=str(tmp_path))
    hook.after_train(runner)
    written = json.load(open(tmp_path / DEPLOY_FILE))
    assert written['select'] == 'val' and written['val_accuracy'] == brute
    flops = hook.sampler.flops
    for entry, (_, ids) in zip(written['deploy'], hook.sampler.intervals):
        best = max(ids, key=lambda s: (brute[s], -flops[s]))
        assert entry['stitch'] == best and entry['val_accuracy'] == brute[best]
    # the default: the config's 'val' split through the LP-FT loader (test pipeline)
    from projects.core.engine.hooks.linear_probe_init_hook import split_loader
    cfg = Config.fromfile(CFG)
    hook = ESTASamplingHook(select='val', val_images=cap, num_intervals=3)
    hook.sampler = hook.build_sampler(model.backbone)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook.after_train(SimpleNamespace(model=model, cfg=cfg, work_dir=str(tmp_path)))
        want = stitch_accuracies(model, split_loader(cfg, 'val'),
                                 range(model.backbone.num_stitches), cap)
    assert hook.val_accuracy == want


WORKER = r'''
import os, sys
import torch
import torch.distributed as dist
sys.path.insert(0, os.environ['REPO_ROOT'])
sys.path.insert(0, os.environ['TEST_DIR'])
rank = int(sys.argv[1])
dist.init_process_group('gloo', rank=rank, world_size=2)
from test_esta_importance import batch, tiny_model, total_loss_grads, wrapper
from projects.esta.classifier import ESTADistributedDataParallel, Q_KEY
torch.manual_seed(0)  # the same model on both ranks (DDP would broadcast rank 0's)
model = tiny_model()
params = [p for p in model.parameters() if p.requires_grad]
data = batch(seed=20 + rank)
grads = total_loss_grads(model, data, 5, params)
before = [p.detach().clone() for p in params]
ddp = ESTADistributedDataParallel(module=model)
model.zero_grad(set_to_none=True)
model.backbone.set_stitch(5)
out = ddp.train_step(data, wrapper(model, lr=0.5))
torch.save(dict(before=before, after=[p.detach().clone() for p in params],
                grads=[None if g is None else g.detach() for g in grads],
                q=float(out[Q_KEY])), sys.argv[2] + f'.{rank}')
dist.destroy_process_group()
'''


def test_ddp_wrapper_averages_both_backward_passes_over_ranks(tmp_path, subprocess_tools):
    """Two gloo ranks, one step of ESTADistributedDataParallel: every rank ends with
    p - lr * mean over ranks of its whole loss's gradient (stitch + teacher)."""
    worker = tmp_path / 'worker.py'
    worker.write_text(WORKER)
    out = str(tmp_path / 'rank')
    root = osp.dirname(osp.dirname(HERE))
    env = dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(subprocess_tools.free_port()),
               REPO_ROOT=root, TEST_DIR=HERE)
    procs = [subprocess_tools.start([__import__('sys').executable, str(worker), str(r), out],
                                    root, **env) for r in (0, 1)]
    for proc in procs:
        subprocess_tools.check(subprocess_tools.finish(proc, timeout=300))
    r0, r1 = (torch.load(f'{out}.{r}', weights_only=False) for r in (0, 1))
    assert r0['q'] != r1['q']  # each rank's own stitch loss on its own batch
    moved = 0
    for b, a0, a1, g0, g1 in zip(r0['before'], r0['after'], r1['after'], r0['grads'],
                                 r1['grads']):
        assert torch.equal(a0, a1)
        if g0 is None:
            assert g1 is None and torch.equal(a0, b)
            continue
        assert torch.allclose(a0, b - 0.5 * (g0 + g1) / 2, atol=1e-6)
        moved += 1
    assert moved > 0
