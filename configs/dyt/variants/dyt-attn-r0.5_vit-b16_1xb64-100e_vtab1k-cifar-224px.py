# DyT attention dispatch: only the activated tokens enter attention (they alone attend and are attended to); the MLP runs on every token.
# The adapter still runs on every token. Paper variant; the official code has MLP
# dispatch only (see projects/dyt/README.md). Same recipe as the MLP-dispatch leaf.
_base_ = ['../vtab1k/dyt-mlp-r0.5_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(block_cfg=dict(
    mlp_gate=None,
    attn_gate=dict(type='DyTDispatcher', tau=5.0, skips='attn'))))
