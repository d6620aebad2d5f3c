# FASeg Swin-B (ImageNet-22k, 384 px) on Cityscapes 512 x 1024, 90k (no official
# number; mmseg's Mask2Former: 83.5). Optimiser keys as the Swin-T leaves.
_base_ = ['./faseg_r50_8xb2-90k_cityscapes-512x1024.py',
          './_base_/swin-b-in22k-384x384-pre.py']
model = dict(backbone={{_base_.swin_backbone}},
             decode_head=dict(in_channels={{_base_.swin_channels}}))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{_base_.swin_custom_keys}}))
