# ESTA on ADE20K: UPerNet on a StitchedViT of ImageNet-21k ViT-S/16 <-> ViT-B/16 (timm
# AugReg weights; 2 anchors + 34 stitches). Taps after blocks 3, 6, 9, 12 come from
# whichever anchor runs that depth; taps of the smaller anchor are mapped to 768
# channels (learned, zero-padding at init), so the neck sees one width per tap.
# PST as in the VTAB configs (LoRA 16 / 8, stitching LoRA d/4, stitch-specific biases).
# No in-place distillation here (classification only); the hooks sample one stitch per
# iteration and least-squares-initialise the stitching layers from 50 training images
# (SN-Netv2's segmentation hook uses 50). The thesis has no segmentation experiment:
# every setting below is ours (the PYRA/mmseg ViT-B UPerNet recipe).
_base_ = ['../../pyra/seg/lora_upernet_vit-b16_8xb2-160k_ade20k-512x512.py']


def _anchor(arch, rank, checkpoint):
    return dict(arch=arch, img_size=(512, 512), patch_size=16, final_norm=False,
                drop_path_rate=0.1, interpolate_mode='bicubic',
                lora_cfg=dict(rank=rank, alpha=rank, dropout=0.1),
                init_cfg=dict(type='Pretrained', checkpoint=checkpoint))


model = dict(
    backbone=dict(
        _delete_=True,
        type='StitchedViT',
        anchors=[
            _anchor('deit-s', 16, 'checkpoints/vit_small_patch16_224.augreg_in21k.pth'),
            _anchor('deit-b', 8, 'checkpoints/vit_base_patch16_224.augreg_in21k.pth'),
        ],
        kernel_size=2,
        stride=1,
        out_type='featmap',
        out_indices=(2, 5, 8, 11),
        stitch_lora_rank='d/4',
        pst=True,
        frozen=True))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='StitchInitHook', num_images=50),
    dict(type='ESTASamplingHook', num_intervals=15, momentum=0.9, warmup_ratio=0.1),
]
find_unused_parameters = True
