# The FASeg recipe of faseg_adamw-poly_160k.py over 90k iterations (Cityscapes).
_base_ = ['./faseg_adamw-poly_160k.py']
param_scheduler = [
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=90000, by_epoch=False)
]
train_cfg = dict(max_iters=90000)
