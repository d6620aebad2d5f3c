"""Parameter-efficient layers (LoRA on q/k/v) and folding their updates into the
weights for deployment."""
