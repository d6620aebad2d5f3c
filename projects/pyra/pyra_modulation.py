"""PYRA: parallel yielding re-activation of the tokens about to be merged (Sec. 3.2).

For a block merging r pairs, with source tokens M_s and their matched destinations M_t
(rows are tokens, r x D):

    M_info = LayerNorm(M_s + M_t)
    delta_D = W_r^T M_info          (1 x D)  per-channel weight, W_r in R^{r x 1}
    delta_r = M_info W_D^T          (r x 1)  per-token weight,   W_D in R^{1 x D}
    M_s <- M_s + (2 sigma(delta_r) - 1) * 2 sigma(delta_D) * M_s

W_D starts at zero, so delta_r = 0 and PYRA is exactly ToMe at initialisation.

Choices where the paper and the official code (THU-MIG/PYRA) differ:
- W_r init: the code's kaiming_uniform(a=sqrt(5)) on a fan-in of 1, i.e. U(-1, 1)
  (default, ``init_r='uniform'``); the paper's Gaussian is ``init_r='normal'`` (std 1).
- Which tokens are modulated: the code modulates the size-weighted tokens that ToMe's
  weighted average sums (default, ``weighted_info=True``); ``False`` builds M_info from
  the plain token means, as the paper's notation reads. The multiplicative update is
  the same either way, so only M_info differs.
- The LayerNorm has trainable affine parameters in the code (default ``norm_affine=True``);
  the paper counts only D + r parameters per block (``norm_affine=False``).

W_r is indexed by similarity rank. When a different number of pairs is merged at run time
(dense inputs of another size), W_r is resampled along its rank axis by linear
interpolation, so position i still means the same quantile of similarity.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..vit.param_roles import AddsParameters
from ..vit.registry import VIT_LAYERS


@VIT_LAYERS.register_module()
class PYRAModulation(AddsParameters, nn.Module):

    def __init__(self, embed_dims: int, num_merge: int, init_r: str = 'uniform',
                 weighted_info: bool = True, norm_affine: bool = True,
                 norm_eps: float = 1e-5) -> None:
        super().__init__()
        if num_merge <= 0:
            raise ValueError(f'PYRA needs a block that merges tokens, got r={num_merge}.')
        if init_r not in ('uniform', 'normal'):
            raise ValueError(f"init_r must be 'uniform' or 'normal', got {init_r!r}.")
        self.num_merge = num_merge
        self.weighted_info = weighted_info
        self.pyra_weight_r = nn.Parameter(torch.empty(num_merge, 1))   # W_r
        self.pyra_weight_d = nn.Parameter(torch.zeros(1, embed_dims))  # W_D
        self.pyra_norm = nn.LayerNorm(embed_dims, eps=norm_eps, elementwise_affine=norm_affine)
        if init_r == 'uniform':
            nn.init.uniform_(self.pyra_weight_r, -1.0, 1.0)
        else:
            nn.init.normal_(self.pyra_weight_r, std=1.0)

    def weight_r(self, r: int) -> Tensor:
        w = self.pyra_weight_r
        if r == self.num_merge:
            return w
        if self.num_merge == 1:
            return w.expand(r, 1)
        return F.interpolate(w.t()[None], size=r, mode='linear', align_corners=True)[0].t()

    def scale(self, src: Tensor, dst: Tensor, src_size: Tensor, dst_size: Tensor) -> Tensor:
        """src, dst: (B, r, D) size-weighted tokens; sizes (B, r, 1). Returns the factor
        (B, r, D) that multiplies each source: 1 + 2 sigma(delta_D) (2 sigma(delta_r) - 1).
        It is exactly 1 at initialisation (W_D = 0), so PYRA merges as ToMe does."""
        if self.weighted_info:
            info = self.pyra_norm(src + dst)
        else:
            info = self.pyra_norm(src / src_size + dst / dst_size)
        w_r = self.weight_r(src.shape[1])
        delta_d = torch.einsum('brd,rk->bkd', info, w_r)          # (B, 1, D)
        delta_r = info @ self.pyra_weight_d.t()                     # (B, r, 1)
        return torch.addcmul(torch.ones_like(delta_r), 2 * torch.sigmoid(delta_d),
                             2 * torch.sigmoid(delta_r) - 1)

    def forward(self, src: Tensor, dst: Tensor, src_size: Tensor, dst_size: Tensor) -> Tensor:
        """The modulated sources ``M_s <- M_s + (2 sigma(delta_r) - 1) 2 sigma(delta_D) M_s``."""
        return src * self.scale(src, dst, src_size, dst_size)
