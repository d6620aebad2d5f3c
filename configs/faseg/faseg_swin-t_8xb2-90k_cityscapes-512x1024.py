# FASeg Swin-T on Cityscapes 512 x 1024, 90k (no official number; Mask2Former: 81.7).
# Backbone as mmseg's Mask2Former Swin-T; its norms and position tables get no
# weight decay, the backbone lr x0.1.
_base_ = ['./faseg_r50_8xb2-90k_cityscapes-512x1024.py', './_base_/swin-t.py']
model = dict(backbone={{_base_.swin_backbone}},
             decode_head=dict(in_channels={{_base_.swin_channels}}))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.swin_custom_keys}}))
