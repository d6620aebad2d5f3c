"""Write the VTAB-1k leaf configs of the PYRA, SPT and DyT benchmark grids.

PYRA: 19 tasks x {ViT-B/16, ViT-L/16} x {LoRA, ToMe+LoRA low/high, PYRA+LoRA low/high},
each a few lines inheriting ``configs/pyra/vtab1k/_base_/<method>_<backbone>.py`` (whose
LoRA bases name the original IN-21k ``ViT-B_16.npz`` / ``ViT-L_16.npz``).
SPT (thesis Tables 2.1 and 2.3): 19 tasks x {SPT-LoRA 0.4M, SPT-Adapter 0.4M} on ViT-B/16
and {SPT-LoRA 0.43M (0.49 %), SPT-Adapter 0.29M (0.33 %)} on Swin-B, inheriting
``configs/spt/_base_/spt_<backbone>_vtab1k.py``, plus a 0.2M / 0.8M SPT-LoRA budget
sweep on cifar; the ViT-B/16 leaves name the original IN-21k ``ViT-B_16.npz``.
DyT: 19 tasks x DyT (MLP dispatch, r = 0.5, the 0.16M setting) on ViT-B/16, inheriting
``configs/dyt/vtab1k/_base_/dyt-mlp-r0.5_vit-b16_1xb64-100e_vtab1k.py``, plus the
MoE-adapter variant on cifar (the paper's other dispatch variants are not implemented).
The files are committed; ``tests/test_configs`` checks they equal this
script's output, so edit this script (and re-run it) rather than the leaves.
"""
import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the table lives beside the dataset class; read it without importing mmpretrain
sys.path.insert(0, ROOT)

OUT_DIR = osp.join(ROOT, 'configs', 'pyra', 'vtab1k')
SPT_OUT_DIR = osp.join(ROOT, 'configs', 'spt', 'vtab')
DYT_OUT_DIR = osp.join(ROOT, 'configs', 'dyt', 'vtab1k')
# (structured type, backbone, budget): the thesis' budgets per backbone
SPT_GRID = (('lora', 'vit-b16', 400_000), ('adapter', 'vit-b16', 400_000),
            ('lora', 'swin-b', 430_000), ('adapter', 'swin-b', 290_000))
SPT_SWEEP = (('lora', 'vit-b16', 200_000), ('lora', 'vit-b16', 800_000))
SPT_TEMPLATE = """_base_ = ['../_base_/spt_{backbone}_vtab1k.py']
# SPT-{kind_title} (rank 8) with a {budget_m}M trainable-parameter budget in the backbone;
# VTAB-1k {task}: {num_classes} classes; data in data/vtab-1k/{task} (bring your own).
# The first run computes the allocation file (SPTRunner), later runs reuse it.{weights}
task = '{task}'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/{backbone}_{task}_{kind}-r8_{budget_m}m.pth',
        budget={budget},
        structured=dict(type='{kind}', rank=8, dropout=0.1)){init_cfg}),
    head=dict(num_classes={num_classes}))
data_preprocessor = dict(num_classes={num_classes})
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/{task}'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/{task}'))
test_dataloader = val_dataloader
"""
# The weights SPT's code fine-tunes, per backbone (fields of SPT_TEMPLATE); the Swin-B
# base already names SPT's IN-21k Swin-B.
SPT_WEIGHTS = {
    'vit-b16': dict(
        weights=("\n# Weights: Google's original ImageNet-21k ViT-B/16 (ViT-B_16.npz, JAX, read "
                 "directly),\n# as SPT's code uses; README \"Which weights\" for the augreg "
                 "alternative."),
        init_cfg=",\n        init_cfg=dict(checkpoint='checkpoints/ViT-B_16.npz')"),
    'swin-b': dict(weights='', init_cfg=''),
}
METHODS = ('lora', 'tome-lora-low', 'tome-lora-high', 'pyra-lora-low', 'pyra-lora-high')
BACKBONES = ('vit-b16', 'vit-l16')
TEMPLATE = """_base_ = ['./_base_/{method}_{backbone}.py']
# VTAB-1k {task}: {num_classes} classes; data in data/vtab-1k/{task} (bring your own)
task = '{task}'
model = dict(head=dict(num_classes={num_classes}))
data_preprocessor = dict(num_classes={num_classes})
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/{task}'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/{task}'))
test_dataloader = val_dataloader
"""

