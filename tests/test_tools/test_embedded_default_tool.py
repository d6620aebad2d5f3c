"""The main job's method table and its MLP-token column (tools/run_embedded_default.py)."""
import os.path as osp
import sys

import torch

from projects.pyra import PYRAViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))

import run_embedded_default as job  # noqa: E402

TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def test_every_method_names_an_existing_config_and_the_default_is_the_readme_set():
    for name, rel in job.METHODS.items():
        assert osp.isfile(osp.join(job.CONFIG_DIR, rel)), (name, rel)
    assert job.DEFAULT_METHODS == ['lora', 'tome-lora', 'pyra-lora']
    assert job.parse_args([]).methods == job.DEFAULT_METHODS
    assert job.parse_args(['--methods', 'lora', 'dyt']).methods == ['lora', 'dyt']


def test_mlp_token_rate_counts_patch_tokens_that_ran_the_mlp():
    plain = PYRAViT(arch=TINY, img_size=32, patch_size=8).eval()
    images = torch.randn(3, 3, 32, 32)
    assert job.mlp_token_rate(plain, images) == 1.0
    dyt = PYRAViT(arch=TINY, img_size=32, patch_size=8,
                  block_cfg=dict(mlp_gate=dict(type='DyTDispatcher'))).eval()
    with torch.no_grad():
        for blk, bias in zip(dyt.blocks, (5.0, -5.0)):  # layer 0 all on, layer 1 all off
            blk.mlp_gate.score.weight.zero_()
            blk.mlp_gate.score.bias.fill_(bias)
    assert job.mlp_token_rate(dyt, images) == 0.5
