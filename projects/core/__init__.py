"""Code shared by several MMAdapt methods: the ViT block, LoRA, checkpoint loading,
datasets, hooks and compatibility fixes for the pinned OpenMMLab stack."""
