"""mmdet's deformable-attention pixel decoder with FASeg's conditional positional
encodings placed where the official code puts them.

The official FASeg pixel decoder computes, for every encoder level, a PEG (depthwise
3x3 conv) of the 1x1-projected backbone feature -- the deformable encoder's own input --
and uses it as the encoder's positional encoding in place of the sine one; the same
encodings (without the level embedding) are then the transformer decoder's key
positions. The 1/4 level, which the encoder does not see, gets a PEG of its own 1x1
projection of the 1/4 backbone feature. Computing the PEG on the encoder's input, not on
its output, is what makes the encoding *conditional on the image before* the encoder
mixes the levels; the decoder keys are the encoder's outputs.

Only the positional encodings change: projections, encoder, FPN, mask features and all
parameter names of mmdet's ``MSDeformAttnPixelDecoder`` are reused, so its weights load.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.layers import MSDeformAttnPixelDecoder
from mmengine.model import ModuleList, xavier_init
from torch import Tensor

from .positional_encoding import ConditionalPositionalEncoding


def grid_reference_points(sizes: Sequence[Tuple[int, int]], batch: int,
                          device: torch.device) -> Tensor:
    """Normalised (x, y) pixel centres of every level, (B, sum HW, L, 2): each query
    samples every level at its own relative position (no padding, valid ratio 1)."""
    points = []
    for h, w in sizes:
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        y, x = torch.meshgrid(ys, xs, indexing='ij')
        points.append(torch.stack((x.flatten(), y.flatten()), -1))
    return torch.cat(points)[None, :, None].expand(batch, -1, len(sizes), -1)


class EncoderPEGPixelDecoder(MSDeformAttnPixelDecoder):
    """``MSDeformAttnPixelDecoder`` whose deformable encoder uses PEG positional
    encodings; ``forward`` also returns the per-level encodings (B, HW, C) of the
    ``num_outs`` output levels, for the transformer decoder's keys.

    Args:
        in_channels: channels of the backbone levels (high to low resolution).
        feat_channels: channels of the encoder and of the encodings.
        norm_cfg: norm of the extra 1x1 projections (as the encoder's input ones).
        **kwargs: the other ``MSDeformAttnPixelDecoder`` arguments.
    """

    def __init__(self, in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 feat_channels: int = 256,
                 norm_cfg: dict = dict(type='GN', num_groups=32), **kwargs) -> None:
        super().__init__(in_channels=in_channels, feat_channels=feat_channels,
                         norm_cfg=norm_cfg, **kwargs)
        fpn_levels = self.num_input_levels - self.num_encoder_levels
        if not self.num_encoder_levels <= self.num_outs <= self.num_encoder_levels + fpn_levels:
            raise ValueError(
                f'num_outs={self.num_outs}: the pixel decoder has {self.num_encoder_levels} '
                f'encoder levels and {fpn_levels} FPN levels; ask for between '
                f'{self.num_encoder_levels} and {self.num_encoder_levels + fpn_levels}.')
        self.pos_encoder = ConditionalPositionalEncoding(feat_channels, self.num_outs)
        # output j >= num_encoder_levels is the FPN level of backbone level
        # num_input_levels - 1 - j; its PEG reads its own projection of that level
        self.extra_pos_projs = ModuleList(
            ConvModule(in_channels[self.num_input_levels - 1 - j], feat_channels, 1,
                       norm_cfg=norm_cfg, act_cfg=None, bias=True)
            for j in range(self.num_encoder_levels, self.num_outs))

    def init_weights(self) -> None:
        super().init_weights()
        for proj in self.extra_pos_projs:
            xavier_init(proj.conv, gain=1, bias=0, distribution='uniform')

    def forward(self, feats: List[Tensor]) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
        """Mask features, the ``num_outs`` multi-scale maps (low to high resolution)
        and their PEG encodings (B, HW, C), without level embeddings."""
        batch = feats[0].shape[0]
        queries, query_pos, key_pos, sizes = [], [], [], []
        for i in range(self.num_encoder_levels):
            projected = self.input_convs[i](feats[self.num_input_levels - 1 - i])
            pos = self.pos_encoder(projected, i)
            key_pos.append(pos)
            query_pos.append(pos + self.level_encoding.weight[i])
            queries.append(projected.flatten(2).transpose(1, 2))
            sizes.append(tuple(projected.shape[-2:]))
        device = feats[0].device
        spatial_shapes = torch.tensor(sizes, dtype=torch.long, device=device)
        counts = [h * w for h, w in sizes]
        level_start_index = spatial_shapes.new_tensor([0] + counts[:-1]).cumsum(0)
        query = torch.cat(queries, 1)
        memory = self.encoder(
            query=query,
            query_pos=torch.cat(query_pos, 1),
            key_padding_mask=query.new_zeros(query.shape[:2], dtype=torch.bool),
            spatial_shapes=spatial_shapes,
            reference_points=grid_reference_points(sizes, batch, device),
            level_start_index=level_start_index,
            valid_ratios=query.new_ones(batch, self.num_encoder_levels, 2))
        outs = [level.transpose(1, 2).reshape(batch, -1, h, w)
                for level, (h, w) in zip(memory.split(counts, 1), sizes)]
        # FPN on the levels the encoder did not see, top-down (mmdet's indexing)
        for i in range(self.num_input_levels - self.num_encoder_levels - 1, -1, -1):
            lateral = self.lateral_convs[i](feats[i])
            top = F.interpolate(outs[-1], size=lateral.shape[-2:], mode='bilinear',
                                align_corners=False)
            outs.append(self.output_convs[i](lateral + top))
        for j, proj in enumerate(self.extra_pos_projs, start=self.num_encoder_levels):
            key_pos.append(self.pos_encoder(proj(feats[self.num_input_levels - 1 - j]), j))
        return self.mask_feature(outs[-1]), outs[:self.num_outs], key_pos
