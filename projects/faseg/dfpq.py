"""Dynamic focus-aware positional queries (thesis Eq. 5.2).

``Q_p^t = MLP(A^{t-1} K_p^{t-1} + B)``: the positional query of every decoder block is
the previous block's (masked, head-averaged) cross-attention map used as weights over
the positional encodings it attended to, plus the learnable query embedding B
(Mask2Former's ``query_embed``), through Linear-ReLU-Linear.
"""
import torch
from torch import Tensor, nn

INIT_POOLS = ('background', 'foreground', 'soft')


class DFPQ(nn.Module):
    """Generates positional queries from attention weights or a predicted mask.

    Args:
        embed_dims: query / encoding channels.
        init_pool: how the first block pools K_p with the auxiliary mask
            prediction (there is no attention map yet):

            * ``'background'``: mean of K_p where sigmoid(mask) < 0.5, what the
              official code does (default, for parity with the released models);
            * ``'foreground'``: mean where sigmoid(mask) >= 0.5, what the thesis
              text says ("average pooling on the predicted foreground mask");
            * ``'soft'``: weights sigmoid(mask) normalised over locations (the
              author's "normalized predicted mask" answer in the code's issue #3).
    """

    def __init__(self, embed_dims: int, init_pool: str = 'background') -> None:
        super().__init__()
        if init_pool not in INIT_POOLS:
            raise ValueError(f'init_pool must be one of {INIT_POOLS}, got {init_pool!r}')
        self.init_pool = init_pool
        self.mlp = nn.Sequential(
            nn.Linear(embed_dims, embed_dims), nn.ReLU(inplace=True),
            nn.Linear(embed_dims, embed_dims))

    def forward(self, attn: Tensor, key_pos: Tensor, query_embed: Tensor) -> Tensor:
        """attn (B, Q, HW), key_pos (B, HW, C), query_embed (B, Q, C) -> (B, Q, C)."""
        return self.mlp(torch.bmm(attn, key_pos) + query_embed)

    def from_mask(self, mask_logits: Tensor, key_pos: Tensor,
                  query_embed: Tensor) -> Tensor:
        """First block: mask_logits (B, Q, h, w) on the grid of ``key_pos`` (B, hw, C).

        A query whose pooling region is empty (``'background'``: its mask covers the
        whole map, as for an image of one class; ``'foreground'``: it predicts nothing,
        as every query learns on ignore-only or no-object images) pools the whole map
        uniformly. That is the rule of every later block, where a query whose
        attention mask blocks everything attends everywhere (Mask2Former), so the
        pooled term is always an average of K_p, as ``A K_p`` is. The official code
        divides by ``sum + 1e-6`` and so feeds zeros, i.e. ``h(B)``, an input no later
        block produces.
        """
        prob = mask_logits.flatten(2).sigmoid().detach()
        if self.init_pool == 'soft':
            weights = prob
        elif self.init_pool == 'background':
            weights = (prob < 0.5).to(key_pos.dtype)
        else:
            weights = (prob >= 0.5).to(key_pos.dtype)
        empty = weights.sum(-1, keepdim=True) == 0
        weights = torch.where(empty, torch.ones_like(weights), weights)
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-6)
        return self(weights, key_pos, query_embed)
