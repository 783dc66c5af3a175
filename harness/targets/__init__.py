"""The model under test: built-in models, a user's ONNX file, TensorRT plan or PyTorch model.

Modules:
- ``card``: the model card, a small TOML file stating how a target's I/O differs from the harness boundary
  (float32 NCHW RGB images in [0, 1] in, float32 logits (N, K, H, W) out); read, validated, written, overridden.
- ``adapter``: turns a target's own I/O into that boundary, per its card (torch ops, differentiable), with the
  runtime checks that catch a card contradicting what the model returns.
- ``onnx_io``: what an ONNX graph declares (inputs, outputs, opset, metadata) and the check of a card against it.
- ``inspect``: reads an ONNX file or plan, runs a probe input and guesses the card to start from.
- ``target``: the one Target abstraction the commands take (builtin, onnx, plan, torch) and its engines.
- ``torch_entry``: loads a user's ``MODULE:CALLABLE`` entry point and its weights.
"""
