# DyT layer dispatch: one decision per image, from its class token, skips the whole layer.
# The adapter still runs on every token. Paper variant; the official code has MLP
# dispatch only (see projects/dyt/README.md). Same recipe as the MLP-dispatch leaf.
_base_ = ['../vtab1k/dyt-mlp-r0.5_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(block_cfg=dict(
    mlp_gate=None,
    attn_gate=dict(type='DyTLayerDispatcher', tau=5.0))))
