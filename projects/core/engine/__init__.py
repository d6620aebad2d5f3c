"""Training-engine pieces shared by the methods: runner hooks, the trainable-only
optimizer constructor, aux-loss models, schedule rescaling, the linear probe, and
building runners and models from configs."""
