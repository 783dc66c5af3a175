"""Exporters: torch -> ONNX fp32, ONNX -> fp16 and int8 QDQ ONNX, ONNX -> TensorRT plan, parity checks.

Every artifact of a built-in model keeps the DESIGN.md boundary (float32 [0, 1] NCHW images in,
float32 logits out); the variants of a user's ONNX file (``user_variants``) keep that file's own I/O,
described by its model card. All are cached under ``cache_dir()/artifacts`` keyed by the content
hash of what they were made from.
"""
