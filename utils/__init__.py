"""Training and evaluation machinery, one module per concept: `objective` (the DA-RCOT terms), `iteration` (one
training iteration), `training` (the loop of trainer.py), `rng` (random states and per-iteration seeds),
`checkpoint` (the training state: layout, file names, saving, checks, restoring), `atomic` (files written whole
or not at all), `export` (safetensors and ONNX model files), `official` (the official checkpoints), `precision`
(`--amp auto|on|off`), `acceleration` (autocast and compile wrappers), `allocator` (the C allocator),
`distributed` (torchrun), `monitor` (logs), `metrics`, `evaluate` (shared by validation and test.py), `inference`
(padding, tiling), `report` (tables), `figures` (matplotlib figures written as PNG), `embeddings` (the
residual-embedding plots)."""
