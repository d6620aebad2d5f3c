"""Deployment: exporting a (folded) model to ONNX and checking the graph against
PyTorch with onnxruntime before reporting success."""
