"""Training and evaluation machinery, one module per concept: `objective` (the DA-RCOT terms), `iteration` (one
training iteration), `training` (the loop of trainer.py), `train_state` (checkpoint names, RNG capture),
`checkpoint` (saving and loading), `export` (safetensors model files), `official` (the official checkpoints),
`precision` (`--amp auto|on|off`), `acceleration` (autocast and compile wrappers), `allocator` (the C allocator),
`distributed` (torchrun), `monitor` (logs), `metrics`, `evaluate` (shared by validation and test.py), `inference`
(padding, tiling), `report` (tables), `embeddings` (the residual-embedding plots)."""
