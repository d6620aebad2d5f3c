"""Write the seeded input files of the analysis-tool snapshots (run once, from the
repository root): a DyT checkpoint, an ESTA supernet checkpoint and an SPT allocation,
all of tiny models with fixed seeds, so the snapshot commands need no training.

    python tests/data/analysis_snapshots/make_inputs.py
"""
import os
import os.path as osp
import sys

import torch

ROOT = os.getcwd()
sys.path.insert(0, ROOT)
HERE = osp.dirname(osp.abspath(__file__))

import projects  # noqa: E402,F401
from mmengine.config import Config  # noqa: E402

from projects.core.engine.model_builder import build_model_from_cfg  # noqa: E402


def _save(cfg_path: str, out: str, seed: int) -> None:
    cfg = Config.fromfile(cfg_path)
    for anchor in cfg.model.backbone.get('anchors', []):
        anchor.pop('init_cfg', None)
    torch.manual_seed(seed)
    model = build_model_from_cfg(cfg)
    with torch.no_grad():  # non-zero biases, so dispatcher decisions depend on the seed
        for name, p in model.named_parameters():
            if name.endswith('bias'):
                p.normal_(std=0.1)
    torch.save({'state_dict': model.state_dict()}, out)


def _allocation(out: str) -> None:
    from projects.pyra import PYRAViT
    from projects.spt.allocation import allocate
    from projects.spt.cache import make_key, save_allocation
    from projects.spt.units import vit_units
    plain = PYRAViT(arch=dict(embed_dims=32, num_layers=3, num_heads=2,
                              feedforward_channels=64), img_size=32, patch_size=8)
    units = vit_units(plain)
    gen = torch.Generator().manual_seed(0)
    scores = {n: torch.rand(u.shape, generator=gen) for n, u in units.items()}
    alloc = allocate(scores, units, 600, structured='lora', rank=2)
    key, info = make_key(dict(snapshot='tiny_vit', budget=600))
    alloc.update(key=key, key_info=info)
    save_allocation(out, alloc)


if __name__ == '__main__':
    _save(osp.join(HERE, 'configs', 'tiny_dyt.py'), osp.join(HERE, 'tiny_dyt.pth'), 0)
    _save(osp.join(ROOT, 'tests', 'test_esta', 'configs', 'esta_tiny_28px.py'),
          osp.join(HERE, 'tiny_esta.pth'), 0)
    _allocation(osp.join(HERE, 'tiny_spt_allocation.pth'))
    print('wrote', *sorted(f for f in os.listdir(HERE) if f.endswith('.pth')))
