"""Write the VTAB-1k leaf configs of PYRA's benchmark grid.

19 tasks x {ViT-B/16, ViT-L/16} x {LoRA, ToMe+LoRA low/high, PYRA+LoRA low/high}, each a
few lines inheriting ``configs/pyra/vtab1k/_base_/<method>_<backbone>.py``. The files are
committed; ``tests/test_configs`` checks they equal this script's output, so edit this
script (and re-run it) rather than the leaves.
"""
import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the table lives beside the dataset class; read it without importing mmpretrain
sys.path.insert(0, ROOT)

OUT_DIR = osp.join(ROOT, 'configs', 'pyra', 'vtab1k')
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--out-dir', default=OUT_DIR)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    files = expected_files()
    for name, text in files.items():
        with open(osp.join(args.out_dir, name), 'w') as f:
            f.write(text)
    print(f'wrote {len(files)} configs to {args.out_dir}')


if __name__ == '__main__':
    main()
