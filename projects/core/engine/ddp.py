"""The model inside a DDP (or other mmengine) wrapper: hooks and tools read and set the
real model's attributes, never the wrapper's."""
from mmengine.model import is_model_wrapper
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model
