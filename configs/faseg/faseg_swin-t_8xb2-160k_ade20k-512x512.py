# FASeg Swin-T on ADE20K 512 x 512, 160k (official: drop-path 0.3; 49.6 mIoU s.s.).
# Backbone as mmseg's Mask2Former Swin-T; its norms and position tables get no
# weight decay, the backbone lr x0.1.
_base_ = ['./faseg_r50_8xb2-160k_ade20k-512x512.py', './_base_/swin-t.py']
model = dict(backbone={{_base_.swin_backbone}},
             decode_head=dict(in_channels={{_base_.swin_channels}}))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.swin_custom_keys}}))
