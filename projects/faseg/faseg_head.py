"""FASeg decode head: Mask2Former plus DFPQ and HRCA (thesis Sec. 5.3).

Everything except the transformer-decoder loop is mmseg's / mmdet's Mask2Former:
pixel decoder (``MSDeformAttnPixelDecoder``), Hungarian matching, point-sampled
losses, the semantic-map conversion in ``loss`` and ``predict``. With
``with_dfpq=False, with_hrca=False`` and the default ``key_pos_type='sine'``,
``attn_mask_threshold=0.5`` the head computes exactly what ``Mask2FormerHead`` does
and loads its checkpoints (tested).
"""
import copy
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import Conv2d
from mmengine.model import ModuleList, caffe2_xavier_init
from mmseg.models.decode_heads import Mask2FormerHead
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from torch import Tensor, nn

from .decoder_layer import FASegDecoderLayer
from .dfpq import DFPQ
from .hrca import SELECTIONS, gather_tokens, select_hr_indices
from .pixel_decoder import EncoderPEGPixelDecoder
from .positional_encoding import ConditionalPositionalEncoding

HRCA = -1  # level code of an HRCA layer in ``layer_levels``
KEY_POS_PLACEMENTS = ('output', 'encoder')
# the pixel decoder the 'encoder' placement replaces (config spellings)
_MMDET_PIXEL_DECODER = ('mmdet.MSDeformAttnPixelDecoder', 'MSDeformAttnPixelDecoder')


