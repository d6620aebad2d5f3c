"""Shared fixtures: tiny ViT configs that run in milliseconds on 2 CPU cores."""
import pytest
import torch

import projects  # noqa: F401  (registers components, applies compat fixes)

TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
