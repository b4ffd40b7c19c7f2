"""Training and evaluation machinery: one module per concept (objective, iteration, metrics, evaluation,
inference, checkpoints, logging, distributed helpers)."""
