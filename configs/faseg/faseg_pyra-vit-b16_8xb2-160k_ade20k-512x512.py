# FASeg on a PYRA ViT-B/16 (token merging with parallel yielding re-activation, LoRA on
# q/k/v, frozen backbone): the merged tokens are unmerged to the full 1/16 grid at four
# taps, mmseg's MultiLevelNeck turns them into 1/4 .. 1/32 maps for the pixel decoder
# and the FASeg decoder (DFPQ + HRCA on the 1/4 map). No published system combines the
# two; no reference number. Slide inference at the crop size keeps the token count the
# merge schedule was built for.
_base_ = ['./faseg_r50_8xb2-160k_ade20k-512x512.py']
crop_size = (512, 512)
model = dict(
    backbone=dict(
        _delete_=True,
        type='PYRAViT',
        arch='b',
        img_size=crop_size,
        patch_size=16,
        out_type='featmap',
        out_indices=(2, 5, 8, 11),
        final_norm=False,
        with_cls_token=True,
        drop_path_rate=0.1,
        interpolate_mode='bicubic',
        merge_mode='pyra',
        merge_schedule='low',
        lora_cfg=dict(rank=8, alpha=8, dropout=0.1),
        frozen=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_base_patch16_224.augreg_in21k.pth')),
    neck=dict(type='MultiLevelNeck', in_channels=[768] * 4, out_channels=256,
              scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[256] * 4),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
# the frozen backbone trains only its LoRA / PYRA parameters (with the recipe's lr x0.1)
