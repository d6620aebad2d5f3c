# The tiny test-hooks classification run with DyT (MLP dispatch + adapter, rate loss,
# complete-model distillation pass) on a frozen backbone: resuming it must also restore
# the RNG stream of the Gumbel noise.
_base_ = ['./testhooks_cls.py']
model = dict(
    type='DyTImageClassifier',
    distill=True,
    backbone=dict(
        frozen=True,
        block_cfg=dict(mlp_gate=dict(type='DyTDispatcher', tau=5.0),
                       adapter=dict(type='DyTAdapter', bottleneck=4, dropout=0.1)),
        aux_losses=[dict(type='TokenRateLoss', target=0.5, weight=2.0)]))