@MODELS.register_module()
class FASegHead(Mask2FormerHead):
    """Mask2Former head with dynamic focus-aware positional queries and HRCA.

    Args:
        with_dfpq: positional queries of every block from the previous block's
            cross-attention (Eq. 5.2) instead of the static ``query_embed``.
        with_hrca: add high-resolution cross-attention layers on the 1/4-scale
            pixel-decoder map (Eq. 5.3); the pixel decoder is asked for one more
            output level for it.
        key_pos_type: ``'sine'`` (Mask2Former) or ``'conditional'`` (PEG, the
            official FASeg code) positional encodings of the decoder keys.
        key_pos_placement: where the conditional encodings are computed.
            ``'encoder'`` (official code): PEG of each level's 1x1-projected backbone
            feature, used as the deformable encoder's positional encoding instead of
            the sine one and passed on as the decoder's key positions (the 1/4 HRCA
            level: PEG of its own projection of the 1/4 backbone feature); the pixel
            decoder becomes :class:`EncoderPEGPixelDecoder`. ``'output'`` (this
            head's first version, the default): PEG of each pixel-decoder output level
            (the decoder keys themselves); the encoder keeps mmdet's sine encoding and
            mmdet's pixel decoder is used unchanged. ``'encoder'`` needs
            ``key_pos_type='conditional'`` (refused otherwise).
        attn_mask_threshold: masked attention blocks locations with
            sigmoid(mask) below it; Mask2Former 0.5, the official FASeg code 0.15
            (the thesis does not say), set by the FASeg configs.
        dfpq_init_pool: first-block DFPQ pooling, see :class:`DFPQ`.
        hrca_omega: k = floor(HW_{1/32} / omega) selected low-resolution pixels.
        hrca_selection: ``'window'`` (code) or ``'bilinear'`` (thesis), see
            :mod:`projects.faseg.hrca`.
        hrca_layer_ids: which decoder layers are HRCA layers. Default: every
            (L+1)-th, L = ``num_transformer_feat_level`` (the code's 3 of 13 layers
            at t = 3, 7, 11). ``[num_layers - 1]`` gives the thesis' single fourth
            block after the three cascaded ones.
        **kwargs: mmseg ``Mask2FormerHead`` arguments.
    """

    def __init__(self,
                 with_dfpq: bool = False,
                 with_hrca: bool = False,
                 key_pos_type: str = 'sine',
                 key_pos_placement: str = 'output',
                 attn_mask_threshold: float = 0.5,
                 dfpq_init_pool: str = 'background',
                 hrca_omega: float = 32.,
                 hrca_selection: str = 'window',
                 hrca_layer_ids: Optional[Sequence[int]] = None,
                 **kwargs) -> None:
        if key_pos_type not in ('sine', 'conditional'):
            raise ValueError(f'key_pos_type must be sine or conditional, got {key_pos_type!r}')
        if key_pos_placement not in KEY_POS_PLACEMENTS:
            raise ValueError(f'key_pos_placement must be one of {KEY_POS_PLACEMENTS}, got '
                             f'{key_pos_placement!r}')
        if key_pos_placement == 'encoder' and key_pos_type != 'conditional':
            raise ValueError(
                f"key_pos_placement='encoder' places the conditional (PEG) encodings in the "
                f"deformable encoder, but key_pos_type={key_pos_type!r}. Set "
                "key_pos_type='conditional', or key_pos_placement='output' for sine "
                'encodings (mmdet\'s sine encoder PE and sine decoder keys).')
        if hrca_selection not in SELECTIONS:  # at build time, not at the first forward
            raise ValueError(f'hrca_selection must be one of {SELECTIONS}, got '
                             f'{hrca_selection!r}')
        num_levels = kwargs.get('num_transformer_feat_level', 3)
        kwargs['pixel_decoder'] = copy.deepcopy(kwargs['pixel_decoder'])
        if with_hrca:
            # the extra 1/4 level: the pixel decoder's FPN output
            kwargs['pixel_decoder']['num_outs'] = num_levels + 1
        if key_pos_placement == 'encoder':
            kind = kwargs['pixel_decoder'].get('type')
            if kind not in _MMDET_PIXEL_DECODER + (EncoderPEGPixelDecoder, ):
                raise ValueError(
                    f"key_pos_placement='encoder' replaces mmdet's MSDeformAttnPixelDecoder "
                    f'by EncoderPEGPixelDecoder, but pixel_decoder.type is {kind!r}. Use '
                    "type='mmdet.MSDeformAttnPixelDecoder', or key_pos_placement='output'.")
            kwargs['pixel_decoder']['type'] = EncoderPEGPixelDecoder
        super().__init__(**kwargs)
        self.with_dfpq = with_dfpq
        self.with_hrca = with_hrca
        self.key_pos_type = key_pos_type
        self.key_pos_placement = key_pos_placement
        self.attn_mask_threshold = attn_mask_threshold
        self.hrca_omega = hrca_omega
        self.hrca_selection = hrca_selection

        decoder = self.transformer_decoder
        decoder.layers = ModuleList(
            FASegDecoderLayer(**copy.deepcopy(decoder.layer_cfg))
            for _ in range(decoder.num_layers))
        self.layer_levels = self._plan_layers(num_levels, decoder.num_layers, with_hrca,
                                              hrca_layer_ids)

        feat_channels = kwargs['feat_channels']
        if key_pos_type == 'conditional' and key_pos_placement == 'output':
            self.key_pos_encoder = ConditionalPositionalEncoding(
                self.decoder_embed_dims, num_levels + int(with_hrca))
        if with_dfpq:
            self.dfpq = DFPQ(feat_channels, dfpq_init_pool)
        if with_hrca:
            project = (self.decoder_embed_dims != feat_channels
                       or kwargs.get('enforce_decoder_input_project', False))
            self.hr_input_proj = (Conv2d(feat_channels, self.decoder_embed_dims, 1)
                                  if project else nn.Identity())
            self.hr_level_embed = nn.Embedding(1, feat_channels)
        # set True to keep each layer's cross-attention weights in ``attn_maps``
        self.record_attention = False
        self.attn_maps: List[Tuple[int, Tensor]] = []

    @staticmethod
    def _plan_layers(num_levels: int, num_layers: int, with_hrca: bool,
                     hrca_layer_ids: Optional[Sequence[int]]) -> List[int]:
        """Feature level of each layer (``HRCA`` for HRCA layers); standard layers
        cycle 1/32 -> 1/16 -> 1/8 as in Mask2Former."""
        if not with_hrca:
            hr_ids = set()
        elif hrca_layer_ids is None:
            hr_ids = {t for t in range(num_layers) if t % (num_levels + 1) == num_levels}
        else:
            outside = [t for t in hrca_layer_ids if not -num_layers <= int(t) < num_layers]
            if outside:  # the modulo below would silently pick another layer
                raise ValueError(
                    f'hrca_layer_ids {list(hrca_layer_ids)}: {outside} are not layers of the '
                    f'{num_layers}-layer decoder. Use ids in 0..{num_layers - 1} (or -1 for '
                    'the last), or raise transformer_decoder.num_layers.')
            hr_ids = {int(t) % num_layers for t in hrca_layer_ids}
        levels, n_std = [], 0
        for t in range(num_layers):
            if t in hr_ids:
                if 0 not in levels:
                    raise ValueError(f'HRCA layer {t} needs an earlier 1/32-level layer '
                                     'to select its tokens')
                levels.append(HRCA)
            else:
                levels.append(n_std % num_levels)
                n_std += 1
        if with_hrca and HRCA not in levels:
            raise ValueError('with_hrca=True but no HRCA layer in the decoder')
        return levels

    def init_weights(self) -> None:
        super().init_weights()
        if self.with_hrca and isinstance(self.hr_input_proj, Conv2d):
            caffe2_xavier_init(self.hr_input_proj, bias=0)

    def _key_pos(self, feat: Tensor, level: int) -> Tensor:
        """(B, C, H, W) -> (B, HW, C) positional encodings of one key level."""
        if self.key_pos_type == 'conditional':
            return self.key_pos_encoder(feat, level)
        mask = feat.new_zeros((feat.shape[0], ) + feat.shape[-2:], dtype=torch.bool)
        return self.decoder_positional_encoding(mask).flatten(2).transpose(1, 2)

    def _predict_layer(self, decoder_out: Tensor, mask_feature: Tensor,
                       attn_mask_size: Tuple[int, int]) -> Tuple[Tensor, ...]:
        """Class / mask predictions, the next attention mask, and the mask logits
        resized to ``attn_mask_size`` (the first DFPQ pools with them)."""
        decoder_out = self.transformer_decoder.post_norm(decoder_out)
        cls_pred = self.cls_embed(decoder_out)
        mask_embed = self.mask_embed(decoder_out)
        mask_pred = torch.einsum('bqc,bchw->bqhw', mask_embed, mask_feature)
        small = F.interpolate(mask_pred, attn_mask_size, mode='bilinear',
                              align_corners=False)
        attn_mask = small.flatten(2).unsqueeze(1).repeat((1, self.num_heads, 1, 1))
        attn_mask = (attn_mask.flatten(0, 1).sigmoid() < self.attn_mask_threshold).detach()
        return cls_pred, mask_pred, attn_mask, small

    def _forward_head(self, decoder_out: Tensor, mask_feature: Tensor,
                      attn_mask_target_size: Tuple[int, int]) -> Tuple[Tensor, ...]:
        """mmdet's signature, with the configurable mask threshold."""
        return self._predict_layer(decoder_out, mask_feature, attn_mask_target_size)[:3]

    def _next_size(self, t: int, sizes: List[torch.Size]) -> torch.Size:
        """Grid of the next standard layer after layer ``t`` (its attention mask)."""
        for level in self.layer_levels[t + 1:]:
            if level != HRCA:
                return sizes[level]
        return sizes[0]

    def forward(self, x: List[Tensor], batch_data_samples: Optional[SampleList] = None
                ) -> Tuple[List[Tensor], List[Tensor]]:
        """Per-layer class and mask logits (first from the learnable queries alone);
        the samples are not needed (mmdet's signature)."""
        batch_size = x[0].shape[0]
        num_levels = self.num_transformer_feat_level
        if self.key_pos_placement == 'encoder':  # computed inside the pixel decoder
            mask_features, memories, encoder_pos = self.pixel_decoder(x)
        else:
            mask_features, memories = self.pixel_decoder(x)
        keys, key_pos, sizes = [], [], []
        for i in range(num_levels):
            feat = self.decoder_input_projs[i](memories[i])
            sizes.append(feat.shape[-2:])
            key_pos.append(encoder_pos[i] if self.key_pos_placement == 'encoder'
                           else self._key_pos(feat, i))
            keys.append(feat.flatten(2).transpose(1, 2) + self.level_embed.weight[i])
        if self.with_hrca:
            hr_feat = self.hr_input_proj(memories[num_levels])
            hr_size = hr_feat.shape[-2:]
            hr_pos = (encoder_pos[num_levels] if self.key_pos_placement == 'encoder'
                      else self._key_pos(hr_feat, num_levels))
            hr_keys = hr_feat.flatten(2).transpose(1, 2) + self.hr_level_embed.weight[0]

        query_feat = self.query_feat.weight.unsqueeze(0).repeat((batch_size, 1, 1))
        query_embed = self.query_embed.weight.unsqueeze(0).repeat((batch_size, 1, 1))

        cls_pred, mask_pred, attn_mask, small = self._predict_layer(
            query_feat, mask_features, self._next_size(-1, sizes))
        cls_preds, mask_preds = [cls_pred], [mask_pred]
        query_pos = query_embed
        if self.with_dfpq:
            query_pos = self.dfpq.from_mask(small, key_pos[self.layer_levels[0]],
                                            query_embed)
        self.attn_maps = []
        lowres_attn = None
        for t, level in enumerate(self.layer_levels):
            layer = self.transformer_decoder.layers[t]
            if level == HRCA:
                scores = lowres_attn.detach().sum(1)
                index = select_hr_indices(scores, sizes[0], hr_size, self.hrca_omega,
                                          self.hrca_selection)
                tokens = gather_tokens(hr_keys, index)
                query_feat, attn = layer(
                    query_feat, tokens, tokens, query_pos=query_pos,
                    key_pos=gather_tokens(hr_pos, index), cross_query_pos=query_embed,
                    need_weights=self.record_attention)
                if self.record_attention:
                    self.attn_maps.append((level, (attn, index)))
            else:
                # a query whose mask blocks everything attends everywhere
                not_all = (attn_mask.sum(-1) != attn_mask.shape[-1]).unsqueeze(-1)
                attn_mask = attn_mask & not_all
                need = (self.with_dfpq or self.record_attention
                        or (self.with_hrca and level == 0))
                query_feat, attn = layer(
                    query_feat, keys[level], keys[level], query_pos=query_pos,
                    key_pos=key_pos[level], cross_attn_mask=attn_mask, need_weights=need)
                if level == 0:
                    lowres_attn = attn
                if self.with_dfpq:
                    query_pos = self.dfpq(attn, key_pos[level], query_embed)
                if self.record_attention:
                    self.attn_maps.append((level, attn))
            cls_pred, mask_pred, attn_mask, _ = self._predict_layer(
                query_feat, mask_features, self._next_size(t, sizes))
            cls_preds.append(cls_pred)
            mask_preds.append(mask_pred)
        return cls_preds, mask_preds
