"""A Mask2Former decoder layer whose cross-attention also returns its weights.

mmcv's ``MultiheadAttention`` wrapper drops the attention weights, but DFPQ and HRCA
need them. ``WeightedCrossAttention`` subclasses the wrapper, so it has the same
parameters under the same names (``attn.in_proj_weight``, ``attn.out_proj.*``), and a
Mask2Former checkpoint loads into it unchanged.
"""
from typing import Optional, Tuple

from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmdet.models.layers.transformer.mask2former_layers import \
    Mask2FormerTransformerDecoderLayer
from torch import Tensor


class WeightedCrossAttention(MultiheadAttention):
    """Batch-first cross-attention returning ``(output, weights)``.

    ``weights`` (B, Q, K) are softmax probabilities after the attention mask,
    averaged over heads (None unless ``need_weights``); the residual and dropouts
    are those of the wrapper.
    """

    def forward(self, query: Tensor, key: Tensor, value: Tensor,  # type: ignore[override]
                query_pos: Optional[Tensor] = None, key_pos: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = False, **kwargs) -> Tuple[Tensor, Optional[Tensor]]:
        assert self.batch_first, 'FASeg decoder layers are batch-first'
        identity = query
        q = query if query_pos is None else query + query_pos
        k = key if key_pos is None else key + key_pos
        out, weights = self.attn(
            q.transpose(0, 1), k.transpose(0, 1), value.transpose(0, 1),
            attn_mask=attn_mask, key_padding_mask=key_padding_mask,
            need_weights=need_weights, average_attn_weights=True)
        out = out.transpose(0, 1)
        return identity + self.dropout_layer(self.proj_drop(out)), weights


class FASegDecoderLayer(Mask2FormerTransformerDecoderLayer):
    """cross-attn -> norm -> self-attn -> norm -> FFN -> norm, as Mask2Former.

    ``cross_query_pos`` lets the HRCA layers use the static query embedding in the
    cross-attention while the self-attention keeps the dynamic queries.
    """

    def _init_layers(self) -> None:
        super()._init_layers()
        self.cross_attn = WeightedCrossAttention(**self.cross_attn_cfg)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,  # type: ignore[override]
                query_pos: Optional[Tensor] = None, key_pos: Optional[Tensor] = None,
                cross_attn_mask: Optional[Tensor] = None,
                cross_query_pos: Optional[Tensor] = None,
                need_weights: bool = False, **kwargs) -> Tuple[Tensor, Optional[Tensor]]:
        query, weights = self.cross_attn(
            query, key, value,
            query_pos=query_pos if cross_query_pos is None else cross_query_pos,
            key_pos=key_pos, attn_mask=cross_attn_mask, need_weights=need_weights)
        query = self.norms[0](query)
        query = self.self_attn(query=query, key=query, value=query,
                               query_pos=query_pos, key_pos=query_pos)
        query = self.norms[1](query)
        query = self.norms[2](self.ffn(query))
        return query, weights
