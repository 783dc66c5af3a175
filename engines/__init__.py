"""Inference engines behind one interface (engines/base.py): torch, onnxruntime, tensorrt."""