# DyT leaves: the PYRA leaf body under DyT's base; the MoE variant swaps the adapter
DYT_METHOD = 'dyt-mlp-r0.5'
DYT_TEMPLATE = ("_base_ = ['./_base_/dyt-mlp-r0.5_vit-b16_1xb64-100e_vtab1k.py']\n"
                + TEMPLATE.split('\n', 1)[1])
DYT_MOE_TASKS = ('cifar',)
DYT_MOE_TEMPLATE = """# DyT with the MoE-adapter (4 experts, weights mixed per image) on {task}.
_base_ = ['./{mlp_leaf}']
model = dict(backbone=dict(block_cfg=dict(
    adapter=dict(_delete_=True, type='DyTMoEAdapter', bottleneck=8, num_experts=4,
                 scale=1.0, dropout=0.1))))
"""


def vtab_tasks() -> dict:
    from projects.core.datasets.vtab1k import VTAB1K_GROUPS, VTAB1K_NUM_CLASSES
    return {t: VTAB1K_NUM_CLASSES[t] for group in VTAB1K_GROUPS.values() for t in group}


def leaf_name(method: str, backbone: str, task: str) -> str:
    return f'{method}_{backbone}_1xb32-100e_vtab1k-{task.replace("_", "-")}-224px.py'


def expected_files() -> dict:
    files = {}
    for task, num_classes in vtab_tasks().items():
        for method in METHODS:
            for backbone in BACKBONES:
                files[leaf_name(method, backbone, task)] = TEMPLATE.format(
                    method=method, backbone=backbone, task=task, num_classes=num_classes)
    return files


def spt_leaf_name(kind: str, backbone: str, budget: int, task: str) -> str:
    return (f'spt-{kind}-{budget / 1e6:g}m_{backbone}_1xb64-100e_vtab1k-'
            f'{task.replace("_", "-")}-224px.py')


def expected_spt_files() -> dict:
    files = {}
    tasks = vtab_tasks()
    grid = [(task, *g) for task in tasks for g in SPT_GRID]
    grid += [('cifar', *g) for g in SPT_SWEEP]
    for task, kind, backbone, budget in grid:
        files[spt_leaf_name(kind, backbone, budget, task)] = SPT_TEMPLATE.format(
            kind=kind, kind_title={'lora': 'LoRA', 'adapter': 'Adapter'}[kind],
            backbone=backbone, budget=budget, budget_m=f'{budget / 1e6:g}', task=task,
            num_classes=tasks[task], **SPT_WEIGHTS[backbone])
    return files


def dyt_leaf_name(method: str, task: str) -> str:
    return f'{method}_vit-b16_1xb64-100e_vtab1k-{task.replace("_", "-")}-224px.py'


def expected_dyt_files() -> dict:
    files = {dyt_leaf_name(DYT_METHOD, task): DYT_TEMPLATE.format(task=task,
                                                                 num_classes=num_classes)
             for task, num_classes in vtab_tasks().items()}
    for task in DYT_MOE_TASKS:
        files[dyt_leaf_name('dyt-mlp-moe-r0.5', task)] = DYT_MOE_TEMPLATE.format(
            task=task, mlp_leaf=dyt_leaf_name(DYT_METHOD, task))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--out-dir', default=OUT_DIR, help='PYRA leaves')
    parser.add_argument('--spt-out-dir', default=SPT_OUT_DIR, help='SPT leaves')
    parser.add_argument('--dyt-out-dir', default=DYT_OUT_DIR, help='DyT leaves')
    args = parser.parse_args()
    for out_dir, files in ((args.out_dir, expected_files()),
                           (args.spt_out_dir, expected_spt_files()),
                           (args.dyt_out_dir, expected_dyt_files())):
        os.makedirs(out_dir, exist_ok=True)
        for name, text in files.items():
            with open(osp.join(out_dir, name), 'w') as f:
                f.write(text)
        print(f'wrote {len(files)} configs to {out_dir}')


if __name__ == '__main__':
    main()
