"""How a model may run, as plain values: importable without torch, so that commands parse their flags at once."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Extraction, prediction and evaluation: bf16 embeddings differ from fp32 (docs/speed.md, "Behind the code"), so
# `auto` would give other features, and other figures, on a CPU with bf16 units. Reduced precision only when asked.
INFERENCE_PRECISION = "fp32"
# How a frozen backbone runs (extract.engines): auto is onnxruntime on the CPU in fp32, torch otherwise.
ENGINES = ("auto", "torch", "onnxruntime")
