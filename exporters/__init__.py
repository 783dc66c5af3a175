"""Exporters: torch -> ONNX fp32, ONNX -> fp16 and int8 QDQ ONNX, ONNX -> TensorRT plan, parity checks.

Every artifact keeps the DESIGN.md boundary (float32 [0, 1] NCHW images in, float32 logits out)
and is cached under ``cache_dir()/artifacts`` keyed by the content hash of what it was made from.
"""
