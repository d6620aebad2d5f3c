# LoRA-only baseline (no token merging), PYRA's VTAB-1k recipe.
_base_ = [
    '../../../_base_/models/pyra-vit-b16_vtab1k.py',
    '../../../_base_/datasets/vtab1k_224px.py',
    '../../../_base_/schedules/vtab1k_adamw-cosine_100e.py',
    '../../../_base_/default_runtime_cls.py',
]
