"""Write the ESTA VTAB-1k leaf configs: 19 tasks, each a few lines inheriting
``configs/esta/vtab1k/_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py`` (the task,
its number of classes and its data folder). Edit this script and re-run it rather than
editing the leaves.
"""
import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
OUT_DIR = osp.join(ROOT, 'configs', 'esta', 'vtab1k')
NAME = 'esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k-{slug}-224px.py'
TEMPLATE = """_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k {task}: {num_classes} classes; data in data/vtab-1k/{task} (bring your own)
task = '{task}'
model = dict(head=dict(num_classes={num_classes}))
data_preprocessor = dict(num_classes={num_classes})
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/{task}'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/{task}'))
test_dataloader = val_dataloader
"""


def tasks() -> dict:
    from projects.core.datasets.vtab1k import VTAB1K_GROUPS, VTAB1K_NUM_CLASSES
    return {t: VTAB1K_NUM_CLASSES[t] for group in VTAB1K_GROUPS.values() for t in group}


def render() -> dict:
    return {osp.join(OUT_DIR, NAME.format(slug=t.replace('_', '-'))):
            TEMPLATE.format(task=t, num_classes=n) for t, n in tasks().items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--check', action='store_true',
                   help='exit 1 if a leaf differs from what this script writes')
    args = p.parse_args(argv)
    files = render()
    stale = [f for f, text in files.items()
             if not osp.isfile(f) or open(f).read() != text]
    if args.check:
        print('\n'.join(stale) or 'up to date')
        sys.exit(1 if stale else 0)
    os.makedirs(OUT_DIR, exist_ok=True)
    for path, text in files.items():
        with open(path, 'w') as f:
            f.write(text)
    print(f'wrote {len(files)} configs to {OUT_DIR}')


if __name__ == '__main__':
    main()
